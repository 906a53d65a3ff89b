"""The control path imports neither wrapt nor argparse (issue 13, point 2): checked from outside.

``python -m daemondeco status|stop|reload PIDFILE`` is what monitors and init
scripts run in loops; it decorates nothing, so it must not pay for wrapt (the
decorators' layer) nor for argparse (its common command lines are parsed
without it). Each command runs in a fresh interpreter exactly as ``-m``
runs it (``runpy``), which then reports what ``sys.modules`` holds. This is
behaviour, not timing: benchmarks/ measures the time.
"""

from __future__ import annotations

import json

import pytest
from conftest import Sandbox, alive, read_pid, wait_exit

HEAVY = ("wrapt", "argparse")  # argparse brings re, gettext, locale and shutil

# Runs `python -m daemondeco ARGS` in this interpreter, then prints the exit code and the heavy modules loaded.
AS_MODULE = f"""
import runpy, sys
sys.argv = ["daemondeco", *sys.argv[1:]]
try:
    runpy.run_module("daemondeco", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as leaving:
    code = leaving.code
print("REPORT", code, [name for name in {HEAVY!r} if name in sys.modules], file=sys.stderr)
"""

SERVICE = """
import os, time
from daemondeco import daemon, notify_ready

HERE = os.path.dirname(os.path.abspath(__file__))

@daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"), ready="notify", ready_timeout=10)
def main():
    notify_ready()
    while True:
        time.sleep(60)

main()
"""


def control(sandbox: Sandbox, *args: str) -> tuple[int, list[str], str]:
    """(exit code, heavy modules loaded, stdout) of ``python -m daemondeco ARGS``."""
    result = sandbox.run(AS_MODULE, *args, name="as_module.py")
    assert result.returncode == 0, result
    line = next(line for line in result.stderr.splitlines() if line.startswith("REPORT "))
    _, code, loaded = line.split(" ", 2)
    return int(code), json.loads(loaded.replace("'", '"')), result.stdout


@pytest.fixture
def running(sandbox: Sandbox) -> int:
    sandbox.write("svc.py", SERVICE)
    result = sandbox.run_file(sandbox.path / "svc.py")
    assert result.returncode == 0, result
    pid = read_pid(sandbox.path / "d.pid")
    assert alive(pid)
    return pid


def test_import_daemondeco_loads_neither_wrapt_nor_argparse(sandbox: Sandbox) -> None:
    code = f"""
    import sys
    import daemondeco
    print([name for name in {HEAVY!r} if name in sys.modules])
    from daemondeco import daemon, notify_ready, process_daemonize
    print(callable(daemon), callable(notify_ready), callable(process_daemonize), "wrapt" in sys.modules)
    """
    result = sandbox.run(code)
    assert result.returncode == 0, result
    assert result.stdout.splitlines() == ["[]", "True True True True"], result


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("status", "{pidfile}"), 0, id="status"),
        pytest.param(("status", "--json", "{pidfile}"), 0, id="status-json"),
        pytest.param(("status", "{pidfile}", "--json"), 0, id="status-json-after"),
        pytest.param(("reload", "{pidfile}"), 0, id="reload"),
        pytest.param(("reload", "--timeout", "20", "{pidfile}"), 0, id="reload-timeout"),
        pytest.param(("stop", "{pidfile}", "--timeout=20"), 0, id="stop-timeout"),
    ],
)
def test_the_control_commands_load_neither_wrapt_nor_argparse(
    sandbox: Sandbox, running: int, args: tuple[str, ...], expected: int
) -> None:
    pidfile = str(sandbox.path / "d.pid")
    code, loaded, _ = control(sandbox, *(arg.format(pidfile=pidfile) for arg in args))
    assert (code, loaded) == (expected, []), (args, code, loaded)
    if args[0] == "stop":
        assert wait_exit(running, 10), "stop returned 0, so the daemon must be gone"


def test_the_commands_of_a_stopped_daemon_load_no_argparse(sandbox: Sandbox) -> None:
    pidfile = str(sandbox.path / "none.pid")
    for args, expected in ((("status", pidfile), 3), (("stop", pidfile), 0), (("reload", pidfile), 7)):
        code, loaded, _ = control(sandbox, *args)
        assert (code, loaded) == (expected, []), (args, code, loaded)


@pytest.mark.usefixtures("running")
def test_an_unusual_command_line_says_the_same_through_argparse(sandbox: Sandbox) -> None:
    """An abbreviation goes the long way (argparse), and reports exactly what the short way does."""
    pidfile = str(sandbox.path / "d.pid")
    short = control(sandbox, "status", "--json", pidfile)
    long = control(sandbox, "status", "--js", pidfile)
    assert "argparse" in long[1], long
    assert (short[0], json.loads(short[2])["pid"]) == (long[0], json.loads(long[2])["pid"]), (short, long)
    assert short[0] == 0
