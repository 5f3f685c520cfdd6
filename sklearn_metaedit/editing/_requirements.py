"""Requirements: a differentiable relaxation for training and an exact step at edit time.

Each requirement turns the metanetwork's raw output (gate logits and residuals, see
:mod:`._metanet`) into edited weights. During training the step is soft (sigmoid gates
around the per-network k-th score, at a temperature) so that gradients reach the
metanetwork; at edit time it is exact:

- ``sparsity``: the ``ceil(target * n_weights)`` weights of lowest score are zero, where
  score = log|w| + learned logit, and a first-layer weight's magnitude is scaled by the
  standard deviation of its input feature, as in the pruning metric of Sun et al., "A
  Simple and Effective Pruning Approach for Large Language Models" (Wanda, ICLR 2024),
  restricted to the inputs, whose statistics are known at fit time, and normalised to
  a root mean square of 1 so that the first layer's share of the pruning is that of
  standardised inputs; an output layer that is a small share of the weights kept is
  pruned last (so an untrained editor is input-scaled magnitude pruning that avoids
  layer collapse); a binary classifier's output biases are then shifted so that it
  labels positive the same share of rows drawn from the fit-time input statistics as
  the original (:meth:`Sparsity.recalibrate`);
- ``data_minimisation``: the first-layer columns of the forbidden features, and of the
  features outside the top-``k`` budget, are exactly zero; what they contributed is
  replaced by its least-squares prediction from the kept features (fit-time means and
  covariance of the inputs), which is what a network retrained without them would learn
  to do from the same correlations;
- ``demographic_parity`` / ``equalized_odds``: no structural step; the gap is a training
  loss and is measured after the edit.

Every edit keeps the input network's zero weights at zero, so that editors chain in a
pipeline without undoing each other (prune, then minimise).

Utility is a divergence between the original and the edited network's predictions
(:func:`divergence`), to which the editor adds the task loss.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from ._graph import Weights, network_forward

__all__ = [
    "REQUIREMENTS",
    "DataMinimisation",
    "Fairness",
    "Requirement",
    "Sparsity",
    "divergence",
    "equalized_odds_gap",
    "features_used",
    "magnitude_prune_weights",
    "selection_rate_gap",
    "soft_top_k",
    "top_k_mask",
    "weight_sparsity",
]

#: Score given to a weight (or feature) that is already zero: below any log-magnitude.
_DEAD = -1e4
#: Rows drawn from a Gaussian with the fit-time input mean and covariance, on which a
#: pruned binary classifier's decision threshold is matched to the original's.
_PROXY_ROWS = 1024
_PROXY_SEED = 0


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the ``k`` largest scores (exactly ``k`` entries are True).

    Parameters
    ----------
    scores : Tensor of shape (n,)
    k : int

    Returns
    -------
    mask : bool Tensor of shape (n,)
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
    """
    n = scores.shape[0]
    if k >= n:
        return torch.ones_like(scores)
    if k <= 0:
        return torch.zeros_like(scores)
    top = torch.topk(scores.detach(), k + 1).values
    threshold = 0.5 * (top[k - 1] + top[k])
    return torch.sigmoid((scores - threshold) / temperature)


def weight_sparsity(weights: Weights) -> float:
    """Fraction of weights (not biases) that are exactly zero."""
    n_zero = sum(int((w == 0).sum()) for w, _ in weights)
    return n_zero / sum(w.numel() for w, _ in weights)


def features_used(weights: Weights) -> list[int]:
    """Indices of the input features whose first-layer column is not all zero."""
    return torch.nonzero((weights[0][0] != 0).any(dim=0)).flatten().tolist()


def selection_rate_gap(
    positive: torch.Tensor, groups: torch.Tensor, n_groups: int
) -> torch.Tensor:
    """Largest minus smallest mean of ``positive`` over the groups present.

    With 0/1 decisions this is fairlearn's ``demographic_parity_difference``; with
    probabilities it is its differentiable relaxation.

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
    """
    counts = torch.bincount(groups, minlength=n_groups).to(positive.dtype)
    sums = torch.zeros(n_groups, dtype=positive.dtype, device=positive.device)
    sums = sums.index_add(0, groups, positive)
    present = counts > 0
    if int(present.sum()) < 2:
        return positive.sum() * 0.0
    rates = sums[present] / counts[present]
    return rates.max() - rates.min()


