"""Several requirements met by one edit: drop inputs, prune, then the learned residual edit.

A joint requirement holds up to one requirement of each kind (data minimisation,
sparsity, one parity constraint) and edits a network in a fixed order, whatever order
they are named in:

1. the inputs the network may not use (``features``, and those outside a budget) are
   dropped, their contribution replaced by its least-squares prediction from the kept
   features (:class:`~._minimisation.InputDropping`);
2. the minimised network is pruned to the sparsity target: each layer's budget chosen
   among those of the layers' error curves (:func:`~._allocation.error_budgets`) and of
   input-scaled magnitudes (:meth:`~._sparsity.Sparsity.edit`), the weights kept
   within it chosen by optimal-brain-surgeon saliency and refitted to the minimised
   network's layer outputs (:func:`~._sparsity.prune_and_refit` on rows drawn from the
   fit-time input statistics) and refined, then a binary classifier's decision threshold matched to
   the minimised network's (:meth:`~._sparsity.Sparsity.recalibrate`): the exact edits
   of the two single editors, chained;
3. the metanetwork's residuals are added to the weights that survive (zeros stay zero),
   so that every structural requirement holds exactly whatever the residuals are. With
   sparsity and a parity constraint together, the residuals edit the minimised network
   before pruning instead, and step 2 prunes the edited network
   (:meth:`JointRequirement._pruned_parity_edit`).

Steps 1 and 2 read no output of the metanetwork: they are the classical priors, computed
once per network and target (and cached in the prepared network during training). The
metanetwork learns step 3 on the joint objective: the edited network's divergence from
the original and cross-entropy on the task labels, plus the parity term where a parity
constraint is among the requirements; its training edits are its exact edits (with
sparsity and parity together, the edits before pruning). With
calibration rows, a parity constraint's residuals take each network's own strength, as a
parity editor's do (:meth:`JointRequirement.calibrated_edit`); with sparsity, a network
that pruning leaves with a free unit in every hidden layer takes a group-score path
through those units instead (:mod:`._group_path`), which was more accurate on Adult.

Minimising before pruning is the order that kept more accuracy when single editors are
chained (docs: the editing guide). The refit of step 2 could aim at the original
network's layer outputs instead of the minimised network's, so as to take up there too
what the dropped features carried: on 6 held-out Adult MLPs (five forbidden feature
groups, sparsity 0.9, untrained editors) that reached 0.8444 against 0.8436, but on the
synthetic task of the tests (two of eight features forbidden, sparsity 0.7, four seeds)
0.906 to 0.908 against 0.912 to 0.914; the chained edits are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ._group_path import group_path_line
from ._measures import features_used
from ._minimisation import DataMinimisation
from ._parity import (
    Fairness,
    calibrated_on_line,
    calibrated_residuals,
    preferred,
    read_columns,
)
from ._requirement import Requirement, base_edit, warn_parity_unmeasured
from ._sparsity import Sparsity, refit_kept_weights

__all__ = ["JointRequirement", "with_target_entries"]

#: The metanetwork's outputs (the other entries of an edit are scales).
_OUTPUTS = ("weight_gate", "weight_residual", "bias_residual", "node_gate")


def _without_outputs(edit: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``edit`` with the metanetwork's outputs at zero: the identity edit."""
    return {
        key: torch.zeros_like(value) if key in _OUTPUTS else value for key, value in edit.items()
    }


def with_target_entries(params: dict[str, Any], target: Any) -> dict[str, Any]:
    """``params`` of ``set_params`` with its ``target__<requirement>`` entries set in a
    copy of the ``target`` dict (``params``' own, else ``target``, the editor's; a new
    dict where it is None): the dict given before is not changed."""
    params = dict(params)
    entries = {key: params.pop(key) for key in list(params) if key.startswith("target__")}
    if not entries:
        return params
    target = params.get("target", target)
    if target is not None and not isinstance(target, Mapping):
        raise ValueError(
            f"{sorted(entries)} set entries of a dict target (an editor for several "
            f"requirements); target is {target!r}."
        )
    target = dict(target or {})
    target.update({key.removeprefix("target__"): value for key, value in entries.items()})
    params["target"] = target
    return params


