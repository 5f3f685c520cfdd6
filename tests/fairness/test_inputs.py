"""The fairness estimators take what a skorch net takes: images, tensors, dicts, Datasets.

The data: scikit-learn's 8 x 8 digit images, shaped ``(n, 1, 8, 8)``; the label is
"the digit is even", the group whether the image holds more ink than the median one
(a property of the image, standing in for a sensitive attribute: even digits use more
ink, so the two groups' base rates differ by 0.1). The reference for every input kind
is the same network trained on the images' flattened rows, which a table has always
been able to give: with the same ``random_state`` the fits must agree exactly.
"""

import numpy as np
import pytest
import sklearn
import torch
from fairlearn.metrics import demographic_parity_difference
from sklearn.datasets import load_digits
from sklearn.model_selection import KFold, cross_validate
from skorch import NeuralNetClassifier
from skorch.helper import SliceDict
from torch import nn
from torch.utils.data import TensorDataset

from sklearn_metaedit import FairnessLayerClassifier, OnlineFairPredictor
from sklearn_metaedit.fairness import project_parity
from sklearn_metaedit.metrics import (
    fair_accuracy_scorer,
    make_fair_scorer,
    selection_rate_gap,
    true_positive_rate_gap,
)

EPSILON = 0.02


class SmallCNN(nn.Module):
    """Conv -> ReLU -> pool -> linear; ``flat=True`` takes 64-wide rows and reshapes them."""

    def __init__(self, flat=False, channels=6):
        super().__init__()
        self.flat = flat
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(channels * 16, 2)

    def forward(self, X):
        if self.flat:
            X = X.reshape(-1, 1, 8, 8)
        return self.head(self.features(X))


class KeywordCNN(SmallCNN):
    """The same network, taking its images as the keyword ``image`` (a dict X)."""

    def forward(self, image):
        return super().forward(image)


def _net(**kwargs):
    params = dict(
        module=SmallCNN,
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=4,
        # prediction runs in chunks of 64 images: the projection must still be exact
        # over the whole batch
        batch_size=64,
        train_split=None,
        verbose=0,
    )
    params.update(kwargs)
    return NeuralNetClassifier(**params)


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]  # (n, 1, 8, 8)
    y = (data.target % 2 == 0).astype(np.int64)
    ink = images.reshape(len(images), -1).sum(axis=1)
    groups = np.where(ink > np.median(ink), "heavy", "light")
    return images, y, groups


@pytest.fixture(scope="module")
def fitted(digits):
    images, y, groups = digits
    return FairnessLayerClassifier(_net(), epsilon=EPSILON, random_state=0).fit(
        images, y, sensitive_features=groups
    )


@pytest.fixture(scope="module")
def flat_proba(digits):
    """The reference: the same CNN fitted on the flattened rows (a table)."""
    images, y, groups = digits
    rows = images.reshape(len(images), -1)
    clf = FairnessLayerClassifier(_net(module__flat=True), epsilon=EPSILON, random_state=0)
    clf.fit(rows, y, sensitive_features=groups)
    return clf.predict_proba(rows, sensitive_features=groups)


def test_cnn_on_4d_images_meets_epsilon_exactly_on_the_prediction_batch(fitted, digits):
    images, y, groups = digits
    for rows in (slice(None), slice(0, 301), slice(1000, 1003)):
        y_pred = fitted.predict(images[rows], sensitive_features=groups[rows])
        gap = demographic_parity_difference(y[rows], y_pred, sensitive_features=groups[rows])
        assert gap <= EPSILON
        proba = fitted.predict_proba(images[rows], sensitive_features=groups[rows])[:, 1]
        means = [proba[groups[rows] == g].mean() for g in np.unique(groups[rows])]
        assert max(means) - min(means) <= EPSILON + 1e-12
    # the layer earns its keep: fitted alone, the network's decisions break the bound
    plain = _net().initialize()
    torch.manual_seed(0)
    plain.fit(images, y)
    assert selection_rate_gap(plain.predict(images), sensitive_features=groups) > 3 * EPSILON


