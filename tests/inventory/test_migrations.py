"""Migrations are the only way the schema changes, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect
from sqlalchemy import text as sql_text

from inventory import audit, operations, repo, users  # noqa: F401 - every table on Base.metadata
from inventory.errors import StoreError
from inventory.models import Base, Customer
from inventory.records import CustomerData
from inventory.store import Store, migrations_head, normalize_url, open_store


async def test_the_schema_is_current_after_migrating_and_not_before(database_url: str) -> None:
    async with open_store(database_url) as store:
        assert await store.check_current() is False
        assert await store.revision() is None
        with pytest.raises(StoreError, match="run `fleetd migrate`"):
            await store.require_current()
        await store.migrate()
        assert await store.check_current() is True
        assert await store.revision() == store.head() == "0006"
        await store.migrate()  # at head already: nothing to do
        await store.require_current()


def test_the_head_read_from_the_scripts_is_alembics(store: Store) -> None:
    script = ScriptDirectory.from_config(store.alembic_config())
    assert migrations_head() == script.get_current_head()


async def test_the_revision_read_directly_is_alembics(store: Store) -> None:
    async with store.engine.connect() as conn:
        alembics = await conn.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision()
        )
    assert await store.revision() == alembics == store.head()


def _diff(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_the_migrations_build_exactly_the_models(store: Store) -> None:
    async with store.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables >= {"customers", "units", "lines", "contract_items", "alembic_version"}


async def test_the_migrations_go_down_and_up_again(store: Store) -> None:
    await store.downgrade("base")
    assert await store.revision() is None
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables <= {"alembic_version"}
    await store.migrate()
    assert await store.check_current()


async def test_timestamps_are_timezone_aware_utc_on_both_stores(store: Store) -> None:
    async with store.transaction() as session:
        customer = (await repo.upsert_customer(session, CustomerData("138301482"))).obj
        tokyo = datetime(2025, 3, 31, 23, 59, tzinfo=timezone(timedelta(hours=9)))
        customer.created_at = tokyo
    async with store.sessions() as session:
        stored = await session.get(Customer, customer.id)
        assert stored is not None
        assert stored.created_at == tokyo
        assert stored.created_at.tzinfo == UTC
        assert stored.created_at.hour == 14
        assert stored.updated_at.tzinfo == UTC


async def test_sqlite_keeps_timestamps_as_sortable_utc_text(tmp_path: Path) -> None:
    # SQLite compares timestamps as text (due operations, look-ups by time): every one is
    # written in the one full form, UTC, microseconds included even when they are zero
    async with open_store(f"sqlite+aiosqlite:///{tmp_path}/f.db") as store:
        await store.migrate()
        await _store_and_read_text(store)


async def _store_and_read_text(store: Store) -> None:
    tokyo = datetime(2025, 3, 31, 23, 59, tzinfo=timezone(timedelta(hours=9)))
    async with store.transaction() as session:
        customer = (await repo.upsert_customer(session, CustomerData("138301482"))).obj
        customer.created_at = tokyo
    async with store.sessions() as session:
        text = await session.scalar(
            sql_text("SELECT created_at FROM customers WHERE id = :id"), {"id": customer.id}
        )
    assert text == "2025-03-31 14:59:00.000000"


async def test_a_naive_timestamp_is_refused(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with store.transaction() as session:
            customer = (await repo.upsert_customer(session, CustomerData("138301482"))).obj
            customer.created_at = datetime(2025, 3, 31, 23, 59)
            await session.flush()


def test_urls_are_made_async_and_others_refused() -> None:
    assert normalize_url("sqlite:///var/fleetd.db").drivername == "sqlite+aiosqlite"
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    with pytest.raises(StoreError, match="not supported"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(StoreError, match="not a database URL"):
        normalize_url("fleetd.db")


async def test_an_unreachable_database_is_one_clear_error() -> None:
    async with open_store("postgresql+asyncpg://postgres:pw@127.0.0.1:1/nope") as store:
        with pytest.raises(StoreError, match="cannot open the database") as caught:
            await store.check_current()
    assert "pw" not in str(caught.value)  # the password is never shown


async def test_the_sqlite_directory_is_made_and_foreign_keys_enforced(tmp_path: Any) -> None:
    async with open_store(f"sqlite+aiosqlite:///{tmp_path}/var/fleetd.db") as store:
        await store.migrate()
        async with store.engine.connect() as conn:
            result = await conn.exec_driver_sql("PRAGMA foreign_keys")
            assert result.scalar() == 1
    assert (tmp_path / "var" / "fleetd.db").exists()
