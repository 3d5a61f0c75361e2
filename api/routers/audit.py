"""The audit log: read-only through the API (auditor and admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import require
from api.deps import SessionDep
from api.errors import ERROR_RESPONSES
from api.schemas import AuditOut
from inventory import audit

router = APIRouter(prefix="/audit", tags=["audit"], responses=ERROR_RESPONSES)


@router.get("", dependencies=[require("audit")], response_model=list[AuditOut])
async def audit_log(
    session: SessionDep,
    target: Annotated[str | None, Query(max_length=64, description="Serial, code …")] = None,
    actor: Annotated[str | None, Query(max_length=100)] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601 with its zone.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="Page back from this id.")
    ] = None,
) -> list[AuditOut]:
    """Audit entries, newest first: who, when, what, before and after (secrets masked) and
    the request id."""
    if since is not None and since.tzinfo is None:
        since = since.astimezone()  # a time without a zone is the server's local time
    rows = await audit.entries(
        session, target=target, actor=actor, since=since, limit=limit, before_id=before_id
    )
    return [AuditOut.of(e) for e in rows]
