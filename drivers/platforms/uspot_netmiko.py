"""netmiko 4.x connection class for U-SPOT units.

The CLI has no enable level; ``configure`` enters configuration mode (prompt
``US01SP000000(config)# ``), ``exit`` leaves it (prompt ``US01SP000000> ``). Changes are made
to a candidate and applied by ``commit`` or ``commit confirmed <minutes>``; ``confirm`` (in
either mode) keeps a pending confirmed commit. Every error line starts with ``% ``.

Use the class directly (``UspotSSH(host=..., port=..., username=..., password=...)``) or
call `register()` once and ``ConnectHandler(device_type="uspot", ...)``.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from netmiko.cisco_base_connection import CiscoBaseConnection
from netmiko.no_enable import NoEnable

DEVICE_TYPE = "uspot"
PROMPT_END = r"[>#]\s*$"  # the end of either prompt, at the end of what has been read
CONFIG_MARK = "(config)#"
EXEC_PROMPT_END = r">\s*$"
ERROR_PATTERN = r"^% .*$"  # with re.M: a line the unit printed as an error (all of it)
COMMIT_DONE = "Commit complete"
CONFIRM_DONE = "Commit confirmed"
MAX_CONFIRM_MINUTES = 60


class UspotCommitError(ValueError):
    """The unit refused a commit or a confirm; the message carries the unit's output."""


class UspotSSH(NoEnable, CiscoBaseConnection):
    """A U-SPOT unit over SSH (paramiko, interactive shell)."""

    def session_preparation(self) -> None:
        """Wait for the first prompt (after the banner), learn it, switch paging off."""
        self._test_channel_read(pattern=PROMPT_END)
        self.set_base_prompt(pri_prompt_terminator="#", alt_prompt_terminator=">")
        self.disable_paging(command="terminal length 0")
        self.clear_buffer()

    def check_config_mode(
        self, check_string: str = CONFIG_MARK, pattern: str = PROMPT_END, force_regex: bool = False
    ) -> bool:
        # Read up to the prompt instead of netmiko's default 2-second quiet-period wait.
        return super().check_config_mode(
            check_string=check_string, pattern=pattern, force_regex=force_regex
        )

    def config_mode(
        self, config_command: str = "configure", pattern: str = r"\(config\)#", re_flags: int = 0
    ) -> str:
        return super().config_mode(
            config_command=config_command, pattern=pattern, re_flags=re_flags
        )

    def exit_config_mode(self, exit_config: str = "exit", pattern: str = EXEC_PROMPT_END) -> str:
        return super().exit_config_mode(exit_config=exit_config, pattern=pattern)

    def send_config_set(
        self,
        config_commands: str | Sequence[str] | Iterator[str] | TextIO | None = None,
        *,
        error_pattern: str = ERROR_PATTERN,
        **kwargs: Any,
    ) -> str:
        """As netmiko's, but a ``% `` error line raises `ConfigInvalidException` by default.

        The candidate then holds the commands before the failing one: ``discard`` it, or
        fix and send again.
        """
        return super().send_config_set(config_commands, error_pattern=error_pattern, **kwargs)

    def cleanup(self, command: str = "exit") -> None:
        """Say goodbye without waiting for an answer.

        netmiko's default first checks for configuration mode, which waits for a prompt (up
        to the read timeout on a slow or stuck unit). Closing the channel ends the CLI
        session in either mode and drops any uncommitted candidate, so there is nothing to
        wait for.
        """
        with contextlib.suppress(Exception):
            self.write_channel(command + self.RETURN)

    def commit(self, confirm_minutes: int | None = None, read_timeout: float = 120.0) -> str:
        """Apply the candidate: ``commit``, or ``commit confirmed <minutes>`` if given.

        Enters configuration mode if needed and stays there. Raises `UspotCommitError` with
        the unit's output when the commit is refused.
        """
        if confirm_minutes is None:
            command = "commit"
        elif 1 <= confirm_minutes <= MAX_CONFIRM_MINUTES:
            command = f"commit confirmed {confirm_minutes}"
        else:
            raise ValueError(
                f"confirm_minutes {confirm_minutes}: the unit takes 1 to {MAX_CONFIRM_MINUTES}"
            )
        output = self.config_mode()
        output += self._send_command_str(
            command,
            expect_string=PROMPT_END,
            strip_prompt=False,
            strip_command=False,
            read_timeout=read_timeout,
        )
        if COMMIT_DONE not in output or re.search(ERROR_PATTERN, output, flags=re.M):
            raise UspotCommitError(f"commit failed:\n{output}")
        return output

    def confirm_commit(self, read_timeout: float = 30.0) -> str:
        """Keep the pending ``commit confirmed`` (stop its rollback timer)."""
        output = self._send_command_str(
            "confirm",
            expect_string=PROMPT_END,
            strip_prompt=False,
            strip_command=False,
            read_timeout=read_timeout,
        )
        if CONFIRM_DONE not in output:
            raise UspotCommitError(f"confirm failed:\n{output}")
        return output


def register(device_type: str = DEVICE_TYPE) -> None:
    """Make ``ConnectHandler(device_type="uspot")`` (and ``"uspot_ssh"``) build a `UspotSSH`."""
    # `from netmiko import ssh_dispatcher` would get the function of that name, not the module.
    dispatcher = importlib.import_module("netmiko.ssh_dispatcher")
    for name in (device_type, f"{device_type}_ssh"):
        dispatcher.CLASS_MAPPER[name] = UspotSSH
        if name not in dispatcher.platforms:
            dispatcher.platforms.append(name)
            dispatcher.platforms.sort()
