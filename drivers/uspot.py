"""The U-SPOT_01 platform: what the driver sends and how it reads the answers. No I/O.

Everything here follows docs/unit-contract.md (prompts 2.5, commands 3, value quoting 3.1
and 4.4, errors 7). Transports move text; `drivers.uspot_driver` strings these together.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from drivers.base import (
    MASK,
    Change,
    CommitEntry,
    DiffLine,
    UnitState,
    WanState,
    WlanState,
    is_secret_path,
)
from inventory.errors import CommandFailed, RuleViolation

PLATFORM = "uspot"
# "US01SP000000> " or "US01SP000000(config)# " at the very end of what was read, alone on
# its line, or after other prompts on that line: two returns that reach a unit together are
# both echoed before it answers (the simulated unit does so), leaving "US01SP000000> " twice.
_ONE_PROMPT = r"US01[A-Z0-9]{8}(?:\(config\))?[>#] ?"
PROMPT = re.compile(rf"(?:^|\n)(?:{_ONE_PROMPT})*(?P<prompt>{_ONE_PROMPT})\Z")
CONFIG_MARK = "(config)#"
ENTER_CONFIG = "configure"
EXIT_CONFIG = "exit"
ERROR_PREFIX = "% "
MAX_CONFIRM_MINUTES = 60
SECRET_PATHS = frozenset(
    {"wan pppoe password", "wlan business passphrase", "wlan guest passphrase"}
)
NETWORKS = ("business", "guest")

# Commands (section 3.2) and the first words of their success answers.
SHOW_STATUS = "show status"
SHOW_WAN = "show wan"
SHOW_WLAN = "show wlan"
SHOW_LAMPS = "show lamps"
SHOW_RUNNING = "show running-config"
SHOW_HISTORY = "show commit history"
SHOW_DIFF = "show diff"
COMMIT = "commit"
CONFIRM = "confirm"
ROLLBACK = "rollback"
DISCARD = "discard"
COMMIT_DONE = "Commit complete"
CONFIRM_DONE = "Commit confirmed"
ROLLBACK_DONE = "Rolled back"
DISCARD_DONE = "Candidate changes discarded"

_PATH = re.compile(r"[a-z0-9][a-z0-9-]*(?: [a-z0-9][a-z0-9-]*)*")
_NEEDS_QUOTES = frozenset(' \t"\\;')


class ParseError(ValueError):
    """The unit answered something this module does not understand."""


# ----- values and commands ---------------------------------------------------------------
def quote(value: str) -> str:
    """A value as one CLI word: bare when it can be, else in double quotes (3.1, 4.4)."""
    if value and value.isprintable() and not any(c in _NEEDS_QUOTES for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tokenize(line: str) -> list[str]:
    """Split a line as the unit does: blanks separate, a word starting with ``"`` runs to
    the next unescaped ``"`` (a backslash in it makes the next character literal)."""
    if '"' not in line and line.isprintable():  # no quotes, no tabs: blanks alone separate
        return line.split()
    words: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        if line[i] != '"':
            j = i
            while j < n and line[j] not in " \t":
                j += 1
            words.append(line[i:j])
            i = j
            continue
        buf: list[str] = []
        i += 1
        while True:
            if i >= n:
                raise ParseError(f"unterminated quoted string in {line!r}")
            c = line[i]
            if c == "\\" and i + 1 < n:
                buf.append(line[i + 1])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                buf.append(c)
                i += 1
        words.append("".join(buf))
    return words


def _check_path(path: str) -> None:
    if not _PATH.fullmatch(path):
        raise RuleViolation("path", path, "a configuration path is lower-case words")


def set_command(path: str, value: str) -> str:
    """``set <path> <value>``. Refuses values that would break out of one CLI line."""
    _check_path(path)
    if any(not c.isprintable() for c in value):
        shown = None if is_secret_path(path) else value
        raise RuleViolation(path, shown, "a value sent to a unit has no control characters")
    return f"set {path} {quote(value)}"


