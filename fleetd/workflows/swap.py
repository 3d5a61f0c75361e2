"""A faulty parent or access point swapped on site for a link item (LINK_SWAP).

The target is the faulty unit's serial; the parameters describe the link item as the fleet
file has it (serial, management address, ports, user name, password) and the host key the
engineer read off it, pinned explicitly (never trusted on first use: the inventory is told
which unit to expect). A child is never replaced by a link item: it is ordered as equipment.

The workflow registers the link item (V4, `link_item`, host key pinned), reads it to make
sure the right unit answers, then moves the customer's contract items, the children (they
keep their parent, which is now the link item) and the intended Wi-Fi over, and takes the
faulty unit out of the inventory. A link item always runs V4: if the customer was on V6
(intended or observed), a CUTOVER of the link item follows 2 business days later at 10:00 JST.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from drivers.transport import normalise_key
from fleetd.clock import JST
from fleetd.workflows.base import CUTOVER, LINK_SWAP, OpContext, RequestContext
from fleetd.workflows.common import (
    Planned,
    base_key,
    check_params,
    customer_code_of,
    describe,
    known_operation,
    unit_of,
    write_operations,
    writing,
)
from fleetd.workflows.cutover import DEFAULT_CONFIRM_MINUTES as CUTOVER_MINUTES
from fleetd.workflows.cutover import Cutover
from inventory import operations as ops
from inventory import repo
from inventory.domain import DEFAULT_PLATFORM, Role, WanMode
from inventory.errors import RuleViolation
from inventory.models import Unit
from inventory.operations import Operation
from inventory.records import ContractItemData, UnitData
from inventory.rules import (
    assert_child_not_swapped_for_link_item,
    assert_serial_format,
    assert_unit_password,
    clean_management_address,
    clean_port,
    clean_username,
)

CUTOVER_AFTER_BUSINESS_DAYS = 2
CUTOVER_AT = time(10, 0)  # JST
PASSWORD = "password"  # noqa: S105 - the name of the secret, not a secret
PARAMS = ("new_serial", "address", "ssh_port", "snmp_port", "username", "host_key", "platform")


@dataclass(frozen=True)
class LinkItem:
    """The replacement unit, as checked from a request's parameters."""

    serial: str
    address: str
    ssh_port: int
    snmp_port: int | None
    username: str
    host_key: str
    platform: str

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> LinkItem:
        serial = str(params.get("new_serial") or "")
        assert_serial_format(serial, field="new_serial")
        address = clean_management_address(str(params.get("address") or ""), field="address")
        ssh_port = clean_port(str(params.get("ssh_port") or ""), field="ssh_port")
        snmp = params.get("snmp_port")
        snmp_port = clean_port(str(snmp), field="snmp_port") if snmp not in (None, "") else None
        username = clean_username(str(params.get("username") or "admin"), field="username")
        raw_key = str(params.get("host_key") or "")
        try:
            host_key = normalise_key(raw_key)
        except ValueError:
            raise RuleViolation(
                "host_key",
                raw_key[:40],
                "is the link item's SSH host key in OpenSSH form (ssh-ed25519 AAAA…)",
                hint="read it off the unit, e.g. with ssh-keyscan, and give it to pin it",
            ) from None
        platform = str(params.get("platform") or DEFAULT_PLATFORM)
        return cls(serial, address, ssh_port, snmp_port, username, host_key, platform)

    def as_params(self) -> dict[str, Any]:
        return {
            "new_serial": self.serial,
            "address": self.address,
            "ssh_port": self.ssh_port,
            "snmp_port": self.snmp_port,
            "username": self.username,
            "host_key": self.host_key,
            "platform": self.platform,
        }


