"""`UspotDriver`: the `UnitDriver` verbs for a U-SPOT_01 unit, over any text transport.

The commands and parsers are `drivers.uspot`; the transport (asyncssh, scrapli, netmiko)
only moves text. ``create(target, transport_factory)`` is the entry point registered as
``uspot`` in the ``fleetd.drivers`` group.

A lost connection during a commit raises `Unreachable`, but the unit may have applied the
commit before the line went dead (docs/unit-contract.md, section 10, ``drop_after``): read
the unit again before deciding anything.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, TypeVar

from drivers import uspot
from drivers.base import (
    CONFIGURATION,
    Change,
    CommitEntry,
    DiffLine,
    Mode,
    Shell,
    UnitState,
    UnitTarget,
)
from drivers.transport import CliProfile, Transport, TransportFactory
from inventory.errors import CommandFailed, GarbledAnswer

_T = TypeVar("_T")

PROFILE = CliProfile(
    name=uspot.PLATFORM,
    prompt=uspot.PROMPT,
    config_mark=uspot.CONFIG_MARK,
    enter_config=uspot.ENTER_CONFIG,
    exit_config=uspot.EXIT_CONFIG,
    scrapli_definition="drivers.platforms.scrapli:load_definition",
    netmiko_class="drivers.platforms.uspot_netmiko:UspotSSH",
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class UspotDriver:
    """One U-SPOT unit. ``async with driver:`` opens one CLI session; reusable afterwards."""

    platform = uspot.PLATFORM

    def __init__(
        self,
        target: UnitTarget,
        transport: Transport,
        *,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.target = target
        self.transport = transport
        self._now = now

    @property
    def seen_host_key(self) -> str | None:
        return self.transport.seen_host_key

    async def __aenter__(self) -> Self:
        await self.transport.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.transport.close()

    # ----- reading -----------------------------------------------------------------------
    async def read_state(self) -> UnitState:
        status = await self._read(uspot.parse_status, uspot.SHOW_STATUS)
        wan = None
        if status.role == "parent":  # a child or an access point refuses "show wan"
            wan = await self._read(uspot.parse_wan, uspot.SHOW_WAN)
        wlan = await self._read(uspot.parse_wlan, uspot.SHOW_WLAN)
        lamps = await self._read(uspot.parse_lamps, uspot.SHOW_LAMPS)
        running = await self._read(uspot.parse_config, uspot.SHOW_RUNNING)
        return uspot.build_state(status, wan, wlan, lamps, running, self._now())

    async def history(self) -> list[CommitEntry]:
        return await self._read(uspot.parse_history, uspot.SHOW_HISTORY)

    async def diff(self) -> list[DiffLine]:
        return await self._read(uspot.parse_diff, uspot.SHOW_DIFF, mode=CONFIGURATION)

    async def _read(
        self, parse: Callable[[str], _T], command: str, *, mode: Mode | None = None
    ) -> _T:
        """A show command's answer, parsed; one that cannot be understood is an error of the
        unit's (retried later), never a crash of the workflow that asked."""
        output = await self._run(command, mode=mode)
        try:
            return parse(output)
        except uspot.ParseError as exc:
            raise GarbledAnswer(
                self.target.serial, f"the answer to {command!r} could not be read: {exc}"
            ) from exc

    # ----- changing ----------------------------------------------------------------------
    async def stage(self, change: Change) -> None:
        """Set every path of `change` in this session's candidate. All or nothing: when the
        unit refuses one value, the candidate is discarded (with anything staged before in
        this session) and `CommandFailed` names the path, secrets masked."""
        commands = uspot.stage_commands(change)
        secrets = change.secrets()
        for command in commands:
            try:
                await self._run(command, mode=CONFIGURATION, secrets=secrets)
            except CommandFailed:
                await self.discard()
                raise

    async def commit_confirmed(self, minutes: int) -> None:
        command = uspot.commit_confirmed_command(minutes)
        await self._expect(command, uspot.COMMIT_DONE, commit=True)

    async def commit(self) -> None:
        await self._expect(uspot.COMMIT, uspot.COMMIT_DONE, commit=True)

    async def confirm(self) -> None:
        await self._expect(uspot.CONFIRM, uspot.CONFIRM_DONE)

    async def rollback(self) -> None:
        await self._expect(uspot.ROLLBACK, uspot.ROLLBACK_DONE)

    async def discard(self) -> None:
        await self._expect(uspot.DISCARD, uspot.DISCARD_DONE, mode=CONFIGURATION)

    async def open_shell(
        self, *, term_type: str = "xterm", columns: int = 80, rows: int = 24
    ) -> Shell:
        """An interactive channel with a PTY; it lives no longer than this session. Over
        asyncssh it is a second channel (a CLI session of its own); scrapli and netmiko have
        one channel, which is handed over, so the verbs cannot be used after this."""
        return await self.transport.open_shell(term_type=term_type, columns=columns, rows=rows)

    # ----- plumbing ------------------------------------------------------------------------
    async def _run(
        self,
        command: str,
        *,
        mode: Mode | None = None,
        timeout_s: float | None = None,
        secrets: tuple[str, ...] = (),
    ) -> str:
        output = await self.transport.send(command, mode=mode, timeout_s=timeout_s)
        uspot.raise_for_error(self.target.serial, command, output, secrets)
        return output

    async def _expect(
        self, command: str, done: str, *, mode: Mode | None = None, commit: bool = False
    ) -> None:
        # Commit and commit confirmed are configuration-mode commands; a commit may take long.
        if commit:
            mode = CONFIGURATION
        timeout_s = self.target.timeouts.commit if commit else None
        output = await self._run(command, mode=mode, timeout_s=timeout_s)
        uspot.expect(self.target.serial, command, output, done)


def create(target: UnitTarget, transport_factory: TransportFactory) -> UspotDriver:
    """The ``uspot`` entry point: a driver for `target` over the given transport."""
    if target.platform != uspot.PLATFORM:
        raise ValueError(f"{target.serial}: platform {target.platform!r} is not {uspot.PLATFORM!r}")
    return UspotDriver(target, transport_factory(target, PROFILE))
