"""Operations: list, show with steps, cancel, retry, and follow one as it runs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Staff, require
from api.deps import RequestIdDep, Services, ServicesDep, SessionDep
from api.errors import ERROR_RESPONSES
from api.schemas import OperationDetail, OperationOut, StepOut
from api.stream import STREAM_RESPONSES, follow
from inventory import audit
from inventory import operations as ops
from inventory.operations import Operation, OpState

MAX_ID = 2**31 - 1  # the stores' integer ids
OpId = Annotated[int, Path(ge=1, le=MAX_ID, description="An operation id.")]
router = APIRouter(prefix="/operations", tags=["operations"], responses=ERROR_RESPONSES)
ENDED = frozenset({OpState.SUCCEEDED, OpState.FAILED, OpState.ESCALATED, OpState.CANCELLED})


@router.get("", dependencies=[require("read")], response_model=list[OperationOut])
async def list_operations(
    session: SessionDep,
    state: Annotated[OpState | None, Query()] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    unit: Annotated[str | None, Query(max_length=12, description="A unit serial.")] = None,
    customer: Annotated[str | None, Query(max_length=9, description="A customer code.")] = None,
    batch: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Page back from this id.")
    ] = None,
) -> list[OperationOut]:
    """Operations, newest first, filtered by state, kind, unit, customer or batch."""
    query = select(Operation)
    if state is not None:
        query = query.where(Operation.state == state.value)
    if kind is not None:
        query = query.where(Operation.kind == kind)
    if unit is not None:
        query = query.where(Operation.unit_serial == unit)
    if customer is not None:
        query = query.where(Operation.customer_code == customer)
    if batch is not None:
        query = query.where(Operation.batch_id == batch)
    if before_id is not None:
        query = query.where(Operation.id < before_id)
    rows = await session.scalars(query.order_by(Operation.id.desc()).limit(limit))
    return [OperationOut.of(op) for op in rows]


async def _detail(session: AsyncSession, op_id: int) -> OperationDetail:
    op = await ops.get(session, op_id)
    steps = [StepOut.of(s) for s in await ops.steps(session, op_id)]
    return OperationDetail(**OperationOut.of(op).model_dump(), steps=steps)


@router.get("/{op_id}", dependencies=[require("read")], response_model=OperationDetail)
async def show_operation(op_id: OpId, session: SessionDep) -> OperationDetail:
    """One operation with every step it took (secrets masked)."""
    return await _detail(session, op_id)


@router.get(
    "/{op_id}/events",
    dependencies=[require("read")],
    response_class=StreamingResponse,
    responses=STREAM_RESPONSES,
)
async def follow_operation(
    op_id: OpId, request: Request, services: ServicesDep, session: SessionDep
) -> StreamingResponse:
    """Follow an operation as Server-Sent Events (`operation` on every change, `end` once
    it has ended), whichever daemon runs it."""
    await ops.get(session, op_id)
    await session.close()  # the stream reads with sessions of its own

    async def snapshot(s: AsyncSession) -> tuple[dict[str, Any], bool]:
        detail = await _detail(s, op_id)
        return detail.model_dump(mode="json"), OpState(detail.state) in ENDED

    return follow(services, request, "operation", snapshot)


async def _change(
    services: Services, staff: Staff, request_id: str, op_id: int, action: str
) -> OperationOut:
    now = services.clock.now()
    async with services.store.transaction(write_lock=True) as session:
        before = await ops.get(session, op_id)
        was = before.state
        if action == "cancel":
            op = await ops.cancel(session, op_id, f"cancelled by {staff.name}")
        else:
            op = await ops.retry(session, op_id, now, f"retry asked by {staff.name}")
        await audit.record(
            session,
            actor=staff.name,
            action=f"operation_{action}",
            target=op.unit_serial or op.customer_code or str(op.id),
            request_id=request_id,
            before={"operation": op.id, "state": was},
            after={"operation": op.id, "state": op.state},
            at=now,
            redactor=services.redactor,
        )
        out = OperationOut.of(op)
    if action == "retry":
        services.wake_engine()
    return out


@router.post("/{op_id}/cancel", response_model=OperationOut)
async def cancel_operation(
    op_id: OpId,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("tech")],
) -> OperationOut:
    """Cancel an operation that has not started (queued or waiting to retry)."""
    return await _change(services, staff, request_id, op_id, "cancel")


@router.post("/{op_id}/retry", response_model=OperationOut)
async def retry_operation(
    op_id: OpId,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("tech")],
) -> OperationOut:
    """Queue a failed, escalated or cancelled operation again, due now (its history kept)."""
    return await _change(services, staff, request_id, op_id, "retry")
