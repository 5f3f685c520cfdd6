"""OnlineFairPredictor: pooled parity on real streams, stream semantics, scikit-learn interop."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
from fairlearn.metrics import MetricFrame, selection_rate
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_metaedit import OnlineFairPredictor
from sklearn_metaedit.datasets import load_adult, make_biased_classification, make_preprocessor
from sklearn_metaedit.demo import Float64Proba
from sklearn_metaedit.metrics import fair_accuracy_scorer, make_fair_scorer, selection_rate_gap


@pytest.fixture(scope="module")
def adult():
    """A model of Adult's training split and its test split as a stream, groups by sex."""
    train, test = load_adult(split="train"), load_adult(split="test")
    rng = np.random.default_rng(0)
    rows = rng.choice(len(train.target), 6000, replace=False)
    X_train, y_train = train.data.iloc[rows], train.target.to_numpy()[rows]
    s_train = train.sensitive["sex"].to_numpy()[rows]
    model = make_pipeline(make_preprocessor(), LogisticRegression(max_iter=500))
    model.fit(X_train, y_train)
    return X_train, y_train, s_train, model, test


def _drifting_order(sex: np.ndarray, rng: np.random.Generator, half: int = 2000) -> np.ndarray:
    """90% men in the first half of the stream, 43% in the second."""
    men, women = (
        rng.permutation(np.flatnonzero(sex == "Male")),
        rng.permutation(np.flatnonzero(sex == "Female")),
    )
    m1, m2 = int(0.9 * half), int(0.43 * half)
    first = rng.permutation(np.concatenate([men[:m1], women[: half - m1]]))
    second = rng.permutation(
        np.concatenate([men[m1 : m1 + m2], women[half - m1 : 2 * half - m1 - m2]])
    )
    return np.concatenate([first, second])


@pytest.mark.parametrize("epsilon", [0.02, 0.05])
@pytest.mark.parametrize("order", ["shuffled", "drifting"])
def test_pooled_gap_on_adult_streams_is_within_the_reported_bound_and_epsilon(
    adult, epsilon, order
):
    X_train, y_train, s_train, model, test = adult
    rng = np.random.default_rng(1)
    sex = test.sensitive["sex"].to_numpy()
    rows = rng.permutation(len(sex))[:4000] if order == "shuffled" else _drifting_order(sex, rng)
    online = OnlineFairPredictor(model, epsilon=epsilon, prefit=True)
    online.fit(X_train, y_train, sensitive_features=s_train)
    decisions = online.partial_predict(test.data.iloc[rows], sensitive_features=sex[rows])
    report = online.report()
    gap = selection_rate_gap(decisions, sensitive_features=sex[rows])
    assert report.pooled_gap == pytest.approx(gap)
    assert gap <= report.bound
    assert gap <= epsilon
    # The unconstrained model is far outside epsilon on the same rows.
    assert (
        selection_rate_gap(model.predict(test.data.iloc[rows]), sensitive_features=sex[rows]) > 0.1
    )


def test_accuracy_matches_threshold_optimizer_with_the_same_tolerance(adult):
    X_train, y_train, s_train, model, test = adult
    rows = np.random.default_rng(2).permutation(len(test.target))[:4000]
    X, y, sex = (
        test.data.iloc[rows],
        test.target.to_numpy()[rows],
        test.sensitive["sex"].to_numpy()[rows],
    )
    online = OnlineFairPredictor(model, epsilon=0.05, prefit=True)
    online.fit(X_train, y_train, sensitive_features=s_train)
    ours = (online.predict(X, sensitive_features=sex) == y).mean()
    # fairlearn's predict_proba path needs float64 scores under pandas 3.
    wrapped = Float64Proba(model)
    optimizer = ThresholdOptimizer(
        estimator=wrapped, prefit=True, predict_method="predict_proba", tol=0.05
    ).fit(X_train, y_train, sensitive_features=s_train)
    theirs = np.mean(
        [
            (optimizer.predict(X, sensitive_features=sex, random_state=r) == y).mean()
            for r in range(5)
        ]
    )
    assert ours >= theirs - 0.01


@pytest.fixture(scope="module")
def synthetic():
    X, y, groups = make_biased_classification(3000, n_groups=3, bias=1.5, random_state=0)
    return X[:1500], y[:1500], groups[:1500], X[1500:], y[1500:], groups[1500:]


