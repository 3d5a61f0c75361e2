"""The unit's behaviour, driven through its CLI with a clock the test moves."""

from __future__ import annotations

import pytest

from simulators.clock import ManualClock
from simulators.shell import Session, run_script, split_commands
from simulators.unit import Line, Unit, fingerprint

DSLITE = {"type": "ds-lite", "aftr": "2001:db8:1a::1"}
V4 = {
    "wan mode": "pppoe",
    "wan pppoe username": "u138301482@uspot.example",
    "wan pppoe password": "ppp-secret-1",
    "wlan business ssid": "Cafe Biz",
    "wlan business passphrase": "business-pass-1",
    "wlan guest ssid": "Cafe Free",
    "wlan guest passphrase": "guest-pass-1",
}
CUTOVER = [
    "configure",
    "set wan mode ipoe",
    "set wan tunnel type ds-lite",
    "set wan tunnel aftr 2001:db8:1a::1",
]


def parent(clock: ManualClock, **line: object) -> Unit:
    facts: dict[str, object] = {"v6_ready": True, "tunnel": DSLITE, **line}
    return Unit("US01BJH00022", "parent", clock, line=Line(**facts), config=V4)  # type: ignore[arg-type]


def run(session: Session, *commands: str) -> list[str]:
    outs = []
    for command in commands:
        reply = session.execute(command)
        assert not reply.error, f"{command!r}: {reply.text}"
        outs.append(reply.text)
    return outs


def kv(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.splitlines())


def test_new_unit_is_on_v4_with_internet_and_no_u_lamp() -> None:
    session = Session(parent(ManualClock()), "admin")
    wan, lamps = (kv(t) for t in run(session, "show wan", "show lamps"))
    assert wan["mode"] == "pppoe" and wan["internet"] == "up"
    assert wan["ipv4-address"] != "-"
    assert lamps == {"POWER": "on", "WAN": "on", "U": "off"}


def test_cutover_on_a_ready_line_brings_up_the_tunnel_and_the_u_lamp() -> None:
    session = Session(parent(ManualClock()), "admin")
    run(session, *CUTOVER, "commit confirmed 10", "exit", "confirm")
    wan, lamps = (kv(t) for t in run(session, "show wan", "show lamps"))
    assert wan["tunnel-state"] == "up" and wan["internet"] == "up"
    assert lamps["U"] == "on"
    assert kv(run(session, "show status")[0])["commit-pending"] == "no"


def test_unconfirmed_commit_rolls_back_to_v4_when_the_timer_expires() -> None:
    clock = ManualClock()
    unit = parent(clock)
    session = Session(unit, "admin")
    run(session, *CUTOVER, "commit confirmed 5", "exit")
    assert "rollback in 300 s" in kv(run(session, "show status")[0])["commit-pending"]
    clock.advance(299)
    assert unit.running["wan mode"] == "ipoe"
    clock.advance(1)
    wan = kv(run(session, "show wan")[0])
    assert wan["mode"] == "pppoe" and wan["internet"] == "up"
    assert [r.kind for r in unit.commit_log] == ["commit-confirmed", "auto-rollback"]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ({"v6_ready": False}, "the 4over6 order is not complete"),
        ({"moved_by_customer": True}, "not on its original line"),
        ({"tunnel": {"type": "ds-lite", "aftr": "2001:db8:2a::1"}}, "AFTR unreachable"),
        ({"tunnel": {"type": "map-e", "br": "2001:db8::1"}}, "the line offers map-e"),
    ],
)
def test_v6_that_cannot_come_up_leaves_no_ipv4_and_the_timer_restores_v4(
    line: dict[str, object], reason: str
) -> None:
    clock = ManualClock()
    session = Session(parent(clock, **line), "admin")
    run(session, *CUTOVER, "commit confirmed 3", "exit")
    wan = kv(run(session, "show wan")[0])
    assert wan["tunnel-state"] == "down"
    assert reason in wan["tunnel-reason"]
    assert wan["ipv4-address"] == "-" and wan["internet"] == "down"
    assert kv(run(session, "show lamps")[0])["U"] == "off"
    clock.advance(180)
    assert kv(run(session, "show wan")[0])["internet"] == "up"


def test_link_item_starts_in_v4_whatever_its_config_says() -> None:
    config = {**V4, "wan mode": "ipoe", "wan tunnel type": "ds-lite", "wan tunnel aftr": "::1"}
    unit = Unit("US01LNK00001", "parent", ManualClock(), config=config, link_item=True)
    assert unit.running["wan mode"] == "pppoe"
    assert not any(p.startswith("wan tunnel") for p in unit.running)


