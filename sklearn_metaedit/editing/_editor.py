"""MetanetEditor: a transformer whose samples are networks, edited in one forward pass."""

from __future__ import annotations

import copy
import time
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from .._device import check_device
from .._groups import check_sensitive_features, encode_groups, fit_groups
from ._graph import as_sequential, extract_weights, load_weights, network_forward, weights_to_graph
from ._metanet import GraphMetanetwork, unbatch_edit
from ._requirements import (
    REQUIREMENTS,
    DataMinimisation,
    Fairness,
    Requirement,
    Sparsity,
    divergence,
    features_used,
    selection_rate_gap,
    weight_sparsity,
)
from ._task_data import unpack_task_data

__all__ = ["MetanetEditor"]

#: Networks edited in one metanetwork pass by ``transform``.
_EDIT_CHUNK = 16

#: Task rows on which checkpoints are compared (at most).
_VALIDATION_ROWS = 8192

#: Share of a range editor's training targets drawn at the anchors of its output heads
#: (one anchor at random), when it has several; the rest are drawn from the range.
_ANCHOR_DRAWS = 0.75

_HISTORY_COLUMNS = ["step", "train_loss", "validation_loss", "validation_score"]

#: Node inputs of the metanetwork that describe the task's input features.
_N_INPUT_FLAGS = 2


