"""The month-end account stop: which accounts stop at 23:59 JST on the month's last day, and
creating their operations now (the scheduler does the same at month end; doing it twice is
harmless)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.auth import Staff, require
from api.deps import RequestIdDep, Services, ServicesDep
from api.errors import ERROR_RESPONSES
from fleetd.calendar import jst_month, month_end_stop_at, parse_month
from inventory import audit
from inventory.errors import RuleViolation

router = APIRouter(prefix="/month-end", tags=["month-end"], responses=ERROR_RESPONSES)
MonthQuery = Annotated[
    str | None,
    Query(max_length=7, description="YYYY-MM (Japan time); default: the current month."),
]


class DueStopOut(BaseModel):
    customer_code: str
    customer_name: str
    item_no: str
    item_code: str
    serial: str
    role: str
    cancellation_date: date
    stop_at: datetime
    operation_id: int | None
    operation_state: str | None


class MonthEndOut(BaseModel):
    month: str
    stop_at: datetime
    stops: list[DueStopOut]


class MonthEndRun(BaseModel):
    month: str
    stop_at: datetime
    created: int
    already: int
    operations: list[int]
    summary: str
    request_id: str


def _month(services: Services, text: str | None) -> tuple[int, int]:
    if not text:
        return jst_month(services.clock.now())
    try:
        return parse_month(text)
    except ValueError:
        raise RuleViolation("month", text, "a month is YYYY-MM, e.g. 2026-11") from None


@router.get("/preview", dependencies=[require("read")], response_model=MonthEndOut)
async def preview(services: ServicesDep, month: MonthQuery = None) -> MonthEndOut:
    """Every account that stops at the month's end (cancellation that month, unit not yet
    stopped), with its operation when one has been created."""
    from fleetd import monthend

    year, number = _month(services, month)
    async with services.store.sessions() as session:
        due = await monthend.preview(session, year, number)
    return MonthEndOut(
        month=f"{year:04d}-{number:02d}",
        stop_at=month_end_stop_at(year, number),
        stops=[DueStopOut(**d.__dict__) for d in due],
    )


@router.post("/run", response_model=MonthEndRun)
async def run(
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
    month: MonthQuery = None,
) -> MonthEndRun:
    """Create the month's account stops now (each once: a repeat creates nothing new)."""
    from fleetd import monthend

    year, number = _month(services, month)
    now = services.clock.now()
    async with services.store.transaction(write_lock=True) as session:
        result = await monthend.reconcile(
            session, year, number, now=now, requested_by=staff.name, redactor=services.redactor
        )
        ids = [op.id for op in result.operations]
        await audit.record(
            session,
            actor=staff.name,
            action="month_end_run",
            target=f"{year:04d}-{number:02d}",
            request_id=request_id,
            after={"created": result.created, "already": result.already, "operations": ids},
            detail=result.summary(),
            at=now,
            redactor=services.redactor,
        )
    services.wake_engine()
    return MonthEndRun(
        month=f"{year:04d}-{number:02d}",
        stop_at=result.stop_at,
        created=result.created,
        already=result.already,
        operations=ids,
        summary=result.summary(),
        request_id=request_id,
    )
