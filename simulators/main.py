"""`fleet-sim`: serve a simulated U-SPOT fleet, and steer it while it runs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
from pathlib import Path
from typing import Any

from simulators.control import FAULT_FIELDS, LINE_FIELDS, handle, request
from simulators.fleet import USERNAME, Fleet, FleetSpec, LatencyProfile, parse_duration
from simulators.server import ServedFleet, serve_fleet

FAULT_MIX_KINDS: dict[str, dict[str, Any]] = {
    "unreachable": {"refuse": True},
    "blackhole": {"blackhole": True},
    "slow": {"rtt": 0.5, "commit_delay": 3.0},
    "flap": {"flap_period": 20.0},
    "auth": {"auth_fail": True},
    "drop": {"drop_after": 3},
    "snmp-timeout": {"snmp_timeout": True},
}


class UsageError(Exception):
    pass


def parse_fault(text: str) -> tuple[str, dict[str, Any]]:
    """``SERIAL:kind[=value][,kind[=value]…]``, e.g. ``US01SP000003:rtt=200ms,auth_fail``."""
    serial, sep, rest = text.partition(":")
    if not sep or not rest:
        raise UsageError(f'--fault "{text}": expected SERIAL:kind[=value][,…]')
    values: dict[str, Any] = {}
    for item in rest.split(","):
        name, eq, raw = item.strip().partition("=")
        name = name.replace("-", "_")
        if name not in FAULT_FIELDS:
            raise UsageError(
                f'--fault "{text}": unknown fault "{name}"; faults: {", ".join(FAULT_FIELDS)}'
            )
        kind = FAULT_FIELDS[name]
        if kind == "bool":
            values[name] = raw.lower() not in ("0", "no", "false") if eq else True
        elif not eq:
            raise UsageError(f'--fault "{text}": {name} needs a value, e.g. {name}=2')
        elif kind == "int":
            if not raw.isdigit():
                raise UsageError(f'--fault "{text}": {name} takes a whole number')
            values[name] = int(raw)
        else:
            try:
                values[name] = parse_duration(raw, f"--fault {name}")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
    return serial, values


def parse_fault_mix(text: str) -> list[tuple[str, float]]:
    """``unreachable=5%,slow=5%``: a share of the units gets each kind of fault."""
    mix = []
    for item in filter(None, (p.strip() for p in text.split(","))):
        name, _, raw = item.partition("=")
        if name not in FAULT_MIX_KINDS:
            raise UsageError(f'--fault-mix "{item}": kinds are {", ".join(FAULT_MIX_KINDS)}')
        try:
            share = float(raw.removesuffix("%")) / (100 if raw.endswith("%") else 1)
        except ValueError:
            raise UsageError(f'--fault-mix "{item}": expected a share such as 5%') from None
        mix.append((name, share))
    if sum(s for _, s in mix) > 1:
        raise UsageError("--fault-mix: the shares add up to more than 100%")
    return mix


def apply_faults(fleet: Fleet, faults: list[str], mix: str, seed: int) -> dict[str, str]:
    """Apply --fault and --fault-mix; returns serial -> the kind of fault it got."""
    given: dict[str, str] = {}
    for text in faults:
        serial, values = parse_fault(text)
        answer = handle(fleet, {"op": "fault", "serial": serial, "set": values})
        if not answer["ok"]:
            raise UsageError(f'--fault "{text}": {answer["error"]}')
        given[serial] = ",".join(values)
    units = [u for u in fleet if u.serial not in given]
    random.Random(seed).shuffle(units)
    start = 0
    for kind, share in parse_fault_mix(mix):
        count = round(share * len(fleet))
        for unit in units[start : start + count]:
            for name, value in FAULT_MIX_KINDS[kind].items():
                setattr(unit.faults, name, value)
            given[unit.serial] = kind
        start += count
    return given


def _me() -> str:
    """How the user started this program, so the printed commands work as printed."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "main.py":
        return f"{sys.executable} -m simulators.main"
    return str(argv0)


