"""Shared harness: run real scripts, inspect real processes, kill what we started.

Every script a test runs gets an environment marker (``DAEMONDECO_TEST_ID``);
a daemon inherits it through its forks, so teardown finds every process the
test started by scanning ``/proc/*/environ`` and kills each one by its pid.
Nothing is ever killed by name.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent
MARKER = "DAEMONDECO_TEST_ID"


def pytest_configure(config: pytest.Config) -> None:
    """Let daemons that switched to an unprivileged user save coverage data.

    Coverage's data directory is created by root; a daemon that dropped to
    ``nobody`` could not write its data file there, and its lines would look
    untested. Sticky and world-writable, like /tmp, for this run's artifacts.
    """
    data_dir = ROOT / ".coverage-data"
    if os.geteuid() == 0:
        data_dir.mkdir(exist_ok=True)
        data_dir.chmod(0o1777)


# -- looking at processes -----------------------------------------------------


@dataclass
class ProcStat:
    """The fields of /proc/<pid>/stat a daemon test cares about."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    tty_nr: int


def proc_stat(pid: int) -> ProcStat | None:
    """Parse /proc/<pid>/stat; None when the process is gone (reaped)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4]))


def alive(pid: int) -> bool:
    """True if *pid* exists and is not a zombie (PID 1 here does not reap)."""
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def proc_status(pid: int) -> dict[str, str]:
    """/proc/<pid>/status as a dict (Umask, SigBlk, SigIgn, Uid, ...)."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def open_fds(pid: int) -> dict[int, str]:
    """The open fds of *pid* and what each points to."""
    base = Path(f"/proc/{pid}/fd")
    result = {}
    for entry in base.iterdir():
        try:
            result[int(entry.name)] = os.readlink(entry)
        except FileNotFoundError:
            continue
    return result


def zombie_status_or_none(pid: int) -> int | None:
    """The wait status of a dead daemon, read from its zombie (``/proc/<pid>/stat`` field 52).

    None if PID 1 reaped it (here it does not reap orphans, elsewhere it
    may); a process that has not exited fails the test.
    """
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    assert fields[0] == b"Z", f"pid {pid} is not a zombie: {fields[0]!r}"
    return int(fields[49])


def zombie_wait_status(pid: int) -> int:
    """Like ``zombie_status_or_none``; where the daemon was reaped the test is skipped."""
    status = zombie_status_or_none(pid)
    if status is None:
        pytest.skip("the dead daemon was reaped by PID 1: its exit status is gone")
    return status


def zombie_exit_code(pid: int) -> int:
    """Like ``zombie_wait_status``, as an exit code (negative: killed by that signal)."""
    return os.waitstatus_to_exitcode(zombie_wait_status(pid))


def wait_exit(pid: int, timeout: float = 10.0) -> bool:
    """Block on a pidfd until *pid* exits (zombie counts); True if it did."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll *predicate* until true; for checks on other processes' files only."""
    deadline = time.monotonic() + timeout
    interval = 0.002
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 2, 0.05)


def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> str:
    """Wait until a file another process writes contains *text*; return its content.

    With ``ready="start"`` a launcher exits as the daemon's function is called,
    so the function's first output may come a moment after.
    """
    wait_until(lambda: path.exists() and text in path.read_text(), timeout, what=f"{text!r} in {path.name}")
    return path.read_text()


def read_pid(path: Path) -> int:
    """The pid in a pidfile (the test fails if it has none)."""
    text = path.read_text()
    assert text.endswith("\n") and text.strip().isdigit(), f"bad pidfile content {text!r}"
    return int(text)


def marked_pids(marker: str) -> list[int]:
    """Pids of live (non-zombie) processes whose environment carries *marker*."""
    needle = f"{MARKER}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


# -- running scripts ----------------------------------------------------------


@dataclass
class Result:
    """What a finished script left behind."""

    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def reports(self) -> list[dict[str, object]]:
        """The values the script printed with ``report(**values)`` (see ``Sandbox.run_reporting``)."""
        return reports(self.stdout)


