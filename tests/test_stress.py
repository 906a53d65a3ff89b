"""Stress scenarios of issue 6, too slow for every run: marked ``stress``.

1,000 log rotations under a busy writer (defect 1), 300 start/stop cycles of
a CLI daemon, 30 launchers racing for one pidfile, 500 workers from one
subreaper caller and 200 launchers killed at random moments of their start
(the suite's variants of the last two are in tests/test_faults.py). Run by
``.ci/run`` once (``-m stress``); the default test command leaves them out.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time

import pytest
from conftest import Sandbox, alive, read_pid, wait_exit, wait_until
from test_faults import cut_start_rounds, run_many_workers
from test_reliability import names_pid, rotate_under_load
from test_sockets import APP, App, ask, free_port
from test_upgrade import _children, _upgrade_cli, started

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


# -- issue 17, points 1-5: upgrades cut short, long durations, stop racing exit --------------------


def _live_daemons(sandbox: Sandbox, *others: int) -> list[int]:
    """The test's live processes but *others* (the upgrade command): the daemons of every generation."""
    return sorted(pid for pid in sandbox.live_pids() if pid not in others)


def _one_generation(sandbox: Sandbox, app: App, port: int, where: str) -> int:
    """Once things settle: one daemon runs, the pidfile names it, status says so, it answers."""
    wait_until(lambda: len(_live_daemons(sandbox)) == 1, timeout=30, what=f"{where}: one generation")
    (pid,) = _live_daemons(sandbox)
    assert read_pid(app.pidfile) == pid, where
    status = sandbox.run_module("status", str(app.pidfile))
    assert status.returncode == 0 and f"pid {pid}" in status.stdout, f"{where}: {status}"
    assert ask(socket.AF_INET, ("127.0.0.1", port)) == pid, where
    return pid


# Each generation takes 0.3 s between its fork and its readiness: the moments a launcher's death
# left an orphan successor that came up beside the old generation.
SLOW_START_APP = APP.replace("    daemondeco.notify_ready()\n", "    time.sleep(0.3)\n    daemondeco.notify_ready()\n")


@pytest.mark.timeout(120)
def test_successor_launchers_killed_at_random_moments_of_an_upgrade(sandbox: Sandbox) -> None:
    """Point 1: whatever the moment, one generation serves and upgrade's exit code says which one."""
    assert SLOW_START_APP != APP
    rng = random.Random(1717)
    port = free_port()
    app = started(sandbox, port, SLOW_START_APP.replace("import json, os,", "import json, os, time,"))
    current = read_pid(app.pidfile)
    outcomes: dict[str, int] = {}
    for trial in range(12):
        delay = rng.uniform(0, 0.6)
        where = f"trial {trial} (seed 1717, launcher killed {delay * 1000:.0f} ms after it appeared)"
        cli = _upgrade_cli(sandbox, app)
        wait_until(lambda c=cli, p=current: _children(p) or c.poll() is not None, what=f"{where}: a launcher")
        launchers = _children(current)
        time.sleep(delay)  # the random moment of the scenario
        for launcher in launchers:
            if alive(launcher):
                os.kill(launcher, signal.SIGKILL)
        out, err = cli.communicate(timeout=40)
        serving = _one_generation(sandbox, app, port, where)
        if cli.returncode == 0:
            assert serving != current and f"-> {serving})" in out, f"{where}: {out}{err}"
            outcomes["upgraded"] = outcomes.get("upgraded", 0) + 1
        else:
            assert cli.returncode == 1 and serving == current, f"{where}: exit {cli.returncode}, {out}{err}"
            outcomes["kept"] = outcomes.get("kept", 0) + 1
        current = serving
    assert sum(outcomes.values()) == 12, outcomes
    print(outcomes)
    assert app.run("stop").returncode == 0


@pytest.mark.timeout(120)
def test_old_generations_killed_at_random_moments_of_an_upgrade(sandbox: Sandbox) -> None:
    """Point 2: a successor that was handed the sockets carries on; upgrade's exit code matches."""
    rng = random.Random(1718)
    port = free_port()
    outcomes: dict[str, int] = {}
    for trial in range(10):
        delay = rng.uniform(0, 0.4)
        where = f"trial {trial} (seed 1718, old generation killed {delay * 1000:.0f} ms after upgrade began)"
        app = started(sandbox, port)
        old = read_pid(app.pidfile)
        cli = _upgrade_cli(sandbox, app)
        time.sleep(delay)  # the random moment of the scenario
        os.kill(old, signal.SIGKILL)
        out, err = cli.communicate(timeout=40)
        assert wait_exit(old), where
        if cli.returncode == 0:
            serving = _one_generation(sandbox, app, port, where)
            assert serving != old and f"-> {serving})" in out, f"{where}: {out}{err}"
            outcomes["successor serves"] = outcomes.get("successor serves", 0) + 1
            assert app.run("stop").returncode == 0, where
        else:
            # 7: killed before the command found it running; 1: killed before it started its successor
            assert cli.returncode in (1, 7), f"{where}: {out}{err}"
            wait_until(lambda: _live_daemons(sandbox) == [], timeout=30, what=f"{where}: nothing left")
            assert sandbox.run_module("status", str(app.pidfile)).returncode in (1, 3), where
            outcomes["lost"] = outcomes.get("lost", 0) + 1
        wait_until(lambda: _live_daemons(sandbox) == [], timeout=30, what=f"{where}: stopped")
    assert sum(outcomes.values()) == 10, outcomes
    print(outcomes)
    assert outcomes.get("successor serves"), outcomes


