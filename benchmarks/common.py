"""What the benchmarks share: the simulator in a process of its own, a prepared inventory,
the daemon side in a process of its own, and reading a process's CPU and memory from /proc.

A benchmark's `run(quick)` (in the parent process) starts `fleet-sim serve`, prepares a store
with the `fleetd` command as staff would (keygen, migrate, import), then runs the measured
daemon side with `child(...)`: ``python -m benchmarks.<module> child <json>`` prints one JSON
line with its own figures (CPU from getrusage of that process only, wall, RSS). So neither the
simulator's CPU nor the set-up's counts against the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
VAR = Path("var/bench")
PG_ADMIN = os.environ.get("FLEETD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


# ----- processes -------------------------------------------------------------------------------
def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int | str, field: str = "VmRSS") -> float:
    """A memory figure of /proc/PID/status (VmRSS, VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def self_cpu() -> float:
    """This process's user + system CPU so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sys_cpu() -> float:
    """This process's system (kernel) CPU so far: socket and file calls."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tcp_sessions(pid: int, port: int | None = None) -> int:
    """Established TCP connections of a process (to `port` when given), from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                if cols[3] != "01" or cols[9] not in inodes:  # 01: ESTABLISHED
                    continue
                if port is None or int(cols[2].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


# ----- figures ---------------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def runs_text(values: Sequence[float], fmt: str = "{:.1f}", unit: str = "") -> str:
    return ", ".join(fmt.format(v) + unit for v in values)


# ----- the simulator ---------------------------------------------------------------------------
@dataclass
class Sim:
    proc: asyncio.subprocess.Process
    state: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def fleet_csv(self) -> Path:
        return self.state / "fleet.csv"

    @property
    def endpoints(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state / "endpoints.json").read_text())
        return data

    def cpu(self) -> float:
        return proc_cpu_seconds(self.pid)


@asynccontextmanager
async def simulator(
    name: str, base: str, units: int, *args: str, latency: str = ""
) -> AsyncIterator[Sim]:
    """`fleet-sim serve` of `units` parents from `base`, ephemeral ports, in its own process."""
    state = VAR / name / "sim"
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    extra = ["--latency-profile", latency] if latency else []
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "fleet-sim"), "serve",
        "--units", str(units), "--base-address", base,
        "--state-dir", str(state), "--inventory-out", str(state / "fleet.csv"),
        "--ssh-port", "0", "--snmp-port", "0", "--control-port", "0",
        *extra, *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 300)).decode()
            if not line:
                raise RuntimeError(f"fleet-sim exited before it was ready ({await proc.wait()})")
            if line.startswith("Stop with Ctrl-C"):
                break
        drain = asyncio.create_task(_drain(proc.stdout))  # a full pipe would stall it
        yield Sim(proc, state)
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.read(65536):
        pass


# ----- the inventory ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Inventory:
    url: str
    key_file: Path
    folder: Path

    def env(self, **settings: Any) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
        env["FLEETD_DATABASE_URL"] = self.url
        env["FLEETD_SECRET_KEY_FILE"] = str(self.key_file)
        for name, value in settings.items():
            env[f"FLEETD_{name.upper()}"] = str(value)
        return env


async def fleetd(inventory: Inventory, *argv: str, timeout: float = 1800) -> str:
    """Run a `fleetd` command to its end; its output (a RuntimeError with stderr if it fails)."""
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "fleetd"),
        *argv,
        env=inventory.env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"fleetd {' '.join(argv)}: {err.decode()[-2000:]}")
    return out.decode()


async def postgres_database(name: str) -> str:
    """A fresh PostgreSQL database for a benchmark (dropped and made again); its URL."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)


async def inventory(name: str, *imports: tuple[str, Path], store: str = "sqlite") -> Inventory:
    """A migrated store with a new key and the given imports, made with `fleetd`."""
    folder = VAR / name / "fleetd"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if store == "postgresql":
        url = await postgres_database(f"fleetd_bench_{name}")
    else:
        url = f"sqlite+aiosqlite:///{folder.resolve()}/fleetd.db"
    inv = Inventory(url, folder / "fleetd.key", folder)
    await fleetd(inv, "keygen", str(inv.key_file))
    await fleetd(inv, "migrate")
    for kind, path in imports:
        await fleetd(inv, "import", kind, str(path))
    return inv


# ----- the daemon side in its own process ------------------------------------------------------
async def child(module: str, params: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> child <params>``; the JSON it printed last."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        f"benchmarks.{module}",
        "child",
        json.dumps(params),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    VAR.mkdir(parents=True, exist_ok=True)
    with (VAR / f"{module}.stderr.log").open("ab") as log:  # the daemon's own log lines
        log.write(err)
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmarks.{module} child failed: {err.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def child_main(run: Any) -> None:
    """The `child` entry point: ``run(params) -> dict`` on a new loop, printed as JSON."""
    if len(sys.argv) != 3 or sys.argv[1] != "child":
        raise SystemExit("usage: python -m benchmarks.<module> child <json>")
    result = asyncio.run(run(json.loads(sys.argv[2])))
    print(json.dumps(result), flush=True)


def token() -> str:
    return secrets.token_hex(4)


def wall() -> float:
    return time.perf_counter()


# ----- profiles --------------------------------------------------------------------------------
class Spy:
    """py-spy sampling this process (every thread, idle ones left out) while a block runs;
    `summary()` tells where the CPU went, by package and by our own functions."""

    def __init__(self, out: str, rate: int = 250) -> None:
        self.out = out
        self.rate = rate
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Spy:
        self._proc = await asyncio.create_subprocess_exec(
            str(BIN / "py-spy"), "record", "--pid", str(os.getpid()), "--format", "raw",
            "--rate", str(self.rate), "--gil", "--nonblocking", "-o", self.out,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # py-spy attaches
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(self._proc.wait(), 60)


OURS = ("fleetd/", "drivers/", "inventory/", "api/", "benchmarks/")


def _package(frame: str) -> str:
    """`func (path/to/file.py:12)` -> the package the file belongs to."""
    path = frame.rsplit("(", 1)[-1].split(":", 1)[0]
    for mark in ("site-packages/", "lib/python3.11/"):
        if mark in path:
            path = path.split(mark, 1)[1]
    return path.split("/", 1)[0].removesuffix(".py") if path else "?"


def spy_summary(raw: str, units: int, top: int = 18) -> dict[str, Any]:
    """Where the samples of a py-spy raw file went: self time by package, and inclusive time
    of our own functions; as ms of CPU per unit (`units` units were handled while it ran)."""
    samples: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    rate = 1.0
    for line in Path(raw).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        pkg = _package(frames[-1])
        samples[pkg] = samples.get(pkg, 0) + count
        seen = set()
        for frame in frames:
            if any(o in frame for o in OURS) and "benchmarks/" not in frame:
                name = frame.split(" (")[0] + " (" + frame.rsplit("(", 1)[-1].split(":")[0] + ")"
                if name not in seen:
                    seen.add(name)
                    inclusive[name] = inclusive.get(name, 0) + count
    return {
        "samples": total,
        "rate": rate,
        "by_package": sorted(samples.items(), key=lambda kv: -kv[1])[:top],
        "ours": sorted(inclusive.items(), key=lambda kv: -kv[1])[:top],
        "units": units,
    }


def render_spy(summary: dict[str, Any], rate: int = 250, unit: str = "ms") -> str:
    """A profile as two small tables: daemon CPU per unit (`unit`: ms or µs) by package, and
    the inclusive cost of our own functions."""
    scale = 1000.0 if unit == "ms" else 1e6
    per = scale / rate / max(1, summary["units"])  # per sample per unit
    out = [f"| where (self time) | {unit} per unit | share |", "| --- | --- | --- |"]
    total = max(1, summary["samples"])
    for name, count in summary["by_package"]:
        out.append(f"| {name} | {count * per:.2f} | {count / total:.0%} |")
    out += ["", f"| our function (inclusive) | {unit} per unit | share |", "| --- | --- | --- |"]
    for name, count in summary["ours"]:
        out.append(f"| `{name}` | {count * per:.2f} | {count / total:.0%} |")
    return "\n".join(out)
