"""Batches: one change over a selection of customers or units.

`create_batch` resolves the selection, writes one operation per unit through the kind's
request function (a target the rules refuse is reported, never aborts the batch), and
records the batch. The engine settles a batch each time one of its operations ends:

    canary   the first `canary` operations run alone; once they have all ended the batch
             runs on (failure rate within `max_failure_rate`) or stops
    running  stops as soon as the failure rate among ended operations passes the threshold
    stopped  its waiting operations are cancelled, with the reason
    done     every operation has ended

`progress` is what a client follows (the API streams it; `fleetctl batch` draws a bar).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fleetd.workflows.base import (
    BUSINESS_WIFI,
    GUEST_ROTATE,
    ORIGINAL_SSID,
    RequestContext,
    RequestFn,
)
from inventory.domain import Role
from inventory.errors import Conflict, FleetError, NotFound, RuleViolation
from inventory.models import Customer, Line, Unit, utcnow
from inventory.operations import WAITING, Batch, BatchState, Operation, OpState

# kinds whose request takes a customer: a selection of units is turned into their customers
CUSTOMER_KINDS = frozenset({BUSINESS_WIFI, ORIGINAL_SSID, GUEST_ROTATE})
FILTER_KEYS = ("role", "line_type", "branch", "v6_order_state", "wan_mode", "platform")
ENDED = (OpState.SUCCEEDED.value, OpState.FAILED.value, OpState.ESCALATED.value)
BAD = (OpState.FAILED.value, OpState.ESCALATED.value)


@dataclass(frozen=True)
class Selection:
    """Exactly one of: customer codes, unit serials, or a filter over units."""

    customers: tuple[str, ...] = ()
    serials: tuple[str, ...] = ()
    filter: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Selection:
        given = [k for k in ("customers", "serials", "filter") if data.get(k)]
        if len(given) != 1:
            raise RuleViolation(
                "selection",
                sorted(data),
                "give exactly one of customers, serials or filter",
                hint='e.g. {"customers": ["138301482"]} or {"filter": {"line_type": "flets_east"}}',
            )
        if "filter" in given:
            unknown = sorted(set(data["filter"]) - set(FILTER_KEYS))
            if unknown:
                raise RuleViolation(
                    "selection.filter", unknown, f"filter keys are {', '.join(FILTER_KEYS)}"
                )
            return cls(filter={k: str(v) for k, v in data["filter"].items()})
        values = data[given[0]]
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise RuleViolation(f"selection.{given[0]}", values, "must be a list")
        listed = tuple(str(v) for v in values)
        return cls(customers=listed) if given[0] == "customers" else cls(serials=listed)

    def as_dict(self) -> dict[str, Any]:
        if self.customers:
            return {"customers": list(self.customers)}
        if self.serials:
            return {"serials": list(self.serials)}
        return {"filter": dict(self.filter)}


@dataclass(frozen=True)
class Refused:
    target: str
    reason: str


@dataclass(frozen=True)
class Created:
    batch: Batch
    operations: list[Operation]
    refused: list[Refused]


@dataclass(frozen=True)
class Progress:
    id: str
    kind: str
    state: str
    total: int
    counts: dict[str, int]  # operation state -> how many
    failure_rate: float  # failed + escalated among ended operations
    reason: str | None
    canary: int
    requested_by: str
    created_at: datetime

    @property
    def ended(self) -> int:
        return sum(self.counts.get(s, 0) for s in ENDED)

    @property
    def finished(self) -> bool:
        return self.state in (BatchState.DONE, BatchState.STOPPED, BatchState.CANCELLED) and not (
            self.counts.get(OpState.RUNNING.value, 0)
        )


async def resolve(session: AsyncSession, selection: Selection, kind: str) -> list[str]:
    """The request targets of the selection: customer codes for a customer kind, else
    unit serials (parents only when a customer selection meets a unit kind)."""
    if selection.customers:
        if kind in CUSTOMER_KINDS:
            return list(dict.fromkeys(selection.customers))
        query = (
            select(Unit.serial)
            .join(Customer, Customer.id == Unit.customer_id)
            .where(Customer.code.in_(selection.customers), Unit.role == Role.PARENT.value)
            .order_by(Customer.code, Unit.serial)
        )
        return list((await session.scalars(query)).all())
    if selection.serials:
        serials = list(dict.fromkeys(selection.serials))
        if kind not in CUSTOMER_KINDS:
            return serials
        query = (
            select(Customer.code)
            .join(Unit, Unit.customer_id == Customer.id)
            .where(Unit.serial.in_(serials))
            .distinct()
            .order_by(Customer.code)
        )
        return list((await session.scalars(query)).all())
    pairs = select(Unit.serial, Customer.code).join(Customer, Customer.id == Unit.customer_id)
    f = selection.filter
    if "role" in f:
        pairs = pairs.where(Unit.role == f["role"])
    if "platform" in f:
        pairs = pairs.where(Unit.platform == f["platform"])
    if "wan_mode" in f:
        pairs = pairs.where(Unit.intended_wan_mode == f["wan_mode"])
    if "branch" in f:
        pairs = pairs.where(Customer.branch == f["branch"])
    if "line_type" in f or "v6_order_state" in f:
        pairs = pairs.join(Line, Line.customer_id == Customer.id)
        if "line_type" in f:
            pairs = pairs.where(Line.line_type == f["line_type"])
        if "v6_order_state" in f:
            pairs = pairs.where(Line.v6_order_state == f["v6_order_state"])
    rows = (await session.execute(pairs.order_by(Customer.code, Unit.serial))).all()
    if kind in CUSTOMER_KINDS:
        return list(dict.fromkeys(code for _serial, code in rows))
    return [serial for serial, _code in rows]


async def create_batch(
    session: AsyncSession,
    ctx: RequestContext,
    kind: str,
    selection: Selection,
    params: Mapping[str, Any],
    *,
    canary: int = 0,
    max_failure_rate: float = 0.2,
    max_parallel: int = 100,
    requests: Mapping[str, RequestFn] | None = None,
) -> Created:
    """Write a batch and its operations (the caller commits; the engine starts them)."""
    if requests is None:
        from fleetd import workflows  # the registry imports every workflow: only when needed

        requests = workflows.REQUESTS  # type: ignore[attr-defined,unused-ignore]
    if kind not in requests:
        raise RuleViolation("kind", kind, f"a batch runs one of {', '.join(sorted(requests))}")
    if canary < 0:
        raise RuleViolation("canary", canary, "is a number of units from 0 up")
    if not 0.0 <= max_failure_rate <= 1.0:
        raise RuleViolation("max_failure_rate", max_failure_rate, "is a share from 0 to 1")
    if max_parallel < 1:
        raise RuleViolation("max_parallel", max_parallel, "is at least 1")
    batch_id = f"b-{ctx.now:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    batch = Batch(
        id=batch_id,
        kind=kind,
        requested_by=ctx.requested_by,
        selection=selection.as_dict(),
        state=BatchState.CANARY.value if canary else BatchState.RUNNING.value,
        canary=canary,
        max_failure_rate=max_failure_rate,
        max_parallel=max_parallel,
        total=0,
    )
    session.add(batch)
    await session.flush()
    request = requests[kind]
    inner = replace(ctx, batch_id=batch_id, request_id=ctx.request_id or batch_id)
    created: list[Operation] = []
    refused: list[Refused] = []
    for target in await resolve(session, selection, kind):
        try:
            async with session.begin_nested():
                created.extend(await request(session, inner, target, params))
        except FleetError as exc:
            refused.append(Refused(target, str(exc)))
    ids = sorted(op.id for op in created)
    batch.total = len(ids)
    if canary and ids:
        batch.canary_last_op_id = ids[min(canary, len(ids)) - 1]
    if not ids:
        batch.state = BatchState.DONE.value
        batch.reason = "nothing to do: no unit in the selection could take the change"
    if refused:
        batch.selection = {**batch.selection, "refused": [r.__dict__ for r in refused[:1000]]}
    return Created(batch, created, refused)


async def _counts(
    session: AsyncSession, batch_id: str, *, up_to: int | None = None
) -> dict[str, int]:
    query = select(Operation.state, func.count()).where(Operation.batch_id == batch_id)
    if up_to is not None:
        query = query.where(Operation.id <= up_to)
    rows = (await session.execute(query.group_by(Operation.state))).all()
    return {state: n for state, n in rows}


def _rate(counts: Mapping[str, int]) -> tuple[int, int, float]:
    ended = sum(counts.get(s, 0) for s in ENDED)
    bad = sum(counts.get(s, 0) for s in BAD)
    return ended, bad, (bad / ended if ended else 0.0)


async def settle(session: AsyncSession, batch_id: str, *, now: datetime) -> str:
    """Move the batch on after one of its operations ended; its state afterwards."""
    batch = await session.get(Batch, batch_id, populate_existing=True, with_for_update=True)
    if batch is None:
        raise NotFound("batch", batch_id)
    if batch.state not in (BatchState.CANARY, BatchState.RUNNING):
        return batch.state
    counts = await _counts(session, batch_id)
    if batch.state == BatchState.CANARY:
        canary = await _counts(session, batch_id, up_to=batch.canary_last_op_id)
        ended, bad, rate = _rate(canary)
        if ended < sum(canary.values()):
            return batch.state  # the canary is still running
        if rate > batch.max_failure_rate:
            await _stop(session, batch, f"canary failed: {bad} of {ended} units failed", now)
            return batch.state
        batch.state = BatchState.RUNNING.value
    else:
        ended, bad, rate = _rate(counts)
        if ended >= max(1, batch.canary) and rate > batch.max_failure_rate:
            await _stop(
                session,
                batch,
                f"failure rate {rate:.0%} ({bad} of {ended}) passed {batch.max_failure_rate:.0%}",
                now,
            )
            return batch.state
    waiting = sum(counts.get(s, 0) for s in (*WAITING, OpState.RUNNING.value))
    if not waiting:
        batch.state = BatchState.DONE.value
    batch.updated_at = utcnow()
    return batch.state


async def _stop(session: AsyncSession, batch: Batch, why: str, now: datetime) -> None:
    cancelled = await _cancel_waiting(session, batch.id, f"batch stopped: {why}")
    batch.state = BatchState.STOPPED.value
    batch.reason = f"{why}; {cancelled} waiting operations cancelled"
    batch.updated_at = utcnow()


async def _cancel_waiting(session: AsyncSession, batch_id: str, reason: str) -> int:
    result = await session.execute(
        update(Operation)
        .where(Operation.batch_id == batch_id, Operation.state.in_(WAITING))
        .values(state=OpState.CANCELLED.value, reason=reason, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def cancel_batch(session: AsyncSession, batch_id: str, who: str) -> Progress:
    """Cancel what has not started; running operations end on their own."""
    batch = await session.get(Batch, batch_id, populate_existing=True)
    if batch is None:
        raise NotFound("batch", batch_id)
    if batch.state not in (BatchState.CANARY, BatchState.RUNNING):
        raise Conflict(f"batch {batch_id} is {batch.state}: only a running one can be cancelled")
    cancelled = await _cancel_waiting(session, batch_id, f"batch cancelled by {who}")
    batch.state = BatchState.CANCELLED.value
    batch.reason = f"cancelled by {who}; {cancelled} waiting operations cancelled"
    batch.updated_at = utcnow()
    return await progress(session, batch_id)


async def progress(session: AsyncSession, batch_id: str) -> Progress:
    batch = await session.get(Batch, batch_id, populate_existing=True)
    if batch is None:
        raise NotFound("batch", batch_id)
    counts = await _counts(session, batch_id)
    _ended, _bad, rate = _rate(counts)
    return Progress(
        id=batch.id,
        kind=batch.kind,
        state=batch.state,
        total=batch.total,
        counts=counts,
        failure_rate=rate,
        reason=batch.reason,
        canary=batch.canary,
        requested_by=batch.requested_by,
        created_at=batch.created_at,
    )
