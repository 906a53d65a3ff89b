"""The public faces: ``@daemon``, ``@process_daemonize`` and ``daemonize()``.

This is the wrapt layer only. Every step of the detach lives in ``_engine``;
the decorators validate options when applied, hand them to the engine when
called, and add the control methods (``start``, ``run``, ``status``,
``stop``, ``restart``, ``cli``). wrapt keeps the decorated function's name,
docstring, signature and ``__wrapped__``, and makes the decorators work on
functions, methods, classmethods and staticmethods alike.
"""

from __future__ import annotations

import wrapt

from . import _engine
from ._control import DaemonProcess, status_pidfile, stop_pidfile
from ._errors import DaemonError
from ._options import Options, stop_timeout_or
from ._ready import Runtime

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

# wrapt 1.x has no type hints and 2.x has: typed as Any, so both check alike.
_FunctionWrapper: Any = wrapt.FunctionWrapper
_BoundFunctionWrapper: Any = wrapt.BoundFunctionWrapper

__all__ = ["DaemonFunction", "WorkerFunction", "daemon", "daemonize", "process_daemonize"]


def detach_or_leave(options: Options, announce: Callable[[int], None] | None = None) -> None:
    """Detach; the launcher leaves with status 0 once the daemon is ready.

    Returns only in the daemon. Raises in the launcher (bad input, already
    running, StartupError) before or instead of leaving. Under a service
    manager that supervises this process (``NOTIFY_SOCKET``), or with
    ``detach=False``, nothing forks: this process becomes the daemon.
    """
    if not _engine.resolve_detach(options):
        _engine.Foreground(options, attached=True)  # for the rest of the process's life
        return
    pid = _engine.detach(_engine.prepare(options), worker=False)
    if pid:
        if announce is not None:
            announce(pid)
        _engine.leave_launcher()


