"""The pytest plugin (issue 8, point 5): the ``daemon_runner`` fixture and the leak check.

Each test runs a user's small test suite with pytest's ``pytester`` in a
subprocess that carries the sandbox's marker (so every daemon it forks is
killed by pid at teardown, whatever happens), with the plugin loaded
explicitly (``-p no:daemondeco -p daemondeco.pytest_plugin``: the same
whether or not the venv's install has the entry point yet). The user's tests
write their daemons' pids to files, which are then checked from outside.
"""

from __future__ import annotations

import configparser
import textwrap
from pathlib import Path

import pytest
from conftest import MARKER, ROOT, Sandbox, alive

from daemondeco import Pidfile

PLUGIN_ARGS = ("-p", "no:daemondeco", "-p", "daemondeco.pytest_plugin", "-p", "no:cacheprovider")

# What the user's suites share: a daemon that says it serves, and records its pid for the outer test.
USER_DAEMON = """
import os, signal, time
from pathlib import Path

import pytest

from daemondeco import daemon, notify_ready
from daemondeco.testing import DaemonRunner

OUT = Path(os.environ["PLUGIN_TEST_OUT"])

@daemon(ready="notify")
def serve(name, mode="polite"):
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("serving", name, flush=True)
    notify_ready()
    while True:
        time.sleep(1)

def record(name, pid):
    (OUT / f"{name}.pid").write_text(str(pid))
"""


@pytest.fixture
def user_suite(sandbox: Sandbox, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester whose subprocesses import this checkout's daemondeco and carry the sandbox's marker."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv(MARKER, sandbox.marker)
    monkeypatch.setenv("PLUGIN_TEST_OUT", str(sandbox.path))
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
    return pytester


def run_suite(pytester: pytest.Pytester, tests: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=USER_DAEMON + textwrap.dedent(tests))
    return pytester.runpytest_subprocess(*PLUGIN_ARGS, "-q", timeout=60)


def recorded(sandbox: Sandbox, name: str) -> int:
    return int((sandbox.path / f"{name}.pid").read_text())


def test_daemons_stopped_by_the_test_or_its_fixtures_pass(sandbox: Sandbox, user_suite: pytest.Pytester) -> None:
    result = run_suite(
        user_suite,
        """
        def test_the_runner_lives_in_tmp_path(daemon_runner, tmp_path):
            runner = daemon_runner(serve, ready_timeout=10)
            assert isinstance(runner, DaemonRunner)
            assert runner.directory == tmp_path
            with runner.start("with-block") as d:
                record("with-block", d.pid)
                assert d.pidfile == tmp_path / "daemon.pid"
                d.wait_for_log("serving with-block")
            assert not d.is_running()

        @pytest.fixture
        def server(daemon_runner):
            # depends on daemon_runner: torn down before the check runs
            with daemon_runner(serve).start("fixture") as d:
                yield d

        def test_a_fixture_keeps_the_daemon_for_the_test(server):
            record("fixture", server.pid)
            assert server.is_running()

        @pytest.fixture
        def other(tmp_path):
            # independent of daemon_runner, set up before it, so torn down after it
            with DaemonRunner(serve, directory=tmp_path / "other").start("other") as d:
                yield d

        def test_an_independent_fixture_torn_down_later(other, daemon_runner):
            record("other", other.pid)
            assert daemon_runner(serve).directory != other.directory

        def test_a_pidfile_the_test_itself_holds_is_not_a_daemon(tmp_path):
            from daemondeco import Pidfile
            Pidfile(tmp_path / "mine.pid").acquire()  # held by the test process until it ends
        """,
    )
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=4)
    for name in ("with-block", "fixture", "other"):
        assert not alive(recorded(sandbox, name)), name


