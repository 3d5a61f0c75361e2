"""The scheduled jobs of the daemon that holds the leadership (`fleetd.leader`).

    month-end         23:59:00 JST on the last day of every month: reconcile that month's
                      account stops (`fleetd.monthend`)
    status-sweep      every FLEETD_SWEEP_SECONDS (300): the SNMP status sweep
                      (`fleetd.poller`)
    escalate-overdue  every minute: waiting operations past their deadline are escalated

APScheduler 3 (AsyncIOScheduler) in Asia/Tokyo, explicit job ids, `replace_existing`,
`coalesce` (a backlog of missed runs runs once) and a generous misfire grace. No job acts on
a unit: each one reconciles, writing the operations that should exist under their keys, so a
double or late fire (two daemons for a moment during a leadership change, a catch-up after a
restart) changes nothing the first fire did not.

A daemon that was down at 23:59 on a month's last day learns nothing of it from APScheduler
(its jobs live in memory). `Scheduler.start` therefore runs a catch-up first: when the latest
month-end fire time lies within the month-end grace (`FLEETD_MONTH_END_GRACE_SECONDS`, 3 days)
before now, that month is reconciled at once. After that, staff run
`fleetd month-end run --month YYYY-MM`.

Jobs read the time from an injected `fleetd.clock.Clock`; `Scheduler.fire(job_id, now)` runs
one job as if fired at `now`, and `next_fire_times(now)` says when each job fires next after
any instant, so tests move time instead of waiting for it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]
from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleetd.calendar import jst_month, month_end_stop_at
from fleetd.clock import JST, Clock, SystemClock
from fleetd.monthend import ReconcileResult, format_jst, reconcile
from inventory.operations import WAITING, Operation, OpState
from inventory.redact import Redactor
from inventory.store import Store

log = logging.getLogger("fleetd.scheduler")

MONTH_END = "month-end"
STATUS_SWEEP = "status-sweep"
ESCALATE_OVERDUE = "escalate-overdue"
JOB_IDS = (MONTH_END, STATUS_SWEEP, ESCALATE_OVERDUE)
# A month-end fire read a moment early by a clock that is not APScheduler's own still counts
# for the month ending.
_EARLY_FIRE = timedelta(seconds=60)
_ESCALATE_LIMIT = 1000  # operations per run: a backlog is worked off a minute at a time

SweepFn = Callable[[datetime], Awaitable[object]]


class ScheduleConfig(BaseSettings):
    """The schedule's settings (``FLEETD_…``), built in `main()` or a test."""

    model_config = SettingsConfigDict(env_prefix="FLEETD_", extra="ignore", frozen=True)

    sweep_seconds: float = Field(default=300.0, gt=0, description="between status sweeps")
    escalate_seconds: float = Field(default=60.0, gt=0, description="between escalation runs")
    month_end_grace_seconds: float = Field(
        default=3 * 86400.0, gt=0, description="how long a missed month-end is still caught up"
    )


@dataclass(frozen=True)
class JobInfo:
    id: str
    trigger: str  # in words
    next_fire: datetime | None  # JST; None while the job is paused

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger,
            "next_fire": self.next_fire.isoformat() if self.next_fire else None,
        }


# ----- when jobs fire (pure) -----------------------------------------------------------------
def month_end_trigger() -> Any:
    return CronTrigger(day="last", hour=23, minute=59, second=0, timezone=JST)


def _interval_trigger(seconds: float, start: datetime | None = None) -> Any:
    first = None if start is None else start + timedelta(seconds=seconds)
    return IntervalTrigger(seconds=seconds, start_date=first, timezone=JST)


def _triggers(config: ScheduleConfig, start: datetime | None = None) -> dict[str, Any]:
    return {
        MONTH_END: month_end_trigger(),
        STATUS_SWEEP: _interval_trigger(config.sweep_seconds, start),
        ESCALATE_OVERDUE: _interval_trigger(config.escalate_seconds, start),
    }


def describe(job_id: str, config: ScheduleConfig) -> str:
    if job_id == MONTH_END:
        return "23:59 JST on the last day of every month"
    seconds = config.sweep_seconds if job_id == STATUS_SWEEP else config.escalate_seconds
    return f"every {_duration(seconds)}"


