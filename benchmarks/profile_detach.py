"""Where daemondeco's detach spends its time: ``python benchmarks/profile_detach.py [--reps N]``.

A diagnostic companion to run.py (not part of the timed suite). In one fresh
process, it starts daemons with ``process_daemonize`` and with the raw floor
(fork, setsid, fork, pipe) in an interleaved loop, and reports:

1. a timeline of both sides of one detach: every ``os``/``select``/``signal``
   call daemondeco makes, recorded through instrumented proxies of those
   modules (so it survives refactoring of the engine), with the median time
   since the call began and the gap since the previous event on the same side;
2. minor page faults of the launcher and of the daemon (this machine is a VM
   where a copy-on-write fault costs ~3 us, so every page a forked Python
   process writes to after ``fork()`` counts);
3. ablations: the same detach with one step replaced by a cheaper equivalent
   (or removed, to bound its cost), interleaved with the unmodified detach,
   so each step's cost is a paired difference.

Every daemon started here exits at once after reporting; the process is a
child subreaper and reaps them all by pid.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import random
import resource
import statistics
import sys
import time
import types

import daemondeco
from daemondeco import _control, _daemon, _engine, _pidfile, _proc, _ready, _runtime, _signals, _stdio, _systemd

_mono = time.monotonic_ns
LAUNCHER = 0
EVENTS: list = []
RECORDING = [False]

# -- instrumented proxies of os / select / signal -------------------------------------

TRACED_OS = (
    "fork",
    "setsid",
    "waitpid",
    "pipe",
    "read",
    "write",
    "close",
    "chdir",
    "umask",
    "dup2",
    "listdir",
    "open",
    "getpid",
    "kill",
    "pidfd_open",
    "fstat",
    "stat",
    "access",
    "pread",
    "pwrite",
    "ftruncate",
)


def _proxy(module: types.ModuleType, names: tuple[str, ...], side_label: str) -> types.ModuleType:
    proxy = types.ModuleType(module.__name__)
    proxy.__dict__.update(module.__dict__)
    for name in names:
        real = getattr(module, name, None)
        if real is None:
            continue

        def traced(*args, _real=real, _name=f"{side_label}.{name}", **kwargs):
            if not RECORDING[0]:
                return _real(*args, **kwargs)
            t = _mono()
            try:
                return _real(*args, **kwargs)
            finally:
                EVENTS.append((_name, os.getpid(), t, _mono()))

        setattr(proxy, name, traced)
    return proxy


def install_proxies() -> None:
    os_proxy = _proxy(os, TRACED_OS, "os")
    os_proxy.path = os.path
    signal_proxies: dict[str, types.ModuleType] = {}
    for mod in (_engine, _daemon, _ready, _control, _proc, _pidfile, _runtime, _signals, _stdio, _systemd):
        if getattr(mod, "os", None) is os:
            mod.os = os_proxy
        sig = getattr(mod, "signal", None)
        # _signals binds the C module _signal to the name ``signal`` (no enums: cheaper after the fork)
        if isinstance(sig, types.ModuleType) and sig.__name__ in ("signal", "_signal"):
            if sig.__name__ not in signal_proxies:
                signal_proxies[sig.__name__] = _proxy(sig, ("signal", "getsignal", "pthread_sigmask"), "signal")
            mod.signal = signal_proxies[sig.__name__]
        sel = getattr(mod, "select", None)
        if isinstance(sel, types.ModuleType) and sel.__name__ == "select":
            mod.select = _proxy(sel, ("poll",), "select")


# -- the raw floor ---------------------------------------------------------------------


RAW_OS = os  # replaced by the traced proxy in main()


def raw_spawn(body) -> int:
    os = RAW_OS
    r, w = os.pipe()
    child = os.fork()
    if child:
        os.close(w)
        os.waitpid(child, 0)
        pid = int(os.read(r, 16))
        os.close(r)
        return pid
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.write(w, str(os.getpid()).encode())
    os.close(w)
    body()
    os._exit(0)


# -- ablations: cheaper equivalents of single steps -------------------------------------


def _noop(*_a, **_k) -> None:
    return None


def _os_level_identity(pid: int) -> int | None:
    """What _proc.identity does, with os.open/os.read instead of the io stack of open()."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    return int(data[data.rindex(b")") + 2 :].split()[19])


