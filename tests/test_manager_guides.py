"""The how-to guides' manager files, run with the real managers (issue 12, point 3).

Each guide in ``docs/howto/`` shows the files of ``examples/managers/<manager>/``
verbatim (checked here), and each test installs those files, as they are, into
a sandbox and runs ``examples/ticker.py`` under the real manager:

* runit (``runsv``, ``sv``, ``svlogd``): ``run`` in the foreground, ``sv check``
  waits on the ``check`` script (the daemon's state "ready"), a crash is
  restarted, ``sv down`` stops it cleanly, the output reaches ``svlogd``;
* daemontools (``svscan``, ``supervise``, ``multilog``): the same, with ``svc``;
* monit: ``start``/``stop`` through the pidfile, a killed daemon restarted;
* logrotate: the log renamed, reopened by ``python -m daemondeco reload``,
  and no error when the daemon is not running.

The pages of ``docs/howto/``, ``docs/explanation/``, the tutorial and the
internals page name the tests behind what they say: every test they cite
must exist, and the internals page must name every private API the package
uses (``tests/test_structure.py``'s allow-list and ``import _module`` lines).

Installing means copying with the guides' absolute paths mapped into the
sandbox (``/opt/ticker``, ``/var/lib/ticker``, ``/var/log/ticker``) and
``/usr/bin/python3`` mapped to this interpreter; nothing else is changed.
Each test skips, naming the Debian package, when the manager is missing.
Every process is stopped by its pid (the sandbox's marker, or ``extra_pids``).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Sandbox, alive, proc_stat, wait_exit, wait_for_text, wait_until

import daemondeco

EXAMPLES = ROOT / "examples" / "managers"
HOWTO = ROOT / "docs" / "howto"
_FENCE = re.compile(r"^```(?:text|ini)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def page_blocks(page: Path) -> list[str]:
    """The contents of the page's ```text and ```ini blocks."""
    return _FENCE.findall(page.read_text())


def _need(package: str, *programs: str) -> None:
    missing = [name for name in programs if shutil.which(name) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (the Debian package {package}; .ci/run installs it)")


def install(box: Sandbox, manager: str) -> Path:
    """Copy examples/managers/<manager>/ into the sandbox, its paths mapped there; returns the copy."""
    mapping = {
        "/usr/bin/python3": sys.executable,
        "/opt/ticker": str(box.path / "opt" / "ticker"),
        "/var/lib/ticker": str(box.path / "var" / "lib" / "ticker"),
        "/var/log/ticker": str(box.path / "var" / "log" / "ticker"),
    }
    (box.path / "opt" / "ticker").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "ticker.py", box.path / "opt" / "ticker" / "ticker.py")
    target = box.path / "etc" / manager
    shutil.copytree(EXAMPLES / manager, target)
    for path in target.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for old, new in mapping.items():
                text = text.replace(old, new)
            path.write_text(text)
    return target


def ticker_pid(box: Sandbox) -> int | None:
    """The pid holding ticker's pidfile lock, or None."""
    return daemondeco.Pidfile(box.path / "var" / "lib" / "ticker" / "ticker.pid").locked_by()


