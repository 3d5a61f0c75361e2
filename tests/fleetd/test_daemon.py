"""`fleetd serve`: it refuses to start with one clear line, or starts every part and stops
cleanly."""

from __future__ import annotations

import asyncio
import base64
import gc
import platform
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fleetd.cli import CliState, create_app
from fleetd.daemon import FULL_COLLECTION_EVERY, build, limit_malloc_arenas
from fleetd.settings import Settings
from inventory.redact import Redactor
from inventory.store import open_store

KEY = base64.b64encode(b"\x05" * 32).decode()


def serve(settings: Settings) -> tuple[int, str]:
    result = CliRunner().invoke(
        create_app(), ["serve", "--no-api", "--no-bastion"], obj=CliState(settings, Redactor())
    )
    return result.exit_code, result.stderr


def test_serve_without_a_secret_key_says_what_to_do(tmp_path: Path) -> None:
    code, err = serve(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/f.db"))
    assert code == 2
    assert "FLEETD_SECRET_KEY" in err and len(err.strip().splitlines()) == 1


def test_serve_on_a_database_not_migrated_says_run_migrate(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/f.db", secret_key=KEY)
    code, err = serve(settings)
    assert code == 2
    assert "run `fleetd migrate`" in err


async def test_the_daemon_serves_the_api_and_the_bastion_and_stops_cleanly(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/f.db"
    async with open_store(url) as store:
        await store.migrate()
    settings = Settings(
        database_url=url,
        secret_key=KEY,
        api_port=0,
        bastion_port=0,
        state_dir=tmp_path / "state",
    )
    said: list[str] = []
    thresholds = gc.get_threshold()
    daemon = await build(settings, Redactor())
    daemon.announce = said.append
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.ready.wait(), 20)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.api_port}") as client:
        ready = (await client.get("/readyz")).json()
    assert ready["ready"] is True and ready["scheduler"] == "leader"
    assert daemon.bastion_port and (tmp_path / "state" / "bastion_host_key").exists()
    assert any("this daemon runs the scheduler" in line for line in said)
    # what start-up built is out of the collector's full walks while the daemon serves
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[2] == FULL_COLLECTION_EVERY  # and full collections are rarer
    daemon.stop()
    await asyncio.wait_for(task, 20)
    assert gc.get_freeze_count() == 0  # and may be collected again once it stops
    assert gc.get_threshold() == thresholds
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{daemon.api_port}/livez")


def test_the_malloc_arenas_are_capped_unless_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the operator's own setting stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas() is True
