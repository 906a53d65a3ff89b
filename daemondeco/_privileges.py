"""Who the daemon runs as, and where: user, group, chroot, core dumps.

Everything that can fail is resolved in the launcher before the fork: an
unknown user or group, a launcher that is not allowed to switch, a chroot
that is not a directory. In the daemon, after the pidfile and the log
targets were opened with the launcher's rights, the order is: no core
dumps, ``chroot`` + ``chdir``, then ``setgroups``/``initgroups``,
``setgid``, ``setuid`` -- and a check that regaining root now fails.

The pidfile stays locked after the switch (the lock lives on the open file),
but the daemon may no longer be allowed to remove the file at exit: then an
unlocked, stale file stays behind, which the next start simply takes over.
"""

from __future__ import annotations

import errno
import os

from ._errors import DaemonError

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from ._options import Options

__all__ = ["Identity", "check_chroot", "enter", "resolve"]


class Identity:
    """A resolved user and/or group to switch to."""

    __slots__ = ("gid", "name", "uid")

    def __init__(self, uid: int | None, gid: int | None, name: str | None) -> None:
        self.uid = uid
        self.gid = gid
        self.name = name

    def __repr__(self) -> str:
        return f"Identity(uid={self.uid}, gid={self.gid}, name={self.name!r})"


def resolve(options: Options) -> Identity | None:
    """Resolve ``user``/``group`` now, in the launcher; raise naming what is wrong."""
    if options.user is None and options.group is None:
        return None
    uid, gid, name = _resolve_user(options.user, options.group is not None)
    if options.group is not None:
        gid = _resolve_group(options.group)
    euid = os.geteuid()
    if euid != 0:
        if uid is not None and uid != euid:
            raise DaemonError(f"switching to user {options.user!r} needs root; the launcher runs as uid {euid}")
        if gid is not None and gid != os.getegid():
            what = f"group {options.group!r}" if options.group is not None else f"user {options.user!r}'s group {gid}"
            raise DaemonError(f"switching to {what} needs root; the launcher runs as uid {euid}")
    return Identity(uid, gid, name)


def _resolve_user(user: str | int | None, have_group: bool) -> tuple[int | None, int | None, str | None]:
    """(uid, primary gid, name) of *user*; a bare uid without passwd entry needs a group."""
    if user is None:
        return None, None, None
    import pwd

    try:
        entry = pwd.getpwnam(user) if isinstance(user, str) else pwd.getpwuid(user)
    except KeyError:
        if isinstance(user, str):
            raise DaemonError(f"user {user!r} does not exist") from None
        if not have_group:
            raise DaemonError(f"user id {user} has no passwd entry: give group= too") from None
        return user, None, None
    return entry.pw_uid, entry.pw_gid, entry.pw_name


def _resolve_group(group: str | int) -> int:
    if isinstance(group, int):
        return group
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise DaemonError(f"group {group!r} does not exist") from None


def check_chroot(options: Options) -> str | None:
    """The absolute chroot directory, checked now; None without one."""
    if options.chroot is None:
        return None
    path = os.path.abspath(options.chroot)
    if not os.path.isdir(path):
        code = errno.ENOTDIR if os.path.exists(path) else errno.ENOENT
        raise OSError(code, f"chroot: {os.strerror(code)}", path)
    if os.geteuid() != 0:
        raise DaemonError(f"chroot {path!r} needs root; the launcher runs as uid {os.geteuid()}")
    return path


def enter(options: Options, identity: Identity | None, root: str | None, workdir: str | None) -> None:
    """In the daemon: no core dumps, chroot + chdir, then drop privileges for good."""
    if options.prevent_core:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if root is not None:
        os.chroot(root)
        os.chdir("/")
    if workdir is not None:
        os.chdir(workdir)
    if identity is None:
        return
    if identity.gid is not None:
        if os.geteuid() == 0:  # a non-root launcher may only "switch" to itself
            if identity.uid is not None and identity.name is not None:
                os.initgroups(identity.name, identity.gid)
            else:
                os.setgroups([identity.gid])
        os.setgid(identity.gid)
    if identity.uid is not None:
        os.setuid(identity.uid)
        if identity.uid != 0:
            _check_dropped()


def _check_dropped() -> None:
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise DaemonError("privileges were not dropped: setuid(0) still succeeds after switching user")
