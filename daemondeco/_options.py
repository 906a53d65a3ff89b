"""One frozen, validated options object shared by every daemonizing form.

``Options.build()`` checks types and values when a decorator is applied (or
``daemonize()`` is called), so a typo fails at import time with the fix in
the message. Checks that depend on the machine (paths, fds) happen later, in
the launcher, right before the fork: see ``_engine.prepare``.
"""

from __future__ import annotations

import os

_INF = float("inf")  # NaN fails every comparison, so -inf < x < inf also rejects it

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover - typing only
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any, TypeGuard

    from ._types import FdLike

__all__ = ["MAX_FD", "STOP_TIMEOUT", "Options", "reload_timeout", "resolve_fds", "seconds", "stop_timeout"]

STOP_TIMEOUT = 10.0  # seconds from SIGTERM to SIGKILL, unless stop_timeout says otherwise

READY_MODES = ("auto", "start", "notify")

_BY_CALLER: object = object()  # in _DEFAULTS: a default that depends on who validates (never a valid value)

# ready="auto" (the default of @daemon and daemonize()): ready at notify_ready(), or once the
# function has run this long without exiting (supervisord's startsecs=1, daemonocle's 1 s).
AUTO_GRACE = 1.0

# Who starts a service (the launcher exits, a manager watches): "auto" by default. Workers
# (process_daemonize) and the other callers keep "start", an immediate start.
_AUTO_CALLERS = ("daemon", "daemonize")

MAX_ID = 2**32 - 2  # the largest uid/gid setuid()/setgid() accept: uid_t is 32-bit and (uid_t)-1 is reserved

MAX_FD = 2**31 - 1  # fds are C ints: no fd can be larger

_DEFAULTS: dict[str, object] = {
    "pidfile": None,
    "stdin": os.devnull,
    "stdout": None,
    "stderr": None,
    "workdir": "/",
    "umask": 0o022,
    "keep_fds": (),
    "ready": _BY_CALLER,  # "auto" for _AUTO_CALLERS, else "start"
    "startup_grace": _BY_CALLER,  # AUTO_GRACE with ready="auto", else 0.0
    "ready_timeout": 30.0,
    "stop_timeout": STOP_TIMEOUT,
    "detach": None,
    "user": None,
    "group": None,
    "chroot": None,
    "prevent_core": False,
    "on_reload": None,
    "signals": None,
    "ready_fd": None,
    "restart": None,
    "restart_delay": 1.0,
    "restart_backoff": 2.0,
    "restart_max_delay": 60.0,
    "restart_reset_after": 60.0,
    "start_limit": (5, 60.0),
    "restart_prevent_exit_codes": (),
    "instances": None,
    "listen": None,
    "on_drain": None,
    "drain_timeout": None,
}

RESTART_MODES = ("on-failure", "on-abnormal", "always")

# Options that only make sense where a function runs again: not daemonize().
_FUNCTION_ONLY = ("restart", "instances")

# python-daemon's DaemonContext names, and daemondeco's for the same thing (docs/migrate.md).
_PYTHON_DAEMON_NAMES = {
    "working_directory": "workdir",
    "files_preserve": "keep_fds",
    "detach_process": "detach",
    "uid": "user",
    "gid": "group",
    "chroot_directory": "chroot",
    "signal_map": "signals",
}


def _unknown_option(caller: str, name: str) -> TypeError:
    """The error for an unknown option *name*: python-daemon's name mapped, a close match, or the valid ones."""
    valid = [option for option in _DEFAULTS if not _refused_by(caller, option)]
    if name in _PYTHON_DAEMON_NAMES:
        hint = f" (python-daemon's name); daemondeco's is {_PYTHON_DAEMON_NAMES[name]!r}"
    elif name == "initgroups":
        hint = " (python-daemon's name); daemondeco sets the supplementary groups of user= (a name) itself"
    else:
        import difflib

        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid options: {', '.join(sorted(valid))}"
    return TypeError(f"{caller}() got an unexpected option {name!r}{hint}")


