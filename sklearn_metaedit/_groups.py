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
import warnings
from collections.abc import Hashable, Mapping, Sequence
from numbers import Number
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.utils.validation import check_array

__all__ = [
    "check_sensitive_features",
    "encode_groups",
    "fit_groups",
    "num_samples",
    "resolve_sensitive_features",
    "sensitive_columns",
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


def _typed(column) -> bool:
    """True for a plain numpy column of booleans, numbers or text (one type for every
    row; not a subclass: a masked array or a matrix reads differently)."""
    return type(column) is np.ndarray and column.dtype.kind in "biufU"


def _distinct(column) -> np.ndarray | None:
    """The distinct values of a column of objects (the checks of each row read them
    alone), or None for a typed column or one holding unhashable values."""
    if _typed(column) or not isinstance(column, np.ndarray) or column.dtype.kind != "O":
        return None
    try:
        return pd.unique(column)
    except TypeError:
        return None


def _refuse(column, is_bad, name: str, what: str, examples: str, rule: str, distinct=None) -> None:
    """Raise a ValueError naming the rows of ``column`` where ``is_bad`` holds (none
    where it holds for none of its ``distinct`` values, where given)."""
    if distinct is not None and not any(is_bad(v) for v in distinct):
        return
    if _typed(column):  # only floats can be NaN or infinite, and then both tests read them
        if column.dtype.kind != "f":
            return
        bad = np.isnan(column) if is_bad is _is_missing else np.isinf(column)
    else:
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
        array = sensitive_features
        if not (_typed(array) and array.ndim in (1, 2)):
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
    distinct = [_distinct(column) for column in columns]
    for j, column in enumerate(columns):
        col = f" (column {j})" if len(columns) > 1 else ""
        _refuse(
            column,
            _is_missing,
            f"{name}{col}",
            "missing",
            "(NaN/None)",
            "every row needs a group label",
            distinct[j],
        )
        same = _same_text(column if distinct[j] is None else distinct[j])
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
            distinct[j],
        )
    if len(columns) == 1:
        labels = np.empty(length, dtype=object)
        column = columns[0]
        if _typed(column):
            labels[:] = column.tolist()
        elif distinct[0] is not None and not any(isinstance(v, np.generic) for v in distinct[0]):
            labels[:] = column  # plain Python values already
        else:
            labels[:] = [_plain(v) for v in column]
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

    Warns
    -----
    UserWarning
        If a label is a number with a fractional part: a continuous column makes nearly
        every row a group of its own, and a parity constraint between them means little.

    Examples
    --------
    >>> fit_groups(np.array(["b", "a", "b"], dtype=object)).tolist()
    ['a', 'b']
    """
    uniques = list(dict.fromkeys(labels.tolist()))
    fractional = [
        v for v in uniques if isinstance(v, float) and math.isfinite(v) and not v.is_integer()
    ]
    if fractional:
        warnings.warn(
            f"sensitive features hold numbers with a fractional part (e.g. {fractional[0]!r}; "
            f"{len(uniques)} distinct values), each taken as a group: parity is measured "
            "between groups, and a continuous column makes nearly every row a group of its "
            "own. Bin it into groups first (e.g. pandas.cut), or pass its categories.",
            UserWarning,
            stacklevel=3,
        )
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


def _names(sensitive_feature: Hashable | Sequence[Hashable]) -> list:
    return (
        list(sensitive_feature)
        if isinstance(sensitive_feature, list | tuple)
        else [sensitive_feature]
    )


def sensitive_columns(
    X: Any, sensitive_feature: Hashable | Sequence[Hashable] | None
) -> list | None:
    """The column names of the DataFrame ``X`` (or the keys of the dict ``X``) that
    ``sensitive_feature`` names, with a ColumnTransformer's prefixes resolved.

    A ``ColumnTransformer`` with pandas output renames the columns it keeps
    (``remainder__sex``, ``cat__sex``); a name that is not a column of ``X`` but is the
    end of exactly one column's name after ``__`` is taken to mean that column.

    Parameters
    ----------
    X : DataFrame or dict
    sensitive_feature : hashable, sequence of hashables, or None

    Returns
    -------
    columns : list or None
        None when ``sensitive_feature`` is None or ``X`` is neither a DataFrame nor a dict.

    Raises
    ------
    ValueError
        If a name is not a column (key) of ``X``, nor the suffix of exactly one.
    """
    if sensitive_feature is None:
        return None
    if isinstance(X, pd.DataFrame):
        available = list(X.columns)
    elif _is_dict(X):
        available = list(X.keys())
    else:
        return None
    resolved = []
    for name in _names(sensitive_feature):
        if name in available:
            resolved.append(name)
            continue
        suffix = f"__{name}"
        prefixed = [c for c in available if isinstance(c, str) and c.endswith(suffix)]
        if len(prefixed) == 1:
            resolved.append(prefixed[0])
        elif isinstance(X, pd.DataFrame):
            raise ValueError(_not_a_column([name], X.columns, prefixed))
        else:
            raise ValueError(
                f"sensitive_feature {name!r} is not a key of X: X is a dict with keys "
                f"{available[:20]}; name the key that holds the groups, or pass them as "
                "sensitive_features."
            )
    return resolved


def resolve_sensitive_features(
    X: Any,
    sensitive_features: Any,
    sensitive_feature: Hashable | Sequence[Hashable] | None,
    *,
    n_samples: int | None = None,
) -> np.ndarray:
    """Return the group labels of the rows of ``X``.

    ``sensitive_features`` (routed metadata) wins; otherwise ``sensitive_feature`` names
    the column(s) of ``X`` that hold the groups: pandas column names (a name that a
    ColumnTransformer prefixed, such as ``remainder__sex`` for ``sex``, is found when
    exactly one column ends in it), integer positions for arrays, or keys of a dict of
    arrays (one value per sample). Several names make intersectional groups.

    Parameters
    ----------
    X : array-like or DataFrame of shape (n_samples, n_features), or dict of arrays
    sensitive_features : array-like or None
    sensitive_feature : hashable, sequence of hashables, or None
    n_samples : int, optional
        Number of rows; read from ``X`` when omitted.

    Returns
    -------
    labels : ndarray of object, shape (n_samples,)
    """
    if n_samples is None:
        n_samples = num_samples(X)
    if sensitive_features is not None:
        return check_sensitive_features(sensitive_features, n_samples)
    if sensitive_feature is None:
        return check_sensitive_features(None, n_samples)
    names = _names(sensitive_feature)
    if isinstance(X, pd.DataFrame):
        frame = X[sensitive_columns(X, names)]
    elif _is_dict(X):
        keys = sensitive_columns(X, names)
        frame = pd.DataFrame({j: _one_per_sample(X[key], key) for j, key in enumerate(keys)})
    else:
        shape = getattr(X, "shape", None)
        if (shape is not None and len(shape) > 2) or _is_tensor(X):
            raise ValueError(
                f"sensitive_feature {names[0]!r} cannot be read from X: X is "
                f"{'a tensor' if _is_tensor(X) else 'an array'} of shape {tuple(shape)}, "
                "which has no columns to name. sensitive_feature names a column of a table "
                "or a key of a dict of arrays; pass the groups as sensitive_features (one "
                "per sample)."
            )
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


def _is_dict(X: Any) -> bool:
    """A dict of arrays (skorch's X for a module with several inputs); a scipy DOK
    matrix is a dict too, but a table."""
    return isinstance(X, Mapping) and not sparse.issparse(X)


def _is_tensor(X: Any) -> bool:
    return type(X).__module__.startswith("torch") and hasattr(X, "dim")


def _one_per_sample(values: Any, key: Hashable) -> np.ndarray:
    """The dict entry ``key`` as one group label per sample (1-D)."""
    if _is_tensor(values):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=object) if not isinstance(values, pd.Series) else values
    if getattr(array, "ndim", 1) != 1:
        raise ValueError(
            f"sensitive_feature {key!r} names an entry of X of shape {np.shape(values)}; the "
            "groups must be one label per sample (1-D)."
        )
    return np.asarray(array, dtype=object)


def _not_a_column(missing: list, columns: pd.Index, prefixed: list | None = None) -> str:
    """The message for sensitive_feature names that X's columns lack, with likely renames."""
    if prefixed and len(prefixed) > 1:
        return (
            f"sensitive_feature {missing[0]!r} is not a column of X, and several columns end "
            f"in '__{missing[0]}': {prefixed}; name the one that holds the groups."
        )
    renamed = [str(c) for c in columns for m in missing if str(c) == str(m)]
    hint = f" {renamed} may be it, renamed." if renamed else ""
    return (
        f"sensitive_feature {missing[0]!r} is not a column of X (X does not have it; its "
        f"columns are {list(columns)[:20]}). A ColumnTransformer before this estimator "
        "renames the columns it keeps ('remainder__sex', found as 'sex') and drops those no "
        f"transformer lists, and one with numpy output drops every name.{hint} Keep the "
        "column with remainder='passthrough' (or a transformer of its own) and pandas "
        "output (set_output(transform='pandas')), or pass the groups as sensitive_features."
    )


def num_samples(X: Any) -> int:
    """The number of samples of ``X``: rows of a table or an array, entries of a Dataset,
    rows of each value of a dict of arrays (which must agree)."""
    if _is_dict(X):
        # a dict of arrays (what a skorch net takes): the samples are its values' rows
        lengths = {num_samples(v) for v in X.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"X is a dict whose entries have different numbers of samples {sorted(lengths)} "
                "(or no entries); every entry needs one row per sample."
            )
        return lengths.pop()
    if hasattr(X, "shape") and len(X.shape) >= 1:
        return int(X.shape[0])
    if hasattr(X, "__len__"):
        return len(X)
    return int(np.asarray(X).shape[0])  # array-likes with __array__ alone
