"""docker-compose.yml, checked the way Compose itself reads it.

No Docker engine is needed: `docker-compose config` validates and resolves the file, and the
tests assert the wiring the README promises (cluster, one-shot init and migration, health
checks, what is published to the host). The development override has its own tests
(test_compose_override.py), the backend's Dockerfile too (test_dockerfile.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.compose_files import (
    COMPOSE_FILE,
    NODES,
    bind_mount,
    command_text,
    compose_config,
    depends,
    published_ports,
    services,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml alone: the production stack, without the development override."""
    return compose_config(COMPOSE_FILE)


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


def test_jupyter_mounts_notebooks_and_backend_code(compose: dict[str, Any]) -> None:
    jupyter = services(compose)["jupyter"]
    mounts = {bind_mount(volume) for volume in jupyter["volumes"]}

    assert ("jupyter/notebooks", "/home/jovyan/notebooks", False) in mounts
    assert ("backend/src", "/home/jovyan/backend", True) in mounts
    assert jupyter["environment"]["API_URL"] == "http://backend:8000"
    assert jupyter["environment"]["DATABASE_URL"].startswith("cockroachdb://")
    assert depends(jupyter)["backend"] == "service_healthy"
