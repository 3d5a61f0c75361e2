"""A small fleet on loopback for the simulator tests: SSH, SNMP and control on real sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from simulators.clock import ManualClock
from simulators.fleet import FleetSpec
from simulators.server import ServedFleet, serve_fleet

# Each test module gets its own corner of 127.0.0.0/8 so parallel runs never collide.
BASE = "127.31.0.1"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def served(tmp_path: Path, clock: ManualClock) -> AsyncIterator[ServedFleet]:
    """Three customers: two parents with one child each, and one access point."""
    spec = FleetSpec(
        units=2,
        children_per_parent=1,
        aps=1,
        base_address=BASE,
        v6_ready_share=1.0,
        moved_share=0.0,
    )
    fleet = serve_fleet(spec, state_dir=tmp_path / "sim", clock=clock)
    async with fleet:
        fleet.fleet.write_known_hosts(tmp_path / "sim" / "known_hosts", fleet.ssh_port)
        yield fleet
