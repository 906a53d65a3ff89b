"""pytest plugin: the ``daemon_runner`` fixture, and a check that no test leaves a daemon running.

Installed with daemondeco as the ``pytest11`` entry point ``daemondeco``, so
pytest loads it by itself (``-p no:daemondeco`` turns it off). It is the only
module of daemondeco that imports pytest; ``import daemondeco`` does not
import it.

``daemon_runner(target, **overrides)`` makes a
:class:`~daemondeco.testing.DaemonRunner` whose directory is the test's
``tmp_path`` (``directory=`` picks another one)::

    def test_serves(daemon_runner):
        with daemon_runner(myapp.main, ready_timeout=5).start("8080") as d:
            d.wait_for_log("listening")

The check: after the teardown of *all* of a test's fixtures, the plugin
scans the test's ``tmp_path`` (and every directory given to the factory)
recursively for ``*.pid`` files whose lock is held by another process. Each
holder is stopped by its pid (SIGTERM, then SIGKILL after 5 s) and the test
is reported as an error at teardown, naming the pid and the pidfile. It runs
for every test that uses ``daemon_runner`` or ``tmp_path`` (directly or
through another fixture), so a ``DaemonRunner(..., directory=tmp_path)``
started by hand is checked too; a daemon a fixture keeps for a test and
stops in its own teardown is not a leak (the check comes after every
teardown). A pidfile the test process itself still holds is left alone
(a ``Pidfile`` in a test is not a daemon), unless the test used
``daemon_runner``, where it is reported.

.. versionadded:: 0.1
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import _proc
from ._errors import DaemonError
from ._pidfile import Pidfile
from .testing import DaemonRunner

__all__ = ["LEAK_STOP_TIMEOUT", "DaemonRunnerFactory", "daemon_runner"]

LEAK_STOP_TIMEOUT = 5.0  # seconds from SIGTERM to SIGKILL for a daemon a test left running

DaemonRunnerFactory = Callable[..., DaemonRunner]
"""The type of the ``daemon_runner`` fixture, ``(target, *, directory=None, **overrides) -> DaemonRunner``."""

_WATCHED = pytest.StashKey[list[Path]]()  # the directories to scan after a test's teardown
_SELF_HELD_OK = pytest.StashKey[bool]()  # a test without daemon_runner may hold a Pidfile itself


@pytest.fixture
def daemon_runner(request: pytest.FixtureRequest, tmp_path: Path) -> DaemonRunnerFactory:
    """A factory of :class:`~daemondeco.testing.DaemonRunner` objects working in the test's ``tmp_path``.

    ``daemon_runner(target, directory=None, **overrides)``: *target* and
    *overrides* as for ``DaemonRunner``; the pidfile (``daemon.pid``) and the
    log (``daemon.log``) go to *directory*, by default the test's
    ``tmp_path``. Two daemons running at once need two directories
    (``directory=tmp_path / "b"``): they would share the pidfile otherwise.

    A daemon still running once the test and its fixtures are torn down is
    stopped, and the test reported as an error at teardown.
    """
    watched = request.node.stash.setdefault(_WATCHED, [])
    watched.append(tmp_path)

    def make(
        target: Callable[..., Any], *, directory: str | os.PathLike[str] | None = None, **overrides: Any
    ) -> DaemonRunner:
        runner = DaemonRunner(target, directory=tmp_path if directory is None else directory, **overrides)
        if runner.directory is not None:
            watched.append(runner.directory)
        return runner

    return make


def _stop(pid: int) -> str:
    """Stop *pid* (SIGTERM, then SIGKILL); say how it ended."""
    killed: list[bool] = []
    start_time = _proc.identity(pid)
    gone = _proc.escalate(
        pid,
        start_time,
        LEAK_STOP_TIMEOUT,
        lambda wait: _proc.wait_exit(pid, wait, start_time),
        lambda: killed.append(True),
    )
    if not gone:
        return "still running after SIGKILL"
    return f"killed (SIGKILL after {LEAK_STOP_TIMEOUT:g} s)" if killed else "stopped (SIGTERM)"


def _stop_leaked_daemons(item: pytest.Item) -> list[str]:
    """Stop the daemons holding a pidfile under the directories *item* watches; one line each."""
    watched = item.stash.get(_WATCHED, None)
    if not watched:
        return []
    del item.stash[_WATCHED]  # once per test, also when a failed teardown brought us here first
    leaks: list[str] = []
    seen: set[Path] = set()
    for directory in dict.fromkeys(watched):
        if not directory.is_dir():
            continue
        for path in sorted(directory.rglob("*.pid")):
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            pidfile = Pidfile(path)
            try:
                pid = pidfile.locked_by()
                locked = pid is not None or pidfile.is_locked()
            except (OSError, DaemonError):
                continue
            if not locked:
                continue
            if pid is None or pid == os.getpid():
                if item.stash.get(_SELF_HELD_OK, False):
                    continue  # a test's own Pidfile, or a lock it took by hand: not a daemon
                holder = f"the test process itself (pid {pid})" if pid else "a process that has not written its pid"
                leaks.append(f"{path}: locked by {holder} (not stopped)")
            else:
                leaks.append(f"pid {pid}, pidfile {path}: {_stop(pid)}")
    return leaks


@pytest.fixture(autouse=True)
def _daemondeco_watch_tmp_path(request: pytest.FixtureRequest) -> None:
    """Watch the test's ``tmp_path`` for daemons left running, when the test uses it."""
    if "tmp_path" in request.fixturenames and "daemon_runner" not in request.fixturenames:
        tmp_path = request.getfixturevalue("tmp_path")
        request.node.stash.setdefault(_WATCHED, []).append(tmp_path)
        request.node.stash[_SELF_HELD_OK] = True


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """After every fixture's teardown: fail the test if a daemon it started still runs."""
    leaks = _stop_leaked_daemons(item)
    if leaks:
        count = f"{len(leaks)} daemon{'s' if len(leaks) > 1 else ''}"
        pytest.fail(
            f"daemondeco: the test left {count} running (pidfile locked under its directory):\n  "
            + "\n  ".join(leaks)
            + "\nStop what a test starts: `with runner.start() as d: ...`, or `d.close()` in a finally.",
            pytrace=False,
        )


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """A teardown that failed before the check ran: stop the daemons it left all the same."""
    if call.when == "teardown" and call.excinfo is not None:
        _stop_leaked_daemons(item)
