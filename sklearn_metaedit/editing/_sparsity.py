"""Sparsity: a fraction of the weights is exactly zero, the decision threshold kept.

At edit time the ``ceil(target * n_weights)`` weights of lowest score are zero, where
score = input-scaled log-magnitude (:mod:`._magnitude`) + learned logit; a binary
classifier's output biases are then shifted so that it labels positive the same share
of rows drawn from the fit-time input statistics as the original
(:meth:`Sparsity.recalibrate`). In training the gates are soft.
"""

from __future__ import annotations

import math

import torch

from ._gates import soft_top_k, top_k_mask
from ._graph import network_forward
from ._magnitude import DEAD, magnitudes, n_to_zero, prior_scores
from ._measures import weight_sparsity
from ._requirement import Requirement, base_edit

__all__ = ["Sparsity"]


def _threshold_shift(margin: torch.Tensor, share: float) -> torch.Tensor | None:
    """The shift ``s`` for which ``margin + s > 0`` on a fraction ``share`` of the rows:
    None where ``s = 0`` does it already, else the midpoint between the two margins that
    straddle the new threshold (differentiable in them)."""
    n = margin.shape[0]
    n_negative = n - round(share * n)
    ordered = torch.sort(margin).values
    below = ordered[n_negative - 1] if n_negative > 0 else None
    above = ordered[n_negative] if n_negative < n else None
    if (below is None or float(below.detach()) <= 0) and (
        above is None or float(above.detach()) > 0
    ):
        return None
    if below is None:
        return 1.0 - above
    if above is None:
        return -1.0 - below
    return -0.5 * (below + above)


def _log_kept(sparsity: float) -> float:
    """``log(1 - sparsity)``, with the kept fraction floored at 1e-6 (finite at 1)."""
    return math.log1p(-min(sparsity, 1.0 - 1e-6))


class Sparsity(Requirement):
    """A fraction ``target`` of the weights (not biases) is exactly zero.

    Parameters
    ----------
    n_features : int
        Input width of the networks.
    forbidden : sequence of int, default=()
        Must be empty: pruning reads no ``features``.
    """

    name = "sparsity"
    reads_features = False
    n_target_anchors = 4

    def __init__(self, n_features, forbidden=()):
        if len(forbidden):
            raise ValueError(
                "features is used by the requirements that drop input features; for "
                f"requirement={self.name!r} leave it None."
            )
        super().__init__(n_features)

    def default_target(self):
        return 0.5

    def sample_target(self, rng, low, high):
        """A sparsity whose kept fraction ``1 - s`` is log-uniform on the range: each
        halving of the weights kept is drawn as often, so that the demanding end, where
        the edits differ most, is not a small corner of the draws (uniform on [0.5,
        0.95], a tenth of the draws would fall within [0.9, 0.95]; here 30%)."""
        kept = rng.uniform(_log_kept(high), _log_kept(low))
        return float(-math.expm1(kept))

    def anchor_targets(self, low, high):
        """``n_target_anchors`` sparsities from ``low`` to ``high``, their kept fractions
        evenly spaced on a log scale (None for a range of one point)."""
        if high - low < 1e-6:
            return None
        n = self.n_target_anchors
        start, stop = _log_kept(low), _log_kept(high)
        logs = [start + (stop - start) * i / (n - 1) for i in range(n)]
        return [float(-math.expm1(v)) for v in logs]

    def apply(self, weights, edit, target, *, hard, temperature):
        edited = base_edit(weights, edit)
        original = torch.cat([w.reshape(-1) for w, _ in weights])
        k = original.numel() - n_to_zero(original.numel(), target)
        magnitude = magnitudes(weights, self.input_scale(original.device))
        scores = torch.where(
            original != 0,
            prior_scores(weights, magnitude, k, protect_output=True) + edit["weight_gate"],
            torch.full_like(edit["weight_gate"], DEAD),
        )
        gates = top_k_mask(scores, k).float() if hard else soft_top_k(scores, k, temperature)
        out, start = [], 0
        for w, b in edited:
            gate = gates[start : start + w.numel()].reshape(w.shape).to(w.dtype)
            out.append((w * gate if not hard else torch.where(gate > 0, w, 0.0), b))
            start += w.numel()
        return out

    def recalibrate(self, item, edited):
        """Shift a binary classifier's output biases so that the pruned network labels
        positive the same share of the proxy rows (:meth:`proxy_rows`) as the original.

        Pruning shrinks and shifts the logit margin, so that the original threshold can
        leave a network predicting almost one class (on Adult at sparsity 0.95, a few
        networks fell below the majority rate); the shift moves the threshold to the
        edited margin's quantile at the original's positive share (no shift where the
        share is already the original's), the bias correction of data-free
        quantisation (Nagel et al., "Data-Free Quantization Through Weight Equalization
        and Bias Correction", ICCV 2019) applied to the decision threshold. The shift is
        differentiated through (it is the mean of two of the margins), so that
        training sees the threshold move with the weights and does not push the output
        biases against a shift that undoes them. Other networks pass unchanged.
        """
        if edited[-1][0].shape[0] != 2:
            return edited
        w_last, b_last = edited[-1]
        rows = self.proxy_rows(b_last.device, b_last.dtype)
        if rows is None:
            return edited
        if "proxy_positive" not in item:
            with torch.no_grad():
                logits = network_forward(item["module"], item["weights"], rows)
            item["proxy_positive"] = float((logits[:, 1] > logits[:, 0]).float().mean())
        logits = network_forward(item["module"], edited, rows)
        shift = _threshold_shift(logits[:, 1] - logits[:, 0], item["proxy_positive"])
        if shift is None:
            return edited
        half = (0.5 * shift).to(b_last.dtype)
        return [*edited[:-1], (w_last, b_last + torch.stack([-half, half]))]

    def measure(self, edited_weights, positive, y, groups, n_groups):
        return weight_sparsity(edited_weights)

    def violation(self, value, target):
        return max(0.0, target - value)
