import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from sklearn_metaedit import MLP, MetanetEditor, OnlineFairPredictor
from sklearn_metaedit._groups import (
    check_sensitive_features,
    encode_groups,
    fit_groups,
    resolve_sensitive_features,
)


def test_several_columns_make_intersectional_groups():
    frame = pd.DataFrame({"sex": ["m", "f", "m"], "race": ["a", "a", "b"]})
    labels = check_sensitive_features(frame, 3)
    assert labels.tolist() == [("m", "a"), ("f", "a"), ("m", "b")]
    groups = fit_groups(labels)
    assert groups.tolist() == [("f", "a"), ("m", "a"), ("m", "b")]
    assert encode_groups(labels, groups).tolist() == [1, 0, 2]


def test_numpy_and_python_scalars_are_one_group():
    labels = check_sensitive_features(np.array([1, 2, 1], dtype=np.int64), 3)
    assert encode_groups(labels, fit_groups(np.array([1, 2], dtype=object))).tolist() == [0, 1, 0]
    # held as objects, a numpy scalar among Python ones becomes a Python scalar too
    mixed = check_sensitive_features(np.array([np.int64(1), 2, 1], dtype=object), 3)
    assert mixed.tolist() == [1, 2, 1] and all(type(v) is int for v in mixed)


def test_unsortable_labels_still_get_a_fixed_order():
    labels = check_sensitive_features(np.array(["a", 1, "a"], dtype=object), 3)
    assert fit_groups(labels).tolist() == fit_groups(labels[::-1]).tolist()


@pytest.mark.parametrize(
    ("sf", "match"),
    [
        (None, "sensitive_features is required"),
        ([0, 1], "2 entries but X has 3 rows"),
        ([0, None, 1], "missing value"),
        ([0.0, np.nan, 1.0], "missing value"),
        (pd.Series(["a", pd.NA, "b"]), "missing value"),
        (5, "scalar"),
        (np.zeros((3, 1, 1)), "1-D or 2-D"),
    ],
)
def test_bad_sensitive_features_are_clear_errors(sf, match):
    with pytest.raises(ValueError, match=match):
        check_sensitive_features(sf, 3)


@pytest.mark.parametrize(
    "column",
    [
        np.array([True, False, True]),
        np.array([3, -1, 3], dtype=np.int8),
        np.array([2, 0, 2], dtype=np.uint16),
        np.array([0.5, 1.0, 0.5], dtype=np.float32),
        np.array(["f", "m", "f"]),
        np.array([[1, 2], [3, 4], [1, 2]]),
        np.array([0.0, np.nan, 1.0]),
        np.array([0.0, np.inf, 1.0], dtype=np.float32),
        np.ma.masked_array([0.0, 1.0, 0.0], mask=[False, True, False]),
        np.matrix([[1], [2], [1]]),
    ],
)
def test_typed_arrays_read_as_the_same_values_held_as_objects(column):
    # typed numpy columns are checked without a loop over their rows: the same labels,
    # of the same Python types, or the same error, as the values held as objects
    def read(values):
        try:
            return check_sensitive_features(values, 3).tolist()
        except ValueError as exc:
            return str(exc)

    expected = read(np.asarray(np.asarray(column).tolist(), dtype=object))
    got = read(column)
    assert got == expected
    assert [type(v) for v in np.ravel(np.asarray(got, dtype=object))] == [
        type(v) for v in np.ravel(np.asarray(expected, dtype=object))
    ]


def test_unseen_group_is_named():
    groups = fit_groups(check_sensitive_features(["a", "b"], 2))
    with pytest.raises(ValueError, match=r"\['c'\] that were not seen in fit"):
        encode_groups(check_sensitive_features(["a", "c"], 2), groups)


def test_sensitive_feature_names_a_column_of_X():
    X = pd.DataFrame({"x": [0.1, 0.2, 0.3], "sex": ["m", "f", "m"], "age": [1, 2, 1]})
    assert resolve_sensitive_features(X, None, "sex").tolist() == ["m", "f", "m"]
    assert resolve_sensitive_features(X, None, ["sex", "age"]).tolist()[1] == ("f", 2)
    array = X.to_numpy()
    assert resolve_sensitive_features(array, None, 1).tolist() == ["m", "f", "m"]
    # routed sensitive_features win over the named column
    assert resolve_sensitive_features(X, [7, 8, 9], "sex").tolist() == [7, 8, 9]
    with pytest.raises(ValueError, match="does not have"):
        resolve_sensitive_features(X, None, "race")
    with pytest.raises(ValueError, match="not an integer column index"):
        resolve_sensitive_features(array, None, "sex")
    with pytest.raises(ValueError, match="not an integer column index"):
        resolve_sensitive_features(array, None, 5)


@pytest.mark.parametrize(
    "fit",
    [
        lambda X, y, s: OnlineFairPredictor(LogisticRegression(), epsilon=0.05).fit(
            X, y, sensitive_features=s
        ),
        lambda X, y, s: MetanetEditor("demographic_parity", max_steps=0).fit(
            [MLP(X.shape[1], hidden_sizes=(4,))], data=(X, y, s)
        ),
    ],
    ids=["online", "editor"],
)
def test_a_continuous_sensitive_column_is_named_and_whole_numbers_are_groups(fit):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    with pytest.warns(UserWarning, match=r"fractional part.*200 distinct values.*Bin it"):
        fit(X, y, rng.normal(size=200))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fit(X, y, (X[:, 1] > 0).astype(float))  # 0.0 and 1.0: two groups, no warning
