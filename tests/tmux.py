"""A real terminal for the tests that drive OpenSSH's `ssh` interactively: a private tmux
server (its own socket) running one window."""

from __future__ import annotations

import asyncio
from pathlib import Path

TIMEOUT = 15.0


class Tmux:
    def __init__(self, socket: Path, window: str) -> None:
        self.socket = socket
        self.window = window

    async def run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            "tmux", "-S", str(self.socket), *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        assert proc.returncode == 0, err.decode()
        return out.decode()

    async def screen(self) -> str:
        return await self.run("capture-pane", "-p", "-t", self.window)

    async def wait_for(self, *texts: str) -> str:
        """Poll the screen until one of `texts` shows; return the screen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while True:
            screen = await self.screen()
            if any(t in screen for t in texts):
                return screen
            if loop.time() > deadline:
                raise AssertionError(f"none of {texts!r} on the screen:\n{screen}")
            await asyncio.sleep(0.05)
