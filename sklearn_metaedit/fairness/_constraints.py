"""Parity constraints: which rows each constraint involves and which rows share a band.

A constraint turns group codes (and, where it needs them, 0/1 labels) into the arguments
of :func:`~sklearn_metaedit.fairness.project_parity` and
:func:`~sklearn_metaedit.fairness.parity_decisions`:

``demographic_parity``
    every row, one band: the groups' mean scores (selection rates) differ by at most
    epsilon.
``equal_opportunity``
    only rows with label 1, one band: the groups' true positive rates differ by at most
    epsilon; rows with label 0 are left alone.
``equalized_odds``
    all rows, one band per label: true positive rates and false positive rates each
    differ by at most epsilon, the two bands independent of each other. Both blocks are
    solved in one call through the ``blocks`` argument.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from .._constraint_names import CONSTRAINTS, NEEDS_LABELS

__all__ = [
    "CONSTRAINTS",
    "ConstraintCodes",
    "check_constraint",
    "constraint_codes",
    "needs_labels",
]


class ConstraintCodes(NamedTuple):
    """Arguments of the projection and the decisions for one constraint.

    Attributes
    ----------
    groups : Tensor of int64, shape (n,) or (batch, n)
        Group codes; ``-1`` for rows the constraint does not involve.
    blocks : Tensor of int64 of the same shape, or None
        Block of each row (each block has its own band); None means one block.
    n_groups : int
        Number of group codes per block.
    """

    groups: Tensor
    blocks: Tensor | None
    n_groups: int


def check_constraint(constraint: str) -> str:
    """Return ``constraint`` if it names a parity constraint, else raise a ValueError.

    Parameters
    ----------
    constraint : str
        One of ``CONSTRAINTS``.

    Returns
    -------
    constraint : str

    Examples
    --------
    >>> from sklearn_metaedit.fairness._constraints import check_constraint
    >>> check_constraint("equalized_odds")
    'equalized_odds'
    """
    if not isinstance(constraint, str) or constraint not in CONSTRAINTS:
        raise ValueError(f"constraint must be one of {list(CONSTRAINTS)}, got {constraint!r}.")
    return constraint


def needs_labels(constraint: str) -> bool:
    """Whether ``constraint`` needs the true labels of the rows.

    Parameters
    ----------
    constraint : str
        One of ``CONSTRAINTS``.

    Returns
    -------
    bool

    Examples
    --------
    >>> from sklearn_metaedit.fairness._constraints import needs_labels
    >>> needs_labels("demographic_parity"), needs_labels("equal_opportunity")
    (False, True)
    """
    return check_constraint(constraint) in NEEDS_LABELS


def _to_long(values, name: str, device=None) -> Tensor:
    if isinstance(values, Tensor):
        tensor = values.to(device) if device is not None else values
    else:
        array = np.asarray(values)
        if array.dtype == object:
            raise ValueError(f"{name} must be numeric, got values of dtype object.")
        tensor = torch.as_tensor(array, device=device)
    if tensor.is_floating_point():
        if not bool(torch.all(tensor == tensor.round())):
            raise ValueError(f"{name} must hold integers, got non-integer values.")
    elif tensor.dtype == torch.bool:
        tensor = tensor.long()
    return tensor.long()


def constraint_codes(
    constraint: str, group_codes, y=None, *, n_groups: int | None = None
) -> ConstraintCodes:
    """Map a constraint, group codes and labels to the projection's arguments.

    Parameters
    ----------
    constraint : str
        ``"demographic_parity"``, ``"equal_opportunity"`` or ``"equalized_odds"``.
    group_codes : Tensor or array-like of int, shape (n,) or (batch, n)
        Group codes ``0 .. n_groups - 1`` (``-1`` for a row no constraint involves).
    y : Tensor or array-like of 0/1, shape of ``group_codes``, optional
        True labels; required by equal opportunity and equalized odds.
    n_groups : int, optional
        Number of group codes; inferred from ``group_codes`` when omitted.

    Returns
    -------
    ConstraintCodes
        ``(groups, blocks, n_groups)`` on the device of ``group_codes``, to pass as
        ``project_parity(scores, codes.groups, epsilon, n_groups=codes.n_groups,
        blocks=codes.blocks)``.

    Raises
    ------
    ValueError
        For an unknown constraint name, missing labels where they are needed, labels
        other than 0/1, or a shape mismatch.

    Examples
    --------
    >>> import torch
    >>> from sklearn_metaedit.fairness._constraints import constraint_codes
    >>> codes = constraint_codes(
    ...     "equal_opportunity", torch.tensor([0, 1, 0, 1]), torch.tensor([1, 1, 0, 1])
    ... )
    >>> codes.groups, codes.blocks, codes.n_groups
    (tensor([ 0,  1, -1,  1]), None, 2)
    """
    check_constraint(constraint)
    groups = _to_long(group_codes, "group_codes")
    if groups.numel() and int(groups.min()) < -1:
        raise ValueError("group_codes must hold codes 0 .. n_groups - 1, or -1.")
    if n_groups is None:
        n_groups = max(int(groups.max()) + 1, 1) if groups.numel() else 1
    if constraint == "demographic_parity":
        return ConstraintCodes(groups, None, int(n_groups))
    if y is None:
        raise ValueError(
            f"constraint={constraint!r} needs the true labels y (0/1) of the rows; pass y, "
            "or use constraint='demographic_parity', which needs none."
        )
    labels = _to_long(y, "y", device=groups.device)
    if labels.shape != groups.shape:
        raise ValueError(
            f"y has shape {tuple(labels.shape)} but group_codes has shape "
            f"{tuple(groups.shape)}; pass one label per row."
        )
    if labels.numel() and not bool(torch.all((labels == 0) | (labels == 1))):
        raise ValueError("y must hold binary labels 0 and 1 for a parity constraint.")
    if constraint == "equal_opportunity":
        return ConstraintCodes(torch.where(labels == 1, groups, -1), None, int(n_groups))
    return ConstraintCodes(groups, labels, int(n_groups))
