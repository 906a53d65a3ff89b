"""What runs inside the benchmark's fresh subprocesses: launchers, callers, daemons.

Started by ``_harness.spawn`` as ``python _child.py '<json config>'``. The
config names a job (``detach``, ``workers``, ``stop``) and a candidate. The
process reports to the harness by writing short lines on an inherited pipe
(fd ``report_fd``); every timestamp is ``time.monotonic_ns()``, which is
``CLOCK_MONOTONIC`` and so comparable across processes.

Every daemon started here sleeps for at most ``SLEEP`` seconds and is killed
by pid by the harness long before that; nothing here loops without bound.
"""

from __future__ import annotations

import json
import os
import sys
import time

# No other imports here: daemondeco may import modules lazily (signal, select),
# and a launcher that had already imported them would hide that cost.

SLEEP = 120.0  # a daemon's life if the harness never kills it (it always should)
SETTLE = 0.02  # stop job: let the daemon reach time.sleep() before timing the stop

CFG: dict = json.loads(sys.argv[1]) if __name__ == "__main__" else {}
REPORT = int(CFG.get("report_fd", -1))


def report(line: str) -> None:
    data = (line + "\n").encode()
    while data:
        data = data[os.write(REPORT, data) :]


def now() -> int:
    return time.monotonic_ns()


# -- daemon bodies -------------------------------------------------------------


def body_report(*_args: object) -> None:
    """Bench 1/4 daemon body: say when user code started, then sleep until killed."""
    t = now()
    report(f"body {os.getpid()} {os.getppid()} {t}")
    os.close(REPORT)
    time.sleep(SLEEP)


def body_sleep(*_args: object) -> None:
    """Bench 2/3 daemon body: sleep until stopped or killed."""
    time.sleep(SLEEP)


# -- the raw floor: fork, setsid, fork, report over a pipe ---------------------


