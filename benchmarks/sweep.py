"""Status sweep: the scheduler's `status-sweep` job (SNMP over every unit, readings and drift
written to the store) over 10,000 simulated units.

The simulator serves the fleet in its own process; the sweep runs in a process of its own
(`child`), so its CPU (getrusage: the SNMP reader, the drift check and the database writes,
every thread) is the daemon's alone. Several sweeps in a row, as the job runs them.

    python -m benchmarks.sweep [--units 10000] [--sweeps 5] [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from benchmarks import common

BASE = "127.92.0.1"
TARGET_WALL_S = 3.0
TARGET_CPU_US = 150.0

NAME = "Status sweep: SNMP over 10,000 units, readings and drift stored"
COMMAND = "python -m benchmarks.sweep --units 10000 --sweeps 5"


async def run_sweeps(params: dict[str, Any]) -> dict[str, Any]:
    """The daemon side (`child`): `StatusSweep` as the scheduler calls it, several times."""
    from fleetd.clock import SystemClock
    from fleetd.poller import StatusSweep
    from inventory.redact import Redactor
    from inventory.secrets import load_secret_box
    from inventory.store import open_store

    box = load_secret_box(None, Path(params["key_file"]), redactor=Redactor())
    store = open_store(params["url"], pool_size=10)
    sweep = StatusSweep(store, box=box)
    clock = SystemClock()
    runs = []
    try:
        await sweep(clock.now())  # warm-up: imports, first statements, the store's pages
        for _ in range(params["sweeps"]):
            cpu0, wall0 = common.self_cpu(), common.wall()
            summary = await sweep(clock.now())
            runs.append(
                {
                    "wall_s": common.wall() - wall0,
                    "cpu_s": common.self_cpu() - cpu0,
                    "units": summary.units,
                    "read": summary.read,
                    "unreachable": summary.unreachable,
                }
            )
        summary_spy = None
        if params.get("profile"):
            async with common.Spy(params["profile"]):
                for _ in range(3):
                    await sweep(clock.now())
            summary_spy = common.spy_summary(params["profile"], 3 * runs[0]["units"])
    finally:
        await store.close()
    return {
        "runs": runs,
        "profile": summary_spy,
        "peak_rss_mb": common.proc_status_mb("self", "VmHWM"),
    }


async def measure(
    units: int, sweeps: int, store: str = "sqlite", profile: str = ""
) -> dict[str, Any]:
    async with common.simulator("sweep", BASE, units) as sim:
        inv = await common.inventory(f"sweep_{store}", ("fleet", sim.fleet_csv), store=store)
        sim0 = sim.cpu()
        params = {"url": inv.url, "key_file": str(inv.key_file), "sweeps": sweeps}
        if profile:
            params["profile"] = profile
        result = await common.child("sweep", params)
        result["sim_cpu_s"] = sim.cpu() - sim0
    result.update(units=units, store=store)
    return result


async def run(quick: bool) -> dict[str, Any]:
    out = Path(common.VAR / "sweep" / "profile.raw")
    out.parent.mkdir(parents=True, exist_ok=True)
    return await measure(1000 if quick else 10_000, 2 if quick else 5, profile=str(out))


def render(r: dict[str, Any]) -> str:
    runs = r["runs"]
    walls = [x["wall_s"] for x in runs]
    cpus = [x["cpu_s"] / x["units"] * 1e6 for x in runs]
    lost = sum(x["units"] - x["read"] for x in runs)
    wall, cpu = common.median(walls), common.median(cpus)
    lines = [
        f"{r['units']} units, {len(runs)} sweeps after a warm-up, {r['store']} store. "
        "A sweep is one SELECT of the units, one SNMP GET of 25 objects per unit "
        "(`SnmpPoller`, one socket, a window of 256 requests), the drift check, and the "
        "readings upserted in chunks of 2,000.",
        "",
        "| figure | median | runs | target |",
        "| --- | --- | --- | --- |",
        f"| wall time per sweep | **{wall:.2f} s** | {common.runs_text(walls, '{:.2f}', ' s')} | "
        f"≤ {TARGET_WALL_S:.0f} s: {common.verdict(wall <= TARGET_WALL_S)} |",
        f"| daemon CPU per unit | **{cpu:.0f} µs** | {common.runs_text(cpus, '{:.0f}', ' µs')} | "
        f"≤ {TARGET_CPU_US:.0f} µs: {common.verdict(cpu <= TARGET_CPU_US)} |",
        f"| answers lost (units not read) | {lost} | "
        f"{', '.join(str(x['units'] - x['read']) for x in runs)} | 0: {common.verdict(lost == 0)} |",
        f"| simulator CPU per unit (all sweeps, warm-up included) | "
        f"{r['sim_cpu_s'] / (r['units'] * (len(runs) + 1 + (3 if r.get('profile') else 0))) * 1e6:.0f} µs | | |",
        f"| daemon peak RSS | {r['peak_rss_mb']:.0f} MB | | |",
    ]
    if r.get("profile"):
        lines += ["", "Where the daemon's CPU goes (py-spy, 3 more sweeps):", "",
                  common.render_spy(r["profile"], unit="µs")]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--sweeps", type=int, default=5)
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument("--profile", default="", help="py-spy raw output of 3 more sweeps")
    args = parser.parse_args()
    print(render(asyncio.run(measure(args.units, args.sweeps, args.store, args.profile))))


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "child":
        common.child_main(run_sweeps)
    else:
        main()
