"""The scrapli 2026 transport: libscrapli's libssh2 client, driven through its async API.

The session is a scrapli `Cli` built by `drivers.platforms.scrapli.build_cli` from the
platform's definition. scrapli 2.x sends an input without ``requested_mode`` in the default
mode (``exec``), so every input names the mode it must run in: configuration commands
``configuration``, the others the mode the session is already in (no needless switches).

Host keys: libssh2 checks the key strictly against a known_hosts file written for this one
unit (the pinned key, or on first contact the key just read by a key exchange alone), so a
changed key fails before authentication starts.

Errors: libscrapli reports everything as `OperationException` with a message. Timeouts say
``TimeoutExceeded``; steps before login name themselves (``initSocket``, ``initSession``,
``initKnownHost``); a refused login is a bare ``Transport:`` error. So a timeout is never
taken for a refused login, and a login is only called refused once the connection and the
host key check have passed (see `scrapli_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from scrapli import Cli
from scrapli.exceptions import ScrapliException, TimeoutException

from drivers.base import EXEC, Mode, Shell, UnitTarget
from drivers.platforms.scrapli import build_cli
from drivers.ssh_asyncssh import probe_host_key
from drivers.transport import CliProfile, KnownHostsFile, normalise_key, resolve
from inventory.errors import AuthFailed, HostKeyMismatch, Timeout, UnitError, Unreachable

SHELL_POLL = 0.02  # seconds between reads of an interactive shell (libscrapli buffers it)
CLOSE_WAIT = 2.0
_STEPS_BEFORE_LOGIN = ("initsocket", "initsession", "initknownhost", "handshake", "connect")


def _login_refused(message: str) -> bool:
    text = message.lower()
    if "auth" in text:
        return True
    # libscrapli gives a refused login no detail; every earlier failure names its step.
    return message.strip().rstrip(":") == "Transport" and not any(
        step in text for step in _STEPS_BEFORE_LOGIN
    )


@contextlib.contextmanager
def scrapli_errors(serial: str, doing: str, *, opening: bool = False) -> Iterator[None]:
    """The one place scrapli's exceptions become the error tree."""
    try:
        yield
    except ScrapliException as exc:
        message = str(exc)
        text = message.lower()
        if isinstance(exc, TimeoutException) or "timeoutexceeded" in text or "timeout" in text:
            raise Timeout(serial, f"no answer in time ({doing})") from exc
        if "known host" in text or "host key" in text:
            raise HostKeyMismatch(serial, f"host key is not the pinned one ({doing})") from exc
        if opening and _login_refused(message):
            raise AuthFailed(serial, f"login refused ({doing})") from exc
        raise Unreachable(serial, f"{doing}: {message}") from exc


class ScrapliShell:
    """The session's own channel handed over for interactive use (scrapli has one channel)."""

    def __init__(self, serial: str, cli: Cli) -> None:
        self._serial = serial
        self._cli: Cli | None = cli

    async def read(self, max_chars: int = 65536) -> str:
        while self._cli is not None:
            with scrapli_errors(self._serial, "shell read"):
                data = self._cli.read(max_chars)
            if data:
                return data.decode("utf-8", "replace")
            await asyncio.sleep(SHELL_POLL)
        return ""

    async def write(self, data: str) -> None:
        if self._cli is None:
            raise Unreachable(self._serial, "the shell is closed")
        with scrapli_errors(self._serial, "shell write"):
            self._cli.write(data)

    async def close(self) -> None:
        cli, self._cli = self._cli, None
        if cli is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(cli.close_async(force=True), CLOSE_WAIT)


class ScrapliTransport:
    name = "scrapli"

    def __init__(self, target: UnitTarget, profile: CliProfile) -> None:
        if profile.scrapli_definition is None:
            raise ValueError(f"platform {profile.name} has no scrapli definition")
        self.target = target
        self.profile = profile
        resolve(profile.scrapli_definition)  # fail now, not at the first connection
        self._cli: Cli | None = None
        self._mode: Mode = EXEC
        self._seen_host_key: str | None = None
        self._known_hosts: KnownHostsFile | None = None

    @property
    def seen_host_key(self) -> str | None:
        return self._seen_host_key

    async def open(self) -> None:
        if self._cli is not None:
            raise RuntimeError("the session is already open")
        target = self.target
        pinned = normalise_key(target.host_key) if target.host_key else None
        # First contact: take the key the unit offers now, then hold libssh2 to it.
        key = pinned or await probe_host_key(target)
        self._known_hosts = KnownHostsFile(target.address, target.ssh_port, key)
        cli = build_cli(
            target.address,
            port=target.ssh_port,
            username=target.username,
            password=target.password,
            private_key_path=target.private_key,
            known_hosts_path=self._known_hosts.path,
            operation_timeout_s=target.timeouts.connect,
            logging_uid=target.serial,
        )
        try:
            with scrapli_errors(target.serial, "connect and log in", opening=True):
                await cli.open_async()
        except BaseException as exc:
            # A failed open leaves libscrapli's driver (and its thread) allocated: free it.
            await self._release(cli)
            if isinstance(exc, HostKeyMismatch):
                await self._learn_offered_key()
            raise
        finally:
            self._drop_known_hosts()  # libssh2 read it during the open
        self._cli = cli
        self._mode = EXEC
        self._seen_host_key = key

    async def _learn_offered_key(self) -> None:
        with contextlib.suppress(UnitError):
            self._seen_host_key = await probe_host_key(self.target)

    def _drop_known_hosts(self) -> None:
        if self._known_hosts is not None:
            self._known_hosts.remove()
            self._known_hosts = None

    async def close(self, *, force: bool = False) -> None:
        cli, self._cli = self._cli, None
        if cli is not None:
            await self._release(cli, force=force)

    @staticmethod
    async def _release(cli: Cli, *, force: bool = True) -> None:
        if cli.ptr is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(cli.close_async(force=force), CLOSE_WAIT)

    async def send(
        self, command: str, *, mode: Mode | None = None, timeout_s: float | None = None
    ) -> str:
        cli = self._cli
        if cli is None:
            raise Unreachable(self.target.serial, "the session is not open")
        requested = mode or self._mode
        seconds = timeout_s or self.target.timeouts.command
        verb = command.split(" ", 1)[0]  # never the rest: it may carry a secret
        try:
            with scrapli_errors(self.target.serial, f"waiting {seconds:g} s for {verb!r}"):
                result = await cli.send_input_async(
                    command, requested_mode=requested, operation_timeout_ns=int(seconds * 1e9)
                )
        except UnitError:
            # The session is out of step with the unit (or gone): do not send on it again.
            await self.close(force=True)
            raise
        self._mode = requested
        return str(result.result)

    async def open_shell(self, *, term_type: str, columns: int, rows: int) -> Shell:
        """Hands this session's channel (libssh2 PTY) over to interactive use; the driver
        verbs cannot be used on it afterwards. `term_type` and size are scrapli's."""
        cli, self._cli = self._cli, None
        if cli is None:
            raise Unreachable(self.target.serial, "the session is not open")
        return ScrapliShell(self.target.serial, cli)
