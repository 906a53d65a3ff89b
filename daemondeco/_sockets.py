"""Listening sockets that survive: addresses, binding, socket activation, handover, the fd store.

A daemon's ``listen=`` names (``{"http": "tcp://127.0.0.1:8080"}``) are
resolved in the launcher, before any fork, each from the first source that
has it:

a. systemd socket activation: ``LISTEN_PID`` is our pid, the fds start at 3,
   matched by their ``LISTEN_FDNAMES`` name, else by ``getsockname()``;
b. a previous generation of this daemon handing its sockets over during an
   upgrade (``DAEMONDECO_HANDOVER``, read by ``_handover``, which owns that wire);
c. binding now: ``SO_REUSEADDR`` (never ``SO_REUSEPORT``: two live owners
   of a port would split its connections); a stale unix socket file is
   removed only when ``connect()`` to it is refused; its mode follows the
   daemon's umask.

``EADDRINUSE``/``EACCES`` are ``OSError`` s naming the name and the address,
raised before any fork. The ``LISTEN_*`` variables are removed from the
environment once read (``sd_listen_fds(unset_environment=1)``). In the
daemon the sockets are close-on-exec, kept through the fd closing, and
found by :func:`sockets` (activated fds that matched no name too, under
their ``LISTEN_FDNAMES`` name) and :func:`listen_fds` (the activated ones).
"""

from __future__ import annotations

import errno
import os
import socket

from ._systemd import forget_environ

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

__all__ = [
    "Resolved",
    "check_listen",
    "listen_fds",
    "resolve",
    "sockets",
    "store_fds",
]

LISTEN_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
SD_LISTEN_FDS_START = 3
_SCHEMES = ("tcp://", "unix://")

# This process's sockets: filled in the daemon (or by .run()) from what the launcher resolved.
_sockets: dict[str, socket.socket] = {}
_activated: dict[str, socket.socket] = {}


def sockets() -> dict[str, socket.socket]:
    """The daemon's listening sockets, ``{name: socket.socket}``: its ``listen=`` names.

    Each socket is open, listening, close-on-exec, its family and type read
    from the fd (``AF_INET``, ``AF_INET6``, ``AF_UNIX``), and the same object
    at every call. Sockets handed over by systemd socket activation that
    match no ``listen=`` name are there too, under their ``LISTEN_FDNAMES``
    name (``"unknown"`` when unnamed, then ``"unknown.1"``, ...). Works in a
    detached daemon and under ``.run()``; outside any daemon: ``{}``.

    .. versionadded:: 0.1
    """
    return dict(_sockets)


def listen_fds() -> dict[str, socket.socket]:
    """The sockets systemd socket activation handed this program, ``{name: socket.socket}``.

    For programs that do not use ``listen=``: every fd of ``LISTEN_FDS``
    (when ``LISTEN_PID`` named this process), keyed by its
    ``LISTEN_FDNAMES`` name as in :func:`sockets`. Read once, by the
    launcher (or by this call, outside a daemon), which then removes the
    ``LISTEN_*`` variables; ``{}`` when nothing was activated.

    .. versionadded:: 0.1
    """
    if not _activated and "LISTEN_FDS" in os.environ:
        for name, fd in _name_uniquely(_take_activation()):
            _activated[name] = _wrap(fd)
    return dict(_activated)


# -- addresses ------------------------------------------------------------------


