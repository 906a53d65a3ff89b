"""Becoming the daemon, for every form: detached, foreground, supervised worker; one sequence, one end.

A process becomes the daemon in :func:`enter`, whatever its form
(:class:`Entry` declares it):

* ``detached`` (``@daemon``, ``daemonize()``) and ``worker``
  (``@process_daemonize``): the child of the double fork, with what the
  launcher opened (:class:`Prepared`);
* ``service`` (the decorated function called under a service manager, or
  ``detach=False``) and ``debugging`` (``.run()``): this very process, which
  does not fork (``_engine.Foreground``);
* ``supervised``: a worker the ``restart=`` supervisor forked (``_supervise``).

The steps come in one order, written once below; a step a form skips, or
takes in its own way, says so where it stands. Every form ends in
``Runtime.release`` (``_runtime``): the state file first, the pidfile last.

**Fds across the fork.** The daemon keeps exactly :func:`keep_set`: fds 0-2
(the stdio targets), the readiness pipe, the pidfile, the state files, the
``ready_fd``, ``keep_fds`` and the fds of configured ``logging`` handlers,
the ``listen=`` sockets; :func:`close_fds` closes every other one, at a cost
that follows the open fds. A supervised worker closes instead what only its
supervisor may hold (:func:`drop_supervisor_fds`); a worker's monitor keeps
0-2 and its pipe (``_engine``); an upgrade's successor inherits what
``_upgrade`` passes it.
"""

from __future__ import annotations

import atexit  # a builtin module: imported here, not in every worker after its fork (benchmarks/)
import os
import sys

from . import _privileges, _signals
from ._handover import report_to_predecessor
from ._ready import PID, send
from ._runtime import Runtime
from ._state import StateFile, listening, state_path
from ._stdio import (
    above_stdio,
    line_buffered,
    rebind_std_streams,
    reopen_stdio,
    stdio_paths,
    swapped_std_streams,
)
from ._systemd import MANAGER_VARIABLES, SystemdNotifier

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from ._handover import Handover
    from ._options import Options
    from ._pidfile import Holder
    from ._runtime import Notifier, StateSink
    from ._sockets import Resolved
    from ._types import Handler
    from ._upgrade import Plan

__all__ = [
    "DEBUGGING",
    "DETACHED",
    "READY_FD_VARIABLE",
    "SERVICE",
    "SUPERVISED",
    "WORKER",
    "Entry",
    "Prepared",
    "close_fds",
    "drop_ready_fd_copy",
    "enter",
    "fd_table_size",
    "start_watchdog",
]

# The environment's ready_fd (s6, OpenRC supervise-daemon --notify fd:N, finit),
# used when the option is None; removed from the daemon's environment.
READY_FD_VARIABLE = "DAEMONDECO_READY_FD"

# The forms of the daemon (Entry.form).
DETACHED = "detached"  # @daemon, daemonize(): the double fork's child
WORKER = "worker"  # @process_daemonize: the same, for a caller that keeps running
SERVICE = "service"  # this process, under a service manager or detach=False
DEBUGGING = "debugging"  # this process, .run(): stdio, cwd and umask left alone
SUPERVISED = "supervised"  # a worker of the restart= supervisor


def _in_environ(keys: tuple[bytes, ...]) -> bool:
    """Whether any of *keys* (encoded names) is set, even empty, in ``os.environ``.

    ``name in os.environ`` raises and catches a ``KeyError`` inside
    ``os.environ`` for every name that is missing: a few allocations each,
    which in a caller that keeps forking workers land on pages shared with
    the live workers, so every one is a copy-on-write fault
    (benchmarks/README.md, workers). The encoded mapping is read directly
    where it exists, with the keys encoded once.
    """
    data = getattr(os.environ, "_data", None)
    if type(data) is not dict or os.name != "posix":  # pragma: no cover - not CPython's os.environ
        return any(os.fsdecode(key) in os.environ for key in keys)
    return not data.keys().isdisjoint(keys)  # in C: no generator, no exception


