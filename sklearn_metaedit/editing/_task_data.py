"""The task data an editor computes its losses on, packed so that cross-validation
over networks passes it through whole."""

from __future__ import annotations

from typing import Any

__all__ = ["TaskData", "unpack_task_data"]


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
