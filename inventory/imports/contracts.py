"""The operator's contract export: one row per contract item, customer columns repeated.

Columns and rules: docs/imports.md, "Contract export". A row registers (or updates) the
customer with its three addresses, the customer's ISP line (parent items), the unit (items
with a serial) and the contract item itself, keyed by `item_no`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from inventory import repo
from inventory.domain import ITEM_ROLES, AddressKind, ItemCode, ItemStatus, LineType, Role
from inventory.errors import RuleViolation
from inventory.imports.common import (
    Stored,
    assert_one_line_per_customer,
    check_units,
    load_stored,
    tally_change,
    write_lines,
    write_units,
)
from inventory.imports.engine import Importer, Parsed
from inventory.imports.report import Tally
from inventory.imports.table import Cells, Column, parse_date, parse_flag, parse_month
from inventory.models import ContractItem, Line
from inventory.records import AddressData, ContractItemData, CustomerData, LineData, UnitData
from inventory.rules import (
    assert_access_point_has_no_line,
    assert_cancellation_date_fits_status,
    assert_child_not_swapped_for_link_item,
    assert_customer_code_format,
    assert_customer_code_unchanged,
    assert_item_not_legacy_for_new_order,
    assert_only_child_has_parent,
    assert_serial_format,
    assert_serial_given_for_installed_unit,
    check_original_ssid,
    clean_item_code,
    clean_phone,
    clean_postal_code,
    clean_text,
    parse_original_ssid,
)
from inventory.secrets import SecretBox

COLUMNS = (
    Column("customer_code"),
    Column("customer_name"),
    Column("customer_kana"),
    Column("phone"),
    Column("branch", required=False),
    Column("install_postal_code"),
    Column("install_address"),
    Column("holder_name", required=False),
    Column("holder_postal_code", required=False),
    Column("holder_address", required=False),
    Column("billing_name", required=False),
    Column("billing_postal_code", required=False),
    Column("billing_address", required=False),
    Column("item_no"),
    Column("item_code"),
    Column("status"),
    Column("serial"),
    Column("parent_serial"),
    Column("line_type"),
    Column("link_item", required=False),
    Column("moved_by_customer", required=False),
    Column("billing_start_month", required=False),
    Column("cancellation_date", required=False),
    Column("order_note", required=False),
)
_CUSTOMER_COLUMNS = {
    "name": "customer_name",
    "kana": "customer_kana",
    "phone": "phone",
    "branch": "branch",
}
_ADDRESS_PREFIX = {
    AddressKind.INSTALLATION: "install",
    AddressKind.CONTRACT_HOLDER: "holder",
    AddressKind.BILLING: "billing",
}


@dataclass
class ContractsStored(Stored):
    items: dict[str, ContractItem] = field(default_factory=dict)
    item_customer: dict[str, str] = field(default_factory=dict)  # item_no -> customer code


@dataclass(frozen=True)
class ContractRow:
    customer: CustomerData
    item: ContractItemData
    role: Role | None  # the unit an equipment item stands for; None for Original SSID
    line: LineData | None  # parent items
    unit: UnitData | None  # equipment items naming a serial


class ContractsImporter(Importer[ContractRow, ContractsStored]):
    kind = "contracts"
    title = "contract export"
    columns = COLUMNS
    phases = 4

    def parse(self, cells: Cells) -> ContractRow | None:
        code = cells.check(lambda: _customer_code(cells["customer_code"]))
        name = cells.check(lambda: _text(cells, "customer_name", 200))
        kana = cells.check(lambda: _text(cells, "customer_kana", 200))
        cells.check(lambda: clean_phone(cells["phone"]))
        branch = cells.check(lambda: _text(cells, "branch", 100, required=False))
        addresses = _addresses(cells, name or "")
        item_no = cells.check(lambda: _item_no(cells["item_no"]))
        code_ = cells.check(lambda: clean_item_code(cells["item_code"]))
        status = cells.check(lambda: _status(cells["status"]))
        serial, parent_serial = cells["serial"], cells["parent_serial"]
        if serial:
            cells.check(lambda: assert_serial_format(serial))
        if parent_serial:
            cells.check(lambda: assert_serial_format(parent_serial, field="parent_serial"))
        role = ITEM_ROLES.get(code_) if code_ else None
        line = _line(cells, role, code_)
        link_item = None
        if cells.has("link_item"):
            link_item = cells.check(lambda: parse_flag(cells["link_item"], field="link_item"))
            if role is not None and link_item is not None:
                cells.check(lambda: assert_child_not_swapped_for_link_item(serial, role, link_item))
        if role is not None:
            cells.check(lambda: assert_only_child_has_parent(role, parent_serial))
            if role == Role.CHILD and not parent_serial:
                cells.problem(RuleViolation("parent_serial", "", "a child names its parent unit"))
        elif code_ == ItemCode.ORIGINAL_SSID and parent_serial:
            cells.problem(
                RuleViolation("parent_serial", parent_serial, "an Original SSID item has no parent")
            )
        month = cells.check(
            lambda: parse_month(cells["billing_start_month"], field="billing_start_month")
        )
        cancel = cells.check(
            lambda: parse_date(cells["cancellation_date"], field="cancellation_date")
        )
        if status is not None:
            cells.check(lambda: assert_cancellation_date_fits_status(status, cancel))
            if code_ is not None:
                cells.check(lambda: assert_item_not_legacy_for_new_order(code_, status))
                cells.check(lambda: assert_serial_given_for_installed_unit(code_, status, serial))
        note = cells["order_note"]
        original = _original_ssid(cells, note, code_)
        if cells.problems or code is None or item_no is None or code_ is None or status is None:
            return None
        customer = CustomerData(
            code, name or "", kana or "", cells["phone"], branch or "", addresses
        )
        item = ContractItemData(
            item_no=item_no,
            customer_code=code,
            item_code=code_.value,
            status=status.value,
            serial=serial,
            billing_start_month=month,
            cancellation_date=cancel,
            order_note=note,
            original_ssid=original,
        )
        unit = None
        if role is not None and serial:
            unit = UnitData(serial, code, role.value, parent_serial, link_item=link_item)
        return ContractRow(customer, item, role, line, unit)

    async def load(
        self, session: AsyncSession, rows: Sequence[Parsed[ContractRow]]
    ) -> ContractsStored:
        records = [r.record for r in rows if r.record is not None]
        serials = [rec.item.serial for rec in records]
        serials += [rec.unit.parent_serial for rec in records if rec.unit is not None]
        base = await load_stored(session, [r.customer.code for r in records], serials)
        items = await repo.items_by_no(session, [r.item.item_no for r in records])
        codes = await repo.customer_codes_by_id(session, [i.customer_id for i in items.values()])
        return ContractsStored(
            customers=base.customers,
            units=base.units,
            unit_customer=base.unit_customer,
            items=items,
            item_customer={no: codes[item.customer_id] for no, item in items.items()},
        )

    def check(
        self,
        rows: Sequence[Parsed[ContractRow]],
        rejected: Sequence[Parsed[ContractRow]],
        ctx: ContractsStored,
    ) -> None:
        first_item: dict[str, int] = {}
        first_customer: dict[str, Parsed[ContractRow]] = {}
        first_line: dict[str, Parsed[ContractRow]] = {}
        item_customer = ctx.item_customer
        for row in rows:
            rec = _record(row)
            no, code = rec.item.item_no, rec.customer.code
            if no in first_item:
                row.reject(
                    RuleViolation(
                        "item_no", no, f"also on line {first_item[no]}; item numbers are unique"
                    )
                )
                continue
            first_item[no] = row.line
            if no in item_customer:
                try:
                    assert_customer_code_unchanged(item_customer[no], code, what=f"item {no}")
                except RuleViolation as violation:
                    row.reject(violation)
                    continue
            ref = first_customer.setdefault(code, row)
            if ref is not row:
                _same_customer(row, ref)
            if rec.line is not None:
                assert_one_line_per_customer(
                    first_line, code, row, rec.line, lambda r: _record(r).line
                )
        check_units([r for r in rows if not r.problems], rejected, ctx, _unit_of)

    async def apply(
        self,
        session: AsyncSession,
        rows: Sequence[Parsed[ContractRow]],
        ctx: ContractsStored,
        tally: Tally,
        box: SecretBox | None,
        step: Callable[[], None],
    ) -> None:
        customers = dict(ctx.customers)
        done: set[str] = set()
        for row in rows:
            step()
            wanted = _record(row).customer
            if wanted.code in done:
                continue  # written from an earlier row of this customer
            done.add(wanted.code)
            merged = repo.merge_customer(session, customers.get(wanted.code), wanted)
            customers[wanted.code] = merged.obj
            tally_change(tally, "customers", row, merged.change)
        await write_lines(session, rows, customers, _code_of, _line_data, tally)
        units = await write_units(session, rows, ctx, customers, _unit_of, tally, box, step)
        items = ctx.items
        for row in rows:
            step()
            rec = _record(row)
            unit = units.get(rec.item.serial) if rec.item.serial else None
            up = repo.merge_contract_item(
                session,
                items.get(rec.item.item_no),
                rec.item,
                customer=customers[rec.customer.code],
                unit=unit,
            )
            tally_change(tally, "contract items", row, up.change)


def _record(row: Parsed[ContractRow]) -> ContractRow:
    assert row.record is not None
    return row.record


def _unit_of(record: Any) -> UnitData | None:
    return record.unit if isinstance(record, ContractRow) else None


def _line_data(record: ContractRow, _stored: Line | None) -> LineData | None:
    return record.line


def _code_of(record: ContractRow) -> str:
    return record.customer.code


def _customer_code(value: str) -> str:
    assert_customer_code_format(value)
    return value


def _text(cells: Cells, name: str, max_length: int, *, required: bool = True) -> str:
    return clean_text(cells[name], field=name, max_length=max_length, required=required)


def _item_no(value: str) -> str:
    if not value or len(value) > 32 or any(c.isspace() for c in value):
        raise RuleViolation("item_no", value, "an item number is 1 to 32 characters, no spaces")
    return value


def _status(value: str) -> ItemStatus:
    try:
        return ItemStatus(value.lower())
    except ValueError:
        words = ", ".join(s.value for s in ItemStatus)
        raise RuleViolation("status", value, f"a status is one of: {words}") from None


def _line(cells: Cells, role: Role | None, code: ItemCode | None) -> LineData | None:
    line_type = cells["line_type"]
    moved = None
    if cells.has("moved_by_customer"):
        moved = cells.check(
            lambda: parse_flag(cells["moved_by_customer"], field="moved_by_customer")
        )
    if role == Role.PARENT:
        if not line_type:
            cells.problem(RuleViolation("line_type", "", "a parent item names its ISP line type"))
            return None
        try:
            kind = LineType(line_type.lower())
        except ValueError:
            words = ", ".join(t.value for t in LineType)
            cells.problem(RuleViolation("line_type", line_type, f"a line type is one of: {words}"))
            return None
        return LineData(line_type=kind.value, moved_by_customer=moved)
    if role is not None:
        cells.check(lambda: assert_access_point_has_no_line(role, line_type))
        if moved:
            cells.check(
                lambda: assert_access_point_has_no_line(role, "yes", field="moved_by_customer")
            )
    elif code == ItemCode.ORIGINAL_SSID and (line_type or moved):
        cells.problem(
            RuleViolation("line_type", line_type, "an Original SSID item has no ISP line")
        )
    return None


def _addresses(cells: Cells, name: str) -> tuple[AddressData, ...]:
    postal = cells.check(
        lambda: clean_postal_code(cells["install_postal_code"], field="install_postal_code")
    )
    address = cells.check(lambda: _text(cells, "install_address", 300))
    out = [AddressData(AddressKind.INSTALLATION, address or "", postal or "", name)]
    for prefix, kind in (("holder", AddressKind.CONTRACT_HOLDER), ("billing", AddressKind.BILLING)):
        recipient = cells.check(partial(_text, cells, f"{prefix}_name", 200, required=False))
        own_postal, own_address = cells[f"{prefix}_postal_code"], cells[f"{prefix}_address"]
        if not own_postal and not own_address:  # same as the installation site
            out.append(AddressData(kind, address or "", postal or "", recipient or name))
            continue
        column = f"{prefix}_postal_code"
        p2 = cells.check(partial(clean_postal_code, cells[column], field=column))
        a2 = cells.check(partial(_text, cells, f"{prefix}_address", 300))
        out.append(AddressData(kind, a2 or "", p2 or "", recipient or name))
    return tuple(out)


def _original_ssid(cells: Cells, note: str, code: ItemCode | None) -> str | None:
    if len(note) > 2000:
        cells.problem(RuleViolation("order_note", note[:40] + "…", "at most 2000 characters"))
        return None
    ssid = parse_original_ssid(note)
    if ssid is None:
        if code == ItemCode.ORIGINAL_SSID:
            cells.problem(
                RuleViolation(
                    "order_note",
                    note,
                    "an Original SSID order (Z201000) carries the SSID in its note as SSID'…'",
                )
            )
        return None
    warnings = cells.check(lambda: check_original_ssid(ssid, field="order_note"))
    if warnings is None:
        return None
    cells.warnings.extend(warnings)
    return ssid


def _same_customer(row: Parsed[ContractRow], ref: Parsed[ContractRow]) -> None:
    mine, theirs = _record(row).customer, _record(ref).customer
    for f in fields(CustomerData):
        if getattr(mine, f.name) != getattr(theirs, f.name):
            column = _CUSTOMER_COLUMNS.get(f.name, f.name)
            if f.name == "addresses":
                kind = next(
                    a.kind for a, b in zip(mine.addresses, theirs.addresses, strict=True) if a != b
                )
                column = f"{_ADDRESS_PREFIX[kind]}_address"
            value = row.raw.get(column, "")
            row.reject(
                RuleViolation(
                    column,
                    value,
                    f"differs from line {ref.line} for customer {mine.code}: "
                    "a customer's details are the same on all its rows",
                )
            )
            return
