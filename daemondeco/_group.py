"""Worker groups and keyed workers: pidfile templates for ``@process_daemonize``.

A pidfile with ``str.format`` fields is a template:

* ``{i}`` with ``instances=N``: N identical workers, each holding its own
  pidfile (``sync-0.pid`` ... ``sync-7.pid``), started by one call that returns
  a :class:`WorkerGroup` once all are ready, or raises with every failure
  after stopping the members that had started.
* any other field names a parameter of the function: the call's bound
  arguments fill it (``pidfile="/run/jobs/sync-{account}.pid"``), so "one
  worker per account" is the pidfile's lock, and a second call with the same
  key raises :class:`AlreadyRunningError` naming the key.

Why a group object returned by the call, not a separate ``WorkerGroup(...)``
constructor: the decorated function already holds the options and the
function; ``instances=`` keeps one way to start workers, and the handle has
the same verbs as :class:`DaemonProcess` (``stop``, ``is_running``, ``wait``).
"""

from __future__ import annotations

import os

from ._control import DaemonProcess
from ._errors import AlreadyRunningError, DaemonError, GroupStartError
from ._options import stop_timeout
from ._signals import SIGTERM

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable, Iterator, Mapping
    from typing import Any

    from ._options import Options

__all__ = ["WorkerGroup", "check_template", "is_template", "start_workers"]

INDEX = "i"


def _fields(pidfile: str) -> list[str]:
    try:
        import string  # here: `import daemondeco` (and the control path) never pays for it

        parsed = list(string.Formatter().parse(pidfile))
    except ValueError as exc:
        raise ValueError(f"process_daemonize(): pidfile template {pidfile!r}: {exc}") from None
    return [field for _, field, _, _ in parsed if field is not None]


def is_template(options: Options) -> bool:
    """Whether the pidfile is a template (or ``instances=`` asks for a group)."""
    return options.instances is not None or (options.pidfile is not None and bool(_fields(options.pidfile)))


def check_template(options: Options, func: Callable[..., Any]) -> None:
    """At decoration time: every field of the template is ``{i}`` (with instances) or a parameter of *func*."""
    if options.pidfile is None:
        return
    fields = _fields(options.pidfile)
    if options.instances is not None and options.instances > 1 and INDEX not in fields:
        raise ValueError(
            f"process_daemonize(): instances={options.instances} needs a pidfile template with {{i}} "
            f"(each worker holds its own pidfile), such as '/run/jobs/sync-{{i}}.pid', not {options.pidfile!r}"
        )
    for field in fields:
        if not field or not field.isidentifier():
            raise ValueError(
                f"process_daemonize(): pidfile template {options.pidfile!r}: {{{field}}} must name "
                "a parameter of the function (or {i} with instances=)"
            )
        if field == INDEX and options.instances is not None:
            continue
        if not _has_parameter(func, field):
            hint = " ({i} needs instances=N)" if field == INDEX else ""
            raise ValueError(
                f"process_daemonize(): pidfile template {options.pidfile!r}: {{{field}}} is not a "
                f"parameter of {getattr(func, '__qualname__', func)!r}{hint}"
            )


def _has_parameter(func: Callable[..., Any], name: str) -> bool:
    import inspect

    try:
        parameters = inspect.signature(func).parameters
    except (TypeError, ValueError):  # no signature to read: checked at the call
        return True
    if name in parameters:
        return parameters[name].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def _key(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], fields: list[str]
) -> dict[str, str]:
    """The values of the template's fields from the call's bound arguments, checked as path components."""
    import inspect

    signature = inspect.signature(func)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{getattr(func, '__qualname__', func)}(): {exc}") from None
    bound.apply_defaults()
    var_keyword = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), "")
    values = {**bound.arguments, **bound.arguments.get(var_keyword, {})}
    key = {}
    for field in fields:
        if field == INDEX or field in key:
            continue
        if field not in values:
            raise TypeError(f"pidfile template: the call gives no value for {{{field}}}")
        text = str(values[field])
        if not text or text in (".", "..") or "/" in text or "\0" in text:
            raise ValueError(
                f"pidfile template: {field}={values[field]!r} cannot be part of a file name "
                "(empty, '.', '..', or contains '/' or NUL)"
            )
        key[field] = text
    return key


def _describe_key(key: Mapping[str, str]) -> str:
    return ", ".join(f"{name}={value!r}" for name, value in key.items())