def _fitted(synthetic, **params):
    X, y, g, *_ = synthetic
    return OnlineFairPredictor(LogisticRegression(), **params).fit(X, y, sensitive_features=g)


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_partial_predict_in_batches_equals_predict_on_the_whole_stream(synthetic, batch_size):
    online = _fitted(synthetic, epsilon=0.02)
    *_, X, _y, g = synthetic
    whole = online.predict(X, sensitive_features=g)
    pieces = [
        online.partial_predict(X[i : i + batch_size], sensitive_features=g[i : i + batch_size])
        for i in range(0, len(X), batch_size)
    ]
    np.testing.assert_array_equal(np.concatenate(pieces), whole)


def test_predict_replays_from_the_fitted_state_and_leaves_the_stream_alone(synthetic):
    online = _fitted(synthetic, epsilon=0.02)
    *_, X, _y, g = synthetic
    online.partial_predict(X[:500], sensitive_features=g[:500])
    before = online.report().by_group.copy()
    first = online.predict(X[500:], sensitive_features=g[500:])
    second = online.predict(X[500:], sensitive_features=g[500:])
    np.testing.assert_array_equal(first, second)
    pd.testing.assert_frame_equal(online.report().by_group, before)
    # The same rows fed to a fresh stream decide as predict does.
    online.reset()
    np.testing.assert_array_equal(
        online.partial_predict(X[500:], sensitive_features=g[500:]), first
    )


def test_pickled_mid_stream_resumes_with_the_same_decisions(synthetic):
    online = _fitted(synthetic, epsilon=0.02)
    *_, X, _y, g = synthetic
    uninterrupted = online.predict(X, sensitive_features=g)
    first = online.partial_predict(X[:600], sensitive_features=g[:600])
    resumed = pickle.loads(pickle.dumps(online))
    rest = [
        resumed.partial_predict(X[i : i + 1], sensitive_features=g[i : i + 1])
        for i in range(600, len(X))
    ]
    np.testing.assert_array_equal(np.concatenate([first, *rest]), uninterrupted)


def test_reset_starts_a_new_stream(synthetic):
    online = _fitted(synthetic, epsilon=0.02)
    *_, X, _y, g = synthetic
    online.partial_predict(X, sensitive_features=g)
    assert online.report().n_decisions == len(X)
    online.reset()
    report = online.report()
    assert report.n_decisions == 0 and (report.by_group.n_decisions == 0).all()
    assert (online.dual_upper_ == 0).all() and (online.dual_lower_ == 0).all()


def test_report_agrees_with_fairlearn_metricframe(synthetic):
    online = _fitted(synthetic, epsilon=0.02)
    *_, X, y, g = synthetic
    decisions = online.partial_predict(X, sensitive_features=g)
    frame = MetricFrame(metrics=selection_rate, y_true=y, y_pred=decisions, sensitive_features=g)
    report = online.report()
    np.testing.assert_allclose(
        report.by_group.selection_rate.to_numpy(), frame.by_group.to_numpy()
    )
    assert report.pooled_gap == pytest.approx(frame.difference())
    assert (report.by_group.n_decisions.to_numpy() == np.bincount(g)).all()
    assert report.pooled_gap <= report.bound


def test_duals_in_the_report_are_the_projected_pooled_excess(synthetic):
    online = _fitted(synthetic, epsilon=0.0, step_size=0.3)
    *_, X, _y, g = synthetic
    online.partial_predict(X[:700], sensitive_features=g[:700])
    table = online.report().by_group
    lo, hi = online.band_
    excess = table.n_selected - table.n_decisions * hi
    deficit = table.n_decisions * lo - table.n_selected
    np.testing.assert_allclose(table.dual_upper, 0.3 * np.maximum(excess, 0))
    np.testing.assert_allclose(table.dual_lower, 0.3 * np.maximum(deficit, 0))


def test_intersectional_groups_from_two_columns(synthetic):
    X, y, g, X_test, _y_test, g_test = synthetic
    rng = np.random.default_rng(3)
    two = pd.DataFrame({"a": g, "b": rng.choice(["x", "y"], len(g))})
    two_test = pd.DataFrame({"a": g_test, "b": rng.choice(["x", "y"], len(g_test))})
    online = OnlineFairPredictor(LogisticRegression(), epsilon=0.05)
    online.fit(X, y, sensitive_features=two)
    assert len(online.groups_) == 6 and all(isinstance(k, tuple) for k in online.groups_)
    decisions = online.partial_predict(X_test, sensitive_features=two_test)
    labels = [f"{a},{b}" for a, b in zip(two_test.a, two_test.b, strict=True)]
    gap = selection_rate_gap(decisions, sensitive_features=labels)
    assert gap == pytest.approx(online.report().pooled_gap)
    assert gap <= online.report().bound


