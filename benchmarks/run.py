"""`make bench`: run every benchmark and write docs/benchmarks.md.

Each benchmark module offers `NAME`, `COMMAND`, `async run(quick) -> dict` and
`render(result) -> str`. Figures are medians of several runs taken in one go, because the
machine is shared and noisy; targets are checked here, never in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import sim_sessions


class DriverRates:
    """benchmarks.drivers_rates prints its own report; it is quoted as it ran."""

    NAME = "Drivers: SNMP sweep rate and SSH session rate per transport"
    COMMAND = "python -m benchmarks.drivers_rates --units 2000 --sessions 200"

    @staticmethod
    async def run(quick: bool) -> dict[str, Any]:
        argv = ["--units", "500" if quick else "2000", "--sessions", "60" if quick else "200"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.drivers_rates",
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        return {"output": out.decode(), "status": proc.returncode}

    @staticmethod
    def render(result: dict[str, Any]) -> str:
        return "```\n" + result["output"].strip() + f"\n```\n(exit status {result['status']})"


BENCHMARKS: list[Any] = [sim_sessions, DriverRates]
OUT = Path("docs/benchmarks.md")


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kb = int(line.split()[1])
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB memory, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


async def main_async(quick: bool) -> str:
    sections = []
    for bench in BENCHMARKS:
        print(f"== {bench.NAME}", flush=True)
        result: dict[str, Any] = await bench.run(quick)
        sections.append(
            f"## {bench.NAME}\n\nCommand: `{bench.COMMAND}`\n\n{bench.render(result)}\n"
        )
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {when}, on {machine()}.\n"
        "The simulator always runs in a process of its own, so the CPU figures of each side "
        "are measured apart (from /proc). Figures are medians of the runs shown; the machine is "
        "shared, so compare ratios taken in one run rather than figures from different days.\n\n"
    )
    return head + "\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    text = asyncio.run(main_async(args.quick))
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
