"""The fleet file `fleet-sim serve --inventory-out` writes (docs/unit-contract.md 9.4).

One row per unit: how to reach it (management address, SSH and SNMP ports, user name and
password) and, for a parent, its line (type, V6-ready, moved by the customer, tunnel). A
customer not registered yet is registered by its code alone (the contract export fills in
the rest). The passwords are stored encrypted; the file itself should stay 0600.

`v6_ready: yes` means the partner ISP's 4over6 order is complete; `no` turns a stored
`complete` back to `none` but leaves `requested` and `ng` as the order list set them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from inventory import repo
from inventory.domain import LineType, OrderState, Role
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
from inventory.imports.table import Cells, Column, parse_flag
from inventory.models import Line
from inventory.records import LineData, UnitData
from inventory.rules import (
    Tunnel,
    assert_access_point_has_no_line,
    assert_child_not_swapped_for_link_item,
    assert_customer_code_format,
    assert_only_child_has_parent,
    assert_serial_format,
    assert_unit_password,
    clean_management_address,
    clean_port,
    clean_tunnel,
    clean_username,
)
from inventory.secrets import SecretBox

# The columns of simulators.fleet.CSV_COLUMNS, in its order (a test holds the two together).
COLUMNS = (
    Column("customer_code"),
    Column("serial"),
    Column("role"),
    Column("parent_serial"),
    Column("address"),
    Column("ssh_port"),
    Column("snmp_port"),
    Column("username"),
    Column("password", secret=True),
    Column("line_type"),
    Column("v6_ready"),
    Column("moved_by_customer"),
    Column("tunnel"),
    Column("link_item"),
)
_LINE_COLUMNS = ("line_type", "v6_ready", "moved_by_customer", "tunnel")


@dataclass(frozen=True)
class FleetLine:
    line_type: str
    v6_ready: bool
    moved_by_customer: bool
    tunnel: Tunnel | None


@dataclass(frozen=True)
class FleetRow:
    unit: UnitData
    line: FleetLine | None  # parents


class FleetImporter(Importer[FleetRow, Stored]):
    kind = "fleet"
    title = "fleet file"
    columns = COLUMNS
    needs_secrets = True
    phases = 3

    def parse(self, cells: Cells) -> FleetRow | None:
        code, serial, parent = cells["customer_code"], cells["serial"], cells["parent_serial"]
        cells.check(lambda: assert_customer_code_format(code))
        cells.check(lambda: assert_serial_format(serial))
        role = cells.check(lambda: _role(cells["role"]))
        if parent:
            cells.check(lambda: assert_serial_format(parent, field="parent_serial"))
        address = cells.check(lambda: clean_management_address(cells["address"]))
        ssh_port = cells.check(lambda: clean_port(cells["ssh_port"], field="ssh_port"))
        snmp_port = cells.check(lambda: clean_port(cells["snmp_port"], field="snmp_port"))
        username = cells.check(lambda: clean_username(cells["username"]))
        password = cells["password"]
        cells.check(lambda: assert_unit_password(password))
        link_item = cells.check(lambda: parse_flag(cells["link_item"], field="link_item"))
        line = None
        if role is not None:
            cells.check(lambda: assert_only_child_has_parent(role, parent))
            if role == Role.CHILD and not parent:
                cells.problem(RuleViolation("parent_serial", "", "a child names its parent unit"))
            if link_item is not None:
                cells.check(lambda: assert_child_not_swapped_for_link_item(serial, role, link_item))
            if role == Role.PARENT:
                line = _line(cells)
            else:
                for column in _LINE_COLUMNS:
                    check = partial(assert_access_point_has_no_line, role, cells[column])
                    cells.check(partial(check, field=column))
        if cells.problems or role is None:
            return None
        unit = UnitData(
            serial=serial,
            customer_code=code,
            role=role.value,
            parent_serial=parent,
            link_item=link_item,
            mgmt_address=address,
            ssh_port=ssh_port,
            snmp_port=snmp_port,
            username=username,
            password=password,
        )
        return FleetRow(unit, line)

    async def load(self, session: AsyncSession, rows: Sequence[Parsed[FleetRow]]) -> Stored:
        units = [r.record.unit for r in rows if r.record is not None]
        serials = [u.serial for u in units] + [u.parent_serial for u in units if u.parent_serial]
        return await load_stored(session, [u.customer_code for u in units], serials)

    def check(
        self,
        rows: Sequence[Parsed[FleetRow]],
        rejected: Sequence[Parsed[FleetRow]],
        ctx: Stored,
    ) -> None:
        first_serial: dict[str, int] = {}
        first_address: dict[tuple[str | None, int | None], Parsed[FleetRow]] = {}
        first_line: dict[str, Parsed[FleetRow]] = {}
        for row in rows:
            unit, line = _record(row).unit, _record(row).line
            if unit.serial in first_serial:
                seen = first_serial[unit.serial]
                row.reject(RuleViolation("serial", unit.serial, f"also on line {seen}"))
                continue
            first_serial[unit.serial] = row.line
            where = (unit.mgmt_address, unit.ssh_port)
            other = first_address.setdefault(where, row)
            if other is not row:
                row.reject(
                    RuleViolation(
                        "address",
                        unit.mgmt_address,
                        f"also the address of {_record(other).unit.serial} on line {other.line}"
                        f" (SSH port {unit.ssh_port}); each unit has its own",
                    )
                )
                continue
            if line is not None:
                assert_one_line_per_customer(
                    first_line, unit.customer_code, row, line, lambda r: _record(r).line
                )
        check_units([r for r in rows if not r.problems], rejected, ctx, _unit_of)

    async def apply(
        self,
        session: AsyncSession,
        rows: Sequence[Parsed[FleetRow]],
        ctx: Stored,
        tally: Tally,
        box: SecretBox | None,
        step: Callable[[], None],
    ) -> None:
        customers = dict(ctx.customers)
        done: set[str] = set()
        for row in rows:
            step()
            code = _record(row).unit.customer_code
            if code not in done:
                done.add(code)
                up = repo.ensure_customer(session, customers.get(code), code)
                customers[code] = up.obj
                tally_change(tally, "customers", row, up.change)
        await write_lines(session, rows, customers, _code_of, _line_data, tally)
        await write_units(session, rows, ctx, customers, _unit_of, tally, box, step)


def _record(row: Parsed[FleetRow]) -> FleetRow:
    assert row.record is not None
    return row.record


def _code_of(record: FleetRow) -> str:
    return record.unit.customer_code


def _unit_of(record: object) -> UnitData | None:
    return record.unit if isinstance(record, FleetRow) else None


def _line_data(record: FleetRow, stored: Line | None) -> LineData | None:
    line = record.line
    if line is None:
        return None
    state: str | None = None
    if line.v6_ready:
        state = OrderState.COMPLETE.value
    elif stored is None or stored.v6_order_state == OrderState.COMPLETE:
        state = OrderState.NONE.value
    return LineData(
        line_type=line.line_type,
        moved_by_customer=line.moved_by_customer,
        v6_order_state=state,
        tunnel=line.tunnel,
    )


def _role(value: str) -> Role:
    try:
        return Role(value.lower())
    except ValueError:
        raise RuleViolation("role", value, "a role is parent, child or ap") from None


def _line(cells: Cells) -> FleetLine | None:
    line_type = cells["line_type"]
    try:
        kind = LineType(line_type.lower())
    except ValueError:
        words = ", ".join(t.value for t in LineType)
        cells.problem(
            RuleViolation("line_type", line_type, f"a parent's line type is one of: {words}")
        )
        return None
    v6_ready = cells.check(lambda: parse_flag(cells["v6_ready"], field="v6_ready"))
    moved = cells.check(lambda: parse_flag(cells["moved_by_customer"], field="moved_by_customer"))
    tunnel = None
    if cells["tunnel"]:
        tunnel = cells.check(lambda: _tunnel(cells["tunnel"]))
    if v6_ready is None or moved is None:
        return None
    return FleetLine(kind.value, v6_ready, moved, tunnel)


def _tunnel(text: str) -> Tunnel:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise RuleViolation("tunnel", text, "not a JSON object") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise RuleViolation("tunnel", text, 'a JSON object of strings, e.g. {"type": "ds-lite", …}')
    params = {str(k): v for k, v in value.items()}
    kind = params.pop("type", "")
    return clean_tunnel(kind, params, field_of=lambda name: f"tunnel.{name}")
