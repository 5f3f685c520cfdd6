"""What a skorch network takes as X, for the fairness layer: checked, batched, chunked.

skorch nets take 2-D tables, but also N-D arrays (images), torch tensors, dicts of
arrays (one entry per keyword of the module's ``forward``) and torch ``Dataset``s
yielding ``(X_i, y_i)`` pairs. Tables go through scikit-learn's own validation in the
estimator; this module checks the other kinds as strictly as their nature allows
(numeric, finite, one row per sample in every entry, the same sample shapes at
prediction as in fit) and gives the estimator what it needs from each: the network's
training input with the group codes beside it, a two-sample example batch, and the
inference batches.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import sparse
from torch.utils.data import DataLoader, Dataset, Subset

__all__ = [
    "RESERVED_KEYS",
    "GroupedDataset",
    "NetworkInput",
    "check_network_input",
    "check_same_shapes",
    "dataset_column",
    "dataset_targets",
    "example_batch",
    "inference_batches",
    "input_kind",
    "kind_mismatch",
    "training_input",
]

#: Keys the projection layer's forward pass takes beside the network's inputs.
RESERVED_KEYS = ("groups", "labels", "strata")


def input_kind(X: Any) -> str:
    """``"table"``, ``"array"`` (N-D), ``"tensor"``, ``"dict"`` or ``"dataset"``.

    A table is what scikit-learn's ``check_array`` takes (a DataFrame, a 2-D array or
    array-like, a sparse matrix); an array-like whose numpy form has three or more
    dimensions is an ``"array"``.
    """
    if isinstance(X, torch.Tensor):
        return "tensor"
    if sparse.issparse(X):
        # a scipy DOK matrix is a dict, but a table
        return "table"
    if isinstance(X, Mapping):
        return "dict"
    if isinstance(X, np.ndarray):
        return "array" if X.ndim >= 3 else "table"
    if isinstance(X, Dataset):
        return "dataset"
    if isinstance(X, list | tuple) and len(X) and np.ndim(X) >= 3:
        return "array"
    return "table"


@dataclass(frozen=True)
class NetworkInput:
    """A checked non-table X.

    Attributes
    ----------
    kind : {"array", "tensor", "dict", "dataset"}
    data : ndarray, Tensor, dict or Dataset
        What the network is given (floating arrays and tensors as float32).
    n_samples : int
    sample_shapes : tuple, dict or None
        The shape of one sample (per key for a dict); None for a Dataset.
    """

    kind: str
    data: Any
    n_samples: int
    sample_shapes: Any

    @property
    def keyword(self) -> bool:
        """Whether the network takes its inputs as keywords (a dict) rather than one tensor."""
        if self.kind == "dataset":
            return isinstance(_first_input(self.data), Mapping)
        return self.kind == "dict"


def _check_values(values: Any, name: str, convert: bool = True) -> Any:
    """A numeric, finite array or tensor of at least one dimension; floats as float32
    when ``convert``."""
    if isinstance(values, torch.Tensor):
        if values.ndim == 0:
            raise ValueError(f"{name} is a 0-d tensor; it needs one row per sample.")
        if values.is_complex():
            raise ValueError(f"{name} is a complex tensor; the network needs real numbers.")
        if values.is_floating_point():
            if not bool(torch.isfinite(values).all()):
                raise ValueError(
                    f"{name} holds NaN or infinite values; every sample needs finite inputs."
                )
            if convert:
                values = values.float()
        return values
    array = np.asarray(values)
    if array.ndim == 0:
        raise ValueError(f"{name} is a scalar; it needs one row per sample.")
    if array.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} has dtype {array.dtype}; the network needs numbers (bool, integer or "
            "float). Encode text and objects before, or pass the groups as "
            "sensitive_features."
        )
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(
                f"{name} holds NaN or infinite values; every sample needs finite inputs."
            )
        if convert:
            array = array.astype(np.float32, copy=False)
    if not convert:
        return array
    # pandas and memory maps hand out read-only arrays, which torch refuses to wrap
    return array if array.flags.writeable else array.copy()


def check_network_input(
    X: Any,
    *,
    kind: str | None = None,
    drop_keys: list | None = None,
    convert: bool = True,
    reserved_keys: tuple = (),
) -> NetworkInput:
    """Check a non-table X and return it as the network will be given it.

    Parameters
    ----------
    X : ndarray of ndim >= 3, Tensor of ndim >= 2, dict of arrays/tensors, or Dataset
    kind : str, optional
        :func:`input_kind` of ``X``, when known.
    drop_keys : list, optional
        Keys of a dict X to leave out of the network's input (the sensitive ones).
    convert : bool, default=True
        Give floating arrays and tensors as float32; with False, only check.
    reserved_keys : tuple, default=()
        Keys a dict X may not have (:data:`RESERVED_KEYS` for the fairness layer).

    Returns
    -------
    NetworkInput

    Raises
    ------
    ValueError
        For an empty X, non-numeric or non-finite values, a dict whose entries differ in
        length, or a dict key that the projection layer reserves.
    """
    kind = input_kind(X) if kind is None else kind
    if kind == "dataset":
        n = len(X)
        if n == 0:
            raise ValueError("X is an empty Dataset; it needs at least one sample.")
        return NetworkInput(kind, X, n, None)
    if kind == "dict":
        reserved = [k for k in X if k in reserved_keys]
        if reserved:
            raise ValueError(
                f"X is a dict with the key {reserved[0]!r}, which the fairness layer uses for "
                f"its own inputs {list(RESERVED_KEYS)}; rename that entry (and the module's "
                "forward argument)."
            )
        data = {
            key: _check_values(value, f"X[{key!r}]", convert)
            for key, value in X.items()
            if key not in (drop_keys or [])
        }
        if not data:
            raise ValueError("X is a dict with no entries for the network.")
        lengths = {key: len(value) for key, value in data.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"X's entries have different numbers of samples {lengths}; every entry needs "
                "one row per sample."
            )
        n = next(iter(lengths.values()))
        shapes = {key: tuple(value.shape[1:]) for key, value in data.items()}
    else:
        data = _check_values(X if kind == "tensor" else np.asarray(X), "X", convert)
        if data.ndim < 2:
            raise ValueError(
                f"X is a 1-D {kind} of shape {tuple(data.shape)}; give each sample its own "
                "row (reshape(-1, 1) for a single feature)."
            )
        n, shapes = len(data), tuple(data.shape[1:])
    if n == 0:
        raise ValueError(f"X has 0 samples (a {kind}); it needs at least one.")
    return NetworkInput(kind, data, n, shapes)


_NAMES = {
    "table": "a table",
    "array": "an N-D array",
    "tensor": "a tensor",
    "dict": "a dict of arrays",
    "dataset": "a Dataset",
}


def kind_mismatch(kind: str, fitted_kind: str) -> str:
    """The message for an X of another kind at prediction than in fit."""
    return (
        f"X is {_NAMES[kind]}, but the estimator was fitted on {_NAMES[fitted_kind]}; give "
        "prediction the same kind of input as fit, with samples of the same shape."
    )


def check_same_shapes(fitted: Any, given: NetworkInput, fitted_kind: str) -> None:
    """Raise a ValueError when ``given`` is not the kind and sample shape seen in fit.

    N-D arrays and tensors count as one kind (skorch turns one into the other); a Dataset
    goes with any kind but a table, since its samples' shape is not known without reading
    them.
    """
    if "dataset" in (given.kind, fitted_kind) and "table" not in (given.kind, fitted_kind):
        return
    arrays = {"array", "tensor"}
    if given.kind != fitted_kind and not {given.kind, fitted_kind} <= arrays:
        raise ValueError(kind_mismatch(given.kind, fitted_kind))
    if fitted is not None and given.sample_shapes != fitted:
        raise ValueError(
            f"X's samples have shape {given.sample_shapes}, but the estimator was fitted on "
            f"samples of shape {fitted}."
        )


class GroupedDataset(Dataset):
    """A user's Dataset, its items ``(X_i, y_i)`` given back as ``({inputs, groups...}, code)``.

    Parameters
    ----------
    base : Dataset
        Yields ``(X_i, y_i)`` (``X_i`` a tensor, an array or a dict); ``y_i`` is replaced
        by ``targets[i]``.
    extra : dict of ndarray
        Per-sample entries added beside the inputs (group codes, strata, labels).
    targets : ndarray of int64, shape (n_samples,)
    """

    def __init__(self, base: Dataset, extra: dict, targets: np.ndarray):
        self.base = base
        self.extra = extra
        self.targets = targets

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        item = self.base[i]
        x = item[0] if isinstance(item, tuple | list) else item
        inputs = dict(x) if isinstance(x, Mapping) else {"X": x}
        inputs.update({key: values[i] for key, values in self.extra.items()})
        return inputs, self.targets[i]


def training_input(inputs: NetworkInput, extra: dict, y_codes: np.ndarray):
    """``(X, y)`` for the wrapped skorch net's fit: the inputs with ``extra`` beside them."""
    if inputs.kind == "dataset":
        return GroupedDataset(inputs.data, extra, y_codes), None
    if inputs.kind == "dict":
        return {**inputs.data, **extra}, y_codes
    return {"X": inputs.data, **extra}, y_codes


