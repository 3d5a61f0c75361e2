"""Every fault kind, seen from an SSH client over real loopback sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh
import pytest

from simulators.clock import ManualClock
from simulators.control import request
from simulators.server import ServedFleet
from simulators.unit import Unit


def first(served: ServedFleet, role: str = "parent") -> Unit:
    return next(u for u in served.fleet if u.role == role)


def connect(served: ServedFleet, unit: Unit, **kwargs: Any) -> Any:
    options: dict[str, Any] = {
        "username": "admin",
        "password": served.fleet.password_of(unit.serial),
        "known_hosts": None,
        "connect_timeout": 5,
        "login_timeout": 5,
    }
    options.update(kwargs)
    return asyncssh.connect(served.fleet.address_of[unit.serial], served.ssh_port, **options)


async def fault(served: ServedFleet, unit: Unit, **values: Any) -> None:
    answer = await request(
        served.control_port, {"op": "fault", "serial": unit.serial, "set": values}
    )
    assert answer["ok"], answer


async def test_each_unit_answers_on_its_own_address_with_its_own_host_key(
    served: ServedFleet,
) -> None:
    keys = set()
    for unit in served.fleet:
        async with connect(served, unit) as conn:
            result = await conn.run("show status", check=True)
            assert f"serial: {unit.serial}" in str(result.stdout)
            keys.add(conn.get_server_host_key().export_public_key())
    assert len(keys) == len(served.fleet)


async def test_refused_unit_resets_the_connection_at_once(served: ServedFleet) -> None:
    unit = first(served)
    await fault(served, unit, refuse=True)
    with pytest.raises((ConnectionError, asyncssh.ConnectionLost, asyncssh.DisconnectError)):
        async with connect(served, unit):
            pass
    await request(served.control_port, {"op": "clear", "serial": unit.serial})
    async with connect(served, unit) as conn:
        assert (await conn.run("show status")).exit_status == 0


async def test_blackholed_unit_never_answers(served: ServedFleet) -> None:
    unit = first(served)
    await fault(served, unit, blackhole=True)
    with pytest.raises((asyncio.TimeoutError, asyncssh.ConnectionLost)):
        async with connect(served, unit, connect_timeout=0.5, login_timeout=0.5):
            pass


async def test_auth_failure_refuses_the_right_password_and_the_fleet_key(
    served: ServedFleet,
) -> None:
    unit = first(served)
    await fault(served, unit, auth_fail=True)
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(served, unit):
            pass
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(served, unit, password=None, client_keys=[served.client_key]):
            pass


async def test_wrong_password_is_refused(served: ServedFleet) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(served, first(served), password="not-the-password"):
            pass


async def test_slow_unit_answers_only_after_its_round_trip_time(served: ServedFleet) -> None:
    unit = first(served)
    await fault(served, unit, rtt=0.6)
    async with connect(served, unit) as conn:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(conn.run("show status"), 0.2)
        result = await conn.run("show status")
        assert unit.serial in str(result.stdout)


async def test_slow_commit_holds_the_commit_not_the_show(served: ServedFleet) -> None:
    unit = first(served)
    await fault(served, unit, commit_delay=0.6)
    async with connect(served, unit) as conn:
        await asyncio.wait_for(conn.run("show status", check=True), 5)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(conn.run("configure; set wlan guest ssid Slow; commit"), 0.2)
        await conn.run("configure; set wlan guest ssid Slow; commit", check=True)
    assert unit.running["wlan guest ssid"] == "Slow"


async def test_dropped_session_loses_the_line_mid_session(served: ServedFleet) -> None:
    unit = first(served)
    await fault(served, unit, drop_after=2)
    async with connect(served, unit) as conn:
        process = await conn.create_process(term_type="vt100")
        await process.stdout.readuntil("> ")
        process.stdin.write("show status\n")
        await process.stdout.readuntil("> ")
        process.stdin.write("configure\n")
        with pytest.raises((asyncssh.ConnectionLost, asyncio.IncompleteReadError, BrokenPipeError)):
            await asyncio.wait_for(process.stdout.readuntil("# "), 5)
    assert unit.is_up()


async def test_reboot_during_commit_drops_the_session_and_keeps_the_old_config(
    served: ServedFleet, clock: ManualClock
) -> None:
    unit = first(served)
    before = dict(unit.running)
    await fault(served, unit, reboot_on_commit=True)
    async with connect(served, unit) as conn:
        with pytest.raises((asyncssh.ConnectionLost, asyncssh.ChannelOpenError)):
            result = await conn.run("configure; set wlan guest ssid Lost; commit")
            # A result with no exit status is a lost line too.
            if result.exit_status is None:
                raise asyncssh.ConnectionLost("no exit status")
    assert unit.running == before
    assert not unit.is_up()
    with pytest.raises((ConnectionError, asyncssh.ConnectionLost, asyncssh.DisconnectError)):
        async with connect(served, unit):
            pass
    clock.advance(unit.boot_seconds)
    async with connect(served, unit) as conn:
        status = (await conn.run("show status", check=True)).stdout
    assert "uptime: 0" in str(status)
    assert [r.kind for r in unit.commit_log][-1] == "reboot"


async def test_reboot_from_control_drops_open_sessions(served: ServedFleet) -> None:
    unit = first(served)
    async with connect(served, unit) as conn:
        process = await conn.create_process(term_type="vt100")
        await process.stdout.readuntil("> ")
        answer = await request(served.control_port, {"op": "reboot", "serial": unit.serial})
        assert answer["ok"]
        with pytest.raises((asyncssh.ConnectionLost, asyncio.IncompleteReadError, BrokenPipeError)):
            process.stdin.write("show status\n")
            await asyncio.wait_for(process.stdout.readuntil("> "), 5)


async def test_changed_host_key_is_noticed_by_a_pinned_client(served: ServedFleet) -> None:
    unit = first(served)
    address = served.fleet.address_of[unit.serial]
    pinned = asyncssh.import_known_hosts(
        f"[{address}]:{served.ssh_port} {served.fleet.host_public_key(unit)}\n"
    )
    async with connect(served, unit, known_hosts=pinned):
        pass
    answer = await request(served.control_port, {"op": "rehost", "serial": unit.serial})
    assert answer["ok"]
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(served, unit, known_hosts=pinned):
            pass


async def test_flapping_unit_is_reachable_and_unreachable_by_turns(
    served: ServedFleet, clock: ManualClock
) -> None:
    unit = first(served)
    await fault(served, unit, flap_period=30)
    seen = []
    for _ in range(4):
        try:
            async with connect(served, unit) as conn:
                await conn.run("show status", check=True)
            seen.append(True)
        except (ConnectionError, asyncssh.ConnectionLost, asyncssh.DisconnectError):
            seen.append(False)
        clock.advance(30)
    assert seen == [True, False, True, False]


async def test_fleet_wide_latency_profile_applies_to_every_unit(served: ServedFleet) -> None:
    answer = await request(served.control_port, {"op": "latency", "rtt": 0.6, "commit": 0})
    assert answer["ok"]
    for unit in served.fleet:
        async with connect(served, unit) as conn:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(conn.run("show status"), 0.2)


async def test_control_refuses_unknown_faults_and_units_with_a_reason(served: ServedFleet) -> None:
    unit = first(served)
    bad = await request(
        served.control_port, {"op": "fault", "serial": unit.serial, "set": {"lag": 1}}
    )
    assert not bad["ok"] and 'unknown fault "lag"' in bad["error"]
    missing = await request(
        served.control_port, {"op": "fault", "serial": "US01NOPE0000", "set": {}}
    )
    assert not missing["ok"] and "no unit US01NOPE0000" in missing["error"]
    shown = await request(served.control_port, {"op": "unit", "serial": unit.serial})
    assert shown["units"][0]["faults"] == {}


async def test_reboot_says_goodbye_before_the_unit_goes_down(served: ServedFleet) -> None:
    unit = first(served)
    async with connect(served, unit) as conn:
        result = await conn.run("reboot")
    assert result.exit_status == 0
    assert "The unit is restarting." in str(result.stdout)
    assert not unit.is_up()


async def test_subsystem_requests_are_refused(served: ServedFleet) -> None:
    async with connect(served, first(served)) as conn:
        process = await conn.create_process(subsystem="netconf")
        result = await process.wait()
    assert result.exit_status == 1
    assert "% Unknown subsystem: netconf" in str(result.stderr)


async def test_line_facts_take_only_their_own_kind_of_value(served: ServedFleet) -> None:
    unit = first(served)
    bad = await request(
        served.control_port, {"op": "line", "serial": unit.serial, "set": {"v6_ready": "no"}}
    )
    assert not bad["ok"] and "takes true or false" in bad["error"]
    good = await request(
        served.control_port, {"op": "line", "serial": unit.serial, "set": {"v6_ready": False}}
    )
    assert good["ok"] and unit.line.v6_ready is False
