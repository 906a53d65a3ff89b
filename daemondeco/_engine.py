"""The launcher's preparation, the fork, and the public forms on top of them.

``prepare()`` runs in the launcher and does everything that can fail before a
fork: it validates paths, opens the stdio targets and takes the pidfile lock.
``detach()`` forks twice (``fork``, ``setsid``, ``fork``) and returns twice,
like ``fork()``: in the launcher, once the daemon reported ready, with the
daemon's pid; in the daemon, with 0, after the daemon's side of the detach
(``_daemon.enter``: umask, stdio, closing fds, signals, pid written) succeeded.

On top of those steps, one function per public form: :func:`launch` (a
``@daemon`` function called: the launcher leaves once the daemon is ready),
:func:`spawn` (a ``@process_daemonize`` worker: the caller gets a handle),
:func:`daemonize_here` (``daemonize()``), :func:`run_foreground` (``.run()``).

The launcher never sleeps: it blocks in ``poll()`` on the readiness pipe (see
``_ready``). Intermediate processes and launchers leave with ``os._exit``
after flushing stdio, so no atexit handler or buffer runs twice.
"""

from __future__ import annotations

import os
import sys

from . import _privileges, _proc, _signals
from ._control import DaemonProcess
from ._daemon import (
    DEBUGGING,
    DETACHED,
    READY_FD_VARIABLE,
    SERVICE,
    WORKER,
    Entry,
    Prepared,
    close_fds,
    drop_ready_fd_copy,
    enter,
    fd_table_size,
    start_watchdog,
)
from ._errors import DaemonWarning, StartInterrupted, StartupError, check_directory
from ._handover import HANDOVER_VARIABLE, read_handover, take_report_fd
from ._init import become_init_or_daemon
from ._options import MAX_FD, resolve_fds
from ._outcome import adopt_sender, mark_pending, watch
from ._pidfile import Holder, Watcher, require_posix
from ._ready import ERROR, await_ready, describe_exception, send
from ._runtime import Runtime, call_main, run_in_daemon, watch_unready_exit
from ._state import state_path
from ._stdio import (
    IN_FLAGS,
    LOG_FLAGS,
    above_stdio,
    check_room,
    displaced_stdio,
    flush_stdio,
    open_target,
    remove_created,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping
    from typing import Any, NoReturn

    from ._handover import Handover
    from ._options import Options
    from ._sockets import Resolved

__all__ = ["Foreground", "daemonize_here", "launch", "run_foreground", "spawn"]


# -- in the launcher, before any fork ---------------------------------------


def _logging_fds() -> dict[int, object]:
    """The fds of every configured ``logging`` handler (files, sockets, streams), each with its handler.

    Reads ``logging._handlerList`` (CPython's registry of every handler
    created, attached to a logger or not): a handler configured before the
    start keeps its file open in the daemon without being listed.
    """
    logging = sys.modules.get("logging")
    if logging is None:
        return {}
    handlers = [ref() for ref in list(getattr(logging, "_handlerList", ()))]
    for logger in [logging.getLogger(), *list(logging.Logger.manager.loggerDict.values())]:
        handlers.extend(getattr(logger, "handlers", ()))
    fds: dict[int, object] = {}
    std_streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    for handler in handlers:
        if handler is None or handler is getattr(logging, "lastResort", None):
            continue
        for attr in ("stream", "socket", "sock"):
            target = getattr(handler, attr, None)
            if target is not None and any(target is std for std in std_streams):
                continue  # writes to stdout/stderr, which the daemon redirects
            fileno = getattr(target, "fileno", None)
            if fileno is None:
                continue
            try:
                fds.setdefault(int(fileno()), handler)
            except (OSError, ValueError, TypeError):
                continue
    return fds


def prepare(options: Options, *, worker: bool = False) -> Prepared:
    """Check and open everything the daemon needs; raise here, not after the fork.

    A *worker* (``process_daemonize``) takes ``ready_fd`` from its option
    only: the environment's, like ``$NOTIFY_SOCKET``, is the service's.
    """
    require_posix()
    prepared = Prepared(options)
    created = prepared.created
    try:
        prepared.identity = _privileges.resolve(options)
        prepared.root = _privileges.check_chroot(options)
        _check_workdir(prepared.workdir, prepared.root)
        prepared.keep = _resolve_keep_fds(options)
        ready_fd = _resolve_ready_fd(options, use_environ=not worker)
        if ready_fd is not None:
            prepared.ready_fd = above_stdio(ready_fd, keep_original=True)
            if prepared.ready_fd != ready_fd:
                prepared.launcher_copies.append(prepared.ready_fd)
        listening = _wants_sockets(options)
        if listening:
            _take_upgrade(prepared)
        if options.pidfile is not None:
            # First, so that "already running" leaves no new log file behind.
            pidfile = Holder(os.path.abspath(options.pidfile))
            if prepared.handover is not None and prepared.handover.pidfile is not None:
                pidfile.adopt(prepared.handover.pidfile)  # an upgrade: the lock is never released
            else:
                pidfile.lock()
            prepared.pidfile = pidfile
            check_room(pidfile.fileno(), "pidfile", pidfile.path)
        if listening:
            prepared.sockets = _resolve_sockets(options, prepared.handover)
            prepared.keep |= prepared.sockets.keep()
            try:
                prepared.launch_cwd = os.getcwd()
            except OSError:  # a removed cwd: a successor could not run there either
                prepared.launch_cwd = ""
        stdin = open_target(options.stdin, IN_FLAGS, "stdin")
        prepared.launcher_copies.append(stdin)
        stdout_path = options.stdout or os.devnull
        stdout = open_target(stdout_path, LOG_FLAGS, "stdout target", created)
        prepared.launcher_copies.append(stdout)
        check_room(stdout, "stdout target", stdout_path)
        stderr = stdout
        if options.stderr is not None and os.path.abspath(options.stderr) != os.path.abspath(stdout_path):
            stderr = open_target(options.stderr, LOG_FLAGS, "stderr target", created)
            prepared.launcher_copies.append(stderr)
            check_room(stderr, "stderr target", options.stderr)
        prepared.stdio = (stdin, stdout, stderr)
    except BaseException:
        remove_created(created)
        if prepared.pidfile is not None:
            prepared.pidfile.abandon()
        prepared.close()
        raise
    return prepared


def _wants_sockets(options: Options) -> bool:
    """Whether this start has sockets to resolve (``socket`` is imported only then)."""
    return bool(options.listen) or "LISTEN_FDS" in os.environ or HANDOVER_VARIABLE in os.environ


def _take_upgrade(prepared: Prepared) -> None:
    """An upgrade's successor: what the previous generation handed over, and where to report our pid."""
    prepared.handover = read_handover()
    prepared.report_fd = take_report_fd(prepared.handover)
    if prepared.report_fd is not None:
        prepared.launcher_copies.append(prepared.report_fd)


def _resolve_sockets(options: Options, handover: Handover | None) -> Resolved:
    from ._sockets import resolve

    return resolve(options.caller, options.listen, options.umask, handover.sockets if handover is not None else None)


def _check_workdir(workdir: str, root: str | None = None) -> None:
    if root is not None:  # the daemon will see the workdir inside the chroot
        workdir = os.path.join(root, workdir.lstrip("/"))
    check_directory(workdir, "workdir")
    if not os.access(workdir, os.X_OK):
        import errno

        raise OSError(errno.EACCES, "workdir: cannot enter directory", workdir)


def _resolve_keep_fds(options: Options) -> set[int]:
    """The fds to keep: ``keep_fds`` (each open) and logging handlers' fds.

    One in 0-2 that is not the standard stream (a file that took the number
    of a stream closed at start) would be replaced by the detach: a
    ``ValueError`` naming it, here in the launcher.
    """
    keep = set()
    for item, fd in zip(options.keep_fds, resolve_fds(options.caller, options.keep_fds), strict=True):
        try:
            os.fstat(fd)
        except OSError:
            import errno

            raise OSError(errno.EBADF, f"keep_fds: file descriptor {fd} ({item!r}) is not open") from None
        displaced = displaced_stdio(fd)
        if displaced is not None:
            raise ValueError(f"{options.caller}(): keep_fds item {item!r} {displaced}")
        keep.add(fd)
    handlers = _logging_fds()
    for fd, handler in handlers.items():
        displaced = displaced_stdio(fd)
        if displaced is not None:
            raise ValueError(f"{options.caller}(): the logging handler {handler!r} writes to a file that {displaced}")
    return keep | handlers.keys()


def _resolve_ready_fd(options: Options, *, use_environ: bool = True) -> int | None:
    """The fd to write a newline to at readiness: the option, else ``$DAEMONDECO_READY_FD``.

    Checked here, in the launcher: a malformed variable is a ``ValueError``
    naming it, an fd that is not open (or open read-only) an ``OSError``
    naming where it came from.
    """
    fd, source = options.ready_fd, f"{options.caller}(): ready_fd"
    if fd is None and use_environ:
        text = os.environ.get(READY_FD_VARIABLE, "")
        if not text:
            return None
        if not (len(text) <= 10 and text.isascii() and text.isdigit() and int(text) <= MAX_FD):
            raise ValueError(
                f"{READY_FD_VARIABLE}={text[:40]!r}: not a file descriptor number (0 to {MAX_FD}); "
                "it names the fd to write readiness to"
            )
        fd, source = int(text), READY_FD_VARIABLE
    if fd is None:
        return None
    import errno
    import fcntl

    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError:
        raise OSError(errno.EBADF, f"{source}: file descriptor {fd} is not open") from None
    if flags & os.O_ACCMODE == os.O_RDONLY:
        raise OSError(errno.EBADF, f"{source}: file descriptor {fd} is open read-only; readiness is written to it")
    return fd


# -- the fork ----------------------------------------------------------------


def _warn_threads() -> bool:
    """Warn (``DaemonWarning``, at the caller's line) when other threads run; whether it did."""
    threading = sys.modules.get("threading")
    if threading is None or threading.active_count() <= 1:
        return False
    import warnings

    others = [
        t.name
        for t in threading.enumerate()
        if t is not threading.current_thread() and not t.name.startswith("daemondeco-")  # our own helpers
    ]
    if not others:
        return False
    names = ", ".join(sorted(others))
    warnings.warn(
        DaemonWarning(
            f"starting a daemon while other threads run ({names}): fork() copies only the calling "
            "thread, so they will not exist in the daemon, and a lock one of them holds stays locked "
            "there. Start threads inside the daemon instead."
        ),
        stacklevel=_user_stacklevel(),
    )
    return True


def _fork(*, warned: bool) -> int:
    """``os.fork()``; after our own thread warning, without CPython's (3.12+) saying it again at our line."""
    if not warned:
        return os.fork()
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"This process .* is multi-threaded", DeprecationWarning)
        return os.fork()


