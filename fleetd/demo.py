"""`make demo`: fleetd on SQLite with a simulated fleet, its control API and its bastion.

What it sets up, in `--state-dir` (var/demo):

- `fleet-sim serve`: 50 shops on loopback (40 with a parent and a child, 10 with an access
  point), half of the lines V6-ready, one unit unreachable;
- a secret key, a migrated store, the fleet file and a contract export imported (one
  cancellation takes effect this month, so the month-end preview shows it);
- staff users for each role with their API tokens, and an SSH key for the tech user;
- `fleetd serve`, then one business Wi-Fi change (so that a registration notice can be printed);

then it prints the tokens and five commands that work as printed, and serves until Ctrl-C.
The simulator and the daemon each run as their own process; fleetd never imports the
simulator.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import asyncssh

JST = dt.timezone(dt.timedelta(hours=9))
SIM_ARGS = [
    "--units", "40", "--children-per-parent", "1", "--aps", "10",
    "--v6-ready-share", "0.5", "--moved-share", "0.05", "--seed", "7",
    "--base-address", "127.20.0.1", "--ssh-port", "2022", "--snmp-port", "1161",
    "--control-port", "7020",
]  # fmt: skip
ROLES = ("cs", "tech", "admin", "auditor")
SHOPS = ["カフェ", "美容室", "居酒屋", "歯科", "書店", "花屋", "ベーカリー", "事務所"]
KANA = ["カフェ", "ビヨウシツ", "イザカヤ", "シカ", "ショテン", "ハナヤ", "ベーカリー", "ジムショ"]
TOWNS = [
    ("105-0001", "東京都港区芝公園1-1-{n}"),
    ("530-0001", "大阪府大阪市北区梅田2-2-{n}"),
    ("460-0008", "愛知県名古屋市中区栄3-3-{n}"),
    ("810-0001", "福岡県福岡市中央区天神4-4-{n}"),
]


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _run(env: dict[str, str], *argv: str) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo: {' '.join(argv[:3])} failed:\n{done.stderr.strip()}")
    return done.stdout


def write_contracts(fleet_csv: Path, out: Path, today: dt.date) -> dict[str, Any]:
    """A contract export for the simulated fleet: names, kana, phones, three addresses, one
    item per unit; the last shop's contract ends this month. Returns what the demo shows."""
    with fleet_csv.open(newline="") as fh:
        units = list(csv.DictReader(fh))
    last_day = today.replace(day=calendar.monthrange(today.year, today.month)[1])
    codes = list(dict.fromkeys(u["customer_code"] for u in units))
    cancelled = codes[-11] if len(codes) > 11 else codes[-1]  # a parent shop, not an AP one
    rows = []
    for n, unit in enumerate(units, start=1):
        code = unit["customer_code"]
        i = codes.index(code)
        postal, town = TOWNS[i % len(TOWNS)]
        item = {"parent": "9604076", "child": "9604072", "ap": "9604073"}[unit["role"]]
        rows.append(
            {
                "customer_code": code,
                "customer_name": f"{SHOPS[i % len(SHOPS)]} {i + 1:02d}号店",
                "customer_kana": f"{KANA[i % len(KANA)]}",
                "phone": f"03-5555-{1000 + i:04d}",
                "branch": "東京支店" if i % 2 == 0 else "大阪支店",
                "install_postal_code": postal,
                "install_address": town.format(n=i + 1),
                "item_no": f"DEMO{n:05d}",
                "item_code": item,
                "status": "confirmed",
                "serial": unit["serial"],
                "parent_serial": unit["parent_serial"],
                "line_type": unit["line_type"] if unit["role"] == "parent" else "",
                "billing_start_month": f"{today.year - 1}-04",
                "cancellation_date": last_day.isoformat() if code == cancelled else "",
                "order_note": "",
            }
        )
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    parents = [u for u in units if u["role"] == "parent"]
    ready = [u for u in parents if u["v6_ready"] == "yes" and u["moved_by_customer"] == "no"]
    return {
        "cancelled": cancelled,
        "cutover": ready[0]["customer_code"] if ready else parents[0]["customer_code"],
        "wifi": parents[1]["customer_code"],
        "original": parents[2]["customer_code"],
        "login": parents[1]["serial"],
    }


def _api(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the demo's own daemon on loopback
        url + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
        return json.loads(answer.read() or b"null")


def _wait_ready(url: str, daemon: subprocess.Popen[bytes], seconds: float = 60) -> None:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if daemon.poll() is not None:
            raise SystemExit("demo: fleetd serve stopped; see var/demo/fleetd.log")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2):  # noqa: S310
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise SystemExit(f"demo: the control API did not answer at {url}; see var/demo/fleetd.log")


def _wait_operations(url: str, token: str, ids: list[int], seconds: float = 90) -> None:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        states = [_api(url, token, "GET", f"/operations/{i}")["state"] for i in ids]
        if all(s in ("succeeded", "failed", "escalated", "cancelled") for s in states):
            return
        time.sleep(0.5)


