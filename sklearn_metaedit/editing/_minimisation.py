"""Data minimisation: the edited network reads none of some inputs, or only a budget of them.

The first-layer columns of the forbidden features, and of the features outside the
top-``k`` budget (ranked by column norm times the feature's standard deviation plus a
learned logit), are exactly zero; what they contributed is replaced by its
least-squares prediction from the kept features (fit-time means and covariance of the
inputs), which is what a network retrained without them would learn to do from the same
correlations. :class:`InputDropping` is that step, shared with the parity requirements,
whose edited networks may be barred from the sensitive feature's own columns.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any, ClassVar

import torch

from ._gates import soft_top_k, top_k_mask
from ._least_squares import refit_units
from ._magnitude import DEAD
from ._measures import features_used
from ._requirement import Requirement, base_edit, count_pruned
from ._sparsity import prune_and_refit, refit_kept_weights

__all__ = ["DataMinimisation", "InputDropping"]

# ridge of the refit of a pruned first layer, relative to its inputs' mean second moment
_RIDGE = 1e-4


class InputDropping:
    """Dropping input features from the first layer, with least-squares compensation.

    A mixin of :class:`~._requirement.Requirement` subclasses: it reads their
    ``n_features``, ``forbidden`` and input statistics.
    """

    def _minimise(self, weights, edit, target, *, hard, temperature, compensate=True):
        """Edited weights that read none of ``forbidden`` and, for an integer ``target``,
        at most ``target`` features."""
        edited = base_edit(weights, edit)
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
            torch.full_like(norms, DEAD),
        )
        # forbidden features always score lowest, so the top-k never picks them
        scores = torch.where(allowed, scores, torch.full_like(norms, 2 * DEAD))
        kept = top_k_mask(scores, keep) & allowed
        if hard or keep >= int(allowed.sum()):
            gates = kept.to(first.dtype)
        else:
            gates = soft_top_k(scores, keep, temperature) * allowed
        w1, b1 = edited[0]
        dropped = w1 * (1 - gates[None, :].to(w1.dtype))
        w1 = torch.where(gates[None, :] > 0, w1, 0.0) if hard else w1 * gates[None, :].to(w1.dtype)
        if compensate and self.input_cov is not None:
            nonzero = first != 0
            if hard and not bool(nonzero[:, kept & live].all()):
                w1, b1 = self._refit_sparse(w1, b1, dropped, kept & live, nonzero)
            else:
                w1, b1 = self._compensate(w1, b1, dropped, kept & live, nonzero)
        return [(w1, b1), *edited[1:]]

    def _refit_sparse(self, w1, b1, dropped, kept, nonzero):
        """The compensation of a first layer with zero weights among its kept columns (a
        pruned network): each unit's nonzero kept weights and its bias refitted by
        least squares so that its output best matches, over the fit-time input
        statistics, what it computed with the dropped columns; zero weights stay zero.

        The shared regression of :meth:`_compensate` is this refit for a dense layer;
        added only where a pruned unit still has a weight, it would lose what the
        unit's zeros cannot carry, so that a network pruned first would pay for its
        dropped features twice.
        """
        mean, cov = self.input_mean.to(w1.device), self.input_cov.to(w1.device)
        n = len(mean)
        gram = torch.empty(n + 1, n + 1, dtype=torch.float64, device=w1.device)
        gram[:n, :n] = cov + torch.outer(mean, mean)
        gram[:n, n] = gram[n, :n] = mean
        gram[n, n] = 1.0
        full = torch.cat([(w1 + dropped).double(), b1.double()[:, None]], dim=1)
        start = torch.cat([w1.double(), torch.zeros_like(b1, dtype=torch.float64)[:, None]], 1)
        penalty = torch.full((n + 1,), _RIDGE * float(gram.diagonal()[:n].mean()) + 1e-12)
        penalty = penalty.to(gram)
        penalty[n] = 0.0  # none on the bias
        mask = torch.cat([nonzero & kept[None, :], nonzero.new_ones(len(w1), 1)], dim=1)
        solution = refit_units(gram, full @ gram + penalty * start, penalty, mask)
        return solution[:, :n].to(w1.dtype), solution[:, n].to(b1.dtype)

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


class DataMinimisation(InputDropping, Requirement):
    """The networks may not use some input features, or only a budget of them.

    Its target is the number of input features to keep, chosen by the editor per
    network; None keeps every feature that is not forbidden.

    Parameters
    ----------
    n_features : int
    forbidden : sequence of int, default=()
        Indices of input features that must not be used.
    """

    name = "data_minimisation"
    refits_on_rows = True
    #: Whether an exact edit of a dense network refits its layers to the network's
    #: outputs (:meth:`edit`); a joint requirement's own steps refit after it instead.
    refit_layers: ClassVar[bool] = True
    # the least-squares compensation does most of the work: one round of message
    # passing and a higher rate suffice
    settings: ClassVar[dict[str, Any]] = {
        **Requirement.settings,
        "num_layers": 1,
        "learning_rate": 1e-3,
    }

    def check_settings(self, *, target, features):
        if features is None and target is None:
            raise ValueError(
                "requirement='data_minimisation' needs features= (the features the networks "
                "may not use) or target=k (the number of features to keep), or both."
            )

    def check_target(self, target):
        if target is None:
            return None
        n_allowed = self.n_features - len(self.forbidden)
        if isinstance(target, bool) or not isinstance(target, Integral):
            valid = False
        else:
            valid = 1 <= target <= n_allowed
        if not valid:
            raise ValueError(
                "target for data_minimisation is the number of input features to keep, "
                f"an integer in [1, {n_allowed}] (the features not forbidden); got "
                f"{target!r}."
            )
        return int(target)

    def sample_target(self, rng, low, high):
        """A budget drawn uniformly from the integers ``low .. high``."""
        return int(rng.randint(int(low), int(high) + 1))

    def range_points(self, low, high):
        return [int(low), round((low + high) / 2), int(high)]

    def metanet_target(self, target):
        keep = self.n_features - len(self.forbidden) if target is None else target
        return float(keep) / self.n_features

    def apply(self, weights, edit, target, *, hard, temperature):
        return self._minimise(weights, edit, target, hard=hard, temperature=temperature)

    def check_pruned(self, modules):
        """Warn where the networks are pruned (a tenth or more of their weights exactly
        zero): minimising a pruned network keeps its sparsity but has fewer weights to
        take up the dropped features than minimising first, then pruning. Networks that
        an editor for sparsity pruned in this process are not seen here: the editor is
        fitted on, and edits, the networks before their pruning (:mod:`._provenance`)."""
        pruned = count_pruned(modules)
        if pruned:
            warnings.warn(
                f"{pruned} of the {len(modules)} networks are pruned (a tenth or more of "
                "their weights are zero) and no editor for sparsity pruned them in this "
                "process (a network saved and loaded, or copied, loses that record): the "
                "edits keep each layer's number of zero weights and choose them afresh, but "
                "a pruned network has fewer weights to take up the dropped features. "
                "Minimising first, then pruning, kept more accuracy (on make_classification "
                "data, 0.945 against 0.914; docs: the editing guide).",
                UserWarning,
                stacklevel=6,
            )

    def edit(self, item, edit, target, *, hard, temperature):
        """:meth:`apply`; an exact edit then refits every layer's weights to the
        network's outputs on the proxy rows, layer after layer, each from what the layers
        before it now pass on (:func:`._sparsity.refit_kept_weights`: the reconstruction
        step of one-shot pruners, the zeros kept), where :attr:`refit_layers` is set.

        The compensation matches the first layer's outputs alone; the units after it
        still see those outputs through their ReLUs. On Adult (12 held-out MLPs, the 29
        columns of five groups forbidden, editors of 3 seeds) the refit took the trained
        editor's edits from 0.8462 to 0.8466 in the mean (0.8467, 0.8467, 0.8466 per
        seed, against 0.8467, 0.8465, 0.8455), retraining without the columns reaching
        0.8464. Elsewhere it helps in the mean, not always: on three synthetic tasks
        (12 features) and German credit (61 columns), untrained editors, three forbidden
        features or budgets of a third and a sixth of the features, 4 held-out MLPs
        each, it moved the accuracy by -0.55 to +1.66 points, +0.26 in the mean (7 of 12
        settings up).

        A network that an editor for sparsity pruned in this process is edited before
        its pruning and pruned again by that editor (:mod:`._provenance`; not here). An
        exact edit of another network with zero weights (a pruned one) is
        then pruned again from the features kept: each layer keeps as many weights as
        before, chosen afresh among the kept features' columns and the other layers'
        entries and refitted to the network's outputs (:func:`._sparsity.
        prune_and_refit` on the proxy rows), so that the weights the dropped features
        held move to where they now serve best. Its sparsity is the network's.

        A pruned network's zeros cannot carry what the dropped features contributed:
        on 3 held-out MLPs of a synthetic task (10 features, 2 of them forbidden, after
        a sparsity editor at 0.8) the compensation alone reached 0.903 in the mean,
        as much as zeroing the columns, against 0.935 for the editors in the other
        order.
        """
        weights = item["weights"]
        rows = self.refit_rows(item, weights[0][0].device, torch.float64) if hard else None
        if rows is None:
            return self.apply(weights, edit, target, hard=hard, temperature=temperature)
        if all(bool((w != 0).all()) for w, _ in weights):
            edited = self.apply(weights, edit, target, hard=True, temperature=temperature)
            if not self.refit_layers:
                return edited
            moments = self.row_moments(rows)
            return refit_kept_weights(item["module"], weights, edited, rows, moments=moments)
        # the features kept, without the compensation that the refit below replaces
        edited = self._minimise(
            weights, edit, target, hard=True, temperature=temperature, compensate=False
        )
        alive = [torch.ones_like(w, dtype=torch.bool) for w, _ in weights]
        used = torch.zeros(self.n_features, dtype=torch.bool, device=weights[0][0].device)
        used[features_used(edited)] = True
        alive[0] = alive[0] & used[None, :]
        counts = [int((w != 0).sum()) for w, _ in weights]
        moments = self.row_moments(rows)
        return prune_and_refit(item["module"], weights, counts, rows, alive=alive, moments=moments)

    def measure(self, edited_weights, positive, y, groups, n_groups):
        return float(len(features_used(edited_weights)))
