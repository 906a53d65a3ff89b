"""Restart on crash: the supervisor that holds the pidfile and forks a worker per attempt.

With ``restart=`` the daemon process does not run the function itself: it
becomes a small **supervisor** (it keeps the pidfile lock, so ``stop``,
``status`` and ``reload`` address it, as FreeBSD daemon(8) advises) and forks
a **worker** per attempt. The worker is its own process group, dies with the
supervisor (``PR_SET_PDEATHSIG``, then a ``getppid()`` check that closes the
race), and runs the function with the usual runtime: readiness, reload,
notify.

Worker and supervisor talk over a ``SOCK_SEQPACKET`` socket pair, one record
per frame (the readiness pipe's frames, see ``_ready``, plus ``N``:
``sd_notify`` fields to relay, and ``U``: state-file fields to merge), so
frames written by different threads never interleave. The first worker's
readiness (or startup failure) is relayed to the launcher; a first worker
that fails before readiness is never restarted. Later deaths are classified
with systemd's clean set (exit 0, SIGHUP, SIGINT, SIGTERM, SIGPIPE), logged,
and followed by a new worker after ``min(delay * backoff**(k-1), max_delay)``
(k back to 1 after ``restart_reset_after`` s of uptime); more than
``start_limit[0]`` starts within ``start_limit[1]`` s gives up.

The supervisor never sleeps in a loop: it blocks in ``poll()`` on the
signal wakeup fd (SIGCHLD, SIGTERM, SIGINT, SIGHUP), the worker's socket and
the next deadline (a restart, a stop's SIGKILL).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from ._daemon import SUPERVISED, Entry, enter, start_watchdog
from ._errors import DaemonWarning
from ._outcome import report_supervised
from ._proc import identity, poll_ms, signal_quietly
from ._ready import ERROR, EXIT, EXTEND, READY, STARTED, describe_exception, send, unpack
from ._runtime import Runtime, exit_status, run_in_daemon
from ._signals import signal_name
from ._state import (
    RELAYED,
    StateFile,
    States,
    anonymous_state_path,
    became,
    reload_between_workers,
    restart_planned,
    stop_began,
    supervisor_started,
    worker_exit_record,
    worker_exited,
    worker_started,
)
from ._stdio import above_stdio, flush_stdio, reopen_stdio
from ._systemd import start_watchdog as ping_watchdog

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn

    from ._options import Options

__all__ = ["supervise", "warn_double_supervision"]

NOTIFY, UPDATE = b"N", b"U"  # worker -> supervisor only: sd_notify fields, state fields
_CLEAN_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE)
_HANDLED = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_RECORD = 1 << 20  # the largest frame read at once (a traceback fits)
_PR_SET_PDEATHSIG = 1


def warn_double_supervision(options: Options, *, stacklevel: int = 2) -> None:
    """Warn (``DaemonWarning``) when a service manager that restarts already runs us.

    *stacklevel* names the user's frame, as ``warnings.warn`` counts from this function.
    """
    env = os.environ
    manager = None
    if env.get("SUPERVISOR_ENABLED"):
        manager = "supervisord (SUPERVISOR_ENABLED is set): use its autorestart="
    elif env.get("INVOCATION_ID") and env.get("NOTIFY_SOCKET"):
        manager = "systemd (INVOCATION_ID and NOTIFY_SOCKET are set): use the unit's Restart="
    if manager is None:
        return
    import warnings

    warnings.warn(
        DaemonWarning(
            f"restart={options.restart!r}: this process runs under {manager} instead, "
            "or the two will both restart the service"
        ),
        stacklevel=stacklevel,
    )


def _log(message: str) -> None:
    """One timestamped line on the supervisor's stderr (the stderr target)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
    try:
        sys.stderr.write(f"{stamp} daemondeco supervisor[{os.getpid()}]: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # a full disk must not end the supervisor
        pass


def _pdeathsig() -> Callable[[], None]:
    """A function that makes the calling process get SIGKILL when its parent dies (Linux), else a no-op."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
        return lambda: None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)

    return arm


class _Relay:
    """The worker's notifier (a ``_runtime.Notifier``): ``sd_notify`` fields go to the supervisor, the main process."""

    def __init__(self, fd: int, watchdog_usec: int | None) -> None:  # no socket of its own
        self.watchdog_usec = watchdog_usec
        self.fdstore = 0  # the supervisor, the main process, sends the listen= sockets to the fd store
        self._fd = fd

    def send(self, *fields: str) -> bool:
        """Pass *fields* to the supervisor; False once it is gone."""
        return send(self._fd, NOTIFY, "\n".join(fields).encode())

    def send_with_fds(self, fields: Sequence[str], fds: Sequence[int]) -> bool:
        """Nothing to send: the fd store is the supervisor's (``fdstore`` is 0)."""
        return False

    def start_watchdog(self) -> None:
        """Ping the service manager's watchdog through the supervisor, if it asked for one."""
        ping_watchdog(self.send, self.watchdog_usec)


class _RelayState:
    """The worker's state (a ``_runtime.StateSink``): its updates (status, reload records) go to the supervisor's."""

    def __init__(self, fd: int) -> None:  # no file: the supervisor owns it
        self.path = ""
        self._fd = fd
        self.fields: dict[str, object] = {}

    def fileno(self) -> int:
        """The socket to the supervisor."""
        return self._fd

    def forget(self) -> None:
        """Nothing to hand over: a worker is never upgraded."""

    def update(self, **fields: object) -> None:
        """Send *fields* to the supervisor; never raises."""
        import json

        try:
            send(self._fd, UPDATE, json.dumps(fields).encode())
        except Exception:  # pragma: no cover - unserialisable fields: a courtesy lost
            pass

    def finish(self, last_exit: dict[str, object] | None) -> None:
        """Nothing to write: the supervisor records the worker's end (and its own)."""


class _Worker:
    """One attempt: the process, its socket, what it said."""

    def __init__(self, pid: int, channel: int, number: int) -> None:
        self.pid = pid
        self.channel: int | None = channel
        self.number = number  # 1 for the first start
        self.started = time.monotonic()
        self.ready = False
        self.error: dict[str, str] | None = None
        self.told_launcher = False  # its startup failure went to the launcher
        # When it said it was exiting (its X or E frame, sent before its atexit handlers and
        # interpreter teardown run): the restart delay counts from there, or from its death.
        self.exiting_at: float | None = None
        # ready="auto": ready at this time.monotonic() unless it said so, or ended, first.
        self.ready_at: float | None = None


class Supervisor:
    """The supervisor's whole life: start workers, watch them, restart, stop."""

    def __init__(self, runtime: Runtime, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]):
        self.runtime = runtime
        options = self.options = runtime.options
        self.call = (func, args, kwargs)
        self.pid = os.getpid()
        self.worker: _Worker | None = None
        self.starts: list[float] = []  # recent start times, within start_limit's interval
        self.started = 0  # workers started so far
        self.failures = 0  # consecutive crashes since the last reset: k
        self.restarts = 0
        self.next_start: float | None = None
        self.stop_deadline: float | None = None
        self.stopping = False
        self.grace_end: float | None = None  # the launcher listens until then (startup_grace)
        self.arm_pdeathsig = _pdeathsig()
        # The signals= option's handlers are the function's: the supervisor passes those signals on.
        self.forwarded = tuple(signum for signum, _ in options.signals if signum not in _HANDLED)
        self.handled = (*_HANDLED, *self.forwarded)
        import select

        self.poller = select.poll()
        wake_read, wake_write = os.pipe()
        self.wake_read, self.wake_write = above_stdio(wake_read), above_stdio(wake_write)
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_write, False)
        self.poller.register(self.wake_read, select.POLLIN)
        if runtime.state is None and runtime.pidfile is None:
            # No pidfile to keep the history next to: a private file named by our pid, so
            # that the caller's DaemonProcess handle can still show it.
            path = anonymous_state_path(self.pid, create=True)
            if path is not None:
                try:
                    runtime.keep_state(StateFile(path))
                except OSError:
                    pass
        self._record(supervisor_started(identity(self.pid)))

    # -- the loop ------------------------------------------------------------

    def run(self) -> NoReturn:
        """Start the first worker and supervise until a stop, a give-up, or a final exit."""
        for signum in self.handled:
            signal.signal(signum, _noop)
        signal.set_wakeup_fd(self.wake_write, warn_on_full_buffer=False)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, self.handled)
        self._start_worker()
        while True:
            ready_at = self._probation_end()
            deadlines = (self.next_start, self.stop_deadline, ready_at)
            deadline = min((d for d in deadlines if d is not None), default=None)
            timeout = poll_ms(deadline)  # never OverflowError, whatever restart_max_delay or stop_timeout
            try:
                events = self.poller.poll(timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
                events = []
            for fd, _ in events:
                if fd == self.wake_read:
                    self._on_signals()
                elif self.worker is not None and fd == self.worker.channel:
                    self._read_channel(self.worker)
            self._on_children()
            now = time.monotonic()
            ready_at = self._probation_end()
            if ready_at is not None and now >= ready_at and self.worker is not None:
                self._on_frame(self.worker, READY, b"")  # ran startup_grace without exiting: ready
            if self.stop_deadline is not None and now >= self.stop_deadline and self.worker is not None:
                _log(f"worker {self.worker.pid} outlived stop_timeout={self.options.stop_timeout:g} s: SIGKILL")
                _kill_group(self.worker.pid, signal.SIGKILL)
                self.stop_deadline = None
            if self.next_start is not None and now >= self.next_start and not self.stopping:
                self.next_start = None
                self._start_worker()

    def _probation_end(self) -> float | None:
        """When the current worker (``ready="auto"``) counts as ready, if it is still on probation."""
        worker = self.worker
        if worker is None or worker.ready or worker.exiting_at is not None:
            return None
        return worker.ready_at

    def _on_signals(self) -> None:
        try:
            data = os.read(self.wake_read, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._stop()
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum in self.forwarded and self.worker is not None:
                signal_quietly(self.worker.pid, signum)

    def _stop(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.next_start = None
            self.runtime.begin_stop()
            self._record(stop_began(supervised=True))
        if self.worker is None:
            self._finish(0)
        # TERM for SIGINT too: the worker's SIGTERM ends in SystemExit(0) and its finally blocks
        # run; a forwarded SIGINT would end it in KeyboardInterrupt, a traceback and status 1.
        signal_quietly(self.worker.pid, signal.SIGTERM)
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.options.stop_timeout

    def _reload(self) -> None:
        try:
            reopen_stdio(*self.runtime.stdio_paths)  # the supervisor's own log lines follow logrotate
        except OSError as exc:
            _log(f"reload: cannot reopen the log files: {exc}")
        if self.worker is not None:
            signal_quietly(self.worker.pid, signal.SIGHUP)  # the worker's reload acknowledges
            return
        # Between two workers nothing else to reload: the next one starts with the new state.
        now = time.monotonic_ns()
        self._record(reload_between_workers(now))

    # -- workers ---------------------------------------------------------------

    def _start_worker(self) -> None:
        import socket

        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        channel, child_end = above_stdio(parent_sock.detach()), above_stdio(child_sock.detach())
        self.started += 1
        number = self.started
        if self.options.start_limit is not None:  # else nothing to count: no list growing forever
            self.starts.append(time.monotonic())
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, self.handled)
        flush_stdio()
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            os.close(channel)
            os.close(child_end)
            if number == 1:  # the first start: the launcher raises it, nothing runs
                _log(f"cannot fork a worker: {exc}")
                self.runtime.failed(exc)
                self._finish(1)
            self._retry_fork(exc)  # a restart: EAGAIN (RLIMIT_NPROC, pids.max) may pass, like a crash
            return
        if pid == 0:  # pragma: no cover - the worker's frames are not traced after fork
            os.close(channel)
            try:
                runtime = self._become_worker(child_end, previous_mask)
            except BaseException as exc:
                send(child_end, ERROR, describe_exception(exc))
                os._exit(1)
            run_in_daemon(runtime, *self.call)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
        os.close(child_end)
        try:
            os.setpgid(pid, pid)  # also done in the worker: whichever runs first
        except OSError:
            pass
        os.set_blocking(channel, False)
        import select

        self.poller.register(channel, select.POLLIN)
        self.worker = _Worker(pid, channel, number)
        self._record(worker_started(pid))
        if number > 1:
            _log(f"started worker {pid} (restart {self.restarts})")

    def _become_worker(self, fd: int, mask: set[int]) -> Runtime:  # pragma: no cover - runs in the worker
        """In the worker, right after the fork: leave the supervisor's plumbing, become the daemon (``_daemon``)."""
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        self.arm_pdeathsig()
        if os.getppid() != self.pid:  # the supervisor died before the line above: no one to serve
            os._exit(1)
        signal.set_wakeup_fd(-1)
        os.close(self.wake_read)
        os.close(self.wake_write)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        parent = self.runtime
        watchdog = parent.notifier.watchdog_usec if parent.notifier is not None else None
        relay = os.dup(fd)
        os.set_inheritable(relay, False)
        entry = Entry(
            SUPERVISED,
            self.options,
            write_end=fd,  # a crash after readiness reaches the supervisor too (keep_open)
            supervisor=parent,
            relay=(_Relay(relay, watchdog), _RelayState(relay)),
        )
        runtime = enter(entry)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        start_watchdog(runtime)
        return runtime

    def _read_channel(self, worker: _Worker) -> None:
        """Handle every frame waiting on *worker*'s socket; close it at end of file."""
        while worker.channel is not None:
            try:
                record = os.read(worker.channel, _RECORD)
            except BlockingIOError:
                return
            except OSError:
                record = b""
            if not record:
                self._close_channel(worker)
                return
            self._on_frame(worker, *unpack(record))

    def _close_channel(self, worker: _Worker) -> None:
        """Stop listening to *worker*'s socket and close our end."""
        if worker.channel is not None:
            self.poller.unregister(worker.channel)
            os.close(worker.channel)
            worker.channel = None

    def _on_frame(self, worker: _Worker, tag: bytes, payload: bytes) -> None:
        runtime = self.runtime
        if tag == READY:
            worker.ready = True
            if worker.number == 1:
                if runtime.keep_open:
                    self.grace_end = time.monotonic() + self.options.startup_grace
                runtime.mark_ready()
            else:
                _log(f"worker {worker.pid} is ready")
            self._record(became(States.READY))
        elif tag == STARTED:
            worker.ready_at = time.monotonic() + self.options.startup_grace
        elif tag == EXTEND:
            if worker.number == 1:
                runtime.extend(int(payload))
        elif tag in (ERROR, EXIT):
            self._on_last_words(worker, tag, payload)
        elif tag == NOTIFY:
            # The supervisor is the main process: it names itself, and says STOPPING=1 only when
            # the service stops (a worker stopped by someone else is restarted, not a service stop).
            dropped = ("MAINPID=", "STOPPING=")
            fields = [f for f in payload.decode(errors="replace").split("\n") if not f.startswith(dropped)]
            if fields:
                runtime.notify(*fields)
        elif tag == UPDATE:
            import json

            fields = json.loads(payload)
            self._record({k: v for k, v in fields.items() if k in RELAYED})

    def _on_last_words(self, worker: _Worker, tag: bytes, payload: bytes) -> None:
        """The worker raised (``E``) or is exiting (``X``): keep it, and tell a launcher that still listens."""
        runtime = self.runtime
        if worker.exiting_at is None:
            worker.exiting_at = time.monotonic()
        if tag == ERROR:
            import json

            worker.error = json.loads(payload)
        if not self._launcher_listens(worker) or runtime.fd is None:
            return
        if tag == ERROR or payload != b"0" or not worker.ready:
            worker.told_launcher = True
        send(runtime.fd, tag, payload)
        runtime.close()

    def _launcher_listens(self, worker: _Worker) -> bool:
        """Whether the launcher still waits on this worker: the first, before readiness or within startup_grace."""
        if worker.number != 1 or self.runtime.fd is None:
            return False
        return not worker.ready or (self.grace_end is not None and time.monotonic() < self.grace_end)

    def _on_children(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.worker
            if worker is not None and pid == worker.pid:
                self._read_channel(worker)  # its last words are already in the socket
                self._close_channel(worker)  # a child of the worker may keep the socket open
                self.worker = None
                self._on_worker_exit(worker, status)

    def _on_worker_exit(self, worker: _Worker, status: int) -> None:
        died = time.monotonic() if worker.exiting_at is None else worker.exiting_at
        uptime = died - worker.started
        if os.WIFSIGNALED(status):
            signum = os.WTERMSIG(status)
            code, clean = None, signum in _CLEAN_SIGNALS
            how = f"was killed by {signal_name(signum)}"
            final = 0 if clean else 128 + signum
        else:
            signum, code = None, os.waitstatus_to_exitcode(status)
            clean = code == 0
            how = f"exited with status {code}"
            final = code
        raised = None
        if worker.error is not None:
            raised = f"{worker.error.get('type')}: {worker.error.get('message')}"
            how += f" after raising {raised}"
        self._worker_ended(worker, code, signum, clean=clean, uptime=uptime, raised=raised)
        if self.stopping:
            _log(f"worker {worker.pid} {how}: stopped")
            self._finish(0 if clean else (final or 1))
        if worker.told_launcher or self._launcher_listens(worker):
            # A first start that failed: the launcher raises StartupError; restarting would
            # turn a configuration error into a loop.
            _log(f"worker {worker.pid} {how} before it was ready: not restarted")
            if not worker.told_launcher and self.runtime.fd is not None:
                send(self.runtime.fd, EXIT, b"" if code is None else str(code).encode())
                self.runtime.close()
            self._finish(final or 1)
        if self.runtime.fd is not None and self.grace_end is not None:
            self.runtime.close()  # the launcher stopped listening at the end of startup_grace
        if not self._should_restart(code, signum, clean):
            _log(f"worker {worker.pid} {how}: restart={self.options.restart!r} does not restart it")
            self._finish(final)
        if uptime >= self.options.restart_reset_after:
            self.failures = 0
        delay, planned, over_limit = self._next_attempt(died)
        if over_limit is not None:
            _log(f"worker {worker.pid} {how}; {over_limit}: giving up")
            if worker.error is not None and worker.error.get("traceback"):
                _log("last worker traceback:\n" + worker.error["traceback"].rstrip("\n"))
            self._finish(1)  # whatever the worker's status: 1 says "gave up" (daemon(8), systemd)
        self.restarts += 1
        self.next_start = planned
        _log(f"worker {worker.pid} {how}; restarting in {delay:.3g} s (restart {self.restarts})")
        self._record(restart_planned(int(min(planned, _FAR) * 1e9), self.restarts))

    def _worker_ended(
        self, worker: _Worker, code: int | None, signum: int | None, *, clean: bool, uptime: float, raised: str | None
    ) -> None:
        """Record how *worker* ended: in the state file, and for the caller's DaemonProcess once we exit."""
        last_exit = worker_exit_record(
            worker.pid,
            code,
            signal_name(signum) if signum is not None else None,
            clean=clean,
            uptime_s=round(uptime, 3),
            exception=raised,
            traceback=worker.error.get("traceback") if worker.error else None,
        )
        report_supervised(last_exit)  # _outcome
        self._record(worker_exited(last_exit))

    def _next_attempt(self, since: float) -> tuple[float, float, str | None]:
        """One more failure: ``(delay, when the next worker starts, why not: past start_limit, or None)``.

        The delay is the backoff, counted from *since* (a worker's exit, or now
        for a fork that failed), never before now.
        """
        self.failures += 1
        delay = _delay(self.options, self.failures)
        planned = max(time.monotonic(), since + delay)
        limit = self.options.start_limit
        if limit is not None:
            burst, interval = limit
            recent = self.starts = [t for t in self.starts if t > planned - interval]
            if len(recent) + 1 > burst:
                why = f"start_limit={burst, interval} reached ({len(recent)} starts within {interval:g} s)"
                return delay, planned, why
        return delay, planned, None

    def _retry_fork(self, exc: OSError) -> None:
        """A worker could not be forked: try again after the usual backoff, within ``start_limit``."""
        delay, planned, over_limit = self._next_attempt(time.monotonic())
        if over_limit is not None:
            _log(f"cannot fork a worker: {exc}; {over_limit}: giving up")
            self._finish(1)
        self.next_start = planned
        _log(f"cannot fork a worker: {exc}; trying again in {delay:.3g} s")
        self._record(restart_planned(int(min(planned, _FAR) * 1e9)))

    def _should_restart(self, code: int | None, signum: int | None, clean: bool) -> bool:
        if code is not None and code in self.options.restart_prevent_exit_codes:
            return False
        mode = self.options.restart
        if mode == "always":
            return True
        if mode == "on-failure":
            return not clean
        return signum is not None and not clean  # on-abnormal: an unclean signal only

    # -- state and exit --------------------------------------------------------

    def _record(self, fields: dict[str, object]) -> None:
        if self.runtime.state is not None:
            self.runtime.state.update(**fields)

    def _finish(self, status: int) -> NoReturn:
        """Release everything and leave: the pidfile last, so its lock means "something of ours runs"."""
        if self.worker is not None:  # pragma: no cover - every path waits for the worker first
            _kill_group(self.worker.pid, signal.SIGKILL)
        _leave(self.runtime, status)


def _leave(runtime: Runtime, status: int) -> NoReturn:
    """Tell a launcher that still listens, flush, leave the state file and release the pidfile (last), exit."""
    try:
        if runtime.fd is not None:
            runtime.exited(status)
        flush_stdio()
        runtime.release(_own_exit_record(runtime, status) if runtime.state is not None else None)
    finally:
        os._exit(status)


def _own_exit_record(runtime: Runtime, status: int) -> dict[str, object] | None:
    """The supervisor's end, for ``status``: its status, with the last worker's signal and error line."""
    if not runtime.state or not runtime.state.path or runtime.pidfile is None:
        return None  # a private history file (no pidfile): nothing reads it once we are gone
    from ._runtime import exit_record

    record = exit_record(runtime, "stopped" if runtime.stopping else "exited", status)
    worker = runtime.state.fields.get("last_exit")
    if isinstance(worker, dict) and not runtime.stopping:
        record["signal"] = worker.get("signal")
        trace = worker.get("traceback")
        if isinstance(trace, str) and trace.strip():
            record["error"] = trace.strip().splitlines()[-1]
        record["worker_pid"] = worker.get("pid")
    return record


_FAR = 2.0**62 / 1e9  # s: the largest restart time the state file records in ns (a 64-bit int); ~146 years


def _delay(options: Options, failures: int) -> float:
    """``min(restart_delay * restart_backoff**(k-1), restart_max_delay)``, without overflowing."""
    try:
        delay = options.restart_delay * options.restart_backoff ** (failures - 1)
    except OverflowError:
        return options.restart_max_delay
    return min(delay, options.restart_max_delay)


def _noop(signum: int, frame: object) -> None:
    """The handler that lets the wakeup fd carry the signal; the loop does the work."""


def _kill_group(pid: int, signum: int) -> None:
    """Signal the worker's process group (it is its leader), else the worker alone."""
    try:
        os.killpg(pid, signum)
    except OSError:
        signal_quietly(pid, signum)


def supervise(runtime: Runtime, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> NoReturn:
    """In the daemon: become the supervisor of workers running *func*; never returns.

    Nothing unwinds into the launching script: a SIGTERM that arrives before
    the supervisor's own handlers are in place (``SystemExit``), or a bug
    here, ends the supervisor with the pidfile released.
    """
    status = 1
    try:
        Supervisor(runtime, func, args, kwargs).run()
    except SystemExit as exc:
        status = exit_status(exc)
    except BaseException as exc:
        import traceback

        _log("failed:\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip("\n"))
    finally:
        _leave(runtime, status)
