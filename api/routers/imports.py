"""Imports: the contract export, the 4over6 order list and the fleet file, as `fleetd import`
does them, with the CSV file as the request body."""

from __future__ import annotations

import asyncio
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.auth import Staff, require
from api.deps import RequestIdDep, ServicesDep
from api.errors import ERROR_RESPONSES, ErrorOut
from api.schemas import ImportOut, ProblemOut
from inventory import audit
from inventory.errors import RuleViolation
from inventory.imports import ImportReport, importer_for, run_import

router = APIRouter(prefix="/imports", tags=["imports"], responses=ERROR_RESPONSES)


class ImportKind(StrEnum):
    CONTRACTS = "contracts"
    V6_ORDERS = "v6-orders"
    FLEET = "fleet"


CSV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The CSV file, as exported (UTF-8 or Shift_JIS); see docs/imports.md.",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def _out(report: ImportReport) -> ImportOut:
    return ImportOut(
        kind=report.kind,
        source=report.source,
        rows=report.rows,
        created=report.created,
        updated=report.updated,
        unchanged=report.unchanged,
        rejected_rows=report.rejected_rows,
        refused=report.refused,
        written=report.written,
        dry_run=report.dry_run,
        entities={
            kind: {outcome.value: n for outcome, n in counter.items()}
            for kind, counter in report.entities.counts.items()
        },
        problems=[ProblemOut(**p.__dict__) for p in sorted(report.problems)],
        warnings=[str(n) for n in sorted(report.notices)],
        ignored_columns=list(report.ignored_columns),
        summary=report.summary(),
    )


@router.post(
    "/{kind}",
    response_model=ImportOut,
    openapi_extra=CSV_BODY,
    responses={422: {"model": ErrorOut, "description": "Rows break the rules: nothing written."}},
)
async def import_file(
    kind: ImportKind,
    request: Request,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
    dry_run: Annotated[bool, Query(description="Check and count, write nothing.")] = False,
    skip_invalid: Annotated[
        bool, Query(description="Import the good rows; list the others.")
    ] = False,
    encoding: Annotated[
        str, Query(max_length=32, description="auto (UTF-8, then Shift_JIS) or a codec name.")
    ] = "auto",
) -> Any:
    """Import a file into the inventory: every row is checked first and nothing is written
    while one breaks a rule (unless skip_invalid); the same file again changes nothing."""
    importer = importer_for(kind.value)
    body = await request.body()
    if len(body) > services.max_upload_bytes:
        raise RuleViolation(
            "body",
            f"{len(body)} bytes",
            f"an import file is at most {services.max_upload_bytes} bytes",
        )
    box = services.box if importer.needs_secrets else None
    with tempfile.TemporaryDirectory(prefix="fleetd-import-") as folder:
        path = Path(folder) / f"{kind.value}.csv"
        await asyncio.to_thread(path.write_bytes, body)
        try:
            report = await run_import(
                services.store,
                importer,
                path,
                box=box,
                dry_run=dry_run,
                skip_invalid=skip_invalid,
                encoding=encoding,
            )
        except RuleViolation as exc:
            if exc.field == "file":  # never the server's temporary path
                raise RuleViolation("body", None, exc.rule, hint=exc.hint) from None
            raise
    out = _out(report)
    async with services.store.transaction(write_lock=True) as session:
        await audit.record(
            session,
            actor=staff.name,
            action=f"import_{kind.value.replace('-', '_')}",
            target=kind.value,
            request_id=request_id,
            after={
                "rows": out.rows,
                "created": out.created,
                "updated": out.updated,
                "unchanged": out.unchanged,
                "rejected_rows": out.rejected_rows,
                "dry_run": dry_run,
                "written": out.written,
            },
            detail=out.summary,
            at=services.clock.now(),
            redactor=services.redactor,
        )
    if report.refused:
        first = out.problems[0]
        error = ErrorOut(
            error="import_refused",
            message=out.summary,
            field=first.field,
            value=first.value,
            rule=f"line {first.line}: {first.rule}",
            hint="fix the rows, or send skip_invalid=true to import the others",
            problems=[p.model_dump() for p in out.problems],
        )
        return JSONResponse(error.model_dump(exclude_none=True), status_code=422)
    return out