def _duration(seconds: float) -> str:
    if seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} min"
    return f"{seconds:g} s"


def next_fire_times(now: datetime, config: ScheduleConfig | None = None) -> dict[str, datetime]:
    """When each job fires next after `now` (JST), for a scheduler started at `now`."""
    config = config or ScheduleConfig()
    fires: dict[str, datetime] = {}
    for job_id, trigger in _triggers(config, now).items():
        fires[job_id] = trigger.get_next_fire_time(None, now).astimezone(JST)
    return fires


def jobs(now: datetime | None = None, config: ScheduleConfig | None = None) -> list[JobInfo]:
    """Every job with its next fire time (JST), as a daemon started at `now` has them."""
    config = config or ScheduleConfig()
    now = now or SystemClock().now()
    fires = next_fire_times(now, config)
    return [JobInfo(job_id, describe(job_id, config), fires[job_id]) for job_id in JOB_IDS]


def latest_month_end(now: datetime) -> tuple[int, int, datetime]:
    """The month whose stop time (23:59 JST on its last day) is the latest at or before
    `now`: (year, month, stop time in UTC)."""
    year, month = jst_month(now)
    stop = month_end_stop_at(year, month)
    if stop > now:
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        stop = month_end_stop_at(year, month)
    return year, month, stop


def missed_month_end(now: datetime, grace: timedelta) -> tuple[int, int] | None:
    """The month a daemon starting at `now` must still reconcile: the latest month-end fire
    time, when it lies within `grace` before `now`."""
    year, month, stop = latest_month_end(now)
    return (year, month) if now - stop <= grace else None