def test_chunked_prediction_projects_the_whole_batch_at_once(fitted, digits):
    # 1797 images go through the network 64 at a time; the projection must be the one of
    # the whole batch's probabilities, computed here in a single forward pass
    images, _, groups = digits
    module = fitted.estimator_.module_
    with torch.no_grad():
        base = module.base_proba(torch.as_tensor(images)).double()
    codes = torch.as_tensor(np.searchsorted(fitted.groups_.astype(str), groups))
    expected = project_parity(base, codes, EPSILON, n_groups=2).numpy()
    np.testing.assert_allclose(
        fitted.predict_proba(images, sensitive_features=groups)[:, 1], expected, atol=1e-12
    )
    # and a projection of the first chunk alone would differ: the bound is over the batch
    first = project_parity(base[:64], codes[:64], EPSILON, n_groups=2).numpy()
    assert np.abs(first - expected[:64]).max() > 1e-6


def test_images_fit_and_predict_exactly_as_their_flattened_rows(fitted, flat_proba, digits):
    images, _, groups = digits
    np.testing.assert_array_equal(
        fitted.predict_proba(images, sensitive_features=groups), flat_proba
    )
    assert not hasattr(fitted, "n_features_in_")


def _as_tensor(images):
    return torch.as_tensor(images), {}


def _as_dict(images):
    return {"image": images}, {"module": KeywordCNN}


def _as_slice_dict(images):
    return SliceDict(image=images), {"module": KeywordCNN}


def _as_float64_images(images):
    # float64 images (what load_digits gives) go to the network as float32
    return images.astype(np.float64), {}


@pytest.mark.parametrize(
    "make", [_as_tensor, _as_dict, _as_slice_dict, _as_float64_images], ids=lambda f: f.__name__
)
def test_tensors_and_dicts_train_and_predict_as_the_arrays_do(make, flat_proba, digits):
    images, y, groups = digits
    X, params = make(images)
    clf = FairnessLayerClassifier(_net(**params), epsilon=EPSILON, random_state=0)
    clf.fit(X, y, sensitive_features=groups)
    proba = clf.predict_proba(X, sensitive_features=groups)
    np.testing.assert_array_equal(proba, flat_proba)
    y_pred = clf.predict(X, sensitive_features=groups)
    assert demographic_parity_difference(y, y_pred, sensitive_features=groups) <= EPSILON


def test_a_dataset_of_pairs_trains_and_predicts_as_the_arrays_do(flat_proba, digits):
    images, y, groups = digits
    dataset = TensorDataset(torch.as_tensor(images), torch.as_tensor(y))
    # y may be left to the dataset, whose labels are read once
    clf = FairnessLayerClassifier(_net(), epsilon=EPSILON, random_state=0)
    clf.fit(dataset, None, sensitive_features=groups)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    np.testing.assert_array_equal(
        clf.predict_proba(dataset, sensitive_features=groups), flat_proba
    )


def test_online_predictor_decides_a_dataset_as_its_arrays(digits):
    images, y, groups = digits
    dataset = TensorDataset(torch.as_tensor(images), torch.as_tensor(y))
    base = FairnessLayerClassifier(_net(max_epochs=2), epsilon=EPSILON, random_state=0)
    base.fit(dataset, None, sensitive_features=groups)
    online = OnlineFairPredictor(base, prefit=True, epsilon=0.05)
    from_dataset = online.fit(dataset, y, sensitive_features=groups).predict(
        dataset, sensitive_features=groups
    )
    from_arrays = online.fit(images, y, sensitive_features=groups).predict(
        images, sensitive_features=groups
    )
    np.testing.assert_array_equal(from_dataset, from_arrays)


