"""restart= and worker-group cases an operator meets, with real processes.

The supervisor's own lines go to its stderr (the daemon's log); where the log
file is gone, they are read through ``/proc/<pid>/fd/2``.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import Sandbox, alive, read_pid, wait_until

import daemondeco

HEADER = """
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


def write_app(sandbox: Sandbox, body: str, options: str, stdout: str = 'HERE / "d.log"') -> Path:
    code = (
        HEADER.replace("{options}", options)
        .replace("{stdout}", stdout)
        .replace("{body}", textwrap.indent(textwrap.dedent(body).strip(), "    "))
    )
    return sandbox.write("app.py", code)


def runs(sandbox: Sandbox) -> list[int]:
    path = sandbox.path / "runs"
    return [int(line) for line in path.read_text().splitlines()] if path.exists() else []


def log(sandbox: Sandbox) -> str:
    path = sandbox.path / "d.log"
    return path.read_text() if path.exists() else ""


# -- the supervisor ---------------------------------------------------------------------


def test_a_backoff_that_overflows_is_capped_at_restart_max_delay(sandbox: Sandbox) -> None:
    app = write_app(
        sandbox,
        "if n <= 3:\n    sys.exit(1)\nserve()",
        'ready="start", restart="on-failure", restart_delay=0.01, restart_backoff=1e200, restart_max_delay=0.2',
    )
    supervisor = sandbox.start_daemon(app, "start", pidfile="d.pid")
    wait_until(lambda: len(runs(sandbox)) >= 4, timeout=15, what="the fourth start")
    text = log(sandbox)
    assert "restarting in 0.01 s (restart 1)" in text, text
    assert "restarting in 0.2 s (restart 2)" in text and "restarting in 0.2 s (restart 3)" in text, text
    assert alive(supervisor) and daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() == supervisor


def test_a_first_worker_that_exits_before_ready_fails_the_start_with_its_status(sandbox: Sandbox) -> None:
    app = write_app(sandbox, "os._exit(3)", 'ready="notify", restart="always", restart_delay=0.05')
    result = sandbox.run_file(app, "start")
    assert result.returncode == 1, result
    assert "3" in result.stderr and "ready" in result.stderr, result
    assert runs(sandbox) and len(runs(sandbox)) == 1, "a first start that fails is not retried"
    assert "before it was ready: not restarted" in log(sandbox)
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() is None
    wait_until(lambda: sandbox.live_pids() == [], what="every process gone")


def test_a_reload_whose_log_cannot_be_reopened_fails_naming_it_and_both_keep_running(
    sandbox: Sandbox,
) -> None:
    (sandbox.path / "logs").mkdir()
    app = write_app(
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
    assert alive(runs(sandbox)[-1]) and len(runs(sandbox)) == 1
    stderr = Path(f"/proc/{supervisor}/fd/2")
    wait_until(lambda: "reload: cannot reopen the log files" in stderr.read_text(), what="the supervisor's line")
    assert alive(supervisor)


def test_a_worker_whose_child_keeps_its_channel_is_still_restarted(sandbox: Sandbox) -> None:
    app = write_app(
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
    wait_until(lambda: len(runs(sandbox)) >= 2, timeout=15, what="the restart")
    assert alive(supervisor) and alive(runs(sandbox)[1])
    assert "exited with status 1; restarting in" in log(sandbox)
    assert sandbox.run_file(app, "stop").returncode == 0


# -- worker groups and keyed workers ------------------------------------------------------

KEYED = """
import sys
from pathlib import Path
import daemondeco
from daemondeco import process_daemonize

HERE = Path(__file__).resolve().parent
"""


def test_a_pidfile_template_that_is_no_format_is_refused_at_decoration() -> None:
    with pytest.raises(ValueError, match=r"pidfile template '/tmp/sync-\{i\.pid'") as raised:
        daemondeco.process_daemonize(pidfile="/tmp/sync-{i.pid", instances=2)(print)
    assert "process_daemonize()" in str(raised.value)


@pytest.mark.parametrize(
    ("definition", "call", "error"),
    [
        pytest.param("def work(account):", "work('a', 'b', 'c')", "TypeError: work(): too many", id="wrong-arguments"),
        pytest.param("def work(**options):", "work()", "the call gives no value for {account}", id="missing-key"),
    ],
)
def test_a_keyed_call_that_gives_no_key_is_refused_before_any_fork(
    sandbox: Sandbox, definition: str, call: str, error: str
) -> None:
    result = sandbox.run(
        KEYED
        + f"""
@process_daemonize(pidfile=str(HERE / "job-{{account}}.pid"))
{definition}
    pass
{call}
print("started")
""",
    )
    assert result.returncode == 1, result
    assert error in result.stderr, result
    assert "started" not in result.stdout
    assert not list(sandbox.path.glob("job-*.pid")), "nothing was started"
    assert sandbox.live_pids() == []


def test_a_keyed_worker_with_plain_parameters_runs_once_per_key(sandbox: Sandbox) -> None:
    result = sandbox.run(
        KEYED
        + """
import time
@process_daemonize(pidfile=str(HERE / "job-{account}.pid"), ready="notify")
def work(account, pause=60):
    daemondeco.notify_ready()
    time.sleep(pause)
first = work("alpha")
try:
    work("alpha")
except daemondeco.AlreadyRunningError as exc:
    print("refused:", exc)
print(first.pid)
first.stop()
""",
    )
    assert result.returncode == 0, result
    assert "refused:" in result.stdout and "account='alpha'" in result.stdout, result
    pid = int(result.stdout.split()[-1])
    assert not alive(pid)
    assert not (sandbox.path / "job-alpha.pid").exists() or read_pid(sandbox.path / "job-alpha.pid") != pid


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


def test_a_worker_leaving_with_a_message_exits_1_with_it_in_the_log_and_is_restarted(sandbox: Sandbox) -> None:
    app = write_app(
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
    wait_until(lambda: len(runs(sandbox)) >= 2, timeout=15, what="the restart")
    text = log(sandbox)
    assert "fatal: the queue is gone" in text and "exited with status 1; restarting in" in text, text
    assert alive(supervisor)
