"""Rotating SECRET_KEY: new tokens are signed with SECRET_KEY, tokens of SECRET_KEY_PREVIOUS
stay valid until they expire, and any other key is refused."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError
from quart import Quart
from quart.typing import TestClientProtocol as QuartClient
from quart.wrappers import Response

from app.main import create_app
from app.security import issue_token
from app.settings import Settings
from tests import fakes
from tests.conftest import TEST_SECRET, login, make_settings, register, unique_name
from tests.unit.assertions import assert_unauthorized

NEW_SECRET = "the-new-signing-key-after-the-rotation-0123456789"
OLD_SECRET = TEST_SECRET


@pytest.fixture
async def app(data_dir: Path, fake_database: fakes.FakeDatabase) -> AsyncIterator[Quart]:
    """The unit app in the middle of a rotation from OLD_SECRET to NEW_SECRET."""
    fakes.reset()
    settings = make_settings(data_dir, secret_key=NEW_SECRET, secret_key_previous=OLD_SECRET)
    app = create_app(settings, daos=fakes.fake_daos(), database=fake_database)
    async with app.test_app():
        yield app
    fakes.reset()


async def _me(client: QuartClient, token: str) -> Response:
    return await client.get("/me", headers={"Authorization": f"Bearer {token}"})


async def _stored_user_id() -> uuid.UUID:
    user = await fakes.FakeUserDAO.create(None, unique_name(), "unused")
    assert user is not None
    return user.id


# Settings -----------------------------------------------------------------------------------


def test_the_previous_key_needs_the_same_minimum_length(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SECRET_KEY", NEW_SECRET)
    monkeypatch.setenv("SECRET_KEY_PREVIOUS", "x" * 31)

    with pytest.raises(ValidationError) as error:
        Settings(data_dir=tmp_path)

    assert {str(item["loc"][0]) for item in error.value.errors()} == {"secret_key_previous"}
    assert "SECRET_KEY_PREVIOUS must be at least 32 characters" in str(error.value)
    assert "x" * 31 not in str(error.value.errors(include_input=False))


def test_the_previous_key_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SECRET_KEY", NEW_SECRET)
    monkeypatch.setenv("SECRET_KEY_PREVIOUS", OLD_SECRET)

    settings = Settings(data_dir=tmp_path)

    assert settings.signing_key() == NEW_SECRET
    assert settings.verification_keys() == (NEW_SECRET, OLD_SECRET)
    assert OLD_SECRET not in repr(settings)


@pytest.mark.parametrize(
    ("previous", "keys"),
    [
        pytest.param(None, (NEW_SECRET,), id="no-rotation"),
        pytest.param("", (NEW_SECRET,), id="blank-is-unset"),
        pytest.param(NEW_SECRET, (NEW_SECRET,), id="same-as-current"),
        pytest.param(OLD_SECRET, (NEW_SECRET, OLD_SECRET), id="rotation"),
    ],
)
def test_verification_keys_start_with_the_signing_key(
    tmp_path: Path, previous: str | None, keys: tuple[str, ...]
) -> None:
    settings = make_settings(tmp_path, secret_key=NEW_SECRET, secret_key_previous=previous)

    assert settings.verification_keys() == keys


# The API during a rotation ------------------------------------------------------------------


async def test_login_signs_with_the_new_key(client: QuartClient) -> None:
    name = unique_name()
    await register(client, name)

    token = await login(client, name)

    jwt.decode(token, NEW_SECRET, algorithms=["HS256"])
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, OLD_SECRET, algorithms=["HS256"])


async def test_an_expired_token_of_the_previous_key_is_refused(client: QuartClient) -> None:
    response = await _me(client, issue_token(await _stored_user_id(), OLD_SECRET, -10))

    await assert_unauthorized(response)


async def test_after_the_rotation_the_previous_keys_tokens_are_refused(
    data_dir: Path, fake_database: fakes.FakeDatabase
) -> None:
    fakes.reset()
    finished = make_settings(data_dir, secret_key=NEW_SECRET)
    app = create_app(finished, daos=fakes.fake_daos(), database=fake_database)
    async with app.test_app():
        client = app.test_client()
        user_id = await _stored_user_id()

        old = await _me(client, issue_token(user_id, OLD_SECRET, 60))
        new = await _me(client, issue_token(user_id, NEW_SECRET, 60))

        await assert_unauthorized(old)
        assert new.status_code == 200
    fakes.reset()
