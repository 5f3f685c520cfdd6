"""The documentation builds, offline and without a single warning.

The gallery's scripts are not executed here (``plot_gallery=0``): ``test_examples.py``
runs each of them and checks what it shows. ``make docs`` builds the full site.
"""

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

DOCS = Path(__file__).resolve().parent.parent / "docs"


class _Loads(HTMLParser):
    """Every address a page loads by itself: scripts, styles, images, frames, media."""

    LOADING: ClassVar[dict] = {
        "script": ("src",),
        "img": ("src", "srcset"),
        "iframe": ("src",),
        "frame": ("src",),
        "embed": ("src",),
        "object": ("data",),
        "audio": ("src",),
        "video": ("src", "poster"),
        "source": ("src", "srcset"),
        "track": ("src",),
        "input": ("src",),
    }

    def __init__(self):
        super().__init__()
        self.addresses = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        names = self.LOADING.get(tag, ())
        if tag == "link" and not set((attrs.get("rel") or "").split()) <= {"canonical"}:
            # stylesheets, icons, preloads, fonts; not a plain hyperlink relation
            names = ("href",)
        self.addresses += [attrs[name] for name in names if attrs.get(name)]
        # CSS inside a style attribute: url(...) and @import
        self.addresses += re.findall(r"url\(\s*['\"]?([^'\")]+)", attrs.get("style") or "")

    def handle_data(self, data):
        # inline <style> blocks and inline scripts' imports
        self.addresses += re.findall(r"@import\s+(?:url\()?['\"]?([^'\")\s;]+)", data)


def _remote(address):
    return re.match(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", address, re.I) is not None


def _remote_loads(html_root):
    """(page, address) for every network address a page of the site loads."""
    found = []
    for page in sorted(html_root.rglob("*.html")):
        parser = _Loads()
        parser.feed(page.read_text(encoding="utf-8"))
        found += [(str(page.relative_to(html_root)), a) for a in parser.addresses if _remote(a)]
    for sheet in sorted(html_root.rglob("*.css")):
        for address in re.findall(r"url\(\s*['\"]?([^'\")]+)", sheet.read_text("utf-8")):
            if _remote(address):
                found.append((str(sheet.relative_to(html_root)), address))
    return found


def test_remote_load_finder_sees_each_kind_of_network_address(tmp_path):
    (tmp_path / "page.html").write_text(
        '<html><head><script src="https://cdn.example.org/mathjax.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/a.css">'
        '<link rel="canonical" href="https://example.org/page.html">'
        '<style>@import url("http://example.org/b.css");</style></head>'
        '<body><a href="https://example.org">a link loads nothing</a>'
        '<img src="_static/local.png"><iframe src="HTTPS://example.org/f"></iframe>'
        '<div style="background: url(https://example.org/c.png)"></div></body></html>'
    )
    (tmp_path / "s.css").write_text("body { background: url('https://example.org/d.png') }")
    assert {a for _, a in _remote_loads(tmp_path)} == {
        "https://cdn.example.org/mathjax.js",
        "//fonts.example.org/a.css",
        "http://example.org/b.css",
        "HTTPS://example.org/f",
        "https://example.org/c.png",
        "https://example.org/d.png",
    }


def test_sphinx_builds_the_site_with_no_warnings(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-D",
            "plot_gallery=0",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    html = tmp_path / "html"
    # every public name has its API page
    for name in (
        "sklearn_metaedit.FairnessLayerClassifier",
        "sklearn_metaedit.OnlineFairPredictor",
        "sklearn_metaedit.MetanetEditor",
        "sklearn_metaedit.make_population",
    ):
        assert (html / "generated" / f"{name}.html").exists(), name
    assert "projection" in (html / "fairness_layer.html").read_text().lower()

    # offline: no page loads a script, a style sheet, a font or an image from the network
    assert _remote_loads(html) == []
    # and the math renders from the copy of MathJax that ships with the site
    online = (html / "online.html").read_text()
    assert r"\[E_g" in online or r"\(E_g" in online
    scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', online, re.I)
    assert scripts, "the page with mathematics loads no MathJax"
    for script in scripts:
        path = (html / script.split("?")[0]).resolve()
        assert path.is_file() and path.stat().st_size > 100_000, script
        assert path.is_relative_to(html.resolve())
    # MathJax's CommonHTML output fetches its fonts relative to the script: they are there
    assert list((html / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
