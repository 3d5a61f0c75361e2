"""Customers, their addresses and ISP line, and contract items."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.domain import ItemStatus
from inventory.errors import NotFound, RuleViolation
from inventory.models import ContractItem, Customer, CustomerAddress, Line, Unit
from inventory.records import KEEP, ContractItemData, CustomerData, LineData
from inventory.repo._base import (
    Change,
    Upserted,
    _assign,
    _changed,
    _like_prefix,
    customer_codes_by_id,
)
from inventory.rules import (
    address_key,
    assert_cancellation_date_fits_status,
    assert_customer_code_format,
    assert_customer_code_unchanged,
    assert_item_not_legacy_for_new_order,
    assert_serial_format,
    assert_ssid,
    clean_item_code,
    clean_phone,
    kana_key,
)

# --- customers --------------------------------------------------------------------------


async def find_customer_by_code(session: AsyncSession, code: str) -> Customer | None:
    return await session.scalar(select(Customer).where(Customer.code == code))


async def get_customer(session: AsyncSession, code: str) -> Customer:
    customer = await find_customer_by_code(session, code)
    if customer is None:
        raise NotFound("customer", code)
    return customer


async def find_customers_by_phone(
    session: AsyncSession, phone: str, *, limit: int = 50
) -> list[Customer]:
    """Customers whose phone number is `phone`, written with or without hyphens."""
    digits = clean_phone(phone)
    query = select(Customer).where(Customer.phone_digits == digits).order_by(Customer.code)
    return list(await session.scalars(query.limit(limit)))


async def find_customers_by_kana(
    session: AsyncSession, kana: str, *, limit: int = 50
) -> list[Customer]:
    """Customers whose kana reading starts with `kana` (half-width, hiragana and spaces
    are all matched: `ｶﾌｪ`, `かふぇ` and `カフェ` find the same shops)."""
    key = kana_key(kana)
    if not key:
        return []
    query = select(Customer).where(Customer.kana_key.like(_like_prefix(key), escape="\\"))
    return list(await session.scalars(query.order_by(Customer.kana_key).limit(limit)))


async def find_customers_by_address(
    session: AsyncSession, address: str, *, limit: int = 50
) -> list[Customer]:
    """Customers with a registered address (any of the three) starting with `address`."""
    key = address_key(address)
    if not key:
        return []
    ids = (
        select(CustomerAddress.customer_id)
        .where(CustomerAddress.address_key.like(_like_prefix(key), escape="\\"))
        .distinct()
    )
    query = select(Customer).where(Customer.id.in_(ids)).order_by(Customer.code).limit(limit)
    return list(await session.scalars(query))


def merge_customer(
    session: AsyncSession, existing: Customer | None, data: CustomerData
) -> Upserted[Customer]:
    values = {
        "name": data.name,
        "kana": data.kana,
        "kana_key": kana_key(data.kana),
        "phone": data.phone,
        "phone_digits": clean_phone(data.phone) if data.phone else "",
        "branch": data.branch,
    }
    if existing is None:
        customer = Customer(code=data.code, **values)
        session.add(customer)
        _merge_addresses(customer, data)
        return Upserted(customer, Change.CREATED)
    assert_customer_code_unchanged(existing.code, data.code)
    changed = _assign(existing, values)
    changed = _merge_addresses(existing, data) or changed
    return Upserted(existing, _changed(changed))


def _merge_addresses(customer: Customer, data: CustomerData) -> bool:
    stored = {a.kind: a for a in customer.addresses}
    changed = False
    for wanted in data.addresses:
        values = {
            "recipient": wanted.recipient,
            "postal_code": wanted.postal_code,
            "address": wanted.address,
            "address_key": address_key(wanted.address),
        }
        current = stored.pop(wanted.kind, None)
        if current is None:
            customer.addresses.append(CustomerAddress(kind=wanted.kind.value, **values))
            changed = True
        else:
            changed = _assign(current, values) or changed
    for stale in stored.values():
        customer.addresses.remove(stale)
        changed = True
    return changed


async def upsert_customer(session: AsyncSession, data: CustomerData) -> Upserted[Customer]:
    assert_customer_code_format(data.code)
    return merge_customer(session, await find_customer_by_code(session, data.code), data)


def ensure_customer(
    session: AsyncSession, existing: Customer | None, code: str
) -> Upserted[Customer]:
    """The customer with this code, created with the code alone when not registered yet
    (the contract export fills in the rest)."""
    if existing is not None:
        return Upserted(existing, Change.UNCHANGED)
    customer = Customer(code=code)
    session.add(customer)
    return Upserted(customer, Change.CREATED)


# --- lines ------------------------------------------------------------------------------


async def find_line(session: AsyncSession, customer_code: str) -> Line | None:
    query = select(Line).join(Customer, Line.customer_id == Customer.id)
    return await session.scalar(query.where(Customer.code == customer_code))


def merge_line(
    session: AsyncSession, customer: Customer, existing: Line | None, data: LineData
) -> Upserted[Line]:
    values: dict[str, Any] = {}
    if data.line_type is not None:
        values["line_type"] = data.line_type
    if data.moved_by_customer is not None:
        values["moved_by_customer"] = data.moved_by_customer
    if data.v6_order_state is not None:
        values["v6_order_state"] = data.v6_order_state
    if data.v6_order_date is not KEEP:
        values["v6_order_date"] = data.v6_order_date
    line = existing
    if line is None:
        if data.line_type is None:
            raise RuleViolation("line_type", "", "a new ISP line needs its type")
        line = Line(customer=customer, moved_by_customer=False, v6_order_state="none")
        session.add(line)
        if data.tunnel is not KEEP:
            values.update(line.tunnel_columns(data.tunnel))
        _assign(line, values)
        return Upserted(line, Change.CREATED)
    if data.tunnel is not KEEP:
        values.update(line.tunnel_columns(data.tunnel))
    return Upserted(line, _changed(_assign(line, values)))


async def upsert_line(session: AsyncSession, customer_code: str, data: LineData) -> Upserted[Line]:
    customer = await get_customer(session, customer_code)
    existing = await session.scalar(select(Line).where(Line.customer_id == customer.id))
    return merge_line(session, customer, existing, data)


# --- contract items ---------------------------------------------------------------------


def check_contract_item(data: ContractItemData) -> None:
    """The rules every contract item keeps, whatever its source."""
    assert_customer_code_format(data.customer_code)
    code = clean_item_code(data.item_code)
    try:
        status = ItemStatus(data.status)
    except ValueError:
        words = ", ".join(s.value for s in ItemStatus)
        raise RuleViolation("status", data.status, f"a status is one of: {words}") from None
    assert_item_not_legacy_for_new_order(code, status)
    assert_cancellation_date_fits_status(status, data.cancellation_date)
    if data.serial:
        assert_serial_format(data.serial)
    if data.original_ssid is not None:
        assert_ssid(data.original_ssid, field="original_ssid")


def merge_contract_item(
    session: AsyncSession,
    existing: ContractItem | None,
    data: ContractItemData,
    *,
    customer: Customer,
    unit: Unit | None,
) -> Upserted[ContractItem]:
    values = {
        "item_code": data.item_code,
        "status": data.status,
        "billing_start_month": data.billing_start_month,
        "cancellation_date": data.cancellation_date,
        "order_note": data.order_note,
        "original_ssid": data.original_ssid,
    }
    if existing is None:
        item = ContractItem(item_no=data.item_no, customer=customer, unit=unit, **values)
        session.add(item)
        return Upserted(item, Change.CREATED)
    if existing.customer_id != customer.id:
        raise RuleViolation(
            "customer_code", data.customer_code, f"item {data.item_no} belongs to another customer"
        )
    changed = _assign(existing, values)
    if existing.unit_id != (unit.id if unit else None):
        existing.unit = unit
        changed = True
    return Upserted(existing, _changed(changed))


async def upsert_contract_item(
    session: AsyncSession, data: ContractItemData
) -> Upserted[ContractItem]:
    check_contract_item(data)
    customer = await get_customer(session, data.customer_code)
    unit = None
    if data.serial:
        unit = await session.scalar(select(Unit).where(Unit.serial == data.serial))
        if unit is None:
            raise NotFound("unit", data.serial)
    existing = await session.scalar(
        select(ContractItem).where(ContractItem.item_no == data.item_no)
    )
    if existing is not None and existing.customer_id != customer.id:
        codes = await customer_codes_by_id(session, [existing.customer_id])
        stored = codes[existing.customer_id]
        assert_customer_code_unchanged(stored, data.customer_code, what=f"item {data.item_no}")
    return merge_contract_item(session, existing, data, customer=customer, unit=unit)


async def list_contract_items(session: AsyncSession, customer_code: str) -> list[ContractItem]:
    customer = await get_customer(session, customer_code)
    query = select(ContractItem).where(ContractItem.customer_id == customer.id)
    return list(await session.scalars(query.order_by(ContractItem.item_no)))


async def list_cancellations_due(
    session: AsyncSession, first: date, last: date
) -> list[ContractItem]:
    """Equipment items whose cancellation takes effect from `first` to `last` (inclusive):
    what the end-of-month account stop works from."""
    query = (
        select(ContractItem)
        .where(ContractItem.cancellation_date.between(first, last))
        .where(ContractItem.unit_id.is_not(None))
        .order_by(ContractItem.cancellation_date, ContractItem.item_no)
    )
    return list(await session.scalars(query))
