"""The signals the processes of the service send each other, named in one place."""

from __future__ import annotations

import signal

STREAMS_END_SIGNAL = signal.SIGUSR1
"""What a supervising process sends its workers as a shutdown begins (app.cli): they end
their live event streams at once (app.live), while their other requests finish."""
