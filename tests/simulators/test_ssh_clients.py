"""The simulated units against the SSH clients a network engineer uses.

OpenSSH (exec and interactive), asyncssh, netmiko (paramiko) with the U-SPOT connection
class, and scrapli 2026 (libscrapli, both its libssh2 and its system-ssh transport) with the
U-SPOT definition. The fleet's SSH server runs in the test's event loop, so blocking clients
(netmiko) run in a worker thread.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
from pathlib import Path

import asyncssh
import pytest
from netmiko import ConnectHandler
from netmiko.exceptions import ConfigInvalidException
from scrapli import Cli
from scrapli.exceptions import OperationException

from drivers.platforms.scrapli import CONFIGURATION, Transport, build_cli
from drivers.platforms.uspot_netmiko import DEVICE_TYPE, UspotCommitError, UspotSSH, register
from simulators.clock import ManualClock
from simulators.config import PARENT
from simulators.fleet import USERNAME
from simulators.server import ServedFleet
from simulators.unit import Unit
from tests.tmux import Tmux

SSH = shutil.which("ssh") or "/usr/bin/ssh"
TIMEOUT = 15.0


# ----- helpers ------------------------------------------------------------------------------
def state_dir(served: ServedFleet) -> Path:
    assert served.state_dir is not None
    return served.state_dir


def client_key(served: ServedFleet) -> Path:
    return state_dir(served) / "id_ed25519"


def known_hosts(served: ServedFleet) -> Path:
    return state_dir(served) / "known_hosts"


def parent(served: ServedFleet) -> Unit:
    return next(u for u in served.fleet if u.role == PARENT)


def ssh_args(served: ServedFleet, unit: Unit, *extra: str) -> list[str]:
    """OpenSSH as an engineer runs it: fleet key, the fleet's known_hosts, strict checking."""
    return [
        SSH,
        "-F", "/dev/null",  # no user or system ssh_config
        "-i", str(client_key(served)),
        "-o", "IdentitiesOnly=yes",
        "-o", f"UserKnownHostsFile={known_hosts(served)}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=5",
        "-p", str(served.ssh_port),
        *extra,
        f"{USERNAME}@{served.fleet.address_of[unit.serial]}",
    ]  # fmt: skip