def test_stopped_account_has_no_internet_and_no_wifi() -> None:
    session = Session(parent(ManualClock()), "admin")
    run(session, "configure", "set account state stopped", "commit")
    wan = kv(run(session, "show wan")[0])
    wlan = run(session, "show wlan")[0]
    assert wan["internet"] == "down"
    assert wlan.count("state: down") == 2 and "state: up" not in wlan
    assert kv(run(session, "show lamps")[0])["WAN"] == "off"


def test_plain_commit_while_pending_confirms() -> None:
    clock = ManualClock()
    unit = parent(clock)
    session = Session(unit, "admin")
    run(session, *CUTOVER, "commit confirmed 5", "set wlan guest ssid Other", "commit")
    clock.advance(600)
    assert unit.running["wan mode"] == "ipoe" and unit.pending is None


def test_rollback_undoes_the_pending_commit_now() -> None:
    unit = parent(ManualClock())
    session = Session(unit, "admin")
    run(session, *CUTOVER, "commit confirmed 5", "exit", "rollback")
    assert unit.running == V4
    assert session.execute("rollback").text.startswith("% Nothing to roll back")


def test_reboot_rolls_back_a_pending_commit_and_the_unit_is_down_while_booting() -> None:
    clock = ManualClock()
    unit = parent(clock)
    session = Session(unit, "admin")
    run(session, *CUTOVER, "commit confirmed 5", "exit")
    reply = session.execute("reboot")
    assert reply.close and reply.text == "The unit is restarting."
    assert reply.after is not None and unit.is_up()  # the goodbye is delivered first
    reply.after()
    assert unit.running["wan mode"] == "pppoe"
    assert not unit.is_up()
    clock.advance(unit.boot_seconds)
    assert unit.is_up()


def test_commit_after_an_auto_rollback_applies_the_change_again() -> None:
    clock = ManualClock()
    unit = parent(clock)
    session = Session(unit, "admin")
    run(session, *CUTOVER, "commit confirmed 1")
    clock.advance(60)
    assert kv(run(session, "show wan")[0])["mode"] == "pppoe"
    run(session, "set wan mode ipoe", "set wan tunnel type ds-lite")
    assert "+ set wan mode ipoe" in run(session, "show diff")[0]
    run(session, "set wan tunnel aftr 2001:db8:1a::1", "commit")
    assert unit.running["wan mode"] == "ipoe"


def test_commit_with_nothing_to_change_writes_nothing() -> None:
    unit = parent(ManualClock())
    session = Session(unit, "admin")
    reply = run(session, "configure", 'set wlan guest ssid "Cafe Free"', "commit")[-1]
    assert reply == "Commit complete (no changes)."
    assert unit.commit_log == []


def test_candidate_is_private_to_the_session_and_discard_drops_it() -> None:
    unit = parent(ManualClock())
    a, b = Session(unit, "alice"), Session(unit, "bob")
    run(a, "configure", "set wlan guest ssid FromAlice")
    run(b, "configure", "set wlan business ssid FromBob", "commit")
    assert unit.running["wlan guest ssid"] == "Cafe Free"
    assert "FromAlice" in run(a, "show diff")[0]
    run(a, "discard")
    assert run(a, "show diff")[0] == "no changes"


def test_passphrases_are_never_shown_only_their_fingerprint() -> None:
    unit = parent(ManualClock())
    session = Session(unit, "admin")
    outputs = run(session, "show running-config", "show wlan", "configure", "show candidate")
    text = "\n".join(outputs)
    for secret in ("business-pass-1", "guest-pass-1", "ppp-secret-1"):
        assert secret not in text
    assert fingerprint(unit.serial, "business-pass-1") in text


