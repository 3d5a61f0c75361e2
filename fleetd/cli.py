"""The `fleetd` command: local administration of the configured store.

    fleetd migrate [--check]                  bring the database schema to this fleetd's head
    fleetd keygen FILE                        make a new secret key file (mode 0600)
    fleetd import contracts FILE [options]    the operator's contract export
    fleetd import v6-orders FILE [options]    the partner ISP's 4over6 order list
    fleetd import fleet FILE [options]        the fleet file of `fleet-sim serve --inventory-out`
    fleetd users add NAME --role ROLE         a staff user; prints the API token once
    fleetd users token NAME | add-key NAME FILE   a new token; an SSH key for the bastion
    fleetd month-end preview|run [--month M]  the month-end account stop: who stops, or write it
    fleetd schedule                           the scheduled jobs and when each fires next

Exit status: 0 done; 1 the input was refused (rows breaking the rules: nothing written);
2 a configuration problem (no or wrong secret key, database unreachable or not migrated,
bad settings) or a usage error.

More commands join in `create_app()`: write a `typer.Typer()` sub-app and `add_typer` it
there; inside a command, `state(ctx)` gives the settings and `run(coro)` runs a coroutine
with the errors mapped to one clear line and the exit statuses above.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from fleetd import monthend, scheduler
from fleetd.calendar import jst_month, month_end_stop_at, parse_month
from fleetd.clock import JST, SystemClock
from fleetd.settings import Settings
from inventory.errors import FleetError, SecretKeyError, StoreError
from inventory.imports import ImportReport, importer_for, run_import
from inventory.redact import RedactingFilter, Redactor, install_redaction
from inventory.secrets import generate_key_file
from inventory.store import open_store, shown

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
log = logging.getLogger("fleetd.cli")


@dataclass
class CliState:
    settings: Settings
    redactor: Redactor


def state(ctx: typer.Context) -> CliState:
    """The settings `main()` built; built here from the environment when a caller (a test
    runner) invoked the app without them."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState(_settings(), Redactor())
    return root.obj


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"fleetd: {message}", err=True)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro`; an error of ours becomes one line on stderr and the exit status."""
    try:
        return asyncio.run(coro)
    except (SecretKeyError, StoreError) as exc:
        fail(str(exc), 2)
    except FleetError as exc:
        fail(str(exc), 1)
    except SQLAlchemyError as exc:
        log.debug("database error", exc_info=True)
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        fail(f"database error: {first[0] if first else type(exc).__name__}", 2)


# --- commands ---------------------------------------------------------------------------


def migrate(
    ctx: typer.Context,
    check: Annotated[
        bool,
        typer.Option("--check", help="Only tell whether the schema is current (exit 1 if not)."),
    ] = False,
) -> None:
    """Bring the database schema to this fleetd's head revision (one transaction)."""
    settings = state(ctx).settings

    async def go() -> tuple[str, str | None, str | None, str | None]:
        async with open_store(settings.database_url) as store:
            before = await store.revision()
            if not check and before != store.head():
                await store.migrate()
            return shown(store.url), before, await store.revision(), store.head()

    where, before, after, head = run(go())
    if check:
        if after != head:
            fail(
                f"the database {where} is at {after or 'no schema'}, head is {head}: "
                "run `fleetd migrate`",
                1,
            )
        typer.echo(f"the database {where} is at the head revision {head}")
    elif before == after:
        typer.echo(f"the database {where} is already at the head revision {head}")
    else:
        typer.echo(f"the database {where} migrated from {before or 'no schema'} to {after}")


def keygen(
    file: Annotated[Path, typer.Argument(help="Where to write the key (never overwritten).")],
) -> None:
    """Make a new secret key file (mode 0600) for FLEETD_SECRET_KEY_FILE."""
    try:
        kid = generate_key_file(file)
    except SecretKeyError as exc:
        fail(str(exc), 2)
    file = file.resolve()
    typer.echo(
        f"wrote key {kid} to {file} (mode 0600); give it to fleetd as "
        f"FLEETD_SECRET_KEY_FILE={file}, and keep a copy: without it the stored "
        "passwords cannot be read"
    )


FileArg = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, readable=True, help="The CSV file to import."),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Check everything and count, but write nothing.")
]
SkipInvalid = Annotated[
    bool,
    typer.Option(
        "--skip-invalid", help="Import the good rows; report the others, write nothing for them."
    ),
]
Encoding = Annotated[
    str,
    typer.Option("--encoding", help="auto (UTF-8, then Shift_JIS/CP932) or a Python codec name."),
]


def import_contracts(
    ctx: typer.Context,
    file: FileArg,
    dry_run: DryRun = False,
    skip_invalid: SkipInvalid = False,
    encoding: Encoding = "auto",
) -> None:
    """The operator's contract export (docs/imports.md)."""
    _import(ctx, "contracts", file, dry_run, skip_invalid, encoding)


def import_v6_orders(
    ctx: typer.Context,
    file: FileArg,
    dry_run: DryRun = False,
    skip_invalid: SkipInvalid = False,
    encoding: Encoding = "auto",
) -> None:
    """The partner ISP's 4over6 order list (docs/imports.md)."""
    _import(ctx, "v6-orders", file, dry_run, skip_invalid, encoding)


def import_fleet(
    ctx: typer.Context,
    file: FileArg,
    dry_run: DryRun = False,
    skip_invalid: SkipInvalid = False,
    encoding: Encoding = "auto",
) -> None:
    """The fleet file of `fleet-sim serve --inventory-out` (needs the secret key)."""
    _import(ctx, "fleet", file, dry_run, skip_invalid, encoding)


def _import(
    ctx: typer.Context, kind: str, file: Path, dry_run: bool, skip_invalid: bool, encoding: str
) -> None:
    cli = state(ctx)
    importer = importer_for(kind)
    box = None
    if importer.needs_secrets:
        try:
            box = cli.settings.secret_box(cli.redactor)
        except SecretKeyError as exc:
            fail(str(exc), 2)
    from rich.console import Console  # the progress bar's; `serve` does without

    console = Console(stderr=True)

    async def go() -> ImportReport:
        async with open_store(cli.settings.database_url) as store:
            bar = _Bar(console) if console.is_terminal else None
            try:
                return await run_import(
                    store,
                    importer,
                    file,
                    box=box,
                    dry_run=dry_run,
                    skip_invalid=skip_invalid,
                    encoding=encoding,
                    progress=bar,
                )
            finally:
                if bar is not None:
                    bar.stop()

    report = run(go())
    for line in report.lines():
        typer.echo(line)
    if report.refused:
        raise typer.Exit(1)


class _Bar:
    """A transient progress bar on the terminal; nothing when output is not a terminal."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task: Any = None

    def start(self, total: int, description: str) -> None:
        if self._task is None:
            self._progress.start()
        else:
            self._progress.remove_task(self._task)
        self._task = self._progress.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        if self._task is not None:
            self._progress.advance(self._task, steps)

    def stop(self) -> None:
        self._progress.stop()


# --- month-end account stops and the schedule ---------------------------------------------

MonthOpt = Annotated[
    str | None,
    typer.Option("--month", help="YYYY-MM, a month in Japan time (default: the current one)."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]


def _month(text: str | None) -> tuple[int, int]:
    if text is None:
        return jst_month(SystemClock().now())
    try:
        return parse_month(text)
    except ValueError:
        fail(f'--month "{text}": expected YYYY-MM, e.g. 2026-11', 2)


def month_end_preview(
    ctx: typer.Context, month: MonthOpt = None, json_out: JsonFlag = False
) -> None:
    """Which accounts the month-end stop will stop (items cancelled that month, V4 and V6)."""
    year, mon = _month(month)
    url = state(ctx).settings.database_url

    async def go() -> list[monthend.DueStop]:
        async with open_store(url) as store:
            await store.require_current()
            async with store.sessions() as session:
                return await monthend.preview(session, year, mon)

    due = run(go())
    stop_at = month_end_stop_at(year, mon)
    if json_out:
        doc = {
            "month": f"{year:04d}-{mon:02d}",
            "stop_at": stop_at.astimezone(JST).isoformat(),
            "stops": [d.as_dict() for d in due],
        }
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    typer.echo(
        f"{year:04d}-{mon:02d}: {len(due)} accounts to stop at {monthend.format_jst(stop_at)}"
    )
    if due:
        typer.echo(
            f"{'customer':<10} {'item':<14} {'serial':<13} {'role':<7} {'cancelled':<11} "
            "operation    name"
        )
    for d in due:
        op = f"#{d.operation_id} {d.operation_state}" if d.operation_id else "not yet"
        typer.echo(
            f"{d.customer_code:<10} {d.item_no:<14} {d.serial:<13} {d.role:<7} "
            f"{d.cancellation_date.isoformat():<11} {op:<12} {d.customer_name}"
        )


def month_end_run(ctx: typer.Context, month: MonthOpt = None, json_out: JsonFlag = False) -> None:
    """Write the month's account stops now (those already written are left as they are)."""
    year, mon = _month(month)
    cli = state(ctx)

    async def go() -> monthend.ReconcileResult:
        async with open_store(cli.settings.database_url) as store:
            await store.require_current()
            async with store.transaction(write_lock=True) as session:
                return await monthend.reconcile(
                    session,
                    year,
                    mon,
                    now=SystemClock().now(),
                    requested_by=_cli_user(),
                    redactor=cli.redactor,
                )

    result = run(go())
    rows = [
        {"operation_id": r.op.id, "state": r.op.state, "created": r.created, **r.stop.as_dict()}
        for r in result.items
    ]
    if json_out:
        doc = {
            "month": f"{year:04d}-{mon:02d}",
            "created": result.created,
            "already": result.already,
            "operations": rows,
        }
        typer.echo(json.dumps(doc, ensure_ascii=False, indent=2))
        return
    typer.echo(result.summary())
    for r in result.items:
        how = "created" if r.created else f"already there, {r.op.state}"
        typer.echo(
            f"  operation {r.op.id}: {r.stop.serial} item {r.stop.item_no} of customer "
            f"{r.stop.customer_code} ({how})"
        )


def _cli_user() -> str:
    try:
        return f"cli:{getpass.getuser()}"[:100]
    except (OSError, KeyError):  # no user name in a bare container
        return "cli"


def schedule(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """Every scheduled job with its next fire time (JST), as a daemon started now has them."""
    try:
        config = scheduler.ScheduleConfig()
    except ValidationError as exc:
        error = exc.errors()[0]
        fail(f"setting FLEETD_{str(error['loc'][0]).upper()}: {error['msg']}", 2)
    found = scheduler.jobs(config=config)
    if json_out:
        typer.echo(json.dumps([j.as_dict() for j in found], indent=2))
        return
    for job in found:
        when = job.next_fire.strftime("%Y-%m-%d %H:%M:%S JST") if job.next_fire else "paused"
        typer.echo(f"{job.id:<17} next {when}   {job.trigger}")


# --- staff users --------------------------------------------------------------------------


def _users_change(ctx: typer.Context, action: str, target: str, change: Any) -> Any:
    """Run `change(session)` in one transaction with its audit entry (actor: the OS user)."""
    from inventory import audit

    url = state(ctx).settings.database_url

    async def go() -> Any:
        async with open_store(url) as store:
            await store.require_current()
            async with store.transaction(write_lock=True) as session:
                result, after = await change(session)
                actor = f"cli:{getpass.getuser()}"
                await audit.record(session, actor=actor, action=action, target=target, after=after)
                return result

    return run(go())


def users_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Login name: lower case, also the SSH name.")],
    role: Annotated[str, typer.Option("--role", help="cs, tech, admin or auditor.")],
) -> None:
    """Add a staff user and print their API token (shown this once, stored hashed)."""
    from inventory import users

    async def change(session: Any) -> tuple[str, dict[str, str]]:
        _user, token = await users.create_user(session, name, role)
        return token, {"role": role}

    token = _users_change(ctx, "user_create", name, change)
    typer.echo(f"added {name} ({role}); their API token, shown this once:", err=True)
    typer.echo(token)


def users_token(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="The user's login name.")]
) -> None:
    """Give a user a new API token (the old one stops working); printed this once."""
    from inventory import users

    async def change(session: Any) -> tuple[str, dict[str, str]]:
        return await users.new_user_token(session, name), {}

    token = _users_change(ctx, "user_token", name, change)
    typer.echo(f"new API token for {name}, shown this once:", err=True)
    typer.echo(token)


def users_add_key(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The user's login name.")],
    keyfile: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, readable=True, help="An OpenSSH .pub file."),
    ],
) -> None:
    """Register an SSH public key for remote login through the bastion."""
    from inventory import users

    try:
        text = keyfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {keyfile}: {exc}", 1)

    async def change(session: Any) -> tuple[str, dict[str, str]]:
        key = await users.add_ssh_key(session, name, text)
        return key.fingerprint, {"fingerprint": key.fingerprint}

    fingerprint = _users_change(ctx, "user_add_key", name, change)
    typer.echo(f"{name} may log in with the key {fingerprint}")


# --- the application --------------------------------------------------------------------


def create_app() -> typer.Typer:
    app = typer.Typer(
        name="fleetd",
        help="The fleet daemon for U-SPOT shop Wi-Fi routers: local administration.",
        no_args_is_help=True,
        add_completion=False,
        # rich tracebacks print local variables, and those can hold passwords
        pretty_exceptions_enable=False,
    )
    app.command()(migrate)
    app.command()(keygen)
    imports = typer.Typer(
        help="Import a file into the inventory: every row is checked first, and nothing is "
        "written while one breaks a rule (unless --skip-invalid). Re-importing the same file "
        "changes nothing.",
        no_args_is_help=True,
    )
    imports.command("contracts")(import_contracts)
    imports.command("v6-orders")(import_v6_orders)
    imports.command("fleet")(import_fleet)
    app.add_typer(imports, name="import")
    month_end = typer.Typer(
        help="The month-end account stop: every unit whose contract item is cancelled that "
        "month (V4 and V6 alike) is stopped at 23:59 JST on its last day.",
        no_args_is_help=True,
    )
    month_end.command("preview")(month_end_preview)
    month_end.command("run")(month_end_run)
    app.add_typer(month_end, name="month-end")
    app.command("schedule")(schedule)
    from fleetd import cli_ops, daemon

    app.command()(daemon.serve)
    cli_ops.add_commands(app)
    staff = typer.Typer(help="Staff users of the API and the bastion.", no_args_is_help=True)
    staff.command("add")(users_add)
    staff.command("token")(users_token)
    staff.command("add-key")(users_add_key)
    app.add_typer(staff, name="users")
    return app


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "_".join(str(part) for part in error["loc"]).upper()
        # the message only: the input may be a secret
        fail(f"setting FLEETD_{name}: {error['msg']}", 2)


def configure_logging(level: str, redactor: Redactor) -> None:
    """Log to stderr, every record scrubbed of secrets before it is formatted."""
    install_redaction(redactor)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


def main(argv: Sequence[str] | None = None) -> None:
    redactor = Redactor()
    try:
        settings = _settings()
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    configure_logging(settings.log_level, redactor)
    create_app()(
        args=list(argv) if argv is not None else None,
        obj=CliState(settings, redactor),
        prog_name="fleetd",
    )
