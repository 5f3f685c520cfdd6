"""What a requirement is: how it edits, relaxes, measures, and owns its target.

A requirement turns the metanetwork's raw output (gate logits and residuals, see
:mod:`._metanet`) into edited weights. During training the step is soft (sigmoid gates
around the per-network k-th score, at a temperature) so that gradients reach the
metanetwork; at edit time it is exact. Every edit keeps the input network's zero
weights at zero, so that editors chain in a pipeline without undoing each other.

A requirement also owns its target: the default, the check of a target or a range,
the targets a range editor trains on (:meth:`Requirement.draw_target`) and selects its
checkpoints at (:meth:`Requirement.validation_targets`), the goal the training loss
aims at, and how the edited network's value is measured and compared with the target.
The editor asks; it never branches on which requirement it holds.

The requirements themselves: :mod:`._sparsity`, :mod:`._minimisation`, :mod:`._parity`;
:mod:`._requirements` maps their names to them.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence
from numbers import Real
from typing import Any, ClassVar

import numpy as np
import torch

from .._constraint_names import CONSTRAINTS
from ._graph import Weights, split_graph_values
from ._least_squares import second_moments

__all__ = [
    "MET",
    "Requirement",
    "base_edit",
    "count_pruned",
    "input_statistics",
    "recorded",
    "requirements_met",
    "warn_parity_unmeasured",
]

#: The attribute of an edited network's module that records the requirements its edits
#: were made for, ``{name: target}``, so that a later editor knows what it may undo.
MET = "metaedit_requirements"

#: What the editor benchmark measured of a parity edit followed by pruning (its
#: several-requirements section, calibrated on validation rows).
_PARITY_THEN_PRUNING = (
    "editing parity, then pruning kept 0.841 with 8 of the 12 test gaps above the "
    "target; one editor for both kept 0.838 with every gap within it"
)

#: Rows drawn from a Gaussian with the fit-time input mean and covariance, on which a
#: pruned binary classifier's decision threshold is matched to the original's.
_PROXY_ROWS = 1024
_PROXY_SEED = 0


def input_statistics(X: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and covariance (d, d) of the task's inputs, in float64."""
    X64 = torch.as_tensor(X, dtype=torch.float64)
    mean = X64.mean(dim=0)
    centred = X64 - mean
    return mean, centred.T @ centred / max(len(X64) - 1, 1)


def count_pruned(modules: Sequence) -> int:
    """How many of the networks are pruned: a tenth or more of their weights (not
    biases) exactly zero."""
    pruned = 0
    for module in modules:
        weights = [p for name, p in module.named_parameters() if name.endswith("weight")]
        zeros = sum(int((w == 0).sum()) for w in weights)
        pruned += zeros >= 0.1 * sum(w.numel() for w in weights)
    return pruned


def requirements_met(module) -> dict[str, Any]:
    """What the edits that made ``module`` were made for: requirement names and their
    targets (empty for a network no editor made)."""
    return dict(getattr(module, MET, {}))


def recorded(module, met: dict[str, Any]) -> dict[str, Any]:
    """The record of a network that an edit made for ``met`` made from ``module``: the
    earlier entries, less the parity constraints the edit does not measure (it moves
    their gap), and ``met``."""
    earlier = requirements_met(module)
    moved = [k for k in earlier if k in CONSTRAINTS and k not in met]
    if moved:
        warnings.warn(
            f"a network edited for {moved[0]} (target {earlier[moved[0]]}) is edited for "
            f"{', '.join(met)}, which does not measure its gap and moves it: the entry is "
            "dropped from its record (module_.metaedit_requirements). Edit for parity "
            "last, or use one editor for every requirement.",
            UserWarning,
            stacklevel=8,
        )
    return {k: v for k, v in earlier.items() if k not in moved} | met


def warn_parity_unmeasured(modules: Sequence, name: str, measured: Sequence[str] = ()) -> None:
    """Warn where networks were edited for a parity constraint (:func:`requirements_met`)
    other than those in ``measured``, which an editor for ``name`` is to edit again
    without measuring it."""
    records = [requirements_met(module) for module in modules]
    edited = [
        (record, [c for c in CONSTRAINTS if c in record and c not in measured])
        for record in records
    ]
    edited = [(record, moved) for record, moved in edited if moved]
    if edited:
        met, constraint = edited[0][0], edited[0][1][0]
        warnings.warn(
            f"{len(edited)} of the {len(modules)} networks were edited "
            f"for {constraint} (target {met[constraint]}); requirement={name!r} does not "
            "measure it, so that its edits move the gap, past the target on some networks. "
            f"On Adult (12 held-out networks, sparsity 0.9, gap 0.05) {_PARITY_THEN_PRUNING}. "
            "Edit for parity last, or use one editor for every requirement "
            f"(MetanetEditor([..., {constraint!r}])). A network an editor returned in this "
            "process is edited before its parity edit, made again after (that record is "
            "kept in memory, not in a pickle).",
            UserWarning,
            stacklevel=6,
        )


