"""The operator's commands, timed side by side (issue 8): reload acknowledgement and status --json.

Pairs, interleaved in a shuffled order every round, each against its baseline:

* ``reload``: ``python -m daemondeco reload PIDFILE`` (returns once the daemon
  finished ``on_reload``) against ``kill -HUP PID`` (returns at once, says
  nothing) -- the price of the acknowledgement, process start included;
* ``reload-api``: ``reload_pidfile()`` in this process against ``os.kill(pid,
  SIGHUP)``: the acknowledgement alone, without an interpreter start;
* ``status-json``: ``python -m daemondeco status --json PIDFILE`` against
  ``python -m daemondeco status PIDFILE``;
* ``control``: ``python -m daemondeco status PIDFILE`` against ``python -c
  pass``: what the command costs beyond an interpreter start (issue 13's
  target: within 10 ms; the control path imports no wrapt).

Results: medians with quartiles and the paired per-round ratio against the
baseline. The machine is shared and noisy: compare within one run only.

    python benchmarks/operator.py [--rounds N] [--quick] [--json PATH]

``--json`` writes ``{"title", "rows", "notes"}`` (what benchmarks/run.py merges).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DAEMON = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from daemondeco import daemon, notify_ready

    HERE = Path(__file__).resolve().parent

    def on_reload():
        pass  # the cheapest reload: what remains is daemondeco's own cost

    @daemon(pidfile=HERE / "bench.pid", stdout=HERE / "bench.log", ready="notify", on_reload=on_reload)
    def main():
        notify_ready()
        while True:
            time.sleep(120)

    sys.exit(main.cli())
    """
)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _quartiles(samples: list[float], *, signed: bool = False) -> str:
    q1, median, q3 = statistics.quantiles(samples, n=4)
    if signed:
        return f"{median * 1000:+8.2f} ms [{q1 * 1000:+.2f} to {q3 * 1000:+.2f}]"
    return f"{median * 1000:8.2f} ms [{q1 * 1000:.2f}-{q3 * 1000:.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="10 rounds")
    parser.add_argument("--json", metavar="PATH", help='write {"title", "rows", "notes"} to PATH')
    args = parser.parse_args()
    if args.quick:
        args.rounds = min(args.rounds, 10)
    sys.path.insert(0, str(ROOT))
    from daemondeco._control import reload_pidfile

    # As benchmarks/_harness.py does: bytecode caches on (this machine sets PYTHONDONTWRITEBYTECODE,
    # which makes every run recompile daemondeco's sources), in a prefix of our own, warmed untimed.
    drop = ("PYTHONUNBUFFERED", "NOTIFY_SOCKET", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(prefix="daemondeco-operator-") as tmp:
        here = Path(tmp)
        env["PYTHONPYCACHEPREFIX"] = str(here / "pycache")
        (here / "app.py").write_text(DAEMON)
        subprocess.run([sys.executable, str(here / "app.py"), "start"], env=env, check=True, stdout=subprocess.DEVNULL)
        pidfile = here / "bench.pid"
        pid = int(pidfile.read_text())
        py = [sys.executable, "-m", "daemondeco"]
        pairs = {
            "reload": (
                lambda: _timed([*py, "reload", str(pidfile)], env),
                lambda: _timed(["kill", "-HUP", str(pid)], env),
                "kill -HUP",
            ),
            "reload-api": (
                lambda: _time_call(lambda: reload_pidfile(str(pidfile), 30.0)),
                lambda: _time_call(lambda: os.kill(pid, signal.SIGHUP)),
                "os.kill(SIGHUP)",
            ),
            "control": (
                lambda: _timed([*py, "status", str(pidfile)], env),
                lambda: _timed([sys.executable, "-c", "pass"], env),
                "python -c pass",
            ),
            "status-json": (
                lambda: _timed([*py, "status", "--json", str(pidfile)], env),
                lambda: _timed([*py, "status", str(pidfile)], env),
                "status",
            ),
        }
        samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in pairs}
        try:
            for _ in range(2):  # warm the caches, untimed
                for candidate, baseline, _label in pairs.values():
                    candidate()
                    baseline()
            for _ in range(args.rounds):
                order = list(pairs.items())
                random.shuffle(order)
                for name, (candidate, baseline, _label) in order:
                    first_candidate = random.random() < 0.5
                    for is_candidate in (first_candidate, not first_candidate):
                        (samples[name][0] if is_candidate else samples[name][1]).append(
                            candidate() if is_candidate else baseline()
                        )
        finally:
            os.kill(pid, signal.SIGTERM)
        print(f"{'pair':<12} {'candidate':<34} {'baseline':<34} ratio (paired median)   difference (paired)")
        rows = []
        for name, (candidate, baseline) in samples.items():
            ratios = [c / b for c, b in zip(candidate, baseline, strict=True)]
            diffs = [c - b for c, b in zip(candidate, baseline, strict=True)]
            label = pairs[name][2]
            print(
                f"{name:<12} {_quartiles(candidate):<34} {_quartiles(baseline):<34} "
                f"{statistics.median(ratios):.2f}x vs {label}   {_quartiles(diffs, signed=True)}"
            )
            rows.append(
                {
                    "pair": name,
                    "candidate ms": _quartiles(candidate).strip(),
                    "baseline": label,
                    "baseline ms": _quartiles(baseline).strip(),
                    "ratio (paired)": f"{statistics.median(ratios):.2f}x",
                    "difference (paired)": _quartiles(diffs, signed=True).strip(),
                }
            )
    control = statistics.median(c - b for c, b in zip(*samples["control"], strict=True)) * 1000
    notes = [
        f"python -m daemondeco status costs {control:+.1f} ms over python -c pass, paired "
        f"(target: within 10 ms): {'MET' if control <= 10 else 'MISSED'}",
        f"{args.rounds} rounds; candidate and baseline of a pair run back to back in a random order",
    ]
    print(notes[0])
    if args.json:
        import json

        with open(args.json, "w") as handle:
            json.dump(
                {
                    "title": "Operator commands (reload ack, status --json, control path)",
                    "rows": rows,
                    "notes": notes,
                    "control_ms": control,
                },
                handle,
                indent=1,
            )
    return 0


def _time_call(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


if __name__ == "__main__":
    sys.exit(main())
