"""What the workflows and their requests share.

Requests: parameter checks (`check_params`, `when`), the idempotency key of a request
(`base_key`), target resolution (`unit_of`, `customer_units`) and writing the operations
(`write_operations`, secrets sealed into `secret_params`, never into `params`).

Workflows: `push` is the one way a change reaches a unit:

    read ─ nothing to change and as intended? ─ yes ─▶ "already applied", nothing sent
      │ no
    stage ─ commit confirmed N ─ re-read in a new session ─ as intended? ─ yes ─▶ confirm
                                                               │ no
                                        rollback ─ re-read ─ VerificationFailed (words staff
                                                              can repeat)

A commit left pending by an earlier attempt (the daemon died between commit and confirm) is
confirmed when the unit already shows the intended result, and rolled back otherwise. If the
session drops after the commit, the unit's own timer rolls the change back.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import Change, UnitDriver, UnitState
from fleetd.workflows.base import OpContext, RequestContext, open_secrets, seal_secrets
from inventory import operations as ops
from inventory import repo
from inventory.errors import (
    CommandFailed,
    Conflict,
    NotFound,
    RuleViolation,
    VerificationFailed,
)
from inventory.models import Unit
from inventory.operations import Operation
from inventory.rules import assert_customer_code_format, assert_serial_format

# parameters every request takes besides its kind's own; never stored in `params`
CONTROL_PARAMS = frozenset({"idempotency_key", "not_before", "deadline"})
MAX_KEY_LENGTH = 150  # a request's key; per-unit suffixes keep it under the column's 200

# no 0/O, 1/l/I: a passphrase is read off a printed notice and typed on a phone
PASSPHRASE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"  # noqa: S105
PASSPHRASE_LENGTH = 16  # 56^16: about 93 bits

MIN_CONFIRM_MINUTES = 1
MAX_CONFIRM_MINUTES = 60

Verify = Callable[[UnitState], str | None]  # None: as intended; else what is wrong, in words


def generate_passphrase(length: int = PASSPHRASE_LENGTH) -> str:
    """A strong Wi-Fi passphrase from an alphabet without look-alike characters."""
    return "".join(_secrets.choice(PASSPHRASE_ALPHABET) for _ in range(length))


# ----- requests ------------------------------------------------------------------------------
def check_params(kind: str, params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse a parameter the kind does not take (a typo must not pass silently)."""
    known = set(allowed) | CONTROL_PARAMS
    unknown = sorted(set(params) - known)
    if unknown:
        raise RuleViolation(
            "params",
            ", ".join(unknown),
            f"not a parameter of {kind}; it takes {', '.join(sorted(known))}",
        )


def when(params: Mapping[str, Any], name: str) -> datetime | None:
    """A time parameter: a timezone-aware datetime or its ISO 8601 text."""
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise RuleViolation(
                name, value, "is a time in ISO 8601 with its zone, e.g. 2026-11-30T23:59+09:00"
            ) from None
    if not isinstance(value, datetime):
        raise RuleViolation(name, value, "is a time in ISO 8601 with its zone")
    if value.tzinfo is None:
        raise RuleViolation(
            name, value.isoformat(), "has no time zone; give one, e.g. +09:00 for Japan time"
        )
    return value


def confirm_minutes(params: Mapping[str, Any], default: int) -> int:
    value = params.get("confirm_minutes", default)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RuleViolation("confirm_minutes", value, "is a whole number of minutes from 1 to 60")
    text = str(value)
    if not text.isdigit() or not MIN_CONFIRM_MINUTES <= int(text) <= MAX_CONFIRM_MINUTES:
        raise RuleViolation("confirm_minutes", value, "is a whole number of minutes from 1 to 60")
    return int(text)


def base_key(kind: str, target: str, ctx: RequestContext, params: Mapping[str, Any]) -> str:
    """The request's idempotency key: the caller's own, else kind, target and request id,
    else a fresh one (the request is then not idempotent)."""
    given = params.get("idempotency_key")
    if given:
        key = str(given)
        if len(key) > MAX_KEY_LENGTH:
            raise RuleViolation(
                "idempotency_key", key[:40] + "…", f"is at most {MAX_KEY_LENGTH} characters"
            )
        return key
    if ctx.request_id:
        return f"{kind}:{target}:{ctx.request_id}"
    return f"{kind}:{target}:{_secrets.token_hex(8)}"


async def known_operation(session: AsyncSession, key: str, kind: str) -> Operation | None:
    """The operation written under `key` before (a repeated request), if any: returned as
    it is, whatever the rules would say of the request now. A key used by a request of
    another kind is a `Conflict`."""
    found: Operation | None = await session.scalar(
        select(Operation).where(Operation.idempotency_key == key)
    )
    if found is not None and found.kind != kind:
        raise Conflict(
            f"idempotency key {key!r} belongs to a {found.kind} request (operation "
            f"{found.id}): give this {kind} request a key of its own"
        )
    return found