def test_predict_proba_is_at_least_one_half_exactly_where_predict_selects(synthetic):
    online = _fitted(synthetic, epsilon=0.02)
    *_, X, _y, g = synthetic
    proba = online.predict_proba(X, sensitive_features=g)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    selected = online.predict(X, sensitive_features=g) == online.classes_[1]
    np.testing.assert_array_equal(proba[:, 1] >= 0.5, selected)


def test_string_labels_come_back_as_labels(synthetic):
    X, y, g, _X_test, *_ = synthetic
    labels = np.where(y == 1, "yes", "no")
    online = OnlineFairPredictor(LogisticRegression(), epsilon=0.05).fit(
        X, labels, sensitive_features=g
    )
    assert set(online.predict(X, sensitive_features=g)) <= {"no", "yes"}
    assert online.classes_.tolist() == ["no", "yes"]


def test_prefit_keeps_the_given_model(synthetic):
    X, y, g, *_ = synthetic
    model = LogisticRegression().fit(X[:300], y[:300])
    coef = model.coef_.copy()
    online = OnlineFairPredictor(model, prefit=True).fit(X, y, sensitive_features=g)
    assert online.estimator_ is model
    np.testing.assert_array_equal(model.coef_, coef)


class _GroupAwareModel(ClassifierMixin, BaseEstimator):
    """A model whose fit and predict_proba use the groups: it predicts the group's base rate."""

    def fit(self, X, y, *, sensitive_features):
        self.classes_ = np.unique(y)
        groups = np.asarray(sensitive_features)
        self.rates_ = {k: y[groups == k].mean() for k in np.unique(groups)}
        return self

    def predict_proba(self, X, *, sensitive_features):
        p = np.array([self.rates_[k] for k in np.asarray(sensitive_features)])
        return np.column_stack([1 - p, p])


def test_a_group_aware_base_model_receives_the_groups(synthetic):
    X, y, g, X_test, _y_test, g_test = synthetic
    online = OnlineFairPredictor(_GroupAwareModel(), epsilon=0.05).fit(X, y, sensitive_features=g)
    proba = online.estimator_.predict_proba(X_test, sensitive_features=g_test)[:, 1]
    np.testing.assert_allclose(proba[g_test == 0], y[g == 0].mean())


def test_sensitive_feature_column_works_in_an_unrouted_grid_search(synthetic):
    X, y, g, *_ = synthetic
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]).assign(group=g)
    grid = GridSearchCV(
        OnlineFairPredictor(LogisticRegression(), sensitive_feature="group"),
        {"epsilon": [0.02, 0.1]},
        cv=KFold(3),
    ).fit(frame, y)
    # Each fold's score is the accuracy of predict on that fold, groups read from X.
    for k, (train, test) in enumerate(KFold(3).split(frame)):
        model = OnlineFairPredictor(LogisticRegression(), sensitive_feature="group", epsilon=0.02)
        model.fit(frame.iloc[train], y[train])
        expected = (model.predict(frame.iloc[test]) == y[test]).mean()
        assert grid.cv_results_[f"split{k}_test_score"][0] == pytest.approx(expected)


def test_routed_groups_in_a_pipeline_under_cross_validate(synthetic):
    X, y, g, *_ = synthetic
    pipe = make_pipeline(StandardScaler(), OnlineFairPredictor(LogisticRegression(), epsilon=0.02))
    with sklearn.config_context(enable_metadata_routing=True):
        result = cross_validate(
            pipe,
            X,
            y,
            cv=KFold(3),
            scoring={"acc": fair_accuracy_scorer, "fair": make_fair_scorer(epsilon=0.1)},
            params={"sensitive_features": g},
        )
    for k, (train, test) in enumerate(KFold(3).split(X)):
        model = make_pipeline(
            StandardScaler(), OnlineFairPredictor(LogisticRegression(), epsilon=0.02)
        )
        model.fit(X[train], y[train], onlinefairpredictor__sensitive_features=g[train])
        decisions = model.predict(X[test], sensitive_features=g[test])
        assert result["test_acc"][k] == pytest.approx((decisions == y[test]).mean())
        # Within the gap, the fair scorer returns the accuracy itself.
        assert result["test_fair"][k] == pytest.approx(result["test_acc"][k])


