"""Who may call what: every route, every role, no token and a bad token."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute, iter_route_contexts

from api.app import create_app
from api.auth import POLICIES, route_policy
from api.routers import health
from tests.api.conftest import CANARY, GUEST_CANARY, ROLES, UNIT_PASSWORD, Api
from tests.api.walk import EXAMPLES, call


def _routes(api: Api) -> list[tuple[str, str, str]]:
    found = []
    for context in iter_route_contexts(api.app.routes):
        route = context.original_route
        if isinstance(route, APIRoute):
            for method in sorted(route.methods):
                found.append((method, context.path, route_policy(route)))
    return found


async def test_every_route_answers_every_role_as_its_policy_says(api: Api) -> None:
    routes = _routes(api)
    assert {(m, p) for m, p, _ in routes} == set(EXAMPLES), "a route without an example"
    identities = {**{role: api.as_(role) for role in ROLES}, "no token": {}}
    identities["bad token"] = {"Authorization": "Bearer fleetd_not-a-real-token"}
    wrong = []
    for method, path, policy in routes:
        example = EXAMPLES[(method, path)]
        for who, headers in identities.items():
            response = await call(api, method, path, headers)
            if policy == "public" or who in POLICIES[policy]:
                expected = example.ok
            elif who in ("no token", "bad token"):
                expected = 401
            else:
                expected = 403
            if response.status_code != expected:
                wrong.append(f"{method} {path} as {who}: {response.status_code} {response.text}")
            elif expected == example.ok:
                assert response.headers["content-type"].startswith(example.content_type)
            elif expected in (401, 403):
                body = response.json()
                assert body["error"] in ("unauthorized", "forbidden") and body["message"]
    assert not wrong, "\n".join(wrong)


async def test_a_forbidden_answer_says_which_role_is_needed(api: Api) -> None:
    response = await api.client.post("/customers/138301482/cutover", headers=api.as_("cs"))
    assert response.status_code == 403
    assert response.json()["message"] == (
        "cs-user has role cs; this needs tech (tech or admin): ask someone with that role"
    )
    missing = await api.client.get("/customers/138301482")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"


async def test_a_disabled_user_is_refused_at_once(api: Api) -> None:
    headers = api.as_("tech")
    assert (await api.client.get("/operations", headers=headers)).status_code == 200
    disabled = await api.client.post("/users/tech-user/disable", headers=api.as_("admin"))
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True
    assert (await api.client.get("/operations", headers=headers)).status_code == 401


async def test_no_answer_and_no_log_line_ever_holds_a_passphrase_or_password(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = (CANARY, GUEST_CANARY, UNIT_PASSWORD, *api.seeded.tokens.values())
    pdfs = 0
    for method, path, policy in _routes(api):
        for role in ROLES:
            if policy != "public" and role not in POLICIES[policy]:
                continue
            response = await call(api, method, path, api.as_(role))
            assert response.status_code < 300, (method, path, response.text)
            if response.headers["content-type"] == "application/pdf":
                pdfs += 1  # the one answer allowed to carry the business passphrase
                continue
            for secret in secrets:
                assert secret not in response.text, (method, path, role)
    assert pdfs == 3  # cs, tech and admin asked for a registration notice
    for secret in (CANARY, GUEST_CANARY, UNIT_PASSWORD):
        assert secret not in caplog.text


async def test_every_route_lists_its_policy_in_the_openapi_document(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            policy = operation["x-fleetd-policy"]
            assert policy in POLICIES, (method, path)
            assert f"Access: **{policy}**" in operation["description"]
    cutover = schema["paths"]["/customers/{code}/cutover"]["post"]
    assert "roles tech, admin" in cutover["description"]


def test_an_app_with_a_route_that_declares_no_policy_is_refused(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    careless = APIRouter()

    @careless.get("/oops")
    async def oops() -> dict[str, str]:
        return {}

    monkeypatch.setattr(health, "router", careless)
    with pytest.raises(ValueError, match=r"route GET /oops declares no access policy"):
        create_app(api.services)