def _user_stacklevel() -> int:
    """The warnings stacklevel of the first frame outside daemondeco and wrapt."""
    here = os.path.dirname(__file__)
    level, frame = 1, sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not (name.startswith(here) or f"{os.sep}wrapt{os.sep}" in name):
            break
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    return level


def detach(prepared: Prepared, *, worker: bool, name: str | None = None) -> int:
    """Fork the daemon. Returns its pid in the launcher (once ready), 0 in the daemon.

    With *worker* the launcher is a caller that keeps running
    (``process_daemonize``); otherwise it is about to leave, and a wait
    longer than a second says so on a terminal, naming *name*.
    """
    try:
        warned = _warn_threads()
    except BaseException:  # the warning made an error (-W error): nothing forked, nothing is left
        _undo_prepare(prepared)
        raise
    read_end, write_end = os.pipe()  # both O_CLOEXEC
    read_end, write_end = above_stdio(read_end), above_stdio(write_end)
    # Read here, not in the daemon: the child has the same fd table, and a
    # fresh child pays ~10x for the same read in copy-on-write faults (benchmarks/).
    prepared.fd_table_size = fd_table_size()
    flush_stdio()
    try:
        child = _fork(warned=warned)
    except BaseException:  # EAGAIN (RLIMIT_NPROC, pids.max), ENOMEM: nothing started
        os.close(read_end)
        os.close(write_end)
        _undo_prepare(prepared)
        raise
    if not child:  # pragma: no cover - this frame is not traced after fork; the steps it calls are
        prepared.runtime = _in_children(read_end, write_end, prepared, worker=worker)
        return 0
    os.close(write_end)
    if worker:
        prepared.monitor = child
    try:
        return await_ready(read_end, child, prepared.options, leaving=not worker, name=name, monitored=worker)
    except (StartupError, StartInterrupted) as exc:
        _remove_stale_pidfile(prepared, exc.pid)
        raise
    finally:
        os.close(read_end)
        prepared.close()


