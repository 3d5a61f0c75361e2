"""The plain data of `drivers.base`: changes that hide their secrets, fingerprints, targets."""

from __future__ import annotations

from pathlib import Path

from drivers.base import Change, Timeouts, UnitTarget, is_secret_path, passphrase_fingerprint


def test_fingerprint_matches_the_contract_example() -> None:
    # docs/unit-contract.md: printf '%s' 'US01BJH00022:secret123' | sha256sum | cut -c1-16
    assert passphrase_fingerprint("US01BJH00022", "secret123") == "aa832b85a3b58c82"


def test_a_change_never_shows_its_secrets() -> None:
    change = Change(
        {
            "wlan guest ssid": "Cafe Free",
            "wlan guest passphrase": "hunter2-hunter2",
            "wan pppoe password": "pppoe-secret",
            "wan tunnel": None,
        }
    )
    for text in (repr(change), str(change), f"{change}", "%s" % change):  # noqa: UP031
        assert "hunter2" not in text
        assert "pppoe-secret" not in text
        assert "Cafe Free" in text
        assert "********" in text
    assert change["wlan guest passphrase"] == "hunter2-hunter2"  # the driver still sends it
    assert set(change.secrets()) == {"hunter2-hunter2", "pppoe-secret"}
    assert change.masked()["wan tunnel"] is None
    assert dict(change) == dict(change.items())


def test_a_change_is_a_copy() -> None:
    values: dict[str, str | None] = {"wlan guest ssid": "A"}
    change = Change(values)
    values["wlan guest ssid"] = "B"
    assert change["wlan guest ssid"] == "A"
    assert len(change) == 1
    assert Change() == Change({})


def test_secret_paths() -> None:
    for path in ("wan pppoe password", "wlan business passphrase", "snmp community"):
        assert is_secret_path(path)
    for path in ("wlan guest ssid", "wan pppoe username", ""):
        assert not is_secret_path(path)


def test_a_target_hides_its_password() -> None:
    target = UnitTarget(
        "US01SP000000",
        "127.20.0.1",
        password="p4ssw0rd",
        private_key=Path("/keys/id_ed25519"),
        timeouts=Timeouts(connect=1),
    )
    assert "p4ssw0rd" not in repr(target)
    assert "p4ssw0rd" not in str(target)
    assert target.timeouts.command == 30.0
