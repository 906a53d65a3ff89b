"""Restart on crash (issue 9): a supervisor holds the pidfile and restarts the worker, with real processes.

Every timing is read from what the processes recorded (each worker appends
its pid and ``time.monotonic()`` to the file ``runs`` as its first act, and
its exit time to ``exits``), never from the test's own sleeps. The delays
asked for are checked within +-25 %.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import textwrap
from pathlib import Path

import pytest
from conftest import Sandbox, alive, open_fds, proc_stat, read_pid, wait_exit, wait_until, zombie_status_or_none

import daemondeco

HEADER = """
import os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready, notify_status

HERE = Path(__file__).resolve().parent

def start_number():
    with (HERE / "runs").open("a") as f:
        f.write(f"{os.getpid()} {time.monotonic()}\\n")
    return len((HERE / "runs").read_text().splitlines())

def leave(status):
    with (HERE / "exits").open("a") as f:
        f.write(f"{os.getpid()} {time.monotonic()}\\n")
    sys.exit(status)

def serve():
    try:
        notify_ready()  # inside the try: a stop after readiness always runs the finally
        while True:
            time.sleep(0.05)
    finally:
        (HERE / "finally").write_text(str(os.getpid()))

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", {options})
def main():
    n = start_number()
{body}

if __name__ == "__main__":
    sys.exit(main.cli())
