"""Gates that keep the ``k`` highest-scoring entries: exact at edit time, soft in training."""

from __future__ import annotations

import torch

__all__ = ["soft_top_k", "top_k_mask"]


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest scores (exactly ``k`` entries are True).

    Parameters
    ----------
    scores : Tensor of shape (n,)
    k : int

    Returns
    -------
    mask : bool Tensor of shape (n,)

    Examples
    --------
    >>> import torch
    >>> top_k_mask(torch.tensor([0.3, -1.0, 2.0, 0.5]), 2).tolist()
    [False, False, True, True]
    """
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        mask[torch.topk(scores.detach(), k, sorted=False).indices] = True
    return mask


def soft_top_k(scores: torch.Tensor, k: int, temperature: float) -> torch.Tensor:
    """Soft gates around the ``k``-th largest score: ``sigmoid((score - threshold) / T)``.

    The threshold lies midway between the ``k``-th and ``(k + 1)``-th largest scores and
    is not differentiated through, so that a gate moves by moving its own score.

    Parameters
    ----------
    scores : Tensor of shape (n,)
    k : int
        Number of entries to keep, ``0 <= k <= n``.
    temperature : float

    Returns
    -------
    gates : Tensor of shape (n,), values in (0, 1)

    Examples
    --------
    >>> import torch
    >>> gates = soft_top_k(torch.tensor([0.0, 1.0, 2.0, 3.0]), 2, temperature=0.1)
    >>> [round(float(g), 3) for g in gates]
    [0.0, 0.007, 0.993, 1.0]
    """
    n = scores.shape[0]
    if k >= n:
        return torch.ones_like(scores)
    if k <= 0:
        return torch.zeros_like(scores)
    top = torch.topk(scores.detach(), k + 1).values
    threshold = 0.5 * (top[k - 1] + top[k])
    return torch.sigmoid((scores - threshold) / temperature)
