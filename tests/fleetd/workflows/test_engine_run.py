"""The workflows as the engine runs them: its own context, host keys trusted on first use."""

from __future__ import annotations

from fleetd.clock import SystemClock
from fleetd.engine import Engine
from fleetd.workflows import REQUESTS, WORKFLOWS
from fleetd.workflows.base import (
    ACCOUNT_RESUME,
    ACCOUNT_STOP,
    BUSINESS_WIFI,
    CUTOVER,
    GUEST_ROTATE,
    LINK_SWAP,
    ORIGINAL_SSID,
    REVERT_V4,
)
from inventory import operations as ops
from inventory import repo
from tests.fleetd.workflows.conftest import CUST0, P0, TIMEOUTS, Harness

BASE = "127.86.0.1"


def test_every_kind_has_a_workflow_and_a_request() -> None:
    kinds = {
        CUTOVER,
        REVERT_V4,
        BUSINESS_WIFI,
        GUEST_ROTATE,
        ORIGINAL_SSID,
        ACCOUNT_STOP,
        ACCOUNT_RESUME,
        LINK_SWAP,
    }
    assert set(WORKFLOWS) == kinds and set(REQUESTS) == kinds
    assert all(WORKFLOWS[kind].kind == kind for kind in kinds)


async def test_the_engine_runs_a_cutover_and_a_wifi_change_to_success(harness: Harness) -> None:
    h = harness
    h.clock.set(SystemClock().now())  # the engine dates deadlines from the rows' creation
    made = await h.request(CUTOVER, P0) + await h.request(BUSINESS_WIFI, CUST0, {"ssid": "Biz"})
    engine = Engine(
        h.store, h.box, WORKFLOWS, owner="test", clock=h.clock, redactor=h.redactor,
        timeouts=TIMEOUTS,
    )  # fmt: skip

    assert await engine.run_until_idle() == 3

    async with h.store.sessions() as session:
        done = [await ops.get(session, op.id) for op in made]
        steps = await ops.steps(session, made[0].id)
        pinned = (await repo.get_unit(session, P0)).host_key_fingerprint
    assert [op.state for op in done] == ["succeeded"] * 3, [op.reason for op in done]
    assert "switched to V6" in (done[0].reason or "")
    assert "snapshot" in [s.step for s in steps] and steps[-1].step == "succeeded"
    fleet = h.served.fleet
    assert pinned == fleet.host_public_key(fleet.units[P0])
    assert h.unit(P0).wan()["tunnel-state"] == "up"
    assert h.unit(P0).running["wlan business ssid"] == "Biz"