def _undo_prepare(prepared: Prepared) -> None:
    """The fork failed: leave no file behind that prepare() created (the pidfile, empty log files)."""
    remove_created(prepared.created)
    if prepared.pidfile is not None and prepared.handover is None:
        prepared.pidfile.abandon()  # the empty file we locked; an upgrade's is the previous daemon's
    prepared.close()


def _remove_stale_pidfile(prepared: Prepared, pid: int | None) -> None:
    """After a failed start (the daemon is gone), remove the pidfile it left empty or naming it."""
    if prepared.pidfile is None:
        return
    prepared.close()  # our copy of the open file would keep the lock held
    watcher = Watcher.open(prepared.pidfile.path)
    if watcher is not None:
        with watcher:
            watcher.remove_if_stale(pid, companions=(state_path(prepared.pidfile.path),))


def _in_children(read_end: int, write_end: int, prepared: Prepared, *, worker: bool) -> Runtime:
    """The first child detaches; returns only in the daemon, detached, with its runtime.

    For a ``@daemon`` it leaves at once. For a worker it stays as the
    worker's monitor (``_outcome``): the worker's parent, which sees how it
    ends and leaves a record of it.
    """
    os.close(read_end)
    try:
        os.setsid()
        outcome = _outcome_pipe(prepared) if worker else None
        if outcome is not None and prepared.pidfile is not None:  # before the worker: no old record read as its own
            mark_pending(prepared.pidfile.path, _proc.identity(os.getpid()))
        child = os.fork()
        if child:
            if outcome is not None:
                _monitor(child, outcome, prepared)
            os._exit(0)
    except BaseException as exc:  # pragma: no cover - setsid/fork failing in the first child
        send(write_end, ERROR, describe_exception(exc))
        os._exit(1)
    if outcome is not None:  # pragma: no cover - untraced frame after fork
        os.close(outcome[0])
        prepared.keep.add(outcome[1])
    # A daemon started from inside a worker must not write to that worker's monitor (its fd closes here).
    adopt_sender(outcome[1] if outcome is not None else None)  # pragma: no cover - untraced frame after fork
    return _become_daemon_or_exit(prepared, write_end, worker=worker)  # pragma: no cover - untraced frame after fork


