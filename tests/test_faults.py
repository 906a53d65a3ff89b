"""Stress and fault scenarios of issue 6, in cheap variants that run in every suite.

* many ``@process_daemonize`` workers from one long-lived subreaper caller:
  no fd, thread or zombie left behind;
* ``kill -9`` and Ctrl-C of a launcher at random (seeded) moments of a start:
  one daemon holding its lock, or none and a clean next start;
* signal storms: 500 SIGHUPs coalesce into reloads, 200 SIGTERMs run the
  cleanup once;
* fuzzed command lines of ``main.cli()`` and ``python -m daemondeco``.

The expensive variants (500 workers, 200 kill rounds) are in tests/test_stress.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Sandbox, alive, read_pid, wait_exit, wait_until, zombie_exit_code
from test_reliability import names_pid

import daemondeco

# -- 1: many workers from one long-lived caller ----------------------------------

# A caller that is a child subreaper, so that every worker (double-forked) is
# re-parented to it when its first child exits and must be reaped by the
# library. It starts N workers (each returns at once or after a few ms), waits
# on each handle and reports what it holds afterwards.
MANY_WORKERS = """
import ctypes, json, os, sys, threading, time

PR_SET_CHILD_SUBREAPER = 36
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, ctypes.get_errno()

from daemondeco import process_daemonize

ME = os.getpid()

@process_daemonize
def worker(index):
    if index % 3:
        time.sleep(0.001 * (index % 20))  # a short, bounded life

def children():
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rindex(b")") + 2 :].split()
        if int(fields[1]) == ME:
            found[int(entry)] = fields[0].decode()
    return found

def fd_count():
    return len(os.listdir("/proc/self/fd"))

def task_count():
    return len(os.listdir("/proc/self/task"))

count = int(sys.argv[1])
before = {"fds": fd_count(), "threads": threading.active_count(), "tasks": task_count(), "children": children()}
started = time.monotonic()
handles = [worker(index) for index in range(count)]
waited = [handle.wait(10) for handle in handles]
elapsed = time.monotonic() - started
pids = [handle.pid for handle in handles]
left = children()
after = {"fds": fd_count(), "threads": threading.active_count(), "tasks": task_count(), "children": left}
running = [handle.pid for handle in handles if handle.is_running()]
print(json.dumps({"before": before, "after": after, "pids": pids, "waited": waited, "running": running,
                  "zombies": sorted(pid for pid, state in left.items() if state == "Z"),
                  "elapsed": elapsed}), flush=True)
"""


def run_many_workers(sandbox: Sandbox, count: int, timeout: float) -> dict[str, object]:
    """Run MANY_WORKERS with *count* workers and check every fact it reports."""
    result = sandbox.run(MANY_WORKERS, str(count), timeout=timeout)
    assert result.returncode == 0, result
    assert "Traceback" not in result.stderr, result
    data: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    pids = data["pids"]
    assert isinstance(pids, list) and len(pids) == count and len(set(pids)) == count, "every worker started"
    assert data["waited"] == [0] * count, "every worker exited within its wait (its exit code: 0)"
    assert data["running"] == [], data["running"]
    assert data["zombies"] == [], f"zombie workers of the subreaper caller: {data['zombies']}"
    before, after = data["before"], data["after"]
    assert isinstance(before, dict) and isinstance(after, dict)
    assert after["children"] == {}, f"children left to the caller: {after['children']}"
    assert after["fds"] == before["fds"], f"fds before {before['fds']}, after {after['fds']}"
    assert after["threads"] == before["threads"] == 1, data
    assert after["tasks"] == before["tasks"] == 1, data
    assert sandbox.live_pids() == [], "a worker outlived its caller's wait"
    return data


def test_50_workers_from_one_subreaper_caller_leave_nothing_behind(sandbox: Sandbox) -> None:
    run_many_workers(sandbox, 50, timeout=60)


# -- 2: kill -9 and Ctrl-C at random moments of a start ---------------------------

# A CLI daemon with a short set-up (20 ms). ``prog.py launch ACTIONS`` first runs
# the comma-separated ACTIONS (checks of the previous round: one interpreter
# instead of several keeps the suite short) and prints their exit codes as one
# JSON list, then says "GO" and calls main.cli(["start"]); ``prog.py check
# ACTIONS`` only runs the actions. The test's random delay counts from "GO",
# so that it falls in the start, not in the interpreter's start-up. With
# SLOW=1 the launcher works 5 ms before the start (no pidfile yet) and 10 ms
# right before its fork (pidfile locked, no daemon yet), so that a kill finds
# every stage. The daemon touches "serving/<pid>" once it is ready.
KILLED_START = """
import json, os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent
LAUNCHER = os.getpid()
SLOW = os.environ.get("SLOW") == "1"