async def request_link_swap(
    session: AsyncSession, ctx: RequestContext, target: str, params: Mapping[str, Any]
) -> list[Operation]:
    """LINK_SWAP of a faulty parent or access point (target: its serial).

    Params: `new_serial`, `address`, `ssh_port`, `snmp_port`, `username` (default admin),
    `password` (sealed), `host_key` (pinned as given), `platform` (default uspot).
    """
    check_params(LINK_SWAP, params, {*PARAMS, PASSWORD})
    key = base_key(LINK_SWAP, target, ctx, params)
    known = await known_operation(session, key, LINK_SWAP)
    if known is not None:
        return [known]
    faulty = await unit_of(session, target)
    assert_child_not_swapped_for_link_item(faulty.serial, faulty.role, True)
    item = LinkItem.parse(params)
    password = params.get(PASSWORD)
    if not password:
        raise RuleViolation(PASSWORD, None, "the link item's login password is needed")
    assert_unit_password(str(password), field=PASSWORD)
    if item.serial == faulty.serial:
        raise RuleViolation("new_serial", item.serial, "a link item is another unit")
    registered = await repo.find_unit(session, item.serial)
    if registered is not None:
        raise RuleViolation(
            "new_serial",
            item.serial,
            "is registered already: a link item is a unit new to the inventory",
        )
    code = await customer_code_of(session, faulty)
    plan = Planned(faulty.serial, code, item.as_params(), {PASSWORD: str(password)})
    lasts = LinkSwap.default_deadline
    return await write_operations(session, ctx, LINK_SWAP, key, [plan], params, lasts=lasts)


@dataclass(frozen=True)
class _Faulty:
    serial: str
    role: str
    customer_code: str
    was_v6: bool


