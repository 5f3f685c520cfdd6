"""Bundled real data sets (UCI Adult, UCI German credit), read offline."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.utils import Bunch

__all__ = ["load_adult", "load_german_credit", "make_preprocessor"]

_ATTRIBUTION = (
    "Source: UCI Machine Learning Repository, published under the Creative Commons "
    "Attribution 4.0 International licence (CC BY 4.0). The files bundled here are the "
    "original, unmodified UCI files, gzip-compressed."
)

ADULT_COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
]

ADULT_DESCR = f"""UCI Adult ("Census Income") data set
====================================

Becker, B. and Kohavi, R. (1996). Adult. UCI Machine Learning Repository.
https://doi.org/10.24432/C5XW20

Extraction from the 1994 US census. Task: predict whether a person's income exceeds
50K USD a year (target 1) from 14 attributes (6 numeric, 8 categorical). Missing values,
written ``?`` in the original files, are NaN here (3,620 rows over both splits hold one).

Official split: 32,561 training rows (``adult.data``) and 16,281 test rows
(``adult.test``). Usual sensitive attributes: ``sex`` (2 groups) and ``race`` (5 groups);
they stay in ``data`` as ordinary columns and are repeated in ``sensitive``.

{_ATTRIBUTION}
"""

GERMAN_COLUMNS = [
    "checking_status",
    "duration",
    "credit_history",
    "purpose",
    "credit_amount",
    "savings",
    "employment_since",
    "installment_rate",
    "personal_status_sex",
    "other_debtors",
    "residence_since",
    "property",
    "age",
    "other_installment_plans",
    "housing",
    "existing_credits",
    "job",
    "people_liable",
    "telephone",
    "foreign_worker",
]

GERMAN_DESCR = f"""UCI Statlog (German Credit Data) data set
=========================================

Hofmann, H. (1994). Statlog (German Credit Data). UCI Machine Learning Repository.
https://doi.org/10.24432/C5NC77

1,000 loan applicants described by 20 attributes (7 numeric, 13 categorical, coded
``A<attribute><level>`` as in the original file). Target: 1 = good credit (700 rows),
0 = bad credit (300 rows; coded 2 in the original file).

Sensitive attributes, derived from the original columns: ``sex`` from attribute 9
(A91, A93, A94 male; A92, A95 female) and ``age_group`` ("<=25" or ">25" years).

{_ATTRIBUTION}
"""


def _read_bundled(name: str, **read_csv_kwargs) -> pd.DataFrame:
    path = resources.files("sklearn_metaedit.datasets").joinpath("data", name)
    with resources.as_file(path) as file:
        return pd.read_csv(file, compression="gzip", header=None, **read_csv_kwargs)


def _text_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]


def _as_categorical(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    for column in columns:
        frame[column] = frame[column].astype("category")
    return frame


def load_adult(*, split: str = "train", return_X_y: bool = False):
    """Load the UCI Adult census-income data set from the copy bundled in the package.

    Parameters
    ----------
    split : {"train", "test", "all"}, default="train"
        The official training split (32,561 rows), test split (16,281 rows), or both
        (training rows first).
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (DataFrame, 14 columns, categoricals as ``category`` dtype), ``target``
        (Series of 0/1, 1 for income > 50K), ``sensitive`` (DataFrame with ``sex`` and
        ``race``), ``feature_names``, ``target_names``, ``frame`` and ``DESCR``.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Notes
    -----
    The data set is © its authors and published by the UCI Machine Learning Repository
    under CC BY 4.0 (Becker and Kohavi, 1996); see ``DESCR``.

    Examples
    --------
    >>> from sklearn_metaedit.datasets import load_adult
    >>> adult = load_adult(split="test")
    >>> adult.data.shape, adult.sensitive.columns.tolist()
    ((16281, 14), ['sex', 'race'])
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}.")
    # Both splits are always read, so that a categorical column has the same categories
    # in either split (some categories occur in one split only).
    parts = [
        _read_bundled(
            name,
            names=[*ADULT_COLUMNS, "income"],
            sep=",",
            skipinitialspace=True,
            na_values="?",
            comment="|",
        ).dropna(how="all")
        for name in ("adult.data.csv.gz", "adult.test.csv.gz")
    ]
    frame = pd.concat(parts, ignore_index=True)
    target = frame.pop("income").str.rstrip(".").eq(">50K").astype(np.int64)
    target.name = "income>50K"
    frame = _as_categorical(frame, _text_columns(frame))
    if split != "all":
        rows = slice(0, len(parts[0])) if split == "train" else slice(len(parts[0]), None)
        frame = frame.iloc[rows].reset_index(drop=True)
        target = target.iloc[rows].reset_index(drop=True)
    sensitive = frame[["sex", "race"]].copy()
    return _bunch(frame, target, sensitive, ["<=50K", ">50K"], ADULT_DESCR, return_X_y)


