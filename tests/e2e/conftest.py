"""End-to-end runs share the session's PostgreSQL database with the other tests: each one
leaves an empty schema behind, as the `database_url` fixture does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import _execute, run_aside


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    run_aside(lambda: _execute(dsn, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))
    yield postgres_url
    run_aside(lambda: _execute(dsn, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public"))
