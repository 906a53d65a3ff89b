"""The pages name no path of the machine they were written on (issue 18).

A reader's README and docs show paths relative to the checkout, or
illustrative ones: ``/tmp/app.pid`` in an example is a choice of the example
(tests/test_docs.py gives each snippet its own directory for it), but the
checkout's own location, a home directory or this workspace's ``/work/`` is
an accident of where a page was rendered. The benchmark report that
docs/performance.md includes is generated on a machine, so it is held to
more: no absolute path at all, other than the kernel's ``/proc`` and ``/dev``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from conftest import ROOT

# The checkout, wherever it is, and the places a path of one machine comes from.
MACHINE_PATHS = re.compile(r"(?<![\w.~-])/(?:work|root|home/[\w.-]+|Users/[\w.-]+)/")
ABSOLUTE = re.compile(r"(?<![\w.~:/<…-])/(?!proc/|dev/)[\w.-]+(?:/[\w.<>-]*)*")
MARKS = ("<!-- benchmarks/run.py: start -->", "<!-- benchmarks/run.py: end -->")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]


def _machine_paths(text: str) -> list[str]:
    found = [match.group(0) for match in MACHINE_PATHS.finditer(text)]
    for own in {str(ROOT), str(ROOT.resolve()), sys.prefix, str(Path.home())}:
        if own not in ("/", "") and own in text:
            found.append(own)
    return found


def test_pages_name_no_path_of_this_machine() -> None:
    offenders = {
        f"{page.relative_to(ROOT)}:{number}": found
        for page in _pages()
        for number, line in enumerate(page.read_text().splitlines(), start=1)
        if (found := _machine_paths(line))
    }
    assert not offenders, f"absolute paths of a machine in the pages: {offenders}"


def test_the_benchmark_report_on_the_performance_page_has_no_absolute_path() -> None:
    text = (ROOT / "docs" / "performance.md").read_text()
    start, end = (text.index(mark) for mark in MARKS)
    report = text[start + len(MARKS[0]) : end]
    assert "daemondeco measured: ./daemondeco" in report
    assert not ABSOLUTE.findall(report), ABSOLUTE.findall(report)


def _benchmark_runner() -> object:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("_bench_run_under_test", ROOT / "benchmarks" / "run.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_the_benchmark_renderer_prints_no_absolute_path(tmp_path: Path) -> None:
    """``run.py --markdown`` names the measured package and the interpreters relative to the checkout."""
    run = _benchmark_runner()
    meta = {
        "quick": True,
        "seconds": 1.0,
        "cpus": 2,
        "platform": "Linux",
        "python": "3.11",
        "load": "0.1",
        "rlimit_nofile": (1024, 1024),
        "versions": {"wrapt": "2"},
        "daemondeco_source": run.package_source(),  # type: ignore[attr-defined]
    }
    venv = tmp_path / "venv-w1" / "bin" / "python"
    argv = ["--quick", "--extra-python", f"wrapt1={venv}", f"--markdown={ROOT / 'docs' / 'performance.md'}"]
    report = run.markdown_report(meta, {}, [], argv)  # type: ignore[attr-defined]
    assert not ABSOLUTE.findall(report), report
    assert str(tmp_path) not in report and str(ROOT) not in report, report
    assert "daemondeco measured: ./daemondeco" in report, report
    assert "wrapt1=…/venv-w1/bin/python" in report, report
    assert "--markdown=./docs/performance.md" in report, report
