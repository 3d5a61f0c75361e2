"""Reading an import file: CSV text, its header, and cells checked one by one.

Files come as UTF-8 (with or without a BOM, as spreadsheets write it) or as Shift_JIS (CP932,
as Japanese office software writes it); `encoding="auto"` tries them in that order. Cells
are stripped of surrounding spaces, except secret cells (a password may begin with a space).
Line numbers are the file's own (the header is line 1), so staff can find a row in an editor.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TypeVar

from inventory.errors import RuleViolation
from inventory.imports.report import Problem
from inventory.rules import RuleWarning

T = TypeVar("T")
_ENCODINGS = ("utf-8-sig", "cp932")


@dataclass(frozen=True)
class Column:
    name: str
    required: bool = True  # must be in the header (its cells may still be empty)
    secret: bool = False  # never echoed in a report, never stripped


@dataclass
class Table:
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]  # (line number, column -> cell)
    ignored: list[str]  # header columns this import does not read
    problems: list[Problem]  # rows that are not even CSV rows of this header


def _decode(path: Path, encoding: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuleViolation("file", str(path), f"cannot be read ({exc.strerror})") from None
    for name in _ENCODINGS if encoding == "auto" else (encoding,):
        try:
            return data.decode(name)
        except UnicodeDecodeError:
            continue
        except LookupError:
            raise RuleViolation("encoding", encoding, "not a known text encoding") from None
    tried = "UTF-8 or Shift_JIS (CP932)" if encoding == "auto" else encoding
    raise RuleViolation("file", str(path), f"is not {tried} text; give --encoding")


def read_table(path: Path, columns: Sequence[Column], *, title: str, encoding: str) -> Table:
    """Read and check the header; the rows are returned as text, not yet checked."""
    reader = csv.reader(io.StringIO(_decode(path, encoding), newline=""))
    try:
        header = [cell.strip().lower() for cell in next(reader)]
    except StopIteration:
        raise RuleViolation(
            "file", str(path), f"is empty; a {title} starts with its header"
        ) from None
    except csv.Error as exc:
        raise RuleViolation("file", str(path), f"is not CSV: {exc}") from None
    doubled = sorted({name for name in header if name and header.count(name) > 1})
    if doubled:
        raise RuleViolation("header", ", ".join(doubled), "a column appears twice")
    missing = [c.name for c in columns if c.required and c.name not in header]
    if missing:
        raise RuleViolation(
            "header",
            ", ".join(missing),
            f"missing: a {title} has these columns (see docs/imports.md)",
        )
    known = {c.name for c in columns}
    secret = {c.name for c in columns if c.secret}
    table = Table(header, [], [n for n in header if n and n not in known], [])
    for line, cells in _numbered(reader, path):
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        if len(cells) != len(header):
            table.problems.append(
                Problem(
                    line,
                    "row",
                    None,
                    f"{len(cells)} cells where the header has {len(header)} columns",
                )
            )
            continue
        row = {
            name: cell if name in secret else cell.strip()
            for name, cell in zip(header, cells, strict=True)
            if name in known
        }
        table.rows.append((line, row))
    return table


def _numbered(reader: Iterator[list[str]], path: Path) -> Iterator[tuple[int, list[str]]]:
    line_num = 1  # the header
    while True:
        start = line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise RuleViolation("file", str(path), f"line {start} is not CSV: {exc}") from None
        line_num = getattr(reader, "line_num", start)
        yield start, cells


@dataclass
class Cells:
    """One row's cells; `check(...)` turns a broken rule into a problem of this row."""

    line: int
    raw: Mapping[str, str]
    secret: frozenset[str] = frozenset()
    problems: list[Problem] = field(default_factory=list)
    warnings: list[RuleWarning] = field(default_factory=list)

    def __getitem__(self, name: str) -> str:
        return self.raw.get(name, "")

    def has(self, name: str) -> bool:
        return name in self.raw

    def problem(self, violation: RuleViolation) -> None:
        value = violation.value
        shown = None if value is None or violation.field in self.secret else str(value)
        rule = f"{violation.rule} ({violation.hint})" if violation.hint else violation.rule
        self.problems.append(Problem(self.line, violation.field, shown, rule))

    def check(self, fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except RuleViolation as violation:
            self.problem(violation)
            return None

    def required(self, name: str) -> str | None:
        if not self[name]:
            self.problem(RuleViolation(name, "", "required"))
            return None
        return self[name]


_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0", ""}


def parse_flag(value: str, *, field: str) -> bool:
    word = value.lower()
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise RuleViolation(field, value, "yes or no")


_DATE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})|(\d{4})(\d{2})(\d{2})")
_MONTH = re.compile(r"(\d{4})[-/](\d{1,2})|(\d{4})(\d{2})")


def parse_date(value: str, *, field: str) -> date | None:
    """`2025-03-31`, `2025/3/31` or `20250331`; empty is None."""
    if not value:
        return None
    match = _DATE.fullmatch(value)
    try:
        if match:
            y, m, d = (int(g) for g in match.groups() if g is not None)
            return date(y, m, d)
    except ValueError:
        pass
    raise RuleViolation(field, value, "a date is YYYY-MM-DD (or YYYY/MM/DD)")


def parse_month(value: str, *, field: str) -> date | None:
    """`2025-04`, `2025/4` or `202504`, stored as the first day of the month."""
    if not value:
        return None
    match = _MONTH.fullmatch(value)
    if match:
        y, m = (int(g) for g in match.groups() if g is not None)
        if 1 <= m <= 12:
            return date(y, m, 1)
    raise RuleViolation(field, value, "a month is YYYY-MM")
