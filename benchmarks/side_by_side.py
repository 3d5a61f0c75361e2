"""Side by side: the same change on the same 1,000 units (RTT 30 ms, commit 1 s) by fleetd and
by Nornir + netmiko, in one run against one simulator process.

The change is the guest passphrase: set, commit, verify. fleetd runs it as its GUEST_ROTATE
operation (one session: `commit confirmed`, then a read that verifies, then `confirm`)
over each of its transports; Nornir runs a task of three netmiko steps in one session
(`send_config_set`, `commit`, `show wlan` checked against the passphrase's fingerprint) on
its ThreadedRunner with 100 workers. Each contender runs in a process of its own; its CPU is
that process's own (every thread).

    python -m benchmarks.side_by_side [--units 1000] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import hashlib
import re
import secrets
from collections import Counter
from typing import Any

from benchmarks import common, rotation

BASE = "127.90.0.1"
LATENCY = rotation.LATENCY
NORNIR_WORKERS = 100
TARGET_RATIO = 3.0

NAME = "Side by side: fleetd and Nornir + netmiko, the same change on the same 1,000 units"
COMMAND = "python -m benchmarks.side_by_side --units 1000 --runs 3"

# contender -> how it runs: fleetd over a transport (engine parallelism, executor threads)
FLEETD = {
    "fleetd asyncssh": {"transport": "asyncssh", "parallel": 400},
    "fleetd scrapli": {"transport": "scrapli", "parallel": 200},
    "fleetd netmiko": {"transport": "netmiko", "parallel": 100, "threads": 100},
}
NORNIR = "Nornir + netmiko"


def run_nornir_sync(fleet_csv: str, workers: int) -> dict[str, Any]:
    from nornir.core import Nornir
    from nornir.core.inventory import Defaults, Groups, Host, Hosts, Inventory
    from nornir.core.plugins.connections import ConnectionPluginRegister
    from nornir.core.task import Result, Task
    from nornir.plugins.runners import ThreadedRunner
    from nornir_netmiko.tasks import netmiko_commit, netmiko_send_command, netmiko_send_config

    from drivers.platforms.uspot_netmiko import register

    ConnectionPluginRegister.auto_register()
    register()  # ConnectHandler(device_type="uspot")
    hosts = Hosts()
    with open(fleet_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            hosts[row["serial"]] = Host(
                name=row["serial"],
                hostname=row["address"],
                port=int(row["ssh_port"]),
                username=row["username"],
                password=row["password"],
                platform="uspot",
            )
    nr = Nornir(
        inventory=Inventory(hosts=hosts, groups=Groups(), defaults=Defaults()),
        runner=ThreadedRunner(num_workers=workers),
    )
    passphrase = "Nr" + secrets.token_hex(7)

    def rotate(task: Task) -> Result:
        task.run(netmiko_send_config, config_commands=[f"set wlan guest passphrase {passphrase}"])
        task.run(netmiko_commit)
        shown = task.run(netmiko_send_command, command_string="show wlan").result
        guest = str(shown).split("wlan guest", 1)[-1]
        found = re.search(r"passphrase-fingerprint: (\S+)", guest)
        wanted = hashlib.sha256(f"{task.host.name}:{passphrase}".encode()).hexdigest()[:16]
        if found is None or found.group(1) != wanted:
            raise ValueError(f"{task.host.name}: the guest passphrase did not take")
        task.host.close_connections()
        return Result(host=task.host, result="rotated", changed=True)

    cpu0, wall0 = common.self_cpu(), common.wall()
    results = nr.run(task=rotate)
    cpu, took = common.self_cpu() - cpu0, common.wall() - wall0
    failed = sorted(results.failed_hosts)
    first = ""
    if failed:
        first = str(results[failed[0]][0].exception)[:300]
    return {
        "wall_s": took,
        "cpu_s": cpu,
        "operations": len(results),
        "states": {"succeeded": len(results) - len(failed), "failed": len(failed)},
        "first_failure": first,
        "peak_rss_mb": common.proc_status_mb("self", "VmHWM"),
    }


async def run_child(params: dict[str, Any]) -> dict[str, Any]:
    if params["contender"] == NORNIR:
        return await asyncio.to_thread(run_nornir_sync, params["fleet_csv"], NORNIR_WORKERS)
    return await rotation.run_engine(params)


async def one_nornir(sim: common.Sim) -> dict[str, Any]:
    sim0 = sim.cpu()
    params = {"contender": NORNIR, "fleet_csv": str(sim.fleet_csv)}
    result = await common.child("side_by_side", params)
    result["sim_cpu_s"] = sim.cpu() - sim0
    n = max(1, result["operations"])
    result["cpu_ms_per_unit"] = result["cpu_s"] / n * 1000
    result["sim_cpu_ms_per_unit"] = result["sim_cpu_s"] / n * 1000
    result["failures"] = result["states"]["failed"]
    return result


async def measure(units: int, runs: int) -> dict[str, Any]:
    order = [*FLEETD, NORNIR]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    async with common.simulator("side", BASE, units, latency=LATENCY) as sim:
        inv = await common.inventory("side", ("fleet", sim.fleet_csv))
        for i in range(runs):
            for name in order:
                print(f"   side by side run {i + 1}/{runs}: {name}", flush=True)
                if name == NORNIR:
                    result = await one_nornir(sim)
                else:
                    how = FLEETD[name]
                    result = await rotation.one_run(
                        sim,
                        inv,
                        how["parallel"],
                        contender=name,
                        **{k: v for k, v in how.items() if k != "parallel"},
                    )
                results[name].append(result)
    return {"units": units, "runs": runs, "results": results}


async def run(quick: bool) -> dict[str, Any]:
    # the ratio is taken within each run; three runs give it a median
    return await measure(200 if quick else 1000, 1 if quick else 3)


def render(r: dict[str, Any]) -> str:
    res = r["results"]

    def med(name: str, key: str) -> float:
        return common.median([x[key] for x in res[name]])

    lines = [
        f"{r['units']} units, RTT 30 ms, commit 1 s; {r['runs']} runs, the contenders one after "
        "the other within each run against the same simulator process. fleetd: the engine "
        "(SQLite store), 400 operations at once over asyncssh, 200 over scrapli, 100 over "
        "netmiko (100 executor threads); Nornir: ThreadedRunner with "
        f"{NORNIR_WORKERS} workers, nornir-netmiko tasks, one session per unit.",
        "",
        "| contender | wall time, median (runs) | CPU per unit | simulator CPU per unit "
        "| failures | peak RSS |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in res.items():
        fails = sum(x["failures"] for x in runs)
        lines.append(
            f"| {name} | **{med(name, 'wall_s'):.1f} s** "
            f"({common.runs_text([x['wall_s'] for x in runs], unit=' s')}) | "
            f"{med(name, 'cpu_ms_per_unit'):.1f} ms | {med(name, 'sim_cpu_ms_per_unit'):.1f} ms | "
            f"{fails} | {med(name, 'peak_rss_mb'):.0f} MB |"
        )
    ratios = [
        n["wall_s"] / f["wall_s"] for f, n in zip(res["fleetd asyncssh"], res[NORNIR], strict=True)
    ]
    cpu_ratios = [
        n["cpu_ms_per_unit"] / f["cpu_ms_per_unit"]
        for f, n in zip(res["fleetd asyncssh"], res[NORNIR], strict=True)
    ]
    ratio = common.median(ratios)
    lines += [
        "",
        f"Nornir's wall time over fleetd's (asyncssh), taken within each run: **{ratio:.2f}x** "
        f"({common.runs_text(ratios, '{:.2f}', 'x')}); target ≥ {TARGET_RATIO:.0f}x: "
        f"{common.verdict(ratio >= TARGET_RATIO)}. Nornir's CPU per unit over fleetd's: "
        f"{common.median(cpu_ratios):.2f}x ({common.runs_text(cpu_ratios, '{:.2f}', 'x')}); "
        f"fleetd lower: {common.verdict(common.median(cpu_ratios) > 1)}. fleetd does more per "
        "unit (`commit confirmed`, a full read that verifies, `confirm`, every step recorded in "
        "the store); Nornir's task is one session with a plain `commit`.",
    ]
    firsts = [x.get("first_failure") for x in res[NORNIR] if x.get("first_failure")]
    if firsts:
        lines.append(f"\nNornir's first failure: `{firsts[0]}`")
    states = {
        name: dict(sum((Counter(x["states"]) for x in runs), Counter()))
        for name, runs in res.items()
    }
    lines.append(f"\nOutcomes over all runs: {states}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(render(asyncio.run(measure(args.units, args.runs))))


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "child":
        common.child_main(run_child)
    else:
        main()
