"""`fleetctl ops`, `batch`, `import`, `month-end` and `audit`: following the work, and the
admin's commands. `watch_operations` and `watch_batch` are also what `--watch` runs after a
change request."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
)
from rich.text import Text

from fleetd.ctl_client import EXIT_REFUSED, EXIT_USAGE, ApiClient, ApiError, CtlError
from fleetd.ctl_show import (
    JsonOpt,
    batch_line,
    console,
    fail,
    handled,
    op_headline,
    print_answer,
    print_json,
    show_audit,
    show_batch,
    show_import,
    show_month_end,
    show_month_end_run,
    show_op,
    show_ops,
    step_line,
)

OP_STATES = ("queued", "running", "retry_wait", "succeeded", "failed", "escalated", "cancelled")
BAD_OP_STATES = ("failed", "escalated", "cancelled")
ENDED_OP_STATES = ("succeeded", *BAD_OP_STATES)
KINDS = (
    "cutover",
    "revert_v4",
    "business_wifi",
    "guest_rotate",
    "original_ssid",
    "account_stop",
    "account_resume",
)
UPLOAD_CHUNK = 64 * 1024
IMPORT_READ_SECONDS = 600.0  # a large fleet file is checked row by row before the answer


# --- following ------------------------------------------------------------------------------


def watch_operations(api: ApiClient, ids: Sequence[int], out: Console, as_json: bool) -> int:
    """Follow each operation until it ends; the exit status: 0 when all succeeded."""
    bad: list[str] = []
    for op_id in ids:
        final = _watch_operation(api, op_id, out, as_json)
        if final["state"] != "succeeded":
            bad.append(f"operation {op_id} {final['state']}")
    if bad:
        typer.echo(f"fleetctl: {', '.join(bad)}: see `fleetctl ops show ID`", err=True)
        return EXIT_REFUSED
    return 0


def _watch_operation(api: ApiClient, op_id: int, out: Console, as_json: bool) -> Mapping[str, Any]:
    shown_steps = 0
    last_state: str | None = None
    final: Mapping[str, Any] = {}
    with _interruptible(f"operation {op_id}", f"fleetctl ops show {op_id}"):
        for event, op in api.follow(f"/operations/{op_id}/events"):
            final = op
            if event == "end":
                break
            if as_json:
                print_json(op, compact=True)
                continue
            for step in op.get("steps", [])[shown_steps:]:
                out.print(step_line(step))
            # the end has a line of its own, with the outcome's reason
            if op["state"] != last_state and op["state"] not in ENDED_OP_STATES:
                out.print(Text(f"operation {op_id} ({op['kind']} of {_target(op)}): {op['state']}"))
                last_state = op["state"]
            shown_steps = len(op.get("steps", []))
    if not as_json:
        style = "bold green" if final.get("state") == "succeeded" else "bold red"
        out.print(Text(op_headline(final), style=style))
    return final


def _target(op: Mapping[str, Any]) -> str:
    return str(op.get("unit_serial") or op.get("customer_code") or "-")


def watch_batch(api: ApiClient, batch_id: str, out: Console, as_json: bool, shown: str = "") -> int:
    """Follow a batch until it ends, with a progress bar on a terminal; the exit status:
    0 when it is done with every operation succeeded. `shown`: its line already printed."""
    final: Mapping[str, Any] = {}
    last = shown
    with contextlib.ExitStack() as stack:
        stack.enter_context(_interruptible(f"batch {batch_id}", f"fleetctl batch show {batch_id}"))
        bar: Progress | None = None
        task: Any = None
        if not as_json and out.is_terminal:
            bar = stack.enter_context(
                Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[counts]}"),
                    console=out,
                    transient=True,
                )
            )
            task = bar.add_task(f"batch {batch_id}", total=None, counts="")
        for event, batch in api.follow(f"/batches/{batch_id}/events"):
            final = batch
            if event == "end":
                break
            if as_json:
                print_json(batch, compact=True)
            elif bar is not None:
                counts = ", ".join(f"{n} {s}" for s, n in sorted(batch["counts"].items()))
                bar.update(
                    task,
                    description=f"batch {batch_id} {batch['kind']} {batch['state']}",
                    total=batch["total"],
                    completed=batch["ended"],
                    counts=counts,
                )
            elif (line := batch_line(batch)) != last:
                out.print(Text(line))
                last = line
    if not as_json and batch_line(final) != last:
        out.print(Text(batch_line(final), style="bold"))
    counts = final.get("counts", {})
    unsettled = sum(counts.get(state, 0) for state in BAD_OP_STATES)
    if final.get("state") == "done" and not unsettled:
        return 0
    typer.echo(
        f"fleetctl: batch {batch_id} ended {final.get('state')} with {unsettled} operation(s) "
        f"not succeeded: see `fleetctl ops list --batch {batch_id} --state failed`",
        err=True,
    )
    return EXIT_REFUSED


@contextlib.contextmanager
def _interruptible(what: str, later: str) -> Iterator[None]:
    try:
        yield
    except KeyboardInterrupt:
        fail(f"stopped following; {what} goes on in the daemon (`{later}`)", 130)


# --- ops ------------------------------------------------------------------------------------

StateOpt = Annotated[str | None, typer.Option("--state", help=", ".join(OP_STATES))]


@handled
def ops_list(
    state: StateOpt = None,
    kind: Annotated[str | None, typer.Option(help="e.g. cutover, account_stop")] = None,
    unit: Annotated[str | None, typer.Option(help="A unit serial.")] = None,
    customer: Annotated[str | None, typer.Option(help="A customer code.")] = None,
    batch: Annotated[str | None, typer.Option(help="A batch id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    before_id: Annotated[
        int | None, typer.Option("--before-id", min=1, help="Page back from this id.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Operations, newest first."""
    if state is not None and state not in OP_STATES:
        fail(f'--state "{state}": one of {", ".join(OP_STATES)}', EXIT_USAGE)
    params = {
        "state": state,
        "kind": kind,
        "unit": unit,
        "customer": customer,
        "batch": batch,
        "limit": limit,
        "before_id": before_id,
    }
    with ApiClient.from_env() as api:
        found = api.get("/operations", params)
    print_answer(found, as_json, show_ops)


