"""What the editor measures, as torch tensors: sparsity, features read, gaps, divergence.

The gaps are those of :mod:`sklearn_metaedit.metrics` (fairlearn's quantities), computed
on tensors of group codes so that the training losses can differentiate through them;
their names start with ``tensor_`` so that they never shadow the metrics, and their
arguments come in the metrics' order (true labels first).
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from ._graph import Weights, network_forward

__all__ = [
    "divergence",
    "features_used",
    "report_rows",
    "selection_rate_gap_bound_reader",
    "tensor_selection_rate_gap",
    "tensor_selection_rate_gap_bound",
    "weight_sparsity",
]


def weight_sparsity(weights: Weights) -> float:
    """Fraction of weights (not biases) that are exactly zero.

    Examples
    --------
    >>> import torch
    >>> weight_sparsity([(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), torch.ones(2))])
    0.75
    """
    n_zero = sum(int((w == 0).sum()) for w, _ in weights)
    return n_zero / sum(w.numel() for w, _ in weights)


def features_used(weights: Weights) -> list[int]:
    """Indices of the input features whose first-layer column is not all zero.

    Examples
    --------
    >>> import torch
    >>> features_used([(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]), torch.ones(2))])
    [1, 2]
    """
    return torch.nonzero((weights[0][0] != 0).any(dim=0)).flatten().tolist()


def tensor_selection_rate_gap(
    positive: torch.Tensor, groups: torch.Tensor, n_groups: int
) -> torch.Tensor:
    """Largest minus smallest mean of ``positive`` over the groups present.

    With 0/1 decisions this is fairlearn's ``demographic_parity_difference``
    (:func:`sklearn_metaedit.metrics.selection_rate_gap`); with probabilities it is its
    differentiable relaxation.

    Parameters
    ----------
    positive : Tensor of shape (n_samples,)
        Decisions or probabilities of the positive class.
    groups : long Tensor of shape (n_samples,)
        Group codes ``0 .. n_groups - 1``.
    n_groups : int

    Returns
    -------
    gap : scalar Tensor

    Examples
    --------
    >>> import torch
    >>> positive = torch.tensor([1.0, 0.0, 1.0, 1.0])
    >>> float(tensor_selection_rate_gap(positive, torch.tensor([0, 0, 1, 1]), 2))
    0.5
    """
    rates, _ = _group_rates(positive, groups, n_groups)
    if len(rates) < 2:
        return positive.sum() * 0.0
    return rates.max() - rates.min()


def _group_rates(positive, groups, n_groups) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of ``positive`` and the number of rows of each group present."""
    counts = torch.bincount(groups, minlength=n_groups).to(positive.dtype)
    sums = torch.zeros(n_groups, dtype=positive.dtype, device=positive.device)
    sums = sums.index_add(0, groups, positive)
    present = counts > 0
    return sums[present] / counts[present], counts[present]


def tensor_selection_rate_gap_bound(
    positive: torch.Tensor, groups: torch.Tensor, n_groups: int, z: float
) -> torch.Tensor:
    """An upper confidence bound on the selection-rate gap of the population the rows
    are drawn from: over every pair of two groups present, the difference of their rates
    plus ``z`` standard errors of that difference, ``sqrt(q_a (1 - q_a) / (n_a + 2) +
    q_b (1 - q_b) / (n_b + 2))`` with ``q = (positives + 1) / (n + 2)`` (one positive and
    one negative added to each group, as in Agresti and Caffo's interval for a
    difference of proportions, The American Statistician 54(4), 2000), so that a group
    whose rows all take one decision does not count as known exactly; ``z = 2.326``
    bounds each pair's difference at 99%, one-sided (per pair: with three groups or
    more, the bound is not simultaneous over the pairs).

    Parameters
    ----------
    positive : Tensor of shape (n_samples,)
        0/1 decisions.
    groups : long Tensor of shape (n_samples,)
    n_groups : int
    z : float

    Returns
    -------
    bound : scalar Tensor (0 with fewer than two groups present)

    Examples
    --------
    >>> import torch
    >>> positive, groups = torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1])
    >>> round(float(tensor_selection_rate_gap_bound(positive, groups, 2, 0.0)), 3)
    0.5
    >>> round(float(tensor_selection_rate_gap_bound(positive, groups, 2, 1.0)), 3)
    0.831
    """
    return selection_rate_gap_bound_reader(groups, n_groups, z)(positive)


