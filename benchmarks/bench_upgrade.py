"""Connection errors and the longest accept gap while a listening daemon is replaced (issue 10).

Candidates, interleaved in a shuffled order every round, each on a fresh
daemon that answers every connection on 127.0.0.1 with its pid:

* ``stop+start`` (the baseline): what ``restart`` did before issue 10 -- the
  socket closes with the old daemon and the new one binds again;
* ``upgrade``: ``app.py upgrade`` -- the successor gets the socket and the
  pidfile's lock, the old daemon drains and exits;
* ``restart``: ``app.py restart`` of a ``listen=`` daemon, which now uses the
  same handover.

During each action a client opens a connection every millisecond. Per
action: the connections that failed (refused, reset, unanswered) and the
longest gap between two answered connections (ms), with medians, quartiles
and the paired per-round ratio of the gap against the baseline. The machine
is shared and noisy: compare within one run only.

    python benchmarks/bench_upgrade.py [--quick] [--json PATH] [--rounds N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _harness import Harness, interleaved, paired_ratios, summary  # noqa: E402

APP = textwrap.dedent(
    """
    import os, selectors, sys, threading
    import daemondeco
    from daemondeco import daemon

    HERE = os.path.dirname(os.path.abspath(__file__))
    wake, done = [], threading.Event()

    def drain():
        os.write(wake[1], b"x")
        done.wait(10)

    @daemon(pidfile=os.path.join(HERE, "app.pid"), stdout=os.path.join(HERE, "app.log"), ready="notify",
            listen={"http": "tcp://127.0.0.1:" + os.environ["BENCH_PORT"]}, on_drain=drain)
    def main():
        selector = selectors.DefaultSelector()
        sock = daemondeco.sockets()["http"]
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        wake.extend(os.pipe())
        selector.register(wake[0], selectors.EVENT_READ)
        daemondeco.notify_ready()
        answer = f"{os.getpid()}\\n".encode()
        try:
            while True:
                for key, _ in selector.select():
                    if key.fileobj == wake[0]:
                        return
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        continue
                    with conn:
                        try:
                            conn.setblocking(True)
                            conn.sendall(answer)
                        except OSError:
                            pass
        finally:
            done.set()

    sys.exit(main.cli())
    """
)

CANDIDATES = ["stop+start", "upgrade", "restart"]
BASELINE = "stop+start"


class Load:
    """A client connecting every millisecond; records the time of each answer and each failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered: list[int] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as client:
                    if client.recv(64):
                        self.answered.append(time.monotonic_ns())
                    else:
                        self.failed += 1
            except OSError:
                self.failed += 1
            self._stop.wait(0.001)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def longest_gap_ns(self, since: int) -> int:
        times = [t for t in self.answered if t >= since]
        return max((b - a for a, b in itertools.pairwise(times)), default=0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one(harness: Harness, workdir: str, candidate: str, env: dict[str, str]) -> tuple[int, int]:
    """(failed connections, longest accept gap ns) during one *candidate* action."""
    script = os.path.join(workdir, "app.py")
    port = free_port()
    env = {**env, "BENCH_PORT": str(port)}

    def app(*args: str) -> None:
        subprocess.run([sys.executable, script, *args], env=env, check=True, capture_output=True, timeout=60)

    app("start")
    try:
        with Load(port) as load:
            while not load.answered:  # the daemon answers: the window opens
                time.sleep(0.001)
            opened = time.monotonic_ns()
            if candidate == "stop+start":
                app("stop")
                app("start")
            else:
                app(candidate)
            settled = len(load.answered)
            while len(load.answered) < settled + 50:  # the new daemon answers too
                time.sleep(0.001)
        return load.failed, load.longest_gap_ns(opened)
    finally:
        subprocess.run([sys.executable, script, "stop"], env=env, capture_output=True, timeout=60, check=False)
        harness.reap_orphans()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    harness = Harness(sys.executable)
    workdir = tempfile.mkdtemp(prefix="daemondeco-bench-upgrade-")
    with open(os.path.join(workdir, "app.py"), "w") as out:
        out.write(APP)
    env = dict(harness.env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(HERE), env.get("PYTHONPATH", "")]))
    env.pop("PYTHONSAFEPATH", None)
    errors: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    gaps: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    per_round: dict[int, dict[str, float]] = {}
    try:
        one(harness, workdir, "upgrade", env)  # warm-up, untimed
        for round_, name in interleaved(CANDIDATES, rounds, seed=10):
            failed, gap = one(harness, workdir, name, env)
            errors[name].append(failed)
            gaps[name].append(gap / 1e6)
            per_round.setdefault(round_, {})[name] = gap / 1e6
    finally:
        harness.close()
    rows = []
    print(
        "| action | failed connections (median [q1, q3]) | longest accept gap ms (median [q1, q3]) | gap / stop+start |"
    )
    print("| --- | --- | --- | --- |")
    for name in CANDIDATES:
        e, g = summary(errors[name]), summary(gaps[name])
        ratio = summary(paired_ratios(per_round, name, BASELINE))
        shown = "1 (baseline)" if name == BASELINE else f"{ratio['median']:.3f} [{ratio['q1']:.3f}, {ratio['q3']:.3f}]"
        print(
            f"| {name} | {e['median']:g} [{e['q1']:g}, {e['q3']:g}] (max {e['max']:g}) "
            f"| {g['median']:.1f} [{g['q1']:.1f}, {g['q3']:.1f}] | {shown} |"
        )
        rows.append({"action": name, "failed": e, "gap_ms": g, "gap_ratio": ratio})
    notes = [
        f"{rounds} rounds, candidates interleaved; a client connects every ms on 127.0.0.1",
        "stop+start is restart without the handover: the socket closes, connections are refused until rebound",
    ]
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"title": "restart versus upgrade of a listening daemon", "rows": rows, "notes": notes}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
