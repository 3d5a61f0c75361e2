"""A simulated fleet: units on loopback addresses, their secrets, and the inventory export.

`FleetSpec` says what to build; `build_fleet()` makes the units; `Fleet` keeps them and
answers "which unit lives at this address". Serving them is `simulators.server`'s job.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import ipaddress
import json
import os
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from simulators.clock import Clock, SystemClock
from simulators.config import AP, CHILD, PARENT
from simulators.unit import Line, Unit

CSV_COLUMNS = (
    "customer_code",
    "serial",
    "role",
    "parent_serial",
    "address",
    "ssh_port",
    "snmp_port",
    "username",
    "password",
    "line_type",
    "v6_ready",
    "moved_by_customer",
    "tunnel",
    "link_item",
)
LINE_TYPES = ("flets-east", "flets-west", "hikari-next", "usen-hikari")
USERNAME = "admin"
MAX_CUSTOMERS = 99_999


@dataclass(frozen=True)
class LatencyProfile:
    """Delays applied to every unit of the fleet, on top of per-unit faults."""

    rtt: float = 0.0
    commit: float = 0.0

    @classmethod
    def parse(cls, text: str) -> LatencyProfile:
        """``rtt=30ms,commit=1s``: values in s or ms; an empty text means no delay."""
        values: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in text.split(","))):
            key, sep, raw = item.partition("=")
            if not sep or key not in ("rtt", "commit"):
                raise ValueError(f'latency profile item "{item}": expected rtt=<t> or commit=<t>')
            values[key] = parse_duration(raw, f"latency profile {key}")
            if values[key] < 0:
                raise ValueError(f"latency profile {key}: a delay is 0 or more")
        return cls(**values)


def parse_duration(raw: str, what: str) -> float:
    raw = raw.strip()
    try:
        if raw.endswith("ms"):
            return float(raw[:-2]) / 1000
        return float(raw.removesuffix("s"))
    except ValueError:
        raise ValueError(f'{what}: "{raw}" is not a duration such as 30ms or 1s') from None


@dataclass(frozen=True)
class FleetSpec:
    units: int = 10  # parents (one per customer)
    children_per_parent: int = 0
    aps: int = 0  # access-point customers, one AP each
    base_address: str = "127.20.0.1"
    v6_ready_share: float = 0.6
    moved_share: float = 0.03
    link_item_share: float = 0.0
    seed: int = 1
    first_customer: int = 138_300_000


@dataclass
class Fleet:
    units: dict[str, Unit] = field(default_factory=dict)  # serial -> unit
    by_address: dict[str, Unit] = field(default_factory=dict)
    address_of: dict[str, str] = field(default_factory=dict)  # serial -> address
    customer_of: dict[str, str] = field(default_factory=dict)  # serial -> customer code
    secret_seed: bytes = b""
    latency: LatencyProfile = LatencyProfile()
    clock: Clock = field(default_factory=SystemClock)

    def __iter__(self) -> Iterator[Unit]:
        return iter(self.units.values())

    def __len__(self) -> int:
        return len(self.units)

    def unit_at(self, address: str) -> Unit | None:
        return self.by_address.get(address)

    def password_of(self, serial: str) -> str:
        digest = hmac.new(self.secret_seed, b"password:" + serial.encode(), hashlib.sha256)
        return digest.hexdigest()[:16]

    def host_key_seed(self, unit: Unit) -> bytes:
        message = f"hostkey:{unit.serial}:{unit.host_key_generation}".encode()
        return hmac.new(self.secret_seed, message, hashlib.sha256).digest()

    def host_public_key(self, unit: Unit) -> str:
        """The unit's current host key in OpenSSH public form (``ssh-ed25519 AAAA…``)."""
        private = Ed25519PrivateKey.from_private_bytes(self.host_key_seed(unit))
        raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        blob = b"".join(len(p).to_bytes(4, "big") + p for p in (b"ssh-ed25519", raw))
        return "ssh-ed25519 " + base64.b64encode(blob).decode()

    def write_known_hosts(self, path: Path, ssh_port: int) -> None:
        """An OpenSSH known_hosts file for every unit, so `ssh` can check host keys."""
        lines = []
        for unit in self:
            address = self.address_of[unit.serial]
            lines.append(f"[{address}]:{ssh_port} {self.host_public_key(unit)}\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(lines))

    def add(self, unit: Unit, address: str, customer: str) -> None:
        if unit.serial in self.units:
            raise ValueError(f"serial {unit.serial} is in the fleet twice")
        if address in self.by_address:
            raise ValueError(f"address {address} is in the fleet twice")
        self.units[unit.serial] = unit
        self.by_address[address] = unit
        self.address_of[unit.serial] = address
        self.customer_of[unit.serial] = customer

    def write_inventory(self, path: Path, ssh_port: int, snmp_port: int) -> None:
        """The fleet as the daemon imports it; it holds passwords, so it is private (0600)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for unit in self:
                line = unit.line
                writer.writerow(
                    (
                        self.customer_of[unit.serial],
                        unit.serial,
                        unit.role,
                        unit.parent,
                        self.address_of[unit.serial],
                        ssh_port,
                        snmp_port,
                        USERNAME,
                        self.password_of(unit.serial),
                        line.line_type if unit.role == PARENT else "",
                        _yn(line.v6_ready) if unit.role == PARENT else "",
                        _yn(line.moved_by_customer) if unit.role == PARENT else "",
                        json.dumps(line.tunnel, sort_keys=True) if unit.role == PARENT else "",
                        _yn(unit.link_item),
                    )
                )
        os.replace(tmp, path)


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"


def load_seed(state_dir: Path | None) -> bytes:
    """The fleet's secret seed: kept in the state directory so keys survive restarts."""
    if state_dir is None:
        return secrets.token_bytes(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "seed"
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    seed = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(seed.hex() + "\n")
    return seed


def _addresses(base: str) -> Iterator[str]:
    addr = ipaddress.IPv4Address(base)
    if not addr.is_loopback:
        raise ValueError(f"base address {base} is not in 127.0.0.0/8: units live on loopback")
    while True:
        if not addr.is_loopback:
            raise ValueError(f"the fleet does not fit in 127.0.0.0/8 from {base}")
        if addr.packed[3] not in (0, 255):
            yield str(addr)
        addr += 1


def _line_for(rng: random.Random, spec: FleetSpec, index: int) -> Line:
    line_type = LINE_TYPES[index % len(LINE_TYPES)]
    region = 1 + index % 4
    if line_type == "usen-hikari":
        tunnel = {
            "type": "ipip",
            "local": f"2001:db8:{region:x}00::{index % 65535 + 1:x}",
            "remote": f"2001:db8:{region:x}ff::1",
            "ipv4-address": f"198.51.100.{index % 250 + 1}",
        }
    elif line_type == "hikari-next":
        tunnel = {
            "type": "map-e",
            "br": f"2001:db8:{region:x}e0::1",
            "rule-ipv6-prefix": f"2001:db8:{region:x}00::/40",
            "rule-ipv4-prefix": f"203.0.{region}.0/24",
            "ea-length": "16",
        }
    else:
        tunnel = {"type": "ds-lite", "aftr": f"2001:db8:{region:x}a::1"}
    return Line(
        line_type=line_type,
        v6_ready=rng.random() < spec.v6_ready_share,
        moved_by_customer=rng.random() < spec.moved_share,
        tunnel=tunnel,
        pppoe_username=f"u{spec.first_customer + index}@uspot.example",
    )


def _passphrase(rng: random.Random) -> str:
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
    return "".join(rng.choice(alphabet) for _ in range(13))


def build_fleet(
    spec: FleetSpec,
    *,
    clock: Clock | None = None,
    secret_seed: bytes | None = None,
    latency: LatencyProfile | None = None,
) -> Fleet:
    if spec.units + spec.aps > MAX_CUSTOMERS:
        raise ValueError(
            f"{spec.units + spec.aps} customers: a simulated fleet holds at most {MAX_CUSTOMERS} "
            "(serials are US01 and eight characters)"
        )
    if not 0 <= spec.children_per_parent <= 9:
        raise ValueError("children per parent are 0 to 9")
    for name in ("v6_ready_share", "moved_share", "link_item_share"):
        if not 0.0 <= getattr(spec, name) <= 1.0:
            raise ValueError(f"{name.replace('_', '-')} is a share from 0 to 1")
    clock = clock or SystemClock()
    fleet = Fleet(
        secret_seed=secret_seed if secret_seed is not None else secrets.token_bytes(32),
        latency=latency or LatencyProfile(),
        clock=clock,
    )
    rng = random.Random(spec.seed)
    addresses = _addresses(spec.base_address)
    for index in range(spec.units + spec.aps):
        customer = str(spec.first_customer + index)
        is_ap = index >= spec.units
        wlan = {
            "wlan business ssid": f"USPOT-{customer[-6:]}",
            "wlan business passphrase": _passphrase(rng),
            "wlan guest ssid": "USPOT_FREE_Wi-Fi",
            "wlan guest passphrase": _passphrase(rng),
        }
        if is_ap:
            serial = f"US01SA{index:06d}"
            fleet.add(Unit(serial, AP, clock, config=wlan), next(addresses), customer)
            continue
        line = _line_for(rng, spec, index)
        parent_serial = f"US01SP{index:06d}"
        config = {
            "wan mode": "pppoe",
            "wan pppoe username": line.pppoe_username,
            "wan pppoe password": _passphrase(rng),
            **wlan,
        }
        link_item = rng.random() < spec.link_item_share
        parent = Unit(parent_serial, PARENT, clock, line=line, config=config, link_item=link_item)
        fleet.add(parent, next(addresses), customer)
        for k in range(spec.children_per_parent):
            serial = f"US01SC{index * 10 + k:06d}"
            child = Unit(serial, CHILD, clock, parent=parent_serial, config=wlan)
            fleet.add(child, next(addresses), customer)
    return fleet
