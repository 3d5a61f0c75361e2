"""Change requests: each checks the rules offline, queues operations and answers 202 with them.

The kind's request function (`fleetd.workflows.REQUESTS`) does the checking and writing; this
module resolves the targets, records the request in the audit log (secrets masked) in the
same transaction, and wakes the engine once it is committed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.auth import Staff, require
from api.deps import RequestIdDep, Services, ServicesDep
from api.errors import ERROR_RESPONSES
from api.schemas import Accepted, OperationOut
from fleetd.workflows.base import (
    ACCOUNT_RESUME,
    ACCOUNT_STOP,
    BUSINESS_WIFI,
    CUTOVER,
    GUEST_ROTATE,
    LINK_SWAP,
    ORIGINAL_SSID,
    REVERT_V4,
)
from inventory import audit, repo
from inventory.domain import Role
from inventory.errors import RuleViolation
from inventory.operations import Operation

router = APIRouter(tags=["change requests"], responses=ERROR_RESPONSES)
_SECRET = re.compile(r"(?i)password|passphrase|secret|psk|private_key")


class Options(BaseModel):
    """What every change request may add."""

    model_config = ConfigDict(extra="forbid")
    confirm_minutes: int | None = Field(
        default=None, description="The unit's commit-confirmed timer (minutes, 1 to 60)."
    )
    not_before: datetime | None = Field(
        default=None, description="Not before this time (ISO 8601 with its zone)."
    )
    deadline: datetime | None = Field(
        default=None, description="Escalate when not done by then (ISO 8601 with its zone)."
    )
    idempotency_key: str | None = Field(
        default=None,
        max_length=150,
        description="The same key again returns the operations of the first request.",
    )


class WanIn(Options):
    serial: str | None = Field(
        default=None, description="Only this parent unit (default: every parent of the customer)."
    )


class BusinessWifiIn(Options):
    ssid: str | None = Field(default=None, description="The new business SSID.")
    passphrase: str | None = Field(
        default=None, description="The new passphrase; a strong one is generated when omitted."
    )
    keep_passphrase: bool | None = Field(default=None, description="True: change the SSID only.")


class OriginalSsidIn(Options):
    ssid: str | None = Field(
        default=None, description="The shop's own guest SSID (15 characters or fewer advised)."
    )
    clear: bool | None = Field(default=None, description="True: back to the default guest SSID.")


class SwapIn(Options):
    new_serial: str = Field(description="The link item's serial (US01…, 12 characters).")
    address: str = Field(description="The link item's management address.")
    ssh_port: int = Field(description="Its SSH port.")
    snmp_port: int | None = Field(default=None, description="Its SNMP port.")
    username: str | None = Field(default=None, description="Its login name (default admin).")
    password: str = Field(description="Its login password (stored encrypted, never shown).")
    host_key: str = Field(description="Its SSH host key in OpenSSH form, pinned as given.")
    platform: str | None = Field(default=None, description="Its driver platform (uspot).")


def _params(body: BaseModel | None, *, leave: Sequence[str] = ()) -> dict[str, Any]:
    if body is None:
        return {}
    values = body.model_dump(mode="json", exclude_none=True)
    return {k: v for k, v in values.items() if k not in leave}


async def submit(
    services: Services,
    staff: Staff,
    request_id: str,
    kind: str,
    label: str,
    targets: Sequence[str] | None,
    params: Mapping[str, Any],
) -> Accepted:
    """Queue `kind` for each target (None: resolve the customer `label`'s parents), audit
    the request and wake the engine."""
    request = services.request_functions().get(kind)
    if request is None:
        raise RuleViolation("kind", kind, "this fleetd has no workflow for it")
    for name, value in params.items():
        if isinstance(value, str) and _SECRET.search(name):
            services.redactor.add_secret(value)
    ctx = services.request_context(staff.name, request_id)
    queued: list[Operation] = []
    async with services.store.transaction(write_lock=True) as session:
        if targets is None:
            units = await repo.list_units(session, label)
            targets = [u.serial for u in units if u.role == Role.PARENT]
            if not targets:
                raise RuleViolation(
                    "code", label, "the customer has no parent unit: only a parent has a WAN"
                )
        key = params.get("idempotency_key")
        for target in targets:
            own = dict(params)
            if key and len(targets) > 1:
                own["idempotency_key"] = f"{key}:{target}"
            queued.extend(await request(session, ctx, target, own))
        await audit.record(
            session,
            actor=staff.name,
            action=f"request_{kind}",
            target=label,
            request_id=request_id,
            after={**params, "operations": [op.id for op in queued]},
            detail=f"{kind} requested for {', '.join(targets)}",
            at=ctx.now,
            redactor=services.redactor,
        )
    services.wake_engine()
    return Accepted(request_id=request_id, operations=[OperationOut.of(op) for op in queued])


def _only(serial: str | None) -> list[str] | None:
    return [serial] if serial else None


@router.post("/customers/{code}/cutover", status_code=202, response_model=Accepted)
async def cutover(
    code: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("tech")],
    body: WanIn | None = None,
) -> Accepted:
    """Switch the customer's parent unit(s) from V4 to V6 (4over6). Refused when the line's
    4over6 order is not complete, the unit was moved by the customer, or no tunnel is known."""
    serial = body.serial if body else None
    params = _params(body, leave=("serial",))
    return await submit(services, staff, request_id, CUTOVER, code, _only(serial), params)


@router.post("/customers/{code}/revert-v4", status_code=202, response_model=Accepted)
async def revert_v4(
    code: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("tech")],
    body: WanIn | None = None,
) -> Accepted:
    """Put the customer's parent unit(s) back on V4 (PPPoE)."""
    serial = body.serial if body else None
    params = _params(body, leave=("serial",))
    return await submit(services, staff, request_id, REVERT_V4, code, _only(serial), params)


@router.post("/customers/{code}/business-wifi", status_code=202, response_model=Accepted)
async def business_wifi(
    code: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("cs")],
    body: BusinessWifiIn | None = None,
) -> Accepted:
    """Change the business SSID and/or passphrase on every unit of the customer (the
    customer's request through customer support). The passphrase is never answered: it
    reaches the customer only on a registration notice."""
    params = _params(body)
    return await submit(services, staff, request_id, BUSINESS_WIFI, code, [code], params)


