"""The fairlearn comparison notebook runs, and its tables say what its text says.

The notebook is executed with nbclient in a kernel started from this interpreter (a
kernel spec written to a temporary folder, so no kernel is installed anywhere), and
its outputs are read back: the summary table printed by the cell tagged ``summary``,
the figure of the cell tagged ``comparison_plot``, the online report.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "fairlearn_comparison.ipynb"
MODELS = [
    "unconstrained MLP",
    "FairnessLayerClassifier",
    "OnlineFairPredictor",
    "ThresholdOptimizer",
    "ExponentiatedGradient",
]


def _kernel_manager(folder: Path) -> KernelManager:
    """A kernel manager whose ``python3`` kernel runs this very interpreter."""
    spec_dir = folder / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)",
        "language": "python",
        "env": {"OMP_NUM_THREADS": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")], ensure_native_kernel=False)
    assert specs.find_kernel_specs() == {"python3": str(spec_dir)}
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    assert manager.kernel_spec.argv[0] == sys.executable
    return manager


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    folder = tmp_path_factory.mktemp("kernel")
    client = NotebookClient(
        notebook,
        km=_kernel_manager(folder),
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()
    return notebook


def _cell(notebook, tag: str):
    (cell,) = [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]
    return cell


def _stdout(cell) -> str:
    return "".join(o["text"] for o in cell.outputs if o.get("name") == "stdout")


def _summary(notebook) -> pd.DataFrame:
    """The table the ``summary`` cell printed, read back from its text."""
    text = _stdout(_cell(notebook, "summary"))
    lines = text.strip().splitlines()
    header, rows = lines[0].split(), lines[2:]  # line 1 holds the index name
    assert header == ["accuracy", "dp_difference", "within_epsilon"]
    records = {}
    for line in rows:
        match = re.match(r"^(.*?)\s+([-\d.]+)\s+([-\d.]+)\s+(True|False)$", line)
        assert match, f"unexpected summary line {line!r}"
        name, accuracy, gap, within = match.groups()
        records[name] = (float(accuracy), float(gap), within == "True")
    return pd.DataFrame.from_dict(
        records, orient="index", columns=["accuracy", "dp_difference", "within_epsilon"]
    )


def test_notebook_runs_every_cell_without_errors(executed):
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert not errors


def test_fairness_layer_is_within_epsilon_and_the_unconstrained_mlp_is_not(executed):
    summary = _summary(executed)
    assert list(summary.index) == MODELS
    epsilon = 0.05
    assert summary.loc["FairnessLayerClassifier", "dp_difference"] <= epsilon
    assert summary.loc["FairnessLayerClassifier", "within_epsilon"]
    assert summary.loc["unconstrained MLP", "dp_difference"] > epsilon
    assert not summary.loc["unconstrained MLP", "within_epsilon"]
    # the flag column agrees with the printed gaps
    assert (summary["within_epsilon"] == (summary["dp_difference"] <= epsilon)).all()
    # parity costs a little accuracy, not a collapse to a constant prediction
    majority = 0.76  # Adult's share of incomes at most 50K
    assert (summary["accuracy"] > majority).all()


def _by_group(notebook) -> pd.DataFrame:
    """The MetricFrame ``by_group`` table the notebook displayed, read back from its text."""
    cell = next(
        c for c in notebook.cells if c.cell_type == "code" and "by_group.round(3)" in c.source
    )
    (result,) = [o for o in cell.outputs if o.get("output_type") == "execute_result"]
    records, model = [], None
    for line in result["data"]["text/plain"].splitlines()[2:]:
        model = next((m for m in MODELS if line.startswith(m)), model)
        match = re.search(r"\b(Female|Male)\s+([\d.]+)\s+([\d.]+)$", line)
        assert match, f"unexpected by-group line {line!r}"
        records.append((model, match[1], float(match[2]), float(match[3])))
    return pd.DataFrame.from_records(
        records, columns=["model", "sex", "accuracy", "selection_rate"]
    )


def test_by_group_selection_rates_reproduce_each_models_gap(executed):
    by_group, summary = _by_group(executed), _summary(executed)
    assert list(by_group["model"].unique()) == MODELS
    for model, rows in by_group.groupby("model", sort=False):
        assert sorted(rows["sex"]) == ["Female", "Male"]
        gap = rows["selection_rate"].max() - rows["selection_rate"].min()
        # the table shows three decimals, the summary four
        assert abs(gap - summary.loc[model, "dp_difference"]) <= 1e-3 + 1e-4
    # the unconstrained network selects men far more often than women
    plain = by_group[by_group["model"] == "unconstrained MLP"].set_index("sex")
    assert plain.loc["Male", "selection_rate"] > plain.loc["Female", "selection_rate"]


def test_comparison_plot_is_drawn(executed):
    outputs = _cell(executed, "comparison_plot").outputs
    assert any("image/png" in o.get("data", {}) for o in outputs)


def test_online_report_stays_within_its_bound(executed):
    text = _stdout(_cell(executed, "online_report"))
    match = re.search(r"(\d+) decisions; pooled gap ([\d.]+) \(guaranteed <= ([\d.]+)", text)
    assert match, text
    n_decisions, gap, bound = int(match[1]), float(match[2]), float(match[3])
    assert n_decisions == 5000
    assert gap <= bound
