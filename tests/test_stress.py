"""Stress scenarios of issue 6, too slow for every run: marked ``stress``.

1,000 log rotations under a busy writer (defect 1), 300 start/stop cycles of
a CLI daemon, 30 launchers racing for one pidfile, 500 workers from one
subreaper caller and 200 launchers killed at random moments of their start
(the suite's variants of the last two are in tests/test_faults.py). Run by
``.ci/run`` once (``-m stress``); the default test command leaves them out.
"""

from __future__ import annotations

import signal
import subprocess

import pytest
from conftest import Sandbox, alive, read_pid, wait_exit
from test_faults import cut_start_rounds, run_many_workers
from test_reliability import names_pid, rotate_under_load

import daemondeco

pytestmark = pytest.mark.stress


@pytest.mark.timeout(600)
def test_1000_rotations_under_a_busy_writer(sandbox: Sandbox) -> None:
    rotate_under_load(sandbox, 1000)


CLI_DAEMON = """
import sys, time
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
def main():
    while True:
        time.sleep(1)

sys.exit(main.cli())
"""


@pytest.mark.timeout(600)
def test_300_start_stop_cycles(sandbox: Sandbox) -> None:
    script = sandbox.write("prog.py", CLI_DAEMON)
    pidfile = sandbox.path / "d.pid"
    pids = []
    for cycle in range(300):
        started = sandbox.run_file(script, "start")
        assert started.returncode == 0, f"cycle {cycle}: {started}"
        pid = read_pid(pidfile)
        pids.append(pid)
        stopped = sandbox.run_file(script, "stop")
        assert stopped.returncode == 0, f"cycle {cycle}: {stopped}"
        assert not alive(pid), f"cycle {cycle}: daemon {pid} survived its stop"
    assert len(set(pids)) == len(pids), "a start reported a daemon that was already there"
    status = sandbox.run_file(script, "status")
    assert status.returncode == 3, status
    assert not pidfile.exists()
    assert sandbox.live_pids() == []


# Each racer waits on its stdin, so all are released together; odd ones use
# the command line, even ones call the function.
RACER = """
import sys, time
from pathlib import Path
from daemondeco import AlreadyRunningError, daemon
HERE = Path(__file__).resolve().parent

@daemon(pidfile=HERE / "d.pid")
def main():
    while True:
        time.sleep(1)

print("WAITING", flush=True)
sys.stdin.readline()
if sys.argv[1] == "cli":
    sys.exit(main.cli(["start"]))
try:
    main()
except AlreadyRunningError as exc:
    print("ALREADY", exc.pid, flush=True)
"""


@pytest.mark.timeout(300)
def test_30_launchers_racing_for_one_pidfile(sandbox: Sandbox) -> None:
    script = sandbox.write("prog.py", RACER)
    forms = ["cli" if n % 2 else "call" for n in range(30)]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    launchers = [sandbox.popen_file(script, form, **pipes) for form in forms]
    outputs: list[tuple[int | None, str, str]] = []
    try:
        for launcher in launchers:
            assert launcher.stdout is not None and launcher.stdin is not None
            assert launcher.stdout.readline() == "WAITING\n"
        for launcher in launchers:
            assert launcher.stdin is not None
            launcher.stdin.close()  # go
        for launcher in launchers:
            assert launcher.stdout is not None and launcher.stderr is not None
            assert wait_exit(launcher.pid, 60), f"launcher {launcher.pid} hangs"
            launcher.wait()
            outputs.append((launcher.returncode, launcher.stdout.read(), launcher.stderr.read()))
    finally:
        for launcher in launchers:
            if launcher.poll() is None:
                launcher.kill()
                launcher.wait()
            for stream in (launcher.stdout, launcher.stderr):
                if stream is not None:
                    stream.close()

    pid = daemondeco.Pidfile(sandbox.path / "d.pid").locked_by()
    assert pid is not None and alive(pid)
    assert sandbox.live_pids() == [pid], "more than one daemon runs"
    winners = 0
    for form, (code, out, err) in zip(forms, outputs, strict=True):
        said = f"{form}: exit {code}\n--- stdout\n{out}\n--- stderr\n{err}"
        assert code == 0, said
        assert "Traceback" not in err, said
        if form == "cli":
            assert names_pid(out, pid), said
            winners += "already running" not in out
        elif out:
            assert out.split() == ["ALREADY", str(pid)], said
        else:
            winners += 1
    assert winners == 1, outputs


@pytest.mark.timeout(240)
def test_500_workers_from_one_subreaper_caller_leave_nothing_behind(sandbox: Sandbox) -> None:
    run_many_workers(sandbox, 500, timeout=200)


@pytest.mark.timeout(240)
def test_200_kill_9_of_the_launcher_at_random_moments(sandbox: Sandbox) -> None:
    outcomes = cut_start_rounds(sandbox, signal.SIGKILL, 200, seed=2026, SLOW="1")
    assert sum(outcomes.values()) == 200, outcomes
    # The delays reach every stage: killed before the fork (no daemon) and after it.
    assert any("daemon" in outcome for outcome in outcomes), outcomes
    assert any("none" in outcome for outcome in outcomes), outcomes
