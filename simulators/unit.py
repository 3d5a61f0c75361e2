"""The simulated U-SPOT unit: identity, line, running/candidate configuration, lamps, timers.

Independent of any transport: the SSH server and the SNMP agent both drive a `Unit`
through its methods, and tests can drive it directly with a `ManualClock`.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from simulators.clock import Clock
from simulators.config import (
    AP,
    BY_PATH,
    CHILD,
    PARENT,
    ROLE_NAMES,
    Config,
    InvalidValue,
    commit_check,
    tunnel_params,
)

MODEL = "U-SPOT_01"
FIRMWARE = "3.2.1"
MAX_CONFIRM_MINUTES = 60
COMMIT_LOG_SIZE = 200


class Refused(Exception):
    """A request the unit refuses; the text is what the CLI prints after ``% ``."""


class Rebooted(Exception):
    """The unit restarted while handling the request (fault: reboot during commit)."""


@dataclass
class Line:
    """The shop's fibre line, as far as the unit can tell by using it."""

    line_type: str = "flets-east"
    v6_ready: bool = False  # the partner ISP's 4over6 order is complete
    moved_by_customer: bool = False  # IPv6 is bound to the original line
    tunnel: dict[str, str] = field(default_factory=dict)  # the right 4over6 parameters
    pppoe_username: str = ""
    pppoe_active: bool = True  # the V4 (PPPoE) account still exists at the ISP


@dataclass
class Faults:
    """Per-unit fault injection; see docs/unit-contract.md, "Simulator faults"."""

    refuse: bool = False  # TCP connection reset at once, SNMP unanswered
    blackhole: bool = False  # TCP accepted, nothing ever answered
    rtt: float = 0.0  # seconds added before every response
    commit_delay: float = 0.0  # seconds added to every commit
    auth_fail: bool = False  # every login refused
    drop_after: int = 0  # drop the session after this many commands (0: never)
    reboot_on_commit: bool = False  # the next commit reboots the unit before it applies
    snmp_timeout: bool = False  # SNMP requests dropped
    flap_period: float = 0.0  # reachable and unreachable by turns, each this many seconds

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v not in (False, 0, 0.0)}


@dataclass
class CommitRecord:
    seq: int
    at: float
    kind: str  # commit, commit-confirmed, confirm, rollback, auto-rollback, snmp-set, reboot
    user: str
    paths: tuple[str, ...]


@dataclass
class Pending:
    deadline: float
    previous: Config


def fingerprint(serial: str, secret: str) -> str:
    """What the unit shows instead of a passphrase: enough to verify it, not to read it."""
    return hashlib.sha256(f"{serial}:{secret}".encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=65536)
def _address(seed: str, net: str) -> str:
    network = ipaddress.ip_network(net)
    offset = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big")
    return str(network[2 + offset % (network.num_addresses - 4)])


