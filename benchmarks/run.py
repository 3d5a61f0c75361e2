"""`make bench`: run every benchmark and write docs/benchmarks.md.

Each benchmark module offers `NAME`, `COMMAND`, `async run(quick) -> dict` and
`render(result) -> str`. Figures are medians of several runs taken in one go, because the
machine is shared and noisy; targets are checked here, never in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import lookup, memory, monthend, rotation, side_by_side, sim_sessions, sweep


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


BENCHMARKS: list[Any] = [
    rotation,
    side_by_side,
    monthend,
    sweep,
    lookup,
    memory,
    sim_sessions,
    DriverRates,
]
OUT = Path("docs/benchmarks.md")
QUICK_OUT = Path("var/bench/quick.md")  # a smoke test's figures are not the documented ones
NOTES = Path("benchmarks/notes.md")  # what the figures mean: the floors and where they are


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


def key(bench: Any) -> str:
    """The name `--only` knows a benchmark by: its module's."""
    if isinstance(bench, type):
        return "drivers_rates"
    return str(bench.__name__).rsplit(".", 1)[-1]


async def main_async(quick: bool, only: set[str] | None = None) -> dict[str, Any]:
    """Run the benchmarks; their results by module, with the machine and the date."""
    results: dict[str, Any] = {}
    for bench in BENCHMARKS:
        if only and key(bench) not in only:
            continue
        print(f"== {bench.NAME}", flush=True)
        started = time.perf_counter()
        result: dict[str, Any] = await bench.run(quick)
        result["_took_s"] = time.perf_counter() - started
        result["_when"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        results[key(bench)] = result
    return {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "quick": quick,
        "results": results,
    }


def write_doc(run: dict[str, Any]) -> str:
    """docs/benchmarks.md from the results of a run."""
    sections = []
    for bench in BENCHMARKS:
        result = run["results"].get(key(bench))
        if result is None:
            continue
        sections.append(
            f"## {bench.NAME}\n\nCommand: `{bench.COMMAND}` "
            f"(this section took {result['_took_s']:.0f} s, ended {result.get('_when', run['when'])})"
            f"\n\n{bench.render(result)}\n"
        )
    head = (
        "# Benchmarks\n\n"
        f"Written by `make bench` on {run['when']}, on {run['machine']}.\n"
        "The simulator always runs in a process of its own, so the CPU figures of each side "
        "are measured apart (from /proc). Figures are medians of the runs shown; the machine is "
        "shared, so compare ratios taken in one run rather than figures from different days.\n\n"
    )
    notes = NOTES.read_text() if NOTES.exists() and not run["quick"] else ""
    return head + notes + "\n".join(sections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    parser.add_argument("--out", default="", help=f"default {OUT}; {QUICK_OUT} with --quick")
    parser.add_argument(
        "--render-only", action="store_true", help="write the page again from the saved results"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated benchmark modules, e.g. rotation,sweep"
    )
    args = parser.parse_args()
    args.out = args.out or str(QUICK_OUT if args.quick else OUT)
    only = {name.strip() for name in args.only.split(",") if name.strip()} or None
    saved = Path("var/bench") / (Path(args.out).stem + ".json")
    if args.render_only:
        run = json.loads(saved.read_text())
    else:
        run = asyncio.run(main_async(args.quick, only))
        if only and saved.exists():  # a section run again: the others stay as they were
            earlier = json.loads(saved.read_text())
            if earlier.get("quick") == run["quick"]:
                run["results"] = {**earlier["results"], **run["results"]}
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps(run, indent=1))
    text = write_doc(run)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
