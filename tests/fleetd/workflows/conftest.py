"""A harness for the workflows: a simulated fleet on loopback, imported into a real store,
and a plain `OpContext` that runs one operation with real drivers over real SSH.

Each test module names its own corner of 127.0.0.0/8 in a module-level ``BASE``. The fleet
(`SPEC`): three parents with one child each and one access point, every line V6-ready:

    138300000  US01SP000000 (ds-lite, AFTR 2001:db8:1a::1) + child US01SC000000
    138300001  US01SP000001 (ds-lite, AFTR 2001:db8:2a::1) + child US01SC000010
    138300002  US01SP000002 (map-e)                        + child US01SC000020
    138300003  access point US01SA000003
"""

from __future__ import annotations

import csv
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text

from drivers.base import Timeouts
from drivers.registry import load_driver
from fleetd.calendar import BusinessCalendar
from fleetd.clock import ManualClock
from fleetd.context import Claimed, RunContext
from fleetd.workflows import REQUESTS, WORKFLOWS
from fleetd.workflows.base import RequestContext
from inventory import audit
from inventory import operations as ops
from inventory.audit import AuditEntry
from inventory.imports import importer_for, run_import
from inventory.operations import Operation, OperationStep
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import Store, open_store
from simulators.clock import ManualClock as SimClock
from simulators.control import request as control
from simulators.fleet import FleetSpec
from simulators.server import ServedFleet, serve_fleet
from simulators.unit import CommitRecord
from simulators.unit import Unit as SimUnit

# Friday 20 Nov 2026, 15:00 JST; Monday 23 Nov is a public holiday (Labour Thanksgiving Day)
T0 = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
TIMEOUTS = Timeouts(connect=3.0, command=3.0, commit=3.0)
P0, P1, P2 = "US01SP000000", "US01SP000001", "US01SP000002"
C0, C1, C2 = "US01SC000000", "US01SC000010", "US01SC000020"
AP = "US01SA000003"
CUST0, CUST1, CUST2, CUST_AP = "138300000", "138300001", "138300002", "138300003"

log = logging.getLogger("fleetd.workflows.test")


class RecordingContext(RunContext):
    """The engine's own `OpContext`, keeping the raw text of every step and audit entry it
    was given (before masking), for the canary tests."""

    def __init__(self, op: Claimed, harness: Harness) -> None:
        super().__init__(
            op,
            store=harness.store,
            box=harness.box,
            redactor=harness.redactor,
            clock=harness.clock,
            calendar=BusinessCalendar(),
            load_driver=load_driver,
            transport="asyncssh",
            timeouts=TIMEOUTS,
        )
        self.raw: list[str] = []

    async def step(self, name: str, ok: bool = True, detail: str = "") -> None:
        self.raw.append(f"{name} {detail}")
        await super().step(name, ok, detail)

    async def audit(
        self,
        action: str,
        target: str,
        *,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        detail: str = "",
    ) -> None:
        self.raw.append(f"{action} {target} {before} {after} {detail}")
        await super().audit(action, target, before=before, after=after, detail=detail)


def claimed(op: Operation) -> Claimed:
    """The operation as the engine holds it once claimed (first attempt unless it ran)."""
    op.attempts = op.attempts or 1
    op.lease_owner = op.lease_owner or "test"
    return Claimed.of(op)


