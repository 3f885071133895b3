"""One glibc malloc arena for a serving process, set from inside it.

With the default arena count, each thread that allocates while another holds the main arena
gets an arena of its own and keeps it: the password-hashing threads each hold on to their last
argon2 buffer (security.ARGON2_MEMORY_KIB) for good. With one arena freed buffers go back to
the system. `MALLOC_ARENA_MAX` does this, but glibc reads it only as a process starts, which
suits spawned worker processes and not the process that is already running; `mallopt` sets
the same limit at run time, for arenas created from then on.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8
"""glibc's malloc.h parameter number for the arena limit."""


def limit_to_one_arena() -> bool:
    """Allow one arena from now on, unless the operator set MALLOC_ARENA_MAX (which glibc has
    applied already); False where that is not possible (no glibc, or a setting of theirs)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, 1))
