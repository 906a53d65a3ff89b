"""python-daemon's ``daemon.daemon`` on daemondeco's engine: ``DaemonContext`` and its errors.

``DaemonContext`` takes python-daemon 3.1.2's arguments, in the same order
and with the same defaults, and keeps its semantics (attributes assignable
until ``open()``, ``open()``/``close()``/``is_open``, the context manager,
``signal_map``, ``terminate``). It runs on daemondeco's engine, which changes
what an operator sees when something goes wrong:

* Everything that can be checked is checked in the launcher, before the fork:
  options, ``files_preserve`` and stdio objects (a ``TypeError`` naming the
  item), directories, the user, and the pidfile lock with the pidfile's own
  timeout (``AlreadyLocked`` at once, ``LockTimeout`` after waiting).
* The launcher exits 0 only once ``open()`` has returned in the daemon
  (``ready="open"``), or once the daemon calls :meth:`DaemonContext.notify_ready`
  (``ready="notify"``); a failure in between raises :class:`StartupError` in the
  launcher with the daemon's traceback (uncaught: printed, exit status 1).
* The pidfile is ``flock``-ed (a killed daemon never blocks the next start)
  and complete before the launcher exits; the fds of configured ``logging``
  handlers stay open without being listed; fds are closed at a cost that
  follows the open fds, not ``RLIMIT_NOFILE``; ``terminate`` exits with status 0.
* A ``files_preserve`` file that took fd 0-2 (a program started with that
  stream closed) is refused in the launcher instead of being replaced unseen.
* Signals outside ``signal_map`` keep the disposition the program had, as
  python-daemon leaves them (under ``nohup``, SIGHUP stays ignored).

The deliberate differences from python-daemon are listed in docs/migrate.md.
"""

from __future__ import annotations

import os
import sys

from .. import DaemonError as _BaseError
from .. import StartupError as _BaseStartupError
from .._runtime import active, notify_ready
from ._lock import effective_timeout, legacy_holder, lock_path

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from .._options import Options

__all__ = [
    "DaemonContext",
    "DaemonError",
    "DaemonOSEnvironmentError",
    "DaemonProcessDetachError",
    "StartupError",
    "change_process_owner",
    "close_all_open_files",
    "is_detach_process_context_required",
    "is_process_started_by_superserver",
    "is_socket",
    "make_default_signal_map",
    "prevent_core_dump",
    "redirect_stream",
]


class DaemonError(_BaseError):
    """Base class of the errors of the daemon context (python-daemon's ``DaemonError``)."""


class DaemonOSEnvironmentError(DaemonError, OSError):
    """The process environment could not be set up (directory, owner, chroot), raised in the launcher."""


class DaemonProcessDetachError(DaemonError, OSError):
    """The process could not detach (a fork failed)."""


class StartupError(_BaseStartupError, DaemonError):
    """The daemon failed after the fork, before it was ready; its ``str()`` carries the daemon's traceback."""


def is_detach_process_context_required() -> bool:
    """Whether ``detach_process=None`` forks: False when something already supervises this process.

    Unlike python-daemon, a parent that is PID 1 does not count (that misfires
    in containers and for orphans of a shell). Not forking when:
    ``DAEMONDECO_FOREGROUND=1``; ``NOTIFY_SOCKET`` set (systemd ``Type=notify``);
    stdin is a socket (inetd, ``StandardInput=socket``). A closed or missing
    stdin counts as "not a socket".
    """
    if os.environ.get("DAEMONDECO_FOREGROUND") == "1" or os.environ.get("NOTIFY_SOCKET"):
        return False
    return not is_process_started_by_superserver()


def make_default_signal_map() -> dict[int, str | None]:
    """python-daemon's default ``signal_map``: ignore terminal stops, SIGTERM -> ``terminate``."""
    import signal

    names: dict[str, str | None] = {"SIGTSTP": None, "SIGTTIN": None, "SIGTTOU": None, "SIGTERM": "terminate"}
    return {getattr(signal, name): target for name, target in names.items() if hasattr(signal, name)}


