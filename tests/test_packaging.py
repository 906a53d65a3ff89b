"""The release artefacts: one version, and an sdist that carries the tests and the docs.

The full release check (``python -m build``, ``twine check``, the wheel
installed into a fresh venv outside the checkout running the quick start)
is a step of ``.ci/run``; here, what can be checked in seconds.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT

import daemondeco


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def test_the_version_is_written_in_one_place() -> None:
    """daemondeco/_version.py holds it; setup.cfg and the docs read it from there."""
    assert _setup_cfg()["metadata"]["version"] == "attr: daemondeco._version.__version__"
    assert "daemondeco.__version__" in (ROOT / "docs" / "conf.py").read_text()
    literal = re.compile(re.escape(f'"{daemondeco.__version__}"'))
    elsewhere = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "daemondeco").rglob("*.py"))
        if path.name != "_version.py" and literal.search(path.read_text())
    ]
    assert not elsewhere, f"the version is also written in {elsewhere}"


def test_metadata_is_complete() -> None:
    metadata = _setup_cfg()["metadata"]
    urls = dict(line.split("=", 1) for line in metadata["project_urls"].strip().splitlines())
    assert {key.strip() for key in urls} >= {"Documentation", "Source", "Issues", "Changelog"}
    classifiers = metadata["classifiers"]
    for needed in ("Typing :: Typed", "Operating System :: POSIX", "Programming Language :: Python :: 3.10"):
        assert needed in classifiers
    requires = _setup_cfg()["options"]["python_requires"]
    lowest = re.search(r">=\s*3\.(\d+)", requires)
    assert lowest and f"Python :: 3.{lowest[1]}" in classifiers, "classifiers and python_requires disagree"


def test_docs_and_release_extras() -> None:
    extras = _setup_cfg()["options.extras_require"]
    docs = extras["docs"]
    for needed in ("sphinx", "furo", "myst-parser"):
        assert needed in docs
    assert "mkdocs" not in docs
    for needed in ("build", "twine"):
        assert needed in extras["release"]


@pytest.mark.timeout(300)
def test_sdist_carries_tests_docs_and_examples(tmp_path: Path) -> None:
    """``python -m build --sdist`` (no isolation: no index needed) packs what a downstream packager runs."""
    pytest.importorskip("build", reason="the release extra is not installed (pip install -e '.[release]')")
    # From a copy: setuptools writes its egg-info into the source tree it builds.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "__pycache__", "*.egg-info", "_build", "_generated", ".coverage*", "build", "dist"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (sdist,) = tmp_path.glob("daemondeco-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for needed in (
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "daemondeco/py.typed",
        "tests/conftest.py",
        "tests/test_docs.py",
        "docs/conf.py",
        "docs/index.md",
        "docs/reference/daemondeco.md",
        "examples/ticker.py",
    ):
        assert needed in names, f"{needed} is missing from the sdist"
    assert not [name for name in names if "__pycache__" in name or "/_build/" in name or "_generated" in name]