_MANAGER_KEYS = tuple(map(os.fsencode, MANAGER_VARIABLES))
_READY_FD_KEYS = (os.fsencode(READY_FD_VARIABLE),)


class Prepared:
    """What the launcher opened for the daemon; closed in the launcher after the fork."""

    def __init__(self, options: Options) -> None:
        self.options = options
        # The default "/" is absolute and normal already: no need to run abspath's code.
        self.workdir = options.workdir if options.workdir == "/" else os.path.abspath(options.workdir)
        self.identity: _privileges.Identity | None = None
        self.root: str | None = None
        self.stdio_paths = stdio_paths(options)
        self.pidfile: Holder | None = None
        # Looked at here, before the fork, so the daemon only acts on what it
        # must: each page a fresh child touches is copied (~3 us a page).
        self.signal_state = _signals.inherited()
        self.manager_env = _in_environ(_MANAGER_KEYS)
        self.ready_fd_env = _in_environ(_READY_FD_KEYS)  # for the daemon to remove
        self.std_swapped = swapped_std_streams()
        self.launcher_copies: list[int] = []
        self.keep: set[int] = set()
        self.stdio: tuple[int, int, int] = (-1, -1, -1)
        self.fd_table_size: int | None = None  # read right before the fork
        self.ready_fd: int | None = None
        self.sockets: Resolved | None = None  # listen= and activated sockets
        self.handover: Handover | None = None  # an upgrade: what the previous generation handed us
        self.launch_cwd = ""  # where a successor's command line runs (an upgrade)
        self.monitor: int | None = None  # a worker's monitor (``_outcome``): our child, the worker's parent
        self.created: list[tuple[str, int]] = []  # the log files prepare() created, undone if the fork fails
        self.report_fd: int | None = None  # an upgrade's successor: where its daemon tells the old one its pid
        self.runtime: Runtime | None = None  # in the daemon, once enter() ran: its runtime

    def close(self) -> None:
        """Close the launcher's copies of everything (the daemon has its own)."""
        if self.sockets is not None:
            self.sockets.close_launcher_copies()
        for fd in self.launcher_copies:
            os.close(fd)
        self.launcher_copies = []
        if self.pidfile is not None:
            self.pidfile.close_copy()


class Entry:
    """One form of the daemon and what it brings to :func:`enter`; filled in as the steps run.

    Args:
        form: ``DETACHED``, ``WORKER``, ``SERVICE``, ``DEBUGGING`` or ``SUPERVISED``.
        options: the daemon's options.
        prepared: (detached, worker) what the launcher opened.
        write_end: the readiness pipe (detached, worker) or the socket to the supervisor (supervised).
        pidfile: (service, debugging) the pidfile this process locked.
        given_ready_fd: (service, debugging) the ``ready_fd`` as resolved, the caller's own fd.
        sockets: (service, debugging) the sockets resolved for ``listen=``.
        identity: (service, debugging) the user and groups to become, resolved.
        root: (service, debugging) the chroot, checked.
        workdir: (service) the working directory, checked.
        supervisor: (supervised) the supervisor's runtime, whose fds the worker drops.
        relay: (supervised) the notifier and the state that relay to the supervisor.

    """

    def __init__(
        self,
        form: str,
        options: Options,
        *,
        prepared: Prepared | None = None,
        write_end: int | None = None,
        pidfile: Holder | None = None,
        given_ready_fd: int | None = None,
        sockets: Resolved | None = None,
        identity: _privileges.Identity | None = None,
        root: str | None = None,
        workdir: str | None = None,
        supervisor: Runtime | None = None,
        relay: tuple[Notifier, StateSink] | None = None,
    ) -> None:
        self.form = form
        self.options = options
        self.prepared = prepared
        self.write_end = write_end
        self.pidfile = prepared.pidfile if prepared is not None else pidfile
        self.given_ready_fd = given_ready_fd
        self.ready_fd = prepared.ready_fd if prepared is not None else None  # ours, once step 3 ran
        self.sockets = prepared.sockets if prepared is not None else sockets
        self.identity = prepared.identity if prepared is not None else identity
        self.root = prepared.root if prepared is not None else root
        self.workdir = prepared.workdir if prepared is not None else workdir
        self.supervisor = supervisor
        self.relay = relay
        if prepared is not None:
            self.stdio_paths = prepared.stdio_paths
        elif supervisor is not None:
            self.stdio_paths = supervisor.stdio_paths
        else:  # .run() leaves stdio to the terminal: SIGHUP must not redirect it
            self.stdio_paths = stdio_paths(options) if form == SERVICE else (None, None)
        # Set by enter(), for a foreground start that fails to undo.
        self.previous_runtime: Runtime | None = None
        self.previous_handlers: dict[int, Handler] = {}


