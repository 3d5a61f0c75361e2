"""V4 -> V6 of a parent (CUTOVER) and back (REVERT_V4).

A cutover is refused, in the request and again when it runs, unless the line can carry V6:
the partner ISP's 4over6 order is complete, the customer has not moved the unit himself, the
line's tunnel parameters are known and the unit is a parent. It then stages IPoE and the
line's tunnel, commits with `commit confirmed`, and confirms only once the unit shows IPv4
through the tunnel, WAN mode ipoe, the tunnel up and the U lamp lit. Otherwise it rolls back
at once and says why in the unit's own words ("tunnel did not come up: AFTR unreachable").

After a cutover the customer's PPPoE (V4) account is to be cancelled at the ISP: recorded as
the step and audit action `pppoe_account_cancellation_due`, which staff work from. A legacy
V4 parent item (9604074) is re-registered as a U-SPOT_01 parent (9604076).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import Change, UnitState
from fleetd.workflows.base import CUTOVER, REVERT_V4, OpContext, RequestContext
from fleetd.workflows.common import (
    Planned,
    Pushed,
    audit_push,
    base_key,
    check_params,
    confirm_minutes,
    customer_code_of,
    known_operation,
    push,
    unit_of,
    write_operations,
    writing,
)
from inventory import repo
from inventory.domain import ItemCode, OrderState, Role, WanMode
from inventory.errors import RuleViolation
from inventory.models import Line
from inventory.operations import Operation
from inventory.records import ContractItemData
from inventory.rules import Tunnel, assert_v6_possible

DEFAULT_CONFIRM_MINUTES = 10
TUNNEL_PREFIX = "wan tunnel "

# the unit's tunnel-reason, as CS can repeat it to the customer
_REASON_WORDS = {
    "no IPv6 on the line: the 4over6 order is not complete": (
        "the line's 4over6 order is not complete"
    ),
    "no IPv6 on the line: the unit is not on its original line": (
        "the unit is not on its original line (moved by the customer): V6 never works there"
    ),
}


def assert_cutover_possible(serial: str, role: str, line: Line | None) -> Tunnel:
    """The offline preconditions of a cutover; the tunnel the line offers."""
    assert_v6_possible(
        serial,
        role,
        moved_by_customer=line.moved_by_customer if line else False,
        order_state=line.v6_order_state if line else OrderState.NONE.value,
    )
    tunnel = line.tunnel if line else None
    if tunnel is None:
        raise RuleViolation(
            "tunnel",
            None,
            f"{serial}: the line's 4over6 tunnel parameters are not known",
            hint="import the partner ISP's 4over6 order list: fleetd import v6-orders FILE",
        )
    return tunnel


def tunnel_config(tunnel: Tunnel) -> dict[str, str]:
    """The configuration paths that put a parent on V6 with `tunnel`."""
    wanted = {"wan mode": WanMode.IPOE.value, "wan tunnel type": tunnel.type.value}
    for name, value in tunnel.params.items():
        wanted[TUNNEL_PREFIX + name] = value
    return wanted


def reason_words(reason: str | None) -> str:
    if reason in _REASON_WORDS:
        return _REASON_WORDS[reason]
    return f"tunnel did not come up: {reason or 'no reason given by the unit'}"


def v6_problem(state: UnitState) -> str | None:
    """What keeps the unit from a working V6 (None: IPv4 through the tunnel, U lamp on)."""
    wan = state.wan
    if wan is None:
        return f"the unit reports no WAN (it is a {state.role}, not a parent)"
    if wan.mode != WanMode.IPOE:
        return f"WAN mode is {wan.mode}, not ipoe"
    if wan.tunnel_state != "up":
        return reason_words(wan.tunnel_reason)
    if not state.internet or not wan.ipv4:
        return "the tunnel is up but carries no IPv4 internet"
    if state.lamps.get("U") != "on":
        return "the tunnel is up but the U lamp is not lit"
    return None


def v4_problem(state: UnitState) -> str | None:
    """What keeps the unit from a working V4 (None: PPPoE with IPv4 internet)."""
    wan = state.wan
    if wan is None:
        return f"the unit reports no WAN (it is a {state.role}, not a parent)"
    if wan.mode != WanMode.PPPOE:
        return f"WAN mode is {wan.mode}, not pppoe"
    if not state.internet or not wan.ipv4:
        return (
            "V4 (PPPoE) has no internet: the ISP's PPPoE account may be cancelled or its "
            "user name wrong"
        )
    return None


def _v4_restored(state: UnitState) -> str | None:
    problem = v4_problem(state)
    return None if problem is None else f"V4 is not working either: {problem}"


def _v6_restored(state: UnitState) -> str | None:
    problem = v6_problem(state)
    return None if problem is None else f"V6 is not working either: {problem}"


async def _parent(session: AsyncSession, serial: str) -> tuple[str, str]:
    unit = await unit_of(session, serial)
    return unit.role, await customer_code_of(session, unit)


# ----- requests --------------------------------------------------------------------------------
async def request_cutover(
    session: AsyncSession, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    """CUTOVER of one parent (target: its serial). Params: `confirm_minutes` (default 10)."""
    check_params(CUTOVER, params, {"confirm_minutes"})
    minutes = confirm_minutes(params, DEFAULT_CONFIRM_MINUTES)
    key = base_key(CUTOVER, target, ctx, params)
    known = await known_operation(session, key, CUTOVER)
    if known is not None:
        return [known]
    role, code = await _parent(session, target)
    assert_cutover_possible(target, role, await repo.find_line(session, code))
    plan = Planned(target, code, {"confirm_minutes": minutes})
    lasts = Cutover.default_deadline
    return await write_operations(session, ctx, CUTOVER, key, [plan], params, lasts=lasts)


async def request_revert_v4(
    session: AsyncSession, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    """REVERT_V4 of one parent (target: its serial). Params: `confirm_minutes` (default 10)."""
    check_params(REVERT_V4, params, {"confirm_minutes"})
    minutes = confirm_minutes(params, DEFAULT_CONFIRM_MINUTES)
    key = base_key(REVERT_V4, target, ctx, params)
    known = await known_operation(session, key, REVERT_V4)
    if known is not None:
        return [known]
    role, code = await _parent(session, target)
    if role != Role.PARENT:
        raise RuleViolation("role", role, f"{target}: only a parent has a WAN to switch to V4")
    plan = Planned(target, code, {"confirm_minutes": minutes})
    lasts = RevertV4.default_deadline
    return await write_operations(session, ctx, REVERT_V4, key, [plan], params, lasts=lasts)


# ----- workflows -------------------------------------------------------------------------------
def _serial(ctx: OpContext) -> str:
    if not ctx.unit_serial:
        raise RuleViolation("unit_serial", None, f"a {ctx.kind} operation names its unit")
    return ctx.unit_serial


class Cutover:
    kind = CUTOVER
    default_deadline = timedelta(days=1)

    async def run(self, ctx: OpContext) -> str:
        serial = _serial(ctx)
        minutes = int(ctx.params.get("confirm_minutes", DEFAULT_CONFIRM_MINUTES))
        async with ctx.transaction() as session:
            role, code = await _parent(session, serial)
            tunnel = assert_cutover_possible(serial, role, await repo.find_line(session, code))
        await ctx.step("preconditions", True, f"line V6-ready, {tunnel.type} tunnel known")
        wanted = tunnel_config(tunnel)

        def plan(state: UnitState) -> Change:
            running = state.running or {}
            change: dict[str, str | None] = {p: v for p, v in wanted.items() if running.get(p) != v}
            if change:  # another tunnel type's leftovers go with the switch
                for path in running:
                    if path.startswith(TUNNEL_PREFIX) and path not in wanted:
                        change[path] = None
            return Change(change)

        pushed = await push(
            ctx,
            serial,
            plan,
            v6_problem,
            minutes=minutes,
            what=f"V6 ({tunnel.type}) up",
            restored=_v4_restored,
            back="rolled back to V4, which works (internet up)",
            stuck="the unit is set up for V6 already: revert it to V4 (revert_v4)",
            snapshot=True,
        )
        await self._record(ctx, serial, code, tunnel, pushed)
        wan = pushed.after.wan
        ipv4 = wan.ipv4 if wan else "-"
        done = "already on V6" if not pushed.applied else "switched to V6"
        return (
            f"{serial} {done}: {tunnel.type} tunnel up, IPv4 {ipv4}, U lamp on "
            "(ask the customer to look at the U lamp); the PPPoE account is due for cancellation"
        )

    async def _record(
        self, ctx: OpContext, serial: str, code: str, tunnel: Tunnel, pushed: Pushed
    ) -> None:
        async with writing(ctx) as session:
            await repo.set_intended_wan(session, serial, WanMode.IPOE.value, tunnel)
            moved = await _reregister_legacy_items(session, serial, code)
        await ctx.step("record", True, f"intended WAN: V6 ({tunnel.type})")
        await audit_push(ctx, CUTOVER, serial, pushed)
        for item_no in moved:
            detail = f"item {item_no}: {ItemCode.LEGACY_PARENT_V4} -> {ItemCode.PARENT}"
            await ctx.step("contract item re-registered", True, detail)
            await ctx.audit(
                "contract_item_reregistered",
                serial,
                before={"item_no": item_no, "item_code": ItemCode.LEGACY_PARENT_V4.value},
                after={"item_no": item_no, "item_code": ItemCode.PARENT.value},
            )
        wan = pushed.before.wan
        username = wan.pppoe_username if wan and wan.pppoe_username else "-"
        detail = f"customer {code}: cancel the V4 (PPPoE) account {username} at the ISP"
        await ctx.step("pppoe_account_cancellation_due", True, detail)
        await ctx.audit(
            "pppoe_account_cancellation_due",
            serial,
            after={"customer_code": code, "pppoe_username": username},
            detail=detail,
        )


async def _reregister_legacy_items(session: AsyncSession, serial: str, code: str) -> list[str]:
    """A legacy V4 parent item of the unit becomes a U-SPOT_01 parent item; the item numbers."""
    unit = await repo.get_unit(session, serial)
    moved = []
    for item in await repo.list_contract_items(session, code):
        if item.unit_id != unit.id or item.item_code != ItemCode.LEGACY_PARENT_V4:
            continue
        data = ContractItemData(
            item_no=item.item_no,
            customer_code=code,
            item_code=ItemCode.PARENT.value,
            status=item.status,
            serial=serial,
            billing_start_month=item.billing_start_month,
            cancellation_date=item.cancellation_date,
            order_note=item.order_note,
            original_ssid=item.original_ssid,
        )
        await repo.upsert_contract_item(session, data)
        moved.append(item.item_no)
    return moved


class RevertV4:
    kind = REVERT_V4
    default_deadline = timedelta(days=1)

    async def run(self, ctx: OpContext) -> str:
        serial = _serial(ctx)
        minutes = int(ctx.params.get("confirm_minutes", DEFAULT_CONFIRM_MINUTES))
        async with ctx.transaction() as session:
            role, _code = await _parent(session, serial)
        if role != Role.PARENT:
            raise RuleViolation("role", role, f"{serial}: only a parent has a WAN to switch")

        def plan(state: UnitState) -> Change:
            running = state.running or {}
            for path in ("wan pppoe username", "wan pppoe password"):
                if path not in running:
                    raise RuleViolation(
                        path,
                        None,
                        f"{serial} has no PPPoE settings to go back to",
                        hint="set the ISP's PPPoE account on the unit first",
                    )
            change: dict[str, str | None] = {}
            if running.get("wan mode", WanMode.PPPOE.value) != WanMode.PPPOE:
                change["wan mode"] = WanMode.PPPOE.value
                change.update({p: None for p in running if p.startswith(TUNNEL_PREFIX)})
            return Change(change)

        pushed = await push(
            ctx,
            serial,
            plan,
            v4_problem,
            minutes=minutes,
            what="V4 (PPPoE) up",
            restored=_v6_restored,
            back="rolled back to V6, which works (internet up)",
            stuck="check the PPPoE account with the ISP",
            snapshot=True,
        )
        async with writing(ctx) as session:
            await repo.set_intended_wan(session, serial, WanMode.PPPOE.value)
        await ctx.step("record", True, "intended WAN: V4 (pppoe)")
        await audit_push(ctx, REVERT_V4, serial, pushed)
        wan = pushed.after.wan
        done = "already on V4" if not pushed.applied else "switched back to V4"
        return f"{serial} {done}: PPPoE up, IPv4 {wan.ipv4 if wan else '-'}"
