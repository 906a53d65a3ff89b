"""Controlling daemons from outside: stop and status by pidfile, and the DaemonProcess handle.

The pidfile lock is the source of truth: a pid is only signalled while its
pidfile is locked, and a stop is complete when the lock is released and the
process itself (pid and start time) is gone: a daemon lets go of its lock
while it exits (``PF_EXITING``), a stopper that finds it so waits for it. Waiting
is event-driven: a pidfd wakes us when the process exits; if a forked child
of the daemon still holds the lock, the pidfile's watcher blocks in ``flock``.
A stop that had to SIGKILL (or a daemon no longer allowed to remove its own
file) leaves the file behind: the stopper removes it, so that ``status``
then says "not running" (LSB 3), not "dead but pidfile exists".
"""

from __future__ import annotations

import os
import time

from . import _proc
from ._errors import DaemonError, ReloadError, UpgradeError, WorkerError
from ._options import STOP_TIMEOUT, stop_timeout
from ._outcome import Outcome, anonymous_path, exit_path, pending_monitor, read_outcome
from ._pidfile import Watcher
from ._signals import SIGHUP, SIGUSR2
from ._state import (
    State,
    States,
    anonymous_state_path,
    read,
    read_last_exit,
    state_path,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Any, TypeVar

    from ._options import Options
    from ._types import LastExit

    T = TypeVar("T")

__all__ = [
    "DaemonProcess",
    "pidfile_path",
    "reload_pidfile",
    "restart_action",
    "status_pidfile",
    "status_report",
    "stop_pidfile",
    "upgrade_pidfile",
]


def pidfile_path(options: Options, action: str) -> str:
    """The absolute pidfile path *action* needs, or DaemonError saying how to configure one."""
    path = options.pidfile
    if path is None:
        raise DaemonError(
            f"{action}() needs a pidfile to find the daemon: decorate with @daemon(pidfile='/run/name.pid')"
        )
    return os.path.abspath(path)


def _stopped(watcher: Watcher, pid: int, start_time: int | None, timeout: float) -> bool:
    """Wait until *pid* has exited and nobody holds the lock; True if within *timeout*."""
    deadline = time.monotonic() + timeout
    if not _proc.wait_exit(pid, timeout, start_time):
        return False  # still running, whatever the lock says
    # Something the daemon forked may still hold the lock: wait for it too.
    return watcher.wait_released(deadline - time.monotonic())


# A supervisor (restart=) gives its worker stop_timeout, then SIGKILLs the worker's process group
# itself: whoever stops the supervisor waits that long and this much more before a SIGKILL, which
# would leave the worker's own children running (PR_SET_PDEATHSIG reaches only the worker).
SUPERVISOR_GRACE = 5.0


def stop_pidfile(path: str, timeout: float, *, on_kill: Callable[[int, float], None] | None = None) -> bool:
    """Stop the daemon holding *path*'s lock: SIGTERM, wait, SIGKILL after *timeout*.

    A supervisor (``restart=``) gets ``SUPERVISOR_GRACE`` more seconds: it
    escalates on its worker's process group at *timeout* itself.

    True when no daemon holds the pidfile afterwards (also when none did);
    then a file the daemon left behind is removed. False when the lock could
    not be released, or is held by a process that has not written its pid yet.
    ``on_kill(pid, timeout)`` is called right before a SIGKILL, when the
    daemon outlived *timeout* seconds after SIGTERM.
    """
    watcher = Watcher.open(path)
    if watcher is None:
        return True
    with watcher:
        if not watcher.locked():
            pid = watcher.read_pid()
            if pid is not None and _proc.exiting(pid):
                return _exited(pid, timeout)  # a daemon caught in its exit(): wait for it
            return _stop_legacy(watcher, timeout, on_kill)
        pid = watcher.holder_pid()
        if pid is None:
            return not watcher.locked()  # a start that failed meanwhile: nothing runs
        start_time = _proc.identity(pid)
        state = read(state_path(path))
        if state is not None and state.supervised and state.pid == pid:
            timeout += SUPERVISOR_GRACE
        killing = None if on_kill is None else (lambda: on_kill(pid, timeout))
        stopped = _proc.escalate(
            pid, start_time, timeout, lambda wait: _stopped(watcher, pid, start_time, wait), killing
        )
        if stopped:
            watcher.remove_if_stale(pid, companions=(state_path(path),))
        return stopped


def _stop_legacy(watcher: Watcher, timeout: float, on_kill: Callable[[int, float], None] | None) -> bool:
    """Stop the python-daemon instance an unlocked pidfile names, if any (``Watcher.legacy_holder``).

    SIGTERM, wait for that very process (pid and start time) to exit,
    SIGKILL after *timeout*; then its file is removed if it is left. True
    when nothing runs under the file afterwards.
    """
    pid = _python_daemon_instance(watcher)
    if pid is None:
        return True  # stale, or nothing: not running
    start_time = _proc.identity(pid)
    killing = None if on_kill is None else (lambda: on_kill(pid, timeout))
    stopped = _proc.escalate(pid, start_time, timeout, lambda wait: _proc.wait_exit(pid, wait, start_time), killing)
    if stopped:
        watcher.remove_if_stale(pid)
    return stopped


def _python_daemon_instance(watcher: Watcher) -> int | None:
    """The pid of the python-daemon instance holding an unlocked pidfile, else None.

    ``Watcher.legacy_holder`` (the rule compat's start applies: a live process
    that started before the file was written), and a daemon: not in the
    caller's session. Start errs toward "held" (a refused start is visible);
    a stop, which signals, errs toward "stale": a pid written by hand into a
    file, of a process of this very session, is never signalled.
    """
    pid = watcher.legacy_holder()
    if pid is None:
        return None
    fields = _proc.stat_fields(pid)
    try:
        return pid if fields is not None and int(fields[3]) != os.getsid(0) else None
    except (IndexError, ValueError, OSError):  # pragma: no cover - an unreadable stat line
        return None


def _exited(pid: int | None, timeout: float) -> bool:
    """A pidfile found unlocked: wait until the daemon it names, if caught exiting, is gone (True).

    A daemon lets go of its lock as its very last act, which the kernel does
    when it closes the daemon's files in ``exit()``: the process is then
    marked exiting (``PF_EXITING``) but not a zombie yet. Such a process is
    waited for (SIGKILL after *timeout*, for one stuck there); any other pid
    in a stale file is someone else's and left alone.
    """
    if pid is None or not _proc.exiting(pid):
        return True
    start_time = _proc.identity(pid)
    return _proc.wait_exit(pid, timeout, start_time) or _proc.terminate(pid, 0.0, start_time)


def status_pidfile(path: str) -> int | None:
    """The pid of the daemon running under *path*, else None.

    Running means: the pidfile is locked and the pid it names is alive and not
    a zombie. A stale file (unlocked), whatever pid it names, is not running,
    except a python-daemon instance's (``Watcher.legacy_holder``: its
    ``PIDLockFile`` never locks), which is.
    """
    return _running(path)[0]


def _running(path: str) -> tuple[int | None, bool]:
    """(the pid of the daemon running under *path* or None, whether it is a python-daemon instance)."""
    watcher = Watcher.open(path)
    if watcher is None:
        return None, False
    with watcher:
        if not watcher.locked():
            legacy = _python_daemon_instance(watcher)
            return legacy, legacy is not None
        pid = watcher.read_pid()
    return (pid if pid is not None and _proc.is_alive(pid) else None), False


def _live_holder(path: str, *, wait_for_pid: bool) -> int | None:
    """The pid of the live daemon holding *path*'s lock, else None.

    With *wait_for_pid*, a daemon that holds the lock but is still starting
    gets a moment to write its pid (``Watcher.holder_pid``).
    """
    watcher = Watcher.open(path)
    if watcher is None:
        return None
    with watcher:
        if not watcher.locked():
            return None
        pid = watcher.holder_pid() if wait_for_pid else watcher.read_pid()
    return pid if pid is not None and _proc.is_alive(pid) else None


def reload_pidfile(path: str, timeout: float | None) -> int:
    """SIGHUP the daemon holding *path*; return its pid once it has finished the reload.

    Waits for a reload that *started* after the signal was sent (so it saw
    whatever changed before the call), as recorded in the daemon's state
    file; wakes on the file's changes (inotify) and on the daemon's death
    (pidfd), never on a timer where those exist.

    Raises:
        ReloadError: ``on_reload`` raised (with the daemon's traceback; the
            daemon keeps running), the daemon exited during the reload, it
            did not finish within *timeout* s, or no daemon runs
            (``running=False``).

    """
    pid = _live_holder(path, wait_for_pid=True)
    if pid is None:
        raise ReloadError(f"no daemon is running (pidfile {path!r})", running=False)
    spath = state_path(path)
    if read(spath) is None:
        raise ReloadError(f"daemon (pid {pid}) keeps no state file {spath!r}: a reload cannot be acknowledged", pid=pid)

    def settled(sent_at: int, state: State | None) -> int | None:
        record = state.reload_since(sent_at) if state is not None else None
        if record is None:
            return None
        if record.get("ok"):
            return pid
        raise ReloadError(
            f"daemon (pid {pid}) failed to reload; it keeps running with its previous state",
            pid=pid,
            daemon_traceback=str(record.get("error") or ""),
        )

    def exited(watch: _StateWatch, deadline: float | None) -> int:
        raise ReloadError(f"daemon (pid {pid}) exited during reload", pid=pid)

    return _acknowledged(
        path, pid, SIGHUP, timeout=timeout, settled=settled, exited=exited, error=ReloadError, what="reload"
    )


def _acknowledged(
    path: str,
    pid: int,
    signum: int,
    *,
    timeout: float | None,
    settled: Callable[[int, State | None], T | None],
    exited: Callable[[_StateWatch, float | None], T],
    error: type[ReloadError | UpgradeError],
    what: str,
) -> T:
    """Send *signum* to the daemon *pid* of *path* and wait until its state file acknowledges it.

    The one wait of ``reload`` and ``upgrade``: *settled* (given when the
    signal was sent and the state read) returns the answer, None while it
    is not there, or raises; *exited* answers when the daemon died first.
    Wakes on the state file's changes (inotify) and the daemon's exit
    (pidfd); *timeout* passed: *error*, naming *what*.
    """
    spath = state_path(path)
    start_time = _proc.identity(pid)
    with _StateWatch(spath, pid) as watch:
        sent_at = time.monotonic_ns()
        os.kill(pid, signum)
        deadline = _proc.deadline_in(timeout)
        while True:
            answer = settled(sent_at, read(spath))
            if answer is not None:
                return answer
            if not _proc.is_alive(pid, start_time):
                return exited(watch, deadline)
            if not watch.wait(deadline):
                raise error(f"daemon (pid {pid}) did not finish its {what} within {timeout:g} s", pid=pid)


def _upgrade_refusal(path: str, pid: int) -> str | None:
    """Why the daemon *pid* of *path* cannot be upgraded now, or None."""
    state = read(state_path(path))
    if state is None:
        return f"daemon (pid {pid}) keeps no state file next to its pidfile: an upgrade cannot be acknowledged"
    if not state.sockets:
        return f"daemon (pid {pid}) has no listen= sockets: nothing to hand over; use restart"
    if state.upgrade_refused:
        return f"daemon (pid {pid}) cannot be upgraded: {state.upgrade_refused}"
    if state.state == States.UPGRADING:
        return f"daemon (pid {pid}) is already being upgraded: wait for that upgrade to finish"
    if state.state != States.READY:
        return f"daemon (pid {pid}) is {state.state or States.STARTING}: upgrade it once it is ready"
    return None


def can_upgrade(path: str) -> bool:
    """True if a daemon runs under *path* and could hand its sockets to a successor now (``restart`` asks)."""
    pid = _live_holder(path, wait_for_pid=False)
    return pid is not None and _upgrade_refusal(path, pid) is None


def restart_action(options: Options, *, has_words: bool) -> str:
    """What *restart* means for the daemon of *options*: ``"upgrade"`` or ``"stop, start"``.

    The one decision both faces (``.restart()`` and the CLI's ``restart``)
    take: a daemon with ``listen=`` sockets that can be upgraded now is
    upgraded (no connection refused), when no words are given for the new
    start; any other is stopped, then started.
    """
    wants = options.listen and not has_words and options.pidfile is not None
    return "upgrade" if wants and can_upgrade(pidfile_path(options, "restart")) else "stop, start"


def upgrade_pidfile(path: str, timeout: float | None) -> tuple[int, int]:
    """Upgrade the daemon holding *path*: its successor takes its sockets and pidfile; (old pid, new pid).

    Sends SIGUSR2 and waits -- on the state file's changes (inotify) and the
    daemon's exit (pidfd) -- until the pidfile names a live successor (which
    writes its pid only once ready) or the daemon records that its successor
    failed.

    Raises:
        UpgradeError: no daemon runs (``running=False``), the daemon cannot be
            upgraded (no ``listen=`` sockets, under systemd, an upgrade already
            in progress), the successor failed (with its output and traceback;
            the old daemon keeps serving), or *timeout* passed.

    """
    pid = _live_holder(path, wait_for_pid=True)
    if pid is None:
        raise UpgradeError(f"no daemon is running (pidfile {path!r})", running=False)
    refusal = _upgrade_refusal(path, pid)
    if refusal is not None:
        raise UpgradeError(refusal, pid=pid)

    def settled(sent_at: int, state: State | None) -> tuple[int, int] | None:
        successor = _successor(path, pid)
        if successor is not None:
            return pid, successor
        record = state.upgrade_since(sent_at) if state is not None else None
        if record is None:
            return None
        # Ours, or one already under way when the signal came: its start says which, so that
        # a second request never waits for an upgrade that never comes.
        started = record.get("started_ns", 0)
        joined = "an upgrade already in progress failed" if isinstance(started, int) and started < sent_at else ""
        raise UpgradeError(
            f"daemon (pid {pid}) could not be upgraded: {joined or 'its successor failed'}; the daemon keeps serving",
            pid=pid,
            daemon_traceback=str(record.get("error") or ""),
        )

    def exited(watch: _StateWatch, deadline: float | None) -> tuple[int, int]:
        return pid, _orphaned_successor(path, pid, deadline, timeout, watch)

    return _acknowledged(
        path, pid, SIGUSR2, timeout=timeout, settled=settled, exited=exited, error=UpgradeError, what="upgrade"
    )


def _orphaned_successor(path: str, pid: int, deadline: float | None, timeout: float | None, watch: _StateWatch) -> int:
    """The daemon *pid* died during its upgrade: its successor, which holds the lock, may still take over.

    Wait (on the state file, which the successor writes once ready) while
    the pidfile stays locked; the successor's pid once it names itself there.
    """
    watch.forget_exit()
    while True:
        successor = _successor(path, pid)
        if successor is not None:
            return successor
        watcher = Watcher.open(path)
        held = watcher is not None and watcher.locked()
        if watcher is not None:
            watcher.close()
        if not held:
            raise UpgradeError(f"daemon (pid {pid}) exited during the upgrade, and no successor took over", pid=pid)
        if not watch.wait(deadline):
            raise UpgradeError(f"daemon (pid {pid}) did not finish its upgrade within {timeout:g} s", pid=pid)


def _successor(path: str, pid: int) -> int | None:
    """The live pid the locked pidfile names, if it is not *pid* (the upgraded daemon)."""
    named = _live_holder(path, wait_for_pid=False)
    return named if named is not None and named != pid else None


class _StateWatch:
    """Wakes when the state file changes or the daemon exits (inotify and pidfd; else a short backoff)."""

    def __init__(self, path: str, pid: int) -> None:
        import select

        self._poller = select.poll()
        self._fds: list[int] = []
        self._interval = 0.001
        self._events = 0
        notify = _inotify(path)
        if notify is not None:
            self._fds.append(notify)
            self._events += 1
        self._pidfd: int | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self._pidfd = pidfd_open(pid)
                self._fds.append(self._pidfd)
                self._events += 1
            except OSError:
                pass
        for fd in self._fds:
            self._poller.register(fd, select.POLLIN)

    def forget_exit(self) -> None:
        """The daemon has exited (its pidfd stays readable): from now on wake on the state file, else a backoff."""
        if self._pidfd is not None:
            self._poller.unregister(self._pidfd)
            self._events -= 1
            self._pidfd = None

    def __enter__(self) -> _StateWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for fd in self._fds:
            os.close(fd)

    def wait(self, deadline: float | None) -> bool:
        """Wait for a change (or a moment without inotify); False once *deadline* passed."""
        if deadline is not None and time.monotonic() >= deadline:
            return False
        if self._events < 2:  # without inotify: look again after a growing interval
            left = None if deadline is None else deadline - time.monotonic()
            wait = self._interval if left is None else max(0.0, min(self._interval, left))
            self._interval = min(self._interval * 2, 0.05)
            for fd, _ in self._poller.poll(int(wait * 1000)):
                _drain(fd)
            return True
        for fd, _ in _proc.poll_until(self._poller, deadline):
            _drain(fd)
        return True


def _drain(fd: int) -> None:
    try:
        os.read(fd, 65536)  # inotify events (a pidfd is not readable: harmless)
    except OSError:
        pass


def _inotify(path: str) -> int | None:
    """An inotify fd watching *path* for writes (Linux), or None."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd: int = libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK)
    except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    if fd < 0:  # pragma: no cover - out of inotify instances
        return None
    in_modify, in_delete_self, in_move_self = 0x2, 0x400, 0x800
    if libc.inotify_add_watch(fd, os.fsencode(path), in_modify | in_delete_self | in_move_self) < 0:
        os.close(fd)
        return None
    return fd


def status_report(path: str) -> tuple[int, dict[str, object]]:
    """The LSB status code of the daemon of *path* and its state, as ``status --json`` prints it.

    Read from the pidfile's lock, the daemon's state file and ``/proc``:
    ``pid``, ``state`` (``starting``, ``ready``, ``reloading``, ``stopping``,
    ``stopped``, ``stale``; ``python-daemon``: an instance started by
    python-daemon, whose pidfile is not locked), ``uptime_s``, ``cpu_s``, ``rss_bytes``,
    ``threads``, ``fds``, ``status`` (the last ``notify_status()`` text) and
    ``last_reload``; what cannot be read is ``None``.
    """
    report: dict[str, object] = dict.fromkeys(
        ("pid", "state", "uptime_s", "cpu_s", "rss_bytes", "threads", "fds", "status", "last_reload")
    )
    pid, legacy = _running(path)
    if pid is None:
        stale = os.path.lexists(path)
        report["state"] = States.STALE if stale else States.STOPPED
        report["last_exit"] = last_run(path)
        return (1 if stale else 3), report
    report["pid"] = pid
    state = None if legacy else read(state_path(path))  # a python-daemon instance keeps none
    report["state"] = (state.state if state is not None else None) or ("python-daemon" if legacy else States.STARTING)
    ready_after = state.ready_after_ns if state is not None else None
    if report["state"] == States.STARTING and ready_after is not None and time.monotonic_ns() >= ready_after:
        report["state"] = States.READY  # ready="auto": its function has run startup_grace without exiting
    if state is not None:
        report["status"] = state.status
        report["last_reload"] = state.reload_summary()
        if state.supervised:
            report.update(state.supervision())
    report.update(_proc.facts(pid))
    return 0, report


def last_run(path: str) -> dict[str, object] | None:
    """How the last daemon of pidfile *path* ended, once nothing runs: the record it left, else what /proc says.

    The record (``_state.write_last_exit``) is written by the daemon itself in
    its exit path: its status, the exception's last line, the log. A daemon
    killed by a signal writes nothing, and nobody is its parent (but a
    supervisor's worker, which the supervisor records): its state file then
    still names its pid, and while it is an unreaped zombie ``/proc/<pid>/stat``
    (field 52) still holds its wait status. Otherwise ``how`` is ``"died"``
    with ``status`` and ``signal`` unknown (None).
    """
    record = read_last_exit(state_path(path))
    if record is not None:
        return record
    state = read(state_path(path))
    pid = state.pid if state is not None else None
    if pid is None or pid <= 0:
        return None
    died: dict[str, object] = {"pid": pid, "how": "died", "status": None, "signal": None, "time": None}
    died.update(error=None, log=None)
    fields = _proc.stat_fields(pid)
    if fields is not None and fields[0] in ("Z", "X") and len(fields) >= 50:
        wait_status = int(fields[49])
        if os.WIFSIGNALED(wait_status):
            from ._signals import signal_name

            died["signal"] = signal_name(os.WTERMSIG(wait_status))
        else:
            died["status"] = os.WEXITSTATUS(wait_status)
    return died


# Workers that are this process's children: it is PID 1 or a child subreaper,
# so the double-forked workers were re-parented to it. Pid -> start time; each
# is reaped once it has exited, so that none stays a zombie of the caller.
_our_children: dict[int, int | None] = {}


# How long a wait gives a worker's monitor, once the worker ended, to write its record and leave.
_MONITOR_GRACE = 2.0

# The monitors of the workers this process started (``_outcome``): our children, each
# reaped once it has exited (its worker ended), so that none stays a zombie of the caller.
_monitors: set[int] = set()


def _reap_exited_children() -> None:
    for pid, start_time in list(_our_children.items()):
        if _proc.identity(pid) != start_time or _proc.reap_if_child(pid):
            del _our_children[pid]
    if _monitors and _any_child_exited():
        for pid in list(_monitors):
            _reap_monitor(pid, block=False)


def _any_child_exited() -> bool:
    """Whether any child of ours has exited (one ``waitid`` that reaps nothing), not one call per monitor."""
    try:
        return os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # no child at all: the program's own os.wait() reaped them
        _monitors.clear()
        return False


def _reap_monitor(pid: int, *, block: bool) -> bool:
    """Reap the monitor *pid* (waiting for it with *block*); True once it is gone."""
    try:
        reaped, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:  # reaped already (by the program's own os.wait())
        reaped = pid
    if reaped == pid:
        _monitors.discard(pid)
        return True
    return False


class DaemonProcess:
    """A handle on a daemon started by a ``@process_daemonize`` function.

    The daemon is not a child of the caller (it was double-forked), so it
    never becomes the caller's zombie; the handle identifies it by pid and
    start time, so a reused pid is never mistaken for it or signalled. Where
    the caller is PID 1 or a child subreaper, which inherit orphans, the
    worker does become its child: it is then reaped once it has exited (when
    the handle sees it gone, or at the next worker's start).

    How the worker ended is seen by its monitor (the first child of the
    double fork, which stays as the worker's parent) and kept in a record:
    :attr:`exitcode`, :meth:`wait`, :meth:`result` and :meth:`exception` read
    it, in this process or, with a pidfile, in another one
    (:meth:`from_pidfile`). They mirror ``multiprocessing.Process.exitcode``,
    ``subprocess.Popen.wait`` and ``concurrent.futures.Future.result``.

    Attributes:
        pid: the daemon's process id.
        pidfile: the path of its pidfile, or None.

    .. versionadded:: 0.1

    """

    def __init__(
        self, pid: int, pidfile: str | None = None, *, stop_timeout: float = STOP_TIMEOUT, monitor: int | None = None
    ) -> None:
        self.pid = pid
        self.pidfile = pidfile
        self._stop_timeout = stop_timeout
        self._start_time = _proc.identity(pid)
        # Gone before we could read its start time (a worker that ended at once, reaped by its
        # monitor): whatever process has this pid later is not it.
        self._gone = self._start_time is None and not _proc.is_alive(pid)
        self._monitor = monitor  # the worker's parent, which records its end; our child if in _monitors
        # Its start time, when it is not our child (a child's pid cannot be reused before we reap it).
        self._monitor_start = None if monitor is None or monitor in _monitors else _proc.identity(monitor)
        self._outcome: Outcome | None = None
        self._lost = False  # it ended and left no record

    @classmethod
    def started(
        cls, pid: int, pidfile: str | None, *, stop_timeout: float, monitor: int | None = None
    ) -> DaemonProcess:
        """The handle of a worker this process just started (*monitor*: our child that records its end)."""
        _reap_exited_children()
        if monitor is not None:
            _monitors.add(monitor)
            return cls(pid, pidfile, stop_timeout=stop_timeout, monitor=monitor)
        process = cls(pid, pidfile, stop_timeout=stop_timeout)
        fields = _proc.stat_fields(pid)
        if fields is not None and int(fields[1]) == os.getpid():
            _our_children[pid] = process._start_time
        return process

    @classmethod
    def from_pidfile(cls, path: str, *, stop_timeout: float = STOP_TIMEOUT) -> DaemonProcess:
        """A handle on the worker of *path*: the one running now, else the record of the last one that ended.

        Works in any process of the same user, also after the process that
        started the worker exited or restarted. The record of how a worker
        with a pidfile ended is ``<pidfile>.exit``, written by its monitor
        (``0o600``); the next worker with that pidfile replaces it.

        Args:
            path: the worker's pidfile (the ``pidfile=`` it was started with).
            stop_timeout: what :meth:`stop` waits before SIGKILL.

        Raises:
            DaemonError: no worker runs under *path* and none left a record.

        .. versionadded:: 0.1

        """
        path = os.path.abspath(path)
        pid = _live_holder(path, wait_for_pid=True)
        if pid is not None:
            fields = _proc.stat_fields(pid)
            # A worker's monitor is its parent and the leader of its session (it called setsid()).
            monitor = int(fields[1]) if fields is not None and int(fields[1]) == int(fields[3]) > 1 else None
            return cls(pid, path, stop_timeout=stop_timeout, monitor=monitor)
        outcome = read_outcome(exit_path(path))
        pending = pending_monitor(exit_path(path)) if outcome is None else None
        if pending is not None:  # the worker has ended (or is ending): its monitor writes the record now
            _proc.wait_exit(pending[0], _MONITOR_GRACE, pending[1])
            outcome = read_outcome(exit_path(path))
        if outcome is None:
            raise DaemonError(
                f"no worker runs under pidfile {path!r}, and none left a record of how it ended ({exit_path(path)!r})"
            )
        return cls._of_record(outcome, path, stop_timeout)

    @classmethod
    def _of_record(cls, outcome: Outcome, pidfile: str, stop_timeout: float) -> DaemonProcess:
        """The handle of a worker that ended, from its record (its pid may name another process now)."""
        self = cls.__new__(cls)
        self.pid, self.pidfile, self._stop_timeout = outcome.pid, pidfile, stop_timeout
        self._start_time, self._monitor, self._monitor_start = outcome.identity, None, None
        self._outcome, self._lost, self._gone = outcome, False, True
        return self

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "exited"
        if self._outcome is not None and self._outcome.exitcode is not None:
            state = f"exited exitcode={self._outcome.exitcode}"
        where = f", pidfile={self.pidfile!r}" if self.pidfile else ""
        return f"<DaemonProcess pid={self.pid}{where} {state}>"

    def _reap(self) -> None:
        """Once the worker has exited: reap it if it became our child (PID 1, subreaper)."""
        if self.pid in _our_children and _proc.reap_if_child(self.pid):
            del _our_children[self.pid]

    def _settle(self, deadline: float | None) -> bool:
        """Once the worker has exited: wait for its monitor, read the record; False at *deadline*."""
        if self._outcome is not None or self._lost:
            return True
        monitor = self._monitor
        if monitor is not None:
            # It writes the record and leaves right after the worker: an ended worker's code is
            # worth that moment even after *deadline* (wait(0) right after stop()).
            left = None if deadline is None else max(_MONITOR_GRACE, deadline - time.monotonic())
            start = self._monitor_start if monitor not in _monitors else None
            if not _proc.wait_exit(monitor, left, start):
                return False
            if monitor in _monitors:
                _reap_monitor(monitor, block=True)  # a zombie now: no wait
            self._monitor = None
        self._outcome = self._read_record()
        self._lost = self._outcome is None
        return True

    def _read_record(self) -> Outcome | None:
        if self.pidfile is not None:
            outcome = read_outcome(exit_path(self.pidfile), self.pid, self._start_time)
            if outcome is not None:
                return outcome
        path = anonymous_path(self.pid)
        outcome = read_outcome(path, self.pid, self._start_time) if path is not None else None
        if outcome is not None and path is not None:
            try:
                os.unlink(path)  # read once, kept here: nobody else knows it
            except OSError:
                pass
        return outcome

    def _ended(self, timeout: float | None) -> bool:
        """Wait up to *timeout* s for the worker's end and its record; False while it runs."""
        deadline = _proc.deadline_in(timeout)
        if self._outcome is None and not self._lost and not self._gone:
            if not _proc.wait_exit(self.pid, timeout, self._start_time):
                return False
            self._reap()
        return self._settle(deadline)

    def _lost_error(self) -> WorkerError:
        return WorkerError(
            f"worker (pid {self.pid}) has exited, but left no record of how: its monitor was killed, "
            "or it was not started by process_daemonize",
            pid=self.pid,
        )

    @property
    def exitcode(self) -> int | None:
        """None while the worker runs, then its exit status, or ``-N`` when signal N killed it.

        As ``multiprocessing.Process.exitcode`` (and the sign of
        ``subprocess.Popen.returncode``): ``0`` for a function that
        returned (or a worker stopped with SIGTERM, which ends in
        ``SystemExit(0)``), ``1`` for one that raised, ``3`` for
        ``sys.exit(3)``, ``-9`` for SIGKILL. With ``restart=``, the
        supervisor's status (1 when it gave up). Also None, once the worker
        has ended, if it left no record (:meth:`wait` then raises).

        .. versionadded:: 0.1
        """
        if self._outcome is None and not self._lost:
            if self.is_running():
                return None
            self._settle(None)  # its monitor writes the record right after it ended
        return self._outcome.exitcode if self._outcome is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the daemon to exit; its :attr:`exitcode`, or None if it still runs at *timeout*.

        Compare with None (``if handle.wait(5) is not None``): a worker that
        succeeded returns 0, which is false. Like ``subprocess.Popen.wait``,
        which raises ``TimeoutExpired`` where this returns None.

        Raises:
            WorkerError: the worker has exited but left no record of how
                (its monitor was killed).

        """
        if not self._ended(timeout):
            return None
        if self._outcome is None:
            raise self._lost_error()
        return self._outcome.exitcode

    def exception(self, timeout: float | None = None) -> WorkerError | None:
        """Wait for the worker to end; the :class:`WorkerError` :meth:`result` would raise, or None.

        As ``concurrent.futures.Future.exception``: a worker that raised
        gives its exception's type, message and traceback
        (:attr:`WorkerError.exc_type`, ``exc_message``, ``worker_traceback``);
        one killed by a signal or exited with a non-zero status says so.

        Args:
            timeout: seconds to wait; None waits as long as the worker runs.

        Raises:
            TimeoutError: the worker still runs after *timeout* seconds.

        .. versionadded:: 0.1

        """
        if not self._ended(timeout):
            raise TimeoutError(f"worker (pid {self.pid}) still runs after {timeout:g} s")
        if self._outcome is None:
            return self._lost_error()
        return self._outcome.error()

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the worker to end; what its function returned.

        As ``concurrent.futures.Future.result``: the value travels
        pickled, so it must be picklable (and its type importable here). A
        worker that exited 0 without returning (stopped, ``sys.exit(0)``)
        gives None.

        Args:
            timeout: seconds to wait; None waits as long as the worker runs.

        Raises:
            WorkerError: the worker raised (with its traceback), was killed
                by a signal, exited with a non-zero status, returned a value
                that cannot be pickled (naming its type), or left no record.
            TimeoutError: the worker still runs after *timeout* seconds.

        .. versionadded:: 0.1

        """
        error = self.exception(timeout)
        if error is not None:
            raise error
        assert self._outcome is not None
        try:
            return self._outcome.value()
        except Exception as exc:
            raise WorkerError(
                f"worker (pid {self.pid}) returned a value this process cannot unpickle: {type(exc).__name__}: {exc}",
                pid=self.pid,
                exitcode=self._outcome.exitcode,
            ) from exc

    def _supervision(self) -> dict[str, object]:
        """The supervisor's history (``restart=``): from ``<pidfile>.state``, or its private file without one."""
        if not self.is_running():
            return {}
        path = state_path(self.pidfile) if self.pidfile is not None else anonymous_state_path(self.pid)
        state = read(path) if path is not None else None
        if state is None or not state.supervised or state.pid != self.pid:
            return {}
        if state.identity not in (None, self._start_time):
            return {}  # left by an earlier process that had this pid
        return state.supervision()

    @property
    def worker_pid(self) -> int | None:
        """With ``restart=``: the pid of the worker running the function now (None between two workers).

        :attr:`pid` is the supervisor's, which the pidfile names. None
        without ``restart=``. The history lives in ``<pidfile>.state``, or
        without a pidfile in a private per-user directory under the
        system's temp directory (not with ``user=``/``chroot=``).

        .. versionadded:: 0.1
        """
        pid = self._supervision().get("worker_pid")
        return pid if isinstance(pid, int) else None

    @property
    def restarts(self) -> int:
        """With ``restart=``: how many times the supervisor restarted the function (0 otherwise).

        .. versionadded:: 0.1
        """
        count = self._supervision().get("restarts")
        return count if isinstance(count, int) else 0

    @property
    def last_exit(self) -> LastExit | None:
        """With ``restart=``: how the last worker ended, else None.

        A dict: ``pid``, ``status`` (exit status, or None when killed),
        ``signal`` (``"SIGKILL"``, or None), ``clean`` (systemd's meaning),
        ``uptime_s``, ``exception`` (``"ValueError: ..."`` when it raised),
        ``traceback``, ``time`` (``time.time()`` of the death). Kept after
        the supervisor itself exited.

        .. versionadded:: 0.1
        """
        last = self._supervision().get("last_exit")
        if last is None and self.exitcode is not None and self._outcome is not None:
            last = self._outcome.supervised
        return last if isinstance(last, dict) else None  # type: ignore[return-value]  # _supervise writes a LastExit

    @property
    def next_restart_in(self) -> float | None:
        """With ``restart=``: seconds until the next worker starts, while the supervisor waits; else None.

        .. versionadded:: 0.1
        """
        wait = self._supervision().get("next_restart_in")
        return wait if isinstance(wait, float) else None

    def is_running(self) -> bool:
        """True while the daemon runs (a zombie or a reused pid does not count)."""
        if not self._gone and _proc.is_alive(self.pid, self._start_time):
            return True
        self._reap()
        return False

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM, wait up to *timeout* s (default ``stop_timeout``), then SIGKILL.

        Returns True when the daemon is no longer running, also when it had
        already exited; its :attr:`exitcode` is then known (its monitor has
        recorded it).
        """
        wait = stop_timeout(timeout, self._stop_timeout)
        if not self.is_running():
            return True
        grace = SUPERVISOR_GRACE if self._supervision() else 0.0
        deadline = time.monotonic() + wait + grace
        if self.pidfile is not None and status_pidfile(self.pidfile) == self.pid:
            stopped = stop_pidfile(self.pidfile, wait)
            # The daemon lets go of its pidfile right before it exits (and one exiting by itself may
            # have let go already): only the process itself, by pid and start time, says it is gone.
            if stopped and not _proc.wait_exit(self.pid, max(0.0, deadline - time.monotonic()), self._start_time):
                stopped = _proc.terminate(self.pid, 0.0, self._start_time)
        else:
            stopped = _proc.terminate(self.pid, wait + grace, self._start_time)
        if stopped:
            self._reap()
            self._settle(time.monotonic())  # the monitor records the end and leaves: nothing of it lingers
        return stopped
