"""Test your own daemons: start one in a temporary directory, look at it, stop it.

The model is click's ``CliRunner``: a small helper that your own test suite
imports. :class:`DaemonRunner` takes a function decorated with ``@daemon`` or
``@process_daemonize`` (or a plain function) and starts it as a real,
detached daemon whose pidfile and log live in a directory of the test's own::

    from daemondeco.testing import DaemonRunner

    import myapp

    def test_my_service(tmp_path):
        runner = DaemonRunner(myapp.main, directory=tmp_path)
        with runner.start("0") as d:                 # StartupError if it does not start
            assert d.is_running()
            d.wait_for_log("listening")              # bounded; AssertionError with the log's tail
            print(d.pid, d.pidfile, d.log_path, d.log())
        # the block's end stopped it: SIGTERM, SIGKILL after the stop timeout

Why not simply call ``myapp.main()`` in a test? The process that calls a
``@daemon`` function is its launcher, and a launcher exits (``os._exit(0)``)
once the daemon is ready: it would take the test run with it. The runner
starts the function the way ``@process_daemonize`` starts a worker instead:
this process forks, keeps running, and gets a handle on the daemon once it is
ready; a daemon that fails first raises :class:`~daemondeco.StartupError`
here, carrying the daemon's own traceback.

What the runner overrides in the function's options: ``pidfile``
(``daemon.pid`` in the directory), ``stdout`` (``daemon.log`` in the
directory), ``stderr`` (the same log), ``detach=True`` and
``stop_timeout=5``. Keyword arguments to :class:`DaemonRunner` override any
option, validated as the decorators validate theirs.

This module imports neither pytest nor anything else beyond daemondeco and
the standard library; ``import daemondeco`` does not import it.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ._decorators import options_of
from ._engine import run_foreground, spawn
from ._errors import DaemonError, StartupError
from ._options import Options

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from types import TracebackType
    from typing import Any

    from ._control import DaemonProcess

__all__ = ["DaemonRunner", "RunningDaemon"]

_PIDFILE_NAME = "daemon.pid"
_LOG_NAME = "daemon.log"
_DEFAULT_STOP_TIMEOUT = 5.0
_TAIL_LINES = 20
_PATH_OPTIONS = ("pidfile", "stdout", "stderr")


def _resolve_target(target: object) -> tuple[Options, Callable[..., Any]]:
    """The options a decorated *target* was given, and the function to run in the daemon."""
    if not callable(target):
        raise TypeError(
            "DaemonRunner() needs a function decorated with @daemon or @process_daemonize "
            f"(or a plain function), not {type(target).__name__} {target!r}"
        )
    options = options_of(target)
    if options is not None:
        function: Callable[..., Any] = getattr(target, "__wrapped__")  # noqa: B009 - a wrapt attribute
        return options, function
    plain: Callable[..., Any] = target
    return Options.build("DaemonRunner", {}), plain


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    if not text:
        return "(the log is empty)"
    last = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in last)


def _leave_the_test_runner() -> None:
    """In the daemon: undo what a test runner did to the root logger.

    pytest's log capture puts its handlers on the root logger, which would
    swallow the daemon's records and make ``logging.basicConfig()`` a no-op:
    remove them (in the daemon only). The engine itself points ``sys.stdout``
    and friends back at fds 0, 1 and 2 when a runner had swapped them.
    """
    logging = sys.modules.get("logging")
    if logging is not None:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if type(handler).__module__.startswith("_pytest."):
                root.removeHandler(handler)


def _in_daemon(function: Callable[..., Any]) -> Callable[..., Any]:
    """*function*, preceded in the daemon by ``_leave_the_test_runner``; async stays async."""
    import functools
    import inspect

    if inspect.iscoroutinefunction(function):  # the engine's own test: it then runs asyncio.run

        async def main_async(*args: Any, **kwargs: Any) -> Any:
            _leave_the_test_runner()
            return await function(*args, **kwargs)

        return functools.update_wrapper(main_async, function)

    def main(*args: Any, **kwargs: Any) -> Any:
        _leave_the_test_runner()
        return function(*args, **kwargs)

    return functools.update_wrapper(main, function)


class DaemonRunner:
    """Start a decorated function as a real daemon for a test, in a directory of its own.

    Args:
        target: a function decorated with ``@daemon`` or ``@process_daemonize``
            (a method bound to its instance works too); its options are used,
            with the overrides below. A plain function runs with the default
            options.
        directory: where the pidfile (``daemon.pid``) and the log
            (``daemon.log``, stdout and stderr) go; pytest's ``tmp_path`` is a
            good choice. ``None``: every :meth:`start` makes a fresh
            ``daemondeco-*`` directory in the system's temp directory and
            removes it when the daemon is closed.
        **overrides: any option of ``@daemon`` (``ready_timeout=5``,
            ``workdir=tmp_path``, ``keep_fds=()`` ...), applied last and
            validated like the decorator's: a misspelt name raises
            ``TypeError`` with a "did you mean" hint. Relative ``pidfile``,
            ``stdout`` and ``stderr`` paths are taken in *directory*.

    The runner sets ``detach=True`` and ``stop_timeout=5`` unless
    overridden. Bad overrides raise here, before anything starts.

    Attributes:
        target: the function given.
        directory: the directory given (absolute), or None.

    Example::

        runner = DaemonRunner(myapp.main, directory=tmp_path, ready_timeout=5)
        with runner.start("--verbose") as d:
            d.wait_for_log("ready")

    .. versionadded:: 0.1

    """

    def __init__(
        self, target: Callable[..., Any], *, directory: str | os.PathLike[str] | None = None, **overrides: Any
    ) -> None:
        self.target = target
        self.directory: Path | None = Path(directory).absolute() if directory is not None else None
        self._base, self._function = _resolve_target(target)
        for name in ("pidfile", "stdout"):
            if name in overrides and overrides[name] is None:
                raise ValueError(
                    f"DaemonRunner(): {name}=None is not supported: the runner needs a "
                    f"{'pidfile to find and stop' if name == 'pidfile' else 'log to read'} the daemon; "
                    "give a path (relative paths are taken in the directory)"
                )
        self._overrides = dict(overrides)
        # Validate now, so that a typo fails before anything is created or started.
        placeholder = self.directory or Path(os.sep, "daemondeco-runner")
        self._stop_timeout = self._options_in(placeholder).stop_timeout

    def __repr__(self) -> str:
        name = getattr(self._function, "__qualname__", None) or repr(self._function)
        return f"<DaemonRunner {name} directory={str(self.directory) if self.directory else None!r}>"

    @property
    def stop_timeout(self) -> float:
        """Seconds a stop waits after SIGTERM before SIGKILL (5 unless overridden)."""
        return self._stop_timeout

    def _options_in(self, directory: Path) -> Options:
        changes: dict[str, object] = {
            "pidfile": str(directory / _PIDFILE_NAME),
            "stdout": str(directory / _LOG_NAME),
            "stderr": None,
            "detach": True,
            "stop_timeout": _DEFAULT_STOP_TIMEOUT,
        }
        for name, value in self._overrides.items():
            is_path = name in _PATH_OPTIONS and isinstance(value, (str, os.PathLike)) and os.fspath(value)
            # A relative path is taken in the directory; an absolute one stays as it is.
            changes[name] = str(directory / os.fsdecode(os.fspath(value))) if is_path else value
        return self._base.replace("DaemonRunner", **changes)

    def _make_directory(self) -> tuple[Path, bool]:
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            return self.directory, False
        import tempfile

        return Path(tempfile.mkdtemp(prefix="daemondeco-")), True

    def start(self, *args: Any, **kwargs: Any) -> RunningDaemon:
        """Start the function as a detached daemon; return once it is ready.

        *args* and *kwargs* are passed to the function in the daemon. This
        process forks but never exits: it keeps running the test.

        Returns:
            A :class:`RunningDaemon`; use it in a ``with`` block (or call its
            :meth:`~RunningDaemon.close`) so that the daemon is stopped.

        Raises:
            daemondeco.StartupError: the daemon raised or exited before it was ready, or
                was not ready within ``ready_timeout`` (then it was stopped).
                The message carries the daemon's traceback; on Python 3.11+ a
                note adds the end of its log when there is no traceback.
            AlreadyRunningError: a daemon started in the same directory still
                runs (its pidfile is locked).
            OSError: the directory or a path in it cannot be used.

        .. versionadded:: 0.1

        """
        __tracebackhide__ = True  # pytest: show the test's line, not ours
        directory, owned = self._make_directory()
        launcher = os.getpid()
        log_path = directory / _LOG_NAME
        try:
            options = self._options_in(directory)
            assert options.pidfile is not None
            assert options.stdout is not None
            log_path = Path(options.stdout)
            process = spawn(options, _in_daemon(self._function), args, kwargs)
        except BaseException as exc:
            if os.getpid() == launcher:  # never clean up from a forked child
                if isinstance(exc, StartupError) and not exc.daemon_traceback:
                    log = _read(log_path)
                    if log and hasattr(exc, "add_note"):
                        exc.add_note(f"The daemon's log ({log_path}) ends with:\n{_tail(log)}")
                if owned:
                    _remove_tree(directory)
                if isinstance(exc, StartupError):
                    # The launcher's frames say nothing about the daemon's failure.
                    raise exc.with_traceback(None) from exc.__cause__
            raise
        return RunningDaemon(
            process,
            directory=directory,
            pidfile=Path(options.pidfile),
            log_path=log_path,
            stop_timeout=options.stop_timeout,
            remove_directory=owned,
        )

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function in the foreground, in this process, and return its value.

        No fork: the same as ``main.run()`` of a ``@daemon`` function (the
        pidfile is held while it runs, SIGTERM raises ``SystemExit``), with
        the runner's options. stdout and stderr are left alone, so the
        function's output goes where the test's goes (pytest's ``capsys``
        sees it). For functions that return.

        .. versionadded:: 0.1

        """
        directory, owned = self._make_directory()
        try:
            return run_foreground(self._options_in(directory), self._function, args, kwargs)
        finally:
            if owned:
                _remove_tree(directory)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _remove_tree(directory: Path) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


