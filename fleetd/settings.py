"""The daemon's settings, from `FLEETD_…` environment variables.

Built in `main()` (or a test), never at import time:

    FLEETD_DATABASE_URL      sqlite+aiosqlite:///var/fleetd.db (default) or postgresql+asyncpg://…
    FLEETD_SECRET_KEY        base64 of 32 bytes: the key of the secrets at rest
    FLEETD_SECRET_KEY_FILE   or a file holding it (`fleetd keygen FILE` makes one, mode 0600)
    FLEETD_LOG_LEVEL         DEBUG, INFO, WARNING (default) or ERROR
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
