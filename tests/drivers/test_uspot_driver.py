"""`UspotDriver` over a scripted transport (a plain fake): what it sends and how it reacts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from drivers.base import CONFIGURATION, Change, Mode, Shell, UnitTarget
from drivers.uspot_driver import UspotDriver
from inventory.errors import CommandFailed, GarbledAnswer
from tests.drivers.test_uspot_platform import (
    SHOW_LAMPS,
    SHOW_RUNNING,
    SHOW_STATUS,
    SHOW_STATUS_CHILD,
    SHOW_WAN_V4,
    SHOW_WLAN,
)

TARGET = UnitTarget("US01BJH00022", "192.0.2.10", password="pw")


class FakeTransport:
    """Answers commands from a script; records what was sent, in which mode."""

    name = "fake"
    seen_host_key = "ssh-ed25519 AAAAfake"

    def __init__(self, answer: Callable[[str], str]) -> None:
        self.answer = answer
        self.sent: list[tuple[str, Mode | None]] = []
        self.opened = self.closed = 0

    async def open(self) -> None:
        self.opened += 1

    async def close(self) -> None:
        self.closed += 1

    async def send(
        self, command: str, *, mode: Mode | None = None, timeout_s: float | None = None
    ) -> str:
        self.sent.append((command, mode))
        return self.answer(command)

    async def open_shell(self, *, term_type: str, columns: int, rows: int) -> Shell:
        raise NotImplementedError


def unit_answers(status: str = SHOW_STATUS) -> Callable[[str], str]:
    outputs = {
        "show status": status,
        "show wan": SHOW_WAN_V4,
        "show wlan": SHOW_WLAN,
        "show lamps": SHOW_LAMPS,
        "show running-config": SHOW_RUNNING,
        "commit confirmed 5": "Commit complete; it rolls back in 5 minutes unless confirmed.",
        "confirm": "Commit confirmed; the rollback timer is stopped.",
        "discard": "Candidate changes discarded.",
    }

    def answer(command: str) -> str:
        if command.startswith("set wlan guest passphrase"):
            return (
                "% Invalid value for wlan guest passphrase: the passphrase is 5 characters; "
                "a passphrase is 8 to 63 printable ASCII characters or 64 hex digits"
            )
        if command.startswith(("set ", "delete ")):
            return ""
        return outputs.get(command, f'% Unknown command: "{command}"')

    return answer


async def test_read_state_of_a_parent_asks_for_the_wan() -> None:
    fake = FakeTransport(unit_answers())
    async with UspotDriver(TARGET, fake) as driver:
        state = await driver.read_state()
    assert [c for c, _ in fake.sent] == [
        "show status",
        "show wan",
        "show wlan",
        "show lamps",
        "show running-config",
    ]
    assert (fake.opened, fake.closed) == (1, 1)
    assert state.wan is not None and state.wan.mode == "pppoe"
    assert driver.seen_host_key == "ssh-ed25519 AAAAfake"


async def test_read_state_of_a_child_does_not() -> None:
    fake = FakeTransport(unit_answers(SHOW_STATUS_CHILD))
    async with UspotDriver(TARGET, fake) as driver:
        state = await driver.read_state()
    assert "show wan" not in [c for c, _ in fake.sent]
    assert state.wan is None


async def test_stage_sends_set_and_delete_in_configuration_mode() -> None:
    fake = FakeTransport(unit_answers())
    async with UspotDriver(TARGET, fake) as driver:
        await driver.stage(Change({"wlan guest ssid": "Cafe Free", "wlan guest state": None}))
        await driver.commit_confirmed(5)
        await driver.confirm()
    assert fake.sent == [
        ('set wlan guest ssid "Cafe Free"', CONFIGURATION),
        ("delete wlan guest state", CONFIGURATION),
        ("commit confirmed 5", CONFIGURATION),
        ("confirm", None),
    ]


async def test_a_refused_value_discards_the_candidate_and_hides_the_secret() -> None:
    fake = FakeTransport(unit_answers())
    async with UspotDriver(TARGET, fake) as driver:
        with pytest.raises(CommandFailed) as refused:
            await driver.stage(Change({"wlan guest ssid": "X", "wlan guest passphrase": "short"}))
    assert [c for c, _ in fake.sent][-1] == "discard"
    assert refused.value.command == "set wlan guest passphrase ********"
    assert "short" not in str(refused.value).replace("is 5 characters", "")


async def test_an_unexpected_answer_to_a_commit_is_a_failure() -> None:
    fake = FakeTransport(lambda command: "Something else entirely.")
    async with UspotDriver(TARGET, fake) as driver:
        with pytest.raises(CommandFailed, match="unexpected answer"):
            await driver.commit()


async def test_commit_confirmed_minutes_are_checked_before_anything_is_sent() -> None:
    fake = FakeTransport(unit_answers())
    async with UspotDriver(TARGET, fake) as driver:
        with pytest.raises(ValueError):
            await driver.commit_confirmed(90)
    assert fake.sent == []


# ----- the text a transport hands back ------------------------------------------------------
def test_prompt_tracker_follows_the_mode_and_splits_the_answer() -> None:
    from drivers.transport import PromptTracker
    from drivers.uspot_driver import PROFILE

    tracker = PromptTracker(PROFILE)
    assert tracker.split("no prompt yet\n") is None
    assert tracker.switch_command(CONFIGURATION) == "configure"
    assert tracker.split("US01SP000000(config)# ") == ("", "US01SP000000(config)# ")
    assert tracker.mode == CONFIGURATION
    assert tracker.switch_command(CONFIGURATION) is None
    assert tracker.switch_command("exec") == "exit"
    assert tracker.split("POWER: on\r\nUS01SP000000> ") == ("POWER: on", "US01SP000000> ")
    assert tracker.mode == "exec"


def test_strip_echo() -> None:
    from drivers.transport import strip_echo

    assert strip_echo("show lamps\nPOWER: on", "show lamps") == "POWER: on"
    assert strip_echo("US01SP000000> show lamps\nPOWER: on", "show lamps") == "POWER: on"
    assert strip_echo("POWER: on\nWAN: on", "show lamps") == "POWER: on\nWAN: on"


async def test_an_answer_cut_short_is_a_unit_error_read_again_later() -> None:
    # the first lines of "show status" lost, as on a line that drops characters
    cut = "\n".join(SHOW_STATUS.splitlines()[-2:])
    async with UspotDriver(TARGET, FakeTransport(unit_answers(status=cut))) as driver:
        with pytest.raises(GarbledAnswer) as caught:
            await driver.read_state()
    assert caught.value.retryable and caught.value.serial == TARGET.serial
    assert "the answer to 'show status' could not be read: missing fields" in str(caught.value)