def test_a_daemon_started_by_hand_in_tmp_path_is_checked_too(sandbox: Sandbox, user_suite: pytest.Pytester) -> None:
    result = run_suite(
        user_suite,
        """
        def test_starts_a_runner_by_hand(tmp_path):
            record("by-hand", DaemonRunner(serve, directory=tmp_path).start("by-hand").pid)
        """,
    )
    output = result.stdout.str()
    result.assert_outcomes(passed=1, errors=1)
    pid = recorded(sandbox, "by-hand")
    assert f"pid {pid}, pidfile {user_suite.path}" in output, output
    assert not alive(pid), "the leak check stops it, by its pid"


@pytest.mark.parametrize(
    ("mode", "how"),
    [
        pytest.param("polite", "stopped (SIGTERM)", id="stops-on-sigterm"),
        pytest.param("stubborn", "killed (SIGKILL after 5 s)", id="ignores-sigterm"),
    ],
)
def test_a_daemon_left_running_fails_the_test_and_is_stopped(
    sandbox: Sandbox, user_suite: pytest.Pytester, mode: str, how: str
) -> None:
    result = run_suite(
        user_suite,
        f"""
        def test_forgets_to_stop(daemon_runner):
            d = daemon_runner(serve).start("leak", {mode!r})
            record("leak", d.pid)
            assert d.is_running()
        """,
    )
    output = result.stdout.str()
    assert result.ret == 1, output
    result.assert_outcomes(passed=1, errors=1)
    pid = recorded(sandbox, "leak")
    assert "ERROR at teardown of test_forgets_to_stop" in output, output
    assert "daemondeco: the test left 1 daemon running" in output, output
    assert f"pid {pid}, pidfile {user_suite.path}" in output, output  # the user's tmp_path is under it
    assert f"daemon.pid: {how}" in output, output
    assert not alive(pid), "the leak check stops the daemon, by its pid"
    # SIGTERM: the daemon removed its pidfile; SIGKILL: a stale one stays, which nobody holds
    assert [Pidfile(path).locked_by() for path in user_suite.path.rglob("*.pid")] in ([], [None])


def test_a_failing_teardown_still_gets_its_daemons_stopped(sandbox: Sandbox, user_suite: pytest.Pytester) -> None:
    result = run_suite(
        user_suite,
        """
        @pytest.fixture
        def broken():
            yield
            raise RuntimeError("teardown broke")

        def test_leaks_behind_a_broken_fixture(daemon_runner, broken, tmp_path):
            d = daemon_runner(serve, directory=tmp_path / "deep" / "er").start("behind")
            record("behind", d.pid)
        """,
    )
    output = result.stdout.str()
    result.assert_outcomes(passed=1, errors=1)
    assert "teardown broke" in output, output
    pid = recorded(sandbox, "behind")
    assert not alive(pid), "a teardown that failed first must not leave the daemon running"


def test_import_daemondeco_does_not_import_the_plugin_or_pytest(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import sys
        import daemondeco, daemondeco.testing
        print(sorted(name for name in ("pytest", "_pytest", "daemondeco.pytest_plugin") if name in sys.modules))
        """
    )
    assert (result.returncode, result.stdout) == (0, "[]\n"), result


def _declared_pytest11() -> list[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return [line.strip() for line in config["options.entry_points"]["pytest11"].splitlines() if line.strip()]


def test_setup_cfg_registers_the_plugin_as_a_pytest11_entry_point() -> None:
    assert _declared_pytest11() == ["daemondeco = daemondeco.pytest_plugin"]


def test_pytest_loads_the_declared_entry_point_by_itself(
    user_suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The entry point as setup.cfg declares it, in a distribution of its own on
    # PYTHONPATH: what `pip install` gives, without touching the shared venv.
    dist = tmp_path / "site" / "daemondeco_entry_point-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: daemondeco-entry-point\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pytest11]\n" + "\n".join(_declared_pytest11()) + "\n")
    monkeypatch.setenv("PYTHONPATH", f"{ROOT}:{dist.parent}")
    user_suite.makepyfile(
        test_user="""
        def test_has_the_fixture(daemon_runner, tmp_path, request):
            assert daemon_runner(print).directory == tmp_path
            assert request.config.pluginmanager.get_plugin("daemondeco").__name__ == "daemondeco.pytest_plugin"
        """
    )
    result = user_suite.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