def test_routed_groups_in_grid_search_with_the_fair_scorer(synthetic):
    X, y, g, *_ = synthetic
    with sklearn.config_context(enable_metadata_routing=True):
        grid = GridSearchCV(
            OnlineFairPredictor(LogisticRegression()),
            {"step_size": [0.1, 1.0]},
            scoring=make_fair_scorer(epsilon=0.05),
            cv=KFold(3),
        ).fit(X, y, sensitive_features=g)
    assert np.isfinite(grid.cv_results_["mean_test_score"]).all()
    assert (grid.cv_results_["mean_test_score"] > 0.5).all()


def test_clear_errors_for_bad_groups_and_labels(synthetic):
    X, y, g, X_test, _, _g_test = synthetic
    online = _fitted(synthetic)
    with pytest.raises(ValueError, match=r"not seen in fit"):
        online.partial_predict(X_test[:2], sensitive_features=[0, 9])
    with pytest.raises(ValueError, match="sensitive_features is required"):
        online.predict(X_test)
    with pytest.raises(ValueError, match="has 1 entries but X has 2 rows"):
        online.partial_predict(X_test[:2], sensitive_features=[0])
    with pytest.raises(ValueError, match="at least two groups"):
        OnlineFairPredictor(LogisticRegression()).fit(X, y, sensitive_features=np.zeros(len(y)))
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        OnlineFairPredictor(LogisticRegression()).fit(X, g, sensitive_features=y)
    with pytest.raises(ValueError, match="constraint"):
        OnlineFairPredictor(LogisticRegression(), constraint="equalized_odds").fit(
            X, y, sensitive_features=g
        )
    with pytest.raises(sklearn.exceptions.NotFittedError):
        OnlineFairPredictor(LogisticRegression()).partial_predict(X, sensitive_features=g)
    # A rejected batch leaves the stream untouched.
    assert online.report().n_decisions == 0


@pytest.mark.parametrize(
    "groups", [np.array([0, 9]), [0, 9], np.array(["0", "9"]), pd.Series([0, 9])]
)
def test_an_unseen_group_is_a_clear_error_whatever_the_container(synthetic, groups):
    online = _fitted(synthetic)
    *_, X, _y, _g = synthetic
    with pytest.raises(ValueError, match=r"group\(s\) \[.*9.*\] that were not seen in fit"):
        online.partial_predict(X[:2], sensitive_features=groups)
    assert online.report().n_decisions == 0


def test_wrong_number_of_features_or_a_1d_row_is_a_clear_error(synthetic):
    online = _fitted(synthetic)
    *_, X, _y, g = synthetic
    with pytest.raises(ValueError, match="X has 3 features, but OnlineFairPredictor is expecting"):
        online.predict(X[:5, :3], sensitive_features=g[:5])
    with pytest.raises(ValueError, match="Reshape your data"):
        online.partial_predict(X[0], sensitive_features=g[:1])


def test_missing_group_labels_are_rejected_at_decision_time(synthetic):
    online = _fitted(synthetic)
    *_, X, _y, _g = synthetic
    with pytest.raises(ValueError, match="missing value"):
        online.partial_predict(X[:2], sensitive_features=np.array([0.0, np.nan]))


def _skorch_net(n_features: int):
    import torch
    from skorch import NeuralNetClassifier

    from sklearn_metaedit import MLP

    torch.manual_seed(0)
    return NeuralNetClassifier(
        MLP,
        module__n_features=n_features,
        module__hidden_sizes=(16,),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.05,
        max_epochs=3,
        batch_size=256,
        train_split=None,
        verbose=0,
    )


def test_a_skorch_network_as_base_model_keeps_the_guarantee(synthetic):
    X, y, g, X_test, _y, g_test = synthetic
    online = OnlineFairPredictor(_skorch_net(X.shape[1]), epsilon=0.02)
    online.fit(X, y, sensitive_features=g)
    whole = online.predict(X_test, sensitive_features=g_test)
    rows = [
        online.partial_predict(X_test[i : i + 50], sensitive_features=g_test[i : i + 50])
        for i in range(0, len(X_test), 50)
    ]
    np.testing.assert_array_equal(np.concatenate(rows), whole)
    report = online.report()
    assert report.pooled_gap == pytest.approx(selection_rate_gap(whole, sensitive_features=g_test))
    assert report.pooled_gap <= report.bound


