"""Driver rates against a simulated fleet in its own process: SNMP sweeps and SSH sessions.

    .venv/bin/python -m benchmarks.drivers_rates [--units 2000] [--skip-hlapi]

Starts ``python -m simulators.main serve`` (state in var/bench-drv), reads its
endpoints.json, fleet.csv and known_hosts, then measures from this process:

* SNMP: `SnmpPoller.sweep` over every unit: units/s and this process's CPU per unit, for a
  few window sizes; for comparison, pysnmp's high-level API (hlapi) on a sample, and the
  cost of decoding one answer with pyasn1 versus the poller's own reader.
* SSH: sessions/s and client CPU per session, per transport, where one session is
  ``read_state()`` + a one-path ``stage`` + ``commit``.

CPU is ``time.process_time()`` of this process only (all its threads: libscrapli's and
netmiko's included); the simulator's CPU is read from /proc and shown apart.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import timeit
from pathlib import Path
from typing import Any

from drivers import Change, Timeouts, UnitTarget, load_driver
from drivers.snmp import SnmpPoller
from drivers.snmp_codec import get_template, parse_response
from drivers.uspot_mib import STATE_OBJECTS

STATE_DIR = Path("var/bench-drv")
BASE_ADDRESS = "127.60.0.1"


# ----- the simulator ----------------------------------------------------------------------
def start_simulator(units: int) -> subprocess.Popen[str]:
    shutil.rmtree(STATE_DIR, ignore_errors=True)
    STATE_DIR.mkdir(parents=True)
    command = [
        sys.executable, "-m", "simulators.main", "serve",
        "--units", str(units), "--base-address", BASE_ADDRESS,
        "--state-dir", str(STATE_DIR), "--inventory-out", str(STATE_DIR / "fleet.csv"),
        "--ssh-port", "0", "--snmp-port", "0", "--control-port", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    for line in proc.stdout:  # the summary is printed once everything is written
        if "Stop with Ctrl-C" in line:
            break
        if time.monotonic() > deadline:
            break
    else:
        raise SystemExit(f"the simulator exited ({proc.wait()})")
    return proc


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_targets() -> tuple[list[UnitTarget], dict[str, Any]]:
    endpoints = json.loads((STATE_DIR / "endpoints.json").read_text())
    keys = {}
    for line in (STATE_DIR / "known_hosts").read_text().splitlines():
        host, key = line.split(" ", 1)
        keys[host] = key
    targets = []
    with (STATE_DIR / "fleet.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            address, port = row["address"], int(row["ssh_port"])
            targets.append(
                UnitTarget(
                    serial=row["serial"],
                    address=address,
                    ssh_port=port,
                    snmp_port=int(row["snmp_port"]),
                    username=row["username"],
                    password=row["password"],
                    host_key=keys[f"[{address}]:{port}"],
                    timeouts=Timeouts(connect=20, command=20, commit=20),
                )
            )
    return targets, endpoints


# ----- SNMP -------------------------------------------------------------------------------
async def snmp_sweeps(targets: list[UnitTarget], sim_pid: int, rounds: int = 3) -> None:
    print(f"\nSNMP sweep of {len(targets)} units (SnmpPoller, one socket; best of {rounds})")
    print(f"  {'window':>6} {'units/s':>9} {'CPU µs/unit':>12} {'sim CPU µs/unit':>16} "
          f"{'retries':>8} {'errors':>7}")  # fmt: skip
    for window in (128, 256, 512, 1024):
        async with SnmpPoller(timeout=2.0, retries=1, window=window) as snmp:
            await snmp.sweep(targets[:200])  # warm-up
            best: tuple[float, float, float, int, int] | None = None
            for _ in range(rounds):
                snmp.stats.retries = 0
                sim0, cpu0, wall0 = (
                    proc_cpu_seconds(sim_pid),
                    time.process_time(),
                    time.perf_counter(),
                )
                result = await snmp.sweep(targets)
                wall = time.perf_counter() - wall0
                cpu, sim = time.process_time() - cpu0, proc_cpu_seconds(sim_pid) - sim0
                row = (wall, cpu, sim, snmp.stats.retries, len(result.errors))
                if best is None or wall < best[0]:
                    best = row
            assert best is not None
            wall, cpu, sim, retries, errors = best
            n = len(targets)
            print(f"  {window:>6} {n / wall:>9.0f} {cpu / n * 1e6:>12.0f} {sim / n * 1e6:>16.0f} "
                  f"{retries:>8} {errors:>7}")  # fmt: skip
            receive_buffer = snmp.stats.receive_buffer
    print(f"  socket receive buffer granted: {receive_buffer} bytes")


async def hlapi_sample(targets: list[UnitTarget], concurrency: int = 64) -> None:
    """The same 25 objects through pysnmp's high-level asyncio API, for comparison."""
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        get_cmd,
    )

    engine = SnmpEngine()
    community = CommunityData("public", mpModel=1)
    objects = [ObjectType(ObjectIdentity(oid)) for oid in STATE_OBJECTS.values()]
    gate = asyncio.Semaphore(concurrency)
    failures = 0

    async def one(target: UnitTarget) -> None:
        nonlocal failures
        async with gate:
            transport = await UdpTransportTarget.create(
                (target.address, target.snmp_port), timeout=2, retries=1
            )
            error, status, _, _ = await get_cmd(
                engine, community, transport, ContextData(), *objects
            )
            failures += bool(error or status)

    await one(targets[0])  # warm-up (MIB loading)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(t) for t in targets))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    engine.close_dispatcher()
    n = len(targets)
    print(f"\npysnmp hlapi get_cmd, {n} units, {concurrency} at a time: {n / wall:.0f} units/s, "
          f"{cpu / n * 1e6:.0f} µs CPU/unit, {failures} failures")  # fmt: skip


