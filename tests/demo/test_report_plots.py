"""What each figure of the demo's report draws, read off the matplotlib figure itself.

The figures are caught as the report saves them, so that their axes, lines, bars and
titles can be checked: nothing drawn outside the axes, no line where nothing was
measured, every forbidden column named, bars that sit among their dots, a break-even.
"""

import numpy as np
import pandas as pd
import pytest

from sklearn_metaedit.demo import _figures, _report
from sklearn_metaedit.demo._report import (
    break_even,
    plot_accuracy_vs_sparsity,
    plot_edit_time,
    plot_minimisation,
    plot_online_gap,
)


@pytest.fixture
def figures(monkeypatch):
    """The figures the report saves, in order, instead of PNG files."""
    caught = []

    def save(fig, path):
        fig.canvas.draw()
        caught.append(fig)
        return path

    monkeypatch.setattr(_figures, "_save", save)
    yield caught
    plt = _report._pyplot()
    for fig in caught:
        plt.close(fig)


def _sweep(fine_tune_epochs=3):
    rows = []
    for network in range(3):
        rows.append((network, "original", 0.0, 0.85, 0.0, 1.0))
        for target in (0.5, 0.8, 0.9):
            rows.append((network, "MetanetEditor", target, 0.84, target, 0.01 + 0.001 * network))
            rows.append((network, "magnitude pruning", target, 0.80, target, 0.0004))
            rows.append((network, "magnitude pruning + fine-tuning", target, 0.82, target, 0.61))
    sweep = pd.DataFrame(
        rows, columns=["network", "method", "target", "accuracy", "sparsity", "seconds"]
    )
    sweep.attrs.update(editor_fit_seconds=30.0, fine_tune_epochs=fine_tune_epochs)
    return sweep


def test_online_plot_shows_the_whole_range_and_the_bound_only_where_it_bounds(figures):
    n = np.array([1, 2, 3, 5, 10, 100, 1000])
    trajectory = pd.DataFrame(
        {
            "n_decisions": n,
            # one group only at first: the report's bound is 0; then above 1, then below
            "bound": [0.0, 0.0, 4.0, 1.5, 0.8, 0.2, 0.06],
            "pooled_gap": [0.0, 0.0, 1.0, 0.6, 0.3, 0.04, 0.03],
            "unconstrained_gap": [0.0, 0.0, 1.0, 0.8, 0.5, 0.2, 0.19],
        }
    )
    plot_online_gap(trajectory, "unused.png", epsilon=0.05)
    (ax,) = figures[0].axes
    assert ax.get_ylim() == (0.0, 1.0)
    lines = {line.get_label(): line for line in ax.get_lines()}
    (bound_label,) = [label for label in lines if label.startswith("guaranteed bound")]
    assert "from decision 10" in bound_label
    bound = lines[bound_label]
    assert list(bound.get_xdata()) == [10, 100, 1000]
    # every drawn value lies inside the axes
    for line in ax.get_lines():
        assert np.all(np.asarray(line.get_ydata(), dtype=float) >= 0)
        assert np.all(np.asarray(line.get_ydata(), dtype=float) <= 1.0)
    assert max(lines["unconstrained base model"].get_ydata()) == 1.0


def test_sparsity_plot_marks_the_measured_targets_and_joins_none_of_them(figures):
    plot_accuracy_vs_sparsity(_sweep(), "unused.png")
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.5", "0.8", "0.9"]
    for line in ax.get_lines():
        if line.get_label() != "original (sparsity 0)" and len(line.get_xdata()) > 1:
            assert line.get_linestyle() == "None", line.get_label()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "magnitude pruning + fine-tuning (3 epochs)" in labels


def test_edit_time_plot_names_the_break_even_and_the_epochs(figures):
    plot_edit_time(_sweep(fine_tune_epochs=1), "unused.png", editor_fit_seconds=30.0)
    (ax,) = figures[0].axes
    # 30 s of training against 0.61 - 0.011 s saved per network: 51 networks
    assert break_even(30.0, 0.011, 0.61) == 51
    assert "pays off from 51 networks" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "magnitude pruning + fine-tuning (1 epoch)" in labels


def test_break_even_is_the_first_network_count_where_editing_costs_less():
    for fit, edit, other in [(30.0, 0.01, 0.61), (5.0, 0.2, 0.7), (1.0, 0.0, 2.0)]:
        n = break_even(fit, edit, other)
        assert fit + n * edit <= n * other
        assert n == 1 or fit + (n - 1) * edit > (n - 1) * other
    assert break_even(1.0, 0.5, 0.5) is None


def test_minimisation_plot_names_every_forbidden_column_and_medians_sit_among_the_dots(
    figures,
):
    forbidden = [f"marital-status_Married-civ-spouse-{i}" for i in range(12)] + ["age"]
    rows = []
    times = {"zero the columns": [1e-4, 2e-4, 5e-2], "MetanetEditor": [0.004, 0.005, 2.0]}
    for network in range(3):
        rows.append((network, "original", 0.85, 13, 1.0))
        for method, seconds in times.items():
            rows.append((network, method, 0.84, 0, seconds[network]))
    table = pd.DataFrame(
        rows, columns=["network", "method", "accuracy", "forbidden_columns_used", "seconds"]
    )
    table.attrs.update(forbidden_features=forbidden, fine_tune_epochs=2)
    plot_minimisation(table, "unused.png")
    fig = figures[0]
    title = fig._suptitle.get_text()
    assert "[...]" not in title
    flat = " ".join(title.split())
    assert all(name in flat for name in forbidden)
    _, right = fig.axes
    bars = [patch.get_width() for patch in right.patches]
    # no bar for the original; the others at the median of their dots
    assert sorted(bars) == sorted(np.median(v) for v in times.values())
    summary = _report.minimisation_summary(table).set_index("method")
    assert np.isnan(summary.loc["original", "seconds"])