class Unit:
    """One U-SPOT unit. Every method is synchronous; timers are checked by `tick()`."""

    boot_seconds = 60.0

    def __init__(
        self,
        serial: str,
        role: str,
        clock: Clock,
        *,
        parent: str = "",
        link_item: bool = False,
        line: Line | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.serial = serial
        self.role = role
        self.parent = parent
        self.link_item = link_item
        self.clock = clock
        self.line = line or Line()
        self.faults = Faults()
        self.host_key_generation = 0
        self.running: Config = dict(config or {})
        if role != PARENT:
            self.running = {k: v for k, v in self.running.items() if not k.startswith("wan ")}
        if role == PARENT and link_item:
            self._force_v4()
        self.pending: Pending | None = None
        self.booted_at = clock.now()
        self.down_until = 0.0
        self.commit_seq = 0
        self.commit_log: list[CommitRecord] = []
        self.epoch = 0  # bumped on reboot: sessions of an older epoch are dead
        self.reboot_listeners: list[Callable[[Unit], None]] = []

    # ----- identity and line ---------------------------------------------------------
    def _force_v4(self) -> None:
        # Every link item ships in V4 mode, whatever its label says.
        for path in [p for p in self.running if p.startswith("wan tunnel ")]:
            del self.running[path]
        self.running["wan mode"] = "pppoe"

    @property
    def role_name(self) -> str:
        return ROLE_NAMES[self.role]

    @property
    def role_article(self) -> str:
        """The role as an error message names it: "a child unit", "an access point"."""
        return {PARENT: "a parent unit", CHILD: "a child unit", AP: "an access point"}[self.role]

    def supports(self, path: str) -> bool:
        setting = BY_PATH.get(path)
        return setting is not None and self.role in setting.roles

    # ----- time ------------------------------------------------------------------------
    def tick(self) -> None:
        """Apply whatever the clock says is due: an expired confirm timer, the end of a boot."""
        now = self.clock.now()
        if self.pending is not None and now >= self.pending.deadline:
            previous = self.pending.previous
            changed = _changed(self.running, previous)
            self.running = previous
            self.pending = None
            self._log("auto-rollback", "system", changed)

    def is_up(self) -> bool:
        self.tick()
        now = self.clock.now()
        if now < self.down_until:
            return False
        if self.faults.flap_period > 0:
            return int((now - self.booted_at) // self.faults.flap_period) % 2 == 0
        return True

    def uptime(self) -> int:
        return max(0, int(self.clock.now() - self.booted_at))

    def reboot(self, user: str = "system") -> None:
        """Restart: a pending confirmed commit is rolled back, every session is dropped."""
        if self.pending is not None:
            changed = _changed(self.running, self.pending.previous)
            self.running = self.pending.previous
            self.pending = None
            self._log("auto-rollback", "system", changed)
        now = self.clock.now()
        self.down_until = now + self.boot_seconds
        self.booted_at = self.down_until
        self.epoch += 1
        self._log("reboot", user, ())
        for listener in self.reboot_listeners:
            listener(self)

    # ----- the commit model --------------------------------------------------------------
    def validate(self, path: str, value: str) -> str:
        setting = BY_PATH[path]
        try:
            return setting.check(value)
        except InvalidValue as exc:
            raise Refused(f"Invalid value for {path}: {exc}") from None

    def commit(
        self, edits: Mapping[str, str | None], user: str, confirm_minutes: int | None = None
    ) -> tuple[str, ...]:
        """Apply a session's edits (path -> value, None to delete) to the running config.

        Returns the paths that changed. Raises `Refused` when a whole-config rule fails,
        which leaves everything as it was. A plain commit while a confirm is pending
        confirms it.
        """
        self.tick()
        if confirm_minutes is not None and not 1 <= confirm_minutes <= MAX_CONFIRM_MINUTES:
            raise Refused(
                f'Invalid value "{confirm_minutes}" for commit confirmed: '
                f"minutes are a whole number from 1 to {MAX_CONFIRM_MINUTES}"
            )
        merged = dict(self.running)
        for path, value in edits.items():
            if value is None:
                merged.pop(path, None)
            else:
                merged[path] = value
        changed = _changed(merged, self.running)
        problems = commit_check(merged, self.role)
        if problems:
            raise Refused("Commit failed: " + "; ".join(problems))
        if self.faults.reboot_on_commit:
            self.faults.reboot_on_commit = False
            self.reboot()
            raise Rebooted(self.serial)
        if confirm_minutes is not None:
            previous = self.pending.previous if self.pending else dict(self.running)
            self.pending = Pending(self.clock.now() + confirm_minutes * 60, previous)
            self.running = merged
            self._log("commit-confirmed", user, changed)
            return changed
        if self.pending is not None:
            self.pending = None
            self._log("confirm", user, ())
        if changed:
            self.running = merged
            self._log("commit", user, changed)
        return changed

    def confirm(self, user: str) -> None:
        self.tick()
        if self.pending is None:
            raise Refused("Nothing to confirm: no commit confirmed is pending")
        self.pending = None
        self._log("confirm", user, ())

    def rollback(self, user: str) -> None:
        self.tick()
        if self.pending is None:
            raise Refused("Nothing to roll back: no commit confirmed is pending")
        changed = _changed(self.running, self.pending.previous)
        self.running = self.pending.previous
        self.pending = None
        self._log("rollback", user, changed)

    def snmp_set(self, path: str, value: str) -> None:
        """An SNMP SET applies at once, as a plain commit would."""
        self.tick()
        checked = self.validate(path, value)
        if self.running.get(path) == checked:
            return
        self.running[path] = checked
        self._log("snmp-set", "snmp", (path,))

    def _log(self, kind: str, user: str, paths: tuple[str, ...] | list[str]) -> None:
        self.commit_seq += 1
        self.commit_log.append(
            CommitRecord(self.commit_seq, self.clock.now(), kind, user, tuple(paths))
        )
        del self.commit_log[:-COMMIT_LOG_SIZE]

    # ----- what the unit reports -------------------------------------------------------
    @property
    def account_active(self) -> bool:
        return self.running.get("account state", "active") == "active"

    def wan(self) -> dict[str, str]:
        """The WAN as the unit sees it; only a parent has one."""
        cfg = self.running
        mode = cfg.get("wan mode", "pppoe")
        out = {
            "mode": mode,
            "pppoe-username": cfg.get("wan pppoe username", "-"),
            "tunnel": "-",
            "tunnel-state": "n/a",
            "tunnel-reason": "-",
            "ipv4-address": "-",
            "ipv6-address": "-",
            "internet": "down",
        }
        if not self.account_active:
            out["tunnel-reason"] = "account stopped" if mode == "ipoe" else "-"
            if mode == "ipoe":
                out["tunnel"] = cfg.get("wan tunnel type", "-")
                out["tunnel-state"] = "down"
            return out
        if mode == "pppoe":
            username = cfg.get("wan pppoe username")
            expected = self.line.pppoe_username
            if (
                username
                and cfg.get("wan pppoe password")
                and self.line.pppoe_active
                and (not expected or username == expected)
            ):
                out["ipv4-address"] = _address(self.serial + "v4", "100.64.0.0/10")
                out["internet"] = "up"
            return out
        out["tunnel"] = cfg.get("wan tunnel type", "-")
        up, reason = self._tunnel_comes_up()
        if self.line.v6_ready and not self.line.moved_by_customer:
            out["ipv6-address"] = _address(self.serial + "v6", "2001:db8:8000::/33")
        out["tunnel-state"] = "up" if up else "down"
        out["tunnel-reason"] = reason
        if up:
            out["ipv4-address"] = (
                cfg["wan tunnel ipv4-address"]
                if out["tunnel"] == "ipip"
                else _address(self.serial + "v4", "198.18.0.0/15")
            )
            out["internet"] = "up"
        return out

    def _tunnel_comes_up(self) -> tuple[bool, str]:
        if self.line.moved_by_customer:
            return False, "no IPv6 on the line: the unit is not on its original line"
        if not self.line.v6_ready:
            return False, "no IPv6 on the line: the 4over6 order is not complete"
        wanted = self.line.tunnel
        have = tunnel_params(self.running)
        if not wanted:
            return False, "no 4over6 service on the line"
        if have.get("type") != wanted.get("type"):
            return False, f"the line offers {wanted.get('type')}, not {have.get('type')}"
        for key, value in wanted.items():
            if have.get(key) != value:
                return False, {
                    "aftr": "AFTR unreachable",
                    "br": "BR unreachable",
                    "remote": "IPIP remote unreachable",
                    "local": "IPIP local address not on the line",
                    "ipv4-address": "IPIP IPv4 address refused by the remote",
                }.get(key, "mapping rule does not match the line")
        return True, "-"

    @property
    def internet(self) -> bool:
        return self.role == PARENT and self.wan()["internet"] == "up"

    def wlan_state(self, net: str) -> str:
        if not self.account_active:
            return "down"
        if f"wlan {net} ssid" not in self.running:
            return "down"
        return self.running.get(f"wlan {net} state", "up")

    def lamps(self) -> dict[str, str]:
        if self.role != PARENT:
            wan_lamp = "off"
            u_lamp = "off"
        else:
            wan = self.wan()
            wan_lamp = "on" if wan["internet"] == "up" else "off"
            u_lamp = "on" if wan["tunnel-state"] == "up" else "off"
        return {"POWER": "on", "WAN": wan_lamp, "U": u_lamp}

    def status(self) -> dict[str, str]:
        self.tick()
        if self.pending is not None:
            left = max(0, int(self.pending.deadline - self.clock.now()))
            pending = f"yes (rollback in {left} s)"
        else:
            pending = "no"
        return {
            "serial": self.serial,
            "role": self.role,
            "model": MODEL,
            "firmware": FIRMWARE,
            "parent": self.parent or "-",
            "link-item": "yes" if self.link_item else "no",
            "uptime": str(self.uptime()),
            "account": "active" if self.account_active else "stopped",
            "internet": ("up" if self.internet else "down") if self.role == PARENT else "n/a",
            "commit-pending": pending,
            "commits": str(self.commit_seq),
        }

    def passphrase_fingerprint(self, net: str) -> str:
        secret = self.running.get(f"wlan {net} passphrase")
        return fingerprint(self.serial, secret) if secret else "-"


def _changed(a: Mapping[str, str], b: Mapping[str, str]) -> tuple[str, ...]:
    return tuple(sorted(p for p in set(a) | set(b) if a.get(p) != b.get(p)))