def equalized_odds_gap(
    positive: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, n_groups: int
) -> torch.Tensor:
    """Largest selection-rate gap among rows of either true label (binary tasks).

    With 0/1 decisions this is fairlearn's ``equalized_odds_difference``: the larger of
    the true-positive-rate gap and the false-positive-rate gap.

    Parameters
    ----------
    positive : Tensor of shape (n_samples,)
    y : long Tensor of shape (n_samples,)
        True labels in {0, 1}.
    groups : long Tensor of shape (n_samples,)
    n_groups : int

    Returns
    -------
    gap : scalar Tensor
    """
    gaps = [
        selection_rate_gap(positive[y == label], groups[y == label], n_groups)
        for label in (0, 1)
        if bool((y == label).any())
    ]
    return torch.stack(gaps).max() if gaps else positive.sum() * 0.0


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
    """
    log_p = F.log_softmax(original_logits.float(), dim=-1)
    log_q = F.log_softmax(edited_logits.float(), dim=-1)
    if kind == "kl":
        return (log_p.exp() * (log_p - log_q)).sum(dim=-1).mean()
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(dim=-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(dim=-1)
    return (0.5 * (kl_pm + kl_qm)).mean()


def _base_edit(weights: Weights, edit: dict[str, torch.Tensor]) -> Weights:
    """Add the residuals, keeping the input's zero weights at zero."""
    from ._graph import split_graph_values

    sizes = (weights[0][0].shape[1], *(w.shape[0] for w, _ in weights))
    residual_w = edit["weight_residual"] * edit["edge_scale"]
    residual_b = edit["bias_residual"] * edit["node_scale"]
    deltas = split_graph_values(residual_w, residual_b, sizes)
    return [
        (torch.where(w != 0, w + dw.to(w.dtype), torch.zeros_like(w)), b + db.to(b.dtype))
        for (w, b), (dw, db) in zip(weights, deltas, strict=True)
    ]


