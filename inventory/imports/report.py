"""What an import did, as data: counts, every rejected row, every warning.

`ImportReport.lines()` renders it for staff, e.g.::

    contracts.csv (contract export): 12 rows: 0 created, 0 updated, 12 unchanged
      customers: 0 created, 0 updated, 4 unchanged
      …
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from inventory.rules import RuleWarning


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, order=True)
class Problem:
    """A row that breaks a rule: where, which field, which value (None: not shown), why."""

    line: int
    field: str
    value: str | None
    rule: str

    def __str__(self) -> str:
        shown = "" if self.value is None else f" {self.value!r}"
        return f"line {self.line}: {self.field}{shown}: {self.rule}"


@dataclass(frozen=True, order=True)
class Notice:
    """A row accepted with a remark staff should see (a long Original SSID …)."""

    line: int
    text: str

    @classmethod
    def of(cls, line: int, warning: RuleWarning) -> Notice:
        return cls(line, str(warning))

    def __str__(self) -> str:
        return f"line {self.line}: {self.text}"


@dataclass
class Tally:
    """Created / updated / unchanged, per kind of record ("customers", "units" …)."""

    counts: dict[str, Counter[Outcome]] = field(default_factory=dict)

    def add(self, kind: str, outcome: Outcome) -> None:
        self.counts.setdefault(kind, Counter())[outcome] += 1


@dataclass
class ImportReport:
    kind: str
    title: str
    source: str
    rows: int = 0
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    entities: Tally = field(default_factory=Tally)
    problems: list[Problem] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)
    dry_run: bool = False
    skip_invalid: bool = False
    written: bool = False

    @property
    def rejected_rows(self) -> int:
        return len({p.line for p in self.problems})

    @property
    def refused(self) -> bool:
        """Rows broke the rules and nothing was imported because of them."""
        return bool(self.problems) and not self.skip_invalid

    @property
    def created(self) -> int:
        return self.outcomes[Outcome.CREATED]

    @property
    def updated(self) -> int:
        return self.outcomes[Outcome.UPDATED]

    @property
    def unchanged(self) -> int:
        return self.outcomes[Outcome.UNCHANGED]

    def summary(self) -> str:
        head = f"{self.source} ({self.title}): {_rows(self.rows)}"
        if self.refused:
            bad, good = self.rejected_rows, self.rows - self.rejected_rows
            breaks = "row breaks" if bad == 1 else "rows break"
            return (
                f"{head}: nothing written, {bad} {breaks} the rules "
                f"(fix {'it' if bad == 1 else 'them'}, or give --skip-invalid to import "
                f"the other {good})"
            )
        counts = _counts(self.outcomes)
        if self.problems:
            counts += f", {self.rejected_rows} rejected"
        if self.dry_run:
            return f"{head}: dry run, nothing written; it would be {counts}"
        return f"{head}: {counts}"

    def lines(self) -> list[str]:
        out = [self.summary()]
        if not self.refused:
            for kind, counter in self.entities.counts.items():
                out.append(f"  {kind}: {_counts(counter)}")
        if self.problems:
            out.append("rejected rows:" if not self.refused else "rows that break the rules:")
            out.extend(f"  {p}" for p in sorted(self.problems))
        if self.notices:
            out.append("warnings:")
            out.extend(f"  {n}" for n in sorted(self.notices))
        if self.ignored_columns:
            out.append(f"columns not read: {', '.join(self.ignored_columns)}")
        return out


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def _counts(counter: Counter[Outcome]) -> str:
    return ", ".join(f"{counter[o]} {o.value}" for o in Outcome)
