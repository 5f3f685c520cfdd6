"""Sparsity: a fraction of the weights is exactly zero, the decision threshold kept.

At edit time ``ceil(target * n_weights)`` weights are zero. How many weights each layer
keeps is chosen among four budgets: those of the layers' error curves
(:func:`~._allocation.error_budgets`: each layer pruned alone to a ladder of counts, the
counts whose summed errors of the network's outputs are least) and those of the top
input-scaled magnitudes at three scalings, the edit nearest the original's outputs after
a few steps of refinement kept (:meth:`Sparsity.edit`); within each layer, the weights
kept are chosen by
optimal-brain-surgeon saliency (plus the metanetwork's learned logits) in a few rounds
and refitted by least squares after each, layer after layer, so that each layer's outputs
match the original network's on rows drawn from the fit-time input statistics
(:func:`prune_and_refit`); then all the kept weights take gradient steps together on the
outputs' squared error against the original's over the same rows
(:func:`~._refine.refine_outputs`); then a binary classifier's output biases are shifted
so that it labels positive the same share of those rows as the original
(:meth:`Sparsity.recalibrate`). In training the gates are soft on the scores
(input-scaled log-magnitude, :mod:`._magnitude`, plus the learned logit), which also
set the budgets of training's checkpoint selection, and none of these corrections is
made.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._allocation import error_budgets
from ._gates import soft_top_k, top_k_mask
from ._graph import layer_inputs, network_forward
from ._least_squares import (
    DAMPING,
    refit_units,
    remove_least_salient,
    ridge_problem,
    second_moments,
)
from ._magnitude import DEAD, magnitudes, n_to_zero, prior_scores
from ._measures import weight_sparsity
from ._refine import refine_outputs, refining
from ._requirement import Requirement, base_edit

__all__ = ["Sparsity", "prune_and_refit", "refit_kept_weights"]


def refit_kept_weights(module, original, pruned, rows, damping: float = DAMPING, moments=None):
    """Pruned weights whose kept entries (and biases) are refitted by least squares.

    Layer after layer, each output unit's kept weights and bias minimise
    ``mean((a @ w + c - t) ** 2) + lambda * |w - w0| ** 2`` over ``rows``, where ``a`` is
    the layer's input in the network refitted so far, ``t`` the original network's output
    of that unit on its own inputs and ``w0`` the kept weights as given, so that each
    layer also corrects what the layers before it lost: the reconstruction step of
    one-shot pruners (OBC, SparseGPT) for a given mask, solved exactly for every unit at
    once. ``lambda`` is ``damping`` times the mean second moment of the layer's inputs;
    the pull towards ``w0`` keeps the weights of inputs the rows leave at zero (a unit
    that is dead on them) as they were. Pruned entries stay exactly zero, and the layers
    up to the first that lost a weight are returned unchanged.

    Parameters
    ----------
    module : nn.Sequential
        The network's architecture.
    original, pruned : list of (Tensor, Tensor)
        The original weights and the pruned ones (zeros mark the pruned entries).
    rows : Tensor of shape (n_samples, n_features)
        Rows to fit on (no task rows are needed: draws from the input statistics do).
    damping : float, default=1e-2
    moments : Tensor, default=None
        As for :func:`prune_and_refit`.

    Returns
    -------
    weights : list of (Tensor, Tensor)
        In the dtype of ``pruned``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_metaedit.editing._graph import extract_weights
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> original = extract_weights(net)
    >>> pruned = [(w * (w.abs() > 0.3), b) for w, b in original]
    >>> refitted = refit_kept_weights(net, original, pruned, torch.randn(256, 4))
    >>> all(bool(((w == 0) >= (p == 0)).all()) for (w, _), (p, _) in zip(refitted, pruned))
    True
    """
    alive = [w != 0 for w, _ in pruned]
    keep = [int(mask.sum()) for mask in alive]
    return prune_and_refit(
        module, original, keep, rows, start=pruned, alive=alive, damping=damping, moments=moments
    )


def prune_and_refit(
    module,
    original,
    keep,
    rows,
    *,
    start=None,
    adjust=None,
    alive=None,
    rounds: int = 3,
    damping: float = DAMPING,
    moments=None,
):
    """Pruned weights, layer after layer: which weights each layer keeps chosen by
    optimal-brain-surgeon saliency in a few rounds, the weights kept refitted by least
    squares after each round.

    Layer ``l`` keeps ``keep[l]`` of its weights. Each output unit's kept weights and
    bias minimise ``mean((a @ w + c - t) ** 2) + lambda * |w - w0| ** 2`` over ``rows``,
    where ``a`` is the layer's input in the network pruned so far, ``t`` the original
    network's output of that unit on its own inputs and ``w0`` its original weights
    (``lambda`` is ``damping`` times the mean second moment of the layer's inputs; the
    pull towards ``w0`` keeps the weights of inputs the rows leave at zero, a unit dead
    on them, as they were). In each of ``rounds`` rounds the layer's kept count falls
    geometrically towards ``keep[l]``, the weights of lowest saliency
    ``log(w_j ** 2 / [S^-1]_jj) + adjust_j`` are removed (``S`` the unit's system over
    its kept inputs: the increase of the layer's squared error that removing ``w_j``
    alone would cause once the others are refitted, the criterion of optimal brain
    surgeon), and the rest refitted. It is the greedy removal of exact OBC (Frantar and
    Alistarh, "Optimal Brain Compression", NeurIPS 2022), which removes one weight per
    unit at a time, taken a share of the layer at a time, so that a layer costs
    ``rounds + 1`` batched solves. Entries that are zero in ``original`` stay zero.

    Parameters
    ----------
    module : nn.Sequential
        The network's architecture.
    original : list of (Tensor, Tensor)
        The network's weights.
    keep : list of int
        Weights to keep in each layer (at most its nonzero weights are kept).
    rows : Tensor of shape (n_samples, n_features)
        Rows to fit on (no task rows are needed: draws from the input statistics do).
    start : list of (Tensor, Tensor), default=None
        The weights ``w0`` the refit is pulled towards (shapes of ``original``; their
        zeros are not read). None: ``original``.
    adjust : list of Tensor, default=None
        Added to each weight's log-saliency (shapes of the weights): the metanetwork's
        learned scores. None: saliency alone.
    alive : list of bool Tensor, default=None
        The entries each layer may keep (shapes of the weights); an entry that is zero in
        ``original`` but alive may take a weight. None: the nonzero entries of
        ``original``.
    rounds : int, default=3
    damping : float, default=1e-2
    moments : Tensor of shape (n_features + 1, n_features + 1), default=None
        ``[rows, 1]^T [rows, 1] / n_samples`` where the caller has them (a requirement's
        proxy rows, the same for every network: :meth:`~._requirement.Requirement.
        row_moments`); read for the first layer where it reads the rows as they are.

    Returns
    -------
    weights : list of (Tensor, Tensor)
        In the dtype of ``original``; layer ``l`` has at most ``keep[l]`` nonzero weights.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sklearn_metaedit.editing._graph import extract_weights
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> pruned = prune_and_refit(net, extract_weights(net), [4, 3], torch.randn(256, 4))
    >>> [int((w != 0).sum()) for w, _ in pruned]
    [4, 3]
    """
    dtype, given = original[0][0].dtype, original
    with torch.no_grad():
        original = [(w.double(), b.double()) for w, b in original]
        rows = rows.double()
        targets = [
            torch.nn.functional.linear(inputs, w, b)
            for inputs, (w, b) in zip(layer_inputs(module, original, rows), original, strict=True)
        ]
        out = list(original)
        # each layer's inputs in the network pruned so far, from the layer before's (a
        # pass through the children from that layer to this one)
        children = list(module)
        positions = [i for i, child in enumerate(children) if isinstance(child, nn.Linear)]
        known = [0, layer_inputs(module, out, rows, upto=0)[0]]

        def inputs_of(layer):
            while known[0] < layer:
                step = children[positions[known[0]] : positions[known[0] + 1] + 1]
                known[1] = layer_inputs(step, out[known[0] :], known[1], upto=1)[1]
                known[0] += 1
            return known[1]

        untouched = True
        for layer, (target, n_keep) in enumerate(zip(targets, keep, strict=True)):
            weight = original[layer][0]
            allowed = weight != 0 if alive is None else alive[layer].to(weight.device)
            n_keep = min(int(n_keep), int(allowed.sum()))
            # the layers up to the first that changes come back as they were
            untouched = (
                untouched
                and n_keep == int(allowed.sum())
                and torch.equal(allowed, weight != 0)
                and (start is None or all(map(torch.equal, start[layer], given[layer])))
            )
            if untouched:
                continue
            inputs = inputs_of(layer)
            given = layer == 0 and moments is not None and inputs is rows
            gram = moments if given else second_moments(inputs)
            pull = weight if start is None else start[layer][0].detach().double()
            rhs, penalty = ridge_problem(gram, inputs, target, pull, damping)
            kept = torch.cat([allowed, allowed.new_ones(len(weight), 1)], dim=1)
            shift = None if adjust is None else adjust[layer].detach().double()
            n_alive = int(allowed.sum())
            for step in range(1, rounds + 1):
                goal = round(n_alive * (n_keep / max(n_alive, 1)) ** (step / rounds))
                n_remove = int(kept[:, :-1].sum()) - goal
                if n_remove <= 0:
                    continue
                # the choice needs a ranking, not digits: float32 halves its cost
                solution, diagonal = refit_units(
                    gram.float(), rhs.float(), penalty.float(), kept, inverse_diagonal=True
                )
                kept = remove_least_salient(solution, diagonal, kept, n_remove, shift)
            solution = refit_units(gram, rhs, penalty, kept)
            out[layer] = (solution[:, :-1], solution[:, -1])
    return [(w.to(dtype), b.to(dtype)) for w, b in out]


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
    refits_on_rows = True
    n_target_anchors = 4
    #: Whether exact edits choose the weights kept within each layer by saliency and refit
    #: them by least squares (:meth:`edit`).
    refit = True
    #: Rounds of removal per layer in an exact edit (:func:`prune_and_refit`).
    rounds = 3
    #: Gradient steps of the end-to-end refinement of an exact edit, and their size
    #: relative to each layer's weights (:func:`~._refine.refine_outputs`); 0 steps: none.
    refine_steps = 100
    refine_rate = 0.05
    #: Whether exact edits try the budgets from the layers' error curves
    #: (:func:`~._allocation.error_budgets`) beside the top scores' (:meth:`edit`).
    error_budgets = True
    #: The powers of the inputs' standard deviations that scale the first layer's
    #: magnitudes in the top scores whose budgets an exact edit tries (:meth:`edit`);
    #: the budgets tried are each refitted and refined for :attr:`choice_steps` steps,
    #: and the one nearest the original's outputs is kept; 0 steps: the first budgets.
    budget_powers = (1.0, 0.5, 0.0)
    choice_steps = 20

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

    def edit(self, item, edit, target, *, hard, temperature):
        """A soft edit: :meth:`apply`. An exact edit tries up to four sets of layer
        budgets: those of the layers' error curves on the rows
        (:func:`~._allocation.error_budgets`: each layer pruned alone to a ladder of
        counts, the counts whose summed output errors are least), then the top scores'
        (:meth:`_scores`) with the first layer's magnitudes scaled by the inputs' standard
        deviations to each of :attr:`budget_powers`. For each distinct set, the weights
        kept within each layer are chosen by saliency and refitted
        (:func:`prune_and_refit`), on the proxy rows (:meth:`proxy_rows`) or the rows
        given at edit time, with the learned logits added to the log-saliencies and the
        weights pulled towards the metanetwork's residual edit; each takes
        :attr:`choice_steps` steps of refinement, and the one nearest the original's
        outputs after them (the first on a tie) takes :attr:`refine_steps` steps on all
        its kept weights together (:func:`~._refine.refine_outputs`); then
        :meth:`recalibrate`. With :attr:`choice_steps` 0, the curves' budgets alone.
        Within :func:`~._refine.without_refinement` (training's checkpoint selection),
        the budgets are the top scores' at the first power (:meth:`apply`'s: input-scaled
        magnitudes plus the learned logits), and the curves are not computed; so too with
        :attr:`error_budgets` False and no choice.

        The budgets differ in where they fall short. The curves see what each layer's
        pruning costs the outputs, but not how pruning one layer changes what the others
        can do; the magnitudes see neither. On 12 held-out networks of each of 6
        populations, untrained editor, proxy rows, paired against the curves alone
        (points at sparsity 0.9 and 0.95): synthetic 30-h-h-2 +0.72 and +1.68,
        digits 64-h-h-10 +0.37 and +0.31, Adult +0.03 and +0.01, synthetic
        30-64-64-64-2 +0.03 and +0.03, German credit 0.00 and -0.17, breast cancer
        -0.07 and -0.15; the edit took 1.5 to 2.9 times as long in these runs (two side
        by side).
        Without input statistics (an editor saved before they were recorded), the exact
        edit is :meth:`apply`'s top scores alone.

        On Adult (6 held-out MLPs d-h-h-2, h in {16, 32, 48}, seed 0), the untrained
        editor's edits reached 0.8482 at sparsity 0.9 and 0.8455 at 0.95 with the choice
        by saliency, against 0.8478 and 0.8369 when the top scores chose the weights as
        well as the budgets and the kept weights were refitted; exact OBC with the layer
        rates of global magnitude pruning reached 0.8515 and 0.8464 on the same networks.

        Training's soft edits are not refitted: on Adult (36 networks, 12 held out, 500
        steps, seed 0) a refit through the soft gates in training (256 proxy rows, the
        solve differentiated) reached 0.8471 at sparsity 0.9 and 0.8366 at 0.95, against
        0.8467 and 0.8354 for the untrained editor with the refit at edit time, and its
        fits took 187 and 140 s against 117 and 118 s without it (on a machine shared
        with other work).

        The refinement (100 steps, relative rate 0.05), on Adult's 12 held-out networks
        of the benchmark (untrained editor, seed 0): from 0.8494 to 0.8512 at sparsity
        0.9 and from 0.8439 to 0.8464 at 0.95 on the proxy rows; the edit took 48.7 ms
        per network at 0.9 against 12.9 ms without it (the refinement's hand-written
        gradient, :func:`~._refine.refine_outputs`). Applied after the threshold match
        in an earlier trial, 50 steps reached 0.8510 and 0.8460, and relative rates from
        0.02 to 0.1 moved the accuracy by at most 0.05 points.
        """
        weights = item["weights"]
        rows = self.refit_rows(item, weights[0][0].device, torch.float64) if hard else None
        if rows is None or not self.refit:
            edited = self.apply(weights, edit, target, hard=hard, temperature=temperature)
            return self.recalibrate(item, edited)
        logits, start = [], 0
        for w, _ in weights:
            logits.append(edit["weight_gate"][start : start + w.numel()].reshape(w.shape))
            start += w.numel()
        # within without_refinement (training's checkpoint selection) the top scores'
        # budgets alone: the losses that choose between budgets are refined edits'
        choose = refining() and self.refine_steps > 0 and self.choice_steps > 0
        pulled, moments = base_edit(weights, edit), self.row_moments(rows)
        candidates = []
        if refining() and self.error_budgets:
            n = sum(w.numel() for w, _ in weights)
            k = n - n_to_zero(n, target)  # the weights kept, as in _scores
            candidates.append(
                error_budgets(
                    item["module"], weights, k, rows, start=pulled, adjust=logits, moments=moments
                )
            )
        if choose:
            powers = self.budget_powers
        else:  # one set of budgets: the curves' where they were computed
            powers = () if candidates else self.budget_powers[:1]
        for power in powers:
            scores, k = self._scores(weights, edit, target, power=power)
            keep = top_k_mask(scores, k)
            counts = [int(p.sum()) for p in torch.split(keep, [w.numel() for w, _ in weights])]
            if counts not in candidates:
                candidates.append(counts)
        tried = [
            prune_and_refit(
                item["module"],
                weights,
                counts,
                rows,
                start=pulled,
                adjust=logits,
                rounds=self.rounds,
                moments=moments,
            )
            for counts in candidates
        ]
        if len(tried) > 1:
            # the budgets whose edit is nearest the original's outputs after a few steps
            losses = [
                refine_outputs(
                    item["module"],
                    weights,
                    edited,
                    rows,
                    steps=self.choice_steps,
                    relative_rate=self.refine_rate,
                    return_loss=True,
                )[1]
                for edited in tried
            ]
            losses = [math.inf if loss is None else loss for loss in losses]
            tried = [tried[losses.index(min(losses))]]
        edited = refine_outputs(
            item["module"],
            weights,
            tried[0],
            rows,
            steps=self.refine_steps,
            relative_rate=self.refine_rate,
        )
        return self.recalibrate(item, edited)

    def _scores(self, weights, edit, target, *, power=1.0):
        """Each weight's score (its prior, its first layer's magnitudes scaled by the
        inputs' standard deviations to the ``power``, plus the learned logit; ``DEAD``
        where it is zero already) and the number of weights to keep."""
        original = torch.cat([w.reshape(-1) for w, _ in weights])
        k = original.numel() - n_to_zero(original.numel(), target)
        scale = self.input_scale(original.device)
        magnitude = magnitudes(weights, None if scale is None or power == 0 else scale**power)
        scores = torch.where(
            original != 0,
            prior_scores(weights, magnitude, k, protect_output=True) + edit["weight_gate"],
            torch.full_like(edit["weight_gate"], DEAD),
        )
        return scores, k

    def apply(self, weights, edit, target, *, hard, temperature):
        edited = base_edit(weights, edit)
        scores, k = self._scores(weights, edit, target)
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
        rows = self.refit_rows(item, b_last.device, b_last.dtype)
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