async def unit_of(session: AsyncSession, serial: str, *, field: str = "target") -> Unit:
    assert_serial_format(serial, field=field)
    unit = await repo.find_unit(session, serial)
    if unit is None:
        raise NotFound("unit", serial)
    return unit


async def customer_code_of(session: AsyncSession, unit: Unit) -> str:
    codes = await repo.customer_codes_by_id(session, [unit.customer_id])
    return codes[unit.customer_id]


async def customer_units(session: AsyncSession, target: str) -> tuple[str, list[Unit]]:
    """The customer a target names (its code, or the serial of one of its units) and every
    unit of that customer: parents first, then children, then access points."""
    if target.startswith("US01"):
        code = await customer_code_of(session, await unit_of(session, target))
    else:
        assert_customer_code_format(target, field="target")
        code = target
    units = await repo.list_units(session, code)
    if not units:
        raise RuleViolation("target", target, "the customer has no unit registered")
    return code, units


@dataclass(frozen=True)
class Planned:
    """One operation a request is about to write."""

    unit_serial: str | None
    customer_code: str | None
    params: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


async def write_operations(
    session: AsyncSession,
    ctx: RequestContext,
    kind: str,
    key: str,
    planned: Sequence[Planned],
    params: Mapping[str, Any],
    *,
    lasts: timedelta,
    per_unit: bool = False,
) -> list[Operation]:
    """Enqueue the planned operations under `key`, or with `per_unit` under `key:<serial>`
    each. Existing operations under those keys are returned as they are.

    `lasts` is how long a workflow may be retried once due: an operation due later (a
    `not_before` given) and no `deadline` gets `not_before + lasts`, not a deadline counted
    from the request, which would pass before the operation is even due."""
    if len(planned) > 1 and not per_unit:
        raise ValueError("several operations of one request need per-unit keys")
    due = when(params, "not_before")
    not_before = due or ctx.now
    deadline = when(params, "deadline")
    if deadline is None and due is not None:
        deadline = due + lasts
    out: list[Operation] = []
    for plan in planned:
        if ctx.redactor is not None:
            for value in plan.secrets.values():
                ctx.redactor.add_secret(value)
        op_key = f"{key}:{plan.unit_serial}" if per_unit else key
        enqueued = await ops.enqueue(
            session,
            kind=kind,
            idempotency_key=op_key,
            requested_by=ctx.requested_by,
            unit_serial=plan.unit_serial,
            customer_code=plan.customer_code,
            params=dict(plan.params),
            secret_params=seal_secrets(ctx.box, plan.secrets),
            not_before=not_before,
            deadline=deadline,
            batch_id=ctx.batch_id,
            request_id=ctx.request_id,
        )
        out.append(enqueued.op)
    return out


async def shared_secrets(
    session: AsyncSession, ctx: RequestContext, key: str, serials: Sequence[str]
) -> dict[str, str] | None:
    """The secrets already sealed under this request's key (a repeated request), so that
    operations added for a unit registered since share the customer's one value."""
    keys = [f"{key}:{serial}" for serial in serials]
    sealed = await session.scalar(
        select(Operation.secret_params)
        .where(Operation.idempotency_key.in_(keys), Operation.secret_params.is_not(None))
        .limit(1)
    )
    return None if sealed is None else open_secrets(ctx.box, sealed)


# ----- workflows -----------------------------------------------------------------------------
@asynccontextmanager
async def writing(ctx: OpContext) -> AsyncIterator[AsyncSession]:
    """`ctx.transaction()`, which holds SQLite's write lock from its start: a workflow reads
    before it writes, and a SQLite transaction that has read cannot write once another
    writer has committed meanwhile ("database is locked")."""
    async with ctx.transaction() as session:
        yield session


def describe(state: UnitState) -> str:
    """A reading in a line staff can read (no passphrase, no fingerprint)."""
    parts = [f"{state.role}", f"account {state.account}"]
    if state.wan is not None:
        wan = state.wan
        mode = "V6 (ipoe)" if wan.mode == "ipoe" else "V4 (pppoe)"
        parts.append(f"WAN {mode}")
        if wan.mode == "ipoe":
            tunnel = f"tunnel {wan.tunnel or '-'} {wan.tunnel_state or '-'}"
            if wan.tunnel_reason:
                tunnel += f" ({wan.tunnel_reason})"
            parts.append(tunnel)
        parts.append(f"internet {'up' if state.internet else 'down'}")
        parts.append(f"U lamp {state.lamps.get('U', '-')}")
    parts.append(f"business {state.business.ssid!r} {state.business.state}")
    parts.append(f"guest {state.guest.ssid!r} {state.guest.state}")
    if state.commit_pending:
        parts.append("a commit is pending")
    return ", ".join(parts)


