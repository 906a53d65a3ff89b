"""The built docs site, looked at as a reader would: headless Chromium, offline, from ``file://``.

For the index, the guide and an API page: no table is wider than the
article column (wide tables scroll inside their own box, and at a 1280 px
window none even needs to), code blocks are highlighted (Pygments spans,
made at build time), and the page loads nothing from the network.

Needs ``sphinx-build`` (``pip install -e '.[docs]'``) and Chromium (the Debian
package ``chromium``); skipped, saying which is missing, without them.
``DAEMONDECO_DOCS_HTML=DIR`` checks a site already built into DIR (``.ci/run``
does, after its strict build) instead of building one here.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PAGES = ("index.html", "guide.html", "reference/daemondeco.html")
WINDOW = "1280,2000"

# Injected at the end of <body>: runs once the page's CSS is applied, writes what it measured into the DOM.
PROBE = """
<script>
(function () {
  var article = document.querySelector("article") || document.body;
  var column = article.getBoundingClientRect();
  var tables = Array.prototype.slice.call(article.querySelectorAll("table"));
  var overflowing = [], scrolling = [];
  tables.forEach(function (table, i) {
    var box = table.closest(".table-wrapper") || table;
    var rect = box.getBoundingClientRect();
    var label = i + ": " + (table.querySelector("th, td") || table).textContent.trim().slice(0, 40);
    if (rect.right > column.right + 1 || rect.left < column.left - 1) {
      label += " (box " + Math.round(rect.left) + ".." + Math.round(rect.right) + " px, column "
        + Math.round(column.left) + ".." + Math.round(column.right) + " px)";
      overflowing.push(label);
    }
    if (box.scrollWidth > box.clientWidth + 1) scrolling.push(label);
  });
  var external = Array.prototype.slice.call(document.querySelectorAll("script[src], link[href], img[src]"))
    .map(function (el) { return el.getAttribute("src") || el.getAttribute("href"); })
    .filter(function (url) { return /^(https?:)?\\/\\//.test(url); });
  var result = {
    tables: tables.length,
    overflowing: overflowing,
    scrolling: scrolling,
    code_blocks: document.querySelectorAll("div.highlight pre").length,
    highlight_spans: document.querySelectorAll(".highlight span").length,
    external: external,
    column_width: Math.round(column.width)
  };
  var out = document.createElement("pre");
  out.id = "site-check";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
})();
</script>
"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built HTML site: DAEMONDECO_DOCS_HTML, or a strict build of docs/ made here."""
    given = os.environ.get("DAEMONDECO_DOCS_HTML")
    if given:
        return Path(given)
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install -e '.[docs]')")
    pytest.importorskip("furo", reason="furo is not installed (pip install -e '.[docs]')")
    pytest.importorskip("myst_parser", reason="myst-parser is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("html")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html", str(ROOT / "docs"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    return out


def measure(site: Path, page: str, tmp_path: Path) -> dict[str, object]:
    """Open *page* of *site* in headless Chromium, offline; what the injected probe measured."""
    chromium = _chromium()
    source = site / page
    text = source.read_text()
    assert "</body>" in text
    probe_page = source.with_name(f"_site_check_{source.name}")
    probe_page.write_text(text.replace("</body>", PROBE + "</body>", 1))
    try:
        done = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                f"--window-size={WINDOW}",
                # offline: every host resolves to nothing, and no proxy is asked
                "--host-resolver-rules=MAP * ~NOTFOUND",
                "--no-proxy-server",
                "--virtual-time-budget=2000",
                "--dump-dom",
                probe_page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        probe_page.unlink()
    found = re.search(r'<pre id="site-check">(.*?)</pre>', done.stdout, re.S)
    assert found, f"chromium exit {done.returncode}; no probe result in the DOM\n{done.stderr[-2000:]}"
    result: dict[str, object] = json.loads(html.unescape(found[1]))
    return result


@pytest.mark.timeout(300)  # the first one builds the site
@pytest.mark.parametrize("page", PAGES)
def test_page_renders_for_a_reader(site: Path, page: str, tmp_path: Path) -> None:
    result = measure(site, page, tmp_path)
    print(page, result)
    assert result["overflowing"] == [], f"{page}: tables wider than the article column: {result}"
    assert result["scrolling"] == [], f"{page}: tables that need sideways scrolling at {WINDOW}: {result}"
    assert result["external"] == [], f"{page}: loads from the network: {result}"
    code_blocks = result["code_blocks"]
    assert isinstance(code_blocks, int) and code_blocks > 0, result
    spans = result["highlight_spans"]
    assert isinstance(spans, int) and spans >= 5 * code_blocks, f"{page}: code is not highlighted: {result}"
    if page == "guide.html":  # its options and exit-code tables
        assert isinstance(result["tables"], int) and result["tables"] > 0, result
