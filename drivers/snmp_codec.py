"""SNMPv2c messages for the poller: pysnmp builds the requests, a small BER reader the answers.

Requests are pysnmp protocol-layer objects (`pysnmp.proto.api.v2c`) encoded by pyasn1, once
per request kind: a `RequestTemplate` keeps the encoded message with a fixed-width
request-id, and renders a datagram for any id by splicing four bytes. Answers are read by
`parse_response`, which walks the BER of a Response-PDU directly: a pyasn1 decode of one
answer costs about a millisecond of CPU, more than the whole per-unit budget of a sweep.
The reader is tested against pyasn1's encoder (tests/drivers/test_snmp_codec.py).

Nothing here is U-SPOT specific: the unit's objects are in `drivers.uspot_mib`.
"""

from __future__ import annotations

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
