"""DATABASE_URL in every accepted form, normalised for the two drivers the project uses.

The app talks asyncpg; Alembic and notebooks talk psycopg2. Users should be able to paste the
URL their database console shows (`postgresql://...`, `cockroachdb://...`, `postgres://...`)
and get the right driver on each side.
"""

from __future__ import annotations

import ssl
from typing import Literal

from sqlalchemy.engine import URL, make_url

from app.settings import ConfigError

Driver = Literal["asyncpg", "psycopg2"]

_BACKENDS = {"postgres": "postgresql", "postgresql": "postgresql", "cockroachdb": "cockroachdb"}

_LIBPQ_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
"""libpq's sslmode values; asyncpg's `ssl` argument accepts the same words."""


def normalise(raw: str, driver: Driver) -> URL:
    """Return `raw` as a SQLAlchemy URL for `driver`, whatever driver it named before."""
    try:
        url = make_url(raw)
    except Exception as error:  # sqlalchemy raises ArgumentError, or ValueError for a bad port
        raise ConfigError(f"DATABASE_URL is not a valid database URL: {error}") from None
    backend, _, _ = url.drivername.partition("+")
    if backend not in _BACKENDS:
        raise ConfigError(
            f"DATABASE_URL scheme {url.drivername!r} is not supported; "
            "use postgresql://, cockroachdb:// or one of their +asyncpg / +psycopg2 forms"
        )
    url = url.set(drivername=f"{_BACKENDS[backend]}+{driver}")
    return _ssl_for(url, driver)


def _ssl_for(url: URL, driver: Driver) -> URL:
    """libpq (psycopg2) calls it `sslmode`, asyncpg `ssl`, with the same values: accept either
    spelling in the URL and hand each driver its own."""
    query = dict(url.query)
    values = [query.pop(name) for name in ("sslmode", "ssl") if name in query]
    if not values:
        return url
    mode = values[0][-1] if isinstance(values[0], tuple) else values[0]
    if mode not in _LIBPQ_SSLMODES:
        raise ConfigError(
            f"DATABASE_URL sslmode={mode!r} is not one of {', '.join(sorted(_LIBPQ_SSLMODES))}"
        )
    query["ssl" if driver == "asyncpg" else "sslmode"] = mode
    return url.set(query=query)


_CERTIFICATE_FILES = ("sslrootcert", "sslcert", "sslkey")


def asyncpg_ssl_context(url: URL) -> tuple[URL, dict[str, object]]:
    """Turn libpq's certificate parameters into the SSLContext asyncpg takes instead.

    libpq reads `sslrootcert`, `sslcert` and `sslkey` from the URL; asyncpg accepts none of
    them, only `ssl=` a mode or a context. Returns the URL without them and the connect
    arguments carrying the context (empty when the URL names no certificate file).
    """
    query = dict(url.query)
    files = {name: str(query.pop(name)) for name in _CERTIFICATE_FILES if name in query}
    mode = str(query.get("ssl", "prefer"))
    if not files or mode == "disable":
        return url.set(query=query), {}
    try:
        context = ssl.create_default_context(cafile=files.get("sslrootcert"))
        if "sslcert" in files:
            context.load_cert_chain(files["sslcert"], files.get("sslkey"))
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"DATABASE_URL certificate files cannot be used: {error}") from None
    # libpq verifies the server's certificate against sslrootcert from `require` up, and its
    # host name only with verify-full.
    context.check_hostname = mode == "verify-full"
    query.pop("ssl", None)
    return url.set(query=query), {"ssl": context}


def is_cockroachdb(url: URL) -> bool:
    return url.get_backend_name() == "cockroachdb"
