"""The detach sequence, as small named steps shared by every public form.

``prepare()`` runs in the launcher and does everything that can fail before a
fork: it validates paths, opens the stdio targets and takes the pidfile lock.
``detach()`` forks twice (``fork``, ``setsid``, ``fork``) and returns twice,
like ``fork()``: in the launcher, once the daemon reported ready, with the
daemon's pid; in the daemon, with 0, after the daemon's side of the detach
(workdir, umask, stdio, closing fds, signals, pid written) succeeded.

The launcher never sleeps: it blocks in ``poll()`` on the readiness pipe (see
``_ready``). Intermediate processes and launchers leave with ``os._exit``
after flushing stdio, so no atexit handler or buffer runs twice.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import time

from . import _privileges, _proc, _signals
from ._errors import DaemonError, DaemonWarning, StartupError, path_error
from ._options import resolve_fds
from ._pidfile import Pidfile
from ._ready import (
    EOF,
    ERROR,
    EXIT,
    MANAGER_VARIABLES,
    PID,
    READY,
    FrameReader,
    Runtime,
    SystemdNotifier,
    describe_exception,
    flush_stdio,
    reopen_stdio,
    send,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping
    from typing import Any, NoReturn

    from ._options import Options

__all__ = ["Prepared", "detach", "leave_launcher", "prepare", "require_posix", "run_foreground", "run_in_daemon"]

_LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_IN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def require_posix() -> None:
    """Raise DaemonError on platforms without ``fork()`` and ``flock()``."""
    if not hasattr(os, "fork") or fcntl is None:
        raise DaemonError(f"daemondeco needs a POSIX system with fork() and flock(); this is {sys.platform!r}")


# -- in the launcher, before any fork ---------------------------------------


def _high_fd(fd: int) -> int:
    """Move *fd* to 3 or above so redirecting 0/1/2 cannot clobber it."""
    if fd > 2:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(fd)
    return moved


def _open_target(path: str, flags: int, what: str, created: list[tuple[str, int]] | None = None) -> int:
    """Open a stdio target; with *created*, record a log file this call created."""
    try:
        if created is None or not flags & os.O_CREAT:
            return _high_fd(os.open(path, flags, 0o644))
        while True:
            try:
                return _high_fd(os.open(path, flags & ~os.O_CREAT))
            except FileNotFoundError:
                pass
            try:
                fd = _high_fd(os.open(path, flags | os.O_EXCL, 0o644))
            except FileExistsError:  # pragma: no cover - created between our two calls
                continue
            created.append((path, fd))
            return fd
    except OSError as exc:
        raise path_error(exc, f"cannot open {what}", path) from None


def _remove_created(created: list[tuple[str, int]]) -> None:
    """Undo the log files a failed prepare() created (if still empty and ours)."""
    for path, fd in created:
        try:
            held, there = os.fstat(fd), os.stat(path)
        except OSError:
            continue
        if (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino) and held.st_size == 0:
            os.unlink(path)


def _logging_fds() -> set[int]:
    """The fds of every configured ``logging`` handler (files, sockets, streams)."""
    logging = sys.modules.get("logging")
    if logging is None:
        return set()
    handlers = [ref() for ref in list(getattr(logging, "_handlerList", ()))]
    for logger in [logging.getLogger(), *list(logging.Logger.manager.loggerDict.values())]:
        handlers.extend(getattr(logger, "handlers", ()))
    fds = set()
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
                fds.add(int(fileno()))
            except (OSError, ValueError, TypeError):
                continue
    return fds


class Prepared:
    """What the launcher opened for the daemon; closed in the launcher after the fork."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.workdir = os.path.abspath(options.workdir)
        self.identity: _privileges.Identity | None = None
        self.root: str | None = None
        self.stdio_paths = stdio_paths(options)
        self.pidfile: Pidfile | None = None
        # Looked at here, before the fork, so the daemon only acts on what it
        # must: each page a fresh child touches is copied (~3 us a page).
        self.signal_state = _signals.inherited()
        self.manager_env = any(name in os.environ for name in MANAGER_VARIABLES)
        self.std_swapped = _swapped_std_streams()
        self.fds: list[int] = []
        self.keep: set[int] = set()
        self.stdio: tuple[int, int, int] = (-1, -1, -1)

    def close(self) -> None:
        """Close the launcher's copies of everything (the daemon has its own)."""
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        if self.pidfile is not None:
            self.pidfile._forget()


