"""Staff users (admin): who may use the API and the bastion."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from api.auth import Staff, require
from api.deps import RequestIdDep, Services, ServicesDep, SessionDep
from api.errors import ERROR_RESPONSES
from api.schemas import SshKeyIn, SshKeyOut, UserCreated, UserIn, UserOut
from inventory import audit, users

router = APIRouter(prefix="/users", tags=["users"], responses=ERROR_RESPONSES)


async def _audit(
    services: Services,
    session: AsyncSession,
    staff: Staff,
    request_id: str,
    action: str,
    target: str,
    after: Mapping[str, object],
) -> None:
    await audit.record(
        session,
        actor=staff.name,
        action=action,
        target=target,
        request_id=request_id,
        after=after,
        at=services.clock.now(),
        redactor=services.redactor,
    )


@router.get("", dependencies=[require("admin")], response_model=list[UserOut])
async def list_users(session: SessionDep) -> list[UserOut]:
    """Every staff user and their role."""
    return [UserOut.of(u) for u in await users.list_users(session)]


@router.post("", status_code=201, response_model=UserCreated)
async def create_user(
    body: UserIn,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
) -> UserCreated:
    """A new staff user; the answer holds their token, shown this once."""
    async with services.store.transaction(write_lock=True) as session:
        user, token = await users.create_user(session, body.name, body.role)
        after = {"role": user.role}
        await _audit(services, session, staff, request_id, "user_create", user.name, after)
        out = UserOut.of(user)
    return UserCreated(**out.model_dump(), token=token)


@router.post("/{name}/token", response_model=UserCreated)
async def new_token(
    name: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
) -> UserCreated:
    """A new token for the user (the old one stops working), shown this once."""
    async with services.store.transaction(write_lock=True) as session:
        token = await users.new_user_token(session, name)
        user = await users.get_user(session, name)
        await _audit(services, session, staff, request_id, "user_token", name, {})
        out = UserOut.of(user)
    return UserCreated(**out.model_dump(), token=token)


@router.post("/{name}/disable", response_model=UserOut)
async def disable_user(
    name: str,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
) -> UserOut:
    """Stop the user's token and keys from working."""
    async with services.store.transaction(write_lock=True) as session:
        user = await users.set_disabled(session, name, True)
        await _audit(services, session, staff, request_id, "user_disable", name, {})
        return UserOut.of(user)


@router.get("/{name}/keys", dependencies=[require("admin")], response_model=list[SshKeyOut])
async def list_keys(name: str, session: SessionDep) -> list[SshKeyOut]:
    """The user's SSH public keys for the bastion."""
    return [SshKeyOut.of(k) for k in await users.list_ssh_keys(session, name)]


@router.post("/{name}/keys", status_code=201, response_model=SshKeyOut)
async def add_key(
    name: str,
    body: SshKeyIn,
    services: ServicesDep,
    request_id: RequestIdDep,
    staff: Annotated[Staff, require("admin")],
) -> SshKeyOut:
    """Register an SSH public key for the user (remote login through the bastion)."""
    async with services.store.transaction(write_lock=True) as session:
        key = await users.add_ssh_key(session, name, body.public_key)
        after = {"fingerprint": key.fingerprint}
        await _audit(services, session, staff, request_id, "user_add_key", name, after)
        return SshKeyOut.of(key)
