"""SNMPv2c messages for the poller: pysnmp builds the requests, a small BER reader the answers.

Requests are pysnmp protocol-layer objects (`pysnmp.proto.api.v2c`) encoded by pyasn1, once
per request kind: a `RequestTemplate` keeps the encoded message with a fixed-width
request-id, and renders a datagram for any id by splicing four bytes. Answers are read by
`parse_response`, which walks the BER of a Response-PDU directly: a pyasn1 decode of one
answer costs about a millisecond of CPU, more than the whole per-unit budget of a sweep.
The reader is tested against pyasn1's encoder (tests/drivers/test_snmp_codec.py).

A sweep gets the same answer, in the same shape, from every unit: an `AnswerShape` reads
that one shape (the template's objects, in order, each with its expected syntax, short-form
lengths, noError) with a single regular expression in which every length octet is tied to
what it counts, about a tenth of the cost of `parse_response`. Anything else (an error, an
exception value, another syntax, a long value) it leaves to `parse_response`, so the
answers accepted, refused and their values are exactly those of `parse_response`.

Nothing here is U-SPOT specific: the unit's objects are in `drivers.uspot_mib`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from pyasn1.codec.ber import encoder
from pysnmp.proto.api import v2c

Oid = tuple[int, ...]
Value = int | bytes | None

# error-status (RFC 3416)
ERROR_STATUS = {
    0: "noError", 1: "tooBig", 2: "noSuchName", 3: "badValue", 4: "readOnly", 5: "genErr",
    6: "noAccess", 7: "wrongType", 8: "wrongLength", 9: "wrongEncoding", 10: "wrongValue",
    11: "noCreation", 12: "inconsistentValue", 13: "resourceUnavailable", 14: "commitFailed",
    15: "undoFailed", 16: "authorizationError", 17: "notWritable", 18: "inconsistentName",
}  # fmt: skip
TOO_BIG, NO_ACCESS = 1, 6

# Request ids from 0x01000000 to 0x7FFFFFFF encode as exactly four content octets.
REQUEST_ID_MIN = 0x0100_0000
REQUEST_ID_MAX = 0x7FFF_FFFF

_RESPONSE = 0xA2
_SEQUENCE, _INTEGER, _OCTETS, _NULL, _OID = 0x30, 0x02, 0x04, 0x05, 0x06
_COUNTER32, _GAUGE32, _TIMETICKS = 0x41, 0x42, 0x43
_UNSIGNED = frozenset(
    {0x41, 0x42, 0x43, 0x46, 0x47}
)  # Counter32, Gauge32, TimeTicks, Counter64, UInteger32
_EXCEPTIONS = frozenset({0x80, 0x81, 0x82})  # noSuchObject, noSuchInstance, endOfMibView


class Malformed(ValueError):
    pass


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the BER element at `pos`."""
    try:
        tag = data[pos]
        first = data[pos + 1]
    except IndexError:
        raise Malformed("truncated") from None
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 0 < count <= 4 or pos + count > len(data):
            raise Malformed("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise Malformed("truncated")
    return tag, pos, end


def _int(data: bytes, pos: int) -> tuple[int, int]:
    tag, start, end = _tlv(data, pos)
    if tag != _INTEGER:
        raise Malformed("expected INTEGER")
    return int.from_bytes(data[start:end], "big", signed=True), end


class Response(NamedTuple):
    community: bytes
    request_id: int
    error_status: int
    error_index: int
    names: list[bytes]  # each variable binding's OID, as its contents octets
    values: list[Value]  # and its value; None: no such object or instance, end of MIB view


def _decode(tag: int, raw: bytes) -> Value:
    if tag == _INTEGER:
        return int.from_bytes(raw, "big", signed=True)
    if tag in _UNSIGNED:
        return int.from_bytes(raw, "big")
    if tag in _EXCEPTIONS or tag == _NULL:
        return None
    return raw  # OCTET STRING, IpAddress, OBJECT IDENTIFIER, Opaque: the raw octets


def parse_response(data: bytes) -> Response:
    """An SNMPv2c Response-PDU; raises `Malformed` for anything else."""
    tag, pos, end = _tlv(data, 0)
    if tag != _SEQUENCE:
        raise Malformed("not a message")
    version, pos = _int(data, pos)
    if version != 1:
        raise Malformed("not SNMPv2c")
    tag, start, pos = _tlv(data, pos)
    if tag != _OCTETS:
        raise Malformed("no community")
    community = data[start:pos]
    tag, pos, _ = _tlv(data, pos)
    if tag != _RESPONSE:
        raise Malformed("not a response")
    request_id, pos = _int(data, pos)
    error_status, pos = _int(data, pos)
    error_index, pos = _int(data, pos)
    tag, pos, list_end = _tlv(data, pos)
    if tag != _SEQUENCE or list_end > end:
        raise Malformed("no variable bindings")
    try:
        names, values = _bindings(data, pos, list_end)
    except IndexError:  # a binding cut short inside the datagram
        raise Malformed("truncated") from None
    return Response(community, request_id, error_status, error_index, names, values)


def _bindings(data: bytes, pos: int, list_end: int) -> tuple[list[bytes], list[Value]]:
    names: list[bytes] = []
    values: list[Value] = []
    # Short-form lengths (every binding under 128 octets) are read inline; anything else
    # goes through _tlv.
    while pos < list_end:
        if data[pos] != _SEQUENCE:
            raise Malformed("not a variable binding")
        length = data[pos + 1]
        if length < 0x80 and data[pos + 2] == _OID and data[pos + 3] < 0x80:
            oid_end = pos + 4 + data[pos + 3]
            names.append(data[pos + 4 : oid_end])
            tag, value_length = data[oid_end], data[oid_end + 1]
            if value_length < 0x80:
                start = oid_end + 2
                end_of_value = start + value_length
                if end_of_value != pos + 2 + length:
                    raise Malformed("variable binding length")
                values.append(_decode(tag, data[start:end_of_value]))
                pos = end_of_value
                continue
            names.pop()
        tag, item, pos = _tlv(data, pos)
        tag, oid_start, oid_end = _tlv(data, item)
        if tag != _OID:
            raise Malformed("no object name")
        tag, start, end_of_value = _tlv(data, oid_end)
        if end_of_value != pos:
            raise Malformed("variable binding length")
        names.append(data[oid_start:oid_end])
        values.append(_decode(tag, data[start:end_of_value]))
    if pos != list_end:
        raise Malformed("truncated")
    return names, values


def oid_contents(oid: Oid) -> bytes:
    """The contents octets of an OBJECT IDENTIFIER (to compare with a response's names)."""
    data = bytes(encoder.encode(v2c.ObjectIdentifier(oid)))
    _, start, end = _tlv(data, 0)
    return data[start:end]


class RequestTemplate:
    """One request, encoded once by pysnmp/pyasn1; `render(id)` gives the datagram for an id."""

    def __init__(
        self, community: str, varbinds: Sequence[tuple[Oid, Any]], *, pdu: str = "get"
    ) -> None:
        message = v2c.Message()
        v2c.apiMessage.set_defaults(message)
        v2c.apiMessage.set_community(message, community)
        request = v2c.SetRequestPDU() if pdu == "set" else v2c.GetRequestPDU()
        v2c.apiPDU.set_defaults(request)
        v2c.apiPDU.set_request_id(request, REQUEST_ID_MIN)
        v2c.apiPDU.set_varbinds(request, list(varbinds))
        v2c.apiMessage.set_pdu(message, request)
        data = bytes(encoder.encode(message))
        # Find the request-id: SEQUENCE { version, community, PDU { request-id, ... } }.
        _, pos, _ = _tlv(data, 0)
        _, _, pos = _tlv(data, pos)  # version
        _, _, pos = _tlv(data, pos)  # community
        _, pos, _ = _tlv(data, pos)  # the PDU
        tag, start, end = _tlv(data, pos)
        if tag != _INTEGER or end - start != 4:
            raise AssertionError("request-id is not four octets")  # cannot happen
        self.community = community.encode()
        self.names = [oid_contents(oid) for oid, _ in varbinds]
        self._head = data[:start]
        self._tail = data[end:]
        self.size = len(data)

    def render(self, request_id: int) -> bytes:
        return self._head + request_id.to_bytes(4, "big") + self._tail


def get_template(community: str, oids: Sequence[Oid]) -> RequestTemplate:
    return RequestTemplate(community, [(oid, v2c.null) for oid in oids])


def set_octets_template(community: str, oid: Oid, value: bytes) -> RequestTemplate:
    return RequestTemplate(community, [(oid, v2c.OctetString(value))], pdu="set")


# ----- the expected answer, read in one match ----------------------------------------------
_SHORT_SIGNED = {bytes([b]): b - 256 if b & 0x80 else b for b in range(256)}
_SHAPE_TAGS = frozenset({_INTEGER, _OCTETS, _COUNTER32, _GAUGE32, _TIMETICKS})


class AnswerShape:
    """The answer a `RequestTemplate` (GET) normally gets, read by one regular expression.

    `tags` gives each object's expected syntax (INTEGER, OCTET STRING, Counter32, Gauge32 or
    TimeTicks), in the template's order. `parse(data)` returns what `parse_response(data)`
    would, when `data` is a noError answer from the template's community naming exactly the
    template's objects, each with its expected syntax and every length in short form; None
    for anything else (the caller then asks `parse_response`, which decides).

    Each variable binding is an alternation over its possible lengths, whose branches differ
    in their first octet (the binding's length), so the match never backtracks, and each
    length octet is checked against the octets it counts by the match itself.
    """

    def __init__(self, template: RequestTemplate, tags: Sequence[int]) -> None:
        if len(tags) != len(template.names) or not set(tags) <= _SHAPE_TAGS:
            raise ValueError("one INTEGER, OCTET STRING, Counter32, Gauge32 or TimeTicks a name")
        community = template.community
        head = (
            b"\\x30\\x82(..)\\x02\\x01\\x01\\x04"
            + re.escape(bytes([len(community)]) + community)
            + b"\\xa2\\x82(..)\\x02\\x04(....)\\x02\\x01\\x00\\x02\\x01\\x00\\x30\\x82(..)"
        )
        parts = [head]
        decoders: list[tuple[int, int]] = []  # (kind, offset of the value in its group)
        for name, tag in zip(template.names, tags, strict=True):
            tlv = bytes([_OID, len(name)]) + name
            fixed = len(tlv) + 2  # the name, the value's tag and its length
            if tag == _INTEGER:  # an enumeration: one content octet
                parts.append(re.escape(bytes([_SEQUENCE, fixed + 1]) + tlv + b"\x02\x01") + b"(.)")
                decoders.append((_INTEGER, 0))
                continue
            lengths = range(128 - fixed) if tag == _OCTETS else range(1, 6)
            branches = [
                re.escape(bytes([fixed + n]) + tlv + bytes([tag, n])) + b"." * n for n in lengths
            ]
            parts.append(b"\\x30(" + b"|".join(branches) + b")")
            decoders.append((tag, 1 + fixed))
        self._match = re.compile(b"".join(parts), re.DOTALL).fullmatch
        self._decoders = decoders
        self._community = community
        self._names = template.names
        # where the PDU's and the bindings' contents start: each length must reach the end
        self._pdu_from = 4 + 3 + 2 + len(community) + 4
        self._list_from = self._pdu_from + 6 + 3 + 3 + 4

    def parse(self, data: bytes) -> Response | None:
        match = self._match(data)
        if match is None:
            return None
        total = len(data)
        message, pdu, request_id, bindings, *fields = match.groups()
        if (
            int.from_bytes(message, "big") != total - 4
            or int.from_bytes(pdu, "big") != total - self._pdu_from
            or int.from_bytes(bindings, "big") != total - self._list_from
        ):
            return None
        values: list[Value] = []
        append = values.append
        for (kind, offset), raw in zip(self._decoders, fields, strict=True):
            if kind == _INTEGER:
                append(_SHORT_SIGNED[raw])
            elif kind == _OCTETS:
                append(raw[offset:])
            else:
                append(int.from_bytes(raw[offset:], "big"))
        return Response(
            self._community,
            int.from_bytes(request_id, "big", signed=True),
            0,
            0,
            self._names,
            values,
        )
