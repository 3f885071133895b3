"""Secrets a development setup makes up once and keeps in its data folder.

The embedded database's signing key and the demo users' password are both generated on first
use and then read back by every later process (workers, restarts, `seed`, the notebooks), so
that what one process issued or printed stays valid for the next.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def kept_secret(path: Path, *, min_length: int, nbytes: int) -> str:
    """The secret in `path`, or a new one of `nbytes` random bytes written there (mode 0600).

    The file appears complete or not at all (written aside, then linked into place), so a
    concurrent first use never reads a partial secret, and of two processes racing to create
    it both end up with the one that was linked first. A file shorter than `min_length` (left
    empty or truncated by something else) is replaced, as it is no use as a secret.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = path.read_text().strip() if path.exists() else ""
    if len(secret) >= min_length:
        return secret
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secrets.token_urlsafe(nbytes))
    try:
        if path.exists():
            os.replace(scratch, path)
        else:
            os.link(scratch, path)  # fails if another process linked its secret first: use that
    except FileExistsError:
        pass
    finally:
        scratch.unlink(missing_ok=True)
    return path.read_text().strip()
