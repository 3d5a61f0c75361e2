"""A simulated fleet on loopback for the driver tests, and ways to build drivers for it.

Each test module names its own corner of 127.0.0.0/8 in a module-level ``BASE``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from drivers.base import Timeouts, UnitTarget
from simulators.clock import ManualClock
from simulators.control import request
from simulators.fleet import FleetSpec
from simulators.server import ServedFleet, serve_fleet
from simulators.ssh import _UnitServer
from simulators.unit import Unit

TIMEOUTS = Timeouts(connect=3.0, command=3.0, commit=3.0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def served(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> AsyncIterator[ServedFleet]:
    """Two parents with one child each, and one access point; every V6 line ready."""
    spec = FleetSpec(
        units=2,
        children_per_parent=1,
        aps=1,
        base_address=request.module.BASE,
        v6_ready_share=1.0,
        moved_share=0.0,
    )
    async with serve_fleet(spec, state_dir=tmp_path / "sim", clock=clock) as fleet:
        yield fleet


def first(served: ServedFleet, role: str = "parent") -> Unit:
    return next(u for u in served.fleet if u.role == role)


def target_for(served: ServedFleet, unit: Unit, **changes: Any) -> UnitTarget:
    """The unit as the daemon would address it, its host key pinned."""
    target = UnitTarget(
        serial=unit.serial,
        address=served.fleet.address_of[unit.serial],
        ssh_port=served.ssh_port,
        snmp_port=served.snmp_port,
        username="admin",
        password=served.fleet.password_of(unit.serial),
        host_key=served.fleet.host_public_key(unit),
        timeouts=TIMEOUTS,
    )
    return replace(target, **changes)


async def set_fault(served: ServedFleet, unit: Unit, **values: Any) -> None:
    answer = await request(
        served.control_port, {"op": "fault", "serial": unit.serial, "set": values}
    )
    assert answer["ok"], answer


@pytest.fixture
def auth_attempts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Per serial, how many connections reached user authentication on the unit's side.

    The simulated unit's SSH server calls ``begin_auth`` on the first user-authentication
    request of a connection, before looking at any password or key: a count of 0 means the
    client never offered a credential.
    """
    seen: Counter[str] = Counter()
    original: Callable[[_UnitServer, str], bool] = _UnitServer.begin_auth

    def counting(self: _UnitServer, username: str) -> bool:
        seen[self._unit.serial] += 1
        return original(self, username)

    monkeypatch.setattr(_UnitServer, "begin_auth", counting)
    return seen
