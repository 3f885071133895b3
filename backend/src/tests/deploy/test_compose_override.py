"""docker-compose.override.yml: `docker-compose up` runs the backend, migrate and seed from the
Dockerfile's development stage on the working tree; `-f docker-compose.yml` alone is the
production stack, untouched.

Both are resolved by `docker-compose config`, as Compose itself merges them.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.deploy.compose_files import (
    BACKEND_DIR,
    COMPOSE_FILE,
    DOCKERFILE,
    NODES,
    OVERRIDE_FILE,
    bind_mounts,
    build_of,
    compose_config,
    require,
    services,
)
from tests.deploy.dockerfile import stages

DEVELOPED = ("migrate", "seed", "backend")
"""The services that run the backend image, and so the development one under the override."""
SOURCE_MOUNT = ("backend/src", "/app", False)


@pytest.fixture(scope="module")
def production() -> dict[str, Any]:
    return compose_config(COMPOSE_FILE)


@pytest.fixture(scope="module")
def development() -> dict[str, Any]:
    require(OVERRIDE_FILE)
    return compose_config(COMPOSE_FILE, OVERRIDE_FILE)


def test_without_the_override_nothing_of_development_is_there(
    production: dict[str, Any],
) -> None:
    for name in DEVELOPED:
        service = services(production)[name]
        assert service["image"] == "minor-illusion-backend", name
        assert SOURCE_MOUNT not in bind_mounts(service), name
        assert "TEST_COCKROACH_URL" not in service["environment"], name
        assert build_of(service).get("target") is None, name


def test_compose_reads_the_override_by_itself(development: dict[str, Any]) -> None:
    assert compose_config() == development


def test_the_backend_builds_the_development_stage_of_the_backend_dockerfile(
    development: dict[str, Any],
) -> None:
    names = [each.name for each in stages(DOCKERFILE.read_text())]

    for name in DEVELOPED:
        build = build_of(services(development)[name])
        assert build["context"] == str(BACKEND_DIR), name
        assert build.get("dockerfile", "Dockerfile") == "Dockerfile", name
        assert build["target"] == "development", name
    assert "development" in names[:-1], "a stage of the Dockerfile, and not its default"


def test_the_development_image_does_not_take_the_production_name(
    production: dict[str, Any], development: dict[str, Any]
) -> None:
    images = {services(development)[name]["image"] for name in DEVELOPED}

    assert len(images) == 1, "one development image for the three services"
    assert images.isdisjoint({services(production)[name]["image"] for name in DEVELOPED})


def test_the_working_tree_is_mounted_over_the_image_source(
    development: dict[str, Any],
) -> None:
    for name in DEVELOPED:
        assert SOURCE_MOUNT in bind_mounts(services(development)[name]), name


def test_the_tests_in_the_backend_find_the_notebooks(development: dict[str, Any]) -> None:
    backend = services(development)["backend"]
    notebooks = backend["environment"]["NOTEBOOKS_DIR"]

    assert ("jupyter/notebooks", notebooks, True) in bind_mounts(backend)


def test_the_tests_in_the_backend_reach_the_cluster(development: dict[str, Any]) -> None:
    environment = services(development)["backend"]["environment"]
    url = make_url(environment["TEST_COCKROACH_URL"])

    assert url.get_backend_name() == "cockroachdb"
    assert url.host in NODES
    assert url.database != make_url(environment["DATABASE_URL"]).database, (
        "the tests create their own database beside the served one"
    )


def test_the_dev_user_takes_the_developer_uid(development: dict[str, Any]) -> None:
    assert build_of(services(development)["backend"])["args"]["DEV_UID"] == "1000"
    assert build_of(services(development)["backend"])["args"]["DEV_GID"] == "1000"

    mine = compose_config(env={"DEV_UID": "1234", "DEV_GID": "2345"})
    args = build_of(services(mine)["backend"])["args"]
    assert (args["DEV_UID"], args["DEV_GID"]) == ("1234", "2345")


@pytest.mark.parametrize("name", DEVELOPED)
def test_the_override_keeps_the_production_wiring(
    production: dict[str, Any], development: dict[str, Any], name: str
) -> None:
    """Only how the image is built and named, the mount and added variables differ."""
    changed = {"build", "image", "volumes", "environment"}
    before, after = services(production)[name], services(development)[name]

    assert {k: v for k, v in before.items() if k not in changed} == {
        k: v for k, v in after.items() if k not in changed
    }
    assert before["environment"].items() <= after["environment"].items()
