"""``score`` of the fairness estimators under metadata routing, in Pipelines and searches.

scikit-learn's ``Pipeline.score`` routes ``sample_weight`` to its last step's ``score``;
a ``score`` without that parameter made every routed ``Pipeline.score`` fail, and
``GridSearchCV`` / ``cross_validate`` with ``scoring=None`` score NaN. Both estimators'
``score`` is the (weighted) accuracy of their ``predict``, as a classifier's is.
"""

import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skorch import NeuralNetClassifier

from sklearn_metaedit import MLP, FairnessLayerClassifier, OnlineFairPredictor
from sklearn_metaedit.datasets import make_biased_classification
from sklearn_metaedit.metrics import fair_accuracy_scorer


def _layer(**params):
    net = NeuralNetClassifier(
        MLP,
        module__hidden_sizes=(8,),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.02,
        max_epochs=3,
        batch_size=128,
        train_split=None,
        verbose=0,
    )
    return FairnessLayerClassifier(net, random_state=0, **params)


def _online(**params):
    return OnlineFairPredictor(LogisticRegression(), epsilon=0.05, **params)


ESTIMATORS = {"layer": _layer, "online": _online}


@pytest.fixture(scope="module")
def data():
    X, y, groups = make_biased_classification(600, 5, bias=1.0, random_state=0)
    weights = np.random.default_rng(0).integers(1, 5, len(y)).astype(float)
    return X, y, groups, weights


@pytest.fixture(autouse=True)
def routing():
    with sklearn.config_context(enable_metadata_routing=True):
        yield


@pytest.mark.parametrize("make", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_routed_pipeline_score_is_the_accuracy_of_predict(make, data):
    X, y, groups, _ = data
    pipe = make_pipeline(StandardScaler(), make()).fit(X, y, sensitive_features=groups)
    y_pred = pipe.predict(X, sensitive_features=groups)
    assert pipe.score(X, y, sensitive_features=groups) == np.mean(y_pred == y)


@pytest.mark.parametrize("make", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_score_weighs_samples_as_scikit_learns_accuracy_does(make, data):
    X, y, groups, weights = data
    model = make().fit(X, y, sensitive_features=groups)
    correct = model.predict(X, sensitive_features=groups) == y
    score = model.score(X, y, weights, sensitive_features=groups)
    assert score == pytest.approx(np.sum(weights * correct) / np.sum(weights), abs=1e-15)
    assert score != pytest.approx(np.mean(correct))  # the weights did count
    # routed through a Pipeline once requested
    pipe = make_pipeline(StandardScaler(), make().set_score_request(sample_weight=True))
    pipe.fit(X, y, sensitive_features=groups)
    expected = pipe[-1].score(pipe[0].transform(X), y, weights, sensitive_features=groups)
    assert pipe.score(X, y, sample_weight=weights, sensitive_features=groups) == expected


@pytest.mark.parametrize("make", ESTIMATORS.values(), ids=ESTIMATORS.keys())
def test_searches_with_the_default_scoring_score_every_fold(make, data):
    X, y, groups, _ = data
    pipe = make_pipeline(StandardScaler(), make())
    name = pipe.steps[-1][0]
    search = GridSearchCV(pipe, {f"{name}__epsilon": [0.02, 0.1]}, cv=KFold(3))
    search.fit(X, y, sensitive_features=groups)
    default = search.cv_results_["mean_test_score"]
    assert np.isfinite(default).all()
    # the default score is the routed accuracy scorer's
    fair = GridSearchCV(
        pipe, {f"{name}__epsilon": [0.02, 0.1]}, cv=KFold(3), scoring=fair_accuracy_scorer
    ).fit(X, y, sensitive_features=groups)
    np.testing.assert_array_equal(default, fair.cv_results_["mean_test_score"])
    scores = cross_validate(pipe, X, y, cv=KFold(3), params={"sensitive_features": groups})
    assert np.isfinite(scores["test_score"]).all()


def test_a_sensitive_column_renamed_by_a_column_transformer_is_found_by_its_name(data):
    X, y, groups, _ = data
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["sex"] = np.where(groups == 1, "M", "F")
    numeric = [c for c in frame.columns if c != "sex"]

    def pipe(verbose_names):
        transformer = ColumnTransformer(
            [("num", StandardScaler(), numeric)],
            remainder="passthrough",
            verbose_feature_names_out=verbose_names,
        ).set_output(transform="pandas")
        return make_pipeline(transformer, _layer(sensitive_feature="sex"))

    # the default names ('remainder__sex') fit and predict as the unprefixed ones
    prefixed, plain = pipe(True).fit(frame, y), pipe(False).fit(frame, y)
    assert prefixed[-1].groups_.tolist() == ["F", "M"]
    np.testing.assert_array_equal(prefixed.predict_proba(frame), plain.predict_proba(frame))
