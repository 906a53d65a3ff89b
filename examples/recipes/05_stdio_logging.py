"""Recipe 5, ``daemonize(stdin, stdout, stderr)`` with logging, restated with daemondeco.

The copied recipe is recipe 1 with stdio sent to files (``/tmp/daemon.log``)
and a ``logging`` set-up around it. Its flaws:

* a ``logging.FileHandler`` configured before the detach writes to an fd the
  recipe's "close all fds" step has closed: logging stops silently (or,
  worse, the fd number is reused and log lines land in some other file);
* stdout is block-buffered once it is a file, so prints show up late, or
  twice (a buffer copied by fork is flushed by both processes);
* a fixed ``/tmp/daemon.log`` is a shared, guessable path.

daemondeco keeps the fds of every configured ``logging`` handler open
automatically, makes the daemon's stdout and stderr line-buffered, flushes
the launcher's buffers before forking, and opens the stdout/stderr targets
in the launcher (append mode), so a path that cannot be written fails there.

    python examples/recipes/05_stdio_logging.py              # start
    python -m daemondeco stop $RECIPE_DIR/05.pid

Writes 05.out (stdout), 05.err (stderr) and 05.log (logging) in $RECIPE_DIR
(default: a per-user temp directory).
"""

import logging
import os
import sys
import tempfile
import time

from daemondeco import daemonize, notify_ready

RECIPE_DIR = os.path.abspath(
    os.environ.get("RECIPE_DIR") or os.path.join(tempfile.gettempdir(), f"daemondeco-recipes-{os.getuid()}")
)
os.makedirs(RECIPE_DIR, exist_ok=True)
PIDFILE, OUT, ERR, LOG = (os.path.join(RECIPE_DIR, f"05.{ext}") for ext in ("pid", "out", "err", "log"))

# Logging is configured in the launcher, before the detach, as usual.
handler = logging.FileHandler(LOG)
handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
log = logging.getLogger("recipe5")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.info("launcher %d configured logging", os.getpid())

daemonize(pidfile=PIDFILE, stdout=OUT, stderr=ERR, ready="notify")

# The daemon: the handler's file is still open (its fd was kept).
log.info("daemon %d started", os.getpid())
print(f"daemon {os.getpid()}: stdout goes to {OUT}")
print(f"daemon {os.getpid()}: stderr goes to {ERR}", file=sys.stderr)
notify_ready()

try:
    n = 0
    while True:
        n += 1
        log.info("heartbeat %d", n)
        time.sleep(1)
finally:  # SIGTERM raises SystemExit: the last line is logged
    log.info("daemon %d stopping", os.getpid())
