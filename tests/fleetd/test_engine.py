"""The engine, with plain workflows that stand in for units: outcomes, retries, leases,
limits and batches, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from fleetd import batches
from fleetd.clock import ManualClock
from fleetd.context import Claimed, Record, RunContext, write_records
from fleetd.engine import Engine, Limits
from fleetd.workflows.base import OpContext, RequestContext
from inventory import operations as ops
from inventory import repo
from inventory.errors import AuthFailed, RuleViolation, Unreachable, VerificationFailed
from inventory.operations import Operation
from inventory.records import CustomerData, UnitData
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import Store

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)  # 10:00 JST
SERIALS = [f"US01ENG{n:05d}" for n in range(12)]


class Scripted:
    """A workflow that does what `script(ctx)` says: return a summary or raise."""

    kind = "scripted"
    default_deadline = timedelta(hours=1)

    def __init__(self, script: Callable[[OpContext], Any]) -> None:
        self.script = script
        self.runs: list[tuple[int, int]] = []  # (operation id, attempt)

    async def run(self, ctx: OpContext) -> str:
        self.runs.append((ctx.op_id, ctx.attempt))
        await ctx.step("read", True, f"unit {ctx.unit_serial}")
        result = self.script(ctx)
        if asyncio.iscoroutine(result):
            result = await result
        return str(result)


def engine_for(
    store: Store, box: SecretBox, workflow: Scripted, clock: ManualClock, **limits: Any
) -> Engine:
    return Engine(
        store,
        box,
        {"scripted": workflow},
        owner="daemon-test",
        clock=clock,
        limits=Limits(**limits),
        redactor=Redactor(),
        rng=random.Random(7),
    )


async def enqueue(store: Store, serial: str, key: str | None = None, **kw: Any) -> int:
    async with store.transaction() as session:
        done = await ops.enqueue(
            session,
            kind=kw.pop("kind", "scripted"),
            idempotency_key=key or f"test:{serial}:{kw.get('not_before', T0)}",
            requested_by="staff:kimura",
            unit_serial=serial,
            not_before=kw.pop("not_before", T0),
            **kw,
        )
        return done.op.id


async def get(store: Store, op_id: int) -> Operation:
    async with store.sessions() as session:
        return await ops.get(session, op_id)


def claimed(op_id: int) -> Claimed:
    """A run's operation as the engine holds it (for records with no steps)."""
    return Claimed(
        id=op_id, kind="scripted", unit_serial=None, customer_code=None, params={},
        secret_params=None, attempts=1, requested_by="staff:kimura", batch_id=None,
        deadline=None, created_at=T0, lease_owner="daemon-test",
    )  # fmt: skip


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


