"""CI runs every Python version the project declares (issue 20): ``.ci/pythons`` finds them or fails."""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def declared_versions() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    classifiers = parser["metadata"]["classifiers"].split("\n")
    return [m.group(1) for c in classifiers if (m := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", c))]


def fake_pyenv(root: Path, releases: list[str]) -> None:
    """A pyenv versions directory whose interpreters are this one (any patch release)."""
    for release in releases:
        version = ".".join(release.rstrip("t").split(".")[:2])
        bin_dir = root / "versions" / release / "bin"
        bin_dir.mkdir(parents=True)
        python = bin_dir / f"python{version}"
        python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        python.chmod(0o755)


def pythons(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYENV_ROOT": str(root)}
    return subprocess.run([str(ROOT / ".ci" / "pythons")], env=env, capture_output=True, text=True, timeout=60)


def default_version() -> str:
    done = subprocess.run(
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_every_declared_version_but_the_default_is_found_at_its_newest_patch_release(tmp_path: Path) -> None:
    declared = declared_versions()
    assert len(declared) >= 2, declared
    fake_pyenv(tmp_path, [f"{v}.2" for v in declared] + [f"{v}.10" for v in declared] + [f"{declared[-1]}.11t"])
    done = pythons(tmp_path)
    assert done.returncode == 0, done.stderr
    expected = [f"{v} {tmp_path}/versions/{v}.10/bin/python{v}" for v in declared if v != default_version()]
    assert done.stdout.splitlines() == expected


def test_a_declared_version_without_an_interpreter_fails_the_run(tmp_path: Path) -> None:
    declared = declared_versions()
    missing = next(v for v in reversed(declared) if v != default_version())
    fake_pyenv(tmp_path, [f"{v}.1" for v in declared if v != missing] + [f"{missing}.1t"])
    done = pythons(tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"FAILED: Python {missing} is declared in setup.cfg but has no working interpreter" in done.stderr


def test_the_classifiers_name_what_ci_runs() -> None:
    """Each declared version runs (above); a Free Threading classifier only with the free-threaded stage."""
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".ci/pythons" in ci and 'suite_on "$python"' in ci
    classifiers = (ROOT / "setup.cfg").read_text()
    runs_ft = 'ft_python="$(.ci/python-ft)"' in ci and 'suite_on "$ft_python"' in ci
    assert ("Programming Language :: Python :: Free Threading" in classifiers) == runs_ft
