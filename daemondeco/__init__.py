"""daemondeco: turn any function into a well-behaved Unix daemon with a decorator.

>>> from daemondeco import daemon, notify_ready
>>> @daemon(pidfile="/tmp/ticker.pid", stdout="/tmp/ticker.log", ready="notify")
... def ticker():
...     notify_ready()
...     ...

Public names are re-exported here; the modules behind them are private.
"""

from ._control import DaemonProcess
from ._errors import (
    AlreadyRunningError,
    DaemonError,
    DaemonWarning,
    GroupStartError,
    ReloadError,
    StartupError,
    UpgradeError,
    WorkerError,
)
from ._group import WorkerGroup
from ._pidfile import Pidfile
from ._version import __version__ as __version__

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._decorators import DaemonFunction, WorkerFunction, WorkerGroupFunction, daemon, daemonize, process_daemonize
    from ._runtime import notify_extend, notify_ready, notify_status
    from ._sockets import listen_fds, sockets
del TYPE_CHECKING

# The decorators are built on wrapt, whose import costs 17 ms (1.x) to 70 ms
# (2.x) (benchmarks/): loaded at first use, so that `python -m daemondeco
# status|stop|reload` and the other paths that decorate nothing never pay it.
# The notify_* functions only make sense inside a daemon, which has imported
# _runtime already: loading them lazily keeps _ready and _systemd off the
# control path too.
_DECORATORS = frozenset(
    {"DaemonFunction", "WorkerFunction", "WorkerGroupFunction", "daemon", "daemonize", "process_daemonize"}
)
# The sockets' functions import `socket`: loaded at first use too.
_SOCKETS = frozenset({"listen_fds", "sockets"})
_RUNTIME = frozenset({"notify_extend", "notify_ready", "notify_status"})


def __getattr__(name: str) -> object:
    value: object
    if name in _DECORATORS:
        from . import _decorators

        value = getattr(_decorators, name)
    elif name in _SOCKETS:
        from . import _sockets

        value = getattr(_sockets, name)
    elif name in _RUNTIME:
        from . import _runtime

        value = getattr(_runtime, name)
    else:
        raise AttributeError(f"module 'daemondeco' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | _DECORATORS | _SOCKETS | _RUNTIME)


__all__ = [
    "AlreadyRunningError",
    "DaemonError",
    "DaemonFunction",
    "DaemonProcess",
    "DaemonWarning",
    "GroupStartError",
    "Pidfile",
    "ReloadError",
    "StartupError",
    "UpgradeError",
    "WorkerError",
    "WorkerFunction",
    "WorkerGroup",
    "WorkerGroupFunction",
    "daemon",
    "daemonize",
    "listen_fds",
    "notify_extend",
    "notify_ready",
    "notify_status",
    "process_daemonize",
    "sockets",
]

# Tracebacks and reprs name the public home (daemondeco.StartupError), not a private module.
# (DaemonFunction, WorkerFunction and WorkerGroupFunction say so in _decorators.)
for _public in (
    AlreadyRunningError,
    DaemonError,
    DaemonProcess,
    DaemonWarning,
    GroupStartError,
    Pidfile,
    ReloadError,
    StartupError,
    UpgradeError,
    WorkerError,
    WorkerGroup,
):
    _public.__module__ = __name__
del _public