def _naive_close(limit: int, keep: set[int]) -> None:
    for fd in range(3, limit):
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _listing_close(keep: set[int]) -> None:
    """What daemondeco's close_fds did before issue 6 (59519e4): list /proc/self/fd, close one by one."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own fd, already closed


def _closerange(limit: int, keep: set[int]) -> None:
    start = 3
    for fd in sorted(keep):
        if fd >= start:
            os.closerange(start, fd)
            start = fd + 1
    os.closerange(start, limit)


def raw_spawn(then, *, close: str | None = None, sigterm_exit: bool = False) -> int:
    """Bare double fork. Returns the daemon's pid in the caller once it reported ready.

    In the daemon, writes its pid on the pipe (that is the readiness report)
    and calls *then* (which must not return into the caller's code).
    """
    read_end, write_end = os.pipe()
    child = os.fork()
    if child:
        os.close(write_end)
        os.waitpid(child, 0)
        data = b""
        for _ in range(8):  # a pid is at most 7 digits; bounded
            chunk = os.read(read_end, 16)
            if not chunk:
                break
            data += chunk
        os.close(read_end)
        return int(data)
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    if close is not None:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        keep = {REPORT, write_end}
        (_naive_close if close == "naive" else _closerange)(limit, keep)
    if sigterm_exit:
        import signal

        signal.signal(signal.SIGTERM, _raise_exit)
    os.write(write_end, str(os.getpid()).encode())
    os.close(write_end)
    then()
    os._exit(0)


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


# -- job: detach (benchmarks 1 and 4) ------------------------------------------


def preload(names) -> None:
    """Import *names*; for daemondeco, its decorators too (they load wrapt lazily since issue 13)."""
    for name in names:
        module = __import__(name)
        if name == "daemondeco":
            module.process_daemonize  # noqa: B018 - the lazy import of _decorators and wrapt


def job_detach() -> None:
    cand = CFG["candidate"]
    preload(CFG.get("preload", ()))
    nofile = CFG.get("nofile")
    if nofile:
        import resource

        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    for _ in range(int(CFG.get("spare_fds", 0))):  # inherited fds the daemon must close (issue 6, defect 9)
        os.open(os.devnull, os.O_RDONLY)
    tmp = CFG["tmpdir"]

    if cand in ("raw", "raw-naive-close", "raw-closerange"):
        close = {"raw": None, "raw-naive-close": "naive", "raw-closerange": "range"}[cand]

        def then() -> None:
            body_report()

        t0 = now()
        report(f"t0 {t0}")
        raw_spawn(then, close=close)
        report(f"known {now()}")
        os._exit(0)

    if cand in ("daemondeco", "daemondeco-pidfile"):
        from daemondeco import daemon

        # ready="start": the start mechanism itself, as in every earlier figure (the default,
        # ready="auto", adds startup_grace, 1 s, to the launcher's exit by design).
        opts = {"keep_fds": [REPORT], "ready": "start"}
        if cand == "daemondeco-pidfile":
            opts["pidfile"] = os.path.join(tmp, f"dd-{os.getpid()}.pid")
        main = daemon(**opts)(body_report)
        t0 = now()
        report(f"t0 {t0}")
        main()  # the launcher leaves with status 0 once the daemon is ready
        raise AssertionError("unreachable")

    if cand == "daemondeco-worker":
        from daemondeco import process_daemonize

        worker = process_daemonize(keep_fds=[REPORT])(body_report)
        t0 = now()
        report(f"t0 {t0}")
        worker()
        report(f"known {now()}")
        os._exit(0)

    if cand == "python-daemon":
        import daemon as pydaemon

        ctx = pydaemon.DaemonContext(files_preserve=[REPORT], detach_process=True)
        t0 = now()
        report(f"t0 {t0}")
        with ctx:
            body_report()
        os._exit(0)

    if cand == "daemonize":
        from daemonize import Daemonize

        d = Daemonize(
            app="bench", pid=os.path.join(tmp, f"dz-{os.getpid()}.pid"), action=body_report, keep_fds=[REPORT]
        )
        t0 = now()
        report(f"t0 {t0}")
        d.start()
        os._exit(0)

    if cand == "daemonocle":
        import daemonocle

        d = daemonocle.Daemon(name="bench", worker=body_report, detach=True)
        t0 = now()
        report(f"t0 {t0}")
        d.start()  # the launcher waits 1 s for its first child, by design
        os._exit(0)

    raise SystemExit(f"unknown candidate {cand!r}")


# -- job: closestep (benchmark 4, the fd-closing step alone) -------------------------


def job_closestep() -> None:
    """Time only the fd-closing step of one method, in this process, at this RLIMIT_NOFILE.

    Opens ``nfds`` spare fds (as a typical daemon has a few, or 5,000
    inherited ones), then closes every fd but 0, 1, 2 and the report pipe;
    ``reps`` times. No fork, so no copy-on-write noise; one method per
    process, so the naive loop's 20,000 syscalls do not leave cold caches for
    the others. Methods: ``daemondeco`` (``_daemon.close_fds`` of the tree
    imported: see ``--compare-tree``), ``listing`` (the pre-issue-6 algorithm,
    copied here), ``closerange`` (gaps up to the limit), ``naive-loop``.
    """
    import resource

    nofile, method = int(CFG["nofile"]), CFG["method"]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
    keep = {0, 1, 2, REPORT}
    if method == "naive-loop":

        def close() -> None:
            _naive_close(nofile, keep)
    elif method == "closerange":

        def close() -> None:
            _closerange(nofile, keep)
    elif method == "listing":

        def close() -> None:
            _listing_close(keep)
    else:
        try:
            from daemondeco._daemon import close_fds
        except ImportError as exc:  # the private step was renamed
            report(f"note daemondeco close step unavailable: {exc}")
            report("result []")
            os._exit(0)

        def close() -> None:
            close_fds(set(keep))

    times = []
    for _ in range(int(CFG["reps"])):
        for _ in range(int(CFG["nfds"])):
            os.open(os.devnull, os.O_RDONLY)
        t = now()
        close()
        times.append(now() - t)
        left = os.listdir("/proc/self/fd")
        if len(left) > len(keep) + 1:  # +1: the listing's own fd
            raise SystemExit(f"{method} left fds open: {left}")
    report("result " + json.dumps(times))
    os._exit(0)


# -- job: workers (benchmark 2) ------------------------------------------------


def job_workers() -> None:
    import daemondeco  # every candidate: same imports, same memory to fork

    preload(["daemondeco", *CFG.get("preload", ())])

    cand, count = CFG["candidate"], int(CFG["count"])
    pids: list[int] = []
    each: list[int] = []

    def then() -> None:
        os.close(REPORT)
        body_sleep()

    if cand in ("alternating", "alternating-trees"):
        # two spawners alternate in this one caller: the tightest pairing under load
        worker = daemondeco.process_daemonize(body_sleep)
        spawners = {"daemondeco": lambda: worker().pid}
        if cand == "alternating":
            spawners["raw"] = lambda: raw_spawn(then)
        else:
            # another source tree, copied by the harness under another package name (--compare-tree)
            import importlib

            sys.path.insert(0, CFG["alias_dir"])
            other = importlib.import_module(CFG["alias"]).process_daemonize(body_sleep)
            spawners["other"] = lambda: other().pid
        names = list(spawners)
        pairs = []
        for i in range(count):
            row = {}
            for name in names if i % 2 else names[::-1]:
                t = now()
                pids.append(spawners[name]())
                row[name] = now() - t
            pairs.append(row)
        for i in range(0, len(pids), 200):
            report("pids " + " ".join(map(str, pids[i : i + 200])))
        report("result " + json.dumps({"pairs": pairs}))
        os._exit(0)
    if cand == "raw":
        start = now()
        for _ in range(count):
            t = now()
            pids.append(raw_spawn(then))
            each.append(now() - t)
    elif cand == "daemondeco":
        worker = daemondeco.process_daemonize(body_sleep)
        start = now()
        for _ in range(count):
            t = now()
            pids.append(worker().pid)
            each.append(now() - t)
    elif cand == "multiprocessing":
        # what users write instead: start() returns after the fork, knowing nothing of the child's state
        import multiprocessing

        context = multiprocessing.get_context("fork")
        start = now()
        for _ in range(count):
            t = now()
            process = context.Process(target=body_close_report_sleep, daemon=False)
            process.start()
            pids.append(process.pid)
            each.append(now() - t)
    elif cand == "subprocess":
        # the other thing users write: Popen returns once exec succeeded (here a tiny program, not a Python worker)
        import subprocess

        devnull = os.open(os.devnull, os.O_RDWR)
        start = now()
        for _ in range(count):
            t = now()
            child = subprocess.Popen(
                ["sleep", "120"], start_new_session=True, stdin=devnull, stdout=devnull, stderr=devnull
            )
            pids.append(child.pid)
            each.append(now() - t)
    else:
        raise SystemExit(f"unknown candidate {cand!r}")
    total = now() - start
    for i in range(0, len(pids), 200):
        report("pids " + " ".join(map(str, pids[i : i + 200])))
    report("result " + json.dumps({"total": total, "each": each}))
    os._exit(0)


# -- job: launch + stop (benchmark 3) ---------------------------------------------


def body_close_report_sleep() -> None:
    """A multiprocessing child: inherits every fd, so it must let go of the report pipe."""
    os.close(REPORT)
    body_sleep()


def body_pid_sleep(*_args: object) -> None:
    """Bench 3 daemon body: report the pid, then sleep until stopped."""
    report(f"pid {os.getpid()}")
    os.close(REPORT)
    time.sleep(SLEEP)


def job_launch() -> None:
    """Start one daemon that sleeps, from a fresh interpreter that then exits.

    So the daemon shares no memory with a live process, as with a real
    launcher: its exit is not slowed by copy-on-write faults.
    """
    import daemondeco

    cand = CFG["candidate"]
    if cand in ("raw", "raw-sysexit"):
        raw_spawn(body_pid_sleep, sigterm_exit=cand == "raw-sysexit")
        os._exit(0)
    if cand == "daemondeco-pidfile":
        # launcher: leaves with status 0 once ready; daemon: SIGTERM -> SystemExit -> interpreter exit
        daemondeco.daemon(pidfile=CFG["pidfile"], keep_fds=[REPORT], ready="start")(body_pid_sleep)()
    raise SystemExit(f"unknown candidate {cand!r}")


def _pidfd_kill_wait(pid: int, timeout: float = 10.0) -> bool:
    pidfd = os.pidfd_open(pid)
    try:
        import select
        import signal

        os.kill(pid, signal.SIGTERM)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(pidfd)


def job_stop() -> None:
    """Time one stop call, in a fresh controller process."""
    import daemondeco

    cand = CFG["candidate"]
    if cand in ("daemondeco-worker", "daemondeco-worker-pidfile"):
        # process_daemonize: the caller starts the worker itself and keeps the handle
        opts = {"pidfile": CFG["pidfile"]} if cand.endswith("pidfile") else {}
        handle = daemondeco.process_daemonize(**opts)(body_sleep)()
        report(f"pid {handle.pid}")
        stop = handle.stop
    elif cand in ("raw-kill", "raw-sysexit"):
        import select  # noqa: F401 - imported before the timed call, as a real stopper would have
        import signal  # noqa: F401

        pid = int(CFG["pid"])

        def stop() -> bool:
            return _pidfd_kill_wait(pid)

    elif cand == "daemondeco-daemon-pidfile":
        stop = daemondeco.daemon(pidfile=CFG["pidfile"])(body_sleep).stop
    else:
        raise SystemExit(f"unknown candidate {cand!r}")
    time.sleep(SETTLE)  # the daemon is asleep in time.sleep() by now
    t = now()
    ok = stop()
    elapsed = now() - t
    report("result " + json.dumps({"ns": elapsed, "ok": bool(ok)}))
    os._exit(0)


if __name__ == "__main__":
    {"detach": job_detach, "workers": job_workers, "launch": job_launch, "stop": job_stop, "closestep": job_closestep}[
        CFG["job"]
    ]()
