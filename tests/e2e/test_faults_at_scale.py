"""A batch over 500 simulated units of which a fifth are unreachable, slow, flapping or
refuse the login: every operation ends succeeded, failed with a reason, or escalated."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from drivers.base import Timeouts
from fleetd import batches
from fleetd.clock import ManualClock, SystemClock
from fleetd.engine import Engine, Limits
from fleetd.workflows import WORKFLOWS
from fleetd.workflows.base import GUEST_ROTATE, RequestContext
from inventory.operations import Operation
from inventory.redact import Redactor
from inventory.secrets import load_secret_box
from inventory.store import open_store
from tests.e2e.harness import fleet_sim, fleetd, fleetd_env

BASE = "127.71.0.1"
pytestmark = pytest.mark.slow
MIX = {"unreachable": 0.05, "slow": 0.05, "flap": 0.05, "auth": 0.05}


async def test_every_operation_of_a_faulty_batch_ends_with_a_reason(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/fleetd.db"
    key = tmp_path / "fleetd.key"
    env = fleetd_env(url, key)
    mix = ",".join(f"{kind}={share:.0%}" for kind, share in MIX.items())
    async with fleet_sim(tmp_path / "sim", BASE, "--units", "500", "--fault-mix", mix,
                         ) as sim:  # fmt: skip
        await fleetd(env, "keygen", str(key))
        await fleetd(env, "migrate")
        await fleetd(env, "import", "fleet", str(sim.fleet_csv))

        redactor = Redactor()
        box = load_secret_box(None, key, redactor=redactor)
        clock = ManualClock(SystemClock().now())
        ctx = RequestContext(requested_by="admin:e2e", box=box, now=clock.now())
        store = open_store(url)
        try:
            async with store.transaction() as session:
                created = await batches.create_batch(
                    session,
                    ctx,
                    GUEST_ROTATE,
                    batches.Selection(filter={"role": "parent"}),
                    {"deadline": (clock.now() + timedelta(hours=2)).isoformat()},
                    max_failure_rate=1.0,  # this batch must run to its end
                    max_parallel=500,
                )
            assert len(created.operations) == 500
            engine = Engine(
                store,
                box,
                WORKFLOWS,
                owner="e2e",
                clock=clock,
                limits=Limits(parallel=200, backoff_base=30.0),
                redactor=redactor,
                timeouts=Timeouts(connect=3.0, command=10.0, commit=15.0),
            )
            for _ in range(300):  # each round: every due operation, then the clock moves on
                await engine.run_until_idle()
                async with store.sessions() as session:
                    waiting = (
                        await session.scalars(
                            select(Operation.not_before).where(Operation.state == "retry_wait")
                        )
                    ).all()
                if not waiting:
                    break
                # to the next retry exactly: a retry is never set after the deadline, so one
                # set just before it still runs before the deadline, as it would in real time
                clock.set(min(waiting))
            async with store.sessions() as session:
                ops = (await session.scalars(select(Operation))).all()
        finally:
            await store.close()
        faults = {u["serial"]: u["faults"] for u in await sim.units([op.unit_serial for op in ops])}

    states = Counter(op.state for op in ops)
    assert set(states) <= {"succeeded", "failed", "escalated"}, states  # none left running
    assert all(op.reason for op in ops if op.state != "succeeded")
    by_fault: dict[str, Counter[str]] = {}
    for op in ops:
        kind = next(iter(faults[op.unit_serial]), "healthy")
        by_fault.setdefault(kind, Counter())[op.state] += 1
    assert by_fault["healthy"] == Counter({"succeeded": 400}), by_fault
    assert by_fault["auth_fail"] == Counter({"escalated": 25}), by_fault  # staff must act
    assert by_fault["refuse"] == Counter({"escalated": 25}), by_fault  # retried to the deadline
    assert by_fault["rtt"] == Counter({"succeeded": 25}), by_fault  # slow is not broken
    assert sum(by_fault["flap_period"].values()) == 25
    for op in ops:
        if "auth_fail" in faults[op.unit_serial]:
            assert "login refused" in (op.reason or ""), op.reason
        if "refuse" in faults[op.unit_serial]:
            assert "gave up after" in (op.reason or ""), op.reason
