"""What the routes need, handed to `create_app(services)`: no module-level engines or clients.

`Services` is built by the daemon (or a test) and kept on `app.state.services`; routes reach
it through `ServicesDep`, and a read-only database session through `SessionDep`. Writes open
their own transaction (`services.store.transaction(write_lock=True)`), so a request's reads
never hold SQLite's write lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Protocol

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from fleetd.calendar import BusinessCalendar
from fleetd.clock import Clock, SystemClock
from fleetd.metrics import Metrics
from fleetd.settings import Settings
from fleetd.v6status import LiveReader, SnmpReader
from fleetd.workflows.base import RequestContext, RequestFn
from inventory.errors import StoreError
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import Store


@dataclass(frozen=True)
class SchedulerStatus:
    """`state`: "leader" (this daemon runs the schedule), "standby" (another one does) or
    "off"; `next_runs`: job id -> next fire time (None: paused)."""

    state: str
    next_runs: Mapping[str, datetime | None] = field(default_factory=dict)


class SchedulerView(Protocol):
    def status(self) -> SchedulerStatus: ...


class NoScheduler:
    """A daemon that runs no scheduler (or a test)."""

    def status(self) -> SchedulerStatus:
        return SchedulerStatus("off")


def _nothing() -> None:
    return None


@dataclass
class Services:
    """Everything the API's routes use. `requests` defaults to `fleetd.workflows.REQUESTS`;
    `poll_seconds` and `sleep` pace the progress streams (tests give their own `sleep`)."""

    store: Store
    box: SecretBox
    redactor: Redactor
    clock: Clock = field(default_factory=SystemClock)
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    settings: Settings | None = None
    wake_engine: Callable[[], None] = _nothing
    scheduler: SchedulerView = field(default_factory=NoScheduler)
    metrics: Metrics = field(default_factory=Metrics)
    requests: Mapping[str, RequestFn] | None = None
    live_reader: LiveReader = field(default_factory=SnmpReader)
    poll_seconds: float = 1.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    max_upload_bytes: int = 64 << 20

    def request_functions(self) -> Mapping[str, RequestFn]:
        if self.requests is None:
            try:
                from fleetd import workflows
            except ImportError as exc:  # a broken install: say so instead of a 500
                raise StoreError(f"the workflows cannot be loaded: {exc}") from exc
            self.requests = workflows.REQUESTS  # type: ignore[attr-defined,unused-ignore]
        return self.requests

    def request_context(self, requested_by: str, request_id: str) -> RequestContext:
        return RequestContext(
            requested_by=requested_by,
            box=self.box,
            now=self.clock.now(),
            calendar=self.calendar,
            request_id=request_id,
            redactor=self.redactor,
        )


# The dependencies below are `async def` although they never wait: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hand-off on every request for an attribute read.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def read_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.store.sessions() as session:
        yield session


# closed once the answer is made, before it is sent: its connection is back in the pool by the
# time the client can ask again
SessionDep = Annotated[AsyncSession, Depends(read_session, scope="function")]


async def get_request_id(request: Request) -> str:
    """The request's id: the caller's X-Request-ID, or one made for it (see api.app)."""
    request_id: str = request.state.request_id
    return request_id


RequestIdDep = Annotated[str, Depends(get_request_id)]
