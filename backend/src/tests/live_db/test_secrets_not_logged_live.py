"""Passwords and tokens never reach the log: a real `minor-illusion serve` at DEBUG, in both
log formats, taken through every way a login or a token can succeed or fail, and its whole
output searched for them afterwards."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.db.database import Database
from app.security import issue_token
from tests.conftest import TEST_SECRET, register_and_log_in, served, unique_name

pytestmark = pytest.mark.live_db

SOURCE_DIR = Path(__file__).resolve().parents[2]
PASSWORD = "Correct-Horse-password-for-the-log-test"
WRONG_PASSWORD = "Wrong-Battery-password-for-the-log-test"
OTHER_SECRET = "another-signing-key-that-is-long-enough-9876543210"


@pytest.fixture(params=["false", "true"], ids=["text-log", "json-log"])
def server(
    request: pytest.FixtureRequest, database_url: str, live_database: Database, tmp_path: Path
) -> Iterator[tuple[str, Path]]:
    """The service on the live test database (emptied afterwards by `live_database`); yields
    its base URL and the file its stdout and stderr go to."""
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY_PREVIOUS", "ROOT_PATH"}}
    env.update(
        DATABASE_URL=database_url,
        SECRET_KEY=TEST_SECRET,
        LOG_LEVEL="DEBUG",
        LOG_JSON=str(request.param),
        DATA_DIR=str(tmp_path / "data"),
    )
    with served(env, log, "--no-migrate", ready_path="/healthz") as serve:
        yield serve.base_url, log


def test_passwords_and_tokens_never_reach_the_log(server: tuple[str, Path]) -> None:
    base_url, log = server
    name = unique_name()
    with httpx.Client(base_url=base_url, timeout=30) as client:
        token = register_and_log_in(client, name, PASSWORD)
        user_id = uuid.UUID(client.get("/me", headers=_bearer(token)).json()["id"])
        foreign_token = issue_token(user_id, OTHER_SECRET, 60)
        expired_token = issue_token(user_id, TEST_SECRET, -10)

        statuses = [
            client.post(
                "/auth/login",
                data={"grant_type": "password", "username": name, "password": PASSWORD},
            ).status_code,
            client.post(
                "/auth/login", json={"username": name, "password": PASSWORD * 8}
            ).status_code,
            client.post(
                "/auth/login",
                data={"grant_type": "implicit", "username": name, "password": PASSWORD},
            ).status_code,
            client.post(
                "/auth/login",
                content=json.dumps({"username": name, "password": PASSWORD})[:-1],
                headers={"Content-Type": "application/json"},
            ).status_code,
            client.post(
                "/auth/register", json={"name": "no spaces", "password": PASSWORD}
            ).status_code,
            client.get("/me", headers=_bearer(foreign_token)).status_code,
            client.get("/me", headers=_bearer(expired_token)).status_code,
            client.get("/me", headers={"Authorization": f"Token {token}"}).status_code,
        ]
        statuses += [
            client.post(
                "/auth/login", json={"username": name, "password": WRONG_PASSWORD}
            ).status_code
            for _ in range(6)  # past the default limit of 5 failures per user name
        ]

    assert statuses == [200, 422, 422, 400, 422, 401, 401, 401] + [401] * 5 + [429]
    output = log.read_text()
    assert output.count("/auth/login") >= 10, output  # the access lines are in the log
    for secret in (PASSWORD, WRONG_PASSWORD, token, foreign_token, expired_token, TEST_SECRET):
        assert secret not in output
        assert secret.rsplit(".", 1)[-1] not in output  # nor a JWT's signature alone


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
