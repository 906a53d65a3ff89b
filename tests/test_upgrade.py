"""Zero-downtime upgrade (issue 10, point 3): the sockets and the pidfile's lock pass to a successor.

The server script of ``test_sockets`` (``APP``) answers each connection with
its pid, writes what it saw into its report right before ``notify_ready()``
(the pidfile's content among it), and stops accepting in ``on_drain``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import Sandbox, alive, open_fds, proc_stat, read_pid, wait_exit, wait_until
from test_sockets import APP, REPORTER, App, ask, free_port

import daemondeco

# The successor waits on this FIFO before it gets ready when the file SLOW exists.
SLOW_APP = APP.replace(
    "    report = describe()\n",
    '    if os.path.exists("SLOW"):\n        open("gate").read()\n    report = describe()\n',
)


class Load:
    """A client opening a connection to 127.0.0.1:*port* every millisecond, counting what it sees."""

    def __init__(self, port: int, limit: int = 20_000, seconds: float = 20.0) -> None:
        self.port = port
        self.limit = limit
        self.seconds = seconds
        self.answers: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.tries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and self.tries < self.limit and time.monotonic() < deadline:
            self.tries += 1
            try:
                pid = ask(socket.AF_INET, ("127.0.0.1", self.port))
                self.answers[pid] = self.answers.get(pid, 0) + 1
            except OSError as exc:
                self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
            except ValueError:  # an empty answer: the connection was closed unanswered
                self.errors["unanswered"] = self.errors.get("unanswered", 0) + 1
            self._stop.wait(0.001)

    def wait_for(self, pid: int) -> None:
        wait_until(lambda: pid in self.answers, what=f"an answer from {pid}")


class PidfileWatch:
    """Reads the pidfile's lock holder continuously; records every pid seen and every 'not running'."""

    def __init__(self, path: str) -> None:
        self.pidfile = daemondeco.Pidfile(path)
        self.seen: list[int | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PidfileWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self.pidfile.locked_by()
            if not self.seen or self.seen[-1] != pid:
                self.seen.append(pid)
            self._stop.wait(0.0005)


def started(sandbox: Sandbox, port: int, code: str = APP) -> App:
    app = App(sandbox, {"http": f"tcp://127.0.0.1:{port}"})
    app.script.write_text(code)
    result = app.run("start")
    assert result.returncode == 0, result
    return app


def fresh_report(app: App, pid: int) -> dict[str, object]:
    """The report of the daemon *pid* (the successor rewrites the file)."""
    wait_until(
        lambda: app.report_path.exists() and json.loads(app.report_path.read_text())["pid"] == pid,
        what=f"the report of {pid}",
    )
    data: dict[str, object] = json.loads(app.report_path.read_text())
    return data


def test_upgrade_under_load_refuses_and_resets_nothing(sandbox: Sandbox) -> None:
    port = free_port()
    app = started(sandbox, port)
    old = read_pid(app.pidfile)
    old_inode = app.report()["sockets"]["http"]["inode"]  # type: ignore[index]
    with PidfileWatch(str(app.pidfile)) as watch, Load(port) as load:
        load.wait_for(old)
        result = sandbox.run_module("upgrade", str(app.pidfile))
        assert result.returncode == 0, result
        new = read_pid(app.pidfile)
        assert new != old
        assert f"upgraded (pid {old} -> {new})" in result.stdout, result
        load.wait_for(new)
        assert wait_exit(old), "the old daemon drained and left"
        # At least 100 connections in all: on a loaded machine the upgrade may take fewer tries.
        wait_until(lambda: load.tries >= 100, what="100 connections")
    assert load.errors == {}, f"{load.errors} in {load.tries} connections"
    assert load.tries >= 100, "the load ran through the upgrade"
    assert set(load.answers) == {old, new}
    assert watch.seen == [old, new], "the lock was held all along; the pid changed once"
    report = fresh_report(app, new)
    assert report["pidfile"] == str(old), "the successor was not yet named in the pidfile before it was ready"
    assert report["sockets"]["http"]["inode"] == old_inode, "the same listening socket"  # type: ignore[index]
    assert report["environ"] == []
    status = sandbox.run_module("status", str(app.pidfile))
    assert status.returncode == 0 and f"pid {new}" in status.stdout, status
    assert app.run("stop").returncode == 0
    assert not app.pidfile.exists()


def test_a_failing_successor_leaves_the_old_daemon_serving(sandbox: Sandbox) -> None:
    port = free_port()
    app = started(sandbox, port)
    old = read_pid(app.pidfile)
    (sandbox.path / "FAIL").touch()  # the "new version" raises before it is ready
    with PidfileWatch(str(app.pidfile)) as watch:
        result = app.run("upgrade")
    assert result.returncode == 1, result
    assert "this version is broken" in result.stderr and "Traceback" in result.stderr, result
    assert "keeps serving" in result.stderr
    assert watch.seen == [old], "the pidfile was never touched"
    assert read_pid(app.pidfile) == old
    assert ask(socket.AF_INET, ("127.0.0.1", port)) == old
    assert sandbox.run_module("status", str(app.pidfile)).returncode == 0
    assert [pid for pid in sandbox.live_pids() if pid != old] == [], "the successor is gone"
    # Fixed, the next upgrade goes through.
    (sandbox.path / "FAIL").unlink()
    assert app.run("upgrade").returncode == 0
    new = read_pid(app.pidfile)
    assert new != old and ask(socket.AF_INET, ("127.0.0.1", port)) in (old, new)
    assert wait_exit(old)
    assert app.run("stop").returncode == 0


def test_an_upgrade_during_an_upgrade_is_refused(sandbox: Sandbox) -> None:
    port = free_port()
    app = started(sandbox, port, SLOW_APP)
    old = read_pid(app.pidfile)
    os.mkfifo(sandbox.path / "gate")
    (sandbox.path / "SLOW").touch()
    first = subprocess.Popen(
        [sys.executable, "-m", "daemondeco", "upgrade", str(app.pidfile)],
        cwd=sandbox.path,
        env=sandbox.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sandbox.extra_pids.append(first.pid)
    state = sandbox.path / "app.pid.state"
    wait_until(lambda: '"upgrading"' in state.read_text(), what="the upgrade in progress")
    second = sandbox.run_module("upgrade", str(app.pidfile))
    assert second.returncode == 1, second
    assert "already being upgraded" in second.stderr, second
    assert sandbox.run_module("status", str(app.pidfile)).returncode == 0
    with open(sandbox.path / "gate", "w") as gate:  # let the successor get ready
        gate.write("go\n")
    out, err = first.communicate(timeout=30)
    assert first.returncode == 0, (out, err)
    assert read_pid(app.pidfile) != old
    assert wait_exit(old)
    assert app.run("stop").returncode == 0


def test_upgrade_refusals(sandbox: Sandbox) -> None:
    app = App(sandbox, None)  # no listen=
    not_running = app.run("upgrade")
    assert not_running.returncode == 7, not_running
    assert app.run("start").returncode == 0
    pid = read_pid(app.pidfile)
    refused = sandbox.run_module("upgrade", str(app.pidfile))
    assert refused.returncode == 1, refused
    assert "nothing to hand over; use restart" in refused.stderr, refused
    assert read_pid(app.pidfile) == pid and alive(pid)
    assert app.run("stop").returncode == 0


def test_restart_of_a_listening_daemon_hands_over(sandbox: Sandbox) -> None:
    port = free_port()
    app = started(sandbox, port)
    old = read_pid(app.pidfile)
    with PidfileWatch(str(app.pidfile)) as watch, Load(port, seconds=10) as load:
        load.wait_for(old)
        result = app.run("restart")
        assert result.returncode == 0, result
        new = read_pid(app.pidfile)
        load.wait_for(new)
    assert watch.seen == [old, new]
    assert load.errors == {}
    assert wait_exit(old)
    assert app.run("stop").returncode == 0


def test_the_upgrade_method_returns_the_successor_pid(sandbox: Sandbox) -> None:
    port = free_port()
    app = started(sandbox, port)
    old = read_pid(app.pidfile)
    result = sandbox.run(
        f"""
        from daemondeco import daemon
        @daemon(pidfile={str(app.pidfile)!r}, listen={{"http": "tcp://127.0.0.1:{port}"}})
        def main():
            pass
        print(main.upgrade(timeout=20))
        """,
        name="control.py",
    )
    assert result.returncode == 0, result
    new = int(result.stdout)
    assert new == read_pid(app.pidfile) != old
    assert app.run("stop").returncode == 0


def _fd_kinds(pid: int, listening: int) -> list[str]:
    """What the fds of *pid* point to: pipes without their inode (each generation makes its own), and
    connections left out (the load's, accepted and answered at any moment); the listening socket kept."""
    kinds = []
    for target in open_fds(pid).values():
        if target.startswith("pipe:"):
            kinds.append("pipe")
        elif not target.startswith("socket:") or target == f"socket:[{listening}]":
            kinds.append(target)
    return sorted(kinds)


def _upgrades(sandbox: Sandbox, count: int) -> None:
    port = free_port()
    app = started(sandbox, port)
    first = read_pid(app.pidfile)
    listening = app.report()["sockets"]["http"]["inode"]  # type: ignore[index]
    fds_before = _fd_kinds(first, listening)
    pids = [first]
    with Load(port, limit=10**6, seconds=600) as load:
        for _ in range(count):
            result = sandbox.run_module("upgrade", str(app.pidfile))
            assert result.returncode == 0, result
            pids.append(read_pid(app.pidfile))
            assert wait_exit(pids[-2])
    assert load.errors == {}, load.errors
    last = pids[-1]
    assert len(set(pids)) == count + 1
    fds_after = _fd_kinds(last, listening)
    # A leak grows with every generation (10 or 50 here); one fd of slack for what a request holds for an instant.
    assert len(fds_after) <= len(fds_before) + 1, f"fds leaked across the generations: {fds_before} -> {fds_after}"
    assert {f for f in fds_after if f != "pipe"} == {f for f in fds_before if f != "pipe"}, (fds_before, fds_after)
    assert f"socket:[{listening}]" in fds_after, "the last generation serves on the first one's socket"
    assert sum(target.startswith("socket:") for target in open_fds(last).values()) <= 2, "no socket piles up"
    assert sandbox.live_pids() == [last], "every old daemon and launcher is gone"
    children = [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit() and (stat := proc_stat(int(entry))) and stat.ppid == last
    ]
    assert children == [], "no zombie (or other child) under the daemon"
    assert app.run("stop").returncode == 0


def test_ten_upgrades_in_a_row(sandbox: Sandbox) -> None:
    _upgrades(sandbox, 10)


@pytest.mark.stress
@pytest.mark.timeout(300)
def test_fifty_upgrades_in_a_row(sandbox: Sandbox) -> None:
    _upgrades(sandbox, 50)


HANGING_DRAIN_APP = APP.replace(
    'ready="notify", on_drain=drain,', 'ready="notify", on_drain=lambda: stopped.wait(), drain_timeout=0.5,'
)


def test_an_on_drain_that_hangs_is_cut_at_drain_timeout(sandbox: Sandbox) -> None:
    assert HANGING_DRAIN_APP != APP
    port = free_port()
    app = started(sandbox, port, HANGING_DRAIN_APP)
    old = read_pid(app.pidfile)
    began = time.monotonic()
    assert app.run("upgrade").returncode == 0
    assert wait_exit(old, timeout=10), "SIGTERM after drain_timeout ended the old daemon"
    assert time.monotonic() - began < 8
    new = read_pid(app.pidfile)
    assert ask(socket.AF_INET, ("127.0.0.1", port)) == new
    assert app.run("stop").returncode == 0


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        pytest.param({"on_drain": 3}, "on_drain must be a callable", id="on_drain"),
        pytest.param({"drain_timeout": -1}, "drain_timeout must be a finite number", id="drain_timeout"),
        pytest.param({"drain_timeout": "5"}, "drain_timeout must be a number", id="drain_timeout-type"),
    ],
)
def test_bad_drain_options_are_refused_at_decoration(options: dict[str, object], problem: str) -> None:
    with pytest.raises((TypeError, ValueError), match=problem):
        daemondeco.daemon(**options)  # type: ignore[arg-type]