# Prepended by Sandbox.run_reporting: a script tells the test what it saw, one JSON line at a time.
REPORT = """
import json as _report_json

def report(**values):
    print(_report_json.dumps(values), flush=True)

"""


def reports(stdout: str) -> list[dict[str, object]]:
    """The JSON lines in a script's *stdout* (written by ``report(**values)``), in order."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


# Looks at a pidfile from another process: a raw flock probe, then what Pidfile says.
_PIDFILE_PROBE = """
import fcntl, json, os, sys
from daemondeco import Pidfile

path = sys.argv[1]
try:
    fd = os.open(path, os.O_RDONLY)
except FileNotFoundError:
    flock_held = False
else:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        flock_held = True
    else:
        flock_held = False  # closing the fd drops the lock we just took
    os.close(fd)
pf = Pidfile(path)
print(json.dumps({"flock_held": flock_held, "read_pid": pf.read_pid(), "locked_by": pf.locked_by(),
                  "is_locked": pf.is_locked()}))
"""

# Prepended by Sandbox.paused_launcher: the launcher stops right before its
# first fork (the pidfile is locked by then), says "locked", and goes on when
# a line arrives on its stdin.
_PAUSE_BEFORE_FORK = """
import os as _pause_os, sys as _pause_sys

_PAUSED_LAUNCHER = _pause_os.getpid()

def _pause_before_fork():
    if _pause_os.getpid() == _PAUSED_LAUNCHER:
        print("locked", flush=True)
        _pause_sys.stdin.readline()

_pause_os.register_at_fork(before=_pause_before_fork)