async def decode_costs(target: UnitTarget) -> None:
    """One real answer, decoded by pyasn1 (pysnmp's proto layer) and by the poller's reader."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto.api import v2c

    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bytes] = loop.create_future()

    class Catch(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not answer.done():
                answer.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(Catch, local_addr=("0.0.0.0", 0))
    request = get_template("public", list(STATE_OBJECTS.values())).render(0x01000001)
    transport.sendto(request, (target.address, target.snmp_port))
    data = await asyncio.wait_for(answer, 5)
    transport.close()
    n = 300
    slow = timeit.timeit(lambda: decoder.decode(data, asn1Spec=v2c.Message()), number=n) / n
    fast = timeit.timeit(lambda: parse_response(data), number=n * 10) / (n * 10)
    print(f"decoding one {len(data)}-octet answer (25 objects): pyasn1 {slow * 1e6:.0f} µs, "
          f"poller's reader {fast * 1e6:.1f} µs")  # fmt: skip


# ----- SSH --------------------------------------------------------------------------------
async def ssh_sessions(
    targets: list[UnitTarget], transport: str, sessions: int, concurrency: int, sim_pid: int
) -> None:
    gate = asyncio.Semaphore(concurrency)
    failures: list[BaseException] = []

    async def one(i: int) -> None:
        target = targets[i % len(targets)]
        async with gate:
            try:
                async with load_driver(target, transport) as unit:
                    await unit.read_state()
                    await unit.stage(Change({"wlan guest ssid": f"Bench {transport} {i}"}))
                    await unit.commit()
            except Exception as exc:
                failures.append(exc)

    await one(0)  # warm-up
    sim0, cpu0, wall0 = proc_cpu_seconds(sim_pid), time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(1, sessions + 1)))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    sim = proc_cpu_seconds(sim_pid) - sim0
    print(f"  {transport:<9} {sessions:>8} {concurrency:>6} {sessions / wall:>10.1f} "
          f"{cpu / sessions * 1e3:>12.1f} {sim / sessions * 1e3:>14.1f} {len(failures):>8}")  # fmt: skip
    if failures:
        print(f"    first failure: {failures[0]!r}")


async def main(args: argparse.Namespace) -> None:
    proc = start_simulator(args.units)
    try:
        targets, _ = load_targets()
        print(f"simulator pid {proc.pid}: {len(targets)} units from {BASE_ADDRESS}; "
              f"{os.cpu_count()} CPUs")  # fmt: skip
        await snmp_sweeps(targets, proc.pid)
        await decode_costs(targets[0])
        if not args.skip_hlapi:
            await hlapi_sample(targets[: args.hlapi_units])
        print("\nSSH sessions: read_state + stage one path + commit, per session")
        print(f"  {'transport':<9} {'sessions':>8} {'at once':>6} {'sessions/s':>10} "
              f"{'CPU ms/sess':>12} {'sim CPU ms/sess':>14} {'failures':>8}")  # fmt: skip
        plan: list[tuple[str, int, int]] = [
            ("asyncssh", args.sessions, 32),
            ("scrapli", args.sessions // 2, 16),
            ("netmiko", args.sessions // 5, 8),
        ]
        for transport, sessions, concurrency in plan:
            await ssh_sessions(targets, transport, sessions, concurrency, proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=2000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--hlapi-units", type=int, default=300)
    parser.add_argument("--skip-hlapi", action="store_true")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    run()
