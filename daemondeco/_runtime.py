"""Life inside the daemon: readiness, stop, reload, and running the function to its end.

A :class:`Runtime` is what the running daemon knows about its own start: the
write end of the readiness pipe (the launcher listens there), the systemd
notifier, the held pidfile, the reload targets, whether a stop began. One is
active per process (``notify_ready()`` and ``notify_status()`` reach it);
the signal handlers are handed it when installed.

The daemon's life is its function's: :func:`run_in_daemon` calls it and
always ends in the daemon's own exit sequence (``_finish``), whatever
happens -- a return, ``SystemExit``, an exception, or even a failure to print
that exception's traceback on a full disk. Code around the call in the
launching script never runs in the daemon.
"""

from __future__ import annotations

import os
import sys
import time

from ._options import seconds as check_seconds
from ._ready import ERROR, EXIT, EXTEND, READY, describe_exception, send
from ._reloader import Reloader
from ._signals import SIGHUP, SIGTERM, in_main_thread
from ._stdio import flush_stdio, reopen_stdio
from ._systemd import monotonic_usec

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping
    from typing import Any, NoReturn

    from ._options import Options
    from ._pidfile import Holder
    from ._state import StateFile
    from ._systemd import SystemdNotifier

__all__ = [
    "Runtime",
    "active",
    "call_main",
    "exit_status",
    "notify_extend",
    "notify_ready",
    "notify_status",
    "run_in_daemon",
    "watch_unready_exit",
]

_current: Runtime | None = None


def active() -> Runtime | None:
    """The runtime of the daemon this process is, if any."""
    return _current


