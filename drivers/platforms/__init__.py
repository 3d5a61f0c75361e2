"""Platform definitions for the U-SPOT units: scrapli and netmiko."""
