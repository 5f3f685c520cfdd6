"""The task data an editor computes its losses on, packed so that cross-validation
over networks passes it through whole, and the checks of what an editor is given: the
task data, the features it names, the networks."""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import nn

from .._groups import (
    check_sensitive_features,
    encode_groups,
    fit_groups,
    resolve_sensitive_features,
)
from ._graph import as_sequential
from ._measures import report_rows

__all__ = [
    "TaskData",
    "calibration_arrays",
    "check_networks",
    "check_outputs",
    "encode_labels",
    "evaluation_arrays",
    "network_classes",
    "report_table",
    "resolve_features",
    "task_arrays",
    "unpack_task_data",
]


class TaskData:
    """Task data (X, y and optional sensitive features) for :class:`MetanetEditor`.

    ``GridSearchCV`` and ``cross_validate`` split every fit parameter that looks like an
    array with one entry per sample. An editor's samples are networks, so a plain
    ``(X, y)`` tuple is split whenever the population happens to hold as many networks
    as the tuple has entries (2 or 3). A ``TaskData`` is not array-like and always
    reaches ``fit`` whole.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric inputs of the networks.
    y : array-like of shape (n_samples,)
        Labels.
    sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns), optional
        Group membership, for the fairness requirements.

    Examples
    --------
    >>> import numpy as np
    >>> data = TaskData(np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    >>> data.X.shape, data.sensitive_features is None
    ((4, 2), True)
    """

    def __init__(self, X: Any, y: Any, sensitive_features: Any = None) -> None:
        self.X = X
        self.y = y
        self.sensitive_features = sensitive_features

    def __repr__(self) -> str:
        shape = getattr(self.X, "shape", None)
        groups = "" if self.sensitive_features is None else ", with sensitive_features"
        return f"TaskData(X of shape {shape}{groups})"


def unpack_task_data(data: Any) -> tuple[Any, Any, Any]:
    """Return ``(X, y, sensitive_features)`` from a :class:`TaskData` or a tuple.

    Raises
    ------
    ValueError
        If ``data`` is missing, is a list (what cross-validation makes of a tuple it
        split), or is a tuple of the wrong length.
    """
    if data is None:
        raise ValueError(
            "data is required: pass the task data as data=(X, y), data=(X, y, "
            "sensitive_features) or data=TaskData(X, y, sensitive_features)."
        )
    if isinstance(data, TaskData):
        return data.X, data.y, data.sensitive_features
    if isinstance(data, list):
        raise ValueError(
            "data is a list, which is what cross-validation makes of an (X, y) tuple when "
            "it splits it like a per-network array (it does so when the population has as "
            "many networks as the tuple has entries). Pass data=TaskData(X, y[, "
            "sensitive_features]) instead; it always reaches fit whole."
        )
    if isinstance(data, tuple) and len(data) in (2, 3):
        return data[0], data[1], data[2] if len(data) == 3 else None
    raise ValueError(
        f"data must be (X, y), (X, y, sensitive_features) or a TaskData, got "
        f"{type(data).__name__}" + (f" of length {len(data)}." if isinstance(data, tuple) else ".")
    )


def resolve_features(features: Any, names: list[str], has_names: bool) -> list[int]:
    """Indices of ``features`` (column names of the task data's X, or indices)."""
    if features is None:
        return []
    items = [features] if isinstance(features, str | Integral) else features
    out = []
    for item in items:
        if isinstance(item, Integral) and not isinstance(item, bool):
            if not 0 <= item < len(names):
                raise ValueError(
                    f"features holds index {item}, but the task data has {len(names)} "
                    "input features."
                )
            out.append(int(item))
        elif isinstance(item, str):
            if item not in names:
                hint = "" if has_names else " (X has no column names; use integer indices)"
                raise ValueError(
                    f"features names {item!r}, which is not a column of the task data's "
                    f"X{hint}; columns are {names[:20]}."
                )
            out.append(names.index(item))
        else:
            raise ValueError(f"features must hold column names or indices, got {item!r}.")
    return sorted(set(out))


def check_networks(networks: Any, n_features: int) -> list[nn.Sequential]:
    """The networks as ``nn.Sequential`` modules, all reading ``n_features`` inputs."""
    if isinstance(networks, nn.Module) or hasattr(networks, "module"):
        raise ValueError(
            "networks must be a list of networks (the samples); wrap a single network in a list."
        )
    networks = list(networks)
    if len(networks) == 0:
        raise ValueError(
            "networks is empty: pass a list of at least one fitted network "
            "(skorch NeuralNetClassifier or nn.Sequential), e.g. from make_population."
        )
    modules = []
    for i, network in enumerate(networks):
        module = as_sequential(network, name=f"network {i}")
        width = next(m for m in module if isinstance(m, nn.Linear)).in_features
        if width != n_features:
            raise ValueError(
                f"network {i} takes {width} input features but the task data has "
                f"{n_features} columns; edit networks trained on this task's inputs."
            )
        modules.append(module)
    return modules


