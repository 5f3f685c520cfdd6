"""The gallery examples run, and what each one shows holds.

Each example runs in this process (``runpy``, matplotlib's Agg backend); its module
namespace then holds the numbers it printed and plotted, which are checked here against
the guarantees the estimators give and the claims the examples' text makes.
"""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import sklearn
from fairlearn.metrics import demographic_parity_difference

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def run_example(monkeypatch):
    """Run ``examples/<name>`` and return its namespace and the figures it drew."""

    def run(name: str):
        matplotlib.use("Agg")
        plt.close("all")
        monkeypatch.setattr(plt, "show", lambda *args, **kwargs: None)
        namespace = runpy.run_path(str(EXAMPLES / name), run_name="__main__")
        figures = [plt.figure(number) for number in plt.get_fignums()]
        assert figures, f"{name} drew no figure"
        for figure in figures:
            drawn = [ax for ax in figure.axes if ax.lines or ax.collections or ax.patches]
            assert drawn, f"{name} drew an empty figure"
        return namespace, figures

    yield run
    plt.close("all")


def test_every_example_is_tested():
    tested = {
        "plot_fairness_layer.py",
        "plot_fairness_layer_images.py",
        "plot_online_fair_predictor.py",
        "plot_metanet_editor.py",
        "plot_grid_search_fair_scorers.py",
        "plot_editor_pipeline.py",
        "plot_several_requirements.py",
    }
    assert {path.name for path in EXAMPLES.glob("plot_*.py")} == tested


@pytest.mark.slow
def test_fairness_layer_example_meets_every_bound_on_the_test_slice(run_example):
    ns, _ = run_example("plot_fairness_layer.py")
    results = ns["results"]
    assert [epsilon for epsilon, _, _ in results] == ns["epsilons"]
    for epsilon, accuracy, gap in results:
        assert gap <= epsilon
        # the example's claim: a little accuracy for the bound
        assert accuracy >= ns["plain_accuracy"] - 0.03
    # the unconstrained network needs the layer: its gap exceeds every bound tried
    assert ns["plain_gap"] > max(ns["epsilons"])
    # the gap printed is fairlearn's demographic parity difference
    last = demographic_parity_difference(
        ns["y_test"], ns["y_pred"], sensitive_features=ns["sex_test"]
    )
    assert math.isclose(last, results[-1][2], rel_tol=0, abs_tol=1e-12)


@pytest.mark.slow
def test_image_example_meets_every_bound_on_the_test_images(run_example):
    ns, _ = run_example("plot_fairness_layer_images.py")
    assert ns["X_test"].shape[1:] == (1, 8, 8)  # the network took the images as they are
    layer, thresholded = ns["layer_results"], ns["threshold_results"]
    assert [epsilon for epsilon, _, _ in layer] == ns["epsilons"]
    for epsilon, accuracy, gap in layer:
        assert gap <= epsilon
        assert accuracy >= ns["plain_accuracy"] - 0.06
    # the plain network breaks every bound, as the text says: the group matters
    assert ns["plain_gap"] > max(ns["epsilons"])
    # the heavy images are even more often, the premise of the example
    y, group = ns["y"], ns["group"]
    assert y[group == "heavy"].mean() - y[group == "light"].mean() > max(ns["epsilons"])
    # ThresholdOptimizer got the same bounds and moved the gap towards them
    assert [epsilon for epsilon, _, _ in thresholded] == ns["epsilons"]
    assert all(gap < ns["plain_gap"] for _, _, gap in thresholded)
    # the last gap printed is fairlearn's demographic parity difference
    last = demographic_parity_difference(
        ns["y_test"], ns["y_pred"], sensitive_features=ns["group_test"]
    )
    assert math.isclose(last, layer[-1][2], rel_tol=0, abs_tol=1e-12)


def test_online_example_stays_within_its_bound_at_every_point_of_the_stream(run_example):
    ns, _ = run_example("plot_online_fair_predictor.py")
    gaps, bounds, epsilon = ns["pooled_gaps"], ns["bounds"], ns["epsilon"]
    assert len(gaps) == len(bounds) == math.ceil(len(ns["stream"]) / ns["batch_size"])
    assert all(gap <= bound for gap, bound in zip(gaps, bounds, strict=True))
    # by the end of the stream the bound itself is below epsilon, as the text says
    assert bounds[-1] <= epsilon
    assert gaps[-1] <= epsilon
    decisions, sex = ns["decisions"], ns["sex_stream"]
    assert math.isclose(
        demographic_parity_difference(ns["y_stream"], decisions, sensitive_features=sex),
        gaps[-1],
        abs_tol=1e-12,
    )
    # batches of 25 decide as one replayed stream does (row by row from the fit state)
    replay = ns["online"].predict(ns["X_stream"], sensitive_features=sex)
    np.testing.assert_array_equal(decisions, replay)
    # the unconstrained model breaks parity on the same stream
    assert ns["unconstrained_gaps"][-1] > 3 * epsilon