# ----- the overdue escalation ----------------------------------------------------------------
async def escalate_overdue(
    session: AsyncSession, now: datetime, *, limit: int = _ESCALATE_LIMIT
) -> list[Operation]:
    """Waiting operations (queued, retry_wait) whose deadline has passed become escalated,
    the reason saying "deadline passed: …". Each change is a compare-and-set on the state it
    read, so an operation an engine claimed meanwhile is left alone. The caller commits."""
    query = (
        select(Operation)
        .where(Operation.state.in_(WAITING), Operation.deadline < now)
        .order_by(Operation.deadline, Operation.id)
        .limit(limit)
    )
    escalated: list[Operation] = []
    for op in (await session.scalars(query)).all():
        assert op.deadline is not None  # the WHERE clause
        reason = _overdue_reason(op, op.deadline)
        result = await session.execute(
            update(Operation)
            .where(Operation.id == op.id, Operation.state == op.state)
            .values(state=OpState.ESCALATED.value, reason=reason, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            await session.refresh(op)
            escalated.append(op)
    return escalated


def _overdue_reason(op: Operation, deadline: datetime) -> str:
    if op.state == OpState.QUEUED.value:
        words = f"deadline passed: {format_jst(deadline)}, it never ran"
    else:
        tries = f"{op.attempts} attempt" + ("" if op.attempts == 1 else "s")
        words = f"deadline passed: {format_jst(deadline)}, still waiting to retry after {tries}"
    if op.reason:
        words += f" (last: {op.reason})"
    return words


# ----- the scheduler -------------------------------------------------------------------------
class Scheduler:
    """The jobs above on an AsyncIOScheduler. `start()` (catch-up, then the timers) and
    `stop()` follow the leadership; `fire(job_id, now)` runs one job at once."""

    def __init__(
        self,
        store: Store,
        *,
        sweep: SweepFn,
        clock: Clock | None = None,
        config: ScheduleConfig | None = None,
        redactor: Redactor | None = None,
        requested_by: str = "scheduler",
    ) -> None:
        self._store = store
        self._sweep = sweep
        self._clock = clock or SystemClock()
        self.config = config or ScheduleConfig()
        self._redactor = redactor
        self._requested_by = requested_by
        self._aps: Any = None

    @property
    def running(self) -> bool:
        return self._aps is not None

    async def start(self) -> ReconcileResult | None:
        """Catch up a missed month-end (see the module docstring), then start the timers.
        A failed catch-up is logged: the timers start all the same."""
        caught: ReconcileResult | None = None
        try:
            caught = await self.catch_up(self._clock.now())
        except Exception:
            log.exception("month-end catch-up failed; run `fleetd month-end run --month`")
        if self._aps is not None:
            return caught
        aps = AsyncIOScheduler(timezone=JST)
        grace = {
            MONTH_END: int(self.config.month_end_grace_seconds),
            STATUS_SWEEP: max(1, int(self.config.sweep_seconds)),
            ESCALATE_OVERDUE: max(1, int(self.config.escalate_seconds)),
        }
        for job_id, trigger in _triggers(self.config).items():
            aps.add_job(
                self._scheduled,
                trigger,
                args=[job_id],
                id=job_id,
                name=describe(job_id, self.config),
                replace_existing=True,
                coalesce=True,
                max_instances=1,  # a sweep that outlasts its interval is not started twice
                misfire_grace_time=grace[job_id],
            )
        aps.start()
        self._aps = aps
        log.info(
            "scheduler started: %s", "; ".join(f"{j.id} next {j.next_fire}" for j in self.jobs())
        )
        return caught

    async def stop(self) -> None:
        aps, self._aps = self._aps, None
        if aps is not None and aps.running:
            aps.shutdown(wait=False)
            log.info("scheduler stopped")

    def run_now(self, job_id: str) -> None:
        """Have the running timers run a job at once (its next regular run follows as
        usual), e.g. a status sweep staff ask for; `fire` runs one without the timers."""
        if job_id not in JOB_IDS:
            raise ValueError(f"job {job_id!r}: no such job; the jobs are {', '.join(JOB_IDS)}")
        if self._aps is None:
            raise RuntimeError("the scheduler is not running in this daemon")
        self._aps.modify_job(job_id, next_run_time=datetime.now(JST))

    def jobs(self) -> list[JobInfo]:
        """The running scheduler's jobs; those of a scheduler started now when stopped."""
        if self._aps is None:
            return jobs(self._clock.now(), self.config)
        found = {job.id: job for job in self._aps.get_jobs()}
        return [
            JobInfo(
                job_id,
                describe(job_id, self.config),
                found[job_id].next_run_time.astimezone(JST)
                if found[job_id].next_run_time
                else None,
            )
            for job_id in JOB_IDS
            if job_id in found
        ]

    async def catch_up(self, now: datetime) -> ReconcileResult | None:
        """Reconcile the latest month-end when it lies within the grace before `now`."""
        month = missed_month_end(now, timedelta(seconds=self.config.month_end_grace_seconds))
        if month is None:
            return None
        result = await self.reconcile_month(*month, now=now)
        log.info("month-end catch-up: %s", result.summary())
        return result

    async def fire(self, job_id: str, now: datetime) -> object:
        """Run one job as if it fired at `now`; its result."""
        if job_id == MONTH_END:
            year, month, _ = latest_month_end(now + _EARLY_FIRE)
            return await self.reconcile_month(year, month, now=now)
        if job_id == STATUS_SWEEP:
            return await self._sweep(now)
        if job_id == ESCALATE_OVERDUE:
            async with self._store.transaction(write_lock=True) as session:
                return await escalate_overdue(session, now)
        raise ValueError(f"job {job_id!r}: no such job; the jobs are {', '.join(JOB_IDS)}")

    async def reconcile_month(self, year: int, month: int, *, now: datetime) -> ReconcileResult:
        async with self._store.transaction(write_lock=True) as session:
            return await reconcile(
                session,
                year,
                month,
                now=now,
                requested_by=self._requested_by,
                redactor=self._redactor,
            )

    async def _scheduled(self, job_id: str) -> None:
        # APScheduler would only log a failure; this says which job and keeps the timer going
        now = self._clock.now()
        try:
            result = await self.fire(job_id, now)
        except Exception:
            log.exception("scheduled job %s failed at %s", job_id, format_jst(now))
            return
        if isinstance(result, ReconcileResult):
            log.info("%s: %s", job_id, result.summary())
        elif isinstance(result, list):
            if result:
                log.warning("%s: %d operations escalated", job_id, len(result))
        else:
            log.info("%s: %s", job_id, result)