def selection_rate_gap_bound_reader(groups: torch.Tensor, n_groups: int, z: float):
    """``bound(positive)``: :func:`tensor_selection_rate_gap_bound` of 0/1 decisions
    ``positive`` (float) on rows of these ``groups``, whose sizes are found once (a
    calibration reads many decisions on the same rows)."""
    sizes = torch.bincount(groups, minlength=n_groups)
    present = sizes > 0

    def bound(positive):
        if int(present.sum()) < 2:
            return positive.sum() * 0.0
        counts = sizes[present].to(positive.dtype)
        sums = torch.bincount(groups, weights=positive, minlength=n_groups)[present]
        return _rates_gap_bound(sums / counts, counts, z)

    return bound


def _rates_gap_bound(rates: torch.Tensor, counts: torch.Tensor, z: float) -> torch.Tensor:
    """:func:`tensor_selection_rate_gap_bound` from the rates and sizes of two or more
    groups."""
    adjusted = (rates * counts + 1) / (counts + 2)
    variances = adjusted * (1 - adjusted) / (counts + 2)
    bounds = rates[:, None] - rates[None, :] + z * (variances[:, None] + variances[None, :]).sqrt()
    # over pairs of two groups: a group against itself bounds no gap
    eye = torch.eye(len(rates), dtype=torch.bool, device=rates.device)
    return bounds.masked_fill(eye, -torch.inf).max()


def divergence(
    original_logits: torch.Tensor, edited_logits: torch.Tensor, kind: str = "kl"
) -> torch.Tensor:
    """Mean divergence between the original and the edited predictive distributions.

    Parameters
    ----------
    original_logits, edited_logits : Tensors of shape (n_samples, n_classes)
    kind : {"kl", "js"}
        ``"kl"``: KL(original || edited); ``"js"``: Jensen-Shannon divergence.

    Returns
    -------
    divergence : scalar Tensor, in nats

    Examples
    --------
    >>> import torch
    >>> logits = torch.tensor([[2.0, -1.0], [0.0, 0.5]])
    >>> float(divergence(logits, logits))
    0.0
    """
    log_p = F.log_softmax(original_logits.float(), dim=-1)
    log_q = F.log_softmax(edited_logits.float(), dim=-1)
    if kind == "kl":
        return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(dim=-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(dim=-1)
    return (0.5 * (kl_pm + kl_qm)).mean()


def report_rows(requirement, details, seconds, task, target, feature_names) -> list[dict]:
    """One report row per edited network: accuracy, sparsity, features used and parity
    gap before and after, the requirement's own columns, its violation of ``target``
    and the edit's seconds, measured on ``task = (X, y, groups or None, n_groups)``
    (tensors). ``details`` are an edit's ``{"item", "weights"}`` per network."""
    X, y, groups, n_groups = task
    rows = []
    for index, detail in enumerate(details):
        item = detail["item"]
        row = {"network": index}
        positive = {}
        for when, weights in (("before", item["weights"]), ("after", detail["weights"])):
            with torch.no_grad():
                decisions = network_forward(item["module"], weights, X).argmax(dim=1)
            positive[when] = decisions == 1
            row[f"accuracy_{when}"] = float((decisions == y).float().mean())
            row[f"sparsity_{when}"] = weight_sparsity(weights)
            used = features_used(weights)
            row[f"n_features_used_{when}"] = len(used)
            if when == "after":
                row["features_used"] = [feature_names[j] for j in used]
                row["features_dropped"] = [
                    feature_names[j] for j in range(len(feature_names)) if j not in set(used)
                ]
            if groups is not None:
                row[f"parity_gap_{when}"] = float(
                    tensor_selection_rate_gap(positive[when].float(), groups, n_groups)
                )
            extra = requirement.report_columns(weights, positive[when], y, groups, n_groups)
            row.update({f"{name}_{when}": value for name, value in extra.items()})
        value = requirement.measure(detail["weights"], positive["after"], y, groups, n_groups)
        row.update(requirement.compliance(value, target))
        row["violation"] = requirement.violation(value, target)
        if "calibrated" in item:
            # the gap's upper confidence bound on the calibration rows the edit met, or
            # came closest to
            row["calibration_bound"] = item["calibrated"].bound
        row["edit_seconds"] = seconds[index]
        rows.append(row)
    return rows
