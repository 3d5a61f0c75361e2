"""The pieces of an end-to-end run, each as a user starts it: `fleet-sim serve` in its own
process, the `fleetd` command (keygen, migrate, import, serve) in its own processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulators.control import request

BIN = Path(sys.executable).parent


@dataclass
class Sim:
    state: Path
    endpoints: dict[str, Any]

    @property
    def control_port(self) -> int:
        return int(self.endpoints["control_port"])

    @property
    def fleet_csv(self) -> Path:
        return self.state / "fleet.csv"

    async def ctl(self, message: dict[str, Any]) -> dict[str, Any]:
        answer = await request(self.control_port, message)
        assert answer["ok"], answer
        return answer

    async def units(self, serials: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for start in range(0, len(serials), 10):  # the answers come as lines of up to 64 KiB
            answer = await self.ctl({"op": "unit", "serials": serials[start : start + 10]})
            out.extend(answer["units"])
        return out


@asynccontextmanager
async def fleet_sim(state: Path, base: str, *args: str) -> AsyncIterator[Sim]:
    """`fleet-sim serve` on loopback from `base`, ephemeral ports, until the block ends."""
    state.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "fleet-sim"),
        "serve",
        "--base-address", base,
        "--state-dir", str(state),
        "--inventory-out", str(state / "fleet.csv"),
        "--ssh-port", "0",
        "--snmp-port", "0",
        "--control-port", "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
            assert line, "fleet-sim exited before it was ready"
            if line.startswith("Stop with Ctrl-C"):
                break
        yield Sim(state, json.loads((state / "endpoints.json").read_text()))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)


def fleetd_env(database_url: str, key_file: Path, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
    env["FLEETD_DATABASE_URL"] = database_url
    env["FLEETD_SECRET_KEY_FILE"] = str(key_file)
    for name, value in settings.items():
        env[f"FLEETD_{name.upper()}"] = str(value)
    return env


async def fleetd(env: Mapping[str, str], *argv: str, timeout: float = 120) -> str:
    """Run a `fleetd` command to its end; its output, or an AssertionError with stderr."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "fleetd"),
        *argv,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"fleetd {' '.join(argv)}: {err.decode()}"
    return out.decode()


class Daemon:
    """A `fleetd serve` process."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    async def start(cls, env: Mapping[str, str], log: Path, *argv: str) -> Daemon:
        handle = log.open("wb")
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "fleetd"),
            "serve",
            *argv,
            env=dict(env),
            stdout=handle,
            stderr=handle,
        )
        handle.close()
        return cls(proc, log)

    def kill(self) -> None:
        """SIGKILL: no clean-up, as a crash or the OOM killer would end it."""
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 60)

    def output(self) -> str:
        return self.log.read_text(errors="replace")
