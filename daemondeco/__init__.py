"""daemondeco: turn any function into a well-behaved Unix daemon with a decorator.

>>> from daemondeco import daemon, notify_ready
>>> @daemon(pidfile="/tmp/ticker.pid", stdout="/tmp/ticker.log", ready="notify")
... def ticker():
...     notify_ready()
...     ...

Public names are re-exported here; the modules behind them are private.
"""

from ._control import DaemonProcess
from ._decorators import DaemonFunction, WorkerFunction, daemon, daemonize, process_daemonize
from ._errors import AlreadyRunningError, DaemonError, DaemonWarning, ReloadError, StartupError
from ._pidfile import Pidfile
from ._runtime import notify_extend, notify_ready, notify_status
from ._version import __version__ as __version__

__all__ = [
    "AlreadyRunningError",
    "DaemonError",
    "DaemonFunction",
    "DaemonProcess",
    "DaemonWarning",
    "Pidfile",
    "ReloadError",
    "StartupError",
    "WorkerFunction",
    "daemon",
    "daemonize",
    "notify_extend",
    "notify_ready",
    "notify_status",
    "process_daemonize",
]

# Tracebacks and reprs name the public home (daemondeco.StartupError), not a private module.
for _public in (
    AlreadyRunningError,
    DaemonError,
    DaemonFunction,
    DaemonProcess,
    DaemonWarning,
    Pidfile,
    ReloadError,
    StartupError,
    WorkerFunction,
):
    _public.__module__ = __name__
del _public
