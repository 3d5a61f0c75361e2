"""The SNMP v2c agent of the simulated units: one UDP socket serves every unit.

Units live on their own loopback addresses (127.20.0.1, 127.20.0.2, ...) and share one
port. The agent binds the wildcard address once, learns each datagram's destination
address from ``IP_PKTINFO``, asks ``lookup`` which unit that is, and answers from that
same address. The MIB (docs/unit-mib.md) is built per request from the unit's state.

The codec is pysnmp's (pyasn1 BER): every value and object name the agent puts in a
response is encoded by it (memoised), and SET values are decoded by it. Only the message
envelope (the SEQUENCE, INTEGER and tag/length headers around the variable bindings) is
parsed and framed here directly, because a whole-message pyasn1 decode and encode costs
about a millisecond and the agent must answer ten thousand units in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Final, NamedTuple

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pysnmp.proto.api import v2c

from simulators.config import AP, CHILD, PARENT
from simulators.unit import FIRMWARE, MODEL, Refused, Unit

IP_PKTINFO: Final[int] = getattr(socket, "IP_PKTINFO", 8)
SO_BINDTODEVICE: Final[int] = getattr(socket, "SO_BINDTODEVICE", 25)
_CMSG_SPACE: Final = socket.CMSG_SPACE(12)  # struct in_pktinfo
_DRAIN_LIMIT: Final = 4096  # datagrams per readiness callback, so the loop stays responsive
_SOCKET_BUFFER: Final = 4 << 20

MAX_MESSAGE_SIZE: Final = 1472  # the largest response the unit sends (one Ethernet frame)
MAX_BULK_VARBINDS: Final = 512

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
_END_OF_MIB_VIEW: Final = bytes(encoder.encode(v2c.EndOfMibView("")))
_OCTETS_SPEC: Final = v2c.OctetString()


@lru_cache(maxsize=1 << 16)
def encode_value(kind: int, value: int | bytes | Oid) -> bytes:
    """The BER encoding (tag, length, contents) of one value of the unit's MIB."""
    return bytes(encoder.encode(_TYPES[kind](value)))


@lru_cache(maxsize=1 << 12)
def encode_oid(oid: Oid) -> bytes:
    return bytes(encoder.encode(v2c.ObjectIdentifier(oid)))


# ----- error-status values (RFC 3416) ----------------------------------------------------------
NO_ERROR, TOO_BIG, GEN_ERR, NO_ACCESS = 0, 1, 5, 6
WRONG_TYPE, WRONG_LENGTH, WRONG_ENCODING, WRONG_VALUE = 7, 8, 9, 10
COMMIT_FAILED, NOT_WRITABLE = 14, 17

# ----- PDU tags ------------------------------------------------------------------------------
GET, GETNEXT, RESPONSE, SET, GETBULK = 0xA0, 0xA1, 0xA2, 0xA3, 0xA5
_SEQUENCE: Final = 0x30

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


# ----- the message envelope ----------------------------------------------------------------
class Malformed(ValueError):
    """Not a well-formed SNMP message; dropped."""


class VarBind(NamedTuple):
    oid: Oid
    name: bytes  # the encoded OBJECT IDENTIFIER, as received
    value: bytes  # the encoded value, as received


