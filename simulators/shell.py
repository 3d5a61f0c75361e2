"""The U-SPOT command line: one `Session` per SSH channel, driving a `Unit`.

Output formats, prompts and error texts are the contract in docs/unit-contract.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
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
    abort: bool = False  # the unit went away under the session: no goodbye, just a dead line


def quote(value: str) -> str:
    if value and not any(c in value for c in ' \t"\\;') and value.isprintable():
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tokenize(line: str) -> list[str]:
    """Split on blanks; double quotes group, backslash escapes inside them."""
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t":
            i += 1
            continue
        if c == '"':
            buf: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise Refused("Incomplete command: unterminated quoted string")
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
        else:
            start = i
            while i < n and line[i] not in " \t":
                i += 1
            tokens.append(line[start:i])
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
    """One CLI session: a mode, a private candidate configuration, and the unit it drives."""

    def __init__(self, unit: Unit, user: str) -> None:
        self.unit = unit
        self.user = user
        self.mode = "operational"
        self.base: Config = {}
        self.candidate: Config = {}
        self.commands = 0

    @property
    def prompt(self) -> str:
        if self.mode == "config":
            return f"{self.unit.serial}(config)# "
        return f"{self.unit.serial}> "

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
            self._rebase()
            return Reply("Rolled back to the configuration before the pending commit.")
        if not config_mode:
            if head == "configure" and rest in ([], ["terminal"], ["private"]):
                self.mode = "config"
                if not self.candidate:
                    self._rebase()
                return Reply()
            if head == "reboot" and not rest:
                self.unit.reboot(self.user)
                return Reply("The unit is restarting.", close=True)
            if head == "terminal" and len(rest) == 2 and rest[0] == "length":
                if not rest[1].isdigit():
                    raise Refused(f'Invalid value "{rest[1]}" for terminal length: not a number')
                return Reply()
            if head in ("help", "?"):
                return Reply(HELP)
        else:
            if head == "set":
                return self._set(rest)
            if head == "delete":
                return self._delete(rest)
            if head == "commit":
                return self._commit(rest)
            if head == "discard" and not rest:
                self._rebase()
                return Reply("Candidate changes discarded.")
            if head in ("help", "?"):
                return Reply(HELP)
        if head in ("set", "delete", "commit", "discard") and not config_mode:
            raise Refused(f'"{head}" is a configuration-mode command: enter "configure" first')
        raise Refused(f'Unknown command: "{line.strip()}"')

    def _rebase(self) -> None:
        self.base = dict(self.unit.running)
        self.candidate = dict(self.unit.running)

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
                f"Not supported on a {self.unit.role_name} unit: {what} "
                f"(a {self.unit.role_name} has no WAN)"
            )

    def _show_wlan(self) -> str:
        unit = self.unit
        blocks = []
        for net in WLANS:
            ssid = unit.running.get(f"wlan {net} ssid")
            blocks.append(
                f"wlan {net}\n"
                f"  ssid: {quote(ssid) if ssid is not None else '-'}\n"
                f"  state: {unit.wlan_state(net)}\n"
                f"  security: wpa2-psk\n"
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
        lines = []
        for path in sorted_paths({**self.unit.running, **self.candidate}):
            old, new = self.unit.running.get(path), self.candidate.get(path)
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

    def _check_role(self, path: str, verb: str) -> None:
        if not self.unit.supports(path):
            top = path.split()[0]
            detail = "has no WAN" if top == "wan" else f"does not support {top}"
            raise Refused(
                f"Not supported on a {self.unit.role_name} unit: {verb} {path} "
                f"(a {self.unit.role_name} {detail})"
            )

    def _set(self, words: list[str]) -> Reply:
        path, value = self._match_path(words, "set")
        self._check_role(path, "set")
        if not value:
            raise Refused(f'Incomplete command: "set {path}" (expected: a value)')
        if len(value) > 1:
            raise Refused(
                f'Invalid value for {path}: {len(value)} words; quote a value that has spaces'
            )
        self.candidate[path] = self.unit.validate(path, value[0])
        return Reply()

    def _delete(self, words: list[str]) -> Reply:
        typed = " ".join(words)
        if not typed:
            raise Refused('Incomplete command: "delete" (expected: a path)')
        paths = [p for p in BY_PATH if p == typed or p.startswith(typed + " ")]
        if not paths:
            raise Refused(f'Unknown command: "delete {typed}"')
        for path in paths:
            self._check_role(path, "delete")
        for path in paths:
            self.candidate.pop(path, None)
        return Reply()

    def _commit(self, rest: list[str]) -> Reply:
        minutes = 0
        if rest:
            if rest[0] != "confirmed" or len(rest) != 2:
                raise Refused(
                    f'Unknown command: "commit {" ".join(rest)}" '
                    '(expected: commit, or commit confirmed <minutes>)'
                )
            if not rest[1].isdigit():
                raise Refused(
                    f'Invalid value "{rest[1]}" for commit confirmed: '
                    f"minutes are a whole number from 1 to {MAX_CONFIRM_MINUTES}"
                )
            minutes = int(rest[1])
        self.unit.commit(self.candidate, self.base, self.user, minutes)
        self._rebase()
        if minutes:
            return Reply(
                f"Commit complete; it rolls back in {minutes} minutes unless confirmed."
            )
        return Reply("Commit complete.")


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
            break
    return ("\n".join(outputs) + "\n") if outputs else "", 0
