"""The remote-login bastion, driven by OpenSSH's `ssh` against a simulated unit on loopback.

The unit is imported into the store as the daemon would have it (password encrypted, host
key pinned); staff keys are made per test and looked up by a plain `authorize` function.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncssh
import pytest

from drivers.base import Shell, Timeouts, UnitDriver, UnitTarget
from drivers.registry import load_driver
from drivers.transport import normalise_key
from fleetd.bastion import Bastion, Staff, StaffMember, store_authorizer
from fleetd.bastion_transcript import Transcript, mask, play_out
from fleetd.clock import ManualClock
from inventory import audit, repo, users
from inventory.audit import AuditEntry
from inventory.imports import importer_for, run_import
from inventory.redact import MASK, Redactor
from inventory.secrets import SecretBox
from inventory.store import Store
from simulators.clock import ManualClock as UnitClock
from simulators.fleet import FleetSpec
from simulators.server import ServedFleet, serve_fleet
from simulators.unit import Unit
from tests.tmux import Tmux

BASE = "127.86.0.1"
BASTION_HOST = "127.86.9.1"
SSH = shutil.which("ssh") or "/usr/bin/ssh"
TIMEOUT = 15.0
T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
UNIT_TIMEOUTS = Timeouts(connect=3.0, command=3.0, commit=3.0)
CANARY = "Canary-Pass-123"
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


# ----- the fleet, the inventory, the staff ----------------------------------------------------
@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[ServedFleet]:
    spec = FleetSpec(units=1, base_address=BASE, v6_ready_share=1.0, moved_share=0.0)
    async with serve_fleet(spec, state_dir=tmp_path / "sim", clock=UnitClock()) as fleet:
        yield fleet


@pytest.fixture
def unit(served: ServedFleet) -> Unit:
    return next(iter(served.fleet))


@pytest.fixture
async def inventory(
    store: Store, box: SecretBox, served: ServedFleet, unit: Unit, tmp_path: Path
) -> Store:
    """The fleet imported, the unit's host key pinned."""
    fleet_file = tmp_path / "fleet.csv"
    served.write_inventory(fleet_file)
    report = await run_import(store, importer_for("fleet"), fleet_file, box=box)
    assert report.written, report.problems
    async with store.transaction() as session:
        await repo.pin_host_key(session, unit.serial, served.fleet.host_public_key(unit))
    return store


@dataclass(frozen=True)
class StaffKeys:
    alice: Path  # tech
    carol: Path  # cs
    mallory: Path  # registered to nobody


def _make_key(path: Path) -> str:
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    return normalise_key(key.export_public_key().decode())


@pytest.fixture
def keys(tmp_path: Path) -> StaffKeys:
    (tmp_path / "keys").mkdir()
    return StaffKeys(*(tmp_path / "keys" / name for name in ("alice", "carol", "mallory")))


@pytest.fixture
def authorize(keys: StaffKeys) -> Callable[[str, str], Awaitable[StaffMember | None]]:
    registered = {
        ("alice", _make_key(keys.alice)): Staff("alice", "tech"),
        ("carol", _make_key(keys.carol)): Staff("carol", "cs"),
    }
    _make_key(keys.mallory)

    async def lookup(username: str, public_key: str) -> StaffMember | None:
        return registered.get((username, public_key))

    return lookup


StartBastion = Callable[..., Awaitable[Bastion]]


@pytest.fixture
async def start_bastion(
    inventory: Store,
    box: SecretBox,
    redactor: Redactor,
    authorize: Callable[[str, str], Awaitable[StaffMember | None]],
    tmp_path: Path,
) -> AsyncIterator[StartBastion]:
    started: list[Bastion] = []

    async def start(**options: Any) -> Bastion:
        bastion = Bastion(
            store=inventory,
            box=box,
            redactor=redactor,
            clock=ManualClock(T0),
            authorize=options.pop("authorize", authorize),
            load_driver=options.pop("load_driver", load_driver),
            state_dir=tmp_path / "fleetd",
            timeouts=UNIT_TIMEOUTS,
            **options,
        )
        await bastion.start(BASTION_HOST, 0)
        started.append(bastion)
        return bastion

    yield start
    for bastion in started:
        await bastion.close()


