"""The online demo and its peer: the within-batch primal-dual, drifting streams, the table."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from sklearn_metaedit.datasets import make_biased_classification
from sklearn_metaedit.demo import drifting_order, run_online_demo, within_batch_primal_dual
from sklearn_metaedit.metrics import selection_rate_gap


@pytest.fixture(scope="module")
def synthetic():
    X, y, groups = make_biased_classification(3000, n_groups=3, bias=1.5, random_state=0)
    return X[:1500], y[:1500], groups[:1500], X[1500:], y[1500:], groups[1500:]


def test_within_batch_peer_never_acts_at_batch_size_one(synthetic):
    *_, X, y, g = synthetic
    scores = LogisticRegression().fit(X, y).predict_proba(X)[:, 1]
    decisions = within_batch_primal_dual(scores, g, batch_size=1, epsilon=0.0)
    np.testing.assert_array_equal(decisions, scores >= 0.5)


def test_within_batch_peer_narrows_the_gaps_of_large_batches(synthetic):
    *_, X, y, g = synthetic
    scores = LogisticRegression().fit(X, y).predict_proba(X)[:, 1]
    decisions = within_batch_primal_dual(scores, g, batch_size=100, epsilon=0.0)

    def mean_batch_gap(d):
        return np.mean(
            [
                selection_rate_gap(d[i : i + 100], sensitive_features=g[i : i + 100])
                for i in range(0, len(d), 100)
            ]
        )

    assert mean_batch_gap(decisions) < 0.8 * mean_batch_gap((scores >= 0.5).astype(int))


def test_drifting_order_changes_group_shares_half_way():
    groups = np.array(["m"] * 7000 + ["f"] * 3000)
    order = drifting_order(groups, "m", first_share=0.9, second_share=0.43, random_state=0)
    assert len(set(order)) == len(order)
    half = len(order) // 2
    assert (groups[order[:half]] == "m").mean() == pytest.approx(0.9, abs=1e-3)
    assert (groups[order[half:]] == "m").mean() == pytest.approx(0.43, abs=1e-3)


def test_online_demo_table_puts_the_online_predictor_within_epsilon(synthetic):
    X, y, g, X_test, y_test, g_test = synthetic
    table = run_online_demo(X, y, g, X_test, y_test, g_test, epsilon=0.05)
    assert table.columns.tolist() == ["accuracy", "pooled_gap", "gap_last_half"]
    assert len(table) == 4
    ours = table.loc["OnlineFairPredictor (batch size 1)"]
    plain = table.loc["unconstrained"]
    assert plain.pooled_gap > 0.05 >= ours.pooled_gap
    # The within-batch peer at batch size 1 is the unconstrained model.
    assert table.loc["within-batch primal-dual (batch size 1)"].equals(plain)
    assert ours.accuracy >= plain.accuracy - 0.05
