"""docker-compose.yml and the Dockerfiles, checked the way Compose itself reads them.

No Docker engine is needed: `docker-compose config` validates and resolves the file, and the
tests assert the wiring the README promises (cluster, one-shot init and migration, health
checks, what is published to the host).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[4]
COMPOSE_FILE = REPO / "docker-compose.yml"
NODES = ("roach1", "roach2", "roach3")


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


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    command = compose_command()
    if command is None:
        pytest.skip("neither docker-compose (Debian package) nor `docker compose` is installed")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin"},  # no SECRET_KEY etc.: the defaults must resolve
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


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def test_the_stack_has_every_service(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {
        *NODES,
        "roach-init",
        "migrate",
        "seed",
        "backend",
        "jupyter",
    }


@pytest.mark.parametrize("node", NODES)
def test_cockroach_nodes_form_one_cluster(compose: dict[str, Any], node: str) -> None:
    service = services(compose)[node]
    command = command_text(service)

    assert command.startswith("start ")
    assert "--join=roach1,roach2,roach3" in command
    assert "healthcheck" in service
    assert service["volumes"], "a node without a volume loses its data on recreation"
    assert 26257 not in published_ports(service), "the SQL port must stay inside the network"


def test_cluster_is_initialised_once_and_the_database_created(compose: dict[str, Any]) -> None:
    init = services(compose)["roach-init"]
    script = command_text(init)

    assert "cockroach init" in script
    assert "already been initialized" in script  # a restart of the stack is not an error
    assert "CREATE DATABASE IF NOT EXISTS minor_illusion" in script
    assert set(depends(init)) == set(NODES)
    assert init.get("restart") in (None, "no")


def test_exactly_one_service_migrates_and_the_others_wait_for_it(
    compose: dict[str, Any],
) -> None:
    everything = services(compose)

    assert command_text(everything["migrate"]) == "migrate"
    assert depends(everything["migrate"]) == {"roach-init": "service_completed_successfully"}
    for name in ("backend", "seed"):
        assert depends(everything[name])["migrate"] == "service_completed_successfully"
        assert everything[name]["environment"].get("MIGRATE", "false") == "false"


def test_backend_serves_with_a_readiness_healthcheck(compose: dict[str, Any]) -> None:
    backend = services(compose)["backend"]

    assert command_text(backend) == "serve"
    assert published_ports(backend) == {8000}
    assert "/readyz" in " ".join(backend["healthcheck"]["test"])
    assert backend["environment"]["DATABASE_URL"].startswith("cockroachdb://")
    assert len(backend["environment"]["SECRET_KEY"]) >= 32
    assert (REPO / "backend" / "Dockerfile").exists()


def test_jupyter_mounts_notebooks_and_backend_code(compose: dict[str, Any]) -> None:
    jupyter = services(compose)["jupyter"]
    mounts = {bind_mount(volume) for volume in jupyter["volumes"]}

    assert ("jupyter/notebooks", "/home/jovyan/notebooks", False) in mounts
    assert ("backend/src", "/home/jovyan/backend", True) in mounts
    assert jupyter["environment"]["API_URL"] == "http://backend:8000"
    assert jupyter["environment"]["DATABASE_URL"].startswith("cockroachdb://")
    assert depends(jupyter)["backend"] == "service_healthy"


def test_backend_dockerfile_runs_unprivileged_under_tini_with_a_healthcheck() -> None:
    dockerfile = (REPO / "backend" / "Dockerfile").read_text()
    runtime = dockerfile.split(" AS runtime", 1)[1]

    assert "USER app" in runtime
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "docker-entrypoint.sh"]' in runtime
    assert "HEALTHCHECK" in runtime
    assert "/healthz" in runtime
    assert "poetry install --only main" in dockerfile
    assert "poetry" not in runtime.lower(), "Poetry belongs to the build stage only"