class Runtime:
    """Daemon side: readiness, stop and reload of the running daemon.

    Two listeners may wait for readiness: the launcher, on the pipe (``fd``),
    and a service manager, on ``$NOTIFY_SOCKET`` (``notifier``). Only the
    process that created the runtime may report: a child the daemon forks
    later inherits the object, and must not speak for it.
    """

    def __init__(
        self,
        fd: int | None,
        options: Options,
        *,
        pidfile: Holder | None,
        notifier: SystemdNotifier | None,
        stdio_paths: tuple[str | None, str | None],
        state: StateFile | None = None,
        ready_fd: int | None = None,
        adopt_at_ready: StateFile | None = None,
    ) -> None:
        self.owner = os.getpid()
        self.options = options
        # A successor (upgrade): the pidfile gets our pid and the state file is
        # ours only once we are ready; until then both stay the previous daemon's.
        self.adopt_at_ready = adopt_at_ready
        self.upgrade_plan: object | None = None  # an _upgrade.Plan when this daemon can be upgraded
        self.upgrading = False
        self.listening: tuple[str, ...] = ()  # the listen= names, for the fd store
        self.state = state  # <pidfile>.state, for status --json and acknowledged reloads
        self.fd = fd
        self.ready_fd = ready_fd  # s6's notification-fd: "\n" and close at readiness
        # With startup_grace the launcher keeps listening after "ready".
        self.keep_open = fd is not None and options.startup_grace > 0
        self.ready_mode = options.ready
        self.on_reload: Callable[[], object] | None = options.on_reload
        self.user_signals: tuple[tuple[int, Any], ...] = options.signals
        self.pidfile = pidfile
        self.notifier = notifier
        self.stdio_paths = stdio_paths
        self.ready = False
        self.stopping = False
        self._reloader: Reloader | None = None  # started at the first reload request
        self._reloads = 0

    def activate(self) -> Runtime | None:
        """Make this the process's runtime; return the one it replaces."""
        global _current
        previous, _current = _current, self
        return previous

    @staticmethod
    def deactivate(previous: Runtime | None) -> None:
        """Put back the runtime ``activate`` replaced."""
        global _current
        _current = previous

    def _may_report(self) -> bool:
        """True in the process that created the runtime while the launcher listens."""
        return self.fd is not None and self.owner == os.getpid()

    def notify(self, *fields: str) -> None:
        """Tell the service manager something (nothing happens without one)."""
        if self.notifier is not None and self.owner == os.getpid():
            self.notifier.send(*fields)

    def mark_ready(self) -> None:
        """Tell the launcher and the service manager that we are ready (once)."""
        if self.ready or self.owner != os.getpid():
            return
        self.ready = True
        if self.adopt_at_ready is not None:  # an upgrade's successor: the pidfile names us from now on
            if self.pidfile is not None:
                self.pidfile.write_pid(os.getpid())
            self.state, self.adopt_at_ready = self.adopt_at_ready, None
        self._record(state="ready")
        self.notify(f"MAINPID={os.getpid()}", "READY=1")
        if self.notifier is not None and self.notifier.fdstore > 0 and self.listening:
            from ._sockets import store_fds

            store_fds(self.notifier.send_with_fds, self.notifier.fdstore)
        if self.ready_fd is not None:
            fd, self.ready_fd = self.ready_fd, None
            try:
                os.write(fd, b"\n")
            except OSError:  # the supervisor went away: nobody to tell
                pass
            finally:
                os.close(fd)
        if self.fd is None:
            return
        if sys.stdout is not None:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
        send(self.fd, READY)
        if not self.keep_open:
            self.close()

    def extend(self, usec: int) -> None:
        """Ask for *usec* more microseconds before readiness (a no-op once ready)."""
        if self.ready or self.owner != os.getpid():
            return
        self.notify(f"EXTEND_TIMEOUT_USEC={usec}")
        if self._may_report():
            assert self.fd is not None
            send(self.fd, EXTEND, str(usec).encode())

    def failed(self, exc: BaseException) -> None:
        """Report a startup failure (a no-op once nobody listens)."""
        if self._may_report():
            assert self.fd is not None
            send(self.fd, ERROR, describe_exception(exc))
            self.close()

    def exited(self, status: int | None) -> None:
        """Report that the daemon is exiting with *status* (None: unknown)."""
        if self._may_report():
            assert self.fd is not None
            send(self.fd, EXIT, b"" if status is None else str(status).encode())
            self.close()

    def close(self) -> None:
        """Close our end of the pipe: from now on nobody is told anything."""
        if self._may_report():
            assert self.fd is not None
            os.close(self.fd)
        self.fd = None

    # -- stop and reload, as the signal handlers ask -------------------------

    def begin_stop(self) -> bool:
        """Record that a stop began (``STOPPING=1``); False if one already had."""
        if self.stopping:
            return False
        self.stopping = True
        self._record(state="stopping")
        self.notify("STOPPING=1")
        return True

    def record(self, **fields: object) -> None:
        """Write *fields* into the state file (for ``_upgrade``)."""
        self._record(**fields)

    def request_upgrade(self) -> None:
        """Start an upgrade and return at once (SIGUSR2); ignored while one runs or when impossible."""
        if self.upgrading or self.upgrade_plan is None or self.owner != os.getpid() or self.stopping:
            return
        self.upgrading = True
        import _thread

        from ._upgrade import upgrade

        _thread.start_new_thread(upgrade, (self,))

    def hand_over(self) -> None:
        """The successor is ready: it owns the pidfile and the state file from now on."""
        if self.state is not None:
            self.state.forget()
            self.state = None
        self.upgrade_plan = None

    def _record(self, **fields: object) -> None:
        """Write *fields* into the state file (the process that owns it only)."""
        if self.state is not None and self.owner == os.getpid():
            self.state.update(**fields)

    def set_status(self, text: str) -> None:
        """The service's one-line status: to systemd (``STATUS=``) and the state file."""
        line = " ".join(str(text).splitlines())
        self._record(status=line)
        self.notify("STATUS=" + line)

    def request_reload(self) -> None:
        """Ask for a reload and return at once: what a SIGHUP handler may do.

        The reload runs in a thread of its own ("daemondeco-reload"), never
        inside the signal handler: the handler may have interrupted the main
        thread in the middle of a write to the very stream the reload
        flushes. The thread exists only while a reload runs (``_reloader``),
        so that the daemon stays safe to fork. Requests that arrive during a
        reload are coalesced into one more reload.
        """
        if self._reloader is None or self._reloader.owner != os.getpid():
            # (A child the daemon forked has the handler, not the thread: its own.)
            self._reloader = Reloader(self.reload)
        self._reloader.request()

    def reload(self) -> None:
        """Reopen the stdout/stderr targets, then call ``on_reload``.

        A renamed log file (logrotate without copytruncate) is replaced by a
        new one at its path; buffered lines are flushed to the old one first,
        so none is lost across the switch. A failed reload is reported on
        stderr and leaves the daemon running with its previous state. The
        state file records each reload (when it started and finished on
        ``CLOCK_MONOTONIC``, its outcome), which ``reload`` waits for.
        """
        # Before readiness there is nothing to reload from systemd's view, and
        # a READY=1 now would report a start that has not finished.
        tell = self.ready
        self._reloads += 1
        record: dict[str, object] = {"generation": self._reloads, "started_ns": time.monotonic_ns()}
        self._record(state="reloading" if tell else "starting", reload={**record, "finished_ns": None})
        if tell:
            self.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
        error = None
        try:
            reopen_stdio(*self.stdio_paths)
            if self.on_reload is not None:
                self.on_reload()
        except BaseException as exc:  # nothing may escape into the daemon's own code
            error = _report_reload_failure(exc)
        finally:
            outcome = {**record, "finished_ns": time.monotonic_ns(), "ok": error is None, "error": error}
            self._record(state=self._settled_state(), reload=outcome)
            if tell:
                self.notify("READY=1")

    def settled_state(self) -> str:
        """What the state file says when nothing is in progress."""
        return self._settled_state()

    def _settled_state(self) -> str:
        if self.stopping:
            return "stopping"
        return "ready" if self.ready else "starting"


