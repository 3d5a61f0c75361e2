"""The U-SPOT platform module: parsers and commands, against outputs from docs/unit-contract.md."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from drivers import uspot
from drivers.base import Change, DiffLine
from inventory.errors import CommandFailed, RuleViolation

# ----- literal outputs (docs/unit-contract.md) ---------------------------------------------
SHOW_STATUS = """\
serial: US01BJH00022
role: parent
model: U-SPOT_01
firmware: 3.2.1
parent: -
link-item: no
uptime: 0
account: active
internet: up
commit-pending: no
commits: 0"""

SHOW_STATUS_CHILD = """\
serial: US01SC000000
role: child
model: U-SPOT_01
firmware: 3.2.1
parent: US01SP000000
link-item: no
uptime: 31
account: active
internet: n/a
commit-pending: no
commits: 0"""

SHOW_STATUS_PENDING = SHOW_STATUS.replace(
    "commit-pending: no", "commit-pending: yes (rollback in 300 s)"
)

SHOW_WAN_V4 = """\
mode: pppoe
pppoe-username: u@isp
tunnel: -
tunnel-state: n/a
tunnel-reason: -
ipv4-address: 100.72.225.234
ipv6-address: -
internet: up"""

SHOW_WAN_V6_DOWN = """\
mode: ipoe
pppoe-username: u@isp
tunnel: ds-lite
tunnel-state: down
tunnel-reason: the line offers map-e, not ds-lite
ipv4-address: -
ipv6-address: 2001:db8:8000::ed18:ec15
internet: down"""

SHOW_WLAN = """\
wlan business
  ssid: "Cafe Biz"
  state: up
  security: wpa2-psk
  passphrase-fingerprint: aa832b85a3b58c82
wlan guest
  ssid: "Cafe Free"
  state: up
  security: wpa2-psk
  passphrase-fingerprint: -"""

SHOW_LAMPS = "POWER: on\nWAN: on\nU: off"

SHOW_RUNNING = """\
set wan mode pppoe
set wan pppoe username u@isp
set wan pppoe password ********
set wlan business ssid "Cafe Biz"
set wlan business passphrase ********
set wlan guest ssid "Cafe Free\""""

SHOW_DIFF = """\
- set wlan guest ssid "Cafe Free"
+ set wlan guest ssid "Cafe \\"Free\\" Wi-Fi"
+ set wlan guest passphrase ********"""

SHOW_HISTORY = """\
1 2027-01-15T08:00:00Z commit admin wan.mode,wan.tunnel.aftr,wan.tunnel.type
2 2027-01-15T08:00:00Z commit admin -
3 2027-01-15T08:00:00Z commit-confirmed admin wlan.guest.state
4 2027-01-15T08:01:00Z auto-rollback system wlan.guest.state"""


# ----- parsers ------------------------------------------------------------------------------
def test_status_of_a_parent() -> None:
    status = uspot.parse_status(SHOW_STATUS)
    assert status == uspot.Status(
        serial="US01BJH00022",
        role="parent",
        firmware="3.2.1",
        parent=None,
        link_item=False,
        uptime=0,
        account="active",
        internet=True,
        commit_pending=False,
        rollback_in=None,
        commits=0,
    )


def test_status_of_a_child_and_a_pending_commit() -> None:
    child = uspot.parse_status(SHOW_STATUS_CHILD)
    assert (child.role, child.parent, child.internet, child.uptime) == (
        "child",
        "US01SP000000",
        None,
        31,
    )
    pending = uspot.parse_status(SHOW_STATUS_PENDING)
    assert (pending.commit_pending, pending.rollback_in) == (True, 300)


def test_wan_in_v4_and_v6() -> None:
    v4 = uspot.parse_wan(SHOW_WAN_V4)
    assert (v4.mode, v4.tunnel, v4.tunnel_state, v4.tunnel_reason) == ("pppoe", None, None, None)
    assert (v4.ipv4, v4.ipv6, v4.pppoe_username) == ("100.72.225.234", None, "u@isp")
    v6 = uspot.parse_wan(SHOW_WAN_V6_DOWN)
    assert (v6.mode, v6.tunnel, v6.tunnel_state) == ("ipoe", "ds-lite", "down")
    assert v6.tunnel_reason == "the line offers map-e, not ds-lite"
    assert (v6.ipv4, v6.ipv6) == (None, "2001:db8:8000::ed18:ec15")


def test_wlan_blocks_unquote_the_ssids() -> None:
    wlan = uspot.parse_wlan(SHOW_WLAN)
    assert wlan["business"].ssid == "Cafe Biz"
    assert wlan["business"].passphrase_fingerprint == "aa832b85a3b58c82"
    assert wlan["guest"].ssid == "Cafe Free"
    assert wlan["guest"].passphrase_fingerprint is None
    assert wlan["guest"].state == "up"


