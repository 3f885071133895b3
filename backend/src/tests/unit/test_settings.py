"""Configuration: refused when wrong at load time; DATABASE_URL accepted in every pasted form."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.db import embedded
from app.db.urls import Driver, is_cockroachdb, normalise
from app.settings import ConfigError, Settings
from tests.conftest import TEST_SECRET, make_settings

# Settings -----------------------------------------------------------------------------------


def _refused_fields(error: pytest.ExceptionInfo[ValidationError]) -> set[str]:
    return {str(item["loc"][0]) for item in error.value.errors()}


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        pytest.param("SECRET_KEY", "x" * 31, "secret_key", id="secret-31-chars"),
        pytest.param("SECRET_KEY", "short", "secret_key", id="secret-short"),
        pytest.param("ROOT_PATH", "api", "root_path", id="root-path-relative"),
        pytest.param("ROOT_PATH", "api/v1/", "root_path", id="root-path-relative-nested"),
        pytest.param("LOG_LEVEL", "LOUD", "log_level", id="log-level-unknown"),
        pytest.param("LOG_LEVEL", "TRACE", "log_level", id="log-level-trace"),
    ],
)
def test_a_bad_environment_variable_is_refused_when_loading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError) as error:
        Settings(data_dir=tmp_path)

    assert _refused_fields(error) == {field}


def test_a_32_character_secret_is_accepted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, secret_key="k" * 32)

    assert settings.signing_key() == "k" * 32


def test_the_secret_is_not_shown_in_the_settings_repr(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)

    assert TEST_SECRET not in repr(settings)
    assert TEST_SECRET not in str(settings)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        pytest.param("", "", id="empty"),
        pytest.param("/", "", id="slash"),
        pytest.param("/api", "/api", id="plain"),
        pytest.param("/api/v1/", "/api/v1", id="trailing-slash"),
        pytest.param("  /api  ", "/api", id="whitespace"),
    ],
)
def test_root_path_is_normalised(tmp_path: Path, raw: str, normalised: str) -> None:
    assert make_settings(tmp_path, root_path=raw).root_path == normalised


@pytest.mark.parametrize("level", ["debug", "Info", "WARNING", "error"])
def test_log_level_is_case_insensitive(tmp_path: Path, level: str) -> None:
    assert make_settings(tmp_path, log_level=level).log_level == level.upper()


@pytest.mark.parametrize("secret", [None, ""])
def test_signing_key_without_a_key_raises_config_error(tmp_path: Path, secret: str | None) -> None:
    settings = make_settings(tmp_path, secret_key=secret)

    with pytest.raises(ConfigError):
        settings.signing_key()


@pytest.mark.parametrize("url", [None, "", "   "])
def test_no_database_url_means_the_embedded_database(tmp_path: Path, url: str | None) -> None:
    settings = make_settings(tmp_path, database_url=url)

    assert settings.database_url is None


def test_a_database_url_means_a_real_server(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url=" postgresql://u@db.example/app ")

    assert settings.database_url == "postgresql://u@db.example/app"


# DATABASE_URL normalisation -----------------------------------------------------------------

URL_TAIL = "://app_user:p%40ss%3Aw%2Frd@db.example.com:26257/todos"
"""User, password (with `@`, `:` and `/` escaped), host, port and database every form keeps."""


@pytest.mark.parametrize(
    ("scheme", "backend"),
    [
        pytest.param("postgresql", "postgresql", id="postgresql"),
        pytest.param("postgres", "postgresql", id="postgres"),
        pytest.param("postgresql+psycopg2", "postgresql", id="postgresql+psycopg2"),
        pytest.param("postgresql+asyncpg", "postgresql", id="postgresql+asyncpg"),
        pytest.param("cockroachdb", "cockroachdb", id="cockroachdb"),
        pytest.param("cockroachdb+psycopg2", "cockroachdb", id="cockroachdb+psycopg2"),
        pytest.param("cockroachdb+asyncpg", "cockroachdb", id="cockroachdb+asyncpg"),
    ],
)
@pytest.mark.parametrize("driver", ["asyncpg", "psycopg2"])
def test_normalise_picks_the_driver_and_keeps_the_rest(
    scheme: str, backend: str, driver: Driver
) -> None:
    url = normalise(scheme + URL_TAIL, driver)

    assert url.drivername == f"{backend}+{driver}"
    assert url.username == "app_user"
    assert url.password == "p@ss:w/rd"
    assert url.host == "db.example.com"
    assert url.port == 26257
    assert url.database == "todos"
    assert is_cockroachdb(url) == (backend == "cockroachdb")


def test_sslmode_becomes_ssl_for_asyncpg() -> None:
    url = normalise("postgresql://u@h/db?sslmode=require&application_name=todo", "asyncpg")

    assert dict(url.query) == {"ssl": "require", "application_name": "todo"}


def test_sslmode_stays_sslmode_for_psycopg2() -> None:
    url = normalise("cockroachdb://u@h/db?sslmode=require", "psycopg2")

    assert dict(url.query) == {"sslmode": "require"}


def test_an_asyncpg_ssl_parameter_becomes_sslmode_for_psycopg2() -> None:
    """A pasted `+asyncpg` URL must also work for Alembic: libpq knows no `ssl` parameter."""
    url = normalise("postgresql+asyncpg://u@h/db?ssl=require", "psycopg2")

    assert dict(url.query) == {"sslmode": "require"}


@pytest.mark.parametrize(
    "sslmode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
)
def test_every_libpq_sslmode_is_accepted_for_asyncpg(sslmode: str) -> None:
    url = normalise(f"postgresql://u@h/db?sslmode={sslmode}", "asyncpg")

    assert dict(url.query) == {"ssl": sslmode}


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("postgresql://u@h/db?sslmode=bogus", id="bad-sslmode"),
        pytest.param("mysql://u@h/db", id="mysql"),
        pytest.param("sqlite:///todos.db", id="sqlite"),
        pytest.param("garbage", id="garbage"),
        pytest.param("", id="empty"),
        pytest.param("postgresql://u@h:notaport/db", id="bad-port"),
    ],
)
def test_normalise_refuses_what_it_cannot_use(raw: str) -> None:
    with pytest.raises(ConfigError):
        normalise(raw, "asyncpg")


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        pytest.param("mysql://app_user:hunter2-secret@h/db", "asyncpg", id="mysql"),
        pytest.param("mysql://app_user:hunter2-secret@h/db", "psycopg2", id="mysql-psycopg2"),
        pytest.param("postgresql://app_user:hunter2-secret@h:notaport/db", "asyncpg", id="port"),
        pytest.param(
            "postgresql://app_user:hunter2-secret@h/db?sslmode=bogus", "asyncpg", id="sslmode"
        ),
    ],
)
def test_a_refused_url_does_not_echo_its_password(raw: str, driver: Driver) -> None:
    with pytest.raises(ConfigError) as error:
        normalise(raw, driver)

    assert "hunter2-secret" not in str(error.value)


# The development key ------------------------------------------------------------------------


def test_the_development_key_is_generated_once_and_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    first = embedded.development_secret_key(data_dir)
    second = embedded.development_secret_key(data_dir)

    assert first == second
    assert len(first) >= 32
    make_settings(data_dir, secret_key=first)  # a key Settings accepts
    key_file = data_dir / embedded.SECRET_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_development_keys_differ_between_data_folders(tmp_path: Path) -> None:
    first = embedded.development_secret_key(tmp_path / "one")
    second = embedded.development_secret_key(tmp_path / "two")

    assert first != second


def test_an_empty_key_file_does_not_yield_an_empty_key(tmp_path: Path) -> None:
    """A key file that exists but holds no key yet (another process created it and has not
    written it, or was killed in between) must not become the signing key."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / embedded.SECRET_KEY_FILE).touch(mode=0o600)

    key = embedded.development_secret_key(data_dir)

    assert len(key) >= 32