def how_to_use(served: ServedFleet, state_dir: Path, inventory: Path | None) -> str:
    fleet = served.fleet
    parent = next((u for u in fleet if u.role == "parent"), next(iter(fleet)))
    address = fleet.address_of[parent.serial]
    key = state_dir / "id_ed25519"
    known = state_dir / "known_hosts"
    ssh = (
        f"ssh -i {key} -o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes "
        f"-p {served.ssh_port} {USERNAME}@{address}"
    )
    roles = {r: sum(1 for u in fleet if u.role == r) for r in ("parent", "child", "ap")}
    lines = [
        f"fleet-sim: {len(fleet)} units ({roles['parent']} parents, {roles['child']} children, "
        f"{roles['ap']} access points) from {fleet.address_of[next(iter(fleet)).serial]}",
        f"  SSH port {served.ssh_port}, SNMP port {served.snmp_port} on every unit address; "
        f"control on 127.0.0.1:{served.control_port}",
        f"  inventory: {inventory}"
        if inventory
        else "  inventory: not written (no --inventory-out)",
        "",
        f"Try the first parent, {parent.serial} at {address}:",
        f"  {ssh} 'show status'",
        f"  {ssh}          # interactive; 'help' lists commands",
        f"  snmpget -v2c -c {served.read_community} {address}:{served.snmp_port} "
        "1.3.6.1.2.1.1.5.0 1.3.6.1.4.1.55555.1.2.1.0 1.3.6.1.4.1.55555.1.3.3.0",
        f"  {_me()} ctl --state-dir {state_dir} unit {parent.serial}",
    ]
    faulty = [u for u in fleet if u.faults.as_dict()]
    if faulty:
        lines += ["", f"Units with faults ({len(faulty)}):"]
        for unit in faulty[:10]:
            kinds = ", ".join(f"{k}={v}" for k, v in unit.faults.as_dict().items())
            lines.append(f"  {unit.serial} at {fleet.address_of[unit.serial]}: {kinds}")
        if len(faulty) > 10:
            lines.append(
                f"  … and {len(faulty) - 10} more ({_me()} ctl --state-dir {state_dir} status)"
            )
    lines += ["", "Stop with Ctrl-C."]
    return "\n".join(lines)


