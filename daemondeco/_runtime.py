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

from . import _outcome
from ._options import seconds as check_seconds
from ._ready import ERROR, EXIT, EXTEND, READY, SELF_TIMED, STARTED, describe_exception, send
from ._reloader import Reloader
from ._signals import SIGHUP, SIGTERM, in_main_thread
from ._state import (
    States,
    became,
    daemon_exit_record,
    ready_after,
    reload_finished,
    reload_started,
    status_line,
    stop_began,
)
from ._stdio import flush_stdio, reopen_stdio
from ._systemd import monotonic_usec

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn, Protocol

    from ._options import Options
    from ._pidfile import Holder

    class Notifier(Protocol):
        """What the runtime needs of its service manager: ``_systemd.SystemdNotifier``, or a worker's relay."""

        watchdog_usec: int | None
        fdstore: int

        def send(self, *fields: str) -> bool:
            """Send ``sd_notify`` *fields*; False when nobody heard."""

        def send_with_fds(self, fields: Sequence[str], fds: Sequence[int]) -> bool:
            """Send *fields* with *fds* (the fd store)."""

        def start_watchdog(self) -> None:
            """Ping the watchdog from now on, if the manager asked for it."""

    class StateSink(Protocol):
        """Where the runtime records its state: ``_state.StateFile``, or a worker's relay."""

        path: str
        fields: dict[str, object]

        def update(self, **fields: object) -> None:
            """Record *fields*."""

        def fileno(self) -> int:
            """The file's fd (kept across the fd closing), or -1."""

        def forget(self) -> None:
            """Let go of the file without removing it: a successor writes it now."""

        def finish(self, last_exit: dict[str, object] | None) -> None:
            """At the exit: leave *last_exit* (None: remove the file)."""

else:  # types for mypy only: at run time `typing` stays unimported (a daemon's start pays every import)
    Notifier = StateSink = object

