"""The simulated unit's MIB: MIB-II system, IF-MIB and the U-SPOT enterprise subtree.

Built per request from the unit's state, group by group as a request reaches it; values
are BER-encoded by pyasn1 (memoised). docs/unit-mib.md is the contract it implements.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Final, NamedTuple

from pyasn1.codec.ber import encoder
from pysnmp.proto.api import v2c

from simulators.config import AP, CHILD, PARENT
from simulators.unit import FIRMWARE, MODEL, Unit

# ----- value kinds and their BER encoding (pyasn1, memoised) ---------------------------------
INTEGER, OCTETS, OID, TICKS, COUNTER, GAUGE = range(6)
_TYPES: Final = {
    INTEGER: v2c.Integer,
    OCTETS: v2c.OctetString,
    OID: v2c.ObjectIdentifier,
    TICKS: v2c.TimeTicks,
    COUNTER: v2c.Counter32,
    GAUGE: v2c.Gauge32,
}
Oid = tuple[int, ...]
Value = tuple[int, int | bytes | Oid]

_NO_SUCH_OBJECT: Final = bytes(encoder.encode(v2c.NoSuchObject("")))
_NO_SUCH_INSTANCE: Final = bytes(encoder.encode(v2c.NoSuchInstance("")))
END_OF_MIB_VIEW: Final = bytes(encoder.encode(v2c.EndOfMibView("")))
OCTETS_SPEC: Final = v2c.OctetString()


@lru_cache(maxsize=1 << 16)
def encode_value(kind: int, value: int | bytes | Oid) -> bytes:
    """The BER encoding (tag, length, contents) of one value of the unit's MIB."""
    return bytes(encoder.encode(_TYPES[kind](value)))


@lru_cache(maxsize=1 << 12)
def encode_oid(oid: Oid) -> bytes:
    return bytes(encoder.encode(v2c.ObjectIdentifier(oid)))


# ----- the object tree ---------------------------------------------------------------------
SYSTEM: Final = (1, 3, 6, 1, 2, 1, 1)
INTERFACES: Final = (1, 3, 6, 1, 2, 1, 2)
IF_ENTRY: Final = (*INTERFACES, 2, 1)
IF_MIB: Final = (1, 3, 6, 1, 2, 1, 31)
IF_X_ENTRY: Final = (*IF_MIB, 1, 1, 1)
ENTERPRISE: Final = (1, 3, 6, 1, 4, 1, 55555)
USPOT_MIB: Final = (*ENTERPRISE, 1)
USPOT_PRODUCT: Final = (*ENTERPRISE, 2, 1)  # sysObjectID of every U-SPOT_01

SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_CONTACT, SYS_NAME, SYS_LOCATION, SYS_SERVICES = (
    (*SYSTEM, n, 0) for n in range(1, 8)
)
SYS_CONTACT_TEXT: Final = "U-SPOT Support Center"
IF_NUMBER: Final = (*INTERFACES, 1, 0)
# ifIndex ifDescr ifType ifMtu ifSpeed ifPhysAddress ifAdminStatus ifOperStatus
# ifInOctets ifOutOctets
IF_COLUMNS: Final = (1, 2, 3, 4, 5, 6, 7, 8, 10, 16)
IF_NAME_COLUMN: Final = 1
ETHERNET, IEEE80211, TUNNEL = 6, 71, 131

# uspotMIB scalars, in OID order; the instance is .0
USPOT_OBJECTS: Final = {
    "uspotSerial": (1, 1),
    "uspotRole": (1, 2),
    "uspotParentSerial": (1, 3),
    "uspotFirmware": (1, 4),
    "uspotLinkItem": (1, 5),
    "uspotWanMode": (2, 1),
    "uspotTunnelType": (2, 2),
    "uspotTunnelState": (2, 3),
    "uspotWanIpv4Address": (2, 4),
    "uspotWanIpv6Address": (2, 5),
    "uspotInternet": (2, 6),
    "uspotTunnelReason": (2, 7),
    "uspotLampPower": (3, 1),
    "uspotLampWan": (3, 2),
    "uspotLampU": (3, 3),
    "uspotAccountState": (4, 1),
    "uspotBusinessSsid": (5, 1),
    "uspotBusinessWlanState": (5, 2),
    "uspotBusinessPassphraseFingerprint": (5, 3),
    "uspotGuestSsid": (5, 4),
    "uspotGuestWlanState": (5, 5),
    "uspotGuestPassphraseFingerprint": (5, 6),
    "uspotCommitPending": (6, 1),
    "uspotCommitCount": (6, 2),
}
_USPOT_OIDS: Final = [(*USPOT_MIB, *sub, 0) for sub in USPOT_OBJECTS.values()]
_SYSTEM_OIDS: Final = [
    SYS_DESCR,
    SYS_OBJECT_ID,
    SYS_UPTIME,
    SYS_CONTACT,
    SYS_NAME,
    SYS_LOCATION,
    SYS_SERVICES,
]


