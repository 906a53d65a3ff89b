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


def _parse(pidfile: str) -> list[tuple[str, str | None, str, str | None]]:
    """The template's pieces: ``(literal text, field, format spec, conversion)``, as ``str.format`` reads them."""
    try:
        import string  # here: `import daemondeco` (and the control path) never pays for it

        return [
            (literal, field, spec or "", conversion)
            for literal, field, spec, conversion in string.Formatter().parse(pidfile)
        ]
    except ValueError as exc:
        raise ValueError(f"process_daemonize(): pidfile template {pidfile!r}: {exc}") from None


def _fields(pidfile: str) -> list[str]:
    return [field for _, field, _, _ in _parse(pidfile) if field is not None]


def _spelled(field: str, spec: str, conversion: str | None) -> str:
    """``{field!conversion:spec}`` as written in the template."""
    return "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"


def _component(field: str, value: object, spec: str, conversion: str | None, template: str) -> str:
    """One field's text in the file name: *value* converted and formatted with *spec*, checked as a name part."""
    try:
        if conversion == "r":
            value = repr(value)
        elif conversion == "a":
            value = ascii(value)
        elif conversion == "s":
            value = str(value)
        text = format(value, spec)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"process_daemonize(): pidfile template {template!r}: {_spelled(field, spec, conversion)} "
            f"cannot format {field}={value!r} ({type(exc).__name__}: {exc})"
        ) from None
    if not text or text in (".", "..") or "/" in text or "\0" in text:
        raise ValueError(
            f"process_daemonize(): pidfile template {template!r}: {field}={value!r} cannot be part of a file name "
            f"(as {_spelled(field, spec, conversion)}: {text!r}; empty, '.', '..', or contains '/' or NUL)"
        )
    return text


def _fill(template: str, values: Mapping[str, object]) -> str:
    """The pidfile path: *template* with each field formatted from *values* and checked as a name part."""
    parts = []
    for literal, field, spec, conversion in _parse(template):
        parts.append(literal)
        if field is not None:
            parts.append(_component(field, values[field], spec, conversion, template))
    return "".join(parts)


def is_template(options: Options) -> bool:
    """Whether the pidfile is a template (or ``instances=`` asks for a group)."""
    return options.instances is not None or (options.pidfile is not None and bool(_fields(options.pidfile)))


def check_template(options: Options, func: Callable[..., Any]) -> None:
    """At decoration time: every field of the template is ``{i}`` (with instances) or a parameter of *func*.

    A field may carry a format spec and a conversion (``{i:02d}``,
    ``{account!s:>8}``); a spec with a nested field (``{i:{j}}``) is refused
    here, and ``{i}``'s spec is tried on every index now.
    """
    if options.pidfile is None:
        return
    template = options.pidfile
    parsed = [(field, spec, conversion) for _, field, spec, conversion in _parse(template) if field is not None]
    fields = [field for field, _, _ in parsed]
    if options.instances is not None and options.instances > 1 and INDEX not in fields:
        raise ValueError(
            f"process_daemonize(): instances={options.instances} needs a pidfile template with {{i}} "
            f"(each worker holds its own pidfile), such as '/run/jobs/sync-{{i}}.pid', not {template!r}"
        )
    for field, spec, conversion in parsed:
        if not field or not field.isidentifier():
            raise ValueError(
                f"process_daemonize(): pidfile template {template!r}: {{{field}}} must name "
                "a parameter of the function (or {i} with instances=)"
            )
        if "{" in spec or "}" in spec:
            raise ValueError(
                f"process_daemonize(): pidfile template {template!r}: {_spelled(field, spec, conversion)}: "
                "a format spec cannot contain another field; write it out, such as {i:02d}"
            )
        if field == INDEX and options.instances is not None:
            continue
        if not _has_parameter(func, field):
            hint = " ({i} needs instances=N)" if field == INDEX else ""
            raise ValueError(
                f"process_daemonize(): pidfile template {template!r}: {{{field}}} is not a "
                f"parameter of {getattr(func, '__qualname__', func)!r}{hint}"
            )
    if options.instances is not None and INDEX in fields:
        _check_index_names(template, parsed, options.instances)


def _check_index_names(template: str, parsed: list[tuple[str, str, str | None]], instances: int) -> None:
    """Every index 0..instances-1 formats with ``{i}``'s specs into a distinct name part (or a ValueError now)."""
    seen: dict[tuple[str, ...], int] = {}
    for index in range(instances):
        names = tuple(
            _component(INDEX, index, spec, conversion, template) for field, spec, conversion in parsed if field == INDEX
        )
        if names in seen:
            raise ValueError(
                f"process_daemonize(): pidfile template {template!r}: members {seen[names]} and {index} "
                f"would share one pidfile ({{i}} gives {names[0]!r} for both)"
            )
        seen[names] = index


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
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    fields: list[str],
    template: str,
    *,
    members: bool,
) -> dict[str, object]:
    """The values of the template's fields from the call's bound arguments, checked as path components.

    With *members* (``instances=``), ``{i}`` is the member's index, not an argument.
    """
    import inspect

    signature = inspect.signature(func)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{getattr(func, '__qualname__', func)}(): {exc}") from None
    bound.apply_defaults()
    var_keyword = next((p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), "")
    values = {**bound.arguments, **bound.arguments.get(var_keyword, {})}
    key: dict[str, object] = {}
    for field in fields:
        if (field == INDEX and members) or field in key:
            continue
        if field not in values:
            raise TypeError(f"pidfile template: the call gives no value for {{{field}}}")
        key[field] = values[field]
    _fill(template, {INDEX: 0, **key})  # every field formats into a name part: checked before any fork
    return key


def _describe_key(key: Mapping[str, object]) -> str:
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
    key: dict[str, object] = {}
    fields = _fields(template) if template is not None else []
    if template is not None and fields:
        key = _key(func, args, kwargs, fields, template, members=options.instances is not None)
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
    key: Mapping[str, object],
    index: int | None,
) -> DaemonProcess:
    changes: dict[str, object] = {"instances": None}
    if options.pidfile is not None:
        fill = dict(key) if index is None else {**key, INDEX: index}
        changes["pidfile"] = _fill(options.pidfile, fill)
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
