"""Remote login for tech support: an SSH bastion inside the daemon.

    ssh -t -p 2222 alice@fleetd-host US01ABCD1234

opens an interactive session on that unit with the credentials stored in the inventory,
which the staff member never sees. Without a command the bastion asks for the serial.

- **Who**: public-key authentication only, against the keys staff registered (the
  ``authorize(username, public_key)`` callable; `store_authorizer(store)` is the one over
  the user store). Only the
  tech and admin roles may log in; anyone else gets one line saying so.
- **The unit**: its pinned host key is enforced (a unit offering another key is refused,
  named, before its password is sent); a unit never reached before is pinned on first use,
  as the engine does.
- **The record**: every session lands in the audit log: ``remote_login.start`` and
  ``remote_login.end`` (who, unit, how long, why it ended, the transcript with passwords and
  passphrases masked), and ``remote_login.refused`` / ``remote_login.failed`` for sessions
  that never reached the unit.
- **Idle sessions** end after ``idle_timeout`` seconds without input (10 minutes by default).

Exit statuses the ``ssh`` command returns: 0 the session ended normally; 1 refused (role,
unknown unit, unit unreachable or its host key changed) or ended for being idle; 2 a usage
error (no serial, a malformed one). 255 is ssh's own: for the bastion, a key it does not know.

The bastion's host key is made once in the state directory (``bastion_host_key``, mode 0600,
with ``bastion_host_key.pub`` beside it for staff's known_hosts) and reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import asyncssh
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from drivers.base import Shell, Timeouts, UnitDriver, UnitTarget
from drivers.registry import DEFAULT_TRANSPORT
from drivers.transport import normalise_key
from fleetd.bastion_transcript import EchoFilter, Transcript
from fleetd.clock import Clock
from fleetd.context import unit_target
from inventory import audit, repo, users
from inventory.errors import FleetError, HostKeyMismatch, RuleViolation, UnitError
from inventory.redact import Redactor
from inventory.rules import assert_serial_format
from inventory.secrets import SecretBox
from inventory.store import Store

log = logging.getLogger("fleetd.bastion")

LOGIN_ROLES = frozenset({"tech", "admin"})
HOST_KEY_FILE = "bastion_host_key"
DEFAULT_IDLE_TIMEOUT = 600.0
DEFAULT_PORT = 2222
OK, REFUSED, USAGE = 0, 1, 2  # the exit statuses `ssh` passes on
STOPPED = "the daemon stopped"
EOF_GRACE = 2.0  # seconds the unit has to answer input that ended with an end-of-file
_CLOSE_WAIT = 5.0  # seconds sessions have to record their end when the daemon stops
_HANG_UP = 1.0  # seconds clients have to close their connection once their session ended
_STAFF = "fleetd_staff"  # connection extra-info key: the authorized staff, by user name
_CTRL_C, _CTRL_D, _ERASE = "\x03", "\x04", ("\x7f", "\b")


class BastionSettings(BaseSettings):
    """``FLEETD_BASTION_HOST`` (default 127.0.0.1: set 0.0.0.0 to serve staff machines),
    ``FLEETD_BASTION_PORT`` (2222), ``FLEETD_BASTION_IDLE_TIMEOUT`` (seconds, 600)."""

    model_config = SettingsConfigDict(env_prefix="FLEETD_BASTION_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    idle_timeout: float = Field(default=DEFAULT_IDLE_TIMEOUT, gt=0)


class StaffMember(Protocol):
    """What the bastion needs of a staff user (``inventory.users.StaffUser`` fits)."""

    @property
    def name(self) -> str: ...

    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class Staff:
    """A plain staff member, for callers without a user store (tests, tools)."""

    name: str
    role: str


# authorize(username, public key in OpenSSH form "ssh-ed25519 AAAA…") -> the staff member
# that key belongs to under that name, or None. May be a coroutine function.
Authorize = Callable[[str, str], Awaitable[StaffMember | None] | StaffMember | None]
DriverLoader = Callable[[UnitTarget, str], UnitDriver]


def store_authorizer(store: Store) -> Authorize:
    """`authorize` over the user store: the enabled staff user `username` whose registered
    SSH keys include `public_key` (see ``fleetd users add-key``)."""

    async def authorize(username: str, public_key: str) -> StaffMember | None:
        async with store.sessions() as session:
            user = await users.user_for_ssh_key(session, username, public_key)
            # a plain copy: the row is not used outside its session
            return None if user is None else Staff(user.name, user.role)

    return authorize


@runtime_checkable
class ResizableShell(Protocol):
    """A `Shell` that can pass a window change on to the unit."""

    async def resize(self, columns: int, rows: int) -> None: ...


def load_or_create_host_key(path: Path) -> asyncssh.SSHKey:
    """The bastion's host key at `path`, made (ed25519, mode 0600) when there is none."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            log.warning("bastion host key %s was readable by others: now 0600", path)
            path.chmod(0o600)
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment="fleetd bastion")
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: two daemons starting on one state directory do not overwrite each other's key
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    log.info("bastion host key made: %s", path)
    return key


