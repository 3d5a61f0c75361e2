"""The poller's SNMP codec against pysnmp/pyasn1: requests it renders, answers it reads."""

from __future__ import annotations

from typing import Any

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto.api import v2c

from drivers.snmp_codec import (
    REQUEST_ID_MAX,
    REQUEST_ID_MIN,
    AnswerShape,
    Malformed,
    get_template,
    oid_contents,
    parse_response,
    set_octets_template,
)
from drivers.uspot_mib import STATE_OBJECTS, STATE_TAGS

MAX_RESPONSE = 1472  # the unit answers tooBig above this (docs/unit-mib.md, section 1)


def response(request_id: int, varbinds: list[tuple[Any, Any]], *, status: int = 0) -> bytes:
    message = v2c.Message()
    v2c.apiMessage.set_defaults(message)
    v2c.apiMessage.set_community(message, "public")
    pdu = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, request_id)
    v2c.apiPDU.set_error_status(pdu, status)
    v2c.apiPDU.set_error_index(pdu, 1 if status else 0)
    v2c.apiPDU.set_varbinds(pdu, varbinds)
    v2c.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


@pytest.mark.parametrize("request_id", [REQUEST_ID_MIN, 0x1234_5678, REQUEST_ID_MAX])
def test_rendered_requests_decode_with_pyasn1(request_id: int) -> None:
    oids = list(STATE_OBJECTS.values())
    template = get_template("public", oids)
    message, rest = decoder.decode(template.render(request_id), asn1Spec=v2c.Message())
    assert rest == b""
    pdu = v2c.apiMessage.get_pdu(message)
    assert str(v2c.apiMessage.get_community(message)) == "public"
    assert int(v2c.apiPDU.get_request_id(pdu)) == request_id
    assert [tuple(oid) for oid, _ in v2c.apiPDU.get_varbinds(pdu)] == oids
    assert len(template.render(request_id)) == template.size


def test_set_request_carries_the_value() -> None:
    template = set_octets_template("private", STATE_OBJECTS["uspotGuestSsid"], "カフェ".encode())
    message, _ = decoder.decode(template.render(REQUEST_ID_MIN + 7), asn1Spec=v2c.Message())
    pdu = v2c.apiMessage.get_pdu(message)
    assert pdu.isSameTypeWith(v2c.SetRequestPDU())
    [(_, value)] = v2c.apiPDU.get_varbinds(pdu)
    assert bytes(value).decode() == "カフェ"


def test_answers_read_like_pyasn1_encoded_them() -> None:
    long_text = b"x" * 300  # a two-octet length
    data = response(
        0x0102_0304,
        [
            ((1, 3, 6, 1, 2, 1, 1, 3, 0), v2c.TimeTicks(123456)),
            ((1, 3, 6, 1, 4, 1, 55555, 1, 1, 1, 0), v2c.OctetString(b"US01SP000000")),
            ((1, 3, 6, 1, 4, 1, 55555, 1, 1, 2, 0), v2c.Integer(-3)),
            ((1, 3, 6, 1, 4, 1, 55555, 1, 6, 2, 0), v2c.Counter32(4294967295)),
            ((1, 3, 6, 1, 2, 1, 2, 2, 1, 5, 1), v2c.Gauge32(866700000)),
            ((1, 3, 6, 1, 4, 1, 55555, 1, 9, 9, 0), v2c.NoSuchObject("")),
            ((1, 3, 6, 1, 2, 1, 1, 5), v2c.NoSuchInstance("")),
            ((1, 3, 6, 1, 4, 1, 55555, 1, 5, 4, 0), v2c.OctetString(long_text)),
        ],
    )
    answer = parse_response(data)
    assert (answer.community, answer.request_id, answer.error_status) == (b"public", 0x01020304, 0)
    assert answer.values == [
        123456,
        b"US01SP000000",
        -3,
        4294967295,
        866700000,
        None,
        None,
        long_text,
    ]
    assert answer.names[0] == oid_contents((1, 3, 6, 1, 2, 1, 1, 3, 0))
    assert len(answer.names) == 8


def test_error_status_and_index() -> None:
    answer = parse_response(response(REQUEST_ID_MIN, [], status=1))
    assert (answer.error_status, answer.error_index, answer.values) == (1, 1, [])


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30\x03\x02\x01",  # truncated
        b"\x30\x05\x02\x01\x00\x04\x00",  # SNMPv1
        get_template("public", [(1, 3, 6, 1, 2, 1, 1, 5, 0)]).render(REQUEST_ID_MIN),  # a request
    ],
)
def test_anything_but_a_v2c_response_is_malformed(data: bytes) -> None:
    with pytest.raises(Malformed):
        parse_response(data)


