"""Bad input, table-driven, across the three estimators, the population and the datasets.

Every row of the table is one call. It either raises an error whose message names the
offending argument, or it works (where it should) and its result has the property the
row states. In both cases nothing the call was given is changed: the arguments and the
object whose method is called are compared, value by value, before and after.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from skorch import NeuralNetClassifier
from torch import nn

from sklearn_metaedit import (
    MLP,
    FairnessLayerClassifier,
    MetanetEditor,
    OnlineFairPredictor,
    make_population,
)
from sklearn_metaedit.datasets import (
    load_adult,
    make_biased_classification,
    make_preprocessor,
)
from sklearn_metaedit.metrics import selection_rate_gap

CUDA = torch.cuda.is_available()
DEFAULT = object()

# The attribute that makes each estimator fitted: a failed fit must not leave it behind.
FITTED_MARK = {
    FairnessLayerClassifier: "estimator_",
    OnlineFairPredictor: "_code_of",
    MetanetEditor: "metanet_",
}


# --------------------------------------------------------------------------- fixtures


def _net(**params):
    defaults = dict(
        module=MLP,
        module__hidden_sizes=(8,),
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.01,
        max_epochs=2,
        batch_size=64,
        train_split=None,
        verbose=0,
    )
    return NeuralNetClassifier(**{**defaults, **params})


def _tiny_editor(requirement="sparsity", **params):
    defaults = dict(max_steps=2, hidden_channels=8, num_layers=1, mlp_hidden=16, random_state=0)
    return MetanetEditor(requirement, **{**defaults, **params})


@pytest.fixture(scope="module")
def ctx():
    X, y, g = make_biased_classification(300, 4, bias=1.0, random_state=0)
    population = make_population(_net(), X, y, n_networks=3, random_state=0)
    return {
        "X": X,
        "y": y,
        "g": g,
        "population": population,
        "layer": FairnessLayerClassifier(_net(), epsilon=0.05, random_state=0).fit(
            X, y, sensitive_features=g
        ),
        "online": OnlineFairPredictor(LogisticRegression(), epsilon=0.05).fit(
            X, y, sensitive_features=g
        ),
        "editor": _tiny_editor().fit(population, data=(X, y, g)),
    }


# --------------------------------------------------------------------------- the table


@dataclass
class Case:
    """``call(ctx)`` returns ``(function, args, kwargs)``; the row expects ``error``
    (type and a regex that names the argument) or, with ``error=None``, that the call
    works and ``check(result, ctx)`` holds."""

    call: Callable[[dict], tuple[Callable, tuple, dict]]
    error: tuple[type[Exception], str] | None
    check: Callable[[Any, dict], None] | None = field(default=None)


def with_nan(X, value=np.nan):
    X = X.copy()
    X[3, 1] = value
    return X


def wrong_width_net():
    return nn.Sequential(nn.Linear(7, 4), nn.ReLU(), nn.Linear(4, 2))


def batchnorm_net():
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))


def nan_weight_net():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[2].weight[0, 0] = float("nan")
    return net


def _strings(y):
    return np.where(y == 1, "approved", "denied")


def _within_gap(epsilon):
    def check(result, c):
        decisions, groups = result
        assert selection_rate_gap(decisions, sensitive_features=groups) <= epsilon

    return check


def _is_sparse_at_least(target):
    def check(edited, c):
        for net in edited:
            weights = [m.weight for m in net.module_ if isinstance(m, nn.Linear)]
            zeros = sum(int((w == 0).sum()) for w in weights)
            assert zeros / sum(w.numel() for w in weights) >= target

    return check


def _labels_from(values):
    def check(result, c):
        assert set(np.asarray(result).tolist()) <= set(values)

    return check


def _renamed_frame(c, text=True):
    """X as a ColumnTransformer with pandas output leaves it: the group column renamed."""
    frame = pd.DataFrame(c["X"], columns=[f"num__x{i}" for i in range(c["X"].shape[1])])
    frame["remainder__sex"] = np.where(c["g"] == 1, "M", "F") if text else c["g"]
    return frame


def _prefixed_twice(c):
    """Two columns that end in '__sex': which one holds the groups is not for us to guess."""
    frame = _renamed_frame(c)
    frame["onehot__sex"] = (c["g"] == 1).astype(float)
    return frame


def _fitted_on_groups(result, c):
    """The classifier read its groups from the column that a ColumnTransformer renamed."""
    assert result.groups_.tolist() == ["F", "M"]


def _one_written_as_text(groups):
    """The groups with group 1 written now as the string '1', now as the number 1: one
    column read partly as text, which would otherwise make three groups of two."""
    return np.array(
        [("1" if i % 2 else 1) if v == 1 else 0 for i, v in enumerate(groups)], dtype=object
    )


def _equal_pair(result):
    first, second = result
    assert first == second


def layer_fit(c, X=None, y=None, groups=DEFAULT, **params):
    estimator = FairnessLayerClassifier(_net(), random_state=0, **params)
    kwargs = (
        {} if groups is None else {"sensitive_features": c["g"] if groups is DEFAULT else groups}
    )
    return estimator.fit, (c["X"] if X is None else X, c["y"] if y is None else y), kwargs


def online_fit(c, X=None, y=None, groups=DEFAULT, estimator=None, **params):
    online = OnlineFairPredictor(estimator or LogisticRegression(), **params)
    kwargs = (
        {} if groups is None else {"sensitive_features": c["g"] if groups is DEFAULT else groups}
    )
    return online.fit, (c["X"] if X is None else X, c["y"] if y is None else y), kwargs


def editor_fit(c, requirement="sparsity", data="default", networks=None, **params):
    data = (c["X"], c["y"], c["g"]) if isinstance(data, str) else data
    editor = _tiny_editor(requirement, **params)
    return editor.fit, (c["population"] if networks is None else networks,), {"data": data}


def population(c, X=None, y=None, estimator=None, **kwargs):
    kwargs = {"n_networks": 2, "random_state": 0, **kwargs}
    return (
        make_population,
        (estimator or _net(), c["X"] if X is None else X, c["y"] if y is None else y),
        kwargs,
    )


def layer_decisions(c, n):
    X, g = c["X"][:n], c["g"][:n]
    return (lambda: (c["layer"].predict(X, sensitive_features=g), g)), (), {}


CASES = {
    # ---------------------------------------------------------- FairnessLayerClassifier
    "layer_fit_nan_features": Case(
        lambda c: layer_fit(c, X=with_nan(c["X"])), (ValueError, "NaN")
    ),
    "layer_fit_inf_features": Case(
        lambda c: layer_fit(c, X=with_nan(c["X"], np.inf)), (ValueError, "infinity")
    ),
    "layer_fit_empty_X": Case(
        lambda c: layer_fit(c, X=c["X"][:0], y=c["y"][:0], groups=c["g"][:0]),
        (ValueError, "0 sample"),
    ),
    "layer_fit_one_sample": Case(
        lambda c: layer_fit(c, X=c["X"][:1], y=c["y"][:1], groups=c["g"][:1]),
        (ValueError, "binary target with two classes"),
    ),
    "layer_fit_one_group": Case(
        lambda c: layer_fit(c, groups=np.zeros(300, dtype=int)), (ValueError, "single group")
    ),
    "layer_fit_groups_wrong_length": Case(
        lambda c: layer_fit(c, groups=c["g"][:-1]), (ValueError, "sensitive_features has 299")
    ),
    "layer_fit_groups_missing": Case(
        lambda c: layer_fit(c, groups=None), (ValueError, "sensitive_features is required")
    ),
    "layer_fit_groups_with_nan": Case(
        lambda c: layer_fit(c, groups=np.where(c["g"] == 1, np.nan, 0.0)),
        (ValueError, "sensitive_features holds .* missing"),
    ),
    "layer_fit_groups_with_inf": Case(
        lambda c: layer_fit(c, groups=np.where(c["g"] == 1, np.inf, 0.0)),
        (ValueError, r"sensitive_features holds \d+ infinite value\(s\).*must be finite"),
    ),
    "layer_fit_groups_with_1_as_text_and_number": Case(
        lambda c: layer_fit(c, groups=_one_written_as_text(c["g"])),
        (ValueError, r"sensitive_features holds both '1' and 1, a string and a number"),
    ),
    "layer_fit_sensitive_column_renamed_by_a_column_transformer_is_found": Case(
        lambda c: layer_fit(c, X=_renamed_frame(c), groups=None, sensitive_feature="sex"),
        None,
        _fitted_on_groups,
    ),
    "layer_fit_sensitive_column_prefixed_twice": Case(
        lambda c: layer_fit(c, X=_prefixed_twice(c), groups=None, sensitive_feature="sex"),
        (ValueError, r"several columns end in '__sex': \['remainder__sex', 'onehot__sex'\]"),
    ),
    "layer_fit_criterion_reduction_none": Case(
        lambda c: (
            FairnessLayerClassifier(_net(criterion__reduction="none")).fit,
            (c["X"], c["y"]),
            {"sensitive_features": c["g"]},
        ),
        (ValueError, r"criterion__reduction='none' is not supported"),
    ),
    "layer_fit_criterion_class_weights_work": Case(
        lambda c: (
            lambda: (
                FairnessLayerClassifier(
                    _net(criterion__weight=torch.tensor([1.0, 3.0])), random_state=0
                )
                .fit(c["X"], c["y"], sensitive_features=c["g"])
                .estimator_.criterion_.weight
            ),
            (),
            {},
        ),
        None,
        lambda weight, c: np.testing.assert_array_equal(weight.numpy(), [1.0, 3.0]),
    ),
    "layer_fit_string_labels_work": Case(
        lambda c: (
            lambda: layer_fit(c, y=_strings(c["y"]))[0](
                c["X"], _strings(c["y"]), sensitive_features=c["g"]
            ).predict(c["X"], sensitive_features=c["g"]),
            (),
            {},
        ),
        None,
        _labels_from({"approved", "denied"}),
    ),
    "layer_fit_multiclass_target": Case(
        lambda c: layer_fit(c, y=np.arange(300) % 3), (ValueError, "binary")
    ),
    "layer_epsilon_negative": Case(lambda c: layer_fit(c, epsilon=-0.1), (ValueError, "epsilon")),
    "layer_epsilon_one": Case(lambda c: layer_fit(c, epsilon=1.0), (ValueError, "epsilon")),
    "layer_estimator_not_a_network": Case(
        lambda c: (
            FairnessLayerClassifier(LogisticRegression()).fit,
            (c["X"], c["y"]),
            {"sensitive_features": c["g"]},
        ),
        (ValueError, "estimator must be an unfitted skorch NeuralNetClassifier"),
    ),
    "layer_unknown_constraint": Case(
        lambda c: layer_fit(c, constraint="parity"), (ValueError, "constraint")
    ),
    "layer_sensitive_feature_not_a_column": Case(
        lambda c: layer_fit(c, groups=None, sensitive_feature=9), (ValueError, "sensitive_feature")
    ),
    "layer_cuda_requested": Case(
        lambda c: (
            FairnessLayerClassifier(_net(device="cuda", max_epochs=1)).fit,
            (c["X"], c["y"]),
            {"sensitive_features": c["g"]},
        ),
        None if CUDA else (ValueError, "device='cuda'"),
    ),
    "layer_predict_unseen_group": Case(
        lambda c: (c["layer"].predict, (c["X"][:10],), {"sensitive_features": np.full(10, 7)}),
        (ValueError, r"sensitive_features holds group\(s\) \[7\] that were not seen in fit"),
    ),
    "layer_predict_wrong_width": Case(
        lambda c: (c["layer"].predict, (c["X"][:, :3],), {"sensitive_features": c["g"]}),
        (ValueError, "3 features"),
    ),
    "layer_predict_nan_features": Case(
        lambda c: (c["layer"].predict_proba, (with_nan(c["X"]),), {"sensitive_features": c["g"]}),
        (ValueError, "NaN"),
    ),
    "layer_predict_groups_with_inf": Case(
        lambda c: (
            c["layer"].predict,
            (c["X"][:4],),
            {"sensitive_features": np.array([0.0, 1.0, -np.inf, 0.0])},
        ),
        (ValueError, r"holds 1 infinite value\(s\) \(inf/-inf\), e.g. at rows \[2\]"),
    ),
    "layer_score_y_wrong_length": Case(
        lambda c: (c["layer"].score, (c["X"], c["y"][:-1]), {"sensitive_features": c["g"]}),
        (ValueError, "inconsistent numbers of samples"),
    ),
    "layer_score_y_of_strings_for_integer_classes": Case(
        lambda c: (c["layer"].score, (c["X"], c["y"].astype(str)), {"sensitive_features": c["g"]}),
        (ValueError, "Mix of label input types"),
    ),
    "layer_score_y_column_vector_works": Case(
        lambda c: (
            lambda: (
                c["layer"].score(c["X"], c["y"][:, None], sensitive_features=c["g"]),
                c["layer"].score(c["X"], c["y"], sensitive_features=c["g"]),
            ),
            (),
            {},
        ),
        None,
        lambda result, c: _equal_pair(result),
    ),
    "layer_predict_one_row_works": Case(lambda c: layer_decisions(c, 1), None, _within_gap(0.05)),
    "layer_predict_batch_of_one_group_works": Case(
        lambda c: (
            lambda: (
                c["layer"].predict(c["X"][c["g"] == 0][:20], sensitive_features=np.zeros(20, int)),
                np.zeros(20, int),
            ),
            (),
            {},
        ),
        None,
        _within_gap(0.05),
    ),
    # ------------------------------------------------------------- OnlineFairPredictor
    "online_fit_nan_features": Case(
        lambda c: online_fit(c, X=with_nan(c["X"])), (ValueError, "X contains NaN")
    ),
    "online_fit_empty_X": Case(
        lambda c: online_fit(c, X=c["X"][:0], y=c["y"][:0], groups=c["g"][:0]),
        (ValueError, "n_samples=0"),
    ),
    "online_fit_one_group": Case(
        lambda c: online_fit(c, groups=np.ones(300, dtype=int)), (ValueError, "single group")
    ),
    "online_fit_multiclass_target": Case(
        lambda c: online_fit(c, y=np.arange(300) % 3), (ValueError, "binary")
    ),
    "online_fit_groups_wrong_length": Case(
        lambda c: online_fit(c, groups=c["g"][:10]), (ValueError, "sensitive_features has 10")
    ),
    "online_epsilon_negative": Case(
        lambda c: online_fit(c, epsilon=-0.01), (ValueError, "epsilon")
    ),
    "online_epsilon_one": Case(lambda c: online_fit(c, epsilon=1), (ValueError, "epsilon")),
    "online_step_size_zero": Case(lambda c: online_fit(c, step_size=0), (ValueError, "step_size")),
    "online_margin_one": Case(lambda c: online_fit(c, margin=1.0), (ValueError, "margin")),
    "online_estimator_without_predict_proba": Case(
        lambda c: online_fit(c, estimator=LinearSVC()), (ValueError, "estimator")
    ),
    "online_fit_groups_with_inf": Case(
        lambda c: online_fit(c, groups=np.where(c["g"] == 1, np.inf, 0.0)),
        (ValueError, "sensitive_features holds .* infinite"),
    ),
    "online_fit_prefit_single_class": Case(
        lambda c: online_fit(
            c,
            y=np.ones(300, dtype=int),
            estimator=LogisticRegression().fit(c["X"], c["y"]),
            prefit=True,
        ),
        (ValueError, r"y holds a single class \[1\]"),
    ),
    "online_fit_groups_with_1_as_text_and_number": Case(
        lambda c: online_fit(c, groups=_one_written_as_text(c["g"])),
        (ValueError, "a string and a number that read the same"),
    ),
    "online_fit_sensitive_feature_true_on_an_array": Case(
        lambda c: online_fit(c, groups=None, sensitive_feature=True),
        (ValueError, "sensitive_feature True is not a column of X"),
    ),
    "online_fit_sensitive_column_renamed_by_a_column_transformer_is_found": Case(
        lambda c: online_fit(
            c, X=_renamed_frame(c, text=False), groups=None, sensitive_feature="sex"
        ),
        None,
        lambda result, c: np.testing.assert_array_equal(result.groups_, np.unique(c["g"])),
    ),
    "online_epsilon_zero_works": Case(
        lambda c: (
            lambda: online_fit(c, epsilon=0.0)[0](c["X"], c["y"], sensitive_features=c["g"]),
            (),
            {},
        ),
        None,
        # exact parity in the limit, without collapsing to a constant classifier
        lambda online, c: (
            np.testing.assert_array_equal(
                np.unique(online.partial_predict(c["X"], sensitive_features=c["g"])), [0, 1]
            ),
            online.report().pooled_gap <= online.report().bound or pytest.fail("bound"),
        ),
    ),
    "online_string_labels_work": Case(
        lambda c: (
            lambda: online_fit(c, y=_strings(c["y"]))[0](
                c["X"], _strings(c["y"]), sensitive_features=c["g"]
            ).predict(c["X"], sensitive_features=c["g"]),
            (),
            {},
        ),
        None,
        _labels_from({"approved", "denied"}),
    ),
    "online_partial_predict_unseen_group": Case(
        lambda c: (c["online"].partial_predict, (c["X"][:3],), {"sensitive_features": [0, 1, 9]}),
        (ValueError, r"group\(s\) \[9\] that were not seen in fit"),
    ),
    "online_partial_predict_wrong_width": Case(
        lambda c: (
            c["online"].partial_predict,
            (c["X"][:2, :2],),
            {"sensitive_features": c["g"][:2]},
        ),
        (ValueError, "X has 2 features"),
    ),
    "online_partial_predict_groups_wrong_length": Case(
        lambda c: (c["online"].partial_predict, (c["X"][:4],), {"sensitive_features": c["g"][:3]}),
        (ValueError, "sensitive_features has 3 entries"),
    ),
    "online_partial_predict_groups_missing": Case(
        lambda c: (c["online"].partial_predict, (c["X"][:4],), {}),
        (ValueError, "sensitive_features is required"),
    ),
    "online_partial_predict_groups_with_inf": Case(
        lambda c: (
            c["online"].partial_predict,
            (c["X"][:2],),
            {"sensitive_features": [np.inf, 0.0]},
        ),
        (ValueError, "sensitive_features holds 1 infinite value"),
    ),
    "online_partial_predict_nan_features": Case(
        lambda c: (
            c["online"].partial_predict,
            (with_nan(c["X"])[3:4],),
            {"sensitive_features": c["g"][3:4]},
        ),
        (ValueError, "X contains NaN"),
    ),
    "online_partial_predict_1d_row": Case(
        lambda c: (c["online"].partial_predict, (c["X"][0],), {"sensitive_features": c["g"][:1]}),
        (ValueError, "Expected 2D array"),
    ),
    # ------------------------------------------------------------------ MetanetEditor
    "editor_sparsity_target_zero_works": Case(
        lambda c: (
            lambda: editor_fit(c, target=0.0)[0](c["population"], data=(c["X"], c["y"])).transform(
                c["population"]
            ),
            (),
            {},
        ),
        None,
        _is_sparse_at_least(0.0),
    ),
    "editor_sparsity_target_one_zeroes_every_weight": Case(
        lambda c: (
            lambda: editor_fit(c, target=1.0)[0](c["population"], data=(c["X"], c["y"])).transform(
                c["population"]
            ),
            (),
            {},
        ),
        None,
        _is_sparse_at_least(1.0),
    ),
    "editor_target_above_one": Case(lambda c: editor_fit(c, target=1.5), (ValueError, "target")),
    "editor_target_negative": Case(lambda c: editor_fit(c, target=-0.1), (ValueError, "target")),
    "editor_relative_margin_above_one": Case(
        lambda c: editor_fit(c, relative_margin=1.5), (ValueError, "relative_margin")
    ),
    "editor_transform_target_out_of_range": Case(
        lambda c: (c["editor"].transform, (c["population"],), {"target": 2.0}),
        (ValueError, "target for sparsity must be a number in"),
    ),
    "editor_unknown_requirement": Case(
        lambda c: editor_fit(c, requirement="privacy"),
        (ValueError, "'requirement' parameter of MetanetEditor must be a str among"),
    ),
    "editor_networks_of_wrong_input_width": Case(
        lambda c: (c["editor"].transform, ([wrong_width_net()],), {}),
        (ValueError, "network 0 takes 7 input features"),
    ),
    "editor_unsupported_layer": Case(
        lambda c: (c["editor"].transform, ([batchnorm_net()],), {}),
        (ValueError, r"layer 1 \(BatchNorm1d\) is not supported"),
    ),
    "editor_nan_weights": Case(
        lambda c: (c["editor"].transform, ([nan_weight_net()],), {}),
        (ValueError, "NaN or infinite values in parameter '2.weight'"),
    ),
    "editor_empty_population": Case(
        lambda c: editor_fit(c, networks=[]), (ValueError, "networks is empty")
    ),
    "editor_single_network_not_in_a_list": Case(
        lambda c: (c["editor"].transform, (c["population"][0],), {}),
        (ValueError, "wrap a single network in a list"),
    ),
    "editor_unfitted_network": Case(
        lambda c: (c["editor"].transform, ([_net(module__n_features=4)],), {}),
        (ValueError, "network 0 is a skorch net that is not fitted"),
    ),
    "editor_data_missing": Case(
        lambda c: editor_fit(c, data=None), (ValueError, "data is required")
    ),
    "editor_task_features_nan": Case(
        lambda c: editor_fit(c, data=(with_nan(c["X"]), c["y"])), (ValueError, "NaN")
    ),
    "editor_empty_task_data": Case(
        lambda c: editor_fit(c, data=(c["X"][:0], c["y"][:0])),
        (ValueError, "the task data has no rows"),
    ),
    "editor_task_multiclass_for_binary_networks": Case(
        lambda c: editor_fit(c, data=(c["X"], np.arange(300) % 3)),
        (ValueError, r"y holds labels \[2\] that are not among the networks' classes_"),
    ),
    "editor_fairness_without_groups": Case(
        lambda c: editor_fit(c, requirement="demographic_parity", data=(c["X"], c["y"])),
        (ValueError, "needs sensitive features"),
    ),
    "editor_fairness_one_group": Case(
        lambda c: editor_fit(
            c, requirement="demographic_parity", data=(c["X"], c["y"], np.zeros(300))
        ),
        (ValueError, "single group"),
    ),
    "editor_groups_wrong_length": Case(
        lambda c: editor_fit(
            c, requirement="demographic_parity", data=(c["X"], c["y"], c["g"][:7])
        ),
        (ValueError, "sensitive_features has 7 entries"),
    ),
    "editor_groups_with_inf": Case(
        lambda c: editor_fit(
            c,
            requirement="demographic_parity",
            data=(c["X"], c["y"], np.where(c["g"] == 1, np.inf, 0.0)),
        ),
        (ValueError, "sensitive_features holds .* infinite"),
    ),
    "editor_score_group_unseen_in_fit": Case(
        lambda c: (c["editor"].score, (c["population"],), {"data": (c["X"], c["y"], c["g"] + 5)}),
        (ValueError, "not seen in fit"),
    ),
    "editor_forbidden_feature_not_a_column": Case(
        lambda c: editor_fit(c, requirement="data_minimisation", features=["age"]),
        (ValueError, "features names 'age'"),
    ),
    "editor_cuda_requested": Case(
        lambda c: editor_fit(c, device="cuda"),
        None if CUDA else (ValueError, "device='cuda' asks for CUDA"),
    ),
    "editor_device_not_a_device": Case(
        lambda c: editor_fit(c, device="gpu9"), (ValueError, "device='gpu9' is not a torch device")
    ),
    # ---------------------------------------------------------------- make_population
    "population_nan_features": Case(
        lambda c: population(c, X=with_nan(c["X"])), (ValueError, "X holds NaN")
    ),
    "population_empty_X": Case(
        lambda c: population(c, X=c["X"][:0], y=c["y"][:0]), (ValueError, "X must be a non-empty")
    ),
    "population_labels_wrong_length": Case(
        lambda c: population(c, y=c["y"][:5]), (ValueError, "y must be 1-D")
    ),
    "population_single_class": Case(
        lambda c: population(c, y=np.ones(300, dtype=int)), (ValueError, "single class")
    ),
    "population_zero_networks": Case(
        lambda c: population(c, n_networks=0), (ValueError, "n_networks")
    ),
    "population_module_instance": Case(
        lambda c: population(c, estimator=_net(module=MLP(4))), (ValueError, "module as a class")
    ),
    "population_estimator_not_a_network": Case(
        lambda c: population(c, estimator=LogisticRegression()),
        (TypeError, "estimator must be a skorch"),
    ),
    "population_cuda_requested": Case(
        lambda c: population(c, estimator=_net(device="cuda")),
        None if CUDA else (ValueError, "device='cuda'"),
    ),
    "population_string_labels_work": Case(
        lambda c: (make_population, (_net(), c["X"], _strings(c["y"])), {"n_networks": 1}),
        None,
        # like skorch's, the nets predict class indices, which classes_ maps to the labels
        lambda nets, c: (
            np.testing.assert_array_equal(nets[0].classes_, ["approved", "denied"]),
            _labels_from({0, 1})(nets[0].predict(c["X"]), c),
        ),
    ),
    # ----------------------------------------------------------------------- datasets
    "adult_unknown_split": Case(
        lambda c: (load_adult, (), {"split": "validation"}), (ValueError, "split")
    ),
    "biased_zero_samples": Case(
        lambda c: (make_biased_classification, (0,), {}), (ValueError, "n_samples")
    ),
    "biased_fractional_samples": Case(
        lambda c: (make_biased_classification, (2.5,), {}), (ValueError, "n_samples")
    ),
    "biased_true_as_a_count": Case(
        lambda c: (make_biased_classification, (True,), {}), (ValueError, "n_samples")
    ),
    "biased_one_group": Case(
        lambda c: (make_biased_classification, (10,), {"n_groups": 1}), (ValueError, "n_groups")
    ),
    "biased_fractional_groups": Case(
        lambda c: (make_biased_classification, (10,), {"n_groups": 2.5}), (ValueError, "n_groups")
    ),
    "biased_one_feature": Case(
        lambda c: (make_biased_classification, (10,), {"n_features": 1}),
        (ValueError, "n_features"),
    ),
    "biased_bias_none": Case(
        lambda c: (make_biased_classification, (10,), {"bias": None}), (ValueError, "bias")
    ),
    "biased_bias_inf": Case(
        lambda c: (make_biased_classification, (10,), {"bias": math.inf}), (ValueError, "bias")
    ),
    "preprocessor_drop_one_name_works": Case(
        lambda c: (
            lambda frame: make_preprocessor(drop="sex").fit(frame).get_feature_names_out(),
            (pd.DataFrame({"sex": ["f", "m", "f"], "age": [30.0, 40.0, 50.0]}),),
            {},
        ),
        None,
        lambda names, c: np.testing.assert_array_equal(names, ["age"]),
    ),
}


# --------------------------------------------------------------------------- snapshots


def snapshot(value: Any, _seen: set | None = None) -> Any:
    """A comparable deep copy of everything a call could change in ``value``."""
    seen = set() if _seen is None else _seen
    if value is None or isinstance(value, bool | int | float | str | bytes | type):
        return value
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, torch.Tensor):
        return (
            "tensor",
            str(value.dtype),
            tuple(value.shape),
            value.detach().cpu().numpy().tobytes(),
        )
    if isinstance(value, pd.DataFrame | pd.Series):
        return ("pandas", value.copy(deep=True))
    if isinstance(value, np.generic):
        return value.item()
    if id(value) in seen:
        return ("seen", type(value).__name__)
    seen.add(id(value))
    if isinstance(value, nn.Module):
        return (
            "module",
            repr(value),
            [(k, snapshot(v, seen)) for k, v in value.state_dict().items()],
        )
    if isinstance(value, dict):
        return ("dict", [(repr(k), snapshot(v, seen)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return (type(value).__name__, [snapshot(v, seen) for v in value])
    if isinstance(value, BaseEstimator) or hasattr(value, "__dict__"):
        items = sorted(
            (k, v) for k, v in vars(value).items() if not callable(v) or isinstance(v, nn.Module)
        )
        return (type(value).__name__, [(k, snapshot(v, seen)) for k, v in items])
    return ("other", type(value).__name__)


def _same(a, b) -> bool:
    if isinstance(a, tuple) and a and a[0] == "pandas":
        return isinstance(b, tuple) and b[0] == "pandas" and a[1].equals(b[1])
    if isinstance(a, tuple | list):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_same(x, y) for x, y in zip(a, b, strict=False))
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_the_table_covers_at_least_forty_bad_inputs():
    errors = [name for name, case in CASES.items() if case.error is not None]
    assert len(CASES) >= 40 and len(errors) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gives_a_clear_error_or_works_and_mutates_nothing(ctx, name):
    case = CASES[name]
    function, args, kwargs = case.call(ctx)
    owner = getattr(function, "__self__", None)
    fitting = getattr(function, "__name__", "") == "fit"
    # fit changes its own estimator; every other method leaves its object as it was
    before = snapshot((None if fitting else owner, args, kwargs, ctx))
    if case.error is None:
        result = function(*args, **kwargs)
        if case.check is not None:
            case.check(result, ctx)
    else:
        error, match = case.error
        with pytest.raises(error, match=match):
            function(*args, **kwargs)
        if fitting:
            # a failed fit leaves no estimator that passes for fitted
            assert not hasattr(owner, FITTED_MARK[type(owner)])
    after = snapshot((None if fitting else owner, args, kwargs, ctx))
    assert _same(before, after), f"{name} changed its inputs or the fitted estimator"


def test_snapshot_sees_a_change_in_a_fitted_stream_and_in_an_array(ctx):
    online = copy.deepcopy(ctx["online"])
    before = snapshot(online)
    online.partial_predict(ctx["X"][:1], sensitive_features=ctx["g"][:1])
    assert not _same(before, snapshot(online))
    X = ctx["X"].copy()
    before = snapshot(X)
    X[0, 0] += 1
    assert not _same(before, snapshot(X))