def stage_commands(change: Change) -> list[str]:
    """The ``set``/``delete`` lines that put `change` into a candidate."""
    out = []
    for path, value in change.items():
        if value is None:
            _check_path(path)
            out.append(f"delete {path}")
        else:
            out.append(set_command(path, value))
    return out


def commit_confirmed_command(minutes: int) -> str:
    if not 1 <= minutes <= MAX_CONFIRM_MINUTES:
        raise ValueError(
            f"commit confirmed takes 1 to {MAX_CONFIRM_MINUTES} minutes, not {minutes}"
        )
    return f"commit confirmed {minutes}"


def mask_command(command: str, secrets: Iterable[str] = ()) -> str:
    """A command as it may be logged or shown: the value of a secret path is masked."""
    masked = scrub(command, secrets)
    words = masked.split(" ", 1)
    if words[0] == "set" and len(words) == 2:
        try:
            tokens = tokenize(words[1])
        except ParseError:
            tokens = []
        path = " ".join(tokens[:-1])
        if tokens and (path in SECRET_PATHS or is_secret_path(path)):
            return f"set {path} {MASK}"
    return masked


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (bare or quoted as the CLI would) replaced by ``********``."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(quote(secret), MASK).replace(secret, MASK)
    return text


# ----- answers ---------------------------------------------------------------------------
def error_line(output: str) -> str | None:
    """The unit's error line (``% …``), if the answer is one (section 7)."""
    if ERROR_PREFIX not in output:
        return None
    for line in output.splitlines():
        if line.startswith(ERROR_PREFIX):
            return line
    return None


def raise_for_error(serial: str, command: str, output: str, secrets: Iterable[str] = ()) -> None:
    """Raise `CommandFailed` (command and answer with secrets masked) if the unit refused."""
    line = error_line(output)
    if line is not None:
        secrets = tuple(secrets)
        raise CommandFailed(serial, mask_command(command, secrets), scrub(line, secrets))


def expect(serial: str, command: str, output: str, done: str) -> str:
    """Check a commit/confirm/rollback/discard answer starts as the contract says."""
    raise_for_error(serial, command, output)
    if not output.strip().startswith(done):
        raise CommandFailed(serial, command, f"unexpected answer: {output.strip()[:200]!r}")
    return output