def _refused_by(caller: str, option: str) -> bool:
    """True for the options *caller* refuses although they are options: not worth suggesting to it."""
    return (caller == "daemon" and option == "instances") or (caller == "daemonize" and option in _FUNCTION_ONLY)


def _readiness(caller: str, values: Mapping[str, object]) -> tuple[str, float, float]:
    """``ready``, ``startup_grace`` and ``ready_timeout``, their defaults depending on *caller*."""
    ready = values["ready"]
    if ready is _BY_CALLER:
        ready = "auto" if caller in _AUTO_CALLERS else "start"
    if not isinstance(ready, str) or ready not in READY_MODES:
        raise ValueError(f"{caller}(): ready must be 'auto', 'start' or 'notify', not {_show(ready)}")
    grace = values["startup_grace"]
    if grace is _BY_CALLER:
        grace = AUTO_GRACE if ready == "auto" else 0.0
    grace = seconds(caller, "startup_grace", grace, positive=False)
    timeout = seconds(caller, "ready_timeout", values["ready_timeout"], positive=True)
    if ready == "auto" and grace >= timeout:
        raise ValueError(
            f"{caller}(): with ready='auto' the daemon is ready after startup_grace={grace:g} s, "
            f"which must be shorter than ready_timeout={timeout:g} s"
        )
    return ready, grace, timeout


def _path(caller: str, name: str, value: object, *, optional: bool) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, (str, os.PathLike)):
        try:
            raw = os.fspath(value)  # a TypeError when __fspath__ returns neither str nor bytes
        except Exception as exc:
            raise TypeError(
                f"{caller}(): {name}: os.fspath({_show(value)}) failed: {_describe_exception(exc)}"
            ) from exc
        text = os.fsdecode(raw)
        if not text:
            raise ValueError(f"{caller}(): {name} must not be an empty path")
        if "\0" in text:
            raise ValueError(f"{caller}(): {name} contains a NUL byte: {_show(text)}")
        _check_encodable(caller, name, text)
        return text
    expected = "a path (str or os.PathLike) or None" if optional else "a path (str or os.PathLike)"
    hint = ""
    if name == "pidfile" and hasattr(value, "acquire"):  # a lockfile/python-daemon PIDLockFile object
        where = getattr(value, "path", None)
        shown = f"pidfile={where!r}" if isinstance(where, str) else "pidfile='/run/app.pid'"
        hint = f"; daemondeco locks the pidfile itself (flock): pass its path, {shown}"
    elif name in ("stdin", "stdout", "stderr") and isinstance(file_name := getattr(value, "name", None), str):
        hint = f"; daemondeco opens the file itself: pass its path, {name}={file_name!r}"  # python-daemon style
    raise TypeError(f"{caller}(): {name} must be {expected}, not {type(value).__name__} {_show(value)}{hint}")


def _show(value: object, limit: int = 200) -> str:
    """``repr(value)`` for a message: never raises, never floods (an int of 10**5000 has no repr)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        sign = "a negative" if value < 0 else "an"
        return f"{sign} int of {value.bit_length()} bits"
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def seconds(caller: str, name: str, value: object, *, positive: bool) -> float:
    """*value* as a finite number of seconds (> 0 with *positive*, else >= 0), or an error naming *name*."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{caller}(): {name} must be a number of seconds, not {type(value).__name__} {_show(value)}")
    bound = "> 0" if positive else ">= 0"
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float, such as 10**400
        number = _INF
    if not -_INF < number < _INF or number < 0 or (positive and number == 0):
        raise ValueError(f"{caller}(): {name} must be a finite number of seconds {bound}, not {_show(value)}")
    return number


def _keep_fds(caller: str, value: object) -> tuple[FdLike, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{caller}(): keep_fds must be an iterable of file descriptors "
            f"(ints or objects with fileno()), not {type(value).__name__} {_show(value)}"
        )
    try:
        items = tuple(value)
    except Exception as exc:
        raise TypeError(f"{caller}(): keep_fds could not be iterated: {_describe_exception(exc)}") from exc
    for item in items:
        if not (_is_fd_number(item) or _has_fileno(item)):
            raise TypeError(
                f"{caller}(): keep_fds items must be ints or objects with fileno(), "
                f"not {type(item).__name__} {_show(item)}"
            )
        if _is_fd_number(item):
            _check_fd_range(caller, item, item)
    return items


