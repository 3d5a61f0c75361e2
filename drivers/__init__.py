"""Talking to one unit: the `UnitDriver` protocol, the U-SPOT platform, SSH transports, SNMP.

    from drivers import Change, UnitTarget, load_driver

    async with load_driver(target, transport="asyncssh") as unit:
        state = await unit.read_state()
        await unit.stage(Change({"wlan guest ssid": "Cafe Free"}))
        await unit.commit_confirmed(5)
        ...   # verify in a new session, then
        await unit.confirm()

Layout: `base` (protocol and data), `uspot` (commands and parsers, no I/O),
`uspot_driver` (the verbs), `transport` (what a transport is), `ssh_asyncssh`,
`ssh_scrapli`, `ssh_netmiko` (transports), `registry` (entry points), `snmp` (status polling).
"""

from drivers.base import (
    Change,
    CommitEntry,
    DiffLine,
    Shell,
    Timeouts,
    UnitDriver,
    UnitState,
    UnitTarget,
    WanState,
    WlanState,
    passphrase_fingerprint,
)
from drivers.registry import load_driver

__all__ = [
    "Change",
    "CommitEntry",
    "DiffLine",
    "Shell",
    "Timeouts",
    "UnitDriver",
    "UnitState",
    "UnitTarget",
    "WanState",
    "WlanState",
    "load_driver",
    "passphrase_fingerprint",
]