def _tech_key(state: Path) -> Path:
    path = state / "tech_key"
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="tech@fleetd-demo")
        key.write_private_key(str(path))
        key.write_public_key(str(path) + ".pub")
        path.chmod(0o600)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", default="var/demo")
    args = parser.parse_args(argv)
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    key = state / "fleetd.key"
    api_port = os.environ.get("FLEETD_API_PORT", "8080")
    bastion_port = os.environ.get("FLEETD_BASTION_PORT", "2222")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETD_")}
    env.update(
        FLEETD_DATABASE_URL=f"sqlite+aiosqlite:///{state / 'fleetd.db'}",
        FLEETD_SECRET_KEY_FILE=str(key),
        FLEETD_STATE_DIR=str(state / "fleetd"),
        FLEETD_API_PORT=api_port,
        FLEETD_BASTION_PORT=bastion_port,
        FLEETD_SWEEP_SECONDS="60",
        FLEETD_LOG_LEVEL="INFO",
    )
    sim = subprocess.Popen(
        [_tool("fleet-sim"), "serve", *SIM_ARGS, "--state-dir", str(state / "sim"),
         "--inventory-out", str(state / "fleet.csv"), "--fault", "US01SP000007:refuse"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    daemon: subprocess.Popen[bytes] | None = None
    assert sim.stdout is not None
    try:
        for line in sim.stdout:
            if line.startswith("Stop with"):
                break
        else:
            return sim.wait() or 1
        fleetd = _tool("fleetd")
        if not key.exists():
            _run(env, fleetd, "keygen", str(key))
        _run(env, fleetd, "migrate")
        _run(env, fleetd, "import", "fleet", str(state / "fleet.csv"))
        today = dt.datetime.now(JST).date()
        picks = write_contracts(state / "fleet.csv", state / "contracts.csv", today)
        _run(env, fleetd, "import", "contracts", str(state / "contracts.csv"))
        tokens = {}
        for role in ROLES:
            name = {"cs": "suzuki", "tech": "tanaka", "admin": "sato", "auditor": "ito"}[role]
            added = subprocess.run(
                [fleetd, "users", "add", name, "--role", role],
                env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
            out = (
                added.stdout if added.returncode == 0 else _run(env, fleetd, "users", "token", name)
            )
            tokens[role] = (name, out.strip().split()[-1])
        tech_key = _tech_key(state)
        subprocess.run(  # a second demo run finds the key registered: that is fine
            [fleetd, "users", "add-key", tokens["tech"][0], str(tech_key) + ".pub"],
            env=env, capture_output=True, check=False,
        )  # fmt: skip
        log = (state / "fleetd.log").open("ab")
        daemon = subprocess.Popen([fleetd, "serve"], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{api_port}"
        _wait_ready(url, daemon)
        admin = tokens["admin"][1]
        change = {"ssid": f"SHOP-{picks['wifi'][-4:]}", "idempotency_key": "demo-wifi"}
        path = f"/customers/{picks['wifi']}/business-wifi"
        made = _api(url, tokens["cs"][1], "POST", path, change)
        _wait_operations(url, admin, [op["id"] for op in made.get("operations", [])])
        print(_banner(state, url, bastion_port, tokens, picks, tech_key), flush=True)
        while daemon.poll() is None and sim.poll() is None:
            time.sleep(0.5)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in (daemon, sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


def _banner(
    state: Path,
    url: str,
    bastion_port: str,
    tokens: dict[str, tuple[str, str]],
    picks: dict[str, Any],
    tech_key: Path,
) -> str:
    ctl = shlex.quote(_tool("fleetctl"))

    def as_(role: str) -> str:
        return f"FLEETD_URL={url} FLEETD_TOKEN={tokens[role][1]} {ctl}"

    known = state / "known_hosts_bastion"
    lines = [
        "",
        f"fleetd is running on SQLite ({state / 'fleetd.db'}) with 50 simulated shops.",
        f"Control API: {url}/docs    Remote login: port {bastion_port}    Log: {state}/fleetd.log",
        "",
        "Tokens (each shown once; `fleetd users token NAME` makes a new one):",
        *(f"  {role:<8} {name:<8} {tok}" for role, (name, tok) in tokens.items()),
        "",
        "Try, from another terminal in this folder:",
        "  # 1. customer support: is this shop on V6?",
        f"  {as_('cs')} v6 {picks['cutover']} --live",
        "  # 2. tech support: switch it to V6 (4over6), and follow it to the end",
        f"  {as_('tech')} cutover {picks['cutover']} --watch",
        "  # 3. customer support: the shop's own name as its guest SSID (Original SSID)",
        f"  {as_('cs')} original-ssid set {picks['original']} 'Cafe Sakura Free'",
        "  # 4. customer support: the registration notice, posted to the installation site",
        f"  {as_('cs')} notice {picks['wifi']} --requester owner --name 'Owner' "
        f"--to installation -o {state}/notice-{picks['wifi']}.pdf --force",
        "  # 5. tech support: log in to a shop's router (type `show status`, then `exit`)",
        f"  FLEETD_URL={url} FLEETD_TOKEN={tokens['tech'][1]} FLEETD_USER={tokens['tech'][0]} "
        f"{ctl} login {picks['login']} -i {tech_key} "
        f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=accept-new",
        "",
        f"Also: month-end preview ({picks['cancelled']} is cancelled this month):",
        f"  {as_('admin')} month-end preview",
        "",
        "Stop with Ctrl-C.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