@pytest.mark.slow
def test_metanet_editor_example_meets_every_sparsity_target_exactly(run_example):
    ns, _ = run_example("plot_metanet_editor.py")
    rows, held_out = ns["rows"], ns["held_out"]
    assert [row["target"] for row in rows] == ns["targets"]
    for row in rows:
        edited = ns["editor"].transform(held_out, target=row["target"])
        for net in edited:
            weights = [w for w in net.module_.parameters() if w.ndim == 2]
            n_weights = sum(w.numel() for w in weights)
            n_zero = sum(int((w == 0).sum()) for w in weights)
            assert n_zero >= math.ceil(row["target"] * n_weights - 1e-9)
        assert row["editor_sparsity"] >= row["target"] - 1e-12
    # the example's claim: at high sparsity the editor keeps more accuracy than magnitude
    # pruning (mean over the held-out networks and the targets from 0.8 up)
    high = [row for row in rows if row["target"] >= 0.8]
    assert np.mean([r["editor_accuracy"] - r["magnitude_accuracy"] for r in high]) > 0
    report = ns["report"]
    assert len(report) == len(held_out)
    assert (report["sparsity_after"] >= 0.9).all()


@pytest.mark.slow
def test_grid_search_example_selects_the_most_accurate_candidate_within_requirement(
    run_example,
):
    ns, _ = run_example("plot_grid_search_fair_scorers.py")
    requirement = ns["requirement"]
    for search in (ns["search"], ns["online_search"]):
        results = search.cv_results_
        accuracy = results["mean_test_accuracy"]
        constrained = results["mean_test_accuracy_within_requirement"]
        met = np.isclose(accuracy, constrained)
        # a candidate that broke the requirement on a fold scores below every one that met it
        assert met.any() and (~met).any()
        assert constrained[~met].max() < constrained[met].min()
        best = search.best_index_
        assert met[best]
        assert accuracy[best] == accuracy[met].max()
    # the fairness layer's bound holds on the test slice, decided as one batch
    best_epsilon = ns["search"].best_params_["fairnesslayerclassifier__epsilon"]
    assert best_epsilon <= requirement
    assert ns["layer_gap"] <= best_epsilon
    assert ns["online_gap"] <= requirement
    # the routing was switched off again
    assert not sklearn.get_config()["enable_metadata_routing"]


@pytest.mark.slow
def test_editor_pipeline_example_minimises_and_prunes_every_held_out_network(run_example):
    ns, _ = run_example("plot_editor_pipeline.py")
    table = ns["table"]
    n_held_out = len(ns["held_out"])
    minimised = table[table["stage"] == "minimised"]
    assert len(minimised) == n_held_out and (minimised["forbidden_used"] == 0).all()
    final = table[table["stage"] == "minimised + pruned"]
    assert len(final) == n_held_out and (final["sparsity"] >= 0.7).all()
    assert (final["forbidden_used"] == 0).all()
    original = table[table["stage"] == "original"]
    assert (original["forbidden_used"] == len(ns["forbidden"])).all()
    # first-layer columns of forbidden features are exactly zero in every edited network
    columns = ns["forbidden_columns"]
    for net in ns["edited"]:
        first = next(w for w in net.module_.parameters() if w.ndim == 2)
        assert int((first[:, columns] != 0).sum()) == 0
    # the measured side effect the text describes: dropping the proxies lowers the gap
    assert final["parity_gap"].mean() < original["parity_gap"].mean()
    report = ns["report"]
    assert (report["parity_gap_after"] < report["parity_gap_before"]).all()


@pytest.mark.slow
def test_several_requirements_example_meets_all_three_parity_by_its_bound(
    run_example,
):
    ns, _ = run_example("plot_several_requirements.py")
    report, uncalibrated = ns["report"], ns["uncalibrated"]
    assert len(report) == len(ns["held_out"]) == len(ns["edited"])
    # the structural requirements hold exactly, calibrated or not
    for table in (report, uncalibrated):
        assert table["meets_sparsity"].all() and (table["sparsity_after"] >= 0.8).all()
        assert table["meets_data_minimisation"].all()
    # the text's claim: without calibration the gaps scatter above the target; with it,
    # an upper 99% bound on each edit's gap from the calibration rows (the gap plus
    # 2.326 Agresti-Caffo standard errors) meets it, and so the test rows' gap within
    # their own sampling error
    assert (uncalibrated["requirement_gap_after"] > 0.05).any()
    assert (report["requirement_gap_after"] < report["requirement_gap_before"]).all()
    validation = ns["validation"]

    def gap_and_error(net, X, sex):
        positive = net.predict(np.asarray(X)) == 1
        rates, variances = [], []
        for group in np.unique(sex):
            n = int((sex == group).sum())
            rates.append(positive[sex == group].mean())
            adjusted = (positive[sex == group].sum() + 1) / (n + 2)
            variances.append(adjusted * (1 - adjusted) / (n + 2))
        return abs(rates[0] - rates[1]), float(np.sqrt(sum(variances)))

    for net in ns["edited"]:
        gap, error = gap_and_error(net, validation.X, np.asarray(validation.sensitive_features))
        assert gap + 2.326 * error <= 0.05 + 1e-9
        gap, error = gap_and_error(net, ns["X_test"], ns["sex_test"])
        assert gap <= 0.05 + 2.326 * error
    X_test, y_test, sex_test = ns["X_test"], ns["y_test"], ns["sex_test"]
    columns = ns["forbidden_columns"]
    for net, gap, accuracy in zip(
        ns["edited"], report["requirement_gap_after"], report["accuracy_after"], strict=True
    ):
        first = next(w for w in net.module_.parameters() if w.ndim == 2)
        assert int((first[:, columns] != 0).sum()) == 0
        # the report's figures are fairlearn's and the transformed network's own
        y_pred = net.predict(X_test)
        assert demographic_parity_difference(
            y_test, y_pred, sensitive_features=sex_test
        ) == pytest.approx(gap, abs=1e-6)
        assert (y_pred == y_test).mean() == pytest.approx(accuracy, abs=1e-6)
