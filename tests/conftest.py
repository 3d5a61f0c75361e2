"""Inventory stores for any test: SQLite in a temporary file and PostgreSQL, both migrated.

`store` (and `database_url`) run a test on both. PostgreSQL comes from
FLEETD_TEST_POSTGRES (default: postgresql://postgres@127.0.0.1:5432/test, trust auth): the
session makes its own database `fleetd_test_<random>` there and drops it at the end; each
test gets an empty `public` schema. Without a reachable server the PostgreSQL cases are
skipped, saying why.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import Store, open_store

T = TypeVar("T")
PG_ADMIN = os.environ.get("FLEETD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("FLEETD_TEST_REQUIRE_POSTGRES") == "1"


def run_aside(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine on its own loop in its own thread, away from pytest-asyncio's loops."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


async def _execute(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"fleetd_test_{secrets.token_hex(4)}"
    try:
        run_aside(lambda: _execute(PG_ADMIN, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        why = f"PostgreSQL at {PG_ADMIN} is not available: {exc}"
        if REQUIRE_POSTGRES:  # CI: the production store's tests must run, not vanish
            pytest.fail(f"{why} (FLEETD_TEST_REQUIRE_POSTGRES is set)")
        # `make test REQUIRE_POSTGRES=0`: a machine without PostgreSQL still runs every SQLite test
        pytest.skip(
            f"{why}; not required here (FLEETD_TEST_REQUIRE_POSTGRES is not 1): "
            "set FLEETD_TEST_POSTGRES to a server to run these"
        )
    base = PG_ADMIN.rsplit("/", 1)[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    run_aside(lambda: _execute(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema) on each store."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/fleetd.db"
        return
    url: str = request.getfixturevalue("postgres_url")
    dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
    yield url
    run_aside(lambda: _execute(dsn, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A migrated store, on SQLite and on PostgreSQL."""
    opened = open_store(database_url)
    await opened.migrate()
    yield opened
    await opened.close()


@pytest.fixture
def redactor() -> Redactor:
    return Redactor()


@pytest.fixture
def box(redactor: Redactor) -> SecretBox:
    return SecretBox(secrets.token_bytes(32), redactor=redactor)
