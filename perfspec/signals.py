"""SIGINT/SIGTERM handled the same way by every long-running command: a handler for the duration of a
``with`` block, the previous handlers restored after it.

Why one helper: the receiver, the log tailer and the campaign runner each stop cleanly on Ctrl-C or a
``kill`` (a container stop sends SIGTERM); three hand-written copies drifted (one forgot the thread check).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[str], None]) -> Iterator[None]:
    """Call ``handler(signal name)`` on SIGINT/SIGTERM inside the block. Python delivers signals to the
    main thread only, so elsewhere (a Prefect worker thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def delivered(signum: int, _frame: FrameType | None) -> None:
        handler(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, delivered) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