def test_a_fairness_layer_as_base_model_receives_the_groups(synthetic):
    from sklearn_metaedit import FairnessLayerClassifier

    X, y, g, X_test, _y, g_test = synthetic
    layer = FairnessLayerClassifier(_skorch_net(X.shape[1]), epsilon=0.05, random_state=0)
    online = OnlineFairPredictor(layer, epsilon=0.02).fit(X, y, sensitive_features=g)
    # The layer's own fit and predict_proba need the groups: they would raise without them.
    decisions = online.partial_predict(X_test, sensitive_features=g_test)
    report = online.report()
    assert report.n_decisions == len(X_test)
    assert report.pooled_gap == pytest.approx(
        selection_rate_gap(decisions, sensitive_features=g_test)
    )
    assert report.pooled_gap <= report.bound


def test_epsilon_zero_holds_the_pooled_gap_to_the_vanishing_bound_and_stays_accurate(synthetic):
    *_, X_test, y_test, g_test = synthetic
    exact = _fitted(synthetic, epsilon=0.0)
    assert exact.band_[0] == exact.band_[1]
    loose = _fitted(synthetic, epsilon=0.05)
    checkpoints = []
    for start in range(0, len(X_test), 250):
        rows = slice(start, start + 250)
        exact.partial_predict(X_test[rows], sensitive_features=g_test[rows])
        report = exact.report()
        assert report.pooled_gap <= report.bound
        n = report.by_group["n_decisions"].to_numpy()
        # with a band of width zero, the bound is the finite-sample term alone
        pairs = (1 / n[:, None] + 1 / n[None, :])[~np.eye(len(n), dtype=bool)].max()
        assert report.bound <= (1 / exact.step_size + 1) * pairs + 1e-12
        checkpoints.append(report.bound)
    assert checkpoints[-1] < checkpoints[0] / 4
    # not a constant classifier (which the warm start used to give): well above the
    # majority class, at a price in accuracy for exact parity
    accuracy = exact.score(X_test, y_test, sensitive_features=g_test)
    assert accuracy >= max(y_test.mean(), 1 - y_test.mean()) + 0.15
    assert accuracy <= loose.score(X_test, y_test, sensitive_features=g_test)


def test_a_narrow_band_still_warm_starts_thresholds_that_split_each_group(synthetic):
    # training rates in a band narrower than one row of the smallest group would leave
    # only thresholds selecting everyone or no one
    online = _fitted(synthetic, epsilon=1e-5)
    assert np.all((online.train_rates_ > 0.05) & (online.train_rates_ < 0.95))


@pytest.mark.parametrize("prefit", [True, False])
def test_a_single_class_y_is_a_clear_error(synthetic, prefit):
    X, y, g, *_ = synthetic
    model = LogisticRegression().fit(X, y) if prefit else LogisticRegression()
    online = OnlineFairPredictor(model, prefit=prefit)
    with pytest.raises(ValueError, match=r"y holds a single class \[1\]; .* needs both classes"):
        online.fit(X, np.ones_like(y), sensitive_features=g)
    assert not hasattr(online, "estimator_")


def test_a_sensitive_column_a_column_transformer_renamed_is_found(synthetic):
    from sklearn.compose import ColumnTransformer

    X, y, g, *_ = synthetic
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["group"] = g
    numeric = [c for c in frame.columns if c != "group"]
    transformer = ColumnTransformer(
        [("num", StandardScaler(), numeric)], remainder="passthrough"
    ).set_output(transform="pandas")
    pipe = make_pipeline(
        transformer, OnlineFairPredictor(LogisticRegression(), sensitive_feature="group")
    )
    # 'group' comes out as 'remainder__group', the one column that ends in '__group'
    pipe.fit(frame, y)
    named = make_pipeline(
        clone(transformer),
        OnlineFairPredictor(LogisticRegression(), sensitive_feature="remainder__group"),
    ).fit(frame, y)
    np.testing.assert_array_equal(pipe[-1].groups_, [0, 1, 2])
    np.testing.assert_array_equal(pipe.predict(frame), named.predict(frame))