ABLATIONS = {
    # name: (module, attribute, replacement, what it shows)
    "no-close_fds": (_daemon, "close_fds", _noop, "close_fds removed (upper bound of the fd-closing step)"),
    "no-identity": (
        _proc,
        "identity",
        lambda pid: None,
        "DaemonProcess without reading /proc/<pid>/stat (cost of the handle's identity)",
    ),
    "identity-via-os.read": (
        _proc,
        "identity",
        _os_level_identity,
        "_proc.identity reading /proc/<pid>/stat with os.open/os.read, not open()",
    ),
    "close_fds-listing": (
        _daemon,
        "close_fds",
        lambda keep, top=None: _listing_close(keep),  # defined further down
        "close_fds listing /proc/self/fd, as before issue 6 (defect 9)",
    ),
    "close_fds-closerange-rlimit": (
        _daemon,
        "close_fds",
        lambda keep, top=None: _closerange_gaps(keep),
        "close_fds: closerange gaps up to RLIMIT_NOFILE, without reading /proc/self/status",
    ),
    "no-warn_threads": (_engine, "_warn_threads", _noop, "_warn_threads removed"),
    "no-flush_stdio": (_engine, "flush_stdio", _noop, "flush_stdio removed"),
}


COMBINED: dict[str, tuple[str, ...]] = {}


class patched:
    def __init__(self, name: str | None) -> None:
        names = COMBINED.get(name, (name,)) if name else ()
        self.specs = [ABLATIONS[n] for n in names if n in ABLATIONS]
        self.saved: list = []

    def __enter__(self):
        for mod, attr, repl, _ in self.specs:
            self.saved.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, repl)

    def __exit__(self, *exc):
        for mod, attr, value in reversed(self.saved):
            setattr(mod, attr, value)
        self.saved = []


# -- single steps, timed right after a fork (copy-on-write state as in a real detach) --------


