"""The public faces: ``@daemon``, ``@process_daemonize`` and ``daemonize()``.

This is the wrapt layer only. Every step of becoming a daemon lives in
``_engine``; the decorators validate options when applied, hand them to the
engine when called, and add the control methods (``start``, ``run``,
``status``, ``stop``, ``restart``, ``cli``). wrapt keeps the decorated
function's name, docstring, signature and ``__wrapped__``, and makes the
decorators work on functions, methods, classmethods and staticmethods alike.
For type checkers the wrappers are generic in the function's parameters
(``ParamSpec``) and return type.
"""

from __future__ import annotations

from typing import Generic, ParamSpec, TypeVar, overload

import wrapt

from . import _engine
from ._cli import run_decorated_cli
from ._control import (
    DaemonProcess,
    pidfile_path,
    reload_pidfile,
    restart_action,
    status_pidfile,
    stop_pidfile,
    upgrade_pidfile,
)
from ._errors import DaemonError
from ._group import WorkerGroup, check_template, is_template, start_workers
from ._options import Options, reload_timeout, stop_timeout

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

    from typing_extensions import Unpack

    from ._types import DaemonizeOptions, DaemonOptions

if TYPE_CHECKING:  # pragma: no cover
    # wrapt 1.x has no type hints and 2.x has: both check alike against this
    # much of wrapt's wrappers, and a misspelt attribute is an error for users.
    class _FunctionWrapper:
        def __init__(self, wrapped: Any, wrapper: Callable[..., Any]) -> None: ...
        def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    _BoundFunctionWrapper = _FunctionWrapper
else:
    _FunctionWrapper = wrapt.FunctionWrapper
    _BoundFunctionWrapper = wrapt.BoundFunctionWrapper

P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "DaemonFunction",
    "WorkerFunction",
    "WorkerGroupFunction",
    "daemon",
    "daemonize",
    "options_of",
    "process_daemonize",
]


def options_of(target: object) -> Options | None:
    """The options a ``@daemon``/``@process_daemonize`` *target* was decorated with, else None.

    A method's bound wrapper keeps them on its parent, the decorated function.
    """
    owner = getattr(target, "_self_parent", None) or target
    if isinstance(owner, (DaemonFunction, WorkerFunction, WorkerGroupFunction)):
        return owner._self_daemon_options
    return None


