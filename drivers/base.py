"""What the daemon sees of a unit: the `UnitDriver` protocol and the plain data it speaks.

A driver offers verbs, not raw CLI. It is an async context manager: ``async with driver:``
opens the session (one SSH login) and closes it; the verbs run inside it. Staged changes
live in that session's candidate configuration, so stage and commit in the same session.

Drivers do not import inventory models: the daemon maps its rows to a `UnitTarget`.
Failures are raised as the error tree of `inventory.errors` (`Unreachable`, `AuthFailed`,
`HostKeyMismatch`, `CommandFailed`, `Timeout`), each naming the unit's serial.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Literal, Protocol, Self, runtime_checkable

MASK = "********"
# The last word of a configuration path that holds a secret (U-SPOT: `wan pppoe password`,
# `wlan business passphrase`, `wlan guest passphrase`). Generic on purpose: a vendor's
# `snmp community` or `admin secret` is masked the same way.
SECRET_WORDS = frozenset({"password", "passphrase", "secret", "community", "psk", "key"})

Mode = Literal["exec", "configuration"]
EXEC: Mode = "exec"
CONFIGURATION: Mode = "configuration"


def is_secret_path(path: str) -> bool:
    """True for a configuration path whose value must never be shown or logged."""
    words = path.split()
    return bool(words) and words[-1] in SECRET_WORDS


def passphrase_fingerprint(serial: str, secret: str) -> str:
    """What a unit shows instead of a passphrase: SHA-256 of ``SERIAL:secret``, 16 hex digits.

    Lets a workflow check a passphrase it holds against `UnitState` without reading it.
    """
    return hashlib.sha256(f"{serial}:{secret}".encode()).hexdigest()[:16]


# ----- the unit, as addressed ----------------------------------------------------------------
@dataclass(frozen=True)
class Timeouts:
    """Seconds. ``connect``: TCP, SSH handshake and login; ``command``: one answer;
    ``commit``: a commit's answer (units may take long to apply)."""

    connect: float = 10.0
    command: float = 30.0
    commit: float = 120.0


@dataclass(frozen=True, slots=True)
class UnitTarget:
    """Everything a driver needs to reach one unit; built by the daemon from its inventory.

    ``host_key`` is the pinned host key in OpenSSH public form (``ssh-ed25519 AAAA…``), or
    None on first contact (trust on first use: the driver exposes the key it saw as
    ``seen_host_key`` for the daemon to pin). A pinned key that the unit no longer offers
    is refused before any credential is sent; only a new target with the new key pinned
    (an explicit re-pin) accepts it.
    """

    serial: str
    address: str
    ssh_port: int = 22
    snmp_port: int = 161
    username: str = "admin"
    password: str | None = field(default=None, repr=False)
    private_key: Path | None = None
    platform: str = "uspot"
    host_key: str | None = None
    timeouts: Timeouts = Timeouts()


# ----- what a unit reports ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WanState:
    """A parent's WAN. ``tunnel_state`` is None in V4 mode (the unit prints ``n/a``)."""

    mode: str  # "pppoe" (V4) or "ipoe" (V6)
    tunnel: str | None  # "ds-lite", "map-e", "ipip"; None in V4 mode
    tunnel_state: str | None  # "up" or "down"; None when not in V6 mode
    tunnel_reason: str | None  # why the tunnel is down; None while up or not applicable
    ipv4: str | None
    ipv6: str | None
    pppoe_username: str | None = None  # not reported over SNMP


@dataclass(frozen=True, slots=True)
class WlanState:
    ssid: str | None
    state: str  # "up" or "down"
    passphrase_fingerprint: str | None  # see passphrase_fingerprint(); None: no passphrase