class Requirement(ABC):
    """A requirement on edited networks: how to edit, relax, enforce and measure it.

    Parameters
    ----------
    target : float
        The requirement's target (see the subclasses).
    n_features : int
        Input width of the networks.
    """

    name = "requirement"
    needs_sensitive = False
    n_node_flags = 1
    #: Output heads of a metanetwork trained on a range of targets (see
    #: ``GraphMetanetwork``'s ``target_anchors``); 1: one output read at every target.
    n_target_anchors = 1

    def __init__(self, target: float, n_features: int) -> None:
        self.target = target
        self.n_features = n_features
        self.input_mean = None
        self.input_cov = None
        #: Input features the edited networks may not use (indices).
        self.forbidden: list[int] = []

    def set_input_statistics(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        """Record the mean (d,) and covariance (d, d) of the task's inputs (fit time)."""
        self.input_mean = mean.double()
        self.input_cov = cov.double()

    def input_scale(self, device=None) -> torch.Tensor | None:
        """Standard deviation of each input feature (None before statistics are set)."""
        if self.input_cov is None:
            return None
        return self.input_cov.diagonal().clamp_min(0).sqrt().float().to(device)

    def metanet_target(self, target: float) -> float:
        """The target as the metanetwork reads it (a number of order 1)."""
        return float(target)

    def sample_target(self, rng, low: float, high: float) -> float:
        """A training target drawn from ``[low, high]`` (uniformly here)."""
        return float(rng.uniform(low, high))

    def anchor_targets(self, low: float, high: float) -> list[float] | None:
        """Targets in ``[low, high]`` at which the metanetwork of a range editor has its
        own output heads (``n_target_anchors`` of them); None for one head."""
        return None

    def target_anchors(self, low: float, high: float) -> list[float] | None:
        """:meth:`anchor_targets` on the scale the metanetwork reads
        (:meth:`metanet_target`): ``GraphMetanetwork``'s ``target_anchors``."""
        anchors = self.anchor_targets(low, high)
        return None if anchors is None else [self.metanet_target(t) for t in anchors]

    def node_flags(self, sizes: Sequence[int]) -> torch.Tensor:
        """Requirement-specific node inputs of shape (N, 1): 1 on the input neurons of
        forbidden features, 0 elsewhere."""
        flags = torch.zeros(sum(sizes), 1)
        flags[self.forbidden, 0] = 1.0
        return flags

    def apply(
        self,
        weights: Weights,
        edit: dict[str, torch.Tensor],
        target: float,
        *,
        hard: bool,
        temperature: float,
    ) -> Weights:
        """Edited weights of one network (differentiable when ``hard=False``)."""
        return _base_edit(weights, edit)

    def _minimise(self, weights, edit, target, *, hard, temperature):
        """Edited weights that read none of ``forbidden`` and, for an integer ``target``,
        at most ``target`` features (see :class:`DataMinimisation`)."""
        edited = _base_edit(weights, edit)
        first = weights[0][0]
        allowed = torch.ones(self.n_features, dtype=torch.bool, device=first.device)
        allowed[self.forbidden] = False
        n_features = self.n_features
        keep = int(allowed.sum()) if target is None else min(int(target), int(allowed.sum()))
        norms = first.detach().float().norm(dim=0)
        live = norms > 0
        scale = self.input_scale(first.device)
        if scale is not None:
            # what a column contributes to the first layer: |w_j| times the spread of x_j
            norms = norms * scale
        scores = torch.where(
            allowed & live,
            torch.log(norms.clamp_min(1e-30)) + edit["node_gate"][:n_features],
            torch.full_like(norms, _DEAD),
        )
        # forbidden features always score lowest, so the top-k never picks them
        scores = torch.where(allowed, scores, torch.full_like(norms, 2 * _DEAD))
        kept = top_k_mask(scores, keep) & allowed
        if hard or keep >= int(allowed.sum()):
            gates = kept.to(first.dtype)
        else:
            gates = soft_top_k(scores, keep, temperature) * allowed
        w1, b1 = edited[0]
        dropped = w1 * (1 - gates[None, :].to(w1.dtype))
        w1 = torch.where(gates[None, :] > 0, w1, 0.0) if hard else w1 * gates[None, :].to(w1.dtype)
        if self.input_cov is not None:
            w1, b1 = self._compensate(w1, b1, dropped, kept & live, first != 0)
        return [(w1, b1), *edited[1:]]

    def _compensate(self, w1, b1, dropped, kept, nonzero):
        """Replace the dropped columns' contribution ``dropped @ x`` by its least-squares
        prediction from the kept features, ``dropped[:, D] (C^T x_K + c)``, added to the
        kept columns (only where the network's weight is not zero, so that an edit keeps
        zero weights at zero) and to the bias."""
        kept_index = torch.nonzero(kept).flatten()
        other = torch.nonzero(~kept).flatten()
        if len(kept_index) == 0 or len(other) == 0:
            return w1, b1
        coef, intercept = self._regression(kept_index, other)
        coef = coef.to(w1.device, w1.dtype)
        intercept = intercept.to(w1.device, w1.dtype)
        source = dropped[:, other]
        w1 = w1.index_add(1, kept_index, (source @ coef) * nonzero[:, kept_index].to(w1.dtype))
        return w1, b1 + source @ intercept

    def _regression(self, kept: torch.Tensor, other: torch.Tensor):
        """Coefficients ``C`` (|other|, |kept|) and intercepts ``c`` (|other|,) of the
        least-squares prediction of ``x_other`` from ``x_kept`` (ridge-stabilised: one-hot
        groups make the covariance singular); cached per set of kept features."""
        key = tuple(kept.tolist())
        cache = self.__dict__.setdefault("_regression_cache", {})
        if key not in cache:
            if len(cache) > 256:
                cache.clear()
            kept_cpu, other_cpu = kept.cpu(), other.cpu()
            cov = self.input_cov
            cov_kk = cov[kept_cpu][:, kept_cpu]
            ridge = 1e-4 * float(cov_kk.diagonal().mean()) + 1e-10
            cov_kk = cov_kk + ridge * torch.eye(len(kept_cpu), dtype=cov.dtype)
            coef = torch.linalg.solve(cov_kk, cov[kept_cpu][:, other_cpu]).T
            intercept = self.input_mean[other_cpu] - coef @ self.input_mean[kept_cpu]
            cache[key] = (coef.float(), intercept.float())
        return cache[key]

    def loss(
        self,
        edited_logits: torch.Tensor,
        y: torch.Tensor,
        groups: torch.Tensor | None,
        n_groups: int,
        target: float,
        temperature: float,
    ) -> torch.Tensor:
        """Requirement term of the training loss (0 for structural requirements)."""
        return edited_logits.sum() * 0.0

    @abstractmethod
    def measure(
        self,
        edited_weights: Weights,
        decisions: torch.Tensor,
        y: torch.Tensor,
        groups: torch.Tensor | None,
        n_groups: int,
    ) -> float:
        """The requirement's quantity on an edited network (sparsity, #features, gap)."""

    def violation(self, value: float, target: float) -> float:
        """How far a measured value is from meeting ``target`` (0 when it meets it)."""
        return 0.0

    def recalibrate(self, item: dict, edited: Weights) -> Weights:
        """Edited weights after any correction that needs the network's forward pass
        (``item`` holds its ``module`` and original ``weights``); the identity here."""
        return edited

    def proxy_rows(self, device, dtype) -> torch.Tensor | None:
        """``_PROXY_ROWS`` rows drawn (with a fixed seed) from a Gaussian with the fit-time
        input mean and covariance: a stand-in for the task's inputs that holds no task
        row. None before the statistics are set."""
        if self.input_cov is None:
            return None
        cache = self.__dict__.setdefault("_proxy_cache", {})
        key = (str(device), dtype)
        if key not in cache:
            cov = self.input_cov
            jitter = 1e-6 * float(cov.diagonal().mean()) + 1e-12
            factor, _ = torch.linalg.cholesky_ex(
                cov + jitter * torch.eye(len(cov), dtype=cov.dtype)
            )
            generator = torch.Generator().manual_seed(_PROXY_SEED)
            noise = torch.randn(_PROXY_ROWS, len(cov), generator=generator, dtype=cov.dtype)
            cache[key] = (self.input_mean + noise @ factor.T).to(device=device, dtype=dtype)
        return cache[key]


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
    """A fraction ``target`` of the weights (not biases) is exactly zero."""

    name = "sparsity"
    n_target_anchors = 4

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

    def n_zero(self, n_weights: int, target: float) -> int:
        """Number of weights to zero: ``ceil(target * n_weights)``, so the fraction is met."""
        return min(n_weights, math.ceil(target * n_weights - 1e-9))

    def apply(self, weights, edit, target, *, hard, temperature):
        edited = _base_edit(weights, edit)
        original = torch.cat([w.reshape(-1) for w, _ in weights])
        k = original.numel() - self.n_zero(original.numel(), target)
        magnitude = _magnitudes(weights, self.input_scale(original.device))
        scores = torch.where(
            original != 0,
            _prior_scores(weights, magnitude, k, protect_output=True) + edit["weight_gate"],
            torch.full_like(edit["weight_gate"], _DEAD),
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

    def measure(self, edited_weights, decisions, y, groups, n_groups):
        return weight_sparsity(edited_weights)

    def violation(self, value, target):
        return max(0.0, target - value)


class DataMinimisation(Requirement):
    """The networks may not use some input features, or only a budget of them.

    Parameters
    ----------
    target : int or None
        Number of input features to keep; the editor chooses them per network. None:
        keep every feature that is not forbidden.
    n_features : int
    forbidden : sequence of int
        Indices of input features that must not be used.
    """

    name = "data_minimisation"

    def __init__(self, target, n_features, forbidden=()):
        super().__init__(target, n_features)
        self.forbidden = sorted(int(i) for i in forbidden)

    def sample_target(self, rng, low, high):
        """A budget drawn uniformly from the integers ``low .. high``."""
        return int(rng.randint(int(low), int(high) + 1))

    def metanet_target(self, target):
        keep = self.n_features - len(self.forbidden) if target is None else target
        return float(keep) / self.n_features

    def apply(self, weights, edit, target, *, hard, temperature):
        return self._minimise(weights, edit, target, hard=hard, temperature=temperature)

    def measure(self, edited_weights, decisions, y, groups, n_groups):
        return float(len(features_used(edited_weights)))


#: The metanetwork reads a gap target as log(max(target, _GAP_FLOOR) / _GAP_UNIT).
_GAP_UNIT = 0.05
_GAP_FLOOR = 0.005


class Fairness(Requirement):
    """The gap (demographic parity or equalized odds) on the task data is at most ``target``.

    Parameters
    ----------
    target : float
        Largest gap allowed, in [0, 1].
    n_features : int
    kind : {"demographic_parity", "equalized_odds"}
    forbidden : sequence of int, default=()
        Input features the edited networks may not use either (e.g. the sensitive
        feature's columns, for a group-blind network); dropped as by
        :class:`DataMinimisation`.
    """

    needs_sensitive = True

    def __init__(self, target, n_features, kind="demographic_parity", forbidden=()):
        super().__init__(target, n_features)
        self.name = kind
        self.forbidden = sorted(int(i) for i in forbidden)

    def apply(self, weights, edit, target, *, hard, temperature):
        if not self.forbidden:
            return _base_edit(weights, edit)
        return self._minimise(weights, edit, None, hard=hard, temperature=temperature)

    def gap(self, positive, y, groups, n_groups):
        """Gap of ``positive`` (decisions or probabilities), shape () Tensor."""
        if self.name == "demographic_parity":
            return selection_rate_gap(positive, groups, n_groups)
        return equalized_odds_gap(positive, y, groups, n_groups)

    def loss(self, edited_logits, y, groups, n_groups, target, temperature):
        # a sharpened sigmoid of the logit margin approximates the 0/1 decisions whose
        # gap is measured, rather than the probabilities
        margin = (edited_logits[:, 1] - edited_logits[:, 0]).float()
        positive = torch.sigmoid(margin / max(temperature, 1e-3))
        return F.relu(self.gap(positive, y, groups, n_groups) - target)

    def metanet_target(self, target: float) -> float:
        """``log(target / 0.05)``, the target floored at 0.005: gaps that matter span
        two orders of magnitude, and on a linear scale the metanetwork barely tells 0.02
        from 0.2."""
        return math.log(max(float(target), _GAP_FLOOR) / _GAP_UNIT)

    def measure(self, edited_weights, decisions, y, groups, n_groups):
        return float(self.gap(decisions.float(), y, groups, n_groups))

    def violation(self, value, target):
        return max(0.0, value - target)


REQUIREMENTS = ("sparsity", "data_minimisation", "demographic_parity", "equalized_odds")


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
    n_zero = Sparsity(target, weights[0][0].shape[1]).n_zero(flat.numel(), target)
    magnitude = _magnitudes(weights, input_scale)
    scores = torch.where(
        flat != 0,
        _prior_scores(weights, magnitude, flat.numel() - n_zero, protect_output=protect_output),
        torch.full_like(flat, _DEAD, dtype=torch.float32),
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


def _prior_scores(
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


def _magnitudes(weights: Weights, input_scale: torch.Tensor | None) -> torch.Tensor:
    """Flat |w| (float32), the first layer's scaled by its inputs' standard deviations
    relative to their root mean square."""
    magnitude = [w.detach().abs().float() for w, _ in weights]
    if input_scale is not None:
        scale = input_scale.float().to(magnitude[0].device)
        scale = scale / scale.pow(2).mean().sqrt().clamp_min(1e-12)
        magnitude[0] = magnitude[0] * scale[None, :]
    return torch.cat([m.reshape(-1) for m in magnitude])
