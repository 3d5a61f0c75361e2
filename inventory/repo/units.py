"""Units: registration, credentials, intended configuration and observed state."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.domain import AccountState, Role, WanMode
from inventory.errors import Conflict, NotFound, RuleViolation, SecretKeyError
from inventory.models import ContractItem, Customer, Line, Unit, UnitObservation, utcnow
from inventory.records import Credential, UnitData
from inventory.repo._base import Change, Upserted, _assign, _changed, customer_codes_by_id
from inventory.repo.customers import get_customer
from inventory.repo.keys import check_secret_key
from inventory.rules import (
    Tunnel,
    UnitFacts,
    assert_child_has_parent_of_same_customer,
    assert_child_not_swapped_for_link_item,
    assert_customer_code_format,
    assert_customer_code_unchanged,
    assert_only_child_has_parent,
    assert_passphrase,
    assert_role_unchanged,
    assert_serial_format,
    assert_ssid,
    assert_unit_password,
    assert_v6_possible,
)
from inventory.secrets import SecretBox

PASSWORD = "unit.password"  # noqa: S105 - the purpose label bound into the ciphertext
PASSPHRASE = {"business": "unit.business_passphrase", "guest": "unit.guest_passphrase"}
# the columns that hold a unit's intended Wi-Fi, per network
INTENDED_WIFI = {n: (f"intended_{n}_ssid", f"intended_{n}_passphrase_enc") for n in PASSPHRASE}

# --- units ------------------------------------------------------------------------------


async def find_unit(session: AsyncSession, serial: str) -> Unit | None:
    return await session.scalar(select(Unit).where(Unit.serial == serial))


async def get_unit(session: AsyncSession, serial: str) -> Unit:
    unit = await find_unit(session, serial)
    if unit is None:
        raise NotFound("unit", serial)
    return unit


def _units_query() -> Select[Unit]:
    # parents first, then children, then access points; by serial within a role
    return select(Unit).order_by(Unit.role.desc(), Unit.serial)


async def list_units(session: AsyncSession, customer_code: str) -> list[Unit]:
    # the customer's id alone: loading the customer would load its addresses too
    customer_id = await session.scalar(select(Customer.id).where(Customer.code == customer_code))
    if customer_id is None:
        raise NotFound("customer", customer_code)
    return list(await session.scalars(_units_query().where(Unit.customer_id == customer_id)))


async def list_children(session: AsyncSession, parent_serial: str) -> list[Unit]:
    parent = await get_unit(session, parent_serial)
    query = select(Unit).where(Unit.parent_id == parent.id).order_by(Unit.serial)
    return list(await session.scalars(query))


def check_unit(data: UnitData, stored: UnitFacts | None, parent: UnitFacts | None) -> None:
    """The rules every unit keeps, whatever its source. `stored` is the unit as registered
    (None: new), `parent` the unit `data.parent_serial` names (None: unknown)."""
    assert_serial_format(data.serial)
    assert_customer_code_format(data.customer_code)
    try:
        role = Role(data.role)
    except ValueError:
        raise RuleViolation("role", data.role, "a role is parent, child or ap") from None
    if stored is not None:
        assert_customer_code_unchanged(
            stored.customer_code, data.customer_code, what=f"unit {data.serial}"
        )
        assert_role_unchanged(data.serial, stored.role, role)
    assert_only_child_has_parent(role, data.parent_serial)
    if role == Role.CHILD:
        assert_child_has_parent_of_same_customer(data.customer_code, data.parent_serial, parent)
    if data.link_item is not None:
        assert_child_not_swapped_for_link_item(data.serial, role, data.link_item)
    if data.password is not None:
        assert_unit_password(data.password)


def merge_unit(
    session: AsyncSession,
    existing: Unit | None,
    data: UnitData,
    *,
    customer: Customer,
    parent: Unit | None,
    box: SecretBox | None = None,
) -> Upserted[Unit]:
    """Create or update a unit from checked data (see `check_unit`). The password is
    encrypted with `box`, which must then be given."""
    values: dict[str, Any] = {}
    for name in ("link_item", "platform", "mgmt_address", "ssh_port", "snmp_port", "username"):
        value = getattr(data, name)
        if value is not None:
            values[name] = value
    if data.private_key_path is not None:
        values["private_key_path"] = data.private_key_path or None
    unit = existing
    relinked = False
    if unit is None:
        unit = Unit(serial=data.serial, role=data.role, customer=customer, parent=parent)
        unit.link_item = False
        session.add(unit)
    elif unit.parent_id != (parent.id if parent else None):
        unit.parent = parent
        relinked = True
    changed = _assign(unit, values) or relinked
    if data.password is not None:
        if box is None:
            raise SecretKeyError("a unit password is stored encrypted: a secret key is needed")
        if not box.matches(unit.password_enc, data.password, purpose=PASSWORD):
            unit.password_enc = box.encrypt(data.password, purpose=PASSWORD)
            changed = True
    return Upserted(unit, Change.CREATED if existing is None else _changed(changed))


async def upsert_unit(
    session: AsyncSession, data: UnitData, box: SecretBox | None = None
) -> Upserted[Unit]:
    existing = await find_unit(session, data.serial)
    parent = await find_unit(session, data.parent_serial) if data.parent_serial else None
    codes = await customer_codes_by_id(
        session, [u.customer_id for u in (existing, parent) if u is not None]
    )
    check_unit(data, _facts(existing, codes), _facts(parent, codes))
    customer = await get_customer(session, data.customer_code)
    if data.password is not None and box is not None:
        await check_secret_key(session, box)
    return merge_unit(session, existing, data, customer=customer, parent=parent, box=box)


def _facts(unit: Unit | None, codes: Mapping[int, str]) -> UnitFacts | None:
    if unit is None:
        return None
    return UnitFacts(unit.serial, unit.role, codes[unit.customer_id])


# the columns `unit_credential` reads: a caller reaching many units selects just these
ACCESS_COLUMNS = (
    "serial",
    "mgmt_address",
    "ssh_port",
    "snmp_port",
    "username",
    "password_enc",
    "private_key_path",
    "host_key_fingerprint",
    "platform",
)


def unit_credential(unit: Unit | Row[Any], box: SecretBox | None) -> Credential:
    """How to reach and log in to the unit (password decrypted; `box` needed if stored);
    `unit` may be a row of `ACCESS_COLUMNS`."""
    if unit.mgmt_address is None or unit.ssh_port is None or unit.username is None:
        raise NotFound("management access for unit", unit.serial)
    password = None
    if unit.password_enc is not None:
        if box is None:
            raise SecretKeyError("the unit password is stored encrypted: a secret key is needed")
        password = box.decrypt(unit.password_enc, purpose=PASSWORD)
    return Credential(
        serial=unit.serial,
        host=unit.mgmt_address,
        ssh_port=unit.ssh_port,
        snmp_port=unit.snmp_port,
        username=unit.username,
        password=password,
        private_key_path=unit.private_key_path,
        host_key_fingerprint=unit.host_key_fingerprint,
        platform=unit.platform,
    )


async def set_intended_wifi(
    session: AsyncSession,
    serial: str,
    box: SecretBox,
    network: str,
    *,
    ssid: str | None = None,
    passphrase: str | None = None,
) -> Upserted[Unit]:
    """Record what a unit's business or guest network should have (passphrase encrypted)."""
    check_intended_wifi(network, ssid=ssid, passphrase=passphrase)
    unit = await get_unit(session, serial)
    if passphrase is not None:
        await check_secret_key(session, box)
    changed = apply_intended_wifi(unit, box, network, ssid=ssid, passphrase=passphrase)
    return Upserted(unit, _changed(changed))


