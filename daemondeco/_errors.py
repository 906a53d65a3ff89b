"""Everything daemondeco raises or warns on purpose.

::

    Exception
     +-- DaemonError              base: a daemon could not be started or controlled
          +-- AlreadyRunningError the pidfile is locked by a running daemon
          +-- StartupError        the daemon failed (or never got ready) after the fork
          |    +-- GroupStartError  members of a worker group failed to start
          +-- ReloadError         a reload failed, the daemon died during it, or none runs
          +-- UpgradeError        an upgrade was refused, or its successor failed
          +-- WorkerError         a worker raised, was killed, exited non-zero, or its result is unreadable
    RuntimeWarning
     +-- DaemonWarning            something will not survive the fork (threads)

Bad option values raise the built-in ``TypeError`` / ``ValueError``, and paths
that cannot be opened raise ``OSError`` naming the path, all in the launching
process before anything forks.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = [
    "AlreadyRunningError",
    "DaemonError",
    "DaemonWarning",
    "GroupStartError",
    "ReloadError",
    "StartInterrupted",
    "StartupError",
    "UpgradeError",
    "WorkerError",
    "check_directory",
    "path_error",
]


class DaemonError(Exception):
    """Base class of the errors daemondeco raises on purpose.

    .. versionadded:: 0.1
    """


class AlreadyRunningError(DaemonError):
    """The pidfile is locked: another daemon (whose pid is :attr:`pid`) runs.

    Attributes:
        pidfile: path of the locked pidfile.
        pid: the pid the pidfile names, or ``None`` when it names none yet
            (a daemon that is still starting).
        key: for a keyed worker (a pidfile template filled from the call's
            arguments), the key that is taken: ``"account='alice'"``; else None.

    .. versionadded:: 0.1
    .. versionchanged:: 0.3 *key*.

    """

    def __init__(self, pidfile: str, pid: int | None, *, key: str | None = None) -> None:
        self.pidfile = pidfile
        self.pid = pid
        self.key = key
        who = f"pid {pid}" if pid is not None else "a process that has not written its pid yet"
        what = f"already running for {key}" if key else "already running"
        super().__init__(f"{what}: pidfile {pidfile!r} is locked by {who}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_already_running, (self.pidfile, self.pid, self.key))


def _rebuild_already_running(pidfile: str, pid: int | None, key: str | None) -> AlreadyRunningError:
    return AlreadyRunningError(pidfile, pid, key=key)


def _with_traceback(summary: str, daemon_traceback: str | None) -> str:
    """The message of an error that carries the daemon's traceback: the summary, then the traceback."""
    if not daemon_traceback:
        return summary
    return f"{summary}\n\nDaemon traceback:\n" + daemon_traceback.rstrip("\n")


class StartupError(DaemonError):
    """The daemon failed after the fork, before it was ready.

    The message carries the daemon's own exception type, message and formatted
    traceback, so an uncaught ``StartupError`` in a launcher prints what went
    wrong inside the daemon.

    It is raised also when the daemon was not ready within ``ready_timeout``
    (the launcher then stopped it), or failed within ``startup_grace`` after
    readiness.

    Attributes:
        summary: one line, e.g.
            ``daemon (pid 4242) failed before it was ready: ValueError: bad port``.
        pid: the daemon's pid, when it was known.
        exc_type: qualified name of the daemon's exception (``"ValueError"``,
            ``"mypkg.ConfigError"``), or ``None`` when the daemon did not raise
            (it exited, died or timed out).
        exc_message: ``str()`` of the daemon's exception, or ``""``.
        daemon_traceback: the daemon's formatted traceback, or ``None``.
        exit_status: the daemon's exit status when it exited early, else ``None``.

    .. versionadded:: 0.1

    """

    def __init__(
        self,
        summary: str,
        *,
        pid: int | None = None,
        exc_type: str | None = None,
        exc_message: str = "",
        daemon_traceback: str | None = None,
        exit_status: int | None = None,
    ) -> None:
        self.summary = summary
        self.pid = pid
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.daemon_traceback = daemon_traceback
        self.exit_status = exit_status
        super().__init__(_with_traceback(summary, daemon_traceback))


class GroupStartError(StartupError):
    """Members of a worker group (``instances=N``) failed to start; the members that had started were stopped.

    Attributes:
        failures: ``{index: exception}`` for every member that failed
            (``StartupError``, ``AlreadyRunningError``, ``OSError``...).
        instances: how many members the call asked for.

    .. versionadded:: 0.1

    """

    def __init__(self, failures: dict[int, BaseException], instances: int) -> None:
        self.failures = dict(failures)
        self.instances = instances
        first = next(iter(self.failures.values()))
        lines = [
            f"  member {index}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            for index, exc in sorted(self.failures.items())
        ]
        summary = (
            f"{len(self.failures)} of {instances} workers failed to start; the others were stopped:\n"
            + "\n".join(lines)
        )
        super().__init__(
            summary,
            pid=getattr(first, "pid", None),
            exc_type=getattr(first, "exc_type", None),
            exc_message=getattr(first, "exc_message", ""),
            daemon_traceback=getattr(first, "daemon_traceback", None),
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.failures, self.instances))


class _AcknowledgementError(DaemonError):
    """The shared body of :class:`ReloadError` and :class:`UpgradeError`: a request the daemon did not carry out.

    Private: the public names are the two subclasses; this base only holds their
    common constructor and pickling (each rebuilds as its own class).
    """

    def __init__(
        self, summary: str, *, pid: int | None = None, daemon_traceback: str | None = None, running: bool = True
    ) -> None:
        self.summary = summary
        self.pid = pid
        self.daemon_traceback = daemon_traceback
        self.running = running
        super().__init__(_with_traceback(summary, daemon_traceback))

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_acknowledgement, (type(self), self.summary, self.pid, self.daemon_traceback, self.running))


