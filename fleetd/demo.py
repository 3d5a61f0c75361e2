"""`make demo`: a simulated fleet on loopback, a secret key, a store, and the fleet imported.

The simulator runs as its own process (`fleet-sim serve`); fleetd never imports it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

SIM_ARGS = [
    "--units", "40", "--children-per-parent", "1", "--aps", "5",
    "--fault", "US01SP000007:refuse",
]  # fmt: skip


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", default="var/demo")
    args = parser.parse_args(argv)
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    key = state / "fleetd.key"
    env = {
        **os.environ,
        "FLEETD_DATABASE_URL": f"sqlite:///{state / 'fleetd.db'}",
        "FLEETD_SECRET_KEY_FILE": str(key),
    }
    env.pop("FLEETD_SECRET_KEY", None)
    sim = subprocess.Popen(
        [_tool("fleet-sim"), "serve", *SIM_ARGS, "--state-dir", str(state),
         "--inventory-out", str(state / "fleet.csv")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sim.stdout is not None
    try:
        for line in sim.stdout:
            if line.startswith("Stop with"):
                break
            print(line, end="", flush=True)
        else:
            return sim.wait() or 1
        fleetd = _tool("fleetd")
        if not key.exists():
            subprocess.run([fleetd, "keygen", str(key)], env=env, check=True)
        subprocess.run([fleetd, "migrate"], env=env, check=True)
        subprocess.run([fleetd, "import", "fleet", str(state / "fleet.csv")], env=env, check=True)
        print(
            "\nThe inventory is in "
            f"{env['FLEETD_DATABASE_URL']} (key {key}). To use it from this folder:\n"
            f"  export FLEETD_DATABASE_URL={env['FLEETD_DATABASE_URL']} "
            f"FLEETD_SECRET_KEY_FILE={key}\n"
            f"  {fleetd} import fleet {state / 'fleet.csv'}   # again: nothing changes\n"
            "\nStop with Ctrl-C.",
            flush=True,
        )
        return sim.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if sim.poll() is None:
            sim.send_signal(signal.SIGTERM)
            sim.wait()


if __name__ == "__main__":
    sys.exit(main())