def prepare(options: Options) -> Prepared:
    """Check and open everything the daemon needs; raise here, not after the fork."""
    require_posix()
    prepared = Prepared(options)
    created: list[tuple[str, int]] = []
    try:
        prepared.identity = _privileges.resolve(options)
        prepared.root = _privileges.check_chroot(options)
        _check_workdir(prepared.workdir, prepared.root)
        prepared.keep = _resolve_keep_fds(options)
        if options.pidfile is not None:
            # First, so that "already running" leaves no new log file behind.
            pidfile = Pidfile(options.pidfile)
            pidfile._lock()
            assert pidfile._fd is not None
            pidfile._fd = _high_fd(pidfile._fd)
            prepared.pidfile = pidfile
        stdin = _open_target(options.stdin, _IN_FLAGS, "stdin")
        prepared.fds.append(stdin)
        stdout_path = options.stdout or os.devnull
        stdout = _open_target(stdout_path, _LOG_FLAGS, "stdout target", created)
        prepared.fds.append(stdout)
        stderr = stdout
        if options.stderr is not None and os.path.abspath(options.stderr) != os.path.abspath(stdout_path):
            stderr = _open_target(options.stderr, _LOG_FLAGS, "stderr target", created)
            prepared.fds.append(stderr)
        prepared.stdio = (stdin, stdout, stderr)
    except BaseException:
        _remove_created(created)
        if prepared.pidfile is not None:
            prepared.pidfile._abandon()
        prepared.close()
        raise
    return prepared


def stdio_paths(options: Options) -> tuple[str | None, str | None]:
    """The explicitly configured stdout/stderr files (absolute), for reopening on SIGHUP."""
    out = os.path.abspath(options.stdout) if options.stdout is not None else None
    err = os.path.abspath(options.stderr) if options.stderr is not None else None
    return out, err


def _check_workdir(workdir: str, root: str | None = None) -> None:
    if root is not None:  # the daemon will see the workdir inside the chroot
        workdir = os.path.join(root, workdir.lstrip("/"))
    if not os.path.isdir(workdir):
        code = errno.ENOTDIR if os.path.exists(workdir) else errno.ENOENT
        raise OSError(code, f"workdir: {os.strerror(code)}", workdir)
    if not os.access(workdir, os.X_OK):
        raise OSError(errno.EACCES, "workdir: cannot enter directory", workdir)


def _resolve_keep_fds(options: Options) -> set[int]:
    keep = set()
    for item, fd in zip(options.keep_fds, resolve_fds(options.caller, options.keep_fds), strict=True):
        try:
            os.fstat(fd)
        except OSError:
            raise OSError(errno.EBADF, f"keep_fds: file descriptor {fd} ({item!r}) is not open") from None
        keep.add(fd)
    return keep | _logging_fds()


# -- the fork ----------------------------------------------------------------


def _warn_threads() -> None:
    threading = sys.modules.get("threading")
    if threading is None or threading.active_count() <= 1:
        return
    import warnings

    others = [
        t.name
        for t in threading.enumerate()
        if t is not threading.current_thread() and not t.name.startswith("daemondeco-")  # our own helpers
    ]
    if not others:
        return
    names = ", ".join(sorted(others))
    warnings.warn(
        DaemonWarning(
            f"starting a daemon while other threads run ({names}): fork() copies only the calling "
            "thread, so they will not exist in the daemon. Start threads inside the daemon instead."
        ),
        stacklevel=_user_stacklevel(),
    )


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


def detach(prepared: Prepared, *, worker: bool) -> int:
    """Fork the daemon. Returns its pid in the launcher (once ready), 0 in the daemon.

    With *worker* the launcher is a caller that keeps running
    (``process_daemonize``); otherwise it is about to leave.
    """
    _warn_threads()
    read_end, write_end = os.pipe()  # both O_CLOEXEC
    read_end, write_end = _high_fd(read_end), _high_fd(write_end)
    flush_stdio()
    try:
        child = os.fork()
    except BaseException:
        os.close(read_end)
        os.close(write_end)
        prepared.close()
        raise
    if not child:  # pragma: no cover - this frame is not traced after fork; the steps it calls are
        _in_children(read_end, write_end, prepared, worker=worker)
        return 0
    os.close(write_end)
    try:
        return _await_ready(read_end, child, prepared)
    finally:
        os.close(read_end)
        prepared.close()


