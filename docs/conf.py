"""Sphinx configuration: furo, Markdown sources through MyST, the API reference from the docstrings.

Build strictly, as CI does::

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -n -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Document this checkout, not whatever daemondeco happens to be installed.
sys.path.insert(0, str(ROOT))

import daemondeco  # noqa: E402

project = "daemondeco"
author = "the daemondeco authors"
copyright = "daemondeco authors, MIT licence"
# The one place the version lives is daemondeco/_version.py.
release = daemondeco.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "**/.ipynb_checkpoints",
]
templates_path: list[str] = []

# -- MyST ---------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "fieldlist", "substitution"]
# {{ release }} in a page is the package's version: pages never write it out.
myst_substitutions = {"release": release, "version": version}
# Links such as guide.md#options keep working: anchors for headings down to ####.
myst_heading_anchors = 4
suppress_warnings = ["myst.header"]  # pages may start at ## after a front section

# -- autodoc / napoleon ---------------------------------------------------------
# The package's docstrings are Google style (Args:, Returns:, Raises:) with
# Sphinx roles (:class:, .. versionadded::): napoleon renders both.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True}

# No network at build time (no intersphinx): names from the standard library,
# pytest and the type parameters render as plain text instead of links.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(os|pathlib|collections\.abc|typing|typing_extensions|types|signal|argparse|socket|asyncio)(\..*)?"),
    (r"py:.*", r"(_pytest|pytest)(\..*)?"),
    (r"py:.*", r"(P|R|P\.args|P\.kwargs|NoReturn|Any|Callable|Sequence|Iterator|TracebackType|Path|PathLike|FdLike)"),
    (r"py:.*", r"(DaemonOptions|DaemonizeOptions|LastExit|Unpack|Options|Handler|HasFileno|_DaemonControl)"),
    (r"py:.*", r"(wrapt|_wrappers|daemondeco\._[a-z]+)\..*"),
    (r"py:.*", r"(BaseException|Exception|RuntimeWarning|TypeError|ValueError|OSError|SystemExit)"),
]

# -- HTML -----------------------------------------------------------------------
html_theme = "furo"
html_title = f"daemondeco {release}"
html_static_path = ["_static"]
html_css_files = ["daemondeco.css"]
# Highlighting is done at build time by Pygments: nothing is fetched by the browser.
pygments_style = "friendly"
pygments_dark_style = "monokai"
html_theme_options = {
    "source_repository": "https://github.com/daemondeco/daemondeco/",
    "source_branch": "main",
    "source_directory": "docs/",
}


# -- the CLI's usage, generated from its parsers ----------------------------------
_APP = '''\
import sys
from daemondeco import daemon

@daemon(pidfile="/run/myapp.pid", stdout="/var/log/myapp.log")
def main(port="8080"):
    """Serve myapp on PORT."""

sys.exit(main.cli())
'''


def _write_cli_usage() -> None:
    """Write the help texts of ``python -m daemondeco`` and of a ``.cli()`` into reference/_generated/."""
    import tempfile

    out = DOCS / "reference" / "_generated"
    out.mkdir(exist_ok=True)
    env = {**os.environ, "COLUMNS": "88", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp, "myapp.py")
        app.write_text(_APP)
        commands = {"module.txt": ["-m", "daemondeco", "--help"], "app.txt": [str(app), "--help"]}
        for action in ("status", "stop", "reload"):
            commands[f"module-{action}.txt"] = ["-m", "daemondeco", action, "--help"]
        for action in ("start", "stop", "restart", "status", "reload", "run"):
            commands[f"app-{action}.txt"] = [str(app), action, "--help"]
        for name, argv in commands.items():
            done = subprocess.run(
                [sys.executable, *argv], env=env, capture_output=True, text=True, check=True, timeout=60, cwd=tmp
            )
            target = out / name
            if not target.exists() or target.read_text() != done.stdout:
                target.write_text(done.stdout)


_write_cli_usage()


def _public_bases(app: object, name: str, obj: object, options: object, bases: list[type]) -> None:
    """Show a private base class (``_errors._AcknowledgementError``) as its public parents."""
    i = 0
    while i < len(bases):
        base = bases[i]
        if isinstance(base, type) and base.__name__.startswith("_"):
            bases[i : i + 1] = [parent for parent in base.__bases__ if parent not in bases]
        else:
            i += 1


def setup(app: object) -> None:
    """Sphinx extension hook: the private bases are left out of the reference."""
    app.connect("autodoc-process-bases", _public_bases)  # type: ignore[attr-defined]
