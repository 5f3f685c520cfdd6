import pickle

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from fairlearn.metrics import demographic_parity_difference
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from sklearn_metaedit import MLP, FairnessLayerClassifier
from sklearn_metaedit.datasets import make_biased_classification
from sklearn_metaedit.fairness import ParityProjectionModule
from sklearn_metaedit.fairness._layer import ProjectedNLLLoss, StratifiedBatchSampler
from sklearn_metaedit.metrics import fair_accuracy_scorer, make_fair_scorer, true_positive_rate_gap


def _net(**kwargs):
    params = dict(
        module=MLP,
        module__hidden_sizes=(16,),
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=4,
        batch_size=128,
        lr=0.05,
        optimizer=torch.optim.Adam,
        train_split=None,
        verbose=0,
    )
    params.update(kwargs)
    return NeuralNetClassifier(**params)


@pytest.fixture(scope="module")
def biased():
    return make_biased_classification(1200, 6, n_groups=3, bias=1.5, random_state=0)


@pytest.fixture(scope="module")
def fitted(biased):
    X, y, groups = biased
    return FairnessLayerClassifier(_net(), epsilon=0.03, random_state=0).fit(
        X, y, sensitive_features=groups
    )


def _group_means(values, groups):
    return np.array([values[groups == g].mean() for g in np.unique(groups)])


def test_predict_proba_group_means_meet_epsilon_exactly(fitted, biased):
    X, _, groups = biased
    for rows in (slice(None), slice(0, 97), slice(500, 503)):
        proba = fitted.predict_proba(X[rows], sensitive_features=groups[rows])
        means = _group_means(proba[:, 1], groups[rows])
        assert means.max() - means.min() <= 0.03 + 1e-12
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_predict_meets_fairlearns_selection_rate_gap(fitted, biased):
    X, y, groups = biased
    rng = np.random.default_rng(0)
    for size in (len(X), 200, 31):
        rows = rng.choice(len(X), size, replace=False)
        y_pred = fitted.predict(X[rows], sensitive_features=groups[rows])
        gap = demographic_parity_difference(y[rows], y_pred, sensitive_features=groups[rows])
        assert gap <= 0.03


def test_unconstrained_network_would_break_the_bound(biased):
    # the bound above is the layer's doing: the same network without it has a large gap
    X, y, groups = biased
    plain = _net(module__n_features=X.shape[1]).initialize()
    torch.manual_seed(0)
    plain.fit(X, y)
    gap = demographic_parity_difference(y, plain.predict(X), sensitive_features=groups)
    assert gap > 0.1


def test_a_batch_lacking_some_groups_binds_among_those_present(fitted, biased):
    X, _, groups = biased
    rows = groups != 2
    proba = fitted.predict_proba(X[rows], sensitive_features=groups[rows])
    means = _group_means(proba[:, 1], groups[rows])
    assert len(means) == 2 and means.max() - means.min() <= 0.03 + 1e-12


def test_intersectional_groups_from_several_columns():
    X, y, groups = make_biased_classification(1500, 5, n_groups=2, bias=1.5, random_state=1)
    rng = np.random.default_rng(1)
    second = rng.choice(["young", "old"], len(X))
    sf = pd.DataFrame({"g": groups, "age": second})
    clf = FairnessLayerClassifier(_net(), epsilon=0.05, random_state=0).fit(
        X, y, sensitive_features=sf
    )
    assert len(clf.groups_) == 4 and clf.groups_[0] == (0, "old")
    y_pred = clf.predict(X, sensitive_features=sf)
    intersect = [f"{a}-{b}" for a, b in zip(groups, second, strict=True)]
    assert demographic_parity_difference(y, y_pred, sensitive_features=intersect) <= 0.05


def test_training_batches_hold_every_group_and_cover_each_row_once():
    strata = np.repeat([0, 1, 2], [300, 50, 7])
    sampler = StratifiedBatchSampler(strata, batch_size=64, seed=0)
    for _ in range(2):
        batches = list(sampler)
        assert len(batches) == len(sampler) == 6
        assert sorted(i for b in batches for i in b) == list(range(len(strata)))
        for batch in batches:
            assert set(strata[batch]) == {0, 1, 2}


def test_training_loss_is_taken_on_projected_probabilities(fitted, biased):
    X, y, groups = biased
    module = fitted.estimator_.module_
    assert isinstance(module, ParityProjectionModule)
    Xt = torch.as_tensor(X[:256])
    g = torch.as_tensor(groups[:256])
    out = module(Xt, g)
    means = _group_means(out[:, 1].detach().numpy(), groups[:256])
    assert means.max() - means.min() <= 0.03 + 1e-6
    # the gradient reaches the network's weights through the projection
    loss = torch.nn.functional.nll_loss(torch.log(out + 1e-7), torch.as_tensor(y[:256]))
    loss.backward()
    assert module.base[0].weight.grad.abs().sum() > 0