@dataclass(frozen=True, slots=True)
class UnitState:
    """One reading of a unit. ``wan`` and ``internet`` are None on a child or an access point.

    ``running`` is the running configuration (path -> value, secrets shown as ``********``);
    None when the reading came over SNMP, which does not carry it.
    """

    serial: str
    role: str  # "parent", "child" or "ap"
    firmware: str
    account: str  # "active" or "stopped"
    internet: bool | None
    wan: WanState | None
    lamps: Mapping[str, str]  # "POWER", "WAN", "U" -> "on", "off" or "blink"
    business: WlanState
    guest: WlanState
    commit_pending: bool
    rollback_in: int | None  # seconds left on a pending commit's timer, when known
    commits: int  # the newest commit-history sequence number
    running: Mapping[str, str] | None
    read_at: datetime
    parent: str | None = None
    link_item: bool = False
    uptime: int = 0
    source: Literal["ssh", "snmp"] = "ssh"

    @property
    def v6_up(self) -> bool:
        """The unit runs in V6 mode with its tunnel up (the U lamp the customer looks at)."""
        return self.wan is not None and self.wan.tunnel_state == "up"


@dataclass(frozen=True)
class DiffLine:
    """One line of a candidate's difference: ``-`` the running value, ``+`` the candidate's."""

    sign: Literal["-", "+"]
    path: str
    value: str  # masked for secrets


@dataclass(frozen=True)
class CommitEntry:
    seq: int
    at: datetime
    kind: str  # commit, commit-confirmed, confirm, rollback, auto-rollback, snmp-set, reboot
    user: str
    paths: tuple[str, ...]


# ----- what a workflow asks for ----------------------------------------------------------------
class Change(Mapping[str, str | None]):
    """Configuration edits: path -> new value, or None to delete the path.

    ``Change({"wlan guest ssid": "Cafe Free", "wlan guest passphrase": "s3cret-pass"})``.
    Its repr and str mask secret paths, so a change can be logged as it is.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str | None] | None = None, /) -> None:
        self._values: Mapping[str, str | None] = MappingProxyType(dict(values or {}))

    def __getitem__(self, path: str) -> str | None:
        return self._values[path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def masked(self) -> dict[str, str | None]:
        return {
            path: (MASK if value is not None and is_secret_path(path) else value)
            for path, value in self._values.items()
        }

    def secrets(self) -> tuple[str, ...]:
        """The secret values it carries (to scrub them from anything a unit echoes)."""
        return tuple(v for p, v in self._values.items() if v and is_secret_path(p))

    def __repr__(self) -> str:
        return f"Change({self.masked()!r})"

    __str__ = __repr__


# ----- the protocol --------------------------------------------------------------------------
@runtime_checkable
class Shell(Protocol):
    """An interactive CLI channel with a PTY, for remote login: bytes in, bytes out."""

    async def read(self, max_chars: int = 65536) -> str:
        """What the unit wrote since the last read; waits for something; "" at end of session."""
        ...

    async def write(self, data: str) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class UnitDriver(Protocol):
    """The verbs a workflow uses on one unit. ``async with driver:`` is one session."""

    target: UnitTarget

    @property
    def seen_host_key(self) -> str | None:
        """The host key the unit offered on the last connection (OpenSSH public form)."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def read_state(self) -> UnitState: ...

    async def stage(self, change: Change) -> None:
        """Put the change in this session's candidate; all or nothing (a refusal discards it)."""
        ...

    async def diff(self) -> list[DiffLine]: ...

    async def commit_confirmed(self, minutes: int) -> None:
        """Apply the candidate; the unit rolls it back after ``minutes`` unless confirmed."""
        ...

    async def commit(self) -> None: ...

    async def confirm(self) -> None: ...

    async def rollback(self) -> None: ...

    async def discard(self) -> None: ...

    async def history(self) -> list[CommitEntry]: ...

    async def open_shell(
        self, *, term_type: str = "xterm", columns: int = 80, rows: int = 24
    ) -> Shell:
        """An interactive CLI channel with a PTY (for the remote-login bastion)."""
        ...