def test_a_successor_that_says_already_running_is_a_failed_upgrade(sandbox: Sandbox) -> None:
    """A program that exits 0 without starting while its pidfile is held (a naive pre-check) must not end the old."""
    naive = APP.replace(
        "sys.exit(main.cli())",
        'if daemondeco.Pidfile("app.pid").locked_by() is not None and sys.argv[1:] == ["start"]:\n'
        '    print("already running"); sys.exit(0)\n'
        "sys.exit(main.cli())",
    )
    port = free_port()
    app = started(sandbox, port, naive)
    old = read_pid(app.pidfile)
    result = app.run("upgrade")
    assert result.returncode == 1, result
    assert "no successor took over the pidfile" in result.stderr, result
    assert read_pid(app.pidfile) == old
    assert ask(socket.AF_INET, ("127.0.0.1", port)) == old
    assert app.run("stop").returncode == 0


# -- what the operator sees when the successor cannot take over ------------------------------------


def test_a_malformed_handover_variable_is_an_error_naming_it(sandbox: Sandbox) -> None:
    result = sandbox.run(
        REPORTER
        + """
@daemon(pidfile=os.path.abspath("a.pid"), listen={"web": "tcp://127.0.0.1:0"})
def main():
    print("ran")
sys.exit(main.cli())
""",
        "start",
        DAEMONDECO_HANDOVER="garbage",
    )
    assert result.returncode != 0, result
    assert "DAEMONDECO_HANDOVER='garbage'" in result.stderr and "malformed" in result.stderr, result
    assert "ran" not in result.stdout


