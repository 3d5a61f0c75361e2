"""The Wi-Fi of a customer: business SSID and passphrase (BUSINESS_WIFI), a new guest
passphrase (GUEST_ROTATE), and the guest SSID as the shop's own name (ORIGINAL_SSID).

Every unit of the customer serves both networks (parent, children, access point), and all of
them carry the same values. A request writes one operation per unit, so the engine runs them
in parallel and never two at once on one unit; a generated passphrase is made once per
request and sealed into each operation's `secret_params`. The first unit's operation (the
parent, when there is one) is the `lead`: it records, once for the customer, what becomes due:

- BUSINESS_WIFI: `registration_notice_due`: the registration notice (登録通知書) with the new
  values is to be posted to a registered address, the only way a business passphrase leaves
  the system;
- ORIGINAL_SSID: `original_ssid_billing_due` / `original_ssid_billing_end`: the Z201000
  add-on (500 yen/month). Contract items come from the operator's contract export only (its
  item numbers are the contract system's), so the workflow does not invent one: it records
  the fact and names the Z201000 item when the inventory has it, or says to register the
  order (`SSID'…'` in the order note) when it does not.

The Original SSID cleared means the guest network is named `DEFAULT_GUEST_SSID` again, the
name every unit ships with.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from drivers.base import Change, UnitState, WlanState, passphrase_fingerprint
from fleetd.workflows.base import (
    BUSINESS_WIFI,
    GUEST_ROTATE,
    ORIGINAL_SSID,
    OpContext,
    RequestContext,
)
from fleetd.workflows.common import (
    Planned,
    Verify,
    audit_push,
    base_key,
    check_params,
    confirm_minutes,
    customer_units,
    generate_passphrase,
    push,
    shared_secrets,
    write_operations,
)
from inventory import repo
from inventory.domain import ItemCode, ItemStatus
from inventory.errors import RuleViolation
from inventory.operations import Operation
from inventory.rules import assert_passphrase, assert_ssid, check_original_ssid

DEFAULT_CONFIRM_MINUTES = 5
WORKFLOW_DEADLINE = timedelta(days=1)  # retried while the unit is unreachable
DEFAULT_GUEST_SSID = "USPOT_FREE_Wi-Fi"  # the guest SSID a unit ships with
PASSPHRASE = "passphrase"  # noqa: S105 - the name of the secret, not a secret


# ----- requests --------------------------------------------------------------------------------
async def _per_unit(
    session: AsyncSession,
    ctx: RequestContext,
    kind: str,
    target: str,
    params: Mapping[str, Any],
    op_params: Mapping[str, Any],
    passphrase: str | None,
) -> list[Operation]:
    """One operation per unit of the customer, all with the same values and passphrase."""
    code, units = await customer_units(session, target)
    key = base_key(kind, target, ctx, params)
    serials = [u.serial for u in units]
    secrets: dict[str, str] = {}
    if passphrase is not None:
        secrets = await shared_secrets(session, ctx, key, serials) or {PASSPHRASE: passphrase}
    planned = [
        Planned(serial, code, {**op_params, "lead": i == 0}, secrets)
        for i, serial in enumerate(serials)
    ]
    # each key carries its serial, also when the customer has one unit today: a unit added
    # later gets its own operation when the request is repeated
    lasts = WORKFLOW_DEADLINE
    return await write_operations(
        session, ctx, kind, key, planned, params, lasts=lasts, per_unit=True
    )


async def request_business_wifi(
    session: AsyncSession, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    """BUSINESS_WIFI for a customer (target: customer code, or a serial of one of its units).

    Params: `ssid` (new business SSID), `passphrase` (else a strong one is generated),
    `keep_passphrase` (true: change the SSID only), `confirm_minutes` (default 5).
    """
    check_params(BUSINESS_WIFI, params, {"ssid", PASSPHRASE, "keep_passphrase", "confirm_minutes"})
    minutes = confirm_minutes(params, DEFAULT_CONFIRM_MINUTES)
    ssid = params.get("ssid") or None
    if ssid is not None:
        assert_ssid(str(ssid), field="ssid")
    given = params.get(PASSPHRASE) or None
    keep = params.get("keep_passphrase") is True
    if keep and given is not None:
        raise RuleViolation(
            "keep_passphrase", True, "give a new passphrase or keep the current one, not both"
        )
    if keep and ssid is None:
        raise RuleViolation(
            "ssid", None, "nothing to change: give a new SSID, or let a passphrase be generated"
        )
    if given is not None:
        assert_passphrase(str(given), field=PASSPHRASE)
    passphrase = None if keep else str(given) if given is not None else generate_passphrase()
    op_params: dict[str, Any] = {"confirm_minutes": minutes}
    if ssid is not None:
        op_params["ssid"] = str(ssid)
    return await _per_unit(session, ctx, BUSINESS_WIFI, target, params, op_params, passphrase)


async def request_guest_rotate(
    session: AsyncSession, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    """GUEST_ROTATE for a customer (target: customer code, or a serial of one of its units:
    every unit of that customer gets the one new guest passphrase).
    Params: `confirm_minutes` (default 5)."""
    check_params(GUEST_ROTATE, params, {"confirm_minutes"})
    op_params = {"confirm_minutes": confirm_minutes(params, DEFAULT_CONFIRM_MINUTES)}
    return await _per_unit(
        session, ctx, GUEST_ROTATE, target, params, op_params, generate_passphrase()
    )


async def request_original_ssid(
    session: AsyncSession, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    """ORIGINAL_SSID for a customer (target: customer code, or a serial of one of its units).

    Params: `ssid` (the shop's name for its guest network; over 15 characters is accepted
    with a warning) or `clear: true` (back to the default guest SSID); `confirm_minutes`.
    """
    check_params(ORIGINAL_SSID, params, {"ssid", "clear", "confirm_minutes"})
    minutes = confirm_minutes(params, DEFAULT_CONFIRM_MINUTES)
    ssid = params.get("ssid")
    clear = params.get("clear") is True
    if clear == (ssid is not None):
        raise RuleViolation(
            "ssid",
            ssid,
            "give the Original SSID, or clear: true to go back to the default guest SSID",
        )
    op_params: dict[str, Any] = {"confirm_minutes": minutes, "clear": clear}
    if ssid is not None:
        check_original_ssid(str(ssid), field="ssid")
        op_params["ssid"] = str(ssid)
    return await _per_unit(session, ctx, ORIGINAL_SSID, target, params, op_params, None)


# ----- workflows -------------------------------------------------------------------------------
def _serial(ctx: OpContext) -> str:
    if not ctx.unit_serial:
        raise RuleViolation("unit_serial", None, f"a {ctx.kind} operation names its unit")
    return ctx.unit_serial


def _network(state: UnitState, network: str) -> WlanState:
    return state.business if network == "business" else state.guest


def _wifi_plan(
    serial: str, network: str, ssid: str | None, passphrase: str | None
) -> tuple[Any, Verify]:
    """The change and the check of one network: SSID compared as shown, passphrase by the
    unit's fingerprint (the unit never shows the passphrase itself)."""
    fingerprint = passphrase_fingerprint(serial, passphrase) if passphrase else None

    def plan(state: UnitState) -> Change:
        wlan = _network(state, network)
        change: dict[str, str | None] = {}
        if ssid is not None and wlan.ssid != ssid:
            change[f"wlan {network} ssid"] = ssid
        if passphrase is not None and wlan.passphrase_fingerprint != fingerprint:
            change[f"wlan {network} passphrase"] = passphrase
        return Change(change)

    def verify(state: UnitState) -> str | None:
        wlan = _network(state, network)
        problems = []
        if ssid is not None and wlan.ssid != ssid:
            problems.append(f"the {network} SSID is {wlan.ssid!r}, not {ssid!r}")
        if fingerprint is not None and wlan.passphrase_fingerprint != fingerprint:
            problems.append(f"the {network} passphrase did not take (its fingerprint differs)")
        return "; ".join(problems) or None

    return plan, verify