def enter(entry: Entry) -> Runtime:  # noqa: PLR0912, PLR0915 - one sequence read top to bottom: its order is the point
    """Make this process the daemon of *entry*'s form, in the one order; return its runtime, active.

    Readiness comes later (``_runtime``). Raises when a step fails (a
    chroot, ``initgroups``, ``setuid``...); each form reports that its own
    way (``_engine``, ``_supervise``).
    """
    form, options, prepared = entry.form, entry.options, entry.prepared
    detached = prepared is not None  # DETACHED or WORKER
    foreground = form in (SERVICE, DEBUGGING)
    pid = os.getpid()
    # 1. Our pid, told first: to an upgrading old generation (before anything can fail: it
    #    watches us), then to the launcher.
    if prepared is not None:
        assert entry.write_end is not None
        report_to_predecessor(prepared.report_fd)
        send(entry.write_end, PID, str(pid).encode())
    # 2. The pidfile names us, so that a refused start or a stop can name us at once (an
    #    upgrade's successor writes it only at readiness: until then it is the old daemon's).
    handover = prepared.handover if prepared is not None else None
    if entry.pidfile is not None and handover is None:
        entry.pidfile.write_pid(pid)
    # 3. The ready_fd is ours, not inherited by a program we exec; its variable is gone.
    if foreground:
        entry.ready_fd = _own_ready_fd(entry.given_ready_fd)  # before 1 or 2 may become a log file
    elif entry.ready_fd is not None:
        os.set_inheritable(entry.ready_fd, False)
    if prepared is not None and prepared.ready_fd_env:
        os.environ.pop(READY_FD_VARIABLE, None)
    # 4. A service takes back the signals it inherited blocked or ignored here, first of all
    #    (the detached forms do it in step 12, right before their handlers: as before the merge).
    if form == SERVICE:
        _signals.reset_inherited()
    # 5. The umask (not .run()'s, not a supervised worker's: its supervisor set it).
    if detached or form == SERVICE:
        os.umask(options.umask)
    # 6. The state file, opened before a chroot or privilege drop (a foreground daemon opens
    #    it after its privileges, in step 9: as before the merge).
    state: StateSink | None = None
    successor_state: StateFile | None = None
    if prepared is not None:
        state, successor_state = _daemon_state(entry.pidfile, handover)
    elif entry.relay is not None:
        state = entry.relay[1]
    # 7. Stdio: the launcher's targets (detached), the files reopened (a service).
    if prepared is not None:
        for target, fd in enumerate(prepared.stdio):
            os.dup2(fd, target)
    elif form == SERVICE:
        reopen_stdio(*entry.stdio_paths)
    # 8. Fds: every one outside the keep set closed; a supervised worker closes what only its
    #    supervisor may hold.
    if prepared is not None:
        assert entry.write_end is not None
        close_fds(keep_set(prepared, entry.write_end, state, successor_state), prepared.fd_table_size)
    elif entry.supervisor is not None:
        drop_supervisor_fds(entry.supervisor)
    # 9. Python's streams on the new stdio: rebound where the launcher had swapped them,
    #    line by line where they go to a file (nothing to see line by line in /dev/null).
    if prepared is not None and prepared.std_swapped:
        rebind_std_streams(prepared.std_swapped)
    if form != SUPERVISED and entry.stdio_paths != (None, None):
        line_buffered()
    # 10. The notifier, before a chroot hides its socket: a worker's variables are only
    #     removed; a supervised worker's relays to its supervisor, the main process.
    notifier: Notifier | None = None
    if prepared is not None:
        if prepared.manager_env:
            notifier = SystemdNotifier.from_environ(main_process=form == DETACHED)
    elif foreground:
        notifier = SystemdNotifier.from_environ()
    elif entry.relay is not None:
        notifier = entry.relay[0]
    # (multiprocessing's reset, step 15, is imported now: after a chroot the package may be out of reach.)
    reset_multiprocessing: Callable[..., None] | None = None
    if prepared is not None and "multiprocessing" in sys.modules:
        from ._mpstate import reset_after_detach

        reset_multiprocessing = reset_after_detach
    # 11. Privileges: chroot, workdir, groups, user.
    if detached or foreground:
        _privileges.enter(options, entry.identity, entry.root, entry.workdir)
    if foreground:
        state = _open_state(entry.pidfile)
    # 12. The sockets are the daemon's (``sockets()``), with its upgrade plan or why it has none.
    plan = _listen(entry, notifier, successor_state or state)
    # 13. The runtime, complete, made the process's.
    runtime = Runtime(
        entry.write_end,
        options,
        pidfile=entry.pidfile,
        notifier=notifier,
        stdio_paths=entry.stdio_paths,
        state=state,
        ready_fd=entry.ready_fd,
        adopt_at_ready=successor_state,
        listening=tuple(entry.sockets.fds) if entry.sockets is not None else (),
        upgrade_plan=plan,
        supervised_worker=form == SUPERVISED,
        # .run(): nobody waits for a start to prove itself.
        ready_mode="start" if form == DEBUGGING and options.ready == "auto" else None,
    )
    entry.previous_runtime = runtime.activate()
    # 14. Signals: inherited state undone (detached: only if there is any), our handlers.
    if prepared is not None:
        if prepared.signal_state.blocked or prepared.signal_state.ignored:  # else nothing to undo
            _signals.reset_inherited(prepared.signal_state)
        _signals.install(options, runtime)
    elif foreground:
        if _signals.in_main_thread():
            entry.previous_handlers = _signals.install(options, runtime)
    else:
        _signals.install(options, runtime)
    # 15. A worker runs only its own exit handlers, not its caller's (tempfile cleanup,
    #     multiprocessing teardown); multiprocessing forgets the launcher's tracker and
    #     forkserver, whose fds were closed in step 8.
    if form == WORKER:
        atexit._clear()
    if reset_multiprocessing is not None:
        reset_multiprocessing(worker=form == WORKER)
    return runtime


