"""The SNMP poller against the simulated fleet's agent, over real UDP on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from drivers import load_driver, passphrase_fingerprint
from drivers.base import UnitState
from drivers.snmp import SnmpPoller
from inventory.errors import AuthFailed, CommandFailed, Timeout, Unreachable
from simulators.clock import ManualClock
from simulators.fleet import FleetSpec
from simulators.server import ServedFleet, serve_fleet
from tests.drivers.conftest import first, set_fault, target_for

BASE = "127.52.0.1"
SWEEP_BASE = "127.53.0.1"


@pytest.fixture
async def poller() -> AsyncIterator[SnmpPoller]:
    async with SnmpPoller(write_community="private", timeout=0.3, retries=1) as snmp:
        yield snmp


async def test_snmp_and_ssh_readings_agree(served: ServedFleet, poller: SnmpPoller) -> None:
    for unit in served.fleet:  # a parent, a child and an access point at least
        target = target_for(served, unit)
        by_snmp = await poller.read_state(target)
        async with load_driver(target) as driver:
            by_ssh = await driver.read_state()
        assert by_snmp.source == "snmp"
        assert by_snmp.running is None
        assert replace(
            by_snmp,
            running=by_ssh.running,
            read_at=by_ssh.read_at,
            source="ssh",
            rollback_in=by_ssh.rollback_in,
            wan=by_ssh.wan and replace(by_ssh.wan, pppoe_username=None),
        ) == replace(by_ssh, wan=by_ssh.wan and replace(by_ssh.wan, pppoe_username=None))
        if unit.role == "parent":
            assert by_snmp.wan is not None and by_ssh.wan is not None
            assert by_snmp.wan.pppoe_username is None  # not in the MIB


async def test_fingerprints_verify_a_known_passphrase(
    served: ServedFleet, poller: SnmpPoller
) -> None:
    unit = first(served)
    state = await poller.read_state(target_for(served, unit))
    secret = unit.running["wlan guest passphrase"]
    assert state.guest.passphrase_fingerprint == passphrase_fingerprint(unit.serial, secret)


async def test_one_bad_unit_never_stops_the_sweep(served: ServedFleet) -> None:
    units = list(served.fleet)
    silent, refused, reachable = units[0], units[1], units[2:]
    await set_fault(served, silent, snmp_timeout=True)
    await set_fault(served, refused, refuse=True)
    targets = [target_for(served, u) for u in units]
    targets.append(replace(targets[-1], serial="US01XX000000", address="not-an-address"))
    async with SnmpPoller(timeout=0.2, retries=1) as snmp:
        result = await snmp.sweep(targets)
    assert len(result) == len(targets)
    assert set(result.states) == {u.serial for u in reachable}
    assert isinstance(result.errors[silent.serial], Timeout)
    assert isinstance(result.errors[refused.serial], Timeout)  # SNMP has no "refused"
    assert isinstance(result.errors["US01XX000000"], Unreachable)
    assert "2 tries" in str(result.errors[silent.serial])
    assert snmp.stats.retries == 2
    assert snmp.stats.timeouts == 2


async def test_each_unit_is_handed_over_once_as_it_ends(served: ServedFleet) -> None:
    units = list(served.fleet)
    await set_fault(served, units[0], snmp_timeout=True)
    seen: list[tuple[str, object]] = []
    async with SnmpPoller(timeout=0.2, retries=0) as snmp:
        result = await snmp.sweep(
            [target_for(served, u) for u in units], each=lambda s, o: seen.append((s, o))
        )
    assert sorted(s for s, _ in seen) == sorted(u.serial for u in units)
    assert seen[-1][0] == units[0].serial  # the silent one ends last
    assert isinstance(seen[-1][1], Timeout)
    assert all(isinstance(outcome, UnitState) for _, outcome in seen[:-1])
    # the readings went to `each` only; the result keeps the errors
    assert (result.states, result.errors) == ({}, {units[0].serial: seen[-1][1]})


async def test_a_failing_receiver_ends_the_sweep_with_its_error(served: ServedFleet) -> None:
    def refuse(serial: str, outcome: object) -> None:
        raise RuntimeError(f"cannot take {serial}")

    async with SnmpPoller(timeout=0.2, retries=0) as snmp:
        with pytest.raises(RuntimeError, match="cannot take"):
            await snmp.sweep([target_for(served, u) for u in served.fleet], each=refuse)


async def test_wrong_community_is_a_timeout(served: ServedFleet) -> None:
    async with SnmpPoller(read_community="guess", timeout=0.2, retries=0) as snmp:
        with pytest.raises(Timeout):
            await snmp.read_state(target_for(served, first(served)))


async def test_a_late_answer_to_the_first_try_is_taken(served: ServedFleet) -> None:
    unit = first(served)
    await set_fault(served, unit, rtt=0.25)  # every answer comes after the per-try timeout
    async with SnmpPoller(timeout=0.15, retries=2) as snmp:
        state = await snmp.read_state(target_for(served, unit))
    assert state.serial == unit.serial
    assert snmp.stats.retries >= 1


async def test_the_window_bounds_requests_in_flight(served: ServedFleet) -> None:
    targets = [target_for(served, u) for u in served.fleet] * 10
    async with SnmpPoller(window=3) as snmp:
        result = await snmp.sweep(targets)
    assert not result.errors
    assert snmp.stats.max_in_flight == 3
    assert snmp.stats.sent == len(targets)


async def test_set_guest_ssid(served: ServedFleet, poller: SnmpPoller) -> None:
    unit = first(served)
    target = target_for(served, unit)
    await poller.set_guest_ssid(target, "Cafe Kimura")
    state = await poller.read_state(target)
    assert state.guest.ssid == "Cafe Kimura"
    assert [(r.kind, r.user, r.paths) for r in unit.commit_log] == [
        ("snmp-set", "snmp", ("wlan guest ssid",))
    ]
    with pytest.raises(CommandFailed, match=r"wlan guest ssid.*wrongLength"):
        await poller.set_guest_ssid(target, "S" * 33)
    async with SnmpPoller(write_community="public", timeout=0.3) as read_only:
        with pytest.raises(AuthFailed):
            await read_only.set_guest_ssid(target, "Nope")
    assert unit.running["wlan guest ssid"] == "Cafe Kimura"


async def test_closing_the_poller_ends_what_is_still_waiting(served: ServedFleet) -> None:
    unit = first(served)
    await set_fault(served, unit, snmp_timeout=True)
    async with SnmpPoller(timeout=5) as snmp:
        reading = asyncio.ensure_future(snmp.read_state(target_for(served, unit)))
        await asyncio.sleep(0.05)
    with pytest.raises(Unreachable, match="closed"):
        await reading


# ----- a thousand units -------------------------------------------------------------------
@pytest.fixture
async def big_fleet(tmp_path: Path) -> AsyncIterator[ServedFleet]:
    spec = FleetSpec(units=1000, base_address=SWEEP_BASE, seed=7)
    async with serve_fleet(spec, state_dir=tmp_path / "sim", clock=ManualClock()) as fleet:
        yield fleet


async def test_a_thousand_units_in_one_sweep_lose_no_answer(big_fleet: ServedFleet) -> None:
    targets = [target_for(big_fleet, unit) for unit in big_fleet.fleet]
    assert len(targets) == 1000
    async with SnmpPoller(timeout=2.0, retries=1) as snmp:
        started = time.perf_counter()
        result = await snmp.sweep(targets)
        elapsed = time.perf_counter() - started
    assert result.errors == {}
    assert len(result.states) == 1000
    assert all(state.serial == serial for serial, state in result.states.items())
    assert snmp.stats.answers == 1000
    assert snmp.stats.retries == 0
    assert snmp.stats.max_in_flight <= snmp.window
    assert elapsed < 10, elapsed  # the agent shares this event loop; ~0.5 s here