def uspot_oid(name: str) -> Oid:
    """The instance OID (``.0``) of a uspotMIB scalar, by name."""
    return (*USPOT_MIB, *USPOT_OBJECTS[name], 0)


# Writable objects: OID -> (configuration path, smallest and largest size in octets).
WRITABLE: Final = {uspot_oid("uspotGuestSsid"): ("wlan guest ssid", 1, 32)}

# Object types (an OID without its instance part): a GET below one of these names a
# missing instance (noSuchInstance); anything else names no object at all (noSuchObject).
_OBJECT_TYPES: Final = frozenset(
    [oid[:-1] for oid in _SYSTEM_OIDS]
    + [IF_NUMBER[:-1], (*IF_X_ENTRY, IF_NAME_COLUMN)]
    + [(*IF_ENTRY, column) for column in IF_COLUMNS]
    + [oid[:-1] for oid in _USPOT_OIDS]
)

ROLE_NUMBER: Final = {PARENT: 1, CHILD: 2, AP: 3}
WAN_MODE_NUMBER: Final = {"pppoe": 1, "ipoe": 2}
TUNNEL_TYPE_NUMBER: Final = {"ds-lite": 1, "map-e": 2, "ipip": 3}
UP_DOWN_NA: Final = {"up": 1, "down": 2}  # anything else: notApplicable(3)
LAMP_NUMBER: Final = {"on": 1, "off": 2, "blink": 3}
TRUE, FALSE = 1, 2  # TruthValue


def _text(value: str) -> Value:
    return (OCTETS, value.encode("utf-8"))


def _dash(value: str) -> str:
    return "" if value in ("-", "n/a") else value


class _State:
    """What one request reads of a unit; the WAN (the costly part) is read at most once."""

    __slots__ = ("_wan", "unit")

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        self._wan: dict[str, str] | None = None

    def wan(self) -> dict[str, str] | None:
        """`Unit.wan()` for a parent; None for a child or an access point."""
        if self._wan is None and self.unit.role == PARENT:
            self._wan = self.unit.wan()
        return self._wan


# ----- the groups of the tree, each built on first use --------------------------------------
# The values are those of `Unit.status()`, read from the same attributes directly: for a
# parent, status() works out the whole WAN, which most requests do not ask about.
Group = tuple[Sequence[Oid], Sequence[Value]]


def _system(state: _State) -> Group:
    unit = state.unit
    return _SYSTEM_OIDS, [
        _text(f"U-SPOT {MODEL} {unit.role} firmware {FIRMWARE}"),
        (OID, USPOT_PRODUCT),
        (TICKS, (unit.uptime() * 100) % (1 << 32)),
        _text(SYS_CONTACT_TEXT),
        _text(unit.serial),
        _text(""),
        (INTEGER, 78 if unit.role == PARENT else 74),  # layers 2, (3,) 4 and 7
    ]


class _Interface(NamedTuple):
    name: str
    descr: str
    kind: int
    mtu: int
    speed: int
    mac: bytes
    admin_up: bool
    oper_up: bool


@lru_cache(maxsize=1 << 15)
def _digest(serial: str) -> bytes:
    return hashlib.sha256(serial.encode("utf-8")).digest()


def _interface_names(unit: Unit) -> list[str]:
    if unit.role != PARENT:
        return ["lan0", "wlan0", "wlan1"]
    if unit.running.get("wan mode", "pppoe") == "ipoe":
        return ["wan0", "wlan0", "wlan1", "tun0"]
    return ["wan0", "wlan0", "wlan1"]


