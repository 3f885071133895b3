"""The fakes cannot drift from the DAOs they stand in for: same classmethods, same signatures.

Unit tests run handlers against the fakes; a fake whose signature differed from its real twin
would let a handler pass its tests and fail in production.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from app.models import Daos
from tests.fakes import fake_daos

FIELDS = [field.name for field in dataclasses.fields(Daos)]


def public_classmethods(dao: type) -> dict[str, inspect.Signature]:
    """The classmethods a class defines itself (not what SQLAlchemy's base adds)."""
    return {
        name: inspect.signature(getattr(dao, name))
        for name, member in vars(dao).items()
        if isinstance(member, classmethod) and not name.startswith("_")
    }


@pytest.mark.parametrize("field", FIELDS)
def test_every_dao_classmethod_has_a_fake_with_the_same_signature(field: str) -> None:
    real = public_classmethods(getattr(Daos.real(), field))
    fake = public_classmethods(getattr(fake_daos(), field))

    assert real, f"{field}: the real DAO has no classmethods to compare"
    assert sorted(fake) == sorted(real)
    for name, signature in real.items():
        assert fake[name] == signature, f"{field}.{name}"


def test_the_signature_check_sees_a_difference() -> None:
    class Real:
        @classmethod
        async def get(cls, executor: object, todo_id: int) -> None: ...

    class Drifted:
        @classmethod
        async def get(cls, executor: object, todo_id: str) -> None: ...

    assert public_classmethods(Real) != public_classmethods(Drifted)