@dataclass
class Harness:
    store: Store
    box: SecretBox
    redactor: Redactor
    served: ServedFleet
    clock: ManualClock
    sim_clock: SimClock
    contexts: list[RecordingContext] = field(default_factory=list)

    # ----- requests ----------------------------------------------------------------------
    def request_context(self, request_id: str | None = "req-1", **kw: Any) -> RequestContext:
        return RequestContext(
            requested_by="staff:kimura",
            box=self.box,
            now=self.clock.now(),
            request_id=request_id,
            redactor=self.redactor,
            **kw,
        )

    async def request(
        self, kind: str, target: str, params: Mapping[str, Any] | None = None, **kw: Any
    ) -> list[Operation]:
        async with self.store.transaction() as session:
            return await REQUESTS[kind](session, self.request_context(**kw), target, params or {})

    # ----- running -----------------------------------------------------------------------
    async def run(self, op: Operation) -> str:
        """Run the operation's workflow once, as the engine would after claiming it."""
        async with self.store.sessions() as session:
            fresh = await ops.get(session, op.id)
        ctx = RecordingContext(claimed(fresh), self)
        self.contexts.append(ctx)
        try:
            return await WORKFLOWS[fresh.kind].run(ctx)
        finally:
            await ctx.flush()  # what the engine writes with the outcome

    async def run_all(self, operations: Iterable[Operation]) -> list[str]:
        return [await self.run(op) for op in operations]

    # ----- looking -----------------------------------------------------------------------
    def unit(self, serial: str) -> SimUnit:
        return self.served.fleet.units[serial]

    def commits(self, serial: str) -> list[CommitRecord]:
        return list(self.unit(serial).commit_log)

    def kinds(self, serial: str) -> list[str]:
        return [c.kind for c in self.commits(serial)]

    async def line(self, serial: str, **facts: Any) -> None:
        answer = await control(
            self.served.control_port, {"op": "line", "serial": serial, "set": facts}
        )
        assert answer["ok"], answer

    async def steps(self, op: Operation) -> list[OperationStep]:
        async with self.store.sessions() as session:
            return list(await ops.steps(session, op.id))

    async def step_names(self, op: Operation) -> list[str]:
        return [s.step for s in await self.steps(op)]

    async def audits(self, action: str | None = None) -> list[AuditEntry]:
        async with self.store.sessions() as session:
            found = await audit.entries(session, limit=1000)
        return [e for e in reversed(found) if action is None or e.action == action]

    async def operations(self) -> list[Operation]:
        async with self.store.sessions() as session:
            return list(await session.scalars(select(Operation).order_by(Operation.id)))

    async def every_cell(self) -> list[str]:
        """Every value of every table, read with raw SQL as an intruder with the file would."""
        cells: list[str] = []
        async with self.store.engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
            for table in tables:
                result = await conn.execute(text(f'SELECT * FROM "{table}"'))
                cells.extend(str(value) for row in result for value in row)
        return cells


SPEC = {"units": 3, "children_per_parent": 1, "aps": 1, "v6_ready_share": 1.0, "moved_share": 0.0}


async def import_fleet(
    store: Store, box: SecretBox, served: ServedFleet, path: Path, skip: Iterable[str] = ()
) -> None:
    """The simulated fleet into the inventory as `fleetd import fleet` would bring it, but
    for the serials in `skip` (spare units, e.g. link items not installed yet)."""
    served.write_inventory(path)
    skipped = set(skip)
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r[1] not in skipped]
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    report = await run_import(store, importer_for("fleet"), path, box=box)
    assert report.written, report


@pytest.fixture
def spares() -> tuple[str, ...]:
    """Units of the simulated fleet left out of the inventory (override in a module)."""
    return ()


@pytest.fixture
async def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    spares: tuple[str, ...],
    redactor: Redactor,
    box: SecretBox,
) -> AsyncIterator[Harness]:
    sim_clock = SimClock()
    spec = FleetSpec(base_address=request.module.BASE, **SPEC)  # type: ignore[arg-type]
    store = open_store(f"sqlite+aiosqlite:///{tmp_path}/fleetd.db")
    await store.migrate()
    try:
        async with serve_fleet(spec, state_dir=tmp_path / "sim", clock=sim_clock) as served:
            await import_fleet(store, box, served, tmp_path / "fleet.csv", spares)
            yield Harness(store, box, redactor, served, ManualClock(T0), sim_clock)
    finally:
        await store.close()


@pytest.fixture
async def pg_harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    spares: tuple[str, ...],
    redactor: Redactor,
    box: SecretBox,
    store: Store,
) -> AsyncIterator[Harness]:
    """The harness over the `store` fixture: SQLite and PostgreSQL."""
    sim_clock = SimClock()
    spec = FleetSpec(base_address=request.module.BASE, **SPEC)  # type: ignore[arg-type]
    async with serve_fleet(spec, state_dir=tmp_path / "sim", clock=sim_clock) as served:
        await import_fleet(store, box, served, tmp_path / "fleet.csv", spares)
        yield Harness(store, box, redactor, served, ManualClock(T0), sim_clock)
