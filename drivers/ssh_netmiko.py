"""The netmiko transport: the U-SPOT netmiko class (paramiko, interactive shell with a PTY).

netmiko blocks; every call into it runs in `asyncio.to_thread`, one at a time per session,
and nothing outside this module knows. `to_thread` uses the loop's default executor (on a
small machine, a handful of threads, shared with asyncssh's connection set-up): a daemon
that runs many netmiko sessions at once should give its loop a larger default executor.

Reading: netmiko's own read loops wait for a pattern until their timeout even when the unit
has closed the channel (paramiko's ``recv_ready()`` stays False on a closed channel), so a
dropped session would look like a slow one. `_exchange` reads through netmiko's
``read_channel()`` but checks the channel between reads and reports a drop at once.

Host keys: paramiko checks the key (``RejectPolicy``) against a known_hosts file written for
this one unit, during the key exchange and before authentication.

Errors: netmiko wraps paramiko and socket errors in its own exceptions and reports a
connection reset, a host-key mismatch and a timeout all as `NetmikoTimeoutException`, so
`_classify` looks at the whole exception chain, most specific cause first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
from netmiko.exceptions import NetmikoTimeoutException, ReadException, ReadTimeout

from drivers.base import Mode, Shell, UnitTarget
from drivers.ssh_asyncssh import probe_host_key
from drivers.transport import (
    CliProfile,
    KnownHostsFile,
    PromptTracker,
    normalise_key,
    openssh_key,
    resolve,
    strip_echo,
)
from inventory.errors import AuthFailed, HostKeyMismatch, Timeout, UnitError, Unreachable

POLL = 0.005  # seconds between reads while an answer is awaited
SHELL_POLL = 0.02
_CUT = (ConnectionResetError, ConnectionRefusedError, ConnectionAbortedError, BrokenPipeError)


class ChannelClosed(EOFError):
    """The unit closed the session while an answer was awaited."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _classify(serial: str, doing: str, exc: BaseException) -> UnitError:
    chain = list(_chain(exc))
    for cause in chain:
        if isinstance(cause, paramiko.BadHostKeyException):
            return HostKeyMismatch(serial, f"host key is not the pinned one ({doing})")
    refusals = [c for c in chain if isinstance(c, paramiko.AuthenticationException)]
    if refusals:
        # netmiko's own exception (first in the chain) is an AuthenticationException too;
        # paramiko's "Authentication timeout." below it is a timeout, not a refusal.
        if any("timeout" in str(c).lower() for c in refusals):
            return Timeout(serial, f"no answer in time ({doing}: login)")
        return AuthFailed(serial, f"login refused ({doing})")
    for cause in chain:
        if isinstance(cause, (*_CUT, EOFError)) or (
            isinstance(cause, ReadException) and not isinstance(cause, ReadTimeout)
        ):
            return Unreachable(serial, f"{doing}: {type(cause).__name__}: {cause}".rstrip(": "))
    for cause in chain:
        # paramiko gives up on a key exchange that does not finish in conn_timeout and then
        # finds "No existing session"; netmiko calls all of these timeouts.
        if isinstance(cause, (TimeoutError, ReadTimeout, NetmikoTimeoutException)) or (
            "no existing session" in str(cause).lower()
        ):
            return Timeout(serial, f"no answer in time ({doing})")
    return Unreachable(serial, f"{doing}: {type(exc).__name__}: {exc}".strip())


def _gone(conn: Any) -> bool:
    channel = conn.remote_conn
    transport = channel.get_transport() if channel is not None else None
    return channel is None or channel.closed or transport is None or not transport.is_active()


@contextlib.contextmanager
def netmiko_errors(serial: str, doing: str) -> Iterator[None]:
    """The one place netmiko's, paramiko's and the socket's exceptions become the error tree."""
    try:
        yield
    except (paramiko.SSHException, ReadException, OSError, EOFError, ValueError) as exc:
        raise _classify(serial, doing, exc) from exc


class NetmikoShell:
    """The session's channel (a PTY) handed over for interactive use."""

    def __init__(self, serial: str, conn: Any) -> None:
        self._serial = serial
        self._conn: Any = conn
        conn.disable_lf_normalization = True  # pass the terminal's CR LF through as it is

    async def read(self, max_chars: int = 65536) -> str:
        while self._conn is not None:
            conn = self._conn
            with netmiko_errors(self._serial, "shell read"):
                data = await asyncio.to_thread(conn.read_channel)
            if data:
                return str(data)
            if conn.remote_conn.closed:
                return ""
            await asyncio.sleep(SHELL_POLL)
        return ""

    async def write(self, data: str) -> None:
        if self._conn is None:
            raise Unreachable(self._serial, "the shell is closed")
        with netmiko_errors(self._serial, "shell write"):
            await asyncio.to_thread(self._conn.write_channel, data)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(conn.disconnect)