def _shown(text: str, limit: int) -> str:
    """*text* for an error message: its repr, cut after *limit* characters (a 5,000-digit port)."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


class Address:
    """A parsed ``tcp://host:port``, ``tcp://[v6]:port`` or ``unix:///path`` address."""

    __slots__ = ("family", "host", "path", "port", "text")

    def __init__(self, text: str, family: int, host: str = "", port: int = 0, path: str = "") -> None:
        self.text = text
        self.family = family
        self.host = host
        self.port = port
        self.path = path

    @classmethod
    def parse(cls, caller: str, name: str, text: str) -> Address:
        """Parse *text*, or ``ValueError`` naming the ``listen=`` entry."""
        where = f"{caller}(): listen[{name!r}] = {_shown(text, 200)}"
        if "\0" in text:
            raise ValueError(f"{where}: an address cannot contain a NUL byte")
        if text.startswith("unix://"):
            path = text[len("unix://") :]
            if not path.startswith("/"):
                raise ValueError(f"{where}: a unix address is unix:///absolute/path")
            return cls(text, socket.AF_UNIX, path=path)
        if not text.startswith("tcp://"):
            raise ValueError(f"{where}: an address is tcp://host:port, tcp://[::1]:port or unix:///path")
        rest = text[len("tcp://") :].rstrip("/")
        if rest.startswith("["):
            host, sep, port_text = rest[1:].partition("]:")
            family = socket.AF_INET6
            if not sep or not host:
                raise ValueError(f"{where}: an IPv6 address is tcp://[::1]:port")
        else:
            host, sep, port_text = rest.rpartition(":")
            family = socket.AF_INET
            if not sep:
                raise ValueError(f"{where}: the port is missing (tcp://host:port)")
            if ":" in host:
                raise ValueError(f"{where}: write an IPv6 address in brackets: tcp://[{host}]:{port_text}")
        if not (len(port_text) <= 5 and port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
            raise ValueError(f"{where}: the port must be a number from 0 to 65535, not {_shown(port_text, 20)}")
        if host:
            try:
                host.encode("idna")  # what getaddrinfo() does with a str host, at bind time
            except UnicodeError as exc:
                raise ValueError(f"{where}: {host!r} is not a host name or address ({exc})") from None
        return cls(text, family, host=host or "0.0.0.0", port=int(port_text))

    def sockaddr(self) -> tuple[int, Any]:
        """(family, address) for ``bind()``; host names resolved now."""
        if self.family == socket.AF_UNIX:
            return self.family, self.path
        infos = socket.getaddrinfo(self.host, self.port, self.family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
        if not infos and self.family == socket.AF_INET:  # pragma: no cover - getaddrinfo raises instead
            raise OSError(errno.EADDRNOTAVAIL, f"cannot resolve {self.host!r}")
        family, _, _, _, sockaddr = infos[0]
        return int(family), sockaddr

    def matches(self, sock_name: object, family: int) -> bool:
        """True if a socket bound to *sock_name* (``getsockname()``) is this address."""
        if family != self.family:
            return False
        if family == socket.AF_UNIX:
            name = sock_name.decode() if isinstance(sock_name, bytes) else sock_name
            return bool(name == self.path)
        try:
            _, wanted = self.sockaddr()
        except OSError:
            return False
        return isinstance(wanted, tuple) and isinstance(sock_name, tuple) and wanted[:2] == sock_name[:2]


def check_listen(caller: str, value: object) -> tuple[tuple[str, object], ...]:
    """The ``listen=`` option validated: ``((name, Address | socket), ...)``; errors name the entry."""
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise TypeError(
            f"{caller}(): listen must be a dict {{name: address or bound socket}}, not {type(value).__name__}"
        )
    items: list[tuple[str, object]] = []
    for name, target in value.items():
        if not isinstance(name, str) or not name or not name.isprintable() or ":" in name or ";" in name or "," in name:
            raise ValueError(f"{caller}(): listen: {name!r} is not a name (printable text without ':;,')")
        if isinstance(target, str):
            items.append((name, Address.parse(caller, name, target)))
        elif isinstance(target, socket.socket):
            items.append((name, target))
        else:
            raise TypeError(
                f"{caller}(): listen[{name!r}] must be an address string (tcp://host:port, unix:///path) "
                f"or a bound socket.socket, not {type(target).__name__}"
            )
    return tuple(items)


# -- the sources -----------------------------------------------------------------------


def _take_activation() -> list[tuple[str, int]]:
    """(name, fd) of each fd systemd handed us; the ``LISTEN_*`` variables are removed."""
    found = {name: os.environ.pop(name) for name in LISTEN_VARIABLES if name in os.environ}
    forget_environ(found)  # gone from /proc/<pid>/environ too
    pid, count = found.get("LISTEN_PID", ""), found.get("LISTEN_FDS", "")
    if not (pid.isdigit() and int(pid) == os.getpid() and count.isdigit()):
        return []  # not meant for us (an ancestor's, inherited): ignored, as sd_listen_fds() does
    names = found.get("LISTEN_FDNAMES", "").split(":") if found.get("LISTEN_FDNAMES") else []
    taken = []
    for index in range(int(count)):
        fd = SD_LISTEN_FDS_START + index
        try:
            os.fstat(fd)
        except OSError:
            continue
        os.set_inheritable(fd, False)
        taken.append((names[index] if index < len(names) and names[index] else "unknown", fd))
    return taken


def _name_uniquely(pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    seen: dict[str, int] = {}
    named = []
    for name, fd in pairs:
        count = seen.get(name, 0)
        seen[name] = count + 1
        named.append((name if count == 0 else f"{name}.{count}", fd))
    return named


# -- resolving -------------------------------------------------------------------------


class Resolved:
    """The sockets a start resolved: ``{name: fd}``, and which of them the launcher opened itself."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.activated: dict[str, int] = {}
        self.bound: list[socket.socket] = []  # ours to close in a launcher that keeps running
        self.given: dict[int, socket.socket] = {}  # fd -> the caller's own socket object (listen={name: sock})
        self._wrapped: list[socket.socket] = []

    def keep(self) -> set[int]:
        """Every fd to keep through the daemon's fd closing."""
        return {*self.fds.values(), *self.activated.values()}

    def close_launcher_copies(self) -> None:
        """In a launcher that keeps running (``process_daemonize``): close the sockets it bound."""
        for sock in self.bound:
            sock.close()
        self.bound = []

    def install(self) -> None:
        """In the daemon (or under ``.run()``): make them what :func:`sockets` returns."""
        _sockets.clear()
        wrapped: dict[int, socket.socket] = dict(self.given)
        for sock in self.bound:  # one socket object per fd: the registry's
            sock.detach()
        self.bound = []
        claimed = set(self.fds.values())
        unmatched = {name: fd for name, fd in self.activated.items() if fd not in claimed}
        for name, fd in {**unmatched, **self.fds, **self.activated}.items():
            os.set_inheritable(fd, False)
            if fd not in wrapped:
                wrapped[fd] = _wrap(fd)
                self._wrapped.append(wrapped[fd])
            if name in self.fds or name in unmatched:
                _sockets[name] = wrapped[fd]
        _activated.clear()
        _activated.update({name: wrapped[fd] for name, fd in self.activated.items()})

    def uninstall(self) -> None:
        """After ``.run()``: close the sockets it opened; :func:`sockets` is empty again."""
        _sockets.clear()
        _activated.clear()
        for sock in self._wrapped:
            sock.close()
        self._wrapped = []


def _wrap(fd: int) -> socket.socket:
    """A socket object on *fd*: family, type and protocol read from the fd itself."""
    return socket.socket(fileno=fd)


def resolve(
    caller: str, listen: tuple[tuple[str, object], ...], umask: int, handed_over: Mapping[str, int] | None
) -> Resolved:
    """Satisfy each ``listen=`` name: activation, then the handover, then binding now.

    Always reads (and removes) the ``LISTEN_*`` variables. Binding errors
    are ``OSError`` s naming the entry and its address; sockets bound before
    the error are closed.
    """
    resolved = Resolved()
    activated = _name_uniquely(_take_activation())
    unclaimed = dict(activated)
    try:
        for name, target in listen:
            fd = _from_activation(name, target, unclaimed)
            if fd is None and handed_over is not None:
                fd = handed_over.get(name)
            if fd is None:
                if isinstance(target, socket.socket):
                    fd = _given_socket(caller, name, target)
                    resolved.given[fd] = target
                else:
                    assert isinstance(target, Address)
                    sock = _bind(caller, name, target, umask)
                    resolved.bound.append(sock)
                    fd = sock.fileno()
            resolved.fds[name] = fd
    except BaseException:
        resolved.close_launcher_copies()
        raise
    resolved.activated = dict(activated)
    return resolved


def _from_activation(name: str, target: object, unclaimed: dict[str, int]) -> int | None:
    if name in unclaimed:
        return unclaimed.pop(name)
    if not isinstance(target, Address):
        return None
    for other, fd in list(unclaimed.items()):
        try:
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with probe:
            try:
                bound = probe.getsockname()
            except OSError:
                continue
            if target.matches(bound, probe.family):
                del unclaimed[other]
                return fd
    return None


def _given_socket(caller: str, name: str, sock: socket.socket) -> int:
    fd = sock.fileno()
    if fd < 0:
        raise OSError(errno.EBADF, f"{caller}(): listen[{name!r}]: the socket is closed")
    return fd


def _bind(caller: str, name: str, address: Address, umask: int) -> socket.socket:
    """A socket bound and listening on *address*; ``OSError`` naming it when that fails."""
    try:
        family, sockaddr = address.sockaddr()
    except OSError as exc:
        raise OSError(exc.errno, f"{caller}(): listen[{name!r}]: cannot resolve {address.text}: {exc}") from None
    sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        if family == socket.AF_UNIX:
            _remove_stale_unix(address.path)
            previous = os.umask(umask)
            try:
                sock.bind(sockaddr)
            finally:
                os.umask(previous)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(sockaddr)
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise OSError(exc.errno, f"{caller}(): listen[{name!r}]: cannot listen on {address.text}: {reason}") from None
    return sock


def _remove_stale_unix(path: str) -> None:
    """Remove a socket file nobody listens on (``connect()`` refused); leave anything else for bind to refuse."""
    import stat

    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return
    except OSError:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)
        except OSError:
            return


# -- the systemd fd store --------------------------------------------------------------


def store_fds(send_fds: Callable[[Sequence[str], Sequence[int]], bool], store: int) -> None:
    """Send each ``listen=`` socket once to systemd's fd store (``FDSTORE=1``, ``FDNAME=``).

    *send_fds* is the notifier's ``send_with_fds(fields, fds)``; *store* the
    ``FDSTORE`` the manager announced (its ``FileDescriptorStoreMax=``).
    """
    if store <= 0:
        return
    for name, sock in list(_sockets.items())[:store]:
        send_fds(("FDSTORE=1", f"FDNAME={name}"), [sock.fileno()])
