"""Two `fleetd serve` processes on one PostgreSQL, against `fleet-sim` over real SSH.

1,000 guest-passphrase rotations run exactly once; one daemon is killed with SIGKILL in the
middle and the other finishes its leased operations. The simulator's per-unit commit log
is the proof that no unit got the change twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from fleetd.clock import SystemClock
from fleetd.workflows import REQUESTS
from fleetd.workflows.base import GUEST_ROTATE, RequestContext
from inventory.models import Customer
from inventory.operations import Operation
from inventory.redact import Redactor
from inventory.secrets import load_secret_box
from inventory.store import open_store
from tests.e2e.harness import Daemon, fleet_sim, fleetd, fleetd_env

BASE = "127.70.0.1"
RUNS_SCHEDULER = "this daemon runs the scheduler"
pytestmark = pytest.mark.slow


async def _counts(url: str) -> Counter[str]:
    async with open_store(url) as store, store.sessions() as session:
        rows = await session.execute(
            select(Operation.state, func.count()).group_by(Operation.state)
        )
        return Counter({state: n for state, n in rows.all()})


async def _wait_for(url: str, done: int, *, seconds: float) -> Counter[str]:
    """Poll the store until `done` operations have ended (the run's own pace, not a timer)."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    while True:
        counts = await _counts(url)
        ended = counts["succeeded"] + counts["failed"] + counts["escalated"]
        if ended >= done or loop.time() > give_up:
            return counts
        await asyncio.sleep(0.2)


async def _wait_holding(url: str, owner: str, *, seconds: float) -> bool:
    """Poll until `owner` holds a running operation; False if it never does in time."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + seconds
    held_by_owner = select(func.count()).where(
        Operation.state == "running", Operation.lease_owner == owner
    )
    async with open_store(url) as store:
        while loop.time() < give_up:
            async with store.sessions() as session:
                if await session.scalar(held_by_owner):
                    return True
            await asyncio.sleep(0.05)
    return False


async def test_two_daemons_run_1000_operations_exactly_once_through_a_sigkill(
    tmp_path: Path, pg_url: str
) -> None:
    url = pg_url
    key = tmp_path / "fleetd.key"
    env = fleetd_env(url, key, lease_seconds=10, parallel=60, log_level="INFO")
    async with fleet_sim(
        tmp_path / "sim", BASE, "--units", "500", "--children-per-parent", "1"
    ) as sim:
        await fleetd(env, "keygen", str(key))
        await fleetd(env, "migrate")
        await fleetd(env, "import", "fleet", str(sim.fleet_csv))

        box = load_secret_box(None, key, redactor=Redactor())
        ctx = RequestContext(requested_by="admin:e2e", box=box, now=SystemClock().now())
        async with open_store(url) as store, store.transaction() as session:
            codes = (await session.scalars(select(Customer.code).order_by(Customer.code))).all()
            serials: list[str] = []
            for code in codes:
                made = await REQUESTS[GUEST_ROTATE](session, ctx, code, {})
                serials.extend(op.unit_serial for op in made if op.unit_serial)
        assert len(serials) == 1000

        a = await Daemon.start({**env, "FLEETD_OWNER": "daemon-a"}, tmp_path / "a.log",
                               "--no-api", "--no-bastion")  # fmt: skip
        b = await Daemon.start({**env, "FLEETD_OWNER": "daemon-b"}, tmp_path / "b.log",
                               "--no-api", "--no-bastion")  # fmt: skip
        try:
            await _wait_for(url, 250, seconds=120)
            leaders = [d for d in (a, b) if RUNS_SCHEDULER in d.output()]
            assert len(leaders) == 1, "exactly one daemon runs the scheduler"
            # killed while it holds work, so there is something for b to take over
            assert await _wait_holding(url, "daemon-a", seconds=60), a.output()[-3000:]
            a.kill()
            await a.proc.wait()
            counts = await _wait_for(url, 1000, seconds=240)
        finally:
            a.kill()
            await b.stop()
        assert counts == Counter({"succeeded": 1000}), (counts, b.output()[-3000:])
        assert RUNS_SCHEDULER in b.output()  # b held it, or took it over when a died

        async with open_store(url) as store, store.sessions() as session:
            rows = (await session.execute(select(Operation.lease_owner, Operation.attempts))).all()
        finished_by = Counter(owner for owner, _ in rows)
        taken_over = Counter(owner for owner, attempts in rows if attempts > 1)
        # both daemons did work; what a held when it died was taken over and ended by b
        assert finished_by["daemon-a"] > 0 and finished_by["daemon-b"] > 0
        assert taken_over["daemon-b"] >= 1 and taken_over["daemon-a"] == 0

        units = await sim.units(serials)
        rotations = {
            u["serial"]: sum(
                1 for c in u["commits"] if any("guest passphrase" in p for p in c["paths"])
            )
            for u in units
        }
        assert Counter(rotations.values()) == Counter({1: 1000}), "a unit was changed twice"