def test_sensitive_feature_names_a_column_unrouted_in_grid_search(biased):
    X, y, groups = biased
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["group"] = np.array(["a", "b", "c"])[groups]
    clf = FairnessLayerClassifier(_net(max_epochs=2), sensitive_feature="group", random_state=0)
    search = GridSearchCV(clf, {"epsilon": [0.02, 0.1]}, cv=3, scoring=fair_accuracy_scorer)
    search.fit(frame, y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # the text column is the group, not an input of the network
    assert search.best_estimator_.n_features_in_ == X.shape[1]
    y_pred = search.predict(frame)
    assert demographic_parity_difference(y, y_pred, sensitive_features=frame["group"]) <= 0.1


def test_routed_sensitive_features_through_pipeline_and_grid_search(biased):
    X, y, groups = biased
    with sklearn.config_context(enable_metadata_routing=True):
        clf = FairnessLayerClassifier(_net(max_epochs=2), random_state=0)
        clf.set_fit_request(sensitive_features=True).set_predict_request(sensitive_features=True)
        clf.set_score_request(sensitive_features=True)
        pipe = make_pipeline(StandardScaler(), clf)
        search = GridSearchCV(
            pipe,
            {"fairnesslayerclassifier__epsilon": [0.02, 0.2]},
            cv=3,
            scoring={"acc": fair_accuracy_scorer, "fair": make_fair_scorer(epsilon=0.02)},
            refit="acc",
        )
        search.fit(X, y, sensitive_features=groups)
        for key in ("mean_test_acc", "mean_test_fair"):
            assert np.isfinite(search.cv_results_[key]).all()
        # every fold of the eps=0.02 model meets the bound, so "fair" equals its accuracy
        first = search.cv_results_
        assert first["mean_test_fair"][0] == pytest.approx(first["mean_test_acc"][0])
        y_pred = search.best_estimator_.predict(X, sensitive_features=groups)
        assert demographic_parity_difference(y, y_pred, sensitive_features=groups) <= 0.2


def test_equal_opportunity_thresholds_meet_tpr_gap_on_training_data():
    X, y, groups = make_biased_classification(1500, 6, bias=1.5, random_state=2)
    clf = FairnessLayerClassifier(
        _net(), constraint="equal_opportunity", epsilon=0.03, random_state=0
    )
    clf.fit(X, y, sensitive_features=groups)
    y_pred = clf.predict(X, sensitive_features=groups)
    assert true_positive_rate_gap(y, y_pred, sensitive_features=groups) <= 0.03 + 1e-12
    assert clf.thresholds_.shape == (2,)


def test_same_seed_same_model_and_global_rng_untouched(biased):
    X, y, groups = biased
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = FairnessLayerClassifier(_net(), random_state=7).fit(X, y, sensitive_features=groups)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = FairnessLayerClassifier(_net(), random_state=7).fit(X, y, sensitive_features=groups)
    np.testing.assert_array_equal(
        a.predict_proba(X, sensitive_features=groups),
        b.predict_proba(X, sensitive_features=groups),
    )


def test_inputs_are_not_mutated(biased):
    X, y, groups = biased
    net = _net()
    params = net.get_params(deep=False)
    X0, groups0 = X.copy(), groups.copy()
    FairnessLayerClassifier(net, random_state=0).fit(X, y, sensitive_features=groups)
    assert not hasattr(net, "module_")
    assert net.get_params(deep=False).keys() == params.keys()
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(groups, groups0)


def test_pickle_round_trip_gives_identical_predictions(fitted, biased):
    X, _, groups = biased
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(
        again.predict_proba(X, sensitive_features=groups),
        fitted.predict_proba(X, sensitive_features=groups),
    )


def test_string_class_labels_come_back(biased):
    X, y, groups = biased
    labels = np.array(["deny", "grant"])[y]
    clf = FairnessLayerClassifier(_net(max_epochs=1), random_state=0).fit(
        X, labels, sensitive_features=groups
    )
    assert set(clf.predict(X, sensitive_features=groups)) <= {"deny", "grant"}
    assert list(clf.classes_) == ["deny", "grant"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"sensitive_features": None}, "sensitive_features is required"),
        ({"sensitive_features": "short"}, "entries but X has"),
        ({"sensitive_features": "nan"}, "missing value"),
        ({"sensitive_features": "one group"}, "single group"),
        ({"sensitive_features": "tiny group"}, "too few to appear in every one"),
        ({"y": "multiclass"}, "binary target with two classes"),
        ({"epsilon": -0.1}, "'epsilon' parameter"),
        ({"epsilon": 1.0}, "'epsilon' parameter"),
        ({"constraint": "parity"}, "'constraint' parameter"),
        ({"estimator": "not a net"}, "'estimator' parameter"),
    ],
)
def test_bad_input_at_fit_is_a_clear_error(biased, change, match):
    X, y, groups = biased
    kwargs = {"sensitive_features": groups}
    params = {"estimator": _net()}
    if "sensitive_features" in change:
        value = change["sensitive_features"]
        kwargs["sensitive_features"] = {
            None: None,
            "short": groups[:-1],
            "nan": np.where(np.arange(len(groups)) == 3, np.nan, groups),
            "one group": np.zeros_like(groups),
            "tiny group": np.where(np.arange(len(groups)) == 0, 9, groups),
        }[value]
    if change.get("y") == "multiclass":
        y = np.arange(len(y)) % 3
    for key in ("epsilon", "constraint", "estimator"):
        if key in change:
            params[key] = change[key]
    with pytest.raises(ValueError, match=match):
        FairnessLayerClassifier(**params).fit(X, y, **kwargs)


