"""Transports move text: send one command, return its answer up to the next prompt.

A transport knows nothing of what the commands mean. It is built for one unit from a
`UnitTarget` and a `CliProfile` (the platform's prompts and mode commands, plus the names of
the scrapli definition and the netmiko class that speak it), keeps one interactive CLI
session open between `open()` and `close()`, and maps its library's exceptions to the error
tree once, in its own module. Transports are registered as entry points (see
`drivers.registry`): asyncssh (the default), scrapli and netmiko.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from drivers.base import CONFIGURATION, EXEC, Mode, Shell, UnitTarget


@dataclass(frozen=True)
class CliProfile:
    """How a platform's CLI looks to a transport. Data only.

    ``prompt`` must match the prompt at the very end of what was read, from the start of its
    line (``^`` or a newline, then no other newline), with the last prompt in a group named
    ``prompt``; a last prompt that contains ``config_mark`` means configuration mode.
    ``scrapli_definition`` and ``netmiko_class`` are ``"module:attribute"`` names, imported
    only by the transport that needs them.
    """

    name: str
    prompt: re.Pattern[str]
    config_mark: str
    enter_config: str
    exit_config: str
    scrapli_definition: str | None = None  # a callable returning scrapli's LoadedDefinition
    netmiko_class: str | None = None  # a netmiko BaseConnection subclass


def resolve(name: str) -> Any:
    """``"package.module:attribute"`` -> the attribute."""
    module, _, attribute = name.partition(":")
    return getattr(import_module(module), attribute)


@runtime_checkable
class Transport(Protocol):
    """One interactive CLI session to one unit."""

    name: str

    @property
    def seen_host_key(self) -> str | None: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def send(
        self, command: str, *, mode: Mode | None = None, timeout_s: float | None = None
    ) -> str:
        """Run `command` in `mode` (None: whichever the session is in) and return its answer:
        newline-separated lines, without the echoed command or the prompt that follows."""
        ...

    async def open_shell(self, *, term_type: str, columns: int, rows: int) -> Shell: ...


TransportFactory = Callable[[UnitTarget, CliProfile], Transport]


class PromptTracker:
    """Mode bookkeeping shared by the transports that read raw text up to a prompt."""

    def __init__(self, profile: CliProfile) -> None:
        self.profile = profile
        self.mode: Mode = EXEC

    def switch_command(self, wanted: Mode | None) -> str | None:
        """The command to send first so that the next one runs in `wanted` mode, if any."""
        if wanted is None or wanted == self.mode:
            return None
        return self.profile.enter_config if wanted == CONFIGURATION else self.profile.exit_config

    def split(self, text: str) -> tuple[str, str] | None:
        """(answer, prompt) when `text` ends with a prompt; notes the mode it shows."""
        text = text.replace("\r\n", "\n").replace("\r", "")
        # a prompt starts its line and ends the text: the last line is all there is to search
        match = self.profile.prompt.search(text, max(0, text.rfind("\n")))
        if match is None:
            return None
        prompt = match.group("prompt")
        self.mode = CONFIGURATION if self.profile.config_mark in prompt else EXEC
        return text[: match.start()], prompt


def strip_echo(answer: str, command: str) -> str:
    """Drop the echoed command line a PTY session sends back before the answer (a prompt
    left over from the session's start may precede the echo on that line)."""
    first, _, rest = answer.partition("\n")
    if first.rstrip().endswith(command.strip()):
        return rest
    return answer


# ----- host keys ---------------------------------------------------------------------------
def openssh_key(algorithm: str, blob: bytes) -> str:
    """``<algorithm> <base64>``: the OpenSSH public form, comment-less (what is pinned)."""
    return f"{algorithm} {base64.b64encode(blob).decode()}"


def normalise_key(text: str) -> str:
    """A pinned key as ``<algorithm> <base64>`` (comments and host fields dropped)."""
    words = text.split()
    for i, word in enumerate(words[:-1]):
        if word.startswith(("ssh-", "ecdsa-", "sk-")):
            return f"{word} {words[i + 1]}"
    raise ValueError(f"not an OpenSSH public key: {text[:40]!r}")


def known_hosts_line(address: str, port: int, key: str) -> str:
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {normalise_key(key)}\n"


class KnownHostsFile:
    """A private known_hosts file holding one unit's key, for clients that read only files
    (libssh2 under scrapli, paramiko under netmiko). Removed by `remove()`."""

    def __init__(self, address: str, port: int, key: str) -> None:
        fd, name = tempfile.mkstemp(prefix="fleetd-known-hosts-")
        self.path = Path(name)
        with os.fdopen(fd, "w") as fh:
            fh.write(known_hosts_line(address, port, key))

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