def test_lamps() -> None:
    assert uspot.parse_lamps(SHOW_LAMPS) == {"POWER": "on", "WAN": "on", "U": "off"}


def test_running_config_keeps_masks_and_unquotes() -> None:
    assert uspot.parse_config(SHOW_RUNNING) == {
        "wan mode": "pppoe",
        "wan pppoe username": "u@isp",
        "wan pppoe password": "********",
        "wlan business ssid": "Cafe Biz",
        "wlan business passphrase": "********",
        "wlan guest ssid": "Cafe Free",
    }
    assert uspot.parse_config("") == {}


def test_diff_lines_and_no_changes() -> None:
    assert uspot.parse_diff(SHOW_DIFF) == [
        DiffLine("-", "wlan guest ssid", "Cafe Free"),
        DiffLine("+", "wlan guest ssid", 'Cafe "Free" Wi-Fi'),
        DiffLine("+", "wlan guest passphrase", "********"),
    ]
    assert uspot.parse_diff("no changes") == []


def test_commit_history() -> None:
    history = uspot.parse_history(SHOW_HISTORY)
    assert [e.seq for e in history] == [1, 2, 3, 4]
    assert history[0].paths == ("wan mode", "wan tunnel aftr", "wan tunnel type")
    assert history[1].paths == ()
    assert history[3].kind == "auto-rollback"
    assert history[3].user == "system"
    assert history[3].at == datetime(2027, 1, 15, 8, 1, tzinfo=UTC)
    assert uspot.parse_history("no commits") == []


def test_state_from_the_pieces() -> None:
    read_at = datetime(2027, 1, 15, tzinfo=UTC)
    state = uspot.build_state(
        uspot.parse_status(SHOW_STATUS),
        uspot.parse_wan(SHOW_WAN_V4),
        uspot.parse_wlan(SHOW_WLAN),
        uspot.parse_lamps(SHOW_LAMPS),
        uspot.parse_config(SHOW_RUNNING),
        read_at,
    )
    assert (state.serial, state.internet, state.v6_up, state.source) == (
        "US01BJH00022",
        True,
        False,
        "ssh",
    )
    assert state.read_at == read_at


def test_garbage_is_a_parse_error() -> None:
    with pytest.raises(uspot.ParseError):
        uspot.parse_status("serial US01")
    with pytest.raises(uspot.ParseError):
        uspot.parse_status("serial: US01SP000000")  # fields missing
    with pytest.raises(uspot.ParseError):
        uspot.parse_wlan("wlan business\n  ssid: x")  # no guest block
    with pytest.raises(uspot.ParseError):
        uspot.parse_config("show running-config")


# ----- prompts ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "prompt"),
    [
        ("serial: x\nUS01SP000000> ", "US01SP000000> "),
        ("US01BJH00022(config)# ", "US01BJH00022(config)# "),
        ("banner\r\nUS01SP000000> ", "US01SP000000> "),
        # two returns typed ahead: both echoed first, then two prompts on one line
        ("US01SP000000> \r\n\r\nUS01SP000000> US01SP000000> ", "US01SP000000> "),
        ("x\nUS01SP000000> US01SP000000(config)# ", "US01SP000000(config)# "),
    ],
)
def test_prompt_at_the_end(text: str, prompt: str) -> None:
    match = uspot.PROMPT.search(text.replace("\r", ""))
    assert match is not None
    assert match.group("prompt") == prompt


def test_the_scrapli_definition_accepts_the_same_prompt_lines() -> None:
    import re

    import yaml  # type: ignore[import-untyped]

    from drivers.platforms.scrapli import definition_text

    definition = yaml.safe_load(definition_text())
    overall = re.compile(definition["prompt_pattern"], re.M)
    modes = {m["name"]: re.compile(m["prompt_pattern"], re.M) for m in definition["modes"]}
    for line, mode in [
        ("US01SP000000> ", "exec"),
        ("US01SP000000> US01SP000000> ", "exec"),
        ("US01SP000000(config)# ", "configuration"),
        ("US01SP000000(config)# US01SP000000(config)# ", "configuration"),
    ]:
        assert overall.search(f"output\n{line}")
        assert modes[mode].search(f"output\n{line}")
        assert not modes["configuration" if mode == "exec" else "exec"].search(line)
    assert not overall.search("  ssid: US01SP000000> x")


@pytest.mark.parametrize(
    "text", ["US01SP000000> \nmore", "  ssid: US01SP000000> x", "USPOT> ", "US01SP000000>\nx"]
)
def test_no_prompt_in_the_middle(text: str) -> None:
    assert uspot.PROMPT.search(text) is None


