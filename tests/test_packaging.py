"""The release artefacts: one version, and an sdist that carries the tests and the docs.

The full release check (``python -m build``, ``twine check``, the wheel
installed into a fresh venv outside the checkout running the quick start)
is a step of ``.ci/run``; here, what can be checked in seconds.
"""

from __future__ import annotations

import configparser
import json
import os
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
    for needed in ("sphinx", "furo", "myst-parser", "pytest"):
        assert needed in docs
    assert "mkdocs" not in docs
    for needed in ("build", "twine"):
        assert needed in extras["release"]


@pytest.mark.timeout(300)
def test_sdist_carries_tests_docs_and_examples(tmp_path: Path) -> None:
    """``python -m build --sdist`` (no isolation: no index needed) packs what a downstream packager runs."""
    # build.__main__, not build: `pip install .` leaves setuptools' build/ folder in the checkout, which
    # imports as a namespace package named build, and then `python -m build` is "not a package".
    pytest.importorskip("build.__main__", reason="the release extra is not installed (pip install -e '.[release]')")
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


def _requirement_names(lines: str | list[str] | None) -> set[str]:
    names = set()
    for line in lines.splitlines() if isinstance(lines, str) else lines or []:
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
        if found and "extra ==" not in line:
            names.add(re.sub(r"[-_.]+", "-", found.group(1)).lower())
    return names


def test_the_docs_extra_installs_what_the_api_reference_imports() -> None:
    """``pip install -e '.[docs]'`` then ``sphinx-build -W``: autodoc imports every documented module for real.

    The pytest plugin's page imports pytest; the docs extra must bring it (a
    mock would turn the fixtures into mock objects without their docstrings).
    """
    import importlib.metadata

    modules = sorted(
        {
            match.group(1)
            for page in (ROOT / "docs" / "reference").glob("*.md")
            for match in re.finditer(r"^\.\. automodule:: (\S+)", page.read_text(), re.MULTILINE)
        }
    )
    assert "daemondeco.pytest_plugin" in modules
    code = (
        "import sys, json; before = set(sys.modules)\n"
        f"for name in {modules!r}: __import__(name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    imported = {name for name in json.loads(done.stdout) if name not in sys.stdlib_module_names}
    # This package; and daemondeco.compat.pidfile's optional `lockfile` (subclassed when installed).
    imported -= {"daemondeco", "lockfile"}
    options = _setup_cfg()["options"]
    wanted = _requirement_names(options["install_requires"]) | _requirement_names(
        _setup_cfg()["options.extras_require"]["docs"]
    )
    closure, todo = set(), list(wanted)
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            todo += _requirement_names(importlib.metadata.requires(name))
        except importlib.metadata.PackageNotFoundError:
            pass
    owners = importlib.metadata.packages_distributions()
    # Python 3.10's packages_distributions() reads only top_level.txt, which many wheels lack:
    # a module it does not map is taken to be its own distribution's name (pygments, exceptiongroup).
    missing = {
        module: owners.get(module)
        for module in imported
        if not {re.sub(r"[-_.]+", "-", dist).lower() for dist in owners.get(module, [module])} & closure
    }
    assert not missing, f"the API reference imports {missing}, which the docs extra does not install"


QUIET = ("-n", "0", "--no-cov", "-p", "no:cacheprovider", "-q", "-rs")


def test_the_release_check_skips_when_build_is_only_the_build_folder(tmp_path: Path) -> None:
    """After the quick start's ``pip install .``, setuptools' ``build/`` folder is not the build tool.

    In a venv without the release extra, ``import build`` finds that folder as a
    namespace package. Here the same namespace package stands in for it (the
    real tool is installed in this venv): the sdist check must skip, not run.
    """
    (tmp_path / "build").mkdir()
    (tmp_path / "shadow_build.py").write_text(
        "import importlib.machinery, importlib.util, sys\n"
        f"spec = importlib.machinery.ModuleSpec('build', None, is_package=True)\n"
        f"spec.submodule_search_locations = [{str(tmp_path / 'build')!r}]\n"
        "sys.modules['build'] = importlib.util.module_from_spec(spec)\n"
    )
    sdist_test = test_sdist_carries_tests_docs_and_examples.__name__
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "shadow_build", *QUIET, f"{Path(__file__).name}::{sdist_test}"],
        cwd=Path(__file__).parent,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert "1 skipped" in done.stdout and "release extra" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]


@pytest.mark.timeout(600)
def test_an_editable_install_is_seen_by_type_checkers(tmp_path: Path) -> None:
    """``pip install -e .`` then mypy on a user's file outside the checkout: daemondeco's types, not "untyped".

    setuptools' default editable mode installs an import hook that mypy and
    pyright cannot follow; setup.cfg's ``package_dir = =.`` makes it write a
    plain ``.pth`` line instead (docs/contributing.md). Run with the release
    extra (the packaging stage of .ci/run): it builds in a fresh venv.
    """
    pytest.importorskip("build.__main__", reason="the release extra is not installed (pip install -e '.[release]')")
    pytest.importorskip("mypy", reason="mypy is in the test extra")
    source = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "__pycache__", "*.egg-info", "_build", "_generated", ".coverage*", "build", "dist"
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "-e", str(source)],
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-3000:]
    user = tmp_path / "user"
    user.mkdir()
    (user / "app.py").write_text(
        "from daemondeco import daemon\n\n\n"
        '@daemon(pidfile="/tmp/app.pid")\n'
        'def service(interval: str = "1") -> None:\n'
        "    pass\n\n\n"
        "reveal_type(service)\n"
    )
    # mypy from this venv, looking at the fresh venv's packages (as a mypy installed with pipx does).
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental"]
    checked = subprocess.run(
        [*mypy, "--python-executable", str(venv / "bin" / "python"), "app.py"],
        cwd=user,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'Revealed type is "daemondeco._decorators.DaemonFunction[[interval: str =], None]"' in checked.stdout, (
        checked.stdout
    )
