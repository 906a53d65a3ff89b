"""``async def`` mains: ``@daemon`` and ``@process_daemonize`` run them under ``asyncio.run``.

Readiness with ``ready="start"`` comes from inside the running loop; SIGTERM
cancels the main task, so ``finally`` blocks and ``async with`` exits run and
the daemon exits 0.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import textwrap

from conftest import Sandbox, alive, proc_stat, wait_exit, wait_for_text, zombie_exit_code


def test_ready_start_reported_from_the_running_loop(sandbox: Sandbox) -> None:
    code = """
        import asyncio, os
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log")
        async def main(greeting):
            await asyncio.sleep(0.01)
            (HERE / "out").write_text(f"{greeting} from {os.getpid()}")
            await asyncio.sleep(3600)

        main("hello")
        print("launcher continued after main()")
    """
    pid = sandbox.start_daemon(code)
    assert wait_for_text(sandbox.path / "out", "hello") == f"hello from {pid}"
    stat = proc_stat(pid)
    assert stat is not None and alive(pid)
    assert stat.session != os.getsid(0), "it is a detached daemon"


def test_sigterm_cancels_the_task_and_cleanup_runs(sandbox: Sandbox) -> None:
    code = """
        import asyncio, os
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        class Resource:
            async def __aenter__(self):
                print("resource opened", flush=True)
                return self

            async def __aexit__(self, *exc_info):
                await asyncio.sleep(0)  # cleanup may await
                print("resource closed:", exc_info[0].__name__ if exc_info[0] else None, flush=True)

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        async def main():
            try:
                async with Resource():
                    notify_ready()
                    await asyncio.Event().wait()
            except asyncio.CancelledError:
                print("task cancelled", flush=True)
                raise
            finally:
                print("finally ran", flush=True)

        main()
        print("launcher continued after main()")
    """
    pid = sandbox.start_daemon(code)
    log = sandbox.path / "d.log"
    wait_for_text(log, "resource opened")
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid, 5), "SIGTERM must end an async daemon"
    assert zombie_exit_code(pid) == 0
    lines = log.read_text().splitlines()
    assert lines == ["resource opened", "resource closed: CancelledError", "task cancelled", "finally ran"], lines
    assert not (sandbox.path / "d.pid").exists()


def test_sigterm_cancels_only_the_main_task(sandbox: Sandbox) -> None:
    """Other tasks keep running while the main task cleans up (e.g. a pool flushing)."""
    code = """
        import asyncio, os
        from pathlib import Path
        from daemondeco import daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        async def flusher(requests):
            try:
                while True:
                    reply = await requests.get()
                    reply.set_result("flushed")
            except asyncio.CancelledError:
                print("helper cancelled", flush=True)
                raise

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        async def main():
            requests = asyncio.Queue()
            helper = asyncio.create_task(flusher(requests))
            try:
                notify_ready()
                print("serving", flush=True)
                await asyncio.Event().wait()
            finally:
                reply = asyncio.get_running_loop().create_future()
                await requests.put(reply)
                try:
                    print("cleanup:", await asyncio.wait_for(reply, 1), flush=True)
                except BaseException as exc:
                    print("cleanup failed:", type(exc).__name__, flush=True)
                helper.cancel()

        main()
    """
    pid = sandbox.start_daemon(code)
    log = sandbox.path / "d.log"
    wait_for_text(log, "serving")
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid, 5)
    assert log.read_text().splitlines() == ["serving", "cleanup: flushed", "helper cancelled"], log.read_text()
    assert zombie_exit_code(pid) == 0


def test_exception_before_notify_ready_is_a_startup_error(sandbox: Sandbox) -> None:
    code = """
        import asyncio, json, sys
        from pathlib import Path
        from daemondeco import StartupError, daemon, notify_ready
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid", stdout=HERE / "d.log", ready="notify")
        async def main():
            await asyncio.sleep(0)
            raise RuntimeError("no config at /etc/app.toml")
            notify_ready()

        try:
            main()
        except StartupError as exc:
            print(json.dumps({"type": exc.exc_type, "message": exc.exc_message, "pid": exc.pid,
                              "traceback": exc.daemon_traceback, "text": str(exc)}))
            sys.exit(1)
        print("launcher continued after main()")
    """
    result = sandbox.run(textwrap.dedent(code))
    assert result.returncode == 1, result
    info = json.loads(result.stdout)
    assert info["type"] == "RuntimeError"
    assert info["message"] == "no config at /etc/app.toml"
    assert "in main" in info["traceback"] and 'raise RuntimeError("no config' in info["traceback"], info["traceback"]
    assert "no config at /etc/app.toml" in info["text"]
    assert info["pid"] is not None and not alive(info["pid"])
    assert sandbox.live_pids() == [], "nothing left running"
    assert not (sandbox.path / "d.pid").exists()


def test_uncaught_startup_error_in_launcher_shows_the_daemon_traceback(sandbox: Sandbox) -> None:
    code = """
        import asyncio
        from daemondeco import daemon

        @daemon(ready="notify")
        async def main():
            await asyncio.sleep(0)
            raise KeyError("database_url")

        main()
    """
    result = sandbox.run(textwrap.dedent(code))
    assert result.returncode == 1, result
    assert "StartupError" in result.stderr and "KeyError" in result.stderr and "database_url" in result.stderr
    assert "Daemon traceback:" in result.stderr, result
    assert sandbox.live_pids() == []


def test_process_daemonize_runs_a_coroutine_in_a_worker(sandbox: Sandbox) -> None:
    code = """
        import asyncio, json, os
        from pathlib import Path
        from daemondeco import DaemonProcess, notify_ready, process_daemonize
        HERE = Path(__file__).resolve().parent

        @process_daemonize(stdout=HERE / "w.log", ready="notify")
        async def work(name):
            try:
                await asyncio.sleep(0)
                (HERE / "worked").write_text(f"{name} {os.getpid()}")
                notify_ready()
                await asyncio.sleep(3600)
            finally:
                (HERE / "finally").write_text("ran")

        handle = work("job-7")
        report = {
            "is_handle": isinstance(handle, DaemonProcess),
            "caller": os.getpid(),
            "pid": handle.pid,
            "worked": (HERE / "worked").read_text(),
            "running": handle.is_running(),
        }
        report["stopped"] = handle.stop()
        report["running_after"] = handle.is_running()
        report["exitcode"] = handle.exitcode
        print(json.dumps(report))
    """
    result = sandbox.run(textwrap.dedent(code))
    assert result.returncode == 0, result
    report = json.loads(result.stdout)
    assert report["is_handle"] is True
    assert report["pid"] != report["caller"]
    assert report["worked"] == f"job-7 {report['pid']}", "the worker ran the coroutine before it was ready"
    assert report["running"] is True
    assert report["stopped"] is True and report["running_after"] is False
    assert (sandbox.path / "finally").read_text() == "ran", "the worker's finally ran on stop()"
    assert report["exitcode"] == 0, "SIGTERM cancelled the task: exit 0 (its monitor saw it)"


def test_run_returns_the_coroutine_result_in_the_foreground(sandbox: Sandbox) -> None:
    code = """
        import asyncio, os
        from pathlib import Path
        from daemondeco import daemon
        HERE = Path(__file__).resolve().parent

        @daemon(pidfile=HERE / "d.pid")
        async def main(x, *, scale):
            await asyncio.sleep(0)
            return {"value": x * scale, "pid": os.getpid(), "pidfile": (HERE / "d.pid").read_text().strip()}

        result = main.run(21, scale=2)
        print(repr(result), os.getpid(), (HERE / "d.pid").exists())
    """
    result = sandbox.run(textwrap.dedent(code))
    assert result.returncode == 0, result
    value, launcher, pidfile_left = result.stdout.rsplit(" ", 2)
    assert ast.literal_eval(value) == {"value": 42, "pid": int(launcher), "pidfile": launcher}
    assert pidfile_left.strip() == "False", "the pidfile is released after run()"
