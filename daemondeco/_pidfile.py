"""The locked pidfile: every ``flock`` of the package happens here.

A pidfile is only as good as its lock. The rules, all enforced here:

* The file is opened with ``O_NOFOLLOW`` (a planted symlink is refused and its
  target left untouched), ``O_CLOEXEC``, ``O_NONBLOCK`` and mode ``0o644``;
  no ``exists()``-then-``open()`` race. Anything but a regular file at the
  path (a FIFO, a directory, a socket, a device) is refused at once: a FIFO
  would otherwise block every reader forever.
* It is locked with ``flock(LOCK_EX | LOCK_NB)``. Unlike ``fcntl.lockf`` the
  lock belongs to the open file description: it survives ``fork()`` and is not
  dropped when the process closes some *other* fd on the same file.
* The lock is held for the daemon's whole life. A file that can be locked is
  stale, whatever it contains (a dead pid, a zombie, a reused pid, garbage),
  and is simply taken over. A kill -9 never blocks the next start.
* The pid is written only into the locked file, write-then-truncate, so a
  reader never sees it empty.
* On release the file is removed only if the path still names the file we
  locked and it still holds our pid. A stopper removes a file the daemon
  could not (it was killed, or dropped the rights to) only while holding the
  lock itself and only if the file still names the stopped pid.

One exception to "unlocked means stale", for migrations: python-daemon's
``PIDLockFile`` never locks (the file's existence is its lock). An unlocked
file that names a live process started before the file was written is such
an instance, still running (:meth:`Watcher.legacy_holder`): a compat start
refuses to start beside it, ``status`` reports it running and ``stop`` stops
it.

Three roles, one per class: :class:`Pidfile` is the public face;
:class:`Holder` is the package's lock holder (the launcher locks, the daemon
writes its pid, a failed start abandons); :class:`Watcher` looks from outside
(is it locked, by whom, wait until it is released).
"""

from __future__ import annotations

import atexit  # a builtin module
import errno
import os
import stat
import time

from ._errors import AlreadyRunningError, DaemonError, path_error
from ._proc import identity, is_alive
from ._stdio import above_stdio

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Iterator
    from types import TracebackType

    from ._types import PathLike

__all__ = ["Holder", "Pidfile", "Watcher", "at_the_end", "require_posix"]

# How long a refused start (or a stop) waits for a daemon that holds the lock
# but is still starting to write its pid: fork + setsid + fork, milliseconds.
_PID_WAIT = 1.0

# /proc/stat's btime has a resolution of one second: a process that started
# up to this long after the file's mtime still counts as its writer, so the
# legacy check errs toward "held" (a refused start is visible; a second daemon is not).
_CLOCK_SLACK = 1.0

_COMMON_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
_READ_FLAGS = os.O_RDONLY | _COMMON_FLAGS
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | _COMMON_FLAGS


def require_posix() -> None:
    """Raise DaemonError on platforms without ``fork()`` and ``flock()``."""
    if not hasattr(os, "fork") or fcntl is None:
        import sys

        raise DaemonError(f"daemondeco needs a POSIX system with fork() and flock(); this is {sys.platform!r}")


# What must happen after every atexit handler of the program (daemonize()'s pidfile release): run by
# the handler registered here, when daemondeco is imported -- before the program registers its own,
# so (atexit being LIFO) after them.
_at_the_end: list[Callable[[], object]] = []


def at_the_end(action: Callable[[], object]) -> None:
    """Call *action* at exit, after every atexit handler registered since daemondeco was imported."""
    _at_the_end.append(action)


def _run_at_the_end() -> None:
    while _at_the_end:
        action = _at_the_end.pop(0)
        try:
            action()
        except Exception:  # pragma: no cover - each action reports its own trouble
            pass


atexit.register(_run_at_the_end)


def _parse_pid(data: bytes) -> int | None:
    first = data.split(b"\n", 1)[0].strip()
    if not first.isdigit() or len(first) > 10:
        return None
    pid = int(first)
    return pid if pid > 0 else None


def _read_fd(fd: int) -> int | None:
    return _parse_pid(os.pread(fd, 64, 0))


def _tries(seconds: float) -> Iterator[bool]:
    """Yield True while *seconds* last, then False once, sleeping a growing interval between."""
    deadline = time.monotonic() + seconds
    delay = 0.0005
    while time.monotonic() < deadline:
        yield True
        time.sleep(delay)
        delay = min(delay * 2, 0.02)
    yield False


