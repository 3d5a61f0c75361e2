"""The `fleetd` command as staff use it: exit statuses, one clear line per error."""

from __future__ import annotations

import base64
import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from fleetd.cli import CliState, create_app, main
from fleetd.settings import Settings
from inventory.redact import Redactor
from tests.inventory.csvdata import CANARY, fleet_rows, shop_contracts, write_contracts, write_fleet

MIGRATIONS = Path(__file__).parents[2] / "inventory" / "migrations" / "versions"
HEAD = max(p.name[:4] for p in MIGRATIONS.glob("0*.py"))
KEY = base64.b64encode(b"\x03" * 32).decode()


def fleetd(args: list[str], *, url: str, key: str | None = KEY) -> Result:
    settings = Settings(database_url=url, secret_key=key)
    return CliRunner().invoke(create_app(), args, obj=CliState(settings, Redactor()))


def test_migrate_then_check(database_url: str) -> None:
    before = fleetd(["migrate", "--check"], url=database_url)
    assert before.exit_code == 1
    assert "run `fleetd migrate`" in before.stderr
    done = fleetd(["migrate"], url=database_url)
    assert done.exit_code == 0, done.output
    assert f"migrated from no schema to {HEAD}" in done.stdout
    assert (
        fleetd(["migrate"], url=database_url)
        .stdout.strip()
        .endswith(f"already at the head revision {HEAD}")
    )
    assert fleetd(["migrate", "--check"], url=database_url).exit_code == 0


def test_an_import_before_migrating_says_what_to_do(database_url: str, tmp_path: Path) -> None:
    path = write_contracts(tmp_path / "contracts.csv", shop_contracts())
    result = fleetd(["import", "contracts", str(path)], url=database_url)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "has no fleetd schema" in result.stderr and "run `fleetd migrate`" in result.stderr


def test_import_refuses_then_skips_then_says_unchanged(database_url: str, tmp_path: Path) -> None:
    assert fleetd(["migrate"], url=database_url).exit_code == 0
    rows = shop_contracts()
    rows[4]["serial"] = "US01apx00001"
    path = write_contracts(tmp_path / "contracts.csv", rows)
    refused = fleetd(["import", "contracts", str(path)], url=database_url)
    assert refused.exit_code == 1
    assert "nothing written, 1 row breaks the rules (fix it" in refused.stdout
    assert "line 6: serial 'US01apx00001': a serial is US01" in refused.stdout
    skipped = fleetd(["import", "contracts", str(path), "--skip-invalid"], url=database_url)
    assert skipped.exit_code == 0
    assert "4 created, 0 updated, 0 unchanged, 1 rejected" in skipped.stdout
    again = fleetd(["import", "contracts", str(path), "--skip-invalid"], url=database_url)
    assert "0 created, 0 updated, 4 unchanged, 1 rejected" in again.stdout


def test_the_fleet_import_needs_the_right_key(database_url: str, tmp_path: Path) -> None:
    assert fleetd(["migrate"], url=database_url).exit_code == 0
    path = write_fleet(tmp_path / "fleet.csv", fleet_rows())
    no_key = fleetd(["import", "fleet", str(path)], url=database_url, key=None)
    assert no_key.exit_code == 2
    assert no_key.stderr == (
        "fleetd: no secret key: set FLEETD_SECRET_KEY (base64 of 32 random bytes) or "
        "FLEETD_SECRET_KEY_FILE (a key file made by `fleetd keygen FILE`)\n"
    )
    dry = fleetd(["import", "fleet", str(path), "--dry-run"], url=database_url)
    assert dry.exit_code == 0 and "dry run, nothing written; it would be 4 created" in dry.stdout
    done = fleetd(["import", "fleet", str(path)], url=database_url)
    assert done.exit_code == 0 and "4 rows: 4 created" in done.stdout
    wrong = fleetd(
        ["import", "fleet", str(path)],
        url=database_url,
        key=base64.b64encode(b"\x04" * 32).decode(),
    )
    assert wrong.exit_code == 2 and wrong.stderr.count("\n") == 1
    assert "give fleetd the key it was set up with" in wrong.stderr
    for result in (no_key, dry, done, wrong):
        assert CANARY not in result.output


def test_keygen_makes_a_private_key_once(tmp_path: Path) -> None:
    path = tmp_path / "fleetd.key"
    made = CliRunner().invoke(create_app(), ["keygen", str(path)])
    assert made.exit_code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() not in made.output  # the key itself is never printed
    assert f"FLEETD_SECRET_KEY_FILE={path}" in made.stdout
    again = CliRunner().invoke(create_app(), ["keygen", str(path)])
    assert again.exit_code == 2 and "never overwrites" in again.stderr


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = fleetd(["import", "fleet", str(tmp_path / "nope.csv")], url="sqlite:///x.db")
    assert result.exit_code == 2


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """`main()` sets up process-wide logging; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level, factory = list(root.handlers), root.level, logging.getLogRecordFactory()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.setLogRecordFactory(factory)


@pytest.mark.usefixtures("restored_logging")
def test_main_reads_the_environment_and_refuses_bad_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEETD_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/env.db")
    monkeypatch.setenv("FLEETD_LOG_LEVEL", "LOUD")
    with pytest.raises(SystemExit) as caught:
        main(["migrate"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("fleetd: setting FLEETD_LOG_LEVEL:") and err.count("\n") == 1
    monkeypatch.setenv("FLEETD_LOG_LEVEL", "warning")
    with pytest.raises(SystemExit) as caught:
        main(["migrate"])
    assert caught.value.code == 0
    assert (tmp_path / "env.db").exists()


def test_settings_come_from_fleetd_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().database_url == "sqlite+aiosqlite:///var/fleetd.db"
    monkeypatch.setenv("FLEETD_DATABASE_URL", "postgresql+asyncpg://fleetd:pw@db/fleetd")
    monkeypatch.setenv("FLEETD_SECRET_KEY", KEY)
    monkeypatch.setenv("FLEETD_SECRET_KEY_FILE", "")
    settings = Settings()
    assert settings.secret_key_file is None
    assert settings.secret_box().kid
    assert KEY not in repr(settings) and "pw" not in repr(settings)
