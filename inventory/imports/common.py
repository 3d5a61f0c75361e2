"""What the contract and fleet imports share: unit checks across rows and the store, and
writing customers, lines and units in dependency order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from inventory import repo
from inventory.domain import Role
from inventory.errors import RuleViolation
from inventory.imports.engine import Parsed
from inventory.imports.report import Outcome, Tally
from inventory.models import Customer, Line, Unit
from inventory.records import LineData, UnitData
from inventory.repo import Change
from inventory.rules import (
    UnitFacts,
    assert_child_has_parent_of_same_customer,
    assert_customer_code_unchanged,
    assert_role_unchanged,
)
from inventory.secrets import SecretBox


@dataclass
class Stored:
    """The stored rows an import file refers to, loaded in batches before the checks."""

    customers: dict[str, Customer] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    unit_customer: dict[str, str] = field(default_factory=dict)  # serial -> customer code

    def unit_facts(self, serial: str) -> UnitFacts | None:
        unit = self.units.get(serial)
        if unit is None:
            return None
        return UnitFacts(serial, unit.role, self.unit_customer[serial])


async def load_stored(
    session: AsyncSession, codes: Sequence[str], serials: Sequence[str]
) -> Stored:
    units = await repo.units_by_serial(session, [s for s in serials if s])
    ids = await repo.customer_codes_by_id(session, [u.customer_id for u in units.values()])
    return Stored(
        customers=await repo.customers_by_code(session, codes),
        units=units,
        unit_customer={serial: ids[unit.customer_id] for serial, unit in units.items()},
    )


def check_units(
    rows: Sequence[Parsed[Any]],
    rejected: Sequence[Parsed[Any]],
    stored: Stored,
    unit_of: Callable[[Any], UnitData | None],
    *,
    serial_column: str = "serial",
) -> None:
    """A serial means one unit: the same customer, role and parent on every row that names
    it, and the customer and role it is registered with; a child's parent is a parent of the
    same customer, in the file or the store."""
    in_file: dict[str, tuple[Parsed[Any], UnitData]] = {}
    for row in rows:
        data = unit_of(row.record)
        if data is None:
            continue
        first = in_file.get(data.serial)
        if first is not None:
            was = first[1]
            if (was.customer_code, was.role, was.parent_serial) != (
                data.customer_code,
                data.role,
                data.parent_serial,
            ):
                row.reject(
                    RuleViolation(
                        "serial",
                        data.serial,
                        f"also on line {first[0].line} as a {was.role} of customer "
                        f"{was.customer_code}; a serial is one unit",
                    )
                )
                continue
        registered = stored.unit_facts(data.serial)
        try:
            if registered is not None:
                what = f"unit {data.serial}"
                assert_customer_code_unchanged(
                    registered.customer_code, data.customer_code, what=what
                )
                assert_role_unchanged(data.serial, registered.role, data.role)
        except RuleViolation as violation:
            row.reject(violation)
            continue
        in_file.setdefault(data.serial, (row, data))
    broken = {r.raw.get(serial_column, ""): r.line for r in (*rejected, *rows) if r.problems}
    for row in rows:
        data = unit_of(row.record)
        if data is None or data.role != Role.CHILD or row.problems:
            continue
        parent = data.parent_serial
        if parent in in_file:
            p = in_file[parent][1]
            facts: UnitFacts | None = UnitFacts(parent, p.role, p.customer_code)
        else:
            facts = stored.unit_facts(parent)
        if facts is None and parent in broken:
            row.reject(
                RuleViolation(
                    "parent_serial", parent, f"the parent's row (line {broken[parent]}) is rejected"
                )
            )
            continue
        try:
            assert_child_has_parent_of_same_customer(data.customer_code, parent, facts)
        except RuleViolation as violation:
            row.reject(violation)


class _NamedLine(Protocol):
    @property
    def line_type(self) -> str | None: ...


L = TypeVar("L", bound=_NamedLine)


def assert_one_line_per_customer(
    first_line: dict[str, Parsed[Any]],
    code: str,
    row: Parsed[Any],
    line: L,
    line_of: Callable[[Parsed[Any]], L | None],
) -> None:
    """A customer has one ISP line: a later row that names another one is refused."""
    ref = first_line.setdefault(code, row)
    if ref is not row and line_of(ref) != line:
        row.reject(
            RuleViolation(
                "line_type",
                line.line_type,
                f"differs from line {ref.line}: a customer has one ISP line",
            )
        )


def first_per_key(
    rows: Sequence[Parsed[Any]], key: Callable[[Any], str | None]
) -> list[Parsed[Any]]:
    seen: set[str] = set()
    out = []
    for row in rows:
        k = key(row.record)
        if k is not None and k not in seen:
            seen.add(k)
            out.append(row)
    return out


def tally_change(tally: Tally, kind: str, row: Parsed[Any], change: Change) -> None:
    tally.add(kind, Outcome(change.value))
    row.mark(change)


async def write_lines(
    session: AsyncSession,
    rows: Sequence[Parsed[Any]],
    customers: dict[str, Customer],
    code_of: Callable[[Any], str],
    line_of: Callable[[Any, Line | None], LineData | None],
    tally: Tally,
) -> None:
    """One line per customer, from the first row that carries line facts for it;
    `line_of(record, stored line)` says what to store (None: the row has no line facts)."""
    await session.flush()
    lines = await repo.lines_by_customer(session, [c.id for c in customers.values()])
    done: set[str] = set()
    for row in rows:
        code = code_of(row.record)
        if code in done:
            continue
        customer = customers[code]
        data = line_of(row.record, lines.get(customer.id))
        if data is None:
            continue
        done.add(code)
        up = repo.merge_line(session, customer, lines.get(customer.id), data)
        tally_change(tally, "lines", row, up.change)


async def write_units(
    session: AsyncSession,
    rows: Sequence[Parsed[Any]],
    stored: Stored,
    customers: dict[str, Customer],
    unit_of: Callable[[Any], UnitData | None],
    tally: Tally,
    box: SecretBox | None,
    step: Callable[[], None],
) -> dict[str, Unit]:
    """Parents and access points first, then children (whose parents then have ids)."""
    units = dict(stored.units)
    for children in (False, True):
        await session.flush()
        done: set[str] = set()
        for row in rows:
            step()
            data = unit_of(row.record)
            if data is None or (data.role == Role.CHILD) != children or data.serial in done:
                continue
            done.add(data.serial)
            parent = units.get(data.parent_serial) if data.parent_serial else None
            up = repo.merge_unit(
                session,
                units.get(data.serial),
                data,
                customer=customers[data.customer_code],
                parent=parent,
                box=box,
            )
            units[data.serial] = up.obj
            tally_change(tally, "units", row, up.change)
    await session.flush()
    return units