def _input_statistics(X: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (d,) and covariance (d, d) of the task's inputs, in float64."""
    X64 = torch.as_tensor(X, dtype=torch.float64)
    mean = X64.mean(dim=0)
    centred = X64 - mean
    return mean, centred.T @ centred / max(len(X64) - 1, 1)


_DEFAULT_TARGETS = {"sparsity": 0.5, "demographic_parity": 0.05, "equalized_odds": 0.05}


def _copy_with_weights(network: Any, module: nn.Sequential, weights) -> Any:
    """A deep copy of a fitted skorch net whose ``module_`` holds ``weights``.

    ``copy.deepcopy`` of a skorch net pickles its modules and optimizers to bytes and back;
    copying its attribute dictionary instead, with the module's parameters mapped to those
    of an already edited module, gives the same independent copy (the optimizer's state
    refers to the new parameters) in a fraction of the time.
    """
    edited_module = load_weights(module, weights)
    memo = {id(module): edited_module}
    for old, new in zip(module.parameters(), edited_module.parameters(), strict=True):
        memo[id(old)] = new
    for old, new in zip(module.buffers(), edited_module.buffers(), strict=True):
        memo[id(old)] = new
    edited = type(network).__new__(type(network))
    edited.__dict__.update(copy.deepcopy(network.__dict__, memo))
    return edited


class MetanetEditor(TransformerMixin, BaseEstimator):
    """Edit trained networks to meet a requirement, one metanetwork forward pass each.

    A graph metanetwork is trained on a population of networks (the samples of ``fit``)
    to edit any network of the same family so that it meets ``requirement`` while its
    predictions stay close to the original's. At edit time the requirement is enforced
    exactly where it can be: ``sparsity`` and ``data_minimisation`` are met by every
    edited network; the fairness gaps are measured (see :meth:`report`).

    Training loss per network, averaged over a batch of networks and task rows::

        requirement_loss + utility_weight * (divergence(original, edited)
                                             + task_weight * cross_entropy(edited, y))

    where ``requirement_loss`` is ``relu(soft_gap - goal)``, with ``goal = target -
    min(target_margin, relative_margin * target)``, for the
    fairness requirements and 0 for the structural ones (their soft top-k gates make them
    hold during training).

    Parameters
    ----------
    requirement : {"sparsity", "data_minimisation", "demographic_parity", "equalized_odds"}, \
default="sparsity"
        What the edited networks must meet.
    target : float or int, default=None
        ``sparsity``: fraction of weights that are zero (default 0.5).
        ``data_minimisation``: number of input features to keep, chosen per network
        (default: all that ``features`` does not forbid).
        ``demographic_parity`` / ``equalized_odds``: the largest gap allowed on the task
        data's sensitive feature (default 0.05).
    features : sequence of str or int, default=None
        The input features the edited networks may not use, as column names of the task
        data's ``X`` or as integer indices (``data_minimisation``, and the fairness
        requirements: there, e.g., the sensitive feature's own columns, so that the
        edited network is group-blind). Their first-layer columns are exactly zero; what
        they contributed is replaced by its least-squares prediction from the kept
        features (means and covariance of the task data's inputs, recorded in fit).
    utility_weight : float, default=1.0
        Weight of the utility term against the requirement term.
    divergence : {"kl", "js"}, default="kl"
        KL(original || edited) or the Jensen-Shannon divergence.
    task_weight : float, default=2.0
        Weight of the edited network's cross-entropy on the task labels, beside the
        divergence (0 for a pure-fidelity edit).
    sensitive_feature : str, int or list, default=None
        Column(s) of the task data's ``X`` holding the groups, when ``data`` carries no
        sensitive features.
    target_range : (float, float), default=None
        Train on targets drawn uniformly from this range (integers for
        ``data_minimisation``), so that ``transform(networks, target=...)`` serves any
        target in it without refitting. None: train on ``target`` only. Checkpoints
        are then selected on the validation networks at both ends and the middle of the
        range as well as at ``target`` (a sparsity range: see below). For a fairness
        target, a narrow range around it (e.g. ``(0.04, 0.06)`` for 0.05) made edits
        meet the target more reliably on Adult (see the editing guide). A sparsity
        range gives the metanetwork's output heads four anchors across the range
        (``GraphMetanetwork``'s ``target_anchors``): three training targets in four are
        then drawn at an anchor and the others with the kept fraction ``1 - s``
        log-uniform, and checkpoints are selected at the anchors.
    target_margin : float, default=0.0
        Fairness requirements only: train for a gap of ``target - target_margin``. The
        gap is measured on new rows and on new networks, where it scatters around what
        training reached; a margin moves that scatter below ``target``.
    relative_margin : float, default=1.0
        Fairness requirements only: the largest margin, as a fraction of the target, in
        [0, 1]: train for ``target - min(target_margin, relative_margin * target)``. With
        a ``target_range`` spanning small and large gaps, an absolute margin alone leaves
        nothing to train for at the small ones (``relative_margin=0.5`` trains for at
        least half of each target). 1: the absolute margin alone, down to a goal of 0.
    hidden_channels : int, default=32
        Width of the metanetwork's node and edge features.
    num_layers : int, default=3
        Rounds of message passing.
    mlp_hidden : int, default=64
        Hidden width of the metanetwork's MLPs.
    max_steps : int, default=300
        Optimisation steps of the metanetwork.
    networks_per_step : int, default=6
        Networks per step.
    rows_per_step : int, default=512
        Task rows per step.
    learning_rate : float, default=1e-3
        AdamW learning rate (gradients are clipped at norm 1).
    temperature : float, default=0.3
        Temperature of the soft gates (and of the soft decisions of the fairness loss).
    holdout_fraction : float, default=0.2
        Fraction of the task rows kept out of training; :meth:`score` and
        :meth:`report` use them when no ``data`` is passed.
    validation_fraction : float, default=0.2
        Fraction of the networks (with at least 5 networks) kept out of training to pick
        the best checkpoint, evaluated every ``eval_every`` steps with exact edits.
    eval_every : int, default=25
        Steps between checkpoint evaluations.
    device : str or torch.device, default="cpu"
        Where the metanetwork trains and edits ("cuda" where present).
    random_state : int, RandomState or None, default=None
        Seeds the metanetwork's initialisation, the row split and the batches.
    verbose : int, default=0
        1: a progress bar over the training steps (on stderr); 2: also a line with the
        training and validation loss every tenth of the steps.

    Attributes
    ----------
    metanet_ : GraphMetanetwork
        The trained metanetwork (an ``nn.Module``; its ``state_dict`` is the learned
        state).
    metanet_params_ : dict
        Keyword arguments that rebuild ``metanet_``'s architecture:
        ``GraphMetanetwork(**metanet_params_)`` then ``load_state_dict``.
    requirement_ : Requirement
        The requirement object (how edits are applied, relaxed and measured). It holds
        the mean and covariance of the task data's inputs (``input_mean``,
        ``input_cov``), recorded in fit: the edits' priors use them (input-scaled
        magnitudes, least-squares compensation of dropped features), so that an edit
        reads no task rows.
    target_ : float or int or None
        The target edits meet by default.
    n_features_in_task_ : int
        Input width of the networks.
    n_classes_ : int
        Output width of the networks.
    classes_ : ndarray
        The task's labels; class ``i`` is output ``i`` of the networks.
    task_feature_names_ : list of str
        Names of the input features (the task data's columns, or "x0", "x1", ...).
    forbidden_features_ : list of int
        Indices of the features the edited networks may not use.
    groups_ : ndarray or None
        Sensitive groups seen in fit.
    history_ : pandas.DataFrame
        Per step: training loss; per evaluation: validation loss and validation score
        (mean over the validation networks of the exact edit's accuracy minus its
        violation of the target, on up to 8,192 task rows). The checkpoint of best
        validation score is kept.
    fit_seconds_ : float
        Wall-clock time of fit.

    See Also
    --------
    make_population : Train a population of networks to fit an editor on.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from skorch import NeuralNetClassifier
    >>> import torch
    >>> from sklearn_metaedit import MLP
    >>> from sklearn_metaedit.editing._editor import MetanetEditor
    >>> from sklearn_metaedit.editing._population import make_population
    >>> X, y = make_classification(300, 6, random_state=0)
    >>> X = X.astype(np.float32)
    >>> net = NeuralNetClassifier(MLP, module__n_features=6, module__hidden_sizes=(8,),
    ...                           criterion=torch.nn.CrossEntropyLoss, max_epochs=3,
    ...                           optimizer=torch.optim.Adam, lr=0.01, verbose=0)
    >>> population = make_population(net, X, y, n_networks=3, random_state=0)
    >>> editor = MetanetEditor("sparsity", target=0.7, max_steps=5, random_state=0)
    >>> edited = editor.fit(population, data=(X, y)).transform(population)
    >>> weights = [p for name, p in edited[0].module_.named_parameters() if "weight" in name]
    >>> sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights) >= 0.7
    True
    >>> report = editor.report(population)
    >>> bool((report["sparsity_after"] >= 0.7).all())
    True
    """

    def __init__(
        self,
        requirement: str = "sparsity",
        *,
        target: float | int | None = None,
        features: Any = None,
        utility_weight: float = 1.0,
        divergence: str = "kl",
        task_weight: float = 2.0,
        sensitive_feature: Any = None,
        target_range: tuple[float, float] | None = None,
        target_margin: float = 0.0,
        relative_margin: float = 1.0,
        hidden_channels: int = 32,
        num_layers: int = 3,
        mlp_hidden: int = 64,
        max_steps: int = 300,
        networks_per_step: int = 6,
        rows_per_step: int = 512,
        learning_rate: float = 1e-3,
        temperature: float = 0.3,
        holdout_fraction: float = 0.2,
        validation_fraction: float = 0.2,
        eval_every: int = 25,
        device: str | torch.device = "cpu",
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.requirement = requirement
        self.target = target
        self.features = features
        self.utility_weight = utility_weight
        self.divergence = divergence
        self.task_weight = task_weight
        self.sensitive_feature = sensitive_feature
        self.target_range = target_range
        self.target_margin = target_margin
        self.relative_margin = relative_margin
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.mlp_hidden = mlp_hidden
        self.max_steps = max_steps
        self.networks_per_step = networks_per_step
        self.rows_per_step = rows_per_step
        self.learning_rate = learning_rate
        self.temperature = temperature
        self.holdout_fraction = holdout_fraction
        self.validation_fraction = validation_fraction
        self.eval_every = eval_every
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ validation

    def _validate_params_(self) -> None:
        check_device(self.device)
        if self.requirement not in REQUIREMENTS:
            raise ValueError(
                f"requirement={self.requirement!r} is not supported; choose one of "
                f"{list(REQUIREMENTS)}."
            )
        if self.divergence not in ("kl", "js"):
            raise ValueError(f"divergence must be 'kl' or 'js', got {self.divergence!r}.")
        for name in ("hidden_channels", "num_layers", "mlp_hidden", "networks_per_step"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("max_steps", "rows_per_step", "eval_every"):
            value = getattr(self, name)
            if not isinstance(value, Integral) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
        for name in (
            "utility_weight",
            "task_weight",
            "learning_rate",
            "temperature",
            "target_margin",
        ):
            value = getattr(self, name)
            if not isinstance(value, Real) or not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}.")
        for name in ("holdout_fraction", "validation_fraction"):
            value = getattr(self, name)
            if not isinstance(value, Real) or not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
        value = self.relative_margin
        if not isinstance(value, Real) or not 0 <= value <= 1:
            raise ValueError(f"relative_margin must be in [0, 1], got {value!r}.")
        if self.features is not None and self.requirement == "sparsity":
            raise ValueError(
                "features is used by requirement='data_minimisation' and by the fairness "
                "requirements; for requirement='sparsity' leave it None."
            )

    def _check_target(self, target: Any) -> Any:
        """Validate a target against the fitted requirement (None: the fitted default)."""
        if self.requirement_.name == "data_minimisation":
            if target is None:
                return None
            n_allowed = self.n_features_in_task_ - len(self.forbidden_features_)
            if not isinstance(target, Integral) or not 1 <= target <= n_allowed:
                raise ValueError(
                    "target for data_minimisation is the number of input features to keep, "
                    f"an integer in [1, {n_allowed}] (the features not forbidden); got "
                    f"{target!r}."
                )
            return int(target)
        if not isinstance(target, Real) or not 0 <= float(target) <= 1:
            raise ValueError(
                f"target for {self.requirement_.name} must be a number in [0, 1], got {target!r}."
            )
        return float(target)

    def _resolve_features(self, names: list[str], has_names: bool) -> list[int]:
        if self.features is None:
            return []
        items = [self.features] if isinstance(self.features, str | Integral) else self.features
        out = []
        for item in items:
            if isinstance(item, Integral) and not isinstance(item, bool):
                if not 0 <= item < len(names):
                    raise ValueError(
                        f"features holds index {item}, but the task data has {len(names)} "
                        "input features."
                    )
                out.append(int(item))
            elif isinstance(item, str):
                if item not in names:
                    hint = "" if has_names else " (X has no column names; use integer indices)"
                    raise ValueError(
                        f"features names {item!r}, which is not a column of the task data's "
                        f"X{hint}; columns are {names[:20]}."
                    )
                out.append(names.index(item))
            else:
                raise ValueError(f"features must hold column names or indices, got {item!r}.")
        return sorted(set(out))

    def _check_networks(self, networks: Any, n_features: int) -> list[nn.Sequential]:
        if isinstance(networks, nn.Module) or hasattr(networks, "module"):
            raise ValueError(
                "networks must be a list of networks (the samples); wrap a single network "
                "in a list."
            )
        networks = list(networks)
        if len(networks) == 0:
            raise ValueError(
                "networks is empty: pass a list of at least one fitted network "
                "(skorch NeuralNetClassifier or nn.Sequential), e.g. from make_population."
            )
        modules = []
        for i, network in enumerate(networks):
            module = as_sequential(network, name=f"network {i}")
            width = next(m for m in module if isinstance(m, nn.Linear)).in_features
            if width != n_features:
                raise ValueError(
                    f"network {i} takes {width} input features but the task data has "
                    f"{n_features} columns; edit networks trained on this task's inputs."
                )
            modules.append(module)
        return modules

    def _task_arrays(self, X: Any, y: Any, sensitive: Any, *, fitting: bool):
        if isinstance(X, pd.DataFrame):
            names = [str(c) for c in X.columns]
            has_names = True
        else:
            has_names = False
            names = None
        try:
            X_np = np.asarray(X, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "the task data's X must be numeric (the networks' inputs); preprocess it, "
                f"e.g. with a ColumnTransformer, first ({exc})."
            ) from exc
        if X_np.ndim != 2:
            raise ValueError(f"the task data's X must be 2-D, got shape {X_np.shape}.")
        if not np.isfinite(X_np).all():
            raise ValueError("the task data's X holds NaN or infinite values.")
        y_np = np.asarray(y)
        if y_np.ndim != 1 or len(y_np) != len(X_np):
            raise ValueError(
                f"the task data's y must be 1-D with one label per row of X ({len(X_np)}), "
                f"got shape {y_np.shape}."
            )
        if names is None:
            names = [f"x{j}" for j in range(X_np.shape[1])]
        if sensitive is None and self.sensitive_feature is not None:
            from .._groups import resolve_sensitive_features

            sensitive = resolve_sensitive_features(X, None, self.sensitive_feature)
        labels = None if sensitive is None else check_sensitive_features(sensitive, len(X_np))
        if fitting:
            classes = np.unique(y_np)
            return X_np, y_np, labels, names, has_names, classes
        return X_np, y_np, labels

    def _encode_y(self, y: np.ndarray) -> np.ndarray:
        codes = np.searchsorted(self.classes_, y)
        codes = np.clip(codes, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[codes], y):
            unseen = sorted(set(np.asarray(y).tolist()) - set(self.classes_.tolist()))[:5]
            raise ValueError(f"y holds labels {unseen} that were not seen in fit.")
        return codes

    # ------------------------------------------------------------------ fit

    def fit(self, networks: list, y: None = None, *, data: Any = None) -> MetanetEditor:
        """Train the metanetwork on a population of networks.

        Parameters
        ----------
        networks : list of fitted skorch NeuralNetClassifier or nn.Sequential
            The population (the samples), all with the task data's input width.
        y : None
            Ignored; present for the scikit-learn API.
        data : TaskData or tuple
            The task data the losses are computed on: ``(X, y)``, ``(X, y,
            sensitive_features)`` or a :class:`TaskData` (which cross-validation never
            splits). ``X`` is numeric, of shape (n_samples, n_features).

        Returns
        -------
        self : MetanetEditor
        """
        started = time.perf_counter()
        self._validate_params_()
        X, y_task, sensitive = unpack_task_data(data)
        X_np, y_np, labels, names, has_names, classes = self._task_arrays(
            X, y_task, sensitive, fitting=True
        )
        modules = self._check_networks(networks, X_np.shape[1])
        n_classes = {
            next(m for m in reversed(mod) if isinstance(m, nn.Linear)).out_features
            for mod in modules
        }
        if len(n_classes) != 1:
            raise ValueError(
                f"the networks have different numbers of outputs: {sorted(n_classes)}."
            )
        self.n_classes_ = n_classes.pop()
        if len(classes) > self.n_classes_:
            raise ValueError(
                f"the task data has {len(classes)} classes but the networks output "
                f"{self.n_classes_} logits."
            )
        self.classes_ = classes
        self.n_features_in_task_ = X_np.shape[1]
        self.task_feature_names_ = names
        self.forbidden_features_ = self._resolve_features(names, has_names)
        self.requirement_ = self._make_requirement()
        if self.requirement_.needs_sensitive:
            if labels is None:
                raise ValueError(
                    f"requirement={self.requirement!r} needs sensitive features: pass "
                    "data=(X, y, sensitive_features) or TaskData(X, y, sensitive_features), "
                    "or set sensitive_feature to a column of X."
                )
            if self.n_classes_ != 2:
                raise ValueError(
                    f"requirement={self.requirement!r} needs binary classifiers (2 outputs); "
                    f"the networks have {self.n_classes_}."
                )
        if (
            self.requirement == "data_minimisation"
            and self.features is None
            and self.target is None
        ):
            raise ValueError(
                "requirement='data_minimisation' needs features= (the features the networks "
                "may not use) or target=k (the number of features to keep), or both."
            )
        default = _DEFAULT_TARGETS.get(self.requirement)
        self.target_ = self._check_target(default if self.target is None else self.target)
        self.groups_ = None if labels is None else fit_groups(labels)
        group_codes = None if labels is None else encode_groups(labels, self.groups_)
        if labels is not None and len(self.groups_) < 2:
            raise ValueError("sensitive_features holds a single group; parity needs at least 2.")
        y_codes = np.searchsorted(classes, y_np)

        rng = check_random_state(self.random_state)
        order = rng.permutation(len(X_np))
        n_holdout = round(self.holdout_fraction * len(X_np))
        if len(X_np) - n_holdout < 1:
            raise ValueError("the task data has too few rows to hold some out.")
        holdout, train_rows = order[:n_holdout], order[n_holdout:]
        self.holdout_ = (
            X_np[holdout],
            y_np[holdout],
            None if group_codes is None else labels[holdout],
        )

        self.requirement_.set_input_statistics(*_input_statistics(X_np[train_rows]))
        device = torch.device(self.device)
        n_networks = len(modules)
        net_order = rng.permutation(n_networks)
        n_val = round(self.validation_fraction * n_networks) if n_networks >= 5 else 0
        val_nets, train_nets = net_order[:n_val], net_order[n_val:]

        init_seed = int(rng.randint(2**31 - 1))
        self.metanet_params_ = {
            "n_features": int(self.n_features_in_task_),
            "n_classes": int(self.n_classes_),
            "hidden_channels": int(self.hidden_channels),
            "num_layers": int(self.num_layers),
            "mlp_hidden": int(self.mlp_hidden),
            "n_node_flags": int(self.requirement_.n_node_flags) + _N_INPUT_FLAGS,
            "target_anchors": None
            if self.target_range is None
            else self.requirement_.target_anchors(*map(float, self.target_range)),
        }
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.metanet_ = GraphMetanetwork(**self.metanet_params_).to(device)

        self.history_ = pd.DataFrame(columns=_HISTORY_COLUMNS)
        if self.max_steps > 0:
            task = {
                "X": torch.as_tensor(X_np[train_rows], device=device),
                "y": torch.as_tensor(y_codes[train_rows], device=device),
                "groups": None
                if group_codes is None
                else torch.as_tensor(group_codes[train_rows], device=device),
            }
            prepared = [self._prepare(module, device) for module in modules]
            self._train(prepared, train_nets, val_nets, task, rng)
        self.metanet_.eval()
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _make_requirement(self) -> Requirement:
        n = self.n_features_in_task_
        if self.requirement == "sparsity":
            return Sparsity(self.target, n)
        if self.requirement == "data_minimisation":
            return DataMinimisation(self.target, n, self.forbidden_features_)
        return Fairness(self.target, n, kind=self.requirement, forbidden=self.forbidden_features_)

    def _prepare(self, module: nn.Sequential, device: torch.device) -> dict:
        weights = [(w.to(device), b.to(device)) for w, b in extract_weights(module)]
        graph = weights_to_graph(weights)
        flags = torch.cat(
            [
                self.requirement_.node_flags(graph.layer_sizes),
                self._input_flags(graph.num_nodes),
            ],
            dim=1,
        ).to(device)
        return {"module": module, "weights": weights, "graph": graph, "flags": flags}

    def _input_flags(self, n_nodes: int) -> torch.Tensor:
        """Per node: the mean and standard deviation of its input feature (input nodes,
        which come first in a parameter graph), zeros for the other neurons."""
        flags = torch.zeros(n_nodes, _N_INPUT_FLAGS)
        flags[: self.n_features_in_task_, 0] = self.requirement_.input_mean.float()
        flags[: self.n_features_in_task_, 1] = self.requirement_.input_scale()
        return flags

    def _anchor_targets(self) -> list | None:
        """The targets at which a range editor's metanetwork has its own output heads
        (None for one head)."""
        if self.target_range is None:
            return None
        anchors = self.requirement_.anchor_targets(*map(float, self.target_range))
        return None if anchors is None else [self._check_target(t) for t in anchors]

    def _sample_target(self, rng: np.random.RandomState) -> Any:
        if self.target_range is None:
            return self.target_
        anchors = self._anchor_targets()
        # a head is read alone only at its anchor and shares every target in between
        # with a neighbour; training at the anchors themselves as well lets the head at
        # the demanding end learn as much as an editor fitted for that target alone
        if anchors is not None and rng.uniform() < _ANCHOR_DRAWS:
            return anchors[rng.randint(len(anchors))]
        low, high = self.target_range
        return self._check_target(self.requirement_.sample_target(rng, low, high))

    def _validation_targets(self) -> list:
        """Targets at which checkpoints are compared: the fitted one and, for an editor
        trained on a range, both ends and the middle of it; the anchors of its output
        heads where it has several (their mean score then weighs each head alike)."""
        if self.target_range is None:
            return [self.target_]
        anchors = self._anchor_targets()
        if anchors is not None:
            return anchors
        low, high = self.target_range
        if self.requirement_.name == "data_minimisation":
            points = [int(low), round((low + high) / 2), int(high)]
        else:
            points = [float(low), float(low + high) / 2, float(high)]
        targets = [self._check_target(t) for t in points]
        if self.target_ not in targets:
            targets.append(self.target_)
        return targets

    def _edit_batch(self, items: list[dict], targets: list, *, hard: bool):
        """Edited weights of several networks from one batched metanetwork pass."""
        graphs = [item["graph"] for item in items]
        batch = graphs[0] if len(graphs) == 1 else Batch.from_data_list(graphs)
        device = items[0]["flags"].device
        target_in = torch.tensor(
            [self.requirement_.metanet_target(t) for t in targets], device=device
        )
        flags = torch.cat([item["flags"] for item in items])
        edits = unbatch_edit(self.metanet_(batch, target_in, flags), graphs)
        return [
            self.requirement_.recalibrate(
                item,
                self.requirement_.apply(
                    item["weights"], edit, target, hard=hard, temperature=self.temperature
                ),
            )
            for item, edit, target in zip(items, edits, targets, strict=True)
        ]

    def _loss(self, items, targets, X, y, groups, *, hard: bool, scores: list | None = None):
        """Mean training loss over ``items``; with ``scores``, also append each edited
        network's validation score (accuracy minus violation of its target)."""
        edited = self._edit_batch(items, targets, hard=hard)
        n_groups = 0 if self.groups_ is None else len(self.groups_)
        total = 0.0
        for item, weights, target in zip(items, edited, targets, strict=True):
            with torch.no_grad():
                original = network_forward(item["module"], item["weights"], X)
            logits = network_forward(item["module"], weights, X)
            utility = divergence(original, logits, self.divergence)
            if self.task_weight > 0:
                utility = utility + self.task_weight * F.cross_entropy(logits.float(), y)
            goal = self._training_goal(target)
            requirement = self.requirement_.loss(
                logits, y, groups, n_groups, goal, self.temperature
            )
            total = total + requirement + self.utility_weight * utility
            if scores is not None:
                decisions = logits.argmax(dim=1)
                value = self.requirement_.measure(weights, decisions == 1, y, groups, n_groups)
                scores.append(
                    float((decisions == y).float().mean())
                    - self.requirement_.violation(value, target)
                )
        return total / len(items)

    def _training_goal(self, target):
        """The target the training loss aims at: below ``target`` by the margins for the
        fairness requirements, ``target`` itself for the structural ones."""
        if not self.requirement_.needs_sensitive:
            return target
        return target - min(self.target_margin, self.relative_margin * target)

    def _train(self, prepared, train_nets, val_nets, task, rng) -> None:
        metanet = self.metanet_
        optimizer = torch.optim.AdamW(metanet.parameters(), lr=self.learning_rate)
        n_rows = task["X"].shape[0]
        # checkpoints are compared on the accuracy of exact edits, which needs many rows
        # to tell apart checkpoints a fraction of a point apart
        val_rows = torch.as_tensor(
            rng.choice(n_rows, size=min(n_rows, _VALIDATION_ROWS), replace=False),
            device=task["X"].device,
        )
        records = []
        best_state, best = None, (-np.inf, -np.inf)

        def evaluate() -> tuple[float, float]:
            """Validation (score, loss) of exact edits of the validation networks, over
            the validation targets."""
            metanet.eval()
            items = [prepared[i] for i in val_nets]
            losses, scores = [], []
            with torch.no_grad():
                for target in self._validation_targets():
                    loss = self._loss(
                        items,
                        [target] * len(items),
                        task["X"][val_rows],
                        task["y"][val_rows],
                        None if task["groups"] is None else task["groups"][val_rows],
                        hard=True,
                        scores=scores,
                    )
                    losses.append(float(loss))
            metanet.train()
            return float(np.mean(scores)), float(np.mean(losses))

        if len(val_nets):
            score, loss = evaluate()
            best = (score, -loss)
            best_state = copy.deepcopy(metanet.state_dict())
            records.append(
                {
                    "step": 0,
                    "train_loss": np.nan,
                    "validation_loss": loss,
                    "validation_score": score,
                }
            )
        metanet.train()
        progress = tqdm(
            total=self.max_steps, desc="MetanetEditor", unit="step", disable=self.verbose < 1
        )
        for step in range(1, self.max_steps + 1):
            progress.update()
            chosen = rng.choice(
                train_nets, size=min(self.networks_per_step, len(train_nets)), replace=False
            )
            rows = torch.as_tensor(
                rng.choice(n_rows, size=min(n_rows, self.rows_per_step), replace=False),
                device=task["X"].device,
            )
            items = [prepared[i] for i in chosen]
            targets = [self._sample_target(rng) for _ in items]
            loss = self._loss(
                items,
                targets,
                task["X"][rows],
                task["y"][rows],
                None if task["groups"] is None else task["groups"][rows],
                hard=False,
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(metanet.parameters(), 1.0)
            optimizer.step()
            record = {
                "step": step,
                "train_loss": loss.item(),
                "validation_loss": np.nan,
                "validation_score": np.nan,
            }
            if len(val_nets) and (step % max(self.eval_every, 1) == 0 or step == self.max_steps):
                score, loss_value = evaluate()
                record["validation_loss"], record["validation_score"] = loss_value, score
                # the best score wins; the loss breaks ties
                if (score, -loss_value) > best:
                    best = (score, -loss_value)
                    best_state = copy.deepcopy(metanet.state_dict())
            records.append(record)
            if self.verbose >= 2 and (step % max(self.max_steps // 10, 1) == 0 or step == 1):
                progress.write(
                    f"[MetanetEditor] step {step}/{self.max_steps} train loss "
                    f"{record['train_loss']:.4f}"
                    + (
                        f" validation loss {record['validation_loss']:.4f}"
                        f" score {record['validation_score']:.4f}"
                        if np.isfinite(record["validation_loss"])
                        else ""
                    )
                )
        progress.close()
        if best_state is not None:
            metanet.load_state_dict(best_state)
        self.history_ = pd.DataFrame.from_records(records, columns=_HISTORY_COLUMNS)

    # ------------------------------------------------------------------ edit

    def _edit(self, networks: list, target: Any = None) -> tuple[list, list[dict], list[float]]:
        """Edited networks, their prepared originals and edited weights, and edit times."""
        check_is_fitted(self, "metanet_")
        target = self.target_ if target is None else self._check_target(target)
        modules = self._check_networks(networks, self.n_features_in_task_)
        device = next(self.metanet_.parameters()).device
        self.metanet_.eval()
        networks = list(networks)
        out, details, seconds = [], [], []
        # several networks share one metanetwork pass (a batch of disjoint graphs), which
        # amortises the per-pass overhead; the edit of each is the same as alone
        for start in range(0, len(networks), _EDIT_CHUNK):
            chunk = range(start, min(start + _EDIT_CHUNK, len(networks)))
            started = time.perf_counter()
            items = [self._prepare(modules[i], device) for i in chunk]
            with torch.no_grad():
                edited = self._edit_batch(items, [target] * len(items), hard=True)
            out.extend(
                self._wrap(networks[i], modules[i], weights)
                for i, weights in zip(chunk, edited, strict=True)
            )
            elapsed = (time.perf_counter() - started) / len(items)
            seconds.extend([elapsed] * len(items))
            details.extend(
                {"item": item, "weights": weights}
                for item, weights in zip(items, edited, strict=True)
            )
        return out, details, seconds

    def _wrap(self, network: Any, module: nn.Sequential, weights) -> Any:
        if isinstance(network, nn.Module):
            from skorch import NeuralNetClassifier

            edited = NeuralNetClassifier(
                load_weights(module, weights),
                criterion=nn.CrossEntropyLoss,
                device=str(next(module.parameters()).device),
            )
            edited.initialize()
            edited.classes_inferred_ = self.classes_
            return edited
        return _copy_with_weights(network, module, weights)

    def transform(self, networks: list, target: float | int | None = None) -> list:
        """Edit networks, one metanetwork forward pass each.

        Parameters
        ----------
        networks : list of fitted skorch NeuralNetClassifier or nn.Sequential
            Networks of the task the editor was fitted on; they are not modified.
        target : float or int, default=None
            Edit for this target instead of the fitted one (meaningful within
            ``target_range``).

        Returns
        -------
        edited : list of fitted skorch NeuralNetClassifier
            Edited copies (plain modules come back wrapped in a skorch net), in order.
        """
        return self._edit(networks, target)[0]

    # ------------------------------------------------------------------ evaluate

    def _evaluation_data(self, data: Any):
        if data is None:
            X_np, y_np, labels = self.holdout_
            if len(X_np) == 0:
                raise ValueError("no held-out task rows (holdout_fraction=0); pass data=.")
        else:
            X, y, sensitive = unpack_task_data(data)
            X_np, y_np, labels = self._task_arrays(X, y, sensitive, fitting=False)
            if X_np.shape[1] != self.n_features_in_task_:
                raise ValueError(
                    f"data's X has {X_np.shape[1]} columns; the editor was fitted on "
                    f"{self.n_features_in_task_}."
                )
        codes = None
        if labels is not None:
            groups = self.groups_ if self.groups_ is not None else fit_groups(labels)
            codes = encode_groups(labels, groups)
            n_groups = len(groups)
        else:
            n_groups = 0
        return X_np, self._encode_y(y_np), codes, n_groups

    def _measure(self, networks, data, target):
        X_np, y_codes, codes, n_groups = self._evaluation_data(data)
        target = self.target_ if target is None else self._check_target(target)
        edited, details, seconds = self._edit(networks, target)
        device = next(self.metanet_.parameters()).device
        X = torch.as_tensor(X_np, device=device)
        y = torch.as_tensor(y_codes, device=device)
        groups = None if codes is None else torch.as_tensor(codes, device=device)
        rows = []
        for index, detail in enumerate(details):
            item = detail["item"]
            row = {"network": index}
            for when, weights in (("before", item["weights"]), ("after", detail["weights"])):
                with torch.no_grad():
                    decisions = network_forward(item["module"], weights, X).argmax(dim=1)
                row[f"accuracy_{when}"] = float((decisions == y).float().mean())
                row[f"sparsity_{when}"] = weight_sparsity(weights)
                used = features_used(weights)
                row[f"n_features_used_{when}"] = len(used)
                if when == "after":
                    row["features_used"] = [self.task_feature_names_[j] for j in used]
                    row["features_dropped"] = [
                        self.task_feature_names_[j]
                        for j in range(self.n_features_in_task_)
                        if j not in set(used)
                    ]
                if groups is not None:
                    positive = (decisions == 1).float()
                    row[f"parity_gap_{when}"] = float(
                        selection_rate_gap(positive, groups, n_groups)
                    )
                    if isinstance(self.requirement_, Fairness):
                        row[f"requirement_gap_{when}"] = self.requirement_.measure(
                            weights, decisions == 1, y, groups, n_groups
                        )
            value = self._requirement_value(row)
            row["violation"] = self.requirement_.violation(value, target)
            row["edit_seconds"] = seconds[index]
            rows.append(row)
        return edited, pd.DataFrame.from_records(rows)

    def _requirement_value(self, row: dict) -> float:
        if isinstance(self.requirement_, Sparsity):
            return row["sparsity_after"]
        if isinstance(self.requirement_, DataMinimisation):
            return float(row["n_features_used_after"])
        return row["requirement_gap_after"]

    def score(self, networks: list, y: None = None, *, data: Any = None) -> float:
        """Rate the edits of ``networks`` on held-out task data (higher is better).

        ``score = mean over networks of (accuracy_after - violation)``, where
        ``accuracy_after`` is the edited network's accuracy on the task rows held out in
        fit (or on ``data``) and ``violation`` is how far the edited network misses the
        target: ``max(0, gap - target)`` for the fairness requirements, and 0 for
        ``sparsity`` and ``data_minimisation``, which every edit meets exactly.

        Parameters
        ----------
        networks : list of fitted networks
        y : None
            Ignored.
        data : TaskData or tuple, default=None
            Task data to score on instead of the rows held out in fit.

        Returns
        -------
        score : float
        """
        _, table = self._measure(networks, data, None)
        return float((table["accuracy_after"] - table["violation"]).mean())

    def report(
        self, networks: list, *, data: Any = None, target: float | int | None = None
    ) -> pd.DataFrame:
        """A compliance report, one row per network.

        Parameters
        ----------
        networks : list of fitted networks
        data : TaskData or tuple, default=None
            Task data to measure on instead of the rows held out in fit.
        target : float or int, default=None
            Edit for this target instead of the fitted one.

        Returns
        -------
        report : pandas.DataFrame
            Columns ``network``, ``accuracy_before``/``_after``, ``sparsity_before``/
            ``_after``, ``n_features_used_before``/``_after``, ``features_used`` and
            ``features_dropped`` (names), ``parity_gap_before``/``_after`` (selection-rate
            gap, where sensitive features are known), ``requirement_gap_before``/``_after``
            (fairness requirements), ``violation`` and ``edit_seconds`` (the network's share
            of its batched edit).
        """
        return self._measure(networks, data, target)[1]
