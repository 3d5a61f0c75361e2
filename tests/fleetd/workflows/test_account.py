"""ACCOUNT_STOP and ACCOUNT_RESUME over real SSH."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from fleetd.clock import JST
from fleetd.workflows.base import ACCOUNT_RESUME, ACCOUNT_STOP
from inventory import repo
from inventory.errors import NotFound, RuleViolation
from tests.fleetd.workflows.conftest import AP, CUST0, P0, Harness

BASE = "127.83.0.1"


async def test_a_stop_leaves_no_internet_and_no_wifi(pg_harness: Harness) -> None:
    h = pg_harness
    stop_at = datetime(2026, 11, 30, 23, 59, tzinfo=JST)
    [op] = await h.request(ACCOUNT_STOP, P0, {"not_before": stop_at.isoformat()})
    assert (op.unit_serial, op.customer_code, op.not_before) == (P0, CUST0, stop_at)
    assert op.deadline == stop_at + timedelta(hours=12)  # counted from when it is due

    summary = await h.run(op)

    assert "account stopped" in summary and "awaiting removal" in summary
    sim = h.unit(P0)
    assert not sim.internet
    assert (sim.wlan_state("business"), sim.wlan_state("guest")) == ("down", "down")
    assert h.kinds(P0) == ["commit-confirmed", "confirm"]
    async with h.store.sessions() as session:
        assert (await repo.get_unit(session, P0)).intended_account_state == "stopped"
        seen = await repo.get_observation(session, P0)
    assert seen is not None and seen.account_state == "stopped"
    assert (await h.step_names(op))[-1] == "awaiting removal"
    [entry] = await h.audits(ACCOUNT_STOP)
    assert (entry.before, entry.after) == ({"account state": None}, {"account state": "stopped"})


async def test_a_stop_already_made_sends_nothing(harness: Harness) -> None:
    [op] = await harness.request(ACCOUNT_STOP, AP)
    await harness.run(op)
    commits = harness.commits(AP)
    assert "already stopped" in await harness.run(op)
    assert harness.commits(AP) == commits
    assert harness.unit(AP).wlan_state("guest") == "down"


async def test_a_resume_brings_wifi_and_internet_back(harness: Harness) -> None:
    [stop] = await harness.request(ACCOUNT_STOP, P0)
    await harness.run(stop)
    [op] = await harness.request(ACCOUNT_RESUME, P0)

    summary = await harness.run(op)

    assert "resumed, Wi-Fi and internet up" in summary
    sim = harness.unit(P0)
    assert sim.internet and sim.wlan_state("business") == "up"
    async with harness.store.sessions() as session:
        assert (await repo.get_unit(session, P0)).intended_account_state == "active"


async def test_a_resume_says_when_the_internet_stays_down(harness: Harness) -> None:
    [stop] = await harness.request(ACCOUNT_STOP, P0)
    await harness.run(stop)
    await harness.line(P0, pppoe_active=False)
    [op] = await harness.request(ACCOUNT_RESUME, P0)
    summary = await harness.run(op)
    assert "internet still down" in summary and "PPPoE" in summary
    assert harness.unit(P0).wlan_state("guest") == "up"  # the shop has its Wi-Fi back


async def test_a_resume_of_an_active_unit_sends_nothing(harness: Harness) -> None:
    [op] = await harness.request(ACCOUNT_RESUME, AP)
    assert "already active" in await harness.run(op)
    assert harness.commits(AP) == []


async def test_a_stop_request_checks_its_target_and_times(harness: Harness) -> None:
    with pytest.raises(NotFound):
        await harness.request(ACCOUNT_STOP, "US01SP999999")
    with pytest.raises(RuleViolation, match="no time zone") as refused:
        await harness.request(ACCOUNT_STOP, P0, {"not_before": "2026-11-30T23:59"})
    assert refused.value.field == "not_before"
    deadline = harness.clock.now() - timedelta(hours=1)
    with pytest.raises(RuleViolation, match="before not_before"):
        await harness.request(ACCOUNT_STOP, P0, {"deadline": deadline})
