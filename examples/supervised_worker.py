"""A daemon that restarts itself after a crash, without systemd: ``restart=`` (issue 9).

    python examples/supervised_worker.py start    # the launcher returns once the first worker is ready
    python examples/supervised_worker.py status   # supervisor pid, worker pid, restarts, last exit
    kill -9 <worker pid>                          # restarted after restart_delay
    python examples/supervised_worker.py stop     # the worker's finally runs; no restart

Files go to ``$EXAMPLE_DIR`` (default: the system's temp directory).
"""

import os
import sys
import tempfile
import time
from pathlib import Path

from daemondeco import daemon, notify_ready, notify_status

HERE = Path(os.environ.get("EXAMPLE_DIR", tempfile.gettempdir()))


@daemon(
    pidfile=HERE / "supervised_worker.pid",
    stdout=HERE / "supervised_worker.log",
    ready="notify",
    restart="on-failure",
    restart_delay=1.0,
    restart_backoff=2.0,
    restart_max_delay=30.0,
    start_limit=(5, 60.0),
)
def main() -> None:
    notify_status("connecting")
    notify_ready()
    try:
        while True:
            notify_status(f"worker {os.getpid()} serving")
            time.sleep(1)
    finally:
        print(f"worker {os.getpid()} stopped cleanly", flush=True)


if __name__ == "__main__":
    sys.exit(main.cli())
