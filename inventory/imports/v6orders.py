"""The partner ISP's 4over6 order list: one row per customer's line.

Columns and rules: docs/imports.md, "4over6 order list". A row sets the order state and date
of the customer's ISP line and, when given, the line's tunnel parameters. The customer and
its line must be registered already (by the contract export). A customer on several rows
(an order sent back as NG, then filed again) takes the row with the latest order date; the
others are reported as superseded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from inventory import repo
from inventory.domain import ALL_TUNNEL_PARAMS, OrderState
from inventory.errors import RuleViolation
from inventory.imports.common import tally_change
from inventory.imports.engine import Importer, Parsed
from inventory.imports.report import Notice, Tally
from inventory.imports.table import Cells, Column, parse_date
from inventory.models import Customer, Line
from inventory.records import KEEP, LineData
from inventory.rules import Tunnel, assert_customer_code_format, clean_tunnel
from inventory.secrets import SecretBox

PARAM_COLUMNS = {name: name.replace("-", "_") for name in ALL_TUNNEL_PARAMS}
COLUMNS = (
    Column("customer_code"),
    Column("order_state"),
    Column("order_date", required=False),
    Column("tunnel_type", required=False),
    *(Column(column, required=False) for column in PARAM_COLUMNS.values()),
)


@dataclass(frozen=True)
class OrderRow:
    customer_code: str
    state: OrderState
    order_date: date | None
    tunnel: Tunnel | None


@dataclass
class Orders:
    customers: dict[str, Customer] = field(default_factory=dict)
    lines: dict[int, Line] = field(default_factory=dict)  # customer id -> line


class V6OrdersImporter(Importer[OrderRow, Orders]):
    kind = "v6-orders"
    title = "4over6 order list"
    columns = COLUMNS

    def parse(self, cells: Cells) -> OrderRow | None:
        code = cells["customer_code"]
        cells.check(lambda: assert_customer_code_format(code))
        state = cells.check(lambda: _state(cells["order_state"]))
        when = cells.check(lambda: parse_date(cells["order_date"], field="order_date"))
        tunnel = _tunnel(cells)
        if cells.problems or state is None:
            return None
        return OrderRow(code, state, when, tunnel)

    async def load(self, session: AsyncSession, rows: Sequence[Parsed[OrderRow]]) -> Orders:
        codes = [r.record.customer_code for r in rows if r.record is not None]
        customers = await repo.customers_by_code(session, codes)
        lines = await repo.lines_by_customer(session, [c.id for c in customers.values()])
        return Orders(customers, lines)

    def check(
        self,
        rows: Sequence[Parsed[OrderRow]],
        rejected: Sequence[Parsed[OrderRow]],
        ctx: Orders,
    ) -> None:
        for row in rows:
            rec = _record(row)
            customer = ctx.customers.get(rec.customer_code)
            if customer is None:
                row.reject(
                    RuleViolation(
                        "customer_code",
                        rec.customer_code,
                        "no such customer in the inventory; import the contract export first",
                    )
                )
                continue
            line = ctx.lines.get(customer.id)
            if line is None:
                row.reject(
                    RuleViolation(
                        "customer_code",
                        rec.customer_code,
                        "the customer has no ISP line (no parent item): a 4over6 order is "
                        "for a parent's line",
                    )
                )
                continue
            if rec.state == OrderState.COMPLETE and rec.tunnel is None and line.tunnel is None:
                row.notices.append(
                    Notice(
                        row.line,
                        f"customer {rec.customer_code}: the order is complete but no tunnel "
                        "parameters are known; the V6 switch cannot be prepared until they are",
                    )
                )

    async def apply(
        self,
        session: AsyncSession,
        rows: Sequence[Parsed[OrderRow]],
        ctx: Orders,
        tally: Tally,
        box: SecretBox | None,
        step: Callable[[], None],
    ) -> None:
        latest: dict[str, Parsed[OrderRow]] = {}
        for row in rows:
            code = _record(row).customer_code
            before = latest.get(code)
            if before is None or _newer(row, before):
                if before is not None:
                    _superseded(before, row)
                latest[code] = row
            else:
                _superseded(row, before)
        for row in rows:
            step()
            rec = _record(row)
            if latest[rec.customer_code] is not row:
                continue
            customer = ctx.customers[rec.customer_code]
            data = LineData(
                v6_order_state=rec.state.value,
                v6_order_date=rec.order_date if rec.order_date is not None else KEEP,
                tunnel=rec.tunnel if rec.tunnel is not None else KEEP,
            )
            up = repo.merge_line(session, customer, ctx.lines.get(customer.id), data)
            tally_change(tally, "lines", row, up.change)


def _record(row: Parsed[OrderRow]) -> OrderRow:
    assert row.record is not None
    return row.record


def _newer(row: Parsed[OrderRow], than: Parsed[OrderRow]) -> bool:
    mine, theirs = _record(row).order_date, _record(than).order_date
    return (mine or date.min, row.line) > (theirs or date.min, than.line)


def _superseded(row: Parsed[OrderRow], by: Parsed[OrderRow]) -> None:
    row.notices.append(
        Notice(
            row.line,
            f"customer {_record(row).customer_code}: superseded by line {by.line} "
            "(the latest order date wins; on the same date, the later line)",
        )
    )


def _state(value: str) -> OrderState:
    try:
        return OrderState(value.lower())
    except ValueError:
        words = ", ".join(s.value for s in OrderState)
        raise RuleViolation("order_state", value, f"an order state is one of: {words}") from None


def _tunnel(cells: Cells) -> Tunnel | None:
    params = {name: cells[column] for name, column in PARAM_COLUMNS.items()}
    kind = cells["tunnel_type"]
    if not kind:
        given = [PARAM_COLUMNS[n] for n, v in params.items() if v]
        if given:
            cells.problem(
                RuleViolation(
                    "tunnel_type", "", f"tunnel parameters ({', '.join(given)}) need a tunnel type"
                )
            )
        return None
    return cells.check(
        lambda: clean_tunnel(
            kind.lower(),
            params,
            field_of=lambda name: "tunnel_type" if name == "type" else PARAM_COLUMNS[name],
        )
    )
