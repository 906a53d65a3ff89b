"""A drop-in replacement for python-daemon's ``daemon`` package (PEP 3143) on daemondeco's engine.

Switch by changing imports only::

    import daemondeco.compat as daemon                 # import daemon
    from daemondeco.compat import pidfile              # from daemon import pidfile
    from daemondeco.compat import daemon               # from daemon import daemon
    from daemondeco.compat import pidlockfile          # from daemon import pidlockfile (old name)

    with daemon.DaemonContext(pidfile=pidfile.TimeoutPIDLockFile("/tmp/app.pid", 5)):
        serve()

Importing this package stays cheap: the engine loads at ``open()``, and
``pidfile`` (which imports ``lockfile`` when it is installed, so that its
exceptions subclass lockfile's) at first use.
"""

from .daemon import (
    DaemonContext,
    DaemonError,
    DaemonOSEnvironmentError,
    DaemonProcessDetachError,
    StartupError,
)

_LAZY = frozenset({"pidfile", "pidlockfile"})


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DaemonContext",
    "DaemonError",
    "DaemonOSEnvironmentError",
    "DaemonProcessDetachError",
    "StartupError",
]