def _closerange_gaps(keep: set[int]) -> None:
    """close_range(2) over the gaps between kept fds (one syscall a gap on glibc >= 2.34)."""
    start = 0
    for fd in sorted(keep):
        if fd > start:
            os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _listing_close(keep: set[int]) -> None:
    """close_fds as it was before issue 6 (59519e4): list /proc/self/fd, close one by one."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own fd


def _reconfigure() -> None:
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)


def _become_daemon_whole(prepared, write_end):
    return lambda: _daemon.enter(
        _daemon.Entry(_daemon.WORKER, prepared.options, prepared=prepared, write_end=write_end)
    )


def step_costs(reps: int) -> dict[str, list[int]]:
    """Median cost of single detach steps, each timed once in a fresh fork.

    Daemon-side steps run in the forked child (pages shared with the parent,
    as in the daemon); launcher-side steps run in the parent while the forked
    child is alive (pages shared with the child, as in the launcher).
    """
    from daemondeco._options import Options

    rep_r, rep_w = os.pipe()
    child_steps = {
        "D _signals.reset_inherited (as is)": lambda: _signals.reset_inherited(_signals.Inherited(True, ())),
        "D close_fds (as is)": (lambda: _daemon.close_fds({0, 1, 2, rep_w})) if hasattr(_daemon, "close_fds") else None,
        "D stdout/stderr reconfigure": _reconfigure,
        "D close via closerange gaps": lambda: _closerange_gaps({0, 1, 2, rep_w}),
        "D close by listing (before issue 6)": lambda: _listing_close({0, 1, 2, rep_w}),
        "D os.listdir('/proc/self/fd') only": lambda: os.listdir("/proc/self/fd"),
        "D send(P frame)": lambda: _ready.send(rep_w_null, _ready.PID, str(os.getpid()).encode()),
    }
    rep_w_null = os.open(os.devnull, os.O_WRONLY)
    parent_steps = {
        "L _proc.identity (as is)": lambda pid: _proc.identity(pid),  # noqa: PLW0108 - late binding
        "L identity via os.read": _os_level_identity,
        "L DaemonProcess(pid) (as is)": lambda pid: _control.DaemonProcess(pid),  # noqa: PLW0108
        "L os.pidfd_open(pid) (+close)": lambda pid: os.close(os.pidfd_open(pid)),
    }
    results: dict[str, list[int]] = {}
    names = [n for n, f in child_steps.items() if f is not None] + list(parent_steps) + ["D _become_daemon (whole)"]
    rng = random.Random(11)
    for _ in range(reps):
        rng.shuffle(names)
        for name in names:
            prepared = None
            if name == "D _become_daemon (whole)":
                prepared = _engine.prepare(Options.build("profile", {"keep_fds": [rep_w]}))
                pr, pw = os.pipe()
            go_r, go_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(go_w)
                if name.startswith("L "):
                    os.read(go_r, 1)  # stay alive (sharing pages) while the parent measures
                    os._exit(0)
                step = _become_daemon_whole(prepared, pw) if prepared else child_steps[name]
                t = _mono()
                step()
                dt = _mono() - t
                os.write(rep_w, f"{dt}\n".encode())
                os._exit(0)
            os.close(go_r)
            if name.startswith("L "):
                t = _mono()
                parent_steps[name](pid)
                dt = _mono() - t
                os.close(go_w)
            else:
                os.close(go_w)
                dt = int(os.read(rep_r, 64))
            if prepared is not None:
                prepared.close()
                os.close(pr)
                os.close(pw)
            os.waitpid(pid, 0)
            results.setdefault(name, []).append(dt)
    os.close(rep_r)
    os.close(rep_w)
    os.close(rep_w_null)
    return results


# -- the loop ----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=120, help="rounds (each round runs every variant once)")
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() before the loop (as a fix candidate)")
    parser.add_argument("--steps-only", action="store_true", help="only the single-step costs (section 4)")
    args = parser.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the daemons become our children
    steps = step_costs(max(60, args.reps // 2))  # before the proxies: untraced
    if args.steps_only:
        print_steps(steps)
        lazy_import_probe()
        return 0
    install_proxies()
    global RAW_OS
    RAW_OS = _engine.os
    real_waitpid = os.waitpid

    def deferred_waitpid(pid: int, options: int):
        """Reap later (after the call returned): the first child's exit leaves the critical path."""
        return real_waitpid(pid, options | os.WNOHANG)

    ABLATIONS["reap-after-ready"] = (
        _engine.os,
        "waitpid",
        deferred_waitpid,
        "first child reaped after readiness (WNOHANG now, the rest later) instead of waited for first",
    )
    available = {k: v for k, v in ABLATIONS.items() if hasattr(v[0], v[1])}
    rep_r, rep_w = os.pipe()
    global LAUNCHER
    LAUNCHER = os.getpid()

    def body() -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        mine = [e for e in EVENTS if e[1] != LAUNCHER]
        data = json.dumps({"t": _mono(), "faults": ru.ru_minflt, "events": mine}).encode() + b"\n"
        while data:
            data = data[os.write(rep_w, data) :]
        os._exit(0)

    worker = daemondeco.process_daemonize(keep_fds=[rep_w])(body)
    variants = ["raw", "daemondeco", *available, *COMBINED, "raw/traced", "daemondeco/traced"]
    if args.freeze:
        gc.freeze()
    timings: dict[str, list[int]] = {v: [] for v in variants}
    faults: dict[str, list[tuple[int, int]]] = {v: [] for v in variants}
    timelines: dict[str, dict[tuple[str, str, int], list[tuple[int, int]]]] = {
        "raw/traced": {},
        "daemondeco/traced": {},
    }
    rng = random.Random(7)
    for rep in range(args.reps + 2):
        order = list(variants)
        rng.shuffle(order)
        for variant in order:
            EVENTS.clear()
            RECORDING[0] = variant.endswith("/traced")
            with patched(variant if variant in ABLATIONS or variant in COMBINED else None):
                f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = _mono()
                if variant.startswith("raw"):
                    raw_spawn(body)
                else:
                    worker()
                t1 = _mono()
                f1 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            RECORDING[0] = False
            data = b""
            for _ in range(1000):  # bounded read of one report line
                data += os.read(rep_r, 65536)
                if data.endswith(b"\n"):
                    break
            report = json.loads(data)
            for _ in range(10):  # reap the first child's leftovers and the daemon
                try:
                    if os.waitpid(-1, 0)[0] == 0:
                        break
                except ChildProcessError:
                    break
            if rep < 2:
                continue  # warm-up
            timings[variant].append(t1 - t0)
            faults[variant].append((f1 - f0, report["faults"]))
            if variant in timelines:
                timeline = timelines[variant]
                me = os.getpid()
                launcher = [("L", e[0], e[2], e[3]) for e in EVENTS if e[1] == me]
                dpid = report["events"][-1][1] if report["events"] else 0
                daemon = [("D" if e[1] == dpid else "C", e[0], e[2], e[3]) for e in report["events"]]
                launcher.append(("L", "<call returns>", t1, t1))
                daemon.append(("D", "<function starts>", report["t"], report["t"]))
                for side_events in (launcher, daemon):
                    prev_end = t0
                    seen: dict[str, int] = {}
                    for side, name, start, end in side_events:
                        seen[name] = seen.get(name, 0) + 1
                        key = (side, name, seen[name])
                        timeline.setdefault(key, []).append((start - t0, start - prev_end, end - start))
                        prev_end = end
    med = statistics.median
    print(
        f"# detach profile: {args.reps} rounds, Python {sys.version.split()[0]}, "
        f"gc.freeze {'on' if args.freeze else 'off'}"
    )
    for variant, timeline in timelines.items():
        print(f"\n## 1. timeline of one detach: {variant} (tracing adds ~1 us a call), medians in us")
        print(
            "L = launcher/caller, C = first child, D = daemon; 'at' = start since the call began; 'gap' = Python "
            "time since the previous event on that side; 'took' = the call itself"
        )
        rows = [(med([x[0] for x in v]), k, v) for k, v in timeline.items() if len(v) >= len(timings[variant]) // 2]
        for at, (side, name, nth), v in sorted(rows):
            suffix = f" #{nth}" if nth > 1 else ""
            print(
                f"  {side} {name + suffix:28} at {at / 1e3:8.1f}   gap {med([x[1] for x in v]) / 1e3:7.1f}"
                f"   took {med([x[2] for x in v]) / 1e3:7.1f}"
            )
    print("\n## 2. minor page faults (median): launcher during the call / daemon until its function starts")
    for v in ("raw", "daemondeco"):  # untraced
        print(f"  {v:12} launcher {med([f[0] for f in faults[v]]):6.0f}   daemon {med([f[1] for f in faults[v]]):6.0f}")
    print("\n## 3. per-spawn time, ms median [q1-q3]; ablation delta = paired median difference vs daemondeco as is")
    base = timings["daemondeco"]
    for v in variants:
        if v.endswith("/traced"):
            continue
        vals = sorted(timings[v])
        q = statistics.quantiles(vals, n=4)
        line = f"  {v:28} {med(vals) / 1e6:6.3f} [{q[0] / 1e6:.3f}-{q[2] / 1e6:.3f}]"
        line += f"   x{med(a / b for a, b in zip(timings[v], timings['raw'], strict=True)):.2f} raw (paired)"
        if v not in ("raw", "daemondeco"):
            delta = med(a - b for a, b in zip(timings[v], base, strict=True))
            what = ABLATIONS[v][3] if v in ABLATIONS else " + ".join(COMBINED[v])
            line += f"   delta {delta / 1e3:+7.1f} us  ({what})"
        print(line)
    print_steps(steps)
    lazy_import_probe()
    return 0


LAZY_PROBE = r"""
import os, sys, time, statistics
import daemondeco
r, w = os.pipe()
for mod in ("signal", "select"):
    if mod in sys.modules:
        print(f"  {mod:8} already imported by `import daemondeco` here: no lazy-import cost")
        continue
    vals = []
    for _ in range(40):
        pid = os.fork()
        if pid == 0:
            t = time.monotonic_ns()
            __import__(mod)
            os.write(w, f"{time.monotonic_ns() - t}\n".encode())
            os._exit(0)
        vals.append(int(os.read(r, 64)))
        os.waitpid(pid, 0)
    print(f"  import {mod:8} in a freshly forked child: {statistics.median(vals) / 1e3:8.1f} us median")
"""


def lazy_import_probe() -> None:
    """In a fresh interpreter with only daemondeco imported: what a lazy import costs after a fork."""
    import subprocess

    print("\n## 5. lazy imports after the fork (fresh interpreter, only `import daemondeco`)")
    out = subprocess.run([sys.executable, "-c", LAZY_PROBE], check=False, capture_output=True, text=True, cwd="/")
    print(out.stdout.rstrip() or out.stderr.rstrip())


def print_steps(steps: dict[str, list[int]]) -> None:
    print("\n## 4. single steps, each timed once right after a fork (COW state as in a detach), us median [q1-q3]")
    for name, vals in sorted(steps.items()):
        q = statistics.quantiles(sorted(vals), n=4)
        print(f"  {name:34} {statistics.median(vals) / 1e3:8.1f} [{q[0] / 1e3:.1f}-{q[2] / 1e3:.1f}]")


if __name__ == "__main__":
    sys.exit(main())