def test_bad_input_at_predict_is_a_clear_error(fitted, biased):
    X, _, groups = biased
    with pytest.raises(ValueError, match=r"\[7\] that were not seen in fit"):
        fitted.predict(X[:5], sensitive_features=[0, 1, 7, 0, 1])
    with pytest.raises(ValueError, match="entries but X has"):
        fitted.predict(X[:5], sensitive_features=groups[:4])
    with pytest.raises(ValueError, match="features"):
        fitted.predict(X[:5, :3], sensitive_features=groups[:5])
    unfitted = FairnessLayerClassifier(_net())
    with pytest.raises(sklearn.exceptions.NotFittedError):
        unfitted.predict(X, sensitive_features=groups)


def test_clone_keeps_parameters():
    clf = FairnessLayerClassifier(_net(), epsilon=0.07, constraint="equalized_odds")
    cloned = clone(clf)
    assert cloned.epsilon == 0.07 and cloned.constraint == "equalized_odds"


def test_training_loss_is_the_nll_of_projected_probabilities_with_a_floor():
    proba = torch.tensor([[0.2, 0.8], [0.9995, 0.0005], [0.6, 0.4]], requires_grad=True)
    target = torch.tensor([1, 1, 0])
    loss = ProjectedNLLLoss(min_proba=1e-3)(proba, target)
    # above the floor it is the plain NLL; the second row sits below it and adds -log(1e-3)
    expected = -(np.log(0.8) + np.log(1e-3) + np.log(0.6)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    # no gradient through the floored row, so a probability near 0 cannot blow up training
    assert proba.grad[1].abs().max() == 0
    assert proba.grad.abs().max() <= 1 / (3 * 1e-3)


def test_projected_loss_equals_torchs_cross_entropy_with_its_settings():
    # above the floor, the loss on probabilities is torch's cross-entropy on their logs,
    # whatever the class weights, label smoothing, ignored label and reduction
    rng = np.random.default_rng(0)
    p = torch.tensor(rng.uniform(0.05, 0.95, 40), dtype=torch.float64)
    proba = torch.stack([1 - p, p], dim=1)
    target = torch.tensor(rng.integers(0, 2, 40))
    target[:3] = 1 - target[:3]
    settings = [
        {"weight": torch.tensor([1.0, 7.0])},
        {"weight": torch.tensor([0.5, 2.0]), "label_smoothing": 0.2},
        {"label_smoothing": 0.1, "reduction": "sum"},
        {"weight": torch.tensor([3.0, 1.0]), "ignore_index": 0, "reduction": "sum"},
        {"weight": torch.tensor([3.0, 1.0]), "ignore_index": 1, "label_smoothing": 0.3},
    ]
    for options in settings:
        ours = ProjectedNLLLoss(**options)(proba, target)
        weight = options.get("weight")
        theirs = torch.nn.functional.cross_entropy(
            torch.log(proba),
            target,
            **{**options, "weight": None if weight is None else weight.double()},
        )
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-6), options


