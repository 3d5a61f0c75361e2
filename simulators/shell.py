"""The U-SPOT command line: one `Session` per SSH channel, driving a `Unit`.

Output formats, prompts and error texts are the contract in docs/unit-contract.md.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from simulators.config import (
    BY_PATH,
    PARENT,
    SECRET_PATHS,
    SETTINGS,
    WLANS,
    Config,
    sorted_paths,
)
from simulators.unit import MAX_CONFIRM_MINUTES, Rebooted, Refused, Unit

MASK = "********"

HELP = """\
Operational mode:
  show status | wan | wlan | lamps | running-config | commit history
  configure                   enter configuration mode
  confirm                     keep the pending commit confirmed
  rollback                    undo the pending commit confirmed now
  reboot                      restart the unit
  terminal length <n>         accepted; the CLI never pages
  exit                        close the session
Configuration mode:
  set <path> <value>          change the candidate configuration
  delete <path>               remove a setting (or every setting under a path)
  show candidate | diff       the candidate, or its difference to the running config
  commit                      apply the candidate
  commit confirmed <minutes>  apply, and roll back after <minutes> unless confirmed
  discard                     drop the candidate's changes
  exit | end                  back to operational mode"""


@dataclass
class Reply:
    text: str = ""
    error: bool = False
    close: bool = False
    after: Callable[[], None] | None = None  # runs once the reply has been delivered
    abort: bool = False  # the unit went away under the session: no goodbye, just a dead line


def quote(value: str) -> str:
    if value and not any(c in value for c in ' \t"\\;') and value.isprintable():
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tokenize(line: str) -> list[str]:
    """Split on blanks; double quotes group (anywhere in a word), backslash escapes in them."""
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        if line[i] in " \t":
            i += 1
            continue
        buf: list[str] = []
        while i < n and line[i] not in " \t":
            c = line[i]
            i += 1
            if c != '"':
                buf.append(c)
                continue
            while True:
                if i >= n:
                    raise Refused(
                        f'Incomplete command: "{line.strip()}" (a quoted value is not closed)'
                    )
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
        tokens.append("".join(buf))
    return tokens


def split_commands(text: str) -> list[str]:
    """An exec request may carry several commands, one per line or separated by ';'."""
    out: list[str] = []
    buf: list[str] = []
    in_quote = escaped = False
    for c in text:
        if escaped:
            buf.append(c)
            escaped = False
        elif c == "\\" and in_quote:
            buf.append(c)
            escaped = True
        elif c == '"':
            in_quote = not in_quote
            buf.append(c)
        elif c in ";\n" and not in_quote:
            out.append("".join(buf).strip())
            buf = []
        else:
            buf.append(c)
    out.append("".join(buf).strip())
    return [c for c in out if c]


def _kv(pairs: dict[str, str]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in pairs.items())


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def render_config(config: Config) -> str:
    lines = []
    for path in sorted_paths(config):
        value = MASK if path in SECRET_PATHS else quote(config[path])
        lines.append(f"set {path} {value}")
    return "\n".join(lines)


class Session:
    """One CLI session: a mode, private candidate edits, and the unit it drives.

    The candidate is the running configuration with this session's edits on top, so a
    change made by someone else (another session, a rollback timer) is never undone by a
    later commit of this one.
    """

    def __init__(self, unit: Unit, user: str) -> None:
        self.unit = unit
        self.user = user
        self.mode = "operational"
        self.edits: dict[str, str | None] = {}  # path -> new value, None: delete
        self.commands = 0

    @property
    def prompt(self) -> str:
        if self.mode == "config":
            return f"{self.unit.serial}(config)# "
        return f"{self.unit.serial}> "

    @property
    def candidate(self) -> Config:
        merged = dict(self.unit.running)
        for path, value in self.edits.items():
            if value is None:
                merged.pop(path, None)
            else:
                merged[path] = value
        return merged

    def execute(self, line: str) -> Reply:
        self.commands += 1
        self.unit.tick()
        try:
            return self._execute(line)
        except Refused as exc:
            return Reply(f"% {exc}", error=True)
        except Rebooted:
            return Reply(close=True, abort=True)

    # ----- dispatch ----------------------------------------------------------------------
    def _execute(self, line: str) -> Reply:
        words = tokenize(line)
        if not words:
            return Reply()
        head, rest = words[0], words[1:]
        config_mode = self.mode == "config"
        if head == "show":
            return self._show(rest)
        if head in ("exit", "quit", "end") and not rest:
            if config_mode:
                self.mode = "operational"
                return Reply()
            if head == "end":
                return Reply()
            return Reply(close=True)
        if head == "confirm" and not rest:
            self.unit.confirm(self.user)
            return Reply("Commit confirmed; the rollback timer is stopped.")
        if head == "rollback" and not rest:
            self.unit.rollback(self.user)
            return Reply("Rolled back to the configuration before the pending commit.")
        if head in ("help", "?") and not rest:
            return Reply(HELP)
        if not config_mode:
            if head == "configure" and rest in ([], ["terminal"], ["private"]):
                self.mode = "config"
                return Reply()
            if head == "reboot" and not rest:
                unit, user = self.unit, self.user
                return Reply("The unit is restarting.", close=True, after=lambda: unit.reboot(user))
            if head == "terminal" and len(rest) == 2 and rest[0] == "length":
                _whole_number(rest[1], "terminal length", 0, 512)
                return Reply()
        else:
            if head == "set":
                return self._set(rest)
            if head == "delete":
                return self._delete(rest)
            if head == "commit":
                return self._commit(rest)
            if head == "discard" and not rest:
                self.edits.clear()
                return Reply("Candidate changes discarded.")
        if head in ("set", "delete", "commit", "discard") and not config_mode:
            raise Refused(f'"{head}" is a configuration-mode command: enter "configure" first')
        raise Refused(f'Unknown command: "{line.strip()}"')

    # ----- show --------------------------------------------------------------------------
    def _show(self, rest: list[str]) -> Reply:
        unit = self.unit
        what = " ".join(rest)
        if what == "status":
            return Reply(_kv(unit.status()))
        if what == "wan":
            self._needs_wan("show wan")
            return Reply(_kv(unit.wan()))
        if what == "wlan":
            return Reply(self._show_wlan())
        if what == "lamps":
            return Reply(_kv(unit.lamps()))
        if what in ("running-config", "running config", "configuration"):
            return Reply(render_config(unit.running))
        if what in ("commit history", "commit"):
            return Reply(self._show_commits())
        if self.mode == "config" and what == "candidate":
            return Reply(render_config(self.candidate))
        if self.mode == "config" and what in ("diff", "| compare"):
            return Reply(self._diff())
        raise Refused(f'Unknown command: "show {what}"')

    def _needs_wan(self, what: str) -> None:
        if self.unit.role != PARENT:
            raise Refused(
                f"Not supported on {self.unit.role_article}: {what} "
                f"({self.unit.role_article} has no WAN)"
            )

    def _show_wlan(self) -> str:
        unit = self.unit
        blocks = []
        for net in WLANS:
            ssid = unit.running.get(f"wlan {net} ssid")
            has_key = f"wlan {net} passphrase" in unit.running
            blocks.append(
                f"wlan {net}\n"
                f"  ssid: {quote(ssid) if ssid is not None else '-'}\n"
                f"  state: {unit.wlan_state(net)}\n"
                f"  security: {'wpa2-psk' if has_key else 'open'}\n"
                f"  passphrase-fingerprint: {unit.passphrase_fingerprint(net)}"
            )
        return "\n".join(blocks)

    def _show_commits(self) -> str:
        rows = []
        for rec in self.unit.commit_log:
            paths = ",".join(p.replace(" ", ".") for p in rec.paths) or "-"
            rows.append(f"{rec.seq} {_utc(rec.at)} {rec.kind} {rec.user} {paths}")
        return "\n".join(rows) if rows else "no commits"

    def _diff(self) -> str:
        running, candidate = self.unit.running, self.candidate
        lines = []
        for path in sorted_paths({**running, **candidate}):
            old, new = running.get(path), candidate.get(path)
            if old == new:
                continue
            masked = path in SECRET_PATHS
            if old is not None:
                lines.append(f"- set {path} {MASK if masked else quote(old)}")
            if new is not None:
                lines.append(f"+ set {path} {MASK if masked else quote(new)}")
        return "\n".join(lines) if lines else "no changes"

    # ----- configuration -----------------------------------------------------------------
    def _match_path(self, words: list[str], verb: str) -> tuple[str, list[str]]:
        for size in (4, 3, 2):
            path = " ".join(words[:size])
            if len(words) >= size and path in BY_PATH:
                return path, words[size:]
        typed = " ".join(words)
        if words and words[0] == "wan":
            self._needs_wan(f"{verb} {typed}")
        following = sorted(
            {
                s.path[len(typed) :].split()[0]
                for s in SETTINGS
                if s.path.startswith(typed + " " if typed else "")
            }
        )
        if following:
            shown = f"{verb} {typed}".strip()
            raise Refused(f'Incomplete command: "{shown}" (expected: {", ".join(following)})')
        raise Refused(f'Unknown command: "{verb} {typed}"')

    def _check_role(self, path: str, what: str) -> None:
        if not self.unit.supports(path):
            top = path.split()[0]
            detail = "has no WAN" if top == "wan" else f"does not support {top}"
            raise Refused(
                f"Not supported on {self.unit.role_article}: {what} "
                f"({self.unit.role_article} {detail})"
            )

    def _set(self, words: list[str]) -> Reply:
        path, value = self._match_path(words, "set")
        self._check_role(path, f"set {path}")
        if not value:
            raise Refused(f'Incomplete command: "set {path}" (expected: a value)')
        if len(value) > 1:
            raise Refused(
                f"Invalid value for {path}: {len(value)} words; quote a value that has spaces"
            )
        self.edits[path] = self.unit.validate(path, value[0])
        return Reply()

    def _delete(self, words: list[str]) -> Reply:
        typed = " ".join(words)
        if not typed:
            raise Refused('Incomplete command: "delete" (expected: a path)')
        paths = [p for p in BY_PATH if p == typed or p.startswith(typed + " ")]
        if not paths:
            raise Refused(f'Unknown command: "delete {typed}"')
        for path in paths:
            self._check_role(path, f"delete {typed}")
        for path in paths:
            self.edits[path] = None
        return Reply()

    def _commit(self, rest: list[str]) -> Reply:
        minutes: int | None = None
        if rest:
            if rest[0] != "confirmed" or len(rest) != 2:
                raise Refused(
                    f'Unknown command: "commit {" ".join(rest)}" '
                    "(expected: commit, or commit confirmed <minutes>)"
                )
            minutes = _whole_number(rest[1], "commit confirmed", 1, MAX_CONFIRM_MINUTES)
        changed = self.unit.commit(self.edits, self.user, minutes)
        self.edits.clear()
        if minutes is not None:
            unit = "minute" if minutes == 1 else "minutes"
            return Reply(f"Commit complete; it rolls back in {minutes} {unit} unless confirmed.")
        return Reply("Commit complete." if changed else "Commit complete (no changes).")


def _whole_number(text: str, what: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,6}", text) or not low <= int(text) <= high:
        noun = "minutes are" if what == "commit confirmed" else "it is"
        raise Refused(
            f'Invalid value "{text}" for {what}: {noun} a whole number from {low} to {high}'
        )
    return int(text)


def run_script(session: Session, commands: Iterable[str]) -> tuple[str, int]:
    """Run an exec request: stop at the first error, exit status 1 if there was one."""
    outputs: list[str] = []
    for command in commands:
        reply = session.execute(command)
        if reply.text:
            outputs.append(reply.text)
        if reply.error:
            return "\n".join(outputs) + "\n", 1
        if reply.close:
            if reply.after is not None:
                reply.after()
            break
    return ("\n".join(outputs) + "\n") if outputs else "", 0