async def ssh_exec(served: ServedFleet, unit: Unit, command: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *ssh_args(served, unit),
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class Terminal:
    """`ssh -tt` driven through its pipes: the unit sees a PTY session, as from a terminal."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.seen = ""  # everything read so far
        self._pos = 0  # where the next expect() starts looking

    async def expect(self, text: str) -> str:
        """Read until `text` appears after the last match; return what came before it."""
        assert self.proc.stdout is not None

        async def read() -> str:
            assert self.proc.stdout is not None
            while text not in self.seen[self._pos :]:
                chunk = await self.proc.stdout.read(4096)
                if not chunk:
                    raise AssertionError(f"EOF waiting for {text!r}; got {self.seen!r}")
                self.seen += chunk.decode()
            at = self.seen.index(text, self._pos)
            before = self.seen[self._pos : at]
            self._pos = at + len(text)
            return before

        return await asyncio.wait_for(read(), TIMEOUT)

    def send(self, line: str) -> None:
        self.type(line + "\r")  # Enter on a terminal is CR

    def type(self, keys: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(keys.encode())

    async def close(self) -> tuple[int, str]:
        """Wait for ssh to end (killing it if it does not); its exit status and stderr."""
        try:
            _, err = await asyncio.wait_for(self.proc.communicate(), TIMEOUT)
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode, err.decode()


async def open_terminal(served: ServedFleet, unit: Unit) -> Terminal:
    proc = await asyncio.create_subprocess_exec(
        *ssh_args(served, unit, "-tt"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Terminal(proc)


# ----- OpenSSH ------------------------------------------------------------------------------
async def test_openssh_exec_show_status(served: ServedFleet) -> None:
    unit = parent(served)
    status, out, err = await ssh_exec(served, unit, "show status")
    assert status == 0, err
    assert f"serial: {unit.serial}\n" in out
    assert "role: parent\n" in out


async def test_openssh_exec_unknown_command_fails(served: ServedFleet) -> None:
    unit = parent(served)
    status, out, err = await ssh_exec(served, unit, "show everything")
    assert status != 0
    assert status != 255, err  # the command failed, not ssh
    assert '% Unknown command: "show everything"' in out


async def test_openssh_exec_invalid_value_leaves_running_config(served: ServedFleet) -> None:
    unit = parent(served)
    before = dict(unit.running)
    ssid = "S" * 33  # one byte too long
    status, out, err = await ssh_exec(served, unit, f'configure; set wlan guest ssid "{ssid}"')
    assert status == 1, err
    assert out.startswith("% Invalid value for wlan guest ssid: ")
    assert "is 33 bytes; an SSID is 1 to 32 bytes" in out
    assert unit.running == before
    assert unit.commit_log == []


async def test_openssh_exec_script_commits(served: ServedFleet) -> None:
    unit = parent(served)
    status, out, err = await ssh_exec(
        served, unit, 'configure; set wlan guest ssid "Cafe Guest"; commit'
    )
    assert status == 0, err
    assert "Commit complete." in out
    assert unit.running["wlan guest ssid"] == "Cafe Guest"


async def test_openssh_interactive_commit_confirmed(
    served: ServedFleet, clock: ManualClock
) -> None:
    unit = parent(served)
    before = dict(unit.running)
    term = await open_terminal(served, unit)
    exec_prompt, config_prompt = f"{unit.serial}> ", f"{unit.serial}(config)# "
    try:
        banner = await term.expect(exec_prompt)
        assert "U-SPOT U-SPOT_01 management console" in banner
        assert f"Serial {unit.serial} (parent)" in banner

        term.send("configure")
        await term.expect(config_prompt)
        term.send('set wlan guest ssid "Shop Free"')
        echoed = await term.expect(config_prompt)
        assert 'set wlan guest ssid "Shop Free"' in echoed  # the PTY session echoes input
        term.send("commit confirmed 5")
        said = await term.expect(config_prompt)
        assert "Commit complete; it rolls back in 5 minutes unless confirmed." in said
        term.send("exit")
        await term.expect(exec_prompt)
        term.send("exit")
    finally:
        status, err = await term.close()
    assert status == 0, err
    assert "\r\n" in term.seen  # a terminal gets CR LF line ends

    assert unit.running["wlan guest ssid"] == "Shop Free"
    assert unit.pending is not None
    assert unit.pending.deadline == clock.now() + 5 * 60
    assert [r.kind for r in unit.commit_log] == ["commit-confirmed"]

    clock.advance(5 * 60)  # nobody confirmed: the unit rolls back by itself
    assert unit.pending is None
    assert unit.running == before
    assert [r.kind for r in unit.commit_log] == ["commit-confirmed", "auto-rollback"]


async def test_openssh_interactive_ctrl_c_drops_the_line(served: ServedFleet) -> None:
    unit = parent(served)
    exec_prompt = f"{unit.serial}> "
    term = await open_terminal(served, unit)
    try:
        await term.expect(exec_prompt)
        term.type("show sta\x03")  # typing, then Ctrl-C: the line is abandoned
        await term.expect(exec_prompt)  # a fresh prompt, and the session lives on
        term.send("show lamps")
        said = await term.expect(exec_prompt)
        assert "POWER: on" in said
        assert "% " not in said  # "show sta" was dropped, not prefixed to the next line
        term.send("exit")
    finally:
        status, err = await term.close()
    assert status == 0, err


async def test_openssh_in_tmux_survives_window_resize(served: ServedFleet, tmp_path: Path) -> None:
    unit = parent(served)
    tmux = Tmux(tmp_path / "tmux.sock", "u")
    command = shlex.join(ssh_args(served, unit, "-tt")) + "; echo SSH-EXIT=$?; sleep 60"
    await tmux.run("new-session", "-d", "-s", "u", "-x", "80", "-y", "24", command)
    try:
        screen = await tmux.wait_for(f"{unit.serial}>")
        assert "U-SPOT U-SPOT_01 management console" in screen
        # The engineer widens the window: ssh sends the unit a window-change request.
        await tmux.run("resize-window", "-t", "u", "-x", "132", "-y", "40")
        await tmux.run("send-keys", "-t", "u", "show lamps", "Enter")
        screen = await tmux.wait_for("POWER: on", "SSH-EXIT=")
        assert "SSH-EXIT=" not in screen, screen
        assert "WAN: on" in screen
        await tmux.run("send-keys", "-t", "u", "exit", "Enter")
        screen = await tmux.wait_for("SSH-EXIT=")
        assert "SSH-EXIT=0" in screen, screen
    finally:
        await tmux.run("kill-server")


async def test_openssh_refuses_changed_host_key(served: ServedFleet) -> None:
    unit = parent(served)
    assert served.ssh.host_public_key(unit) == served.fleet.host_public_key(unit)
    unit.host_key_generation += 1  # the unit was replaced (or something is in the way)

    status, out, err = await ssh_exec(served, unit, "show status")
    assert status == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in err or "Host key verification failed" in err
    assert out == ""
    assert served.ssh.sessions_served == 0

    # Once the engineer accepts the new key, the unit answers again.
    served.fleet.write_known_hosts(known_hosts(served), served.ssh_port)
    assert served.ssh.host_public_key(unit) in known_hosts(served).read_text()
    status, out, err = await ssh_exec(served, unit, "show status")
    assert status == 0, err
    assert f"serial: {unit.serial}" in out


# ----- asyncssh -----------------------------------------------------------------------------
async def test_asyncssh_password_auth(served: ServedFleet) -> None:
    unit = parent(served)
    async with asyncssh.connect(
        served.fleet.address_of[unit.serial],
        served.ssh_port,
        username=USERNAME,
        password=served.fleet.password_of(unit.serial),
        known_hosts=None,
        client_keys=None,
        agent_path=None,
    ) as conn:
        result = await conn.run("show status", check=False)
    assert result.exit_status == 0
    assert f"serial: {unit.serial}" in str(result.stdout)


async def test_asyncssh_public_key_auth_checks_host_key(served: ServedFleet) -> None:
    unit = parent(served)
    async with asyncssh.connect(
        served.fleet.address_of[unit.serial],
        served.ssh_port,
        username=USERNAME,
        client_keys=[str(client_key(served))],
        known_hosts=str(known_hosts(served)),
        agent_path=None,
        password=None,
    ) as conn:
        result = await conn.run("show wan", check=False)
        failed = await conn.run("configure; set wan mode foo", check=False)
    assert result.exit_status == 0
    assert "mode: pppoe" in str(result.stdout)
    assert failed.exit_status == 1
    assert str(failed.stdout).startswith('% Invalid value for wan mode: "foo"')


async def test_asyncssh_wrong_password_is_refused(served: ServedFleet) -> None:
    unit = parent(served)
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.connect(
            served.fleet.address_of[unit.serial],
            served.ssh_port,
            username=USERNAME,
            password="not-" + served.fleet.password_of(unit.serial),
            known_hosts=None,
            client_keys=None,
            agent_path=None,
        )
    assert served.ssh.sessions_served == 0


# ----- netmiko ------------------------------------------------------------------------------
def netmiko_params(served: ServedFleet, unit: Unit) -> dict[str, object]:
    return {
        "host": served.fleet.address_of[unit.serial],
        "port": served.ssh_port,
        "username": USERNAME,
        "password": served.fleet.password_of(unit.serial),
        "device_type": DEVICE_TYPE,
        "use_keys": False,
        "allow_agent": False,
        "ssh_strict": True,  # paramiko RejectPolicy: the key must be in alt_key_file
        "alt_host_keys": True,
        "alt_key_file": str(known_hosts(served)),
        "conn_timeout": 5,
    }


async def test_netmiko_config_commit_confirmed_and_confirm(served: ServedFleet) -> None:
    unit = parent(served)

    def session() -> dict[str, str]:
        conn = UspotSSH(**netmiko_params(served, unit))  # type: ignore[arg-type]
        try:
            out = {"prompt": conn.find_prompt(), "wan": str(conn.send_command("show wan"))}
            out["config"] = conn.send_config_set(
                ['set wlan guest ssid "Netmiko Guest"', "set wlan guest state down"],
                exit_config_mode=False,
            )
            out["in_config"] = str(conn.check_config_mode())
            out["commit"] = conn.commit(confirm_minutes=10)
            out["pending"] = str(conn.send_command("show status"))
            conn.exit_config_mode()
            out["after_exit"] = str(conn.check_config_mode())
            out["confirm"] = str(conn.send_command("confirm"))
            return out
        finally:
            conn.disconnect()

    out = await asyncio.wait_for(asyncio.to_thread(session), 60)
    assert out["prompt"] == f"{unit.serial}>"
    assert "mode: pppoe" in out["wan"]
    assert "internet: up" in out["wan"]
    assert "% " not in out["config"]
    assert out["in_config"] == "True"
    assert "it rolls back in 10 minutes unless confirmed" in out["commit"]
    assert "commit-pending: yes (rollback in 600 s)" in out["pending"]
    assert out["after_exit"] == "False"
    assert out["confirm"] == "Commit confirmed; the rollback timer is stopped."

    assert unit.running["wlan guest ssid"] == "Netmiko Guest"
    assert unit.running["wlan guest state"] == "down"
    assert unit.pending is None
    assert [r.kind for r in unit.commit_log] == ["commit-confirmed", "confirm"]


async def test_netmiko_connect_handler_and_errors(served: ServedFleet) -> None:
    unit = parent(served)
    register()
    before = dict(unit.running)

    def session() -> tuple[str, str, str]:
        conn = ConnectHandler(**netmiko_params(served, unit))
        try:
            assert isinstance(conn, UspotSSH)
            with pytest.raises(ConfigInvalidException) as invalid:
                conn.send_config_set(["set wan mode foo"], exit_config_mode=False)
            conn.send_config_set(["set wan mode ipoe"], exit_config_mode=False)
            with pytest.raises(UspotCommitError) as refused:
                conn.commit()
            discarded = str(conn.send_command("discard"))
            return str(invalid.value), str(refused.value), discarded
        finally:
            conn.disconnect()

    invalid, refused, discarded = await asyncio.wait_for(asyncio.to_thread(session), 60)
    assert '% Invalid value for wan mode: "foo"' in invalid
    assert "% Commit failed: wan tunnel type is required when wan mode is ipoe" in refused
    assert discarded == "Candidate changes discarded."
    assert unit.running == before
    assert unit.commit_log == []


# ----- scrapli 2026 -------------------------------------------------------------------------
# libscrapli runs the session in its own threads and wakes asyncio through a poll fd, so the
# *_async API can share the event loop with the simulator. Both transports work on loopback:
# "ssh2" is libscrapli's libssh2 client, "bin" drives /usr/bin/ssh in a pty.
SCRAPLI_CASES = [
    pytest.param("ssh2", "password", id="ssh2-password"),
    pytest.param("ssh2", "key", id="ssh2-key"),
    pytest.param("bin", "key", id="bin-key"),
    pytest.param("bin", "password", id="bin-password"),
]


def scrapli_cli(served: ServedFleet, unit: Unit, transport: Transport, auth: str) -> Cli:
    return build_cli(
        served.fleet.address_of[unit.serial],
        port=served.ssh_port,
        password=served.fleet.password_of(unit.serial) if auth == "password" else None,
        private_key_path=client_key(served) if auth == "key" else None,
        known_hosts_path=known_hosts(served),
        transport=transport,
        operation_timeout_s=10,
    )


@pytest.mark.parametrize(("transport", "auth"), SCRAPLI_CASES)
async def test_scrapli_modes_commit_and_failure_indicators(
    served: ServedFleet, transport: Transport, auth: str
) -> None:
    unit = parent(served)
    before = dict(unit.running)
    cli = scrapli_cli(served, unit, transport, auth)
    await cli.open_async()
    try:
        status = await cli.send_input_async("show status")
        assert not status.failed
        assert f"serial: {unit.serial}" in status.result

        entered = await cli.enter_mode_async(CONFIGURATION)
        assert entered.result.rstrip().endswith(f"{unit.serial}(config)#")

        bad = await cli.send_input_async("set wan mode foo", requested_mode=CONFIGURATION)
        assert bad.failed
        assert '% Invalid value for wan mode: "foo"' in bad.result

        refused = await cli.send_inputs_async(
            ["set wan mode ipoe", "commit"], requested_mode=CONFIGURATION
        )
        assert refused.failed
        assert "% Commit failed: wan tunnel type is required" in refused.results[-1]
        await cli.send_input_async("discard", requested_mode=CONFIGURATION)

        applied = await cli.send_inputs_async(
            ['set wlan guest ssid "Scrapli Guest"', "commit confirmed 5"],
            requested_mode=CONFIGURATION,
        )
        assert not applied.failed, applied.results
        assert "it rolls back in 5 minutes" in applied.results[-1]
        assert unit.pending is not None

        # Without a requested mode scrapli goes back to the default mode ("exec") first.
        confirmed = await cli.send_input_async("confirm")
        assert not confirmed.failed
        assert "Commit confirmed" in confirmed.result

        again = await cli.send_input_async("confirm")
        assert again.failed
        assert "% Nothing to confirm" in again.result
    finally:
        await cli.close_async()

    assert unit.running["wlan guest ssid"] == "Scrapli Guest"
    assert unit.running["wan mode"] == before["wan mode"]
    assert unit.pending is None
    assert [r.kind for r in unit.commit_log] == ["commit-confirmed", "confirm"]


@pytest.mark.parametrize("transport", ["ssh2", "bin"])
async def test_scrapli_refuses_changed_host_key(served: ServedFleet, transport: Transport) -> None:
    unit = parent(served)
    unit.host_key_generation += 1
    cli = scrapli_cli(served, unit, transport, "key")
    with pytest.raises(OperationException, match=r"(?i)host key|known host"):
        await cli.open_async()
    assert served.ssh.sessions_served == 0