def _report_reload_failure(exc: BaseException) -> str:
    """Report a failed reload on stderr; return its formatted traceback."""
    text = f"{type(exc).__name__}: {exc}"
    try:
        import traceback

        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(f"daemondeco: reload failed, keeping the previous state:\n{text}")
        sys.stderr.flush()
    except BaseException:  # pragma: no cover - stderr itself is broken (a full disk)
        pass
    return text


# -- the public notify functions ------------------------------------------


def notify_status(text: str) -> None:
    """Show *text* as the service's status line in ``systemctl status`` (``STATUS=``).

    A no-op unless the daemon runs under a service manager that set
    ``$NOTIFY_SOCKET``. Newlines are replaced by spaces.

    .. versionadded:: 0.1
    """
    if _current is not None:
        _current.set_status(text)


_MAX_EXTEND = 10**9  # seconds (~31 years): beyond any real start, far within systemd's 64-bit usec


def notify_extend(seconds: float) -> None:
    """Ask for *seconds* more before the start counts as timed out; call it before readiness.

    For a start that is slow on purpose (a migration, a cache warm-up): the
    launcher's ``ready_timeout`` and, under systemd (``$NOTIFY_SOCKET``),
    ``TimeoutStartSec=`` (``EXTEND_TIMEOUT_USEC=``) then end no sooner than
    *seconds* from now. As in systemd, the wait is extended *to* now +
    *seconds*: a call never shortens it, and a long start calls it again
    before that time has passed. A no-op after readiness, in a child the
    daemon forked, and outside any daemon.

    Raises ``TypeError`` for a non-number (or a bool), ``ValueError`` for
    ``seconds <= 0``, NaN, infinity or more than 10**9 s, wherever it is called.

    .. versionadded:: 0.1
    """
    value = check_seconds("notify_extend", "seconds", seconds, positive=True)
    if value > _MAX_EXTEND:
        raise ValueError(f"notify_extend(): seconds must be at most {_MAX_EXTEND}, not {seconds!r}")
    if _current is not None:
        _current.extend(max(1, int(value * 1e6)))