def test_class_weights_of_the_wrapped_criterion_reach_the_projected_loss(biased):
    X, y, groups = biased
    plain = FairnessLayerClassifier(_net(), random_state=0).fit(X, y, sensitive_features=groups)
    weights = torch.tensor([1.0, 8.0])
    weighted = FairnessLayerClassifier(_net(criterion__weight=weights), random_state=0).fit(
        X, y, sensitive_features=groups
    )
    assert torch.equal(weighted.estimator_.criterion_.weight, weights)
    # weighting the positive class up selects more rows, within the same parity bound
    more = weighted.predict(X, sensitive_features=groups).mean()
    assert more > plain.predict(X, sensitive_features=groups).mean() + 0.05
    proba = weighted.predict_proba(X, sensitive_features=groups)[:, 1]
    assert np.ptp(_group_means(proba, groups)) <= 0.05 + 1e-12
    # the same weights given on a criterion instance count the same
    instance = FairnessLayerClassifier(
        _net(criterion=torch.nn.CrossEntropyLoss(weight=weights)), random_state=0
    ).fit(X, y, sensitive_features=groups)
    np.testing.assert_array_equal(
        instance.predict_proba(X, sensitive_features=groups),
        weighted.predict_proba(X, sensitive_features=groups),
    )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"criterion__reduction": "none"}, r"criterion__reduction='none' is not supported"),
        ({"criterion__size_average": False}, "criterion__size_average is not supported"),
        ({"criterion__weight": torch.tensor([1.0, 2.0, 3.0])}, "one finite, non-negative"),
        ({"criterion__weight": torch.tensor([1.0, -2.0])}, "one finite, non-negative"),
        ({"criterion__weight": torch.tensor([0.0, 0.0])}, "all zeros"),
        ({"criterion__label_smoothing": 1.5}, r"label_smoothing must be a number in \[0, 1\]"),
        (
            {"criterion": torch.nn.NLLLoss, "criterion__label_smoothing": 0.1},
            r"criterion__label_smoothing is not supported.*NLLLoss",
        ),
    ],
)
def test_criterion_settings_the_projected_loss_cannot_honour_are_refused(biased, params, match):
    X, y, groups = biased
    net = _net(**params)
    with pytest.raises(ValueError, match=match):
        FairnessLayerClassifier(net).fit(X, y, sensitive_features=groups)


def test_the_fitted_network_keeps_plain_dropout_layers_in_eval_mode(biased):
    X, y, groups = biased
    clf = FairnessLayerClassifier(_net(module__dropout=0.3, max_epochs=1), random_state=0)
    clf.fit(X, y, sensitive_features=groups)
    base = clf.estimator_.module_.base
    dropouts = [m for m in base.modules() if "Dropout" in type(m).__name__]
    assert dropouts and all(type(m) is torch.nn.Dropout for m in dropouts)
    assert not any(m.training for m in clf.estimator_.module_.modules())


def test_inference_never_switches_the_shared_modules_mode(biased, monkeypatch):
    X, y, groups = biased
    clf = FairnessLayerClassifier(_net(module__dropout=0.3, max_epochs=1), random_state=0)
    clf.fit(X, y, sensitive_features=groups)
    expected = clf.predict_proba(X, sensitive_features=groups)
    shared = {id(m) for m in clf.estimator_.module_.modules()}
    switched = []
    original_train = torch.nn.Module.train

    def recording_train(self, mode=True):
        if id(self) in shared:
            switched.append((type(self).__name__, mode))
        return original_train(self, mode)

    monkeypatch.setattr(torch.nn.Module, "train", recording_train)
    for module_mode in (False, True):
        # True: as after further training through estimator_; a copy is evaluated
        clf.estimator_.module_.train(module_mode)
        switched.clear()
        np.testing.assert_array_equal(clf.predict_proba(X, sensitive_features=groups), expected)
        clf.predict(X, sensitive_features=groups)
        assert clf.estimator_.module_.training is module_mode
        assert switched == []


def _frame_with_text_groups(biased):
    X, y, groups = biased
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["sex"] = np.where(groups == 0, "F", "M")
    return frame, y


@pytest.mark.parametrize(
    ("remainder", "output", "match"),
    [
        ("drop", "pandas", r"'sex' is not a column of X \(X does not have it"),
        ("passthrough", "default", "'sex' is not a column of X: X is an array with no column"),
    ],
)
def test_a_sensitive_column_a_column_transformer_dropped_is_named(
    biased, remainder, output, match
):
    from sklearn.compose import ColumnTransformer

    frame, y = _frame_with_text_groups(biased)
    numeric = [c for c in frame.columns if c != "sex"]
    transformer = ColumnTransformer(
        [("num", StandardScaler(), numeric)], remainder=remainder
    ).set_output(transform=output)
    pipe = make_pipeline(
        transformer, FairnessLayerClassifier(_net(max_epochs=1), sensitive_feature="sex")
    )
    with pytest.raises(ValueError, match=match):
        pipe.fit(frame, y)
    # kept under its own name, the same pipeline fits
    transformer.set_params(verbose_feature_names_out=False, remainder="passthrough")
    transformer.set_output(transform="pandas")
    pipe.fit(frame, y)
    assert set(pipe.predict(frame)) <= {0, 1}
