"""Whole start and idle memory of a minimal daemon program, side by side with the peers (issue 13, point 3).

``python benchmarks/bench_startup.py [--quick] [--json PATH] [--python LABEL=PATH ...]``

Every candidate is a complete little program run as ``python prog.py`` in a
fresh process (``posix_spawn``): it imports its library, detaches a daemon
whose body reports a ``CLOCK_MONOTONIC`` timestamp on an inherited pipe and
then sleeps. Measured from the instant before ``posix_spawn``:

* **launcher exit**: the launching process has exited (a pidfd);
* **body runs**: the daemon's function has started (its own timestamp).

Then, the daemon idle, its memory: ``VmRSS`` and ``RssAnon`` from
``/proc/<pid>/status`` and ``Pss_Anon`` from ``/proc/<pid>/smaps_rollup``.

Candidates, interleaved in a shuffled order every round, for every
interpreter given (``--python wrapt1=/work/venv-w1/bin/python``: another
venv, e.g. with wrapt 1.x; daemondeco comes from this checkout through
``PYTHONPATH``):

* ``bare``: ``python -c pass``'s equivalent, a program that only starts;
* ``raw``: fork, setsid, fork in a program that imports only ``os``; its launcher leaves
  once the daemon wrote its pid on a pipe (the floor of a start that knows);
* ``daemondeco``: ``@daemon`` (the launcher exits once the daemon is ready);
* ``import-wrapt``: a program that imports wrapt and exits (its cost, for the notes);
* ``python-daemon``, ``daemonize``, ``daemonocle``, when importable.

Ratios are paired per round against ``raw`` of the same interpreter; the
memory ratios against raw's daemon too. python-daemon and daemonize
launchers exit at the fork without waiting for the daemon; daemonocle's
launcher sleeps one second by design (fewer rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Harness, interleaved, paired_ratios, summary, tree_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_REPORT = """
import os, sys, time
R = int(sys.argv[1])
def body(*_args):
    os.write(R, b"body %d %d\\n" % (os.getpid(), time.monotonic_ns()))
    os.close(R)
    time.sleep(120)
"""

PROGRAMS = {
    # os._exit: the import alone, without the interpreter's teardown of a larger heap (daemondeco's
    # launcher leaves with os._exit too)
    "bare": "import os, sys\nos.close(int(sys.argv[1]))\nos._exit(0)\n",
    "import-wrapt": "import os, sys, wrapt\nos.close(int(sys.argv[1]))\nos._exit(0)\n",
    "raw": _REPORT
    + """
r, w = os.pipe()
child = os.fork()
if child:  # the launcher leaves once the daemon said its pid: the floor of a start that knows
    os.close(w)
    os.waitpid(child, 0)
    os.read(r, 16)
    os._exit(0)
os.close(r)
os.setsid()
if os.fork():
    os._exit(0)
os.write(w, str(os.getpid()).encode())
os.close(w)
body()
""",
    "daemondeco": _REPORT
    + """
from daemondeco import daemon
daemon(keep_fds=[R], ready="start")(body)()  # the start itself: ready="auto" (the default) adds startup_grace
""",
    "python-daemon": _REPORT
    + """
import daemon
with daemon.DaemonContext(files_preserve=[R]):
    body()
""",
    "daemonize": _REPORT
    + """
from daemonize import Daemonize
Daemonize(app="bench", pid=sys.argv[2], action=body, keep_fds=[R]).start()
""",
    "daemonocle": _REPORT
    + """
import daemonocle
daemonocle.Daemon(name="bench", worker=body, detach=True).start()
""",
}
PEERS = {"python-daemon": "daemon", "daemonize": "daemonize", "daemonocle": "daemonocle"}
MEMORY_FIELDS = ("VmRSS", "RssAnon")


def log(msg: str = "") -> None:
    print(msg, flush=True)


def probe(python: str, env: dict[str, str]) -> tuple[str, dict[str, bool]]:
    """The interpreter's wrapt version and which peers it can import."""
    code = (
        "import importlib, json, wrapt\n"
        f"peers = {dict(PEERS)!r}\n"
        "ok = {}\n"
        "for label, module in peers.items():\n"
        "    try:\n"
        "        importlib.import_module(module); ok[label] = True\n"
        "    except Exception:\n"
        "        ok[label] = False\n"
        "print(json.dumps([wrapt.__version__, ok]))\n"
    )
    out = subprocess.run([python, "-c", code], env=env, check=True, capture_output=True, text=True, cwd="/")
    version, ok = json.loads(out.stdout)
    return version, ok


