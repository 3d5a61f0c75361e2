"""Importing the files the inventory is fed from; docs/imports.md describes each one.

    contracts   the operator's contract export (customers, addresses, lines, items, units)
    v6-orders   the partner ISP's 4over6 order list (order state and tunnel of each line)
    fleet       the fleet file of `fleet-sim serve --inventory-out` (management access)

`run_import(store, importer_for(kind), path, …)` checks every row first and writes all of
them in one transaction, or nothing; it returns an `ImportReport`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from inventory.errors import RuleViolation
from inventory.imports.contracts import ContractsImporter
from inventory.imports.engine import Importer, Progress, run_import
from inventory.imports.fleet import FleetImporter
from inventory.imports.report import ImportReport, Notice, Outcome, Problem
from inventory.imports.v6orders import V6OrdersImporter

IMPORTERS: dict[str, Callable[[], Importer[Any, Any]]] = {
    "contracts": ContractsImporter,
    "v6-orders": V6OrdersImporter,
    "fleet": FleetImporter,
}


def importer_for(kind: str) -> Importer[Any, Any]:
    try:
        return IMPORTERS[kind]()
    except KeyError:
        raise RuleViolation("kind", kind, f"an import is one of: {', '.join(IMPORTERS)}") from None


__all__ = [
    "IMPORTERS",
    "ImportReport",
    "Importer",
    "Notice",
    "Outcome",
    "Problem",
    "Progress",
    "importer_for",
    "run_import",
]
