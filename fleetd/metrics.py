"""What the daemon tells Prometheus, on a registry of its own (never the process-global one).

Two kinds of figures:

- counted in this daemon as things happen: operations finished by kind and outcome
  (`operation_finished`, called by the engine) and how long pushes to units took
  (`observe_push`);
- read from the store when scraped (`refresh`), so every daemon on one PostgreSQL answers the
  same: operations by kind and state, units by reachability, and the scheduler's next runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from inventory.models import Unit, UnitObservation
from inventory.operations import Operation

CONTENT_TYPE = CONTENT_TYPE_LATEST
# pushes take from a second (a guest SSID) to minutes (a cutover's commit confirmed)
PUSH_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class Metrics:
    """The daemon's metrics. Satisfies the engine's `EngineMetrics` protocol."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.finished = Counter(
            "fleetd_operations_finished",
            "Operations this daemon finished, by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.push_seconds = Histogram(
            "fleetd_push_seconds",
            "How long one operation's run on a unit took, by kind.",
            ["kind"],
            buckets=PUSH_BUCKETS,
            registry=self.registry,
        )
        self.operations = Gauge(
            "fleetd_operations",
            "Operations in the store, by kind and state.",
            ["kind", "state"],
            registry=self.registry,
        )
        self.units = Gauge(
            "fleetd_units",
            "Units in the inventory by reachability at their last reading (unknown: never read).",
            ["reachability"],
            registry=self.registry,
        )
        self.next_run = Gauge(
            "fleetd_scheduler_next_run_timestamp_seconds",
            "When each scheduled job runs next (Unix time).",
            ["job"],
            registry=self.registry,
        )

    def operation_finished(self, kind: str, outcome: str) -> None:
        self.finished.labels(kind=kind, outcome=outcome).inc()

    def observe_push(self, kind: str, seconds: float) -> None:
        self.push_seconds.labels(kind=kind).observe(seconds)

    async def refresh(
        self, session: AsyncSession, next_runs: Mapping[str, datetime | None] | None = None
    ) -> None:
        """Read the store's figures (and the scheduler's next runs) into the gauges."""
        rows = (
            await session.execute(
                select(Operation.kind, Operation.state, func.count()).group_by(
                    Operation.kind, Operation.state
                )
            )
        ).all()
        self.operations.clear()
        for kind, state, count in rows:
            self.operations.labels(kind=kind, state=state).set(count)
        total = await session.scalar(select(func.count()).select_from(Unit)) or 0
        seen = dict(
            (
                await session.execute(
                    select(UnitObservation.reachable, func.count())
                    .where(UnitObservation.reachable.is_not(None))
                    .group_by(UnitObservation.reachable)
                )
            ).all()
        )
        reachable, unreachable = seen.get(True, 0), seen.get(False, 0)
        self.units.labels(reachability="reachable").set(reachable)
        self.units.labels(reachability="unreachable").set(unreachable)
        self.units.labels(reachability="unknown").set(max(0, total - reachable - unreachable))
        self.next_run.clear()
        for job, when in (next_runs or {}).items():
            if when is not None:
                self.next_run.labels(job=job).set(when.timestamp())

    def render(self) -> bytes:
        """The Prometheus text exposition of every figure."""
        return generate_latest(self.registry)
