"""Batches: one change over many customers or units, with a canary and a failure threshold."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Staff, require
from api.deps import RequestIdDep, ServicesDep, SessionDep
from api.errors import ERROR_RESPONSES
from api.schemas import BatchCreated, BatchIn, BatchOut, RefusedOut
from api.stream import STREAM_RESPONSES, follow
from fleetd import batches
from inventory import audit

router = APIRouter(prefix="/batches", tags=["batches"], responses=ERROR_RESPONSES)
_SECRET = re.compile(r"(?i)password|passphrase|secret|psk|private_key")


def _out(progress: batches.Progress) -> BatchOut:
    return BatchOut(
        id=progress.id,
        kind=progress.kind,
        state=progress.state,
        total=progress.total,
        counts=progress.counts,
        ended=progress.ended,
        failure_rate=progress.failure_rate,
        finished=progress.finished,
        reason=progress.reason,
        canary=progress.canary,
        requested_by=progress.requested_by,
        created_at=progress.created_at,
    )


@router.post("", status_code=202, response_model=BatchCreated)
async def create_batch(
    body: BatchIn,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
) -> BatchCreated:
    """Queue one kind of change over a selection. Targets the rules refuse are listed in
    `refused`; they never stop the others."""
    selection = batches.Selection.parse(body.selection)
    for name, value in body.params.items():
        if isinstance(value, str) and _SECRET.search(name):
            services.redactor.add_secret(value)
    ctx = services.request_context(staff.name, request_id)
    async with services.store.transaction(write_lock=True) as session:
        created = await batches.create_batch(
            session,
            ctx,
            body.kind,
            selection,
            body.params,
            canary=body.canary,
            max_failure_rate=body.max_failure_rate,
            max_parallel=body.max_parallel,
            requests=services.request_functions(),
        )
        await session.flush()
        await audit.record(
            session,
            actor=staff.name,
            action="batch_create",
            target=created.batch.id,
            request_id=request_id,
            after={
                "kind": body.kind,
                "selection": selection.as_dict(),
                "params": body.params,
                "canary": body.canary,
                "max_failure_rate": body.max_failure_rate,
                "max_parallel": body.max_parallel,
                "operations": len(created.operations),
                "refused": len(created.refused),
            },
            at=ctx.now,
            redactor=services.redactor,
        )
        progress = await batches.progress(session, created.batch.id)
    services.wake_engine()
    return BatchCreated(
        **_out(progress).model_dump(),
        request_id=request_id,
        refused=[RefusedOut(target=r.target, reason=r.reason) for r in created.refused],
    )


@router.get("/{batch_id}", dependencies=[require("read")], response_model=BatchOut)
async def show_batch(batch_id: str, session: SessionDep) -> BatchOut:
    """Where a batch stands: its state, operations by state, and failure rate."""
    return _out(await batches.progress(session, batch_id))


@router.get(
    "/{batch_id}/events",
    dependencies=[require("read")],
    response_class=StreamingResponse,
    responses=STREAM_RESPONSES,
)
async def follow_batch(
    batch_id: str, request: Request, services: ServicesDep, session: SessionDep
) -> StreamingResponse:
    """Follow a batch as Server-Sent Events (`batch` on every change, `end` once finished)."""
    await batches.progress(session, batch_id)
    await session.close()

    async def snapshot(s: AsyncSession) -> tuple[dict[str, Any], bool]:
        out = _out(await batches.progress(s, batch_id))
        return out.model_dump(mode="json"), out.finished

    return follow(services, request, "batch", snapshot)


@router.post("/{batch_id}/cancel", response_model=BatchOut)
async def cancel_batch(
    batch_id: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
) -> BatchOut:
    """Cancel what has not started; running operations end on their own."""
    async with services.store.transaction(write_lock=True) as session:
        progress = await batches.cancel_batch(session, batch_id, staff.name)
        await audit.record(
            session,
            actor=staff.name,
            action="batch_cancel",
            target=batch_id,
            request_id=request_id,
            after={"state": progress.state},
            at=services.clock.now(),
            redactor=services.redactor,
        )
    return _out(progress)
