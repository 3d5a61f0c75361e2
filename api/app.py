"""The control API: `create_app(services)` builds it; nothing is built at import time.

Thin routes over the daemon, one router per resource (`api/routers`). Each request gets an id
(the caller's `X-Request-ID`, or a new one) that is answered in the same header and written
with every audit entry and operation the request makes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import document_policy
from api.deps import Services
from api.errors import install_error_handlers
from api.routers import (
    audit,
    batches,
    changes,
    customers,
    health,
    imports,
    monthend,
    operations,
    units,
    users,
)

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

DESCRIPTION = """\
The control API of fleetd, the fleet daemon for U-SPOT shop Wi-Fi routers.

Send a staff token as `Authorization: Bearer <token>` (made by
`fleetd users add NAME --role ROLE`). Each route says which roles may call it. Change
requests answer 202 with the operations they queued; follow them under `/operations`.
Errors are JSON naming the field, the value and the rule broken.
"""


class RequestIdMiddleware:
    """Give every request an id, answer it in `X-Request-ID`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for name, value in scope.get("headers", ()):
            if name.lower() == b"x-request-id":
                given = value.decode("latin-1")
        # an id staff can search the audit log for; anything else is replaced, not trusted
        request_id = given if given and _REQUEST_ID.fullmatch(given) else _new_id()
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _new_id() -> str:
    return "r-" + secrets.token_hex(8)


def create_app(services: Services) -> FastAPI:
    """The API over `services`. Every route must declare its access policy (ValueError)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        yield {}
        # the pooled connections belong to the server's event loop: released with it
        await services.store.engine.dispose()

    app = FastAPI(
        title="fleetd control API",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.services = services
    for module in (
        health,
        customers,
        changes,
        units,
        operations,
        batches,
        imports,
        monthend,
        audit,
        users,
    ):
        app.include_router(module.router)
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            document_policy(context.original_route)
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    return app