# ----- OpenSSH ------------------------------------------------------------------------------
def ssh_args(bastion: Bastion, key: Path, user: str, *extra: str) -> list[str]:
    known_hosts = key.parent.parent / "known_hosts"
    return [
        SSH,
        "-F", "/dev/null",
        "-i", str(key),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-o", "LogLevel=ERROR",  # no "Permanently added … to the list of known hosts"
        "-p", str(bastion.port),
        *extra[:-1],
        f"{user}@{BASTION_HOST}",
        *extra[-1:],
    ]  # fmt: skip


async def ssh_run(args: list[str], stdin: str = "") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Terminal:
    """`ssh -tt` through its pipes: the bastion sees a PTY session, as from a terminal."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen = ""
        self._pos = 0

    async def expect(self, text: str) -> str:
        """Read until `text` appears after the last match; return what came before it."""

        async def read() -> str:
            assert self.proc.stdout is not None
            while text not in self.seen[self._pos :]:
                chunk = await self.proc.stdout.read(4096)
                if not chunk:
                    raise AssertionError(f"EOF waiting for {text!r}; got {self.seen!r}")
                self.seen += chunk.decode()
            at = self.seen.index(text, self._pos)
            before, self._pos = self.seen[self._pos : at], at + len(text)
            return before

        return await asyncio.wait_for(read(), TIMEOUT)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((line + "\r").encode())  # Enter on a terminal is CR

    async def close(self) -> tuple[int, str]:
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), TIMEOUT)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        self.seen += out.decode()
        assert self.proc.returncode is not None
        return self.proc.returncode, err.decode()


async def open_terminal(args: list[str]) -> Terminal:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Terminal(proc)


async def audit_of(store: Store, target: str) -> list[AuditEntry]:
    async with store.sessions() as session:
        return list(reversed(await audit.entries(session, target=target)))


def everything_in(entries: list[AuditEntry]) -> str:
    return "\n".join(
        f"{e.actor} {e.action} {e.target} {e.request_id} {e.before} {e.after} {e.detail}"
        for e in entries
    )


# ----- sessions ---------------------------------------------------------------------------------
async def test_a_tech_user_works_on_the_unit_and_the_session_is_audited_with_secrets_masked(
    start_bastion: StartBastion,
    inventory: Store,
    served: ServedFleet,
    unit: Unit,
    keys: StaffKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("DEBUG")
    bastion = await start_bastion()
    serial, exec_prompt, config_prompt = unit.serial, f"{unit.serial}> ", f"{unit.serial}(config)# "
    term = await open_terminal(ssh_args(bastion, keys.alice, "alice", "-tt", serial))
    try:
        await term.expect(exec_prompt)
        term.send("show status")
        assert f"serial: {serial}" in await term.expect(exec_prompt)
        term.send("configure")
        await term.expect(config_prompt)
        term.send(f"set wlan guest passphrase {CANARY}")
        await term.expect(config_prompt)
        term.send("commit")
        assert "Commit complete." in await term.expect(config_prompt)
        term.send("exit")
        await term.expect(exec_prompt)
        term.send("exit")
    finally:
        status, err = await term.close()
    assert status == 0, err
    assert unit.running["wlan guest passphrase"] == CANARY  # the session really reached it
    password = served.fleet.password_of(serial)
    assert password not in term.seen + err

    entries = await audit_of(inventory, serial)
    assert [(e.actor, e.action) for e in entries] == [
        ("alice", "remote_login.start"),
        ("alice", "remote_login.end"),
    ]
    start, end = entries
    assert start.request_id == end.request_id
    assert start.after is not None and start.after["client"] == "127.0.0.1"
    assert end.after is not None and end.after["ended"] == "closed by the unit"
    assert f"{exec_prompt}show status\nserial: {serial}\n" in end.detail
    assert f"{config_prompt}set wlan guest passphrase {MASK}\n" in end.detail
    assert "Commit complete." in end.detail
    for secret in (CANARY, password):
        assert secret not in everything_in(entries)
        assert secret not in caplog.text


async def test_staff_log_in_with_the_keys_registered_in_the_user_store(
    start_bastion: StartBastion, inventory: Store, unit: Unit, keys: StaffKeys
) -> None:
    alice_key = _make_key(keys.alice)  # a new key, registered for alice below
    async with inventory.transaction() as session:
        await users.create_user(session, "alice", "tech")
        await users.add_ssh_key(session, "alice", alice_key + " alice@laptop")
        await users.create_user(session, "bob", "admin")
        await users.add_ssh_key(session, "bob", _make_key(keys.mallory))
        await users.set_disabled(session, "bob")
    bastion = await start_bastion(authorize=store_authorizer(inventory))

    status, out, err = await ssh_run(
        ssh_args(bastion, keys.alice, "alice", unit.serial), "show status\nexit\n"
    )
    assert status == 0, err
    assert f"serial: {unit.serial}" in out
    status, _, err = await ssh_run(ssh_args(bastion, keys.mallory, "bob", unit.serial))
    assert status == 255  # a disabled user's key no longer opens anything
    assert "Permission denied (publickey)" in err


@SQLITE_ONLY
async def test_without_a_command_the_bastion_asks_for_the_serial(
    start_bastion: StartBastion, unit: Unit, keys: StaffKeys
) -> None:
    bastion = await start_bastion()
    term = await open_terminal(ssh_args(bastion, keys.alice, "alice", "-tt"))
    try:
        await term.expect("Unit serial: ")
        term.send(unit.serial.lower())  # typed in lower case: still the unit
        await term.expect(f"{unit.serial}> ")
        term.send("exit")
    finally:
        status, err = await term.close()
    assert status == 0, err


@SQLITE_ONLY
async def test_without_a_terminal_the_unit_still_answers_and_its_echo_is_not_doubled(
    start_bastion: StartBastion, unit: Unit, keys: StaffKeys
) -> None:
    bastion = await start_bastion()
    status, out, err = await ssh_run(
        ssh_args(bastion, keys.alice, "alice", unit.serial), "show lamps\nexit\n"
    )
    assert status == 0, err
    assert "POWER: on\n" in out
    assert "\r" not in out
    assert "show lamps" not in out  # the staff member's own terminal shows what they type


@SQLITE_ONLY
async def test_a_cs_user_is_refused_in_one_line_and_the_refusal_is_audited(
    start_bastion: StartBastion,
    inventory: Store,
    served: ServedFleet,
    unit: Unit,
    keys: StaffKeys,
) -> None:
    bastion = await start_bastion()
    status, out, err = await ssh_run(ssh_args(bastion, keys.carol, "carol", unit.serial))
    assert status == 1
    assert err == (
        "fleetd: remote login needs the tech or admin role; carol has the cs role "
        "(ask an admin if you need it)\n"
    )
    assert out == ""
    assert served.ssh.sessions_served == 0
    entries = await audit_of(inventory, "")
    assert [(e.actor, e.action) for e in entries] == [("carol", "remote_login.refused")]


@SQLITE_ONLY
async def test_a_key_nobody_registered_is_refused_before_any_session(
    start_bastion: StartBastion,
    inventory: Store,
    served: ServedFleet,
    unit: Unit,
    keys: StaffKeys,
) -> None:
    bastion = await start_bastion()
    status, out, err = await ssh_run(ssh_args(bastion, keys.mallory, "alice", unit.serial))
    assert (status, out) == (255, "")
    assert "Permission denied (publickey)" in err
    # a registered key offered under another staff member's name is refused all the same
    status, _, err = await ssh_run(ssh_args(bastion, keys.carol, "alice", unit.serial))
    assert status == 255
    assert "Permission denied (publickey)" in err
    assert served.ssh.sessions_served == 0
    async with inventory.sessions() as session:
        assert list(await audit.entries(session)) == []


@SQLITE_ONLY
@pytest.mark.parametrize(
    ("serial", "status", "message"),
    [
        ("US01ZZZZ9999", 1, "no unit US01ZZZZ9999 in the inventory: check the serial"),
        ("US01-1", 2, "serial 'US01-1': a serial is US01 and 8 upper-case letters or digits"),
        ("US01ZZZZ9999 show", 2, "give one serial, not 'US01ZZZZ9999 show'"),
    ],
)
async def test_an_unknown_or_malformed_serial_is_named(
    start_bastion: StartBastion, keys: StaffKeys, serial: str, status: int, message: str
) -> None:
    bastion = await start_bastion()
    got, out, err = await ssh_run(ssh_args(bastion, keys.alice, "alice", serial))
    assert (got, out) == (status, "")
    assert err.startswith(f"fleetd: {message}")
    assert err.count("\n") == 1


@SQLITE_ONLY
async def test_a_unit_offering_another_host_key_is_refused_by_name(
    start_bastion: StartBastion,
    inventory: Store,
    served: ServedFleet,
    unit: Unit,
    keys: StaffKeys,
) -> None:
    unit.host_key_generation += 1  # replaced, or something is in the way
    bastion = await start_bastion()
    status, out, err = await ssh_run(ssh_args(bastion, keys.alice, "alice", unit.serial))
    assert status == 1
    assert err.startswith(
        f"fleetd: {unit.serial}: the unit's SSH host key is not the one pinned in the inventory"
    )
    assert served.ssh.sessions_served == 0
    assert served.fleet.password_of(unit.serial) not in out + err
    entries = await audit_of(inventory, unit.serial)
    assert [(e.actor, e.action) for e in entries] == [("alice", "remote_login.failed")]


@SQLITE_ONLY
async def test_an_idle_session_is_closed_and_recorded(
    start_bastion: StartBastion, inventory: Store, unit: Unit, keys: StaffKeys
) -> None:
    bastion = await start_bastion(idle_timeout=0.5)
    term = await open_terminal(ssh_args(bastion, keys.alice, "alice", "-tt", unit.serial))
    try:
        await term.expect(f"{unit.serial}> ")
        await term.expect("fleetd: session closed after 0.5 s without input")
    finally:
        status, _ = await term.close()
    assert status == 1
    entries = await audit_of(inventory, unit.serial)
    assert [e.action for e in entries] == ["remote_login.start", "remote_login.end"]
    assert entries[1].after is not None and entries[1].after["ended"] == "idle for 0.5 s"


@SQLITE_ONLY
async def test_stopping_the_daemon_ends_open_sessions_and_records_them(
    start_bastion: StartBastion, inventory: Store, unit: Unit, keys: StaffKeys
) -> None:
    bastion = await start_bastion()
    term = await open_terminal(ssh_args(bastion, keys.alice, "alice", "-tt", unit.serial))
    try:
        await term.expect(f"{unit.serial}> ")
        await bastion.close()
        await term.expect("fleetd: fleetd is stopping: session closed")
    finally:
        status, _ = await term.close()
    assert status == 1
    entries = await audit_of(inventory, unit.serial)
    assert [e.action for e in entries] == ["remote_login.start", "remote_login.end"]
    assert entries[1].after is not None and entries[1].after["ended"] == "the daemon stopped"


@SQLITE_ONLY
async def test_the_bastion_host_key_is_made_once_private_and_reused(
    start_bastion: StartBastion, tmp_path: Path
) -> None:
    first = await start_bastion()
    offered = await asyncssh.get_server_host_key(BASTION_HOST, first.port)
    assert offered is not None
    key_file = tmp_path / "fleetd" / "bastion_host_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = normalise_key(offered.export_public_key().decode())
    assert public == first.host_public_key
    assert normalise_key(key_file.with_name("bastion_host_key.pub").read_text()) == public
    await first.close()

    again = await start_bastion()  # a restart: staff's known_hosts stay valid
    offered = await asyncssh.get_server_host_key(BASTION_HOST, again.port)
    assert offered is not None
    assert normalise_key(offered.export_public_key().decode()) == public


# ----- the terminal's size ----------------------------------------------------------------------
class SizeRecorder:
    """A driver loader whose shells note the terminal sizes the bastion passes on."""

    def __init__(self) -> None:
        self.opened: list[tuple[str, int, int]] = []
        self.resized: list[tuple[int, int]] = []

    def __call__(self, target: UnitTarget, transport: str) -> UnitDriver:
        return _RecordingDriver(load_driver(target, transport), self)


class _RecordingShell:
    def __init__(self, shell: Shell, recorder: SizeRecorder) -> None:
        self._shell = shell
        self._recorder = recorder

    async def read(self, max_chars: int = 65536) -> str:
        return await self._shell.read(max_chars)

    async def write(self, data: str) -> None:
        await self._shell.write(data)

    async def close(self) -> None:
        await self._shell.close()

    async def resize(self, columns: int, rows: int) -> None:
        self._recorder.resized.append((columns, rows))


class _RecordingDriver:
    def __init__(self, driver: UnitDriver, recorder: SizeRecorder) -> None:
        self._driver = driver
        self._recorder = recorder
        self.target = driver.target

    @property
    def seen_host_key(self) -> str | None:
        return self._driver.seen_host_key

    async def __aenter__(self) -> Self:
        await self._driver.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._driver.__aexit__(exc_type, exc, tb)

    async def open_shell(
        self, *, term_type: str = "xterm", columns: int = 80, rows: int = 24
    ) -> Shell:
        self._recorder.opened.append((term_type, columns, rows))
        shell = await self._driver.open_shell(term_type=term_type, columns=columns, rows=rows)
        return _RecordingShell(shell, self._recorder)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    yield Tmux(tmp_path / "tmux.sock", "b")


@SQLITE_ONLY
async def test_the_terminal_size_and_its_changes_reach_the_unit(
    start_bastion: StartBastion, unit: Unit, keys: StaffKeys, tmux: Tmux
) -> None:
    recorder = SizeRecorder()
    bastion = await start_bastion(load_driver=recorder)
    command = shlex.join(ssh_args(bastion, keys.alice, "alice", "-t", unit.serial))
    await tmux.run(
        "new-session", "-d", "-s", "b", "-x", "100", "-y", "30",
        f"{command}; echo SSH-EXIT=$?; sleep 60",
    )  # fmt: skip
    try:
        await tmux.wait_for(f"{unit.serial}>")
        [(term_type, columns, rows)] = recorder.opened
        assert (columns, rows) == (100, 30)
        assert term_type not in ("", "dumb")
        await tmux.run("resize-window", "-t", "b", "-x", "132", "-y", "40")
        await tmux.run("send-keys", "-t", "b", "show lamps", "Enter")
        await tmux.wait_for("POWER: on")
        assert recorder.resized[-1:] == [(132, 40)]
        await tmux.run("send-keys", "-t", "b", "exit", "Enter")
        assert "SSH-EXIT=0" in await tmux.wait_for("SSH-EXIT=")
    finally:
        await tmux.run("kill-server")


# ----- the transcript ---------------------------------------------------------------------------
def test_the_transcript_plays_out_what_the_screen_showed() -> None:
    typed = "shw\b \bow lampz\x1b[D\x1b[Ks\x1b[2D\x1b[2C"  # typos erased as a terminal does
    raw = f"US01X> {typed}\r\n\x1b[1mPOWER: on\x1b[0m\r\nUS01X> show\rUS01X> exit"
    assert play_out(raw) == "US01X> show lamps\nPOWER: on\nUS01X> exit"


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("set wlan guest passphrase Canary-Pass-123", f"set wlan guest passphrase {MASK}"),
        ('set wlan business passphrase "two words"', f"set wlan business passphrase {MASK}"),
        ("set wan pppoe password pw-0123456", f"set wan pppoe password {MASK}"),
        ("SET snmp community s3cret-c0mm", f"SET snmp community {MASK}"),
        ("set wlan guest ssid Cafe Free", "set wlan guest ssid Cafe Free"),
    ],
)
def test_the_transcript_masks_secrets_typed_at_the_cli(typed: str, shown: str) -> None:
    assert mask(f"US01X(config)# {typed}", Redactor()) == f"US01X(config)# {shown}"


def test_the_transcript_masks_the_secrets_the_redactor_knows() -> None:
    redactor = Redactor()
    redactor.add_secret("unit-password-77")
    transcript = Transcript()
    transcript.add("debug: login as admin/unit-pass")
    transcript.add("word-77 done\r\n")
    assert transcript.text(redactor) == f"debug: login as admin/{MASK} done\n"


def test_a_long_transcript_keeps_its_head_and_tail_whole_lines_only() -> None:
    transcript = Transcript(max_chars=40)
    for n in range(20):
        transcript.add(f"line {n:02d}\r\n")
    text = transcript.text(Redactor())
    head, cut, tail = text.split("\n[", 1)[0], "[" + text.split("\n[", 1)[1].split("\n")[0], text
    assert head == "line 00\nline 01"
    assert cut.startswith("[… ") and "characters not kept" in cut
    assert tail.endswith("line 18\nline 19\n")
    assert "line 10" not in text