async def _apply_wifi(
    ctx: OpContext, network: str, ssid: str | None, passphrase: str | None, what: str
) -> bool:
    """Push one network's values to the operation's unit and store them as intended."""
    serial = _serial(ctx)
    plan, verify = _wifi_plan(serial, network, ssid, passphrase)
    minutes = int(ctx.params.get("confirm_minutes", DEFAULT_CONFIRM_MINUTES))
    pushed = await push(ctx, serial, plan, verify, minutes=minutes, what=what, reconnect=False)
    ctx.intend_wifi(serial, network, ssid=ssid, passphrase=passphrase)
    await ctx.step("record", True, f"intended {network} Wi-Fi stored")
    await audit_push(ctx, ctx.kind, serial, pushed)
    return pushed.applied


def _customer(ctx: OpContext) -> str:
    return ctx.customer_code or "-"


class BusinessWifi:
    kind = BUSINESS_WIFI
    default_deadline = WORKFLOW_DEADLINE

    async def run(self, ctx: OpContext) -> str:
        serial = _serial(ctx)
        ssid = ctx.params.get("ssid")
        passphrase = ctx.secrets.get(PASSPHRASE)
        if ssid is None and passphrase is None:
            raise RuleViolation("ssid", None, "a business Wi-Fi change needs an SSID or passphrase")
        changed = [w for w, v in (("SSID", ssid), ("passphrase", passphrase)) if v is not None]
        what = f"business {' and '.join(changed)}"
        applied = await _apply_wifi(ctx, "business", ssid, passphrase, what)
        if ctx.params.get("lead"):
            code = _customer(ctx)
            detail = (
                f"customer {code}: post the registration notice with the new business Wi-Fi "
                "to a registered address (installation site, contract holder or billing)"
            )
            await ctx.step("registration_notice_due", True, detail)
            await ctx.audit("registration_notice_due", code, detail=detail)
        return f"{serial}: {what} {'set' if applied else 'already set'}"


