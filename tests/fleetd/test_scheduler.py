"""The schedule: when jobs fire (from any instant), the catch-up, the jobs themselves."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from fleetd import scheduler
from fleetd.cli import CliState, create_app
from fleetd.clock import JST, ManualClock
from fleetd.monthend import ReconcileResult
from fleetd.scheduler import (
    ESCALATE_OVERDUE,
    MONTH_END,
    STATUS_SWEEP,
    ScheduleConfig,
    Scheduler,
    escalate_overdue,
    missed_month_end,
    next_fire_times,
)
from fleetd.settings import Settings
from inventory import operations as ops
from inventory.operations import Operation, OpState
from inventory.redact import Redactor
from inventory.store import Store
from tests.fleetd.test_monthend import shops

CONFIG = ScheduleConfig(sweep_seconds=300, escalate_seconds=60, month_end_grace_seconds=86400)


def jst(*args: int) -> datetime:
    return datetime(*args, tzinfo=JST)


@pytest.mark.parametrize(
    ("now", "fires"),
    [
        (jst(2026, 11, 5, 9, 0), jst(2026, 11, 30, 23, 59)),
        (jst(2027, 2, 1, 0, 0), jst(2027, 2, 28, 23, 59)),
        (jst(2028, 2, 3, 12, 0), jst(2028, 2, 29, 23, 59)),  # a leap year
        (jst(2026, 12, 31, 12, 0), jst(2026, 12, 31, 23, 59)),
        (jst(2026, 11, 30, 23, 58, 30), jst(2026, 11, 30, 23, 59)),  # 30 s later, same month
        (jst(2026, 11, 30, 23, 59, 1), jst(2026, 12, 31, 23, 59)),  # just missed: next month
        (jst(2026, 12, 1, 0, 10), jst(2026, 12, 31, 23, 59)),
    ],
)
def test_the_month_end_fires_at_2359_jst_on_the_last_day(now: datetime, fires: datetime) -> None:
    # the same instant given in UTC, as the daemon's clock gives it
    nexts = next_fire_times(now.astimezone(UTC), CONFIG)
    assert nexts[MONTH_END] == fires
    assert nexts[MONTH_END].utcoffset() == timedelta(hours=9)
    assert nexts[STATUS_SWEEP] == now + timedelta(minutes=5)
    assert nexts[ESCALATE_OVERDUE] == now + timedelta(minutes=1)


def test_a_restart_after_a_missed_month_end_catches_that_month_up() -> None:
    grace = timedelta(days=1)
    assert missed_month_end(jst(2026, 12, 1, 0, 10), grace) == (2026, 11)
    assert missed_month_end(jst(2026, 11, 30, 23, 59), grace) == (2026, 11)
    assert missed_month_end(jst(2027, 1, 1, 8, 0), grace) == (2026, 12)  # over the year end
    assert missed_month_end(jst(2026, 11, 30, 23, 58, 30), grace) is None  # it fires in 30 s
    assert missed_month_end(jst(2026, 12, 2, 0, 10), grace) is None  # beyond the grace


def test_jobs_say_when_each_fires_next() -> None:
    listed = scheduler.jobs(jst(2026, 11, 30, 23, 58, 30), CONFIG)
    assert [(j.id, j.trigger, j.next_fire) for j in listed] == [
        (MONTH_END, "23:59 JST on the last day of every month", jst(2026, 11, 30, 23, 59)),
        (STATUS_SWEEP, "every 5 min", jst(2026, 12, 1, 0, 3, 30)),
        (ESCALATE_OVERDUE, "every 1 min", jst(2026, 11, 30, 23, 59, 30)),
    ]
    odd = ScheduleConfig(sweep_seconds=90, escalate_seconds=60)
    assert scheduler.describe(STATUS_SWEEP, odd) == "every 90 s"


# ----- the jobs, fired by hand ------------------------------------------------------------
class Sweeps:
    def __init__(self) -> None:
        self.at: list[datetime] = []

    async def __call__(self, now: datetime) -> str:
        self.at.append(now)
        return "swept"


def make(store: Store, now: datetime, config: ScheduleConfig = CONFIG) -> Scheduler:
    return Scheduler(store, sweep=Sweeps(), clock=ManualClock(now), config=config)


async def test_the_month_end_job_reconciles_the_month_of_its_fire_time(store: Store) -> None:
    await shops(store)
    jobs = make(store, jst(2026, 11, 30, 23, 59))
    fired = await jobs.fire(MONTH_END, jst(2026, 11, 30, 23, 59))
    assert isinstance(fired, ReconcileResult)
    assert (fired.year, fired.month, fired.created) == (2026, 11, 4)
    # read a moment early by a clock that is not APScheduler's, late, or twice: same month,
    # nothing new
    for now in (jst(2026, 11, 30, 23, 58, 59), jst(2026, 12, 1, 0, 30), jst(2026, 11, 30, 23, 59)):
        again = await jobs.fire(MONTH_END, now)
        assert isinstance(again, ReconcileResult)
        assert (again.month, again.created, again.already) == (11, 0, 4)


async def test_starting_after_a_missed_month_end_catches_up_once(store: Store) -> None:
    await shops(store)
    late = make(store, jst(2026, 12, 1, 0, 10))
    caught = await late.catch_up(jst(2026, 12, 1, 0, 10))
    assert caught is not None and (caught.year, caught.month, caught.created) == (2026, 11, 4)
    assert all(r.op.not_before == jst(2026, 12, 1, 0, 10) for r in caught.items)
    again = await late.catch_up(jst(2026, 12, 1, 0, 12))  # restarted once more: harmless
    assert again is not None and (again.created, again.already) == (0, 4)
    early = make(store, jst(2026, 11, 30, 23, 58, 30))
    assert await early.catch_up(jst(2026, 11, 30, 23, 58, 30)) is None


async def test_start_catches_up_and_registers_every_job(store: Store) -> None:
    await shops(store)
    jobs = make(store, jst(2026, 12, 1, 0, 10))
    caught = await jobs.start()
    try:
        assert jobs.running
        assert caught is not None and caught.created == 4
        listed = {j.id: j for j in jobs.jobs()}
        assert set(listed) == {MONTH_END, STATUS_SWEEP, ESCALATE_OVERDUE}
        # the live timers run on the real clock: the next month-end is a last day at 23:59
        month_end = listed[MONTH_END].next_fire
        assert month_end is not None
        assert (month_end.hour, month_end.minute, (month_end + timedelta(days=1)).day) == (
            23,
            59,
            1,
        )
        assert (await jobs.start()) is not None  # a second start keeps the same timers
        assert {j.id for j in jobs.jobs()} == set(listed)
    finally:
        await jobs.stop()
        await asyncio.sleep(0)  # AsyncIOScheduler shuts down on the loop's next turn
    assert not jobs.running
    assert [j.id for j in jobs.jobs()] == [MONTH_END, STATUS_SWEEP, ESCALATE_OVERDUE]


async def test_the_live_timers_run_a_job_with_the_injected_clocks_time(store: Store) -> None:
    ran = asyncio.Event()
    seen: list[datetime] = []

    async def sweep(now: datetime) -> str:
        seen.append(now)
        ran.set()
        return "swept"

    clock = ManualClock(jst(2026, 11, 3, 9, 0))
    jobs = Scheduler(store, sweep=sweep, clock=clock, config=CONFIG)
    with pytest.raises(RuntimeError, match="not running"):
        jobs.run_now(STATUS_SWEEP)
    await jobs.start()
    try:
        jobs.run_now(STATUS_SWEEP)  # due at once: no waiting for the 5 minutes
        await asyncio.wait_for(ran.wait(), 10)
        next_sweep = {j.id: j.next_fire for j in jobs.jobs()}[STATUS_SWEEP]
        assert next_sweep is not None and next_sweep > datetime.now(JST)
    finally:
        await jobs.stop()
        await asyncio.sleep(0)
    assert seen == [jst(2026, 11, 3, 9, 0)]


async def test_a_failing_job_is_logged_and_the_schedule_goes_on(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(now: datetime) -> None:
        raise RuntimeError("the SNMP socket is gone")

    jobs = Scheduler(store, sweep=broken, clock=ManualClock(jst(2026, 11, 3, 9, 0)), config=CONFIG)
    with caplog.at_level(logging.ERROR, logger="fleetd.scheduler"):
        await jobs._scheduled(STATUS_SWEEP)
    assert "scheduled job status-sweep failed at 2026-11-03 09:00 JST" in caplog.text


async def test_the_sweep_job_gets_the_fire_time(store: Store) -> None:
    sweeps = Sweeps()
    jobs = Scheduler(store, sweep=sweeps, clock=ManualClock(jst(2026, 11, 3, 9, 0)))
    assert await jobs.fire(STATUS_SWEEP, jst(2026, 11, 3, 9, 5)) == "swept"
    assert sweeps.at == [jst(2026, 11, 3, 9, 5)]
    with pytest.raises(ValueError, match="no such job; the jobs are month-end"):
        await jobs.fire("month-start", jst(2026, 11, 3, 9, 5))


# ----- escalation -------------------------------------------------------------------------
T0 = jst(2026, 11, 30, 23, 59)


async def _op(store: Store, key: str, **values: Any) -> Operation:
    async with store.transaction() as session:
        queued = await ops.enqueue(
            session,
            kind="account_stop",
            idempotency_key=key,
            requested_by="scheduler",
            not_before=T0,
            **values,
        )
    return queued.op


async def test_waiting_operations_past_their_deadline_are_escalated(store: Store) -> None:
    never_ran = await _op(store, "a", unit_serial="US01BJH00022", deadline=T0 + timedelta(hours=2))
    retried = await _op(store, "b", unit_serial="US01BJH00023", deadline=T0 + timedelta(hours=2))
    running = await _op(store, "c", unit_serial="US01BJH00024", deadline=T0 + timedelta(hours=2))
    later = await _op(store, "d", unit_serial="US01BJH00025", deadline=T0 + timedelta(hours=5))
    no_deadline = await _op(store, "e", unit_serial="US01BJH00026")
    async with store.sessions() as session:
        claimed = await ops.claim_due(session, "engine-1", T0, 7200, 10)
        await session.commit()
    async with store.transaction() as session:
        for op in claimed:
            if op.id == retried.id:
                await ops.retry_later(
                    session, op, T0 + timedelta(hours=3), "US01BJH00023: no route to host"
                )
            elif op.id != running.id:
                await ops.retry_later(session, op, T0, None)  # waiting again, never started
    jobs = make(store, T0)

    escalated = await jobs.fire(ESCALATE_OVERDUE, T0 + timedelta(hours=2, minutes=1))
    assert isinstance(escalated, list)
    assert sorted(op.id for op in escalated) == sorted([never_ran.id, retried.id])
    async with store.sessions() as session:
        rows = {op.id: await ops.get(session, op.id) for op in (never_ran, retried, running)}
        rest = [await ops.get(session, op.id) for op in (later, no_deadline)]
    assert rows[retried.id].state == OpState.ESCALATED
    assert rows[retried.id].reason == (
        "deadline passed: 2026-12-01 01:59 JST, still waiting to retry after 1 attempt "
        "(last: US01BJH00023: no route to host)"
    )
    assert rows[never_ran.id].reason is not None
    assert rows[never_ran.id].reason.startswith("deadline passed: 2026-12-01 01:59 JST")
    assert rows[running.id].state == OpState.RUNNING  # the engine has it: left alone
    assert [op.state for op in rest] == [OpState.RETRY_WAIT, OpState.RETRY_WAIT]
    assert await jobs.fire(ESCALATE_OVERDUE, T0 + timedelta(hours=2, minutes=2)) == []


async def test_a_queued_operation_that_never_ran_says_so(store: Store) -> None:
    op = await _op(store, "a", deadline=T0 + timedelta(minutes=30))
    async with store.transaction(write_lock=True) as session:
        assert await escalate_overdue(session, T0 + timedelta(minutes=29)) == []
        done = await escalate_overdue(session, T0 + timedelta(minutes=31))
    assert [o.id for o in done] == [op.id]
    assert done[0].reason == "deadline passed: 2026-12-01 00:29 JST, it never ran"
    assert done[0].state == OpState.ESCALATED


# ----- the command ------------------------------------------------------------------------
def test_fleetd_schedule_lists_every_job(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETD_SWEEP_SECONDS", "120")
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/f.db")
    app, state = create_app(), CliState(settings, Redactor())
    shown = CliRunner().invoke(app, ["schedule"], obj=state)
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [MONTH_END, STATUS_SWEEP, ESCALATE_OVERDUE]
    assert lines[0].endswith("JST   23:59 JST on the last day of every month")
    assert " 23:59:00 JST " in lines[0]
    assert lines[1].endswith("every 2 min")
    doc = json.loads(CliRunner().invoke(app, ["schedule", "--json"], obj=state).stdout)
    month_end = datetime.fromisoformat(doc[0]["next_fire"])
    assert (doc[0]["id"], month_end.utcoffset(), month_end.hour, month_end.minute) == (
        MONTH_END,
        timedelta(hours=9),
        23,
        59,
    )
    monkeypatch.setenv("FLEETD_SWEEP_SECONDS", "often")
    bad = CliRunner().invoke(app, ["schedule"], obj=state)
    assert bad.exit_code == 2
    assert bad.stderr.startswith("fleetd: setting FLEETD_SWEEP_SECONDS: ")
