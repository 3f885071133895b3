"""libpq's certificate parameters become the SSLContext asyncpg needs."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from app.db.urls import asyncpg_ssl_context, normalise
from app.settings import ConfigError

CA_BUNDLE = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")

pytestmark = pytest.mark.skipif(not CA_BUNDLE.exists(), reason="no CA bundle on this machine")


def context_for(query: str) -> tuple[str, dict[str, object]]:
    url, args = asyncpg_ssl_context(normalise(f"cockroachdb://u@db:26257/app?{query}", "asyncpg"))
    return url.render_as_string(hide_password=False), args


def test_verify_full_checks_certificate_and_host_name() -> None:
    url, args = context_for(f"sslmode=verify-full&sslrootcert={CA_BUNDLE}")

    context = args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert "sslrootcert" not in url
    assert "ssl=" not in url  # the context replaces the mode


@pytest.mark.parametrize("mode", ["require", "verify-ca"])
def test_weaker_modes_verify_the_chain_but_not_the_host_name(mode: str) -> None:
    _, args = context_for(f"sslmode={mode}&sslrootcert={CA_BUNDLE}")

    context = args["ssl"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert not context.check_hostname


def test_without_certificate_files_the_mode_passes_through() -> None:
    url, args = context_for("sslmode=require")

    assert args == {}
    assert "ssl=require" in url


def test_disable_ignores_certificate_files() -> None:
    url, args = context_for(f"sslmode=disable&sslrootcert={CA_BUNDLE}")

    assert args == {}
    assert "ssl=disable" in url
    assert "sslrootcert" not in url


def test_missing_certificate_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        context_for(f"sslmode=verify-full&sslrootcert={tmp_path / 'absent.crt'}")