def task_arrays(X: Any, y: Any, sensitive: Any, sensitive_feature: Any):
    """The task data checked: ``X`` as float32, ``y``, the group labels (or None), the
    names of X's columns and whether X had names of its own."""
    if sp.issparse(X):
        raise ValueError(
            f"the task data's X is a sparse {type(X).__name__}; the networks read dense "
            "inputs, so pass a dense array (X.toarray()) or a DataFrame."
        )
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns]
        has_names = True
    else:
        has_names = False
        names = None
    try:
        X_np = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "the task data's X must be numeric (the networks' inputs); preprocess it, "
            f"e.g. with a ColumnTransformer, first ({exc})."
        ) from exc
    if X_np.ndim != 2:
        raise ValueError(f"the task data's X must be 2-D, got shape {X_np.shape}.")
    # a DataFrame's values may come back read-only, which torch does not wrap
    X_np = np.require(X_np, requirements="W")
    if len(X_np) == 0:
        raise ValueError(
            "the task data has no rows (X has shape "
            f"{X_np.shape}); accuracies and gaps need at least one."
        )
    if not np.isfinite(X_np).all():
        raise ValueError("the task data's X holds NaN or infinite values.")
    if sp.issparse(y):
        raise ValueError("the task data's y is a sparse matrix; pass a 1-D array of labels.")
    y_np = np.asarray(y)
    if y_np.ndim != 1 or len(y_np) != len(X_np):
        raise ValueError(
            f"the task data's y must be 1-D with one label per row of X ({len(X_np)}), "
            f"got shape {y_np.shape}."
        )
    missing = pd.isna(y_np)
    if missing.any():
        raise ValueError(
            f"the task data's y holds {int(missing.sum())} missing labels (NaN or None), "
            f"the first at row {int(np.flatnonzero(missing)[0])}; every row needs its label."
        )
    if names is None:
        names = [f"x{j}" for j in range(X_np.shape[1])]
    if sensitive is None and sensitive_feature is not None:
        sensitive = resolve_sensitive_features(X, None, sensitive_feature)
    labels = None if sensitive is None else check_sensitive_features(sensitive, len(X_np))
    return X_np, y_np, labels, names, has_names


def network_classes(networks: list, modules: list[nn.Sequential]) -> np.ndarray:
    """The labels of the networks' outputs, which all networks must share: a skorch net's
    ``classes_`` (output ``i`` predicts ``classes_[i]``), or ``0 .. n_outputs - 1`` for a
    plain module or a net that has none."""
    found = None
    for i, (network, module) in enumerate(zip(networks, modules, strict=True)):
        n_outputs = next(m for m in reversed(module) if isinstance(m, nn.Linear)).out_features
        classes = None
        if not isinstance(network, nn.Module):
            try:
                classes = np.asarray(network.classes_)
            except AttributeError:
                classes = None
        if classes is None:
            classes = np.arange(n_outputs)
        if classes.ndim != 1 or len(classes) != n_outputs or len(pd.unique(classes)) != n_outputs:
            raise ValueError(
                f"network {i} has {n_outputs} outputs but classes_ {classes.tolist()!r}; "
                "a classifier needs one distinct class per output."
            )
        if found is None:
            found = (i, classes)
        elif len(classes) != len(found[1]) or list(classes.tolist()) != list(found[1].tolist()):
            raise ValueError(
                f"network {i} predicts the classes {classes.tolist()!r} but network "
                f"{found[0]} predicts {found[1].tolist()!r}; an editor serves networks of "
                "one task, whose outputs stand for the same classes in the same order."
            )
    return found[1]


def check_outputs(networks: list, modules: list[nn.Sequential], classes: np.ndarray) -> None:
    """Raise a ValueError unless every network has the outputs, and the classes, of the
    population an editor was fitted on (``classes``)."""
    for i, module in enumerate(modules):
        width = next(m for m in reversed(module) if isinstance(m, nn.Linear)).out_features
        if width != len(classes):
            raise ValueError(
                f"network {i} has {width} outputs, but the editor was fitted on networks "
                f"with {len(classes)} (its metanetwork knows each output neuron by its "
                "class); edit networks of the task it was fitted on, or fit an editor on "
                f"a population of {width}-output networks."
            )
    found = network_classes(networks, modules)
    if found.tolist() != np.asarray(classes).tolist():
        raise ValueError(
            f"the networks predict the classes {found.tolist()!r}, but the editor was "
            f"fitted on networks of the classes {np.asarray(classes).tolist()!r}."
        )


