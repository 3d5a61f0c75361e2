"""The error tree becomes HTTP in one place: status, and JSON naming field, value and rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fleetd.workflows.base import GUEST_ROTATE, RequestContext
from inventory.errors import Conflict, SecretKeyError, StoreError, Unreachable
from tests.api.conftest import CODE, Api


def raising(error: Exception) -> Any:
    async def request(
        session: Any, ctx: RequestContext, target: str, params: Mapping[str, Any]
    ) -> list[Any]:
        raise error

    return request


async def test_each_kind_of_error_has_its_status_and_says_what_happened(api: Api) -> None:
    cases = [
        (Unreachable("US01AP000001", "no route to host"), 502, "unit_error"),
        (StoreError("the database is at revision 0003, run `fleetd migrate`"), 503, "unavailable"),
        (SecretKeyError("no secret key: set FLEETD_SECRET_KEY"), 503, "unavailable"),
        (Conflict("a cutover of US01AP000001 is running"), 409, "conflict"),
    ]
    for error, status, code in cases:
        api.services.requests = {GUEST_ROTATE: raising(error)}
        answer = await api.client.post(f"/customers/{CODE}/guest-rotate", headers=api.as_("tech"))
        assert answer.status_code == status, answer.text
        assert answer.json()["error"] == code
        assert answer.json()["message"] == str(error)
    assert answer.json().keys() == {"error", "message"}
    assert api.woken == []


async def test_a_unit_error_names_the_unit(api: Api) -> None:
    api.services.requests = {GUEST_ROTATE: raising(Unreachable("US01AP000001", "timed out"))}
    answer = await api.client.post(f"/customers/{CODE}/guest-rotate", headers=api.as_("tech"))
    assert answer.json() == {
        "error": "unit_error",
        "message": "US01AP000001: timed out",
        "field": "serial",
        "value": "US01AP000001",
    }


async def test_a_malformed_request_names_each_bad_field(api: Api) -> None:
    answer = await api.client.get(
        "/operations", params={"limit": "lots", "state": "done"}, headers=api.as_("cs")
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["error"] == "invalid_request"
    assert {p["field"] for p in body["problems"]} == {"limit", "state"}
    assert body["message"].endswith("(the request format is in /docs)")
    unknown = await api.client.get("/nowhere", headers=api.as_("cs"))
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"


async def test_a_request_id_that_is_not_a_plain_word_is_replaced(api: Api) -> None:
    answer = await api.client.get("/livez", headers={"X-Request-ID": "bad id\twith spaces"})
    assert answer.headers["x-request-id"].startswith("r-")
    answer = await api.client.get("/livez")
    assert answer.headers["x-request-id"].startswith("r-")