def check_intended_wifi(network: str, *, ssid: str | None, passphrase: str | None) -> None:
    """The rules intended Wi-Fi values keep (checked before anything is written)."""
    if network not in PASSPHRASE:
        raise RuleViolation("network", network, "a Wi-Fi network is business or guest")
    if ssid is not None:
        assert_ssid(ssid, field=f"{network}_ssid")
    if passphrase is not None:
        assert_passphrase(passphrase, field=f"{network}_passphrase")


def apply_intended_wifi(
    unit: Unit, box: SecretBox, network: str, *, ssid: str | None, passphrase: str | None
) -> bool:
    """Set checked intended Wi-Fi values on a loaded unit (the caller has checked the secret
    key in its transaction); whether anything changed."""
    current = {column: getattr(unit, column) for column in INTENDED_WIFI[network]}
    changes = intended_wifi_changes(current, box, network, ssid=ssid, passphrase=passphrase)
    for column, value in changes.items():
        setattr(unit, column, value)
    return bool(changes)


def intended_wifi_changes(
    current: Mapping[str, Any],
    box: SecretBox,
    network: str,
    *,
    ssid: str | None,
    passphrase: str | None,
) -> dict[str, Any]:
    """The intended Wi-Fi columns to write for checked values, given the unit's `current`
    columns by name: only those that differ (a passphrase already stored is not encrypted
    again)."""
    ssid_column, passphrase_column = INTENDED_WIFI[network]
    changes: dict[str, Any] = {}
    if ssid is not None and current[ssid_column] != ssid:
        changes[ssid_column] = ssid
    purpose = PASSPHRASE[network]
    if passphrase is not None and not box.matches(
        current[passphrase_column], passphrase, purpose=purpose
    ):
        changes[passphrase_column] = box.encrypt(passphrase, purpose=purpose)
    return changes


