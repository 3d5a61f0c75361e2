"""`fleetd serve`: the daemon.

Every daemon runs the engine. Exactly one daemon of those sharing a database runs the
scheduler: on PostgreSQL the one holding the scheduler's advisory lock (another takes over
when it dies), on SQLite the only one. The control API and the remote-login bastion run in
the same process and event loop when enabled.

Start-up refuses, with one line that says what to do, when the secret key is missing or
wrong, or the database is unreachable or not at the schema head. SIGTERM or SIGINT stops
claiming, lets running operations end, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer

from fleetd.calendar import BusinessCalendar
from fleetd.clock import Clock, SystemClock
from fleetd.engine import Engine, Limits, default_owner
from fleetd.settings import Settings
from inventory import repo
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import Store, open_store, shown

log = logging.getLogger("fleetd.daemon")

# glibc gives every thread that allocates its own malloc arena (up to 8 per CPU), and keeps
# what each arena once held. The daemon's threads (one per SQLite connection, the loop's
# default executor) only ever do short work under the GIL: two arenas serve them as well,
# and a few MB of RSS are not left behind in idle ones.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX would), unless the environment sets
    MALLOC_ARENA_MAX itself; False where the C library is not glibc. Call it before the
    process starts threads."""
    import ctypes
    import os

    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


# middle-generation collections per full one, while serving (CPython's default: 10)
FULL_COLLECTION_EVERY = 100


def settle_heap() -> tuple[int, int, int]:
    """Collect what start-up left as garbage, then move the rest (modules, mappers, settings,
    the API's routes) to the collector's permanent generation, and make full collections
    rarer. Returns the collector's thresholds as they were, for `unsettle_heap`.

    Each full collection walks every object it tracks. With hundreds of unit sessions at once,
    their objects outlive the young generations and full collections came every few seconds,
    each walking every session open: objects that live as long as the daemon need not be
    walked, and a closed session leaves (almost) nothing for a full collection to free (see
    drivers.ssh_asyncssh), so one in ten of them is enough."""
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(thresholds[0], thresholds[1], FULL_COLLECTION_EVERY)
    return thresholds


def unsettle_heap(thresholds: tuple[int, int, int]) -> None:
    """Undo `settle_heap`: what start-up built may be collected again once it is let go."""
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@dataclass
class Daemon:
    """The parts of one running daemon, built by `build()`; `run()` serves until stopped."""

    settings: Settings
    store: Store
    box: SecretBox
    redactor: Redactor
    clock: Clock
    calendar: BusinessCalendar
    engine: Engine
    api: bool = True
    bastion: bool = True
    scheduler: bool = True
    metrics: Any = None  # fleetd.metrics.Metrics, shared by the engine and the API
    scheduler_state: Any = None  # fleetd.daemon_parts.SchedulerState
    api_port: int | None = None  # as listening (the chosen one when configured as 0)
    bastion_port: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _parts: list[Any] = field(default_factory=list)
    announce: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        engine_task: asyncio.Task[None] | None = None
        cleanups: list[Callable[[], Awaitable[None]]] = []
        thresholds: tuple[int, int, int] | None = None
        try:
            for start in self._starters():
                cleanup = await start()
                if cleanup is not None:
                    cleanups.append(cleanup)
            thresholds = settle_heap()  # before the first run: no run's objects are frozen
            engine_task = asyncio.create_task(self.engine.run(), name="engine")
            self.announce(
                f"fleetd {self.engine.owner}: serving {shown(self.store.url)} "
                f"(engine: {self.engine.limits.parallel} at once over {self.engine.transport})"
            )
            self.ready.set()
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({stop, engine_task}, return_when=asyncio.FIRST_COMPLETED)
            if engine_task.done():
                engine_task.result()  # the engine died: let its error out
        finally:
            for cleanup in reversed(cleanups):
                with contextlib.suppress(Exception):
                    await cleanup()
            await self.engine.stop()
            if engine_task is not None:
                engine_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await engine_task
            await self.store.close()
            if thresholds is not None:
                unsettle_heap(thresholds)

    def _starters(self) -> list[Callable[[], Awaitable[Callable[[], Awaitable[None]] | None]]]:
        from fleetd import daemon_parts

        starters: list[Callable[[], Awaitable[Callable[[], Awaitable[None]] | None]]] = []
        if self.scheduler:
            starters.append(lambda: daemon_parts.start_scheduler(self))
        if self.api:
            starters.append(lambda: daemon_parts.start_api(self))
        if self.bastion:
            starters.append(lambda: daemon_parts.start_bastion(self))
        return starters


async def build(
    settings: Settings,
    redactor: Redactor,
    *,
    clock: Clock | None = None,
    api: bool = True,
    bastion: bool = True,
    scheduler: bool = True,
) -> Daemon:
    """Open and check everything the daemon needs; a FleetError says what is missing."""
    box = settings.secret_box(redactor)
    store = open_store(settings.database_url, pool_size=10)
    try:
        await store.require_current()
        async with store.transaction() as session:
            await repo.check_secret_key(session, box)
    except BaseException:
        await store.close()
        raise
    calendar = BusinessCalendar.parse_closure(settings.year_end_closure)
    clock = clock or SystemClock()
    from fleetd.daemon_parts import SchedulerState
    from fleetd.metrics import Metrics
    from fleetd.workflows import WORKFLOWS  # type: ignore[attr-defined,unused-ignore]

    metrics = Metrics()
    engine = Engine(
        store,
        box,
        WORKFLOWS,
        owner=settings.owner or default_owner(),
        clock=clock,
        calendar=calendar,
        limits=Limits(parallel=settings.parallel, lease_seconds=settings.lease_seconds),
        redactor=redactor,
        transport=settings.transport,
        metrics=metrics,
    )
    return Daemon(
        settings=settings,
        store=store,
        box=box,
        redactor=redactor,
        clock=clock,
        calendar=calendar,
        engine=engine,
        api=api,
        bastion=bastion,
        scheduler=scheduler,
        metrics=metrics,
        scheduler_state=SchedulerState(None, None),
    )


def serve(
    ctx: typer.Context,
    no_api: Annotated[bool, typer.Option("--no-api", help="Do not serve the control API.")] = False,
    no_bastion: Annotated[
        bool, typer.Option("--no-bastion", help="Do not serve remote login.")
    ] = False,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="Never run the scheduler in this daemon.")
    ] = False,
) -> None:
    """Run the daemon: engine, scheduler (when this daemon holds it), API and bastion."""
    from fleetd.cli import run, state

    limit_malloc_arenas()
    cli = state(ctx)

    async def go() -> None:
        daemon = await build(
            cli.settings,
            cli.redactor,
            api=not no_api,
            bastion=not no_bastion,
            scheduler=not no_scheduler,
        )
        await daemon.run()

    run(go())
