"""V6 status of one customer, for customer support on the phone.

"Is this shop on V6?" has two halves that only together give the answer: the partner ISP's
4over6 order says whether the *line* can carry V6; only a reading of the *router* says whether
it has switched. `gather` collects both from the store (the line, each parent unit's last
reading, the customer's open and failed operations); `verdict` is the pure function that turns
them into one sentence an agent can read out:

    on V6 since 2026-11-20 (cutover done)
    line ready, router still on V4: cutover queued for 2026-11-21 10:00 JST
    order not complete: the 4over6 order was requested on 2026-11-02; the partner ISP has …
    unit US01BJH00022 unreachable since 2026-11-20 14:03 JST
    self-moved unit: V6 impossible (the V6 line is bound to the original line) …

`read_now` reads the parent units at once (the SNMP fast path by default) and records the
readings as their observations, for `?live=true`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import BindParameter, and_, bindparam, literal_column, or_, select, union, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import UnitState, UnitTarget
from fleetd.clock import JST
from fleetd.observe import observation_values
from fleetd.workflows.base import CUTOVER
from inventory import repo
from inventory.domain import OrderState, Role, WanMode
from inventory.errors import NotFound, UnitError
from inventory.models import Customer, Line, Unit, UnitObservation
from inventory.operations import WAITING, Operation, OpState
from inventory.store import Store

OPEN_STATES = (*WAITING, OpState.RUNNING.value)
BAD_STATES = (OpState.FAILED.value, OpState.ESCALATED.value)
RECENT_FAILURES = 10  # failed operations shown with the status, newest first


@dataclass(frozen=True)
class OpBrief:
    """An operation as the V6 status shows it."""

    id: int
    kind: str
    unit_serial: str | None
    state: str
    not_before: datetime
    updated_at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class ParentReading:
    """What the store knows of one parent unit's WAN. `observed_at` is the last good reading;
    `reachable` False means the last try failed (at `last_error_at`, with `last_error`)."""

    serial: str
    reachable: bool | None = None
    observed_at: datetime | None = None
    wan_mode: str | None = None
    tunnel_state: str | None = None
    tunnel_reason: str | None = None
    u_lamp: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    cutover_done_at: datetime | None = None  # the last succeeded cutover of this unit

    @property
    def on_v6(self) -> bool:
        return self.wan_mode == WanMode.IPOE and self.tunnel_state == "up"

    def age_seconds(self, now: datetime) -> float | None:
        return None if self.observed_at is None else (now - self.observed_at).total_seconds()


@dataclass(frozen=True)
class V6Facts:
    customer_code: str
    has_line: bool
    order_state: str | None
    order_date: date | None
    moved_by_customer: bool
    parents: Sequence[ParentReading]
    operations: Sequence[OpBrief] = ()  # open ones and recent failures, newest first


@dataclass(frozen=True)
class Verdict:
    """`code` for programs (on_v6, cutover_queued …), `words` for the agent to read out."""

    code: str
    words: str


@dataclass(frozen=True)
class V6Status:
    facts: V6Facts
    verdict: Verdict
    per_unit: Mapping[str, Verdict] = field(default_factory=dict)


def jst(when: datetime) -> str:
    return when.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


def _order_words(state: str | None, on: date | None) -> str:
    when = f" on {on.isoformat()}" if on else ""
    if state == OrderState.REQUESTED:
        return (
            f"order not complete: the 4over6 order was requested{when}; the partner ISP has "
            "not completed it, so the line cannot carry V6 yet"
        )
    if state == OrderState.NG:
        return (
            f"order not complete: the 4over6 order was sent back (NG){when}; it must be filed "
            "again from the start"
        )
    return "order not complete: no 4over6 order has been filed for this line"


def _latest(ops: Sequence[OpBrief], serial: str, states: Sequence[str]) -> OpBrief | None:
    mine = [o for o in ops if o.kind == CUTOVER and o.unit_serial == serial and o.state in states]
    return max(mine, key=lambda o: (o.updated_at, o.id), default=None)


def _cutover_words(facts: V6Facts, parent: ParentReading) -> Verdict:
    pending = _latest(facts.operations, parent.serial, OPEN_STATES)
    if pending is not None:
        if pending.state == OpState.RUNNING:
            return Verdict("cutover_running", "cutover running now")
        if pending.state == OpState.RETRY_WAIT:
            return Verdict(
                "cutover_queued",
                f"cutover queued for {jst(pending.not_before)} (retrying: "
                f"{pending.reason or 'the unit did not answer'})",
            )
        return Verdict("cutover_queued", f"cutover queued for {jst(pending.not_before)}")
    failed = _latest(facts.operations, parent.serial, BAD_STATES)
    if failed is not None and (
        parent.cutover_done_at is None or failed.updated_at > parent.cutover_done_at
    ):
        reason = failed.reason or failed.state
        return Verdict(
            "cutover_failed",
            f"the last cutover failed ({reason}); tech support can retry it",
        )
    return Verdict("line_ready", "no cutover requested yet")


def unit_verdict(facts: V6Facts, parent: ParentReading) -> Verdict:
    """The verdict for one parent unit of the customer (see `verdict`)."""
    if parent.reachable is False:
        since = (
            f"since {jst(parent.observed_at)}"
            if parent.observed_at
            else "(never read successfully)"
        )
        return Verdict("unreachable", f"unit {parent.serial} unreachable {since}")
    if parent.on_v6:
        if parent.cutover_done_at is not None:
            since = f"since {parent.cutover_done_at.astimezone(JST).date().isoformat()}"
        else:
            assert parent.observed_at is not None
            since = f"(router read {jst(parent.observed_at)})"
        lamp = "" if parent.u_lamp in (None, "on") else f"; U lamp {parent.u_lamp}"
        return Verdict("on_v6", f"on V6 {since}{lamp}")
    if parent.wan_mode == WanMode.IPOE:
        why = parent.tunnel_reason or "no reason given by the unit"
        return Verdict(
            "v6_tunnel_down",
            f"router switched to V6 but its tunnel is down ({why}): the shop may have no "
            "IPv4 internet; pass to tech support",
        )
    if facts.order_state != OrderState.COMPLETE:
        return Verdict("order_not_complete", _order_words(facts.order_state, facts.order_date))
    then = _cutover_words(facts, parent)
    if parent.wan_mode is None:
        return Verdict(
            then.code if then.code != "line_ready" else "not_read",
            f"line ready, the router has not been read yet (ask for a live reading): {then.words}",
        )
    return Verdict(then.code, f"line ready, router still on V4: {then.words}")


def verdict(facts: V6Facts) -> tuple[Verdict, dict[str, Verdict]]:
    """One verdict for the customer, and one per parent unit. Pure: no I/O, no clock."""
    if facts.moved_by_customer:
        words = (
            "self-moved unit: V6 impossible (the V6 line is bound to the original line); "
            "the shop stays on V4 at the same price"
        )
        return Verdict("self_moved", words), {}
    if not facts.parents:
        return Verdict("no_parent", "no parent unit registered: nothing here can run V6"), {}
    if not facts.has_line:
        return Verdict("no_line", "no ISP line registered for this customer"), {}
    per_unit = {p.serial: unit_verdict(facts, p) for p in facts.parents}
    if len(per_unit) == 1:
        return next(iter(per_unit.values())), per_unit
    codes = {v.code for v in per_unit.values()}
    code = codes.pop() if len(codes) == 1 else "mixed"
    words = "; ".join(f"{serial}: {v.words}" for serial, v in per_unit.items())
    return Verdict(code, words), per_unit


# The two statements of `gather`, built once with bound parameters: SQLAlchemy then finds
# each in its compiled cache without walking a new statement on every look-up.
# The shop: the customer, its line, its units and each parent's reading.
_SHOP = (
    select(
        Customer.code,
        Line.id.label("line_id"),
        Line.v6_order_state,
        Line.v6_order_date,
        Line.moved_by_customer,
        Unit.serial,
        Unit.role,
        UnitObservation.unit_id.label("seen"),
        UnitObservation.reachable,
        UnitObservation.observed_at,
        UnitObservation.wan_mode,
        UnitObservation.tunnel_state,
        UnitObservation.read_values,
        UnitObservation.last_error,
        UnitObservation.last_error_at,
    )
    .select_from(Customer)
    .outerjoin(Line, Line.customer_id == Customer.id)
    .outerjoin(Unit, Unit.customer_id == Customer.id)
    .outerjoin(
        UnitObservation,
        and_(UnitObservation.unit_id == Unit.id, Unit.role == Role.PARENT.value),
    )
    .where(Customer.code == bindparam("code"))
)


def _operations_statement() -> Any:
    """The operations the status shows, each row tagged with its part: the open ones and
    the newest failures touching the shop (its code or any of its units), and the
    succeeded cutovers of its parents."""
    columns = (
        Operation.id,
        Operation.kind,
        Operation.unit_serial,
        Operation.state,
        Operation.not_before,
        Operation.updated_at,
        Operation.reason,
    )
    code: BindParameter[str] = bindparam("code")
    serials: BindParameter[list[str]] = bindparam("serials", expanding=True)
    touches = or_(Operation.customer_code == code, Operation.unit_serial.in_(serials))
    # the shop's failures, each branch by its own index (an OR here has the planners walk
    # every failure of the fleet to keep the shop's newest); UNION: an operation once
    bad = Operation.state.in_(BAD_STATES)
    mine = union(
        select(*columns).where(Operation.customer_code == code, bad),
        select(*columns).where(Operation.unit_serial.in_(serials), bad),
    ).subquery()
    failed = (
        select(literal_column(str(_FAILED)).label("part"), mine)
        .order_by(mine.c.id.desc())
        .limit(RECENT_FAILURES)
        .subquery()
    )
    return union_all(
        select(literal_column(str(_OPEN)).label("part"), *columns).where(
            touches, Operation.state.in_(OPEN_STATES)
        ),
        select(failed),
        select(literal_column(str(_DONE)).label("part"), *columns).where(
            Operation.kind == CUTOVER,
            Operation.state == OpState.SUCCEEDED.value,
            Operation.unit_serial.in_(bindparam("parents", expanding=True)),
        ),
    )


_OPEN, _FAILED, _DONE = 0, 1, 2
_OPERATIONS = _operations_statement()


async def gather(session: AsyncSession, customer_code: str) -> V6Facts:
    """The facts of the V6 status of one customer, from the store (NotFound: no customer).

    Two statements, read-only rows (no ORM objects): the shop with its line, units and
    parent readings, then the operations."""
    rows = (await session.execute(_SHOP, {"code": customer_code})).all()
    if not rows:
        raise NotFound("customer", customer_code)
    shop = rows[0]
    units = sorted((r for r in rows if r.serial is not None), key=lambda r: r.serial)
    parents = [r for r in units if r.role == Role.PARENT]
    found = (
        await session.execute(
            _OPERATIONS,
            {
                "code": customer_code,
                "serials": [r.serial for r in units],
                "parents": [r.serial for r in parents],
            },
        )
    ).all()
    open_ops = sorted((r for r in found if r.part == _OPEN), key=lambda r: -r.id)
    failed = sorted((r for r in found if r.part == _FAILED), key=lambda r: -r.id)
    done: dict[str, datetime] = {}
    for row in sorted((r for r in found if r.part == _DONE), key=lambda r: r.updated_at):
        done[row.unit_serial] = row.updated_at  # the last succeeded cutover of each parent
    return V6Facts(
        customer_code=shop.code,
        has_line=shop.line_id is not None,
        order_state=shop.v6_order_state,
        order_date=shop.v6_order_date,
        moved_by_customer=bool(shop.moved_by_customer),
        parents=[_reading(r, done.get(r.serial)) for r in parents],
        operations=[_brief(r) for r in (*open_ops, *failed)],
    )


def _brief(row: Any) -> OpBrief:
    return OpBrief(
        id=row.id,
        kind=row.kind,
        unit_serial=row.unit_serial,
        state=row.state,
        not_before=row.not_before,
        updated_at=row.updated_at,
        reason=row.reason,
    )


def _reading(row: Any, cutover_done_at: datetime | None) -> ParentReading:
    """A parent's row of the shop statement as what the store knows of its WAN."""
    if row.seen is None:
        return ParentReading(row.serial, cutover_done_at=cutover_done_at)
    values: Mapping[str, Any] = row.read_values or {}
    return ParentReading(
        serial=row.serial,
        reachable=row.reachable,
        observed_at=row.observed_at,
        wan_mode=row.wan_mode,
        tunnel_state=row.tunnel_state,
        tunnel_reason=_text(values.get("tunnel_reason")),
        u_lamp=_text(values.get("u_lamp")),
        last_error=row.last_error,
        last_error_at=row.last_error_at,
        cutover_done_at=cutover_done_at,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def status(session: AsyncSession, customer_code: str) -> V6Status:
    facts = await gather(session, customer_code)
    overall, per_unit = verdict(facts)
    return V6Status(facts, overall, per_unit)


class LiveReader(Protocol):
    """Reads units now: a state or the error, per serial (one bad unit never stops the rest)."""

    async def read(self, targets: Sequence[UnitTarget]) -> dict[str, UnitState | UnitError]: ...


class SnmpReader:
    """The SNMP fast path (`drivers.snmp.SnmpPoller`), one socket per call."""

    def __init__(
        self, *, read_community: str = "public", timeout: float = 1.0, retries: int = 1
    ) -> None:
        self.read_community = read_community
        self.timeout = timeout
        self.retries = retries

    async def read(self, targets: Sequence[UnitTarget]) -> dict[str, UnitState | UnitError]:
        from drivers.snmp import SnmpPoller  # pysnmp is heavy: loaded on the first live read

        poller = SnmpPoller(
            read_community=self.read_community, timeout=self.timeout, retries=self.retries
        )
        async with poller:
            result = await poller.sweep(targets)
        out: dict[str, UnitState | UnitError] = dict(result.states)
        out.update(result.errors)
        return out


async def read_now(
    store: Store, customer_code: str, reader: LiveReader, *, now: datetime
) -> dict[str, str | None]:
    """Read the customer's parent units now and record each reading as the unit's
    observation. Per serial: None when read, else why not, in words. No transaction is
    held while the units answer."""
    async with store.sessions() as session:
        units = [u for u in await repo.list_units(session, customer_code) if u.role == Role.PARENT]
    targets = [
        UnitTarget(
            serial=u.serial,
            address=u.mgmt_address,
            ssh_port=u.ssh_port or 22,
            snmp_port=u.snmp_port or 161,
            platform=u.platform,
        )
        for u in units
        if u.mgmt_address
    ]
    outcome: dict[str, str | None] = {
        u.serial: "no management address registered" for u in units if not u.mgmt_address
    }
    if not targets:
        return outcome
    readings = await reader.read(targets)
    async with store.transaction(write_lock=True) as session:
        for serial, read in readings.items():
            if isinstance(read, UnitError):
                await repo.record_observation(
                    session, serial, reachable=False, at=now, error=read.detail
                )
                outcome[serial] = read.detail
            else:
                values = observation_values(read)
                await repo.record_observation(
                    session, serial, reachable=True, at=now, values=values
                )
                outcome[serial] = None
    return outcome
