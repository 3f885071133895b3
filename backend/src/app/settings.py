"""Configuration, read once from the environment and validated when loaded.

A wrong value fails at start with a message naming the variable, not on the first request
that happens to use it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SOURCE_DIR = Path(__file__).resolve().parent.parent
"""`backend/src`: the project folder that holds `app/`, `migrations/` and `alembic.ini`."""

DEFAULT_DATA_DIR = SOURCE_DIR / ".data"

MIN_KEY_LENGTH = 32
MAX_TOKEN_TTL_SECONDS = 30 * 24 * 3600
"""The longest `TOKEN_TTL_SECONDS` allowed; a retired token generation is remembered longer."""

# What a browser sends as `Origin`: scheme, host (or [IPv6]) and an optional port, no path.
_ORIGIN = re.compile(r"^https?://(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}

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
    secret_key_previous: SecretStr | None = Field(
        default=None,
        description="The key SECRET_KEY replaced: its tokens stay valid until they expire.",
    )
    token_ttl_seconds: int = Field(default=3600, ge=60, le=MAX_TOKEN_TTL_SECONDS)
    login_max_failures_per_user: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Failed logins for one user name within the window before 429.",
    )
    login_max_failures_per_address: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed logins from one client address (IPv6: its /64) before 429.",
    )
    login_failure_window_seconds: int = Field(default=900, ge=1, le=24 * 3600)
    login_max_concurrent_checks: int = Field(
        default=64,
        ge=0,
        le=10_000,
        description="Password checks in progress for one user name or address beyond the "
        "failure limit before 429: lets a client log in over many connections at once.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    root_path: str = ""
    db_pool_size: int = Field(default=20, ge=1, le=200)
    # Overflow connections are closed as soon as they are returned while the pool is full, so
    # under sustained load every request beyond the pool size opened a connection (TLS and
    # SCRAM on the worker's CPU): that halved throughput. Size the pool instead.
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=120)
    db_statement_timeout_seconds: float = Field(default=15.0, gt=0, le=600)
    db_isolation_level: IsolationLevel = "SERIALIZABLE"
    db_pool_pre_ping: bool = False
    db_max_retries: int = Field(default=30, ge=0, le=100)
    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    deletion_batch_size: int = Field(
        default=1000,
        ge=1,
        le=10_000,
        description="Rows removed per transaction when a deleted organization, space or "
        "account is cleaned up in the background.",
    )
    changes_retention_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=365 * 24 * 3600,
        description="How long the change feed keeps changes (and deletes): an older token is "
        "a 410 and its client starts again with a snapshot.",
    )
    events_max_streams_per_user: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Open event streams one user may hold on one worker; more are a 429.",
    )
    events_heartbeat_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="How often an idle event stream sends a comment, so proxies keep it open.",
    )
    deletion_interval_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="How often each worker looks for deletions left unfinished (by a "
        "restart or another replica); its own deletions start at once.",
    )
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    max_json_depth: int = Field(
        default=32,
        ge=1,
        le=256,
        description="Arrays and objects nested deeper in a request body get 422.",
    )
    cors_origins: str = Field(
        default="",
        description="Comma-separated origins allowed by CORS (`*` for any); empty turns it off.",
    )
    hsts_max_age_seconds: int = Field(
        default=0,
        ge=0,
        le=2 * 365 * 24 * 3600,
        description="Send Strict-Transport-Security with this max-age; 0 (not behind TLS): off.",
    )
    metrics_enabled: bool = Field(default=True, description="Serve GET /metrics (Prometheus).")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics requires `Authorization: Bearer <token>`.",
    )
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

    @field_validator("cors_origins")
    @classmethod
    def _normalise_cors_origins(cls, value: str) -> str:
        origins = []
        for entry in value.split(","):
            origin = entry.strip().rstrip("/").lower()
            if not origin:
                continue
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(
                    f"CORS_ORIGINS: {entry.strip()!r} is not an origin such as "
                    "https://app.example.com"
                )
            default_port = _DEFAULT_PORTS.get(origin.partition(":")[0], "")
            if default_port and origin.endswith(default_port):
                origin = origin.removesuffix(default_port)
            origins.append(origin)
        return ",".join(dict.fromkeys(origins))

    @field_validator("database_url")
    @classmethod
    def _blank_url_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("secret_key", "secret_key_previous")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < MIN_KEY_LENGTH:
            name = (info.field_name or "secret_key").upper()
            raise ValueError(f"{name} must be at least {MIN_KEY_LENGTH} characters")
        return value

    @property
    def cors_origin_set(self) -> frozenset[str]:
        """CORS_ORIGINS as browsers send `Origin` (lower case, no default port)."""
        return frozenset(self.cors_origins.split(",")) - {""}

    def signing_key(self) -> str:
        """The key tokens are signed with; refuses a missing key outside the embedded database."""
        if self.secret_key is None:
            raise ConfigError(
                "SECRET_KEY is not set. It is required when DATABASE_URL points at a real "
                "server; generate one with:\n"
                "  python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        return self.secret_key.get_secret_value()

    def verification_keys(self) -> tuple[str, ...]:
        """The keys a token may be signed with: SECRET_KEY first, so a current token costs one
        HMAC, then SECRET_KEY_PREVIOUS while a rotation is under way."""
        current = self.signing_key()
        if self.secret_key_previous is None:
            return (current,)
        previous = self.secret_key_previous.get_secret_value()
        return (current,) if previous == current else (current, previous)
