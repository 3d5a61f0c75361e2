"""A real control API for fleetctl's tests: uvicorn on 127.0.0.1 (a free port) in a thread
of its own, over a seeded SQLite inventory (the shop of tests/api/conftest.py and one staff
user per role).

With `fleet_base`, a simulated fleet (one V6-ready parent with a child) is served on that
corner of 127.0.0.0/8 and imported, and a real engine runs its operations over SSH. The
engine runs whenever a progress stream waits for its next poll, so a test that follows an
operation watches it run to its end without waiting for wall-clock time.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from api.app import create_app
from api.deps import Services
from drivers.base import Timeouts
from fleetd.clock import ManualClock
from fleetd.engine import Engine
from fleetd.workflows import WORKFLOWS
from inventory.imports import importer_for, run_import
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import Store, open_store
from simulators.clock import ManualClock as SimClock
from simulators.fleet import FleetSpec
from simulators.server import ServedFleet, serve_fleet
from tests.api.conftest import NOW, Seeded, seed

T = TypeVar("T")
TIMEOUTS = Timeouts(connect=15.0, command=15.0, commit=15.0)  # a busy machine is slow, not broken
MAX_POLLS = 500  # a stream that never ends fails the test instead of hanging it


async def make_template(path: Path) -> None:
    """A migrated, empty SQLite store, copied for each served API (migrating costs ~0.4 s)."""
    store = open_store(f"sqlite+aiosqlite:///{path}")
    try:
        await store.migrate()
    finally:
        await store.close()


@dataclass
class ServedApi:
    url: str
    seeded: Seeded
    services: Services
    store: Store
    box: SecretBox
    loop: asyncio.AbstractEventLoop
    fleet: ServedFleet | None = None
    engine_runs: list[int] = field(default_factory=list)

    def env(self, role: str | None) -> dict[str, str | None]:
        """The environment fleetctl runs with, as `role` (None: without a token)."""
        token = self.seeded.tokens[role] if role else None
        return {"FLEETD_URL": self.url, "FLEETD_TOKEN": token, "FLEETD_BASTION": None}

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the server's event loop (where the store lives)."""

        async def run() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=60)

    @property
    def customer_of_fleet(self) -> str:
        assert self.fleet is not None
        parent = min(s for s, u in self.fleet.fleet.units.items() if u.role == "parent")
        return self.fleet.fleet.customer_of[parent]


@contextmanager
def serve_api(
    tmp_path: Path, template: Path, *, fleet_base: str | None = None
) -> Iterator[ServedApi]:
    started = threading.Event()
    stop: dict[str, Any] = {}
    box_: dict[str, Any] = {}

    async def main() -> None:
        async with AsyncExitStack() as stack:
            db = tmp_path / "fleetd.db"
            shutil.copy(template, db)
            store = open_store(f"sqlite+aiosqlite:///{db}")
            stack.push_async_callback(store.close)
            redactor = Redactor()
            box = SecretBox(secrets.token_bytes(32), redactor=redactor)
            seeded = await seed(store, box)
            clock = ManualClock(NOW)
            fleet = None
            engine = None
            if fleet_base is not None:
                spec = FleetSpec(
                    units=1,
                    children_per_parent=1,
                    base_address=fleet_base,
                    v6_ready_share=1.0,
                    moved_share=0.0,
                )
                fleet = await stack.enter_async_context(
                    serve_fleet(spec, state_dir=tmp_path / "sim", clock=SimClock())
                )
                fleet.write_inventory(tmp_path / "fleet.csv")
                report = await run_import(
                    store, importer_for("fleet"), tmp_path / "fleet.csv", box=box
                )
                assert report.written, report.lines()
                engine = Engine(
                    store, box, WORKFLOWS, clock=clock, redactor=redactor, timeouts=TIMEOUTS
                )
            polls = 0

            async def meanwhile(_seconds: float) -> None:
                # the daemon's work between two polls of a progress stream
                nonlocal polls
                polls += 1
                if polls > MAX_POLLS:
                    raise RuntimeError("the followed work never ended")
                if engine is not None:
                    served.engine_runs.append(await engine.run_until_idle())
                await asyncio.sleep(0)

            services = Services(
                store=store, box=box, redactor=redactor, clock=clock, sleep=meanwhile
            )
            config = uvicorn.Config(
                create_app(services),
                host="127.0.0.1",
                port=0,
                loop="asyncio",
                ws="none",
                log_config=None,
                access_log=False,
                lifespan="off",  # the store is closed here, by its owner
            )
            server = uvicorn.Server(config)
            task = asyncio.create_task(server.serve())
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("the API stopped before it started")
                await asyncio.sleep(0.01)
            port = server.servers[0].sockets[0].getsockname()[1]
            served = ServedApi(
                f"http://127.0.0.1:{port}",
                seeded,
                services,
                store,
                box,
                asyncio.get_running_loop(),
                fleet,
            )
            done = asyncio.Event()
            stop["set"] = lambda: served.loop.call_soon_threadsafe(done.set)
            box_["served"] = served
            started.set()
            await done.wait()
            server.should_exit = True
            await task
            if engine is not None:
                await engine.stop()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            box_["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=target, name="fleetd-api", daemon=True)
    thread.start()
    started.wait(timeout=60)
    if "error" in box_:
        thread.join()
        raise box_["error"]
    try:
        yield box_["served"]
    finally:
        stop["set"]()
        thread.join(timeout=60)
        if "error" in box_:
            raise box_["error"]