def encode_labels(
    classes: np.ndarray, y: np.ndarray, *, what: str = "the task data's y"
) -> np.ndarray:
    """Output indices of the labels ``y`` (``classes[code] == label``), or a ValueError
    that names the labels the networks do not predict."""
    codes = pd.Index(classes).get_indexer(y)
    if (codes < 0).any():
        unknown = pd.unique(np.asarray(y)[codes < 0])
        shown = sorted(unknown.tolist(), key=repr)[:5]
        raise ValueError(
            f"{what} holds labels {shown}{' ...' if len(unknown) > 5 else ''} that are not "
            f"among the networks' classes_ {np.asarray(classes).tolist()!r}: output i of "
            "a network predicts classes_[i], so the task labels must be those classes "
            "(same values and type; recode y, or the networks' classes)."
        )
    return codes


def evaluation_arrays(editor, data: Any, method: str):
    """``data`` given to a fitted editor's ``score``/``report`` (or ``transform``'s
    calibration rows), checked against what it was fitted on: ``(X, label codes, group
    codes or None, n_groups)``."""
    if data is None:
        raise ValueError(
            f"{method} needs data=: a fitted MetanetEditor keeps no task rows (it holds "
            "weights and statistics only), so pass the rows to measure on, e.g. "
            f"{method}(networks, data=TaskData(X_test, y_test)); the rows fit held out "
            "are X[editor.holdout_indices_]. In GridSearchCV or cross_validate, turn on "
            "metadata routing (sklearn.set_config(enable_metadata_routing=True)): the "
            "editor requests data= for fit and score by default."
        )
    X, y, sensitive = unpack_task_data(data)
    X_np, y_np, labels, _, _ = task_arrays(X, y, sensitive, editor.sensitive_feature)
    if X_np.shape[1] != editor.n_features_in_task_:
        raise ValueError(
            f"data's X has {X_np.shape[1]} columns; the editor was fitted on "
            f"{editor.n_features_in_task_}."
        )
    # what the requirement needs to be measured: its groups, where it has them
    editor.requirement_.check_task(n_classes=editor.n_classes_, has_groups=labels is not None)
    codes = None
    if labels is not None:
        groups = editor.groups_ if editor.groups_ is not None else fit_groups(labels)
        codes = encode_groups(labels, groups)
        n_groups = len(groups)
    else:
        n_groups = 0
    return X_np, encode_labels(editor.classes_, y_np), codes, n_groups


def calibration_arrays(editor, calibration: Any, device) -> tuple:
    """``transform``'s ``calibration``, checked: ``(rows, None)`` for a requirement that
    takes its strength from them (the tensors ``(X, y, groups, n_groups)`` a calibrated
    edit reads), ``(None, X)`` for one whose exact edits refit on rows (float64 inputs,
    read in place of the proxy rows; labels and groups, where given, are not read), and
    ``(None, None)`` without them."""
    requirement = editor.requirement_
    if calibration is None:
        return None, None
    if requirement.reads_calibration:
        X_np, y_codes, codes, n_groups = evaluation_arrays(editor, calibration, "transform")
        tensors = (X_np, y_codes, codes)
        return (*(torch.as_tensor(part, device=device) for part in tensors), n_groups), None
    if not requirement.refits_on_rows:
        raise ValueError(
            f"calibration= sets the strength of the parity requirements' edits and the "
            f"rows the others refit on; requirement={editor.requirement!r} reads neither."
        )
    X = (
        unpack_task_data(calibration)[0]
        if isinstance(calibration, TaskData | tuple)
        else calibration
    )
    n_rows = np.shape(X)[0] if np.ndim(X) else 0
    try:
        X_np = task_arrays(X, np.zeros(n_rows), None, None)[0]
    except ValueError as exc:
        raise ValueError(f"calibration: {exc}") from exc
    if X_np.shape[1] != editor.n_features_in_task_:
        raise ValueError(
            f"calibration's X has {X_np.shape[1]} columns; the editor was fitted on "
            f"{editor.n_features_in_task_}."
        )
    if len(X_np) <= X_np.shape[1]:
        warnings.warn(
            f"calibration has {len(X_np)} row{'' if len(X_np) == 1 else 's'} for "
            f"{X_np.shape[1]} inputs: the refit's "
            "least squares is underdetermined on them, and its ridge keeps the weights "
            "near those given. Pass more rows than inputs (thousands, for a refit that "
            "follows them), or none for the rows drawn from the fit-time statistics.",
            UserWarning,
            stacklevel=4,
        )
    return None, torch.as_tensor(X_np, device=device, dtype=torch.float64)


def report_table(editor, arrays, details, seconds, target) -> pd.DataFrame:
    """An editor's report of its edits (``details`` and ``seconds`` of its ``_edit``) on
    the task rows of :func:`evaluation_arrays` (``arrays``), one row per network."""
    X_np, y_codes, codes, n_groups = arrays
    device = next(editor.metanet_.parameters()).device
    X = torch.as_tensor(X_np, device=device)
    y = torch.as_tensor(y_codes, device=device)
    groups = None if codes is None else torch.as_tensor(codes, device=device)
    rows = report_rows(
        editor.requirement_,
        details,
        seconds,
        (X, y, groups, n_groups),
        target,
        editor.task_feature_names_,
    )
    return pd.DataFrame.from_records(rows)