"""


def write_app(sandbox: Sandbox, body: str, options: str) -> Path:
    code = HEADER.replace("{options}", options).replace(
        "{body}", textwrap.indent(textwrap.dedent(body).strip(), "    ")
    )
    return sandbox.write("app.py", code)


def start(sandbox: Sandbox, body: str, options: str) -> int:
    """Start the app; the supervisor's pid (the pidfile's)."""
    return sandbox.start_daemon(write_app(sandbox, body, options), "start")


def runs(sandbox: Sandbox, name: str = "runs") -> list[tuple[int, float]]:
    path = sandbox.path / name
    if not path.exists():
        return []
    return [(int(pid), float(at)) for pid, at in (line.split() for line in path.read_text().splitlines())]


def status_json(sandbox: Sandbox) -> tuple[int, dict[str, object]]:
    result = sandbox.run_module("status", str(sandbox.path / "d.pid"), "--json")
    return result.returncode, json.loads(result.stdout)


def log(sandbox: Sandbox) -> str:
    path = sandbox.path / "d.log"
    return path.read_text() if path.exists() else ""


def near(value: float, expected: float, tolerance: float = 0.25) -> bool:
    return expected * (1 - tolerance) <= value <= expected * (1 + tolerance)


# -- restarts and their delays -------------------------------------------------


def test_three_crashes_restart_after_1_2_4_seconds_under_one_supervisor(sandbox: Sandbox) -> None:
    supervisor = start(
        sandbox,
        "if n <= 3:\n    leave(1)\nserve()",
        'ready="start", restart="on-failure", restart_delay=1.0, restart_backoff=2.0',
    )
    wait_until(lambda: len(runs(sandbox)) >= 4, timeout=20, what="the fourth start")
    starts, exits = runs(sandbox), runs(sandbox, "exits")
    delays = [starts[k + 1][1] - exits[k][1] for k in range(3)]
    assert [near(d, e) for d, e in zip(delays, (1, 2, 4), strict=True)] == [True] * 3, delays
    pids = [pid for pid, _ in starts]
    assert len(set(pids)) == 4 and supervisor not in pids
    assert read_pid(sandbox.path / "d.pid") == supervisor and alive(supervisor)
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() == supervisor
    worker = pids[-1]
    stat = proc_stat(worker)
    assert stat is not None and stat.ppid == supervisor and stat.pgrp == worker  # its own process group
    code, report = status_json(sandbox)
    assert code == 0 and report["pid"] == supervisor
    assert report["worker_pid"] == worker and report["restarts"] == 3 and report["state"] == "ready"
    assert isinstance(report["last_exit"], dict) and report["last_exit"]["status"] == 1
    text = sandbox.run_module("status", str(sandbox.path / "d.pid")).stdout
    assert f"worker pid {worker}" in text and "3 restarts" in text and "last exit: exit status 1" in text
    assert log(sandbox).count("exited with status 1; restarting in") == 3
    assert "restarting in 4 s (restart 3)" in log(sandbox)


def test_a_crash_after_restart_reset_after_of_uptime_waits_restart_delay_again(sandbox: Sandbox) -> None:
    start(
        sandbox,
        """
        if n <= 2:
            leave(1)
        if n == 3:
            time.sleep(1.3)
            leave(1)
        serve()
        """,
        'ready="start", restart="on-failure", restart_delay=1.0, restart_backoff=2.0, restart_reset_after=1.0',
    )
    wait_until(lambda: len(runs(sandbox)) >= 4, timeout=20, what="the fourth start")
    starts, exits = runs(sandbox), runs(sandbox, "exits")
    delays = [starts[k + 1][1] - exits[k][1] for k in range(3)]
    assert near(delays[0], 1) and near(delays[1], 2), delays  # growing while it crashes at once
    assert near(delays[2], 1), delays  # 1.3 s of uptime > restart_reset_after: back to restart_delay


def test_a_crash_loop_gives_up_at_the_start_limit_and_releases_the_pidfile(sandbox: Sandbox) -> None:
    supervisor = start_short_lived(
        sandbox,
        'raise RuntimeError("broken dependency")',
        'ready="start", restart="on-failure", restart_delay=0.05, restart_backoff=1.0, start_limit=(3, 30.0)',
    )
    assert wait_exit(supervisor, 15)
    assert len(runs(sandbox)) == 3  # 3 starts allowed; the 4th would be more than 3 within 30 s
    status = zombie_status_or_none(supervisor)
    if status is not None:
        assert os.waitstatus_to_exitcode(status) == 1
    text = log(sandbox)
    assert "start_limit=(3, 30.0) reached (3 starts within 30 s): giving up" in text
    assert "RuntimeError: broken dependency" in text  # the last worker's traceback
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() is None
    assert not (sandbox.path / "d.pid").exists()
    # The state file stays as the record of how the service ended, for status (issue 18, item 2).
    state = json.loads((sandbox.path / "d.pid.state").read_text())
    assert state["state"] == "exited" and state["pid"] == supervisor, state
    last = state["last_exit"]
    assert last["status"] == 1 and last["error"] == "RuntimeError: broken dependency", last
    assert sandbox.live_pids() == []


def test_kill_9_of_the_worker_restarts_it(sandbox: Sandbox) -> None:
    supervisor = start(sandbox, "serve()", 'restart="on-failure", restart_delay=0.1')
    wait_until(lambda: len(runs(sandbox)) == 1)
    first = runs(sandbox)[0][0]
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(runs(sandbox)) == 2, what="a second worker")
    second = runs(sandbox)[1][0]
    assert alive(second) and second != first
    wait_until(lambda: status_json(sandbox)[1]["worker_pid"] == second)
    code, report = status_json(sandbox)
    assert code == 0 and report["pid"] == supervisor and report["restarts"] == 1
    assert isinstance(report["last_exit"], dict) and report["last_exit"]["signal"] == "SIGKILL"
    assert f"worker {first} was killed by SIGKILL; restarting in 0.1 s" in log(sandbox)


def test_kill_9_of_the_supervisor_takes_the_worker_with_it(sandbox: Sandbox) -> None:
    supervisor = start(sandbox, "serve()", 'restart="always"')
    wait_until(lambda: len(runs(sandbox)) == 1)
    worker = runs(sandbox)[0][0]
    os.kill(supervisor, signal.SIGKILL)
    assert wait_exit(worker, 1.0), "the worker outlived its supervisor by more than 1 s"
    result = sandbox.run_file(sandbox.path / "app.py", "status")
    assert result.returncode in (1, 3) and "not running" in result.stdout, result
    assert sandbox.live_pids() == []


def test_stop_runs_the_workers_finally_never_restarts_and_exits_0(sandbox: Sandbox) -> None:
    supervisor = start(sandbox, "serve()", 'ready="notify", restart="always", restart_delay=0.05')
    wait_until(lambda: len(runs(sandbox)) == 1)
    worker = runs(sandbox)[0][0]
    result = sandbox.run_file(sandbox.path / "app.py", "stop")
    assert result.returncode == 0, result
    assert (sandbox.path / "finally").read_text() == str(worker)
    assert not alive(supervisor) and not alive(worker)
    status = zombie_status_or_none(supervisor)
    if status is not None:
        assert os.waitstatus_to_exitcode(status) == 0
    assert len(runs(sandbox)) == 1 and sandbox.live_pids() == []
    assert not (sandbox.path / "d.pid").exists()


def test_a_stop_while_waiting_to_restart_ends_at_once(sandbox: Sandbox) -> None:
    supervisor = start(sandbox, "leave(2)", 'ready="start", restart="on-failure", restart_delay=30.0')
    wait_until(lambda: status_json(sandbox)[1].get("state") == "restarting", what="the wait before a restart")
    code, report = status_json(sandbox)
    assert code == 0 and report["worker_pid"] is None and report["restarts"] == 1
    assert isinstance(report["next_restart_in"], float) and 20 < report["next_restart_in"] <= 30
    text = sandbox.run_module("status", str(sandbox.path / "d.pid")).stdout
    assert "no worker" in text and "next restart in" in text
    result = sandbox.run_file(sandbox.path / "app.py", "stop")
    assert result.returncode == 0 and not alive(supervisor)
    assert len(runs(sandbox)) == 1


def test_a_first_start_that_fails_is_a_startup_error_and_is_not_retried(sandbox: Sandbox) -> None:
    write_app(
        sandbox,
        'raise ValueError("bad configuration")',
        'ready="notify", restart="always", restart_delay=0.05',
    )
    result = sandbox.run_file(sandbox.path / "app.py", "start")
    assert result.returncode == 1, result
    assert "ValueError: bad configuration" in result.stderr
    assert len(runs(sandbox)) == 1
    assert "before it was ready: not restarted" in log(sandbox)
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() is None
    assert sandbox.live_pids() == []


def start_short_lived(sandbox: Sandbox, body: str, options: str) -> int:
    """Start an app whose supervisor may be gone before the launcher's return: its pid from the launcher's line."""
    result = sandbox.run_file(write_app(sandbox, body, options), "start")
    assert result.returncode == 0, result
    return int(result.stdout.split("(pid ")[1].split(")")[0])


def test_exit_0_with_on_failure_is_not_restarted(sandbox: Sandbox) -> None:
    supervisor = start_short_lived(sandbox, "leave(0)", 'ready="start", restart="on-failure", restart_delay=0.05')
    assert wait_exit(supervisor, 10)
    assert len(runs(sandbox)) == 1
    status = zombie_status_or_none(supervisor)
    if status is not None:
        assert os.waitstatus_to_exitcode(status) == 0
    assert "does not restart it" in log(sandbox)
    assert not (sandbox.path / "d.pid").exists()


@pytest.mark.parametrize(
    ("mode", "exit_code", "restarted"),
    [
        pytest.param("on-abnormal", 1, False, id="on-abnormal-exit-1"),
        pytest.param("always", 0, True, id="always-exit-0"),
        pytest.param("on-failure", 7, False, id="prevented-exit-code"),
    ],
)
def test_restart_conditions(sandbox: Sandbox, mode: str, exit_code: int, restarted: bool) -> None:
    options = f'ready="start", restart="{mode}", restart_delay=0.05, restart_prevent_exit_codes=(7,)'
    supervisor = start_short_lived(sandbox, f"if n == 1:\n    leave({exit_code})\nserve()", options)
    if restarted:
        wait_until(lambda: len(runs(sandbox)) == 2, what="a restart")
        assert alive(supervisor)
    else:
        assert wait_exit(supervisor, 10)
        assert len(runs(sandbox)) == 1
        status = zombie_status_or_none(supervisor)
        if status is not None:
            assert os.waitstatus_to_exitcode(status) == exit_code


def test_reload_is_forwarded_to_the_worker_and_acknowledged(sandbox: Sandbox) -> None:
    app = write_app(
        sandbox, "serve()", 'restart="on-failure", on_reload=lambda: (HERE / "reloaded").write_text(str(os.getpid()))'
    )
    supervisor = sandbox.start_daemon(app, "start")
    wait_until(lambda: len(runs(sandbox)) == 1)
    result = sandbox.run_file(app, "reload")
    assert result.returncode == 0, result
    assert (sandbox.path / "reloaded").read_text() == str(runs(sandbox)[0][0])
    assert alive(supervisor) and len(runs(sandbox)) == 1


def _cycles(sandbox: Sandbox, cycles: int) -> None:
    """*cycles* crashes in a row: no zombie and the same fds in the supervisor afterwards."""
    supervisor = start(
        sandbox,
        f"""
        if n == 1:
            while not (HERE / "go").exists():
                time.sleep(0.01)
        if n <= {cycles}:
            os._exit(1)
        serve()
        """,
        'ready="start", restart="on-failure", restart_delay=0.0, start_limit=None',
    )
    wait_until(lambda: len(runs(sandbox)) == 1)
    # Once the first worker's readiness is relayed: until then the supervisor still holds the launcher's pipe.
    wait_until(lambda: status_json(sandbox)[1].get("state") == "ready")
    before = open_fds(supervisor)
    (sandbox.path / "go").touch()
    wait_until(lambda: len(runs(sandbox)) == cycles + 1, timeout=60, what=f"{cycles} restarts")
    wait_until(lambda: status_json(sandbox)[1].get("state") == "ready")
    after = open_fds(supervisor)
    # The same number, and the same files: only the worker's socket (a new one each time) may move.
    assert len(after) == len(before), (before, after)
    assert sorted(t for t in after.values() if "socket" not in t) == sorted(
        t for t in before.values() if "socket" not in t
    )
    children = [
        stat
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (stat := proc_stat(int(entry.name)))
        if stat.ppid == supervisor
    ]
    assert [stat.state for stat in children if stat.state == "Z"] == []
    assert [stat.pid for stat in children] == [runs(sandbox)[-1][0]]
    assert status_json(sandbox)[1]["restarts"] == cycles


def test_50_crash_restart_cycles_leave_no_zombie_and_no_fd(sandbox: Sandbox) -> None:
    _cycles(sandbox, 50)


@pytest.mark.stress
def test_200_crash_restart_cycles_leave_no_zombie_and_no_fd(sandbox: Sandbox) -> None:
    _cycles(sandbox, 200)


def test_a_supervised_process_daemonize_handle_shows_the_history(sandbox: Sandbox) -> None:
    result = sandbox.run_reporting(
        """
        import os, time
        from pathlib import Path
        from daemondeco import process_daemonize

        HERE = Path(__file__).resolve().parent

        @process_daemonize(restart="always", restart_delay=0.05)  # no pidfile: the history is kept all the same
        def work():
            with (HERE / "runs").open("a") as f:
                f.write(f"{os.getpid()} {time.monotonic()}\\n")
            time.sleep(60)

        handle = work()
        first = handle.worker_pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (  # ready as called: its whole line comes after
            (HERE / "runs").exists() and (HERE / "runs").read_text().endswith("\\n")
        ):
            time.sleep(0.01)
        os.kill(first, 9)
        while handle.worker_pid in (None, first) and time.monotonic() < deadline:
            time.sleep(0.01)
        report(pid=handle.pid, first=first, second=handle.worker_pid, restarts=handle.restarts,
               last=handle.last_exit, stopped=handle.stop(), running=handle.is_running())
        """
    )
    [seen] = result.reports()
    assert seen["first"] != seen["second"] and seen["second"] is not None and seen["restarts"] == 1
    assert seen["last"]["signal"] == "SIGKILL" and seen["stopped"] and not seen["running"]  # type: ignore[index]
    assert runs(sandbox)[0][0] == seen["first"]


def test_under_a_manager_that_restarts_a_daemon_warning_says_so(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import warnings
        from daemondeco import process_daemonize, DaemonWarning

        @process_daemonize(restart="on-failure")
        def work():
            pass

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            work().wait(10)
        print([str(w.message) for w in caught if issubclass(w.category, DaemonWarning)])
        """,
        SUPERVISOR_ENABLED="1",
    )
    assert result.returncode == 0, result
    assert "supervisord" in result.stdout and "autorestart" in result.stdout


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


