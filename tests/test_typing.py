"""Users' type checkers see daemondeco's real types: snippets in tests/typing/ under mypy --strict.

``pass_*.py`` must check clean; in ``fail_*.py`` every line marked
``# E: <text>`` must give an error containing that text, and no other line
any error: a misspelt method or a wrong argument is caught before it runs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Sandbox

TYPING = Path(__file__).parent / "typing"

# The pages whose examples a newcomer copies first: each ```python block must check clean under --strict.
TYPED_PAGES = ("README.md", "docs/index.md", "docs/tutorial.md", "docs/restart.md")



def test_the_types_say_what_runs(sandbox: Sandbox) -> None:
    """What the overloads promise (no mypy needed): instances=N gives a WorkerGroupFunction whose call is a group."""
    result = sandbox.run(
        """
        import time
        from pathlib import Path
        from daemondeco import WorkerFunction, WorkerGroup, WorkerGroupFunction, process_daemonize

        HERE = Path(__file__).resolve().parent

        @process_daemonize(pidfile=str(HERE / "w-{i}.pid"), instances=2)
        def grouped() -> None:
            time.sleep(60)

        @process_daemonize
        def single() -> None:
            time.sleep(60)

        assert type(grouped) is WorkerGroupFunction and type(single) is WorkerFunction
        group = grouped()
        try:
            assert isinstance(group, WorkerGroup) and len(group) == 2, group
        finally:
            assert group.stop(timeout=5)
        print("ok", type(grouped).__name__, type(group).__name__)
        """
    )
    assert result.returncode == 0, result
    assert result.stdout.split() == ["ok", "WorkerGroupFunction", "WorkerGroup"], result


def _mypy(*files: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_correct_use_checks_clean() -> None:
    result = _mypy(*sorted(TYPING.glob("pass_*.py")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_mistakes_are_errors_on_exactly_the_marked_lines() -> None:
    (snippet,) = sorted(TYPING.glob("fail_*.py"))
    expected = {
        number: match.group(1).strip()
        for number, line in enumerate(snippet.read_text().splitlines(), start=1)
        if (match := re.search(r"^    \S.*  # E: (.*)$", line))
    }
    result = _mypy(snippet)
    assert result.returncode == 1, result.stdout + result.stderr
    errors: dict[int, list[str]] = {}
    for line in result.stdout.splitlines():
        found = re.match(rf".*{re.escape(snippet.name)}:(\d+): error: (.*)", line)
        if found:
            errors.setdefault(int(found.group(1)), []).append(found.group(2))
    where = f"errors on lines {sorted(errors)}, expected on {sorted(expected)}:\n{result.stdout}"
    assert set(errors) == set(expected), where
    for number, text in expected.items():
        assert any(text in error for error in errors[number]), f"line {number}: {errors[number]} lacks {text!r}"


def test_the_docs_examples_type_check(tmp_path: Path) -> None:
    """The README's quick start, the tutorial and the restart page's worker group, as pasted, under mypy --strict."""
    from test_docs import blocks

    files = []
    for page in TYPED_PAGES:
        for block in blocks(ROOT / page):
            if block.language == "python":
                name = re.sub(r"\W", "_", f"{page.removesuffix('.md')}_{block.line}").lower()
                files.append(tmp_path / f"{name}.py")
                files[-1].write_text(block.code)
    assert len(files) >= 7, files
    assert any("instances=" in file.read_text() for file in files), "the worker group example is checked"
    result = _mypy(*files)
    assert result.returncode == 0, result.stdout + result.stderr