@router.post("/customers/{code}/guest-rotate", status_code=202, response_model=Accepted)
async def guest_rotate(
    code: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("tech")],
    body: Options | None = None,
) -> Accepted:
    """A new generated guest passphrase on every unit of the customer."""
    params = _params(body)
    return await submit(services, staff, request_id, GUEST_ROTATE, code, [code], params)


@router.post("/customers/{code}/original-ssid", status_code=202, response_model=Accepted)
async def original_ssid(
    code: str,
    body: OriginalSsidIn,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("cs")],
) -> Accepted:
    """Set the Original SSID (the guest network named after the shop, 500 yen a month) on
    every unit of the customer, or clear it (`clear: true`)."""
    params = _params(body)
    return await submit(services, staff, request_id, ORIGINAL_SSID, code, [code], params)


@router.post("/units/{serial}/stop", status_code=202, response_model=Accepted)
async def account_stop(
    serial: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
    body: Options | None = None,
) -> Accepted:
    """Stop the unit's account (no internet, no Wi-Fi), e.g. for a cancellation."""
    params = _params(body)
    return await submit(services, staff, request_id, ACCOUNT_STOP, serial, [serial], params)


@router.post("/units/{serial}/resume", status_code=202, response_model=Accepted)
async def account_resume(
    serial: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
    body: Options | None = None,
) -> Accepted:
    """Resume a stopped unit's account."""
    params = _params(body)
    return await submit(services, staff, request_id, ACCOUNT_RESUME, serial, [serial], params)


@router.post("/units/{serial}/swap", status_code=202, response_model=Accepted)
async def link_swap(
    serial: str,
    body: SwapIn,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("tech")],
) -> Accepted:
    """Replace a faulty parent or access point by a link item (always V4; switched to V6
    about two business days later when the customer was on V6). Never a child."""
    params = _params(body)
    return await submit(services, staff, request_id, LINK_SWAP, serial, [serial], params)