# -- more restarts: the backoff's cap, a first worker that fails, a log gone, a child holding the channel ---


PLAIN_HEADER = """
import os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready

HERE = Path(__file__).resolve().parent

def start_number():
    with (HERE / "runs").open("a") as f:
        f.write(f"{os.getpid()}\\n")
    return len((HERE / "runs").read_text().splitlines())

def serve():
    notify_ready()
    while True:
        time.sleep(0.05)

@daemon(pidfile=HERE / "d.pid", stdout={stdout}, {options})
def main():
    n = start_number()
{body}

if __name__ == "__main__":
    sys.exit(main.cli())
"""


def write_plain_app(sandbox: Sandbox, body: str, options: str, stdout: str = 'HERE / "d.log"') -> Path:
    code = (
        PLAIN_HEADER.replace("{options}", options)
        .replace("{stdout}", stdout)
        .replace("{body}", textwrap.indent(textwrap.dedent(body).strip(), "    "))
    )
    return sandbox.write("app.py", code)


def started_pids(sandbox: Sandbox) -> list[int]:
    path = sandbox.path / "runs"
    return [int(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_backoff_that_overflows_is_capped_at_restart_max_delay(sandbox: Sandbox) -> None:
    app = write_plain_app(
        sandbox,
        "if n <= 3:\n    sys.exit(1)\nserve()",
        'ready="start", restart="on-failure", restart_delay=0.01, restart_backoff=1e200, restart_max_delay=0.2',
    )
    supervisor = sandbox.start_daemon(app, "start", pidfile="d.pid")
    wait_until(lambda: len(started_pids(sandbox)) >= 4, timeout=15, what="the fourth start")
    text = log(sandbox)
    assert "restarting in 0.01 s (restart 1)" in text, text
    assert "restarting in 0.2 s (restart 2)" in text and "restarting in 0.2 s (restart 3)" in text, text
    assert alive(supervisor) and daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() == supervisor


def test_a_first_worker_that_exits_before_ready_fails_the_start_with_its_status(sandbox: Sandbox) -> None:
    app = write_plain_app(sandbox, "os._exit(3)", 'ready="notify", restart="always", restart_delay=0.05')
    result = sandbox.run_file(app, "start")
    assert result.returncode == 1, result
    assert "3" in result.stderr and "ready" in result.stderr, result
    assert started_pids(sandbox) and len(started_pids(sandbox)) == 1, "a first start that fails is not retried"
    assert "before it was ready: not restarted" in log(sandbox)
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() is None
    wait_until(lambda: sandbox.live_pids() == [], what="every process gone")


def test_a_reload_whose_log_cannot_be_reopened_fails_naming_it_and_both_keep_running(
    sandbox: Sandbox,
) -> None:
    (sandbox.path / "logs").mkdir()
    app = write_plain_app(
        sandbox,
        "serve()",
        'ready="notify", restart="on-failure", on_reload=lambda: (HERE / "hup").write_text(str(os.getpid()))',
        stdout='HERE / "logs" / "d.log"',
    )
    supervisor = sandbox.start_daemon(app, "start")
    shutil.rmtree(sandbox.path / "logs")  # logrotate gone wrong: the directory is no more
    reloaded = sandbox.run_module("reload", str(sandbox.path / "d.pid"), timeout=15)
    # The worker's reload fails on the same path: the operator is told which, and both keep running.
    assert reloaded.returncode == 1, reloaded
    assert "failed to reload" in reloaded.stderr and str(sandbox.path / "logs" / "d.log") in reloaded.stderr
    assert alive(started_pids(sandbox)[-1]) and len(started_pids(sandbox)) == 1
    stderr = Path(f"/proc/{supervisor}/fd/2")
    wait_until(lambda: "reload: cannot reopen the log files" in stderr.read_text(), what="the supervisor's line")
    assert alive(supervisor)


def test_a_worker_whose_child_keeps_its_channel_is_still_restarted(sandbox: Sandbox) -> None:
    app = write_plain_app(
        sandbox,
        """
        if n == 1:
            if os.fork() == 0:  # a helper that outlives the worker, holding every inherited fd
                time.sleep(60)
                os._exit(0)
            notify_ready()
            time.sleep(0.3)
            sys.exit(1)
        serve()
        """,
        'ready="notify", restart="on-failure", restart_delay=0.05',
    )
    supervisor = sandbox.start_daemon(app, "start")
    wait_until(lambda: len(started_pids(sandbox)) >= 2, timeout=15, what="the restart")
    assert alive(supervisor) and alive(started_pids(sandbox)[1])
    assert "exited with status 1; restarting in" in log(sandbox)
    assert sandbox.run_file(app, "stop").returncode == 0


def test_a_worker_leaving_with_a_message_exits_1_with_it_in_the_log_and_is_restarted(sandbox: Sandbox) -> None:
    app = write_plain_app(
        sandbox,
        """
        if n == 1:
            notify_ready()
            sys.exit("fatal: the queue is gone")
        serve()
        """,
        'ready="notify", restart="on-failure", restart_delay=0.05',
    )
    supervisor = sandbox.start_daemon(app, "start")
    wait_until(lambda: len(started_pids(sandbox)) >= 2, timeout=15, what="the restart")
    text = log(sandbox)
    assert "fatal: the queue is gone" in text and "exited with status 1; restarting in" in text, text
    assert alive(supervisor)


# -- options checked at decoration time ------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "text"),
    [
        pytest.param({"restart": "sometimes"}, ValueError, "restart must be None or one of", id="mode"),
        pytest.param({"restart": "on_failure"}, ValueError, "did you mean 'on-failure'", id="mode-typo"),
        pytest.param({"restart": True}, TypeError, "restart must be None", id="mode-bool"),
        pytest.param({"restart_delay": -1}, ValueError, "restart_delay", id="delay"),
        pytest.param({"restart_backoff": 0.5}, ValueError, "restart_backoff must be at least 1", id="backoff"),
        pytest.param({"restart_max_delay": 0.5}, ValueError, "below restart_delay", id="max-delay"),
        pytest.param({"restart_reset_after": 0}, ValueError, "restart_reset_after", id="reset-after"),
        pytest.param({"start_limit": 5}, TypeError, "start_limit must be None or a tuple", id="limit-type"),
        pytest.param({"start_limit": (0, 10)}, ValueError, "start_limit[0]", id="limit-burst"),
        pytest.param({"start_limit": (5, float("nan"))}, ValueError, "start_limit[1]", id="limit-interval"),
        pytest.param({"restart_prevent_exit_codes": 1}, TypeError, "restart_prevent_exit_codes", id="codes"),
        pytest.param({"restart_prevent_exit_codes": (256,)}, ValueError, "not an exit status", id="code-range"),
        pytest.param({"instances": 0}, ValueError, "instances must be between", id="instances"),
    ],
)
def test_bad_restart_options_fail_at_decoration(options: dict[str, object], error: type, text: str) -> None:
    for decorator in (daemondeco.daemon, daemondeco.process_daemonize):
        if "instances" in options and decorator is daemondeco.daemon:
            continue
        with pytest.raises(error) as info:
            decorator(**{"restart": "on-failure", **options})  # type: ignore[call-overload]
        assert text in str(info.value)


def test_daemonize_refuses_restart_with_a_type_error() -> None:
    with pytest.raises(TypeError, match="daemonize\\(\\) has no function to run again"):
        daemondeco.daemonize(restart="always")  # type: ignore[call-arg]


def test_instances_belong_to_process_daemonize() -> None:
    with pytest.raises(TypeError, match="belongs on @process_daemonize"):
        daemondeco.daemon(instances=2)  # type: ignore[call-overload]


def test_under_notify_socket_the_supervisor_is_the_main_process_and_relays(sandbox: Sandbox) -> None:
    import subprocess
    import sys

    from test_systemd import NotifySocket

    listener = NotifySocket(str(sandbox.path / "notify.sock"), sandbox)
    try:
        app = write_app(
            sandbox,
            'notify_status("warming up")\nif n == 1:\n    leave(1)\nserve()',
            'ready="start", restart="on-failure", restart_delay=0.05',
        )
        with open(sandbox.path / "launcher.err", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(app), "start"],
                cwd=sandbox.path,
                env=sandbox.env(NOTIFY_SOCKET=listener.address, INVOCATION_ID="0123"),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        sandbox.extra_pids.append(proc.pid)
        ready = listener.until("READY", "1")
        assert ready[-1].get("MAINPID", str(proc.pid)) == str(proc.pid)  # never a worker's pid
        seen = listener.until("STATUS", "warming up")
        wait_until(lambda: len(runs(sandbox)) == 2, what="the restart")
        workers = [pid for pid, _ in runs(sandbox)]
        assert proc.pid not in workers
        assert all(m.get("MAINPID") in (None, str(proc.pid)) for m in [*ready, *seen])
        proc.terminate()
        assert proc.wait(10) == 0
        err_text = (sandbox.path / "launcher.err").read_text()
        assert "DaemonWarning" in err_text and "Restart=" in err_text
    finally:
        listener.close()


def test_a_long_restart_delay_without_a_cap_given_is_accepted() -> None:
    daemondeco.daemon(restart="always", restart_delay=120.0)  # the default 60 s cap follows it
    with pytest.raises(ValueError, match="below restart_delay"):
        daemondeco.daemon(restart="always", restart_delay=120.0, restart_max_delay=60.0)


def test_a_worker_that_ignores_sigterm_is_killed_with_its_group_after_stop_timeout(sandbox: Sandbox) -> None:
    supervisor = start(
        sandbox,
        """
        import signal, subprocess
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        (HERE / "grandchild").write_text(str(child.pid))
        notify_ready()
        while True:
            time.sleep(0.05)
        """,
        'ready="notify", restart="always", stop_timeout=0.5',
    )
    worker = runs(sandbox)[0][0]
    grandchild = int((sandbox.path / "grandchild").read_text())
    result = sandbox.run_file(sandbox.path / "app.py", "stop")
    assert result.returncode == 0, result
    assert not alive(worker) and not alive(supervisor)
    # SIGKILL to the group is queued at once; the grandchild (not the supervisor's child) dies as it is scheduled.
    wait_until(lambda: not alive(grandchild), timeout=5, what="the worker's group killed")
    assert f"worker {worker} outlived stop_timeout=0.5 s: SIGKILL" in log(sandbox)
    assert len(runs(sandbox)) == 1


def test_a_reload_between_two_workers_is_acknowledged_by_the_supervisor(sandbox: Sandbox) -> None:
    app = write_app(sandbox, "leave(2)", 'ready="start", restart="on-failure", restart_delay=30.0')
    sandbox.start_daemon(app, "start")
    wait_until(lambda: status_json(sandbox)[1].get("state") == "restarting", what="the wait before a restart")
    result = sandbox.run_file(app, "reload")
    assert result.returncode == 0, result
    assert len(runs(sandbox)) == 1


def test_the_first_workers_notify_extend_reaches_the_launcher(sandbox: Sandbox) -> None:
    supervisor = start(
        sandbox,
        """
        from daemondeco import notify_extend
        notify_extend(10)
        time.sleep(1.5)  # beyond ready_timeout=1: only the extension lets the start succeed
        serve()
        """,
        'ready="notify", ready_timeout=1.0, restart="on-failure"',
    )
    assert alive(supervisor) and len(runs(sandbox)) == 1


def test_a_death_within_startup_grace_is_a_startup_error_not_a_restart(sandbox: Sandbox) -> None:
    write_app(
        sandbox,
        'notify_ready()\ntime.sleep(0.2)\nraise RuntimeError("died right after ready")',
        'ready="notify", startup_grace=3.0, restart="always", restart_delay=0.05',
    )
    result = sandbox.run_file(sandbox.path / "app.py", "start")
    assert result.returncode == 1, result
    assert "RuntimeError: died right after ready" in result.stderr
    assert len(runs(sandbox)) == 1 and sandbox.live_pids() == []


def test_the_signals_option_reaches_the_worker_through_the_supervisor(sandbox: Sandbox) -> None:
    app = write_app(
        sandbox,
        "serve()",
        'ready="notify", restart="on-failure", '
        'signals={10: lambda signum, frame: (HERE / "usr1").write_text(str(os.getpid()))}',
    )
    supervisor = sandbox.start_daemon(app, "start")
    wait_until(lambda: len(runs(sandbox)) == 1)
    os.kill(supervisor, signal.SIGUSR1)
    wait_until((sandbox.path / "usr1").exists, what="the worker's SIGUSR1 handler")
    assert (sandbox.path / "usr1").read_text() == str(runs(sandbox)[0][0])
    assert alive(supervisor) and len(runs(sandbox)) == 1


@pytest.mark.parametrize(
    ("options", "error", "text"),
    [
        pytest.param(
            {"instances": "4"},
            TypeError,
            "instances must be a number of workers (int) or None, not str",
            id="instances-str",
        ),
        pytest.param(
            {"restart": "on-failure", "start_limit": (2.5, 10)},
            TypeError,
            "start_limit[0] must be a number of starts (int), not 2.5",
            id="start-limit-float",
        ),
        pytest.param(
            {"restart": "on-failure", "restart_prevent_exit_codes": [3, "4"]},
            TypeError,
            "restart_prevent_exit_codes items must be exit statuses (int), not str '4'",
            id="exit-code-str",
        ),
    ],
)
def test_bad_supervision_values_are_refused_at_decoration_naming_them(
    options: dict[str, object], error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as raised:
        daemondeco.process_daemonize(**options)  # type: ignore[call-overload]
    assert text in str(raised.value)


# -- ready="auto" (the default): the supervisor measures startup_grace (issue 18, item 1) ---------


def test_default_start_a_first_worker_exiting_within_the_grace_fails_the_start(sandbox: Sandbox) -> None:
    """A first worker that exits within startup_grace, even with status 0: StartupError, never restarted."""
    result = sandbox.run_file(write_app(sandbox, "time.sleep(0.2)\nleave(0)", 'restart="always"'), "start")
    assert result.returncode == 1, result
    assert "exited with status 0 before it was ready" in result.stderr, result
    assert "exited too quickly" in result.stderr, result
    assert len(runs(sandbox)) == 1, "a first start that failed is never restarted"
    assert not (sandbox.path / "d.pid").exists()
    assert sandbox.live_pids() == []


def test_default_start_a_running_worker_is_ready_after_the_grace(sandbox: Sandbox) -> None:
    """No notify_ready(): the supervisor says ready once the first worker ran startup_grace (1 s)."""
    import time

    supervisor = start(sandbox, "while True:\n    time.sleep(0.05)", 'restart="on-failure"')
    returned = time.monotonic()  # CLOCK_MONOTONIC, as the worker's record of its call
    [(worker, called)] = runs(sandbox)
    waited = returned - called
    assert waited >= 0.95, f"start returned {waited:.2f} s after the worker began, before startup_grace (1 s)"
    code, report = status_json(sandbox)
    assert code == 0 and report["state"] == "ready" and report["worker_pid"] == worker, report
    assert alive(supervisor)
