"""multiprocessing in a daemon: every start method works whatever the launcher did before detaching (issue 20).

The detach closes every fd the launcher had open, among them multiprocessing's
own (the resource tracker's pipe, the forkserver's socket); the daemon must
start its own helpers instead of writing to fds that are gone (``EBADF``) or,
worse, to whatever file reused their numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import Sandbox, wait_until

SCRIPT = """
import json, os, sys, traceback
import multiprocessing
from multiprocessing import shared_memory
from pathlib import Path
from daemondeco import daemon, process_daemonize

HERE = Path(__file__).resolve().parent
METHOD, LAUNCHER_USES, FORM = sys.argv[1:4] if len(sys.argv) > 3 else (None, None, None)


def square(n):
    return n * n


def put(queue, name):
    shm = shared_memory.SharedMemory(name=name)
    queue.put(("child", os.getpid(), shm.buf[0]))
    shm.close()


def work():
    out = {"pid": os.getpid()}
    try:
        ctx = multiprocessing.get_context(METHOD)
        with ctx.Pool(1) as pool:
            out["pool"] = pool.map(square, [1, 2, 3])
        shm = shared_memory.SharedMemory(create=True, size=8)
        shm.buf[0] = 42
        queue = ctx.Queue()
        child = ctx.Process(target=put, args=(queue, shm.name))
        child.start()
        tag, child_pid, value = queue.get(timeout=30)
        child.join(30)
        shm.close()
        shm.unlink()
        out.update(queue=[tag, value], exitcode=child.exitcode, child_is_other=child_pid != os.getpid())
    except BaseException:
        out["error"] = traceback.format_exc()
    (HERE / "result.tmp").write_text(json.dumps(out))
    (HERE / "result.tmp").rename(HERE / "result.json")


# ready="start": a short job, done in less than the default startup_grace
if FORM == "daemon":
    main = daemon(stdout=HERE / "out.log", ready="start")(work)
elif FORM == "restart":
    main = daemon(stdout=HERE / "out.log", restart="on-failure", ready="start")(work)
else:
    main = process_daemonize(stdout=HERE / "out.log")(work)

if __name__ == "__main__":
    if LAUNCHER_USES == "yes":
        with multiprocessing.get_context(METHOD).Pool(1) as pool:
            assert pool.map(square, [2]) == [4]
    main()
"""


@pytest.mark.parametrize("form", ["daemon", "worker", "restart"])
@pytest.mark.parametrize("launcher_uses", ["yes", "no"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_pool_process_queue_and_shared_memory_work_in_the_daemon(
    sandbox: Sandbox, method: str, launcher_uses: str, form: str
) -> None:
    script = sandbox.write("prog.py", SCRIPT)
    env = sandbox.env()
    if method == "fork":
        # Coverage's own data file breaks in a pool worker forked by a daemon
        # ("no such table: coverage_schema" as the worker saves at os._exit; the
        # same before issue 20's fix): these runs go unmeasured. The reset
        # they check runs, and is measured, under spawn and forkserver.
        env.pop("COVERAGE_PROCESS_CONFIG", None)
    done = subprocess.run(
        [sys.executable, str(script), method, launcher_uses, form],
        cwd=sandbox.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    target = sandbox.path / "result.json"
    wait_until(target.exists, 60, what="the daemon's result")
    out = json.loads(target.read_text())
    assert "error" not in out, out["error"]
    assert out["pool"] == [1, 4, 9]
    assert out["queue"] == ["child", 42] and out["exitcode"] == 0 and out["child_is_other"]