def _is_fd_number(item: object) -> TypeGuard[int]:
    return isinstance(item, int) and not isinstance(item, bool)


def _has_fileno(item: object) -> bool:
    try:
        return callable(getattr(item, "fileno", None))
    except Exception:  # a property that raises: not an fd we could use
        return False


def _check_fd_range(caller: str, item: object, fd: int) -> None:
    if 0 <= fd <= MAX_FD:
        return
    got = "" if item is fd else f"fileno() returned {_show(fd)}, "
    what = "a negative file descriptor" if fd < 0 else f"above any possible file descriptor ({MAX_FD})"
    raise ValueError(f"{caller}(): keep_fds item {_show(item)}: {got}{what}")


def _describe_exception(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def resolve_fds(caller: str, items: Iterable[FdLike]) -> list[int]:
    """The fd numbers of *items* (ints or objects with ``fileno()``), resolved now, in the launcher.

    An object's ``fileno()`` is asked only when the daemon starts: one that
    raises (a closed file), returns a non-int or a number no fd can have is
    a ``TypeError``/``ValueError`` ``"<caller>(): keep_fds item <item>: ..."``.
    Whether the fd is open is the caller's check.
    """
    fds = []
    for item in items:
        if _is_fd_number(item):
            fd = item
        elif _has_fileno(item):
            try:
                fd = item.fileno()  # type: ignore[union-attr]
            except Exception as exc:
                raise ValueError(
                    f"{caller}(): keep_fds item {_show(item)}: fileno() raised {_describe_exception(exc)}"
                ) from exc
            if not _is_fd_number(fd):
                raise TypeError(
                    f"{caller}(): keep_fds item {_show(item)}: fileno() returned "
                    f"{type(fd).__name__} {_show(fd)}, not an int"
                )
        else:
            raise TypeError(
                f"{caller}(): keep_fds item {_show(item)}: not an int or an object with fileno(), "
                f"but {type(item).__name__}"
            )
        _check_fd_range(caller, item, fd)
        fds.append(int(fd))
    return fds


class Options:
    """The validated keyword options of ``@daemon``, ``@process_daemonize`` and ``daemonize()``."""

    __slots__ = (*_DEFAULTS, "caller")

    caller: str  # who validated these options: messages of checks made later name it

    pidfile: str | None
    stdin: str
    stdout: str | None
    stderr: str | None
    workdir: str
    umask: int
    keep_fds: tuple[FdLike, ...]
    ready: str
    startup_grace: float
    ready_timeout: float
    stop_timeout: float
    detach: bool | None
    user: str | int | None
    group: str | int | None
    chroot: str | None
    prevent_core: bool
    on_reload: Callable[[], object] | None
    signals: tuple[tuple[int, Callable[[int, Any], object]], ...]
    ready_fd: int | None
    restart: str | None
    restart_delay: float
    restart_backoff: float
    restart_max_delay: float
    restart_reset_after: float
    start_limit: tuple[int, float] | None
    restart_prevent_exit_codes: tuple[int, ...]
    instances: int | None
    listen: tuple[tuple[str, object], ...]  # (name, _sockets.Address or a bound socket.socket)
    on_drain: Callable[[], object] | None
    drain_timeout: float  # stop_timeout when not given

    @classmethod
    def build(cls, caller: str, given: Mapping[str, object]) -> Options:
        """Validate *given* keyword options for *caller* (used in messages)."""
        unknown = [name for name in given if name not in _DEFAULTS]
        if unknown:
            raise _unknown_option(caller, unknown[0])
        values = {**_DEFAULTS, **given}
        self = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(self, "caller", caller)
        setattr_(self, "pidfile", _path(caller, "pidfile", values["pidfile"], optional=True))
        setattr_(self, "stdin", _path(caller, "stdin", values["stdin"], optional=False))
        setattr_(self, "stdout", _path(caller, "stdout", values["stdout"], optional=True))
        setattr_(self, "stderr", _path(caller, "stderr", values["stderr"], optional=True))
        setattr_(self, "workdir", _path(caller, "workdir", values["workdir"], optional=False))
        umask = values["umask"]
        if isinstance(umask, bool) or not isinstance(umask, int):
            raise TypeError(
                f"{caller}(): umask must be an int such as 0o022, not {type(umask).__name__} {_show(umask)}"
            )
        if not 0 <= umask <= 0o777:
            raise ValueError(f"{caller}(): umask must be between 0 and 0o777, not {umask:#o}")
        setattr_(self, "umask", umask)
        setattr_(self, "keep_fds", _keep_fds(caller, values["keep_fds"]))
        ready, grace, timeout = _readiness(caller, values)
        setattr_(self, "ready", ready)
        setattr_(self, "startup_grace", grace)
        setattr_(self, "ready_timeout", timeout)
        setattr_(self, "stop_timeout", seconds(caller, "stop_timeout", values["stop_timeout"], positive=False))
        for name in ("detach", "prevent_core"):
            value = values[name]
            if not (isinstance(value, bool) or (value is None and name == "detach")):
                expected = "True, False or None" if name == "detach" else "True or False"
                raise TypeError(f"{caller}(): {name} must be {expected}, not {type(value).__name__} {_show(value)}")
            setattr_(self, name, value)
        for name in ("user", "group"):
            setattr_(self, name, _account(caller, name, values[name]))
        setattr_(self, "chroot", _path(caller, "chroot", values["chroot"], optional=True))
        on_reload = values["on_reload"]
        if on_reload is not None and not callable(on_reload):
            raise TypeError(f"{caller}(): on_reload must be a callable taking no arguments, not {_show(on_reload)}")
        setattr_(self, "on_reload", on_reload)
        setattr_(self, "signals", _signals(caller, values["signals"]))
        setattr_(self, "ready_fd", _ready_fd(caller, values["ready_fd"]))
        for name in _FUNCTION_ONLY:
            if caller == "daemonize" and values[name] is not None:
                raise TypeError(
                    f"daemonize() got {name}={_show(values[name])}, but daemonize() has no function to run "
                    f"again; decorate the function with @daemon({name}=...) instead"
                )
        _restart_options(caller, values, setattr_, self, cap_given="restart_max_delay" in given)
        _set_listen_options(self, caller, values)
        return self

    def replace(self, caller: str, **changes: object) -> Options:
        """A copy with *changes* applied, validated like ``build()``."""
        current: dict[str, object] = {name: getattr(self, name) for name in _DEFAULTS}
        current["signals"] = dict(self.signals)
        current["listen"] = {name: getattr(target, "text", target) for name, target in self.listen} or None
        return Options.build(caller, {**current, **changes})

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Options are frozen; cannot set {name!r}")

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _DEFAULTS)
        return f"Options({fields})"