def _outcome_pipe(prepared: Prepared) -> tuple[int, int]:
    """The worker's pipe to its monitor (both ends above stdio); SIGCHLD's default back if it was ignored.

    An ignored SIGCHLD makes the kernel reap children at once, and the
    monitor's ``waitpid`` would find none.
    """
    _signals.wait_for_children(prepared.signal_state)
    read_end, write_end = os.pipe()  # O_CLOEXEC: a program the worker execs does not hold it
    return above_stdio(read_end), above_stdio(write_end)


def _monitor(worker: int, outcome: tuple[int, int], prepared: Prepared) -> NoReturn:
    """The first child, once the worker is forked: drop everything but the pipe, wait, record (``_outcome``)."""
    try:
        caller = os.getppid()
        _signals.block_all()  # it leaves when the worker does, not before
        for target, fd in enumerate(prepared.stdio):  # not the caller's terminal or pipes: the worker's stdio
            os.dup2(fd, target)
        close_fds({0, 1, 2, outcome[0]}, prepared.fd_table_size)  # the pidfile lock, the caller's fds
        pidfile = prepared.pidfile.path if prepared.pidfile is not None else None
    except BaseException:  # pragma: no cover - dup2 failing: the worker runs on, unrecorded
        os._exit(0)
    watch(worker, outcome[0], pidfile, caller)


