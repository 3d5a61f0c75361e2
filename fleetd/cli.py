"""The `fleetd` command: local administration of the configured store.

    fleetd migrate [--check]                  bring the database schema to this fleetd's head
    fleetd keygen FILE                        make a new secret key file (mode 0600)
    fleetd import contracts FILE [options]    the operator's contract export
    fleetd import v6-orders FILE [options]    the partner ISP's 4over6 order list
    fleetd import fleet FILE [options]        the fleet file of `fleet-sim serve --inventory-out`

Exit status: 0 done; 1 the input was refused (rows breaking the rules: nothing written);
2 a configuration problem (no or wrong secret key, database unreachable or not migrated,
bad settings) or a usage error.

More commands join in `create_app()`: write a `typer.Typer()` sub-app and `add_typer` it
there; inside a command, `state(ctx)` gives the settings and `run(coro)` runs a coroutine
with the errors mapped to one clear line and the exit statuses above.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from sqlalchemy.exc import SQLAlchemyError

from fleetd.settings import Settings
from inventory.errors import FleetError, SecretKeyError, StoreError
from inventory.imports import ImportReport, importer_for, run_import
from inventory.redact import RedactingFilter, Redactor, install_redaction
from inventory.secrets import generate_key_file
from inventory.store import open_store, shown

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
