"""Bad options fail in the launcher, before any fork, naming what is wrong.

Each case runs a real launcher script that records any fork attempt (an
``os.register_at_fork`` hook), catches the exception and prints its type and
message. The checks: the right exception, a message naming the value or path
at fault, no fork, nothing running afterwards, the function never ran, and no
file left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Result, Sandbox, alive, forms_dispatch, read_pid, wait_for_text

LAUNCHER = """
import math, os, sys
HERE = os.path.dirname(os.path.abspath(__file__))

def P(name):
    return os.path.join(HERE, name)

_fd = os.open(os.devnull, os.O_RDONLY)
os.close(_fd)
CLOSED = _fd  # an fd number that is not open
print("CLOSED", CLOSED, flush=True)

os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))

from daemondeco import daemon, daemonize, process_daemonize

def ran():
    open(P("ran"), "w").close()

""" + forms_dispatch('OPTIONS')

# Files and directories present before the launcher runs.
BEFORE = {"prog.py", "adir", "afile"}

# (options expression, exception class expected in the MRO, texts the message must contain).
# In texts, {dir} is the sandbox directory and {closed} the closed fd's number.
CASES = [
    # unknown options
    pytest.param('dict(pidfle=P("d.pid"))', "TypeError", ["'pidfle'", "did you mean 'pidfile'"], id="typo-pidfile"),
    pytest.param("dict(stop_timout=1)", "TypeError", ["'stop_timout'", "did you mean 'stop_timeout'"], id="typo-stop"),
    pytest.param('dict(colour="red")', "TypeError", ["'colour'", "valid options"], id="unknown-option"),
    # umask
    pytest.param("dict(umask=0o1000)", "ValueError", ["umask", "0o1000"], id="umask-too-big"),
    pytest.param("dict(umask=-1)", "ValueError", ["umask"], id="umask-negative"),
    pytest.param('dict(umask="022")', "TypeError", ["umask", "'022'"], id="umask-str"),
    pytest.param("dict(umask=True)", "TypeError", ["umask", "True"], id="umask-bool"),
    pytest.param("dict(umask=18.0)", "TypeError", ["umask", "18.0"], id="umask-float"),
    # timeouts
    pytest.param("dict(ready_timeout=-1)", "ValueError", ["ready_timeout", "-1"], id="ready_timeout-negative"),
    pytest.param("dict(ready_timeout=0)", "ValueError", ["ready_timeout", "0"], id="ready_timeout-zero"),
    pytest.param('dict(ready_timeout=float("nan"))', "ValueError", ["ready_timeout", "nan"], id="ready_timeout-nan"),
    pytest.param("dict(ready_timeout=math.inf)", "ValueError", ["ready_timeout", "inf"], id="ready_timeout-inf"),
    pytest.param("dict(ready_timeout=True)", "TypeError", ["ready_timeout", "True"], id="ready_timeout-bool"),
    pytest.param('dict(ready_timeout="5")', "TypeError", ["ready_timeout", "'5'"], id="ready_timeout-str"),
    pytest.param("dict(stop_timeout=-0.5)", "ValueError", ["stop_timeout", "-0.5"], id="stop_timeout-negative"),
    pytest.param('dict(stop_timeout=float("nan"))', "ValueError", ["stop_timeout", "nan"], id="stop_timeout-nan"),
    pytest.param("dict(stop_timeout=-math.inf)", "ValueError", ["stop_timeout", "inf"], id="stop_timeout-inf"),
    pytest.param("dict(stop_timeout=False)", "TypeError", ["stop_timeout", "False"], id="stop_timeout-bool"),
    pytest.param("dict(stop_timeout=None)", "TypeError", ["stop_timeout", "None"], id="stop_timeout-None"),
    pytest.param("dict(startup_grace=-1)", "ValueError", ["startup_grace", "-1"], id="startup_grace-negative"),
    pytest.param('dict(startup_grace=float("nan"))', "ValueError", ["startup_grace", "nan"], id="startup_grace-nan"),
    pytest.param("dict(startup_grace=math.inf)", "ValueError", ["startup_grace", "inf"], id="startup_grace-inf"),
    pytest.param("dict(startup_grace=True)", "TypeError", ["startup_grace", "True"], id="startup_grace-bool"),
    # ready
    pytest.param('dict(ready="later")', "ValueError", ["ready", "'later'", "'notify'"], id="ready-later"),
    pytest.param("dict(ready=None)", "ValueError", ["ready", "None"], id="ready-None"),
    # keep_fds
    pytest.param('dict(keep_fds="3")', "TypeError", ["keep_fds", "'3'"], id="keep_fds-str"),
    pytest.param("dict(keep_fds=3)", "TypeError", ["keep_fds", "int"], id="keep_fds-int"),
    pytest.param("dict(keep_fds=[-1])", "ValueError", ["keep_fds", "-1"], id="keep_fds-negative"),
    pytest.param("dict(keep_fds=[True])", "TypeError", ["keep_fds", "True"], id="keep_fds-bool"),
    pytest.param("dict(keep_fds=[3.5])", "TypeError", ["keep_fds", "3.5"], id="keep_fds-float"),
    pytest.param("dict(keep_fds=[CLOSED])", "OSError", ["keep_fds", "{closed}", "not open"], id="keep_fds-closed"),
    # pidfile
    pytest.param('dict(pidfile=P("missing/d.pid"))', "OSError", ["{dir}/missing/d.pid"], id="pidfile-missing-dir"),
    pytest.param('dict(pidfile=P("adir"))', "OSError", ["{dir}/adir"], id="pidfile-is-directory"),
    pytest.param('dict(pidfile="")', "ValueError", ["pidfile", "empty"], id="pidfile-empty"),
    pytest.param("dict(pidfile=42)", "TypeError", ["pidfile", "42"], id="pidfile-int"),
    pytest.param('dict(pidfile="a\\0b")', "ValueError", ["pidfile", "NUL"], id="pidfile-nul"),
    # stdio
    pytest.param('dict(stdout=P("missing/out.log"))', "OSError", ["{dir}/missing/out.log"], id="stdout-missing-dir"),
    pytest.param('dict(stdout=P("adir"))', "OSError", ["{dir}/adir"], id="stdout-not-writable"),
    pytest.param('dict(stderr=P("missing/err.log"))', "OSError", ["{dir}/missing/err.log"], id="stderr-missing-dir"),
    pytest.param('dict(stderr=P("adir"))', "OSError", ["{dir}/adir"], id="stderr-not-writable"),
    pytest.param("dict(stdout=3.0)", "TypeError", ["stdout", "3.0"], id="stdout-float"),
    pytest.param('dict(stdin=P("missing.txt"))', "OSError", ["{dir}/missing.txt"], id="stdin-missing"),
    pytest.param("dict(stdin=None)", "TypeError", ["stdin", "None"], id="stdin-None"),
    # workdir
    pytest.param('dict(workdir=P("missing"))', "OSError", ["{dir}/missing"], id="workdir-missing"),
    pytest.param('dict(workdir=P("afile"))', "OSError", ["{dir}/afile"], id="workdir-is-file"),
    pytest.param("dict(workdir=None)", "TypeError", ["workdir", "None"], id="workdir-None"),
]


def run_launcher(sandbox: Sandbox, options: str, form: str) -> Result:
    (sandbox.path / "adir").mkdir(exist_ok=True)
    (sandbox.path / "afile").touch()
    return sandbox.run(LAUNCHER.replace("OPTIONS", options), form)


def assert_refused(sandbox: Sandbox, result: Result, exc_class: str, texts: list[str]) -> None:
    """The launcher caught *exc_class* naming *texts*; nothing forked, ran or was left behind."""
    assert result.returncode == 3, result
    assert "FORK ATTEMPTED" not in result.stderr, result
    raised = next(line for line in result.stderr.splitlines() if line.startswith("RAISED "))
    assert exc_class in raised.split()[1].split(","), result
    message = result.stderr.split("MESSAGE ", 1)[1]
    closed = result.stdout.split()[1]
    for text in texts:
        expected = text.format(dir=sandbox.path, closed=closed)
        assert expected in message, f"{expected!r} not in the message: {message!r}"
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "ran").exists()
    left = set(os.listdir(sandbox.path)) - BEFORE
    assert not left, f"a failed start left files behind: {sorted(left)}"


@pytest.mark.parametrize(("options", "exc_class", "texts"), CASES)
def test_bad_option_fails_in_the_launcher(sandbox: Sandbox, options: str, exc_class: str, texts: list[str]) -> None:
    result = run_launcher(sandbox, options, "daemon")
    assert_refused(sandbox, result, exc_class, texts)


OTHER_FORM_CASES = [
    pytest.param('dict(pidfle=P("d.pid"))', "TypeError", ["did you mean 'pidfile'"], id="typo"),
    pytest.param("dict(umask=0o1000)", "ValueError", ["umask"], id="umask"),
    pytest.param('dict(ready_timeout=float("nan"))', "ValueError", ["ready_timeout"], id="nan-timeout"),
    pytest.param("dict(keep_fds=[CLOSED])", "OSError", ["{closed}"], id="keep_fds-closed"),
    pytest.param('dict(pidfile=P("missing/d.pid"))', "OSError", ["{dir}/missing/d.pid"], id="pidfile-missing-dir"),
    pytest.param('dict(stdout=P("adir"))', "OSError", ["{dir}/adir"], id="stdout-not-writable"),
    pytest.param('dict(stdin=P("missing.txt"))', "OSError", ["{dir}/missing.txt"], id="stdin-missing"),
    pytest.param('dict(workdir=P("afile"))', "OSError", ["{dir}/afile"], id="workdir-is-file"),
]


@pytest.mark.parametrize("form", [pytest.param("process_daemonize", id="process_daemonize"), "daemonize"])
@pytest.mark.parametrize(("options", "exc_class", "texts"), OTHER_FORM_CASES)
def test_other_forms_validate_the_same_way(
    sandbox: Sandbox, form: str, options: str, exc_class: str, texts: list[str]
) -> None:
    result = run_launcher(sandbox, options, form)
    assert_refused(sandbox, result, exc_class, texts)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param('dict(stdout=P("out.log"), pidfile=P("missing/d.pid"))', id="log-ok-pidfile-missing-dir"),
        pytest.param('dict(stdout=P("out.log"), pidfile=P("adir"))', id="log-ok-pidfile-is-directory"),
        pytest.param('dict(stdout=P("out.log"), stderr=P("missing/err.log"))', id="log-ok-stderr-missing-dir"),
        pytest.param('dict(pidfile=P("d.pid"), stdout=P("missing/out.log"))', id="pidfile-ok-log-missing-dir"),
        pytest.param('dict(pidfile=P("d.pid"), stdout=P("out.log"), workdir=P("afile"))', id="workdir-is-file"),
        pytest.param('dict(pidfile=P("d.pid"), stdout=P("out.log"), stdin=P("nope"))', id="stdin-missing"),
        pytest.param('dict(pidfile=P("d.pid"), stdout=P("out.log"), keep_fds=[CLOSED])', id="keep_fds-closed"),
    ],
)
def test_failed_start_leaves_no_log_or_pidfile_behind(sandbox: Sandbox, options: str) -> None:
    result = run_launcher(sandbox, options, "daemon")
    assert_refused(sandbox, result, "OSError", [])


@pytest.mark.parametrize(
    "code",
    [
        pytest.param('@daemon("x.pid")\ndef main():\n    pass\n', id="daemon-path"),
        pytest.param('@daemon(P("x.pid"), stdout=P("x.log"))\ndef main():\n    pass\n', id="daemon-path-and-option"),
        pytest.param('@process_daemonize("x.pid")\ndef work():\n    pass\n', id="process_daemonize-path"),
        pytest.param('main = daemon(pidfile=P("x.pid"))("not a function")\n', id="decorating-a-string"),
    ],
)
def test_positional_misuse_is_a_clear_type_error(sandbox: Sandbox, code: str) -> None:
    result = sandbox.run(
        """
        import os, sys
        HERE = os.path.dirname(os.path.abspath(__file__))
        def P(name):
            return os.path.join(HERE, name)
        os.register_at_fork(before=lambda: print("FORK ATTEMPTED", file=sys.stderr, flush=True))
        from daemondeco import daemon, process_daemonize
        try:
            exec(sys.argv[1])
        except TypeError as exc:
            print("MESSAGE", exc, file=sys.stderr)
            sys.exit(3)
        """,
        code,
    )
    assert result.returncode == 3, result
    message = result.stderr.split("MESSAGE ", 1)[1]
    assert "keyword" in message, message
    assert "FORK ATTEMPTED" not in result.stderr
    assert sandbox.live_pids() == []
    assert set(os.listdir(sandbox.path)) == {"prog.py"}


def test_already_running_error_names_the_running_pid(sandbox: Sandbox) -> None:
    code = """
        import os, sys, time
        from daemondeco import daemon
        HERE = os.path.dirname(os.path.abspath(__file__))

        @daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "d.log"))
        def main():
            print("started", os.getpid(), flush=True)
            time.sleep(60)

        try:
            main()
        except Exception as exc:
            print("RAISED", type(exc).__name__, exc.pid, file=sys.stderr)
            raise
        """
    first = sandbox.run(code)
    assert first.returncode == 0, first
    pid = read_pid(sandbox.path / "d.pid")

    second = sandbox.run(code)
    assert second.returncode == 1, second
    assert f"RAISED AlreadyRunningError {pid}" in second.stderr
    assert f"AlreadyRunningError: already running: pidfile '{sandbox.path / 'd.pid'}' is locked by pid {pid}" in (
        second.stderr
    )
    assert read_pid(sandbox.path / "d.pid") == pid
    assert wait_for_text(sandbox.path / "d.log", "\n") == f"started {pid}\n"
    assert alive(pid)
    assert sandbox.live_pids() == [pid]


def test_process_daemonize_second_call_names_the_running_worker(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os, time
        from daemondeco import AlreadyRunningError, process_daemonize
        HERE = os.path.dirname(os.path.abspath(__file__))

        @process_daemonize(pidfile=os.path.join(HERE, "w.pid"))
        def work():
            time.sleep(60)

        handle = work()
        try:
            work()
        except AlreadyRunningError as exc:
            print(handle.pid, exc.pid, str(handle.pid) in str(exc))
        """
    )
    assert result.returncode == 0, result
    worker, named, in_message = result.stdout.split()
    assert worker == named
    assert in_message == "True"
    assert sandbox.live_pids() == [int(worker)]
    assert Path(sandbox.path / "w.pid").read_text() == f"{worker}\n"