def parse_kv(text: str) -> dict[str, str]:
    """``key: value`` lines (show status, show wan, show lamps)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            key, sep, value = line.partition(":")
            if not sep:
                raise ParseError(f"not a key: value line: {line!r}")
        out[key.strip()] = value.strip()
    return out


def _dash(value: str | None) -> str | None:
    return None if value in (None, "-", "n/a", "") else value


def _need(fields: Mapping[str, str], *keys: str) -> None:
    missing = [k for k in keys if k not in fields]
    if missing:
        raise ParseError(f"missing fields: {', '.join(missing)}")


@dataclass(frozen=True)
class Status:
    serial: str
    role: str
    firmware: str
    parent: str | None
    link_item: bool
    uptime: int
    account: str
    internet: bool | None
    commit_pending: bool
    rollback_in: int | None
    commits: int


_PENDING = re.compile(r"yes(?: \(rollback in (\d+) s\))?")


def parse_status(text: str) -> Status:
    f = parse_kv(text)
    _need(f, "serial", "role", "firmware", "account", "internet", "commit-pending", "commits")
    pending = _PENDING.fullmatch(f["commit-pending"])
    role = f["role"]
    return Status(
        serial=f["serial"],
        role=role,
        firmware=f["firmware"],
        parent=_dash(f.get("parent")),
        link_item=f.get("link-item") == "yes",
        uptime=int(f.get("uptime", "0")),
        account=f["account"],
        # A child prints n/a and an access point "down": neither has a WAN of its own.
        internet=(f["internet"] == "up") if role == "parent" else None,
        commit_pending=pending is not None,
        rollback_in=int(pending.group(1)) if pending and pending.group(1) else None,
        commits=int(f["commits"]),
    )


def parse_wan(text: str) -> WanState:
    f = parse_kv(text)
    _need(f, "mode", "tunnel", "tunnel-state", "tunnel-reason", "ipv4-address", "ipv6-address")
    return WanState(
        mode=f["mode"],
        tunnel=_dash(f["tunnel"]),
        tunnel_state=_dash(f["tunnel-state"]),
        tunnel_reason=_dash(f["tunnel-reason"]),
        ipv4=_dash(f["ipv4-address"]),
        ipv6=_dash(f["ipv6-address"]),
        pppoe_username=_dash(f.get("pppoe-username")),
    )


def parse_wlan(text: str) -> dict[str, WlanState]:
    """The two blocks of ``show wlan``: ``wlan <net>`` then indented ``key: value`` lines."""
    blocks: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith((" ", "\t")):
            words = line.split()
            if len(words) != 2 or words[0] != "wlan":
                raise ParseError(f"not a wlan block header: {line!r}")
            current = blocks.setdefault(words[1], {})
            continue
        if current is None:
            raise ParseError(f"wlan field outside a block: {line!r}")
        key, _, value = line.strip().partition(": ")
        current[key] = value
    out: dict[str, WlanState] = {}
    for net in NETWORKS:
        block = blocks.get(net)
        if block is None:
            raise ParseError(f"show wlan has no {net} block")
        ssid = block.get("ssid", "-")
        out[net] = WlanState(
            ssid=None if ssid == "-" else _one_word(ssid),
            state=block.get("state", "down"),
            passphrase_fingerprint=_dash(block.get("passphrase-fingerprint")),
        )
    return out


def _one_word(text: str) -> str:
    words = tokenize(text)
    if len(words) != 1:
        raise ParseError(f"expected one value, got {text!r}")
    return words[0]


def parse_lamps(text: str) -> dict[str, str]:
    return parse_kv(text)


def parse_config(text: str) -> dict[str, str]:
    """``show running-config`` / ``show candidate``: ``set <path> <value>`` per line."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        words = tokenize(line)
        if len(words) < 3 or words[0] != "set":
            raise ParseError(f"not a set line: {line!r}")
        out[" ".join(words[1:-1])] = words[-1]
    return out


def parse_diff(text: str) -> list[DiffLine]:
    if text.strip() == "no changes":
        return []
    out: list[DiffLine] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        sign, _, rest = line.partition(" ")
        if sign not in ("-", "+"):
            raise ParseError(f"not a diff line: {line!r}")
        words = tokenize(rest)
        if len(words) < 3 or words[0] != "set":
            raise ParseError(f"not a diff line: {line!r}")
        out.append(DiffLine("-" if sign == "-" else "+", " ".join(words[1:-1]), words[-1]))
    return out


def parse_history(text: str) -> list[CommitEntry]:
    """``<seq> <time> <kind> <user> <paths>``; paths with dots for spaces, ``-`` for none."""
    if text.strip() == "no commits":
        return []
    out: list[CommitEntry] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise ParseError(f"not a commit history line: {line!r}")
        seq, at, kind, user, paths = parts
        when = datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        names = () if paths == "-" else tuple(p.replace(".", " ") for p in paths.split(","))
        out.append(CommitEntry(int(seq), when, kind, user, names))
    return out


def build_state(
    status: Status,
    wan: WanState | None,
    wlan: Mapping[str, WlanState],
    lamps: Mapping[str, str],
    running: Mapping[str, str],
    read_at: datetime,
) -> UnitState:
    return UnitState(
        serial=status.serial,
        role=status.role,
        firmware=status.firmware,
        account=status.account,
        internet=status.internet,
        wan=wan,
        lamps=dict(lamps),
        business=wlan["business"],
        guest=wlan["guest"],
        commit_pending=status.commit_pending,
        rollback_in=status.rollback_in,
        commits=status.commits,
        running=dict(running),
        read_at=read_at,
        parent=status.parent,
        link_item=status.link_item,
        uptime=status.uptime,
        source="ssh",
    )