# -- python-daemon's module-level steps, for programs that call them directly ----


def is_socket(fd: int) -> bool:
    """True if *fd* is an open socket."""
    import stat

    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def is_process_started_by_superserver() -> bool:
    """True if stdin is a socket (inetd, systemd ``StandardInput=socket``); False if closed."""
    try:
        return is_socket(sys.__stdin__.fileno())  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):
        return False


def prevent_core_dump() -> None:
    """Forbid core dumps of this process: ``RLIMIT_CORE`` soft and hard 0."""
    import resource

    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        raise DaemonOSEnvironmentError(f"Unable to prevent core dump ({exc})") from exc


def change_process_owner(uid: int, gid: int, initgroups: bool = False) -> None:
    """Switch this process to *uid* and *gid*; with *initgroups*, also to the user's groups.

    Unlike python-daemon 3.1.2, ``initgroups=True`` sets the primary gid too
    (``initgroups`` then ``setgid``), and a uid without passwd entry is an
    error rather than a silent ``initgroups=False``.

    Raises:
        DaemonOSEnvironmentError: the switch failed.

    """
    try:
        if initgroups:
            import pwd

            os.initgroups(pwd.getpwuid(uid).pw_name, gid)
        os.setgid(gid)
        os.setuid(uid)
    except (KeyError, OSError) as exc:
        raise DaemonOSEnvironmentError(f"Unable to change process owner ({exc!r})") from exc


def close_all_open_files(exclude: set[int] | frozenset[int] | None = None) -> None:
    """Close every open fd of this process except those in *exclude*.

    The cost follows the open fds (``/proc/self/fd``), not ``RLIMIT_NOFILE``.
    """
    keep = set(exclude or ())
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # 2048 is python-daemon's MAXFD for an unlimited limit; python-daemon closes up to any finite
        # limit, while here a limit of 2**20 or more (a loop's worth of seconds) also stops at 2048.
        top = limit if 0 < limit < 2**20 else 2048
        start = 0
        for fd in [*sorted(fd for fd in keep if fd < top), top]:
            os.closerange(start, fd)
            start = fd + 1
        return
    for name in names:
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own fd, already closed


def redirect_stream(system_stream: Any, target_stream: Any) -> None:
    """Point *system_stream*'s fd at *target_stream*'s file (``None``: ``/dev/null``), as python-daemon does."""
    target_fd = os.open(os.devnull, os.O_RDWR) if target_stream is None else target_stream.fileno()
    os.dup2(target_fd, system_stream.fileno())


class _Plan:
    """What ``open()`` resolved in the launcher, used again in the daemon."""

    __slots__ = ("copies", "entered", "inherited", "lock", "options", "signals", "stdio", "timeout")

    def __init__(self) -> None:
        self.options: Options | None = None
        self.lock: str | None = None  # a path daemondeco locks before the fork
        self.timeout: float | None = None
        self.entered: Any = None  # another context manager, entered in the daemon
        self.signals: dict[int, Any] = {}
        self.inherited: dict[int, Any] = {}  # dispositions the engine changes, as the launcher had them
        self.stdio: list[int | None] = [None, None, None]  # fds of stdio objects to dup2 onto 0, 1, 2
        self.copies: list[int] = []  # copies above 2 of stdio objects that are fds 0-2 (sys.stdout...)

    def close_copies(self) -> None:
        """Close the copies made of fds 0-2 (in the launcher after a failure, in the daemon once used)."""
        for fd in self.copies:
            os.close(fd)
        self.copies = []


def _inherited_dispositions() -> dict[int, Any]:
    """The launcher's dispositions of the signals the engine resets or handles, to restore in the daemon.

    Those set outside Python (``getsignal`` gives None) cannot be restored and are left out.
    """
    import signal

    from .._signals import RESET_IF_IGNORED

    found: dict[int, Any] = {}
    for name in RESET_IF_IGNORED:
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not None:
            found[int(signum)] = signal.getsignal(signum)
    return found


