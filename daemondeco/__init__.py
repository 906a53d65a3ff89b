"""daemondeco: turn any function into a well-behaved Unix daemon with a decorator.

>>> from daemondeco import daemon, notify_ready
>>> @daemon(pidfile="/tmp/ticker.pid", stdout="/tmp/ticker.log", ready="notify")
... def ticker():
...     notify_ready()
...     ...

Public names are re-exported here; the modules behind them are private.
"""

from __future__ import annotations

from ._control import DaemonProcess
from ._decorators import daemon, daemonize, process_daemonize
from ._errors import AlreadyRunningError, DaemonError, DaemonWarning, StartupError
from ._pidfile import Pidfile
from ._ready import notify_ready, notify_status

__version__ = "0.1.0.dev0"

__all__ = [
    "AlreadyRunningError",
    "DaemonError",
    "DaemonProcess",
    "DaemonWarning",
    "Pidfile",
    "StartupError",
    "daemon",
    "daemonize",
    "notify_ready",
    "notify_status",
    "process_daemonize",
]
