"""Running one import: read, check every row, then write all of it in one transaction.

1. The file is read and each row's own cells are checked (`Importer.parse`).
2. In the transaction, the stored rows the file refers to are loaded in batches and the rows
   are checked against each other and the store (`Importer.check`).
3. If any row breaks a rule, nothing is written, unless `skip_invalid`: then the good rows
   are checked again without the bad ones (a child whose parent row was rejected is rejected
   too) until no row depends on a rejected one.
4. The rows are written (`Importer.apply`) and the transaction commits, or, on a dry run or
   any error, rolls back: a crash half-way leaves the store as it was.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from inventory import repo
from inventory.errors import RuleViolation, SecretKeyError
from inventory.imports.report import ImportReport, Notice, Outcome, Problem, Tally
from inventory.imports.table import Cells, Column, read_table
from inventory.repo import Change
from inventory.secrets import SecretBox
from inventory.store import WRITE_LOCK, Store

R = TypeVar("R")
C = TypeVar("C")


class Progress(Protocol):
    """Where an import reports how far it got (a progress bar on a terminal)."""

    def start(self, total: int, description: str) -> None: ...

    def advance(self, steps: int = 1) -> None: ...


@dataclass
class Parsed(Generic[R]):
    line: int
    raw: dict[str, str]
    record: R | None
    problems: list[Problem] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    outcome: Outcome = Outcome.UNCHANGED

    def reject(self, violation: RuleViolation) -> None:
        value = None if violation.value is None else str(violation.value)
        self.problems.append(Problem(self.line, violation.field, value, violation.rule))

    def mark(self, change: Change) -> None:
        """Fold one record's change into the row's outcome (created beats updated)."""
        if change == Change.CREATED:
            self.outcome = Outcome.CREATED
        elif change == Change.UPDATED and self.outcome != Outcome.CREATED:
            self.outcome = Outcome.UPDATED


class Importer(ABC, Generic[R, C]):
    """One kind of import file. `C` is what `load` fetched from the store for `check` and
    `apply` (stored customers, units … keyed the way the file refers to them)."""

    kind: str
    title: str
    columns: tuple[Column, ...]
    needs_secrets: bool = False
    phases: int = 1  # how many passes `apply` makes over the rows (for progress)

    @abstractmethod
    def parse(self, cells: Cells) -> R | None:
        """Check one row on its own; record problems on `cells`; None when it is broken."""

    @abstractmethod
    async def load(self, session: AsyncSession, rows: Sequence[Parsed[R]]) -> C: ...

    @abstractmethod
    def check(self, rows: Sequence[Parsed[R]], rejected: Sequence[Parsed[R]], ctx: C) -> None:
        """Check the rows against each other and the store; `rejected` rows are broken
        already (their raw cells may still say what a good row refers to)."""

    @abstractmethod
    async def apply(
        self,
        session: AsyncSession,
        rows: Sequence[Parsed[R]],
        ctx: C,
        tally: Tally,
        box: SecretBox | None,
        step: Callable[[], None],
    ) -> None: ...


async def run_import(
    store: Store,
    importer: Importer[Any, Any],
    path: Path,
    *,
    box: SecretBox | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    encoding: str = "auto",
    progress: Progress | None = None,
) -> ImportReport:
    """Import `path`; see the module docstring. Returns the report (a refused import is a
    report with problems, not an exception); a file that cannot be read at all raises
    RuleViolation, a missing or wrong key SecretKeyError, an unusable store StoreError."""
    if importer.needs_secrets and box is None:
        raise SecretKeyError(
            f"the {importer.title} holds passwords, stored encrypted: set FLEETD_SECRET_KEY "
            "or FLEETD_SECRET_KEY_FILE (a key file made by `fleetd keygen FILE`)"
        )
    table = read_table(path, importer.columns, title=importer.title, encoding=encoding)
    secret = frozenset(c.name for c in importer.columns if c.secret)
    parsed: list[Parsed[Any]] = []
    step = _stepper(progress)
    if progress is not None:
        progress.start(len(table.rows), f"checking {path.name}")
    for line, raw in table.rows:
        step()
        cells = Cells(line, raw, secret)
        record = importer.parse(cells)
        row = Parsed(line, raw, None if cells.problems else record, list(cells.problems))
        row.notices.extend(Notice.of(line, w) for w in cells.warnings)
        parsed.append(row)
    report = ImportReport(
        importer.kind,
        importer.title,
        path.name,
        rows=len(parsed) + len(table.problems),
        ignored_columns=table.ignored,
        dry_run=dry_run,
        skip_invalid=skip_invalid,
    )
    report.problems.extend(table.problems)
    await store.require_current()
    async with store.sessions() as session:
        try:
            await session.connection(execution_options=WRITE_LOCK)
            if box is not None and importer.needs_secrets:
                await repo.check_secret_key(session, box)
            good, ctx = await _validate(session, importer, parsed, skip_invalid)
            for row in parsed:
                report.problems.extend(row.problems)
            if report.refused:
                await session.rollback()
                return report
            if progress is not None:
                progress.start(len(good) * importer.phases, f"importing {path.name}")
            tally = Tally()
            await importer.apply(session, good, ctx, tally, box, step)
            await session.flush()
            for row in good:
                report.outcomes[row.outcome] += 1
                report.notices.extend(row.notices)
            report.entities = tally
            if dry_run:
                await session.rollback()
            else:
                await session.commit()
                report.written = True
        except BaseException:
            await session.rollback()
            raise
    return report


async def _validate(
    session: AsyncSession, importer: Importer[Any, Any], parsed: list[Parsed[Any]], skip: bool
) -> tuple[list[Parsed[Any]], Any]:
    good = [row for row in parsed if not row.problems]
    rejected = [row for row in parsed if row.problems]
    ctx = await importer.load(session, good)
    while good:
        importer.check(good, rejected, ctx)
        bad = [row for row in good if row.problems]
        if not bad:
            break
        rejected.extend(bad)
        good = [row for row in good if not row.problems]
        if not skip:
            break
    return good, ctx


def _stepper(progress: Progress | None) -> Callable[[], None]:
    if progress is None:
        return lambda: None
    return lambda: progress.advance(1)
