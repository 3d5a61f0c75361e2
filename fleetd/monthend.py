"""The month-end account stop: which accounts stop this month, and the operations that stop them.

A cancellation (解約, forced or not) takes effect on its date, and the unit's account stops at
23:59 JST on the last day of that month. V4 units would be stopped by the ISP side anyway; V6
units keep working after the cancellation date, so fleetd stops every such unit itself, V4
and V6 alike. Only contract items with a unit and a cancellation date count: a cancel before
installation (キャンセル) has neither.

`preview` lists the items due in a month whose unit is not stopped yet; `reconcile` writes one
`account_stop` operation per item under the key ``account-stop:{item_no}:{YYYY-MM}``, so a
second, late or repeated run (the scheduler firing twice, a catch-up after a restart, staff
running `fleetd month-end run`) finds the operation already there and creates nothing.

Timing of each operation: due (``not_before``) at the month's stop time, or at once when that
has passed; its deadline is ``STOP_DEADLINE`` (two hours) after it became due. An operation
still waiting then (the unit unreachable all that time) is escalated to staff by the
scheduler's `escalate-overdue` job, and an operation that failed or was escalated stays so:
a re-run does not queue it again (`fleetd` `retry` does, once staff have looked).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from fleetd.calendar import last_day_of_month, month_end_stop_at
from fleetd.clock import JST
from fleetd.workflows.base import ACCOUNT_RESUME, ACCOUNT_STOP
from inventory import audit
from inventory import operations as ops
from inventory.domain import AccountState, ItemStatus
from inventory.models import ContractItem, Customer, Unit
from inventory.operations import Operation, OpState
from inventory.redact import Redactor
from inventory.secrets import SecretBox

STOP_DEADLINE = timedelta(hours=2)
_CHUNK = 500  # keys per IN (…): far below SQLite's and asyncpg's parameter limits
# items that never ran: they have no cancellation date, and are left out even if one slipped in
_NOT_CANCELLATIONS = (ItemStatus.ORDERED.value, ItemStatus.CANCELLED.value)


def stop_key(item_no: str, year: int, month: int) -> str:
    """The idempotency key of an item's account stop for a month."""
    return f"account-stop:{item_no}:{year:04d}-{month:02d}"


def format_jst(when: datetime) -> str:
    return when.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


@dataclass(frozen=True)
class DueStop:
    """A contract item whose cancellation takes effect in the month, its unit not stopped."""

    customer_code: str
    customer_name: str
    item_no: str
    item_code: str
    serial: str
    role: str
    cancellation_date: date
    stop_at: datetime  # UTC; 23:59 JST on the month's last day
    operation_id: int | None  # the month's account stop for the item, when written
    operation_state: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer_code": self.customer_code,
            "customer_name": self.customer_name,
            "item_no": self.item_no,
            "item_code": self.item_code,
            "serial": self.serial,
            "role": self.role,
            "cancellation_date": self.cancellation_date.isoformat(),
            "stop_at": self.stop_at.astimezone(JST).isoformat(),
            "operation_id": self.operation_id,
            "operation_state": self.operation_state,
        }


@dataclass(frozen=True)
class Reconciled:
    stop: DueStop
    op: Operation
    created: bool  # False: the operation was already there (any state)


@dataclass(frozen=True)
class ReconcileResult:
    year: int
    month: int
    stop_at: datetime  # UTC
    items: tuple[Reconciled, ...]

    @property
    def created(self) -> int:
        return sum(1 for r in self.items if r.created)

    @property
    def already(self) -> int:
        return sum(1 for r in self.items if not r.created)

    @property
    def operations(self) -> list[Operation]:
        return [r.op for r in self.items]

    def summary(self) -> str:
        return (
            f"{self.year:04d}-{self.month:02d}: {self.created} account stops created, "
            f"{self.already} already there (stop at {format_jst(self.stop_at)})"
        )


