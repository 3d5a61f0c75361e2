"""The durable operations store: what the engine has been asked to do, unit by unit.

    batches ── operations ── operation_steps   each step a workflow took (secrets masked)

A request writes one `operations` row per unit (`enqueue`, idempotent on its key) and answers
with the ids; the engine claims due rows (`claim_due`) under a lease with an expiry, so the
work of a daemon that died is taken over once its lease runs out. At most one operation per
unit is `running`: `claim_due` never hands out a second one, and a partial UNIQUE index on
`unit_serial WHERE state = 'running'` makes a second one impossible in the database itself.

States:

    queued ──claim──▶ running ──finish──▶ succeeded | failed | escalated
       ▲                 │ ▲
       │         retry_later│ (lease expired: another owner takes it over)
       │                 ▼ │
       └──cancel──   retry_wait ──claim──▶ running
    queued | retry_wait ──cancel──▶ cancelled

Every change of a claimed operation is a compare-and-set on (id, running, lease owner): an
owner whose lease was taken over gets `Conflict` and changes nothing. None of these functions
commits; the caller owns the transaction (and, on PostgreSQL, should commit a claim promptly:
the claimed rows stay locked until then).

`params` is JSON for non-secret parameters only; secrets go in `secret_params` as one
encrypted token (`SecretBox.encrypt`, a `v1:<kid>:…` string), never in plain text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    JSON,
    CheckConstraint,
    CursorResult,
    Float,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    exists,
    func,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased, mapped_column
from sqlalchemy.orm.attributes import set_committed_value

from inventory.errors import Conflict, NotFound, RuleViolation
from inventory.models import Base, Timestamped, _one_of, utcnow
from inventory.redact import Redactor
from inventory.secrets import TOKEN_VERSION, token_kid
from inventory.store import WRITE_LOCK


class BatchState(StrEnum):
    CANARY = "canary"  # only the first `canary` operations may run
    RUNNING = "running"  # every operation may run
    STOPPED = "stopped"  # the failure rate passed the threshold: the rest was cancelled
    DONE = "done"
    CANCELLED = "cancelled"


class OpState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    RETRY_WAIT = "retry_wait"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ESCALATED = "escalated"
    CANCELLED = "cancelled"


WAITING = (OpState.QUEUED.value, OpState.RETRY_WAIT.value)  # may be claimed once due
FINAL = frozenset({OpState.SUCCEEDED, OpState.FAILED, OpState.ESCALATED})  # `finish` states
_RUNNING_WHERE = text("state = 'running'")
# parameter names that say "secret": they belong in secret_params, encrypted
_SECRET_NAME = re.compile(r"(?i)password|passphrase|passwd|secret|psk|private_key")


class Operation(Timestamped, Base):
    """One unit of work for the engine: what (kind, params), on what (unit, customer),
    when (not_before, deadline), asked by whom, and where it stands."""

    __tablename__ = "operations"
    __table_args__ = (
        _one_of("state", OpState),
        CheckConstraint("attempts >= 0", name="attempts"),
        Index(None, "state", "not_before"),
        Index(None, "unit_serial", "state"),
        Index(None, "batch_id", "state"),
        Index(None, "customer_code"),
        Index(None, "request_id"),
        # two running operations on one unit are impossible, whatever the code does
        Index(
            "uq_operations_unit_serial_running",
            "unit_serial",
            unique=True,
            sqlite_where=_RUNNING_WHERE,
            postgresql_where=_RUNNING_WHERE,
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    unit_serial: Mapped[str | None] = mapped_column(String(12))
    customer_code: Mapped[str | None] = mapped_column(String(9))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # non-secret only
    secret_params: Mapped[str | None] = mapped_column(Text)  # one encrypted token
    state: Mapped[str] = mapped_column(String(16), default=OpState.QUEUED.value)
    attempts: Mapped[int] = mapped_column(default=0)
    not_before: Mapped[datetime] = mapped_column(default=utcnow)
    deadline: Mapped[datetime | None]
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    batch_id: Mapped[str | None] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(64))  # the request that made it
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires: Mapped[datetime | None]
    reason: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:  # never the parameters: they may be sensitive in a log
        return f"<Operation {self.id} {self.kind} {self.unit_serial} {self.state}>"


class Batch(Timestamped, Base):
    """One change over a selection of units: its operations carry its id.

    The first `canary` operations (by id) run first; the rest waits until they have all
    ended and their failure rate is within `max_failure_rate`. Afterwards, the batch stops
    (waiting operations cancelled) as soon as the failure rate among ended operations passes
    the threshold, once at least `canary` (or 1) of them have ended.
    """

    __tablename__ = "batches"
    __table_args__ = (
        _one_of("state", BatchState),
        CheckConstraint("max_failure_rate >= 0 AND max_failure_rate <= 1", name="rate"),
        CheckConstraint("canary >= 0", name="canary"),
        CheckConstraint("max_parallel >= 1", name="max_parallel"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    requested_by: Mapped[str] = mapped_column(String(100))
    selection: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # as asked
    state: Mapped[str] = mapped_column(String(16), default=BatchState.RUNNING.value)
    canary: Mapped[int] = mapped_column(default=0)
    canary_last_op_id: Mapped[int | None]  # the canary: operations with id <= this one
    max_failure_rate: Mapped[float] = mapped_column(Float, default=0.2)
    max_parallel: Mapped[int] = mapped_column(default=100)
    total: Mapped[int] = mapped_column(default=0)
    reason: Mapped[str | None] = mapped_column(Text)


class OperationStep(Base):
    """One step of an operation's history. `detail` is masked before it is written."""

    __tablename__ = "operation_steps"
    __table_args__ = (UniqueConstraint("operation_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id", ondelete="CASCADE"))
    seq: Mapped[int]
    at: Mapped[datetime] = mapped_column(default=utcnow)
    step: Mapped[str] = mapped_column(String(64))
    ok: Mapped[bool]
    detail: Mapped[str] = mapped_column(Text, default="")