def _rebuild_acknowledgement(
    cls: type[_AcknowledgementError], summary: str, pid: int | None, daemon_traceback: str | None, running: bool
) -> _AcknowledgementError:
    return cls(summary, pid=pid, daemon_traceback=daemon_traceback, running=running)


class ReloadError(_AcknowledgementError):
    """A reload was not acknowledged: ``on_reload`` raised, the daemon died, or none runs.

    When ``on_reload`` (or reopening the log files) raised, the daemon keeps
    running with its previous state, and :attr:`daemon_traceback` carries
    the daemon's own traceback.

    Attributes:
        summary: one line, e.g. ``daemon (pid 4242) exited during reload``.
        pid: the daemon's pid, when one was found.
        daemon_traceback: the daemon's formatted traceback, or ``None``.
        running: False when no daemon was running to reload (LSB exit 7).

    .. versionadded:: 0.1

    """


class UpgradeError(_AcknowledgementError):
    """An upgrade did not happen: refused, or the successor failed; the old daemon keeps serving.

    Attributes:
        pid: the running daemon's pid, when one was found.
        daemon_traceback: the successor's output (its traceback), or ``None``.
        running: False when no daemon was running to upgrade (LSB exit 7).

    .. versionadded:: 0.1

    """


class WorkerError(DaemonError):
    """A ``process_daemonize`` worker ended without a result to return.

    Raised by :meth:`DaemonProcess.result` (and returned by
    :meth:`DaemonProcess.exception`) when the worker raised (:attr:`exc_type`,
    :attr:`exc_message` and :attr:`worker_traceback` are the worker's own),
    was killed by a signal (:attr:`exitcode` is ``-signum``), exited with a
    non-zero status without raising (``sys.exit(3)``, ``os._exit(5)``),
    returned a value that cannot be pickled, or ended without leaving a
    record of how (its monitor was killed: :attr:`exitcode` is ``None``).

    Attributes:
        summary: one line, e.g.
            ``worker (pid 4242) raised ValueError: bad row``.
        pid: the worker's pid.
        exitcode: as :attr:`DaemonProcess.exitcode`: the exit status, or
            ``-signum`` when a signal killed it; ``None`` when unknown.
        exc_type: qualified name of the worker's exception (``"ValueError"``,
            ``"mypkg.ConfigError"``), or ``None`` when it did not raise.
        exc_message: ``str()`` of the worker's exception, or ``""``.
        worker_traceback: the worker's formatted traceback, or ``None``.

    .. versionadded:: 0.1

    """

    def __init__(
        self,
        summary: str,
        *,
        pid: int | None = None,
        exitcode: int | None = None,
        exc_type: str | None = None,
        exc_message: str = "",
        worker_traceback: str | None = None,
    ) -> None:
        self.summary = summary
        self.pid = pid
        self.exitcode = exitcode
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.worker_traceback = worker_traceback
        text = summary
        if worker_traceback:
            text = f"{summary}\n\nWorker traceback:\n" + worker_traceback.rstrip("\n")
        super().__init__(text)

    def __reduce__(self) -> tuple[object, ...]:
        fields = {
            "pid": self.pid,
            "exitcode": self.exitcode,
            "exc_type": self.exc_type,
            "exc_message": self.exc_message,
            "worker_traceback": self.worker_traceback,
        }
        return (_rebuild_worker_error, (self.summary, fields))


def _rebuild_worker_error(summary: str, fields: dict[str, Any]) -> WorkerError:
    return WorkerError(summary, **fields)


class StartInterrupted(KeyboardInterrupt):
    """Ctrl-C while a launcher waited for readiness; the starting daemon was stopped.

    A ``KeyboardInterrupt``, so a caller's ``except KeyboardInterrupt`` still
    sees it; a launcher that was about to leave says so in one line and exits
    130 instead of printing a traceback.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        who = f"the daemon (pid {pid})" if pid is not None else "the daemon"
        super().__init__(f"interrupted while waiting for {who} to get ready; it was stopped")

    def __reduce__(self) -> tuple[type[StartInterrupted], tuple[int | None]]:
        return (type(self), (self.pid,))


class DaemonWarning(RuntimeWarning):
    """Something in the launching process will not carry over into the daemon.

    Emitted, for instance, when a daemon is started while other threads run:
    ``fork()`` copies only the calling thread.

    .. versionadded:: 0.1
    """


def path_error(exc: OSError, what: str, path: str) -> OSError:
    """Return *exc* restated so its message names *what* failed and *path*, and the cause where it is plain.

    A missing parent directory reads "the directory '/run/app' does not
    exist", a file where a directory should be "'/run/app' is not a
    directory", rather than "No such file or directory" about the file
    itself. The class stays (``OSError(ENOENT, ...)`` is a ``FileNotFoundError``).
    """
    return OSError(exc.errno, f"{what}: {_cause(exc, path)}", path)


def _cause(exc: OSError, path: str) -> str:
    import errno
    import os

    text = exc.strerror or str(exc)
    if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
        return text
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(parent):
        return text
    existing = parent
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if os.path.isdir(existing):
        return f"the directory {parent!r} does not exist"
    return f"{existing!r} is not a directory"


def check_directory(path: str, what: str) -> None:
    """Raise OSError (ENOENT/ENOTDIR) naming *what* and *path* unless *path* is a directory."""
    import os

    if not os.path.isdir(path):
        import errno

        code = errno.ENOTDIR if os.path.exists(path) else errno.ENOENT
        cause = "not a directory" if code == errno.ENOTDIR else "the directory does not exist"
        raise OSError(code, f"{what}: {cause}", path)
