"""The daemon's standard streams: fds 0/1/2 and ``sys.stdin``/``stdout``/``stderr``.

In the launcher the stdio targets are opened (so a bad path fails before the
fork, naming it) and checked for room; in the daemon they replace fds 0-2,
the Python streams are pointed back at those fds if a test runner had swapped
them, and on SIGHUP the configured files are reopened at their paths.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import sys

from ._errors import path_error

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._options import Options

__all__ = [
    "IN_FLAGS",
    "LOG_FLAGS",
    "above_stdio",
    "check_room",
    "displaced_stdio",
    "flush_stdio",
    "line_buffered",
    "open_target",
    "rebind_std_streams",
    "remove_created",
    "reopen_stdio",
    "stdio_paths",
    "swapped_std_streams",
]

LOG_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
IN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_STD_NAMES = ("stdin", "stdout", "stderr")


def above_stdio(fd: int, *, keep_original: bool = False) -> int:
    """Move *fd* to 3 or above so that redirecting 0/1/2 cannot replace it.

    With *keep_original*, copy it instead: the fd 0-2 given stays open (a
    ``ready_fd`` that is the caller's stdout, say).
    """
    if fd > 2:
        return fd
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
    if not keep_original:
        os.close(fd)
    return moved


def displaced_stdio(fd: int) -> str | None:
    """Why keeping *fd* cannot work, when it is 0-2 but not this process's standard stream; else None.

    A program started with a standard stream closed (``prog <&-``) has
    ``sys.__stdin__`` None, and the first file it opens takes fd 0. The
    detach points fds 0-2 at the daemon's stdio targets, so such a file,
    kept or not, would be replaced under its owner (a log handler writing
    into the daemon's stdin). The text says so and how to start instead.
    """
    if not 0 <= fd <= 2:
        return None
    name = _STD_NAMES[fd]
    stream = getattr(sys, f"__{name}__", None)
    try:
        if stream is not None and stream.fileno() == fd:
            return None  # the standard stream itself: redirecting it is what a daemon does
    except (OSError, ValueError, AttributeError):
        pass
    redirect = ("<", ">", "2>")[fd]
    return (
        f"is fd {fd}, which the daemon points at its {name}: this process started with fd {fd} closed "
        f"({redirect}&-), so a file opened later took its number and the detach would replace it. "
        f"Start the program with {name} open (for example {redirect}/dev/null)"
    )


def open_target(path: str, flags: int, what: str, created: list[tuple[str, int]] | None = None) -> int:
    """Open a stdio target (fd >= 3); with *created*, record a log file this call created."""
    try:
        if created is None or not flags & os.O_CREAT:
            return above_stdio(os.open(path, flags, 0o644))
        while True:
            try:
                return above_stdio(os.open(path, flags & ~os.O_CREAT))
            except FileNotFoundError:
                pass
            try:
                fd = above_stdio(os.open(path, flags | os.O_EXCL, 0o644))
            except FileExistsError:  # pragma: no cover - created between our two calls
                continue
            created.append((path, fd))
            return fd
    except OSError as exc:
        raise path_error(exc, f"cannot open {what}", path) from None


def check_room(fd: int, what: str, path: str) -> None:
    """Raise ENOSPC naming *path* when the regular file *fd* is on a full filesystem.

    A daemon whose log is on a full disk dies at its first line; with
    ``ready="start"`` that would come after the launcher said "started".
    Only regular files on filesystems that count blocks are judged; root
    may still use the reserved blocks, as the kernel lets it.
    """
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return
    try:
        fs = os.fstatvfs(fd)
    except OSError:  # pragma: no cover - a filesystem without statvfs
        return
    free = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail
    if fs.f_blocks > 0 and free == 0:
        raise OSError(errno.ENOSPC, f"{what}: no space left on the filesystem", path)


def remove_created(created: list[tuple[str, int]]) -> None:
    """Undo the log files a failed prepare() created (if still empty and ours)."""
    for path, fd in created:
        try:
            held, there = os.fstat(fd), os.stat(path)
        except OSError:
            continue
        if (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino) and held.st_size == 0:
            os.unlink(path)


def stdio_paths(options: Options) -> tuple[str | None, str | None]:
    """The explicitly configured stdout/stderr files (absolute), for reopening on SIGHUP."""
    out = os.path.abspath(options.stdout) if options.stdout is not None else None
    err = os.path.abspath(options.stderr) if options.stderr is not None else None
    return out, err


def swapped_std_streams() -> tuple[str, ...]:
    """The names of sys.stdin/stdout/stderr that use other fds than 0/1/2.

    Streams not backed by an fd (a StringIO, a logging proxy) do not count.
    """
    swapped = []
    for fd, name in enumerate(_STD_NAMES):
        try:
            if getattr(sys, name).fileno() != fd:
                swapped.append(name)
        except (AttributeError, OSError, ValueError):
            continue
    return tuple(swapped)


def rebind_std_streams(names: tuple[str, ...]) -> None:
    """Make the named std streams use fds 0/1/2 again.

    A test runner capturing output (pytest) or a program may have pointed them
    at other fds, which the daemon has just closed: writes would fail, or
    land in whatever file reuses the number. faulthandler, which kept the fd
    of the old stderr, is pointed at the new one.
    """
    for name in names:
        stream = getattr(sys, name)
        fd = _STD_NAMES.index(name)
        encoding = getattr(stream, "encoding", None) or "utf-8"
        errors = "strict" if fd == 0 else "backslashreplace"
        setattr(sys, name, open(fd, "r" if fd == 0 else "w", encoding=encoding, errors=errors, closefd=False))  # noqa: SIM115
    faulthandler = sys.modules.get("faulthandler")
    if faulthandler is not None and faulthandler.is_enabled():
        faulthandler.enable(file=sys.stderr)


def line_buffered() -> None:
    """Make printed lines reach the log files as they are printed."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)


def flush_stdio() -> None:
    """Flush sys.stdout and sys.stderr, ignoring streams that are closed or broken."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def reopen_stdio(stdout: str | None, stderr: str | None) -> None:
    """Point fds 1 and 2 at freshly opened files at their configured paths.

    Every file is opened before any fd is redirected: a path that cannot be
    opened raises OSError naming it, and fds 1 and 2 stay as they were.
    Buffered lines are flushed to the old files first, so none is lost.
    """
    targets = ((1, stdout, "stdout target"), (2, stderr if stderr is not None else stdout, "stderr target"))
    opened: dict[str, int] = {}
    try:
        for _, path, what in targets:
            if path is not None and path not in opened:
                try:
                    opened[path] = os.open(path, LOG_FLAGS, 0o644)
                except OSError as exc:
                    raise path_error(exc, f"cannot open {what}", path) from None
        flush_stdio()
        for target, path, _ in targets:
            if path is not None:
                os.dup2(opened[path], target)
    finally:
        for fd in opened.values():
            os.close(fd)