UPGRADABLE = r"""
import os, sys, time
from pathlib import Path
import daemondeco
from daemondeco import daemon

HERE = Path(__file__).resolve().parent
if (HERE / "HANG").exists() and os.environ.get("DAEMONDECO_HANDOVER"):
    time.sleep(60)  # the new version's launcher hangs before it starts anything

def drain():
    raise RuntimeError("drain broke")

@daemon(pidfile=HERE / "u.pid", stdout=HERE / "u.log", listen={"web": f"unix://{HERE}/u.sock"}, ready="notify",
        ready_timeout=1.0, stop_timeout=1.0, on_drain=drain, workdir=str(HERE / "work"))
def main():
    daemondeco.notify_ready()
    while True:
        time.sleep(0.05)

sys.exit(main.cli())
"""


def start_upgradable(sandbox: Sandbox) -> int:
    (sandbox.path / "work").mkdir()
    return sandbox.start_daemon(UPGRADABLE, "start", pidfile="u.pid", name="up.py")


def test_an_upgrade_whose_new_launcher_hangs_is_abandoned_and_the_old_daemon_keeps_serving(sandbox: Sandbox) -> None:
    old = start_upgradable(sandbox)
    (sandbox.path / "HANG").touch()
    result = sandbox.run_module("upgrade", str(sandbox.path / "u.pid"))
    assert result.returncode == 1, result
    assert "the successor's launcher did not finish within 2 s" in result.stderr, result
    assert daemondeco.Pidfile(sandbox.path / "u.pid").locked_by() == old
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(str(sandbox.path / "u.sock"))  # still listening
    assert sandbox.run_module("status", str(sandbox.path / "u.pid")).returncode == 0


