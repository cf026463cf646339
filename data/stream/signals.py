"""A stream consumer process's stop, from the signals that end it.

The launchers stop a worker with SIGTERM (serving/launcher.stop_process_group), a console with
Ctrl-C (SIGINT). Python's default for SIGTERM ends the process at once, without its run loop's
`finally`: the worker's partition leases were then held until they lapsed (30 s), and a worker
started in that time (`make live` starts the serving platform's right after the play's) stopped
with PartitionTaken. Handled, each signal ends the loop after the poll in progress, and the
leases are given back.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable


def stop_on_signals(signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT)) -> threading.Event:
    """An event set by any of `signals` (call from the main thread: Python's rule for handlers)."""
    stop = threading.Event()
    for sig in signals:
        signal.signal(sig, lambda signum, frame: stop.set())
    return stop
