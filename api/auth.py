"""Who may call what: per-staff bearer tokens and one declared access policy per route.

Every route declares its policy once, with `require(policy)` (as a parameter when the route
needs the caller, in `dependencies=[…]` otherwise). `create_app` refuses to build an app with
a route that declares none, and writes each route's policy into its OpenAPI description, so
/docs lists who may call it.

    public   no token (health and metrics)
    read     cs, tech, admin, auditor: look-ups that change nothing
    cs       cs, tech, admin: customer support's requests
    tech     tech, admin: cutover, back to V4, link-item swap, retry, cancel
    admin    admin: imports, users, month-end runs, batches, account stop/resume
    audit    auditor, admin: the audit log

No or an unknown token answers 401; a known token whose role the policy leaves out, 403.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Final

from fastapi import Depends
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException

from api.deps import ServicesDep, SessionDep
from inventory.users import authenticate

POLICIES: Final[dict[str, tuple[str, ...]]] = {
    "public": (),
    "read": ("cs", "tech", "admin", "auditor"),
    "cs": ("cs", "tech", "admin"),
    "tech": ("tech", "admin"),
    "admin": ("admin",),
    "audit": ("auditor", "admin"),
}
ROLE_EXTENSION = "x-fleetd-policy"

_bearer = HTTPBearer(
    auto_error=False,
    description="A staff token made by `fleetd users add NAME --role ROLE` (shown once).",
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


@dataclass(frozen=True)
class Staff:
    """The caller: a staff user's name and role (never the token)."""

    name: str
    role: str


class _Policy:
    def __init__(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}: one of {', '.join(POLICIES)}")
        self.policy = policy
        self.roles = POLICIES[policy]

    def describe(self) -> str:
        if not self.roles:
            return "Access: **public** (no token)."
        return f"Access: **{self.policy}**, roles {', '.join(self.roles)}."


class _Public(_Policy):
    async def __call__(self) -> None:
        return None


class _Require(_Policy):
    async def __call__(self, services: ServicesDep, credentials: BearerDep) -> Staff:
        async with services.store.sessions() as session:
            return await self.check(session, credentials)

    async def check(
        self, session: AsyncSession, credentials: HTTPAuthorizationCredentials | None
    ) -> Staff:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise _unauthorized("no token: send 'Authorization: Bearer <token>'")
        user = await authenticate(session, credentials.credentials)
        staff = None if user is None else Staff(user.name, user.role)
        if staff is None:
            raise _unauthorized(
                "the token is unknown or its user is disabled: ask an admin for a new one "
                "(`fleetd users token NAME`, or POST /users/NAME/token)"
            )
        if staff.role not in self.roles:
            raise HTTPException(
                403,
                f"{staff.name} has role {staff.role}; this needs {self.policy} "
                f"({' or '.join(self.roles)}): ask someone with that role",
            )
        return staff


class _RequireInSession(_Require):
    """The same check, made in the request's read session (`SessionDep`): for a route that
    reads through that session anyway, one connection and one transaction per request."""

    async def __call__(  # type: ignore[override]
        self, session: SessionDep, credentials: BearerDep
    ) -> Staff:
        return await self.check(session, credentials)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def require(policy: str, *, in_session: bool = False) -> Any:
    """The dependency that enforces `policy` (see the module docstring) and gives the caller
    (`Staff`; None for public routes). `in_session`: check the token in the request's read
    session (`SessionDep`) rather than a session of its own, for a route that reads with it."""
    if policy == "public":
        return Depends(_Public(policy))
    return Depends(_RequireInSession(policy) if in_session else _Require(policy))


def _policies(dependant: Dependant) -> Iterator[_Policy]:
    if isinstance(dependant.call, _Policy):
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _policies(sub)


def route_policy(route: APIRoute) -> str:
    """The one policy a route declares; ValueError when it declares none or several."""
    found = {p.policy for p in _policies(route.dependant)}
    if len(found) != 1:
        methods = ",".join(sorted(route.methods or ()))
        what = "no access policy" if not found else f"several policies {sorted(found)}"
        raise ValueError(
            f"route {methods} {route.path} declares {what}: give it exactly one require(policy)"
        )
    return found.pop()


def document_policy(route: APIRoute) -> None:
    """Write the route's policy into its OpenAPI description and an extension field (once:
    the routers are shared by every app built)."""
    policy = route_policy(route)
    if (route.openapi_extra or {}).get(ROLE_EXTENSION) == policy:
        return
    text = _Policy(policy).describe()
    route.description = f"{route.description}\n\n{text}".strip() if route.description else text
    route.openapi_extra = {**(route.openapi_extra or {}), ROLE_EXTENSION: policy}