def _launch(options: Options, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> NoReturn:
    detach_or_leave(options)
    _engine.run_in_daemon(wrapped, args, kwargs)


def _spawn(
    options: Options, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> DaemonProcess:
    prepared = _engine.prepare(options)
    pid = _engine.detach(prepared, worker=True)
    if pid:
        path = prepared.pidfile.path if prepared.pidfile is not None else None
        return DaemonProcess(pid, path, stop_timeout=options.stop_timeout)
    _engine.run_in_daemon(wrapped, args, kwargs)


class _DaemonControl:
    """The control methods of a ``@daemon`` function, bound or not."""

    __wrapped__: Callable[..., Any]

    def _daemon_options(self) -> Options:
        owner = getattr(self, "_self_parent", None) or self
        options: Options = getattr(owner, "_self_daemon_options")  # noqa: B009 - set by DaemonFunction
        return options

    def _pidfile_path(self, action: str) -> str:
        import os

        path = self._daemon_options().pidfile
        if path is None:
            raise DaemonError(
                f"{action}() needs a pidfile to find the daemon: decorate with @daemon(pidfile='/run/name.pid')"
            )
        return os.path.abspath(path)

    def start(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Start the daemon: the same as calling the decorated function."""
        _launch(self._daemon_options(), self.__wrapped__, args, kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in the foreground: no fork, same pidfile lock and SIGTERM handling.

        Returns the function's value. For debugging, ``Type=simple`` units and
        containers.
        """
        return _engine.run_foreground(self._daemon_options(), self.__wrapped__, args, kwargs)

    def status(self) -> int | None:
        """The pid of the running daemon (its pidfile is locked), else None."""
        return status_pidfile(self._pidfile_path("status"))

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM the daemon, wait up to *timeout* s for its pidfile lock to go, then SIGKILL.

        Args:
            timeout: seconds to wait before SIGKILL; default: the ``stop_timeout`` option.

        Returns:
            True when no daemon runs afterwards (also when none ran).

        """
        options = self._daemon_options()
        return stop_pidfile(self._pidfile_path("stop"), stop_timeout_or(options, timeout))

    def restart(self, *args: Any, **kwargs: Any) -> NoReturn:
        """Stop the running daemon (if any), then start a new one."""
        if not self.stop():
            raise DaemonError(f"restart(): could not stop the daemon of pidfile {self._pidfile_path('restart')!r}")
        self.start(*args, **kwargs)

    def cli(self, argv: Sequence[str] | None = None) -> int:
        """Run a ``start|stop|restart|status|run`` command line; return an LSB exit code.

        Args:
            argv: the arguments, default ``sys.argv[1:]``. Words after the
                action are passed to the function as strings.

        Typical use: ``sys.exit(main.cli())``. A successful ``start`` does not
        return: the launcher exits 0 once the daemon is ready.

        """
        from ._cli import run_decorated_cli

        return run_decorated_cli(self, argv)


def _daemon_wrapper(options: Options) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        _launch(options, wrapped, args, kwargs)

    return wrapper


class BoundDaemonFunction(_DaemonControl, _BoundFunctionWrapper):  # type: ignore[misc]
    """A ``@daemon`` method bound to its instance or class."""


class DaemonFunction(_DaemonControl, _FunctionWrapper):  # type: ignore[misc]
    """What ``@daemon`` returns: the function, plus ``start``, ``run``, ``status``, ``stop``, ``restart``, ``cli``.

    Calling it (or ``.start()``) in the launching process detaches a daemon
    that runs the function; the launcher exits 0 once the daemon is ready, or
    raises :class:`StartupError` carrying the daemon's traceback.
    """

    __bound_function_wrapper__ = BoundDaemonFunction

    def __init__(self, wrapped: Callable[..., Any], options: Options) -> None:
        super().__init__(wrapped, _daemon_wrapper(options))
        self._self_daemon_options = options


def _worker_wrapper(options: Options) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> DaemonProcess:
        return _spawn(options, wrapped, args, kwargs)

    return wrapper


class WorkerFunction(_FunctionWrapper):  # type: ignore[misc]
    """What ``@process_daemonize`` returns: calling it starts a daemon and returns a :class:`DaemonProcess`."""

    def __init__(self, wrapped: Callable[..., Any], options: Options) -> None:
        super().__init__(wrapped, _worker_wrapper(options))
        self._self_daemon_options = options


def _decorator(
    name: str, kind: type[DaemonFunction] | type[WorkerFunction], func: object, options: dict[str, object]
) -> Any:
    built = Options.build(name, options)

    def decorate(target: object) -> Any:
        if not callable(target) and not isinstance(target, (classmethod, staticmethod)):
            raise TypeError(
                f"@{name} decorates a function or method, not {type(target).__name__} {target!r}; "
                f"options are keywords: @{name}(pidfile='/run/app.pid')"
            )
        return kind(target, built)  # type: ignore[arg-type]

    return decorate if func is None else decorate(func)


def daemon(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Turn a program's main function into a daemon: ``@daemon`` or ``@daemon(**options)``.

    Calling the decorated function validates the options, opens the log
    targets and takes the pidfile lock (errors raise here, before any fork),
    detaches (double fork, ``setsid``, workdir, umask, stdio, closes the fds
    that are not kept, resets signals), and runs the function in the daemon.
    The launching process exits 0 once the daemon is ready; if the daemon
    fails first, the call raises :class:`StartupError` with its traceback.

    Args:
        func: the function, when used bare as ``@daemon``.
        **options: ``pidfile``, ``stdin``, ``stdout``, ``stderr``, ``workdir``,
            ``umask``, ``keep_fds``, ``ready``, ``startup_grace``,
            ``ready_timeout``, ``stop_timeout`` (see the documentation).

    Returns:
        A :class:`DaemonFunction` with ``start``, ``run``, ``status``, ``stop``,
        ``restart`` and ``cli`` methods.

    .. versionadded:: 0.1

    """
    return _decorator("daemon", DaemonFunction, func, options)


def process_daemonize(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make calls to a worker function start it as a detached daemon.

    The caller keeps running, untouched (fds, cwd, umask, signals, stdio,
    threads), and receives a :class:`DaemonProcess` once the worker is ready;
    a failure before that raises :class:`StartupError` in the caller. Without
    a pidfile every call starts one more worker; with one, a call while a
    worker runs raises :class:`AlreadyRunningError`.

    Args:
        func: the function, when used bare as ``@process_daemonize``.
        **options: the same keyword options as :func:`daemon`.

    .. versionadded:: 0.1

    """
    return _decorator("process_daemonize", WorkerFunction, func, options)


def daemonize(**options: Any) -> None:
    """Detach the current process into a daemon; return in the daemon.

    The imperative form of :func:`daemon` for scripts written as a sequence of
    statements. The launching process exits 0 once the daemon is ready: at
    the return of this call (``ready="start"``) or when the daemon calls
    :func:`notify_ready` (``ready="notify"``); if the daemon raises or exits
    before that, ``StartupError`` is raised in the launcher instead.

    Args:
        **options: the same keyword options as :func:`daemon`.

    .. versionadded:: 0.1

    """
    built = Options.build("daemonize", options)
    detach_or_leave(built)
    runtime = Runtime.current
    assert runtime is not None
    _watch_unready_exit(runtime)
    if built.ready == "start":
        runtime.mark_ready()


def _watch_unready_exit(runtime: Runtime) -> None:
    """Report to the launcher an exception or an exit that comes before readiness."""
    import atexit
    import sys

    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        runtime.failed(exc)
        previous_hook(kind, exc, tb)

    def at_exit() -> None:
        runtime.exited(None)
        if runtime.pidfile is not None:
            runtime.pidfile.release()

    sys.excepthook = excepthook
    atexit.register(at_exit)
