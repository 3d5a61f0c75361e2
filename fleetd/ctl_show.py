"""How fleetctl shows the API's answers to a person: plain words first, times in JST.

Each `show_…` takes the API's JSON as it came and prints it on a rich console; `--json`
bypasses all of this and prints the JSON itself.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, NoReturn, ParamSpec

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleetd.clock import JST
from fleetd.ctl_client import CtlError

P = ParamSpec("P")
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the API's JSON answer as it came, for scripts.")
]

WAN_MODES = {"pppoe": "V4 (PPPoE)", "ipoe": "V6 (IPoE, 4over6)"}
ROLES = {"parent": "parent", "child": "child", "ap": "access point"}
ADDRESS_KINDS = {
    "installation": "installation site",
    "contract_holder": "contract holder",
    "billing": "billing",
}


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then the exit status."""
    typer.echo(f"fleetctl: {message}", err=True)
    raise typer.Exit(code)


def handled(command: Callable[P, None]) -> Callable[P, None]:
    """`command`, with a CtlError turned into its one line and exit status."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            command(*args, **kwargs)
        except CtlError as exc:
            fail(str(exc), exc.code)

    return run


def print_json(data: Any, *, compact: bool = False) -> None:
    """The API's JSON as it came: one indented document, or one line (a stream's events)."""
    if compact:
        typer.echo(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
    else:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def print_answer(answer: Any, as_json: bool, render: Callable[[Console, Any], None]) -> None:
    """An API answer: as JSON for scripts (`--json`), else rendered for a person."""
    if as_json:
        print_json(answer)
    else:
        render(console(), answer)


def console() -> Console:
    """The console for what a command prints; wide when it goes to a file or a pipe, so
    columns are not cut."""
    terminal = sys.stdout.isatty()
    return Console(highlight=False, soft_wrap=not terminal, width=None if terminal else 250)


def print_table(out: Console, table: Table) -> None:
    """A table; into a file or a pipe without the padding at the ends of its lines."""
    if out.is_terminal:
        out.print(table)
        return
    with out.capture() as captured:
        out.print(table)
    for line in captured.get().splitlines():
        typer.echo(line.rstrip())


def jst(value: str | None) -> str:
    if not value:
        return "-"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is None:
        return value
    return when.astimezone(JST).strftime("%Y-%m-%d %H:%M JST")


def age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 2:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        # words (a reason, a detail) wrap in their column; the facts before them stay whole
        wide = column in ("reason", "detail", "name")
        table.add_column(column, overflow="fold", max_width=70 if wide else None)
    return table


def _cell(value: Any) -> Text:
    return Text("-" if value is None or value == "" else str(value))


def _rows(table: Table, rows: Iterable[Sequence[Any]]) -> Table:
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    return table


# --- customers ------------------------------------------------------------------------------


def show_customers(out: Console, found: Sequence[Mapping[str, Any]]) -> None:
    if not found:
        out.print("no customer found")
        return
    columns = ("code", "name", "kana", "phone", "branch")
    print_table(out, _rows(_table(*columns), ([c[k] for k in columns] for c in found)))


def show_customer(
    out: Console,
    detail: Mapping[str, Any],
    units: Sequence[Mapping[str, Any]],
    line: Mapping[str, Any] | None,
) -> None:
    out.print(Text(f"{detail['code']}  {detail['name']} ({detail['kana']})", style="bold"))
    out.print(Text(f"phone {detail['phone']}, branch {detail['branch'] or '-'}"))
    for a in detail.get("addresses", []):
        kind = ADDRESS_KINDS.get(a["kind"], a["kind"])
        to = f" ({a['recipient']})" if a.get("recipient") else ""
        out.print(Text(f"{kind}: 〒{a['postal_code']} {a['address']}{to}"))
    if line is None:
        out.print("ISP line: none (access points only)")
    else:
        order = line["v6_order_state"]
        if line.get("v6_order_date"):
            order += f" ({line['v6_order_date']})"
        moved = ", moved by the customer: V6 impossible" if line["moved_by_customer"] else ""
        out.print(Text(f"ISP line: {line['line_type']}, 4over6 order {order}{moved}"))
    if units:
        table = _table("serial", "role", "parent", "WAN (intended)", "account", "address")
        for u in units:
            where = f"{u['mgmt_address']}:{u['ssh_port']}" if u.get("mgmt_address") else None
            role = ROLES.get(u["role"], u["role"]) + (" (link item)" if u["link_item"] else "")
            wan = WAN_MODES.get(u.get("intended_wan_mode") or "", u.get("intended_wan_mode"))
            table.add_row(
                *map(
                    _cell,
                    (
                        u["serial"],
                        role,
                        u["parent_serial"],
                        wan,
                        u["intended_account_state"],
                        where,
                    ),
                )
            )
        print_table(out, table)


# --- V6 status ------------------------------------------------------------------------------


def show_v6(out: Console, status: Mapping[str, Any]) -> None:
    out.print(Text(f"{status['customer_code']}: {status['verdict']}", style="bold"))
    order = status.get("order_state") or "unknown"
    if status.get("order_date"):
        order += f" ({status['order_date']})"
    out.print(Text(f"4over6 order: {order}"))
    if status.get("moved_by_customer"):
        out.print("moved by the customer: V6 is impossible on this unit (the line is bound)")
    several = len(status.get("parents", [])) > 1
    for p in status.get("parents", []):
        if p.get("observed_at") is None and p.get("reachable") is None:
            text = f"{p['serial']}: never read (--live reads it now)"
        else:
            wan = WAN_MODES.get(p.get("wan_mode") or "", p.get("wan_mode") or "WAN unknown")
            tunnel = p.get("tunnel_state") or "-"
            if p.get("tunnel_reason"):
                tunnel += f" ({p['tunnel_reason']})"
            reach = "reachable" if p.get("reachable") else "unreachable"
            text = (
                f"{p['serial']}: {wan}, tunnel {tunnel}, U lamp {p.get('u_lamp') or '-'}, "
                f"{reach}, read {age(p.get('reading_age_seconds'))}"
            )
        if p.get("cutover_done_at"):
            text += f", cutover done {jst(p['cutover_done_at'])}"
        out.print(Text(text))
        if p.get("last_error"):
            out.print(Text(f"  last error {jst(p.get('last_error_at'))}: {p['last_error']}"))
        if several:
            out.print(Text(f"  {p['verdict']}"))
    for title, key in (("pending", "pending_operations"), ("failed", "failed_operations")):
        for o in status.get(key, []):
            text = (
                f"{title}: operation {o['id']} {o['kind']} {o.get('unit_serial') or ''} "
                f"{o['state']}, not before {jst(o['not_before'])}"
            )
            if o.get("reason"):
                text += f": {o['reason']}"
            out.print(Text(" ".join(text.split())))
    for serial, why in (status.get("live") or {}).items():
        out.print(Text(f"live read of {serial}: " + ("read now" if why is None else why)))


# --- operations -----------------------------------------------------------------------------


def op_target(op: Mapping[str, Any]) -> str:
    return str(op.get("unit_serial") or op.get("customer_code") or "-")


def show_accepted(out: Console, answer: Mapping[str, Any]) -> None:
    ops = answer.get("operations", [])
    if not ops:
        out.print("nothing to do: no operation was queued")
        return
    for op in ops:
        text = f"queued operation {op['id']}: {op['kind']} of {op_target(op)}, {op['state']}"
        text += f", not before {jst(op['not_before'])}"
        if op.get("deadline"):
            text += f", deadline {jst(op['deadline'])}"
        out.print(Text(text))
    ids = " ".join(str(op["id"]) for op in ops)
    out.print(Text(f"follow with: fleetctl ops watch {ids}", style="dim"))


def show_ops(out: Console, ops: Sequence[Mapping[str, Any]]) -> None:
    if not ops:
        out.print("no operation")
        return
    table = _table("id", "kind", "target", "state", "tries", "not before", "by", "reason")
    rows = (
        (
            o["id"],
            o["kind"],
            op_target(o),
            o["state"],
            o["attempts"],
            jst(o["not_before"]),
            o["requested_by"],
            o.get("reason"),
        )
        for o in ops
    )
    print_table(out, _rows(table, rows))


def op_headline(op: Mapping[str, Any]) -> str:
    text = (
        f"operation {op['id']}: {op['kind']} of {op_target(op)}: {op['state']} "
        f"after {op['attempts']} attempt(s)"
    )
    if op.get("reason"):
        text += f": {op['reason']}"
    return text


def step_line(step: Mapping[str, Any]) -> Text:
    mark = Text("ok", style="green") if step["ok"] else Text("NG", style="bold red")
    return Text.assemble(f"  {jst(step['at'])} ", mark, f" {step['step']}: {step['detail']}")


def show_op(out: Console, op: Mapping[str, Any]) -> None:
    out.print(Text(op_headline(op), style="bold"))
    facts = [
        f"requested by {op['requested_by']} {jst(op['created_at'])}",
        f"not before {jst(op['not_before'])}",
    ]
    if op.get("deadline"):
        facts.append(f"deadline {jst(op['deadline'])}")
    if op.get("batch_id"):
        facts.append(f"batch {op['batch_id']}")
    out.print(Text("  " + ", ".join(facts)))
    if op.get("params"):
        params = ", ".join(f"{k}={v}" for k, v in sorted(op["params"].items()))
        out.print(Text(f"  parameters: {params}"))
    for step in op.get("steps", []):
        out.print(step_line(step))


# --- batches --------------------------------------------------------------------------------


def batch_line(batch: Mapping[str, Any]) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(batch.get("counts", {}).items()))
    text = (
        f"batch {batch['id']} ({batch['kind']}): {batch['state']}, "
        f"{batch['ended']} of {batch['total']} ended"
    )
    if counts:
        text += f": {counts}"
    if batch.get("ended"):
        text += f"; failure rate {batch['failure_rate']:.0%}"
    if batch.get("reason"):
        text += f"; {batch['reason']}"
    return text


def show_batch(out: Console, batch: Mapping[str, Any]) -> None:
    out.print(Text(batch_line(batch)))
    for refused in batch.get("refused", []):
        out.print(Text(f"  refused {refused['target']}: {refused['reason']}"))


# --- imports, month-end, audit --------------------------------------------------------------


def show_import(out: Console, report: Mapping[str, Any]) -> None:
    out.print(Text(report["summary"]))
    for problem in report.get("problems", []):
        value = "" if problem.get("value") is None else f" {problem['value']!r}"
        out.print(Text(f"  line {problem['line']}: {problem['field']}{value}: {problem['rule']}"))
    for warning in report.get("warnings", []):
        out.print(Text(f"  note: {warning}"))
    if report.get("ignored_columns"):
        out.print(Text(f"  ignored columns: {', '.join(report['ignored_columns'])}"))


def show_month_end(out: Console, preview: Mapping[str, Any]) -> None:
    stops = preview.get("stops", [])
    out.print(
        Text(f"{preview['month']}: {len(stops)} accounts to stop at {jst(preview['stop_at'])}")
    )
    if not stops:
        return
    table = _table("customer", "item", "serial", "role", "cancelled", "operation", "name")
    rows = (
        (
            s["customer_code"],
            s["item_no"],
            s["serial"],
            s["role"],
            s["cancellation_date"],
            f"{s['operation_id']} {s['operation_state']}" if s.get("operation_id") else "not yet",
            s["customer_name"],
        )
        for s in stops
    )
    print_table(out, _rows(table, rows))


def show_month_end_run(out: Console, run: Mapping[str, Any]) -> None:
    out.print(Text(run["summary"]))
    if run.get("operations"):
        ids = " ".join(str(i) for i in run["operations"])
        out.print(Text(f"operations: {ids}"))


def show_audit(out: Console, entries: Sequence[Mapping[str, Any]]) -> None:
    if not entries:
        out.print("no audit entry")
        return
    table = _table("id", "at", "actor", "action", "target", "request", "detail")
    rows = (
        (
            e["id"],
            jst(e["at"]),
            e["actor"],
            e["action"],
            e["target"],
            e["request_id"],
            e["detail"] or _compact(e.get("after")),
        )
        for e in entries
    )
    print_table(out, _rows(table, rows))


def _compact(values: Mapping[str, Any] | None) -> str | None:
    if not values:
        return None
    return ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in values.items())
