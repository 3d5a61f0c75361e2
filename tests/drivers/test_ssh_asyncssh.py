"""The asyncssh transport's own ways, against the simulated fleet."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import asyncssh
import pytest

from drivers import load_driver
from drivers.base import UnitTarget
from drivers.ssh_asyncssh import AsyncsshTransport, _CliSession, asyncssh_errors
from drivers.uspot_driver import PROFILE
from inventory.errors import Unreachable
from simulators.server import ServedFleet
from tests.drivers.conftest import first, target_for

BASE = "127.42.0.1"


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, counting the client connection options prepared in it
    (the simulated units' server side, in this process, prepares its own there too)."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "func", None) is asyncssh.SSHClientConnectionOptions:
            self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def plain_client(target: UnitTarget) -> AbstractAsyncContextManager[asyncssh.SSHClientConnection]:
    """A session as any other asyncssh client opens one: none of this transport's ways."""
    return asyncssh.connect(
        target.address,
        target.ssh_port,
        username=target.username,
        password=target.password,
        known_hosts=None,
        config=None,
        agent_path=None,
    )


@pytest.fixture
def executor() -> Iterator[CountingExecutor]:
    counting = CountingExecutor()
    yield counting
    counting.shutdown(wait=True)


async def test_a_session_opens_without_a_worker_thread(
    served: ServedFleet, executor: CountingExecutor
) -> None:
    # hundreds of sessions open at once in a bulk run: a thread round trip per connection
    # (asyncssh prepares its options in the default executor) costs the daemon more CPU
    # than the preparation itself; the transport's options read no file
    asyncio.get_running_loop().set_default_executor(executor)
    unit = first(served)
    async with load_driver(target_for(served, unit), "asyncssh") as driver:
        state = await driver.read_state()
    assert state.serial == unit.serial
    assert executor.submitted == 0


async def test_other_asyncssh_clients_keep_their_worker_thread(
    served: ServedFleet, executor: CountingExecutor
) -> None:
    asyncio.get_running_loop().set_default_executor(executor)
    unit = first(served)
    target = target_for(served, unit)
    async with plain_client(target) as conn:
        assert conn.get_server_host_key() is not None
    assert executor.submitted == 1


async def test_asyncssh_still_logs_what_its_enabled_levels_ask_for(
    served: ServedFleet, caplog: pytest.LogCaptureFixture
) -> None:
    unit = first(served)
    target = target_for(served, unit)
    with caplog.at_level(logging.INFO, logger="asyncssh"):
        async with load_driver(target, "asyncssh") as driver:
            await driver.read_state()
    opened = [r.getMessage() for r in caplog.records if r.name.startswith("asyncssh")]
    # its arguments turned into text as asyncssh does: (host, port) as "host, port N"
    assert any(f"{target.address}, port {target.ssh_port}" in line for line in opened), opened
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="asyncssh"):
        async with load_driver(target, "asyncssh") as driver:
            await driver.read_state()
    assert not [r for r in caplog.records if r.name.startswith("asyncssh")]


@pytest.fixture
def packet_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """asyncssh's packet log (debug level 3), both ends of each session in this process."""
    asyncssh.set_debug_level(3)
    try:
        with caplog.at_level(logging.DEBUG, logger="asyncssh"):
            yield caplog
    finally:
        asyncssh.set_debug_level(1)


def _lines(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if word in r.getMessage()]


async def test_a_session_sends_no_padding_packets_and_logs_in_with_one_request(
    served: ServedFleet, packet_log: pytest.LogCaptureFixture
) -> None:
    # asyncssh puts an empty SSH_MSG_IGNORE before every encrypted packet (a CBC defence;
    # the units offer no CBC cipher): neither this transport nor a simulated unit sends them
    unit = first(served)
    async with load_driver(target_for(served, unit), "asyncssh") as driver:
        state = await driver.read_state()
    assert state.serial == unit.serial
    assert _lines(packet_log, "MSG_CHANNEL_DATA"), "the packet log shows packets at level 3"
    assert not _lines(packet_log, "MSG_IGNORE")
    # the password in one request, not keyboard-interactive's prompt and answer
    assert _lines(packet_log, "Trying password auth")
    assert not _lines(packet_log, "Trying keyboard-interactive auth")