def _restart_options(
    caller: str, values: Mapping[str, object], setattr_: Any, target: Options, *, cap_given: bool
) -> None:
    """Validate ``restart=`` and its companions, and ``instances=``; set them on *target*.

    A ``restart_delay`` above the default cap, without a cap given, raises
    the cap to it (a constant delay) rather than refusing the value.
    """
    restart = values["restart"]
    if restart is not None and not isinstance(restart, str):
        raise TypeError(
            f"{caller}(): restart must be None or one of {', '.join(map(repr, RESTART_MODES))}, "
            f"not {type(restart).__name__} {_show(restart)}"
        )
    if restart is not None and restart not in RESTART_MODES:
        import difflib

        close = difflib.get_close_matches(restart, RESTART_MODES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{caller}(): restart must be None or one of {', '.join(map(repr, RESTART_MODES))}, "
            f"not {_show(restart)}{hint}"
        )
    setattr_(target, "restart", restart)
    delay = seconds(caller, "restart_delay", values["restart_delay"], positive=False)
    backoff = seconds(caller, "restart_backoff", values["restart_backoff"], positive=True)
    if backoff < 1:
        raise ValueError(f"{caller}(): restart_backoff must be at least 1 (1: a constant delay), not {_show(backoff)}")
    max_delay = seconds(caller, "restart_max_delay", values["restart_max_delay"], positive=False)
    if max_delay < delay and not cap_given:
        max_delay = delay
    if max_delay < delay:
        raise ValueError(
            f"{caller}(): restart_max_delay={_show(values['restart_max_delay'])} is below "
            f"restart_delay={_show(values['restart_delay'])}: the cap must be at least the first delay"
        )
    setattr_(target, "restart_delay", delay)
    setattr_(target, "restart_backoff", backoff)
    setattr_(target, "restart_max_delay", max_delay)
    setattr_(
        target,
        "restart_reset_after",
        seconds(caller, "restart_reset_after", values["restart_reset_after"], positive=True),
    )
    setattr_(target, "start_limit", _start_limit(caller, values["start_limit"]))
    setattr_(target, "restart_prevent_exit_codes", _exit_codes(caller, values["restart_prevent_exit_codes"]))
    instances = values["instances"]
    if instances is not None:
        if isinstance(instances, bool) or not isinstance(instances, int):
            raise TypeError(
                f"{caller}(): instances must be a number of workers (int) or None, "
                f"not {type(instances).__name__} {_show(instances)}"
            )
        if not 1 <= instances <= 4096:
            raise ValueError(f"{caller}(): instances must be between 1 and 4096, not {_show(instances)}")
    setattr_(target, "instances", instances)


