"""Recipe 4, the ``process_daemonize`` decorator, restated with daemondeco.

The copied recipe wraps a function so that calling it daemonizes and runs the
function in the daemon. Its flaws:

* the daemonizing happens in the caller's own process: the caller is ended
  with ``SystemExit`` in the parent branch, so a program cannot start a
  worker and carry on;
* the worker inherits the caller's ``atexit`` handlers and runs them again
  when it ends (temp-dir cleanups, flushes of copied buffers);
* the caller learns nothing: no pid, no way to know whether the worker
  started, no way to stop it.

daemondeco's ``@process_daemonize`` forks the worker off as a real daemon
(double fork, new session, its own stdio) and leaves the caller untouched:
its cwd, umask, signal handlers, stdio and threads stay as they were. The
call returns a ``DaemonProcess`` handle once the worker is ready (or raises
``StartupError`` with the worker's traceback), and the worker never runs the
caller's ``atexit`` handlers.

    python examples/recipes/04_process_daemonize.py

starts two workers, waits for the finite one, stops the endless one, and
exits. The workers write to $RECIPE_DIR/04.log (default: a per-user temp
directory).
"""

import atexit
import os
import sys
import tempfile
import time

from daemondeco import notify_ready, process_daemonize

RECIPE_DIR = os.path.abspath(
    os.environ.get("RECIPE_DIR") or os.path.join(tempfile.gettempdir(), f"daemondeco-recipes-{os.getuid()}")
)
LOG = os.path.join(RECIPE_DIR, "04.log")


@process_daemonize(stdout=LOG, ready="notify", stop_timeout=5)
def count(name: str, upto: int | None = None) -> None:
    """A worker: print a numbered line every 0.1 s, `upto` times or until stopped."""
    print(f"{name} {os.getpid()} ready")
    notify_ready()  # the caller's call returns its DaemonProcess now
    n = 0
    try:
        while upto is None or n < upto:
            n += 1
            print(f"{name} {n}")
            time.sleep(0.1)
    finally:
        print(f"{name} {os.getpid()} done after {n}")


def main() -> int:
    os.makedirs(RECIPE_DIR, exist_ok=True)
    atexit.register(print, f"caller {os.getpid()} atexit handler ran")  # runs once, here

    before = (os.getcwd(), os.getsid(0))
    finite = count("finite", 3)  # no pidfile: every call starts one more worker
    endless = count("endless")
    print(f"caller {os.getpid()} started {finite!r} and {endless!r}")
    print(f"caller cwd and session unchanged: {(os.getcwd(), os.getsid(0)) == before}")

    print(f"finite worker exited with status {finite.wait(timeout=30)}")
    print(f"endless worker running: {endless.is_running()}")
    print(f"endless worker stopped: {endless.stop()}")
    print(f"endless worker running: {endless.is_running()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