def dataset_column(dataset: Any, key: str) -> np.ndarray:
    """Entry ``key`` of the training input's dict, from a skorch Dataset, a
    :class:`GroupedDataset` or a ``Subset`` of either."""
    if isinstance(dataset, Subset):
        return dataset_column(dataset.dataset, key)[np.asarray(dataset.indices)]
    if isinstance(dataset, GroupedDataset):
        return np.asarray(dataset.extra[key])
    return np.asarray(dataset.X[key])


def _first_input(dataset: Dataset) -> Any:
    item = dataset[0]
    return item[0] if isinstance(item, tuple | list) else item


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """The ``y_i`` of every item of ``dataset`` (reads each item once)."""
    targets = []
    for i in range(len(dataset)):
        item = dataset[i]
        if not isinstance(item, tuple | list) or len(item) < 2:
            raise ValueError(
                "X is a Dataset whose items are not (X_i, y_i) pairs, and y was not given; "
                "pass y, one label per item."
            )
        label = item[1]
        targets.append(label.item() if isinstance(label, torch.Tensor) else label)
    return np.asarray(targets)


def _to_device(batch: Any, device) -> Any:
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    return torch.as_tensor(batch).to(device)


def example_batch(inputs: NetworkInput, device="cpu") -> Any:
    """The first two samples, as the network takes them (a tensor or a dict of tensors)."""
    return next(inference_batches(inputs, 2, device))


def inference_batches(inputs: NetworkInput, batch_size: int, device) -> Iterator[Any]:
    """The samples in order, ``batch_size`` at a time, as tensors (or dicts of them) on
    ``device``; ``batch_size=-1`` gives one batch."""
    n = inputs.n_samples
    size = n if batch_size == -1 else max(1, int(batch_size))
    if inputs.kind == "dataset":
        # a loader draws a base seed for its workers at every iteration: from a generator
        # of its own, so that inference never moves torch's global one
        loader = DataLoader(
            inputs.data, batch_size=size, shuffle=False, generator=torch.Generator()
        )
        for batch in loader:
            x = batch[0] if isinstance(batch, tuple | list) else batch
            yield _to_device(x, device)
        return
    for start in range(0, n, size):
        rows = slice(start, start + size)
        if inputs.kind == "dict":
            yield {key: _to_device(value[rows], device) for key, value in inputs.data.items()}
        else:
            yield _to_device(inputs.data[rows], device)
