"""Liveness, readiness and metrics, as a load balancer and Prometheus see them."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from api.app import create_app
from api.deps import SchedulerStatus, Services
from inventory.redact import Redactor
from inventory.secrets import SecretBox
from inventory.store import open_store
from tests.api.conftest import Api

NEXT = datetime(2026, 11, 30, 14, 59, tzinfo=UTC)  # 23:59 JST


class Leader:
    def status(self) -> SchedulerStatus:
        return SchedulerStatus("leader", {"month-end": NEXT, "status-sweep": None})


async def test_live_and_ready_need_no_token(api: Api) -> None:
    assert (await api.client.get("/livez")).json() == {"status": "ok"}
    api.services.scheduler = Leader()
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["store"] == "ok"
    assert body["schema_revision"] == body["schema_head"]
    assert body["scheduler"] == "leader"
    assert body["next_runs"] == {"month-end": "2026-11-30T14:59:00Z", "status-sweep": None}


async def test_a_store_not_migrated_is_not_ready_and_says_what_to_do(
    tmp_path: object, box: SecretBox
) -> None:
    store = open_store(f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    app = create_app(Services(store=store, box=box, redactor=Redactor()))
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get("/readyz")
    finally:
        await store.close()
    assert answer.status_code == 503
    assert answer.json()["store"] == "schema at none: run fleetd migrate"
    assert answer.json()["scheduler"] == "off"


async def test_metrics_count_operations_units_pushes_and_the_next_run(api: Api) -> None:
    api.services.scheduler = Leader()
    api.services.metrics.operation_finished("cutover", "succeeded")
    api.services.metrics.observe_push("cutover", 42.0)
    answer = await api.client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'fleetd_operations{kind="guest_rotate",state="succeeded"} 1.0' in text
    assert 'fleetd_units{reachability="reachable"} 1.0' in text
    assert 'fleetd_units{reachability="unknown"} 1.0' in text  # the child: never read
    assert 'fleetd_units{reachability="unreachable"} 0.0' in text
    assert 'fleetd_operations_finished_total{kind="cutover",outcome="succeeded"} 1.0' in text
    assert 'fleetd_push_seconds_bucket{kind="cutover",le="60.0"} 1.0' in text
    assert 'fleetd_push_seconds_bucket{kind="cutover",le="30.0"} 0.0' in text
    next_run = next(line for line in text.splitlines() if 'job="month-end"' in line)
    assert float(next_run.split()[-1]) == NEXT.timestamp()
    assert 'job="status-sweep"' not in text  # paused: no time to tell