@dataclass(frozen=True)
class Enqueued:
    op: Operation
    created: bool  # False: the idempotency key was known; `op` is the earlier operation


@dataclass(frozen=True)
class NewOperation:
    """One operation to write with `enqueue_many` (the arguments of `enqueue`)."""

    kind: str
    idempotency_key: str
    requested_by: str
    unit_serial: str | None = None
    customer_code: str | None = None
    params: Mapping[str, Any] | None = None
    secret_params: str | None = None
    not_before: datetime | None = None
    deadline: datetime | None = None
    batch_id: str | None = None
    request_id: str | None = None

    def checked_row(self) -> Operation:
        """The row to insert, once the operation keeps every rule of a new one."""
        if not self.kind:
            raise RuleViolation("kind", self.kind, "an operation needs a kind")
        if not self.idempotency_key:
            raise RuleViolation("idempotency_key", self.idempotency_key, "an operation needs a key")
        for name in self.params or {}:
            if _SECRET_NAME.search(name):
                raise RuleViolation(
                    "params", name, "secrets go in secret_params, encrypted", hint="SecretBox"
                )
        if self.secret_params is not None:
            if not self.secret_params.startswith(f"{TOKEN_VERSION}:"):
                raise RuleViolation(
                    "secret_params", None, "must be an encrypted token (v1:<kid>:…)"
                )
            token_kid(self.secret_params)  # refuses anything that is not a token
        not_before = self.not_before or utcnow()
        if self.deadline is not None and self.deadline < not_before:
            raise RuleViolation("deadline", self.deadline.isoformat(), "is before not_before")
        return Operation(
            kind=self.kind,
            idempotency_key=self.idempotency_key,
            requested_by=self.requested_by,
            unit_serial=self.unit_serial,
            customer_code=self.customer_code,
            params=dict(self.params or {}),
            secret_params=self.secret_params,
            state=OpState.QUEUED.value,
            attempts=0,
            not_before=not_before,
            deadline=self.deadline,
            batch_id=self.batch_id,
            request_id=self.request_id,
        )


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    idempotency_key: str,
    requested_by: str,
    unit_serial: str | None = None,
    customer_code: str | None = None,
    params: Mapping[str, Any] | None = None,
    secret_params: str | None = None,
    not_before: datetime | None = None,
    deadline: datetime | None = None,
    batch_id: str | None = None,
    request_id: str | None = None,
) -> Enqueued:
    """Write a queued operation, or return the one already written under `idempotency_key`
    (creating nothing), also when a concurrent request wins the race for the key."""
    new = NewOperation(
        kind=kind,
        idempotency_key=idempotency_key,
        requested_by=requested_by,
        unit_serial=unit_serial,
        customer_code=customer_code,
        params=params,
        secret_params=secret_params,
        not_before=not_before,
        deadline=deadline,
        batch_id=batch_id,
        request_id=request_id,
    )
    op = new.checked_row()
    existing = await _by_key(session, idempotency_key)
    if existing is not None:
        return Enqueued(existing, created=False)
    try:
        async with session.begin_nested():
            session.add(op)
    except IntegrityError:  # a concurrent enqueue committed the same key first
        existing = await _by_key(session, idempotency_key)
        if existing is None:
            raise
        return Enqueued(existing, created=False)
    return Enqueued(op, created=True)


