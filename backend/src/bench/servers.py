"""The two servers under load, started alike: the service and the bare-Quart ceiling.

Both read one Hypercorn TOML written for the run (the project's `hypercorn.toml` with the
worker class of the run) and get the same worker count, so the ceiling differs from the
service only in the application, which is what "fraction of the ceiling" is meant to say.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from bench.processes import LOOPBACK, BenchError

SOURCE_DIR = Path(__file__).resolve().parent.parent
"""`backend/src`: the working directory of both servers (so `bench.ceiling_app` imports)."""

PROJECT_HYPERCORN_CONFIG = SOURCE_DIR / "hypercorn.toml"
CEILING_APPLICATION = "bench.ceiling_app:app"

BENCH_SECRET_KEY = "minor-illusion-load-benchmark-signing-key-000048"  # noqa: S105 - bench only
"""A fixed key: the service refuses to start on a real DATABASE_URL without one."""

WORKER_CLASSES = ("asyncio", "uvloop")
"""Hypercorn's worker classes that can run a Quart (asyncio) app; trio cannot."""

_DROPPED_ENV = ("DATABASE_URL", "SECRET_KEY", "ROOT_PATH", "DATA_DIR")
"""Set by the benchmark (or, for ROOT_PATH, left out: the URLs it loads have no prefix)."""


def project_worker_class() -> str:
    """The worker class hypercorn.toml names (Hypercorn's own default: asyncio)."""
    value = _project_config().get("worker_class", "asyncio")
    return value if isinstance(value, str) and value in WORKER_CLASSES else "asyncio"


def write_hypercorn_config(path: Path, worker_class: str) -> Path:
    """The project's Hypercorn settings with this run's worker class, for both servers."""
    config = _project_config()
    config["worker_class"] = worker_class
    path.write_text("".join(f"{key} = {_toml_value(value)}\n" for key, value in config.items()))
    return path


def _project_config() -> dict[str, object]:
    if not PROJECT_HYPERCORN_CONFIG.exists():
        return {}
    with PROJECT_HYPERCORN_CONFIG.open("rb") as file:
        return dict(tomllib.load(file))


def _toml_value(value: object) -> str:
    """TOML for the flat values Hypercorn's config uses (JSON strings are TOML strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise BenchError(f"cannot copy {value!r} from {PROJECT_HYPERCORN_CONFIG}")


def serve_command(config: Path, port: int, workers: int, script: Path | None = None) -> list[str]:
    """`minor-illusion serve` from the virtualenv of this interpreter, or `script`."""
    script = script or Path(sys.executable).parent / "minor-illusion"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    return [
        *entry,
        "serve",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--config",
        str(config),
    ]


def serve_env(database_url: str, data_dir: Path) -> dict[str, str]:
    """The caller's environment (pool sizes, isolation level, ... pass through) plus ours.

    DATABASE_URL points at the benchmark's embedded PostgreSQL, so the service does not start
    one of its own; DATA_DIR is a scratch folder so nothing touches `backend/src/.data`. The
    log level is the service's default (INFO, one access line per request, into serve.log)
    unless the caller sets LOG_LEVEL: measured as it runs, not with its logging turned off.
    """
    env = {key: value for key, value in os.environ.items() if key not in _DROPPED_ENV}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=BENCH_SECRET_KEY,
        DATA_DIR=str(data_dir),
    )
    return env


def ceiling_command(config: Path, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hypercorn",
        "--config",
        str(config),
        "--bind",
        f"{LOOPBACK}:{port}",
        "--workers",
        str(workers),
        CEILING_APPLICATION,
    ]


def ceiling_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in _DROPPED_ENV}


def request_json(
    method: str,
    url: str,
    body: Mapping[str, object] | None = None,
    token: str | None = None,
) -> tuple[int, object]:
    """One request with the standard library (status, parsed JSON or None), for setting up."""
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (urllib.error.URLError, OSError) as error:
        raise BenchError(f"{method} {url} failed: {error}") from error
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def log_in(base_url: str, username: str, password: str) -> str:
    """A token through `POST /auth/login`, as a client gets one."""
    status, body = request_json(
        "POST", f"{base_url}/auth/login", {"username": username, "password": password}
    )
    if status != 200 or not isinstance(body, dict) or "access_token" not in body:
        raise BenchError(f"logging in as {username!r} answered {status}: {body!r}")
    return str(body["access_token"])