@handled
def ops_show(
    op_id: Annotated[int, typer.Argument(help="The operation's id.")], as_json: JsonOpt = False
) -> None:
    """One operation with every step it took."""
    with ApiClient.from_env() as api:
        op = api.get(f"/operations/{op_id}")
    print_answer(op, as_json, show_op)


@handled
def ops_watch(
    op_ids: Annotated[list[int], typer.Argument(help="One or more operation ids.")],
    as_json: JsonOpt = False,
) -> None:
    """Follow operations as they run, step by step, until each has ended (exit status 0 when
    all succeeded). With --json: one line of the API's JSON per change."""
    with ApiClient.from_env() as api:
        code = watch_operations(api, op_ids, console(), as_json)
    raise typer.Exit(code)


def _op_change(op_id: int, action: str, as_json: bool) -> None:
    with ApiClient.from_env() as api:
        op = api.post(f"/operations/{op_id}/{action}")
    if as_json:
        print_json(op)
    else:
        console().print(Text(op_headline(op)))


@handled
def ops_cancel(op_id: Annotated[int, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Cancel an operation that has not started (queued or waiting to retry)."""
    _op_change(op_id, "cancel", as_json)


@handled
def ops_retry(op_id: Annotated[int, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Queue a failed, escalated or cancelled operation again, due now."""
    _op_change(op_id, "retry", as_json)


# --- batches --------------------------------------------------------------------------------


def _listed(values: Sequence[str] | None) -> list[str]:
    """Values given once each, comma-separated, or `@FILE` (one a line)."""
    out: list[str] = []
    for value in values or ():
        if value.startswith("@"):
            path = Path(value[1:])
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CtlError(f"cannot read {path}: {exc}", EXIT_USAGE) from None
            out.extend(line.strip() for line in text.splitlines() if line.strip())
        else:
            out.extend(part.strip() for part in value.split(",") if part.strip())
    return out


def _pairs(values: Sequence[str] | None, option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for value in values or ():
        key, sep, raw = value.partition("=")
        if not sep or not key.strip():
            raise CtlError(f'{option} "{value}": give it as KEY=VALUE', EXIT_USAGE)
        try:
            out[key.strip()] = json.loads(raw)  # numbers and true/false as such
        except ValueError:
            out[key.strip()] = raw
    return out


@handled
def batch_create(
    kind: Annotated[str, typer.Argument(help=", ".join(KINDS))],
    customers: Annotated[
        list[str] | None,
        typer.Option("--customers", help="Customer codes, comma-separated, or @FILE."),
    ] = None,
    serials: Annotated[
        list[str] | None, typer.Option("--serials", help="Unit serials, comma-separated, or @FILE.")
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            help="KEY=VALUE over units: role, line_type, branch, v6_order_state, wan_mode, "
            "platform (repeat for several).",
        ),
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option("--param", help="KEY=VALUE for the kind, e.g. confirm_minutes=5."),
    ] = None,
    canary: Annotated[
        int, typer.Option(min=0, help="Run this many first, alone, before the rest.")
    ] = 0,
    max_failure_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Stop the batch when more fail than this (0-1)."),
    ] = 0.2,
    max_parallel: Annotated[int, typer.Option(min=1, help="At most this many at once.")] = 100,
    watch: Annotated[bool, typer.Option("--watch", help="Follow it until it ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue one kind of change over many customers or units, with a canary and a failure
    threshold. Targets the rules refuse are listed and never stop the others."""
    selection: dict[str, Any] = {}
    if customers:
        selection["customers"] = _listed(customers)
    if serials:
        selection["serials"] = _listed(serials)
    if filters:
        selection["filter"] = {k: str(v) for k, v in _pairs(filters, "--filter").items()}
    if len(selection) != 1:
        fail("give exactly one of --customers, --serials or --filter", EXIT_USAGE)
    body = {
        "kind": kind.replace("-", "_"),
        "selection": selection,
        "params": _pairs(params, "--param"),
        "canary": canary,
        "max_failure_rate": max_failure_rate,
        "max_parallel": max_parallel,
    }
    out = console()
    with ApiClient.from_env() as api:
        created = api.post("/batches", body)
        if as_json:
            print_json(created, compact=watch)
        else:
            show_batch(out, created)
            if not watch:
                out.print(Text(f"follow with: fleetctl batch watch {created['id']}", style="dim"))
        if watch:
            shown = "" if as_json else batch_line(created)
            raise typer.Exit(watch_batch(api, created["id"], out, as_json, shown))


@handled
def batch_show(batch_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Where a batch stands: its state, operations by state, failure rate."""
    with ApiClient.from_env() as api:
        batch = api.get(f"/batches/{batch_id}")
    print_answer(batch, as_json, show_batch)


@handled
def batch_watch(batch_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Follow a batch until it ends, with a progress bar on a terminal (exit status 0 when
    every operation succeeded). With --json: one line of the API's JSON per change."""
    with ApiClient.from_env() as api:
        code = watch_batch(api, batch_id, console(), as_json)
    raise typer.Exit(code)


@handled
def batch_cancel(batch_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Cancel what has not started; running operations end on their own."""
    with ApiClient.from_env() as api:
        batch = api.post(f"/batches/{batch_id}/cancel")
    print_answer(batch, as_json, show_batch)


# --- imports --------------------------------------------------------------------------------


class ImportKind(StrEnum):
    contracts = "contracts"
    v6_orders = "v6-orders"
    fleet = "fleet"


def _chunks(data: bytes, bar: Progress | None, task: Any) -> Iterator[bytes]:
    for start in range(0, len(data), UPLOAD_CHUNK):
        chunk = data[start : start + UPLOAD_CHUNK]
        yield chunk
        if bar is not None:
            bar.advance(task, len(chunk))


@handled
def import_file(
    kind: Annotated[ImportKind, typer.Argument(help="contracts, v6-orders or fleet")],
    file: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="The CSV file."),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything and count; write nothing.")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Import the good rows; list the others.")
    ] = False,
    encoding: Annotated[
        str, typer.Option(help="auto (UTF-8, then Shift_JIS) or a codec name.")
    ] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Import a file into the inventory through the daemon: every row is checked first and
    nothing is written while one breaks a rule (unless --skip-invalid)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", EXIT_USAGE)
    out = console()
    params = {"dry_run": dry_run, "skip_invalid": skip_invalid, "encoding": encoding}
    headers = {"Content-Type": "text/csv", "Content-Length": str(len(data))}
    with contextlib.ExitStack() as stack, ApiClient.from_env() as api:
        bar: Progress | None = None
        task: Any = None
        if not as_json and out.is_terminal:
            bar = stack.enter_context(
                Progress(
                    SpinnerColumn(),
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(),
                    console=out,
                    transient=True,
                )
            )
            task = bar.add_task(f"{kind.value}: sending {file.name}", total=len(data))
        try:
            response = api.request(
                "POST",
                f"/imports/{kind.value}",
                params=params,
                content=_chunks(data, bar, task),
                headers=headers,
                read_seconds=IMPORT_READ_SECONDS,
            )
        except ApiError as exc:
            if exc.body.get("error") != "import_refused":
                raise
            stack.close()
            _refused_import(out, exc, as_json)
        stack.close()
        report = response.json()
    if as_json:
        print_json(report)
    else:
        show_import(out, report)


def _refused_import(out: Console, exc: ApiError, as_json: bool) -> NoReturn:
    body = exc.body
    if as_json:
        print_json(body)
    else:
        out.print(Text(str(body.get("message", ""))))
        for p in body.get("problems") or []:
            value = "" if p.get("value") is None else f" {p['value']!r}"
            out.print(Text(f"  line {p['line']}: {p['field']}{value}: {p['rule']}"))
    count = len(body.get("problems") or [])
    fail(
        f"import refused: {count} problem(s) listed above, nothing written; fix the rows, "
        "or give --skip-invalid to import the others",
        EXIT_REFUSED,
    )


# --- month-end and audit --------------------------------------------------------------------

MonthOpt = Annotated[
    str | None,
    typer.Option("--month", help="YYYY-MM, a month in Japan time (default: the current one)."),
]


@handled
def month_end_preview(month: MonthOpt = None, as_json: JsonOpt = False) -> None:
    """Which accounts the month-end stop will stop at 23:59 JST on the month's last day."""
    with ApiClient.from_env() as api:
        preview = api.get("/month-end/preview", {"month": month})
    print_answer(preview, as_json, show_month_end)


@handled
def month_end_run(month: MonthOpt = None, as_json: JsonOpt = False) -> None:
    """Create the month's account stops now (each once: a repeat creates nothing new)."""
    with ApiClient.from_env() as api:
        run = api.post("/month-end/run", params={"month": month})
    if as_json:
        print_json(run)
    else:
        show_month_end_run(console(), run)


@handled
def audit(
    target: Annotated[str | None, typer.Option(help="A serial, customer code, batch id …")] = None,
    actor: Annotated[str | None, typer.Option(help="Who did it.")] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO 8601, e.g. 2026-11-24T09:00+09:00.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    before_id: Annotated[
        int | None, typer.Option("--before-id", min=1, help="Page back from this id.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log, newest first: who did what, when, with which request id."""
    params = {
        "target": target,
        "actor": actor,
        "since": since,
        "limit": limit,
        "before_id": before_id,
    }
    with ApiClient.from_env() as api:
        entries = api.get("/audit", params)
    print_answer(entries, as_json, show_audit)


def add_commands(app: typer.Typer) -> None:
    ops = typer.Typer(help="Operations: list, show, watch, cancel, retry.", no_args_is_help=True)
    ops.command("list")(ops_list)
    ops.command("show")(ops_show)
    ops.command("watch")(ops_watch)
    ops.command("cancel")(ops_cancel)
    ops.command("retry")(ops_retry)
    app.add_typer(ops, name="ops")
    batch = typer.Typer(help="Batches: one change over many units.", no_args_is_help=True)
    batch.command("create")(batch_create)
    batch.command("show")(batch_show)
    batch.command("watch")(batch_watch)
    batch.command("cancel")(batch_cancel)
    app.add_typer(batch, name="batch")
    app.command("import")(import_file)
    month_end = typer.Typer(
        help="The month-end account stop: preview, or create the stops now.",
        no_args_is_help=True,
    )
    month_end.command("preview")(month_end_preview)
    month_end.command("run")(month_end_run)
    app.add_typer(month_end, name="month-end")
    app.command("audit")(audit)