class NetmikoTransport:
    name = "netmiko"

    def __init__(self, target: UnitTarget, profile: CliProfile) -> None:
        if profile.netmiko_class is None:
            raise ValueError(f"platform {profile.name} has no netmiko class")
        self.target = target
        self.profile = profile
        self._cls = resolve(profile.netmiko_class)
        self._conn: Any = None
        self._tracker = PromptTracker(profile)
        self._seen_host_key: str | None = None

    @property
    def seen_host_key(self) -> str | None:
        return self._seen_host_key

    async def open(self) -> None:
        if self._conn is not None:
            raise RuntimeError("the session is already open")
        target = self.target
        pinned = normalise_key(target.host_key) if target.host_key else None
        key = pinned or await probe_host_key(target)  # first contact: trust what it offers now
        known_hosts = KnownHostsFile(target.address, target.ssh_port, key)
        try:
            self._conn = await asyncio.to_thread(self._connect, known_hosts.path)
        except HostKeyMismatch as exc:
            offered = next(
                (c.key for c in _chain(exc) if isinstance(c, paramiko.BadHostKeyException)), None
            )
            if offered is not None:
                self._seen_host_key = openssh_key(offered.get_name(), offered.asbytes())
            raise
        finally:
            known_hosts.remove()  # paramiko read it during the connect
        self._tracker.mode = "exec"
        self._seen_host_key = key

    def _connect(self, known_hosts: Path) -> Any:
        target = self.target
        conn = self._build(known_hosts)
        try:
            with netmiko_errors(target.serial, "connect and log in"):
                conn.establish_connection()
            with netmiko_errors(target.serial, "wait for the first prompt"):
                try:
                    # The unit prompts by itself: no need for netmiko's extra RETURN and sleep.
                    conn.session_preparation()
                except ReadException as exc:
                    if _gone(conn):
                        raise ChannelClosed("the unit closed the session") from exc
                    raise
        except BaseException:
            with contextlib.suppress(Exception):
                conn.disconnect()
            raise
        return conn

    def _build(self, known_hosts: Path) -> Any:
        target, timeouts = self.target, self.target.timeouts
        with netmiko_errors(target.serial, "set up the connection"):
            return self._cls(
                host=target.address,
                port=target.ssh_port,
                username=target.username,
                password=target.password or "",
                key_file=str(target.private_key) if target.private_key else None,
                use_keys=target.private_key is not None,
                allow_agent=False,
                ssh_strict=True,  # paramiko RejectPolicy: only the key in alt_key_file
                system_host_keys=False,
                alt_host_keys=True,
                alt_key_file=str(known_hosts),
                ssh_config_file=None,
                conn_timeout=timeouts.connect,
                auth_timeout=timeouts.connect,
                banner_timeout=timeouts.connect,
                # Bounds the reads of netmiko's own session preparation (first prompt).
                read_timeout_override=timeouts.command,
                fast_cli=True,
                auto_connect=False,  # see _connect: a drop must be seen before disconnect()
            )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(conn.disconnect)

    async def send(
        self, command: str, *, mode: Mode | None = None, timeout_s: float | None = None
    ) -> str:
        if self._conn is None:
            raise Unreachable(self.target.serial, "the session is not open")
        seconds = timeout_s or self.target.timeouts.command
        switch = self._tracker.switch_command(mode)
        verb = command.split(" ", 1)[0]  # never the rest: it may carry a secret
        try:
            with netmiko_errors(self.target.serial, f"waiting {seconds:g} s for {verb!r}"):
                if switch is not None:
                    await asyncio.to_thread(self._exchange, switch, self.target.timeouts.command)
                return await asyncio.to_thread(self._exchange, command, seconds)
        except UnitError:
            await self.close()  # out of step with the unit, or gone
            raise

    def _exchange(self, command: str, timeout: float) -> str:
        conn = self._conn
        channel = conn.remote_conn
        conn.write_channel(command + conn.RETURN)
        deadline = time.monotonic() + timeout
        text = ""
        while True:
            chunk = conn.read_channel()
            if chunk:
                text += chunk
                split = self._tracker.split(text)
                if split is not None:
                    if not split[0].strip():
                        # a prompt with nothing before it, not even the echo: one left over
                        # from the session's start, read before the unit saw the command
                        text = ""
                        continue
                    return strip_echo(split[0], command)
                continue
            if channel.closed or channel.eof_received:
                raise ChannelClosed("the unit closed the session")
            if time.monotonic() > deadline:
                raise ReadTimeout(f"no prompt within {timeout:g} s")
            time.sleep(POLL)

    async def open_shell(self, *, term_type: str, columns: int, rows: int) -> Shell:
        """Hands this session's channel (a PTY) over to interactive use; the driver verbs
        cannot be used on it afterwards. netmiko chose the terminal type and size."""
        conn, self._conn = self._conn, None
        if conn is None:
            raise Unreachable(self.target.serial, "the session is not open")
        return NetmikoShell(self.target.serial, conn)
