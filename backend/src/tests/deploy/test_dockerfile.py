"""backend/Dockerfile, read stage by stage: the default target is the lean runtime image, and
the `development` stage (what docker-compose.override.yml builds) keeps everything it writes
out of the source that is mounted over /app.

Nothing is built here: that needs an engine, which these tests do not assume.
"""

from __future__ import annotations

import itertools
import shlex

import pytest

from tests.deploy.compose_files import DOCKERFILE, require
from tests.deploy.dockerfile import Stage, is_under, stages

ENTRYPOINT = '["/usr/bin/tini", "--", "docker-entrypoint.sh"]'
MOUNTED_SOURCE = "/app"


def stage(name: str) -> Stage:
    require(DOCKERFILE)
    found = {each.name: each for each in stages(DOCKERFILE.read_text())}
    assert name in found, f"no stage {name!r} in {DOCKERFILE}: {sorted(found)}"
    return found[name]


def default_target() -> Stage:
    require(DOCKERFILE)
    return stages(DOCKERFILE.read_text())[-1]


def pytest_cache_dir(addopts: str) -> str | None:
    words = shlex.split(addopts)
    for option, value in itertools.pairwise(words):
        if option == "-o" and value.startswith("cache_dir="):
            return value.removeprefix("cache_dir=")
    return None


def test_the_reader_joins_continued_lines_and_splits_env_like_a_shell() -> None:
    text = """
    # a comment
    FROM python:3.12-slim AS first
    ENV A=1 \\
        # a comment inside a continued instruction is dropped
        B="two words" \\
        PATH="/opt/venv/bin:$PATH"
    FROM --platform=linux/amd64 first
    USER dev
    ENV OLD form value
    """
    first, second = stages(text)

    assert (first.name, first.base, first.user) == ("first", "python:3.12-slim", "root")
    assert first.variables("ENV") == {"A": "1", "B": "two words", "PATH": "/opt/venv/bin:$PATH"}
    assert (second.name, second.base, second.user) == ("1", "first", "dev")
    assert second.variables("ENV") == {"OLD": "form value"}


def test_the_default_target_is_the_runtime_stage_after_the_development_one() -> None:
    require(DOCKERFILE)
    names = [each.name for each in stages(DOCKERFILE.read_text())]

    assert names[-1] == "runtime"
    assert "development" in names
    assert names.index("development") < names.index("runtime")


def test_the_runtime_image_has_no_poetry_no_tox_and_no_tests() -> None:
    runtime, build = default_target(), stage("build")
    copied_from = [
        word.removeprefix("--from=")
        for arguments in runtime.arguments("COPY")
        for word in arguments.split()
        if word.startswith("--from=")
    ]

    assert "poetry" not in runtime.text.lower(), "Poetry belongs to the build stage only"
    assert "tox" not in runtime.text.lower()
    assert copied_from == ["build"], "the runtime takes /app from the build stage alone"
    assert "poetry install --only main" in build.text
    assert "rm -rf tests" in build.text


def test_the_runtime_image_runs_unprivileged_under_tini_with_a_healthcheck() -> None:
    runtime = default_target()

    assert runtime.user == "app"
    assert runtime.arguments("ENTRYPOINT") == [ENTRYPOINT]
    assert "/healthz" in " ".join(runtime.arguments("HEALTHCHECK"))


def test_the_development_image_never_runs_as_root() -> None:
    development = stage("development")
    uid_default = development.variables("ARG").get("DEV_UID")

    assert development.user not in {"root", "0"}
    assert uid_default not in {None, "0"}
    assert 'if [ "$DEV_UID" = 0 ]' in development.text, "DEV_UID=0 must fail the build"


def test_the_development_image_writes_nothing_into_the_mounted_source() -> None:
    env = stage("development").variables("ENV")
    outside = {
        name: env.get(name, "")
        for name in (
            "VIRTUAL_ENV",
            "DATA_DIR",
            "TOX_WORK_DIR",
            "PYTHONPYCACHEPREFIX",
            "MYPY_CACHE_DIR",
            "RUFF_CACHE_DIR",
            "HYPOTHESIS_STORAGE_DIRECTORY",
        )
    }
    outside["pytest cache_dir"] = pytest_cache_dir(env.get("PYTEST_ADDOPTS", "")) or ""

    assert all(outside.values()), f"unset: {[name for name, v in outside.items() if not v]}"
    assert not [name for name, path in outside.items() if is_under(path, MOUNTED_SOURCE)]
    assert env["PATH"].startswith(f"{env['VIRTUAL_ENV']}/bin:")


def test_the_development_image_has_poetry_with_its_plugins_and_every_group() -> None:
    development = stage("development")

    assert "poetry-plugin-shell" in development.text
    assert "poetry-plugin-pypi-mirror" in development.text
    assert "poetry install --with dev" in development.text
    assert "tox exec -e py" in development.text, "tox's environment is made at build time"
    assert "tini" in development.text


@pytest.mark.parametrize("instruction", ["ENTRYPOINT", "CMD", "EXPOSE"])
def test_the_development_image_starts_like_the_runtime_one(instruction: str) -> None:
    assert stage("development").arguments(instruction) == default_target().arguments(instruction)
