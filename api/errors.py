"""The one place the error tree of `inventory.errors` becomes HTTP.

    RuleViolation              422  {"error": "rule_violation", field, value, rule, hint}
    request validation         422  {"error": "invalid_request", field, value, rule, problems}
    NotFound                   404
    Conflict                   409
    SecretKeyError, StoreError 503  (and a database that cannot be reached)
    UnitError                  502  (names the unit's serial)
    HTTPException              its own status (401, 403, 404 for an unknown path …)

Every body is JSON with `error` (a code for programs) and `message` (one sentence for staff).
A value is never echoed for a field whose name says it is secret, and every text goes through
the daemon's redactor first. Anything else is a bug: 500 with a reference, logged in full.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException

from inventory.errors import (
    Conflict,
    FleetError,
    NotFound,
    RuleViolation,
    SecretKeyError,
    StoreError,
    UnitError,
)
from inventory.redact import Redactor

log = logging.getLogger("fleetd.api")
_SECRET_FIELD = re.compile(r"(?i)password|passphrase|passwd|secret|psk|private_key|token")
_LOCATIONS = ("body", "query", "path", "header", "cookie")


class ErrorOut(BaseModel):
    error: str
    message: str
    field: str | None = None
    value: Any = None
    rule: str | None = None
    hint: str | None = None
    problems: list[dict[str, Any]] | None = None


# documented on every router, so /docs and schema-driven clients know the error shape
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No token, or an unknown one."},
    403: {"model": ErrorOut, "description": "The caller's role may not do this."},
    404: {"model": ErrorOut, "description": "No such customer, unit, operation …"},
    409: {"model": ErrorOut, "description": "The request clashes with what is stored."},
    422: {"model": ErrorOut, "description": "A field breaks a rule: field, value and rule."},
    502: {"model": ErrorOut, "description": "A unit could not be read or changed."},
    503: {"model": ErrorOut, "description": "The database or the secret key is unusable."},
}


def _redactor(request: Request) -> Redactor:
    services = getattr(request.app.state, "services", None)
    return services.redactor if services is not None else Redactor()


def _shown(field: str | None, value: Any, redactor: Redactor) -> Any:
    if value is None or (field and _SECRET_FIELD.search(field)):
        return None
    value = jsonable_encoder(value, custom_encoder={bytes: lambda b: b.decode("latin-1")})
    if isinstance(value, str):
        return redactor.redact(value)
    return value


def _answer(
    status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        ErrorOut(**body).model_dump(exclude_none=True),
        status_code=status,
        headers=dict(headers) if headers else None,
    )


async def _fleet_error(request: Request, exc: Exception) -> JSONResponse:
    redactor = _redactor(request)
    message = redactor.redact(str(exc))
    if isinstance(exc, RuleViolation):
        body: dict[str, Any] = {
            "error": "rule_violation",
            "message": message,
            "field": exc.field,
            "value": _shown(exc.field, exc.value, redactor),
            "rule": redactor.redact(exc.rule),
            "hint": redactor.redact(exc.hint) or None,
        }
        return _answer(422, body)
    if isinstance(exc, NotFound):
        return _answer(404, {"error": "not_found", "message": message})
    if isinstance(exc, Conflict):
        return _answer(409, {"error": "conflict", "message": message})
    if isinstance(exc, SecretKeyError | StoreError):
        log.error("%s: %s", type(exc).__name__, message)
        return _answer(503, {"error": "unavailable", "message": message})
    if isinstance(exc, UnitError):
        body = {"error": "unit_error", "message": message, "field": "serial", "value": exc.serial}
        return _answer(502, body)
    log.error("unmapped %s: %s", type(exc).__name__, message)
    return _answer(500, {"error": "internal", "message": message})


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    redactor = _redactor(request)
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where = loc[1:] if loc and loc[0] in _LOCATIONS else loc
        field = ".".join(where) or (loc[0] if loc else "request")
        problems.append(
            {
                "field": field,
                "value": _shown(field, error.get("input"), redactor),
                "rule": redactor.redact(str(error.get("msg", "is not valid"))),
            }
        )
    first = problems[0] if problems else {"field": "request", "value": None, "rule": "invalid"}
    message = "; ".join(f"{p['field']}: {p['rule']}" for p in problems) or "invalid request"
    body = {
        "error": "invalid_request",
        "message": f"{message} (the request format is in /docs)",
        **first,
        "problems": problems,
    }
    return _answer(422, body)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    codes = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    body = {"error": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)}
    return _answer(exc.status_code, body, headers=exc.headers)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    cause = getattr(exc, "orig", None) or exc
    first = str(cause).strip().splitlines()
    message = _redactor(request).redact(first[0] if first else type(cause).__name__)
    log.error("database unavailable: %s", message)
    return _answer(
        503,
        {"error": "unavailable", "message": f"the database cannot be used: {message}; try again"},
    )


async def _bug(request: Request, exc: Exception) -> JSONResponse:
    reference = secrets.token_hex(4)
    log.error(
        "internal error %s on %s %s", reference, request.method, request.url.path, exc_info=exc
    )
    return _answer(
        500,
        {
            "error": "internal",
            "message": f"internal error {reference}: this is a bug in fleetd; the daemon's log "
            "has the details under that reference",
        },
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FleetError, _fleet_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(InterfaceError, _database_down)
    app.add_exception_handler(OSError, _database_down)
    app.add_exception_handler(Exception, _bug)
