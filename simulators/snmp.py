"""The SNMP v2c agent of the simulated units: one UDP socket serves every unit.

Units live on their own loopback addresses (127.20.0.1, 127.20.0.2, ...) and share one
port. The agent binds the wildcard address once, learns each datagram's destination
address from ``IP_PKTINFO``, asks ``lookup`` which unit that is, and answers from that
same address. The MIB (docs/unit-mib.md, `simulators.mib`) is built per request.

The codec is pysnmp's (pyasn1 BER): every value and object name the agent puts in a
response is encoded by it (memoised), and SET values are decoded by it. Only the message
envelope (the SEQUENCE, INTEGER and tag/length headers around the variable bindings) is
parsed and framed here directly, because a whole-message pyasn1 decode and encode costs
about a millisecond and the agent must answer ten thousand units in a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Final, NamedTuple

from pyasn1.codec.ber import decoder
from pyasn1.error import PyAsn1Error

from simulators.mib import (
    END_OF_MIB_VIEW,
    INTEGER,
    OCTETS_SPEC,
    WRITABLE,
    Oid,
    UnitMib,
    encode_oid,
    encode_value,
)
from simulators.unit import Refused, Unit

IP_PKTINFO: Final[int] = getattr(socket, "IP_PKTINFO", 8)
SO_BINDTODEVICE: Final[int] = getattr(socket, "SO_BINDTODEVICE", 25)
_CMSG_SPACE: Final = socket.CMSG_SPACE(12)  # struct in_pktinfo
_DRAIN_LIMIT: Final = 4096  # datagrams per readiness callback, so the loop stays responsive
_SOCKET_BUFFER: Final = 4 << 20

MAX_MESSAGE_SIZE: Final = 1472  # the largest response the unit sends (one Ethernet frame)
MAX_BULK_VARBINDS: Final = 512

# ----- error-status values (RFC 3416) ----------------------------------------------------------
NO_ERROR, TOO_BIG, GEN_ERR, NO_ACCESS = 0, 1, 5, 6
WRONG_TYPE, WRONG_LENGTH, WRONG_ENCODING, WRONG_VALUE = 7, 8, 9, 10
COMMIT_FAILED, NOT_WRITABLE = 14, 17

# ----- PDU tags ------------------------------------------------------------------------------
GET, GETNEXT, RESPONSE, SET, GETBULK = 0xA0, 0xA1, 0xA2, 0xA3, 0xA5
_SEQUENCE: Final = 0x30


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
        return oid, _varbind(name, END_OF_MIB_VIEW), False
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
            octets = bytes(decoder.decode(vb.value, asn1Spec=OCTETS_SPEC)[0])
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