def _same_file(path: str, fd: int) -> bool:
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _not_regular(path: str) -> DaemonError:
    return DaemonError(
        f"pidfile {path!r} is not a regular file (a FIFO, directory, socket or device is there); "
        "remove it or choose another path"
    )


def _open(path: str, flags: int, what: str) -> int | None:
    """Open the pidfile; None when there is none (reading); refuse what is not a regular file."""
    try:
        fd = os.open(path, flags, 0o644)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if flags & os.O_CREAT:  # a missing directory: say so, and that it is the pidfile's
            raise path_error(exc, what, path) from None
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):
            if not flags & os.O_CREAT:
                return None  # a reader treats a planted symlink as no pidfile
            raise DaemonError(
                f"pidfile {path!r} is a symbolic link; refusing to follow it "
                "(its target would be overwritten). Remove the link or name the real file."
            ) from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):  # a socket file; a directory opened for writing
            raise _not_regular(path) from None
        raise path_error(exc, what, path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise _not_regular(path)
    return fd


def _locked_elsewhere(fd: int) -> bool:
    """True if another open file description holds a lock on *fd*'s file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


class Holder:
    """The package's side of holding a pidfile: lock, write the pid, let go.

    The launcher ``lock()``s (no pid yet: the daemon writes its own), the
    daemon ``write_pid()``s, a failed start ``abandon()``s, and the launcher
    ``close_copy()``s its fd after the fork. The fd is always 3 or above, so
    the daemon's redirection of fds 0-2 can never replace it (a launcher
    started with its std fds closed would otherwise lock fd 0 and lose the
    lock at the ``dup2``).
    """

    __slots__ = ("_fd", "path", "pid")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self.pid: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def fileno(self) -> int:
        """The locked fd (to keep open across the daemon's fd closing)."""
        assert self._fd is not None, "pidfile is not locked"
        return self._fd

    def lock(self) -> None:
        """Take the lock without writing a pid; AlreadyRunningError if someone holds it."""
        require_posix()
        if self._fd is not None:
            raise DaemonError(f"pidfile {self.path!r} is already held by this object")
        while True:
            fd = _open(self.path, _LOCK_FLAGS, "cannot open pidfile")
            assert fd is not None
            try:
                fd = above_stdio(fd)
                self._flock_or_raise(fd)
            except BaseException:
                os.close(fd)
                raise
            # A daemon that was exiting may have unlinked the file between our
            # open() and flock(): then we locked an orphaned inode. Start over.
            if _same_file(self.path, fd):
                # Whatever a stale file said is not true any more: until the
                # daemon writes its pid, readers see "starting", never an old pid.
                os.ftruncate(fd, 0)
                self._fd = fd
                return
            os.close(fd)  # pragma: no cover - needs a precise race

    def adopt(self, fd: int) -> None:
        """Hold the lock through *fd*, the open file description a previous generation handed over.

        The lock belongs to that description, so it is never released across
        an upgrade; the file keeps the previous pid until :meth:`write_pid`.
        """
        require_posix()
        try:
            if not _same_file(self.path, fd):
                raise DaemonError(f"pidfile {self.path!r}: the handed-over fd {fd} is not this file")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: succeeds at once
        except OSError as exc:
            raise path_error(exc, "cannot adopt the handed-over pidfile", self.path) from None
        fd = above_stdio(fd)
        os.set_inheritable(fd, False)
        self._fd = fd

    def _flock_or_raise(self, fd: int) -> None:
        """Lock *fd*, or raise AlreadyRunningError naming the holder's pid.

        A holder that is still starting has not written its pid yet: we give
        it a moment (at most ``_PID_WAIT`` s, returning as soon as the pid is
        there or the lock is free) so the error can name the daemon. This
        bounded wait happens only on the refusal path.
        """
        for time_left in _tries(_PID_WAIT):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pid = _read_fd(fd)
                # A dead pid in a locked file: a stopper is removing it (remove_if_stale) -- wait.
                if (pid is not None and is_alive(pid)) or not time_left:
                    raise AlreadyRunningError(self.path, pid) from None

    def write_pid(self, pid: int) -> None:
        """Write *pid* into the locked file (write, then truncate: never empty)."""
        fd = self.fileno()
        data = f"{pid}\n".encode()
        try:
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        except OSError as exc:
            raise path_error(exc, "cannot write the pid into the pidfile", self.path) from None
        self.pid = pid

    def release(self) -> None:
        """Remove the file if it is still ours (our pid, same file), then drop the lock.

        Safe to call in a forked child of the holder: only the process whose
        pid is in the file removes it. A daemon that dropped privileges (or
        entered a chroot) may not be allowed to remove it: then the file
        stays, unlocked, hence stale (a stopper removes it).
        """
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            if self.pid == os.getpid() and _same_file(self.path, fd) and _read_fd(fd) == self.pid:
                os.unlink(self.path)
        except OSError:  # not allowed any more, or removed behind our back
            pass
        finally:
            os.close(fd)

    def release_at_exit(self) -> None:
        """Right before ``os._exit``: remove the file if it is still ours, and keep the lock to the very end.

        The fd stays open: the kernel closes it, dropping the lock, inside
        ``exit()``, once the process is marked exiting. So a stopper that finds
        the lock free can tell the daemon that let go of it (``PF_EXITING``) and
        wait for it, instead of taking it for gone while it still exits.
        """
        fd = self._fd
        if fd is None:
            return
        try:
            if self.pid == os.getpid() and _same_file(self.path, fd) and _read_fd(fd) == self.pid:
                os.unlink(self.path)
        except OSError:  # not allowed any more, or removed behind our back
            pass

    def abandon(self) -> None:
        """Give up a lock taken for a start that failed before any pid was written.

        Removes the file if it is still the empty one we locked, so a start
        that fails on bad input leaves nothing behind.
        """
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            if self.pid is None and _same_file(self.path, fd) and os.fstat(fd).st_size == 0:
                os.unlink(self.path)
        finally:
            os.close(fd)

    def close_copy(self) -> None:
        """Close this process's copy of the fd, removing nothing (the launcher, after the fork)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _boot_time() -> float | None:
    """The boot time (``btime`` of ``/proc/stat``), seconds since the epoch, or None."""
    try:
        with open("/proc/stat", "rb") as proc_stat:
            for line in proc_stat:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


class Watcher:
    """A look at a pidfile from outside: is it locked, by which pid, wait until released.

    Open it with :meth:`open` (None when there is no file) and close it, or
    use it as a context manager.
    """

    __slots__ = ("_fd", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def open(cls, path: str) -> Watcher | None:
        """Watch *path*; None when no pidfile is there (or a symlink, which is never ours)."""
        require_posix()
        fd = _open(path, _READ_FLAGS, "cannot read pidfile")
        return None if fd is None else cls(path, fd)

    def close(self) -> None:
        """Close the watcher's fd."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def read_pid(self) -> int | None:
        """The pid written in the file, or None (empty, garbage)."""
        return _read_fd(self._fd)

    def locked(self) -> bool:
        """True if some process holds the lock."""
        return _locked_elsewhere(self._fd)

    def legacy_holder(self) -> int | None:
        """The pid of a python-daemon instance this unlocked file names, else None.

        That is a live process (not this one, pid > 1) that started before
        the file was written: python-daemon's ``PIDLockFile`` writes its pid
        once it runs and never locks. None when the file is locked
        (daemondeco's rules apply), names no live process, or names one
        started after the file was written (pid reuse: the file is stale).
        """
        try:
            mtime = os.fstat(self._fd).st_mtime
        except OSError:  # pragma: no cover - an open fd always has a status
            return None
        if self.locked():
            return None
        pid = _read_fd(self._fd)
        if pid is None or pid <= 1 or pid == os.getpid() or not is_alive(pid):
            return None
        ticks, boot = identity(pid), _boot_time()
        if ticks is None or boot is None:
            return pid  # no way to tell: a live process it names is the safe answer
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
        return pid if started <= mtime + _CLOCK_SLACK else None

    def holder_pid(self) -> int | None:
        """The pid in a locked file, waiting briefly for a starting daemon to write it."""
        pid = None
        for time_left in _tries(_PID_WAIT):
            pid = _read_fd(self._fd)
            if pid is not None or not time_left or not self.locked():
                break
        return pid

    def wait_released(self, timeout: float) -> bool:
        """Wait until nobody holds the lock; True if it was released within *timeout* s.

        Blocks in ``flock()`` in a helper thread (taking the lock for an
        instant, then letting it go), so the wait ends the moment the last
        holder -- a daemon, or a child it forked -- closes its copy.
        """
        if not self.locked():
            return True
        import threading

        done = threading.Event()
        spare = os.dup(self._fd)

        def block() -> None:
            try:
                fcntl.flock(spare, fcntl.LOCK_SH)
                fcntl.flock(spare, fcntl.LOCK_UN)
            finally:
                os.close(spare)
                done.set()

        threading.Thread(target=block, name="daemondeco-stop-wait", daemon=True).start()
        return done.wait(min(max(0.0, timeout), threading.TIMEOUT_MAX))

    def remove_if_stale(self, pid: int | None, companions: tuple[str, ...] = ()) -> bool:
        """Remove the file if nobody holds it and it names *pid* (or nothing); True if removed.

        *companions* (the daemon's state file) go first, under the same lock.

        For a stopper after the daemon is gone: the daemon could not remove
        its own file (killed, or no longer allowed to). The lock is taken
        while checking and unlinking, so a daemon starting meanwhile either
        already owns the file (then it is left alone) or finds it gone and
        creates a new one.
        """
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        try:
            content = os.pread(self._fd, 64, 0)
            if not _same_file(self.path, self._fd) or (content and _parse_pid(content) != pid):
                return False  # someone else's file now, or content we cannot judge
            for companion in companions:
                try:
                    os.unlink(companion)
                except FileNotFoundError:
                    pass
            os.unlink(self.path)
            return True
        except OSError:  # not allowed to remove it
            return False
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class Pidfile:
    """A pidfile locked with ``flock`` for as long as it is held.

    Usable on its own, without daemonizing::

        with Pidfile("/run/myjob.pid"):      # AlreadyRunningError if locked
            do_the_job()                     # our pid is in the file meanwhile

    Args:
        path: where the pidfile lives. Relative paths are made absolute now.

    .. versionadded:: 0.1

    """

    def __init__(self, path: PathLike) -> None:
        self.path: str = os.path.abspath(os.fsdecode(os.fspath(path)))
        self._holder = Holder(self.path)

    def __repr__(self) -> str:
        state = f"held, pid {self._holder.pid}" if self._holder.held else "not held"
        return f"Pidfile({self.path!r}, {state})"

    # -- holding the lock -------------------------------------------------

    def acquire(self) -> Pidfile:
        """Lock the pidfile and write this process's pid into it.

        Raises:
            AlreadyRunningError: another process holds the lock.
            DaemonError: the path is a symlink or not a regular file.
            OSError: the file cannot be created or opened (the message names it).

        """
        self._holder.lock()
        try:
            self._holder.write_pid(os.getpid())
        except BaseException:
            self._holder.abandon()
            raise
        return self

    def release(self) -> None:
        """Remove the pidfile if it is still ours, then drop the lock.

        Does nothing when the lock is not held. Safe to call in a forked child
        of the holder: only the process whose pid is in the file removes it.
        A daemon that dropped privileges (or entered a chroot) may not be
        allowed to remove it: then the file stays, unlocked, hence stale.
        """
        self._holder.release()

    @property
    def is_held(self) -> bool:
        """True while this object holds the lock."""
        return self._holder.held

    def __enter__(self) -> Pidfile:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # -- looking from outside ---------------------------------------------

    def read_pid(self) -> int | None:
        """The pid written in the file, or None (no file, symlink, garbage).

        Raises:
            DaemonError: something other than a regular file is at the path.

        """
        watcher = Watcher.open(self.path)
        if watcher is None:
            return None
        with watcher:
            return watcher.read_pid()

    def locked_by(self) -> int | None:
        """The pid of the process holding the lock, or None if nobody holds it.

        A file that is not locked is stale whatever it names. A locked file
        whose pid is not written yet (a daemon in the middle of starting)
        also gives None.
        """
        watcher = Watcher.open(self.path)
        if watcher is None:
            return None
        with watcher:  # our own lock, if we hold it, shows from this second open file too
            return watcher.read_pid() if watcher.locked() else None

    def is_locked(self) -> bool:
        """True if some process (maybe this one) holds the lock."""
        watcher = Watcher.open(self.path)
        if watcher is None:
            return False
        with watcher:
            return watcher.locked()