REJECTIONS = [
    ('set wlan guest ssid "' + "x" * 33 + '"', "is 33 bytes; an SSID is 1 to 32 bytes"),
    ('set wlan guest ssid "' + "店" * 11 + '"', "is 33 bytes"),
    ("set wlan business passphrase short7c", "7 characters; a passphrase is 8 to 63"),
    ("set wlan business passphrase " + "z" * 64, "64 characters"),
    ("set wan tunnel aftr 2001:db8::zz", '"2001:db8::zz" is not an IPv6 address'),
    ("set wan tunnel br 192.0.2.1", "is not an IPv6 address"),
    ("set wan tunnel rule-ipv4-prefix 192.0.2.1/24", "is not an IPv4 prefix"),
    ("set wan tunnel ea-length 49", "from 0 to 48"),
    ("set wan mode dhcp", '"dhcp" is not one of: pppoe, ipoe'),
    ("set wlan", 'Incomplete command: "set wlan" (expected: business, guest)'),
    ("set wlan guest ssid Two Words", "quote a value that has spaces"),
    ("frobnicate", 'Unknown command: "frobnicate"'),
    ("commit confirmed 61", "minutes are a whole number from 1 to 60"),
    ("commit confirmed 0", "minutes are a whole number from 1 to 60"),
    ("set wan tunnel aftr fe80::1%eth0", "has a zone index"),
    ("commit confirmed soon", "minutes are a whole number"),
]


@pytest.mark.parametrize(("command", "message"), REJECTIONS)
def test_bad_input_is_refused_with_the_rule_and_changes_nothing(command: str, message: str) -> None:
    unit = parent(ManualClock())
    session = Session(unit, "admin")
    run(session, "configure")
    reply = session.execute(command)
    assert reply.error and reply.text.startswith("% ")
    assert message in reply.text
    run(session, "commit")
    assert unit.running == V4
    assert unit.commit_log == []


def test_passphrase_is_not_echoed_in_its_error() -> None:
    session = Session(parent(ManualClock()), "admin")
    run(session, "configure")
    reply = session.execute("set wlan guest passphrase sh0rt")
    assert reply.error and "sh0rt" not in reply.text


def test_sixty_four_hex_digits_are_a_valid_passphrase() -> None:
    unit = parent(ManualClock())
    run(Session(unit, "admin"), "configure", "set wlan guest passphrase " + "ab" * 32, "commit")
    assert unit.running["wlan guest passphrase"] == "ab" * 32


def test_commit_check_refuses_ipoe_without_its_tunnel_parameters() -> None:
    unit = parent(ManualClock())
    session = Session(unit, "admin")
    run(session, "configure", "set wan mode ipoe", "set wan tunnel type map-e")
    reply = session.execute("commit")
    assert reply.error
    assert "wan tunnel br is required when wan tunnel type is map-e" in reply.text
    assert unit.running == V4


@pytest.mark.parametrize("role", ["child", "ap"])
def test_child_and_access_point_have_no_wan(role: str) -> None:
    wlan = {k: v for k, v in V4.items() if k.startswith("wlan")}
    unit = Unit("US01BJH00099", role, ManualClock(), parent="US01BJH00022", config=wlan)
    session = Session(unit, "admin")
    assert session.execute("show wan").error
    run(session, "configure")
    reply = session.execute("set wan mode ipoe")
    assert reply.error and "Not supported on a" in reply.text and "has no WAN" in reply.text
    assert session.execute("delete wan").error
    run(session, "set wlan guest ssid Shop", "commit")
    assert unit.running["wlan guest ssid"] == "Shop"
    assert kv(run(session, "show lamps")[0]) == {"POWER": "on", "WAN": "off", "U": "off"}


def test_configuration_commands_need_configuration_mode() -> None:
    session = Session(parent(ManualClock()), "admin")
    reply = session.execute("set wan mode ipoe")
    assert reply.error and 'enter "configure" first' in reply.text


def test_exec_script_stops_at_the_first_error_with_status_one() -> None:
    unit = parent(ManualClock())
    session = Session(unit, "admin")
    script = 'configure; set wlan guest ssid "A;B"; set wan mode bogus; commit'
    assert split_commands(script)[1] == 'set wlan guest ssid "A;B"'
    output, status = run_script(session, split_commands(script))
    assert status == 1
    assert "% Invalid value for wan mode" in output
    assert unit.running == V4


def test_line_editor_ignores_cursor_keys_in_both_modes() -> None:
    from simulators.terminal import LINE, LineEditor

    editor = LineEditor()
    editor.feed("show\x1b[A\x1bOB sx\x7ftatus\rshow lamps\r")
    echo, event = editor.next()
    assert event == (LINE, "show status")
    assert "lamps" not in echo  # type-ahead waits for the next prompt
    echo, event = editor.next()
    assert event == (LINE, "show lamps") and echo == "show lamps\r\n"
    assert editor.next() == ("", None)
