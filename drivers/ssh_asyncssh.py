"""The asyncssh transport (the default): one SSH connection, one CLI shell channel, no PTY.

Connection options are built once per target: the client key is loaded once per file (not
re-read per connection), the pinned host key is imported once, and ``~/.ssh/config``,
``~/.ssh/known_hosts`` and the ssh-agent are never consulted. The preferred algorithms are
AES and (EC)DH on curve25519 / P-256, which the units offer and which cost little CPU.

Host keys: a pinned key is the only one trusted, and asyncssh checks it during the key
exchange, before the client sends any user-authentication request: a unit offering another
key gets `HostKeyMismatch` and never sees a password. With no pinned key the first key is
accepted (trust on first use) and exposed as `seen_host_key` for the daemon to pin.

Connection options are prepared on the event loop, not in a worker thread: asyncssh hands
their preparation to the loop's default executor in case it reads files (config, keys, known
hosts), and ours reads none. A thread round trip per connection costs more CPU than the
preparation itself when hundreds of sessions open at once. asyncssh's log messages (and its
packet log) are formatted only when their level is enabled, and this transport's connections
send no empty SSH_MSG_IGNORE ahead of each packet, a defence of CBC ciphers, which it never
offers. A closed connection is freed at once, not left to the garbage collector's full passes.

`probe_host_key()` (key exchange only, no login) serves the scrapli and netmiko transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import asyncssh
from asyncssh.connection import SSHConnection
from asyncssh.constants import MSG_IGNORE
from asyncssh.logging import SSHLogger
from asyncssh.packet import SSHPacketLogger, String

from drivers.base import Mode, Shell, UnitTarget
from drivers.transport import CliProfile, PromptTracker, normalise_key
from inventory.errors import AuthFailed, HostKeyMismatch, Timeout, Unreachable

CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
KEX = (
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "diffie-hellman-group14-sha256",
)
CLOSE_WAIT = 2.0

# set while this transport connects: its options are then prepared on the loop (they name no
# file to read); every other asyncssh client in the process keeps asyncssh's own way
_PREPARE_INLINE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "asyncssh_prepare_inline", default=False
)
_construct = asyncssh.SSHClientConnectionOptions.construct.__func__  # type: ignore[attr-defined]


async def _construct_inline(
    cls: type[asyncssh.SSHClientConnectionOptions],
    /,
    options: asyncssh.SSHClientConnectionOptions | None = None,
    **kwargs: object,
) -> asyncssh.SSHClientConnectionOptions:
    if _PREPARE_INLINE.get():
        return cls(options, **kwargs)
    result: asyncssh.SSHClientConnectionOptions = await _construct(cls, options, **kwargs)
    return result


asyncssh.SSHClientConnectionOptions.construct = classmethod(_construct_inline)  # type: ignore[method-assign,assignment]

# asyncssh's logger turns every argument of every message into text before the logging
# module looks at the level: a few dozen messages per session, nearly all dropped unread.
# The level is looked at first here; a message that is logged is logged as before.
_ssh_log = SSHLogger.log


def _log_if_enabled(self: SSHLogger, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
    if self.isEnabledFor(level):
        _ssh_log(self, level, msg, *args, **kwargs)


SSHLogger.log = _log_if_enabled  # type: ignore[method-assign]

# The same for its packet log: every packet sent or received had its name and size turned
# into text, and only then did the logger look at the debug level (3) that shows packets.
_log_packet = SSHPacketLogger._log_packet


def _log_packet_if_enabled(
    self: SSHPacketLogger, msg: str, pkttype: int, pktid: int | None, packet: Any, note: str
) -> None:
    if self.logger._debug_level >= 3:
        _log_packet(self, msg, pkttype, pktid, packet, note)


SSHPacketLogger._log_packet = _log_packet_if_enabled  # type: ignore[method-assign]

# asyncssh sends an empty SSH_MSG_IGNORE ahead of every encrypted packet after the key
# exchange. That defends CBC-mode ciphers (whose next IV an attacker could predict); this
# transport offers none (CIPHERS: GCM and CTR), and OpenSSH sends no such packets. On a unit
# session they doubled the packets written: one more encryption, random padding and send()
# per packet. They are left out on this transport's connections only.
_send_packet = SSHConnection.send_packet
_EMPTY_IGNORE = (String(b""),)


def _send_packet_unpadded(
    self: SSHConnection, pkttype: int, *args: bytes, handler: SSHPacketLogger | None = None
) -> None:
    if pkttype == MSG_IGNORE and args == _EMPTY_IGNORE and isinstance(self._owner, _HostKeyGate):
        return
    _send_packet(self, pkttype, *args, handler=handler)


SSHConnection.send_packet = _send_packet_unpadded  # type: ignore[method-assign]

# SASLprep (RFC 4013) leaves printable ASCII as it is, yet asyncssh walks every character of
# each connection's user names through the stringprep tables.
_saslprep = asyncssh.saslprep.saslprep


def _saslprep_ascii_as_is(s: str) -> str:
    if s.isascii() and s.isprintable():
        return s
    return _saslprep(s)


asyncssh.connection.saslprep = _saslprep_ascii_as_is  # type: ignore[attr-defined]


class asyncssh_errors:  # lower case: read as ``with asyncssh_errors(...)``
    """The one place asyncssh's (and the socket's) exceptions become the error tree.

    `doing` says what was being done, for the error's message; a callable is asked only when
    something failed. A class, not a generator: it is entered twice for every command.
    """

    __slots__ = ("doing", "serial")

    def __init__(self, serial: str, doing: str | Callable[[], str]) -> None:
        self.serial = serial
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None:
            return
        serial = self.serial
        doing = self.doing if isinstance(self.doing, str) else self.doing()
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            raise HostKeyMismatch(serial, f"host key is not the pinned one ({doing})") from exc
        if isinstance(exc, asyncssh.PermissionDenied):
            raise AuthFailed(serial, f"login refused ({doing}): {exc.reason}") from exc
        if isinstance(exc, TimeoutError):  # also asyncio.TimeoutError; before OSError, its base
            raise Timeout(serial, f"no answer in time ({doing})") from exc
        if isinstance(exc, asyncssh.Error | asyncio.IncompleteReadError | EOFError | OSError):
            message = f"{doing}: {type(exc).__name__}: {exc}".rstrip(": ")
            raise Unreachable(serial, message) from exc


def _read_nothing() -> bool:
    return False


def _release(conn: asyncssh.SSHClientConnection) -> None:
    """Let a closed connection go as soon as nothing refers to it.

    asyncssh keeps its packet reader as a method of the connection in the connection itself,
    a cycle that only the garbage collector's full passes free: with hundreds of sessions
    opening and closing, each pass then walks (and finalizes) every session closed since the
    last one. Once the connection is closed, it has no packets left to read."""
    if conn.is_closed() and "_recv_handler" in vars(conn):
        conn._recv_handler = _read_nothing


def _awaited(command: str | None) -> str:
    if command is None:
        return "the first prompt"
    return repr(command.split(" ", 1)[0])  # never the rest: it may carry a secret


def export_key(key: asyncssh.SSHKey) -> str:
    return normalise_key(key.export_public_key("openssh").decode())


@functools.lru_cache(maxsize=64)
def _read_key(path: str, mtime_ns: int) -> asyncssh.SSHKey:
    return asyncssh.read_private_key(path)


def load_client_key(path: Path) -> asyncssh.SSHKey:
    """The private key at `path`, read once (again only if the file changes)."""
    return _read_key(str(path), path.stat().st_mtime_ns)


async def probe_host_key(target: UnitTarget) -> str:
    """The host key the unit offers, from a key exchange alone (no login is attempted)."""
    with asyncssh_errors(target.serial, "read the host key"):
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(
                target.address, target.ssh_port, kex_algs=KEX, config=None
            ),
            target.timeouts.connect,
        )
    if key is None:
        raise Unreachable(target.serial, "the unit offered no host key")
    return export_key(key)


class _HostKeyGate(asyncssh.SSHClient):
    """Sees every host key the trusted set does not already hold; trusts it only on first use."""

    def __init__(self, transport: AsyncsshTransport) -> None:
        self._transport = transport

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self._transport._seen_host_key = export_key(key)
        return self._transport.target.host_key is None


def _expire(waiter: asyncio.Future[str]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _CliSession(asyncssh.SSHClientSession[str]):
    """The CLI channel's receiving end: keeps what the unit writes until a prompt ends it.

    asyncssh's stream layer (readers, read locks, a buffer of chunks searched again on each
    read) costs more per command than the rest of a command's round trip on the client; an
    answer is one or two packets ended by a prompt, which this finds as the text arrives.
    """

    def __init__(self, profile: CliProfile) -> None:
        self._prompt = profile.prompt
        self._text = ""
        # the loop, once: asyncio.get_running_loop() asks the kernel for the process id
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[str] | None = None
        self._ended: BaseException | None = None

    def data_received(self, data: str, datatype: asyncssh.DataType) -> None:
        if datatype is not None:  # stderr: not part of an answer
            return
        self._text += data
        self._answer()

    def eof_received(self) -> bool:
        self._end(asyncio.IncompleteReadError(self._text.encode(), None))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or asyncio.IncompleteReadError(self._text.encode(), None))

    def _end(self, exc: BaseException) -> None:
        if self._ended is None:
            self._ended = exc
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _answer(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        text = self._text
        # the prompt ends the text and starts its line: only the last line is searched
        match = self._prompt.search(text, max(0, text.rfind("\n")))
        if match is None:
            return
        end = match.end()
        self._text, self._waiter = text[end:], None
        waiter.set_result(text[:end])

    async def answer(self, timeout_s: float) -> str:
        """What the unit writes up to and including its next prompt."""
        if self._ended is not None:
            raise self._ended
        waiter: asyncio.Future[str] = self._loop.create_future()
        self._waiter = waiter
        if self._text:  # what came before anyone asked may hold the answer already
            self._answer()
        # a timer on the waiter itself: asyncio.timeout would cancel and uncancel the task
        timer = self._loop.call_later(timeout_s, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None


class AsyncsshShell:
    """An interactive channel with a PTY on an open connection."""

    def __init__(self, serial: str, process: asyncssh.SSHClientProcess[str]) -> None:
        self._serial = serial
        self._process = process

    async def read(self, max_chars: int = 65536) -> str:
        with asyncssh_errors(self._serial, "shell read"):
            return await self._process.stdout.read(max_chars)

    async def write(self, data: str) -> None:
        with asyncssh_errors(self._serial, "shell write"):
            self._process.stdin.write(data)

    async def close(self) -> None:
        self._process.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._process.wait_closed(), CLOSE_WAIT)


class AsyncsshTransport:
    name = "asyncssh"

    def __init__(self, target: UnitTarget, profile: CliProfile) -> None:
        self.target = target
        self.profile = profile
        self._seen_host_key: str | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._chan: asyncssh.SSHClientChannel[str] | None = None
        self._session: _CliSession | None = None
        self._tracker = PromptTracker(profile)
        self._options = self._build_options()

    def _build_options(self) -> dict[str, Any]:
        """The connection's options as keywords of `asyncssh.connect`, which prepares them
        once per connection (an options object built here would be prepared twice)."""
        target = self.target
        trusted: list[asyncssh.SSHKey] = []
        if target.host_key is not None:
            trusted.append(asyncssh.import_public_key(normalise_key(target.host_key)))
        client_keys = [load_client_key(target.private_key)] if target.private_key else None
        # no client_factory here: it refers to this transport, and these options live as
        # long as it does (a cycle); it is passed to each connect instead
        options: dict[str, Any] = {
            "username": target.username,
            "password": target.password,
            "client_keys": client_keys,
            # (trusted keys, CA keys, revoked keys): no file is read. Keys not trusted here
            # go to _HostKeyGate.validate_host_public_key.
            "known_hosts": (trusted, [], []),
            "agent_path": None,
            "config": None,
            # no X.509 host certificates, no Kerberos: units are pinned by their host key and
            # log in with a password or a key (and ~/.ssh is not looked at per connection)
            "x509_trusted_certs": None,
            "x509_trusted_cert_paths": [],
            "gss_host": None,
            "gss_kex": False,
            "gss_auth": False,
            # a key, else the password in one request: asyncssh would otherwise prefer
            # keyboard-interactive, a round trip more for the same password
            "preferred_auth": ("publickey", "password", "keyboard-interactive"),
            "encryption_algs": CIPHERS,
            "kex_algs": KEX,
            "connect_timeout": target.timeouts.connect,
            "login_timeout": target.timeouts.connect,
            "keepalive_interval": 0,
        }
        return options

    @property
    def seen_host_key(self) -> str | None:
        return self._seen_host_key

    async def open(self) -> None:
        if self._conn is not None:
            raise RuntimeError("the session is already open")
        serial, timeouts = self.target.serial, self.target.timeouts
        try:
            with asyncssh_errors(
                serial, f"connect to {self.target.address}:{self.target.ssh_port}"
            ):
                inline = _PREPARE_INLINE.set(True)
                try:
                    self._conn = await asyncssh.connect(
                        self.target.address,
                        self.target.ssh_port,
                        client_factory=lambda: _HostKeyGate(self),
                        **self._options,
                    )
                finally:
                    _PREPARE_INLINE.reset(inline)
            key = self._conn.get_server_host_key()
            if key is not None:
                self._seen_host_key = export_key(key)
            with asyncssh_errors(serial, "open the CLI session"):
                async with asyncio.timeout(timeouts.command):
                    self._chan, session = await self._conn.create_session(
                        lambda: _CliSession(self.profile), term_type=None
                    )
                    self._session = cast(_CliSession, session)
            self._tracker.mode = "exec"
            await self._read_answer(timeouts.connect, None)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn, self._chan, self._session = self._conn, None, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_WAIT):
                    await conn.wait_closed()
            _release(conn)

    async def send(
        self, command: str, *, mode: Mode | None = None, timeout_s: float | None = None
    ) -> str:
        switch = self._tracker.switch_command(mode)
        if switch is not None:
            await self._exchange(switch, None)
        return await self._exchange(command, timeout_s)

    async def _exchange(self, command: str, timeout_s: float | None) -> str:
        if self._chan is None:
            raise Unreachable(self.target.serial, "the session is not open")
        with asyncssh_errors(self.target.serial, "send a command"):
            self._chan.write(command + "\n")
        return await self._read_answer(timeout_s or self.target.timeouts.command, command)

    async def _read_answer(self, timeout_s: float, command: str | None) -> str:
        """The answer to `command` (None: the prompt a session starts with)."""
        assert self._session is not None

        def waiting() -> str:
            return f"waiting {timeout_s:g} s for {_awaited(command)}"

        try:
            with asyncssh_errors(self.target.serial, waiting):
                text = await self._session.answer(timeout_s)
        except BaseException:
            # A late or partial answer would be taken for the next command's: end the session.
            await self.close()
            raise
        split = self._tracker.split(text)
        if split is None:  # cannot happen: the answer ends where this very pattern matched
            await self.close()
            raise Unreachable(self.target.serial, f"no prompt after {_awaited(command)}")
        return split[0]

    async def open_shell(self, *, term_type: str, columns: int, rows: int) -> Shell:
        """A second channel on the same connection: its own CLI session, with a PTY."""
        if self._conn is None:
            raise Unreachable(self.target.serial, "the session is not open")
        with asyncssh_errors(self.target.serial, "open an interactive shell"):
            process = await asyncio.wait_for(
                self._conn.create_process(term_type=term_type, term_size=(columns, rows)),
                self.target.timeouts.command,
            )
        return AsyncsshShell(self.target.serial, process)
