"""No password or passphrase reaches a log record, even at DEBUG."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from inventory.imports import importer_for, run_import
from inventory.redact import MASK, RedactingFilter, Redactor, install_redaction
from inventory.secrets import SecretBox
from inventory.store import Store
from tests.inventory.csvdata import CANARY, fleet_rows, write_fleet

log = logging.getLogger("fleetd.test")


@pytest.fixture
def redaction(redactor: Redactor) -> Iterator[Redactor]:
    uninstall = install_redaction(redactor)
    yield redactor
    uninstall()


def _leaks(caplog: pytest.LogCaptureFixture, secret: str) -> list[str]:
    texts = []
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(record.exc_text or "")
        texts.append(record.stack_info or "")
    return [t for t in texts if secret in t]


def test_secret_looking_values_are_masked_in_every_form(
    redaction: Redactor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    log.debug("login with password=%s", CANARY)
    log.debug("row %s", {"serial": "US01BJH00022", "password": CANARY})
    log.debug('config {"wlan guest passphrase": "%s"}', CANARY)
    log.debug("sent: set wlan business passphrase %s", CANARY)
    log.debug("sent: set wan pppoe password %s", CANARY)
    log.debug(f"secret_key: {CANARY}")  # an f-string must not slip through either
    try:
        raise ValueError(f"unit refused passphrase={CANARY}")
    except ValueError:
        log.exception("failed")
    log.debug("passphrase-fingerprint: aa832b85a3b58c82")
    assert _leaks(caplog, CANARY) == []
    assert MASK in caplog.records[0].getMessage()
    assert caplog.records[-1].getMessage().endswith("aa832b85a3b58c82")  # fingerprints stay


def test_a_known_secret_is_masked_wherever_it_appears(
    redaction: Redactor, caplog: pytest.LogCaptureFixture
) -> None:
    redaction.add_secret(CANARY)
    redaction.add_secret("two words pass")
    caplog.set_level(logging.DEBUG)
    log.debug("the unit answered %r after %s", CANARY, "two words pass")
    log.debug("%s", [("US01BJH00022", CANARY)])
    assert _leaks(caplog, CANARY) == [] and _leaks(caplog, "two words pass") == []
    assert caplog.records[0].getMessage() == f"the unit answered '{MASK}' after {MASK}"


def test_a_handler_filter_also_scrubs_extra_fields(redactor: Redactor) -> None:
    redactor.add_secret(CANARY)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(logging.Formatter("%(message)s %(credential)s"))
    quiet = logging.getLogger("fleetd.test.handler")
    quiet.propagate = False
    quiet.addHandler(handler)
    try:
        quiet.warning("login as admin/%s", CANARY, extra={"credential": f"admin:{CANARY}"})
    finally:
        quiet.removeHandler(handler)
    assert CANARY not in stream.getvalue() and MASK in stream.getvalue()


async def test_an_import_at_debug_logs_no_password(
    store: Store,
    redactor: Redactor,
    redaction: Redactor,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    box = SecretBox(b"\x05" * 32, redactor=redactor)
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy keeps its loggers at WARNING unless told: log every statement and parameter
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    fleet = write_fleet(tmp_path / "fleet.csv", fleet_rows())
    report = await run_import(store, importer_for("fleet"), fleet, box=box)
    assert report.written
    assert any("INSERT INTO units" in r.getMessage() for r in caplog.records)
    assert _leaks(caplog, CANARY) == []


def test_secrets_that_start_alike_are_each_masked_at_their_own_length(
    redactor: Redactor,
) -> None:
    # one shares the other's first characters; each must be found, the longer one whole
    redactor.add_secret("Shop2024")
    redactor.add_secret("Shop2024-guest!x")
    text = "old=xShop2024-guest!xy new:Shop2024, at the end Shop202"
    assert redactor.redact(text) == f"old=x{MASK}y new:{MASK}, at the end Shop202"
