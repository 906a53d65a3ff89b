"""The public surface: names, docstrings, what the decorators preserve, where they work."""

from __future__ import annotations

import configparser
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import ROOT, Sandbox, alive, proc_stat, read_pid, wait_for_text, wait_until

import daemondeco
from daemondeco import (
    AlreadyRunningError,
    DaemonError,
    DaemonWarning,
    StartupError,
    daemon,
    process_daemonize,
)

PUBLIC = {
    "daemon",
    "process_daemonize",
    "daemonize",
    "notify_ready",
    "notify_status",  # issue 3: STATUS= for systemd
    "notify_extend",  # issue 8: EXTEND_TIMEOUT_USEC= and more ready_timeout
    "Pidfile",
    "DaemonProcess",
    "DaemonFunction",  # issue 7: the typed wrappers are public
    "WorkerFunction",
    "DaemonError",
    "ReloadError",  # issue 8: an acknowledged reload
    "AlreadyRunningError",
    "StartupError",
    "DaemonWarning",
    "WorkerGroup",  # issue 9: worker groups (instances=N)
    "GroupStartError",
    "WorkerGroupFunction",  # issue 18: instances=N is typed as giving a WorkerGroup
    "UpgradeError",  # issue 10: sockets that survive
    "WorkerError",  # issue 18: how a worker ended
    "sockets",
    "listen_fds",
}


def test_all_is_sorted_and_exactly_the_public_names() -> None:
    assert daemondeco.__all__ == sorted(daemondeco.__all__)
    assert set(daemondeco.__all__) == PUBLIC
    assert len(daemondeco.__all__) == len(PUBLIC)
    for name in PUBLIC:
        assert hasattr(daemondeco, name), name


def _public_module_names() -> list[str]:
    """The public names ``import daemondeco`` binds, sorted; ``__version__`` is allowed too.

    A submodule becomes an attribute of the package once anything imports it
    (``daemondeco.testing``): that is not a name the package exports.
    """
    names = []
    for name in dir(daemondeco):  # the names bound now and those loaded at first use (the decorators)
        value = getattr(daemondeco, name)
        if isinstance(value, ModuleType) and value.__name__ == f"daemondeco.{name}":
            continue
        if name.startswith("@"):  # pytest's assertion rewriting, when it loaded daemondeco as a plugin
            continue
        if not name.startswith("_") or name == "__version__":
            names.append(name)
    return sorted(names)


def test_all_lists_every_public_name_of_the_module_and_only_those() -> None:
    """As httpx checks its exports: a name leaked into the package, or missing from ``__all__``, fails."""
    exported = [name for name in daemondeco.__all__ if name != "__version__"]
    assert daemondeco.__all__ == sorted(daemondeco.__all__)
    assert exported == [name for name in _public_module_names() if name != "__version__"]


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_name_has_a_docstring(name: str) -> None:
    doc = inspect.getdoc(getattr(daemondeco, name))
    assert doc is not None, f"{name} has no docstring"
    assert len(doc.strip()) > 20, f"{name} has no real docstring: {doc!r}"


def test_module_has_a_docstring() -> None:
    assert daemondeco.__doc__
    assert daemondeco.__doc__.strip()


@pytest.mark.parametrize(
    ("child", "parent"),
    [
        pytest.param(AlreadyRunningError, DaemonError, id="AlreadyRunningError"),
        pytest.param(StartupError, DaemonError, id="StartupError"),
        pytest.param(DaemonError, Exception, id="DaemonError"),
        pytest.param(DaemonWarning, RuntimeWarning, id="DaemonWarning"),
    ],
)
def test_exception_hierarchy(child: type, parent: type) -> None:
    assert issubclass(child, parent)


def test_daemon_errors_are_not_warnings_and_warning_is_not_an_error() -> None:
    assert not issubclass(DaemonWarning, DaemonError)
    assert not issubclass(DaemonError, Warning)


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


def sample(count: int, *, name: str = "x") -> str:
    """Sample docstring."""
    return name * count