__all__ = [
    "Notifier",
    "Runtime",
    "StateSink",
    "active",
    "call_main",
    "exit_record",
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


_fork_hook = False  # _drop_listeners_in_child is registered (once per process and its children)


def _drop_listeners_in_child() -> None:
    """In a child the daemon forks (``os.fork``, ``multiprocessing``): close the readiness pipe and ``ready_fd``.

    Both are close-on-exec, so a program the daemon execs never holds them;
    a forked child that does not exec would, and would keep the launcher (or
    s6) from seeing the end of file when the daemon dies before readiness:
    ``start`` would wait the whole ``ready_timeout``. The child must not
    speak for the daemon anyway (``Runtime.owner``).
    """
    runtime = _current
    if runtime is None or runtime.owner == os.getpid():
        return
    for name in ("fd", "ready_fd", "_grace_wake"):
        fd = getattr(runtime, name)
        if fd is not None:
            setattr(runtime, name, None)
            try:
                os.close(fd)
            except OSError:
                pass


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
        notifier: Notifier | None,
        stdio_paths: tuple[str | None, str | None],
        state: StateSink | None = None,
        ready_fd: int | None = None,
        adopt_at_ready: StateSink | None = None,
        listening: tuple[str, ...] = (),
        upgrade_plan: object | None = None,
        supervised_worker: bool = False,
        ready_mode: str | None = None,
    ) -> None:
        self.owner = os.getpid()
        self.options = options
        # A successor (upgrade): the pidfile gets our pid and the state file is
        # ours only once we are ready; until then both stay the previous daemon's.
        self.adopt_at_ready = adopt_at_ready
        self.upgrade_plan = upgrade_plan  # an _upgrade.Plan when this daemon can be upgraded
        self.upgrading = False
        self.upgrade_requested_ns = 0
        self.returned = False  # the function returned or raised: the daemon is on its way out by itself
        self.on_return: Callable[[], object] | None = None  # the upgrade's drain waits for that
        self.listening = listening  # the listen= names, for the fd store
        self.state = state  # <pidfile>.state, for status --json and acknowledged reloads
        self.fd = fd
        self.ready_fd = ready_fd  # s6's notification-fd: "\n" and close at readiness
        # With startup_grace the launcher keeps listening after "ready" (with ready="auto" the
        # grace comes before readiness instead). A supervised worker's supervisor always listens:
        # a crash after readiness reaches it too.
        self.keep_open = supervised_worker or (fd is not None and options.startup_grace > 0 and options.ready != "auto")
        self.ready_mode = options.ready if ready_mode is None else ready_mode
        # ready="auto": when the function will have run startup_grace (time.monotonic()), once called.
        self.ready_after: float | None = None
        self.supervised_worker = supervised_worker  # its supervisor measures startup_grace: no timer of its own
        self._grace_wake: int | None = None  # ends the "daemondeco-ready" timer thread early
        import _thread

        self._ready_lock = _thread.allocate_lock()
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
        global _current, _fork_hook
        previous, _current = _current, self
        if not _fork_hook:
            _fork_hook = True
            os.register_at_fork(after_in_child=_drop_listeners_in_child)
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
        with self._ready_lock:  # notify_ready() and the end of startup_grace may race (ready="auto")
            if self.ready or self.owner != os.getpid():
                return
            self.ready = True
        if self._grace_wake is not None:  # the timer thread has nothing left to do
            fd, self._grace_wake = self._grace_wake, None
            os.close(fd)
        if self.adopt_at_ready is not None:  # an upgrade's successor: the pidfile names us from now on
            if self.pidfile is not None:
                self.pidfile.write_pid(os.getpid())
            self.state, self.adopt_at_ready = self.adopt_at_ready, None
        self.record(became(States.READY))
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

    def is_ready(self) -> bool:
        """Ready: it said so, or (``ready="auto"``) its function has run ``startup_grace`` seconds."""
        return self.ready or (self.ready_after is not None and time.monotonic() >= self.ready_after)

    def begin_probation(self, schedule: Callable[[float, Callable[[], None]], object] | None = None) -> None:
        """``ready="auto"``: the function is being called; ready at ``notify_ready()`` or after ``startup_grace``.

        Where a launcher (or a supervisor) listens, it measures the grace
        itself, from the ``S`` frame: an exit before then is a failed start.
        A service manager that must be told too (``$NOTIFY_SOCKET``,
        ``ready_fd``) or an upgrade's successor (which takes the pidfile at
        readiness) needs the daemon to act at that moment: then a short-lived
        thread, "daemondeco-ready" (or *schedule*, an event loop's
        ``call_later``), calls :meth:`mark_ready` once the grace has passed,
        and the ``S`` frame tells the launcher to wait for that ``R``.
        """
        grace = self.options.startup_grace
        if grace <= 0 or self.owner != os.getpid():
            self.mark_ready()
            return
        self.ready_after = time.monotonic() + grace
        self.record(ready_after(int(self.ready_after * 1e9)))  # status reads "ready" from then on
        timer = not self.supervised_worker and (
            self.notifier is not None or self.ready_fd is not None or self.adopt_at_ready is not None
        )
        if self._may_report():
            assert self.fd is not None
            send(self.fd, STARTED, SELF_TIMED if timer else b"")
        if not timer:
            return
        if schedule is not None:
            schedule(grace, self._grace_passed)
            return
        import threading

        read_end, self._grace_wake = os.pipe()
        threading.Thread(target=self._grace_timer, args=(read_end,), name="daemondeco-ready", daemon=True).start()

    def _grace_timer(self, read_end: int) -> None:
        """The "daemondeco-ready" thread: ready once the grace has passed, unless woken first; then gone."""
        import select

        from ._proc import poll_until

        try:
            poller = select.poll()
            poller.register(read_end, select.POLLIN)
            assert self.ready_after is not None
            if not poll_until(poller, self.ready_after):
                self._grace_passed()
        finally:
            os.close(read_end)

    def _grace_passed(self) -> None:
        if not self.stopping:
            self.mark_ready()

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
        self.record(stop_began())
        self.notify("STOPPING=1")
        return True

    def request_upgrade(self) -> None:
        """Start an upgrade and return at once (SIGUSR2); ignored while one runs or when impossible."""
        if self.upgrading or self.upgrade_plan is None or self.owner != os.getpid() or self.stopping:
            return
        self.upgrading = True
        self.upgrade_requested_ns = time.monotonic_ns()  # the upgrade's start: an upgrade sent later waits for its end
        import _thread

        from ._upgrade import upgrade

        _thread.start_new_thread(upgrade, (self,))

    def upgrade_abandoned(self) -> None:
        """The upgrade failed: this daemon keeps serving, and a later SIGUSR2 may try again."""
        self.upgrading = False

    def when_returned(self, callback: Callable[[], object]) -> None:
        """Call *callback* once the function has returned or raised (the upgrade's drain waits for that).

        Only the moment from now on: whether it already had is :attr:`returned`.
        """
        self.on_return = callback

    def hand_over(self) -> None:
        """The successor is ready: it owns the pidfile and the state file from now on."""
        if self.state is not None:
            self.state.forget()
            self.state = None
        self.upgrade_plan = None

    def keep_state(self, state: StateSink) -> None:
        """Record into *state* from now on (a supervisor without a pidfile: its own state file)."""
        self.state = state

    def drop_ready_fd(self) -> None:
        """Close a ``ready_fd`` never written: its reader sees end of file (a no-op once ready)."""
        if self.ready_fd is not None:
            fd, self.ready_fd = self.ready_fd, None
            os.close(fd)

    def record(self, fields: dict[str, object]) -> None:
        """Write *fields* (from ``_state``'s named writers) into the state file (only in the process that owns it)."""
        if self.state is not None and self.owner == os.getpid():
            self.state.update(**fields)

    def release(self, record: dict[str, object] | None = None, *, leaving: bool = True) -> None:
        """The one end of every form of the daemon: the state file first, the pidfile last.

        The state file is left with *record* (how this run ended, for
        ``status``; None: removed), then the pidfile is removed and its lock
        dropped -- *leaving* (the process exits next): the lock itself goes
        with the process, inside ``exit()``, so that while anything of ours
        runs it says so. A state file outliving the lock would describe nobody.
        """
        state, self.state = self.state, None
        if state is not None:
            state.finish(record)
        if self.pidfile is not None:
            if leaving:
                self.pidfile.release_at_exit()
            else:
                self.pidfile.release()

    def set_status(self, text: str) -> None:
        """The service's one-line status: to systemd (``STATUS=``) and the state file."""
        line = " ".join(str(text).splitlines())
        self.record(status_line(line))
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
        tell = self.is_ready()
        self._reloads += 1
        generation, started = self._reloads, time.monotonic_ns()
        self.record(reload_started(generation, started, States.RELOADING if tell else States.STARTING))
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
            self.record(reload_finished(generation, started, error, self.settled_state()))
            if tell:
                self.notify("READY=1")

    def settled_state(self) -> str:
        """What the state file says when nothing is in progress."""
        if self.stopping:
            return States.STOPPING
        return States.READY if self.is_ready() else States.STARTING


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
    elif runtime.ready_mode == "auto":
        runtime.begin_probation()
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
    elif runtime.ready_mode == "auto":
        runtime.begin_probation(loop.call_later)  # a loop callback: no thread needed
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


