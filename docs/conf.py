"""Sphinx configuration: numpydoc API reference, user guide, sphinx-gallery examples.

The build and the built site are fully offline: no intersphinx inventories are fetched,
the data sets are bundled with the package, and MathJax is copied into the site
(``_static/mathjax``, from the sphinx-mathjax-offline package), so that the math renders
with no network; ``tests/test_docs.py`` checks that no page loads anything from elsewhere.
"""

import os
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import sklearn_metaedit  # noqa: E402

project = "sklearn_metaedit"
author = "The sklearn_metaedit developers"
copyright = "The sklearn_metaedit developers, BSD-3-Clause"
release = sklearn_metaedit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    # sets mathjax_path to the copy of MathJax 3 it puts in _static/mathjax
    "sphinx-mathjax-offline",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
# sg_execution_times.rst: left by builds that wrote computation times (see below)
exclude_patterns = [
    "_build",
    "**.ipynb_checkpoints",
    "auto_examples/*.ipynb",
    "sg_execution_times.rst",
    "**/sg_execution_times.rst",
]
root_doc = "index"
default_role = "literal"
nitpicky = False

html_theme = "alabaster"
html_title = f"sklearn_metaedit {release}"
html_theme_options = {
    "description": "Bring trained neural networks into compliance, the scikit-learn way.",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "240px",
}
html_static_path = []

# -- API reference -------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- Gallery ------------------------------------------------------------------------
# The examples train small networks on CPU; one core each keeps the timings steady.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    # run_notebook.py reruns the notebook (make notebook): a tool, not an example
    "ignore_pattern": r"__init__\.py|run_notebook\.py",
    "doc_module": ("sklearn_metaedit",),
    "backreferences_dir": "generated/backreferences",
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    # the execution-times pages load jQuery and DataTables from CDNs; each example's
    # page still states its own running time
    "write_computation_times": False,
}

# The examples run on the Agg backend, where plt.show() is a no-op by design.
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg", category=UserWarning)
warnings.filterwarnings("ignore", message="FigureCanvasAgg is non-interactive", category=UserWarning)


def _skip_generated_request_methods(app, what, name, obj, skip, options):
    """Leave out the ``set_*_request`` methods scikit-learn generates for routing.

    Their docstrings point into scikit-learn's own glossary; the routing they configure
    is described in the user guide (sensitive_features.rst).
    """
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_generated_request_methods)