def start_watchdog(runtime: Runtime) -> None:
    """The last step, once the daemon is whole: ping the service manager's watchdog, if it asked."""
    if runtime.notifier is not None:
        runtime.notifier.start_watchdog()


def _listen(entry: Entry, notifier: Notifier | None, state: StateFile | StateSink | None) -> Plan | None:
    """Make the resolved sockets the daemon's (``sockets()``); its upgrade plan, or None and why in the state file."""
    resolved = entry.sockets
    if resolved is None:
        return None
    from ._upgrade import Plan, plan_upgrade  # lazy: only a daemon that listens can be upgraded

    resolved.install()
    pidfile = entry.pidfile
    plan = plan_upgrade(
        entry.options,
        resolved.fds,
        form=entry.form if entry.form in (DETACHED, WORKER) else "foreground",
        systemd=notifier is not None,
        launch_cwd=entry.prepared.launch_cwd if entry.prepared is not None else "",
        pidfile=pidfile.fileno() if pidfile is not None else None,
        state=state.fileno() if state is not None else None,
    )
    if isinstance(state, StateFile):
        state.preset(listening(list(resolved.fds), None if isinstance(plan, Plan) else plan))
    return plan if isinstance(plan, Plan) else None


# -- the ready_fd ------------------------------------------------------------


def _own_ready_fd(fd: int | None) -> int | None:
    """In the process that becomes the daemon: *fd* (or a copy above stdio), not inherited by exec."""
    os.environ.pop(READY_FD_VARIABLE, None)
    if fd is None:
        return None
    fd = above_stdio(fd, keep_original=True)
    os.set_inheritable(fd, False)
    return fd