def _start_limit(caller: str, value: object) -> tuple[int, float] | None:
    """``(burst, interval)``: more than *burst* starts within *interval* s gives up; None: never."""
    if value is None:
        return None
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(
            f"{caller}(): start_limit must be None or a tuple (starts, seconds) such as (5, 60.0), "
            f"not {type(value).__name__} {_show(value)}"
        )
    burst, interval = value
    if isinstance(burst, bool) or not isinstance(burst, int):
        raise TypeError(f"{caller}(): start_limit[0] must be a number of starts (int), not {_show(burst)}")
    if burst < 1:
        raise ValueError(f"{caller}(): start_limit[0] must be at least 1 start, not {_show(burst)}")
    return int(burst), seconds(caller, "start_limit[1]", interval, positive=True)


def _exit_codes(caller: str, value: object) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"{caller}(): restart_prevent_exit_codes must be an iterable of exit statuses (ints 0 to 255), "
            f"not {type(value).__name__} {_show(value)}"
        )
    codes = tuple(value)
    for code in codes:
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(
                f"{caller}(): restart_prevent_exit_codes items must be exit statuses (int), "
                f"not {type(code).__name__} {_show(code)}"
            )
        if not 0 <= code <= 255:
            raise ValueError(f"{caller}(): restart_prevent_exit_codes: {_show(code)} is not an exit status (0 to 255)")
    return tuple(int(code) for code in codes)
def _set_listen_options(options: Options, caller: str, values: Mapping[str, object]) -> None:
    """``listen``, ``on_drain`` and ``drain_timeout`` (default: ``stop_timeout``), validated."""
    listen: tuple[tuple[str, object], ...] = ()
    if values["listen"] is not None:
        from ._sockets import check_listen  # lazy: `socket` only for daemons that listen
        listen = check_listen(caller, values["listen"])
    on_drain = values["on_drain"]
    if on_drain is not None and not callable(on_drain):
        raise TypeError(f"{caller}(): on_drain must be a callable taking no arguments, not {_show(on_drain)}")
    drain = values["drain_timeout"]
    drain_timeout = options.stop_timeout if drain is None else seconds(caller, "drain_timeout", drain, positive=False)
    for name, value in (("listen", listen), ("on_drain", on_drain), ("drain_timeout", drain_timeout)):
        object.__setattr__(options, name, value)


