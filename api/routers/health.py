"""Liveness, readiness and Prometheus metrics: public, for load balancers and scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.auth import require
from api.deps import ServicesDep
from api.errors import ERROR_RESPONSES
from api.schemas import ReadyOut
from fleetd.metrics import CONTENT_TYPE
from inventory.errors import StoreError

router = APIRouter(tags=["health"], responses=ERROR_RESPONSES)


@router.get("/livez", dependencies=[require("public")])
async def livez() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    dependencies=[require("public")],
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready: the answer says why."}},
)
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the store answers and its schema is this fleetd's head; tells the
    scheduler's state (leader, standby or off) and its next runs."""
    store = services.store
    head = store.head()
    revision: str | None = None
    try:
        async with store.sessions() as session:
            await session.execute(text("SELECT 1"))
        revision = await store.revision()
        state = "ok" if revision == head else f"schema at {revision or 'none'}: run fleetd migrate"
    except (SQLAlchemyError, OSError, StoreError) as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        state = f"unreachable: {services.redactor.redact(first[0] if first else 'no answer')}"
    scheduler = services.scheduler.status()
    ready = state == "ok"
    body = ReadyOut(
        ready=ready,
        store=state,
        schema_revision=revision,
        schema_head=head,
        scheduler=scheduler.state,
        next_runs=dict(scheduler.next_runs),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    dependencies=[require("public")],
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."}},
)
async def metrics(services: ServicesDep) -> Response:
    """Operations by kind and state (from the store) and finished by outcome (this daemon),
    units by reachability, push latency, and the scheduler's next runs."""
    async with services.store.sessions() as session:
        await services.metrics.refresh(session, services.scheduler.status().next_runs)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE)
