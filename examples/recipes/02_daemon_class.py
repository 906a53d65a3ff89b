"""Recipe 2, the ``Daemon`` base class, restated with daemondeco.

The copied class is subclassed and its ``run()`` overridden; ``start()``
checks ``os.path.exists(pidfile)``, forks, redirects stdio, installs a
SIGTERM handler and calls ``run()``; ``stop()`` reads the pidfile and sends
SIGTERM in a loop. Its flaws:

* ``exists()`` then ``open("w")`` is a race (two starts both pass the check),
  and a pidfile left by a crash or a kill -9 blocks every later start until
  someone deletes it by hand;
* ``stop()`` signals whatever pid the file names, even one the kernel has
  since given to another process;
* the variants are full of typos (a misspelt attribute, a wrong ``os`` call)
  that only fail at run time, inside the daemon, where nobody sees them.

With daemondeco the class keeps its shape, but the daemon machinery is a
decorator on ``run()``: the pidfile is locked with ``flock`` (a stale one is
simply taken over), ``stop`` only signals a pid that holds the lock and
escalates to SIGKILL after ``stop_timeout``, and a misspelt option fails
when the class is defined, with the fix in the message::

    @daemon(pidfle=...)  ->  TypeError: daemon() got an unexpected option 'pidfle'; did you mean 'pidfile'?

Run it as::

    python examples/recipes/02_daemon_class.py start|status|stop|restart|run [GREETING]

Files go to $RECIPE_DIR (default: a per-user directory in the temp directory).
"""

import os
import sys
import tempfile
import time

from daemondeco import daemon, notify_ready

RECIPE_DIR = os.path.abspath(
    os.environ.get("RECIPE_DIR") or os.path.join(tempfile.gettempdir(), f"daemondeco-recipes-{os.getuid()}")
)


class Greeter:
    """A service object: its state is set up in the launcher, its run() is the daemon."""

    pidfile = os.path.join(RECIPE_DIR, "02.pid")
    log = os.path.join(RECIPE_DIR, "02.log")

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.count = 0

    def greet(self, greeting: str) -> None:
        self.count += 1
        print(f"{greeting} #{self.count} from {type(self).__name__} {os.getpid()}")

    # The options are fixed when the class is defined; `self` is passed as usual.
    @daemon(pidfile=pidfile, stdout=log, ready="notify", stop_timeout=5)
    def run(self, greeting: str = "hello") -> None:
        """The daemon's body: greet every `interval` seconds until stopped."""
        self.greet(greeting)  # before notify_ready(): a bug here fails `start`
        notify_ready()
        try:
            while True:
                time.sleep(self.interval)
                self.greet(greeting)
        finally:
            print(f"{type(self).__name__} {os.getpid()} stopping after {self.count} greetings")


if __name__ == "__main__":
    os.makedirs(RECIPE_DIR, exist_ok=True)
    # start/stop/status/restart/run, LSB exit codes; extra words go to run().
    sys.exit(Greeter(interval=1.0).run.cli())
