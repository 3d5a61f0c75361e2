"""Simulator scale: 10,000 units in one process, descriptors, and CPU per SSH session.

The simulator runs in its own process (`fleet-sim serve`); this process is the client.
CPU is read from /proc for the simulator's pid only, so the client's cost is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncssh

COMMANDS = (
    "show status",
    "show wan",
    "show wlan",
    "configure",
    "set wlan guest passphrase {passphrase}",
    "commit",
)


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def one_session(row: dict[str, str], key: asyncssh.SSHKey, n: int) -> None:
    async with asyncssh.connect(
        row["address"],
        int(row["ssh_port"]),
        username=row["username"],
        client_keys=[key],
        known_hosts=None,
        preferred_auth="publickey",
    ) as conn:
        process = await conn.create_process(term_type="vt100")
        await process.stdout.readuntil("> ")
        for command in COMMANDS:
            process.stdin.write(command.format(passphrase=f"bench-pass-{n:06d}") + "\n")
            await process.stdout.readuntil(("> ", "# "))
        process.stdin.write("exit\nexit\n")  # configuration mode, then the session
        await process.wait_closed()


async def run_sessions(
    rows: list[dict[str, str]], key: asyncssh.SSHKey, count: int, concurrency: int
) -> list[float]:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def go(i: int) -> None:
        async with sem:
            start = time.perf_counter()
            await one_session(rows[i % len(rows)], key, i)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(go(i) for i in range(count)))
    return latencies


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.main",
        "serve",
        "--units",
        str(args.units),
        "--base-address",
        "127.40.0.1",
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
        stdout=asyncio.subprocess.PIPE,
    )
    assert sim.stdout is not None
    while not (await sim.stdout.readline()).startswith(b"Stop with"):
        pass
    ready_s = time.perf_counter() - started
    with (state / "fleet.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    key = asyncssh.read_private_key(str(state / "id_ed25519"))
    fds_idle = proc_fds(sim.pid)
    rss_idle = proc_rss_mb(sim.pid)
    # Warm-up: one session per unit to be used, so per-unit setup is counted apart.
    sample = rows[: args.sessions]
    cpu0 = proc_cpu_seconds(sim.pid)
    wall0 = time.perf_counter()
    await run_sessions(sample, key, len(sample), args.concurrency)
    cpu_first = proc_cpu_seconds(sim.pid) - cpu0
    wall_first = time.perf_counter() - wall0
    runs = []
    for _ in range(args.repeats):
        cpu0 = proc_cpu_seconds(sim.pid)
        lat = await run_sessions(sample, key, len(sample), args.concurrency)
        runs.append(((proc_cpu_seconds(sim.pid) - cpu0) / len(sample) * 1000, lat))
    fds_busy = proc_fds(sim.pid)
    rss_busy = proc_rss_mb(sim.pid)
    sim.terminate()
    await sim.wait()
    per_session = [r[0] for r in runs]
    return {
        "units": args.units,
        "startup_s": round(ready_s, 2),
        "fds_idle": fds_idle,
        "fds_after_load": fds_busy,
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "rss_idle_mb": round(rss_idle, 1),
        "rss_after_load_mb": round(rss_busy, 1),
        "sessions_per_run": len(sample),
        "concurrency": args.concurrency,
        "first_contact_cpu_ms_per_session": round(cpu_first / len(sample) * 1000, 2),
        "first_contact_wall_s": round(wall_first, 2),
        "cpu_ms_per_session_runs": [round(x, 2) for x in per_session],
        "cpu_ms_per_session_median": round(statistics.median(per_session), 2),
        "session_latency_p50_ms": round(statistics.median(runs[-1][1]) * 1000, 1),
    }


NAME = "Simulator: 10,000 units in one process, CPU per SSH session"
COMMAND = "python -m benchmarks.sim_sessions --units 10000 --sessions 1000 --repeats 3"
TARGET_CPU_MS = 7.0


async def run(quick: bool) -> dict[str, Any]:
    args = argparse.Namespace(
        units=1000 if quick else 10_000,
        sessions=200 if quick else 1000,
        concurrency=50,
        repeats=2 if quick else 3,
        state_dir="var/bench-sim",
    )
    return await main_async(args)


def render(r: dict[str, Any]) -> str:
    ok = "met" if r["cpu_ms_per_session_median"] <= TARGET_CPU_MS else "NOT met"
    runs = ", ".join(f"{x} ms" for x in r["cpu_ms_per_session_runs"])
    return "\n".join(
        [
            f"A session is: connect, public-key login, an interactive shell, six commands "
            f"({'; '.join(c.split(' {')[0] for c in COMMANDS)}), exit. "
            f"{r['sessions_per_run']} sessions per run over as many units, {r['concurrency']} at once.",
            "",
            "| figure | value |",
            "| --- | --- |",
            f"| units served by one process | {r['units']} (ready in {r['startup_s']} s) |",
            f"| open file descriptors, idle / after load | {r['fds_idle']} / {r['fds_after_load']} "
            f"(limit {r['nofile_limit']}) |",
            f"| simulator CPU per session, median (runs) | **{r['cpu_ms_per_session_median']} ms** "
            f"({runs}); target ≤ {TARGET_CPU_MS} ms: {ok} |",
            f"| simulator CPU per session, first contact with each unit | "
            f"{r['first_contact_cpu_ms_per_session']} ms (host key and options built once per unit) |",
            f"| session wall time p50 (client and simulator share 2 cores) | {r['session_latency_p50_ms']} ms |",
            f"| simulator RSS, idle / after load | {r['rss_idle_mb']} MB / {r['rss_after_load_mb']} MB |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--state-dir", default="var/bench-sim")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
