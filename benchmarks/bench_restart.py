"""Restart on crash (issue 9): restart latency and the supervisor's memory, side by side.

Rows, all measured in this run, interleaved round by round:

* ``restart, restart_delay=0``: SIGKILL of the worker -> the new worker is
  ready (it calls ``notify_ready()`` and writes ``time.monotonic_ns()`` on a
  pipe). Baseline, measured in the same rounds: a fresh start of the same
  function by a plain ``@process_daemonize`` (call -> handle, i.e. ready):
  what a restart costs against starting the daemon again from scratch.
* ``restart, restart_delay=0.1``: the same latency with a 100 ms delay,
  paired against the delay itself: the ratio says how close to the asked
  delay the restart comes (1.0 = exactly).
* ``RSS``: the supervisor's resident memory against its worker's
  (``/proc/<pid>/status`` VmRSS, the worker read once it is ready).

Usage: ``python benchmarks/bench_restart.py [--quick] [--json PATH]``.
The machine is shared and noisy: compare within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from _harness import Harness, interleaved, paired_ratios, summary  # noqa: E402

import daemondeco  # noqa: E402


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _private_bytes(pid: int) -> int:
    """Memory only this process uses (``Private_Clean + Private_Dirty`` of smaps_rollup): not shared with its fork."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


class Lines:
    """The read end of the pipe the workers report on: ``<pid> <monotonic_ns>`` a line."""

    def __init__(self, fd: int) -> None:
        self._file = os.fdopen(fd, "r", buffering=1)

    def next(self) -> tuple[int, int]:
        line = self._file.readline()
        if not line:
            raise RuntimeError("the workers' pipe closed")
        pid, ready_ns = line.split()
        return int(pid), int(ready_ns)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 30")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    rounds = 5 if args.quick else 30

    harness = Harness(sys.executable)  # a child subreaper: every daemon comes back to us to be reaped
    tmp = tempfile.mkdtemp(prefix="daemondeco-bench-restart-")
    read_end, write_end = os.pipe()
    lines = Lines(read_end)

    def work() -> None:
        daemondeco.notify_ready()
        os.write(write_end, f"{os.getpid()} {time.monotonic_ns()}\n".encode())
        while True:
            time.sleep(3600)

    common = {"ready": "notify", "keep_fds": [write_end], "stdout": os.path.join(tmp, "bench.log")}
    supervised = {
        delay: daemondeco.process_daemonize(
            pidfile=os.path.join(tmp, f"sup-{delay}.pid"),
            restart="always",
            restart_delay=delay,
            restart_max_delay=delay,
            restart_backoff=1.0,
            start_limit=None,
            **common,
        )(work)
        for delay in (0.0, 0.1)
    }
    plain = daemondeco.process_daemonize(**common)(work)

    handles, workers = {}, {}
    for delay, function in supervised.items():
        handles[delay] = function()
        harness.track(handles[delay].pid)
        workers[delay], _ = lines.next()
        harness.track(workers[delay])

    per_round: dict[int, dict[str, float]] = {}
    rss: dict[str, list[float]] = {"supervisor": [], "worker": []}
    private: dict[str, list[float]] = {"supervisor": [], "worker": []}
    names = ["restart-0", "restart-0.1", "fresh-start"]
    try:
        for index, name in interleaved(names, rounds, seed=9):
            row = per_round.setdefault(index, {"delay-0.1": 0.1e9})
            if name == "fresh-start":
                started = time.monotonic_ns()
                handle = plain()
                row[name] = time.monotonic_ns() - started
                harness.track(handle.pid)
                lines.next()
                handle.stop()
                continue
            delay = 0.0 if name == "restart-0" else 0.1
            killed = time.monotonic_ns()
            os.kill(workers[delay], signal.SIGKILL)
            workers[delay], ready_ns = lines.next()
            harness.track(workers[delay])
            row[name] = ready_ns - killed
            if delay == 0.0:
                rss["supervisor"].append(_rss_bytes(handles[delay].pid))
                rss["worker"].append(_rss_bytes(workers[delay]))
                private["supervisor"].append(_private_bytes(handles[delay].pid))
                private["worker"].append(_private_bytes(workers[delay]))
    finally:
        for handle in handles.values():
            handle.stop()
        harness.kill_all()

    def values(name: str) -> list[float]:
        return [row[name] for row in per_round.values() if name in row]

    rows = []
    for name, base, label in (
        ("restart-0", "fresh-start", "restart, restart_delay=0 (kill -9 -> ready) vs a fresh process_daemonize start"),
        ("restart-0.1", "delay-0.1", "restart, restart_delay=0.1 (kill -9 -> ready) vs the 100 ms delay itself"),
    ):
        rows.append(
            {
                "name": label,
                "unit": "ms",
                "value": {k: v / 1e6 if k != "n" else v for k, v in summary(values(name)).items()},
                "baseline": {k: v / 1e6 if k != "n" else v for k, v in summary(values(base)).items()},
                "ratio": summary(paired_ratios(per_round, name, base)),
            }
        )
    for label, measured in (
        ("RSS: supervisor vs its worker", rss),
        ("private memory (not shared with the fork): supervisor vs its worker", private),
    ):
        ratio = [s / w for s, w in zip(measured["supervisor"], measured["worker"], strict=True) if w]
        rows.append(
            {
                "name": label,
                "unit": "MiB",
                "value": {k: v / 2**20 if k != "n" else v for k, v in summary(measured["supervisor"]).items()},
                "baseline": {k: v / 2**20 if k != "n" else v for k, v in summary(measured["worker"]).items()},
                "ratio": summary(ratio),
            }
        )
    notes = [
        f"{rounds} rounds, candidates interleaved in a shuffled order each round; Python {sys.version.split()[0]}",
        "latency: from the SIGKILL sent by this process to the new worker's time.monotonic_ns() after notify_ready()",
        "the supervisor is a fork of the launching process: its RSS is what the launcher had imported, shared "
        "copy-on-write with the worker",
    ]
    print("| measure | unit | median (q1-q3) | baseline median (q1-q3) | paired ratio median (q1-q3) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        v, b, r = row["value"], row["baseline"], row["ratio"]
        print(
            f"| {row['name']} | {row['unit']} | {v['median']:.3f} ({v['q1']:.3f}-{v['q3']:.3f}) "
            f"| {b['median']:.3f} ({b['q1']:.3f}-{b['q3']:.3f}) "
            f"| {r['median']:.3f} ({r['q1']:.3f}-{r['q3']:.3f}) |"
        )
    for note in notes:
        print(f"\n- {note}", end="")
    print()
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"title": "Restart on crash (issue 9)", "rows": rows, "notes": notes}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