async def enqueue_many(
    session: AsyncSession, new: Sequence[NewOperation], *, chunk: int = 500
) -> list[Enqueued]:
    """`enqueue` for many operations, in their order: the known keys looked up and the new
    rows inserted a chunk at a time (with thousands, far cheaper than one by one). Every
    operation is checked before anything is written. Should a concurrent writer take one of
    the keys meanwhile, that chunk is written one by one, as `enqueue` would."""
    rows = [n.checked_row() for n in new]
    out: list[Enqueued] = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        keys = [row.idempotency_key for row in part]
        known = {
            op.idempotency_key: op
            for op in await session.scalars(
                select(Operation).where(Operation.idempotency_key.in_(keys))
            )
        }
        fresh: dict[str, Operation] = {}
        for row in part:
            if row.idempotency_key not in known and row.idempotency_key not in fresh:
                fresh[row.idempotency_key] = row
        try:
            async with session.begin_nested():
                session.add_all(fresh.values())
        except IntegrityError:  # a concurrent enqueue took one of these keys
            for n in new[start : start + chunk]:
                out.append(await enqueue(session, **dataclasses.asdict(n)))
            continue
        for row in part:
            key = row.idempotency_key
            if key in known:
                out.append(Enqueued(known[key], created=False))
            elif fresh.get(key) is row:
                out.append(Enqueued(row, created=True))
            else:  # the same key twice in one call: the first one stands
                out.append(Enqueued(fresh[key], created=False))
    return out


async def _by_key(session: AsyncSession, key: str) -> Operation | None:
    query = select(Operation).where(Operation.idempotency_key == key)
    return cast(Operation | None, await session.scalar(query))


async def get(session: AsyncSession, op_id: int) -> Operation:
    op = await session.get(Operation, op_id, populate_existing=True)
    if op is None:
        raise NotFound("operation", op_id)
    return op


async def steps(session: AsyncSession, op_id: int) -> Sequence[OperationStep]:
    query = select(OperationStep).where(OperationStep.operation_id == op_id)
    return (await session.scalars(query.order_by(OperationStep.seq))).all()


