"""The simulator's control interface: JSON lines over TCP on 127.0.0.1.

One request per line, one answer per line. Documented in docs/unit-contract.md,
"Simulator control". `fleet-sim ctl` is its command-line client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import fields
from typing import Any

from simulators.fleet import Fleet, LatencyProfile
from simulators.unit import Faults, Unit

FAULT_FIELDS = {f.name: f.type for f in fields(Faults)}
LINE_FIELDS = ("v6_ready", "moved_by_customer", "pppoe_active", "tunnel")


class ControlError(Exception):
    pass


def _targets(fleet: Fleet, request: dict[str, Any]) -> list[Unit]:
    serials = request.get("serials")
    if serials is None and "serial" in request:
        serials = [request["serial"]]
    if serials is None:
        raise ControlError('name the unit: "serial": "US01…" or "serials": [...]')
    units = []
    for serial in serials:
        unit = fleet.units.get(serial)
        if unit is None:
            raise ControlError(f"no unit {serial} in this fleet")
        units.append(unit)
    return units


def _fault_values(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in FAULT_FIELDS:
            raise ControlError(f'unknown fault "{name}"; faults: {", ".join(FAULT_FIELDS)}')
        kind = FAULT_FIELDS[name]
        if kind == "bool":
            if not isinstance(value, bool):
                raise ControlError(f"fault {name} takes true or false")
            out[name] = value
        else:
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ControlError(f"fault {name} takes a number of seconds (or count) >= 0")
            out[name] = int(value) if kind == "int" else float(value)
    return out


def describe(fleet: Fleet, unit: Unit) -> dict[str, Any]:
    return {
        "serial": unit.serial,
        "role": unit.role,
        "address": fleet.address_of[unit.serial],
        "customer_code": fleet.customer_of[unit.serial],
        "up": unit.is_up(),
        "status": unit.status(),
        "wan": unit.wan() if unit.role == "parent" else None,
        "lamps": unit.lamps(),
        "faults": unit.faults.as_dict(),
        "host_key_generation": unit.host_key_generation,
        "line": {
            "line_type": unit.line.line_type,
            "v6_ready": unit.line.v6_ready,
            "moved_by_customer": unit.line.moved_by_customer,
            "pppoe_active": unit.line.pppoe_active,
            "tunnel": unit.line.tunnel,
        },
        "commits": [
            {"seq": r.seq, "at": r.at, "kind": r.kind, "user": r.user, "paths": list(r.paths)}
            for r in unit.commit_log
        ],
    }


def handle(fleet: Fleet, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one control request against the fleet; errors come back as data."""
    try:
        return {"ok": True, **_handle(fleet, request)}
    except ControlError as exc:
        return {"ok": False, "error": str(exc)}


def _handle(fleet: Fleet, request: dict[str, Any]) -> dict[str, Any]:
    op = request.get("op")
    if op == "status":
        down = sum(1 for u in fleet if not u.is_up())
        faulty = sum(1 for u in fleet if u.faults.as_dict())
        return {
            "units": len(fleet),
            "down": down,
            "with_faults": faulty,
            "latency": {"rtt": fleet.latency.rtt, "commit": fleet.latency.commit},
        }
    if op == "unit":
        return {"units": [describe(fleet, u) for u in _targets(fleet, request)]}
    if op == "fault":
        values = _fault_values(request.get("set") or {})
        units = _targets(fleet, request)
        for unit in units:
            for name, value in values.items():
                setattr(unit.faults, name, value)
        return {"changed": len(units)}
    if op == "clear":
        units = (
            _targets(fleet, request)
            if ("serial" in request or "serials" in request)
            else list(fleet)
        )
        for unit in units:
            unit.faults = Faults()
        return {"changed": len(units)}
    if op == "rehost":
        units = _targets(fleet, request)
        for unit in units:
            unit.host_key_generation += 1
        return {"changed": len(units)}
    if op == "reboot":
        units = _targets(fleet, request)
        for unit in units:
            unit.reboot("control")
        return {"changed": len(units)}
    if op == "line":
        values = request.get("set") or {}
        for name, value in values.items():
            if name not in LINE_FIELDS:
                raise ControlError(f'unknown line fact "{name}"; facts: {", ".join(LINE_FIELDS)}')
            if name == "tunnel":
                if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()
                ):
                    raise ControlError('line fact tunnel takes an object such as {"type": …}')
            elif not isinstance(value, bool):
                raise ControlError(f"line fact {name} takes true or false")
        units = _targets(fleet, request)
        for unit in units:
            for name, value in values.items():
                setattr(unit.line, name, value)
        return {"changed": len(units)}
    if op == "latency":
        try:
            fleet.latency = LatencyProfile(
                rtt=float(request.get("rtt", fleet.latency.rtt)),
                commit=float(request.get("commit", fleet.latency.commit)),
            )
        except (TypeError, ValueError):
            raise ControlError("latency takes rtt and commit in seconds") from None
        if fleet.latency.rtt < 0 or fleet.latency.commit < 0:
            fleet.latency = LatencyProfile()
            raise ControlError("latency takes rtt and commit in seconds, 0 or more")
        return {"latency": {"rtt": fleet.latency.rtt, "commit": fleet.latency.commit}}
    raise ControlError(
        f'unknown op "{op}"; ops: status, unit, fault, clear, rehost, reboot, line, latency'
    )


class ControlServer:
    def __init__(self, fleet: Fleet, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fleet = fleet
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self._host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("not an object")
                    answer = handle(self.fleet, request)
                except ValueError as exc:
                    answer = {"ok": False, "error": f"not a JSON object: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


async def request(port: int, payload: dict[str, Any], host: str = "127.0.0.1") -> dict[str, Any]:
    """Send one control request and return the answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(json.dumps(payload).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
        answer: dict[str, Any] = json.loads(line)
        return answer
    finally:
        writer.close()
