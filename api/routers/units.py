"""Units: what a unit should have, what it last reported, and where the two differ."""

from __future__ import annotations

from fastapi import APIRouter

from api.auth import require
from api.deps import ServicesDep, SessionDep
from api.errors import ERROR_RESPONSES
from api.routers.customers import unit_views
from api.schemas import DriftOut, ObservationOut, UnitOut
from inventory import repo

router = APIRouter(prefix="/units", tags=["units"], responses=ERROR_RESPONSES)


@router.get("/{serial}", dependencies=[require("read")], response_model=UnitOut)
async def show_unit(serial: str, session: SessionDep) -> UnitOut:
    """A unit: role, parent, management access (never its password) and intended
    configuration (whether a passphrase is on record, never the passphrase)."""
    unit = await repo.get_unit(session, serial)
    code = (await repo.customer_codes_by_id(session, [unit.customer_id]))[unit.customer_id]
    return (await unit_views(session, code, [unit]))[0]


@router.get("/{serial}/observation", dependencies=[require("read")], response_model=ObservationOut)
async def unit_observation(
    serial: str, session: SessionDep, services: ServicesDep
) -> ObservationOut:
    """The unit's last reading (SNMP sweep or a workflow's read), and how old it is."""
    seen = await repo.get_observation(session, serial)
    return ObservationOut.of(serial, seen, services.clock.now())


@router.get("/{serial}/drift", dependencies=[require("read")], response_model=DriftOut)
async def unit_drift(serial: str, session: SessionDep) -> DriftOut:
    """Where the unit's last reading differs from what it should have, in words."""
    seen = await repo.get_observation(session, serial)
    return DriftOut(
        serial=serial,
        observed_at=seen.observed_at if seen else None,
        drift=list(seen.drift or []) if seen else [],
    )