def _become_daemon_or_exit(prepared: Prepared, write_end: int, *, worker: bool) -> Runtime:
    try:
        runtime = enter(Entry(WORKER if worker else DETACHED, prepared.options, prepared=prepared, write_end=write_end))
        start_watchdog(runtime)
    except BaseException as exc:  # a step after the fork failed (chroot, initgroups, setuid...)
        send(write_end, ERROR, describe_exception(exc))
        try:
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__)  # into the stderr target, if redirected
            flush_stdio()
        finally:
            os._exit(1)
    return runtime


# -- foreground: this process becomes the daemon -----------------------------


def resolve_detach(options: Options) -> bool:
    """Whether to fork: not under a service manager that already backgrounds us.

    ``DAEMONDECO_FOREGROUND=1`` forces the foreground (debugging); then the
    ``detach`` option decides; by default we detach unless this very process
    is supervised: ``NOTIFY_SOCKET`` (systemd ``Type=notify``),
    ``SUPERVISOR_ENABLED`` (supervisord, which treats an exited child as a
    failed start) or PID 1 (a container's init: leaving would end it).
    """
    if os.environ.get("DAEMONDECO_FOREGROUND") == "1":
        return False
    if options.detach is not None:
        return options.detach
    if os.environ.get("NOTIFY_SOCKET") or os.environ.get("SUPERVISOR_ENABLED"):
        return False  # empty counts as unset, as in sd_notify(3)
    return os.getpid() != 1