def show_change(change: Change) -> str:
    """The change as the unit would be told, secrets masked."""
    lines = []
    for path, value in change.masked().items():
        lines.append(f"delete {path}" if value is None else f"set {path} {value}")
    return "; ".join(lines)


def show_running(state: UnitState) -> str:
    """The running configuration (the unit masks its secrets itself)."""
    return "; ".join(f"set {path} {value}" for path, value in (state.running or {}).items())


def changed_paths(state: UnitState, wanted: Mapping[str, str | None]) -> Change:
    """The part of `wanted` the running configuration does not have yet (non-secret paths)."""
    running = state.running or {}
    return Change({p: v for p, v in wanted.items() if running.get(p) != v})


@dataclass(frozen=True)
class Pushed:
    """What `push` did: the readings before and after, and whether anything was sent."""

    before: UnitState
    after: UnitState
    sent: Change

    @property
    def applied(self) -> bool:
        return bool(self.sent)


async def push(
    ctx: OpContext,
    serial: str,
    plan: Callable[[UnitState], Change],
    verify: Verify,
    *,
    minutes: int,
    what: str,
    restored: Verify | None = None,
    back: str = "rolled back",
    stuck: str = "",
    snapshot: bool = False,
    reconnect: bool = True,
) -> Pushed:
    """Bring `serial` to what `plan` and `verify` describe (see the module docstring).

    `plan(state)` is the change still needed (empty: none); `verify(state)` says what is
    wrong after it, in words staff can repeat; `restored(state)` judges the unit after a
    rollback (None: as it should be, which `back` says in words); `stuck` is what to do
    when nothing is left to change and the unit still is not as intended; `snapshot`
    records the running configuration (secrets masked by the unit) before staging;
    `reconnect` verifies in a new session, proving the unit can still be managed after a
    change that could cut it off (WAN, account); a Wi-Fi change verifies in the same one.
    """
    async with ctx.connect(serial) as unit:
        before = await unit.read_state()
        await ctx.step("read", True, describe(before))
        if before.commit_pending:
            if not plan(before) and verify(before) is None:
                await unit.confirm()
                await ctx.step("confirm", True, "a pending commit already shows the result")
                return Pushed(before, before, Change())
            await _rollback(unit)
            before = await unit.read_state()
            await ctx.step("rollback", True, f"an unconfirmed commit undone: {describe(before)}")
        change = plan(before)
        if not change:
            problem = verify(before)
            if problem is not None:
                await ctx.step("verify", False, problem)
                raise VerificationFailed(serial, f"{problem}; {stuck}".rstrip("; "))
            await ctx.step("already applied", True, f"{what}: nothing sent")
            return Pushed(before, before, change)
        if snapshot:
            await ctx.step("snapshot", True, show_running(before))
        await unit.stage(change)
        await ctx.step("stage", True, show_change(change))
        await unit.commit_confirmed(minutes)
        await ctx.step("commit confirmed", True, f"rolls back in {minutes} min unless confirmed")
        if not reconnect:
            return await _verify(ctx, unit, serial, before, change, verify, what, restored, back)
    # a new session: the unit must still be reachable for management after the change
    async with ctx.connect(serial) as unit:
        return await _verify(ctx, unit, serial, before, change, verify, what, restored, back)


async def _verify(
    ctx: OpContext,
    unit: UnitDriver,
    serial: str,
    before: UnitState,
    change: Change,
    verify: Verify,
    what: str,
    restored: Verify | None,
    back: str,
) -> Pushed:
    """After a commit confirmed: confirm when the unit shows the result, else roll back and
    raise `VerificationFailed` saying what was wrong and where the unit ended."""
    after = await unit.read_state()
    problem = verify(after)
    if problem is None:
        await unit.confirm()
        await ctx.step("verify", True, describe(after))
        await ctx.step("confirm", True, what)
        return Pushed(before, after, change)
    await ctx.step("verify", False, f"{problem}: {describe(after)}")
    await _rollback(unit)
    undone = await unit.read_state()
    judged = restored(undone) if restored is not None else None
    await ctx.step("rollback", judged is None, describe(undone))
    outcome = back if judged is None else f"rolled back, but {judged}"
    raise VerificationFailed(serial, f"{problem}; {outcome}")


async def _rollback(unit: UnitDriver) -> None:
    try:
        await unit.rollback()
    except CommandFailed as exc:
        # the unit's own timer got there first: nothing is pending any more
        if "Nothing to roll back" not in exc.answer:
            raise


async def audit_push(
    ctx: OpContext, action: str, serial: str, pushed: Pushed, *, detail: str = ""
) -> None:
    """The audit entry of a change sent to a unit: the paths' old and new values, masked."""
    if not pushed.applied:
        return
    running = pushed.before.running or {}
    masked = pushed.sent.masked()
    before = {path: running.get(path) for path in masked}
    await ctx.audit(action, serial, before=before, after=masked, detail=detail)
