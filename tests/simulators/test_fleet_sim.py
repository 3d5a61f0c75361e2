"""`fleet-sim serve` and `fleet-sim ctl` as a user runs them, with OpenSSH and net-snmp."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

FLEET_SIM = [sys.executable, "-m", "simulators.main"]
BASE = "127.32.0.1"


async def run(*argv: str, timeout: float = 20) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def fleet_sim(state: Path, *extra: str) -> AsyncIterator[tuple[dict[str, int], str]]:
    proc = await asyncio.create_subprocess_exec(
        *FLEET_SIM,
        "serve",
        "--units",
        "3",
        "--children-per-parent",
        "1",
        "--aps",
        "1",
        "--base-address",
        BASE,
        "--state-dir",
        str(state),
        "--inventory-out",
        str(state / "fleet.csv"),
        "--ssh-port",
        "0",
        "--snmp-port",
        "0",
        "--control-port",
        "0",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    banner = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line, "fleet-sim exited before it was ready"
            banner.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
        endpoints = json.loads((state / "endpoints.json").read_text())
        yield endpoints, "".join(banner)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def ssh_argv(state: Path, port: int, address: str, *command: str) -> list[str]:
    return [
        "ssh",
        "-i",
        str(state / "id_ed25519"),
        "-o",
        f"UserKnownHostsFile={state / 'known_hosts'}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
        "-p",
        str(port),
        f"admin@{address}",
        *command,
    ]


async def test_serve_writes_the_inventory_and_answers_ssh_and_snmp(tmp_path: Path) -> None:
    state = tmp_path / "sim"
    async with fleet_sim(state) as (endpoints, banner):
        assert "7 units (3 parents, 3 children, 1 access points)" in banner
        rows = read_rows(state / "fleet.csv")
        assert stat.S_IMODE(os.stat(state / "fleet.csv").st_mode) == 0o600
        assert [r["role"] for r in rows].count("child") == 3
        parent = next(r for r in rows if r["role"] == "parent")
        child = next(r for r in rows if r["role"] == "child")
        assert child["parent_serial"] == parent["serial"]
        assert child["customer_code"] == parent["customer_code"]
        assert len(parent["customer_code"]) == 9 and parent["serial"].startswith("US01")
        assert int(parent["ssh_port"]) == endpoints["ssh_port"]

        code, out, err = await run(
            *ssh_argv(state, endpoints["ssh_port"], parent["address"], "show status")
        )
        assert code == 0, err
        assert f"serial: {parent['serial']}" in out

        code, out, _ = await run(
            "snmpget",
            "-v2c",
            "-c",
            "public",
            "-Oqv",
            "-t",
            "2",
            "-r",
            "1",
            f"{child['address']}:{endpoints['snmp_port']}",
            "1.3.6.1.2.1.1.5.0",
        )
        assert code == 0 and child["serial"] in out

        code, out, _ = await run(
            *FLEET_SIM, "ctl", "--state-dir", str(state), "fault", parent["serial"], "refuse"
        )
        assert code == 0 and json.loads(out)["ok"]
        code, _, err = await run(
            *ssh_argv(state, endpoints["ssh_port"], parent["address"], "show status")
        )
        assert code == 255 and "reset" in err.lower()
        code, out, _ = await run(*FLEET_SIM, "ctl", "--state-dir", str(state), "clear")
        assert code == 0


async def test_host_keys_and_passwords_survive_a_restart_with_the_same_state_dir(
    tmp_path: Path,
) -> None:
    state = tmp_path / "sim"
    async with fleet_sim(state):
        first_hosts = (state / "known_hosts").read_text()
        first_rows = read_rows(state / "fleet.csv")
    async with fleet_sim(state) as (endpoints, _):
        # The ports are new (port 0), the keys are not.
        keys = lambda text: sorted(line.split(" ", 1)[1] for line in text.splitlines())  # noqa: E731
        assert keys((state / "known_hosts").read_text()) == keys(first_hosts)
        rows = read_rows(state / "fleet.csv")
        assert [r["password"] for r in rows] == [r["password"] for r in first_rows]
        code, _, err = await run(
            *ssh_argv(state, endpoints["ssh_port"], rows[0]["address"], "show lamps")
        )
        assert code == 0, err


async def test_bad_arguments_are_refused_with_the_rule(tmp_path: Path) -> None:
    code, _, err = await run(
        *FLEET_SIM, "serve", "--base-address", "10.0.0.1", "--state-dir", str(tmp_path)
    )
    assert code == 2 and "not in 127.0.0.0/8" in err
    code, _, err = await run(
        *FLEET_SIM, "serve", "--latency-profile", "rtt=fast", "--state-dir", str(tmp_path)
    )
    assert code == 2 and '"fast" is not a duration' in err
    code, _, err = await run(
        *FLEET_SIM,
        "serve",
        "--fault",
        "US01SP000000:lag=1",
        "--state-dir",
        str(tmp_path),
        "--ssh-port",
        "0",
    )
    assert code == 2 and 'unknown fault "lag"' in err
    code, _, err = await run(*FLEET_SIM, "ctl", "--state-dir", str(tmp_path / "none"), "status")
    assert code == 2 and "is `fleet-sim serve" in err