async def test_a_workflow_that_returns_succeeds_with_its_steps(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    op_id = await enqueue(store, SERIALS[0])
    engine = engine_for(store, box, Scripted(lambda ctx: "guest passphrase rotated"), clock)
    assert await engine.run_until_idle() == 1
    op = await get(store, op_id)
    assert (op.state, op.reason, op.attempts) == ("succeeded", "guest passphrase rotated", 1)
    async with store.sessions() as session:
        steps = await ops.steps(session, op_id)
    assert [(s.step, s.ok) for s in steps] == [("read", True), ("succeeded", True)]


async def test_intended_wifi_is_stored_with_the_outcome_even_when_the_history_cannot_be(
    store: Store, box: SecretBox, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    """What a unit now runs is kept as intended whatever else of the run is lost: staff
    and the drift check compare the unit against it."""
    async with store.transaction() as session:
        await repo.upsert_customer(session, CustomerData("138300001", "カフェ木村"))
        await repo.upsert_unit(session, UnitData(SERIALS[0], "138300001", "parent"))

    async def script(ctx: OpContext) -> str:
        ctx.intend_wifi(SERIALS[0], "guest", ssid="Cafe Kimura", passphrase="Rotated-9-Kimura")
        ctx.intend_account(SERIALS[0], "stopped")
        # an audit entry that cannot be stored: the run's history is lost with it
        await ctx.audit("guest_rotate", SERIALS[0], after={"unstorable": object()})
        return "guest passphrase rotated"

    op_id = await enqueue(store, SERIALS[0])
    with caplog.at_level("ERROR", logger="fleetd.engine"):
        await engine_for(store, box, Scripted(script), clock).run_until_idle()
    assert "its record cannot be written; keeping its ending" in caplog.text
    assert (await get(store, op_id)).state == "succeeded"
    async with store.sessions() as session:
        unit = await repo.get_unit(session, SERIALS[0])
    assert unit.intended_guest_ssid == "Cafe Kimura"
    assert repo.intended_passphrase(unit, box, "guest") == "Rotated-9-Kimura"
    assert unit.intended_account_state == "stopped"


async def test_what_runs_read_is_stored_and_a_failed_read_keeps_the_last_good_values(
    store: Store, box: SecretBox
) -> None:
    """A unit's observation is what its last run read; a run that could not reach it says
    why and keeps what was last read. A host key is pinned on first use only."""
    async with store.transaction() as session:
        await repo.upsert_customer(session, CustomerData("138300001", "カフェ木村"))
        for serial in SERIALS[:2]:
            await repo.upsert_unit(session, UnitData(serial, "138300001", "parent"))
    redactor = Redactor()
    read = {"wan_mode": "ipoe", "tunnel_state": "up", "account_state": "active", "u_lamp": "on"}
    first = [
        (claimed(1), Record(
            readings={SERIALS[0]: (True, read, None, T0)},
            pins={SERIALS[0]: "ssh-ed25519 AAAAfirst"},
            accounts={SERIALS[0]: "stopped"},
            intents={(SERIALS[0], "guest"): ("Cafe Kimura", "Rotated-9-Kimura")},
        )),
        (claimed(2), Record(
            readings={SERIALS[1]: (False, None, "connection refused", T0)},
        )),
    ]  # fmt: skip
    later = T0 + timedelta(minutes=5)
    second = [
        (claimed(3), Record(
            readings={SERIALS[0]: (False, None, "no answer in time", later)},
            pins={SERIALS[0]: "ssh-ed25519 AAAAother"},
        )),
    ]  # fmt: skip
    for runs in (first, second):
        async with store.transaction(write_lock=True) as session:
            await write_records(session, runs, redactor, box)
    async with store.sessions() as session:
        unit = await repo.get_unit(session, SERIALS[0])
        seen = await repo.get_observation(session, SERIALS[0])
        never = await repo.get_observation(session, SERIALS[1])
    assert unit.host_key_fingerprint == "ssh-ed25519 AAAAfirst"  # never re-pinned
    assert (unit.intended_account_state, unit.intended_guest_ssid) == ("stopped", "Cafe Kimura")
    assert repo.intended_passphrase(unit, box, "guest") == "Rotated-9-Kimura"
    assert seen is not None and never is not None
    assert (seen.reachable, seen.last_error, seen.last_error_at) == (
        False, "no answer in time", later,
    )  # fmt: skip
    assert (seen.observed_at, seen.read_values, seen.wan_mode) == (T0, read, "ipoe")
    assert (seen.tunnel_state, seen.account_state) == ("up", "active")
    assert (never.reachable, never.observed_at, never.read_values) == (False, None, None)
    assert never.last_error == "connection refused"


async def test_a_bad_intended_value_fails_the_run_before_anything_is_stored(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    def script(ctx: OpContext) -> str:
        ctx.intend_wifi(SERIALS[0], "guest", passphrase="short")
        return "never"

    op_id = await enqueue(store, SERIALS[0])
    await engine_for(store, box, Scripted(script), clock).run_until_idle()
    op = await get(store, op_id)
    assert op.state == "failed" and "guest_passphrase" in (op.reason or "")


async def test_an_unreachable_unit_is_retried_with_backoff_then_succeeds(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    def script(ctx: OpContext) -> str:
        if ctx.attempt == 1:
            raise Unreachable(ctx.unit_serial or "", "connection refused")
        return "done"

    op_id = await enqueue(store, SERIALS[0])
    workflow = Scripted(script)
    engine = engine_for(store, box, workflow, clock, backoff_base=30.0)
    await engine.run_until_idle()
    op = await get(store, op_id)
    assert op.state == "retry_wait"
    assert "connection refused" in (op.reason or "") and "next attempt" in (op.reason or "")
    wait = (op.not_before - T0).total_seconds()
    assert 22.5 <= wait <= 37.5  # 30 s, jittered by a quarter either way
    assert await engine.run_until_idle() == 0  # not due yet: the clock has not moved
    clock.advance(wait)
    await engine.run_until_idle()
    op = await get(store, op_id)
    assert (op.state, op.attempts) == ("succeeded", 2)
    assert workflow.runs == [(op_id, 1), (op_id, 2)]


async def test_an_unreachable_unit_is_escalated_once_the_deadline_has_passed(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    def script(ctx: OpContext) -> str:
        raise Unreachable(ctx.unit_serial or "", "no route to host")

    op_id = await enqueue(store, SERIALS[0], deadline=T0 + timedelta(minutes=10))
    engine = engine_for(store, box, Scripted(script), clock, backoff_base=60.0)
    for _ in range(10):
        await engine.run_until_idle()
        op = await get(store, op_id)
        if op.state != "retry_wait":
            break
        clock.set(op.not_before)
    assert op.state == "escalated"
    assert "no route to host" in (op.reason or "")
    assert "gave up after" in (op.reason or "") and "JST" in (op.reason or "")
    assert op.attempts >= 3  # 60 s, 120 s, 240 s fit in ten minutes


@pytest.mark.parametrize(
    ("error", "state", "words"),
    [
        (AuthFailed("US01ENG00000", "authentication refused"), "escalated", "authentication"),
        (RuleViolation("line", "requested", "4over6 order not complete"), "failed", "4over6"),
        (
            VerificationFailed("US01ENG00000", "tunnel did not come up: AFTR unreachable"),
            "failed",
            "AFTR unreachable",
        ),
        (KeyError("bug"), "failed", "internal error"),
    ],
)
async def test_errors_that_a_retry_cannot_fix_end_the_operation_at_once(
    store: Store,
    box: SecretBox,
    clock: ManualClock,
    error: Exception,
    state: str,
    words: str,
) -> None:
    def script(ctx: OpContext) -> str:
        raise error

    op_id = await enqueue(store, SERIALS[0])
    await engine_for(store, box, Scripted(script), clock).run_until_idle()
    op = await get(store, op_id)
    assert (op.state, op.attempts) == (state, 1)
    assert words in (op.reason or "")


async def test_an_operation_of_an_unknown_kind_fails_saying_so(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    op_id = await enqueue(store, SERIALS[0], kind="teleport")
    await engine_for(store, box, Scripted(lambda ctx: "x"), clock).run_until_idle()
    op = await get(store, op_id)
    assert op.state == "failed" and "no workflow for operations of kind 'teleport'" in op.reason


async def test_an_operation_whose_deadline_passed_before_it_ran_is_escalated(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    workflow = Scripted(lambda ctx: "done")
    op_id = await enqueue(store, SERIALS[0], deadline=T0 + timedelta(minutes=5))
    clock.advance(600)
    await engine_for(store, box, workflow, clock).run_until_idle()
    op = await get(store, op_id)
    assert op.state == "escalated" and "passed before it ran" in (op.reason or "")
    assert workflow.runs == []


async def test_a_crashed_daemons_operation_is_taken_over_after_its_lease(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    hang = asyncio.Event()

    async def first(ctx: OpContext) -> str:
        await hang.wait()  # the daemon dies in the middle of this
        return "never"

    op_id = await enqueue(store, SERIALS[0])
    crashed = engine_for(store, box, Scripted(first), clock, lease_seconds=60)
    crashed.owner = "daemon-a"
    assert await crashed.claim() == 1
    await asyncio.sleep(0)
    await crashed.abandon()
    assert (await get(store, op_id)).state == "running"

    survivor_flow = Scripted(lambda ctx: f"done on attempt {ctx.attempt}")
    survivor = engine_for(store, box, survivor_flow, clock, lease_seconds=60)
    survivor.owner = "daemon-b"
    assert await survivor.run_until_idle() == 0  # the lease still holds
    clock.advance(61)
    assert await survivor.run_until_idle() == 1
    op = await get(store, op_id)
    assert (op.state, op.reason, op.lease_owner) == ("succeeded", "done on attempt 2", "daemon-b")


async def test_a_run_whose_own_lease_ran_out_is_never_started_twice(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    release = asyncio.Event()

    async def slow(ctx: OpContext) -> str:
        await release.wait()
        return f"done on attempt {ctx.attempt}"

    op_id = await enqueue(store, SERIALS[0])
    workflow = Scripted(slow)
    engine = engine_for(store, box, workflow, clock, lease_seconds=60)
    assert await engine.claim() == 1
    clock.advance(61)  # the loop was too busy to renew: the claim takes the lease again
    assert await engine.claim() == 0
    release.set()
    await engine.run_until_idle()
    op = await get(store, op_id)
    assert op.state == "succeeded" and len(workflow.runs) == 1


async def test_the_global_limit_and_one_operation_per_unit(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    release = asyncio.Event()

    async def slow(ctx: OpContext) -> str:
        await release.wait()
        return "done"

    for serial in SERIALS[:5]:
        await enqueue(store, serial)
    second_on_unit_0 = await enqueue(store, SERIALS[0], key="second-on-0")
    engine = engine_for(store, box, Scripted(slow), clock, parallel=3)
    assert await engine.claim() == 3
    assert await engine.claim() == 0
    assert engine.running == 3
    release.set()
    await engine.run_until_idle()
    async with store.sessions() as session:
        states = (await session.scalars(select(Operation.state))).all()
    assert sorted(states) == ["succeeded"] * 6
    assert (await get(store, second_on_unit_0)).attempts == 1


# ----- batches ---------------------------------------------------------------------------
async def _request(
    session: Any, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    if target == "US01REFUSED0":
        raise RuleViolation("serial", target, "a child is never replaced by a link item")
    done = await ops.enqueue(
        session,
        kind="scripted",
        idempotency_key=f"scripted:{target}:{ctx.request_id}",
        requested_by=ctx.requested_by,
        unit_serial=target,
        batch_id=ctx.batch_id,
        not_before=ctx.now,
    )
    return [done.op]


async def make_batch(store: Store, box: SecretBox, serials: list[str], **kw: Any) -> str:
    ctx = RequestContext(requested_by="admin:sato", box=box, now=T0)
    async with store.transaction() as session:
        created = await batches.create_batch(
            session,
            ctx,
            "scripted",
            batches.Selection(serials=tuple(serials)),
            {},
            requests={"scripted": _request},
            **kw,
        )
        return created.batch.id


async def progress(store: Store, batch_id: str) -> batches.Progress:
    async with store.sessions() as session:
        return await batches.progress(session, batch_id)


def failing_on(bad: set[str]) -> Scripted:
    def script(ctx: OpContext) -> str:
        if ctx.unit_serial in bad:
            raise VerificationFailed(ctx.unit_serial or "", "guest SSID not changed")
        return "done"

    return Scripted(script)


async def test_a_batch_runs_its_canary_first_then_the_rest(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    batch_id = await make_batch(store, box, [*SERIALS[:8], "US01REFUSED0"], canary=2)
    workflow = failing_on(set())
    engine = engine_for(store, box, workflow, clock)
    assert await engine.claim() == 2  # the canary alone
    await engine.run_until_idle()
    done = await progress(store, batch_id)
    assert (done.state, done.total, done.counts) == ("done", 8, {"succeeded": 8})
    first_two = sorted(op_id for op_id, _ in workflow.runs)[:2]
    assert [op_id for op_id, _ in workflow.runs[:2]] == first_two
    async with store.sessions() as session:
        batch = await session.get(ops.Batch, batch_id)
    assert batch is not None and "a child is never replaced" in str(batch.selection["refused"])


async def test_a_failed_canary_stops_the_batch_and_cancels_the_rest(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    batch_id = await make_batch(store, box, SERIALS[:8], canary=2, max_failure_rate=0.0)
    await engine_for(store, box, failing_on({SERIALS[1]}), clock).run_until_idle()
    done = await progress(store, batch_id)
    assert done.state == "stopped"
    assert done.counts == {"succeeded": 1, "failed": 1, "cancelled": 6}
    assert "canary failed: 1 of 2 units failed" in (done.reason or "")


async def test_a_batch_stops_when_its_failure_rate_passes_the_threshold(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    batch_id = await make_batch(store, box, SERIALS[:10], max_failure_rate=0.3, max_parallel=1)
    engine = engine_for(store, box, failing_on({SERIALS[3], SERIALS[4]}), clock)
    await engine.run_until_idle()
    done = await progress(store, batch_id)
    # 3 ok, 1 failed (25 %: on), 1 more failed (40 %: stop)
    assert done.state == "stopped"
    assert done.counts == {"succeeded": 3, "failed": 2, "cancelled": 5}
    assert "failure rate 40% (2 of 5) passed 30%" in (done.reason or "")


async def test_a_batch_runs_no_more_than_its_max_parallel(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    release = asyncio.Event()

    async def slow(ctx: OpContext) -> str:
        await release.wait()
        return "done"

    batch_id = await make_batch(store, box, SERIALS[:6], max_parallel=2)
    engine = engine_for(store, box, Scripted(slow), clock)
    assert await engine.claim() == 2
    assert await engine.claim() == 0
    release.set()
    await engine.run_until_idle()
    assert (await progress(store, batch_id)).counts == {"succeeded": 6}


async def test_a_lone_operation_shows_its_steps_while_it_runs_a_batchs_at_its_end(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    # what staff following a run see in its history while a commit takes its time
    seen: dict[str, list[str]] = {}

    async def slow_commit(ctx: OpContext) -> str:
        clock.advance(3)  # the unit takes 3 s to commit: more than a lone run's interval
        await ctx.step("commit confirmed", True, "rolls back in 5 min unless confirmed")
        assert isinstance(ctx, RunContext)
        await ctx.flushed()
        async with store.sessions() as session:
            seen[ctx.unit_serial or ""] = [s.step for s in await ops.steps(session, ctx.op_id)]
        return "done"

    lone = await enqueue(store, SERIALS[0])
    batch_id = await make_batch(store, box, SERIALS[1:2])
    await engine_for(store, box, Scripted(slow_commit), clock).run_until_idle()
    assert seen == {SERIALS[0]: ["read", "commit confirmed"], SERIALS[1]: []}
    assert (await progress(store, batch_id)).counts == {"succeeded": 1}
    async with store.sessions() as session:
        batch_op = await session.scalar(select(Operation.id).where(Operation.batch_id == batch_id))
        for op_id in (lone, batch_op):
            steps = [s.step for s in await ops.steps(session, op_id)]
            assert steps == ["read", "commit confirmed", "succeeded"]


async def test_cancelling_a_batch_cancels_what_has_not_started(
    store: Store, box: SecretBox, clock: ManualClock
) -> None:
    batch_id = await make_batch(store, box, SERIALS[:4])
    async with store.transaction() as session:
        cancelled = await batches.cancel_batch(session, batch_id, "admin:sato")
    assert cancelled.state == "cancelled" and cancelled.counts == {"cancelled": 4}
    assert await engine_for(store, box, failing_on(set()), clock).run_until_idle() == 0


def test_a_selection_names_exactly_one_kind_of_target() -> None:
    with pytest.raises(RuleViolation, match="exactly one of customers, serials or filter"):
        batches.Selection.parse({"customers": ["138301482"], "serials": ["US01ABCD1234"]})
    with pytest.raises(RuleViolation, match="filter keys are"):
        batches.Selection.parse({"filter": {"colour": "red"}})
    assert batches.Selection.parse({"serials": ["US01ABCD1234"]}).serials == ("US01ABCD1234",)