@pytest.mark.timeout(120)
def test_two_upgrades_at_once_never_report_a_success_that_did_not_happen(sandbox: Sandbox) -> None:
    """Point 5: the second of two simultaneous upgrades is refused, or reports the one upgrade's real outcome."""
    port = free_port()
    app = started(sandbox, port)
    for trial in range(10):
        old = read_pid(app.pidfile)
        failing = trial % 2 == 1
        if failing:
            (sandbox.path / "FAIL").touch()
        first, second = _upgrade_cli(sandbox, app), _upgrade_cli(sandbox, app)
        results = [(cli.returncode, *cli.communicate(timeout=40)) for cli in (first, second)]
        results = [(cli.returncode, out, err) for cli, (_, out, err) in zip((first, second), results, strict=True)]
        serving = _one_generation(sandbox, app, port, f"trial {trial}")
        for code, out, err in results:
            where = f"trial {trial} ({'failing' if failing else 'working'} successor): exit {code}\n{out}{err}"
            if code == 0:
                assert not failing and serving != old and f"-> {serving})" in out, where
            else:
                assert code == 1, where
                assert "already being upgraded" in err or "keeps serving" in err, where
        assert any(code == 0 for code, _, _ in results) == (not failing), results
        if failing:
            (sandbox.path / "FAIL").unlink()
            assert serving == old
    assert app.run("stop").returncode == 0


HUGE = "1.7976931348623157e+308"

# Every duration option at the largest float, in every process that waits on one: the launcher of a
# worker, a supervisor, the upgrade's drain, the stop, reload and upgrade commands, a group's wait.
LONG_WAITS = f"""
import os, signal, sys, time
from pathlib import Path
import daemondeco
from daemondeco import notify_ready, process_daemonize

HERE = Path(__file__).resolve().parent
D = dict(ready_timeout={HUGE}, stop_timeout={HUGE}, drain_timeout={HUGE})
R = dict(restart="always", restart_delay={HUGE}, restart_max_delay={HUGE}, restart_reset_after={HUGE})

@process_daemonize(ready="notify", startup_grace={HUGE}, **D)
def graceful():  # the caller listens until it exits: a startup_grace that never ends early
    notify_ready()

@process_daemonize(pidfile=HERE / "w.pid", ready="notify", **D)
def worker():
    notify_ready()
    while True:
        time.sleep(1)

@process_daemonize(pidfile=HERE / "s.pid", ready="notify", **D, **R)
def supervised():
    notify_ready()
    while True:
        time.sleep(1)

assert graceful().wait(timeout={HUGE}) == 0  # its exit code (issue 18)
handle = worker()
sup = supervised()
assert handle.stop(timeout={HUGE}) and not handle.is_running()
assert sup.stop(timeout={HUGE}) and not sup.is_running()
print("done", flush=True)
"""


@pytest.mark.timeout(120)
def test_the_largest_durations_in_every_waiting_process(sandbox: Sandbox) -> None:
    """Point 3: no OverflowError anywhere a validated duration is waited on."""
    result = sandbox.run(LONG_WAITS)
    assert "OverflowError" not in result.stderr, result
    assert result.returncode == 0 and "done" in result.stdout, result
    port = free_port()
    app = started(sandbox, port, APP.replace("ready=\"notify\",", f"ready=\"notify\", drain_timeout={HUGE}, "
                                             f"stop_timeout={HUGE}, ready_timeout={HUGE},"))
    old = read_pid(app.pidfile)
    for command in ("reload", "upgrade"):
        done = sandbox.run_module(command, "--timeout", HUGE, str(app.pidfile))
        assert done.returncode == 0 and "OverflowError" not in done.stderr, done
    assert wait_exit(old), "the drained generation left"
    stop = sandbox.run_module("stop", "--timeout", HUGE, str(app.pidfile))
    assert stop.returncode == 0 and "OverflowError" not in stop.stderr, stop


# Workers that leave by themselves at a random moment while stop() runs; each holds 256 MiB, so its
# exit() takes a while after its pidfile lock is free: the moment a stop must not take for "gone".
RACING_EXIT = """
import os, random, sys, time
from pathlib import Path
from daemondeco import notify_ready, process_daemonize

HERE = Path(__file__).resolve().parent
BALLAST = []

@process_daemonize(pidfile=HERE / "w{i}.pid", ready="notify", instances=3)
def work(seed):
    BALLAST.append(b"\\x01" * (256 << 20))
    notify_ready()
    time.sleep(random.Random(seed + os.getpid()).uniform(0, 0.02))  # then leaves by itself

def state(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"

rng = random.Random(int(sys.argv[1]))
for cycle in range(int(sys.argv[2])):
    group = work(rng.randrange(1 << 30))
    time.sleep(rng.uniform(0, 0.02))
    assert group.stop(), cycle
    left = [(m.pid, state(m.pid)) for m in group if state(m.pid) not in ("Z", "gone")]
    assert not left, f"cycle {cycle}: stop() returned True while {left} still ran"
print("ok", flush=True)
"""


@pytest.mark.timeout(120)
def test_stop_racing_exit_returns_only_once_every_member_is_gone(sandbox: Sandbox) -> None:
    """Point 4: WorkerGroup.stop() (DaemonProcess.stop() per member) against members leaving by themselves."""
    result = sandbox.run(RACING_EXIT, "1719", "40", timeout=100)
    assert result.returncode == 0 and "ok" in result.stdout, result
