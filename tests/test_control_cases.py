"""reload / upgrade / status of pidfiles an operator points them at, and the DaemonProcess handle's restart view.

Each case runs ``python -m daemondeco`` (or a program) against real processes
and checks the exit code and the message naming what is wrong.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import Sandbox, alive, wait_until

# Holds a pidfile's lock the way a program using daemondeco.Pidfile alone does: no state file beside it.
LOCK_HOLDER = """
import sys
import daemondeco
pidfile = daemondeco.Pidfile(sys.argv[1])
pidfile.acquire()
print("locked", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def bare_holder(sandbox: Sandbox) -> subprocess.Popen[str]:
    holder = sandbox.popen(
        LOCK_HOLDER, str(sandbox.path / "d.pid"), name="holder.py", stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


@pytest.mark.parametrize(
    ("action", "message"),
    [
        pytest.param("reload", "keeps no state file", id="reload"),
        pytest.param(
            "upgrade", "keeps no state file next to its pidfile: an upgrade cannot be acknowledged", id="upgrade"
        ),
    ],
)
def test_a_pidfile_held_by_a_program_without_state_cannot_be_reloaded_or_upgraded(
    sandbox: Sandbox, bare_holder: subprocess.Popen[str], action: str, message: str
) -> None:
    result = sandbox.run_module(action, str(sandbox.path / "d.pid"))
    assert result.returncode == 1, result
    assert message in result.stderr and str(bare_holder.pid) in result.stderr, result
    assert alive(bare_holder.pid), "nothing was signalled"
    code, report = status_json(sandbox)
    assert code == 0 and report["pid"] == bare_holder.pid and report["state"] == "starting"


def status_json(sandbox: Sandbox) -> tuple[int, dict[str, object]]:
    result = sandbox.run_module("status", str(sandbox.path / "d.pid"), "--json")
    return result.returncode, json.loads(result.stdout)


SLOW_RELOAD = """
import os, sys, threading, time
from pathlib import Path
from daemondeco import daemon, notify_ready

HERE = Path(__file__).resolve().parent

def on_reload():
    (HERE / "reloading").write_text(str(os.getpid()))
    time.sleep(30)

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify", on_reload=on_reload)
def main():
    notify_ready()
    while True:
        time.sleep(0.05)

sys.exit(main.cli())
"""


def test_a_reload_that_does_not_finish_in_time_fails_naming_the_timeout(sandbox: Sandbox) -> None:
    pid = sandbox.start_daemon(SLOW_RELOAD, "start")
    result = sandbox.run_module("reload", str(sandbox.path / "d.pid"), "--timeout", "1.5")
    assert result.returncode == 1, result
    assert f"daemon (pid {pid}) did not finish its reload within 1.5 s" in result.stderr, result
    assert (sandbox.path / "reloading").read_text() == str(pid), "the reload had started"
    assert alive(pid)


def test_a_supervised_handle_shows_when_the_next_worker_starts(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
import json, os, sys, time
from pathlib import Path
import daemondeco
from daemondeco import process_daemonize

HERE = Path(__file__).resolve().parent

@process_daemonize(pidfile=HERE / "d.pid", stdout=HERE / "d.log", restart="on-failure", restart_delay=30.0)
def work():
    (HERE / "ran").write_text(str(os.getpid()))
    sys.exit(3)

handle = work()
deadline = time.monotonic() + 10
while handle.next_restart_in is None and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"pid": handle.pid, "next": handle.next_restart_in, "worker": handle.worker_pid}), flush=True)
handle.stop()
print(json.dumps({"running": handle.is_running(), "next": handle.next_restart_in}))
""",
    )
    assert result.returncode == 0, result
    waiting, stopped = (json.loads(line) for line in result.stdout.splitlines())
    assert isinstance(waiting["next"], float) and 0 < waiting["next"] <= 30, waiting
    assert waiting["worker"] is None, "no worker while the supervisor waits"
    assert stopped == {"running": False, "next": None}
    wait_until(lambda: not alive(waiting["pid"]), what="the supervisor gone")


@pytest.mark.parametrize(
    "plant",
    [
        pytest.param("dir", id="a-directory"),
        pytest.param("", id="empty"),
        pytest.param('{"state": "ready", "pid": ', id="torn-json"),
        pytest.param('["ready"]', id="not-an-object"),
    ],
)
def test_status_of_a_holder_whose_state_file_is_unusable_says_starting(
    sandbox: Sandbox, bare_holder: subprocess.Popen[str], plant: str
) -> None:
    state = sandbox.path / "d.pid.state"
    if plant == "dir":
        state.mkdir()
    else:
        state.write_text(plant)
    code, report = status_json(sandbox)
    assert code == 0, report
    assert report["pid"] == bare_holder.pid and report["state"] == "starting" and report["status"] is None, report
    text = sandbox.run_module("status", str(sandbox.path / "d.pid"))
    assert text.returncode == 0 and str(bare_holder.pid) in text.stdout, text


def test_a_fifo_planted_at_the_state_path_is_left_alone_and_the_daemon_still_starts(sandbox: Sandbox) -> None:
    import os
    import stat

    state = sandbox.path / "d.pid.state"
    os.mkfifo(state)
    pid = sandbox.start_daemon(SLOW_RELOAD, "start")
    assert stat.S_ISFIFO(os.lstat(state).st_mode), "never truncated, replaced or written"
    code, report = status_json(sandbox)
    assert code == 0 and report["pid"] == pid and report["state"] == "starting", report
    refused = sandbox.run_module("reload", str(sandbox.path / "d.pid"))
    assert refused.returncode == 1 and "keeps no state file" in refused.stderr, refused
    assert sandbox.run_module("stop", str(sandbox.path / "d.pid")).returncode == 0
    assert not alive(pid)


def test_control_errors_cross_a_process_pool_with_their_details(sandbox: Sandbox) -> None:
    """A job in a ProcessPoolExecutor that reloads, upgrades or starts a daemon: the caller gets the same error back."""
    result = sandbox.run(
        """
