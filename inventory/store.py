"""Opening the inventory database: `open_store(url)` gives a `Store` (engine + sessions).

SQLite through aiosqlite is the embedded default (`sqlite+aiosqlite:///var/fleetd.db`);
PostgreSQL through asyncpg is the production store (`postgresql+asyncpg://…`). The schema
is made and changed by the Alembic migrations in `inventory/migrations` only, run by
`await store.migrate()`; `await store.check_current()` says whether the database is at the
head revision, and `await store.require_current()` refuses to go on when it is not.

Nothing here runs at import time: a store exists only once a caller opens one.

SQLite is set up for safety: SQLAlchemy emits BEGIN itself, so DDL and reads are
transactional (the sqlite3 driver would otherwise autocommit them); foreign keys are
enforced; the journal is WAL, so readers do not block the writer and a crash loses nothing
that was committed.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from inventory.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: daemons starting together migrate one after the other
_MIGRATION_LOCK = 0x666C656574640001
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps
_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SUPPORTED = ("sqlite+aiosqlite", "postgresql+asyncpg")
# Execution options of a connection that will write: on SQLite its transaction takes the write
# lock at BEGIN (BEGIN IMMEDIATE), so a concurrent writer waits instead of failing half-way
# on a stale snapshot. PostgreSQL ignores them.
WRITE_LOCK = {"fleetd_sqlite_begin": "IMMEDIATE"}


def normalize_url(url: str | URL) -> URL:
    """The async form of a database URL: `sqlite:///…` → `sqlite+aiosqlite:///…`,
    `postgresql://…` → `postgresql+asyncpg://…`; anything else is refused."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"{url!r} is not a database URL: use sqlite+aiosqlite:///path/fleetd.db or "
            "postgresql+asyncpg://user@host/db"
        ) from None
    drivername = _DRIVERS.get(parsed.drivername, parsed.drivername)
    if drivername == "postgres":
        drivername = "postgresql+asyncpg"
    if drivername not in _SUPPORTED:
        raise StoreError(
            f"database driver {parsed.drivername!r} is not supported: use "
            "sqlite+aiosqlite:///path/fleetd.db or postgresql+asyncpg://user@host/db"
        )
    return parsed.set(drivername=drivername)


def shown(url: URL) -> str:
    """The URL as it may appear in messages and logs: password hidden."""
    return url.render_as_string(hide_password=True)


@dataclass
class Store:
    """An open inventory database. Use `store.sessions()` for an `AsyncSession`, or
    `store.transaction()` for a session inside one transaction (commit on success)."""

    url: URL
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Store({shown(self.url)!r})"

    @asynccontextmanager
    async def transaction(self, *, write_lock: bool = False) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: committed when the block ends, rolled back on an
        error. `write_lock` takes SQLite's write lock at once (for a batch of writes)."""
        async with self.sessions() as session, session.begin():
            if write_lock:
                await session.connection(execution_options=WRITE_LOCK)
            yield session

    def alembic_config(self) -> Config:
        """Alembic's configuration for this store; migrations get the connection through
        `attributes["connection"]`, so the URL (and its password) is not put in it."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return cfg

    def head(self) -> str | None:
        return migrations_head()

    async def revision(self) -> str | None:
        """The database's current schema revision (None: never migrated)."""
        async with self._connect() as conn:
            return await conn.run_sync(_current_revision)

    async def check_current(self) -> bool:
        """Whether the schema is at the head revision of this fleetd's migrations."""
        return await self.revision() == self.head()

    async def require_current(self) -> None:
        current, head = await self.revision(), self.head()
        if current != head:
            where = "has no fleetd schema" if current is None else f"is at revision {current}"
            raise StoreError(
                f"the database {shown(self.url)} {where}, this fleetd needs {head}: "
                "run `fleetd migrate`"
            )

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema (to the head by default), all of it in one transaction.

        Daemons starting together may all call it: on PostgreSQL they queue on an advisory
        lock, on SQLite on the write lock, and the later ones find the schema current. Within
        one process, run one migration at a time (Alembic's context is process-wide).
        """
        async with self._connect() as conn:
            conn = await conn.execution_options(**WRITE_LOCK)
            if self.dialect == "postgresql":
                lock = text("SELECT pg_advisory_xact_lock(:key)")
                await conn.execute(lock, {"key": _MIGRATION_LOCK})
            await conn.run_sync(self._run, "upgrade", revision)
            await conn.commit()

    async def downgrade(self, revision: str) -> None:
        async with self._connect() as conn:
            await conn.run_sync(self._run, "downgrade", revision)
            await conn.commit()

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _run(self, conn: Connection, action: str, revision: str) -> None:
        from alembic import command

        cfg = self.alembic_config()
        cfg.attributes["connection"] = conn
        if action == "upgrade":
            command.upgrade(cfg, revision)
        else:
            command.downgrade(cfg, revision)

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[AsyncConnection]:
        try:
            conn = await self.engine.connect()
        except (DBAPIError, OSError) as exc:
            raise StoreError(f"cannot open the database {shown(self.url)}: {_reason(exc)}") from exc
        try:
            yield conn
        finally:
            await conn.close()


def _reason(exc: BaseException) -> str:
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def _current_revision(conn: Connection) -> str | None:
    """The revision in Alembic's version table (None: no table, or no row in it).

    Read directly rather than through Alembic, whose import (its DDL layer, Mako) a daemon
    that only checks the schema does not need."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()  # noqa: S608
    if len(rows) > 1:
        raise StoreError(f"the database has several schema heads ({', '.join(sorted(rows))})")
    return rows[0] if rows else None


@functools.cache
def migrations_head() -> str | None:
    """The head revision of `MIGRATIONS`: the one no other revision revises.

    Read from the scripts' `revision` and `down_revision` assignments, without importing
    Alembic (tests/inventory/test_migrations.py checks it against Alembic's answer)."""
    revisions: dict[str, str | tuple[str, ...] | None] = {}
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        found: dict[str, Any] = {}
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                found[target.id] = ast.literal_eval(value)
        if "revision" in found:
            revisions[found["revision"]] = found.get("down_revision")
    revised: set[str] = set()
    for down in revisions.values():
        if isinstance(down, str):
            revised.add(down)
        elif down:
            revised.update(down)
    heads = sorted(set(revisions) - revised)
    if len(heads) > 1:
        raise StoreError(f"the migrations have several heads ({', '.join(heads)})")
    return heads[0] if heads else None


def open_store(url: str | URL, *, echo: bool = False, pool_size: int = 5) -> Store:
    """Open (lazily: no connection is made yet) the store at `url`."""
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.drivername.startswith("sqlite"):
        _ensure_sqlite_dir(parsed)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_size"] = pool_size
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(parsed, **kwargs)
    if parsed.drivername.startswith("sqlite"):
        _configure_sqlite(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    return Store(url=parsed, engine=engine, sessions=sessions)


def _ensure_sqlite_dir(url: URL) -> None:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # take transaction control away from the sqlite3 driver (see the module docstring)
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("fleetd_sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())
