"""Configuration, read once from the environment and validated when loaded.

A wrong value fails at start with a message naming the variable, not on the first request
that happens to use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SOURCE_DIR = Path(__file__).resolve().parent.parent
"""`backend/src`: the project folder that holds `app/`, `migrations/` and `alembic.ini`."""

DEFAULT_DATA_DIR = SOURCE_DIR / ".data"

MIN_KEY_LENGTH = 32

IsolationLevel = Literal["SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED"]


class ConfigError(RuntimeError):
    """The configuration cannot be used as given; the message says which variable to fix."""


class Settings(BaseSettings):
    """Every setting the service reads, each from the environment variable of the same name."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: str | None = Field(
        default=None,
        description="postgresql:// or cockroachdb:// URL; unset means the embedded PostgreSQL.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="HS256 signing key; required when DATABASE_URL names a real server.",
    )
    token_ttl_seconds: int = Field(default=3600, ge=60, le=30 * 24 * 3600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    root_path: str = ""
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=200)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    db_statement_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    db_isolation_level: IsolationLevel = "SERIALIZABLE"
    db_pool_pre_ping: bool = False
    db_max_retries: int = Field(default=30, ge=0, le=100)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        description="Where the embedded PostgreSQL and the development secret key live.",
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("root_path")
    @classmethod
    def _normalise_root_path(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError("ROOT_PATH must start with '/'")
        return value

    @field_validator("database_url")
    @classmethod
    def _blank_url_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("secret_key")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"SECRET_KEY must be at least {MIN_KEY_LENGTH} characters")
        return value

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None

    def signing_key(self) -> str:
        """The key tokens are signed with; refuses a missing key outside the embedded database."""
        if self.secret_key is None:
            raise ConfigError(
                "SECRET_KEY is not set. It is required when DATABASE_URL points at a real "
                "server; generate one with:\n"
                "  python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return self.secret_key.get_secret_value()
