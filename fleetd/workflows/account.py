"""Stopping and resuming a unit's account (ACCOUNT_STOP, ACCOUNT_RESUME).

A stop is what a cancellation (解約) comes to on the unit: `account state stopped`, verified
by the unit having no internet and both Wi-Fi networks down. A unit in V6 mode keeps working
after the cancellation date unless it is stopped, which is why the stop is pushed on time by
the month-end schedule. A stopped unit then awaits removal (it is returned; a lost or broken
unit is charged). A resume is the reverse: the account active and the Wi-Fi networks up
again. Whether the internet comes back depends on the line and the ISP account, not on the
unit: a resume reports it but is not undone for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import Change, UnitState
from fleetd.workflows.base import ACCOUNT_RESUME, ACCOUNT_STOP, OpContext, RequestContext
from fleetd.workflows.common import (
    Planned,
    Pushed,
    Verify,
    audit_push,
    base_key,
    check_params,
    confirm_minutes,
    customer_code_of,
    known_operation,
    push,
    unit_of,
    write_operations,
)
from fleetd.workflows.cutover import reason_words
from inventory.domain import AccountState
from inventory.errors import RuleViolation
from inventory.operations import Operation

DEFAULT_CONFIRM_MINUTES = 5
ACCOUNT_PATH = "account state"
NETWORKS = ("business", "guest")


async def _request(
    kind: str,
    session: AsyncSession,
    ctx: RequestContext,
    target: str,
    params: Mapping[str, Any],
) -> list[Operation]:
    check_params(kind, params, {"confirm_minutes"})
    minutes = confirm_minutes(params, DEFAULT_CONFIRM_MINUTES)
    key = base_key(kind, target, ctx, params)
    known = await known_operation(session, key, kind)
    if known is not None:
        return [known]
    unit = await unit_of(session, target)
    code = await customer_code_of(session, unit)
    plan = Planned(unit.serial, code, {"confirm_minutes": minutes})
    lasts = (AccountStop if kind == ACCOUNT_STOP else AccountResume).default_deadline
    return await write_operations(session, ctx, kind, key, [plan], params, lasts=lasts)


async def request_account_stop(
    session: AsyncSession, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    """ACCOUNT_STOP of one unit (target: its serial). Params: `not_before` (e.g. 23:59 JST on
    the last day of the month), `deadline`, `confirm_minutes` (default 5)."""
    return await _request(ACCOUNT_STOP, session, ctx, target, params)


async def request_account_resume(
    session: AsyncSession, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    """ACCOUNT_RESUME of one unit (target: its serial). Params as for the stop."""
    return await _request(ACCOUNT_RESUME, session, ctx, target, params)


def _serial(ctx: OpContext) -> str:
    if not ctx.unit_serial:
        raise RuleViolation("unit_serial", None, f"a {ctx.kind} operation names its unit")
    return ctx.unit_serial


def _plan(state_value: str) -> Any:
    def plan(state: UnitState) -> Change:
        if state.account == state_value:
            return Change()
        return Change({ACCOUNT_PATH: state_value})

    return plan


def stopped_problem(state: UnitState) -> str | None:
    """What still works on a unit that should be stopped (None: nothing)."""
    problems = []
    if state.account != AccountState.STOPPED:
        problems.append(f"the account is {state.account}, not stopped")
    if state.internet:
        problems.append("the internet is still up")
    problems.extend(
        f"the {net} Wi-Fi is still up" for net in NETWORKS if _wlan(state, net).state == "up"
    )
    return "; ".join(problems) or None


def resumed_problem(state: UnitState) -> str | None:
    """What is still stopped on a unit that should be active (None: nothing). A network
    with no SSID, or set down on purpose, stays down."""
    problems = []
    if state.account != AccountState.ACTIVE:
        problems.append(f"the account is {state.account}, not active")
    running = state.running or {}
    for net in NETWORKS:
        wanted_up = f"wlan {net} ssid" in running and running.get(f"wlan {net} state") != "down"
        if wanted_up and _wlan(state, net).state != "up":
            problems.append(f"the {net} Wi-Fi is still down")
    return "; ".join(problems) or None


def _wlan(state: UnitState, net: str) -> Any:
    return state.business if net == "business" else state.guest


async def _set_account(
    ctx: OpContext, kind: str, state: AccountState, problem: Verify, *, what: str, stuck: str
) -> tuple[str, Pushed]:
    """Push the account state to the unit, verified, then record it as intended and audit
    it; the serial and what the push found."""
    serial = _serial(ctx)
    minutes = int(ctx.params.get("confirm_minutes", DEFAULT_CONFIRM_MINUTES))
    pushed = await push(
        ctx, serial, _plan(state.value), problem, minutes=minutes, what=what, stuck=stuck
    )
    ctx.intend_account(serial, state.value)
    await audit_push(ctx, kind, serial, pushed)
    return serial, pushed


class AccountStop:
    kind = ACCOUNT_STOP
    default_deadline = timedelta(hours=12)

    async def run(self, ctx: OpContext) -> str:
        serial, pushed = await _set_account(
            ctx, ACCOUNT_STOP, AccountState.STOPPED, stopped_problem,
            what="account stopped", stuck="stop the unit by hand and report it",
        )  # fmt: skip
        await ctx.step(
            "awaiting removal",
            True,
            "no internet, both Wi-Fi networks down: the unit is to be removed and returned",
        )
        done = "stopped" if pushed.applied else "already stopped"
        return f"{serial}: account {done} (no internet, Wi-Fi down); awaiting removal"


class AccountResume:
    kind = ACCOUNT_RESUME
    default_deadline = timedelta(days=1)

    async def run(self, ctx: OpContext) -> str:
        serial, pushed = await _set_account(
            ctx, ACCOUNT_RESUME, AccountState.ACTIVE, resumed_problem,
            what="account active", stuck="check the unit's Wi-Fi settings",
        )  # fmt: skip
        done = "resumed" if pushed.applied else "already active"
        after = pushed.after
        if after.wan is None:
            return f"{serial}: account {done}, Wi-Fi up"
        if after.internet:
            await ctx.step("internet", True, "up")
            return f"{serial}: account {done}, Wi-Fi and internet up"
        if after.wan.mode == "ipoe":
            why = reason_words(after.wan.tunnel_reason)
        else:
            why = "V4 (PPPoE) has no internet: check the PPPoE account with the ISP"
        await ctx.step("internet", False, why)
        return f"{serial}: account {done}, Wi-Fi up; internet still down: {why}"
