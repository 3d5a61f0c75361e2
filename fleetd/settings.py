"""The daemon's settings, from `FLEETD_…` environment variables.

Built in `main()` (or a test), never at import time:

    FLEETD_DATABASE_URL      sqlite+aiosqlite:///var/fleetd.db (default) or postgresql+asyncpg://…
    FLEETD_SECRET_KEY        base64 of 32 bytes: the key of the secrets at rest
    FLEETD_SECRET_KEY_FILE   or a file holding it (`fleetd keygen FILE` makes one, mode 0600)
    FLEETD_LOG_LEVEL         DEBUG, INFO, WARNING (default) or ERROR

`fleetd serve` also reads:

    FLEETD_API_HOST / FLEETD_API_PORT          the control API (127.0.0.1:8080)
    FLEETD_BASTION_HOST / FLEETD_BASTION_PORT  remote login for tech support (127.0.0.1:2222)
    FLEETD_STATE_DIR          the daemon's own files, e.g. the bastion host key (var/fleetd)
    FLEETD_TRANSPORT          asyncssh (default), scrapli or netmiko
    FLEETD_PARALLEL           operations at once in this daemon (200)
    FLEETD_LEASE_SECONDS      how long a claimed operation is held without renewal (120)
    FLEETD_SWEEP_SECONDS      the SNMP status sweep's period (300)
    FLEETD_YEAR_END_CLOSURE   the company's year-end closure, MM-DD..MM-DD (12-29..01-03)
    FLEETD_OWNER              this daemon's name in leases (host:pid)
    FLEETD_BASTION_IDLE_TIMEOUT  seconds before an idle remote login is closed (600)
    FLEETD_SNMP_COMMUNITY     the units' SNMP read community for the status sweep (public)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from inventory.redact import Redactor
from inventory.secrets import SecretBox, load_secret_box

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/fleetd.db"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLEETD_", extra="ignore")

    # the URL may carry a database password: kept out of reprs and logs
    database_url: str = Field(default=DEFAULT_DATABASE_URL, repr=False)
    secret_key: SecretStr | None = None
    secret_key_file: Path | None = None
    log_level: LogLevel = "WARNING"
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    bastion_host: str = "127.0.0.1"
    bastion_port: int = Field(default=2222, ge=0, le=65535)
    state_dir: Path = Path("var/fleetd")
    transport: str = "asyncssh"
    parallel: int = Field(default=200, ge=1, le=10_000)
    lease_seconds: float = Field(default=120.0, gt=0)
    sweep_seconds: float = Field(default=300.0, gt=0)
    year_end_closure: str = "12-29..01-03"
    owner: str | None = None
    bastion_idle_timeout: float = Field(default=600.0, gt=0)
    # the units' SNMP read community: a password of the units, never shown
    snmp_community: SecretStr = SecretStr("public")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("secret_key", "secret_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def secret_box(self, redactor: Redactor | None = None) -> SecretBox:
        """The box for the configured key; SecretKeyError says what to do when there is none
        or it is malformed."""
        key = self.secret_key.get_secret_value() if self.secret_key else None
        return load_secret_box(key, self.secret_key_file, redactor=redactor)