async def test_other_asyncssh_clients_still_pad_their_packets(
    served: ServedFleet, packet_log: pytest.LogCaptureFixture
) -> None:
    target = target_for(served, first(served))
    async with plain_client(target) as conn:
        await conn.run("show status")
    assert _lines(packet_log, "Sent MSG_IGNORE")
    assert _lines(packet_log, "Received MSG_IGNORE")  # the unit's end, in this process
    assert len(_lines(packet_log, "Sent MSG_IGNORE")) == len(
        _lines(packet_log, "Received MSG_IGNORE")
    ), "the simulated unit sends none of its own"


# ----- the CLI channel's receiving end, packet by packet ------------------------------------
def _cli() -> _CliSession:
    return _CliSession(PROFILE)


async def test_an_answer_cut_across_packets_ends_at_its_prompt() -> None:
    cli = _cli()
    waiting = asyncio.ensure_future(cli.answer(5))
    for packet in ("wlan guest ssid Cafe\nUS01", "SP000000", "# "):
        await asyncio.sleep(0)
        assert not waiting.done(), "no prompt yet: the answer is not complete"
        cli.data_received(packet, None)
    assert await waiting == "wlan guest ssid Cafe\nUS01SP000000# "


async def test_what_comes_before_anyone_asks_is_kept_and_the_rest_waits_its_turn() -> None:
    cli = _cli()
    cli.data_received("U-SPOT console\nUS01SP000000> ok\nUS01SP000000> partial", None)
    cli.data_received("x", 1)  # stderr is not part of an answer
    # the text ends mid-line, so the prompt seen inside it does not end an answer
    waiting = asyncio.ensure_future(cli.answer(5))
    await asyncio.sleep(0)
    assert not waiting.done()
    cli.data_received(" more\nUS01SP000000(config)# ", None)
    answer = await waiting
    assert answer.startswith("U-SPOT console\n") and answer.endswith("(config)# ")
    assert answer.count("US01SP000000") == 3


async def test_a_prompt_on_a_line_of_its_own_ends_the_answer_even_after_a_long_one() -> None:
    cli = _cli()
    running = "".join(f"set wlan guest option{i} value{i}\n" for i in range(400))
    cli.data_received(running + "US01SP000000# ", None)
    assert await cli.answer(5) == running + "US01SP000000# "
    cli.data_received("no newline and a prompt-like word US01SP000000# ", None)
    with pytest.raises(TimeoutError):
        await cli.answer(0.01)


async def test_a_session_that_ends_mid_answer_fails_every_wait_after_it() -> None:
    cli = _cli()
    waiting = asyncio.ensure_future(cli.answer(5))
    await asyncio.sleep(0)
    cli.data_received("half an ans", None)
    cli.connection_lost(None)
    with pytest.raises(asyncio.IncompleteReadError):
        await waiting
    with pytest.raises(asyncio.IncompleteReadError):
        await cli.answer(5)
    with pytest.raises(Unreachable), asyncssh_errors("US01SP000000", "read"):
        await cli.answer(5)


def test_user_names_are_prepared_as_rfc_4013_says() -> None:
    from asyncssh.saslprep import SASLPrepError, saslprep

    from drivers.ssh_asyncssh import _saslprep_ascii_as_is as prepared

    ascii_printable = "".join(chr(c) for c in range(0x20, 0x7F))
    assert prepared(ascii_printable) == saslprep(ascii_printable) == ascii_printable
    assert prepared("") == saslprep("") == ""
    wide = "\uff41\uff44\uff4d\uff49\uff4e\u00ad"  # full-width "admin", a soft hyphen
    assert prepared(wide) == saslprep(wide) == "admin"
    for refused in ("ad\x00min", "admin\x7f", "ad\tmin"):
        with pytest.raises(SASLPrepError):
            prepared(refused)


async def test_a_closed_session_is_freed_without_the_garbage_collector(
    served: ServedFleet,
) -> None:
    # asyncssh's connection refers to itself (its packet reader); left so, every session
    # closed waits for a full collection, which walks every session still open
    driver = load_driver(target_for(served, first(served)), "asyncssh")
    gc.disable()
    try:
        async with driver:
            transport = getattr(driver, "transport", None)
            assert isinstance(transport, AsyncsshTransport) and transport._conn is not None
            conn = weakref.ref(transport._conn)
            await driver.read_state()
        for _ in range(3):  # the socket's own callbacks, run on the next turns of the loop
            await asyncio.sleep(0)
        assert conn() is None
    finally:
        gc.enable()