class GuestRotate:
    kind = GUEST_ROTATE
    default_deadline = WORKFLOW_DEADLINE

    async def run(self, ctx: OpContext) -> str:
        serial = _serial(ctx)
        passphrase = ctx.secrets.get(PASSPHRASE)
        if passphrase is None:
            raise RuleViolation(PASSPHRASE, None, "a guest rotation carries its new passphrase")
        applied = await _apply_wifi(ctx, "guest", None, passphrase, "new guest passphrase")
        return f"{serial}: guest passphrase {'rotated' if applied else 'already rotated'}"


class OriginalSsid:
    kind = ORIGINAL_SSID
    default_deadline = WORKFLOW_DEADLINE

    async def run(self, ctx: OpContext) -> str:
        serial = _serial(ctx)
        clear = bool(ctx.params.get("clear"))
        ssid = DEFAULT_GUEST_SSID if clear else str(ctx.params.get("ssid") or "")
        if clear:
            await ctx.step("check", True, f"back to the default guest SSID {ssid!r}")
        else:
            warnings = check_original_ssid(ssid, field="ssid")
            await ctx.step("check", True, "; ".join(str(w) for w in warnings) or "SSID accepted")
        what = f"guest SSID {ssid!r}"
        applied = await _apply_wifi(ctx, "guest", ssid, None, what)
        if ctx.params.get("lead"):
            await self._billing(ctx, None if clear else ssid)
        return f"{serial}: {what} {'set' if applied else 'already set'}"

    async def _billing(self, ctx: OpContext, ssid: str | None) -> None:
        code = _customer(ctx)
        async with ctx.transaction() as session:
            items = [
                item
                for item in await repo.list_contract_items(session, code)
                if item.item_code == ItemCode.ORIGINAL_SSID
                and item.status in (ItemStatus.ORDERED, ItemStatus.CONFIRMED)
            ]
        item_no = items[0].item_no if items else None
        if ssid is not None:
            action = "original_ssid_billing_due"
            if item_no:
                detail = f"customer {code}: Original SSID {ssid!r} billed on item {item_no}"
            else:
                detail = (
                    f"customer {code}: no Original SSID item ({ItemCode.ORIGINAL_SSID}) on the "
                    f"contract yet: register the order with SSID'{ssid}' in its note"
                )
        else:
            action = "original_ssid_billing_end"
            if item_no:
                detail = f"customer {code}: end the Original SSID item {item_no} in the contract"
            else:
                detail = f"customer {code}: no Original SSID item on the contract to end"
        await ctx.step(action, True, detail)
        after = {"item_code": ItemCode.ORIGINAL_SSID.value, "item_no": item_no, "ssid": ssid}
        await ctx.audit(action, code, after=after, detail=detail)