class _DaemonControl(Generic[P, R]):
    """The control methods of a ``@daemon`` function, bound or not."""

    __wrapped__: Callable[P, R]

    def _options(self) -> Options:
        options = options_of(self)
        assert options is not None
        return options

    def start(self, *args: P.args, **kwargs: P.kwargs) -> NoReturn:
        """Start the daemon: the same as calling the decorated function."""
        _engine.launch(self._options(), self.__wrapped__, args, kwargs)

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function in the foreground: no fork, same pidfile lock and SIGTERM handling.

        Returns the function's value. For debugging, ``Type=simple`` units and
        containers.
        """
        result: R = _engine.run_foreground(self._options(), self.__wrapped__, args, kwargs)
        return result

    def status(self) -> int | None:
        """The pid of the running daemon, else None.

        Running means: its pidfile is locked, and the pid it names is alive and
        not a zombie. An unlocked pidfile, whatever pid it names, is not running.
        """
        return status_pidfile(pidfile_path(self._options(), "status"))

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM the daemon, wait up to *timeout* s for its pidfile lock to go, then SIGKILL.

        Args:
            timeout: seconds to wait before SIGKILL; default: the ``stop_timeout`` option.

        Returns:
            True when no daemon runs afterwards (also when none ran).

        """
        options = self._options()
        return stop_pidfile(pidfile_path(options, "stop"), stop_timeout(timeout, options.stop_timeout))

    def reload(self, timeout: float | None = None) -> None:
        """SIGHUP the daemon and return once it has finished the reload (log files reopened, ``on_reload`` run).

        Args:
            timeout: seconds to wait at most; None: as long as the daemon lives.

        Raises:
            ReloadError: ``on_reload`` raised (the daemon keeps running with its
                previous state; the error carries its traceback), the daemon
                exited during the reload, the timeout passed, or no daemon runs.

        .. versionadded:: 0.1

        """
        reload_pidfile(pidfile_path(self._options(), "reload"), reload_timeout(timeout))

    def upgrade(self, timeout: float | None = None) -> int:
        """Zero-downtime upgrade: the daemon starts its successor and hands it its ``listen=`` sockets.

        The successor runs the daemon's own command line again (the new code)
        and takes over the sockets and the pidfile's lock (never released:
        ``status`` never says "not running"); once it is ready the old
        daemon calls ``on_drain`` and exits. Connections are neither refused
        nor reset meanwhile.

        Args:
            timeout: seconds to wait at most; None: as long as the daemon lives.

        Returns:
            The successor's pid.

        Raises:
            UpgradeError: no daemon runs, it has no ``listen=`` sockets ("use
                restart"), it runs under systemd (use the fd store), an upgrade
                is in progress, or the successor failed (its traceback; the
                old daemon keeps serving and the pidfile is untouched).

        .. versionadded:: 0.1

        """
        return upgrade_pidfile(pidfile_path(self._options(), "upgrade"), reload_timeout(timeout))[1]

    def restart(self, *args: P.args, **kwargs: P.kwargs) -> NoReturn:
        """Stop the running daemon (if any), then start a new one.

        A daemon with ``listen=`` sockets that can be upgraded is upgraded
        instead (see :meth:`upgrade`) when no arguments are given; then this
        returns... never: like ``start``, the calling process exits 0.
        """
        options = self._options()
        if restart_action(options, has_words=bool(args or kwargs)) == "upgrade":
            upgrade_pidfile(pidfile_path(options, "restart"), None)
            import sys

            sys.exit(0)
        if not self.stop():
            path = pidfile_path(self._options(), "restart")
            raise DaemonError(f"restart(): could not stop the daemon of pidfile {path!r}")
        self.start(*args, **kwargs)

    def cli(self, argv: Sequence[str] | None = None) -> int:
        """Run a ``start|stop|restart|status|run`` command line; return an LSB exit code.

        Args:
            argv: the arguments, default ``sys.argv[1:]``. Words after the
                action are passed to the function as strings.

        Typical use: ``sys.exit(main.cli())``. A successful ``start`` does not
        return: the launcher exits 0 once the daemon is ready.

        """
        return run_decorated_cli(self._options(), self.__wrapped__, argv)


def _daemon_wrapper(options: Options) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        _engine.launch(options, wrapped, args, kwargs)

    return wrapper


class BoundDaemonFunction(_DaemonControl[P, R], _BoundFunctionWrapper):
    """A ``@daemon`` method bound to its instance or class."""


class DaemonFunction(_DaemonControl[P, R], _FunctionWrapper):
    """What ``@daemon`` returns: the function, plus its control methods (``start``, ``stop``, ``upgrade``...).

    The methods: ``start``, ``run``, ``status``, ``stop``, ``reload``,
    ``restart``, ``upgrade`` and ``cli``. Calling it (or ``.start()``) in the launching process detaches a daemon
    that runs the function; the launcher exits 0 once the daemon is ready, or
    raises :class:`StartupError` carrying the daemon's traceback.

    Generic in the decorated function's parameters ``P`` (a ``ParamSpec``)
    and return type ``R``, so a type checker sees the function's signature
    through it: ``main.run()`` returns ``R``, ``main.run(port="x")`` is an
    error where ``port: int``. Made by :func:`daemon`, not directly.

    .. versionadded:: 0.1

    """

    __bound_function_wrapper__ = BoundDaemonFunction

    def __init__(self, wrapped: Callable[P, R], options: Options) -> None:
        super().__init__(wrapped, _daemon_wrapper(options))
        self._self_daemon_options = options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> NoReturn:
        """Start the daemon (the launcher leaves once it is ready)."""
        super().__call__(*args, **kwargs)
        raise AssertionError("unreachable: the launcher has left, the daemon has ended")


