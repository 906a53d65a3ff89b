"""ticker: the quick-start daemon of the README.

A small service: it sets itself up (checks its argument, opens its state
file), tells the launcher it is ready, then writes a tick line every second
until it is stopped.

    python examples/ticker.py start [INTERVAL]   # exits 0 once the daemon is ready
    python examples/ticker.py status             # 0 running, 1 stale pidfile, 3 stopped
    python examples/ticker.py stop               # SIGTERM, SIGKILL after 10 s
    python examples/ticker.py restart            # stop, then start
    python examples/ticker.py run                # in the foreground (Ctrl-C ends it)

Files go to $TICKER_DIR, by default a per-user directory under the system's
temporary directory. Paths are made absolute: a daemon runs in "/".
"""

import os
import sys
import tempfile
import time

from daemondeco import daemon, notify_ready

TICKER_DIR = os.path.abspath(
    os.environ.get("TICKER_DIR") or os.path.join(tempfile.gettempdir(), f"daemondeco-ticker-{os.getuid()}")
)
PIDFILE = os.path.join(TICKER_DIR, "ticker.pid")
LOG = os.path.join(TICKER_DIR, "ticker.log")
STATE = os.path.join(TICKER_DIR, "ticker.state")


@daemon(pidfile=PIDFILE, stdout=LOG, ready="notify")
def ticker(interval: str = "1") -> None:
    """Write a tick line every INTERVAL seconds; keep the last tick in the state file.

    The daemon's stdout is line-buffered already; flush=True is for `run`,
    where stdout may be a pipe (a terminal, a journal, a container log).
    """
    # Set-up: any exception here reaches `start` as a StartupError, with this
    # traceback, and `start` exits 1. Nothing is left running.
    seconds = float(interval)
    if not seconds > 0:
        raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
    with open(STATE, "a+") as state:
        state.seek(0)
        tick = int(state.read() or 0)
        print(f"ticker {os.getpid()} ready, resuming after tick {tick}", flush=True)
        try:
            notify_ready()  # only now does `start` exit 0; inside the try, so a stop cleans up
            while True:
                tick += 1
                print(f"tick {tick}", flush=True)
                state.seek(0)
                state.truncate()
                state.write(str(tick))
                state.flush()
                time.sleep(seconds)
        finally:  # `stop` sends SIGTERM, which raises SystemExit here
            print(f"ticker {os.getpid()} stopping after tick {tick}", flush=True)


if __name__ == "__main__":
    os.makedirs(TICKER_DIR, exist_ok=True)
    if sys.argv[1:2] in (["start"], ["restart"]):
        print(f"ticker: log in {LOG}")
    sys.exit(ticker.cli())