def test_a_dict_key_named_as_sensitive_feature_holds_the_groups(flat_proba, digits):
    images, y, groups = digits
    X = {"image": images, "ink": groups}
    clf = FairnessLayerClassifier(
        _net(module=KeywordCNN), epsilon=EPSILON, sensitive_feature="ink", random_state=0
    )
    # the key is read as the groups and not given to the network (whose forward takes
    # `image` alone): the fit equals the one with the groups passed by keyword
    clf.fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), flat_proba)
    # the scorer finds the groups there too, unrouted
    assert fair_accuracy_scorer(clf, X, y) == np.mean(clf.predict(X) == y)


def test_equal_opportunity_thresholds_on_images_meet_epsilon_on_training_data(digits):
    images, y, groups = digits
    clf = FairnessLayerClassifier(
        _net(), constraint="equal_opportunity", epsilon=EPSILON, random_state=0
    ).fit(images, y, sensitive_features=groups)
    y_pred = clf.predict(images, sensitive_features=groups)
    assert true_positive_rate_gap(y, y_pred, sensitive_features=groups) <= EPSILON


def test_fair_scorers_give_predict_the_groups_of_images(fitted, digits):
    images, y, groups = digits
    y_pred = fitted.predict(images, sensitive_features=groups)
    accuracy = np.mean(y_pred == y)
    assert fair_accuracy_scorer(fitted, images, y, sensitive_features=groups) == accuracy
    within = make_fair_scorer("accuracy", epsilon=EPSILON)
    assert within(fitted, images, y, sensitive_features=groups) == accuracy
    # a bound the decisions miss scores minus the gap
    gap = selection_rate_gap(y_pred, sensitive_features=groups)
    strict = make_fair_scorer("accuracy", epsilon=gap / 2)
    assert strict(fitted, images, y, sensitive_features=groups) == -gap


def test_routed_cross_validation_of_images_scores_each_fold_as_a_manual_fit(digits):
    images, y, groups = digits
    rows = np.arange(0, len(images), 2)  # a quicker half
    images, y, groups = images[rows], y[rows], groups[rows]
    clf = FairnessLayerClassifier(_net(max_epochs=2), epsilon=EPSILON, random_state=0)
    with sklearn.config_context(enable_metadata_routing=True):
        result = {
            name: cross_validate(
                clf,
                images,
                y,
                cv=KFold(2),
                scoring=scoring,
                params={"sensitive_features": groups},
                error_score="raise",
            )["test_score"]
            for name, scoring in (("fair", fair_accuracy_scorer), ("default", None))
        }
    test = np.arange(len(images)) >= (len(images) + 1) // 2  # KFold(2)'s second fold
    manual = clf.fit(images[~test], y[~test], sensitive_features=groups[~test])
    expected = np.mean(manual.predict(images[test], sensitive_features=groups[test]) == y[test])
    assert result["fair"][1] == expected
    # scoring=None calls the classifier's score, which receives the routed groups
    np.testing.assert_array_equal(result["default"], result["fair"])


def _online_reference(digits, X, base):
    _, y, groups = digits
    online = OnlineFairPredictor(base, epsilon=0.05, random_state=0)
    return online.fit(X, y, sensitive_features=groups)


@pytest.mark.parametrize("kind", ["array", "tensor", "dict"])
def test_online_predictor_decides_images_as_it_decides_their_rows(kind, digits):
    images, _, groups = digits
    flat = _online_reference(digits, images.reshape(len(images), -1), _net(module__flat=True))
    expected = flat.predict(images.reshape(len(images), -1), sensitive_features=groups)
    if kind == "array":
        X, base = images, _net()
    elif kind == "tensor":
        X, base = torch.as_tensor(images), _net()
    else:
        X, base = {"image": images}, _net(module=KeywordCNN)
    online = _online_reference(digits, X, base)
    np.testing.assert_array_equal(online.predict(X, sensitive_features=groups), expected)
    # one image at a time, the stream gives the same decisions and keeps its bound
    if kind == "dict":
        first = [{"image": images[i : i + 1]} for i in range(200)]
    else:
        first = [X[i : i + 1] for i in range(200)]
    decided = [
        online.partial_predict(x, sensitive_features=groups[i : i + 1])
        for i, x in enumerate(first)
    ]
    np.testing.assert_array_equal(np.concatenate(decided), expected[:200])
    report = online.report()
    assert report.pooled_gap <= report.bound