def drop_ready_fd_copy(fd: int | None, given: int | None) -> None:
    """After a failed foreground start: close the copy ``enter`` made (the given fd is the caller's)."""
    if fd is not None and fd != given:
        os.close(fd)


# -- the state file ----------------------------------------------------------


def _open_state(pidfile: Holder | None) -> StateFile | None:
    """The daemon's state file next to its pidfile (opened before a chroot or privilege drop), if it can be made."""
    if pidfile is None:
        return None
    try:
        return StateFile(state_path(pidfile.path))
    except OSError:  # a directory we may not write: status and reload then know less
        return None


def _daemon_state(pidfile: Holder | None, handover: Handover | None) -> tuple[StateFile | None, StateFile | None]:
    """(the state file, the one to adopt at readiness): an upgrade's successor writes nothing before it is ready."""
    if handover is None:
        return (_open_state(pidfile) if pidfile is not None else None), None
    if pidfile is None or handover.state is None:
        return None, None
    return None, StateFile.adopt(state_path(pidfile.path), handover.state)


# -- fds across the fork -----------------------------------------------------


def keep_set(prepared: Prepared, write_end: int, *held: StateSink | None) -> set[int]:
    """What the fd-closing step leaves open: stdio, the pipe, the pidfile, state files, kept and ready fds."""
    keep = {0, 1, 2, write_end, *prepared.keep}
    if prepared.pidfile is not None:
        keep.add(prepared.pidfile.fileno())
    keep.update(state.fileno() for state in held if state is not None)
    if prepared.ready_fd is not None:
        keep.add(prepared.ready_fd)
    return keep


def drop_supervisor_fds(supervisor: Runtime) -> None:
    """In a supervised worker: close what only the supervisor may hold.

    The launcher's pipe and the ``ready_fd``, the pidfile lock (``status``
    must say "not running" once the supervisor is gone), the state file.
    """
    for owned in (supervisor.fd, supervisor.ready_fd):
        if owned is not None:
            os.close(owned)
    if supervisor.pidfile is not None and supervisor.pidfile.held:
        supervisor.pidfile.close_copy()
    if supervisor.state is not None and supervisor.state.fileno() >= 0:
        os.close(supervisor.state.fileno())


def fd_table_size() -> int | None:
    """One more than the highest fd this process can have open now (Linux), else None.

    ``FDSize`` in ``/proc/self/status`` is the size of the kernel's fd table,
    which grows with the highest fd ever opened, not with ``RLIMIT_NOFILE``.
    """
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, 8192)
    finally:
        os.close(fd)
    start = data.find(b"\nFDSize:")
    if start < 0:  # pragma: no cover - a kernel without the field
        return None
    return int(data[start + 8 : data.index(b"\n", start + 1)])


def close_fds(keep: set[int], top: int | None = None) -> None:
    """Close every fd but *keep*; the cost follows the open fds, not RLIMIT_NOFILE.

    ``os.closerange`` over the gaps between kept fds, up to the size of the fd
    table: one ``close_range(2)`` system call a gap (Linux 5.9+, glibc 2.34+),
    else a loop in C no longer than the table. Listing ``/proc/self/fd`` from
    Python cost ~10 ms for 5,000 fds (benchmarks/); it stays as the fallback
    where the table size is unknown. *top*: the table size, when the caller
    read it already (before the fork).
    """
    if top is None:
        top = fd_table_size()
    if top is not None:
        start = 0
        for fd in [*sorted(fd for fd in keep if fd < top), top]:
            if start < fd:
                os.closerange(start, fd)
            start = fd + 1
        return
    for directory in ("/proc/self/fd", "/dev/fd"):  # pragma: no cover - no /proc/self/status
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass  # the directory's own fd, already closed
        return
    import resource  # pragma: no cover - no fd directory to list

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]  # pragma: no cover
    start = 0  # pragma: no cover
    for fd in [*sorted(keep), limit if limit > 0 else 65536]:  # pragma: no cover
        os.closerange(start, fd)
        start = fd + 1
