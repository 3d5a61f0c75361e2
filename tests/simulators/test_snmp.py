"""The SNMP agent of the simulated units, driven by net-snmp's own tools over loopback.

Every unit has its own loopback address and all of them share the agent's one port.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto.api import v2c

from simulators.clock import ManualClock
from simulators.mib import UnitMib, uspot_oid
from simulators.snmp import MAX_MESSAGE_SIZE, SnmpAgent, respond
from simulators.unit import Line, Unit

U = "1.3.6.1.4.1.55555.1"
SERIAL = f"{U}.1.1.0"
ROLE = f"{U}.1.2.0"
PARENT_SERIAL = f"{U}.1.3.0"
WAN_MODE = f"{U}.2.1.0"
TUNNEL_TYPE = f"{U}.2.2.0"
TUNNEL_STATE = f"{U}.2.3.0"
INTERNET = f"{U}.2.6.0"
LAMP_WAN = f"{U}.3.2.0"
LAMP_U = f"{U}.3.3.0"
BUSINESS_SSID = f"{U}.5.1.0"
BUSINESS_FINGERPRINT = f"{U}.5.3.0"
GUEST_SSID = f"{U}.5.4.0"
COMMIT_COUNT = f"{U}.6.2.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"

V4, V6, CHILD = "127.20.0.1", "127.20.0.2", "127.20.0.3"
SECRETS = ("StaffOnly-2024!", "WelcomeGuest88", "pppSecret9", "ChildStaff-77")
WLANS = {
    "wlan business ssid": "Shop-Staff",
    "wlan business passphrase": "StaffOnly-2024!",
    "wlan guest ssid": "Shop-Guest",
    "wlan guest passphrase": "WelcomeGuest88",
}
DS_LITE = {"type": "ds-lite", "aftr": "2001:db8::1"}


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def units(sim_clock: ManualClock) -> dict[str, Unit]:
    v4 = Unit(
        "USP0000001",
        "parent",
        sim_clock,
        line=Line(pppoe_username="shop1@isp"),
        config={
            "wan mode": "pppoe",
            "wan pppoe username": "shop1@isp",
            "wan pppoe password": "pppSecret9",
            **WLANS,
        },
    )
    v6 = Unit(
        "USP0000002",
        "parent",
        sim_clock,
        line=Line(v6_ready=True, tunnel=dict(DS_LITE)),
        config={
            "wan mode": "ipoe",
            "wan tunnel type": "ds-lite",
            "wan tunnel aftr": "2001:db8::1",
            **WLANS,
        },
    )
    child = Unit(
        "USP0000003",
        "child",
        sim_clock,
        parent="USP0000001",
        config={"wlan business ssid": "Back-Office", "wlan business passphrase": "ChildStaff-77"},
    )
    sim_clock.advance(90)
    return {V4: v4, V6: v6, CHILD: child}


@pytest.fixture
async def agent(units: dict[str, Unit]) -> AsyncIterator[SnmpAgent]:
    server = SnmpAgent(units.get, host="0.0.0.0", port=0)
    await server.start()
    try:
        yield server
    finally:
        server.close()


async def net_snmp(
    tool: str, *args: str, community: str = "public", timeout: float = 1.0
) -> tuple[int, str]:
    """Run a net-snmp tool; (exit status, stdout and stderr together)."""
    proc = await asyncio.create_subprocess_exec(
        f"/usr/bin/{tool}",
        "-v2c",
        "-c",
        community,
        "-t",
        str(timeout),
        "-r",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def get_values(agent: SnmpAgent, address: str, *oids: str) -> list[str]:
    code, out = await net_snmp("snmpget", "-Oqv", f"{address}:{agent.port}", *oids)
    assert code == 0, out
    return out.splitlines()


async def walk(agent: SnmpAgent, address: str, tool: str = "snmpwalk") -> str:
    code, out = await net_snmp(tool, "-On", f"{address}:{agent.port}", "1.3.6")
    assert code == 0, out
    return out


# ----- reading ----------------------------------------------------------------------------
async def test_each_address_answers_for_its_own_unit(agent: SnmpAgent) -> None:
    v4 = await get_values(agent, V4, SERIAL, ROLE, WAN_MODE, LAMP_U, SYS_NAME)
    v6 = await get_values(agent, V6, SERIAL, ROLE, WAN_MODE, LAMP_U, SYS_NAME)
    child = await get_values(agent, CHILD, SERIAL, ROLE, WAN_MODE, PARENT_SERIAL, INTERNET)
    assert v4 == ['"USP0000001"', "1", "1", "2", '"USP0000001"']
    assert v6 == ['"USP0000002"', "1", "2", "1", '"USP0000002"']
    assert child == ['"USP0000003"', "2", "0", '"USP0000001"', "3"]


async def test_v6_unit_shows_tunnel_up_and_u_lamp_on(agent: SnmpAgent) -> None:
    values = await get_values(
        agent,
        V6,
        WAN_MODE,
        TUNNEL_TYPE,
        TUNNEL_STATE,
        INTERNET,
        LAMP_WAN,
        LAMP_U,
        "1.3.6.1.2.1.2.2.1.3.4",
        "1.3.6.1.2.1.2.2.1.8.4",
        f"{IF_NAME}.4",
    )
    # ipoe, ds-lite, tunnel up, internet up, WAN lamp on, U lamp on, tun0 a tunnel and up
    assert values == ["2", "1", "1", "1", "1", "1", "131", "1", '"tun0"']


async def test_v6_unit_without_its_4over6_order_shows_tunnel_down(
    agent: SnmpAgent, units: dict[str, Unit]
) -> None:
    units[V6].line.v6_ready = False
    values = await get_values(agent, V6, TUNNEL_STATE, LAMP_U, f"{U}.2.7.0")
    assert values == ["2", "2", '"no IPv6 on the line: the 4over6 order is not complete"']


async def test_missing_objects_and_instances(agent: SnmpAgent) -> None:
    code, out = await net_snmp(
        "snmpget",
        "-On",
        f"{V4}:{agent.port}",
        "1.3.6.1.2.1.1.5",
        f"{U}.9.1.0",
        "1.3.6.1.2.1.2.2.1.2.4",
    )
    assert code == 0, out
    lines = out.splitlines()
    assert "No Such Instance" in lines[0]  # sysName without its .0
    assert "No Such Object" in lines[1]
    assert "No Such Instance" in lines[2]  # no tun0 on a PPPoE unit


async def test_walk_covers_the_tree_in_order_and_ends(agent: SnmpAgent) -> None:
    out = await walk(agent, V4)
    assert f'.{SYS_NAME} = STRING: "USP0000001"' in out
    assert f'.{IF_NAME}.1 = STRING: "wan0"' in out
    assert f'.{IF_NAME}.3 = STRING: "wlan1"' in out
    assert f'.{GUEST_SSID} = STRING: "Shop-Guest"' in out
    assert "No more variables left in this MIB View" in out.splitlines()[-1]
    oids = [
        tuple(int(arc) for arc in line.split(" ", 1)[0].strip(".").split("."))
        for line in out.splitlines()[:-1]
    ]
    assert oids == sorted(oids) and len(set(oids)) == len(oids)
    assert len(oids) == len(UnitMib(Unit("X", "parent", ManualClock())).walk())
    # GETBULK walks the same objects
    bulk = await walk(agent, V4, "snmpbulkwalk")
    assert [line.split(" = ")[0] for line in bulk.splitlines()] == [
        line.split(" = ")[0] for line in out.splitlines()
    ]


async def test_bulk_get_with_non_repeaters(agent: SnmpAgent) -> None:
    code, out = await net_snmp(
        "snmpbulkget",
        "-On",
        "-Cn1",
        "-Cr3",
        f"{CHILD}:{agent.port}",
        SYS_UPTIME,
        IF_NAME,
    )
    assert code == 0, out
    assert out.splitlines() == [
        '.1.3.6.1.2.1.1.4.0 = STRING: "U-SPOT Support Center"',
        f'.{IF_NAME}.1 = STRING: "lan0"',
        f'.{IF_NAME}.2 = STRING: "wlan0"',
        f'.{IF_NAME}.3 = STRING: "wlan1"',
    ]


async def test_no_passphrase_is_readable_anywhere(agent: SnmpAgent, units: dict[str, Unit]) -> None:
    for address, unit in units.items():
        out = await walk(agent, address)
        bulk = await walk(agent, address, "snmpbulkwalk")
        for secret in SECRETS:
            assert secret not in out and secret not in bulk
            assert secret.encode().hex(" ").upper() not in out
        fingerprint = unit.passphrase_fingerprint("business")
        assert f'.{BUSINESS_FINGERPRINT} = STRING: "{fingerprint}"' in out
    for unit in units.values():
        for _oid, (_kind, value) in UnitMib(unit).walk():
            text = value if isinstance(value, bytes) else str(value).encode()
            assert not any(secret.encode() in text for secret in SECRETS)


# ----- writing ----------------------------------------------------------------------------
async def test_set_guest_ssid_with_the_write_community(
    agent: SnmpAgent, units: dict[str, Unit]
) -> None:
    unit = units[V4]
    code, out = await net_snmp(
        "snmpset",
        "-On",
        f"{V4}:{agent.port}",
        GUEST_SSID,
        "s",
        "Cafe Guest",
        community="private",
    )
    assert code == 0, out
    assert unit.running["wlan guest ssid"] == "Cafe Guest"
    record = unit.commit_log[-1]
    assert (record.kind, record.user, record.paths) == ("snmp-set", "snmp", ("wlan guest ssid",))
    assert await get_values(agent, V4, GUEST_SSID, COMMIT_COUNT) == [
        '"Cafe Guest"',
        str(unit.commit_seq),
    ]
    assert units[V6].running["wlan guest ssid"] == "Shop-Guest"  # only that unit


async def test_set_with_the_read_community_is_refused(
    agent: SnmpAgent, units: dict[str, Unit]
) -> None:
    code, out = await net_snmp("snmpset", f"{V4}:{agent.port}", GUEST_SSID, "s", "Cafe Guest")
    assert code != 0
    assert "noAccess" in out
    assert units[V4].running["wlan guest ssid"] == "Shop-Guest"
    assert units[V4].commit_seq == 0


@pytest.mark.parametrize(
    ("kind", "value", "error"),
    [
        ("s", "x" * 33, "wrongLength"),
        ("x", "41 01 42", "wrongValue"),  # a control character: the unit refuses it
        ("x", "41 FF 42", "wrongValue"),  # not UTF-8
        ("i", "5", "wrongType"),
    ],
)
async def test_set_of_a_value_the_unit_refuses(
    agent: SnmpAgent, units: dict[str, Unit], kind: str, value: str, error: str
) -> None:
    code, out = await net_snmp(
        "snmpset", f"{V4}:{agent.port}", GUEST_SSID, kind, value, community="private"
    )
    assert code != 0
    assert error in out
    assert units[V4].running["wlan guest ssid"] == "Shop-Guest"
    assert units[V4].commit_seq == 0


async def test_set_of_a_read_only_object_is_not_writable(
    agent: SnmpAgent, units: dict[str, Unit]
) -> None:
    code, out = await net_snmp(
        "snmpset", f"{V4}:{agent.port}", BUSINESS_SSID, "s", "Other", community="private"
    )
    assert code != 0
    assert "notWritable" in out
    assert units[V4].running["wlan business ssid"] == "Shop-Staff"


async def test_set_is_all_or_nothing(agent: SnmpAgent, units: dict[str, Unit]) -> None:
    code, out = await net_snmp(
        "snmpset",
        f"{V4}:{agent.port}",
        GUEST_SSID,
        "s",
        "Fine",
        BUSINESS_SSID,
        "s",
        "No",
        community="private",
    )
    assert code != 0
    assert "notWritable" in out
    assert f"Failed object: iso.{BUSINESS_SSID[2:]}" in out
    assert units[V4].running["wlan guest ssid"] == "Shop-Guest"
    assert units[V4].commit_seq == 0


# ----- no answer --------------------------------------------------------------------------
async def assert_timeout(agent: SnmpAgent, address: str, community: str = "public") -> None:
    code, out = await net_snmp(
        "snmpget", f"{address}:{agent.port}", SERIAL, community=community, timeout=0.5
    )
    assert code != 0
    assert "Timeout" in out


async def test_wrong_community_gets_no_answer(agent: SnmpAgent) -> None:
    await assert_timeout(agent, V4, community="guess")


async def test_unknown_address_gets_no_answer(agent: SnmpAgent) -> None:
    await assert_timeout(agent, "127.20.0.99")


@pytest.mark.parametrize("fault", ["snmp_timeout", "refuse", "blackhole"])
async def test_faulted_unit_gets_no_answer(
    agent: SnmpAgent, units: dict[str, Unit], fault: str
) -> None:
    setattr(units[V4].faults, fault, True)
    await assert_timeout(agent, V4)
    assert await get_values(agent, V6, SERIAL) == ['"USP0000002"']  # the others still answer


async def test_rebooting_unit_answers_again_once_booted(
    agent: SnmpAgent, units: dict[str, Unit], sim_clock: ManualClock
) -> None:
    units[V4].reboot()
    await assert_timeout(agent, V4)
    sim_clock.advance(units[V4].boot_seconds + 5)
    assert await get_values(agent, V4, SYS_UPTIME) == ["0:0:00:05.00"]


async def test_rtt_fault_delays_the_answer(agent: SnmpAgent, units: dict[str, Unit]) -> None:
    units[V4].faults.rtt = 0.4
    started = time.monotonic()
    assert await get_values(agent, V4, SERIAL) == ['"USP0000001"']
    assert time.monotonic() - started >= 0.4


# ----- the codec, without sockets -----------------------------------------------------------
def _message(pdu: object, community: str = "public", version: int = 1) -> bytes:
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    if version != 1:
        msg.setComponentByPosition(0, version)
    return bytes(encoder.encode(msg))


def _request(pdu_type: type, *oids: tuple[int, ...], request_id: int = 4711) -> object:
    pdu = pdu_type()
    api = v2c.apiBulkPDU if pdu_type is v2c.GetBulkRequestPDU else v2c.apiPDU
    api.set_defaults(pdu)
    api.set_request_id(pdu, request_id)
    api.set_varbinds(pdu, [(oid, v2c.null) for oid in oids])
    return pdu


def _decode(reply: bytes | None) -> tuple[int, int, int, list[tuple[tuple[int, ...], object]]]:
    assert reply is not None
    msg, rest = decoder.decode(reply, asn1Spec=v2c.Message())
    assert not rest
    pdu = v2c.apiMessage.get_pdu(msg)
    return (
        int(v2c.apiPDU.get_request_id(pdu)),
        int(v2c.apiPDU.get_error_status(pdu)),
        int(v2c.apiPDU.get_error_index(pdu)),
        [(tuple(oid), value) for oid, value in v2c.apiPDU.get_varbinds(pdu)],
    )


def _answer(unit: Unit, pdu: object, community: str = "public") -> bytes | None:
    return respond(unit, _message(pdu, community), b"public", b"private")


def test_get_reply_decodes_with_pysnmp(units: dict[str, Unit]) -> None:
    pdu = _request(
        v2c.GetRequestPDU,
        uspot_oid("uspotSerial"),
        (1, 3, 6, 1, 2, 1, 1, 3, 0),
        (1, 3, 6, 1, 2, 1, 1, 2, 0),
        (1, 3, 6, 1, 2, 1, 1, 7),
    )
    request_id, status, index, varbinds = _decode(_answer(units[V4], pdu))
    assert (request_id, status, index) == (4711, 0, 0)
    assert bytes(varbinds[0][1]) == b"USP0000001"
    assert varbinds[1][1].isSameTypeWith(v2c.TimeTicks()) and int(varbinds[1][1]) == 9000
    assert tuple(varbinds[2][1]) == (1, 3, 6, 1, 4, 1, 55555, 2, 1)
    assert varbinds[3][1].isSameTypeWith(v2c.NoSuchInstance())


def test_getnext_past_the_end_is_end_of_mib_view(units: dict[str, Unit]) -> None:
    last = uspot_oid("uspotCommitCount")
    pdu = _request(v2c.GetNextRequestPDU, last, (2, 0), (1, 3, 6, 1, 4, 1, 55555, 1))
    _rid, status, _index, varbinds = _decode(_answer(units[V4], pdu))
    assert status == 0
    assert varbinds[0][0] == last and varbinds[0][1].isSameTypeWith(v2c.EndOfMibView())
    assert varbinds[1][0] == (2, 0) and varbinds[1][1].isSameTypeWith(v2c.EndOfMibView())
    assert varbinds[2][0] == uspot_oid("uspotSerial")


def test_getbulk_is_cut_to_the_message_size(units: dict[str, Unit]) -> None:
    pdu = _request(v2c.GetBulkRequestPDU, (1, 3, 6))
    v2c.apiBulkPDU.set_max_repetitions(pdu, 10_000)
    reply = _answer(units[V6], pdu)
    assert reply is not None and len(reply) <= MAX_MESSAGE_SIZE
    _rid, status, _index, varbinds = _decode(reply)
    walked = [oid for oid, _value in UnitMib(units[V6]).walk()]
    assert status == 0
    assert [oid for oid, _value in varbinds] == walked[: len(varbinds)]
    assert 10 < len(varbinds) < len(walked)


def test_get_too_big_for_one_message(units: dict[str, Unit]) -> None:
    descr = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2, 1)
    _rid, status, index, varbinds = _decode(
        _answer(units[V4], _request(v2c.GetRequestPDU, *[descr] * 80))
    )
    assert (status, index, varbinds) == (1, 0, [])  # tooBig


def test_internal_failure_is_gen_err(
    units: dict[str, Unit], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> dict[str, str]:
        raise RuntimeError("lamp driver")

    monkeypatch.setattr(units[V4], "lamps", broken)
    pdu = _request(v2c.GetRequestPDU, uspot_oid("uspotLampU"))
    assert _decode(_answer(units[V4], pdu))[1:] == (5, 0, [])  # genErr
    pdu = _request(v2c.GetRequestPDU, uspot_oid("uspotSerial"))
    assert bytes(_decode(_answer(units[V4], pdu))[3][0][1]) == b"USP0000001"


def test_what_an_agent_does_not_answer(units: dict[str, Unit]) -> None:
    get = _request(v2c.GetRequestPDU, uspot_oid("uspotSerial"))
    assert _answer(units[V4], get, community="nobody") is None
    assert respond(units[V4], _message(get, version=0), b"public", b"private") is None
    assert respond(units[V4], b"\x30\x03\x02\x01", b"public", b"private") is None
    assert respond(units[V4], b"", b"public", b"private") is None
    response = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(response)
    assert _answer(units[V4], response) is None


def test_set_reply_echoes_the_request(units: dict[str, Unit]) -> None:
    pdu = v2c.SetRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, 99)
    v2c.apiPDU.set_varbinds(pdu, [(uspot_oid("uspotGuestSsid"), v2c.OctetString(b"Lobby"))])
    _rid, status, _index, varbinds = _decode(_answer(units[CHILD], pdu, community="private"))
    assert status == 0 and bytes(varbinds[0][1]) == b"Lobby"
    assert units[CHILD].running["wlan guest ssid"] == "Lobby"
    v2c.apiPDU.set_varbinds(pdu, [(uspot_oid("uspotGuestSsid"), v2c.OctetString(b""))])
    _rid, status, index, _varbinds = _decode(_answer(units[CHILD], pdu, community="private"))
    assert (status, index) == (8, 1)  # wrongLength
    assert units[CHILD].running["wlan guest ssid"] == "Lobby"


# ----- many units on one socket -------------------------------------------------------------
class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[tuple[str, bytes]]] = {}

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request_id, _status, _index, varbinds = _decode(data)
        future = self.waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result((addr[0], bytes(varbinds[0][1])))


async def test_a_thousand_units_each_answer_one_get(sim_clock: ManualClock) -> None:
    fleet = {
        f"127.21.{i // 250}.{i % 250 + 1}": Unit(f"USP1{i:06d}", "parent", sim_clock)
        for i in range(1000)
    }
    server = SnmpAgent(fleet.get)
    await server.start()
    loop = asyncio.get_running_loop()
    transport, collector = await loop.create_datagram_endpoint(
        _Collector, local_addr=("127.0.0.1", 0)
    )
    # room for a whole window of replies while the test decodes them with pyasn1
    transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    window = asyncio.Semaphore(200)

    async def ask(number: int, address: str) -> tuple[str, str, bytes] | None:
        request_id = 10_000 + number
        data = _message(
            _request(v2c.GetRequestPDU, uspot_oid("uspotSerial"), request_id=request_id)
        )
        async with window:
            future: asyncio.Future[tuple[str, bytes]] = loop.create_future()
            collector.waiting[request_id] = future
            transport.sendto(data, (address, server.port))
            try:
                source, serial = await asyncio.wait_for(future, 10)
            except TimeoutError:
                return None
        return address, source, serial

    try:
        answers = await asyncio.gather(
            *(ask(number, address) for number, address in enumerate(fleet))
        )
    finally:
        transport.close()
        server.close()
    lost = [address for address, answer in zip(fleet, answers, strict=True) if answer is None]
    assert lost == []
    for answer in answers:
        assert answer is not None
        address, source, serial = answer
        assert source == address  # answered from the unit's own address
        assert serial == fleet[address].serial.encode()
