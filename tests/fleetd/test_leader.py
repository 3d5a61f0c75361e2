"""Exactly one daemon runs the scheduler: the advisory lock on this machine's PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fleetd.leader import LOCK_NAME, Leadership, lock_key


@pytest.fixture
async def engines(postgres_url: str) -> AsyncIterator[tuple[AsyncEngine, AsyncEngine]]:
    """Two daemons' engines on one PostgreSQL database."""
    first, second = create_async_engine(postgres_url), create_async_engine(postgres_url)
    yield first, second
    await first.dispose()
    await second.dispose()


async def _holders(postgres_url: str) -> list[int]:
    """The backend pids holding the scheduler's advisory lock."""
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        key = lock_key()
        rows = await conn.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = $1 AND objid = $2",
            (key >> 32) & 0xFFFFFFFF,
            key & 0xFFFFFFFF,
        )
        return [row["pid"] for row in rows]
    finally:
        await conn.close()


async def _kill(postgres_url: str, pid: int) -> None:
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_one_wins_and_the_other_takes_over_when_it_dies(
    engines: tuple[AsyncEngine, AsyncEngine], postgres_url: str
) -> None:
    one, two = Leadership(engines[0]), Leadership(engines[1])
    try:
        assert await one.try_once() is True
        assert await two.try_once() is False  # a standby: it keeps trying
        assert await two.try_once() is False
        assert (one.is_leader, two.is_leader) == (True, False)
        assert await one.try_once() is True  # the leader's check keeps it leader
        holders = await _holders(postgres_url)
        assert len(holders) == 1

        await _kill(postgres_url, holders[0])  # the leader's daemon dies: its session ends
        assert await two.try_once() is True
        assert await one.try_once() is False  # its connection is gone, and the lock with it
        assert (one.is_leader, two.is_leader) == (False, True)
        assert await one.try_once() is False  # it comes back as a standby
    finally:
        await one.release()
        await two.release()
    assert await _holders(postgres_url) == []


async def test_a_released_lock_goes_to_the_standby_at_once(
    engines: tuple[AsyncEngine, AsyncEngine], postgres_url: str
) -> None:
    one, two = Leadership(engines[0]), Leadership(engines[1])
    assert await one.try_once() and not await two.try_once()
    await one.release()  # a daemon shutting down gives the lock up
    assert not one.is_leader
    assert await two.try_once() is True
    await two.release()
    assert await _holders(postgres_url) == []
    assert repr(two) == f"<Leadership {LOCK_NAME} standby>"


async def test_the_loop_calls_back_on_gaining_and_losing(
    engines: tuple[AsyncEngine, AsyncEngine], postgres_url: str
) -> None:
    events: list[str] = []
    gained = asyncio.Event()

    async def on_gain() -> None:
        events.append("gain")
        gained.set()

    async def on_lose() -> None:
        events.append("lose")

    one = Leadership(engines[0], retry_seconds=3600)
    loop = asyncio.create_task(one.acquire_loop(on_gain, on_lose))
    await asyncio.wait_for(gained.wait(), 10)
    assert one.is_leader and events == ["gain"]
    loop.cancel()  # the daemon stops
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert events == ["gain", "lose"]
    assert await _holders(postgres_url) == []  # released on the way out
    two = Leadership(engines[1])
    assert await two.try_once() is True
    await two.release()


async def test_different_names_are_different_locks(
    engines: tuple[AsyncEngine, AsyncEngine],
) -> None:
    one, other = Leadership(engines[0]), Leadership(engines[1], name="fleetd-other")
    assert lock_key() != lock_key("fleetd-other")
    assert -(2**63) <= lock_key() < 2**63
    try:
        assert await one.try_once() and await other.try_once()
    finally:
        await one.release()
        await other.release()


async def test_on_sqlite_the_only_daemon_is_the_leader(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/fleetd.db")
    try:
        first, second = Leadership(engine), Leadership(engine)
        assert await first.try_once() and await second.try_once()
        assert first.is_leader
        await first.release()
    finally:
        await engine.dispose()