def _worker_wrapper(options: Options) -> Callable[..., Any]:
    grouped = is_template(options)

    def wrapper(
        wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> DaemonProcess | WorkerGroup:
        if grouped:
            return start_workers(options, wrapped, args, kwargs, _engine.spawn)
        return _engine.spawn(options, wrapped, args, kwargs)

    return wrapper


class WorkerFunction(Generic[P, R], _FunctionWrapper):
    """What ``@process_daemonize`` returns: calling it starts a daemon and returns a :class:`DaemonProcess`.

    Generic in the function's parameters ``P`` and return type ``R``, as
    :class:`DaemonFunction` is. Made by :func:`process_daemonize`, not directly;
    with ``instances=N`` it makes a :class:`WorkerGroupFunction` instead.

    .. versionadded:: 0.1
    """

    def __init__(self, wrapped: Callable[P, R], options: Options) -> None:
        super().__init__(wrapped, _worker_wrapper(options))
        self._self_daemon_options = options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> DaemonProcess:
        """Start the worker; its handle once it is ready."""
        process: DaemonProcess = super().__call__(*args, **kwargs)
        return process


class WorkerGroupFunction(Generic[P, R], _FunctionWrapper):
    """What ``@process_daemonize(instances=N)`` returns: calling it starts N workers and returns a :class:`WorkerGroup`.

    Generic in the function's parameters ``P`` and return type ``R``, as
    :class:`WorkerFunction` is, so that a type checker sees the group's verbs
    (``pids``, ``status``, ``len()``, iteration) on what a call returns.
    Made by :func:`process_daemonize`, not directly.

    .. versionadded:: 0.1
    """

    def __init__(self, wrapped: Callable[P, R], options: Options) -> None:
        super().__init__(wrapped, _worker_wrapper(options))
        self._self_daemon_options = options

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> WorkerGroup:
        """Start the N workers; their group once every one is ready (else none is left running)."""
        group: WorkerGroup = super().__call__(*args, **kwargs)
        return group


# Tracebacks and reprs name the public home, as for the other public classes (see __init__).
DaemonFunction.__module__ = WorkerFunction.__module__ = WorkerGroupFunction.__module__ = "daemondeco"


def _decorator(
    name: str,
    kind: type[DaemonFunction[Any, Any]] | type[WorkerFunction[Any, Any]],
    func: object,
    options: dict[str, object],
) -> Any:
    built = Options.build(name, options)
    if name == "daemon" and built.instances is not None:
        raise TypeError(
            "daemon(): instances= starts a group of workers; it belongs on @process_daemonize "
            "(a @daemon function is the program's one main process)"
        )
    if name == "process_daemonize" and built.detach is False:
        raise ValueError(
            "process_daemonize(): detach=False would run the worker in the caller; "
            "call the undecorated function (its __wrapped__) instead"
        )

    def decorate(target: object) -> Any:
        if not callable(target) and not isinstance(target, (classmethod, staticmethod)):
            raise TypeError(
                f"@{name} decorates a function or method, not {type(target).__name__} {target!r}; "
                f"options are keywords: @{name}(pidfile='/run/app.pid')"
            )
        if name == "process_daemonize":
            check_template(built, getattr(target, "__func__", target))  # type: ignore[arg-type]
            if built.instances is not None:
                return WorkerGroupFunction(target, built)  # type: ignore[arg-type]
        return kind(target, built)  # type: ignore[arg-type]

    return decorate if func is None else decorate(func)


@overload
def daemon(func: Callable[P, R], /) -> DaemonFunction[P, R]: ...


@overload
def daemon(
    func: None = None, /, **options: Unpack[DaemonOptions]
) -> Callable[[Callable[P, R]], DaemonFunction[P, R]]: ...


def daemon(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Turn a program's main function into a daemon: ``@daemon`` or ``@daemon(**options)``.

    Calling the decorated function validates the options, opens the log
    targets and takes the pidfile lock (errors raise here, before any fork),
    detaches (double fork, ``setsid``, workdir, umask, stdio, closes the fds
    that are not kept, resets signals), and runs the function in the daemon.
    The launching process exits 0 once the daemon is ready; if the daemon
    fails first, the call raises :class:`StartupError` with its traceback.

    The options, keywords only, are the same for :func:`process_daemonize`
    and :func:`daemonize` (the guide's "Options" table says more):

    - ``pidfile=None``: path, locked with ``flock`` for the daemon's life.
    - ``stdin=os.devnull``: path opened for reading.
    - ``stdout=None``, ``stderr=None``: paths opened for append (``None``:
      ``/dev/null``; ``stderr``: the ``stdout`` target).
    - ``workdir="/"``, ``umask=0o022``: the daemon's directory and umask.
    - ``keep_fds=()``: fds (ints, or objects with ``fileno()``) left open.
    - ``ready="auto"`` (``@daemon``, ``daemonize()``): ready when the
      function calls :func:`notify_ready` or once it has run
      ``startup_grace`` without exiting; any exit before that is a failed
      start. ``"start"`` (the default of ``@process_daemonize``): ready when
      the function is called; ``"notify"``: when it calls
      :func:`notify_ready`. (``"auto"`` is new in 0.2, and the default.)
    - ``startup_grace=1.0`` with ``ready="auto"``, else ``0.0`` (then: how
      long the launcher keeps watching after readiness),
      ``ready_timeout=30.0``, ``stop_timeout=10.0``: seconds.
    - ``detach=None``: fork unless systemd (``NOTIFY_SOCKET``), supervisord or
      PID 1 supervises this process; ``True`` / ``False``: always / never.
    - ``user=None``, ``group=None``, ``chroot=None``, ``prevent_core=False``:
      privilege drop and confinement (a root launcher).
    - ``on_reload=None``: called without arguments on SIGHUP, after the
      ``stdout`` / ``stderr`` files were reopened.
    - ``signals=None``: ``{signal number: handler}``, extra handlers.
    - ``ready_fd=None``: fd to write a newline to at readiness (s6);
      ``None``: ``$DAEMONDECO_READY_FD`` if set.
    - ``restart=None``: ``"on-failure"``, ``"on-abnormal"`` or ``"always"``:
      a supervisor holds the pidfile and runs the function again after a
      crash, with ``restart_delay=1.0``, ``restart_backoff=2.0``,
      ``restart_max_delay=60.0``, ``restart_reset_after=60.0``,
      ``start_limit=(5, 60.0)`` and ``restart_prevent_exit_codes=()``
      (not for :func:`daemonize`).

    Args:
        func: the function, when used bare as ``@daemon``.
        **options: the options above; an unknown name or a bad value raises
            ``TypeError`` / ``ValueError`` naming it, when decorating.

    Returns:
        A :class:`DaemonFunction` with ``start``, ``run``, ``status``, ``stop``,
        ``restart`` and ``cli`` methods.

    .. versionadded:: 0.1

    """
    return _decorator("daemon", DaemonFunction, func, options)


@overload
def process_daemonize(func: Callable[P, R], /) -> WorkerFunction[P, R]: ...


@overload
def process_daemonize(
    func: None = None, /, *, instances: int, **options: Unpack[DaemonOptions]
) -> Callable[[Callable[P, R]], WorkerGroupFunction[P, R]]: ...


@overload
def process_daemonize(
    func: None = None, /, *, instances: None = None, **options: Unpack[DaemonOptions]
) -> Callable[[Callable[P, R]], WorkerFunction[P, R]]: ...


def process_daemonize(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Make calls to a worker function start it as a detached daemon.

    The caller keeps running, untouched (fds, cwd, umask, signals, stdio,
    threads), and receives a :class:`DaemonProcess` once the worker is ready;
    a failure before that raises :class:`StartupError` in the caller. Without
    a pidfile every call starts one more worker; with one, a call while a
    worker runs raises :class:`AlreadyRunningError`.

    Args:
        func: the function, when used bare as ``@process_daemonize``.
        **options: the same keyword options as :func:`daemon`, plus
            ``instances=N``: N workers per call, each with its own pidfile
            from a template with ``{i}`` (``"/run/jobs/sync-{i}.pid"``). Any
            other field of a pidfile template names a parameter of the
            function, filled from each call's arguments: one worker per key.

    Returns:
        A :class:`WorkerFunction`: calling it returns a :class:`DaemonProcess`;
        with ``instances=``, a :class:`WorkerGroupFunction`: calling it
        returns a :class:`WorkerGroup`.

    .. versionadded:: 0.1

    """
    return _decorator("process_daemonize", WorkerFunction, func, options)


def daemonize(**options: Unpack[DaemonizeOptions]) -> None:
    """Detach the current process into a daemon; return in the daemon.

    The imperative form of :func:`daemon` for scripts written as a sequence of
    statements. The launching process exits 0 once the daemon is ready: by
    default (``ready="auto"``) when the daemon calls :func:`notify_ready` or
    once the rest of the script has run ``startup_grace`` (1 s) without
    exiting; at the return of this call (``ready="start"``); or when the
    daemon calls :func:`notify_ready` (``ready="notify"``). If the daemon
    raises or exits before that, ``StartupError`` is raised in the launcher
    instead.

    Args:
        **options: the same keyword options as :func:`daemon`, but ``restart``
            (nothing would run again): ``TypeError``, for type checkers too.

    .. versionadded:: 0.1

    """
    _engine.daemonize_here(Options.build("daemonize", dict(options)))
