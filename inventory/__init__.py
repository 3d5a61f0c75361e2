"""The inventory of U-SPOT units: the data, its rules, and the files it is fed from.

    inventory.store     open_store(url) -> Store: engine, sessions, migrate(), check_current()
    inventory.models    the tables (SQLAlchemy 2); changed by inventory/migrations only
    inventory.repo      repository functions on an AsyncSession: find, upsert, list …
    inventory.rules     the service's rules: assert_…() raise RuleViolation(field, value, rule)
    inventory.records   plain input and output records (CustomerData, UnitData, Credential …)
    inventory.imports   contract export, 4over6 order list and fleet file imports
    inventory.secrets   AES-GCM encryption of passwords and passphrases at rest
    inventory.redact    masking secrets out of log records
    inventory.errors    the one error tree of fleetd
    inventory.domain    the service's vocabulary (roles, item codes, states …)

Nothing is opened or configured at import time.
"""
