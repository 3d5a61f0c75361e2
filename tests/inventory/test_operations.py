"""The durable operations store on both stores: enqueue, claim, leases, steps, cancel."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect, select, update
from sqlalchemy.exc import IntegrityError

from inventory import operations as ops
from inventory.errors import Conflict, NotFound, RuleViolation
from inventory.operations import Operation, OpState
from inventory.redact import MASK, Redactor
from inventory.secrets import SecretBox
from inventory.store import Store, open_store

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
UNIT_A = "US01BJH00022"
UNIT_B = "US01BJH00023"


async def _enqueue(store: Store, key: str, **kwargs: Any) -> Operation:
    values: dict[str, Any] = {"kind": "cutover_v6", "requested_by": "staff:kimura"}
    values.update(kwargs)
    async with store.transaction() as session:
        return (await ops.enqueue(session, idempotency_key=key, **values)).op


async def _claim(
    store: Store, owner: str, now: datetime, *, limit: int = 10, lease: float = 60
) -> list[Operation]:
    async with store.sessions() as session:
        claimed = await ops.claim_due(session, owner, now, lease, limit)
        await session.commit()
    return claimed


async def _state(store: Store, op_id: int) -> Operation:
    async with store.sessions() as session:
        return await ops.get(session, op_id)


async def test_enqueue_is_idempotent_on_the_key(store: Store) -> None:
    async with store.transaction() as session:
        first = await ops.enqueue(
            session,
            kind="cutover_v6",
            idempotency_key="req-1:US01BJH00022",
            requested_by="staff:kimura",
            unit_serial=UNIT_A,
            params={"wan_mode": "ipoe"},
            not_before=T0,
        )
    async with store.transaction() as session:
        again = await ops.enqueue(
            session,
            kind="cutover_v6",
            idempotency_key="req-1:US01BJH00022",
            requested_by="staff:kimura",
            unit_serial=UNIT_A,
            not_before=T0 + timedelta(hours=1),
        )
    assert first.created and not again.created
    assert again.op.id == first.op.id
    assert again.op.not_before == T0  # the earlier operation, untouched
    stored = await _state(store, first.op.id)
    assert stored.state == OpState.QUEUED
    assert stored.params == {"wan_mode": "ipoe"}
    assert stored.attempts == 0
    assert stored.not_before.tzinfo == UTC
    async with store.sessions() as session:
        count = len((await session.scalars(select(Operation))).all())
    assert count == 1


async def test_secrets_go_encrypted_in_secret_params_only(store: Store, box: SecretBox) -> None:
    with pytest.raises(RuleViolation, match="secret_params"):
        await _enqueue(store, "k1", params={"guest_passphrase": "hunter22"})
    with pytest.raises(RuleViolation, match="encrypted token"):
        await _enqueue(store, "k2", secret_params="hunter22")
    token = box.encrypt("hunter22", purpose="operation")
    op = await _enqueue(store, "k3", secret_params=token)
    assert (await _state(store, op.id)).secret_params == token
    assert "hunter22" not in repr(op)


async def test_claim_takes_due_ones_only(store: Store) -> None:
    due = await _enqueue(store, "due", unit_serial=UNIT_A, not_before=T0)
    later = await _enqueue(store, "later", unit_serial=UNIT_B, not_before=T0 + timedelta(hours=1))
    claimed = await _claim(store, "daemon-1", T0, lease=7200)
    assert [op.id for op in claimed] == [due.id]
    op = claimed[0]
    assert op.state == OpState.RUNNING
    assert op.lease_owner == "daemon-1"
    assert op.lease_expires == T0 + timedelta(hours=2)
    assert op.attempts == 1
    assert await _claim(store, "daemon-1", T0 + timedelta(minutes=59)) == []  # not due, leased
    claimed = await _claim(store, "daemon-1", T0 + timedelta(hours=1))
    assert [op.id for op in claimed] == [later.id]


async def test_claim_respects_the_limit_and_the_order(store: Store) -> None:
    made = [
        await _enqueue(store, f"k{i}", unit_serial=f"US01BJH0010{i}", not_before=T0 - timedelta(i))
        for i in range(4)
    ]
    claimed = await _claim(store, "daemon-1", T0, limit=2)
    assert [op.id for op in claimed] == [made[3].id, made[2].id]  # the oldest due first


async def test_at_most_one_running_operation_per_unit(store: Store) -> None:
    first = await _enqueue(store, "a1", unit_serial=UNIT_A, not_before=T0)
    second = await _enqueue(store, "a2", unit_serial=UNIT_A, not_before=T0)
    other = await _enqueue(store, "b1", unit_serial=UNIT_B, not_before=T0)
    claimed = await _claim(store, "daemon-1", T0)
    assert sorted(op.id for op in claimed) == [first.id, other.id]
    assert await _claim(store, "daemon-2", T0) == []  # the unit is busy: the second waits
    assert (await _state(store, second.id)).state == OpState.QUEUED

    async with store.transaction() as session:
        await ops.finish(session, claimed[0], OpState.SUCCEEDED, "verified")
    claimed = await _claim(store, "daemon-2", T0 + timedelta(seconds=1))
    assert [op.id for op in claimed] == [second.id]


async def test_the_database_refuses_two_running_operations_on_a_unit(store: Store) -> None:
    first = await _enqueue(store, "a1", unit_serial=UNIT_A, not_before=T0)
    second = await _enqueue(store, "a2", unit_serial=UNIT_A, not_before=T0)
    await _claim(store, "daemon-1", T0)
    with pytest.raises(IntegrityError):
        async with store.transaction() as session:
            stmt = update(Operation).where(Operation.id == second.id).values(state="running")
            await session.execute(stmt)
    # operations without a unit are not limited
    await _enqueue(store, "n1", not_before=T0)
    await _enqueue(store, "n2", not_before=T0)
    assert len(await _claim(store, "daemon-1", T0)) == 2
    assert (await _state(store, first.id)).state == OpState.RUNNING


async def test_an_expired_lease_is_taken_over_and_the_old_owner_is_shut_out(store: Store) -> None:
    op = await _enqueue(store, "a1", unit_serial=UNIT_A, not_before=T0)
    await _enqueue(store, "a2", unit_serial=UNIT_A, not_before=T0)
    (mine,) = await _claim(store, "daemon-1", T0, lease=30)
    async with store.transaction() as session:
        assert await ops.renew_lease(session, mine, T0 + timedelta(seconds=20), 30) == (
            T0 + timedelta(seconds=50)
        )
    assert await _claim(store, "daemon-2", T0 + timedelta(seconds=40)) == []  # renewed

    (theirs,) = await _claim(store, "daemon-2", T0 + timedelta(seconds=50))  # daemon-1 died
    assert theirs.id == op.id  # the unit's running operation, not its queued one
    assert theirs.lease_owner == "daemon-2"
    assert theirs.attempts == 2
    async with store.sessions() as session:
        with pytest.raises(Conflict, match="no longer holds its lease"):
            await ops.renew_lease(session, mine, T0 + timedelta(seconds=51), 30)
        with pytest.raises(Conflict):
            await ops.finish(session, mine, OpState.SUCCEEDED)
        with pytest.raises(Conflict):
            await ops.retry_later(session, mine, T0 + timedelta(minutes=5))
    async with store.transaction() as session:
        await ops.finish(session, theirs, OpState.FAILED, "unit refused the change")
    stored = await _state(store, op.id)
    assert (stored.state, stored.reason, stored.lease_owner) == (
        "failed",
        "unit refused the change",
        "daemon-2",
    )


async def test_retry_later_waits_for_not_before(store: Store) -> None:
    op = await _enqueue(store, "a1", unit_serial=UNIT_A, not_before=T0)
    (running,) = await _claim(store, "daemon-1", T0)
    async with store.transaction() as session:
        await ops.retry_later(session, running, T0 + timedelta(minutes=5), "unreachable")
    stored = await _state(store, op.id)
    assert (stored.state, stored.lease_owner, stored.reason) == ("retry_wait", None, "unreachable")
    assert await _claim(store, "daemon-1", T0 + timedelta(minutes=4)) == []
    (again,) = await _claim(store, "daemon-1", T0 + timedelta(minutes=5))
    assert (again.id, again.attempts) == (op.id, 2)


async def test_finish_takes_final_states_only(store: Store) -> None:
    await _enqueue(store, "a1", unit_serial=UNIT_A, not_before=T0)
    (running,) = await _claim(store, "daemon-1", T0)
    async with store.sessions() as session:
        with pytest.raises(RuleViolation):
            await ops.finish(session, running, OpState.QUEUED)
    async with store.transaction() as session:
        await ops.finish(session, running, OpState.ESCALATED, "deadline passed")
    assert running.state == OpState.ESCALATED
    async with store.sessions() as session:
        with pytest.raises(Conflict):  # finished already
            await ops.finish(session, running, OpState.SUCCEEDED)


async def test_cancel_rules(store: Store) -> None:
    queued = await _enqueue(store, "a1", unit_serial=UNIT_A, not_before=T0)
    waiting = await _enqueue(store, "b1", unit_serial=UNIT_B, not_before=T0)
    running = await _enqueue(store, "c1", unit_serial="US01BJH00024", not_before=T0)
    async with store.transaction() as session:
        await session.execute(
            update(Operation)
            .where(Operation.id == waiting.id)
            .values(state="retry_wait", not_before=T0 + timedelta(hours=1))
        )
    async with store.transaction() as session:
        cancelled = await ops.cancel(session, queued.id, "customer withdrew")
        assert (cancelled.state, cancelled.reason) == ("cancelled", "customer withdrew")
        assert (await ops.cancel(session, waiting.id)).state == OpState.CANCELLED
    (claimed,) = await _claim(store, "daemon-1", T0)
    assert claimed.id == running.id
    async with store.sessions() as session:
        with pytest.raises(Conflict, match="is running"):
            await ops.cancel(session, running.id)
        with pytest.raises(Conflict, match="is cancelled"):
            await ops.cancel(session, queued.id)
        with pytest.raises(NotFound):
            await ops.cancel(session, 999_999)
    async with store.transaction() as session:
        await ops.finish(session, claimed, OpState.SUCCEEDED)
    async with store.sessions() as session:
        with pytest.raises(Conflict, match="is succeeded"):
            await ops.cancel(session, running.id)
    assert await _claim(store, "daemon-1", T0 + timedelta(days=1)) == []  # cancelled stay put


async def test_steps_are_numbered_and_masked(
    store: Store, box: SecretBox, redactor: Redactor
) -> None:
    await _enqueue(store, "a1", unit_serial=UNIT_A, not_before=T0)
    (running,) = await _claim(store, "daemon-1", T0)
    passphrase = box.decrypt(box.encrypt("sakura-guest-2025", purpose="x"), purpose="x")
    async with store.transaction() as session:
        await ops.add_step(session, running, "read", True, "wan-mode pppoe", at=T0)
        await ops.add_step(
            session,
            running,
            "stage",
            False,
            f"set wifi guest {passphrase} refused; password=topsecret",
            redactor=redactor,
        )
    async with store.sessions() as session:
        rows = await ops.steps(session, running.id)
    assert [(s.seq, s.step, s.ok) for s in rows] == [(1, "read", True), (2, "stage", False)]
    assert rows[0].at == T0
    assert passphrase not in rows[1].detail
    assert "topsecret" not in rows[1].detail
    assert MASK in rows[1].detail


async def test_concurrent_claims_never_hand_out_one_operation_twice(store: Store) -> None:
    """Two daemons claim at once (two sessions; on PostgreSQL truly concurrent)."""
    for unit in range(10):
        for n in range(2):
            await _enqueue(
                store, f"u{unit}-{n}", unit_serial=f"US01BJH001{unit:02d}", not_before=T0
            )
    for n in range(5):
        await _enqueue(store, f"none-{n}", not_before=T0)

    async def claim(owner: str) -> list[int]:
        async with store.sessions() as session:
            claimed = await ops.claim_due(session, owner, T0, 60, 50)
            await asyncio.sleep(0.05)  # hold the claim open while the other one runs
            await session.commit()
        return [op.id for op in claimed]

    for _ in range(3):
        first, second = await asyncio.gather(claim("daemon-1"), claim("daemon-2"))
        assert not set(first) & set(second)
    async with store.sessions() as session:
        running = (
            await session.scalars(select(Operation).where(Operation.state == "running"))
        ).all()
    assert len(running) == 15  # one per unit, and every operation without a unit
    assert len({op.unit_serial for op in running if op.unit_serial}) == 10


async def test_migration_0002_goes_up_and_down(database_url: str) -> None:
    async with open_store(database_url) as store:
        await store.migrate("0001")
        assert await store.revision() == "0001"
        await store.migrate("0002")
        assert await store.revision() == "0002"
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("operations"))
        assert {"operations", "operation_steps"} <= tables
        partial = next(i for i in indexes if i["name"] == "uq_operations_unit_serial_running")
        assert partial["unique"]
        await store.downgrade("0001")
        async with store.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert not {"operations", "operation_steps"} & tables
        await store.migrate()
        await store.downgrade("0002")  # 0003 goes down cleanly too
        assert await store.revision() == "0002"


async def test_a_claim_inside_a_transaction_needs_the_write_lock_on_sqlite(store: Store) -> None:
    await _enqueue(store, "a1", unit_serial=UNIT_A, not_before=T0)
    if store.dialect == "sqlite":
        with pytest.raises(RuntimeError, match="write lock"):
            async with store.transaction() as session:
                await ops.claim_due(session, "daemon-1", T0, 60, 10)
    async with store.transaction(write_lock=True) as session:
        assert len(await ops.claim_due(session, "daemon-1", T0, 60, 10)) == 1


async def test_retry_queues_a_failed_operation_again_and_refuses_a_waiting_one(
    store: Store,
) -> None:
    op_id = (await _enqueue(store, "r1", unit_serial=UNIT_A, not_before=T0)).id
    async with store.transaction() as session:
        with pytest.raises(Conflict, match="only a failed, escalated or cancelled"):
            await ops.retry(session, op_id, T0, "alice asked")
    async with store.transaction(write_lock=True) as session:
        (op,) = await ops.claim_due(session, "daemon-1", T0, 60, 10)
        await ops.finish(session, op, OpState.FAILED, "unit refused")
    later = T0 + timedelta(hours=1)
    async with store.transaction() as session:
        again = await ops.retry(session, op_id, later, "alice asked")
    assert (again.state, again.not_before, again.attempts) == ("queued", later, 1)
    async with store.transaction(write_lock=True) as session:
        (claimed,) = await ops.claim_due(session, "daemon-2", later, 60, 10)
    assert claimed.id == op_id and claimed.attempts == 2
    async with store.transaction() as session:
        with pytest.raises(NotFound):
            await ops.retry(session, 999_999, later, "alice asked")


async def test_a_claim_takes_the_longest_due_first_whether_queued_retrying_or_abandoned(
    store: Store,
) -> None:
    """Expired leases, retries and new operations are looked up apart; what is handed out
    is still in the order they became due."""
    abandoned = (await _enqueue(store, "c1", unit_serial="US01BJH00031", not_before=T0)).id
    (taken,) = await _claim(store, "daemon-dead", T0, limit=1, lease=60)  # never finished
    assert taken.id == abandoned
    retried = (await _enqueue(store, "c2", unit_serial="US01BJH00032", not_before=T0)).id
    async with store.transaction(write_lock=True) as session:
        (op,) = await ops.claim_due(session, "daemon-1", T0, 60, 1)
        await ops.retry_later(session, op, T0 + timedelta(minutes=5), "unit unreachable")
    queued = [
        (await _enqueue(store, f"c3-{n}", unit_serial=f"US01BJH0004{n}", not_before=due)).id
        for n, due in enumerate([T0 + timedelta(minutes=2), T0 + timedelta(minutes=9)])
    ]
    later = T0 + timedelta(hours=1)
    order = [op.id for _ in range(4) for op in await _claim(store, "daemon-2", later, limit=1)]
    assert order == [abandoned, queued[0], retried, queued[1]]
    assert await _claim(store, "daemon-2", later) == []


async def test_enqueue_many_writes_the_new_and_returns_the_known_in_order(store: Store) -> None:
    known = await _enqueue(store, "stop:ITEM-2", unit_serial=UNIT_B, not_before=T0)
    new = [
        ops.NewOperation("account_stop", f"stop:ITEM-{n}", "scheduler", unit_serial=serial)
        for n, serial in ((1, UNIT_A), (2, UNIT_B), (1, UNIT_A), (3, "US01BJH00024"))
    ]
    async with store.transaction() as session:
        done = await ops.enqueue_many(session, new, chunk=2)
    assert [(e.op.idempotency_key, e.created) for e in done] == [
        ("stop:ITEM-1", True),
        ("stop:ITEM-2", False),
        ("stop:ITEM-1", False),  # the same key twice in one call: written once
        ("stop:ITEM-3", True),
    ]
    assert done[1].op.id == known.id and done[2].op.id == done[0].op.id
    async with store.sessions() as session:
        rows = (await session.scalars(select(Operation).order_by(Operation.id))).all()
    assert [(r.idempotency_key, r.state) for r in rows] == [
        ("stop:ITEM-2", "queued"),
        ("stop:ITEM-1", "queued"),
        ("stop:ITEM-3", "queued"),
    ]


async def test_enqueue_many_checks_every_operation_before_writing_any(store: Store) -> None:
    new = [
        ops.NewOperation("account_stop", "stop:ITEM-1", "scheduler", unit_serial=UNIT_A),
        ops.NewOperation("account_stop", "stop:ITEM-2", "scheduler", params={"password": "x"}),
    ]
    async with store.transaction() as session:
        with pytest.raises(RuleViolation, match="secrets go in secret_params"):
            await ops.enqueue_many(session, new)
    async with store.sessions() as session:
        assert (await session.scalars(select(Operation))).all() == []
