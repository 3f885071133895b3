"""The change feed's tokens: where a client is in one organization's feed, signed.

A token is opaque to clients and bound to its organization: a forged or altered token, or one
of another organization, is refused (422) rather than trusted, since a cursor moved by hand
could skip changes silently. The signature uses the service's signing keys, so a token stays
valid across replicas and through a key rotation (SECRET_KEY_PREVIOUS).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from app.models.changes import KINDS, Cursor

STAGES: tuple[str, ...] = ("organization", "member", "space", "todo", "changes")
"""A snapshot's stages (one per kind, in SNAPSHOT_ORDER) and then the log."""
_SIGNATURE_BYTES = 16
_CONTEXT = b"minor-illusion change feed token v1\x00"


class BadToken(ValueError):
    """Not a token of this organization's feed; the message says what is wrong."""


@dataclass(frozen=True)
class FeedToken:
    organization_id: uuid.UUID
    stage: str
    position: Decimal
    """In a snapshot: the horizon it started at. In the log: the cursor's position."""
    after: tuple[str, ...] = ()
    """In a snapshot: the last object's cursor values. In the log: (kind, object id)."""

    def cursor(self) -> Cursor:
        """Where a log token stands in the log (comparable with another's); BadToken for a
        log cursor naming no kind of object."""
        if not self.after:
            return Cursor(self.position)
        kind, object_id = self.after
        if kind not in KINDS:
            raise BadToken("not a change feed token")
        return Cursor(self.position, kind, uuid.UUID(object_id))

    def encode(self, key: str) -> str:
        body = json.dumps(
            [str(self.organization_id), self.stage, str(self.position), list(self.after)],
            separators=(",", ":"),
        ).encode()
        return _b64(body) + "." + _b64(_sign(key, body))

    @classmethod
    def decode(cls, text: str, keys: tuple[str, ...], organization_id: uuid.UUID) -> FeedToken:
        body_text, dot, signature_text = text.partition(".")
        if not dot:
            raise BadToken("not a change feed token")
        try:
            body, signature = _unb64(body_text), _unb64(signature_text)
        except (binascii.Error, ValueError):
            raise BadToken("not a change feed token") from None
        if not any(hmac.compare_digest(signature, _sign(key, body)) for key in keys):
            raise BadToken("the token was not issued by this service, or was altered")
        token = _parse(body)
        if token.organization_id != organization_id:
            raise BadToken("the token belongs to another organization's feed")
        return token


def _parse(body: bytes) -> FeedToken:
    try:
        organization, stage, position, after = json.loads(body)
        token = FeedToken(uuid.UUID(organization), stage, Decimal(position), tuple(after))
    except (ValueError, TypeError, InvalidOperation):
        raise BadToken("not a change feed token") from None
    if token.stage not in STAGES or not all(isinstance(value, str) for value in token.after):
        raise BadToken("not a change feed token")
    return token


def _sign(key: str, body: bytes) -> bytes:
    return hmac.new(key.encode(), _CONTEXT + body, hashlib.sha256).digest()[:_SIGNATURE_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    if not text or len(text) > 4096:
        raise ValueError("bad length")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def cursor_values(stage: str, values: tuple[str, ...]) -> tuple[Any, ...]:
    """A snapshot cursor's values as the statement takes them (ids, times)."""
    if stage == "todo":
        space_id, created_at, todo_id = values
        return uuid.UUID(space_id), datetime.fromisoformat(created_at), uuid.UUID(todo_id)
    (object_id,) = values
    return (uuid.UUID(object_id),)