def base_edit(weights: Weights, edit: dict[str, torch.Tensor]) -> Weights:
    """Add the metanetwork's residuals, keeping the input's zero weights at zero."""
    sizes = (weights[0][0].shape[1], *(w.shape[0] for w, _ in weights))
    residual_w = edit["weight_residual"] * edit["edge_scale"]
    residual_b = edit["bias_residual"] * edit["node_scale"]
    deltas = split_graph_values(residual_w, residual_b, sizes)
    return [
        (torch.where(w != 0, w + dw.to(w.dtype), torch.zeros_like(w)), b + db.to(b.dtype))
        for (w, b), (dw, db) in zip(weights, deltas, strict=True)
    ]


class Requirement(ABC):
    """A requirement on edited networks: its target, its edit, its loss and its measure.

    Parameters
    ----------
    n_features : int
        Input width of the networks.
    forbidden : sequence of int, default=()
        Input features the edited networks may not use (requirements that read
        ``features``; see :attr:`reads_features`).
    """

    #: The name the editor's ``requirement`` parameter gives.
    name = "requirement"
    #: Whether the task data must carry sensitive features.
    needs_sensitive = False
    #: Whether exact edits can take their strength from task rows given at edit time
    #: (:meth:`calibrated_edit`).
    reads_calibration = False
    #: Whether exact edits refit layers on rows (:meth:`refit_rows`): the proxy rows, or
    #: rows given at edit time in their place.
    refits_on_rows = False
    #: Whether the editor's ``features`` (inputs the edited network may not use) apply.
    reads_features = True
    #: Requirement-specific node inputs of the metanetwork (:meth:`node_flags`).
    n_node_flags = 1
    #: Output heads of a metanetwork trained on a range of targets (see
    #: ``GraphMetanetwork``'s ``target_anchors``); 1: one output read at every target.
    n_target_anchors = 1
    #: Share of a range editor's training targets drawn at the anchors of its output
    #: heads (one anchor at random), when it has several; the rest are drawn from the
    #: range. A head is read alone only at its anchor and shares every target in between
    #: with a neighbour; training at the anchors themselves as well lets the head at the
    #: demanding end learn as much as an editor fitted for that target alone.
    anchor_share = 0.75
    #: Values of the editor's training settings left at ``None``: for each requirement,
    #: the configuration that ``benchmarks/bench_editor.py`` measures (docs/editing.rst,
    #: "Measured on Adult"). Two rounds of message passing over 16 channels, learning
    #: rate 3e-4, 500 steps of 6 networks; the checkpoint every 50 steps.
    settings: ClassVar[dict[str, Any]] = {
        "hidden_channels": 16,
        "num_layers": 2,
        "mlp_hidden": 16,
        "max_steps": 500,
        "learning_rate": 3e-4,
        "temperature": 0.3,
        "utility_weight": 1.0,
        "target_margin": 0.0,
        "eval_every": 50,
    }

    def resolve_settings(self, params: dict[str, Any]) -> dict[str, Any]:
        """The training settings of :attr:`settings`, those ``params`` give (not None)
        in place of the requirement's."""
        return {
            name: default if params.get(name) is None else params[name]
            for name, default in self.settings.items()
        }

    def __init__(self, n_features: int, forbidden: Sequence[int] = ()) -> None:
        self.n_features = n_features
        #: Input features the edited networks may not use (indices).
        self.forbidden: list[int] = sorted(int(i) for i in forbidden)
        self.input_mean = None
        self.input_cov = None

    # ------------------------------------------------------------------ the target

    def check_settings(self, *, target: Any, features: Any) -> None:
        """Raise a ValueError if the editor's ``target`` and ``features`` do not make a
        requirement of this kind (before any target is checked)."""
        if features is not None and not self.reads_features:
            raise ValueError(
                f"features is used by the requirements that drop input features; for "
                f"requirement={self.name!r} leave it None."
            )

    def check_task(self, *, n_classes: int, has_groups: bool) -> None:
        """Raise a ValueError if the networks and the task data cannot serve this
        requirement (its output width, its sensitive features); any will do here."""
        return None

    def check_population(self, modules: Sequence) -> None:
        """Say what the networks to fit on imply for this requirement's edits: what
        :meth:`check_pruned` says, and, where an editor edited them for a parity
        constraint this requirement does not measure, that its edits may undo it."""
        self.check_pruned(modules)
        warn_parity_unmeasured(modules, self.name, self.targets_met(None))

    def check_pruned(self, modules: Sequence) -> None:
        """Say what pruned networks imply for this requirement's edits (nothing here)."""
        return None

    def targets_met(self, target: Any) -> dict[str, Any]:
        """What an edit at ``target`` is made for, ``{name: target}``: recorded on the
        edited networks (``module_.metaedit_requirements``), so that a later editor
        knows; a parity constraint an edit does not measure is dropped from the record
        (:func:`recorded`)."""
        return {self.name: target}

    def default_target(self) -> Any:
        """The target edits meet when the editor is given none."""
        return None

    def check_target(self, target: Any) -> Any:
        """``target`` as the requirement reads it (a number in [0, 1] here), or a
        ValueError that says what a target is."""
        if isinstance(target, bool) or not isinstance(target, Real):
            valid = False
        else:
            valid = 0 <= float(target) <= 1
        if not valid:
            raise ValueError(f"target for {self.name} must be a number in [0, 1], got {target!r}.")
        return float(target)

    def check_target_range(self, target_range: Any) -> tuple | None:
        """``target_range`` as ``(low, high)``, two targets with ``low <= high``, or None."""
        if target_range is None:
            return None
        try:
            low, high = target_range
        except (TypeError, ValueError):
            raise ValueError(
                f"target_range must be a pair (low, high) of targets, got {target_range!r}."
            ) from None
        try:
            low, high = self.check_target(low), self.check_target(high)
        except ValueError as exc:
            raise ValueError(f"target_range={tuple(target_range)!r}: {exc}") from None
        if low > high:
            raise ValueError(
                f"target_range={tuple(target_range)!r} must be (low, high) with low <= high."
            )
        return low, high

    def sample_target(self, rng: np.random.RandomState, low: Any, high: Any) -> Any:
        """A training target drawn from ``[low, high]`` (uniformly here)."""
        return float(rng.uniform(low, high))

    def anchor_targets(self, low: float, high: float) -> list[float] | None:
        """Targets in ``[low, high]`` at which the metanetwork of a range editor has its
        own output heads (``n_target_anchors`` of them); None for one head."""
        return None

    def range_anchors(self, target_range: tuple | None) -> list | None:
        """:meth:`anchor_targets` of ``target_range``, checked; None without anchors."""
        if target_range is None:
            return None
        anchors = self.anchor_targets(*map(float, target_range))
        return None if anchors is None else [self.check_target(t) for t in anchors]

    def metanet_target(self, target: Any) -> float:
        """The target as the metanetwork reads it (a number of order 1)."""
        return float(target)

    def target_anchors(self, low: float, high: float) -> list[float] | None:
        """:meth:`anchor_targets` on the scale the metanetwork reads
        (:meth:`metanet_target`): ``GraphMetanetwork``'s ``target_anchors``."""
        anchors = self.anchor_targets(low, high)
        return None if anchors is None else [self.metanet_target(t) for t in anchors]

    def draw_target(
        self, rng: np.random.RandomState, target: Any, target_range: tuple | None
    ) -> Any:
        """A training target: ``target`` itself without a range; with one, an anchor of
        the output heads (a share :attr:`anchor_share` of the draws, where there are
        anchors) or else a draw from the range (:meth:`sample_target`)."""
        if target_range is None:
            return target
        anchors = self.range_anchors(target_range)
        if anchors is not None and rng.uniform() < self.anchor_share:
            return anchors[rng.randint(len(anchors))]
        low, high = target_range
        return self.check_target(self.sample_target(rng, low, high))

    def range_points(self, low: Any, high: Any) -> list:
        """Both ends and the middle of a range."""
        return [float(low), float(low + high) / 2, float(high)]

    def validation_targets(self, target: Any, target_range: tuple | None) -> list:
        """Targets at which checkpoints are compared: ``target`` and, for an editor
        trained on a range, both ends and the middle of it; the anchors of its output
        heads where it has several (their mean score then weighs each head alike)."""
        if target_range is None:
            return [target]
        anchors = self.range_anchors(target_range)
        if anchors is not None:
            return anchors
        targets = [self.check_target(t) for t in self.range_points(*target_range)]
        if target not in targets:
            targets.append(target)
        return targets

    def training_goal(self, target: Any, *, margin: float, relative_margin: float) -> Any:
        """The target the training loss aims at: ``target`` itself here."""
        return target

    # ------------------------------------------------------------------ the statistics

    def set_input_statistics(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        """Record the mean (d,) and covariance (d, d) of the task's inputs (fit time)."""
        self.input_mean = mean.double()
        self.input_cov = cov.double()

    def input_scale(self, device=None) -> torch.Tensor | None:
        """Standard deviation of each input feature (None before statistics are set)."""
        if self.input_cov is None:
            return None
        return self.input_cov.diagonal().clamp_min(0).sqrt().float().to(device)

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

    def row_moments(self, rows: torch.Tensor | None) -> torch.Tensor | None:
        """The second moments of ``rows`` with a column of ones
        (:func:`~._least_squares.second_moments`) where they are this requirement's
        proxy rows, computed once and cached with them; None for other rows (rows given
        at edit time are not kept, nor anything made of them)."""
        cache = self.__dict__.get("_proxy_cache", {})
        for key, proxy in list(cache.items()):
            if proxy is rows:
                if (key, "moments") not in cache:
                    cache[(key, "moments")] = second_moments(rows)
                return cache[(key, "moments")]
        return None

    def refit_rows(self, item: dict, device, dtype) -> torch.Tensor | None:
        """The rows an exact edit of the prepared network ``item`` refits on: the rows
        given at edit time (``item["rows"]``, ``transform``'s ``calibration`` for a
        requirement that does not take its strength from them), else
        :meth:`proxy_rows`."""
        rows = item.get("rows")
        if rows is None:
            return self.proxy_rows(device, dtype)
        return rows.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------ the edit

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
        target: Any,
        *,
        hard: bool,
        temperature: float,
    ) -> Weights:
        """Edited weights of one network (differentiable when ``hard=False``)."""
        return base_edit(weights, edit)

    def edit(
        self,
        item: dict,
        edit: dict[str, torch.Tensor],
        target: Any,
        *,
        hard: bool,
        temperature: float,
    ) -> Weights:
        """Edited weights of one prepared network (``item`` holds its ``module`` and
        original ``weights``): :meth:`apply`, then :meth:`recalibrate`."""
        applied = self.apply(item["weights"], edit, target, hard=hard, temperature=temperature)
        return self.recalibrate(item, applied)

    def calibrated_edit(
        self,
        item: dict,
        edit: dict[str, torch.Tensor],
        target: Any,
        calibration: tuple,
        *,
        temperature: float,
    ) -> Weights:
        """An exact edit whose strength is set on task rows (requirements that
        :attr:`reads_calibration`)."""
        raise ValueError(
            f"requirement={self.name!r} reads no calibration rows: its edits meet their "
            "target without task rows."
        )

    def recalibrate(self, item: dict, edited: Weights) -> Weights:
        """Edited weights after any correction that needs the network's forward pass
        (``item`` holds its ``module`` and original ``weights``); the identity here."""
        return edited

    # ------------------------------------------------------------------ the measure

    def loss(
        self,
        edited_logits: torch.Tensor,
        y: torch.Tensor,
        groups: torch.Tensor | None,
        n_groups: int,
        goal: Any,
        temperature: float,
    ) -> torch.Tensor:
        """Requirement term of the training loss (0 for structural requirements)."""
        return edited_logits.sum() * 0.0

    @abstractmethod
    def measure(
        self,
        edited_weights: Weights,
        positive: torch.Tensor,
        y: torch.Tensor,
        groups: torch.Tensor | None,
        n_groups: int,
    ) -> float:
        """The requirement's quantity on an edited network (sparsity, #features, gap).

        ``positive`` (bool, (n_samples,)) marks the rows the edited network assigns to
        class 1, ``y`` holds the true class codes and ``groups`` the group codes (or
        None) of the same rows."""

    def violation(self, value: float, target: Any) -> float:
        """How far a measured value is from meeting ``target`` (0 when it meets it)."""
        return 0.0

    def compliance(self, value: Any, target: Any) -> dict[str, bool]:
        """Columns of the report that say whether an edited network meets each of the
        requirement's parts (a joint requirement's); none here, where ``violation``
        says it."""
        return {}

    def report_columns(
        self,
        edited_weights: Weights,
        positive: torch.Tensor,
        y: torch.Tensor,
        groups: torch.Tensor | None,
        n_groups: int,
    ) -> dict[str, float]:
        """Columns of the editor's report beyond the ones every requirement has (each
        reported before and after the edit; arguments as :meth:`measure`); none here."""
        return {}