class Request(NamedTuple):
    version: bytes  # encoded, as received
    community: bytes  # the community string itself
    community_tlv: bytes  # encoded, as received
    pdu: int  # PDU tag: GET, GETNEXT, SET, GETBULK, ...
    request_id: bytes  # encoded, as received
    first: int  # error-status, or non-repeaters for GETBULK
    second: int  # error-index, or max-repetitions for GETBULK
    varbinds: list[VarBind]


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read a tag and a definite length at ``pos``: (tag, contents start, contents end)."""
    if pos + 2 > end:
        raise Malformed("truncated")
    tag = data[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # high tag number form
        while pos < end and data[pos] & 0x80:
            pos += 1
        pos += 1
        if pos >= end:
            raise Malformed("truncated tag")
    length = data[pos]
    pos += 1
    if length & 0x80:
        octets = length & 0x7F
        if not 1 <= octets <= 4 or pos + octets > end:
            raise Malformed("bad length")
        length = int.from_bytes(data[pos : pos + octets], "big")
        pos += octets
    if pos + length > end:
        raise Malformed("truncated contents")
    return tag, pos, pos + length


def _integer(data: bytes, pos: int, end: int) -> tuple[int, int]:
    tag, start, stop = _header(data, pos, end)
    if tag != 0x02 or start == stop or stop - start > 8:
        raise Malformed("INTEGER expected")
    return int.from_bytes(data[start:stop], "big", signed=True), stop


@lru_cache(maxsize=1 << 12)
def decode_oid(contents: bytes) -> Oid:
    """The arcs of an OBJECT IDENTIFIER from its contents octets."""
    if not contents or contents[-1] & 0x80:
        raise Malformed("bad OBJECT IDENTIFIER")
    arcs: list[int] = []
    arc = 0
    for octet in contents:
        arc = (arc << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(arc)
            arc = 0
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def parse_request(data: bytes) -> Request:
    """Split an SNMP message into its parts; raises `Malformed`."""
    try:
        tag, pos, end = _header(data, 0, len(data))
        if tag != _SEQUENCE:
            raise Malformed("SEQUENCE expected")
        version_at = pos
        version, pos = _integer(data, pos, end)
        version_tlv = data[version_at:pos]
        tag, start, stop = _header(data, pos, end)
        if tag != 0x04:
            raise Malformed("community expected")
        community, community_tlv = data[start:stop], data[pos:stop]
        pdu, pos, end = _header(data, stop, end)
        request_at = pos
        _request_id, pos = _integer(data, pos, end)
        request_id = data[request_at:pos]
        first, pos = _integer(data, pos, end)
        second, pos = _integer(data, pos, end)
        tag, pos, end = _header(data, pos, end)
        if tag != _SEQUENCE:
            raise Malformed("variable-bindings expected")
        varbinds: list[VarBind] = []
        while pos < end:
            tag, start, pos = _header(data, pos, end)
            if tag != _SEQUENCE:
                raise Malformed("VarBind expected")
            tag, oid_start, oid_stop = _header(data, start, pos)
            if tag != 0x06:
                raise Malformed("OBJECT IDENTIFIER expected")
            _tag, _start, value_stop = _header(data, oid_stop, pos)
            if value_stop != pos:
                raise Malformed("trailing data in VarBind")
            varbinds.append(
                VarBind(
                    decode_oid(data[oid_start:oid_stop]), data[start:oid_stop], data[oid_stop:pos]
                )
            )
    except IndexError:
        raise Malformed("truncated") from None
    if version != 1:
        raise Malformed("not SNMPv2c")
    return Request(version_tlv, community, community_tlv, pdu, request_id, first, second, varbinds)


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def _wrap(tag: int, contents: bytes) -> bytes:
    return bytes((tag,)) + _length(len(contents)) + contents


def _varbind(name: bytes, value: bytes) -> bytes:
    return _wrap(_SEQUENCE, name + value)


def _response(request: Request, varbinds: list[bytes], status: int = 0, index: int = 0) -> bytes:
    pdu = (
        request.request_id
        + encode_value(INTEGER, status)
        + encode_value(INTEGER, index)
        + _wrap(_SEQUENCE, b"".join(varbinds))
    )
    return _wrap(_SEQUENCE, request.version + request.community_tlv + _wrap(RESPONSE, pdu))


def _echo(request: Request, status: int, index: int) -> bytes:
    """A response carrying the request's own variable bindings and an error."""
    return _response(
        request, [_varbind(vb.name, vb.value) for vb in request.varbinds], status, index
    )