def start_workers(
    options: Options,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    spawn: Callable[[Options, Callable[..., Any], tuple[Any, ...], Mapping[str, Any]], DaemonProcess],
) -> DaemonProcess | WorkerGroup:
    """Start a keyed worker (a :class:`DaemonProcess`) or a group (a :class:`WorkerGroup`)."""
    template = options.pidfile
    fields = _fields(template) if template is not None else []
    key = _key(func, args, kwargs, fields) if fields else {}
    if options.instances is None:
        return _start_one(options, func, args, kwargs, spawn=spawn, key=key, index=None)
    members: list[DaemonProcess] = []
    failures: dict[int, BaseException] = {}
    try:
        for index in range(options.instances):
            try:
                members.append(_start_one(options, func, args, kwargs, spawn=spawn, key=key, index=index))
            except (DaemonError, OSError) as exc:
                failures[index] = exc
    except BaseException:  # Ctrl-C (StartInterrupted) or a bug: no member may outlive the failed call
        WorkerGroup(members, options.stop_timeout).stop()
        raise
    if failures:
        group = WorkerGroup(members, options.stop_timeout)
        group.stop()
        raise GroupStartError(failures, options.instances)
    return WorkerGroup(members, options.stop_timeout)


def _start_one(
    options: Options,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    spawn: Callable[[Options, Callable[..., Any], tuple[Any, ...], Mapping[str, Any]], DaemonProcess],
    key: Mapping[str, str],
    index: int | None,
) -> DaemonProcess:
    changes: dict[str, object] = {"instances": None}
    if options.pidfile is not None:
        fill = dict(key) if index is None else {**key, INDEX: str(index)}
        changes["pidfile"] = options.pidfile.format(**fill)
    member = options.replace(options.caller, **changes)
    try:
        return spawn(member, func, args, kwargs)
    except AlreadyRunningError as exc:
        if not key:
            raise
        raise AlreadyRunningError(exc.pidfile, exc.pid, key=_describe_key(key)) from None


class WorkerGroup:
    """The handle of the workers one ``process_daemonize(instances=N)`` call started.

    Iterate it (or index it) for each member's :class:`DaemonProcess`; each
    member holds its own pidfile and, with ``restart=``, is restarted on its
    own. ``stop()`` stops them all together. How they ended: :attr:`exitcodes`,
    :meth:`wait` (the exit codes once all ended), :meth:`results` (the return
    values), or each member's own :meth:`~DaemonProcess.exception`.

    .. versionadded:: 0.1

    """

    def __init__(self, members: list[DaemonProcess], default_stop_timeout: float) -> None:
        self.members = list(members)
        self._stop_timeout = default_stop_timeout

    def __iter__(self) -> Iterator[DaemonProcess]:
        return iter(self.members)

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, index: int) -> DaemonProcess:
        return self.members[index]

    def __repr__(self) -> str:
        running = sum(member.is_running() for member in self.members)
        return f"<WorkerGroup {len(self.members)} members, {running} running>"

    @property
    def pids(self) -> list[int]:
        """Each member's pid (its supervisor's with ``restart=``), in order."""
        return [member.pid for member in self.members]

    def status(self) -> list[int | None]:
        """Per member, in order: its pid while it runs, else None."""
        return [member.pid if member.is_running() else None for member in self.members]

    def is_running(self) -> bool:
        """True while any member runs."""
        return any(member.is_running() for member in self.members)

    @property
    def exitcodes(self) -> list[int | None]:
        """Each member's :attr:`DaemonProcess.exitcode`, in order (None while it runs).

        .. versionadded:: 0.1
        """
        return [member.exitcode for member in self.members]

    def wait(self, timeout: float | None = None) -> list[int | None] | None:
        """Wait for every member to exit; their exit codes, in order, or None at *timeout*.

        Raises:
            WorkerError: a member exited without a record of how (see :meth:`DaemonProcess.wait`).

        """
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        for member in self.members:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if member.wait(left) is None:
                return None
        return self.exitcodes

    def results(self, timeout: float | None = None) -> list[Any]:
        """Wait for every member to end; what each one's function returned, in order.

        Args:
            timeout: seconds to wait for all of them; None waits as long as they run.

        Raises:
            WorkerError: the first member (in order) that raised, was killed,
                exited non-zero or returned an unpicklable value
                (:meth:`DaemonProcess.result`); each member's own
                :meth:`~DaemonProcess.exception` tells the others.
            TimeoutError: a member still runs after *timeout* seconds.

        .. versionadded:: 0.1

        """
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for member in self.members:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            values.append(member.result(left))
        return values

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every member together: SIGTERM to all, then each waited for (SIGKILL after *timeout*).

        Returns True when no member runs afterwards.
        """
        wait = stop_timeout(timeout, self._stop_timeout)
        for member in self.members:  # all at once: the waits below then overlap
            if member.is_running():
                try:
                    os.kill(member.pid, SIGTERM)
                except ProcessLookupError:
                    pass
        return all([member.stop(wait) for member in self.members])