def _in_children(read_end: int, write_end: int, prepared: Prepared, *, worker: bool) -> None:
    """The first child detaches and leaves; returns only in the daemon, detached."""
    os.close(read_end)
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
    except BaseException as exc:  # pragma: no cover - setsid/fork failing in the first child
        send(write_end, ERROR, describe_exception(exc))
        os._exit(1)
    _become_daemon_or_exit(prepared, write_end, worker=worker)  # pragma: no cover - untraced frame after fork


def _become_daemon_or_exit(prepared: Prepared, write_end: int, *, worker: bool) -> None:
    try:
        _become_daemon(prepared, write_end, worker=worker)
    except BaseException as exc:  # a step after the fork failed (chroot, initgroups, setuid...)
        send(write_end, ERROR, describe_exception(exc))
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)  # into the stderr target, if redirected
        flush_stdio()
        os._exit(1)


def _become_daemon(prepared: Prepared, write_end: int, *, worker: bool) -> None:
    """The daemon's side of the detach, in order; readiness comes later."""
    options = prepared.options
    pid = os.getpid()
    send(write_end, PID, str(pid).encode())
    pidfile = prepared.pidfile
    if pidfile is not None:
        pidfile._write(pid)  # first: a refused start or a stop can name us at once
    os.umask(options.umask)
    for target, fd in enumerate(prepared.stdio):
        os.dup2(fd, target)
    keep = {0, 1, 2, write_end, *prepared.keep}
    if pidfile is not None:
        assert pidfile._fd is not None
        keep.add(pidfile._fd)
    close_fds(keep)
    notifier = None
    if prepared.manager_env:  # before a chroot hides the socket
        notifier = SystemdNotifier.from_environ(main_process=not worker)
    _privileges.enter(options, prepared.identity, prepared.root, prepared.workdir)
    Runtime.current = Runtime(
        write_end, options, pidfile=pidfile, notifier=notifier, stdio_paths=prepared.stdio_paths
    )
    _signals.reset_inherited(prepared.signal_state)
    _signals.install(options)
    if prepared.std_swapped:
        _rebind_std_streams(prepared.std_swapped)
    if prepared.stdio_paths != (None, None):  # nothing to see line by line in /dev/null
        _line_buffered()
    if worker:
        import atexit

        # The worker must not run its caller's exit handlers (tempfile
        # cleanup, multiprocessing teardown); it runs only its own.
        atexit._clear()
    if notifier is not None:
        notifier.start_watchdog()


def _swapped_std_streams() -> tuple[str, ...]:
    """The names of sys.stdin/stdout/stderr that use other fds than 0/1/2.

    Streams not backed by an fd (a StringIO, a logging proxy) do not count.
    """
    swapped = []
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            if getattr(sys, name).fileno() != fd:
                swapped.append(name)
        except (AttributeError, OSError, ValueError):
            continue
    return tuple(swapped)


def _rebind_std_streams(names: tuple[str, ...]) -> None:
    """Make the named std streams use fds 0/1/2 again.

    A test runner capturing output (pytest) or a program may have pointed them
    at other fds, which the daemon has just closed: writes would fail, or
    land in whatever file reuses the number.
    """
    for name in names:
        stream = getattr(sys, name)
        fd = ("stdin", "stdout", "stderr").index(name)
        encoding = getattr(stream, "encoding", None) or "utf-8"
        errors = "strict" if fd == 0 else "backslashreplace"
        setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding=encoding, errors=errors, closefd=False))  # noqa: SIM115
    faulthandler = sys.modules.get("faulthandler")
    if faulthandler is not None and faulthandler.is_enabled():
        faulthandler.enable(file=sys.stderr)  # it kept the fd of the old stderr


