"""Sensitive features: validation, intersectional groups and integer group codes.

Every estimator of the package takes ``sensitive_features`` (fairlearn's spelling) or a
constructor parameter ``sensitive_feature`` that names columns of ``X``. This module
turns either into one group label per row and then into integer codes, and raises a
``ValueError`` that names the problem for everything that would otherwise give a
silently wrong answer: a missing group, NaN, an infinite label, a string and a number
that read the same ('1' and 1), a length mismatch, a group unseen in fit.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from numbers import Number
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_array

__all__ = [
    "check_sensitive_features",
    "encode_groups",
    "fit_groups",
    "resolve_sensitive_features",
]


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _is_infinite(value: Any) -> bool:
    # inf passes pd.isna; as a group label it is almost surely a broken encoding
    if isinstance(value, bool) or not isinstance(value, float | np.floating):
        return False
    return not math.isfinite(value)


def _refuse(column, is_bad, name: str, what: str, examples: str, rule: str) -> None:
    """Raise a ValueError naming the rows of ``column`` where ``is_bad`` holds."""
    bad = np.fromiter((is_bad(v) for v in column), dtype=bool, count=len(column))
    if bad.any():
        where = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"{name} holds {int(bad.sum())} {what} value(s) {examples}, e.g. at rows "
            f"{where}; {rule}."
        )


def _same_text(column: np.ndarray) -> tuple[Any, Any] | None:
    """A string and a number of ``column`` that read the same ('1' and 1), else None."""
    if getattr(getattr(column, "dtype", None), "kind", None) != "O":
        return None
    texts: dict[str, str] = {}
    numbers: dict[str, Any] = {}
    for value in column:
        if isinstance(value, str):
            texts.setdefault(value.strip(), value)
        elif isinstance(value, Number):
            numbers.setdefault(str(_plain(value)), value)
    common = texts.keys() & numbers.keys()
    if not common:
        return None
    key = min(common)
    return texts[key], _plain(numbers[key])


def check_sensitive_features(
    sensitive_features: Any, n_samples: int, *, name: str = "sensitive_features"
) -> np.ndarray:
    """Validate sensitive features and return one hashable group label per row.

    Parameters
    ----------
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
        Group membership. Several columns (a DataFrame or a 2-D array) combine into
        intersectional groups: the label of a row is the tuple of its column values.
    n_samples : int
        The number of rows the labels must match.
    name : str, default="sensitive_features"
        The argument's name, used in error messages.

    Returns
    -------
    labels : ndarray of object, shape (n_samples,)
        One hashable label per row.

    Raises
    ------
    ValueError
        If ``sensitive_features`` is None, has the wrong length, holds NaN / None or
        infinite values, holds a string and a number that read the same (``'1'`` and
        ``1``) in one column, or holds unhashable values.
    """
    if sensitive_features is None:
        raise ValueError(
            f"{name} is required: pass one group label per row of X, or set the "
            "estimator's `sensitive_feature` parameter to the name or index of a column of X."
        )
    if isinstance(sensitive_features, pd.DataFrame):
        columns = [
            sensitive_features.iloc[:, j].to_numpy() for j in range(sensitive_features.shape[1])
        ]
    elif isinstance(sensitive_features, pd.Series):
        columns = [sensitive_features.to_numpy()]
    else:
        array = np.asarray(sensitive_features, dtype=object)
        if array.ndim == 0:
            raise ValueError(
                f"{name} must be array-like with one entry per row, got a scalar "
                f"{sensitive_features!r}."
            )
        if array.ndim == 1:
            columns = [array]
        elif array.ndim == 2:
            columns = [array[:, j] for j in range(array.shape[1])]
        else:
            raise ValueError(f"{name} must be 1-D or 2-D, got an array of shape {array.shape}.")
    if len(columns) == 0:
        raise ValueError(f"{name} has no columns.")
    length = len(columns[0])
    if length != n_samples:
        raise ValueError(
            f"{name} has {length} entries but X has {n_samples} rows; pass one group "
            "label per row of X."
        )
    for j, column in enumerate(columns):
        col = f" (column {j})" if len(columns) > 1 else ""
        _refuse(
            column,
            _is_missing,
            f"{name}{col}",
            "missing",
            "(NaN/None)",
            "every row needs a group label",
        )
        same = _same_text(column)
        if same is not None:
            raise ValueError(
                f"{name}{col} holds both {same[0]!r} and {same[1]!r}, a string and a number "
                "that read the same and would count as two groups; encode every group label "
                "with one type."
            )
        _refuse(
            column,
            _is_infinite,
            f"{name}{col}",
            "infinite",
            "(inf/-inf)",
            "group labels must be finite",
        )
    if len(columns) == 1:
        labels = np.empty(length, dtype=object)
        labels[:] = [_plain(v) for v in columns[0]]
    else:
        labels = np.empty(length, dtype=object)
        labels[:] = [tuple(_plain(v) for v in row) for row in zip(*columns, strict=True)]
    for value in labels[:1]:
        if not isinstance(value, Hashable):
            raise ValueError(f"{name} must hold hashable labels, got {type(value).__name__}.")
    return labels


def _plain(value: Any) -> Any:
    """numpy scalars become Python scalars, so that 1 and np.int64(1) are one group."""
    return value.item() if isinstance(value, np.generic) else value


def fit_groups(labels: np.ndarray) -> np.ndarray:
    """Return the distinct group labels in a fixed order (sorted where they sort).

    Parameters
    ----------
    labels : ndarray of object, shape (n_samples,)
        Output of :func:`check_sensitive_features`.

    Returns
    -------
    groups : ndarray of object, shape (n_groups,)
    """
    uniques = list(dict.fromkeys(labels.tolist()))
    try:
        uniques = sorted(uniques)
    except TypeError:
        uniques = sorted(uniques, key=repr)
    groups = np.empty(len(uniques), dtype=object)
    groups[:] = uniques
    return groups


def encode_groups(labels: np.ndarray, groups: np.ndarray, *, name: str = "sensitive_features"):
    """Map group labels to integer codes ``0 .. n_groups - 1`` in the order of ``groups``.

    Parameters
    ----------
    labels : ndarray of object, shape (n_samples,)
    groups : ndarray of object, shape (n_groups,)
        The groups seen in fit (:func:`fit_groups`).
    name : str
        The argument's name, used in error messages.

    Returns
    -------
    codes : ndarray of int64, shape (n_samples,)

    Raises
    ------
    ValueError
        If a label is not one of ``groups``.
    """
    index = {g: i for i, g in enumerate(groups.tolist())}
    codes = np.fromiter(
        (index.get(v, -1) for v in labels.tolist()), dtype=np.int64, count=len(labels)
    )
    if (codes < 0).any():
        unseen = list(dict.fromkeys(labels[codes < 0].tolist()))[:5]
        raise ValueError(
            f"{name} holds group(s) {unseen} that were not seen in fit; the groups seen in "
            f"fit are {groups.tolist()}."
        )
    return codes


def resolve_sensitive_features(
    X: Any,
    sensitive_features: Any,
    sensitive_feature: Hashable | Sequence[Hashable] | None,
    *,
    n_samples: int | None = None,
) -> np.ndarray:
    """Return the group labels of the rows of ``X``.

    ``sensitive_features`` (routed metadata) wins; otherwise ``sensitive_feature`` names
    the column(s) of ``X`` that hold the groups: pandas column names, or integer
    positions for arrays. Several names make intersectional groups.

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_samples, n_features)
    sensitive_features : array-like or None
    sensitive_feature : hashable, sequence of hashables, or None
    n_samples : int, optional
        Number of rows; read from ``X`` when omitted.

    Returns
    -------
    labels : ndarray of object, shape (n_samples,)
    """
    if n_samples is None:
        n_samples = _num_rows(X)
    if sensitive_features is not None:
        return check_sensitive_features(sensitive_features, n_samples)
    if sensitive_feature is None:
        return check_sensitive_features(None, n_samples)
    names = (
        list(sensitive_feature)
        if isinstance(sensitive_feature, list | tuple)
        else [sensitive_feature]
    )
    if isinstance(X, pd.DataFrame):
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(_not_a_column(missing, X.columns))
        frame = X[names]
    else:
        # scikit-learn's own checks and messages for what is not a 2-D table (1-D, sparse,
        # no rows or columns), without converting the values: a column of labels stays
        array = check_array(X, dtype=None, ensure_all_finite=False, input_name="X")
        array = np.asarray(array, dtype=object)
        # True is an int to Python, but as a column index it is a boolean mask
        named = [
            c
            for c in names
            if isinstance(c, bool | np.bool_) or not isinstance(c, int | np.integer)
        ]
        if named:
            raise ValueError(
                f"sensitive_feature {named[0]!r} is not a column of X: X is an array with no "
                f"column names ({array.shape[1]} columns), and {named[0]!r} is not an integer "
                "column index. A step before this estimator (a "
                "ColumnTransformer, a scaler) may have turned the DataFrame into an array: "
                "call set_output(transform='pandas') on it, give an integer column index, or "
                "pass the groups as sensitive_features."
            )
        bad = [c for c in names if not -array.shape[1] <= c < array.shape[1]]
        if bad:
            raise ValueError(
                f"sensitive_feature {bad} is not a column of X: not an integer column index "
                f"of its {array.shape[1]} columns."
            )
        frame = array[:, names]
    return check_sensitive_features(frame, n_samples, name="sensitive_feature")


def _not_a_column(missing: list, columns: pd.Index) -> str:
    """The message for sensitive_feature names that X's columns lack, with likely renames."""
    renamed = [
        str(c) for c in columns for m in missing if str(c).endswith(f"__{m}") or str(c) == str(m)
    ]
    hint = f" {renamed} may be it, renamed." if renamed else ""
    return (
        f"sensitive_feature {missing[0]!r} is not a column of X (X does not have it; its "
        f"columns are {list(columns)[:20]}). A ColumnTransformer before this estimator "
        "renames the columns it keeps ('remainder__sex') and drops those no transformer "
        f"lists.{hint} Keep the "
        "column under its name with remainder='passthrough' and "
        "verbose_feature_names_out=False, or pass the groups as sensitive_features."
    )


def _num_rows(X: Any) -> int:
    if hasattr(X, "shape") and len(X.shape) >= 1:
        return int(X.shape[0])
    if hasattr(X, "__len__"):
        return len(X)
    return int(np.asarray(X).shape[0])  # array-likes with __array__ alone
