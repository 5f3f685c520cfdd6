"""The shape of the package: a core that holds only the library, modules of one idea.

- The library (fairness, editing, metrics, datasets) never imports the demo, its report
  or matplotlib, and fits all three estimators where matplotlib is not installed.
- The numerical and requirement modules of the editor know nothing of the estimator.
- No library module is over 700 lines.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sklearn_metaedit"
CORE = [
    "fairness",
    "editing",
    "datasets",
    "metrics.py",
    "__init__.py",
    "_constraint_names.py",
    "_device.py",
    "_groups.py",
    "_mlp.py",
]


def _modules(*parts):
    for part in parts:
        path = PACKAGE / part
        yield from [path] if path.is_file() else sorted(path.rglob("*.py"))


def _imports(path):
    """Every module name a file imports (relative imports resolved within the package)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", list(_modules(*CORE)), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_core_never_imports_the_demo_or_matplotlib(path):
    imported = _imports(path)
    assert not {n for n in imported if n.startswith("sklearn_metaedit.demo")}
    assert not {n for n in imported if n.split(".")[0] == "matplotlib"}


def test_requirements_and_numerics_know_nothing_of_the_estimator():
    estimator = {"sklearn_metaedit.editing._editor", "sklearn_metaedit.editing._persistence"}
    names = [
        "_requirement",
        "_requirements",
        "_sparsity",
        "_minimisation",
        "_parity",
        "_magnitude",
        "_gates",
        "_measures",
        "_graph",
        "_metanet",
        "_edit",
        "_training",
    ]
    for name in names:
        imported = _imports(PACKAGE / "editing" / f"{name}.py")
        assert not imported & estimator, name
        assert not {n for n in imported if n.startswith("sklearn")} - {
            n for n in imported if n.startswith("sklearn_metaedit")
        }, f"{name} imports scikit-learn"


def test_no_library_module_is_over_700_lines():
    lengths = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {name: n for name, n in lengths.items() if n > 700} == {}


def test_the_three_estimators_fit_where_matplotlib_is_not_installed():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["matplotlib"] = None  # as if it were not installed
        import numpy as np, torch
        from sklearn.linear_model import LogisticRegression
        from skorch import NeuralNetClassifier
        from sklearn_metaedit import (
            MLP, FairnessLayerClassifier, MetanetEditor, OnlineFairPredictor, make_population
        )
        from sklearn_metaedit.datasets import make_biased_classification
        from sklearn_metaedit.metrics import selection_rate_gap

        X, y, g = make_biased_classification(400, 4, bias=1.5, random_state=0)
        net = NeuralNetClassifier(MLP, module__hidden_sizes=(8,), max_epochs=2,
                                  criterion=torch.nn.CrossEntropyLoss, train_split=None,
                                  verbose=0)
        layer = FairnessLayerClassifier(net, epsilon=0.05, random_state=0)
        layer.fit(X, y, sensitive_features=g)
        assert selection_rate_gap(layer.predict(X, sensitive_features=g),
                                  sensitive_features=g) <= 0.05
        online = OnlineFairPredictor(LogisticRegression(), epsilon=0.05)
        online.fit(X, y, sensitive_features=g).predict(X, sensitive_features=g)
        population = make_population(net, X, y, n_networks=2, random_state=0)
        editor = MetanetEditor("sparsity", target=0.6, max_steps=2, random_state=0)
        editor.fit(population, data=(X, y)).transform(population)
        loaded = {name for name in sys.modules if name.startswith("sklearn_metaedit.demo")}
        assert not loaded, loaded
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_the_report_says_how_to_install_matplotlib_when_it_is_missing():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["matplotlib"] = None
        from sklearn_metaedit.demo import _report
        try:
            _report._pyplot()
        except ImportError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert "pip install matplotlib" in result.stdout


def test_the_demo_says_matplotlib_is_missing_before_any_work():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["matplotlib"] = None
        from sklearn_metaedit.demo import _cli
        try:
            _cli.main(["demo", "--quick"])
        except ImportError as exc:
            print(exc)
        loaded = [m for m in ("torch_geometric", "fairlearn", "skorch") if m in sys.modules]
        print("loaded:", loaded)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert "pip install matplotlib" in result.stdout
    # nothing was loaded, let alone trained
    assert "loaded: []" in result.stdout
