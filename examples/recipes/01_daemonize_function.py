"""Recipe 1, the ``daemonize(pid_file=None)`` function, restated with daemondeco.

The copied recipe forks and exits, ``chdir('/')``, ``umask(0)``, ``setsid()``,
forks and exits again, points stdio at /dev/null, writes the pid into the
pidfile and registers an ``atexit`` handler that removes it. Its flaws:

* ``umask(0)``: every file the daemon creates with ``open()`` is
  world-writable (0o666);
* no lock: two copies start happily, and a pidfile left by a crash is
  trusted (or blocks the next start, depending on the copy);
* the ``atexit`` handler also runs in any child the daemon forks later, which
  then deletes the pidfile of a daemon that still runs;
* the parent exits 0 right after the first fork: an error during set-up
  happens in a process nobody watches and is lost.

daemondeco's ``daemonize()`` keeps the recipe's shape (one call, then the
daemon's code) and fixes each of them: umask 0o022, a pidfile locked with
``flock`` for the daemon's life and removed only by the daemon itself, and a
launcher that exits 0 only once the daemon said it is ready, or raises
``StartupError`` with the daemon's traceback (exit status 1).

    python examples/recipes/01_daemonize_function.py            # start
    python -m daemondeco status $RECIPE_DIR/01.pid              # 0 running, 3 stopped
    python -m daemondeco stop $RECIPE_DIR/01.pid

Files go to $RECIPE_DIR (default: a per-user directory in the temp directory).
"""

import os
import sys
import tempfile
import time

from daemondeco import AlreadyRunningError, daemonize, notify_ready

RECIPE_DIR = os.path.abspath(
    os.environ.get("RECIPE_DIR") or os.path.join(tempfile.gettempdir(), f"daemondeco-recipes-{os.getuid()}")
)
PIDFILE = os.path.join(RECIPE_DIR, "01.pid")
LOG = os.path.join(RECIPE_DIR, "01.log")
DATA = os.path.join(RECIPE_DIR, "01.data")

os.makedirs(RECIPE_DIR, exist_ok=True)
print(f"starting; pidfile {PIDFILE}, log {LOG}", flush=True)

# Everything up to here runs in the launcher. A pidfile locked by a running
# copy raises AlreadyRunningError, before anything forks; a bad path raises
# OSError naming it. Starting what already runs is a success (LSB): exit 0.
try:
    daemonize(pidfile=PIDFILE, stdout=LOG, ready="notify")
except AlreadyRunningError as exc:
    print(f"already running (pid {exc.pid})")
    sys.exit(0)

# From here on this is the daemon: no terminal, workdir "/", umask 0o022.
# Set-up errors still reach the launcher, which is waiting for notify_ready().
with open(DATA, "a") as data:  # created 0o644, not the recipe's 0o666
    print(f"daemon {os.getpid()} ready", flush=True)
    notify_ready()  # the launcher exits 0 now
    try:
        while True:
            data.write(f"{time.time():.0f} still here\n")
            data.flush()
            time.sleep(1)
    finally:  # SIGTERM (python -m daemondeco stop) raises SystemExit: this runs
        print(f"daemon {os.getpid()} stopping", flush=True)