class JointRequirement(Requirement):
    """Several requirements, met by one edit (see the module's description).

    Parameters
    ----------
    parts : sequence of Requirement
        At most one of each kind (:class:`~._minimisation.DataMinimisation`,
        :class:`~._sparsity.Sparsity`, :class:`~._parity.Fairness`), built for the same
        ``n_features`` and ``forbidden``; the names the editor was given, in its order.
    n_features : int
    forbidden : sequence of int, default=()
        Input features the edited networks may not use (whichever requirements are
        named: with a parity constraint, e.g. the sensitive feature's own columns).
    """

    n_node_flags = 1

    def __init__(
        self, parts: Sequence[Requirement], n_features: int, forbidden: Sequence[int] = ()
    ) -> None:
        super().__init__(n_features, forbidden)
        #: The requirements' names, in the order given.
        self.names: list[str] = [part.name for part in parts]
        self._parts = {part.name: part for part in parts}
        kinds = [type(part) for part in parts]
        for kind in (DataMinimisation, Sparsity, Fairness):
            if kinds.count(kind) > 1:
                raise ValueError(
                    f"requirement={self.names!r} names more than one requirement of the "
                    f"same kind ({[p.name for p in parts if type(p) is kind]}); a joint "
                    "editor meets at most one of each: data_minimisation, sparsity and one "
                    "parity constraint."
                )
        self._dropping = next((p for p in parts if isinstance(p, DataMinimisation)), None)
        if self._dropping is None and self.forbidden:
            # features barred without a data-minimisation requirement (a group-blind
            # parity edit): dropped in the same way, with no budget
            self._dropping = DataMinimisation(n_features, forbidden)
        if self._dropping is not None:
            # the steps after it refit or edit the minimised network; refitted to the
            # original's outputs first, on Adult (S + M + P, 12 held-out networks, seed 0)
            # the edits lost 0.2 points (0.8314 against 0.8335)
            self._dropping.refit_layers = False
        self._sparsity = next((p for p in parts if isinstance(p, Sparsity)), None)
        self._fairness = next((p for p in parts if isinstance(p, Fairness)), None)

    # ------------------------------------------------------------------ what it is

    @property
    def name(self) -> str:
        return "+".join(self.names)

    @property
    def needs_sensitive(self) -> bool:
        return self._fairness is not None

    @property
    def reads_calibration(self) -> bool:
        return self._fairness is not None

    @property
    def refits_on_rows(self) -> bool:
        """Without a parity constraint (whose calibration rows set the strength, the
        refits keeping the proxy rows): whether a part refits on rows."""
        return self._fairness is None and any(
            part.refits_on_rows for part in self._parts_in_order()
        )

    @property
    def settings(self) -> dict[str, Any]:
        """The training settings of the requirement the metanetwork's residuals serve:
        the parity constraint's where there is one (its loss term needs them), else
        sparsity's, else data minimisation's."""
        part = self._fairness or self._sparsity or self._dropping
        return dict(part.settings)

    def _parts_in_order(self) -> list[Requirement]:
        return list(self._parts.values())

    def _synced(self) -> None:
        """Give every part the joint requirement's input statistics (a loaded editor
        sets them on the joint requirement alone)."""
        parts = [*self._parts_in_order(), self._dropping]
        for part in parts:
            if part is not None and part.input_cov is not self.input_cov:
                part.input_mean, part.input_cov = self.input_mean, self.input_cov
                part.__dict__.pop("_proxy_cache", None)
                part.__dict__.pop("_regression_cache", None)

    def set_input_statistics(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        super().set_input_statistics(mean, cov)
        self._synced()

    # ------------------------------------------------------------------ the target

    def check_settings(self, *, target, features):
        if target is not None and not isinstance(target, Mapping):
            raise ValueError(
                f"with several requirements ({self.names}), target is a dict of each "
                f"requirement's target, e.g. {{{self.names[0]!r}: ...}}, or None for their "
                f"defaults; got {target!r}."
            )
        targets = dict(target or {})
        for name, part in self._parts.items():
            # the features apply to the joint edit (step 1), whichever part reads them
            part.check_settings(
                target=targets.get(name), features=features if part.reads_features else None
            )

    def check_task(self, *, n_classes, has_groups):
        for part in self._parts_in_order():
            part.check_task(n_classes=n_classes, has_groups=has_groups)

    def check_population(self, modules):
        """What the parts say of the networks, where sparsity is not among them (their
        warnings about pruned networks recommend an editor that prunes as well); whether
        the networks were edited for a parity constraint it does not measure."""
        if self._sparsity is None:
            for part in self._parts_in_order():
                part.check_pruned(modules)
        warn_parity_unmeasured(modules, self.name, self.targets_met(self.default_target()))

    def targets_met(self, target: Mapping) -> dict[str, Any]:
        return dict(target)

    def default_target(self) -> dict[str, Any]:
        return {name: part.default_target() for name, part in self._parts.items()}

    def check_target(self, target: Any) -> dict[str, Any]:
        """A dict of each requirement's checked target; the requirements it leaves out
        take their defaults."""
        if target is None:
            target = {}
        if not isinstance(target, Mapping):
            raise ValueError(
                f"target for {self.name} is a dict of each requirement's target (keys among "
                f"{self.names}), got {target!r}."
            )
        unknown = sorted(set(target) - set(self._parts), key=str)
        if unknown:
            raise ValueError(
                f"target names {unknown}, which are not among the requirements {self.names}."
            )
        return {
            name: part.check_target(target[name] if name in target else part.default_target())
            for name, part in self._parts.items()
        }

    def check_target_range(self, target_range):
        if target_range is not None:
            raise ValueError(
                f"target_range is not supported with several requirements ({self.names}): "
                "fit one editor per combination of targets, or search them with "
                "GridSearchCV over target."
            )
        return None

    def draw_target(self, rng, target, target_range):
        return target

    def validation_targets(self, target, target_range):
        return [target]

    def metanet_target(self, target: Mapping) -> float:
        """The target the metanetwork reads: that of the requirement its residuals serve
        (see :attr:`settings`)."""
        part = self._fairness or self._sparsity or self._dropping
        return part.metanet_target(target.get(part.name))

    def training_goal(self, target, *, margin, relative_margin):
        return {
            name: part.training_goal(target[name], margin=margin, relative_margin=relative_margin)
            for name, part in self._parts.items()
        }

    # ------------------------------------------------------------------ the edit

    def _structural(self, item: dict, target: Mapping, edit: dict) -> dict:
        """Steps 1 and 2 of the module's description for ``item`` at ``target``, which
        read no output of the metanetwork: the network they make, as a prepared network
        (``module`` and ``weights``; ``pruned``, the network step 2 pruned); cached in
        ``item``. Beside a parity constraint, step 2 follows the parity edit
        (:meth:`_pruned_parity_edit`) and is not made here (``weights`` is None)."""
        key = tuple(
            (name, target[name]) for name in self.names if self._parts[name] is not self._fairness
        )
        cache = item.setdefault("joint_structural", {})
        if key not in cache:
            self._synced()
            identity = _without_outputs(edit)
            # rows given at edit time are refitted on in place of the proxy rows
            given = {"rows": item["rows"]} if "rows" in item else {}
            edited = {"module": item["module"], "weights": item["weights"], **given}
            with torch.no_grad():
                if self._dropping is not None:
                    budget = target.get(DataMinimisation.name)
                    weights = self._dropping.edit(
                        edited, identity, budget, hard=True, temperature=1.0
                    )
                    edited = {"module": item["module"], "weights": weights, **given}
                if self._sparsity is not None and self._fairness is not None:
                    # pruned after the parity edit (_pruned_parity_edit), not here
                    edited = {"module": item["module"], "weights": None, "pruned": edited}
                elif self._sparsity is not None:
                    weights = self._sparsity.edit(
                        edited, identity, target[Sparsity.name], hard=True, temperature=1.0
                    )
                    # the network pruned (its positive share cached in it by the
                    # recalibration), for the recalibration after the residuals
                    edited = {"module": item["module"], "weights": weights, "pruned": edited}
            cache[key] = edited
        return cache[key]

    def apply(self, weights, edit, target, *, hard, temperature):
        """Not defined for a joint requirement: its pruning refits the network's layers,
        which needs the network's architecture; :meth:`edit` takes the prepared network."""
        raise TypeError(
            "a joint requirement edits prepared networks (edit), not bare weights (apply)."
        )

    def edit(self, item, edit, target, *, hard, temperature):
        """The structural edit (steps 1 and 2, the same in training and at edit time),
        then the metanetwork's residuals on the weights that survive; without a parity
        constraint, a pruned binary classifier's decision threshold is matched once more,
        after the residuals, to that of the network before pruning.

        With sparsity and a parity constraint, the residuals edit the network before
        pruning instead (training's edit), and the exact edit prunes that edited network
        (:meth:`_pruned_parity_edit`)."""
        structural = self._structural(item, target, edit)
        if self._fairness is not None and self._sparsity is not None:
            dense = base_edit(structural["pruned"]["weights"], edit)
            if not hard:
                return dense
            return self._pruned_parity_edit(item, dense, target, _without_outputs(edit))
        edited = base_edit(structural["weights"], edit)
        if self._fairness is None and self._sparsity is not None:
            edited = self._sparsity.recalibrate(structural["pruned"], edited)
        return edited

    def _pruned_parity_edit(self, item, dense, target, identity):
        """``dense``, the parity edit of the network before pruning, pruned as step 2
        prunes (its weights kept chosen on it, refitted to its layer outputs, its
        decision threshold matched to its own); ``identity`` is the identity edit.

        A parity edit made on the pruned network acts through the tenth of the weights
        that pruning to 0.9 leaves, and pruning the edited network with the weights kept
        chosen on the unedited one loses what the edit moved: on 6 held-out Adult MLPs
        (sparsity 0.9, the sex columns dropped, a gap of 0.05, calibrated on the
        training rows, seed 0) these reached 0.8125 and 0.8235, and pruning the edited
        network 0.8359, every test gap within the target (sex columns and four more
        groups dropped: 0.8320, 0.8309 and 0.8340).
        """
        with torch.no_grad():
            dense = [(w.detach(), b.detach()) for w, b in dense]
            prepared = {"module": item["module"], "weights": dense}
            return self._sparsity.edit(
                prepared, identity, target[Sparsity.name], hard=True, temperature=1.0
            )

    def calibrated_edit(self, item, edit, target, calibration, *, temperature):
        """The exact edit whose parity part is scaled by the least strength in ``[0, 6]``
        at which the gap bound of the parity constraint on the calibration rows is at
        most its target (:meth:`~._parity.Fairness.calibrated_edit`); the structural edit
        is not scaled.

        With sparsity, where the minimised network pruned as step 2 prunes it without
        the parity edit has a free unit in every hidden layer, the strength moves a
        group-score path through those units from that network (:meth:`_path_line`);
        elsewhere it moves the weights along the line from the unedited network refitted
        on the exact edit's nonzero weights (strength 0) to the exact edit (strength 1),
        on which every zero stays zero (and there too where the path's edit does not
        meet the target, the better of the two kept). Without sparsity, along the line
        from the edit with no residuals to the edit, which is affine in their scale (and
        the path's line from the edit with no residuals too, where that network has one,
        the better calibrated edit kept: :func:`~._parity.calibrated_with_path`).

        On Adult (the editor benchmark's 12 held-out networks, sparsity 0.9, five
        forbidden groups, a gap of 0.05, calibrated on 22,561 validation rows, seed 0),
        the path from the pruned network alone reached 0.8359 in 29 ms per network,
        every test gap within the target; the better of the residuals' line and a path
        from its start 0.8352 in 45 ms, and the residuals' line alone 0.8334 in 31 ms.
        Where the path is taken, the metanetwork's residuals are not read: they serve
        the networks without free units, and edits without calibration rows.
        """
        if self._fairness is None:
            return super().calibrated_edit(
                item, edit, target, calibration, temperature=temperature
            )
        goal = float(target[self._fairness.name])
        module = item["module"]
        if self._sparsity is not None:
            line, found = self._path_line(item, target, edit, calibration), None
            if line is not None:
                found = calibrated_on_line(module, *line, self._fairness, calibration, goal)
            if found is None or found[1].bound > goal:  # the residuals' line
                end = self.edit(item, edit, target, hard=True, temperature=temperature)
                base = self._structural(item, target, edit)["pruned"]["weights"]
                rows = self._sparsity.proxy_rows(end[0][0].device, torch.float64)
                with torch.no_grad():
                    base = [(w.detach(), b.detach()) for w, b in base]
                    moments = self._sparsity.row_moments(rows)
                    start = refit_kept_weights(module, base, end, rows, moments=moments)
                residuals = calibrated_on_line(
                    module, start, end, self._fairness, calibration, goal
                )
                found = residuals if found is None else max(found, residuals, key=preferred)
            weights, calibrated = found
        else:  # the residuals on the structural edit: the edit is affine in their scale
            weights, calibrated = calibrated_residuals(
                self,
                self._fairness,
                item,
                edit,
                target,
                calibration,
                goal,
                temperature,
                path_columns=lambda start: self._path_columns(module, start, target),
            )
        item["calibrated"] = calibrated
        return weights

    def _path_line(self, item, target, edit, calibration):
        """The line of a group-score path (:func:`~._group_path.group_path_line`) from
        the minimised network pruned as step 2 prunes it, without the parity edit (the
        layer budgets, saliency, refit and refinement of
        :meth:`~._sparsity.Sparsity.edit`, the decision threshold matched), or None
        where that network has none."""
        minimised = self._structural(item, target, edit)["pruned"]
        with torch.no_grad():
            pruned = self._sparsity.edit(
                minimised,
                _without_outputs(edit),
                target[Sparsity.name],
                hard=True,
                temperature=1.0,
            )
            pruned = [(w.detach(), b.detach()) for w, b in pruned]
            columns = self._path_columns(item["module"], pruned, target)
            return group_path_line(item["module"], pruned, calibration, columns)

    def _path_columns(self, module, start, target):
        """The input columns a group-score path of the edit ``start`` of ``module`` at
        ``target`` may read (:meth:`~._parity.Fairness.path_columns`): none of the
        forbidden ones, and with a budget of features, those ``start`` reads alone."""
        if self._dropping is not None and target.get(DataMinimisation.name) is not None:
            return read_columns(start)
        columns = self._fairness.path_columns(module, start)
        if self._dropping is None or not len(columns):
            return columns
        barred = torch.as_tensor(self._dropping.forbidden, dtype=columns.dtype)
        return columns[~torch.isin(columns, barred.to(columns.device))]

    # ------------------------------------------------------------------ the measure

    def loss(self, edited_logits, y, groups, n_groups, goal, temperature):
        total = edited_logits.sum() * 0.0
        for name, part in self._parts.items():
            total = total + part.loss(edited_logits, y, groups, n_groups, goal[name], temperature)
        return total

    def measure(self, edited_weights, positive, y, groups, n_groups) -> dict[str, float]:
        """Each requirement's value, and ``forbidden_used``: how many of the forbidden
        features the edited network reads."""
        values = {
            name: part.measure(edited_weights, positive, y, groups, n_groups)
            for name, part in self._parts.items()
        }
        values["forbidden_used"] = len(set(features_used(edited_weights)) & set(self.forbidden))
        return values

    def violation(self, value, target) -> float:
        """The sum of the requirements' violations, plus one per forbidden feature read
        (none: the edit drops them exactly)."""
        total = float(value["forbidden_used"])
        for name, part in self._parts.items():
            total += part.violation(value[name], target[name])
        return total

    def compliance(self, value, target) -> dict[str, bool]:
        """``meets_<requirement>``: whether the edited network meets each requirement
        (``data_minimisation``: reads no forbidden feature and at most its budget)."""
        out = {}
        for name, part in self._parts.items():
            meets = part.violation(value[name], target[name]) == 0
            if isinstance(part, DataMinimisation):
                budget = target[name]
                meets = value["forbidden_used"] == 0 and (budget is None or value[name] <= budget)
            out[f"meets_{name}"] = bool(meets)
        return out

    def report_columns(self, edited_weights, positive, y, groups, n_groups):
        columns = {}
        for part in self._parts_in_order():
            columns.update(part.report_columns(edited_weights, positive, y, groups, n_groups))
        return columns