def notify_ready() -> None:
    """Tell whoever launched this daemon that its startup is complete.

    Call it in a daemon started with ``ready="notify"`` once it can serve
    (ports bound, configuration loaded): only then does the launcher exit 0
    (``@daemon``) or return its handle (``@process_daemonize``), and only then
    does systemd (``Type=notify``) consider the service started. A failure
    before this call reaches the launcher as :class:`StartupError`.

    A no-op where nothing waits: in a child the daemon forked, after the
    first call, or outside any daemon.

    .. versionadded:: 0.1
    """
    if _current is not None:
        _current.mark_ready()


# -- running the function ----------------------------------------------------


def call_main(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], runtime: Runtime) -> Any:
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

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    stopped = False

    def on_term() -> None:
        nonlocal stopped
        if runtime.begin_stop():
            stopped = True
            task.cancel()

    if in_main_thread():
        # Loop callbacks run outside the signal frame: the reload can run
        # right there, in the loop, as asyncio programs expect.
        loop.add_signal_handler(SIGTERM, on_term)
        if SIGHUP not in dict(runtime.user_signals):
            loop.add_signal_handler(SIGHUP, runtime.reload)
    if runtime.ready_mode == "start":
        runtime.mark_ready()
    try:
        return await func(*args, **kwargs)
    except asyncio.CancelledError:
        if stopped:
            raise SystemExit(0) from None
        raise


def exit_status(exc: SystemExit) -> int:
    """The process status a ``SystemExit`` means, as the interpreter's (a message: printed, 1)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        print(code, file=sys.stderr)
    except BaseException:  # pragma: no cover - stderr is broken
        pass
    return 1


def _print_traceback(exc: BaseException) -> None:
    """Print *exc*'s traceback on the stderr target; a broken stderr (full disk) is no reason to stop."""
    try:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    except BaseException:
        pass


def _finish(status: int, pidfile: Holder | None = None, state: StateFile | None = None) -> NoReturn:
    """End the daemon as the interpreter would, minus its slow teardown.

    Like Python's own shutdown: wait for non-daemon threads, run the atexit
    handlers (for a worker only its own: the caller's were cleared), flush
    stdio. Then ``os._exit``: skipping the interpreter's final garbage
    collection makes a stop take ~2 ms instead of ~35 ms (benchmarks/).
    """
    try:
        import atexit
        import threading

        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon and thread.is_alive():
                thread.join()
        atexit._run_exitfuncs()
    finally:
        try:
            flush_stdio()
            if state is not None:
                state.remove()
            if pidfile is not None:
                pidfile.release()  # last: while anything of ours runs, the lock says so
        finally:
            os._exit(status)


def run_in_daemon(func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> NoReturn:
    """Call *func* in the daemon and end the daemon with its outcome.

    Return: status 0. ``SystemExit`` (SIGTERM raises ``SystemExit(0)``): its
    status, after ``finally`` blocks ran. Uncaught exception: its traceback on
    the stderr target, status 1, and the launcher hears of it while it still
    listens. Every path, even an exception raised while reporting one, ends
    in ``_finish``: nothing unwinds into the launching script's code.
    """
    runtime = _current
    assert runtime is not None
    status = 1
    try:
        try:
            call_main(func, args, kwargs, runtime)
            status = 0
        except SystemExit as exc:
            status = exit_status(exc)
            runtime.exited(status)
        except BaseException as exc:
            runtime.failed(exc)
            _print_traceback(exc)
        else:
            runtime.exited(0)
    finally:
        _finish(status, runtime.pidfile, runtime.state)


def watch_unready_exit(runtime: Runtime) -> None:
    """For ``daemonize()``: report to the launcher an exception or exit that comes before readiness."""
    import atexit

    previous_hook = sys.excepthook

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        runtime.failed(exc)
        previous_hook(kind, exc, tb)

    def at_exit() -> None:
        runtime.exited(None)
        if runtime.state is not None:
            runtime.state.remove()
        if runtime.pidfile is not None:
            runtime.pidfile.release()

    sys.excepthook = excepthook
    atexit.register(at_exit)