def intended_passphrase(unit: Unit, box: SecretBox, network: str) -> str | None:
    token: str | None = getattr(unit, f"intended_{network}_passphrase_enc")
    return None if token is None else box.decrypt(token, purpose=PASSPHRASE[network])


async def set_intended_wan(
    session: AsyncSession, serial: str, mode: str, tunnel: Tunnel | None = None
) -> Upserted[Unit]:
    """Record the WAN mode a parent should run: V4 (pppoe) or V6 (ipoe with `tunnel`, the
    line's tunnel when not given). V6 is refused where the service rules rule it out."""
    unit = await get_unit(session, serial)
    wan = WanMode(mode)
    if wan == WanMode.PPPOE:
        return Upserted(unit, _changed(_assign(unit, {"intended_wan_mode": wan.value})))
    line = await session.scalar(select(Line).where(Line.customer_id == unit.customer_id))
    assert_v6_possible(
        serial,
        unit.role,
        moved_by_customer=line.moved_by_customer if line else False,
        order_state=line.v6_order_state if line else None,
    )
    tunnel = tunnel or (line.tunnel if line else None)
    if tunnel is None:
        raise RuleViolation("tunnel", None, f"{serial}: the line has no 4over6 tunnel parameters")
    values = {"intended_wan_mode": wan.value, "intended_tunnel": tunnel.as_dict()}
    return Upserted(unit, _changed(_assign(unit, values)))


async def set_intended_account_state(
    session: AsyncSession, serial: str, state: str
) -> Upserted[Unit]:
    unit = await get_unit(session, serial)
    return Upserted(unit, _changed(apply_intended_account_state(unit, state)))


def apply_intended_account_state(unit: Unit, state: str) -> bool:
    """Set the intended account state on a loaded unit; whether it changed."""
    return _assign(unit, {"intended_account_state": AccountState(state).value})


async def pin_host_key(session: AsyncSession, serial: str, fingerprint: str | None) -> Unit:
    """Pin (or, with None, unpin) the unit's SSH host key fingerprint."""
    unit = await get_unit(session, serial)
    _assign(unit, {"host_key_fingerprint": fingerprint})
    return unit


async def record_observation(
    session: AsyncSession,
    serial: str,
    *,
    reachable: bool,
    at: datetime | None = None,
    values: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> UnitObservation:
    """What a read of the unit found. A failed read (`error`) keeps the last good values."""
    unit = await get_unit(session, serial)
    at = at or utcnow()
    seen = await session.get(UnitObservation, unit.id)
    if seen is None:
        seen = UnitObservation(unit_id=unit.id)
        session.add(seen)
    seen.reachable = reachable
    if error is not None:
        seen.last_error, seen.last_error_at = error, at
    if values is not None:
        seen.observed_at = at
        seen.read_values = dict(values)
        seen.wan_mode = _text(values.get("wan_mode"))
        seen.tunnel_state = _text(values.get("tunnel_state"))
        seen.account_state = _text(values.get("account_state"))
    return seen


async def get_observation(session: AsyncSession, serial: str) -> UnitObservation | None:
    unit = await get_unit(session, serial)
    return await session.get(UnitObservation, unit.id)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


async def remove_unit(session: AsyncSession, serial: str) -> Unit:
    """Take a unit out of the inventory (a faulty unit swapped for a link item), with its
    observation. Its children and contract items are moved to another unit first: a unit
    anything still points to is refused with `Conflict`."""
    unit = await get_unit(session, serial)
    children = await session.scalar(
        select(func.count()).select_from(Unit).where(Unit.parent_id == unit.id)
    )
    items = await session.scalar(
        select(func.count()).select_from(ContractItem).where(ContractItem.unit_id == unit.id)
    )
    if children or items:
        raise Conflict(
            f"unit {serial} still has {children} children and {items} contract items: "
            "move them to the unit that replaces it first"
        )
    await session.delete(unit)
    await session.flush()
    return unit