import json, pickle
from concurrent.futures import ProcessPoolExecutor
import daemondeco

def fail(kind):
    if kind == "running":
        raise daemondeco.AlreadyRunningError("/run/a.pid", 42, key="account='x'")
    if kind == "reload":
        raise daemondeco.ReloadError("failed to reload", pid=42, daemon_traceback="Traceback: boom", running=True)
    if kind == "upgrade":
        raise daemondeco.UpgradeError("not upgraded", pid=43, daemon_traceback=None, running=False)
    first = daemondeco.AlreadyRunningError("/run/w-1.pid", 44)
    raise daemondeco.GroupStartError({1: first}, 4)

out = {}
with ProcessPoolExecutor(1) as pool:
    for kind in ("running", "reload", "upgrade", "group"):
        try:
            pool.submit(fail, kind).result()
        except daemondeco.DaemonError as exc:
            out[kind] = [type(exc).__name__, str(exc), getattr(exc, "pid", None), getattr(exc, "running", None)]
print(json.dumps(out))
""",
    )
    assert result.returncode == 0, result
    out = json.loads(result.stdout)
    assert out["running"][0] == "AlreadyRunningError" and out["running"][2] == 42
    assert "already running for account='x'" in out["running"][1]
    assert out["reload"][0] == "ReloadError" and out["reload"][2:] == [42, True]
    assert "Traceback: boom" in out["reload"][1]
    assert out["upgrade"][0] == "UpgradeError" and out["upgrade"][2:] == [43, False]
    assert out["group"][0] == "GroupStartError" and "/run/w-1.pid" in out["group"][1] and out["group"][2] == 44


# -- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize("action", ["reload", "upgrade"])
@pytest.mark.parametrize("value", ["0", "soon"])
def test_a_bad_timeout_is_a_usage_error_naming_it(sandbox: Sandbox, action: str, value: str) -> None:
    result = sandbox.run_module(action, str(sandbox.path / "d.pid"), "--timeout", value)
    assert result.returncode == 2, result
    assert "--timeout" in result.stderr and value in result.stderr, result


def test_a_name_the_terminal_cannot_encode_is_shown_escaped(sandbox: Sandbox) -> None:
    result = sandbox.run_module("status", str(sandbox.path / "café.pid"), PYTHONIOENCODING="ascii:strict")
    assert result.returncode == 3, result
    assert "caf\\xe9.pid" in result.stdout + result.stderr, result


def test_ctrl_c_in_the_foreground_run_exits_130(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
import sys
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid")
def main():
    raise KeyboardInterrupt

sys.exit(main.cli())
""",
        "run",
    )
    assert result.returncode == 130, result
    assert not (sandbox.path / "d.pid").exists() or daemondeco_unlocked(sandbox)


def daemondeco_unlocked(sandbox: Sandbox) -> bool:
    import daemondeco

    return daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() is None


# -- pidfiles that are not regular files ----------------------------------------------------


@pytest.mark.parametrize("kind", ["directory", "socket"])
def test_a_pidfile_path_that_is_no_regular_file_fails_the_start_naming_it(sandbox: Sandbox, kind: str) -> None:
    import socket

    path = sandbox.path / "d.pid"
    keep = None
    if kind == "directory":
        path.mkdir()
    else:
        keep = socket.socket(socket.AF_UNIX)
        keep.bind(str(path))
    try:
        result = sandbox.run(
            """
import sys
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
def main():
    (HERE / "ran").touch()

sys.exit(main.cli())
""",
            "start",
        )
    finally:
        if keep is not None:
            keep.close()
    assert result.returncode == 1, result
    assert str(path) in result.stderr and "regular file" in result.stderr, result
    assert not (sandbox.path / "ran").exists() and sandbox.live_pids() == []


def test_a_pidfile_shows_whether_it_is_held(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
import daemondeco
pidfile = daemondeco.Pidfile("d.pid")
print(repr(pidfile))
pidfile.acquire()
print(repr(pidfile))
""",
    )
    assert result.returncode == 0, result
    free, held = result.stdout.splitlines()
    assert free == f"Pidfile({str(sandbox.path / 'd.pid')!r}, not held)"
    assert held.startswith(f"Pidfile({str(sandbox.path / 'd.pid')!r}, held, pid ")