async def claim_due(
    session: AsyncSession, owner: str, now: datetime, lease_seconds: float, limit: int
) -> list[Operation]:
    """Claim up to `limit` due operations for `owner`: queued or retry_wait ones whose
    not_before has come, and running ones whose lease has expired (a dead daemon's work).
    They come back `running`, leased to `owner` until now + lease_seconds, attempts + 1.

    Per unit, only the oldest due operation is a candidate, and none while another of the
    unit's operations is running. On PostgreSQL the candidates are locked with
    `FOR UPDATE SKIP LOCKED`, so concurrent claimers never get the same row; on SQLite the
    claim runs under the write lock (give a fresh session, or one from
    `store.transaction(write_lock=True)`). The caller commits.
    """
    if limit <= 0:
        return []
    await _write_lock(session)
    o = Operation
    other = aliased(Operation)
    same_unit = and_(other.unit_serial == o.unit_serial, other.id != o.id)
    unit_busy = exists().where(same_unit, other.state == OpState.RUNNING.value)
    earlier_due = exists().where(
        same_unit, other.state.in_(WAITING), other.not_before <= now, other.id < o.id
    )
    # an operation of a batch runs while its batch runs, or in its canary
    batch_open = or_(
        o.batch_id.is_(None),
        exists().where(
            Batch.id == o.batch_id,
            or_(
                Batch.state == BatchState.RUNNING.value,
                and_(Batch.state == BatchState.CANARY.value, o.id <= Batch.canary_last_op_id),
            ),
        ),
    )
    lease_expired = and_(
        o.state == OpState.RUNNING.value,
        or_(o.lease_expires.is_(None), o.lease_expires <= now),
    )
    unit_free = or_(o.unit_serial.is_(None), and_(not_(unit_busy), not_(earlier_due)))
    # One query per state, each read in the order of the (state, not_before) index and
    # stopped at `limit`: one query with OR across the states would read every due row and
    # sort them all, which costs tens of milliseconds per claim with 10,000 queued.
    queries = [select(o).where(lease_expired)] + [
        select(o).where(o.state == state, o.not_before <= now, batch_open, unit_free)
        for state in WAITING
    ]
    candidates: list[Operation] = []
    for query in queries:
        query = (
            query.order_by(o.not_before, o.id)
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=o)
        candidates.extend((await session.scalars(query)).all())
    candidates.sort(key=lambda op: (op.not_before, op.id))

    room = await _batch_room(session, {op.batch_id for op in candidates if op.batch_id})
    chosen: list[Operation] = []
    units: set[str] = set()
    for op in candidates:
        if len(chosen) >= limit:
            break
        if op.unit_serial is not None and op.unit_serial in units:
            continue
        if op.batch_id is not None and op.state != OpState.RUNNING.value:
            if room.get(op.batch_id, 0) <= 0:
                continue  # the batch runs as many as it may (max_parallel)
            room[op.batch_id] -= 1
        if op.unit_serial is not None:
            units.add(op.unit_serial)
        chosen.append(op)
    if not chosen:
        return []
    values = {
        "state": OpState.RUNNING.value,
        "lease_owner": owner,
        "lease_expires": now + timedelta(seconds=lease_seconds),
        "attempts": Operation.attempts + 1,
        "updated_at": utcnow(),
    }
    try:
        # one statement for all; the unique index is the last word, and should another
        # claimer have just started one of these units, the claims go one by one
        async with session.begin_nested():
            await session.execute(
                update(Operation)
                .where(Operation.id.in_([op.id for op in chosen]))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        claimed = list(chosen)
    except IntegrityError:
        claimed = []
        for op in chosen:
            try:
                async with session.begin_nested():
                    await session.execute(
                        update(Operation)
                        .where(Operation.id == op.id)
                        .values(**values)
                        .execution_options(synchronize_session=False)
                    )
            except IntegrityError:
                continue
            claimed.append(op)
    for op in claimed:
        for key, value in values.items():
            set_committed_value(op, key, op.attempts + 1 if key == "attempts" else value)
    return claimed


async def _batch_room(session: AsyncSession, batch_ids: set[str]) -> dict[str, int]:
    """Per batch, how many more of its operations may run now (max_parallel - running)."""
    if not batch_ids:
        return {}
    running = dict(
        (
            await session.execute(
                select(Operation.batch_id, func.count())
                .where(Operation.batch_id.in_(batch_ids), Operation.state == OpState.RUNNING)
                .group_by(Operation.batch_id)
            )
        ).all()
    )
    limits = (
        await session.execute(select(Batch.id, Batch.max_parallel).where(Batch.id.in_(batch_ids)))
    ).all()
    return {bid: limit - running.get(bid, 0) for bid, limit in limits}


async def renew_leases(
    session: AsyncSession, owner: str, op_ids: Sequence[int], now: datetime, lease_seconds: float
) -> set[int]:
    """Extend the leases `owner` holds on `op_ids` (one UPDATE); the ids still held."""
    if not op_ids:
        return set()
    held = (
        await session.scalars(
            update(Operation)
            .where(
                Operation.id.in_(op_ids),
                Operation.state == OpState.RUNNING.value,
                Operation.lease_owner == owner,
            )
            .values(lease_expires=now + timedelta(seconds=lease_seconds), updated_at=utcnow())
            .returning(Operation.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    return set(held)


async def _write_lock(session: AsyncSession) -> None:
    if session.bind is None or session.bind.dialect.name != "sqlite":
        return
    if not session.in_transaction():
        await session.connection(execution_options=WRITE_LOCK)
        return
    conn = (await session.connection()).sync_connection
    options = conn.get_execution_options() if conn is not None else {}
    if not WRITE_LOCK.items() <= options.items():
        raise RuntimeError(
            "claim_due on SQLite needs the write lock: pass a fresh session or one from "
            "store.transaction(write_lock=True)"
        )


async def renew_lease(
    session: AsyncSession, op: Operation, now: datetime, lease_seconds: float
) -> datetime:
    """Extend `op`'s lease (held by `op.lease_owner`) to now + lease_seconds; `Conflict`
    when the lease was lost (taken over, or the operation is no longer running)."""
    expires = now + timedelta(seconds=lease_seconds)
    await _while_leased(session, op, "renew the lease", lease_expires=expires)
    return expires


async def add_step(
    session: AsyncSession,
    op: Operation,
    step: str,
    ok: bool,
    detail: str = "",
    *,
    at: datetime | None = None,
    redactor: Redactor | None = None,
) -> OperationStep:
    """Append a step to `op`'s history. `detail` is masked first: `password=…`-style values
    always, and every secret `redactor` knows (give the daemon's redactor)."""
    masked = (redactor or Redactor()).redact(detail)
    last = await session.scalar(
        select(func.max(OperationStep.seq)).where(OperationStep.operation_id == op.id)
    )
    row = OperationStep(
        operation_id=op.id,
        seq=(last or 0) + 1,
        at=at or utcnow(),
        step=step,
        ok=ok,
        detail=masked,
    )
    session.add(row)
    await session.flush()
    return row


@dataclass(frozen=True)
class Ending:
    """How one run of a claimed operation ended, for `end_many`."""

    op_id: int
    state: OpState  # a FINAL state, or RETRY_WAIT
    reason: str | None
    not_before: datetime | None = None  # RETRY_WAIT: when to try again
    deadline: datetime | None = None  # stored where the operation had none


async def end_many(session: AsyncSession, owner: str, endings: Sequence[Ending]) -> set[int]:
    """`finish` or `retry_later` many operations held by `owner`; the ids changed (an
    operation whose lease `owner` lost is left alone). The caller's transaction must hold
    the write lock on SQLite (`store.transaction(write_lock=True)`): the leases are read
    before they are ended."""
    if not endings:
        return set()
    for e in endings:
        if e.state not in FINAL and e.state != OpState.RETRY_WAIT:
            raise RuleViolation("state", str(e.state), "a run ends finished or retrying")
    held_query = select(Operation.id).where(
        Operation.id.in_([e.op_id for e in endings]),
        Operation.state == OpState.RUNNING.value,
        Operation.lease_owner == owner,
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        held_query = held_query.with_for_update()
    held = set((await session.scalars(held_query)).all())
    rows = [
        {
            "b_id": e.op_id,
            "b_state": e.state.value,
            "b_reason": e.reason,
            # a finished operation keeps the name of the daemon that finished it
            "b_owner": None if e.state == OpState.RETRY_WAIT else owner,
            "b_not_before": e.not_before,
            "b_deadline": e.deadline,
        }
        for e in endings
        if e.op_id in held
    ]
    if rows:
        # one statement, the same for every group (compiled once), run for many rows
        await session.execute(_END_ONE, [{**row, "b_at": utcnow()} for row in rows])
    return held


def _end_one_statement() -> Any:
    table = cast(Table, Operation.__table__)
    when = table.c.not_before.type  # UTC on both stores, as the column is
    return (
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.state == OpState.RUNNING.value,
        )
        .values(
            state=bindparam("b_state"),
            reason=bindparam("b_reason"),
            lease_expires=None,
            lease_owner=bindparam("b_owner"),
            updated_at=bindparam("b_at", type_=when),
            not_before=func.coalesce(bindparam("b_not_before", type_=when), table.c.not_before),
            deadline=func.coalesce(table.c.deadline, bindparam("b_deadline", type_=when)),
        )
    )


_END_ONE = _end_one_statement()


async def finish(
    session: AsyncSession, op: Operation, state: OpState, reason: str | None = None
) -> None:
    """End a running operation held by `op.lease_owner`: succeeded, failed or escalated."""
    if state not in FINAL:
        raise RuleViolation("state", str(state), f"finish takes one of {sorted(FINAL)}")
    await _while_leased(
        session, op, f"finish it as {state}", state=state.value, reason=reason, lease_expires=None
    )


async def retry_later(
    session: AsyncSession,
    op: Operation,
    not_before: datetime,
    reason: str | None = None,
    *,
    deadline: datetime | None = None,
) -> None:
    """Put a running operation back to wait until `not_before` (its lease is released);
    `deadline` sets one where the operation had none (the engine's default)."""
    values: dict[str, Any] = {} if deadline is None else {"deadline": deadline}
    await _while_leased(
        session,
        op,
        "retry it later",
        state=OpState.RETRY_WAIT.value,
        not_before=not_before,
        reason=reason,
        lease_owner=None,
        lease_expires=None,
        **values,
    )


async def cancel(session: AsyncSession, op_id: int, reason: str | None = None) -> Operation:
    """Cancel an operation that has not started (queued or retry_wait); `Conflict` when it is
    running or finished, `NotFound` when there is no such operation."""
    values = {"state": OpState.CANCELLED.value, "reason": reason}
    return await _move(session, op_id, WAITING, "only a waiting one can be cancelled", values)


async def _move(
    session: AsyncSession, op_id: int, states: Sequence[str], only: str, values: dict[str, Any]
) -> Operation:
    """Compare-and-set by state: change the operation only while it is in one of `states`."""
    stmt = (
        update(Operation)
        .where(Operation.id == op_id, Operation.state.in_(states))
        .values(**values, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], await session.execute(stmt))
    op = await session.get(Operation, op_id, populate_existing=True)
    if op is None:
        raise NotFound("operation", op_id)
    if result.rowcount != 1:
        raise Conflict(f"operation {op_id} is {op.state}: {only}")
    return op


async def _while_leased(session: AsyncSession, op: Operation, what: str, **values: Any) -> None:
    """Compare-and-set: change `op` only while it is running under `op.lease_owner`."""
    values["updated_at"] = utcnow()
    stmt = (
        update(Operation)
        .where(
            Operation.id == op.id,
            Operation.state == OpState.RUNNING.value,
            Operation.lease_owner == op.lease_owner,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], await session.execute(stmt))
    if result.rowcount != 1:
        raise Conflict(
            f"operation {op.id}: cannot {what}, {op.lease_owner!r} no longer holds its lease"
        )
    for key, value in values.items():
        set_committed_value(op, key, value)


RETRYABLE = (OpState.FAILED.value, OpState.ESCALATED.value, OpState.CANCELLED.value)


async def retry(session: AsyncSession, op_id: int, now: datetime, reason: str) -> Operation:
    """Queue a failed, escalated or cancelled operation again, due now, with its attempts
    and history kept (`reason` says who asked). `Conflict` when it is waiting, running or
    has succeeded; `NotFound` when there is no such operation."""
    values = {
        "state": OpState.QUEUED.value,
        "not_before": now,
        "reason": reason,
        "lease_owner": None,
        "lease_expires": None,
    }
    only = "only a failed, escalated or cancelled one can be retried"
    return await _move(session, op_id, RETRYABLE, only, values)
