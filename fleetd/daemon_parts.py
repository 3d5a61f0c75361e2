"""The optional parts of `fleetd serve`, each started in the daemon's event loop and
returning how to stop it: the scheduler (under the leadership lock), the control API, the
remote-login bastion."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from drivers.registry import load_driver
from fleetd.clock import JST

if TYPE_CHECKING:
    from api.deps import SchedulerStatus
    from fleetd.daemon import Daemon
    from fleetd.leader import Leadership
    from fleetd.scheduler import Scheduler

log = logging.getLogger("fleetd.daemon")
Stop = Callable[[], Awaitable[None]]


class SchedulerState:
    """What /readyz and /metrics say of the scheduler in this daemon."""

    def __init__(self, scheduler: Scheduler | None, leadership: Leadership | None) -> None:
        self.scheduler = scheduler
        self.leadership = leadership

    def status(self) -> SchedulerStatus:
        from api.deps import SchedulerStatus

        if self.scheduler is None or self.leadership is None:
            return SchedulerStatus("off")
        if not (self.leadership.is_leader and self.scheduler.running):
            return SchedulerStatus("standby")
        return SchedulerStatus("leader", {job.id: job.next_fire for job in self.scheduler.jobs()})


async def start_scheduler(daemon: Daemon) -> Stop:
    from fleetd.leader import Leadership
    from fleetd.poller import StatusSweep
    from fleetd.scheduler import STATUS_SWEEP, ScheduleConfig, Scheduler

    settings = daemon.settings
    sweep = StatusSweep(
        daemon.store, community=settings.snmp_community.get_secret_value(), box=daemon.box
    )
    scheduler = Scheduler(
        daemon.store,
        sweep=sweep,
        clock=daemon.clock,
        config=ScheduleConfig(sweep_seconds=settings.sweep_seconds),
        redactor=daemon.redactor,
    )
    leadership = Leadership(daemon.store.engine)
    daemon.scheduler_state.scheduler = scheduler
    daemon.scheduler_state.leadership = leadership

    async def gained() -> None:
        caught = await scheduler.start()
        if caught is not None:
            daemon.engine.wake()
        # a daemon that has just taken the schedule reads the fleet at once, so what staff
        # see is fresh rather than as old as the last sweep of the daemon before it
        scheduler.run_now(STATUS_SWEEP)
        for job in scheduler.jobs():
            next_fire = job.next_fire.astimezone(JST) if job.next_fire else "paused"
            log.info("scheduler: %s next at %s", job.id, next_fire)
        daemon.announce("this daemon runs the scheduler")

    async def lost() -> None:
        await scheduler.stop()

    task = asyncio.create_task(leadership.acquire_loop(gained, lost), name="leadership")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop


async def start_api(daemon: Daemon) -> Stop:
    import uvicorn

    from api.app import create_app
    from api.deps import Services

    services = Services(
        store=daemon.store,
        box=daemon.box,
        redactor=daemon.redactor,
        clock=daemon.clock,
        calendar=daemon.calendar,
        settings=daemon.settings,
        wake_engine=daemon.engine.wake,
        scheduler=daemon.scheduler_state,
        metrics=daemon.metrics,
    )
    config = uvicorn.Config(
        create_app(services),
        host=daemon.settings.api_host,
        port=daemon.settings.api_port,
        log_config=None,  # the daemon's logging, with its redaction
        access_log=False,
        lifespan="off",  # the store belongs to the daemon, which closes it
    )
    server = _quiet_server_class()(config)
    task = asyncio.create_task(server.serve(), name="api")
    while not server.started:
        if task.done():
            task.result()  # e.g. the port is taken: say so
            raise RuntimeError("the control API stopped before it started")
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    daemon.api_port = port
    daemon.announce(f"control API on http://{daemon.settings.api_host}:{port} (docs at /docs)")

    async def stop() -> None:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop


def _quiet_server_class() -> type:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """uvicorn, minus its own signal handling: the daemon owns SIGTERM and SIGINT."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return QuietServer


async def start_bastion(daemon: Daemon) -> Stop:
    from fleetd.bastion import Bastion
    from inventory.users import StaffUser, user_for_ssh_key

    async def authorize(username: str, public_key: str) -> StaffUser | None:
        async with daemon.store.sessions() as session:
            return await user_for_ssh_key(session, username, public_key)

    settings = daemon.settings
    bastion = Bastion(
        store=daemon.store,
        box=daemon.box,
        redactor=daemon.redactor,
        clock=daemon.clock,
        authorize=authorize,
        load_driver=load_driver,
        state_dir=settings.state_dir,
        idle_timeout=settings.bastion_idle_timeout,
        transport=settings.transport,
    )
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    await bastion.start(settings.bastion_host, settings.bastion_port)
    daemon.bastion_port = bastion.port
    daemon.announce(
        f"remote login: ssh -p {bastion.port} USER@{settings.bastion_host} SERIAL "
        f"(host key {bastion.host_public_key})"
    )
    return bastion.close
