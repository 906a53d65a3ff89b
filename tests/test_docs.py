"""Every ```python block of README.md and docs/**/*.md is run, compiled, or skipped with a reason.

The convention (written for contributors in docs/contributing.md):

- a ```python block is a complete program: it is written to ``snippet.py`` in
  a temporary directory and run as ``python snippet.py``; it must exit 0
  within 30 s;
- an HTML comment on the line right before the fence changes that:
  ``<!-- run: start; status; stop -->`` runs the program once per
  ``;``-separated argument list (each run must exit 0),
  ``<!-- fragment -->`` only compiles it, ``<!-- skip: reason -->`` does not
  run it (it needs root, a real service manager, the network);
- ``/tmp/`` in a snippet is rewritten to the snippet's own temporary
  directory (also its ``TMPDIR`` and working directory), so snippets never
  share a pidfile or a log.

Every process a snippet starts carries the sandbox's environment marker and
is killed by its pid at teardown; a daemon still running after the last run
fails the test (end the run list with ``stop``).
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, Sandbox, wait_until

SNIPPET_TIMEOUT = 30.0
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>run|fragment|skip)\s*(?::\s*(?P<arg>.*?))?\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    marker: str | None  # the comment line right before the fence, if it is a marker
    marker_arg: str | None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def markdown_files() -> list[Path]:
    """README.md and every page under docs/ (not the build output)."""
    pages = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)
    return [ROOT / "README.md", *pages]


def blocks(path: Path) -> list[Block]:
    """The fenced code blocks of *path*, with the marker comment right before each."""
    found = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or not opening["info"].strip():
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = opening["info"].strip().split()[0].strip("{}")
        body = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].startswith(indent + fence[0] * len(fence)) and not lines[j].strip().strip(fence[0])
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        before = MARKER.match(lines[i - 1]) if i > 0 else None
        found.append(
            Block(
                path,
                i + 1,
                language,
                "\n".join(body) + "\n",
                before["kind"] if before else None,
                before["arg"] if before else None,
            )
        )
        i = j + 1
    return found


def python_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks(path) if block.language == "python"]


PYTHON_BLOCKS = python_blocks()


def test_the_docs_have_python_blocks() -> None:
    """The collector works: the docs are full of examples (a regex gone wrong would find none)."""
    assert len(PYTHON_BLOCKS) >= 30, [b.id for b in PYTHON_BLOCKS]


def test_every_marker_is_well_formed() -> None:
    """A marker comment is right before a ```python fence, and skip gives a reason, run an argument list."""
    problems = []
    for path in markdown_files():
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            if not re.match(r"\s*<!--\s*(run|fragment|skip)\b", line):
                continue
            match = MARKER.match(line)
            where = f"{path.relative_to(ROOT)}:{number}"
            if match is None:
                problems.append(f"{where}: malformed marker {line!r}")
                continue
            following = lines[number] if number < len(lines) else ""
            if not following.lstrip().startswith("```python"):
                problems.append(f"{where}: a marker must be directly followed by a ```python fence")
            if match["kind"] in ("skip", "run") and not (match["arg"] or "").strip():
                needs = "a reason" if match["kind"] == "skip" else "arguments"
                problems.append(f"{where}: `{match['kind']}:` needs {needs}")
            if match["kind"] == "fragment" and match["arg"]:
                problems.append(f"{where}: `fragment` takes no argument")
    assert not problems, "\n".join(problems)


def _argument_lists(block: Block) -> list[list[str]]:
    if block.marker != "run":
        return [[]]
    assert block.marker_arg
    return [shlex.split(part) for part in block.marker_arg.split(";")]


def run_block(block: Block, sandbox: Sandbox) -> None:
    """Apply the convention to one block, in *sandbox*; fail with the snippet's output."""
    if block.marker == "skip":
        pytest.skip(f"{block.id}: {block.marker_arg}")
    source = block.code.replace("/tmp/", f"{sandbox.path}/")
    compile(source, block.id, "exec")
    if block.marker == "fragment":
        return
    script = sandbox.path / "snippet.py"
    script.write_text(source)
    runs = _argument_lists(block)
    for argv in runs:
        result = sandbox.run_file(script, *argv, timeout=SNIPPET_TIMEOUT, TMPDIR=str(sandbox.path))
        assert result.returncode == 0, f"{block.id}: python snippet.py {shlex.join(argv)}\n{result}"
    # A launcher may still be on its way out: only what outlives it is a leak.
    try:
        wait_until(lambda: not sandbox.live_pids(), timeout=5, what="the snippet's processes to end")
    except AssertionError:
        left = sandbox.live_pids()
        hint = "" if runs[-1][:1] == ["stop"] else " (end the run list with `stop`)"
        pytest.fail(f"{block.id}: processes {left} still run after the last run{hint}")


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in PYTHON_BLOCKS])
def test_python_block(block: Block, sandbox: Sandbox) -> None:
    run_block(block, sandbox)


# -- the testing page's example project -------------------------------------------------