async def preview(session: AsyncSession, year: int, month: int) -> list[DueStop]:
    """Every item whose cancellation takes effect in the JST month and whose unit is not
    stopped yet (no succeeded account stop since its last resume, intended state not
    stopped), with the month's operation for it when one was written. By date, item no."""
    stop_at = month_end_stop_at(year, month)
    first, last = date(year, month, 1), last_day_of_month(year, month)
    query = (
        select(ContractItem, Customer.code, Customer.name, Unit.serial, Unit.role)
        .join(Customer, ContractItem.customer_id == Customer.id)
        .join(Unit, ContractItem.unit_id == Unit.id)
        .where(
            ContractItem.cancellation_date.between(first, last),
            ContractItem.status.not_in(_NOT_CANCELLATIONS),
            Unit.intended_account_state != AccountState.STOPPED.value,
        )
        .order_by(ContractItem.cancellation_date, ContractItem.item_no)
    )
    rows = (await session.execute(query)).all()
    if not rows:
        return []
    stopped = await _stopped_units(session, [serial for _, _, _, serial, _ in rows])
    keyed = await _ops_by_key(session, [stop_key(i.item_no, year, month) for i, *_ in rows])
    due: list[DueStop] = []
    for item, code, name, serial, role in rows:
        op = keyed.get(stop_key(item.item_no, year, month))
        if serial in stopped or (op is not None and op.state == OpState.SUCCEEDED.value):
            continue
        assert item.cancellation_date is not None  # the WHERE clause
        due.append(
            DueStop(
                customer_code=code,
                customer_name=name,
                item_no=item.item_no,
                item_code=item.item_code,
                serial=serial,
                role=role,
                cancellation_date=item.cancellation_date,
                stop_at=stop_at,
                operation_id=op.id if op else None,
                operation_state=op.state if op else None,
            )
        )
    return due


async def reconcile(
    session: AsyncSession,
    year: int,
    month: int,
    *,
    now: datetime,
    requested_by: str = "scheduler",
    box: SecretBox | None = None,  # an account stop carries no secret: kept for callers' symmetry
    redactor: Redactor | None = None,
) -> ReconcileResult:
    """Make sure an account stop exists for every item `preview` lists: created when missing,
    the existing one otherwise. Each one created is written to the audit log. The caller
    commits (on SQLite, in `store.transaction(write_lock=True)`)."""
    del box
    stop_at = month_end_stop_at(year, month)
    not_before = max(stop_at, now)
    deadline = not_before + STOP_DEADLINE
    done: list[Reconciled] = []
    stops = await preview(session, year, month)
    month_text = f"{year:04d}-{month:02d}"
    enqueued_all = await ops.enqueue_many(
        session,
        [
            ops.NewOperation(
                kind=ACCOUNT_STOP,
                idempotency_key=stop_key(stop.item_no, year, month),
                requested_by=requested_by,
                unit_serial=stop.serial,
                customer_code=stop.customer_code,
                params={
                    "reason": "cancellation",
                    "item_no": stop.item_no,
                    "month": month_text,
                    "cancellation_date": stop.cancellation_date.isoformat(),
                },
                not_before=not_before,
                deadline=deadline,
            )
            for stop in stops
        ],
    )
    requests: list[audit.Entry] = []
    for stop, enqueued in zip(stops, enqueued_all, strict=True):
        if enqueued.created:
            requests.append(
                {
                    "actor": requested_by,
                    "action": "account_stop.request",
                    "target": stop.serial,
                    "request_id": f"month-end:{month_text}",
                    "after": {"operation_id": enqueued.op.id, "not_before": not_before.isoformat()},
                    "detail": (
                        f"item {stop.item_no} of customer {stop.customer_code}: cancellation "
                        f"{stop.cancellation_date.isoformat()}, stop at {format_jst(not_before)}"
                    ),
                    "at": now,
                }
            )
        done.append(Reconciled(stop, enqueued.op, enqueued.created))
    await audit.record_many(session, requests, redactor)
    return ReconcileResult(year, month, stop_at, tuple(done))


async def _stopped_units(session: AsyncSession, serials: Sequence[str]) -> set[str]:
    """The units whose latest succeeded account stop came after their latest succeeded resume."""
    last: dict[str, tuple[int, str]] = {}
    for chunk in _chunks(serials):
        rows = await session.execute(
            select(Operation.unit_serial, Operation.id, Operation.kind).where(
                and_(
                    Operation.unit_serial.in_(chunk),
                    Operation.kind.in_((ACCOUNT_STOP, ACCOUNT_RESUME)),
                    Operation.state == OpState.SUCCEEDED.value,
                )
            )
        )
        for serial, op_id, kind in rows:
            if serial is not None and (serial not in last or last[serial][0] < op_id):
                last[serial] = (op_id, kind)
    return {serial for serial, (_, kind) in last.items() if kind == ACCOUNT_STOP}


async def _ops_by_key(session: AsyncSession, keys: Sequence[str]) -> dict[str, Operation]:
    found: dict[str, Operation] = {}
    for chunk in _chunks(keys):
        query = select(Operation).where(Operation.idempotency_key.in_(chunk))
        found.update({op.idempotency_key: op for op in await session.scalars(query)})
    return found


def _chunks(values: Iterable[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(values))
    return [unique[i : i + _CHUNK] for i in range(0, len(unique), _CHUNK)]
