"""The documentation builds, offline and without a single warning.

The gallery's scripts are not executed here (``plot_gallery=0``): ``test_examples.py``
runs each of them and checks what it shows. ``make docs`` builds the full site.
"""

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


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