@pytest.mark.parametrize(
    "decorate",
    [
        pytest.param(daemon, id="daemon-bare"),
        pytest.param(daemon(pidfile="/nonexistent/x.pid", umask=0o027), id="daemon-options"),
        pytest.param(process_daemonize, id="process_daemonize-bare"),
        pytest.param(process_daemonize(stop_timeout=1.0), id="process_daemonize-options"),
    ],
)
def test_decorators_keep_name_doc_signature_and_wrapped(decorate: Callable[..., Any]) -> None:
    wrapped = decorate(sample)
    assert wrapped.__name__ == "sample"
    assert wrapped.__qualname__ == "sample"
    assert wrapped.__doc__ == "Sample docstring."
    assert wrapped.__module__ == __name__
    assert inspect.signature(wrapped) == inspect.signature(sample)
    assert wrapped.__wrapped__ is sample


def test_daemon_function_has_the_control_methods() -> None:
    wrapped = daemon(pidfile="/nonexistent/x.pid")(sample)
    for method in ("start", "run", "status", "stop", "restart", "cli"):
        assert callable(getattr(wrapped, method)), method
        assert inspect.getdoc(getattr(wrapped, method)), method


def test_package_ships_py_typed() -> None:
    marker = Path(daemondeco.__file__).with_name("py.typed")
    assert marker.is_file()
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert "py.typed" in config.get("options.package_data", "daemondeco").split()


# -- real starts ---------------------------------------------------------------


@pytest.mark.parametrize(
    "decorator",
    [
        pytest.param("@daemon", id="bare"),
        pytest.param("@daemon()", id="empty-call"),
        pytest.param('@daemon(pidfile=P("d.pid"), stdout=P("d.log"))', id="with-options"),
    ],
)
def test_bare_and_called_daemon_both_start_a_daemon(sandbox: Sandbox, decorator: str) -> None:
    result = sandbox.run(
        f"""
        import os, time
        from daemondeco import daemon
        HERE = os.path.dirname(os.path.abspath(__file__))
        def P(name):
            return os.path.join(HERE, name)

        {decorator}
        def main(where):
            with open(where, "w") as out:
                out.write(f"{{os.getpid()}} {{os.getsid(0)}}\\n")
            time.sleep(60)

        main(P("who"))
        print("main() returned in the launcher")
        """
    )
    assert result.returncode == 0, result
    assert "returned" not in result.stdout
    # ready="start": the launcher leaves as the function is called, maybe before it wrote.
    who = sandbox.path / "who"
    wait_until(lambda: who.exists() and who.read_text().endswith("\n"), what="the daemon's first write")
    pid, sid = map(int, (sandbox.path / "who").read_text().split())
    stat = proc_stat(pid)
    assert stat is not None
    assert alive(pid)
    assert stat.session == sid
    assert sid != pid
    assert stat.tty_nr == 0
    assert sandbox.live_pids() == [pid]
    if "pidfile" in decorator:
        assert read_pid(sandbox.path / "d.pid") == pid


METHODS = """
import os, sys, time
from daemondeco import daemon
HERE = os.path.dirname(os.path.abspath(__file__))
def P(name):
    return os.path.join(HERE, name)

class Service:
    label = "class-level"

    def __init__(self):
        self.label = "instance-level"

    @daemon(pidfile=P("m.pid"), stdout=P("m.log"))
    def serve(self, word):
        print("method", os.getpid(), self.label, word, flush=True)
        time.sleep(60)

    @daemon(pidfile=P("c.pid"), stdout=P("c.log"))
    @classmethod
    def serve_class(cls, word):
        print("classmethod", os.getpid(), cls.__name__, cls.label, word, flush=True)
        time.sleep(60)

what = sys.argv[1]
if what == "method":
    Service().serve("hello")
elif what == "classmethod":
    Service.serve_class("hi")
elif what == "status":
    print(Service().serve.status(), Service.serve_class.status())
elif what == "stop":
    print(Service().serve.stop(), Service.serve_class.stop())
"""


