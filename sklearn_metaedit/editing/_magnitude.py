"""Magnitude pruning: the scores every sparsity edit starts from, and what they give alone.

A weight's score is its log-magnitude; a first-layer weight's magnitude is scaled by the
standard deviation of its input feature, as in the pruning metric of Sun et al., "A
Simple and Effective Pruning Approach for Large Language Models" (Wanda, ICLR 2024),
restricted to the inputs, whose statistics are known at fit time, and normalised to a
root mean square of 1 so that the first layer's share of the pruning is that of
standardised inputs. An output layer that is a small share of the weights kept is
pruned last, so that a wide network does not lose it whole. The sparsity requirement
adds the metanetwork's learned logits to these scores; :func:`magnitude_prune_weights`
is what they give alone.
"""

from __future__ import annotations

import math

import torch

from ._gates import top_k_mask
from ._graph import Weights

__all__ = ["DEAD", "magnitude_prune_weights", "magnitudes", "n_to_zero", "prior_scores"]

#: Score given to a weight (or feature) that is already zero: below any log-magnitude.
DEAD = -1e4


def n_to_zero(n_weights: int, target: float) -> int:
    """Number of weights to zero for a sparsity ``target``: ``ceil(target * n_weights)``,
    so that the fraction is met.

    Examples
    --------
    >>> n_to_zero(10, 0.85)
    9
    """
    return min(n_weights, math.ceil(target * n_weights - 1e-9))


def magnitude_prune_weights(
    weights: Weights,
    target: float,
    *,
    input_scale: torch.Tensor | None = None,
    protect_output: bool = False,
) -> Weights:
    """One-shot global magnitude pruning: zero the ``ceil(target * n_weights)`` smallest
    weights of the network (biases are kept).

    Parameters
    ----------
    weights : list of (Tensor, Tensor)
    target : float
        Fraction of weights to zero, in [0, 1].
    input_scale : Tensor of shape (n_features,), default=None
        Standard deviation of each input feature: a first-layer weight's magnitude is
        multiplied by its feature's, relative to the root mean square of them all
        (input-scaled magnitude pruning, what an untrained sparsity editor does; the
        normalisation leaves the first layer's share of the pruning as it would be for
        standardised inputs). None: plain magnitudes.
    protect_output : bool, default=False
        When the output layer holds at most a tenth of the weights kept, prune its
        weights last, only once every other weight is zero (what an untrained sparsity
        editor does). On wide networks global magnitude pruning can otherwise zero the
        small output layer whole and leave a constant network.

    Returns
    -------
    pruned : list of (Tensor, Tensor)

    Examples
    --------
    >>> import torch
    >>> weights = [(torch.tensor([[1.0, -3.0], [0.5, 2.0]]), torch.zeros(2))]
    >>> magnitude_prune_weights(weights, 0.5)[0][0]
    tensor([[ 0., -3.],
            [ 0.,  2.]])
    >>> magnitude_prune_weights(weights, 0.5, input_scale=torch.tensor([10.0, 1.0]))[0][0]
    tensor([[1.0000, 0.0000],
            [0.5000, 0.0000]])
    """
    flat = torch.cat([w.reshape(-1) for w, _ in weights])
    n_zero = n_to_zero(flat.numel(), target)
    magnitude = magnitudes(weights, input_scale)
    scores = torch.where(
        flat != 0,
        prior_scores(weights, magnitude, flat.numel() - n_zero, protect_output=protect_output),
        torch.full_like(flat, DEAD, dtype=torch.float32),
    )
    mask = top_k_mask(scores.float(), flat.numel() - n_zero)
    out, start = [], 0
    for w, b in weights:
        keep = mask[start : start + w.numel()].reshape(w.shape)
        out.append((torch.where(keep, w, torch.zeros_like(w)), b.clone()))
        start += w.numel()
    return out


#: Added to the scores of the output layer's weights so that they are pruned last.
_PROTECTED = 100.0

#: The output layer is protected when it holds at most this share of the weights kept.
_PROTECTED_SHARE = 0.1


def prior_scores(
    weights: Weights, magnitude: torch.Tensor, n_keep: int, *, protect_output: bool
) -> torch.Tensor:
    """Log-magnitudes; with ``protect_output``, those of the output layer are raised by
    ``_PROTECTED`` when that layer holds at most a tenth of the ``n_keep`` weights kept.

    Global magnitude pruning of a wide network can zero its small output layer whole
    ("layer collapse": Tanaka et al., "Pruning neural networks without any data by
    iteratively conserving synaptic flow", NeurIPS 2020) and leave a constant network;
    keeping that layer costs a small network, where it is a large share, too much.
    """
    scores = torch.log(magnitude.clamp_min(1e-30))
    n_output = weights[-1][0].numel()
    if protect_output and len(weights) > 1 and n_output <= _PROTECTED_SHARE * n_keep:
        bonus = torch.zeros_like(scores)
        bonus[-n_output:] = _PROTECTED
        scores = scores + bonus
    return scores


def magnitudes(weights: Weights, input_scale: torch.Tensor | None) -> torch.Tensor:
    """Flat |w| (float32), the first layer's scaled by its inputs' standard deviations
    relative to their root mean square."""
    magnitude = [w.detach().abs().float() for w, _ in weights]
    if input_scale is not None:
        scale = input_scale.float().to(magnitude[0].device)
        scale = scale / scale.pow(2).mean().sqrt().clamp_min(1e-12)
        magnitude[0] = magnitude[0] * scale[None, :]
    return torch.cat([m.reshape(-1) for m in magnitude])