def _ready_fd(caller: str, value: object) -> int | None:
    """The fd the daemon writes a newline to at readiness (s6's ``notification-fd``), or None."""
    if value is None:
        return None
    if not _is_fd_number(value):
        raise TypeError(
            f"{caller}(): ready_fd must be a file descriptor number (int) or None, "
            f"not {type(value).__name__} {_show(value)}"
        )
    if not 0 <= value <= MAX_FD:
        raise ValueError(
            f"{caller}(): ready_fd must be a file descriptor number between 0 and {MAX_FD}, not {_show(value)}"
        )
    return int(value)


def _account(caller: str, name: str, value: object) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"{caller}(): {name} must be a name or a numeric id, not {type(value).__name__} {_show(value)}")
    if isinstance(value, int):
        # uid_t/gid_t are 32-bit unsigned and (uid_t)-1 means "unchanged": setuid/setgid refuse the rest.
        if not 0 <= value <= MAX_ID:
            raise ValueError(f"{caller}(): {name} id must be between 0 and {MAX_ID}, not {_show(value)}")
        return int(value)
    if not value:
        raise ValueError(f"{caller}(): {name} must not be empty")
    if "\0" in value:
        raise ValueError(f"{caller}(): {name} contains a NUL byte: {_show(value)}")
    _check_encodable(caller, name, value)
    return value


def _check_encodable(caller: str, name: str, text: str) -> None:
    """Names and paths reach the OS as bytes: a lone surrogate (not from surrogateescape) cannot."""
    try:
        os.fsencode(text)
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{caller}(): {name} cannot be encoded for the operating system "
            f"({exc.reason} at position {exc.start}): {_show(text)}"
        ) from None


def _signals(caller: str, value: object) -> tuple[tuple[int, Callable[[int, Any], object]], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise TypeError(
            f"{caller}(): signals must be a dict {{signal number: handler}}, not {type(value).__name__} {_show(value)}"
        )
    import signal

    items = []
    for signum, handler in value.items():
        try:
            number = signal.Signals(signum)
        except (ValueError, TypeError):
            raise ValueError(f"{caller}(): signals: {_show(signum)} is not a signal number") from None
        if number in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f"{caller}(): signals: {number.name} cannot be caught")
        if number == signal.SIGTERM:
            raise ValueError(
                f"{caller}(): signals: SIGTERM keeps its meaning (SystemExit, exit 0); "
                "put cleanup in finally blocks or atexit handlers instead"
            )
        if not callable(handler):
            # Keep only the real SIG_IGN/SIG_DFL: the daemon installs int(handler), which a
            # look-alike that merely compares equal to 0 or 1 (1.0, a wrapper) could fail.
            disposition = _signal_disposition(handler)
            if disposition is None:
                raise TypeError(
                    f"{caller}(): signals: the handler for {number.name} must be callable, "
                    f"signal.SIG_IGN or signal.SIG_DFL, not {_show(handler)}"
                )
            handler = disposition  # noqa: PLW2901 - the real enum member in place of its look-alike
        items.append((int(number), handler))
    return tuple(items)


def _signal_disposition(handler: object) -> Any:
    """signal.SIG_IGN or signal.SIG_DFL when *handler* stands for one of them, else None."""
    import signal

    for disposition in (signal.SIG_IGN, signal.SIG_DFL):
        try:
            if handler == disposition:
                return disposition
        except Exception:  # an __eq__ that raises (or returns something without a truth value)
            return None
    return None


def stop_timeout(timeout: object, default: float) -> float:
    """The wait before SIGKILL of a stop: *timeout* when given (validated), else *default*."""
    if timeout is None:
        return default
    return seconds("stop", "timeout", timeout, positive=False)


def reload_timeout(timeout: object) -> float | None:
    """The longest wait for a reload's acknowledgement: None (as long as the daemon lives) or validated seconds."""
    if timeout is None:
        return None
    return seconds("reload", "timeout", timeout, positive=True)
