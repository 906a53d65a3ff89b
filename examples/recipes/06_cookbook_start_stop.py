"""Recipe 6, Python Cookbook 12.14 (``daemonize(pidfile, ...)`` plus a start|stop script), restated.

The Cookbook's script takes ``start`` or ``stop``: ``start`` refuses to run
if the pidfile exists, then daemonizes; ``stop`` reads the pid from the file
and sends SIGTERM. Its flaws:

* after a crash, a kill -9 or a reboot without tmpfs, the pidfile stays, and
  every later ``start`` refuses ("Already running") until someone deletes it;
* ``stop`` sends one SIGTERM and returns at once: it neither waits for the
  daemon to end nor escalates to SIGKILL, so a ``stop; start`` races;
* ``stop`` signals whatever pid the file names, even a reused one;
* no ``status``, no ``restart``, and exit codes init systems cannot read.

With daemondeco the script is a decorated function and ``.cli()``. A pidfile
that is not locked is stale whatever it contains, so a crashed daemon never
blocks ``start``; ``stop`` signals only the pid holding the lock, waits for
the lock to be released, and sends SIGKILL after ``stop_timeout``; the exit
codes are LSB's (status: 0 running, 1 dead but pidfile exists, 3 stopped).

    python examples/recipes/06_cookbook_start_stop.py start|stop|status|restart|run

Files go to $RECIPE_DIR (default: a per-user directory in the temp directory).
"""

import os
import sys
import tempfile
import time

from daemondeco import daemon

RECIPE_DIR = os.path.abspath(
    os.environ.get("RECIPE_DIR") or os.path.join(tempfile.gettempdir(), f"daemondeco-recipes-{os.getuid()}")
)
PIDFILE = os.path.join(RECIPE_DIR, "06.pid")
LOG = os.path.join(RECIPE_DIR, "06.log")


@daemon(pidfile=PIDFILE, stdout=LOG, stop_timeout=5)
def main() -> None:
    """The Cookbook's daemon body: say when it started, then a line every 10 s."""
    print(f"Daemon started with pid {os.getpid()}")
    while True:
        print(f"Daemon alive! {time.ctime()}")
        time.sleep(10)


if __name__ == "__main__":
    os.makedirs(RECIPE_DIR, exist_ok=True)
    sys.exit(main.cli())
