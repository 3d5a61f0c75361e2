"""The units' SSH side: one listening socket for the whole fleet, one unit per local address.

A client connects to the unit's own loopback address; the accepted socket's local address
says which unit it reached, and the connection then runs with that unit's host key and
credentials. This keeps 10,000 units within a few file descriptors.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import socket
import struct
from collections.abc import Awaitable
from typing import Any

import asyncssh
from asyncssh.connection import SSHConnection
from asyncssh.constants import MSG_IGNORE
from asyncssh.packet import SSHPacketLogger, String
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from simulators.config import ROLE_NAMES
from simulators.fleet import USERNAME, Fleet
from simulators.shell import Reply, Session, split_commands
from simulators.terminal import EOF, INTERRUPT, LineEditor
from simulators.unit import FIRMWARE, MODEL, Unit

log = logging.getLogger(__name__)

BLACKHOLE_HOLD_SECONDS = 900.0
# AES first and no ChaCha20: asyncssh builds a new ChaCha20 context per packet, which costs a
# simulated fleet more CPU than the rest of a session; real embedded units often lack it too.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
# Elliptic-curve key exchange only: the hybrid post-quantum ones OpenSSH prefers cost more.
KEX = (
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "diffie-hellman-group14-sha256",
)


def banner(unit: Unit) -> str:
    return (
        f"U-SPOT {MODEL} management console\n"
        f"Serial {unit.serial} ({ROLE_NAMES[unit.role]}), firmware {FIRMWARE}. "
        "Authorised staff only.\n"
    )


def load_or_create_client_key(path: Any) -> asyncssh.SSHKey:
    """The key every unit accepts, written as an OpenSSH key pair (path, path.pub)."""
    from pathlib import Path

    path = Path(path)
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment="fleet-sim client")
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key


def _ed25519_key(raw: bytes) -> asyncssh.SSHKey:
    """An asyncssh host key from 32 raw bytes (about ten times cheaper than a PEM import)."""
    try:
        from asyncssh.eddsa import _Ed25519Key

        key: asyncssh.SSHKey = _Ed25519Key.make_private((raw,))
        return key
    except (ImportError, AttributeError):  # another asyncssh layout: take the public way
        pem = Ed25519PrivateKey.from_private_bytes(raw).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        return asyncssh.import_private_key(pem)


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: the close sends RST, so the client sees "connection reset" at once.
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


class _CoalescingTransport:
    """Gathers the packets written in one turn of the event loop into one send.

    An SSH exchange writes several small packets back to back; one system call for all of
    them is most of what a simulated unit can save per session.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(bytes(data))

    def _flush(self) -> None:
        if self._pending and not self._transport.is_closing():
            self._transport.write(b"".join(self._pending))
        self._pending.clear()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._pending.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _CoalescingProtocol(asyncio.Protocol):
    """Hands an SSH connection the coalescing transport; passes everything else through."""

    def __init__(self, inner: asyncssh.SSHServerConnection) -> None:
        self._inner = inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        wrapped = _CoalescingTransport(transport, loop)  # type: ignore[arg-type]
        self._inner.connection_made(wrapped)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        self._inner.eof_received()
        return None  # asyncssh closes the connection itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _UnitServer(asyncssh.SSHServer):
    def __init__(self, owner: FleetSSHServer, unit: Unit) -> None:
        self._owner = owner
        self._unit = unit
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._owner.register(self._unit, conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._owner.unregister(self._unit, self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        if self._unit.faults.auth_fail or username != USERNAME:
            return False
        expected = self._owner.fleet.password_of(self._unit.serial)
        return hmac.compare_digest(password.encode(), expected.encode())

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self._unit.faults.auth_fail or username != USERNAME:
            return False
        return key.public_data == self._owner.client_public_data


# asyncssh sends an empty SSH_MSG_IGNORE ahead of every encrypted packet after the key
# exchange, a defence of CBC-mode ciphers, which no unit offers (CIPHERS). OpenSSH and Dropbear,
# what embedded units run, send none: a simulated unit leaves them out too, so that its clients
# receive and decrypt the packets a real unit would send them, and no more.
_send_packet = SSHConnection.send_packet
_EMPTY_IGNORE = (String(b""),)


def _send_packet_as_units_do(
    self: SSHConnection, pkttype: int, *args: bytes, handler: SSHPacketLogger | None = None
) -> None:
    if pkttype == MSG_IGNORE and args == _EMPTY_IGNORE and isinstance(self._owner, _UnitServer):
        return
    _send_packet(self, pkttype, *args, handler=handler)


SSHConnection.send_packet = _send_packet_as_units_do  # type: ignore[method-assign]


class FleetSSHServer:
    """Serves every unit of a fleet on one TCP port."""

    def __init__(
        self,
        fleet: Fleet,
        client_key: asyncssh.SSHKey,
        *,
        host: str = "0.0.0.0",  # noqa: S104 - bound to the loopback device, see start()
        port: int = 0,
    ) -> None:
        self.fleet = fleet
        self.client_public_data = client_key.public_data
        self._host = host
        self._port = port
        self._sock: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._options: dict[tuple[str, int], asyncssh.SSHServerConnectionOptions] = {}
        self._host_keys: dict[tuple[str, int], asyncssh.SSHKey] = {}
        self._conns: dict[str, set[asyncssh.SSHServerConnection]] = {}
        self._held: set[socket.socket] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._base = asyncssh.SSHServerConnectionOptions(
            server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            process_factory=None,
            keepalive_interval=0,
            login_timeout=60,
            line_editor=False,  # see simulators/terminal.py
            encryption_algs=CIPHERS,
            kex_algs=KEX,
        )
        self.sessions_served = 0
        for unit in fleet:
            unit.reboot_listeners.append(self._drop_all)

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError("the SSH server is not started")
        return int(self._sock.getsockname()[1])

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            # Serve loopback only, even though the address is the wildcard.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"lo")
        except OSError:
            log.debug("SO_BINDTODEVICE unavailable; non-loopback peers are refused at accept")
        sock.bind((self._host, self._port))
        sock.listen(4096)
        sock.setblocking(False)
        self._sock = sock
        self._accept_task = asyncio.create_task(self._accept_loop())

    async def close(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()
            await asyncio.gather(self._accept_task, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
        for conns in list(self._conns.values()):
            for conn in list(conns):
                conn.abort()
        for sock in self._held:
            sock.close()
        self._held.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ----- accepting -------------------------------------------------------------------
    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            sock, peer = await loop.sock_accept(self._sock)
            local = sock.getsockname()[0]
            unit = self.fleet.unit_at(local)
            if unit is None or not peer[0].startswith("127."):
                _reset(sock)
                continue
            faults = unit.faults
            if faults.blackhole:
                self._hold(sock)
                continue
            if faults.refuse or not unit.is_up():
                _reset(sock)
                continue
            self._spawn(self._serve(loop, sock, unit))

    def _hold(self, sock: socket.socket) -> None:
        self._held.add(sock)

        def release() -> None:
            if sock in self._held:
                self._held.discard(sock)
                sock.close()

        asyncio.get_running_loop().call_later(BLACKHOLE_HOLD_SECONDS, release)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, unit: Unit
    ) -> None:
        options = self._options_for(unit)
        try:
            await loop.connect_accepted_socket(
                lambda: _CoalescingProtocol(asyncssh.SSHServerConnection(loop, options)), sock
            )
        except OSError:
            sock.close()

    def _options_for(self, unit: Unit) -> asyncssh.SSHServerConnectionOptions:
        key = (unit.serial, unit.host_key_generation)
        options = self._options.get(key)
        if options is None:
            host_key = _ed25519_key(self.fleet.host_key_seed(unit))
            self._host_keys[key] = host_key
            options = asyncssh.SSHServerConnectionOptions(
                self._base,
                server_host_keys=[host_key],
                server_factory=lambda: _UnitServer(self, unit),
                process_factory=lambda process: self._run_process(unit, process),
            )
            self._options[key] = options
        return options

    def host_public_key(self, unit: Unit) -> str:
        """The unit's current host key, OpenSSH public format (for known_hosts in tests)."""
        self._options_for(unit)
        host_key = self._host_keys[(unit.serial, unit.host_key_generation)]
        return host_key.export_public_key("openssh").decode().strip()

    # ----- sessions ----------------------------------------------------------------------
    def register(self, unit: Unit, conn: asyncssh.SSHServerConnection) -> None:
        self._conns.setdefault(unit.serial, set()).add(conn)

    def unregister(self, unit: Unit, conn: asyncssh.SSHServerConnection) -> None:
        conns = self._conns.get(unit.serial)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self._conns[unit.serial]

    def _drop_all(self, unit: Unit) -> None:
        for conn in list(self._conns.get(unit.serial, ())):
            conn.abort()

    async def _run_process(self, unit: Unit, process: asyncssh.SSHServerProcess[str]) -> None:
        self.sessions_served += 1
        session = Session(unit, process.get_extra_info("username") or USERNAME)
        conn = process.get_extra_info("connection")
        try:
            if process.subsystem:
                process.stderr.write(f"% Unknown subsystem: {process.subsystem}\n")
                process.exit(1)
            elif process.command is not None:
                await self._run_exec(unit, session, process, conn)
            else:
                await self._run_shell(unit, session, process, conn)
        except (asyncssh.BreakReceived, asyncssh.SignalReceived, asyncssh.TerminalSizeChanged):
            process.exit(1)
        except (asyncssh.ConnectionLost, BrokenPipeError, ConnectionError):
            pass

    def _delayed(self, unit: Unit) -> bool:
        latency, faults = self.fleet.latency, unit.faults
        return bool(latency.rtt or latency.commit or faults.rtt or faults.commit_delay)

    async def _answer(
        self, unit: Unit, session: Session, line: str, conn: asyncssh.SSHServerConnection
    ) -> Reply | None:
        """Run one command with the fleet's and the unit's delays; None: the line went dead."""
        faults = unit.faults
        latency = self.fleet.latency
        words = line.split()
        if words[:1] == ["commit"] and session.mode == "config":
            delay = latency.commit + faults.commit_delay
            if delay:
                await asyncio.sleep(delay)
        reply = session.execute(line)
        rtt = latency.rtt + faults.rtt
        if rtt:
            await asyncio.sleep(rtt)
        dropped = faults.drop_after and session.commands >= faults.drop_after
        if reply.abort or dropped or not unit.is_up():
            conn.abort()
            return None
        return reply

    async def _after(self, reply: Reply | None, process: asyncssh.SSHServerProcess[str]) -> None:
        """Let the goodbye reach the client, then do what the command left for later."""
        if reply is None or reply.after is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait_closed(), 2)
        reply.after()

    async def _run_exec(
        self,
        unit: Unit,
        session: Session,
        process: asyncssh.SSHServerProcess[str],
        conn: asyncssh.SSHServerConnection,
    ) -> None:
        status = 0
        last: Reply | None = None
        for command in split_commands(process.command or ""):
            reply = last = await self._answer(unit, session, command, conn)
            if reply is None:
                return
            if reply.text:
                process.stdout.write(reply.text + "\n")
            if reply.error:
                status = 1
                break
            if reply.close:
                break
        process.exit(status)
        await self._after(last, process)

    async def _run_shell(
        self,
        unit: Unit,
        session: Session,
        process: asyncssh.SSHServerProcess[str],
        conn: asyncssh.SSHServerConnection,
    ) -> None:
        pty = process.get_terminal_type() is not None
        editor = LineEditor(echo=pty)

        def translate(text: str) -> str:
            return text.replace("\n", "\r\n") if pty else text

        def write_raw(text: str) -> None:
            if text:
                process.stdout.write(text)

        write_raw(translate(banner(unit) + session.prompt))
        while True:
            try:
                data = await process.stdin.read(4096)
            except asyncssh.TerminalSizeChanged:
                continue  # the engineer resized the window: nothing for the CLI to do
            except asyncssh.BreakReceived:
                data = "\x03"
            if not data:
                break
            editor.feed(data)
            # One write per answer: echo, output and the next prompt travel in one packet.
            out: list[str] = []
            while True:
                echo, item = editor.next()
                out.append(echo)
                if item is None:
                    break
                event, line = item
                if event == EOF:
                    write_raw("".join(out))
                    process.exit(0)
                    return
                if event == INTERRUPT:
                    out.append(translate(session.prompt))
                    continue
                if self._delayed(unit):
                    # A slow line: the echo comes back first, the answer after the delay.
                    write_raw("".join(out))
                    out = []
                reply = await self._answer(unit, session, line, conn)
                if reply is None:
                    return
                if reply.text:
                    out.append(translate(reply.text + "\n"))
                if reply.close:
                    write_raw("".join(out))
                    process.exit(0)
                    await self._after(reply, process)
                    return
                out.append(translate(session.prompt))
            write_raw("".join(out))
        process.exit(0)