def _interfaces_of(state: _State) -> list[_Interface]:
    unit = state.unit
    digest = _digest(unit.serial)

    def mac(index: int) -> bytes:
        return bytes((0x02, digest[0], digest[1], digest[2], digest[3], index))

    rows: list[_Interface] = []
    wan = state.wan()
    if wan is not None:
        mtu = 1454 if wan["mode"] == "pppoe" else 1500
        rows.append(
            _Interface(
                "wan0",
                "wan0 WAN",
                ETHERNET,
                mtu,
                1_000_000_000,
                mac(1),
                True,
                wan["internet"] == "up",
            )
        )
    else:
        rows.append(
            _Interface("lan0", "lan0 LAN", ETHERNET, 1500, 1_000_000_000, mac(1), True, True)
        )
    for number, net in enumerate(("business", "guest")):
        admin = unit.running.get(f"wlan {net} state", "up") == "up"
        rows.append(
            _Interface(
                f"wlan{number}",
                f"wlan{number} {net}",
                IEEE80211,
                1500,
                866_700_000,
                mac(2 + number),
                admin,
                unit.wlan_state(net) == "up",
            )
        )
    if wan is not None and wan["mode"] == "ipoe":
        tunnel = _dash(wan["tunnel"])
        rows.append(
            _Interface(
                "tun0",
                f"tun0 {tunnel}".rstrip(),
                TUNNEL,
                1460,
                0,
                b"",
                True,
                wan["tunnel-state"] == "up",
            )
        )
    return rows


@lru_cache(maxsize=8)
def _if_table_oids(count: int) -> list[Oid]:
    oids = [(*IF_ENTRY, column, index) for column in IF_COLUMNS for index in range(1, count + 1)]
    return [IF_NUMBER, *oids]


@lru_cache(maxsize=8)
def _if_x_oids(count: int) -> list[Oid]:
    return [(*IF_X_ENTRY, IF_NAME_COLUMN, index) for index in range(1, count + 1)]


def _octets(digest: bytes, counter: int, uptime: int) -> int:
    """An octet counter running at a steady rate (1 to 65 kB/s) fixed by the serial."""
    return (uptime * (1000 + 250 * digest[8 + counter])) % (1 << 32)


def _interfaces(state: _State) -> Group:
    rows = _interfaces_of(state)
    uptime = state.unit.uptime()
    digest = _digest(state.unit.serial)
    values: list[Value] = [(INTEGER, len(rows))]
    values += [(INTEGER, index) for index in range(1, len(rows) + 1)]
    values += [_text(row.descr) for row in rows]
    values += [(INTEGER, row.kind) for row in rows]
    values += [(INTEGER, row.mtu) for row in rows]
    values += [(GAUGE, row.speed) for row in rows]
    values += [(OCTETS, row.mac) for row in rows]
    values += [(INTEGER, 1 if row.admin_up else 2) for row in rows]
    values += [(INTEGER, 1 if row.oper_up else 2) for row in rows]
    values += [(COUNTER, _octets(digest, 2 * i, uptime)) for i in range(len(rows))]
    values += [(COUNTER, _octets(digest, 2 * i + 1, uptime)) for i in range(len(rows))]
    return _if_table_oids(len(rows)), values


def _if_x(state: _State) -> Group:
    names = _interface_names(state.unit)
    return _if_x_oids(len(names)), [_text(name) for name in names]


def _branch(arc: int) -> list[Oid]:
    return [oid for oid in _USPOT_OIDS if oid[len(USPOT_MIB)] == arc]


_IDENTITY_OIDS, _WAN_OIDS, _LAMP_OIDS, _ACCOUNT_OIDS, _WLAN_OIDS, _COMMIT_OIDS = (
    _branch(arc) for arc in range(1, 7)
)


def _identity(state: _State) -> Group:
    unit = state.unit
    return _IDENTITY_OIDS, [
        _text(unit.serial),
        (INTEGER, ROLE_NUMBER[unit.role]),
        _text(unit.parent),
        _text(FIRMWARE),
        (INTEGER, TRUE if unit.link_item else FALSE),
    ]


