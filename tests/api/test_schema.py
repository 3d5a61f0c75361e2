"""The API against its own OpenAPI document: schema-driven requests never meet a server error.

Schemathesis generates requests for every operation (as admin, who may call all of them) over
a small seeded inventory on SQLite, in-process; a bounded number of examples keeps it quick.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from api.app import create_app
from api.deps import Services
from drivers.base import UnitState, UnitTarget
from fleetd.clock import ManualClock
from inventory.errors import UnitError, Unreachable
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import open_store
from tests.api.conftest import CANARY, NOW, seed
from tests.conftest import run_aside

MAX_EXAMPLES = 12


class NoUnits:
    """Live reads answer at once: no unit is on the network in this test."""

    async def read(self, targets: Sequence[UnitTarget]) -> dict[str, UnitState | UnitError]:
        return {t.serial: Unreachable(t.serial, "not on this network") for t in targets}


@pytest.fixture(scope="module")
def admin_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('schema')}/fleetd.db"
    box = SecretBox(secrets.token_bytes(32), redactor=Redactor())

    async def prepare() -> str:
        async with open_store(url) as store:
            await store.migrate()
            return (await seed(store, box)).tokens["admin"]

    token = run_aside(prepare)
    # a store of its own, first used on the loop the requests run on (its connections are
    # tied to that loop); the app's lifespan releases them
    services = Services(
        store=open_store(url),
        box=box,
        redactor=Redactor(),
        clock=ManualClock(NOW),
        live_reader=NoUnits(),
        poll_seconds=0.0,
    )
    yield create_app(services), token
    schemathesis.python.asgi.shutdown_lifespans()


def test_no_generated_request_meets_a_server_error(admin_token: tuple[Any, str]) -> None:
    app, token = admin_token
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40

    for operation, mode in itertools.product(operations, GenerationMode):

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: Any) -> None:
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])
            if "pdf" not in response.headers.get("content-type", ""):
                assert CANARY not in response.text

        try:
            no_server_error()
        except Unsatisfiable:
            if mode is GenerationMode.POSITIVE:
                raise
            # nothing of this route can be made invalid (no parameters, no body)
