"""Start time of one python-daemon program under python-daemon 3.1.2 and under daemondeco.compat (issue 11).

``python benchmarks/bench_compat.py [--quick] [--json PATH]``

The same program (``DaemonContext(pidfile=TimeoutPIDLockFile(path, -1),
files_preserve=[fd])`` around a body that reports and sleeps) is started
with ``import daemon`` and with ``import daemondeco.compat as daemon``; the
native ``daemondeco.daemonize()`` runs beside them for reference. Candidates
are interleaved in a shuffled order every round, each start in a fresh
interpreter (imports included, as an operator pays them). Two times per start,
from the moment the launcher is spawned:

* ``launcher exit``: what a shell or systemd ``Type=forking`` waits for.
  python-daemon's launcher leaves at its first fork, before the daemon has
  done anything (so before it could fail); compat's when ``open()`` returned
  in the daemon.
* ``body runs``: the daemon's first line after ``open()`` (CLOCK_MONOTONIC,
  shared by all processes): the time to a working daemon, the fair comparison.

Ratios are per round, against python-daemon measured in the same round.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Harness, fmt_ms, interleaved, paired_ratios, summary, tree_env

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's daemondeco

BASELINE = "python-daemon"
CANDIDATES = [BASELINE, "compat", "daemondeco.daemonize"]

PROGRAM = """
import os, sys, time
impl, path, fd = sys.argv[1], sys.argv[2], int(sys.argv[3])

def body():
    os.write(fd, f"body {os.getpid()} {time.monotonic_ns()}\\n".encode())
    os.close(fd)
    time.sleep(600)

if impl == "daemondeco.daemonize":
    import daemondeco
    daemondeco.daemonize(pidfile=path, keep_fds=[fd])
    body()
else:
    if impl == "python-daemon":
        import daemon
        from daemon import pidfile
    else:
        import daemondeco.compat as daemon
        from daemondeco.compat import pidfile
    with daemon.DaemonContext(pidfile=pidfile.TimeoutPIDLockFile(path, -1), files_preserve=[fd]):
        body()
"""


def start_once(harness: Harness, script: str, impl: str, index: int) -> tuple[float, float]:
    """Start the program once; (launcher exit, body runs) in ns after the spawn. The daemon is killed after."""
    read_end, write_end = os.pipe()
    path = os.path.join(harness.tmpdir, f"{impl}-{index}.pid")  # a fresh path: a killed python-daemon leaves its file
    started = time.monotonic_ns()
    try:
        pid = harness.spawn([harness.python, script, impl, path, str(write_end)], pass_fd=write_end)
    finally:
        os.close(write_end)
    pidfd = harness._pidfds[pid]
    poller = select.poll()
    poller.register(read_end, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    exited = body = None
    data = b""
    deadline = time.monotonic() + 30
    try:
        while exited is None or body is None:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                raise TimeoutError(f"{impl}: no start within 30 s; see {harness.errlog}\n{harness.stderr_tail()}")
            for fd, _ in poller.poll(left):
                if fd == pidfd and exited is None:
                    exited = time.monotonic_ns() - started
                    poller.unregister(pidfd)
                elif fd == read_end:
                    chunk = os.read(read_end, 4096)
                    if not chunk:
                        poller.unregister(read_end)
                        if body is None:
                            raise RuntimeError(f"{impl}: the daemon never ran its body\n{harness.stderr_tail()}")
                        continue
                    data += chunk
                    if b"\n" in data and body is None:
                        _, daemon_pid, at = data.split(b"\n")[0].split()
                        harness.track(int(daemon_pid))
                        body = int(at) - started
    finally:
        os.close(read_end)
    harness.kill_all()  # the daemon, by pidfd; the launcher is reaped too
    return float(exited), float(body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke test")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 30)

    harness = Harness(sys.executable)
    harness.env = tree_env(harness.env, TREE)  # daemondeco.compat from this checkout, not an older install
    notes = [
        f"{rounds} rounds, candidates interleaved in a shuffled order each round, fresh interpreters",
        "python-daemon's launcher exits at its first fork, before the daemon could fail; "
        "compat's once open() returned in the daemon, with the pidfile written",
    ]
    try:
        import daemon  # noqa: F401 - only to know python-daemon is there
    except ImportError as exc:
        print(f"python-daemon is not installed ({exc}): pip install python-daemon==3.1.2", file=sys.stderr)
        return 2
    script = os.path.join(harness.tmpdir, "program.py")
    with open(script, "w") as handle:
        handle.write(PROGRAM)
    samples: dict[str, dict[int, dict[str, float]]] = {"launcher exit": {}, "body runs": {}}
    try:
        for index, (r, impl) in enumerate([(-1, c) for c in CANDIDATES] + interleaved(CANDIDATES, rounds, seed=11)):
            exited, body = start_once(harness, script, impl, index)
            if r < 0:
                continue  # the untimed first round warms the bytecode cache
            samples["launcher exit"].setdefault(r, {})[impl] = exited
            samples["body runs"].setdefault(r, {})[impl] = body
    finally:
        harness.close()

    rows = []
    lines = [
        "| measure | candidate | median ms | q1-q3 ms | ratio to python-daemon (median [q1-q3]) |",
        "| --- | --- | ---: | --- | --- |",
    ]
    for measure, per_round in samples.items():
        for impl in CANDIDATES:
            values = [row[impl] for row in per_round.values() if impl in row]
            stats = summary(values)
            ratios = summary(paired_ratios(per_round, impl, BASELINE))
            rows.append(
                {
                    "measure": measure,
                    "candidate": impl,
                    "median_ms": stats["median"] / 1e6,
                    "q1_ms": stats["q1"] / 1e6,
                    "q3_ms": stats["q3"] / 1e6,
                    "n": stats["n"],
                    "ratio_median": ratios.get("median"),
                    "ratio_q1": ratios.get("q1"),
                    "ratio_q3": ratios.get("q3"),
                }
            )
            ratio = (
                "1 (baseline)"
                if impl == BASELINE
                else (f"{ratios['median']:.2f} [{ratios['q1']:.2f}-{ratios['q3']:.2f}]")
            )
            lines.append(
                f"| {measure} | {impl} | {fmt_ms(stats['median'])} | "
                f"{fmt_ms(stats['q1'])}-{fmt_ms(stats['q3'])} | {ratio} |"
            )
    title = "Start time of one python-daemon program: python-daemon 3.1.2 vs daemondeco.compat"
    print(f"## {title}\n")
    print("\n".join(lines))
    print()
    for note in notes:
        print(f"- {note}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"title": title, "rows": rows, "notes": notes}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
