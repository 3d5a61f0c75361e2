"""CS look-up: `GET /customers/{code}/v6` with 100,000 units in the inventory, under load from
a second process, on SQLite and on PostgreSQL.

The inventory is a fleet file of 100,000 parents (one customer each, a third of their lines
V6-ready) imported with `fleetd import fleet`. The daemon is `fleetd serve` (engine and API;
no scheduler, no bastion) in its own process; the load comes from another process
(`child`): a few clients at once, each asking for the verdict of a random customer, as a CS
agent's screen does, for a bounded number of requests. Latency is what the client sees.

    python -m benchmarks.lookup [--units 100000] [--requests 3000] [--clients 4]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import random
import signal
import socket
from pathlib import Path
from typing import Any

from benchmarks import common

TARGET_P99_MS = 50.0
CODE0 = 200_000_000  # customer codes of the generated fleet: 9 digits from here
ADDRESS_BASE = (127, 96)  # management addresses (never reached: the look-up reads the store)

NAME = "CS look-up: GET /customers/{code}/v6 with 100,000 units, under load"
COMMAND = "python -m benchmarks.lookup --units 100000 --requests 2000 --clients 4 --rounds 2"


def fleet_csv(units: int, out: Path) -> Path:
    """A fleet file of `units` parents, one customer each."""
    from simulators.fleet import CSV_COLUMNS

    rng = random.Random(6)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for i in range(units):
            address = f"{ADDRESS_BASE[0]}.{ADDRESS_BASE[1] + i // 65536}.{i // 256 % 256}.{i % 256}"
            row = {
                "customer_code": str(CODE0 + i),
                "serial": f"US01LK{i:06d}",
                "role": "parent",
                "parent_serial": "",
                "address": address,
                "ssh_port": "22",
                "snmp_port": "161",
                "username": "admin",
                "password": f"{rng.getrandbits(64):016x}",
                "line_type": "flets-east" if i % 2 else "flets-west",
                "v6_ready": "yes" if i % 3 == 0 else "no",
                "moved_by_customer": "no",
                "tunnel": '{"aftr": "2001:db8:1a::1", "type": "ds-lite"}',
                "link_item": "no",
            }
            writer.writerow([row[c] for c in CSV_COLUMNS])
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def load(params: dict[str, Any]) -> dict[str, Any]:
    """The second process (`child`): `clients` at once, `requests` in all."""
    import httpx

    rng = random.Random(params["seed"])
    base, count = params["base"], params["requests"]
    headers = {"Authorization": f"Bearer {params['token']}"}
    latencies: list[float] = []
    errors: list[str] = []
    todo = iter(range(count))

    async def client(http: httpx.AsyncClient) -> None:
        for _ in todo:
            code = CODE0 + rng.randrange(params["units"])
            t0 = common.wall()
            answer = await http.get(f"{base}/customers/{code}/v6", headers=headers)
            latencies.append(common.wall() - t0)
            if answer.status_code != 200 and len(errors) < 5:
                errors.append(f"{answer.status_code} {answer.text[:200]}")

    async with httpx.AsyncClient(timeout=30) as http:
        await http.get(f"{base}/customers/{CODE0}/v6", headers=headers)  # warm-up
        wall0 = common.wall()
        await asyncio.gather(*(client(http) for _ in range(params["clients"])))
        took = common.wall() - wall0
    return {
        "requests": len(latencies),
        "wall_s": took,
        "p50_ms": common.percentile(latencies, 50) * 1000,
        "p99_ms": common.percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
        "errors": errors,
    }


async def one_store(
    store: str, csv_path: Path, units: int, requests: int, clients: int, rounds: int
) -> dict[str, Any]:
    print(f"   look-up on {store}: importing {units} units", flush=True)
    t0 = common.wall()
    inv = await common.inventory(f"lookup_{store}", ("fleet", csv_path), store=store)
    import_s = common.wall() - t0
    token = (
        (await common.fleetd(inv, "users", "add", "cs-bench", "--role", "cs")).strip().split()[-1]
    )
    port = free_port()
    env = inv.env(api_port=port, state_dir=inv.folder / "state", log_level="ERROR")
    log = (inv.folder / "serve.log").open("wb")
    daemon = await asyncio.create_subprocess_exec(
        str(common.BIN / "fleetd"), "serve", "--no-scheduler", "--no-bastion",
        env=env, stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        async with httpx.AsyncClient() as http:
            for _ in range(600):
                try:
                    if (await http.get(f"{base}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError(
                    f"fleetd serve did not get ready: {(inv.folder / 'serve.log').read_text()[-2000:]}"
                )
        rss_idle = common.proc_status_mb(daemon.pid)
        rounds_out = []
        for i in range(rounds):
            cpu0 = common.proc_cpu_seconds(daemon.pid)
            params = {"base": base, "token": token, "requests": requests, "clients": clients,
                      "units": units, "seed": i}  # fmt: skip
            result = await common.child("lookup", params)
            result["daemon_cpu_ms"] = (
                (common.proc_cpu_seconds(daemon.pid) - cpu0) / max(1, result["requests"]) * 1000
            )
            rounds_out.append(result)
        rss_busy = common.proc_status_mb(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        await asyncio.wait_for(daemon.wait(), 60)
    return {"store": store, "import_s": import_s, "rounds": rounds_out,
            "rss_idle_mb": rss_idle, "rss_busy_mb": rss_busy}  # fmt: skip


async def measure(units: int, requests: int, clients: int, rounds: int) -> dict[str, Any]:
    folder = common.VAR / "lookup"
    folder.mkdir(parents=True, exist_ok=True)
    path = fleet_csv(units, folder / "fleet.csv")
    stores = [
        await one_store(s, path, units, requests, clients, rounds) for s in ("sqlite", "postgresql")
    ]
    return {"units": units, "clients": clients, "requests": requests, "stores": stores}


async def run(quick: bool) -> dict[str, Any]:
    if quick:
        return await measure(5000, 300, 4, 2)
    return await measure(100_000, 2000, 4, 2)


def render(r: dict[str, Any]) -> str:
    lines = [
        f"{r['units']} units (one parent per customer) imported with `fleetd import fleet`; "
        f"`fleetd serve` in its own process; {r['clients']} clients at once in a second process, "
        f"{r['requests']} requests of random customers per round. Latency is the client's.",
        "",
        "| store | p99, median of rounds (rounds) | p50 | requests/s | daemon CPU per request | errors | target p99 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in r["stores"]:
        rounds = s["rounds"]
        p99 = common.median([x["p99_ms"] for x in rounds])
        rate = common.median([x["requests"] / x["wall_s"] for x in rounds])
        errors = sum(len(x["errors"]) for x in rounds)
        lines.append(
            f"| {s['store']} | **{p99:.1f} ms** ({common.runs_text([x['p99_ms'] for x in rounds], unit=' ms')}) | "
            f"{common.median([x['p50_ms'] for x in rounds]):.1f} ms | {rate:.0f} | "
            f"{common.median([x['daemon_cpu_ms'] for x in rounds]):.1f} ms | {errors} | "
            f"≤ {TARGET_P99_MS:.0f} ms: {common.verdict(p99 <= TARGET_P99_MS and errors == 0)} |"
        )
    for s in r["stores"]:
        first = next((x["errors"][0] for x in s["rounds"] if x["errors"]), None)
        if first:
            lines.append(f"\n{s['store']}: first error `{first}`")
    lines.append(
        "\nImport of the fleet file: "
        + ", ".join(f"{s['store']} {s['import_s']:.0f} s" for s in r["stores"])
        + "; daemon RSS idle / after the load: "
        + ", ".join(
            f"{s['store']} {s['rss_idle_mb']:.0f} / {s['rss_busy_mb']:.0f} MB" for s in r["stores"]
        )
        + "."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(render(asyncio.run(measure(args.units, args.requests, args.clients, args.rounds))))


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "child":
        common.child_main(load)
    else:
        main()
