"""A nesting limit for request JSON, checked before the parser sees the document.

Python's `json` recurses once per array or object, so a body of a few kilobytes of `[` makes
it raise RecursionError (a 500), and anything just under the interpreter's limit costs deep
recursion in the validators too. The check runs in the app's JSON provider, which is what
`request.get_json()` parses with, so every route that reads a JSON body (`json_body`, the
login form's JSON branch, quart-schema's own decorators) goes through it without opting in.

Nesting is counted as arrays and objects around a value: `{"a": [1]}` is 2 levels deep.
A document nested deeper than the limit is a 422 in the validation-error shape (it is
well-formed JSON the service will not take); brackets that cannot balance are a 400, as
any other malformed body.
"""

from __future__ import annotations

from typing import Any

from flask.json.provider import JSONProvider
from quart import Quart
from werkzeug.sansio.response import Response as SansioResponse

from app.errors import InvalidInput

JSON_TOO_DEEP = "json_too_deep"

# Keep only brackets, and fold objects onto arrays: depth does not care which is which
# (the parser refuses `[}` afterwards, at a depth the check has already bounded).
_FOLD_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPEN = ord("[")


class JSONTooDeep(InvalidInput):
    """A 422: the body nests arrays and objects deeper than MAX_JSON_DEPTH."""

    def __init__(self, limit: int) -> None:
        super().__init__(["body"], f"JSON nested deeper than {limit} levels", JSON_TOO_DEEP)


def check_nesting(document: str | bytes, limit: int) -> None:
    """Raise JSONTooDeep when `document` nests deeper than `limit`, and ValueError when its
    brackets cannot balance; return quietly otherwise (it may still be malformed).

    Every body this API takes has too few brackets to reach the limit, which one count
    shows. Anything else is reduced to its brackets outside strings by C-speed passes and
    then walked once; at 1 MiB that costs about as much as `json.loads` of the same body.
    """
    if isinstance(document, str):
        if document.count("[") + document.count("{") <= limit:
            return
        raw = document.encode("utf-8", "surrogatepass")
    else:
        if document.count(b"[") + document.count(b"{") <= limit:
            return
        raw = document
    brackets = _brackets_outside_strings(raw)
    # Dropping every empty pair (`[]` once folded) lowers the deepest point of a balanced
    # document by exactly one and keeps balance as it was; it often shrinks the walk a lot.
    without_empty_pairs = brackets.replace(b"[]", b"")
    depth_left = limit - 1 if len(without_empty_pairs) < len(brackets) else limit
    depth = 0
    for byte in without_empty_pairs:
        if byte == _OPEN:
            depth += 1
            if depth > depth_left:
                raise JSONTooDeep(limit)
        else:
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced brackets")
    if depth:
        raise ValueError("unbalanced brackets")


def _brackets_outside_strings(raw: bytes) -> bytes:
    """The document's brackets outside JSON strings, `{}` folded onto `[]`.

    Escaped backslashes go first, then escaped quotes, so every quote left delimits a
    string and splitting on quotes alternates between outside and inside.
    """
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    outside = b"".join(unescaped.split(b'"')[::2])
    return outside.translate(_FOLD_TO_SQUARE, _NOT_BRACKETS)


class DepthLimitedJSONProvider(JSONProvider):
    """The app's JSON provider with `check_nesting` in front of `loads`; the rest is the
    provider it wraps (quart-schema's, which serialises pydantic models)."""

    def __init__(self, app: Quart, inner: JSONProvider, max_depth: int) -> None:
        super().__init__(app)
        self.inner = inner
        self.max_depth = max_depth

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self.inner.dumps(obj, **kwargs)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        check_nesting(s, self.max_depth)
        try:
            return self.inner.loads(s, **kwargs)
        except RecursionError:
            # Only reachable when the stack is already deep; still the client's document.
            raise JSONTooDeep(self.max_depth) from None

    def response(self, *args: Any, **kwargs: Any) -> SansioResponse:
        return self.inner.response(*args, **kwargs)


def register_json_limits(app: Quart, max_depth: int) -> None:
    """Wrap the app's JSON provider; call after QuartSchema, which installs its own."""
    app.json = DepthLimitedJSONProvider(app, app.json, max_depth)
