"""Serving a fleet: SSH, SNMP and control on loopback, plus the units' timers.

`ServedFleet` is an async context manager; `fleet-sim serve` and the tests both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from types import TracebackType

import asyncssh

from simulators.clock import Clock, ManualClock, SystemClock
from simulators.control import ControlServer
from simulators.fleet import Fleet, FleetSpec, LatencyProfile, build_fleet, load_seed
from simulators.snmp import SnmpAgent
from simulators.ssh import FleetSSHServer, load_or_create_client_key

TICK_SECONDS = 1.0


class ServedFleet:
    """A fleet on the air. Ports are the same for every unit; addresses differ."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        client_key: asyncssh.SSHKey,
        state_dir: Path | None = None,
        ssh_port: int = 0,
        snmp_port: int = 0,
        control_port: int = 0,
        read_community: str = "public",
        write_community: str = "private",
    ) -> None:
        self.fleet = fleet
        self.state_dir = state_dir
        self.client_key = client_key
        self.ssh = FleetSSHServer(fleet, client_key, port=ssh_port)
        self.snmp = SnmpAgent(
            fleet.unit_at,
            port=snmp_port,
            read_community=read_community,
            write_community=write_community,
            fleet_rtt=lambda: fleet.latency.rtt,
        )
        self.control = ControlServer(fleet, port=control_port)
        self.read_community = read_community
        self.write_community = write_community
        self._ticker: asyncio.Task[None] | None = None

    @property
    def ssh_port(self) -> int:
        return self.ssh.port

    @property
    def snmp_port(self) -> int:
        return self.snmp.port

    @property
    def control_port(self) -> int:
        return self.control.port

    async def __aenter__(self) -> ServedFleet:
        await self.ssh.start()
        await self.snmp.start()
        await self.control.start()
        clock = self.fleet.clock
        if isinstance(clock, ManualClock):
            clock.subscribe(self.tick)
        else:
            self._ticker = asyncio.create_task(self._tick_forever())
        if self.state_dir is not None:
            self._write_endpoints()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.control.close()
        self.snmp.close()
        await self.ssh.close()

    def tick(self) -> None:
        for unit in self.fleet:
            if unit.pending is not None:
                unit.tick()

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.tick()

    def _write_endpoints(self) -> None:
        assert self.state_dir is not None
        endpoints = {
            "ssh_port": self.ssh_port,
            "snmp_port": self.snmp_port,
            "control_port": self.control_port,
            "read_community": self.read_community,
            "write_community": self.write_community,
            "pid": os.getpid(),
        }
        # It names the write community: private to the user, like the inventory.
        path = self.state_dir / "endpoints.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(endpoints, indent=2) + "\n")
        path.chmod(0o600)

    def write_inventory(self, path: Path) -> None:
        self.fleet.write_inventory(path, self.ssh_port, self.snmp_port)


def serve_fleet(
    spec: FleetSpec,
    *,
    state_dir: Path | None = None,
    clock: Clock | None = None,
    latency: LatencyProfile | None = None,
    ssh_port: int = 0,
    snmp_port: int = 0,
    control_port: int = 0,
    read_community: str = "public",
    write_community: str = "private",
) -> ServedFleet:
    """Build a fleet from `spec` and return it ready to serve (`async with`)."""
    seed = load_seed(state_dir)
    fleet = build_fleet(spec, clock=clock or SystemClock(), secret_seed=seed, latency=latency)
    if state_dir is not None:
        client_key = load_or_create_client_key(state_dir / "id_ed25519")
    else:
        client_key = asyncssh.generate_private_key("ssh-ed25519")
    return ServedFleet(
        fleet,
        client_key=client_key,
        state_dir=state_dir,
        ssh_port=ssh_port,
        snmp_port=snmp_port,
        control_port=control_port,
        read_community=read_community,
        write_community=write_community,
    )