def load_german_credit(*, return_X_y: bool = False):
    """Load the UCI Statlog German credit data set from the copy bundled in the package.

    Parameters
    ----------
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        ``data`` (DataFrame, 20 columns), ``target`` (Series, 1 = good credit),
        ``sensitive`` (DataFrame with ``sex`` and ``age_group``), ``feature_names``,
        ``target_names``, ``frame`` and ``DESCR``.
    (data, target) : tuple
        If ``return_X_y`` is True.

    Notes
    -----
    The data set is © its author and published by the UCI Machine Learning Repository
    under CC BY 4.0 (Hofmann, 1994); see ``DESCR``.

    ``sensitive["sex"]`` is read from the column ``personal_status_sex``, which also
    encodes marital status (A91 to A95): a network that must not read sex must not read
    that column, whose one-hot columns after :func:`make_preprocessor` are named
    ``personal_status_sex_A9*``. With 1,000 rows, a calibration split leaves a few
    hundred rows, on which a parity bound adds about ``2.3 / sqrt(rows)``, more than a
    gap of 0.05 (see the editing guide).

    Examples
    --------
    >>> from sklearn_metaedit.datasets import load_german_credit
    >>> german = load_german_credit()
    >>> german.data.shape, german.sensitive["sex"].value_counts().to_dict()
    ((1000, 20), {'male': 690, 'female': 310})
    """
    frame = _read_bundled("german.data.csv.gz", names=[*GERMAN_COLUMNS, "credit"], sep=" ")
    target = frame.pop("credit").eq(1).astype(np.int64)
    target.name = "good_credit"
    frame = _as_categorical(frame, _text_columns(frame))
    sex = frame["personal_status_sex"].map(
        {"A91": "male", "A92": "female", "A93": "male", "A94": "male", "A95": "female"}
    )
    sensitive = pd.DataFrame(
        {
            "sex": sex.astype(str),
            "age_group": np.where(frame["age"] <= 25, "<=25", ">25"),
        }
    )
    return _bunch(frame, target, sensitive, ["bad", "good"], GERMAN_DESCR, return_X_y)


def _bunch(frame, target, sensitive, target_names, descr, return_X_y):
    if return_X_y:
        return frame, target
    return Bunch(
        data=frame,
        target=target,
        sensitive=sensitive,
        feature_names=list(frame.columns),
        target_names=target_names,
        frame=pd.concat([frame, target], axis=1),
        DESCR=descr,
    )


def _to_float32(X):
    return np.asarray(X, dtype=np.float32)


def make_preprocessor(*, drop: str | list[str] | tuple[str, ...] = ()) -> Pipeline:
    """A ready transformer that turns a tabular DataFrame into a float32 matrix for a network.

    Numeric columns are standardised; categorical (``category`` / ``object``) columns are
    imputed with their most frequent value and one-hot encoded (categories unseen in fit
    encode as all zeros). The output is a dense ``float32`` array, what a skorch network
    expects, so the preprocessor goes first in a :class:`~sklearn.pipeline.Pipeline`.

    Parameters
    ----------
    drop : str or sequence of str, default=()
        Columns to leave out of the output (e.g. ``("sex", "race")`` for a group-blind
        model whose groups are passed as ``sensitive_features`` instead); a single
        name is one column.

    Returns
    -------
    preprocessor : Pipeline
        Unfitted; ``fit_transform(data)`` returns an ``(n_samples, n_outputs)`` float32 array.

    Examples
    --------
    >>> from sklearn_metaedit.datasets import load_adult, make_preprocessor
    >>> adult = load_adult(split="test")
    >>> Xt = make_preprocessor(drop=("sex",)).fit_transform(adult.data)
    >>> Xt.dtype, Xt.shape[0]
    (dtype('float32'), 16281)
    """
    # a bare string is one column name, not the sequence of its characters
    drop = [drop] if isinstance(drop, str) else list(drop)
    numeric = make_column_selector(dtype_include=np.number)
    categorical = make_column_selector(dtype_include=["category", "object", "string"])
    columns = ColumnTransformer(
        [
            ("drop", "drop", drop),
            ("numeric", StandardScaler(), _Except(numeric, drop)),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                _Except(categorical, drop),
            ),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    return Pipeline(
        [
            ("columns", columns),
            ("float32", FunctionTransformer(_to_float32, feature_names_out="one-to-one")),
        ]
    )


class _Except:
    """A column selector that leaves out named columns (picklable, unlike a lambda)."""

    def __init__(self, selector, exclude):
        self.selector = selector
        self.exclude = list(exclude)

    def __call__(self, frame):
        return [c for c in self.selector(frame) if c not in self.exclude]