"""


@dataclass
class Sandbox:
    """A temporary directory where a test writes scripts and runs them."""

    path: Path
    marker: str
    extra_pids: list[int] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "NOTIFY_SOCKET")}
        env[MARKER] = self.marker
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        env.update(extra)
        return env

    def write(self, name: str, code: str) -> Path:
        """Write a script (dedented) into the sandbox."""
        target = self.path / name
        target.write_text(textwrap.dedent(code).lstrip())
        return target

    def run(self, code: str, *args: str, name: str = "prog.py", timeout: float = 30.0, **env: str) -> Result:
        """Write *code* to *name* and run it to completion with *args*."""
        script = self.write(name, code)
        return self.run_file(script, *args, timeout=timeout, **env)

    def run_file(self, script: Path, *args: str, timeout: float = 30.0, **env: str) -> Result:
        """Run the script *script* with *args* to completion, from the sandbox."""
        return self.run_python(str(script), *args, timeout=timeout, **env)

    def run_module(self, *args: str, timeout: float = 30.0, **env: str) -> Result:
        """``python -m daemondeco ARGS``, as an operator runs it, from the sandbox."""
        return self.run_python("-m", "daemondeco", *args, timeout=timeout, **env)

    def run_python(self, *argv: str, timeout: float = 30.0, **env: str) -> Result:
        """``python ARGV`` to completion: cwd the sandbox, stdin /dev/null, output captured."""
        done = subprocess.run(
            [sys.executable, *argv],
            cwd=self.path,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def run_reporting(self, code: str, *args: str, name: str = "prog.py", **env: str) -> Result:
        """Run *code* with a ``report(**values)`` function defined; it must exit 0.

        ``report`` prints its values as one JSON line; read them back with
        ``result.reports()``.
        """
        result = self.run(REPORT + textwrap.dedent(code), *args, name=name, **env)
        assert result.returncode == 0, result
        return result

    def start_daemon(
        self,
        code: str | Path,
        *args: str,
        pidfile: str | Path = "d.pid",
        says: str | None = None,
        name: str = "prog.py",
        **env: str,
    ) -> int:
        """Run a launcher to completion and return its daemon's pid, read from the pidfile.

        *code* is a script's text, or the Path of a script already written.
        The launcher must exit 0 without printing "launcher continued" (it
        leaves once the daemon is ready), the pidfile (relative to the
        sandbox) must name a live process, and *says* (``{pid}`` is the
        daemon's pid), when given, must be in the launcher's stdout.
        """
        if isinstance(code, Path):
            result = self.run_file(code, *args, **env)
        else:
            result = self.run(code, *args, name=name, **env)
        assert result.returncode == 0, result
        assert "launcher continued" not in result.stdout, "the launcher must leave once the daemon is ready"
        pid = read_pid(self.path / pidfile)
        assert alive(pid), f"the daemon {pid} named by the pidfile is not running"
        if says is not None:
            assert says.format(pid=pid) in result.stdout, result
        return pid

    def popen(self, code: str, *args: str, name: str = "prog.py", **kwargs: object) -> subprocess.Popen[str]:
        """Write *code* to *name* and start it with *args*, without waiting (see ``popen_file``)."""
        script = self.write(name, code)
        return self.popen_file(script, *args, **kwargs)

    def popen_file(self, script: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
        """Start the script *script* with *args* (text mode; *kwargs* go to Popen); killed at teardown."""
        proc = subprocess.Popen(
            [sys.executable, str(script), *args], cwd=self.path, env=self.env(), text=True, **kwargs  # type: ignore[call-overload]
        )
        self.extra_pids.append(proc.pid)
        return proc

    @contextmanager
    def paused_launcher(self, code: str, name: str = "paused.py") -> Iterator[subprocess.Popen[str]]:
        """Run the launcher *code*, held right before its first fork for the ``with`` block.

        By then the launcher has locked the pidfile, but no daemon exists
        and nothing has written a new pid. On leaving the block the launcher
        is let go and waited for: check ``returncode`` afterwards.
        """
        launcher = self.popen(
            _PAUSE_BEFORE_FORK + textwrap.dedent(code), name=name, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert launcher.stdin is not None
        assert launcher.stdout is not None
        try:
            assert launcher.stdout.readline() == "locked\n"
            yield launcher
        finally:
            launcher.stdin.write("go\n")
            launcher.stdin.close()
            launcher.wait(timeout=10)
            launcher.stdout.close()

    def inspect_pidfile(self, path: Path) -> dict[str, object]:
        """A pidfile seen from another process.

        ``flock_held``: a raw ``flock`` probe (someone holds a lock on the
        file; False when it does not exist); ``read_pid``, ``locked_by`` and
        ``is_locked``: what ``daemondeco.Pidfile(path)`` reports.
        """
        result = self.run(_PIDFILE_PROBE, str(path), name="peek.py")
        assert result.returncode == 0, result
        info: dict[str, object] = json.loads(result.stdout)
        return info

    def live_pids(self) -> list[int]:
        """Every live process this test started (launchers, daemons, workers)."""
        return marked_pids(self.marker)

    def kill_all(self) -> None:
        """SIGTERM every process we started (so daemons save coverage), SIGKILL stragglers."""
        pids = set(self.live_pids()) | {p for p in self.extra_pids if alive(p)}
        for signum in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
            pids = {pid for pid in pids if not wait_exit(pid, 2 if signum == signal.SIGTERM else 5)}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A directory to run scripts in; kills every process they left, by pid."""
    box = Sandbox(tmp_path, uuid.uuid4().hex)
    try:
        yield box
    finally:
        box.kill_all()


# -- options refused before any fork ------------------------------------------


_FORMS_DISPATCH = """
form = sys.argv[1]
try:
    options = {options}
    if form == "daemon":
        @daemon(**options)
        def main():
            ran()
        main()
    elif form == "process_daemonize":
        @process_daemonize(**options)
        def work():
            ran()
        work()
    else:
        daemonize(**options)
        ran()
except Exception as exc:
    print("RAISED", ",".join(cls.__name__ for cls in type(exc).__mro__), file=sys.stderr)
    print("MESSAGE", exc, file=sys.stderr)
    sys.exit(3)
print("NOT RAISED", flush=True)
"""


def forms_dispatch(options: str) -> str:
    """Script tail: start ``ran()`` under the form named by argv[1] with *options*.

    The form is ``daemon``, ``process_daemonize`` or ``daemonize``; an
    exception prints ``RAISED <mro>`` and ``MESSAGE <text>`` and exits 3.
    """
    return _FORMS_DISPATCH.format(options=options)


# A launcher that tries OPTIONS (a Python expression) under the form named by
# argv[1]. It records any fork attempt, prints on stdout the number of an fd
# that is not open (CLOSED), and offers P(name) (a path in the sandbox),
# WITH_FILES (a pidfile and both logs, which a refusal must not leave behind)
# and handler (a signal handler).
_OPTIONS_LAUNCHER = """
import math, os, signal, sys
HERE = os.path.dirname(os.path.abspath(__file__))

def P(name):
    return os.path.join(HERE, name)

_fd = os.open(os.devnull, os.O_RDONLY)
os.close(_fd)
CLOSED = _fd  # an fd number that is not open
print("CLOSED", CLOSED, flush=True)
WITH_FILES = dict(pidfile=P("d.pid"), stdout=P("out.log"), stderr=P("err.log"))

os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))

from daemondeco import daemon, daemonize, process_daemonize

def ran():
    open(P("ran"), "w").close()

def handler(signum, frame):
    ran()

""" + forms_dispatch("OPTIONS")

# What is in the sandbox before an options launcher runs: the script, a directory, a file, an empty jail.
OPTIONS_LAUNCHER_FILES = {"prog.py", "adir", "afile", "jail"}


def run_options_launcher(box: Sandbox, options: str, form: str) -> Result:
    """Run a launcher that starts ``ran()`` under *form* with *options* (a Python expression).

    The sandbox holds ``OPTIONS_LAUNCHER_FILES`` first; see ``assert_refused``.
    """
    (box.path / "adir").mkdir(exist_ok=True)
    (box.path / "afile").touch()
    (box.path / "jail").mkdir(exist_ok=True)
    return box.run(_OPTIONS_LAUNCHER.replace("OPTIONS", options), form)


def assert_refused(box: Sandbox, result: Result, exc_class: str, texts: list[str]) -> None:
    """The options launcher caught *exc_class* naming *texts*; nothing forked, ran or was left behind.

    In *texts*, ``{dir}`` is the sandbox directory and ``{closed}`` the number
    of the fd that was not open.
    """
    assert result.returncode == 3, result
    assert "FORK ATTEMPTED" not in result.stderr, result
    raised = next(line for line in result.stderr.splitlines() if line.startswith("RAISED "))
    assert exc_class in raised.split()[1].split(","), result
    message = result.stderr.split("MESSAGE ", 1)[1]
    closed = result.stdout.split()[1]
    for text in texts:
        expected = text.format(dir=box.path, closed=closed)
        assert expected in message, f"{expected!r} not in the message: {message!r}"
    assert box.live_pids() == []
    assert not (box.path / "ran").exists(), "the function must never run"
    left = set(os.listdir(box.path)) - OPTIONS_LAUNCHER_FILES
    assert not left, f"a refused start left files behind: {sorted(left)}"


_fork_guard: list[int] = []  # forks seen while a forbid_fork() block runs; [-1] is the nesting sentinel


def _guarded_before_fork() -> None:
    if _fork_guard:
        _fork_guard.append(os.getpid())


def _guarded_child() -> None:
    if _fork_guard:
        os._exit(70)  # a forked copy of the test process must never run tests


os.register_at_fork(before=_guarded_before_fork, after_in_child=_guarded_child)


@contextmanager
def forbid_fork() -> Iterator[None]:
    """Fail the test if this (the test) process forks inside the block.

    For in-process checks of code that must raise before any fork. A child
    forked anyway leaves at once (exit 70) instead of running on as a copy of
    the test runner. (``subprocess`` does not run fork hooks: it may be used.)
    """
    assert not _fork_guard, "forbid_fork() blocks do not nest"
    _fork_guard.append(-1)
    try:
        yield
    finally:
        forks = _fork_guard[1:]
        _fork_guard.clear()
    assert not forks, f"the test process forked {len(forks)} time(s) where nothing may fork"


# Holds a pidfile's lock the way a program using daemondeco.Pidfile alone does: no state file beside it.
LOCK_HOLDER = """
import sys
import daemondeco
pidfile = daemondeco.Pidfile(sys.argv[1])
pidfile.acquire()
print("locked", flush=True)
sys.stdin.readline()
"""