def _line_buffered() -> None:
    """Make printed lines reach the log files as they are printed."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)


def close_fds(keep: set[int]) -> None:
    """Close every fd but *keep*; the cost follows the open fds, not RLIMIT_NOFILE."""
    for directory in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            fd = int(name)
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass  # the directory's own fd, already closed
        return
    import resource  # pragma: no cover - no fd directory to list

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # pragma: no cover
    start = 0  # pragma: no cover
    for fd in [*sorted(keep), limit if limit > 0 else 65536]:  # pragma: no cover
        os.closerange(start, fd)
        start = fd + 1


# -- the launcher waits ------------------------------------------------------


def _await_ready(read_end: int, child: int, prepared: Prepared) -> int:
    try:
        return _read_frames(read_end, prepared)
    finally:
        # The first child has exited by now (it forked the daemon, which sent
        # a frame, or failed): reaping it here costs no wait. Never a zombie.
        os.waitpid(child, 0)


def _read_frames(read_end: int, prepared: Prepared) -> int:
    options = prepared.options
    reader = FrameReader(read_end)
    pid: int | None = None
    deadline = time.monotonic() + options.ready_timeout
    while True:
        frame = reader.next(deadline)
        if frame is None:
            _timed_out(pid, options)
        tag, payload = frame
        if tag == PID:
            pid = int(payload)
        elif tag == READY:
            break
        else:
            _startup_failed(tag, payload, pid, after_ready=False, options=options)
    assert pid is not None
    if options.startup_grace > 0:
        deadline = time.monotonic() + options.startup_grace
        while True:
            frame = reader.next(deadline)
            if frame is None or frame == (EXIT, b"0"):
                break
            _startup_failed(frame[0], frame[1], pid, after_ready=True, options=options)
    return pid


def _timed_out(pid: int | None, options: Options) -> NoReturn:
    if pid is not None:
        from ._control import terminate

        terminate(pid, options.stop_timeout)
    hint = " (it never called notify_ready())" if options.ready == "notify" else ""
    raise StartupError(
        f"daemon (pid {pid}) was not ready within ready_timeout={options.ready_timeout:g} s{hint}; it was stopped",
        pid=pid,
    )


def _startup_failed(tag: bytes, payload: bytes, pid: int | None, *, after_ready: bool, options: Options) -> NoReturn:
    if pid is not None and not _proc.wait_exit(pid, options.stop_timeout):
        # It reported failure but lingers (slow cleanup): the caller gets
        # StartupError only once nothing runs and the pidfile lock is free.
        from ._control import terminate

        terminate(pid, 0)
    when = f"within startup_grace={options.startup_grace:g} s" if after_ready else "before it was ready"
    if tag == ERROR:
        import json

        info = json.loads(payload)
        raise StartupError(
            f"daemon (pid {pid}) failed {when}: {info['type']}: {info['message']}",
            pid=pid,
            exc_type=info["type"],
            exc_message=info["message"],
            daemon_traceback=info["traceback"],
        )
    if tag == EXIT:
        status = int(payload) if payload else None
        hint = ""
        if status == 0 and not after_ready and options.ready == "notify":
            hint = " (it never called notify_ready())"
        said = f" with status {status}" if status is not None else ""
        raise StartupError(f"daemon (pid {pid}) exited{said} {when}{hint}", pid=pid, exit_status=status)
    assert tag == EOF
    raise StartupError(f"daemon (pid {pid}) died {when}{_death_note(pid)}", pid=pid)


def _death_note(pid: int | None) -> str:
    """What /proc says about a dead daemon (while it is an unreaped zombie)."""
    fields = _proc.stat_fields(pid) if pid is not None else None
    if fields is None or fields[0] != "Z" or len(fields) < 50:
        return ""
    status = int(fields[49])
    if os.WIFSIGNALED(status):
        import signal

        return f" (killed by {signal.Signals(os.WTERMSIG(status)).name})"
    return f" (exit status {os.WEXITSTATUS(status)})"


def leave_launcher() -> NoReturn:
    """End the launching process with status 0, running no atexit handler."""
    flush_stdio()
    os._exit(0)


# -- running the function ----------------------------------------------------


def _exit_status(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _finish(status: int, pidfile: Pidfile | None = None) -> NoReturn:
    """End the daemon as the interpreter would, minus its slow teardown.

    Like Python's own shutdown: wait for non-daemon threads, run the atexit
    handlers (for a worker only its own: the caller's were cleared), flush
    stdio. Then ``os._exit``: skipping the interpreter's final garbage
    collection makes a stop take ~2 ms instead of ~35 ms (benchmarks/).
    """
    import atexit
    import threading

    try:
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon and thread.is_alive():
                thread.join()
        atexit._run_exitfuncs()
    finally:
        flush_stdio()
        if pidfile is not None:
            pidfile.release()  # last: while anything of ours runs, the lock says so
        os._exit(status)


def call(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], runtime: Runtime) -> Any:
    """Call the daemon's function, reporting readiness first with ``ready="start"``.

    A coroutine function runs under ``asyncio.run``; then readiness is
    reported from inside the running loop and SIGTERM cancels the main task.
    """
    import inspect

    if inspect.iscoroutinefunction(func):
        import asyncio

        return asyncio.run(_async_main(func, args, kwargs, runtime))
    if runtime.ready_mode == "start":
        runtime.mark_ready()  # as late as possible: everything else succeeded
    return func(*args, **kwargs)


async def _async_main(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], runtime: Runtime
) -> Any:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopped = False

    def on_term() -> None:
        nonlocal stopped
        if _signals.begin_stop():
            stopped = True
            task.cancel()

    if _signals.in_main_thread():
        loop.add_signal_handler(signal.SIGTERM, on_term)
        if signal.SIGHUP not in dict(runtime.user_signals):
            loop.add_signal_handler(signal.SIGHUP, runtime.reload)
    if runtime.ready_mode == "start":
        runtime.mark_ready()
    try:
        return await func(*args, **kwargs)
    except asyncio.CancelledError:
        if stopped:
            raise SystemExit(0) from None
        raise


def run_in_daemon(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> NoReturn:
    """Call *func* in the daemon and end the daemon with its outcome.

    Return: status 0. ``SystemExit`` (SIGTERM raises ``SystemExit(0)``): its
    status, after ``finally`` blocks ran. Uncaught exception: its traceback on
    the stderr target, status 1, and the launcher hears of it while it still
    listens. The daemon's life is the function's: code around the call in the
    launching script does not run in the daemon (see ``_finish``).
    """
    runtime = Runtime.current
    assert runtime is not None
    status = 1
    try:
        call(func, args, kwargs, runtime)
        status = 0
    except SystemExit as exc:
        status = _exit_status(exc)
        runtime.exited(status)
    except BaseException as exc:
        runtime.failed(exc)
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    else:
        runtime.exited(0)
    _finish(status, runtime.pidfile)


def resolve_detach(options: Options) -> bool:
    """Whether to fork: not under a service manager that already backgrounds us.

    ``DAEMONDECO_FOREGROUND=1`` forces the foreground (debugging); then the
    ``detach`` option decides; by default we detach unless ``NOTIFY_SOCKET``
    says systemd (``Type=notify``) supervises this very process.
    """
    if os.environ.get("DAEMONDECO_FOREGROUND") == "1":
        return False
    if options.detach is not None:
        return options.detach
    return not os.environ.get("NOTIFY_SOCKET")  # empty counts as unset, as in sd_notify(3)


class Foreground:
    """A daemon run in this process, without forking.

    Always: the pidfile held (our pid in it), the daemon's signal handling,
    systemd notification, privilege drop. With *attached* (the decorated
    function called under a service manager, or with ``detach=False``) also
    what a service expects of its process: the umask, the workdir and the
    configured stdout/stderr files. ``.run()`` (not attached) leaves stdio,
    cwd and umask alone for debugging, and ``close()`` undoes what it can.
    """

    def __init__(self, options: Options, *, attached: bool) -> None:
        require_posix()
        identity = _privileges.resolve(options)
        root = _privileges.check_chroot(options)
        workdir = os.path.abspath(options.workdir) if attached else None
        if workdir is not None:
            _check_workdir(workdir, root)
        self.pidfile = Pidfile(options.pidfile).acquire() if options.pidfile is not None else None
        self._saved = Runtime.current
        try:
            # .run() leaves stdio to the terminal: SIGHUP must not redirect it.
            paths = stdio_paths(options) if attached else (None, None)
            if attached:
                _signals.reset_inherited()
                os.umask(options.umask)
                reopen_stdio(*paths)
                if paths != (None, None):
                    _line_buffered()
            notifier = SystemdNotifier.from_environ()
            _privileges.enter(options, identity, root, workdir)
            Runtime.current = Runtime(None, options, pidfile=self.pidfile, notifier=notifier, stdio_paths=paths)
            self._previous = _signals.install(options) if _signals.in_main_thread() else {}
        except BaseException:
            Runtime.current = self._saved
            if self.pidfile is not None:
                self.pidfile.release()
            raise
        if notifier is not None:
            notifier.start_watchdog()

    def close(self) -> None:
        """Restore the signal handlers and release the pidfile."""
        Runtime.current = self._saved
        _signals.restore(self._previous)
        if self.pidfile is not None:
            self.pidfile.release()


def run_foreground(options: Options, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """Run *func* here, without forking: same pidfile lock and signal handling."""
    session = Foreground(options, attached=False)
    try:
        return call(func, args, kwargs, Runtime.current)  # type: ignore[arg-type]
    finally:
        session.close()
