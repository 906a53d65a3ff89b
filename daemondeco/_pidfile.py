"""The locked pidfile.

A pidfile is only as good as its lock. The rules, all enforced here:

* The file is opened with ``O_NOFOLLOW`` (a planted symlink is refused and its
  target left untouched), ``O_CLOEXEC`` and mode ``0o644``; no
  ``exists()``-then-``open()`` race.
* It is locked with ``flock(LOCK_EX | LOCK_NB)``. Unlike ``fcntl.lockf`` the
  lock belongs to the open file description: it survives ``fork()`` and is not
  dropped when the process closes some *other* fd on the same file.
* The lock is held for the daemon's whole life. A file that can be locked is
  stale, whatever it contains (a dead pid, a zombie, a reused pid, garbage),
  and is simply taken over. A kill -9 never blocks the next start.
* The pid is written only into the locked file, write-then-truncate, so a
  reader never sees it empty.
* On release the file is removed only if the path still names the file we
  locked and it still holds our pid.
"""

from __future__ import annotations

import errno
import os
import stat
import time

from ._errors import AlreadyRunningError, DaemonError, path_error

try:
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterator
    from types import TracebackType

    from ._types import PathLike

__all__ = ["Pidfile"]

# How long a refused start (or a stop) waits for a daemon that holds the lock
# but is still starting to write its pid: fork + setsid + fork, milliseconds.
_PID_WAIT = 1.0

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


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
        self._fd: int | None = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        state = f"held, pid {self._pid}" if self._fd is not None else "not held"
        return f"Pidfile({self.path!r}, {state})"

    # -- holding the lock -------------------------------------------------

    def acquire(self) -> Pidfile:
        """Lock the pidfile and write this process's pid into it.

        Raises:
            AlreadyRunningError: another process holds the lock.
            DaemonError: the path is a symlink or not a regular file.
            OSError: the file cannot be created or opened (the message names it).

        """
        self._lock()
        self._write(os.getpid())
        return self

    def release(self) -> None:
        """Remove the pidfile if it is still ours, then drop the lock.

        Does nothing when the lock is not held. Safe to call in a forked child
        of the holder: only the process whose pid is in the file removes it.
        A daemon that dropped privileges (or entered a chroot) may not be
        allowed to remove it: then the file stays, unlocked, hence stale.
        """
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            if self._pid == os.getpid() and _same_file(self.path, fd) and _read_fd(fd) == self._pid:
                os.unlink(self.path)
        except OSError:  # not allowed any more, or removed behind our back
            pass
        finally:
            os.close(fd)

    @property
    def is_held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

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
        """The pid written in the file, or None (no file, symlink, garbage)."""
        fd = self._open_for_reading()
        if fd is None:
            return None
        try:
            return _read_fd(fd)
        finally:
            os.close(fd)

    def locked_by(self) -> int | None:
        """The pid of the process holding the lock, or None if nobody holds it.

        A file that is not locked is stale whatever it names. A locked file
        whose pid is not written yet (a daemon in the middle of starting)
        also gives None.
        """
        fd = self._open_for_reading()
        if fd is None:
            return None
        try:
            return _read_fd(fd) if self._locked(fd) else None
        finally:
            os.close(fd)

    def is_locked(self) -> bool:
        """True if some process (maybe this one) holds the lock."""
        fd = self._open_for_reading()
        if fd is None:
            return False
        try:
            return self._locked(fd)
        finally:
            os.close(fd)

    # -- for the engine -----------------------------------------------------

    def _locked(self, fd: int) -> bool:
        if self._fd is not None and _same_file(self.path, self._fd):
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False

    def _open_for_reading(self) -> int | None:
        try:
            return os.open(self.path, _READ_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise path_error(exc, "cannot read pidfile", self.path) from None

    def _lock(self) -> None:
        """Take the lock without writing a pid (the daemon writes its own)."""
        if self._fd is not None:
            raise DaemonError(f"pidfile {self.path!r} is already held by this object")
        while True:
            try:
                fd = os.open(self.path, _LOCK_FLAGS, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP and os.path.islink(self.path):
                    raise DaemonError(
                        f"pidfile {self.path!r} is a symbolic link; refusing to follow it "
                        "(its target would be overwritten). Remove the link or name the real file."
                    ) from None
                raise path_error(exc, "cannot open pidfile", self.path) from None
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    raise DaemonError(f"pidfile {self.path!r} is not a regular file")
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
                if pid is not None or not time_left:
                    raise AlreadyRunningError(self.path, pid) from None

    def _holder_pid(self, fd: int) -> int | None:
        """The pid in a locked file, waiting briefly for a starting daemon to write it."""
        pid = None
        for time_left in _tries(_PID_WAIT):
            pid = _read_fd(fd)
            if pid is not None or not time_left or not self._locked(fd):
                break
        return pid

    def _write(self, pid: int) -> None:
        """Write *pid* into the locked file (write, then truncate: never empty)."""
        assert self._fd is not None, "pidfile must be locked before writing"
        data = f"{pid}\n".encode()
        os.pwrite(self._fd, data, 0)
        os.ftruncate(self._fd, len(data))
        self._pid = pid

    def _abandon(self) -> None:
        """Give up a lock taken for a start that failed before any pid was written.

        Removes the file if it is still the empty one we locked, so a start
        that fails on bad input leaves nothing behind.
        """
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        try:
            if self._pid is None and _same_file(self.path, fd) and os.fstat(fd).st_size == 0:
                os.unlink(self.path)
        finally:
            os.close(fd)

    def _forget(self) -> None:
        """Close our copy of the fd without removing anything (after a fork)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
