"""How a serving process hands memory back to the system (glibc's malloc).

Password hashing needs a 19 MiB buffer per hash (security.ARGON2_MEMORY_KIB). Two things keep
such buffers resident after the hash:

- Arenas: with the default arena count, each thread that allocates while another holds the
  main arena gets an arena of its own and keeps it, so every hashing thread would hold on to
  its last buffer. `MALLOC_ARENA_MAX=1` prevents it, but glibc reads it only as a process
  starts, which suits spawned worker processes and not the process that is already running;
  `mallopt` sets the same limit at run time, for arenas created from then on.
- Holes: a freed buffer below memory still in use (a request's objects allocated meanwhile)
  cannot be given back by shrinking the heap, and stays resident. `malloc_trim` returns the
  free pages of such holes too; it runs once no hash is in progress, so a steady stream of
  logins keeps reusing its buffers, and only the first hash after a quiet spell pays to fault
  its pages in again.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

M_ARENA_MAX = -8
"""glibc's malloc.h parameter number for the arena limit."""


def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None  # not glibc
    return function


def limit_to_one_arena() -> bool:
    """Allow one arena from now on, unless the operator set MALLOC_ARENA_MAX (which glibc has
    applied already); False where that is not possible (no glibc, or a setting of theirs)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _libc_function("mallopt")
    return mallopt is not None and bool(mallopt(M_ARENA_MAX, 1))


_malloc_trim = _libc_function("malloc_trim")


def release_free_memory() -> None:
    """Give the free pages of the heap back to the system (nothing without glibc)."""
    if _malloc_trim is not None:
        _malloc_trim(0)