def test_the_largest_possible_state_answer_fits_in_one_frame() -> None:
    """Every value at its largest: the unit can never answer our GET with tooBig."""
    ssid = "あ" * 10 + "xx"  # 32 octets of UTF-8, the most an SSID may have
    biggest: dict[str, Any] = {
        "sysUpTime": v2c.TimeTicks(4294967295),
        "uspotSerial": v2c.OctetString(b"US01SP999999"),
        "uspotParentSerial": v2c.OctetString(b"US01SP999999"),
        "uspotFirmware": v2c.OctetString(b"3.2.1"),
        "uspotWanIpv4Address": v2c.OctetString(b"255.255.255.255"),
        "uspotWanIpv6Address": v2c.OctetString(b"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        "uspotTunnelReason": v2c.OctetString(
            b"no IPv6 on the line: the unit is not on its original line"
        ),
        "uspotBusinessSsid": v2c.OctetString(ssid.encode()),
        "uspotGuestSsid": v2c.OctetString(ssid.encode()),
        "uspotBusinessPassphraseFingerprint": v2c.OctetString(b"f" * 16),
        "uspotGuestPassphraseFingerprint": v2c.OctetString(b"f" * 16),
        "uspotCommitCount": v2c.Counter32(4294967295),
    }
    varbinds = [
        (oid, biggest.get(name, v2c.Integer(2147483647))) for name, oid in STATE_OBJECTS.items()
    ]
    size = len(response(REQUEST_ID_MAX, varbinds))
    assert size < MAX_RESPONSE, size


def test_a_binding_cut_short_is_malformed() -> None:
    oid = (1, 3, 6, 1, 4, 1, 55555, 1, 1, 1, 0)
    data = bytearray(response(REQUEST_ID_MIN, [(oid, v2c.OctetString(b"x"))]))
    name = oid_contents(oid)
    # the binding's name says it runs past the end of the datagram
    data[data.index(bytes([0x06, len(name)]) + name) + 1] = 0x7F
    with pytest.raises(Malformed):
        parse_response(bytes(data))


# ----- the usual answer, read in one match --------------------------------------------------
def state_answer(request_id: int = 0x0102_0304, **values: Any) -> bytes:
    """An answer to the state GET, as a unit gives it, with `values` by MIB name."""
    usual: dict[str, Any] = {
        "sysUpTime": v2c.TimeTicks(360000),
        "uspotRole": v2c.Integer(1),
        "uspotCommitCount": v2c.Counter32(7),
        "uspotGuestSsid": v2c.OctetString("カフェ".encode()),
    }
    usual.update(values)
    varbinds = []
    for (name, oid), tag in zip(STATE_OBJECTS.items(), STATE_TAGS, strict=True):
        default = v2c.OctetString(b"US01SP000001") if tag == 0x04 else v2c.Integer(2)
        varbinds.append((oid, usual.get(name, default)))
    return response(request_id, varbinds)


def state_shape(community: str = "public") -> AnswerShape:
    return AnswerShape(get_template(community, list(STATE_OBJECTS.values())), STATE_TAGS)


def test_the_usual_answer_reads_as_parse_response_reads_it() -> None:
    shape = state_shape()
    for data in (
        state_answer(),
        state_answer(REQUEST_ID_MAX, sysUpTime=v2c.TimeTicks(4294967295)),
        state_answer(uspotGuestSsid=v2c.OctetString(b""), uspotRole=v2c.Integer(-1)),
        state_answer(uspotTunnelReason=v2c.OctetString(b"r" * 95)),
    ):
        assert shape.parse(data) == parse_response(data)


@pytest.mark.parametrize(
    "data",
    [
        state_answer(uspotRole=v2c.Integer(300)),  # two content octets
        state_answer(uspotGuestSsid=v2c.NoSuchInstance("")),
        state_answer(uspotCommitCount=v2c.Gauge32(7)),  # another syntax
        state_answer(uspotTunnelReason=v2c.OctetString(b"r" * 200)),  # long-form lengths
        response(REQUEST_ID_MIN, [], status=1),
        state_answer()[:-1],
        state_answer() + b"\0",
    ],
)
def test_any_other_answer_is_left_to_parse_response(data: bytes) -> None:
    assert state_shape().parse(data) is None


def test_another_community_is_not_the_usual_answer() -> None:
    assert state_shape("private").parse(state_answer()) is None


def test_a_damaged_answer_is_never_read_otherwise_than_by_parse_response() -> None:
    shape = state_shape()
    data = state_answer()
    for index in range(len(data)):
        for octet in {data[index] ^ 0x01, data[index] ^ 0x80, 0x00, 0x7F, 0xFF}:
            damaged = data[:index] + bytes([octet]) + data[index + 1 :]
            read = shape.parse(damaged)
            if read is None:
                continue
            assert read == parse_response(damaged), index  # Malformed would raise here