class RunningDaemon:
    """A daemon started by :meth:`DaemonRunner.start`; a context manager that stops it.

    Attributes:
        pid: the daemon's process id.
        pidfile: the path of its (locked) pidfile.
        log_path: the path of its log (stdout and stderr, unless overridden).
        directory: the directory they live in.
        process: the :class:`~daemondeco.DaemonProcess` handle.

    Leaving the ``with`` block, also by an exception, calls :meth:`close`.

    .. versionadded:: 0.1

    """

    def __init__(
        self,
        process: DaemonProcess,
        *,
        directory: Path,
        pidfile: Path,
        log_path: Path,
        stop_timeout: float,
        remove_directory: bool = False,
    ) -> None:
        self.process = process
        self.pid: int = process.pid
        self.directory = directory
        self.pidfile = pidfile
        self.log_path = log_path
        self._stop_timeout = stop_timeout
        self._remove_directory = remove_directory
        self._final_log: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "exited"
        return f"<RunningDaemon pid={self.pid} {state} directory={str(self.directory)!r}>"

    def __enter__(self) -> RunningDaemon:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def is_running(self) -> bool:
        """True while the daemon runs (a zombie or a reused pid does not count)."""
        return self.process.is_running()

    def log(self) -> str:
        """The daemon's log so far ("" if there is none yet).

        After :meth:`close` removed a temporary directory, the log as it was
        when the daemon had stopped.
        """
        if self._final_log is not None:
            return self._final_log
        return _read(self.log_path)

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """Wait until *text* appears in the log; return the line it is on.

        Polls the log file with a short, growing interval, for at most
        *timeout* seconds. When the text is on a line the daemon is still
        writing, waits for that line's end (within *timeout*).

        Raises:
            AssertionError: the text did not appear within *timeout*, or the
                daemon exited first; the message ends with the log's last lines.

        """
        __tracebackhide__ = True
        deadline = time.monotonic() + timeout
        interval = 0.002
        while True:
            running = self.is_running()  # before reading: a daemon's last words are then read too
            log = self.log()
            found = log.find(text)
            if found >= 0:
                start = log.rfind("\n", 0, found) + 1
                end = log.find("\n", found + len(text))
                if end >= 0 or not running or time.monotonic() >= deadline:
                    return log[start : end if end >= 0 else len(log)]
            elif not running:
                raise AssertionError(
                    f"the daemon (pid {self.pid}) exited before {text!r} appeared in its log "
                    f"{self.log_path}; its last lines:\n{_tail(log)}"
                )
            elif time.monotonic() >= deadline:
                raise AssertionError(
                    f"{text!r} did not appear in the log {self.log_path} of the daemon (pid {self.pid}) "
                    f"within {timeout:g} s; its last lines:\n{_tail(log)}"
                )
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 2, 0.05)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the daemon to exit by itself; True once it has (False at *timeout*).

        ``process.wait()`` gives its exit code instead; ``process.result()`` its return value.
        """
        return self.process.wait(timeout) is not None

    def stop(self, timeout: float | None = None) -> bool:
        """SIGTERM the daemon, wait up to *timeout* s, then SIGKILL it.

        Args:
            timeout: default: the runner's ``stop_timeout`` (5 s unless overridden).

        Returns:
            True when no daemon holds the pidfile afterwards (also when it had
            already exited).

        """
        return self.process.stop(self._stop_timeout if timeout is None else timeout)

    def close(self) -> None:
        """Stop the daemon, make sure its process is gone, remove a temporary directory.

        Only the daemon's own pid is ever signalled, never a process found by
        name. Safe to call twice.

        Raises:
            daemondeco.DaemonError: the daemon's process survived SIGKILL.

        """
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()  # returns once the process is gone, after SIGKILL if need be
        finally:
            if self._remove_directory:
                self._final_log = _read(self.log_path)
                _remove_tree(self.directory)
        if self.is_running():
            raise DaemonError(f"the daemon (pid {self.pid}) is still running after SIGKILL")
