"""The metanetwork's training loop: the loss, the steps, checkpoint selection.

Plain torch code, in the manner of skorch's ``NeuralNet``: :meth:`MetanetTrainer.fit`
runs :meth:`~MetanetTrainer.train_step` for every step and
:meth:`~MetanetTrainer.validation_step` every ``eval_every`` steps, and calls hooks named
after the moment they run (:meth:`~MetanetTrainer.on_step_end`,
:meth:`~MetanetTrainer.on_train_end`). It knows nothing of the estimator API:
:class:`~._editor.MetanetEditor` builds it in ``fit``.

Training loss per network, averaged over a batch of networks and task rows::

    requirement_loss + utility_weight * (divergence(original, edited)
                                         + task_weight * cross_entropy(edited, y))

with the requirement's soft edit (:func:`~._edit.edit_networks` with ``hard=False``).
A checkpoint's validation score is the mean, over the validation networks and the
requirement's validation targets, of the exact edit's accuracy minus its violation of
the target (before a pruning's end-to-end refinement, :mod:`._refine`); the checkpoint
of best score (the validation loss breaking ties) is kept where its gain over the
untrained metanetwork is beyond the validation networks' spread
(:func:`checkpoint_gain`), else the untrained one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ._edit import edit_networks
from ._graph import network_forward
from ._measures import divergence
from ._metanet import GraphMetanetwork
from ._refine import without_refinement
from ._requirement import Requirement

__all__ = [
    "HISTORY_COLUMNS",
    "Gain",
    "MetanetTrainer",
    "TrainingSettings",
    "checkpoint_gain",
    "untrained_message",
]

#: Task rows on which checkpoints are compared (at most).
VALIDATION_ROWS = 8192

HISTORY_COLUMNS = ["step", "train_loss", "validation_loss", "validation_score"]


#: One-sided confidence with which a kept checkpoint's gain over the untrained
#: metanetwork must exceed zero (:func:`checkpoint_gain`).
GAIN_CONFIDENCE = 0.975


@dataclass(frozen=True)
class Gain:
    """A checkpoint's validation gain over the untrained metanetwork
    (:func:`checkpoint_gain`): its mean over the validation networks, the standard
    error of that mean, and the mean it must exceed to count."""

    mean: float
    error: float
    threshold: float
    n_networks: int

    @property
    def significant(self) -> bool:
        return self.mean > self.threshold


def checkpoint_gain(initial: np.ndarray, scores: np.ndarray, resolution: float = 0.0) -> Gain:
    """The gain of a checkpoint's validation ``scores`` over the untrained ``initial``
    ones, tested against the spread of the validation networks.

    ``initial`` and ``scores`` are (n_targets, n_networks): each validation network's
    exact edit at each validation target, on the same rows at both checkpoints. Each
    network's gain is its mean over the targets (a network's edits at several targets
    are not independent draws); the gain counts where the mean over the networks exceeds
    Student's t quantile at :data:`GAIN_CONFIDENCE` (``n_networks - 1`` degrees of
    freedom) times its standard error, the error taken at least ``resolution`` (one
    validation row's share of accuracy, so that a spread of zero does not make a gain
    of a row or two count). With one validation network there is no spread to measure:
    a gain counts where it exceeds ``resolution``.

    A gain that some validation networks show and others reverse is one a new network
    of the family may not see: on Adult (36 networks, 7 for validation, sparsity 0.9),
    the checkpoint of best validation score was 0.04 points above the untrained editor
    on the validation networks and 0.15 points below it on 12 held-out ones.

    Examples
    --------
    >>> import numpy as np
    >>> checkpoint_gain(np.full((1, 3), 0.8), np.array([[0.81, 0.82, 0.815]])).significant
    True
    >>> checkpoint_gain(np.full((1, 3), 0.8), np.array([[0.83, 0.78, 0.8]])).significant
    False
    """
    from scipy.stats import t as student_t

    gains = (np.asarray(scores, dtype=float) - np.asarray(initial, dtype=float)).mean(axis=0)
    n, mean = len(gains), float(gains.mean())
    if n < 2:
        return Gain(mean, float(resolution), float(resolution), n)
    error = max(float(gains.std(ddof=1) / np.sqrt(n)), resolution)
    return Gain(mean, error, float(student_t.ppf(GAIN_CONFIDENCE, n - 1)) * error, n)


#: What a validation score is, for the messages that quote one.
SCORE_MEANING = (
    "a validation score is the exact edits' accuracy less their violation on the "
    "validation networks; a pruning's edits are scored before the refinement that "
    "transform adds, and score below transform's"
)


def untrained_message(history: pd.DataFrame, gain: Gain | None = None) -> str:
    """What to say when training added nothing: its checkpoints (``history``, a
    trainer's ``history_``) never beat the untrained one, or the best of them
    (``gain``: its gain over the untrained one) not beyond the validation networks'
    spread."""
    scores = history["validation_score"]
    later = history.loc[(history["step"] > 0) & scores.notna()]
    best = later.loc[later["validation_score"].idxmax()]
    if gain is not None and gain.mean > 0:
        spread = (
            f"{gain.threshold / gain.error:.2f} standard errors of {gain.error:.4f} over "
            f"{gain.n_networks} validation networks"
            if gain.n_networks > 1
            else "one validation row's share of accuracy (one validation network)"
        )
        return (
            "training added no gain beyond the validation networks' spread: the "
            f"untrained editor (step 0) scored {scores.iloc[0]:.4f}, the best checkpoint "
            f"after it {best['validation_score']:.4f} (step {int(best['step'])}), a gain "
            f"of {gain.mean:.4f} that does not exceed {gain.threshold:.4f} ({spread}), so "
            f"the untrained editor is kept and edits as with max_steps=0 ({SCORE_MEANING}). "
            "More steps, another learning_rate or more networks may help."
        )
    return (
        f"training added nothing on the validation networks: the untrained editor "
        f"(step 0) scored {scores.iloc[0]:.4f}, the best checkpoint after it "
        f"{best['validation_score']:.4f} (step {int(best['step'])}), so the untrained "
        f"editor is kept and edits as with max_steps=0 ({SCORE_MEANING}). More steps, "
        "another learning_rate or more networks may help."
    )


@dataclass(frozen=True)
class TrainingSettings:
    """The editor's parameters that shape training (see :class:`~._editor.MetanetEditor`)."""

    utility_weight: float
    divergence: str
    task_weight: float
    target_margin: float
    relative_margin: float
    temperature: float
    learning_rate: float
    max_steps: int
    networks_per_step: int
    rows_per_step: int
    eval_every: int
    verbose: int

    @classmethod
    def of(cls, params: dict[str, Any], settings: dict[str, Any]) -> TrainingSettings:
        """An editor's: its ``settings_`` where they hold a field, else its parameter
        (``params``, from ``get_params``)."""
        return cls(**{f.name: settings.get(f.name, params.get(f.name)) for f in fields(cls)})


class MetanetTrainer:
    """Train a metanetwork to edit a population of networks for one requirement.

    Parameters
    ----------
    metanet : GraphMetanetwork
        Trained in place; left at the selected checkpoint.
    requirement : Requirement
        With its input statistics set.
    settings : TrainingSettings
    target : float or int or None
        The requirement's checked target.
    target_range : (low, high) or None
        The requirement's checked range of training targets.
    n_groups : int
        Number of sensitive groups (0 without sensitive features).

    Attributes
    ----------
    history_ : pandas.DataFrame
        After :meth:`fit`: ``step``, ``train_loss``, ``validation_loss``,
        ``validation_score`` (the last two at evaluations only).
    selected_step_ : int or None
        The step of the checkpoint kept (0: the untrained metanetwork); None without
        validation networks (the last step is kept). The checkpoint of best validation
        score is kept where its gain over the untrained one counts
        (:func:`checkpoint_gain`), else the untrained one.
    training_gain_ : float
        Validation score of the kept checkpoint minus that of the untrained metanetwork
        (NaN without validation networks).
    rejected_gain_ : Gain or None
        After :meth:`fit`, where the untrained metanetwork was kept over a later
        checkpoint: that checkpoint's gain; else None.
    """

    def __init__(
        self,
        metanet: GraphMetanetwork,
        requirement: Requirement,
        settings: TrainingSettings,
        *,
        target: Any,
        target_range: tuple | None,
        n_groups: int,
    ) -> None:
        self.metanet = metanet
        self.requirement = requirement
        self.settings = settings
        self.target = target
        self.target_range = target_range
        self.n_groups = n_groups

    def loss(
        self,
        items: list[dict],
        targets: list,
        X: torch.Tensor,
        y: torch.Tensor,
        groups: torch.Tensor | None,
        *,
        hard: bool,
        scores: list | None = None,
    ) -> torch.Tensor:
        """Mean training loss over the prepared networks ``items``; with ``scores``, also
        append each edited network's validation score (accuracy minus violation of its
        target)."""
        s, requirement = self.settings, self.requirement
        edited = edit_networks(
            self.metanet, requirement, items, targets, hard=hard, temperature=s.temperature
        )
        total = 0.0
        for item, weights, target in zip(items, edited, targets, strict=True):
            with torch.no_grad():
                original = network_forward(item["module"], item["weights"], X)
            logits = network_forward(item["module"], weights, X)
            utility = divergence(original, logits, s.divergence)
            if s.task_weight > 0:
                utility = utility + s.task_weight * F.cross_entropy(logits.float(), y)
            goal = requirement.training_goal(
                target, margin=s.target_margin, relative_margin=s.relative_margin
            )
            term = requirement.loss(logits, y, groups, self.n_groups, goal, s.temperature)
            total = total + term + s.utility_weight * utility
            if scores is not None:
                decisions = logits.argmax(dim=1)
                value = requirement.measure(weights, decisions == 1, y, groups, self.n_groups)
                scores.append(
                    float((decisions == y).float().mean()) - requirement.violation(value, target)
                )
        return total / len(items)

    def train_step(self, items, targets, X, y, groups) -> float:
        """One optimiser step on the soft edits of ``items``; the training loss."""
        loss = self.loss(items, targets, X, y, groups, hard=False)
        self.optimizer_.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.metanet.parameters(), 1.0)
        self.optimizer_.step()
        return loss.item()

    def validation_step(self, items, X, y, groups) -> tuple[np.ndarray, float]:
        """Validation scores of exact edits of ``items``, (n_targets, n_items): each of
        ``items`` at each of the requirement's validation targets; and their mean loss."""
        self.metanet.eval()
        losses, scores = [], []
        with torch.no_grad(), without_refinement():
            for target in self.requirement.validation_targets(self.target, self.target_range):
                loss = self.loss(
                    items, [target] * len(items), X, y, groups, hard=True, scores=scores
                )
                losses.append(float(loss))
        self.metanet.train()
        return np.asarray(scores, dtype=float).reshape(len(losses), len(items)), float(
            np.mean(losses)
        )

    def on_step_end(self, step: int, record: dict, progress) -> None:
        """Called after every step with its history record; prints it at ``verbose >= 2``
        every tenth of the steps."""
        max_steps = self.settings.max_steps
        if self.settings.verbose >= 2 and (step % max(max_steps // 10, 1) == 0 or step == 1):
            progress.write(
                f"[MetanetEditor] step {step}/{max_steps} train loss "
                f"{record['train_loss']:.4f}"
                + (
                    f" validation loss {record['validation_loss']:.4f}"
                    f" score {record['validation_score']:.4f}"
                    if np.isfinite(record["validation_loss"])
                    else ""
                )
            )

    def on_train_end(self, best_state: dict | None) -> None:
        """Called after the last step: loads the selected checkpoint."""
        if best_state is not None:
            self.metanet.load_state_dict(best_state)

    def fit(
        self,
        prepared: list[dict],
        train_nets: np.ndarray,
        val_nets: np.ndarray,
        task: dict[str, torch.Tensor | None],
        rng: np.random.RandomState,
    ) -> MetanetTrainer:
        """Run the training loop.

        Parameters
        ----------
        prepared : list of dict
            Every network of the population, prepared (:func:`~._edit.prepare_network`).
        train_nets, val_nets : ndarray of int
            Indices into ``prepared`` of the networks trained on and of those that select
            the checkpoint (none: the last step is kept).
        task : dict
            ``X`` (n_rows, n_features), ``y`` (n_rows,) class codes and ``groups``
            (n_rows,) group codes or None, as tensors on the metanetwork's device.
        rng : RandomState
            Draws the validation rows, and each step's networks, rows and targets.

        Returns
        -------
        self : MetanetTrainer
        """
        s, metanet = self.settings, self.metanet
        self.optimizer_ = torch.optim.AdamW(metanet.parameters(), lr=s.learning_rate)
        X, y, groups = task["X"], task["y"], task["groups"]
        n_rows = X.shape[0]
        # checkpoints are compared on the accuracy of exact edits, which needs many rows
        # to tell apart checkpoints a fraction of a point apart
        val_rows = torch.as_tensor(
            rng.choice(n_rows, size=min(n_rows, VALIDATION_ROWS), replace=False),
            device=X.device,
        )
        val_items = [prepared[i] for i in val_nets]
        val_task = (X[val_rows], y[val_rows], None if groups is None else groups[val_rows])
        records = []
        # the best checkpoint after step 0 (score, then -loss), its state and scores
        best_state, best, best_scores, best_step = None, (-np.inf, -np.inf), None, None
        self.selected_step_, self.training_gain_, self.rejected_gain_ = None, np.nan, None
        initial = initial_state = None
        if len(val_nets):
            initial, loss = self.validation_step(val_items, *val_task)
            initial_state = copy.deepcopy(metanet.state_dict())
            records.append(
                {
                    "step": 0,
                    "train_loss": np.nan,
                    "validation_loss": loss,
                    "validation_score": float(initial.mean()),
                }
            )
        metanet.train()
        progress = tqdm(
            total=s.max_steps, desc="MetanetEditor", unit="step", disable=s.verbose < 1
        )
        for step in range(1, s.max_steps + 1):
            progress.update()
            chosen = rng.choice(
                train_nets, size=min(s.networks_per_step, len(train_nets)), replace=False
            )
            rows = torch.as_tensor(
                rng.choice(n_rows, size=min(n_rows, s.rows_per_step), replace=False),
                device=X.device,
            )
            items = [prepared[i] for i in chosen]
            targets = [
                self.requirement.draw_target(rng, self.target, self.target_range) for _ in items
            ]
            train_loss = self.train_step(
                items, targets, X[rows], y[rows], None if groups is None else groups[rows]
            )
            record = {
                "step": step,
                "train_loss": train_loss,
                "validation_loss": np.nan,
                "validation_score": np.nan,
            }
            if len(val_nets) and (step % max(s.eval_every, 1) == 0 or step == s.max_steps):
                scores, loss_value = self.validation_step(val_items, *val_task)
                score = float(scores.mean())
                record["validation_loss"], record["validation_score"] = loss_value, score
                if (score, -loss_value) > best:
                    best, best_scores, best_step = (score, -loss_value), scores, step
                    best_state = copy.deepcopy(metanet.state_dict())
            records.append(record)
            self.on_step_end(step, record, progress)
        progress.close()
        if len(val_nets):
            # the best checkpoint is kept where its gain is beyond the validation
            # networks' spread, else the untrained metanetwork
            gain = None
            if best_scores is not None:
                gain = checkpoint_gain(initial, best_scores, 1.0 / len(val_rows))
            if gain is not None and gain.significant:
                self.selected_step_, self.training_gain_ = best_step, gain.mean
            else:
                self.selected_step_, self.training_gain_ = 0, 0.0
                self.rejected_gain_, best_state = gain, initial_state
        self.on_train_end(best_state)
        self.history_ = pd.DataFrame.from_records(records, columns=HISTORY_COLUMNS)
        return self