def popen(box: Sandbox, argv: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a manager from the sandbox with its marker (teardown kills it and its children by pid)."""
    kwargs.setdefault("stdout", subprocess.DEVNULL)
    kwargs.setdefault("stderr", subprocess.DEVNULL)
    proc: subprocess.Popen[bytes] = subprocess.Popen(argv, cwd=box.path, env=box.env(), **kwargs)  # type: ignore[call-overload]
    box.extra_pids.append(proc.pid)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a manager process we started, by its pid."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# -- the pages show the example files verbatim --------------------------------------

SHOWN = [
    ("runit.md", "runit/ticker/run"),
    ("runit.md", "runit/ticker/check"),
    ("runit.md", "runit/ticker/log/run"),
    ("daemontools.md", "daemontools/ticker/run"),
    ("daemontools.md", "daemontools/ticker/log/run"),
    ("monit.md", "monit/ticker"),
    ("logrotate.md", "logrotate/ticker"),
]


@pytest.mark.parametrize(("page", "example"), [pytest.param(p, e, id=e) for p, e in SHOWN])
def test_the_guide_shows_the_example_file_verbatim(page: str, example: str) -> None:
    assert (EXAMPLES / example).read_text() in page_blocks(HOWTO / page), (
        f"docs/howto/{page} must show examples/managers/{example} verbatim in a ```text block"
    )


def test_every_example_file_is_shown_by_a_guide() -> None:
    files = {str(path.relative_to(EXAMPLES)) for path in EXAMPLES.rglob("*") if path.is_file()}
    assert files == {example for _, example in SHOWN}


# -- the pages name tests that exist, and every private API ---------------------------

PAGES = [
    ROOT / "docs" / "tutorial.md",
    ROOT / "docs" / "internals.md",
    *sorted((ROOT / "docs" / "howto").glob("*.md")),
    *sorted((ROOT / "docs" / "explanation").glob("*.md")),
]
_CITED = re.compile(r"`tests/(test_\w+)\.py(?:::(test_\w+))?`")
_BARE = re.compile(r"`(test_\w+)`")


@pytest.mark.parametrize("page", [pytest.param(p, id=str(p.relative_to(ROOT / "docs"))) for p in PAGES])
def test_every_test_a_page_cites_exists(page: Path) -> None:
    text = page.read_text()
    every = "".join(path.read_text() for path in sorted((ROOT / "tests").glob("test_*.py")))
    for module, name in _CITED.findall(text):
        source = ROOT / "tests" / f"{module}.py"
        assert source.exists(), f"{page.name} cites tests/{module}.py, which does not exist"
        if name:
            assert f"def {name}(" in source.read_text(), f"{page.name} cites {module}.py::{name}, which does not exist"
    for name in _BARE.findall(text):
        assert f"def {name}(" in every, f"{page.name} cites the test {name}, which does not exist"


def test_the_internals_page_names_every_private_api_the_package_uses() -> None:
    from test_structure import ALLOWED_PRIVATE_ATTRIBUTES

    names = set(ALLOWED_PRIVATE_ATTRIBUTES)
    for path in (ROOT / "daemondeco").glob("*.py"):
        names |= set(re.findall(r"^\s*import (_[a-z]\w*)", path.read_text(), re.MULTILINE))
    text = (ROOT / "docs" / "internals.md").read_text()
    missing = sorted(name for name in names if name.split(".")[-1] not in text)
    assert not missing, f"docs/internals.md does not explain {missing}"


# -- runit ---------------------------------------------------------------------------


def test_runit_runs_ticker_in_the_foreground_checks_readiness_and_stops_it(sandbox: Sandbox) -> None:
    _need("runit", "runsv", "sv", "svlogd")
    service = install(sandbox, "runit") / "ticker"
    runsv = popen(sandbox, ["runsv", str(service)])
    sv = ["sv", "-w", "30"]
    try:
        wait_until((service / "supervise" / "ok").exists, what="runsv to set up supervise/")
        # `sv start` runs ./check until it exits 0: the daemon reported ready.
        started = subprocess.run([*sv, "start", str(service)], capture_output=True, text=True, timeout=40)
        assert started.returncode == 0, started
        assert started.stdout.startswith("ok: run:"), started
        pid = ticker_pid(sandbox)
        assert pid is not None, "ready, with the pidfile locked"
        stat = proc_stat(pid)
        assert stat is not None
        assert stat.ppid == runsv.pid, "`run` does not fork: runsv's child is the daemon"
        log = service.parent.parent.parent / "var" / "log" / "ticker" / "current"
        wait_for_text(log, "tick 1")
        # A crash: runsv starts ./run again (after a second), and the new daemon takes the pidfile over.
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: ticker_pid(sandbox) not in (None, pid), timeout=20, what="runsv to restart ticker")
        check = subprocess.run([*sv, "check", str(service)], capture_output=True, text=True, timeout=40)
        assert check.returncode == 0, check
        again = ticker_pid(sandbox)
        assert again is not None
        down = subprocess.run([*sv, "down", str(service)], capture_output=True, text=True, timeout=40)
        assert down.returncode == 0, down
        assert down.stdout.startswith("ok: down:"), down
        assert wait_exit(again, 10)
        assert ticker_pid(sandbox) is None
        wait_for_text(log, f"ticker {again} stopping after tick")  # SIGTERM ran the finally block
    finally:
        subprocess.run(["sv", "-w", "10", "exit", str(service)], capture_output=True, timeout=20, check=False)
        stop(runsv)


# -- daemontools ---------------------------------------------------------------------


def _svstat_pid(service: Path) -> int | None:
    out = subprocess.run(["svstat", str(service)], capture_output=True, text=True, timeout=10).stdout
    found = re.search(r": up \(pid (\d+)\)", out)
    return int(found[1]) if found else None


def test_daemontools_runs_ticker_in_the_foreground_and_stops_it(sandbox: Sandbox) -> None:
    _need("daemontools", "svscan", "supervise", "svc", "svstat", "multilog")
    services = install(sandbox, "daemontools")
    service = services / "ticker"
    svscan = popen(sandbox, ["svscan", str(services)])
    try:
        wait_until(lambda: ticker_pid(sandbox) is not None, timeout=20, what="supervise to start ticker")
        pid = ticker_pid(sandbox)
        assert pid is not None
        assert _svstat_pid(service) == pid, "`run` does not fork: supervise's child is the daemon"
        log = sandbox.path / "var" / "log" / "ticker" / "current"
        wait_for_text(log, "tick 1")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: ticker_pid(sandbox) not in (None, pid), timeout=20, what="supervise to restart ticker")
        again = ticker_pid(sandbox)
        assert again is not None
        subprocess.run(["svc", "-d", str(service)], check=True, timeout=10)
        assert wait_exit(again, 10)
        assert ticker_pid(sandbox) is None
        wait_for_text(log, f"ticker {again} stopping after tick")
    finally:
        stop(svscan)  # first, so that it starts no supervise again
        subprocess.run(["svc", "-dx", str(service), str(service / "log")], timeout=10, check=False)


# -- monit ---------------------------------------------------------------------------

MONITRC = """\
set daemon 1
set logfile {dir}/monit.log
set idfile {dir}/monit.id
set statefile {dir}/monit.state
set pidfile {dir}/monit.pid
set httpd unixsocket {dir}/monit.sock
    allow monit:monit
include {include}
"""


def test_monit_starts_restarts_and_stops_ticker(sandbox: Sandbox) -> None:
    _need("monit", "monit")
    check = install(sandbox, "monit") / "ticker"
    # monit runs its programs with a clean environment: give them the sandbox's marker (so its
    # teardown finds the daemon) and this checkout on PYTHONPATH, as `env` arguments.
    env = sandbox.env()
    marked = f"/usr/bin/env DAEMONDECO_TEST_ID={env['DAEMONDECO_TEST_ID']} PYTHONPATH={env['PYTHONPATH']} "
    check.write_text(check.read_text().replace("/usr/bin/env ", marked))
    rc = sandbox.path / "monitrc"
    rc.write_text(MONITRC.format(dir=sandbox.path, include=check))
    rc.chmod(0o600)
    monit = popen(sandbox, ["monit", "-I", "-c", str(rc)])
    ctl = ["monit", "-c", str(rc)]
    try:
        wait_until(lambda: ticker_pid(sandbox) is not None, timeout=30, what="monit to start ticker")
        pid = ticker_pid(sandbox)
        assert pid is not None
        stat = proc_stat(pid)
        assert stat is not None
        assert stat.ppid != monit.pid, "`start` detached: the daemon is not monit's child"
        # Killed once ready (its first tick comes after notify_ready()), so that monit's start succeeded.
        wait_for_text(sandbox.path / "var" / "lib" / "ticker" / "ticker.log", "tick 1")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: ticker_pid(sandbox) not in (None, pid), timeout=30, what="monit to restart ticker")
        again = ticker_pid(sandbox)
        assert again is not None
        subprocess.run([*ctl, "stop", "ticker"], check=True, capture_output=True, timeout=10)
        assert wait_exit(again, 30), "monit's stop program stopped ticker"
        assert ticker_pid(sandbox) is None
        assert "'ticker' stop action done" in wait_for_text(sandbox.path / "monit.log", "stop action done")
    finally:
        stop(monit)


# -- logrotate -----------------------------------------------------------------------


def test_logrotate_renames_the_log_and_ticker_reopens_it(sandbox: Sandbox) -> None:
    _need("logrotate", "logrotate")
    config = install(sandbox, "logrotate") / "ticker"
    state_dir = sandbox.path / "var" / "lib" / "ticker"
    ticker = sandbox.path / "opt" / "ticker" / "ticker.py"
    start = sandbox.run_file(ticker, "start", TICKER_DIR=str(state_dir))
    assert start.returncode == 0, start
    pid = ticker_pid(sandbox)
    assert pid is not None
    log = state_dir / "ticker.log"
    wait_for_text(log, "tick 1")
    rotate = [shutil.which("logrotate") or "logrotate", "-f", "-s", str(sandbox.path / "logrotate.state"), str(config)]
    done = subprocess.run(rotate, capture_output=True, text=True, timeout=60, env=sandbox.env())
    assert done.returncode == 0, done
    old = log.with_name("ticker.log.1")
    assert "tick 1" in old.read_text()
    # `reload` returned once the daemon had reopened: the next tick goes to the new file.
    first_new = int(wait_for_text(log, "tick ").split()[1])
    assert f"tick {first_new - 1}\n" in old.read_text(), "no tick lost or written twice across the switch"
    assert f"tick {first_new}\n" not in old.read_text()
    assert alive(pid) and ticker_pid(sandbox) == pid
    stopped = sandbox.run_file(ticker, "stop", TICKER_DIR=str(state_dir))
    assert stopped.returncode == 0, stopped
    # Not running: `reload` exits 7, which the postrotate script accepts.
    done = subprocess.run(rotate, capture_output=True, text=True, timeout=60, env=sandbox.env())
    assert done.returncode == 0, done


# -- start-stop-daemon, as OpenRC (and Debian init scripts) use it ---------------------


def test_start_stop_daemon_forking_start_and_stop_as_openrc_uses_them(sandbox: Sandbox) -> None:
    """docs/howto/openrc.md's forking style: the launcher's exit is the start's outcome, the pidfile the stop's."""
    _need("dpkg", "start-stop-daemon")
    (sandbox.path / "opt").mkdir()
    ticker = sandbox.path / "opt" / "ticker.py"
    shutil.copy(ROOT / "examples" / "ticker.py", ticker)
    state_dir = sandbox.path / "var" / "lib" / "ticker"
    pidfile = state_dir / "ticker.pid"
    env = sandbox.env(TICKER_DIR=str(state_dir))
    ssd = ["start-stop-daemon", "--pidfile", str(pidfile)]

    def start(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [*ssd, "--start", "--exec", sys.executable, "--", str(ticker), "start", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)

    failed = start("-1")
    assert failed.returncode == 1, failed
    assert "ValueError: interval must be a positive number of seconds" in failed.stderr, failed
    assert ticker_pid(sandbox) is None, "nothing left running"

    started = start()
    assert started.returncode == 0, started
    pid = ticker_pid(sandbox)
    assert pid is not None, "ready when start-stop-daemon returns"
    assert pidfile.read_text() == f"{pid}\n", "the pidfile is complete when the launcher exits"
    status = subprocess.run(
        [sys.executable, "-m", "daemondeco", "status", "--json", str(pidfile)], env=env, capture_output=True, text=True
    )
    assert '"state": "ready"' in status.stdout, status

    stopped = subprocess.run(
        [*ssd, "--stop", "--retry", "TERM/15/KILL/5"], env=env, capture_output=True, text=True, timeout=60
    )
    assert stopped.returncode == 0, stopped
    assert wait_exit(pid, 10)
    assert ticker_pid(sandbox) is None
    wait_for_text(state_dir / "ticker.log", f"ticker {pid} stopping after tick")  # SIGTERM ran the finally block
