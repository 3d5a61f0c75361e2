"""Memory: the daemon's RSS with 10,000 units and 300 sessions open, and per idle unit.

`fleetd serve` (engine, scheduler, API) runs in its own process against a store of 10,000
simulated units, with the status sweep every few seconds. Idle: its RSS after two sweeps,
against the same daemon with an empty inventory; the difference over the units is what an
idle unit costs. Busy: a guest rotation of 300 units with a 20-second commit, 300 operations
at once, so 300 SSH sessions stay open; the RSS is sampled while they are.

    python -m benchmarks.memory [--units 10000] [--sessions 300]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import signal
from typing import Any

from benchmarks import common, lookup, rotation

BASE = "127.94.0.1"
LATENCY = "rtt=30ms,commit=20s"  # long commits: the sessions stay open while RSS is read
TARGET_RSS_MB = 150.0
TARGET_KB_PER_UNIT = 2.0
SWEEP_SECONDS = 4

NAME = "Memory: daemon RSS with 10,000 units and 300 sessions open"
COMMAND = "python -m benchmarks.memory --units 10000 --sessions 300"


class Serve:
    """`fleetd serve` in its own process."""

    def __init__(self, inv: common.Inventory, **settings: Any) -> None:
        self.inv = inv
        self.port = lookup.free_port()
        self.settings = {"api_port": self.port, "state_dir": inv.folder / "state",
                         "log_level": "ERROR", "sweep_seconds": SWEEP_SECONDS, **settings}  # fmt: skip
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Serve:
        import httpx

        log = (self.inv.folder / "serve.log").open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            str(common.BIN / "fleetd"), "serve", "--no-bastion",
            env=self.inv.env(**self.settings), stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        async with httpx.AsyncClient() as http:
            for _ in range(600):
                try:
                    if (await http.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("fleetd serve did not get ready")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 120)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss(self) -> float:
        return common.proc_status_mb(self.pid)


async def idle_rss(serve: Serve) -> float:
    """RSS once two status sweeps have run."""
    await asyncio.sleep(SWEEP_SECONDS * 2 + 3)
    return serve.rss()


async def measure(units: int, sessions: int) -> dict[str, Any]:
    from fleetd.workflows.base import GUEST_ROTATE

    async with common.simulator("memory", BASE, units, latency=LATENCY) as sim:
        empty = await common.inventory("memory_empty")
        async with Serve(empty) as serve:
            rss_empty = await idle_rss(serve)
        inv = await common.inventory("memory", ("fleet", sim.fleet_csv))
        ssh_port = int(sim.endpoints["ssh_port"])
        with sim.fleet_csv.open(newline="") as fh:
            serials = [row["serial"] for row in csv.DictReader(fh)][:sessions]
        async with Serve(inv, parallel=sessions) as serve:
            rss_idle = await idle_rss(serve)
            await rotation.write_batch(inv.url, str(inv.key_file), GUEST_ROTATE, sessions, serials)
            peak = {"sessions": 0, "rss_mb": 0.0}
            samples = []
            for _ in range(120):  # 60 s at most: the commits take 20 s
                await asyncio.sleep(0.5)
                open_now, rss = common.tcp_sessions(serve.pid, ssh_port), serve.rss()
                samples.append((open_now, rss))
                if open_now > peak["sessions"] or (
                    open_now == peak["sessions"] and rss > peak["rss_mb"]
                ):
                    peak = {"sessions": open_now, "rss_mb": rss}
                if open_now == 0 and peak["sessions"] > 0:
                    break
            rss_after = serve.rss()
    return {
        "units": units,
        "sessions": sessions,
        "rss_empty_mb": rss_empty,
        "rss_idle_mb": rss_idle,
        "peak": peak,
        "max_rss_mb": max(r for _s, r in samples),
        "rss_after_mb": rss_after,
        "kb_per_unit": (rss_idle - rss_empty) * 1024 / units,
    }


async def run(quick: bool) -> dict[str, Any]:
    return await measure(1000 if quick else 10_000, 100 if quick else 300)


def render(r: dict[str, Any]) -> str:
    peak = r["peak"]
    return "\n".join(
        [
            f"`fleetd serve` (engine, scheduler with a status sweep every {SWEEP_SECONDS} s, API), "
            "RSS from /proc. Sessions are the daemon's established TCP connections to the "
            "simulator's SSH port, counted from /proc while the RSS is read.",
            "",
            "| figure | value | target |",
            "| --- | --- | --- |",
            f"| RSS with {r['units']} units and {peak['sessions']} sessions open | "
            f"**{peak['rss_mb']:.0f} MB** (highest seen during the run: {r['max_rss_mb']:.0f} MB) | "
            f"≤ {TARGET_RSS_MB:.0f} MB with {r['sessions']} sessions: "
            f"{common.verdict(r['max_rss_mb'] <= TARGET_RSS_MB and peak['sessions'] >= r['sessions'] * 0.9)} |",
            f"| RSS idle after two sweeps, {r['units']} units / empty inventory | "
            f"{r['rss_idle_mb']:.1f} MB / {r['rss_empty_mb']:.1f} MB | |",
            f"| memory per idle unit | **{r['kb_per_unit']:.2f} KB** | ≤ {TARGET_KB_PER_UNIT:.0f} KB: "
            f"{common.verdict(r['kb_per_unit'] <= TARGET_KB_PER_UNIT)} |",
            f"| RSS once the sessions have closed | {r['rss_after_mb']:.0f} MB | |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=300)
    args = parser.parse_args()
    print(render(asyncio.run(measure(args.units, args.sessions))))


if __name__ == "__main__":
    main()