def _wan(state: _State) -> Group:
    wan = state.wan()
    if wan is None:
        return _WAN_OIDS, [
            (INTEGER, 0),
            (INTEGER, 0),
            (INTEGER, 3),
            _text(""),
            _text(""),
            (INTEGER, 3),
            _text(""),
        ]
    return _WAN_OIDS, [
        (INTEGER, WAN_MODE_NUMBER.get(wan["mode"], 0)),
        (INTEGER, TUNNEL_TYPE_NUMBER.get(wan["tunnel"], 0)),
        (INTEGER, UP_DOWN_NA.get(wan["tunnel-state"], 3)),
        _text(_dash(wan["ipv4-address"])),
        _text(_dash(wan["ipv6-address"])),
        (INTEGER, UP_DOWN_NA.get(wan["internet"], 3)),
        _text(_dash(wan["tunnel-reason"])),
    ]


def _lamps(state: _State) -> Group:
    lamps = state.unit.lamps()
    names = ("POWER", "WAN", "U")
    return _LAMP_OIDS, [(INTEGER, LAMP_NUMBER.get(lamps.get(name, ""), 2)) for name in names]


def _account(state: _State) -> Group:
    return _ACCOUNT_OIDS, [(INTEGER, 1 if state.unit.account_active else 2)]


def _wlan(state: _State) -> Group:
    unit = state.unit
    values: list[Value] = []
    for net in ("business", "guest"):  # passphrases: only their fingerprints, never the text
        values += [
            _text(unit.running.get(f"wlan {net} ssid", "")),
            (INTEGER, UP_DOWN_NA.get(unit.wlan_state(net), 2)),
            _text(_dash(unit.passphrase_fingerprint(net))),
        ]
    return _WLAN_OIDS, values


def _commit(state: _State) -> Group:
    unit = state.unit
    return _COMMIT_OIDS, [
        (INTEGER, TRUE if unit.pending is not None else FALSE),
        (COUNTER, unit.commit_seq % (1 << 32)),
    ]


# The groups in OID order: every object of a group lies under its root.
_GROUPS: Final[tuple[tuple[Oid, Callable[[_State], Group]], ...]] = (
    (SYSTEM, _system),
    (INTERFACES, _interfaces),
    (IF_MIB, _if_x),
    ((*USPOT_MIB, 1), _identity),
    ((*USPOT_MIB, 2), _wan),
    ((*USPOT_MIB, 3), _lamps),
    ((*USPOT_MIB, 4), _account),
    ((*USPOT_MIB, 5), _wlan),
    ((*USPOT_MIB, 6), _commit),
)


class UnitMib:
    """One unit's MIB as of one request; each group is built from the unit on first use."""

    __slots__ = ("_built", "_state")

    def __init__(self, unit: Unit) -> None:
        self._state = _State(unit)
        self._built: list[Group | None] = [None] * len(_GROUPS)

    def _group(self, index: int) -> Group:
        group = self._built[index]
        if group is None:
            group = self._built[index] = _GROUPS[index][1](self._state)
        return group

    def get(self, oid: Oid) -> bytes:
        """The encoded value at ``oid``, or noSuchObject / noSuchInstance."""
        for index, (root, _build) in enumerate(_GROUPS):
            if oid[: len(root)] == root:
                oids, values = self._group(index)
                at = bisect_left(oids, oid)
                if at < len(oids) and oids[at] == oid:
                    return encode_value(*values[at])
                break
        for size in range(len(oid), 0, -1):
            if oid[:size] in _OBJECT_TYPES:
                return _NO_SUCH_INSTANCE
        return _NO_SUCH_OBJECT

    def next(self, oid: Oid) -> tuple[Oid, bytes] | None:
        """The first object after ``oid`` with its encoded value; None past the end."""
        for index, (root, _build) in enumerate(_GROUPS):
            if oid < root:
                oids, values = self._group(index)
                return oids[0], encode_value(*values[0])
            if oid[: len(root)] == root:
                oids, values = self._group(index)
                at = bisect_right(oids, oid)
                if at < len(oids):
                    return oids[at], encode_value(*values[at])
        return None

    def walk(self) -> list[tuple[Oid, Value]]:
        """Every object in order (for tests and tools)."""
        out: list[tuple[Oid, Value]] = []
        for index in range(len(_GROUPS)):
            oids, values = self._group(index)
            out += zip(oids, values, strict=True)
        return out