class _Gate(asyncssh.SSHServer):
    """One connection's authentication: registered public keys only."""

    def __init__(self, bastion: Bastion) -> None:
        self._bastion = bastion
        self._conn: asyncssh.SSHServerConnection | None = None
        self._staff: dict[str, StaffMember] = {}

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        conn.set_extra_info(**{_STAFF: self._staff})
        self._bastion._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._bastion._conns.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        public = normalise_key(key.export_public_key("openssh").decode())
        try:
            found = self._bastion._authorize(username, public)
            staff = await found if inspect.isawaitable(found) else found
        except Exception:
            log.exception("bastion: looking up the key of %r failed", username)
            return False
        if staff is None:
            log.info("bastion: key %s refused for %r", key.get_fingerprint(), username)
            return False
        # Keyed by the name it was found under: the session reads the entry of the name that
        # authenticated, so a key merely offered for another name never stands in for it.
        self._staff[username] = staff
        return True


class Bastion:
    """The SSH bastion. ``await bastion.start(host, port)`` listens; ``await bastion.close()``
    ends every session (each one recorded) and stops listening."""

    def __init__(
        self,
        *,
        store: Store,
        box: SecretBox,
        redactor: Redactor,
        clock: Clock,
        authorize: Authorize,
        load_driver: DriverLoader,
        state_dir: Path,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        transport: str = DEFAULT_TRANSPORT,
        timeouts: Timeouts | None = None,
    ) -> None:
        if idle_timeout <= 0:
            raise RuleViolation(
                "idle_timeout", idle_timeout, "the bastion's idle timeout is a positive number "
                "of seconds", hint="FLEETD_BASTION_IDLE_TIMEOUT, e.g. 600 for 10 minutes",
            )  # fmt: skip
        self._store = store
        self._box = box
        self._redactor = redactor
        self._clock = clock
        self._authorize = authorize
        self._load_driver = load_driver
        self._host_key_path = state_dir / HOST_KEY_FILE
        self.idle_timeout = idle_timeout
        self._transport = transport
        self._timeouts = timeouts or Timeouts()
        self._key: asyncssh.SSHKey | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._conns: set[asyncssh.SSHServerConnection] = set()
        self._sessions: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()

    @property
    def port(self) -> int:
        """The port it listens on (the chosen one when started on port 0)."""
        if self._acceptor is None:
            raise RuntimeError("the bastion is not started")
        return self._acceptor.get_port()

    @property
    def host_public_key(self) -> str:
        """The bastion's host key in OpenSSH public form (for staff's known_hosts)."""
        return normalise_key(self._host_key().export_public_key().decode())

    def _host_key(self) -> asyncssh.SSHKey:
        if self._key is None:
            self._key = load_or_create_host_key(self._host_key_path)
        return self._key

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
        if self._acceptor is not None:
            raise RuntimeError("the bastion is already started")
        key = self._host_key()  # read once, not per connection
        self._acceptor = await asyncssh.listen(
            host,
            port,
            server_factory=lambda: _Gate(self),
            server_host_keys=[key],
            process_factory=self._session,
            line_editor=False,  # bytes go to the unit as typed: its CLI does the editing
            encoding="utf-8",
            errors="replace",
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
            keepalive_interval=60,
            keepalive_count_max=3,
            login_timeout=60,
        )
        log.info("bastion listening on %s:%s", host, self.port)

    async def close(self) -> None:
        """Stop listening, end every session (each says so to its staff member and is
        recorded), then drop what is left."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        self._stopping.set()
        if self._sessions:
            _, late = await asyncio.wait(self._sessions, timeout=_CLOSE_WAIT)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        # a session that ended has sent its exit status: its client hangs up on its own, and
        # closing the connection first could drop that status; what is still open after a
        # moment is closed
        conns = list(self._conns)
        if conns:
            await asyncio.wait(
                [asyncio.ensure_future(conn.wait_closed()) for conn in conns], timeout=_HANG_UP
            )
        for conn in conns:
            conn.close()
        self._acceptor = None

    # ----- one session -----------------------------------------------------------------
    async def _session(self, process: asyncssh.SSHServerProcess[str]) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._sessions.add(task)
        session = _Session(self, process)
        try:
            status = await session.run()
        except (asyncssh.Error, ConnectionError, BrokenPipeError):
            return  # the staff member's line went away; the session recorded what it could
        except FleetError as exc:  # the store cannot be read, the key is wrong, …
            log.warning("bastion %s: %s", session.request_id, exc)
            status = _say_safely(session, f"cannot open a session now: {exc}")
        except Exception:
            log.exception("bastion %s failed", session.request_id)
            status = _say_safely(session, "the session failed; the daemon's log says why")
        finally:
            if task is not None:
                self._sessions.discard(task)
        with contextlib.suppress(asyncssh.Error, ConnectionError, BrokenPipeError):
            process.exit(status)

    async def _record(
        self,
        staff: str,
        action: str,
        target: str,
        request_id: str,
        detail: str,
        after: dict[str, Any] | None = None,
    ) -> bool:
        """Append an audit entry in its own transaction; False when it could not be written."""
        try:
            async with self._store.transaction() as session:
                await audit.record(
                    session,
                    actor=staff,
                    action=action,
                    target=target,
                    request_id=request_id,
                    after=after,
                    detail=detail,
                    at=self._clock.now(),
                    redactor=self._redactor,
                )
        except Exception:
            log.exception("bastion: could not record %s of %s on %s", action, staff, target)
            return False
        return True

    async def _target(self, serial: str) -> UnitTarget:
        async with self._store.sessions() as session:
            unit = await repo.get_unit(session, serial)
            target = unit_target(unit, self._box, self._redactor, self._timeouts)
            # what staff might type or be shown in the shell: masked in the transcript too
            passphrases = [
                repo.intended_passphrase(unit, self._box, network) for network in repo.PASSPHRASE
            ]
        for secret in passphrases:
            if secret:
                self._redactor.add_secret(secret)
        return target

    async def _pin(self, serial: str, key: str) -> None:
        async with self._store.transaction() as session:
            unit = await repo.get_unit(session, serial)
            if unit.host_key_fingerprint is None:  # trust on first use only: never a re-pin
                await repo.pin_host_key(session, serial, key)


class _Session:
    """One staff member's session: who, which unit, the relay, the record."""

    def __init__(self, bastion: Bastion, process: asyncssh.SSHServerProcess[str]) -> None:
        self.bastion = bastion
        self.process = process
        self.username: str = process.get_extra_info("username") or ""
        staff: dict[str, StaffMember] = process.get_extra_info(_STAFF) or {}
        self.staff = staff.get(self.username)
        self.term = process.get_terminal_type()
        columns, rows, _, _ = process.get_terminal_size()
        self.columns, self.rows = columns or 80, rows or 24
        peer = process.get_extra_info("peername") or ("?", 0)
        self.peer = str(peer[0])
        self.request_id = f"ssh-{secrets.token_hex(6)}"
        self.transcript = Transcript()
        self._echo = EchoFilter()

    # ----- talking to the staff member ---------------------------------------------------
    def say(self, line: str) -> None:
        """One line of the bastion's own, marked as such: on stderr, or on the terminal
        (where a program's stderr goes too)."""
        if self.term is None:
            self.process.stderr.write(f"fleetd: {line}\n")
        else:
            self.process.stdout.write(f"\r\nfleetd: {line}\r\n")

    async def refuse(self, status: int, why: str, *, serial: str = "", action: str) -> int:
        self.say(why)
        name = self.staff.name if self.staff is not None else self.username
        await self.bastion._record(
            name, action, serial, self.request_id, why, {"client": self.peer}
        )
        return status

    # ----- the session ---------------------------------------------------------------------
    async def run(self) -> int:
        if self.staff is None:  # cannot happen after authentication; refuse all the same
            return await self.refuse(REFUSED, "unknown staff member", action="remote_login.refused")
        if self.staff.role not in LOGIN_ROLES:
            return await self.refuse(
                REFUSED,
                f"remote login needs the tech or admin role; {self.staff.name} has the "
                f"{self.staff.role} role (ask an admin if you need it)",
                action="remote_login.refused",
            )
        if self.process.subsystem:
            return await self.refuse(
                USAGE, f"the bastion serves interactive sessions only, not "
                f"{self.process.subsystem}", action="remote_login.refused",
            )  # fmt: skip
        serial = await self.ask_serial()
        if serial is None:
            return USAGE
        try:
            assert_serial_format(serial)
        except RuleViolation as exc:
            return await self.refuse(
                USAGE, f"{exc}; usage: ssh -t -p PORT NAME@HOST SERIAL",
                serial="", action="remote_login.refused",
            )  # fmt: skip
        async with self.bastion._store.sessions() as session:
            found = await repo.find_unit(session, serial)
        if found is None:
            return await self.refuse(
                REFUSED, f"no unit {serial} in the inventory: check the serial on the unit's label",
                serial=serial, action="remote_login.refused",
            )  # fmt: skip
        return await self.login(serial)

    async def ask_serial(self) -> str | None:
        command = (self.process.command or "").strip()
        if command:
            words = command.split()
            if len(words) > 1:
                self.say(
                    f"give one serial, not {command!r}; usage: ssh -t -p PORT NAME@HOST SERIAL"
                )
                return None
            return words[0].upper()
        self.process.stdout.write("Unit serial: ")
        try:
            async with asyncio.timeout(self.bastion.idle_timeout):
                line = await self.read_line()
        except TimeoutError:
            self.say("no serial given in time")
            return None
        if not line:
            self.say("no serial given")
            return None
        return line.strip().upper()

    async def read_line(self) -> str | None:
        """A line typed at the serial prompt; None on Ctrl-C, Ctrl-D or end of input."""
        if self.term is None:  # the staff member's own terminal edits and echoes the line
            line = await self.process.stdin.readline()
            return line or None
        typed: list[str] = []
        while True:
            try:
                data = await self.process.stdin.read(1024)
            except asyncssh.TerminalSizeChanged as change:
                self.columns, self.rows = change.width or self.columns, change.height or self.rows
                continue
            if not data:
                return None
            for ch in data:
                if ch in "\r\n":
                    self.process.stdout.write("\r\n")
                    return "".join(typed)
                if ch in (_CTRL_C, _CTRL_D):
                    self.process.stdout.write("\r\n")
                    return None
                if ch in _ERASE:
                    if typed:
                        typed.pop()
                        self.process.stdout.write("\b \b")
                elif ch.isprintable():
                    typed.append(ch)
                    self.process.stdout.write(ch)

    async def login(self, serial: str) -> int:
        bastion, staff = self.bastion, self.staff
        assert staff is not None
        try:
            target = await bastion._target(serial)
        except FleetError as exc:
            return await self.refuse(
                REFUSED, f"{serial}: cannot log in: {exc}", serial=serial,
                action="remote_login.failed",
            )  # fmt: skip
        driver = bastion._load_driver(target, bastion._transport)
        started = bastion._clock.now()
        opened = False
        why = "closed by the unit"
        try:
            async with driver:
                if target.host_key is None and driver.seen_host_key:
                    await bastion._pin(serial, driver.seen_host_key)
                shell = await driver.open_shell(
                    term_type=self.term or "dumb", columns=self.columns, rows=self.rows
                )
                opened = await bastion._record(
                    staff.name, "remote_login.start", serial, self.request_id,
                    f"{staff.name} ({staff.role}) opened a session on {serial} from {self.peer}",
                    {"client": self.peer, "unit_address": target.address,
                     "terminal": f"{self.term or 'none'} {self.columns}x{self.rows}"},
                )  # fmt: skip
                if not opened:  # a session nobody could audit is not opened
                    await shell.close()
                    self.say("the audit log cannot be written, so no session is opened: "
                             "tell an admin (the daemon's log says why)")  # fmt: skip
                    return REFUSED
                log.info("bastion %s: %s logged in to %s", self.request_id, staff.name, serial)
                try:
                    why = await self.relay(shell)
                    # said at once: closing the unit's shell and recording the end take time,
                    # and a stopping daemon does not wait long
                    self.farewell(serial, why)
                finally:
                    await shell.close()
        except HostKeyMismatch:
            return await self.refuse(
                REFUSED,
                f"{serial}: the unit's SSH host key is not the one pinned in the inventory, so "
                "nothing was sent to it; if the unit was replaced, re-pin its key, otherwise "
                "report it (something may be in the way)",
                serial=serial, action="remote_login.failed",
            )  # fmt: skip
        except UnitError as exc:
            if not opened:
                return await self.refuse(
                    REFUSED, f"cannot reach the unit: {exc}", serial=serial,
                    action="remote_login.failed",
                )  # fmt: skip
            why = f"connection to the unit lost: {exc.detail}"
            self.farewell(serial, why)
        finally:
            if opened:
                await self.finish(serial, started, why)
        return OK if self.farewell_line(serial, why) is None else REFUSED

    def farewell_line(self, serial: str, why: str) -> str | None:
        """What the staff member is told when the session ends other than by the unit."""
        if why == "idle":
            return f"session closed after {_minutes(self.bastion.idle_timeout)} without input"
        if why == STOPPED:
            return "fleetd is stopping: session closed; log in again in a minute"
        if why.startswith("connection to the unit lost"):
            return f"{serial}: {why}"
        return None

    def farewell(self, serial: str, why: str) -> None:
        line = self.farewell_line(serial, why)
        if line is not None:
            _say_safely(self, line)

    async def finish(self, serial: str, started: Any, why: str) -> None:
        bastion, staff = self.bastion, self.staff
        assert staff is not None
        ended = bastion._clock.now()
        text = self.transcript.text(bastion._redactor)
        reason = f"idle for {_minutes(bastion.idle_timeout)}" if why == "idle" else why
        await bastion._record(
            staff.name, "remote_login.end", serial, self.request_id, text,
            {"client": self.peer, "ended": reason,
             "seconds": round((ended - started).total_seconds(), 1),
             "transcript_chars": len(text)},
        )  # fmt: skip
        log.info("bastion %s: %s left %s (%s)", self.request_id, staff.name, serial, reason)

    async def relay(self, shell: Shell) -> str:
        """Pass bytes both ways until one side ends or the staff member is idle too long;
        says why it ended."""
        typed = asyncio.Event()

        async def from_staff() -> str:
            while True:
                try:
                    data = await self.process.stdin.read(4096)
                except asyncssh.TerminalSizeChanged as change:
                    if isinstance(shell, ResizableShell) and change.width and change.height:
                        await shell.resize(change.width, change.height)
                    continue
                except asyncssh.BreakReceived:
                    data = _CTRL_C
                if not data:
                    return "closed by the user"
                typed.set()
                if self.term is None:
                    self._echo.sent(data)
                await shell.write(data)

        async def from_unit() -> str:
            while True:
                data = await shell.read()
                if not data:
                    return "closed by the unit"
                self.transcript.add(data)
                if self.term is None:
                    data = self._echo.received(data)
                if data:
                    self.process.stdout.write(data)
                    await self.process.stdout.drain()

        async def idle() -> str:
            while True:
                try:
                    # asyncio.timeout, not wait_for: wait_for can swallow a cancellation that
                    # lands as the event is set, and this task would never end
                    async with asyncio.timeout(self.bastion.idle_timeout):
                        await typed.wait()
                except TimeoutError:
                    return "idle"
                typed.clear()

        async def stopping() -> str:
            await self.bastion._stopping.wait()
            return STOPPED

        staff, unit = asyncio.ensure_future(from_staff()), asyncio.ensure_future(from_unit())
        others = [asyncio.ensure_future(f()) for f in (idle, stopping)]
        tasks = [unit, staff, *others]  # by precedence, see below
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if staff in done and unit not in done and staff.exception() is None:
                # The input ended (a script piped in, Ctrl-D without a terminal): let the unit
                # answer what it was sent, and close by itself after an `exit`.
                more, _ = await asyncio.wait([unit], timeout=EOF_GRACE)
                done |= more
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        first = next(t for t in tasks if t in done)
        error = first.exception()
        if isinstance(error, UnitError):
            raise error
        if error is not None:  # the staff member's channel failed: the session is over
            return f"closed by the user ({type(error).__name__})"
        return first.result()


def _say_safely(session: _Session, line: str) -> int:
    with contextlib.suppress(asyncssh.Error, ConnectionError, BrokenPipeError):
        session.say(line)
    return REFUSED


def _minutes(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"