def _fileno(item: object, what: str) -> int:
    """``item`` as an fd number, or a ``TypeError`` naming it (raised in the launcher)."""
    if isinstance(item, int) and not isinstance(item, bool):
        fd = item
    else:
        try:
            fd = item.fileno()  # type: ignore[attr-defined]
        except Exception as exc:
            raise TypeError(
                f"DaemonContext: {what} {item!r} has no usable fileno() ({type(exc).__name__}: {exc})"
            ) from None
        if not isinstance(fd, int) or isinstance(fd, bool):
            raise TypeError(f"DaemonContext: {what} {item!r}: fileno() returned {fd!r}, not an int")
    if fd < 0:
        raise TypeError(f"DaemonContext: {what} {item!r} is not a file descriptor (negative)")
    return fd


def _raised_by_fork(exc: BaseException) -> bool:
    """True if *exc* came out of the engine's ``fork()`` (the innermost daemondeco frame is the detach step)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    innermost = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(package):
            innermost = tb.tb_frame.f_code
        tb = tb.tb_next
    return innermost is not None and innermost.co_name == "detach" and "_engine" in innermost.co_filename


class DaemonContext:
    """A PEP 3143 daemon context, python-daemon's API on daemondeco's engine.

    Args:
        chroot_directory: directory to ``chroot`` into in the daemon, or None.
        working_directory: the daemon's working directory (default ``/``).
        umask: the daemon's umask (default 0, as python-daemon; consider 0o022).
        uid: the user id to run as (default: the real uid at construction).
        gid: the group id to run as (default: the real gid at construction).
        initgroups: also set the user's supplementary groups (the primary gid is set too).
        prevent_core: forbid core dumps (RLIMIT_CORE 0) in the daemon.
        detach_process: fork into the background; None: decide with
            :func:`~daemondeco.compat.daemon.is_detach_process_context_required` now.
        files_preserve: fds (ints or objects with ``fileno()``) to keep open;
            configured ``logging`` handlers are kept without being listed. Never mutated.
        pidfile: a ``PIDLockFile``/``TimeoutPIDLockFile`` (this package's, lockfile's
            or python-daemon's), a path, or any context manager (entered in the daemon).
        stdin: file object for fd 0 (None: ``/dev/null``); a path is opened read-only.
        stdout: file object for fd 1 (None: ``/dev/null``); a path is opened for append.
        stderr: file object for fd 2 (None: ``/dev/null``); a path is opened for append.
        signal_map: ``{signum: target}``; None -> ``SIG_IGN``, a str names a method
            of the context, anything else is installed as is. Default:
            :func:`~daemondeco.compat.daemon.make_default_signal_map`.
        ready: ``"open"``: the launcher exits 0 when ``open()`` returns in the daemon;
            ``"notify"``: when the daemon calls :meth:`notify_ready`.
        ready_timeout: seconds the launcher waits for readiness before giving up.
        startup_grace: seconds the launcher keeps watching after readiness.

    .. versionadded:: 0.1

    """

    def __init__(  # noqa: PLR0917 - python-daemon's positional order, kept for drop-in use
        self,
        chroot_directory: str | None = None,
        working_directory: str = "/",
        umask: int = 0,
        uid: int | None = None,
        gid: int | None = None,
        initgroups: bool = False,
        prevent_core: bool = True,
        detach_process: bool | None = None,
        files_preserve: list[Any] | None = None,
        pidfile: Any = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        signal_map: dict[int, Any] | None = None,
        *,
        ready: str = "open",
        ready_timeout: float = 30.0,
        startup_grace: float = 0.0,
    ) -> None:
        self.chroot_directory = chroot_directory
        self.working_directory = working_directory
        self.umask = umask
        self.prevent_core = prevent_core
        self.files_preserve = files_preserve
        self.pidfile = pidfile
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.initgroups = initgroups
        self.detach_process = is_detach_process_context_required() if detach_process is None else detach_process
        self.signal_map = make_default_signal_map() if signal_map is None else signal_map
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.startup_grace = startup_grace
        self._is_open = False
        self._opened_by: int | None = None
        self._plan: _Plan | None = None

    @property
    def is_open(self) -> bool:
        """True once ``open()`` has succeeded, until ``close()``."""
        return self._is_open

    def __enter__(self) -> DaemonContext:
        self.open()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()

    # -- open ----------------------------------------------------------------

    def open(self) -> None:
        """Become a daemon; returns in the daemon. Does nothing if already open.

        In the launcher it either raises (bad options, ``AlreadyLocked``,
        ``LockTimeout``, ``LockFailed``, ``DaemonOSEnvironmentError``,
        :class:`StartupError`) or, once the daemon is ready, ends the process
        with status 0.
        """
        if self._is_open:
            return
        plan = _Plan()
        try:
            self._resolve(plan)
            self._start(plan)
        except BaseException:
            plan.close_copies()  # the launcher is raising: nothing forked carries on with them
            raise
        # From here on: the daemon (or this process, when not detaching).
        try:
            self._finish_open(plan)
        except BaseException as exc:
            runtime = active()
            if runtime is not None:
                runtime.failed(exc)  # the launcher raises StartupError with this traceback
            raise
        if self.ready == "open":
            notify_ready()

    def notify_ready(self) -> None:
        """Tell the launcher (and systemd) that the daemon is ready: with ``ready="notify"``, it exits 0 now."""
        notify_ready()

    def _resolve(self, plan: _Plan) -> None:
        """Check every option in the launcher, into *plan*; nothing has forked yet."""
        if self.ready not in ("open", "notify"):
            raise ValueError(f"DaemonContext: ready must be 'open' or 'notify', not {self.ready!r}")
        if not isinstance(self.detach_process, bool):
            raise TypeError(f"DaemonContext: detach_process must be True, False or None, not {self.detach_process!r}")
        paths: dict[str, str | None] = {}
        keep: list[int] = []
        given: list[int | None] = [None, None, None]  # the fds of stdio objects, before any copy
        for index, name in enumerate(("stdin", "stdout", "stderr")):
            target = getattr(self, name)
            paths[name] = None
            if target is None:
                continue
            if isinstance(target, (str, os.PathLike)):
                paths[name] = os.fsdecode(os.fspath(target))
                continue
            fd = _fileno(target, name)
            given[index] = fd
            if fd <= 2:
                # stdout=sys.stdout: python-daemon's dup2 onto itself keeps the launcher's stream.
                # The engine points 0-2 at /dev/null first, so hand it a copy that survives that.
                import fcntl

                try:
                    fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                except OSError as exc:
                    raise TypeError(f"DaemonContext: {name} {target!r}: its fd {fd} is not open ({exc})") from None
                plan.copies.append(fd)
            plan.stdio[index] = fd
            keep.append(fd)
        for item in list(self.files_preserve or ()):
            fd = _fileno(item, "files_preserve item")
            try:
                os.fstat(fd)
            except OSError:
                continue  # python-daemon ignores a closed fd in the list: nothing to keep
            if fd <= 2:
                # 0-2 are the daemon's stdio: kept as such, never in the engine's keep list. One
                # that is not the standard stream (a log file that took the number of a stream
                # closed at start) would be replaced unseen, unless it is that stdio object itself.
                self._check_displaced(fd, item, given)
                continue
            keep.append(fd)
        for signum, target in dict(self.signal_map).items():
            plan.signals[signum] = self._handler(target)
        plan.inherited = _inherited_dispositions()
        self._resolve_pidfile(plan)
        plan.options = self._options(plan, paths, keep)
        self._check_owner()

    @staticmethod
    def _check_displaced(fd: int, item: object, given: list[int | None]) -> None:
        """A ``DaemonOSEnvironmentError`` naming *item* if the detach would replace its fd (0-2)."""
        if given[fd] == fd:  # stdout=log with the log at fd 1: dup2-ed back onto 1 in the daemon
            return
        from .._stdio import displaced_stdio

        displaced = displaced_stdio(fd)
        if displaced is not None:
            import errno

            raise DaemonOSEnvironmentError(errno.EBADF, f"DaemonContext: files_preserve item {item!r} {displaced}")

    def _handler(self, target: object) -> Any:
        import signal

        if target is None:
            return signal.SIG_IGN
        if isinstance(target, str):
            return getattr(self, target)  # an AttributeError here, in the launcher
        return target

    def _resolve_pidfile(self, plan: _Plan) -> None:
        pidfile = self.pidfile
        if pidfile is None:
            return
        if isinstance(pidfile, (str, os.PathLike)):
            plan.lock, plan.timeout = os.path.abspath(os.fsdecode(os.fspath(pidfile))), 0.0
            return
        path = lock_path(pidfile)
        if path is not None:
            plan.lock, plan.timeout = path, effective_timeout(pidfile)
            return
        if not (hasattr(pidfile, "__enter__") and hasattr(pidfile, "__exit__")):
            raise TypeError(f"DaemonContext: pidfile {pidfile!r} is neither a path nor a context manager")
        plan.entered = pidfile

    def _options(self, plan: _Plan, paths: dict[str, str | None], keep: list[int]) -> Options:
        from .._options import Options

        change_owner = self.uid != os.geteuid() or self.gid != os.getegid()
        given: dict[str, object] = {
            "pidfile": plan.lock,
            "stdin": paths["stdin"] or os.devnull,
            "stdout": paths["stdout"],
            "stderr": paths["stderr"],
            "workdir": self.working_directory,
            "umask": self.umask,
            "keep_fds": keep,
            "ready": "notify",  # open() reports readiness itself, at its very end
            "ready_timeout": self.ready_timeout,
            "startup_grace": self.startup_grace,
            "detach": self.detach_process,
            "user": self.uid if change_owner else None,
            "group": self.gid if change_owner else None,
            "chroot": self.chroot_directory,
            "prevent_core": bool(self.prevent_core),
        }
        return Options.build("DaemonContext", given)

    def _check_owner(self) -> None:
        if not self.initgroups or self.uid == os.geteuid():
            return
        import pwd

        try:
            pwd.getpwuid(self.uid)
        except KeyError:
            raise DaemonOSEnvironmentError(
                f"Unable to change process owner: initgroups=True, but uid {self.uid} has no passwd entry"
            ) from None

    def _start(self, plan: _Plan) -> None:
        """Detach (or not); return in the daemon. In the launcher: raise, or exit 0 once ready."""
        import time

        from .._engine import daemonize_here

        assert plan.options is not None
        path, timeout = plan.lock, plan.timeout
        # What the daemon will import anyway, loaded before the fork: a fresh
        # child pays copy-on-write faults for every page an import touches.
        # (python-daemon imports resource at its own import.)
        if self.prevent_core:
            import resource  # noqa: F401
        if path is not None:
            import json  # noqa: F401 - the state file next to the pidfile
        deadline = time.monotonic() + timeout if timeout is not None and timeout > 0 else None
        while True:
            if path is not None:
                old = legacy_holder(path)
                if old is not None:
                    from .pidfile import refused, wait_for

                    if wait_for(path, timeout, deadline):
                        continue
                    raise refused(path, timeout, old)
            try:
                daemonize_here(plan.options)
                return
            except _BaseStartupError as exc:
                raise StartupError(
                    exc.summary,
                    pid=exc.pid,
                    exc_type=exc.exc_type,
                    exc_message=exc.exc_message,
                    daemon_traceback=exc.daemon_traceback,
                    exit_status=exc.exit_status,
                ) from None
            except _BaseError as exc:
                from .. import AlreadyRunningError

                if isinstance(exc, AlreadyRunningError) and path is not None:
                    from .pidfile import refused, wait_for

                    if wait_for(path, timeout, deadline):
                        continue
                    raise refused(path, timeout, exc.pid) from None
                self._environment_error(exc, path)
            except OSError as exc:
                self._environment_error(exc, path)

    @staticmethod
    def _environment_error(exc: BaseException, path: str | None) -> None:
        """Re-raise a launcher-side failure under python-daemon's class for it.

        The pidfile's own path -> ``LockFailed``; ``fork()`` failing ->
        ``DaemonProcessDetachError``; the rest (directories, owner, chroot,
        stdio targets) -> ``DaemonOSEnvironmentError``. The errno of an
        ``OSError`` is kept on the new exception.
        """
        if path is not None and (getattr(exc, "filename", None) == path or repr(path) in str(exc)):
            from .pidfile import LockFailed

            raise LockFailed(f"failed to create {path}: {exc}") from exc
        number = exc.errno if isinstance(exc, OSError) and exc.errno else None
        details = (number,) if number is not None else ()
        if isinstance(exc, OSError) and _raised_by_fork(exc):
            raise DaemonProcessDetachError(*details, f"Unable to detach the process ({exc})") from exc
        raise DaemonOSEnvironmentError(*details, f"Unable to set up the daemon's environment ({exc})") from exc

    def _finish_open(self, plan: _Plan) -> None:
        """In the daemon: stdio objects, signal handlers, a foreign pidfile, then open."""
        import signal

        for target, fd in enumerate(plan.stdio):
            if fd is not None and fd != target:
                os.dup2(fd, target)
        plan.close_copies()
        if not self.detach_process:  # python-daemon redirects unset streams in the foreground too
            null = None
            for target, (name, fd) in enumerate(zip(("stdin", "stdout", "stderr"), plan.stdio, strict=True)):
                if fd is None and getattr(self, name) is None:
                    if null is None:
                        null = os.open(os.devnull, os.O_RDWR)
                    os.dup2(null, target)
            if null is not None and null > 2:
                os.close(null)
        # python-daemon touches only the signals of signal_map: every other one keeps the disposition
        # the program had (SIGHUP ignored under nohup, SIGINT ignored in a `cmd &` of a script). The
        # engine reset those and installed its SIGTERM and SIGHUP handlers: put the launcher's back.
        # With stdout or stderr given as paths (an extension), SIGHUP keeps reopening them.
        stdio_paths = any(isinstance(getattr(self, name), (str, os.PathLike)) for name in ("stdout", "stderr"))
        for signum, handler in plan.inherited.items():
            if signum not in plan.signals and not (signum == signal.SIGHUP and stdio_paths):
                signal.signal(signum, handler)
        for signum, handler in plan.signals.items():
            signal.signal(signum, handler)
        if plan.entered is not None:
            plan.entered.__enter__()
        self._plan = plan
        self._is_open = True
        self._opened_by = os.getpid()
        import atexit

        atexit.register(self.close)

    # -- close -----------------------------------------------------------------

    def close(self) -> None:
        """Release the pidfile and mark the context closed. Does nothing if not open.

        In a process the daemon forked later, it does nothing: a child never
        releases its parent's pidfile.
        """
        if not self._is_open:
            return
        if self._opened_by != os.getpid():
            self._is_open = False
            return
        plan, self._plan = self._plan, None
        try:
            if plan is not None and plan.entered is not None:
                plan.entered.__exit__(None, None, None)
            elif plan is not None and plan.lock is not None:
                runtime = active()
                if runtime is not None:
                    runtime.release(leaving=False)  # the state file first, the pidfile last
        finally:
            self._is_open = False

    def terminate(self, signal_number: int, stack_frame: object) -> None:
        """The default SIGTERM target: print ``Terminating on signal N`` on stderr, exit with status 0.

        python-daemon raises ``SystemExit`` with that text, which exits with
        status 1 on every normal stop; here the stop is a success.
        """
        try:
            print(f"Terminating on signal {signal_number}", file=sys.stderr, flush=True)
        except (OSError, ValueError, AttributeError):
            pass
        raise SystemExit(0)
