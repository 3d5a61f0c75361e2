"""Which daemon runs the scheduler: exactly one per database.

On PostgreSQL the leader holds a session-level advisory lock (``pg_try_advisory_lock``, key
derived from "fleetd-scheduler") on a connection of its own, kept open and in autocommit so
it never sits idle in a transaction. Standbys try for the lock every few seconds. When the
leader dies, PostgreSQL ends its session and the lock with it, and the next standby to try
takes over; a leader whose connection breaks stops being leader at its next check. For the
few seconds in between two daemons may both schedule: harmless, because every job
reconciles under idempotency keys (`fleetd.scheduler`).

On SQLite there is one daemon per database file, and it is always the leader.

    leadership = Leadership(store.engine)
    await leadership.acquire_loop(on_gain=scheduler.start, on_lose=scheduler.stop)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("fleetd.leader")

LOCK_NAME = "fleetd-scheduler"
RETRY_SECONDS = 5.0
CHECK_TIMEOUT = 5.0  # a connection that does not answer a check in time counts as lost
_TRY = text("SELECT pg_try_advisory_lock(:key)")
_UNLOCK = text("SELECT pg_advisory_unlock(:key)")
_CHECK = text("SELECT 1")

Callback = Callable[[], Awaitable[Any]]


def lock_key(name: str = LOCK_NAME) -> int:
    """The advisory lock key for `name`: the first 8 bytes of its SHA-256, as a signed bigint."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Leadership:
    """Whether this daemon runs the scheduler; `try_once()` checks or tries once,
    `acquire_loop()` keeps doing so and calls back on every change."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        name: str = LOCK_NAME,
        retry_seconds: float = RETRY_SECONDS,
        check_timeout: float = CHECK_TIMEOUT,
    ) -> None:
        self._engine = engine
        self.name = name
        self._key = lock_key(name)
        self.retry_seconds = retry_seconds
        self._check_timeout = check_timeout
        self._conn: AsyncConnection | None = None
        self._leader = False

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def _shared(self) -> bool:
        # a lock only means something where several daemons share one server
        return self._engine.dialect.name == "postgresql"

    def __repr__(self) -> str:
        return f"<Leadership {self.name} {'leader' if self._leader else 'standby'}>"

    async def try_once(self) -> bool:
        """The leader checks that its connection (and so its lock) is alive; a standby tries
        to take the lock. Returns whether this daemon is the leader now."""
        if not self._shared:
            self._leader = True
            return True
        try:
            if self._leader:
                await self._run(_CHECK)
            else:
                self._leader = bool(await self._run(_TRY, {"key": self._key}))
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            if self._leader:
                log.warning("lost the %s lock: its connection failed (%s)", self.name, exc)
            else:
                log.warning("cannot try the %s lock: %s", self.name, exc)
            self._leader = False
            await self._discard()
        return self._leader

    async def acquire_loop(self, on_gain: Callback, on_lose: Callback) -> None:
        """Try every `retry_seconds` until cancelled, awaiting `on_gain` when this daemon
        becomes the leader and `on_lose` when it stops being it (also when cancelled)."""
        try:
            while True:
                was = self._leader
                now = await self.try_once()
                if now and not was:
                    log.info("this daemon now runs the scheduler (%s)", self.name)
                    await on_gain()
                elif was and not now:
                    await on_lose()
                await asyncio.sleep(self.retry_seconds)
        finally:
            was = self._leader
            await self.release()
            if was:
                await on_lose()

    async def release(self) -> None:
        """Give the lock up (a standby may take it at once) and close the connection."""
        was, self._leader = self._leader, False
        conn = self._conn
        if conn is None:
            return
        if was:
            try:
                await asyncio.wait_for(
                    conn.execute(_UNLOCK, {"key": self._key}), self._check_timeout
                )
            except (SQLAlchemyError, OSError, TimeoutError):
                await self._discard()  # the session ends, and the lock with it
                return
        self._conn = None
        await conn.close()

    async def _run(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        if self._conn is None:
            conn = await asyncio.wait_for(self._engine.connect(), self._check_timeout)
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        result = await asyncio.wait_for(self._conn.execute(statement, params), self._check_timeout)
        return result.scalar()

    async def _discard(self) -> None:
        """Drop the connection without returning it to the pool: a pooled session could
        otherwise keep a lock this object no longer knows it holds."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
            await conn.invalidate()
        with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
            await conn.close()
