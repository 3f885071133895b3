"""The repository's Compose files, read the way Compose reads them, for the deploy tests.

`docker-compose config` validates and resolves a file (defaults, merges of the override,
paths made absolute) without a Docker engine. The tests need the repository around this
source tree; where only backend/src is there (the development container mounts it alone at
/app), they skip and say so.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

SOURCE_DIR = Path(__file__).resolve().parents[2]
BACKEND_DIR = SOURCE_DIR.parent
REPO = BACKEND_DIR.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
OVERRIDE_FILE = REPO / "docker-compose.override.yml"
DOCKERFILE = BACKEND_DIR / "Dockerfile"
NODES = ("roach1", "roach2", "roach3")
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}
"""No SECRET_KEY, DEV_UID etc.: the defaults written in the files must resolve."""


def compose_command() -> list[str] | None:
    """`docker-compose` (v1, Debian's package), else the `docker compose` plugin (v2)."""
    if binary := shutil.which("docker-compose"):
        return [binary]
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    return None


def require(*paths: Path) -> None:
    """Skip unless every file is there (it is not when only backend/src is at hand)."""
    for path in paths:
        if not path.is_file():
            pytest.skip(f"{path} is not here: these tests need the repository around {SOURCE_DIR}")


def compose_config(*files: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker-compose [-f FILE ...] config` in the repository root, parsed; with no file,
    Compose finds docker-compose.yml and its override there by itself."""
    require(COMPOSE_FILE)
    command = compose_command()
    if command is None:
        pytest.skip("neither docker-compose (Debian package) nor `docker compose` is installed")
    options = [argument for path in files for argument in ("-f", str(path))]
    result = subprocess.run(
        [*command, *options, "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**CLEAN_ENV, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    parsed = yaml.safe_load(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


def depends(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}, whichever syntax the file used."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: spec.get("condition", "service_started") for name, spec in raw.items()}


def published_ports(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add(int(port["target"]))
        else:
            ports.add(int(str(port).split(":")[-1].split("/")[0]))
    return ports


def bind_mount(volume: str | dict[str, Any]) -> tuple[str, str, bool]:
    """(source relative to the repository, target, read-only) in either Compose syntax."""
    if isinstance(volume, dict):
        source, target, read_only = volume["source"], volume["target"], volume.get("read_only")
    else:
        source, target, *mode = volume.split(":")
        read_only = mode == ["ro"]
    return Path(source).relative_to(REPO).as_posix(), target, bool(read_only)


def bind_mounts(service: dict[str, Any]) -> set[tuple[str, str, bool]]:
    return {bind_mount(volume) for volume in service.get("volumes", [])}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def build_of(service: dict[str, Any]) -> dict[str, Any]:
    """A service's `build` as a mapping (Compose writes the short form as {context: ...});
    empty when the service only names an image."""
    build = service.get("build", {})
    return {"context": build} if isinstance(build, str) else dict(build)
