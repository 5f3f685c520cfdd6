import numpy as np
import pytest
import sklearn
from fairlearn.metrics import (
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
)
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_metaedit.datasets import make_biased_classification
from sklearn_metaedit.metrics import (
    equalized_odds_gap,
    fair_accuracy_scorer,
    group_rates,
    make_fair_scorer,
    parity_gap,
    selection_rate_gap,
    true_positive_rate_gap,
)


@pytest.mark.parametrize("n_groups", [2, 3, 5])
@pytest.mark.parametrize("seed", range(3))
def test_gaps_equal_fairlearn_for_k_groups(n_groups, seed):
    rng = np.random.default_rng(seed)
    n = 400
    y_true = rng.integers(0, 2, n)
    y_pred = rng.integers(0, 2, n)
    groups = rng.choice([f"g{i}" for i in range(n_groups)], n)
    assert selection_rate_gap(y_pred, sensitive_features=groups) == pytest.approx(
        demographic_parity_difference(y_true, y_pred, sensitive_features=groups), abs=1e-15
    )
    assert true_positive_rate_gap(y_true, y_pred, sensitive_features=groups) == pytest.approx(
        equal_opportunity_difference(y_true, y_pred, sensitive_features=groups), abs=1e-15
    )
    assert equalized_odds_gap(y_true, y_pred, sensitive_features=groups) == pytest.approx(
        equalized_odds_difference(y_true, y_pred, sensitive_features=groups), abs=1e-15
    )


def test_intersectional_groups_are_column_tuples():
    sf = np.array([["m", 0], ["m", 1], ["f", 0], ["f", 0]], dtype=object)
    rates = group_rates([1, 0, 1, 0], sensitive_features=sf)
    assert rates == {("f", 0): 0.5, ("m", 0): 1.0, ("m", 1): 0.0}


def test_parity_gap_dispatches_and_rejects_unknown_constraint():
    y_true, y_pred, g = [1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1]
    assert parity_gap(y_true, y_pred, sensitive_features=g, constraint="equalized_odds") == 1.0
    with pytest.raises(ValueError, match="constraint must be one of"):
        parity_gap(y_true, y_pred, sensitive_features=g, constraint="parity")
    with pytest.raises(ValueError, match="needs y_true"):
        parity_gap(None, y_pred, sensitive_features=g, constraint="equal_opportunity")


def test_gap_errors_name_the_problem():
    with pytest.raises(ValueError, match="2 entries but X has 3 rows"):
        selection_rate_gap([1, 0, 1], sensitive_features=[0, 1])
    with pytest.raises(ValueError, match="missing value"):
        selection_rate_gap([1, 0, 1], sensitive_features=[0, np.nan, 1])


class _GroupThresholds(ClassifierMixin, BaseEstimator):
    """A toy model that needs the groups at predict time: group 1 is always selected."""

    def __init__(self, sensitive_feature=None):
        self.sensitive_feature = sensitive_feature

    def fit(self, X, y, sensitive_features=None):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X, sensitive_features=None):
        if sensitive_features is None:
            sensitive_features = np.asarray(X)[:, self.sensitive_feature]
        return (np.asarray(sensitive_features) == 1).astype(int)


def test_scorer_passes_groups_to_predict_and_metric():
    X = np.zeros((4, 2))
    y = np.array([0, 0, 1, 1])
    groups = np.array([0, 0, 1, 1])
    model = _GroupThresholds().fit(X, y)
    assert fair_accuracy_scorer(model, X, y, sensitive_features=groups) == 1.0
    constrained = make_fair_scorer("accuracy", epsilon=0.5)
    # perfect accuracy, but the selection-rate gap is 1 > 0.5: scored -gap
    assert constrained(model, X, y, sensitive_features=groups) == -1.0


def test_scorer_reads_groups_from_the_named_column_unrouted():
    X, y, groups = make_biased_classification(300, bias=2.0, random_state=0)
    X = np.column_stack([groups, X])
    expected = np.mean(y == (groups == 1))
    model = _GroupThresholds(sensitive_feature=0).fit(X, y)
    assert fair_accuracy_scorer(model, X, y) == pytest.approx(expected)
    # in a Pipeline the column is looked up in the last step's input: here the scaler
    # moves the passthrough group column to the end
    scale_rest = ColumnTransformer(
        [("scale", StandardScaler(), slice(1, None))], remainder="passthrough"
    )
    pipe = make_pipeline(scale_rest, _GroupThresholds(sensitive_feature=-1)).fit(X, y)
    assert fair_accuracy_scorer(pipe, X, y) == pytest.approx(expected)


def test_scorer_gets_routed_groups_in_grid_search_and_cross_validate():
    X, y, groups = make_biased_classification(300, bias=2.0, random_state=1)
    with sklearn.config_context(enable_metadata_routing=True):
        model = _GroupThresholds().set_fit_request(sensitive_features=True)
        model.set_predict_request(sensitive_features=True)
        search = GridSearchCV(
            model, {"sensitive_feature": [None]}, scoring=fair_accuracy_scorer, cv=3
        )
        search.fit(X, y, sensitive_features=groups)
        assert np.isfinite(search.cv_results_["mean_test_score"]).all()
        assert search.best_score_ == pytest.approx(np.mean(y == (groups == 1)), abs=0.02)
        result = cross_validate(
            LogisticRegression(),
            X,
            y,
            scoring={"acc": fair_accuracy_scorer, "dp": make_fair_scorer(epsilon=0.99)},
            params={"sensitive_features": groups},
            cv=3,
        )
        assert np.all(result["test_acc"] > 0.6)
        assert np.all(result["test_dp"] == result["test_acc"])


def test_constrained_scorer_without_groups_is_a_clear_error():
    X, y, _ = make_biased_classification(100, random_state=0)
    model = LogisticRegression().fit(X, y)
    with pytest.raises(ValueError, match="needs the sensitive features"):
        make_fair_scorer(epsilon=0.1)(model, X, y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"metric": "f1"}, "metric must be one of"),
        ({"epsilon": 1.0}, "epsilon must be in"),
        ({"epsilon": -0.1}, "epsilon must be in"),
        ({"constraint": "x"}, "constraint must be one of"),
    ],
)
def test_make_fair_scorer_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_fair_scorer(**kwargs)