def memory(pid: int) -> dict[str, float]:
    """kB figures of the idle daemon *pid*; empty if it is gone."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in MEMORY_FIELDS:
                    out[key] = float(value.split()[0])
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("Pss_Anon", "Pss"):
                    out[key] = float(value.split()[0])
    except OSError:
        return {}
    return out


def run_once(h: Harness, python: str, cand: str, env: dict[str, str], scripts: dict[str, str]) -> dict[str, float]:
    pidfile = os.path.join(h.tmpdir, f"{cand}-{len(os.listdir(h.tmpdir))}.pid")
    timeout = 30.0
    lines, exited_at, _ = h.run_argv(
        lambda fd: [python, scripts[cand], str(fd), pidfile], timeout=timeout, env=env, label=cand
    )
    t0 = h.spawned_at
    got: dict[str, float] = {}
    if exited_at is not None:
        got["exit"] = exited_at - t0
    for line in lines:
        word, *rest = line.split()
        if word == "body":
            got["body"] = int(rest[1]) - t0
            got.update(memory(int(rest[0])))
    h.kill_all()
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 30 s a interpreter)")
    parser.add_argument("--json", metavar="PATH", help='write {"title", "rows", "notes"} to PATH')
    parser.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="also run under another interpreter (e.g. a venv with wrapt<2); default: this one only",
    )
    args = parser.parse_args(argv)
    rounds, slow_rounds = (4, 1) if args.quick else (15, 3)
    h = Harness(sys.executable)
    env = tree_env(h.env, ROOT)  # this checkout's daemondeco, under every interpreter
    pythons = [("this", sys.executable), *(tuple(item.split("=", 1)) for item in args.python)]
    scripts = {}
    for name, code in PROGRAMS.items():
        scripts[name] = os.path.join(h.tmpdir, f"{name}.py")
        with open(scripts[name], "w") as handle:
            handle.write(code)
    rows: list[dict[str, object]] = []
    notes: list[str] = []
    try:
        for label, python in pythons:
            version, peers = probe(python, env)
            head = f"{label} (wrapt {version})"
            cands = [
                "bare",
                "import-wrapt",
                "raw",
                "daemondeco",
                *(p for p in ("python-daemon", "daemonize") if peers[p]),
            ]
            log(f"\n## whole start and idle memory: {head}, {rounds} rounds interleaved")
            per_round: dict[int, dict[str, dict[str, float]]] = {}
            order = [(-1, c) for c in cands] + interleaved(cands, rounds, seed=13)
            if peers["daemonocle"]:
                order += [(-1, "daemonocle")] + [(r, "daemonocle") for r in range(slow_rounds)]
            for rnd, cand in order:
                got = run_once(h, python, cand, env, scripts)
                if rnd >= 0:
                    per_round.setdefault(rnd, {})[cand] = got
            rows.extend(_rows(head, per_round, [*cands, "daemonocle"] if peers["daemonocle"] else cands))
            notes.extend(_notes(head, per_round))
            for p, ok in peers.items():
                if not ok:
                    notes.append(f"{head}: {p} is not importable, left out")
    finally:
        h.close()
    _print(rows, notes)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"title": "Whole start and idle memory (issue 13)", "rows": rows, "notes": notes}, handle, indent=1
            )
    return 0


def _metric(per_round: dict[int, dict[str, dict[str, float]]], cand: str, key: str) -> list[float]:
    return [row[cand][key] for row in per_round.values() if cand in row and key in row[cand]]


def _ratio(per_round: dict[int, dict[str, dict[str, float]]], cand: str, key: str, base: str = "raw") -> str:
    flat = {r: {c: v[key] for c, v in row.items() if key in v} for r, row in per_round.items()}
    got = summary(paired_ratios(flat, cand, base))
    return f"{got['median']:.2f}x [{got['q1']:.2f}-{got['q3']:.2f}]" if got.get("n") else "-"


def _ms(values: list[float]) -> str:
    s = summary(values)
    return f"{s['median'] / 1e6:.1f} [{s['q1'] / 1e6:.1f}-{s['q3'] / 1e6:.1f}]" if s.get("n") else "-"


def _mb(values: list[float]) -> str:
    s = summary(values)
    return f"{s['median'] / 1024:.1f}" if s.get("n") else "-"


def _rows(head: str, per_round: dict, cands: list[str]) -> list[dict[str, object]]:
    rows = []
    for cand in cands:
        if cand in ("bare", "import-wrapt"):
            continue
        rows.append(
            {
                "interpreter": head,
                "candidate": cand,
                "launcher exit ms": _ms(_metric(per_round, cand, "exit")),
                "exit / raw": _ratio(per_round, cand, "exit"),
                "body runs ms": _ms(_metric(per_round, cand, "body")),
                "body / raw": _ratio(per_round, cand, "body"),
                "RSS MB": _mb(_metric(per_round, cand, "VmRSS")),
                "RssAnon MB": _mb(_metric(per_round, cand, "RssAnon")),
                "Pss_Anon MB": _mb(_metric(per_round, cand, "Pss_Anon")),
                "RssAnon / raw": _ratio(per_round, cand, "RssAnon"),
            }
        )
    return rows


def _notes(head: str, per_round: dict) -> list[str]:
    """Where wrapt's import dominates: its cost against daemondeco's whole start, paired per round."""
    flat = {r: {c: v["exit"] for c, v in row.items() if "exit" in v} for r, row in per_round.items()}
    wrapt_cost = [row["import-wrapt"] - row["bare"] for row in flat.values() if "import-wrapt" in row and "bare" in row]
    over_raw = [row["daemondeco"] - row["raw"] for row in flat.values() if "daemondeco" in row and "raw" in row]
    bare = summary([row["bare"] for row in flat.values() if "bare" in row])
    w, o = summary(wrapt_cost), summary(over_raw)
    if not (w.get("n") and o.get("n") and bare.get("n")):
        return []
    share = w["median"] / o["median"] if o["median"] > 0 else float("nan")
    return [
        f"{head}: an interpreter that only starts exits after {bare['median'] / 1e6:.1f} ms; `import wrapt` adds "
        f"{w['median'] / 1e6:.1f} ms [{w['q1'] / 1e6:.1f}-{w['q3'] / 1e6:.1f}]; @daemon's launcher exits "
        f"{o['median'] / 1e6:.1f} ms after raw's: wrapt's import is {share:.0%} of that difference."
    ]


def _print(rows: list[dict[str, object]], notes: list[str]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    log("\n| " + " | ".join(keys) + " |")
    log("|" + " --- |" * len(keys))
    for row in rows:
        log("| " + " | ".join(str(row[k]) for k in keys) + " |")
    for note in notes:
        log(f"\n- {note}")


if __name__ == "__main__":
    sys.exit(main())
