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

from ._baselines import (
    Float64Proba,
    fine_tune,
    retrain_on_columns,
    within_batch_primal_dual,
    zero_columns,
)
from ._editing import run_editor_demo, run_editor_sweep, run_minimisation_comparison
from ._fairness import compare_fairness_layer
from ._online import drifting_order, online_gap_trajectory, run_online_demo, stream_summary
from ._pruning import layer_rates, obc_prune, sparsegpt_prune, wanda_prune
from ._report import editor_summary, minimisation_summary, write_report
from ._tasks import TabularTask, load_task, mlp_classifier, training_schedule

__all__ = [
    "Float64Proba",
    "TabularTask",
    "compare_fairness_layer",
    "drifting_order",
    "editor_summary",
    "fine_tune",
    "layer_rates",
    "load_task",
    "minimisation_summary",
    "mlp_classifier",
    "obc_prune",
    "online_gap_trajectory",
    "retrain_on_columns",
    "run_editor_demo",
    "run_editor_sweep",
    "run_minimisation_comparison",
    "run_online_demo",
    "sparsegpt_prune",
    "stream_summary",
    "training_schedule",
    "wanda_prune",
    "within_batch_primal_dual",
    "write_report",
    "zero_columns",
]
