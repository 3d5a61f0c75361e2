"""Secrets at rest: encrypted, bound to their field, tied to a key, never in plain text."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from inventory import repo
from inventory.errors import SecretKeyError
from inventory.imports import importer_for, run_import
from inventory.redact import Redactor
from inventory.secrets import SecretBox, generate_key_file, key_id, load_secret_box, parse_key
from inventory.store import Store
from tests.inventory.csvdata import CANARY, fleet_rows, write_fleet

KEY = bytes(range(32))
KEY_TEXT = base64.b64encode(KEY).decode()


def test_a_secret_round_trips_in_a_versioned_token_naming_its_key() -> None:
    box = SecretBox(KEY)
    token = box.encrypt(CANARY, purpose="unit.password")
    assert token.startswith(f"v1:{key_id(KEY)}:")
    assert CANARY not in token
    assert box.encrypt(CANARY, purpose="unit.password") != token  # a fresh nonce every time
    assert box.decrypt(token, purpose="unit.password") == CANARY
    assert box.matches(token, CANARY, purpose="unit.password")
    assert not box.matches(None, CANARY, purpose="unit.password")


def test_several_secrets_in_one_token_are_each_masked_wherever_they_show() -> None:
    redactor = Redactor()
    values = {"passphrase": "Guest-" + CANARY, "password": "Pppoe-" + CANARY}
    token = SecretBox(KEY).encrypt_values(values, purpose="operation-secrets")
    assert CANARY not in token
    assert redactor.redact(f"the unit said {values['passphrase']}") != "the unit said ********"
    reader = SecretBox(KEY, redactor=redactor)  # another process: the daemon that runs it
    assert reader.decrypt_values(token, purpose="operation-secrets") == values
    for value in values.values():
        # each value on its own, not only the document it travelled in
        assert redactor.redact(f"the unit said {value}.") == "the unit said ********."
    with pytest.raises(SecretKeyError, match="named values"):
        reader.decrypt_values(
            reader.encrypt('["a list"]', purpose="operation-secrets"), purpose="operation-secrets"
        )


def test_a_token_does_not_decrypt_in_another_field() -> None:
    box = SecretBox(KEY)
    token = box.encrypt(CANARY, purpose="unit.password")
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        box.decrypt(token, purpose="unit.guest_passphrase")


def test_a_wrong_key_says_which_key_is_needed() -> None:
    token = SecretBox(KEY).encrypt(CANARY, purpose="unit.password")
    other = SecretBox(b"\x07" * 32)
    with pytest.raises(SecretKeyError) as caught:
        other.decrypt(token, purpose="unit.password")
    message = str(caught.value)
    assert key_id(KEY) in message and other.kid in message
    assert "FLEETD_SECRET_KEY" in message
    assert "SecretBox(kid=" in repr(other) and KEY_TEXT not in repr(other)


def test_an_old_key_still_decrypts_after_rotation() -> None:
    token = SecretBox(KEY).encrypt(CANARY, purpose="unit.password")
    rotated = SecretBox(b"\x07" * 32, old_keys=[KEY])
    assert rotated.decrypt(token, purpose="unit.password") == CANARY
    assert rotated.encrypt(CANARY, purpose="unit.password").startswith(f"v1:{rotated.kid}:")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("not base64!", "not base64"), (base64.b64encode(b"short").decode(), "holds 5 bytes")],
)
def test_a_malformed_key_says_how_to_make_one(value: str, expected: str) -> None:
    with pytest.raises(SecretKeyError, match=expected) as caught:
        parse_key(value, source="FLEETD_SECRET_KEY")
    assert "fleetd keygen" in str(caught.value)


def test_the_key_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert load_secret_box(KEY_TEXT, None).kid == key_id(KEY)
    path = tmp_path / "fleetd.key"
    path.write_text(KEY_TEXT + "\n")
    assert load_secret_box(None, path).kid == key_id(KEY)
    with pytest.raises(SecretKeyError, match="no secret key: set FLEETD_SECRET_KEY"):
        load_secret_box(None, None)
    with pytest.raises(SecretKeyError, match="set only one"):
        load_secret_box(KEY_TEXT, path)
    with pytest.raises(SecretKeyError, match=r"cannot read the key file .*No such file"):
        load_secret_box(None, tmp_path / "missing.key")


def test_keygen_writes_a_private_key_file_and_never_overwrites_one(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.key"
    kid = generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_box(None, path).kid == kid
    before = path.read_text()
    with pytest.raises(SecretKeyError, match="never overwrites"):
        generate_key_file(path)
    assert path.read_text() == before


async def test_no_plaintext_secret_is_stored_in_any_table(
    store: Store, box: SecretBox, tmp_path: Path
) -> None:
    fleet = write_fleet(tmp_path / "fleet.csv", fleet_rows())
    report = await run_import(store, importer_for("fleet"), fleet, box=box)
    assert report.written and report.created == 4
    passphrase = "Canary-Passphrase-77"
    async with store.transaction() as session:
        await repo.set_intended_wifi(
            session, "US01BJH00022", box, "guest", ssid="Cafe Free", passphrase=passphrase
        )
    cells = await _every_cell(store)
    assert any("v1:" in cell for cell in cells)  # the secrets are there, encrypted
    for secret in (CANARY, passphrase, "child-pass-0001"):
        assert not [cell for cell in cells if secret in cell], secret
    async with store.sessions() as session:
        unit = await repo.get_unit(session, "US01BJH00022")
        assert repo.unit_credential(unit, box).password == CANARY


async def _every_cell(store: Store) -> list[str]:
    """Every value of every table, read with raw SQL as an intruder with the file would."""
    cells: list[str] = []
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        for table in tables:
            result = await conn.execute(text(f'SELECT * FROM "{table}"'))
            cells.extend(str(value) for row in result for value in row)
    return cells