def test_online_predictor_refuses_images_of_another_shape(digits):
    images, _, groups = digits
    online = _online_reference(digits, images, _net(max_epochs=1))
    with pytest.raises(ValueError, match=r"shape \(1, 4, 16\), but .* shape \(1, 8, 8\)"):
        online.predict(images.reshape(-1, 1, 4, 16), sensitive_features=groups)
    with pytest.raises(ValueError, match=r"X is a table, but .* fitted on an N-D array"):
        online.predict(images.reshape(len(images), -1), sensitive_features=groups)


# ------------------------------------------------------------------ clear errors


def _nan_image(images):
    bad = images.copy()
    bad[3, 0, 2, 2] = np.nan
    return bad


@pytest.mark.parametrize(
    ("X", "kwargs", "match"),
    [
        (lambda im: _nan_image(im), {}, r"X holds NaN or infinite values"),
        (lambda im: torch.as_tensor(_nan_image(im)), {}, r"X holds NaN or infinite values"),
        (
            lambda im: {"image": im, "extra": im[:-1]},
            {},
            r"X's entries have different numbers of samples",
        ),
        (
            lambda im: {"image": im, "groups": im},
            {},
            r"the key 'groups', which the fairness layer uses",
        ),
        (lambda im: im.astype(object), {}, r"X has dtype object; the network needs numbers"),
        (
            lambda im: im,
            {"sensitive_features": None, "sensitive_feature": 0},
            r"X is an array of shape \(1797, 1, 8, 8\), which has no columns",
        ),
        (
            lambda im: TensorDataset(torch.as_tensor(im)),
            {"sensitive_features": None, "sensitive_feature": 0},
            r"X is a Dataset, which has no columns to name",
        ),
        (lambda im: im, {"y": None}, r"requires y to be passed"),
        (
            lambda im: im,
            {"sensitive_features": "short"},
            r"sensitive_features has 1796 entries but X has 1797 rows",
        ),
        (
            lambda im: {"image": im},
            {"sensitive_features": None, "sensitive_feature": "ink"},
            r"'ink' is not a key of X: X is a dict with keys \['image'\]",
        ),
    ],
    ids=[
        "nan-image",
        "nan-tensor",
        "dict-lengths",
        "reserved-key",
        "object-images",
        "column-of-images",
        "column-of-dataset",
        "no-y",
        "groups-length",
        "missing-key",
    ],
)
def test_inputs_other_than_tables_get_clear_errors(digits, X, kwargs, match):
    images, y, groups = digits
    kwargs = dict(kwargs)
    sensitive_feature = kwargs.pop("sensitive_feature", None)
    fit_kwargs = {"sensitive_features": groups, "y": y}
    fit_kwargs.update(kwargs)
    if isinstance(fit_kwargs["sensitive_features"], str):
        fit_kwargs["sensitive_features"] = groups[:-1]
    clf = FairnessLayerClassifier(_net(max_epochs=1), sensitive_feature=sensitive_feature)
    with pytest.raises(ValueError, match=match):
        clf.fit(X(images), **fit_kwargs)


def test_prediction_refuses_another_kind_or_shape_of_input(fitted, digits):
    images, _, groups = digits
    with pytest.raises(ValueError, match=r"shape \(1, 4, 16\), but .* shape \(1, 8, 8\)"):
        fitted.predict(images.reshape(-1, 1, 4, 16), sensitive_features=groups)
    with pytest.raises(ValueError, match=r"X is a table, but .* fitted on an N-D array"):
        fitted.predict(images.reshape(len(images), -1), sensitive_features=groups)
    with pytest.raises(ValueError, match=r"holds group.* not seen in fit"):
        fitted.predict(images, sensitive_features=np.full(len(images), "other"))
