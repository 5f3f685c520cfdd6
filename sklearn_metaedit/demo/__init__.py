"""The demo, its report, and the comparisons with the peers, apart from the library.

``python -m sklearn_metaedit demo`` runs the three estimators beside their peers on a
bundled data set and writes a report folder; the scripts in ``benchmarks/`` run the
same comparisons at their own sizes. Both use the functions here, so that a baseline
("fine-tuning", "retrain without the columns", the within-batch primal-dual) has one
definition and one meaning wherever it is reported.

The library (``sklearn_metaedit.fairness``, ``sklearn_metaedit.editing``,
``sklearn_metaedit.metrics``, ``sklearn_metaedit.datasets``) never imports this
subpackage. The report's figures need matplotlib (``pip install
sklearn_metaedit[demo]``), imported only when a figure is drawn.
"""

from importlib import import_module

# imported lazily, so that the command line starts (and answers --help) at once
_PUBLIC = {
    "Float64Proba": "_baselines",
    "fine_tune": "_baselines",
    "retrain_on_columns": "_baselines",
    "within_batch_primal_dual": "_baselines",
    "zero_columns": "_baselines",
    "run_editor_demo": "_editing",
    "run_editor_sweep": "_editing",
    "run_minimisation_comparison": "_editing",
    "compare_fairness_layer": "_fairness",
    "layer_rates": "_pruning",
    "obc_prune": "_pruning",
    "obs_remove_columns": "_pruning",
    "sparsegpt_prune": "_pruning",
    "wanda_prune": "_pruning",
    "drifting_order": "_online",
    "online_gap_trajectory": "_online",
    "run_online_demo": "_online",
    "stream_summary": "_online",
    "editor_summary": "_report",
    "minimisation_summary": "_report",
    "write_report": "_report",
    "TabularTask": "_tasks",
    "load_task": "_tasks",
    "mlp_classifier": "_tasks",
    "training_schedule": "_tasks",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
