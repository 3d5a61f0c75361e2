"""The engine: the only part of fleetd that talks to units.

It claims due operations under a lease (`inventory.operations.claim_due`), runs each one's
workflow as a task, and writes the outcome:

    workflow returns            -> succeeded (its summary is the reason)
    Unreachable, Timeout        -> retry_wait with jittered exponential backoff, until the
                                   deadline; then escalated, with the last error
    AuthFailed, HostKeyMismatch -> escalated at once: staff must act (credential, re-pin)
    any other FleetError        -> failed, final, its words as the reason
    a bug (any other exception) -> failed, "internal error", logged with its traceback

Limits: `Limits.parallel` operations at once in this daemon (global), a batch's own
`max_parallel` across all daemons (in the claim), never two at once on one unit (in the claim
and in the database). Leases are renewed while a run lasts; the operations of a daemon that
died are claimed again once their lease expires, and their workflows re-read the unit first.
Outcomes are written by one writer task in groups, one transaction per group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from drivers.base import Timeouts, UnitTarget
from drivers.registry import DEFAULT_TRANSPORT, load_driver
from fleetd import batches
from fleetd.calendar import BusinessCalendar
from fleetd.clock import JST, Clock, SystemClock
from fleetd.context import (
    Claimed,
    DriverLoader,
    Record,
    RunContext,
    StepWriter,
    unit_targets,
    write_records,
)
from fleetd.workflows.base import Workflow
from inventory import operations as ops
from inventory.errors import AuthFailed, FleetError, HostKeyMismatch, UnitError
from inventory.operations import OpState
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import Store

log = logging.getLogger("fleetd.engine")


class EngineMetrics(Protocol):
    def operation_finished(self, kind: str, outcome: str) -> None: ...

    def observe_push(self, kind: str, seconds: float) -> None: ...


@dataclass(frozen=True)
class Limits:
    parallel: int = 200  # operations running at once in this daemon
    claim_batch: int = 100  # operations claimed per round
    lease_seconds: float = 120.0
    poll_seconds: float = 1.0  # how often to look for due work when nobody wakes the engine
    backoff_base: float = 30.0  # seconds before the 2nd attempt; doubles per attempt
    backoff_cap: float = 900.0
    write_batch: int = 200  # outcomes per transaction
    write_linger: float = 0.05  # seconds to gather outcomes while others still run
    # how often a running operation's steps reach the store, for staff following it; a
    # batch's operations are followed through the batch's counts
    flush_seconds: float = 1.0
    batch_flush_seconds: float = 5.0
    default_deadline: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class Outcome:
    op: Claimed
    state: OpState  # SUCCEEDED / FAILED / ESCALATED, or RETRY_WAIT
    reason: str
    record: Record
    retry_at: datetime | None = None
    seconds: float = 0.0
    deadline: datetime | None = None  # to store with a retry, when the operation had none


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Engine:
    def __init__(
        self,
        store: Store,
        box: SecretBox,
        workflows: Mapping[str, Workflow],
        *,
        owner: str | None = None,
        clock: Clock | None = None,
        calendar: BusinessCalendar | None = None,
        limits: Limits | None = None,
        redactor: Redactor | None = None,
        transport: str = DEFAULT_TRANSPORT,
        timeouts: Timeouts | None = None,
        load: DriverLoader = load_driver,
        metrics: EngineMetrics | None = None,
        rng: random.Random | None = None,
        on_finished: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.store = store
        self.box = box
        self.workflows = dict(workflows)
        self.owner = owner or default_owner()
        self.clock = clock or SystemClock()
        self.calendar = calendar or BusinessCalendar()
        self.limits = limits or Limits()
        self.redactor = redactor or Redactor()
        self.transport = transport
        self.timeouts = timeouts or Timeouts()
        self._load = load
        self.metrics = metrics
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._on_finished = on_finished
        self._running: dict[int, asyncio.Task[None]] = {}
        self._outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        self._steps = StepWriter(store, self.redactor, box)  # the runs' flushes, grouped
        self._wake = asyncio.Event()
        self._stopping = False
        self._writer: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._pending = 0  # outcomes put and not yet written
        self._unwritten: set[int] = set()  # their operations: leases still renewed
        self._written_total = 0
        self._written = asyncio.Condition()

    # ----- control ---------------------------------------------------------------------
    def wake(self) -> None:
        """Look for due work now (a request has just written operations)."""
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._running)

    async def run(self) -> None:
        """Claim and run operations until `stop()`."""
        self._start_helpers()
        try:
            while not self._stopping:
                self._wake.clear()  # before the claim: a wake during it is not lost
                claimed = await self.claim()
                if claimed and self.running < self.limits.parallel:
                    continue  # there may be more due at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.limits.poll_seconds)
        finally:
            await self._stop_helpers()

    async def stop(self) -> None:
        """Stop claiming; let the running operations end and their outcomes be written."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def abandon(self) -> None:
        """Stop at once, as a crash would: running operations are left to their leases."""
        self._stopping = True
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        await self._stop_helpers(write=False)

    async def run_until_idle(self) -> int:
        """Run every operation due by the clock's now, and what they make due, to the end;
        the number of runs. For tests and one-shot commands: the clock does not move here."""
        self._start_helpers()
        runs = 0
        try:
            while True:
                self._wake.clear()
                claimed = await self.claim()
                runs += claimed
                if self._running:
                    await self._wake.wait()  # room for a claim's worth, or an outcome written
                    continue
                written = self._written_total
                await self._drain_outcomes()
                if not claimed and written == self._written_total:
                    return runs  # nothing ran, nothing ended: nothing new can be due
        finally:
            await self._stop_helpers()

    # ----- claiming --------------------------------------------------------------------
    async def claim(self) -> int:
        free = self.limits.parallel - self.running
        if free <= 0:
            return 0
        now = self.clock.now()
        async with self.store.transaction(write_lock=True) as session:
            rows = await ops.claim_due(
                session,
                self.owner,
                now,
                self.limits.lease_seconds,
                min(free, self.limits.claim_batch),
            )
            claimed = [Claimed.of(row) for row in rows]
            # every claimed run's unit read at once, not one query per run
            serials = [op.unit_serial for op in claimed if op.unit_serial]
            targets = await unit_targets(session, serials, self.box, self.redactor, self.timeouts)
        started = 0
        for op in claimed:
            if op.id in self._running or op.id in self._unwritten:
                # our own lease ran out before we renewed it (a busy loop): the claim has
                # just renewed it; the run already under way goes on, never a second one
                log.warning("op %s: lease renewed late; the run under way goes on", op.id)
                continue
            target = targets.get(op.unit_serial or "")
            task = asyncio.create_task(self._run_one(op, target), name=f"op-{op.id}")
            self._running[op.id] = task
            task.add_done_callback(self._forget)
            started += 1
        return started

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._running.pop(int(task.get_name().removeprefix("op-")), None)
        if not self._running or self._room_for_a_claim():
            self._wake.set()

    def _room_for_a_claim(self) -> bool:
        """Whether a good part of a claim's worth of runs may start: the engine claims then,
        not after every run that ends (a claim is a transaction of its own)."""
        quantum = max(1, min(self.limits.claim_batch, self.limits.parallel) // 8)
        return self.limits.parallel - len(self._running) >= quantum

    # ----- one run ---------------------------------------------------------------------
    async def _run_one(self, op: Claimed, target: UnitTarget | None) -> None:
        ctx = RunContext(
            op,
            store=self.store,
            box=self.box,
            redactor=self.redactor,
            clock=self.clock,
            calendar=self.calendar,
            load_driver=self._load,
            transport=self.transport,
            timeouts=self.timeouts,
            step_writer=self._steps,
            targets={target.serial: target} if target else None,
            flush_seconds=(
                self.limits.batch_flush_seconds if op.batch_id else self.limits.flush_seconds
            ),
        )
        started = time.monotonic()
        workflow = self.workflows.get(op.kind)
        deadline = self._deadline(op, workflow)
        now = self.clock.now()
        if workflow is None:
            state, reason = OpState.FAILED, f"no workflow for operations of kind {op.kind!r}"
        elif now > deadline:
            state, reason = OpState.ESCALATED, f"deadline {_jst(deadline)} passed before it ran"
        else:
            state, reason = await self._outcome_of(workflow, ctx)
        retry_at = None
        if state == OpState.RETRY_WAIT:
            retry_at = self.clock.now() + timedelta(seconds=self.backoff(op.attempts))
            if retry_at > deadline:
                state = OpState.ESCALATED
                reason = (
                    f"{reason}; gave up after {op.attempts} attempts: deadline {_jst(deadline)}"
                )
                retry_at = None
            else:
                reason = f"attempt {op.attempts}: {reason}; next attempt {_jst(retry_at)}"
        await ctx.step(state.value, state == OpState.SUCCEEDED, reason)
        await ctx.flushed()  # the steps flushed during the run go before the outcome
        seconds = time.monotonic() - started
        self._pending += 1
        self._unwritten.add(op.id)
        await self._outcomes.put(
            Outcome(op, state, reason, ctx.record.take(), retry_at, seconds, deadline)
        )

    async def _outcome_of(self, workflow: Workflow, ctx: RunContext) -> tuple[OpState, str]:
        try:
            summary = await workflow.run(ctx)
        except (AuthFailed, HostKeyMismatch) as exc:
            return OpState.ESCALATED, str(exc)
        except UnitError as exc:
            if exc.retryable:
                return OpState.RETRY_WAIT, str(exc)
            return OpState.FAILED, str(exc)
        except FleetError as exc:
            return OpState.FAILED, str(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("op %s %s: the workflow failed", ctx.op_id, ctx.kind)
            return OpState.FAILED, "internal error in the workflow (see the daemon's log)"
        return OpState.SUCCEEDED, summary

    def _deadline(self, op: Claimed, workflow: Workflow | None) -> datetime:
        """The operation's own deadline, or (first attempt) now + the workflow's default,
        which is then stored with the retry."""
        if op.deadline is not None:
            return op.deadline
        default = workflow.default_deadline if workflow else self.limits.default_deadline
        return self.clock.now() + default

    def backoff(self, attempts: int) -> float:
        """Seconds before the next attempt: base * 2^(attempts-1), capped, jittered ±25%."""
        delay: float = min(
            self.limits.backoff_cap, self.limits.backoff_base * 2.0 ** max(0, attempts - 1)
        )
        jitter: float = self._rng.uniform(0.75, 1.25)
        return delay * jitter

    # ----- writing outcomes ------------------------------------------------------------
    def _start_helpers(self) -> None:
        self._stopping = False
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="engine-writer")
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="engine-leases")

    async def _stop_helpers(self, *, write: bool = True) -> None:
        if write:
            await self._drain_outcomes()
        for task in (self._writer, self._renewer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._writer = self._renewer = None

    async def _drain_outcomes(self) -> None:
        """Wait until every outcome put so far is written."""
        async with self._written:
            await self._written.wait_for(lambda: self._pending == 0)

    async def _write_forever(self) -> None:
        while True:
            group = [await self._outcomes.get()]
            if self._running and self.limits.write_linger > 0:
                # others are about to end: one transaction for many outcomes is far cheaper
                await asyncio.sleep(self.limits.write_linger)
            while len(group) < self.limits.write_batch and not self._outcomes.empty():
                group.append(self._outcomes.get_nowait())
            try:
                await self._write(group)
                written = group
            except Exception:
                log.warning("writing %d outcomes at once failed; writing them one by one",
                            len(group), exc_info=True)  # fmt: skip
                written = await self._write_one_by_one(group)
            self._unwritten.difference_update(o.op.id for o in written)
            async with self._written:
                self._pending -= len(written)
                self._written_total += len(written)
                self._written.notify_all()
            if len(written) < len(group):
                for outcome in group[len(written) :]:
                    self._outcomes.put_nowait(outcome)
                await asyncio.sleep(1.0)  # the store cannot be reached: try again shortly

    async def _write_one_by_one(self, group: list[Outcome]) -> list[Outcome]:
        """One outcome per transaction, so that one which cannot be written does not hold up
        the rest: its record is dropped (logged) and its ending kept. Returns those written,
        from the first; it stops at one whose ending cannot be written either."""
        for n, outcome in enumerate(group):
            try:
                await self._write([outcome])
                continue
            except Exception:
                log.exception(
                    "op %s: its record cannot be written; keeping its ending", outcome.op.id
                )
            try:
                await self._write([replace(outcome, record=outcome.record.kept())])
            except Exception:
                log.exception("op %s: its outcome cannot be written", outcome.op.id)
                return group[:n]
        return group

    async def _write(self, group: list[Outcome]) -> None:
        endings = [
            ops.Ending(
                o.op.id,
                o.state,
                o.reason,
                o.retry_at,
                o.deadline if o.op.deadline is None else None,
            )
            for o in group
        ]
        async with self.store.transaction(write_lock=True) as session:
            # what the runs did is history whoever holds the lease now: written for all
            await write_records(session, [(o.op, o.record) for o in group], self.redactor, self.box)
            ended = await ops.end_many(session, self.owner, endings)
            touched = sorted({o.op.batch_id for o in group if o.op.batch_id and o.op.id in ended})
            for batch_id in touched:
                await batches.settle(session, batch_id, now=self.clock.now())
        for outcome in group:
            if outcome.op.id in ended:
                self._finished(outcome)
            else:
                log.warning(
                    "op %s: outcome %s not kept: the lease was taken over by another daemon",
                    outcome.op.id,
                    outcome.state.value,
                )
        if touched or self._room_for_a_claim():
            # a batch that left its canary, or a unit whose operation ended, has work due
            self._wake.set()

    def _finished(self, outcome: Outcome) -> None:
        log.info(
            "op %s %s %s: %s (%s)",
            outcome.op.id,
            outcome.op.kind,
            outcome.op.unit_serial or outcome.op.customer_code,
            outcome.state.value,
            outcome.reason,
        )
        if self.metrics is not None:
            self.metrics.operation_finished(outcome.op.kind, outcome.state.value)
            if outcome.state == OpState.SUCCEEDED:
                self.metrics.observe_push(outcome.op.kind, outcome.seconds)
        if self._on_finished is not None:
            self._on_finished(outcome)

    # ----- leases ----------------------------------------------------------------------
    async def _renew_forever(self) -> None:
        interval = self.limits.lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("renewing leases failed; will try again")

    async def renew_leases(self) -> None:
        """Renew the leases of the running operations, and of those whose outcome is not
        written yet (another daemon must not take them over meanwhile)."""
        ids = sorted(set(self._running) | self._unwritten)
        if not ids:
            return
        async with self.store.transaction() as session:
            held = await ops.renew_leases(
                session, self.owner, ids, self.clock.now(), self.limits.lease_seconds
            )
        for lost in set(ids) - held:
            if lost in self._running or lost in self._unwritten:  # not just written meanwhile
                log.warning("op %s: lease lost (taken over by another daemon)", lost)


def _jst(when: datetime) -> str:
    return when.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")