def before_fork():
    if SLOW and os.getpid() == LAUNCHER:
        time.sleep(0.01)

os.register_at_fork(before=before_fork)

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify", stop_timeout=5)
def main():
    time.sleep(0.02)  # the set-up
    notify_ready()
    (HERE / "serving" / str(os.getpid())).touch()
    while True:
        time.sleep(1)

mode, actions = sys.argv[1], [action for action in sys.argv[2].split(",") if action]
if actions:
    print(json.dumps([main.cli([action]) for action in actions]), flush=True)
if mode == "launch":
    print("GO", flush=True)
    if SLOW:
        time.sleep(0.005)
    sys.exit(main.cli(["start"]))
"""

# The checks of a daemon found running after a cut start: status, stop, status.
CHECK_RUNNING = ("status,stop,status", [0, 0, 3])


def exit_codes(stdout: str) -> list[int]:
    """The exit codes of the actions a KILLED_START run was given (its one JSON list)."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("[")]
    codes: list[int] = json.loads(line)
    return codes


def settled(sandbox: Sandbox) -> bool:
    """Every live process of the test is a daemon that finished its start."""
    serving = {int(name) for name in os.listdir(sandbox.path / "serving")}
    return all(pid in serving for pid in sandbox.live_pids())


def launch_and_signal(
    sandbox: Sandbox, script: Path, actions: str, signum: int, delay: float, **env: str
) -> tuple[int, list[int], str]:
    """``prog.py launch ACTIONS``, *signum* *delay* s after its "GO": exit code, ACTIONS' codes, stderr."""
    launcher = subprocess.Popen(
        [sys.executable, str(script), "launch", actions],
        cwd=sandbox.path,
        env=sandbox.env(**env),
        text=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    sandbox.extra_pids.append(launcher.pid)
    codes: list[int] = []
    try:
        assert launcher.stdout is not None
        said = []
        while (line := launcher.stdout.readline()) not in ("GO\n", ""):
            said.append(line)
        assert line == "GO\n", f"the launcher never got to its start: {said}"
        if actions:
            codes = exit_codes("".join(said))
        time.sleep(delay)  # the random moment itself, not a wait for a condition
        launcher.send_signal(signum)
        _, err = launcher.communicate(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    return launcher.returncode, codes, err


def inspect_cut_start(sandbox: Sandbox, where: str) -> int | None:
    """After a start was cut short: the one daemon, holding its lock and named by the pidfile, or None."""
    pidfile = sandbox.path / "d.pid"
    wait_until(lambda: settled(sandbox), 10, what=f"{where}: the start to settle")
    live = sandbox.live_pids()
    assert len(live) <= 1, f"{where}: two daemons: {live}"
    holder = daemondeco.Pidfile(pidfile).locked_by()
    if not live:
        assert holder is None, f"{where}: no daemon runs but the lock is held by {holder}"
        return None
    (pid,) = live
    assert holder == pid, f"{where}: daemon {pid} runs, the pidfile lock is held by {holder}"
    assert read_pid(pidfile) == pid, where
    return pid


def start_after_none(sandbox: Sandbox, script: Path, where: str) -> int:
    """No daemon survived a cut start: ``status`` says so and a new ``start`` succeeds. Its daemon."""
    pidfile = sandbox.path / "d.pid"
    # report_status decides by the file alone once nothing holds its lock: a pidfile the
    # killed launcher had created (empty, unlocked) is stale, "dead but pidfile exists" (1):
    # nothing survived that could remove it. Without a file: "not running" (3).
    expected = 1 if os.path.lexists(pidfile) else 3
    checked = sandbox.run_file(script, "launch", "status")
    assert checked.returncode == 0, f"{where}: the start after the cut one failed: {checked}"
    assert exit_codes(checked.stdout) == [expected], f"{where}: {checked}"
    pid = read_pid(pidfile)
    assert daemondeco.Pidfile(pidfile).locked_by() == pid and alive(pid), f"{where}: {checked}"
    return pid


def cut_start_rounds(sandbox: Sandbox, signum: int, rounds: int, seed: int, **env: str) -> dict[str, int]:
    """Send *signum* to a launcher at a random moment of its start, *rounds* times.

    Each round checks what the previous one left (in the next launcher, before
    its "GO"): a daemon found running answers ``status`` 0, ``stop`` 0, then
    ``status`` 3. Counts the outcomes by the launcher's exit code and whether a
    daemon ran afterwards.
    """
    script = sandbox.write("prog.py", KILLED_START)
    (sandbox.path / "serving").mkdir()
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    actions, expected, previous = "", [], None
    for round_ in range(rounds):
        delay = rng.uniform(0, 0.05)
        where = f"round {round_} (seed {seed}, {signal.Signals(signum).name} {delay * 1000:.1f} ms after GO)"
        code, codes, err = launch_and_signal(sandbox, script, actions, signum, delay, **env)
        assert codes == expected, f"{where}: checks {actions!r} of the previous round gave {codes}, not {expected}"
        if previous is not None:
            assert not alive(previous), f"{where}: the daemon {previous} survived its stop"
            assert zombie_exit_code(previous) == 0, where
        if signum == signal.SIGKILL:
            assert code in (-signal.SIGKILL, 0), f"{where}: exit {code}\n{err}"
        else:
            # -SIGINT: a Ctrl-C before the launcher waits (during prepare(), before any fork) is Python's
            # own KeyboardInterrupt: nothing has started yet (the checks below hold it to that).
            assert code in (130, 0, -signal.SIGINT), f"{where}: exit {code}\n{err}"
        if code == 130:
            # One line says what happened; a restart's "Stopping ... (pid N)..." progress line may precede it.
            said = [line for line in err.splitlines() if line.strip() and not line.startswith("Stopping ")]
            assert len(said) == 1 and "Traceback" not in err, f"{where}: exit 130 but stderr says\n{err}"
        pid = inspect_cut_start(sandbox, where)
        if code == 130:
            assert pid is None, f"{where}: Ctrl-C gave 130, but daemon {pid} runs"
        if pid is None and code == 0:
            raise AssertionError(f"{where}: start exited 0, but no daemon runs\n{err}")
        outcome = f"exit {code}, {'daemon' if pid else 'none'}"
        if pid is None:
            outcome += ", stale pidfile" if os.path.lexists(sandbox.path / "d.pid") else ", no pidfile"
            pid = start_after_none(sandbox, script, where)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        actions, expected, previous = *CHECK_RUNNING, pid
    checked = sandbox.run_file(script, "check", actions)
    assert exit_codes(checked.stdout) == expected, checked
    assert previous is not None and wait_exit(previous, 10) and not alive(previous)
    assert sandbox.live_pids() == []
    return outcomes


def test_kill_9_of_the_launcher_at_random_moments_leaves_one_locked_daemon_or_none(sandbox: Sandbox) -> None:
    outcomes = cut_start_rounds(sandbox, signal.SIGKILL, 20, seed=6, SLOW="1")
    assert sum(outcomes.values()) == 20, outcomes


def test_ctrl_c_of_the_launcher_at_random_moments_exits_130_with_no_daemon_or_0(sandbox: Sandbox) -> None:
    outcomes = cut_start_rounds(sandbox, signal.SIGINT, 10, seed=12)
    assert sum(outcomes.values()) == 10, outcomes


# The windows a random Ctrl-C hits rarely, held open on purpose. "ready": the
# first child lingers 1 s after forking the daemon (a hook after its fork), so
# the launcher, already told "ready", blocks in reaping it. "stubborn": the
# daemon's cleanup blocks, so the launcher's stop after Ctrl-C must SIGKILL.
CTRL_C_WINDOW = """
import os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent
LAUNCHER = os.getpid()
CASE = sys.argv[1]

def first_child_lingers():
    if CASE == "ready" and os.getppid() == LAUNCHER:  # in the first child, after it forked the daemon
        time.sleep(1)

os.register_at_fork(after_in_parent=first_child_lingers)

@daemon(pidfile=HERE / "d.pid", ready="notify", stop_timeout=0.5)
def main():
    try:
        if CASE == "ready":
            notify_ready()
        (HERE / "serving.tmp").write_text(str(os.getpid()))
        (HERE / "serving.tmp").rename(HERE / "serving")
        time.sleep(60)
    finally:
        if CASE == "stubborn":
            time.sleep(60)

if CASE == "status":
    sys.exit(main.cli(["status"]))
sys.exit(main.cli(["start"]))
"""


def interrupt_in_window(sandbox: Sandbox, case: str) -> tuple[int, str, int]:
    """Start CTRL_C_WINDOW *case*, SIGINT the launcher once the daemon runs its function.

    The launcher's exit code, its stderr and the daemon's pid.
    """
    script = sandbox.write("prog.py", CTRL_C_WINDOW)
    launcher = sandbox.popen_file(
        script, case, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        serving = sandbox.path / "serving"
        wait_until(serving.exists, 10, what="the daemon in its function")
        pid = int(serving.read_text())
        if case == "ready":  # told "ready", the launcher now reaps the lingering first child
            wchan = Path(f"/proc/{launcher.pid}/wchan")
            wait_until(lambda: wchan.read_text() == "do_wait", 5, what="the launcher in waitpid()")
        assert launcher.poll() is None, "the launcher left before the Ctrl-C"
        launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=20)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.communicate()
    return launcher.returncode, err, pid


def test_ctrl_c_right_after_readiness_exits_0_or_130_without_a_traceback(sandbox: Sandbox) -> None:
    code, err, pid = interrupt_in_window(sandbox, "ready")
    assert "Traceback" not in err, f"exit {code}\n{err}"
    assert code in (0, 130), f"exit {code}\n{err}"
    if code == 0:  # ready came first: the daemon runs, holding its pidfile
        assert alive(pid) and daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() == pid
    else:
        assert wait_exit(pid, 10) and not alive(pid)


def test_status_is_3_after_ctrl_c_had_to_sigkill_the_starting_daemon(sandbox: Sandbox) -> None:
    code, err, pid = interrupt_in_window(sandbox, "stubborn")
    assert code == 130, f"exit {code}\n{err}"
    assert "Traceback" not in err and names_pid(err, pid), err
    assert not alive(pid) and zombie_exit_code(pid) == -signal.SIGKILL, "the stop had to SIGKILL"
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() is None
    status = sandbox.run_file(sandbox.path / "prog.py", "status")
    assert status.returncode == 3, status
    assert not (sandbox.path / "d.pid").exists()


# -- 3: signal storms -----------------------------------------------------------

# A daemon printing without pause. on_reload appends a line saying whether the
# test had ended its storm ("over") when the reload ran; the finally block
# appends "begin" and, 0.1 s later, "end" (a storm of SIGTERMs overlaps it).
STORMED = """
import os, sys, time
from pathlib import Path
from daemondeco import daemon, notify_ready
HERE = Path(__file__).resolve().parent

def on_reload():
    with open(HERE / "reloads", "a") as out:
        out.write("over\\n" if (HERE / "over").exists() else "during\\n")

def mark(what):
    with open(HERE / "finally", "a") as out:
        out.write(f"{what} {os.getpid()}\\n")

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify", on_reload=on_reload)
def main():
    notify_ready()
    n = 0
    try:
        while True:
            print("line", n)
            sys.stderr.write(f"err {n}\\n")
            n += 1
    finally:
        mark("begin")
        time.sleep(0.1)
        mark("end")

sys.exit(main.cli(["start"]))
"""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def start_stormed(sandbox: Sandbox) -> int:
    pid = sandbox.start_daemon(STORMED)
    wait_until(lambda: (sandbox.path / "d.log").stat().st_size > 0, 10, what="the daemon printing")
    return pid


def assert_stopped_once(sandbox: Sandbox, pid: int) -> None:
    """*pid* exited 0 after one run of its finally block, and removed its pidfile."""
    assert wait_exit(pid, 10), f"the daemon {pid} did not exit"
    assert zombie_exit_code(pid) == 0
    assert lines(sandbox.path / "finally") == [f"begin {pid}", f"end {pid}"], "the finally block ran once, whole"
    assert not (sandbox.path / "d.pid").exists()
    assert daemondeco.Pidfile(sandbox.path / "d.pid").locked_by() is None


def test_500_sighups_at_once_coalesce_into_reloads_and_the_daemon_lives_on(sandbox: Sandbox) -> None:
    pid = start_stormed(sandbox)
    for sent in range(500):
        if sent == 499:
            (sandbox.path / "over").touch()  # the last request comes after this: a reload must see it
        os.kill(pid, signal.SIGHUP)
    reloads = sandbox.path / "reloads"
    wait_until(lambda: "over" in lines(reloads), 20, what="a reload after the storm's last SIGHUP")
    assert alive(pid)
    count = len(lines(reloads))
    assert 1 <= count <= 500, count
    log = sandbox.path / "d.log"
    size = log.stat().st_size
    wait_until(lambda: log.stat().st_size > size, 10, what="the daemon printing after the storm")
    text = log.read_text(errors="replace")
    for word in ("Traceback", "reload failed", "reentrant"):
        assert word not in text, f"{word!r} in the log: ...{text[max(0, text.find(word) - 300) :][:900]}"
    os.kill(pid, signal.SIGTERM)
    assert_stopped_once(sandbox, pid)


def test_200_sigterms_at_once_run_the_cleanup_once_and_exit_0(sandbox: Sandbox) -> None:
    pid = start_stormed(sandbox)
    for _ in range(200):
        os.kill(pid, signal.SIGTERM)
    assert_stopped_once(sandbox, pid)
    text = (sandbox.path / "d.log").read_text(errors="replace")
    assert "Traceback" not in text, text[-2000:]


# -- 4: fuzzed command lines ------------------------------------------------------

# A CLI daemon taking any words as arguments; `run` (this very process)
# returns at once instead of serving in the foreground.
FUZZED = """
import os, sys, time
from pathlib import Path
from daemondeco import daemon
HERE = Path(__file__).resolve().parent
LAUNCHER = os.getpid()

@daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", stop_timeout=5)
def main(*words):
    if os.getpid() == LAUNCHER:
        return 0
    while True:
        time.sleep(1)

sys.exit(main.cli())
"""

ACTIONS = ["start", "stop", "restart", "status", "run"]
HELP = ["-h", "--help", "help"]
ODD_WORDS: list[str | bytes] = [
    "",
    " ",
    "-",
    "--",
    "-x",
    "--timeout",
    "--timeout=1",
    "1e9",
    "1e400",
    "-1",
    "0",
    "nan",
    "inf",
    "START",
    "Stop",
    "stat",
    "statuss",
    "d.pid",
    ".",
    "..",
    "missing.pid",
    "x" * 300,
    "é",
    "\u2028",
    "\x7f",
    "\t",
    "%s",
    "{}",
    "$HOME",
    "*",
    "status stop",
    b"\xff",
    b"d\xfe.pid",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"-\xff",
]
# Exit codes a command line of either kind may give: LSB 0-4, 7 ("not running").
ALLOWED = {0, 1, 2, 3, 4, 7}


def random_word(rng: random.Random) -> str | bytes:
    if rng.random() < 0.6:
        return rng.choice(ODD_WORDS)
    alphabet = "abcXYZ019-_./=:@ \\'\"!?"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))


def run_argv(sandbox: Sandbox, argv: list[str | bytes]) -> tuple[int, str]:
    """Run ``python ARGV`` (words as bytes) from the sandbox; exit code and output (as text)."""
    done = subprocess.run(
        [sys.executable.encode(), *(os.fsencode(word) for word in argv)],
        cwd=sandbox.path,
        env=sandbox.env(),
        capture_output=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    said = (done.stdout + done.stderr).decode("utf-8", "backslashreplace")
    return done.returncode, said


def expected_cli_codes(words: list[str | bytes]) -> set[int]:
    """What main.cli() may answer with no daemon running (see run_decorated_cli).

    Without words after the action, exactly one code. With words: an
    action's own options (``-h``: 0; a bad ``--timeout``: 2), words for the
    function (start, restart, run: 0), or stray words after status/stop (2).
    """
    first = os.fsdecode(words[0]) if words else None
    if first in HELP:
        return {0}
    if first not in ACTIONS:
        return {2}
    if len(words) == 1:
        return {3} if first == "status" else {0}  # stop/restart/start/run succeed; status: not running
    return {0, 2}


@pytest.mark.parametrize("seed", [pytest.param(6, id="seed-6")])
def test_fuzzed_command_lines_of_a_daemon_exit_lsb_codes_without_traceback(sandbox: Sandbox, seed: int) -> None:
    script = sandbox.write("prog.py", FUZZED)
    pidfile = sandbox.path / "d.pid"
    rng = random.Random(seed)
    for round_ in range(12):
        words: list[str | bytes] = [random_word(rng) for _ in range(rng.randint(0, 5))]
        if rng.random() < 0.7:
            words.insert(0, rng.choice(ACTIONS + HELP))
        code, said = run_argv(sandbox, [str(script), *words])
        where = f"round {round_} (seed {seed}): prog.py {words!r}: exit {code}\n{said}"
        assert code in ALLOWED, where
        assert "Traceback" not in said, where
        assert code in expected_cli_codes(words), where
        live = sandbox.live_pids()
        if words and words[0] in ("start", "restart"):
            pid = daemondeco.Pidfile(pidfile).locked_by()
            assert pid is not None and live == [pid] and read_pid(pidfile) == pid, where
            os.kill(pid, signal.SIGTERM)
            assert wait_exit(pid, 10) and zombie_exit_code(pid) == 0, where
        else:
            assert live == [], f"a daemon left running: {where}"
        assert not pidfile.exists(), where


PIDFILE_WORDS: list[str | bytes] = ["d.pid", "missing.pid", "", ".", "..", "x" * 300, b"d\xff.pid", "é.pid", "-"]


def module_words(rng: random.Random) -> list[str | bytes]:
    """Mostly near-valid ``status|stop PIDFILE [--timeout S]`` command lines, some junk."""
    words: list[str | bytes] = []
    if rng.random() < 0.8:
        words.append(rng.choice(["status", "stop", "status", "stop", "-h", "--help", "start"]))
    if rng.random() < 0.8:
        words.append(rng.choice(PIDFILE_WORDS))
    if rng.random() < 0.25:
        words.append(rng.choice(["--timeout", "--timeout=0", "--timeout=1e400"]))
        words.append(rng.choice(["0.5", "1e9", "-1", "nan", "inf", "", b"\xff"]))
    words.extend(random_word(rng) for _ in range(rng.choice([0, 0, 0, 0, 0, 1, 3])))
    return words


def expected_module_code(words: list[str | bytes]) -> int | None:
    """What ``python -m daemondeco`` must answer for simple command lines (None: not predicted)."""
    text = [os.fsdecode(word) for word in words]
    if any(word in ("-h", "--help") for word in text):
        return None  # unless an earlier word is an error: argparse acts in order
    if len(text) != 2 or text[0] not in ("status", "stop") or text[1].startswith("-"):
        return None
    target = sandbox_target(text[1])
    if target == "missing":
        return 3 if text[0] == "status" else 0
    if target == "directory":
        return 4 if text[0] == "status" else 1
    return None


def sandbox_target(word: str) -> str:
    """What a pidfile word names in the (otherwise empty) fuzz sandbox: "directory", "missing" or "other"."""
    if word in ("", ".", ".."):
        return "directory"
    if "/" in word or len(os.fsencode(word)) > 255:
        return "other"
    return "missing"


@pytest.mark.parametrize("seed", [pytest.param(6, id="seed-6")])
def test_fuzzed_command_lines_of_python_m_daemondeco_exit_lsb_codes_without_traceback(
    sandbox: Sandbox, seed: int
) -> None:
    rng = random.Random(seed)
    for round_ in range(14):
        words = module_words(rng)
        code, said = run_argv(sandbox, ["-m", "daemondeco", *words])
        where = f"round {round_} (seed {seed}): python -m daemondeco {words!r}: exit {code}\n{said}"
        assert code in ALLOWED, where
        assert "Traceback" not in said, where
        expected = expected_module_code(words)
        if expected is not None:
            assert code == expected, where
        assert sandbox.live_pids() == [], where
        assert sorted(os.listdir(sandbox.path)) == [], f"a command line created a file: {where}"