class LinkSwap:
    kind = LINK_SWAP
    default_deadline = timedelta(days=3)

    async def run(self, ctx: OpContext) -> str:
        if not ctx.unit_serial:
            raise RuleViolation("unit_serial", None, "a link swap names the faulty unit")
        serial = ctx.unit_serial
        item = LinkItem.parse(ctx.params)
        password = ctx.secrets.get(PASSWORD)
        async with ctx.transaction() as session:
            faulty = await self._faulty(session, serial)
            if faulty is None:
                new = await repo.find_unit(session, item.serial)
                if new is None or not new.link_item:
                    raise RuleViolation(
                        "target", serial, "no such unit, and no link item replaced it"
                    )
        if faulty is None:
            await ctx.step("already applied", True, f"{serial} was replaced by {item.serial}")
            return f"{serial} already replaced by link item {item.serial}"
        async with writing(ctx) as session:
            await repo.upsert_unit(session, self._unit_data(item, faulty, password), ctx.box)
            await repo.pin_host_key(session, item.serial, item.host_key)
        await ctx.step("register", True, f"link item {item.serial} (V4), host key pinned")
        async with ctx.connect(item.serial) as unit:
            state = await unit.read_state()
        await ctx.step("read", True, f"{item.serial}: {describe(state)}")
        if state.serial != item.serial or state.role != faulty.role:
            raise RuleViolation(
                "address",
                item.address,
                f"the unit there is {state.serial} ({state.role}), not the {faulty.role} "
                f"{item.serial}: check the link item's address",
            )
        follow_up = None
        if faulty.was_v6:
            follow_up = await self._cutover_later(ctx, faulty, item)
        try:
            async with writing(ctx) as session:
                moved = await self._move(session, ctx, faulty, item)
        except Exception:  # the swap stays undone: so does its cutover
            if follow_up is not None:
                async with writing(ctx) as session:
                    await ops.cancel(session, follow_up.id, "the link swap did not complete")
            raise
        await ctx.step("inventory", True, moved)
        await ctx.audit(
            "link_item_swapped",
            serial,
            before={"serial": serial, "role": faulty.role, "v6": faulty.was_v6},
            after={"serial": item.serial, "link_item": True, "wan_mode": "pppoe"},
            detail=moved,
        )
        summary = f"{serial} replaced by link item {item.serial} (V4)"
        if follow_up is not None:
            due = follow_up.not_before.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")
            summary += f"; its V6 cutover is due {due}"
        return summary

    async def _faulty(self, session: AsyncSession, serial: str) -> _Faulty | None:
        unit = await repo.find_unit(session, serial)
        if unit is None:
            return None
        assert_child_not_swapped_for_link_item(serial, unit.role, True)
        seen = await repo.get_observation(session, serial)
        was_v6 = unit.role == Role.PARENT and WanMode.IPOE in (
            unit.intended_wan_mode,
            seen.wan_mode if seen else None,
        )
        return _Faulty(serial, unit.role, await customer_code_of(session, unit), was_v6)

    def _unit_data(self, item: LinkItem, faulty: _Faulty, password: str | None) -> UnitData:
        return UnitData(
            serial=item.serial,
            customer_code=faulty.customer_code,
            role=faulty.role,
            link_item=True,
            platform=item.platform,
            mgmt_address=item.address,
            ssh_port=item.ssh_port,
            snmp_port=item.snmp_port,
            username=item.username,
            password=password,
        )

    async def _cutover_later(self, ctx: OpContext, faulty: _Faulty, item: LinkItem) -> Operation:
        when = ctx.calendar.business_days_later(
            ctx.clock.now(), CUTOVER_AFTER_BUSINESS_DAYS, CUTOVER_AT
        )
        op = await ctx.follow_up(
            CUTOVER,
            idempotency_key=f"{LINK_SWAP}:{faulty.serial}:{item.serial}:{CUTOVER}",
            unit_serial=item.serial,
            customer_code=faulty.customer_code,
            params={"confirm_minutes": CUTOVER_MINUTES},
            not_before=when,
            deadline=when + Cutover.default_deadline,
        )
        due = when.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")
        await ctx.step("cutover scheduled", True, f"the customer was on V6: {item.serial} {due}")
        return op

    async def _move(
        self, session: AsyncSession, ctx: OpContext, faulty: _Faulty, item: LinkItem
    ) -> str:
        old = await repo.get_unit(session, faulty.serial)
        code = faulty.customer_code
        children = await repo.list_children(session, faulty.serial)
        for child in children:
            child_data = UnitData(child.serial, code, Role.CHILD.value, parent_serial=item.serial)
            await repo.upsert_unit(session, child_data)
        items = [i for i in await repo.list_contract_items(session, code) if i.unit_id == old.id]
        for contract in items:
            data = ContractItemData(
                item_no=contract.item_no,
                customer_code=code,
                item_code=contract.item_code,
                status=contract.status,
                serial=item.serial,
                billing_start_month=contract.billing_start_month,
                cancellation_date=contract.cancellation_date,
                order_note=contract.order_note,
                original_ssid=contract.original_ssid,
            )
            await repo.upsert_contract_item(session, data)
        await _carry_intended(session, ctx, old, item.serial)
        await repo.remove_unit(session, faulty.serial)
        parts = [f"{faulty.serial} out, {item.serial} in for customer {code}"]
        if items:
            parts.append("items " + ", ".join(i.item_no for i in items) + " moved")
        if children:
            parts.append("children " + ", ".join(c.serial for c in children) + " re-parented")
        return "; ".join(parts)


async def _carry_intended(session: AsyncSession, ctx: OpContext, old: Unit, serial: str) -> None:
    """The link item should give the shop what the faulty unit gave: same Wi-Fi, same
    account state; its WAN is V4 until its cutover."""
    for network in ("business", "guest"):
        await repo.set_intended_wifi(
            session,
            serial,
            ctx.box,
            network,
            ssid=getattr(old, f"intended_{network}_ssid"),
            passphrase=repo.intended_passphrase(old, ctx.box, network),
        )
    await repo.set_intended_account_state(session, serial, old.intended_account_state)
    if old.role == Role.PARENT:
        await repo.set_intended_wan(session, serial, WanMode.PPPOE.value)