def exit_record(runtime: Runtime, how: str, status: int | None, exc: BaseException | None = None) -> dict[str, object]:
    """The record of the daemon's end left in its state file (``_state``'s ``last_exit``)."""
    error = None
    if exc is not None:
        try:
            import traceback

            error = traceback.format_exception_only(type(exc), exc)[-1].strip()
        except BaseException:  # pragma: no cover - a __str__ that raises
            error = type(exc).__name__
    if runtime.stopping and how in ("returned", "exited") and status == 0:
        how = "stopped"
    stdout, stderr = runtime.stdio_paths
    return daemon_exit_record(how, status, error, stderr or stdout)


def _finish(runtime: Runtime, status: int, record: dict[str, object] | None) -> NoReturn:
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
            runtime.release(record)  # how this run ended, for status once it is gone; the lock last
        finally:
            os._exit(status)


def run_in_daemon(
    runtime: Runtime, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> NoReturn:
    """Call *func* in the daemon and end the daemon with its outcome.

    Return: status 0. ``SystemExit`` (SIGTERM raises ``SystemExit(0)``): its
    status, after ``finally`` blocks ran. Uncaught exception: its traceback on
    the stderr target, status 1, and the launcher hears of it while it still
    listens. Every path, even an exception raised while reporting one, ends
    in ``_finish``: nothing unwinds into the launching script's code. A
    worker's return value or exception also goes to its monitor (``_outcome``).
    """
    status = 1
    record = None
    try:
        try:
            value = call_main(func, args, kwargs, runtime)
            status = 0
        except SystemExit as exc:
            status = exit_status(exc)
            record = exit_record(runtime, "exited", status)
            runtime.exited(status)
        except BaseException as exc:
            record = exit_record(runtime, "raised", 1, exc)
            runtime.failed(exc)
            _outcome.report_raised(exc)  # a worker's caller: DaemonProcess.result()
            _print_traceback(exc)
        else:
            record = exit_record(runtime, "returned", 0)
            _outcome.report_returned(value)
            runtime.exited(0)
    finally:
        runtime.returned = True
        if runtime.on_return is not None:
            runtime.on_return()
        _finish(runtime, status, record)


def watch_unready_exit(runtime: Runtime) -> None:
    """For ``daemonize()``: report to the launcher an exception or exit that comes before readiness."""
    from ._pidfile import at_the_end

    previous_hook = sys.excepthook
    raised: list[BaseException] = []

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        raised.append(exc)
        runtime.failed(exc)
        previous_hook(kind, exc, tb)

    def at_exit() -> None:
        if runtime.owner != os.getpid():  # a child the daemon forked, leaving normally: not its files
            return
        runtime.exited(None)
        record = None
        if runtime.state is not None:  # the script's status is not known here (atexit): only an exception's
            exc = raised[0] if raised else None
            how = "raised" if exc is not None else "exited"
            record = exit_record(runtime, how, 1 if exc is not None else None, exc)
        runtime.release(record)  # the lock itself goes with the process, in exit()

    sys.excepthook = excepthook
    # After every atexit handler the script registered (since it imported daemondeco), before
    # daemonize() or after: until then the lock says "running", no second start slips in.
    at_the_end(at_exit)
