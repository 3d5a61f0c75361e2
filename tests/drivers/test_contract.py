"""The driver contract: the same tests over every transport, against the simulated fleet.

Each test runs over asyncssh, scrapli and netmiko (the ``transport`` fixture), through the
public entry point ``load_driver(target, transport)``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace

import pytest

from drivers import Change, UnitDriver, load_driver, passphrase_fingerprint
from drivers.base import Timeouts, UnitTarget
from inventory.errors import (
    AuthFailed,
    CommandFailed,
    HostKeyMismatch,
    Timeout,
    UnitError,
    Unreachable,
)
from simulators.clock import ManualClock
from simulators.control import request
from simulators.server import ServedFleet
from tests.drivers.conftest import first, set_fault, target_for

BASE = "127.41.0.1"
TRANSPORTS = ["asyncssh", "scrapli", "netmiko"]
SHORT = Timeouts(connect=0.5, command=0.5, commit=0.5)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def driver(target: UnitTarget, transport: str) -> UnitDriver:
    return load_driver(target, transport)


# ----- reading ------------------------------------------------------------------------------
async def test_read_state_of_a_parent(served: ServedFleet, transport: str) -> None:
    unit = first(served)
    async with driver(target_for(served, unit), transport) as d:
        state = await d.read_state()
    assert state.serial == unit.serial
    assert state.role == "parent"
    assert state.firmware == "3.2.1"
    assert state.account == "active"
    assert state.internet is True
    assert state.wan is not None
    assert (state.wan.mode, state.wan.tunnel, state.wan.tunnel_state) == ("pppoe", None, None)
    assert state.wan.ipv4 is not None
    assert dict(state.lamps) == {"POWER": "on", "WAN": "on", "U": "off"}
    assert state.guest.ssid == "USPOT_FREE_Wi-Fi"
    assert state.business.state == "up"
    secret = unit.running["wlan business passphrase"]
    assert state.business.passphrase_fingerprint == passphrase_fingerprint(unit.serial, secret)
    assert state.commit_pending is False
    assert state.running is not None
    assert state.running["wlan guest ssid"] == "USPOT_FREE_Wi-Fi"
    assert state.running["wlan business passphrase"] == "********"
    assert secret not in repr(state)


async def test_read_state_of_a_child_has_no_wan(served: ServedFleet, transport: str) -> None:
    unit = first(served, "child")
    async with driver(target_for(served, unit), transport) as d:
        state = await d.read_state()
    assert (state.role, state.wan, state.internet) == ("child", None, None)
    assert state.parent == unit.parent
    assert dict(state.lamps) == {"POWER": "on", "WAN": "off", "U": "off"}


# ----- changing -----------------------------------------------------------------------------
async def test_stage_commit_confirmed_then_confirm(served: ServedFleet, transport: str) -> None:
    unit = first(served)
    change = Change(
        {"wlan guest ssid": 'Cafe "Free" Wi-Fi', "wlan guest passphrase": "new pass 123"}
    )
    async with driver(target_for(served, unit), transport) as d:
        await d.stage(change)
        diff = await d.diff()
        await d.commit_confirmed(5)
        pending = await d.read_state()
        await d.confirm()
        done = await d.read_state()
        history = await d.history()
    assert {(line.sign, line.path) for line in diff} >= {
        ("+", "wlan guest ssid"),
        ("+", "wlan guest passphrase"),
    }
    assert all(line.value == "********" for line in diff if line.path.endswith("passphrase"))
    assert (pending.commit_pending, pending.rollback_in) == (True, 300)
    assert done.commit_pending is False
    assert done.guest.ssid == 'Cafe "Free" Wi-Fi'
    assert done.guest.passphrase_fingerprint == passphrase_fingerprint(unit.serial, "new pass 123")
    assert [e.kind for e in history] == ["commit-confirmed", "confirm"]
    assert unit.running["wlan guest passphrase"] == "new pass 123"


async def test_unconfirmed_commit_rolls_back_when_the_timer_runs_out(
    served: ServedFleet, clock: ManualClock, transport: str
) -> None:
    unit = first(served)
    before = dict(unit.running)
    target = target_for(served, unit)
    async with driver(target, transport) as d:
        await d.stage(Change({"wlan guest state": "down"}))
        await d.commit_confirmed(1)
        state = await d.read_state()
    assert (state.commit_pending, state.guest.state) == (True, "down")

    clock.advance(60)  # nobody confirmed

    async with driver(target, transport) as d:
        state = await d.read_state()
        history = await d.history()
    assert (state.commit_pending, state.guest.state) == (False, "up")
    assert [e.kind for e in history] == ["commit-confirmed", "auto-rollback"]
    assert history[-1].paths == ("wlan guest state",)
    assert unit.running == before


async def test_rollback_restores_the_configuration_at_once(
    served: ServedFleet, transport: str
) -> None:
    unit = first(served)
    before = dict(unit.running)
    async with driver(target_for(served, unit), transport) as d:
        await d.stage(Change({"wlan guest ssid": "Gone Soon", "wlan business state": None}))
        await d.commit_confirmed(10)
        await d.rollback()
        state = await d.read_state()
    assert state.commit_pending is False
    assert unit.running == before
    assert [r.kind for r in unit.commit_log] == ["commit-confirmed", "rollback"]


async def test_refused_value_names_the_path_and_never_the_secret(
    served: ServedFleet, transport: str
) -> None:
    unit = first(served)
    secret = "tiny-7"  # a passphrase is 8 to 63 characters
    async with driver(target_for(served, unit), transport) as d:
        with pytest.raises(CommandFailed) as refused:
            await d.stage(Change({"wlan guest ssid": "Fine Name", "wlan guest passphrase": secret}))
        assert await d.diff() == []  # all or nothing: the SSID set before it is gone too
        with pytest.raises(CommandFailed) as too_long:
            await d.stage(Change({"wlan business ssid": "S" * 33}))
    error = refused.value
    assert error.serial == unit.serial
    assert "wlan guest passphrase" in str(error)
    for text in (str(error), repr(error), error.command, error.answer, repr(error.args)):
        assert secret not in text
    assert "wlan business ssid" in str(too_long.value)
    assert "is 33 bytes" in too_long.value.answer
    assert unit.commit_log == []


async def test_refused_commit_changes_nothing(served: ServedFleet, transport: str) -> None:
    unit = first(served)
    before = dict(unit.running)
    async with driver(target_for(served, unit), transport) as d:
        await d.stage(Change({"wan mode": "ipoe"}))
        with pytest.raises(CommandFailed, match="wan tunnel type is required"):
            await d.commit_confirmed(5)
        await d.discard()
        await d.commit()
    assert unit.running == before
    # The contract records an empty commit; the simulator (so far) does not: accept both.
    assert [r.kind for r in unit.commit_log] in (["commit"], [])


# ----- host keys ----------------------------------------------------------------------------
async def test_first_contact_trusts_and_reports_the_host_key(
    served: ServedFleet, transport: str
) -> None:
    unit = first(served)
    async with driver(target_for(served, unit, host_key=None), transport) as d:
        await d.read_state()
    assert d.seen_host_key == served.fleet.host_public_key(unit)


async def test_changed_host_key_is_refused_before_any_credential_is_sent(
    served: ServedFleet, transport: str, auth_attempts: Counter[str]
) -> None:
    unit = first(served)
    target = target_for(served, unit)  # pinned: the key the unit had until now
    answer = await request(served.control_port, {"op": "rehost", "serial": unit.serial})
    assert answer["ok"]
    d = driver(target, transport)
    with pytest.raises(HostKeyMismatch) as refused:
        async with d:
            pass
    assert refused.value.serial == unit.serial
    assert auth_attempts[unit.serial] == 0  # the unit never saw a login attempt
    assert served.ssh.sessions_served == 0
    new_key = served.fleet.host_public_key(unit)
    assert d.seen_host_key == new_key != target.host_key

    # An explicit re-pin (a new target with the new key) is the only way in.
    async with driver(replace(target, host_key=d.seen_host_key), transport) as again:
        state = await again.read_state()
    assert state.serial == unit.serial
    assert auth_attempts[unit.serial] >= 1  # the counter does see logins


# ----- faults -------------------------------------------------------------------------------
async def opening(d: UnitDriver) -> None:
    async with d:
        await d.read_state()


async def test_refused_connection_is_unreachable(served: ServedFleet, transport: str) -> None:
    unit = first(served)
    await set_fault(served, unit, refuse=True)
    with pytest.raises(Unreachable):
        await opening(driver(target_for(served, unit, timeouts=SHORT), transport))


async def test_silent_unit_is_a_timeout(served: ServedFleet, transport: str) -> None:
    unit = first(served)
    await set_fault(served, unit, blackhole=True)
    with pytest.raises(Timeout):
        await opening(driver(target_for(served, unit, timeouts=SHORT), transport))


async def test_refused_login_is_an_auth_failure(served: ServedFleet, transport: str) -> None:
    unit = first(served)
    await set_fault(served, unit, auth_fail=True)
    with pytest.raises(AuthFailed):
        await opening(driver(target_for(served, unit, timeouts=SHORT), transport))


async def test_wrong_password_is_an_auth_failure_and_not_shown(
    served: ServedFleet, transport: str
) -> None:
    unit = first(served)
    target = target_for(served, unit, password="not-the-password", timeouts=SHORT)
    with pytest.raises(AuthFailed) as refused:
        await opening(driver(target, transport))
    assert "not-the-password" not in str(refused.value)
    assert "not-the-password" not in repr(target)


async def test_dropped_session_is_unreachable(served: ServedFleet, transport: str) -> None:
    unit = first(served)
    await set_fault(served, unit, drop_after=2)
    with pytest.raises(Unreachable):
        await opening(driver(target_for(served, unit, timeouts=SHORT), transport))


async def test_answer_slower_than_the_command_timeout_is_a_timeout_not_an_auth_failure(
    served: ServedFleet, transport: str
) -> None:
    unit = first(served)
    await set_fault(served, unit, rtt=0.5)
    # scrapli and netmiko send commands while logging in: with them the time may run out
    # in the connect phase instead; it must be a Timeout either way.
    timeouts = Timeouts(connect=1.0, command=0.2, commit=0.2)
    with pytest.raises(UnitError) as failed:
        await opening(driver(target_for(served, unit, timeouts=timeouts), transport))
    assert isinstance(failed.value, Timeout), repr(failed.value)


# ----- remote login -------------------------------------------------------------------------
async def test_open_shell_gives_an_interactive_cli(served: ServedFleet, transport: str) -> None:
    unit = first(served)
    async with driver(target_for(served, unit), transport) as d:
        shell = await d.open_shell(term_type="xterm", columns=100, rows=30)
        try:
            await shell.write("show lamps\r")
            seen = ""

            async def until_answered() -> None:
                nonlocal seen
                while not ("U: off" in seen and seen.rstrip().endswith(">")):
                    chunk = await shell.read()
                    assert chunk, f"the shell ended: {seen!r}"
                    seen += chunk

            await asyncio.wait_for(until_answered(), 5)
        finally:
            await shell.close()
    assert "POWER: on\r\n" in seen  # a PTY session: CR LF line ends
