"""Versions as ETags: `If-Match` as the versions a change expects, `If-None-Match` as the
versions a reader already holds.

A todo's `version` grows by one with every change, so `"3"` names one state of it. A client
sends back what it read (`If-Match: "3"`, or just `3` as API.md allows); a change made
meanwhile turns the request into a 412 instead of silently overwriting it.
"""

from __future__ import annotations

from app.errors import InvalidInput

IF_MATCH = "If-Match"
OPTIONAL_WHITESPACE = " \t"
"""HTTP's OWS around list items; `str.strip()` would also drop other characters (such as
U+00A0), which would then be a valid If-Match that the document (IF_MATCH_PATTERN) refuses."""
MAX_VERSION = 2**31 - 1
"""The version column is a 32-bit integer: a larger tag names no state a todo can be in."""


def etag(version: int) -> str:
    return f'"{version}"'


def expected_versions(if_match: str | None) -> list[int] | None:
    """The versions `If-Match` accepts; None when any version will do (absent, or `*`)."""
    if if_match is None or if_match.strip(OPTIONAL_WHITESPACE) == "*":
        return None
    versions = []
    for part in if_match.split(","):
        tag = part.strip(OPTIONAL_WHITESPACE).removeprefix("W/")
        if len(tag) >= 2 and tag[0] == tag[-1] == '"':
            tag = tag[1:-1]
        if not (tag.isascii() and tag.isdigit()):
            raise InvalidInput(
                ["header", IF_MATCH],
                "If-Match must be a todo version, as a number or as its ETag",
                "if_match_invalid",
            )
        if len(tag) <= len(str(MAX_VERSION)) and int(tag) <= MAX_VERSION:
            versions.append(int(tag))  # larger ones can never match: a 412, as any stale tag
    return versions


IF_NONE_MATCH = "If-None-Match"


def none_match(if_none_match: str | None, version: int) -> bool:
    """Whether `If-None-Match` names the current version (or is `*`): the client's copy is
    current, so the answer is 304. Compared weakly, as RFC 9110 asks for GET; entries that
    are no version simply match nothing."""
    if if_none_match is None:
        return False
    if if_none_match.strip(OPTIONAL_WHITESPACE) == "*":
        return True
    current = str(version)
    for part in if_none_match.split(","):
        tag = part.strip(OPTIONAL_WHITESPACE).removeprefix("W/")
        if len(tag) >= 2 and tag[0] == tag[-1] == '"':
            tag = tag[1:-1]
        if tag == current:
            return True
    return False