class Foreground:
    """A daemon run in this process, without forking.

    Always: the pidfile held (our pid in it), the daemon's signal handling,
    systemd notification, privilege drop. :meth:`for_service` (the decorated
    function called under a service manager, or with ``detach=False``) also
    gives what a service expects of its process: the umask, the workdir and
    the configured stdout/stderr files. :meth:`for_debugging` (``.run()``)
    leaves stdio, cwd and umask alone, and ``close()`` undoes what it can.
    """

    def __init__(self, options: Options, *, service: bool) -> None:
        require_posix()
        ready_fd = _resolve_ready_fd(options)
        identity = _privileges.resolve(options)
        root = _privileges.check_chroot(options)
        workdir = os.path.abspath(options.workdir) if service else None
        if workdir is not None:
            _check_workdir(workdir, root)
        self.pidfile: Holder | None = None
        if options.pidfile is not None:
            self.pidfile = Holder(os.path.abspath(options.pidfile))
            self.pidfile.lock()
        self._sockets: Resolved | None = None
        entry = None
        try:
            # Before the notifier takes the LISTEN_* variables.
            self._sockets = _resolve_sockets(options, None) if _wants_sockets(options) else None
            entry = Entry(
                SERVICE if service else DEBUGGING,
                options,
                pidfile=self.pidfile,
                given_ready_fd=ready_fd,
                sockets=self._sockets,
                identity=identity,
                root=root,
                workdir=workdir,
            )
            self.runtime = enter(entry)
        except BaseException:
            if self._sockets is not None:
                self._sockets.close_launcher_copies()
            if entry is not None:
                drop_ready_fd_copy(entry.ready_fd, ready_fd)
            Runtime.deactivate(entry.previous_runtime if entry is not None else None)
            if self.pidfile is not None and self.pidfile.pid is None:
                self.pidfile.abandon()
            elif self.pidfile is not None:
                self.pidfile.release()
            raise
        self._previous_runtime = entry.previous_runtime
        self._previous_handlers = entry.previous_handlers
        start_watchdog(self.runtime)

    @classmethod
    def for_service(cls, options: Options) -> Foreground:
        """The service's own process: umask, workdir and stdio targets too."""
        return cls(options, service=True)

    @classmethod
    def for_debugging(cls, options: Options) -> Foreground:
        """``.run()``: stdio, cwd and umask stay as they are."""
        return cls(options, service=False)

    def run(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """Call *func* as this daemon's function (readiness with ``ready="start"``)."""
        return call_main(func, args, kwargs, self.runtime)

    def close(self) -> None:
        """Restore the signal handlers, remove the state file, release the pidfile.

        A ``ready_fd`` never written is closed: its reader sees end of file.
        """
        self.runtime.drop_ready_fd()
        Runtime.deactivate(self._previous_runtime)
        _signals.restore(self._previous_handlers)
        if self._sockets is not None:
            self._sockets.uninstall()
        self.runtime.release(leaving=False)


def run_foreground(options: Options, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Run *func* here, without forking: same pidfile lock and signal handling."""
    session = Foreground.for_debugging(options)
    try:
        return session.run(func, args, kwargs)
    finally:
        session.close()


# -- the public forms ----------------------------------------------------------


def become_daemon(options: Options, announce: Callable[[int], None] | None = None, name: str | None = None) -> Runtime:
    """Detach; the launcher leaves with status 0 once the daemon is ready.

    Returns only in the daemon, with its runtime. Raises in the launcher (bad
    input, already running, StartupError) before or instead of leaving;
    Ctrl-C while it waits stops the starting daemon and exits 130. Under a
    service manager that supervises this process (``NOTIFY_SOCKET``), or
    with ``detach=False``, nothing forks: this process becomes the daemon.
    """
    if not resolve_detach(options):
        if os.getpid() == 1:  # a container: an init stays PID 1, the daemon runs as its child
            become_init_or_daemon(close_fds)
        return Foreground.for_service(options).runtime  # for the rest of the process's life
    try:
        prepared = prepare(options)
        pid = detach(prepared, worker=False, name=name)
    except StartInterrupted as exc:
        _leave_interrupted(exc)
    if pid:
        if announce is not None:
            announce(pid)
        _leave_launcher(0)
    assert prepared.runtime is not None
    return prepared.runtime


def launch(
    options: Options,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    announce: Callable[[int], None] | None = None,
) -> NoReturn:
    """A ``@daemon`` function called: the launcher leaves once ready, the daemon runs *func*."""
    if options.restart is not None:
        _warn_double_supervision(options)
    runtime = become_daemon(options, announce, getattr(func, "__name__", None))
    _run_function(runtime, func, args, kwargs)


def _run_function(
    runtime: Runtime, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> NoReturn:
    """In the daemon: run *func*, or with ``restart=`` supervise workers that run it (``_supervise``)."""
    if runtime.options.restart is not None:
        from ._supervise import supervise  # loaded before the fork, by _warn_double_supervision

        supervise(runtime, func, args, kwargs)
    run_in_daemon(runtime, func, args, kwargs)


def _warn_double_supervision(options: Options) -> None:
    """In the launcher, with ``restart=``: load the supervisor (before the fork) and warn if a manager restarts too.

    Loaded only then: ``_supervise`` (and the ``signal`` module, ``enum``) cost a
    start without ``restart=`` about 6 ms.
    """
    from ._supervise import warn_double_supervision

    warn_double_supervision(options, stacklevel=_user_stacklevel() + 1)


def spawn(
    options: Options, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> DaemonProcess:
    """A ``@process_daemonize`` function called: start a worker, return its handle here."""
    if options.restart is not None:
        _warn_double_supervision(options)
    prepared = prepare(options, worker=True)
    pid = detach(prepared, worker=True)
    if pid:
        path = prepared.pidfile.path if prepared.pidfile is not None else None
        return DaemonProcess.started(pid, path, stop_timeout=options.stop_timeout, monitor=prepared.monitor)
    assert prepared.runtime is not None
    _run_function(prepared.runtime, func, args, kwargs)


def daemonize_here(options: Options) -> None:
    """``daemonize()``: detach; return in the daemon, which then runs the rest of the script."""
    runtime = become_daemon(options)
    watch_unready_exit(runtime)
    if options.ready == "start":
        runtime.mark_ready()
    elif options.ready == "auto":
        runtime.begin_probation()


def _leave_interrupted(exc: StartInterrupted) -> NoReturn:
    """A launcher that was about to leave anyway: one line on stderr, status 130 (Ctrl-C)."""
    try:
        print(f"daemondeco: {exc}", file=sys.stderr)
    except (OSError, ValueError):  # pragma: no cover - stderr closed
        pass
    _leave_launcher(130)


def _leave_launcher(status: int) -> NoReturn:
    """End the launching process, running no atexit handler."""
    flush_stdio()
    os._exit(status)
