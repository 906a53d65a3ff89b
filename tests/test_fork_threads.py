"""Threads in the launcher at the fork (issue 20 item 4; docs/explanation/fork-exec-threads.md).

fork() copies only the calling thread: the others do not exist in the daemon,
and a lock one of them held at the fork stays held there. daemondeco warns
(``DaemonWarning``, a ``RuntimeWarning``, at the caller's line) before it
forks; CPython 3.12+ adds a ``DeprecationWarning`` of its own from
``os.fork()``, which daemondeco's fork leaves out after its own warning.
"""

from __future__ import annotations

import json

from conftest import Sandbox, wait_for_text

THREAD_HOLDS = """
import json, logging, os, sys, threading
from daemondeco import daemon, notify_ready

HERE = os.path.dirname(os.path.abspath(__file__))
handler = logging.FileHandler(os.path.join(HERE, "app.log"))
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
app_lock = threading.Lock()
held, release = threading.Event(), threading.Event()

def hold():
    with handler.lock, app_lock:  # a thread in the middle of a log call, and of the app's own work
        held.set()
        release.wait()

helper = threading.Thread(target=hold, name="holder")
helper.start()
held.wait()

@daemon(pidfile=os.path.join(HERE, "d.pid"), stdout=os.path.join(HERE, "out.log"), ready="notify")
def main():
    logging.info("logged in the daemon")  # the handler's lock, held by "holder" at the fork
    got = app_lock.acquire(timeout=0.5)  # the app's lock, held by "holder" at the fork
    print(json.dumps({"app_lock_acquired": got}), flush=True)
    notify_ready()

main()
"""


def test_a_lock_held_by_a_launcher_thread_stays_held_in_the_daemon_but_logging_s_are_reset(sandbox: Sandbox) -> None:
    result = sandbox.run(THREAD_HOLDS)
    assert result.returncode == 0, result
    # Warned, at the caller's line, naming the thread and the lock hazard.
    assert "DaemonWarning: starting a daemon while other threads run (holder)" in result.stderr, result
    assert "a lock one of them holds stays locked there" in result.stderr
    assert f"{sandbox.path / 'prog.py'}:" in result.stderr
    assert "is multi-threaded, use of fork()" not in result.stderr, "one warning, not CPython's too"
    # logging registers at-fork handlers that re-create its locks in the child: the daemon logs.
    assert wait_for_text(sandbox.path / "app.log", "logged in the daemon")
    # Any other lock stays held forever in the daemon: a forked daemon would deadlock on it.
    out = wait_for_text(sandbox.path / "out.log", "app_lock_acquired")
    assert json.loads(out.splitlines()[-1]) == {"app_lock_acquired": False}


UNDER_W_ERROR = """
import os, threading
from daemondeco import daemon

HERE = os.path.dirname(os.path.abspath(__file__))
stop = threading.Event()
threading.Thread(target=stop.wait, name="poller", daemon=True).start()

@daemon(pidfile=os.path.join(HERE, "d.pid"))
def main():
    open(os.path.join(HERE, "ran"), "w").close()

main()  # the refused line
"""


def test_under_w_error_a_live_thread_refuses_the_start_before_anything_forks(sandbox: Sandbox) -> None:
    script = sandbox.write("prog.py", UNDER_W_ERROR)
    result = sandbox.run_python("-W", "error", str(script))
    assert result.returncode == 1, result
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("daemondeco.DaemonWarning: starting a daemon while other threads run (poller)"), result
    refused_line = next(n for n, line in enumerate(script.read_text().splitlines(), 1) if "# the refused line" in line)
    assert f'File "{script}", line {refused_line}' in result.stderr
    assert not (sandbox.path / "ran").exists() and not (sandbox.path / "d.pid").exists()
    assert sandbox.live_pids() == [], "nothing forked"