async def serve(args: argparse.Namespace) -> int:
    if args.units < 0 or args.aps < 0 or not 0 <= args.children_per_parent <= 9:
        raise UsageError("--units and --aps are >= 0; --children-per-parent is 0 to 9")
    spec = FleetSpec(
        units=args.units,
        children_per_parent=args.children_per_parent,
        aps=args.aps,
        base_address=args.base_address,
        v6_ready_share=args.v6_ready_share,
        moved_share=args.moved_share,
        link_item_share=args.link_item_share,
        seed=args.seed,
    )
    try:
        latency = LatencyProfile.parse(args.latency_profile)
    except ValueError as exc:
        raise UsageError(f"--latency-profile: {exc}") from None
    state_dir = Path(args.state_dir)
    try:
        served = serve_fleet(
            spec,
            state_dir=state_dir,
            latency=latency,
            ssh_port=args.ssh_port,
            snmp_port=args.snmp_port,
            control_port=args.control_port,
            read_community=args.read_community,
            write_community=args.write_community,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    apply_faults(served.fleet, args.fault, args.fault_mix, args.seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with served:
            inventory = Path(args.inventory_out) if args.inventory_out else None
            if inventory is not None:
                served.write_inventory(inventory)
            served.fleet.write_known_hosts(state_dir / "known_hosts", served.ssh_port)
            if not args.quiet:
                print(how_to_use(served, state_dir, inventory), flush=True)
            await stop.wait()
    except OSError as exc:
        raise UsageError(
            f"cannot listen: {exc} (is another fleet-sim running? see --ssh-port)"
        ) from None
    return 0


def _control_port(args: argparse.Namespace) -> int:
    if args.port:
        return int(args.port)
    path = Path(args.state_dir) / "endpoints.json"
    try:
        return int(json.loads(path.read_text())["control_port"])
    except FileNotFoundError:
        raise UsageError(
            f"{path} not found: is `fleet-sim serve --state-dir {args.state_dir}` running?"
        ) from None


def _pairs(items: list[str], what: str) -> dict[str, Any]:
    """``name=value`` words; yes/no and true/false are booleans, JSON is parsed."""
    out: dict[str, Any] = {}
    for item in items:
        name, eq, raw = item.partition("=")
        if not eq:
            raise UsageError(f'{what} "{item}": expected name=value')
        if raw.lower() in ("yes", "true", "on"):
            out[name] = True
        elif raw.lower() in ("no", "false", "off"):
            out[name] = False
        else:
            try:
                out[name] = json.loads(raw)
            except json.JSONDecodeError:
                out[name] = raw
    return out


async def ctl(args: argparse.Namespace) -> int:
    port = _control_port(args)
    payload: dict[str, Any]
    if args.action in ("status",):
        payload = {"op": "status"}
    elif args.action == "fault":
        if not args.rest:
            raise UsageError("fault SERIAL kind[=value] …")
        try:
            _, values = parse_fault(args.serial + ":" + ",".join(args.rest))
        except UsageError as exc:
            raise UsageError(str(exc).replace("--fault ", "fault ", 1)) from None
        payload = {"op": "fault", "serial": args.serial, "set": values}
    elif args.action == "line":
        bad = [n for n in _pairs(args.rest, "line") if n not in LINE_FIELDS]
        if bad:
            raise UsageError(f"line facts are {', '.join(LINE_FIELDS)}; not {', '.join(bad)}")
        payload = {"op": "line", "serial": args.serial, "set": _pairs(args.rest, "line")}
    elif args.action == "latency":
        values = {k: parse_duration(str(v), k) for k, v in _pairs(args.rest, "latency").items()}
        payload = {"op": "latency", **values}
    elif args.action == "clear" and not args.serial:
        payload = {"op": "clear"}
    else:
        if not args.serial:
            raise UsageError(f"{args.action} needs a SERIAL")
        payload = {"op": args.action, "serial": args.serial}
    try:
        answer = await request(port, payload)
    except OSError as exc:
        raise UsageError(f"cannot reach the control port {port}: {exc}") from None
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0 if answer.get("ok") else 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="fleet-sim", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve a simulated fleet until stopped")
    s.add_argument("--units", type=int, default=10, help="parent units, one per customer")
    s.add_argument("--children-per-parent", type=int, default=0)
    s.add_argument("--aps", type=int, default=0, help="access-point customers, one AP each")
    s.add_argument("--base-address", default="127.20.0.1")
    s.add_argument("--state-dir", default="var/sim")
    s.add_argument("--inventory-out", default="", help="write the fleet CSV here")
    s.add_argument("--latency-profile", default="", help="e.g. rtt=30ms,commit=1s")
    s.add_argument("--fault", action="append", default=[], help="SERIAL:kind[=value][,…]")
    s.add_argument(
        "--fault-mix", default="", help="e.g. unreachable=5%%,slow=5%%,flap=5%%,auth=5%%"
    )
    s.add_argument(
        "--v6-ready-share", type=float, default=0.6, help="lines whose 4over6 order is complete"
    )
    s.add_argument(
        "--moved-share", type=float, default=0.03, help="parents the customer moved himself"
    )
    s.add_argument("--link-item-share", type=float, default=0.0, help="parents that are link items")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--ssh-port", type=int, default=2022)
    s.add_argument("--snmp-port", type=int, default=1161)
    s.add_argument("--control-port", type=int, default=7020)
    s.add_argument("--read-community", default="public")
    s.add_argument("--write-community", default="private")
    s.add_argument("--quiet", action="store_true")
    c = sub.add_parser("ctl", help="change a running fleet: faults, line facts, reboots")
    c.add_argument(
        "action",
        choices=("status", "unit", "fault", "clear", "reboot", "rehost", "line", "latency"),
    )
    c.add_argument("serial", nargs="?", default="")
    c.add_argument("rest", nargs="*")
    c.add_argument("--state-dir", default="var/sim")
    c.add_argument("--port", type=int, default=0, help="control port (default: from state dir)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "ctl" and args.action == "latency" and args.serial:
        args.rest = [args.serial, *args.rest]
        args.serial = ""
    try:
        runner = serve(args) if args.command == "serve" else ctl(args)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(runner)
        return 0
    except UsageError as exc:
        print(f"fleet-sim: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