TESTING_PAGE = ROOT / "docs" / "testing.md"
PROJECT_FILES = ("myapp.py", "tests/conftest.py", "tests/test_async.py", "tests/test_job.py", "tests/test_myapp.py")


def example_project(page: Path = TESTING_PAGE) -> dict[str, str]:
    """The files of a page's example project: ```python blocks whose first line is ``# <path>.py``.

    Blocks naming the same file are joined in page order (a later block adds
    tests to a file shown before).
    """
    files: dict[str, str] = {}
    for block in blocks(page):
        first = block.code.split("\n", 1)[0]
        name = first[2:].strip() if first.startswith("# ") else ""
        if block.language == "python" and re.fullmatch(r"[\w/]+\.py", name):
            files[name] = files.get(name, "") + "\n\n" + block.code
    return files


def test_the_testing_pages_project_passes(sandbox: Sandbox) -> None:
    """docs/testing.md's myapp.py and its tests, written out as a project, pass under pytest.

    The example once called ``notify_ready()`` before its ``try`` and failed 2
    runs in 10; ``DOCS_TESTING_ROUNDS=20`` runs it 20 times (see docs/contributing.md).
    """
    files = example_project()
    assert sorted(files) == sorted(PROJECT_FILES), sorted(files)
    for name, code in files.items():
        target = sandbox.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code)

    rounds = int(os.environ.get("DOCS_TESTING_ROUNDS", "1"))
    for round_ in range(rounds):
        result = sandbox.run_python(
            "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov", "-o", "addopts=", "tests", timeout=120
        )
        assert result.returncode == 0, f"round {round_ + 1} of {rounds}\n{result}"
        expected = sum(code.count("\ndef test_") for code in files.values())
        assert f"{expected} passed" in result.stdout, result


VERSIONADDED = re.compile(r"\.\. versionadded:: (\S+)")


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def test_versionadded_notes_are_not_from_the_future() -> None:
    """Every ``.. versionadded::`` names a release not later than the package's own version (one place)."""
    import daemondeco

    current = _release(daemondeco.__version__)
    late = []
    for path in sorted((ROOT / "daemondeco").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = VERSIONADDED.search(line)
            if match and _release(match[1]) > current:
                late.append(f"{path.relative_to(ROOT)}:{number}: {match[1]} > {daemondeco.__version__}")
    assert not late, "\n".join(late)


def test_pages_do_not_write_the_version_out() -> None:
    """A page says ``{{ release }}`` (docs/conf.py fills it in from daemondeco.__version__), never the number."""
    import daemondeco

    stale = [str(path.relative_to(ROOT)) for path in markdown_files() if daemondeco.__version__ in path.read_text()]
    assert not stale, f"{stale} write the version {daemondeco.__version__} out: use {{{{ release }}}}"


def test_ci_runs_the_readmes_commands() -> None:
    """.ci/run runs the README's test command, and the README's commands start in a venv (PEP 668)."""
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv && ")]
    assert len(commands) == 2, commands  # the quick start, and the test command
    quick_start, test_command = commands
    assert quick_start.endswith("pip install . && python examples/ticker.py start")
    tail = test_command.split(" && ", 2)[2]
    assert tail == "pip install -e '.[test]' && python -m pytest"
    assert tail in ci


SYNOPSIS_APP = """
import sys
from daemondeco import daemon

@daemon(pidfile="app.pid")
def main(port="8080"):
    \"\"\"Serve on PORT.\"\"\"

sys.exit(main.cli())
"""


def test_the_guides_cli_synopsis_is_the_parsers(sandbox: Sandbox) -> None:
    """The hand-written ``prog ...`` synopsis in the guide is what ``--help`` prints, action by action."""
    guide = next(b for b in blocks(ROOT / "docs" / "guide.md") if b.language == "text" and b.code.startswith("prog "))
    written = [" ".join(line.split()) for line in guide.code.splitlines() if line.strip()]
    script = sandbox.write("prog.py", SYNOPSIS_APP)
    actual = []
    for argv in ([], *([action] for action in ("start", "stop", "restart", "status", "reload", "run", "upgrade"))):
        result = sandbox.run_file(script, *argv, "--help")
        assert result.returncode == 0, result
        usage = next(line for line in result.stdout.splitlines() if line.startswith("usage: "))
        actual.append(" ".join(usage.removeprefix("usage: ").replace("prog.py", "prog", 1).split()))
    assert written == actual


def test_fences_are_closed() -> None:
    """Every fence is closed: an unclosed one swallows the rest of the page silently."""
    for path in markdown_files():
        inside = None
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = FENCE.match(line)
            if inside is None and match and match["info"].strip():
                inside = (match["fence"], number)
            elif inside is not None and line.strip() == inside[0]:
                inside = None
        assert inside is None, f"{path.relative_to(ROOT)}:{inside[1]}: fence never closed"


if __name__ == "__main__":  # pragma: no cover - a listing for contributors
    for b in PYTHON_BLOCKS:
        print(b.id, b.marker or "run", b.marker_arg or "", file=sys.stdout)