def _bounded(request: Request, varbinds: list[bytes], status: int = 0, index: int = 0) -> bytes:
    reply = _response(request, varbinds, status, index)
    if len(reply) > MAX_MESSAGE_SIZE:
        return _response(request, [], TOO_BIG, 0)
    return reply


# ----- the operations -----------------------------------------------------------------------
def _get(mib: UnitMib, request: Request) -> bytes:
    return _bounded(request, [_varbind(vb.name, mib.get(vb.oid)) for vb in request.varbinds])


def _next_varbind(mib: UnitMib, oid: Oid, name: bytes) -> tuple[Oid, bytes, bool]:
    found = mib.next(oid)
    if found is None:
        return oid, _varbind(name, _END_OF_MIB_VIEW), False
    next_oid, value = found
    return next_oid, _varbind(encode_oid(next_oid), value), True


def _getnext(mib: UnitMib, request: Request) -> bytes:
    return _bounded(request, [_next_varbind(mib, vb.oid, vb.name)[1] for vb in request.varbinds])


def _getbulk(mib: UnitMib, request: Request) -> bytes:
    varbinds = request.varbinds
    non_repeaters = min(max(request.first, 0), len(varbinds))
    repetitions = max(request.second, 0)
    out = [_next_varbind(mib, vb.oid, vb.name)[1] for vb in varbinds[:non_repeaters]]
    # room left for variable bindings once the envelope is paid for
    budget = (
        MAX_MESSAGE_SIZE
        - 32
        - len(request.community_tlv)
        - len(request.request_id)
        - sum(len(vb) for vb in out)
    )
    if budget < 0:
        return _response(request, [], TOO_BIG, 0)
    cursors = [(vb.oid, vb.name) for vb in varbinds[non_repeaters:]]
    repetitions = min(repetitions, MAX_BULK_VARBINDS // max(1, len(cursors)))
    for _ in range(repetitions if cursors else 0):
        row: list[bytes] = []
        more = False
        for i, (oid, name) in enumerate(cursors):
            next_oid, varbind, found = _next_varbind(mib, oid, name)
            row.append(varbind)
            more = more or found
            if found:
                cursors[i] = (next_oid, encode_oid(next_oid))
        size = sum(len(vb) for vb in row)
        if size > budget:
            break
        budget -= size
        out += row
        if not more:  # every column is at the end of the MIB view
            break
    return _response(request, out)


def _set(unit: Unit, request: Request, writer: bool) -> bytes:
    if len(_echo(request, NO_ERROR, 0)) > MAX_MESSAGE_SIZE:
        return _response(request, [], TOO_BIG, 0)
    if not writer:
        return _echo(request, NO_ACCESS, 1)
    changes: list[tuple[str, str]] = []
    for index, vb in enumerate(request.varbinds, 1):
        writable = WRITABLE.get(vb.oid)
        if writable is None:
            return _echo(request, NOT_WRITABLE, index)
        path, smallest, largest = writable
        if not unit.supports(path):
            return _echo(request, NOT_WRITABLE, index)
        if vb.value[:1] not in (b"\x04", b"\x24"):  # OCTET STRING, primitive or constructed
            return _echo(request, WRONG_TYPE, index)
        try:
            octets = bytes(decoder.decode(vb.value, asn1Spec=_OCTETS_SPEC)[0])
        except PyAsn1Error:
            return _echo(request, WRONG_ENCODING, index)
        if not smallest <= len(octets) <= largest:
            return _echo(request, WRONG_LENGTH, index)
        try:
            text = octets.decode("utf-8")
            changes.append((path, unit.validate(path, text)))
        except (UnicodeDecodeError, Refused):
            return _echo(request, WRONG_VALUE, index)
    for index, (path, text) in enumerate(changes, 1):
        try:
            unit.snmp_set(path, text)
        except Refused:
            return _echo(request, COMMIT_FAILED, index)
    return _echo(request, NO_ERROR, 0)


def respond(unit: Unit, data: bytes, read_community: bytes, write_community: bytes) -> bytes | None:
    """The unit's answer to one datagram, or None when it gives none.

    No answer for malformed messages, anything but SNMPv2c, unknown communities and PDUs
    an agent does not answer (responses, traps, reports).
    """
    try:
        request = parse_request(data)
    except Malformed:
        return None
    if request.community == write_community:
        writer = True
    elif request.community == read_community:
        writer = False
    else:
        return None
    if request.pdu not in (GET, GETNEXT, GETBULK, SET):
        return None
    try:
        if request.pdu == SET:
            return _set(unit, request, writer)
        mib = UnitMib(unit)
        if request.pdu == GET:
            return _get(mib, request)
        if request.pdu == GETNEXT:
            return _getnext(mib, request)
        return _getbulk(mib, request)
    except Exception:  # a state the MIB cannot express: the manager sees genErr
        return _response(request, [], GEN_ERR, 0)


@lru_cache(maxsize=1 << 15)
def _pktinfo(destination: bytes) -> bytes:
    return struct.pack("@I4s4s", 0, destination, b"\0" * 4)


def _bind_loopback(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, b"lo")


class SnmpAgent:
    """An SNMP v2c agent answering for many units on one UDP socket.

    ``lookup`` maps a destination address (``"127.20.0.1"``) to its unit, or None.
    """

    def __init__(
        self,
        lookup: Callable[[str], Unit | None],
        *,
        host: str = "0.0.0.0",  # noqa: S104 - served on loopback only, see _bind_loopback
        port: int = 0,
        read_community: str = "public",
        write_community: str = "private",
        fleet_rtt: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._lookup = lookup
        self._fleet_rtt = fleet_rtt
        self._host = host
        self._port = port
        self._read = read_community.encode("utf-8")
        self._write = write_community.encode("utf-8")
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False

    @property
    def port(self) -> int:
        """The bound UDP port (once `start` has run)."""
        if not self._started:
            raise RuntimeError("the SNMP agent is not started")
        return self._port

    async def start(self) -> None:
        if self._sock is not None:
            raise RuntimeError("the SNMP agent is already started")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            _bind_loopback(sock)
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
            sock.bind((self._host, self._port))
            self._port = sock.getsockname()[1]
            loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = loop
        self._started = True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        self._loop = None
        sock.close()

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(_DRAIN_LIMIT):
            try:
                data, ancdata, _flags, peer = sock.recvmsg(65535, _CMSG_SPACE)
            except OSError:  # BlockingIOError: drained; anything else: try again next time
                return
            self._datagram(data, ancdata, peer)

    def _datagram(
        self, data: bytes, ancdata: list[tuple[int, int, bytes]], peer: tuple[str, int]
    ) -> None:
        if not peer[0].startswith("127."):
            return
        destination = b""
        for level, kind, info in ancdata:
            if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(info) >= 12:
                destination = info[8:12]  # struct in_pktinfo: ifindex, spec_dst, addr
        if not destination:
            return
        unit = self._lookup(socket.inet_ntoa(destination))
        if unit is None or not unit.is_up():
            return
        faults = unit.faults
        if faults.snmp_timeout or faults.refuse or faults.blackhole:
            return
        reply = respond(unit, data, self._read, self._write)
        if reply is None:
            return
        rtt = faults.rtt + self._fleet_rtt()
        if rtt > 0 and self._loop is not None:
            self._loop.call_later(rtt, self._send, reply, destination, peer)
        else:
            self._send(reply, destination, peer)

    def _send(self, reply: bytes, destination: bytes, peer: tuple[str, int]) -> None:
        sock = self._sock
        if sock is None:
            return
        with contextlib.suppress(OSError):  # a full buffer drops the reply, as UDP may
            sock.sendmsg([reply], [(socket.IPPROTO_IP, IP_PKTINFO, _pktinfo(destination))], 0, peer)