# ----- commands -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "word"),
    [
        ("USPOT_FREE_Wi-Fi", "USPOT_FREE_Wi-Fi"),
        ("Cafe Biz", '"Cafe Biz"'),
        ('Cafe "Free" Wi-Fi', '"Cafe \\"Free\\" Wi-Fi"'),
        ("back\\slash", '"back\\\\slash"'),
        ("a;b", '"a;b"'),
        ("カフェ木村", "カフェ木村"),
        ("", '""'),
    ],
)
def test_values_are_quoted_as_the_unit_prints_them(value: str, word: str) -> None:
    assert uspot.quote(value) == word
    assert uspot.tokenize(f"set wlan guest ssid {word}") == ["set", "wlan", "guest", "ssid", value]


def test_stage_commands_set_and_delete() -> None:
    change = Change(
        {"wlan guest ssid": "Cafe Free", "wan tunnel": None, "account state": "stopped"}
    )
    assert uspot.stage_commands(change) == [
        'set wlan guest ssid "Cafe Free"',
        "delete wan tunnel",
        "set account state stopped",
    ]


@pytest.mark.parametrize(
    ("path", "value"),
    [("wlan guest ssid", "two\nlines"), ("wlan guest ssid\nconfigure", "x"), ("WLAN guest", "x")],
)
def test_values_and_paths_cannot_break_out_of_one_line(path: str, value: str) -> None:
    with pytest.raises(RuleViolation):
        uspot.stage_commands(Change({path: value}))


def test_a_refused_secret_is_not_repeated_by_the_rule_violation() -> None:
    with pytest.raises(RuleViolation) as refused:
        uspot.set_command("wlan guest passphrase", "secret\x07bell")
    assert "secret" not in str(refused.value)


def test_commit_confirmed_minutes_are_checked_before_sending() -> None:
    assert uspot.commit_confirmed_command(5) == "commit confirmed 5"
    for minutes in (0, 61):
        with pytest.raises(ValueError, match="1 to 60"):
            uspot.commit_confirmed_command(minutes)


# ----- errors -------------------------------------------------------------------------------
def test_error_lines_become_command_failed_with_secrets_masked() -> None:
    command = 'set wlan guest passphrase "s3cret pass"'
    answer = '% Unknown command: "set wlan guest passphrase s3cret pass"'
    with pytest.raises(CommandFailed) as refused:
        uspot.raise_for_error("US01SP000000", command, answer, ["s3cret pass"])
    error = refused.value
    assert error.command == "set wlan guest passphrase ********"
    assert "s3cret" not in error.answer
    assert "s3cret" not in str(error)
    assert error.serial == "US01SP000000"


def test_a_quiet_answer_is_no_error() -> None:
    uspot.raise_for_error("US01SP000000", "set wlan guest ssid x", "")
    uspot.raise_for_error("US01SP000000", "show status", SHOW_STATUS)


def test_expect_checks_the_success_text() -> None:
    done = "Commit complete; it rolls back in 5 minutes unless confirmed."
    uspot.expect("US01SP000000", "commit confirmed 5", done, uspot.COMMIT_DONE)
    with pytest.raises(CommandFailed, match="unexpected answer"):
        uspot.expect("US01SP000000", "confirm", "what?", uspot.CONFIRM_DONE)
    with pytest.raises(CommandFailed, match="Nothing to confirm"):
        uspot.expect(
            "US01SP000000",
            "confirm",
            "% Nothing to confirm: no commit confirmed is pending",
            uspot.CONFIRM_DONE,
        )


def test_secret_paths_are_masked_by_the_generic_rule_too() -> None:
    from drivers.base import is_secret_path

    assert all(is_secret_path(p) for p in uspot.SECRET_PATHS)
    assert not is_secret_path("wlan guest ssid")


@pytest.mark.parametrize(
    "line",
    [
        'wlan guest ssid "Cafe \\"Blue\\" Bird"',
        "wlan  guest\tpassphrase   x",
        "set wlan business ssid Shop\u3000Wi-Fi",  # an ideographic space is not a blank
        "   ",
        "plain words only",
    ],
)
def test_lines_split_as_the_unit_splits_them(line: str) -> None:
    # the unit's rule, character by character: blanks and tabs separate, quotes group
    words, word, i, quoted = [], None, 0, False
    while i < len(line):
        c = line[i]
        if quoted and c == "\\":
            word = (word or "") + line[i + 1]
            i += 2
            continue
        if c == '"':
            quoted = not quoted
            word = word or ""
        elif c in " \t" and not quoted:
            if word is not None:
                words.append(word)
            word = None
        else:
            word = (word or "") + c
        i += 1
    if word is not None:
        words.append(word)
    assert uspot.tokenize(line) == words