def test_an_upgrade_whose_workdir_is_gone_fails_naming_the_cause(sandbox: Sandbox) -> None:
    old = start_upgradable(sandbox)
    (sandbox.path / "work").rmdir()
    result = sandbox.run_module("upgrade", str(sandbox.path / "u.pid"))
    assert result.returncode == 1, result
    assert "its successor failed; the daemon keeps" in result.stderr, result
    assert f"workdir: the directory does not exist: '{sandbox.path / 'work'}'" in result.stderr, result
    assert daemondeco.Pidfile(sandbox.path / "u.pid").locked_by() == old


def test_an_on_drain_that_raises_is_logged_and_the_upgrade_completes(sandbox: Sandbox) -> None:
    old = start_upgradable(sandbox)
    result = sandbox.run_module("upgrade", str(sandbox.path / "u.pid"))
    assert result.returncode == 0, result
    new = read_pid(sandbox.path / "u.pid")
    assert new != old and daemondeco.Pidfile(sandbox.path / "u.pid").locked_by() == new
    wait_until(lambda: "on_drain raised RuntimeError: drain broke" in (sandbox.path / "u.log").read_text(), what="log")
    wait_until(lambda: not alive(old), what="the old daemon gone")


REFUSING = r"""
import os, signal, sys, time
from pathlib import Path
import daemondeco
from daemondeco import daemon

HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "u.pid", stdout=HERE / "u.log", listen={"web": f"unix://{HERE}/u.sock"}, ready="notify",
        {options})
def main():
    daemondeco.notify_ready()
    while True:
        time.sleep(0.05)

sys.exit(main.cli())
"""


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        pytest.param(
            'restart="on-failure"', "a supervised daemon (restart=) cannot be upgraded; use restart", id="restart"
        ),
        pytest.param(
            "signals={signal.SIGUSR2: lambda *_: None}",
            "the signals option handles SIGUSR2, which asks for an upgrade; use restart",
            id="sigusr2",
        ),
    ],
)
def test_a_daemon_that_cannot_hand_over_refuses_the_upgrade_and_keeps_serving(
    sandbox: Sandbox, options: str, refusal: str
) -> None:
    old = sandbox.start_daemon(REFUSING.replace("{options}", options), "start", pidfile="u.pid", name="up.py")
    result = sandbox.run_module("upgrade", str(sandbox.path / "u.pid"))
    assert result.returncode == 1, result
    assert refusal in result.stderr, result
    assert daemondeco.Pidfile(sandbox.path / "u.pid").locked_by() == old and alive(old)


# -- driving an upgrade from outside (used by the pins of test_regressions.py and by test_stress.py) ---


def _upgrade_cli(sandbox: Sandbox, app: App) -> subprocess.Popen[str]:
    cli = subprocess.Popen(
        [sys.executable, "-m", "daemondeco", "upgrade", "--timeout", "30", str(app.pidfile)],
        cwd=sandbox.path,
        env=sandbox.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sandbox.extra_pids.append(cli.pid)
    return cli


def _children(pid: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and (s := proc_stat(int(e))) and s.ppid == pid]