def test_daemon_on_a_method_and_a_classmethod(sandbox: Sandbox) -> None:
    script = sandbox.write("methods.py", METHODS)
    method = sandbox.run_file(script, "method")
    assert method.returncode == 0, method
    classmethod_ = sandbox.run_file(script, "classmethod")
    assert classmethod_.returncode == 0, classmethod_

    method_pid = read_pid(sandbox.path / "m.pid")
    class_pid = read_pid(sandbox.path / "c.pid")
    wait_for_text(sandbox.path / "m.log", "\n")
    wait_for_text(sandbox.path / "c.log", "\n")
    assert (sandbox.path / "m.log").read_text() == f"method {method_pid} instance-level hello\n"
    assert (sandbox.path / "c.log").read_text() == f"classmethod {class_pid} Service class-level hi\n"
    assert sorted(sandbox.live_pids()) == sorted([method_pid, class_pid])

    status = sandbox.run_file(script, "status")
    assert status.stdout.split() == [str(method_pid), str(class_pid)], status
    stop = sandbox.run_file(script, "stop")
    assert stop.stdout.split() == ["True", "True"], stop
    assert not alive(method_pid)
    assert not alive(class_pid)
    assert sandbox.live_pids() == []


def test_import_without_fork_works_but_using_a_decorator_raises(sandbox: Sandbox) -> None:
    result = sandbox.run(
        """
        import os, sys
        del os.fork
        import daemondeco
        from daemondeco import DaemonError, daemon

        @daemon(pidfile=os.path.join(os.path.dirname(os.path.abspath(__file__)), "d.pid"))
        def main():
            print("ran")

        print("imported and decorated")
        try:
            main()
        except DaemonError as exc:
            print("DaemonError:", exc)
            sys.exit(3)
        """
    )
    assert result.returncode == 3, result
    assert "imported and decorated" in result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("DaemonError:"))
    assert repr(sys.platform) in line, line
    assert "fork" in line
    assert "ran" not in result.stdout.split()
    assert sandbox.live_pids() == []
    assert not (sandbox.path / "d.pid").exists()


@pytest.mark.parametrize(
    "call",
    [
        pytest.param("daemondeco.daemonize()", id="daemonize"),
        pytest.param("daemondeco.process_daemonize(lambda: None)()", id="process_daemonize"),
    ],
)
def test_other_forms_without_fork_raise_daemon_error(sandbox: Sandbox, call: str) -> None:
    result = sandbox.run(
        f"""
        import os, sys
        del os.fork
        import daemondeco
        try:
            {call}
        except daemondeco.DaemonError as exc:
            print("DaemonError:", exc)
            sys.exit(3)
        """
    )
    assert result.returncode == 3, result
    assert repr(sys.platform) in result.stdout
    assert sandbox.live_pids() == []


CONTROL_PATH = """
import runpy, sys
sys.argv = ["daemondeco", *sys.argv[1:]]
try:
    runpy.run_module("daemondeco", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print("EXIT", code, "WRAPT", "wrapt" in sys.modules, "DECORATORS", "daemondeco._decorators" in sys.modules)
"""


@pytest.mark.parametrize("action", ["status", "stop", "reload"])
def test_the_control_path_never_imports_wrapt(sandbox: Sandbox, action: str) -> None:
    """``python -m daemondeco status|stop|reload`` decorates nothing: it does not pay wrapt's import (issue 13)."""
    result = sandbox.run(CONTROL_PATH, action, str(sandbox.path / "none.pid"))
    assert "WRAPT False DECORATORS False" in result.stdout, result


def test_the_decorators_load_at_first_use() -> None:
    import subprocess

    code = (
        "import sys, daemondeco; before = 'wrapt' in sys.modules; from daemondeco import daemon; "
        "print(before, 'wrapt' in sys.modules, daemon.__module__, daemondeco.DaemonFunction.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["False", "True", "daemondeco._decorators", "daemondeco"], done


def test_run_of_a_default_daemon_has_no_grace_to_wait_for(sandbox: Sandbox) -> None:
    """.run() (foreground debugging) with the default ready="auto": a quick function is no failed start."""
    result = sandbox.run_reporting(
        """
        import time
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid")
        def main():
            return 7

        began = time.monotonic()
        value = main.run()
        report(value=value, took=time.monotonic() - began, pidfile=(HERE / "d.pid").exists())
        """
    )
    [data] = result.reports()
    assert data["value"] == 7 and data["pidfile"] is False, data
    assert data["took"] < 0.9, data
