"""MetanetEditor: a transformer whose samples are networks, edited in one forward pass.

The estimator wires the pieces and validates what users pass; the pieces know nothing
of it: the parameter graph (:mod:`._graph`), the metanetwork (:mod:`._metanet`), the
requirements and their targets (:mod:`._requirements`), one editing pass
(:mod:`._edit`) and the training loop (:mod:`._training`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Hashable
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from .._device import check_device
from .._groups import encode_groups, fit_groups
from .._pickle_version import PickleVersionMixin
from .._threads import with_thread_limit
from ._edit import N_INPUT_FLAGS, edit_networks, edited_copy, prepare_network
from ._initialisation import seeded_metanet
from ._joint import with_target_entries
from ._provenance import record_edits, replay, replayed, unedited
from ._requirement import input_statistics
from ._requirements import REQUIREMENTS, make_requirement
from ._task_data import (
    calibration_arrays,
    check_networks,
    check_outputs,
    encode_labels,
    evaluation_arrays,
    network_classes,
    report_table,
    resolve_features,
    task_arrays,
    unpack_task_data,
)
from ._training import HISTORY_COLUMNS, MetanetTrainer, TrainingSettings, untrained_message

__all__ = ["MetanetEditor"]

#: Networks edited in one metanetwork pass by ``transform``.
_EDIT_CHUNK = 16


class MetanetEditor(PickleVersionMixin, TransformerMixin, BaseEstimator):
    """Edit trained networks to meet a requirement, one metanetwork forward pass each.

    A graph metanetwork is trained on a population of networks (the samples of ``fit``)
    to edit any network of the same family so that it meets ``requirement`` while its
    predictions stay close to the original's. At edit time the requirement is enforced
    exactly where it can be: ``sparsity`` and ``data_minimisation`` are met by every
    edited network; the fairness gaps are measured (see :meth:`report`).

    Training loss per network, averaged over a batch of networks and task rows::

        requirement_loss + utility_weight * (divergence(original, edited)
                                             + task_weight * cross_entropy(edited, y))

    where ``requirement_loss`` is ``relu(soft_gap - goal)``, ``goal = target -
    min(target_margin, relative_margin * target)``, for the fairness requirements and 0
    for the structural ones (their soft top-k gates make them hold during training).

    Parameters
    ----------
    requirement : {"sparsity", "data_minimisation", "demographic_parity", \
"equal_opportunity", "equalized_odds"} or list of them, default="sparsity"
        What the edited networks must meet. A list (at most one parity constraint, no
        name twice) makes a *joint* editor that meets all of them in one edit, whatever
        their order: the features are dropped (least-squares compensation), the network
        is pruned from the features kept (saliency and least-squares refit), both as the
        untrained single editors do, and the metanetwork, trained on the joint
        objective (the utility terms plus the parity term), adds its residuals to the
        weights that survive, so that the structural requirements hold exactly; with
        ``calibration`` rows a parity constraint's gap is met per network as a parity
        editor's is. Its ``target`` is a dict, ``target_range`` is not supported, and
        the training settings are those of the parity constraint, else of sparsity.
    target : float, int or dict, default=None
        ``sparsity``: fraction of weights that are zero (default 0.5).
        ``data_minimisation``: number of input features to keep, chosen per network
        (default: all that ``features`` does not forbid).
        ``demographic_parity`` / ``equal_opportunity`` / ``equalized_odds``: the largest
        gap allowed on the task data's sensitive feature (default 0.05).
        A joint editor: a dict of each requirement's target, e.g. ``{"sparsity": 0.9,
        "demographic_parity": 0.05}``; those left out take their defaults. A
        ``GridSearchCV`` searches it as any parameter (``{"target": [{...}, {...}]}``),
        or each entry as ``target__<requirement>`` (see :meth:`set_params`).
    features : sequence of str or int, default=None
        The input features the edited networks may not use, as column names of the task
        data's ``X`` or as integer indices (``data_minimisation``, and the fairness
        requirements: there, e.g., the sensitive feature's own columns, so that the
        edited network is group-blind). Their first-layer columns are exactly zero; what
        they contributed is replaced by its least-squares prediction from the kept
        features (means and covariance of the task data's inputs, recorded in fit).
    utility_weight : float, default=None
        Weight of the utility term against the requirement term. None: the
        requirement's value (see *Defaults* below).
    divergence : {"kl", "js"}, default="kl"
        KL(original || edited) or the Jensen-Shannon divergence.
    task_weight : float, default=2.0
        Weight of the edited network's cross-entropy on the task labels, beside the
        divergence (0 for a pure-fidelity edit).
    sensitive_feature : str, int or list, default=None
        Column(s) of the task data's ``X`` holding the groups, when ``data`` carries no
        sensitive features.
    target_range : (low, high), default=None
        Train on targets drawn from this range (two valid targets, ``low <= high``;
        uniform, integers for ``data_minimisation``), so that ``transform(networks,
        target=...)`` serves any target in it without refitting; checkpoints are then
        selected at both ends and the middle of the range and at ``target``. None: train
        on ``target`` only. For a fairness target, a narrow range around it (e.g.
        ``(0.04, 0.06)`` for 0.05) made edits meet it more reliably on Adult (see the
        editing guide). A sparsity range gives the metanetwork's output heads four
        anchors across it (``GraphMetanetwork``'s ``target_anchors``): three training
        targets in four are drawn at an anchor, the others with the kept fraction
        ``1 - s`` log-uniform, and checkpoints are selected at the anchors.
    target_margin : float, default=None
        Fairness requirements only: train for a gap of ``target - target_margin``. The
        gap is measured on new rows and on new networks, where it scatters around what
        training reached; a margin moves that scatter below ``target``. None: the
        requirement's value (see *Defaults* below).
    relative_margin : float, default=1.0
        Fairness requirements only: the largest margin, as a fraction of the target, in
        [0, 1]: train for ``target - min(target_margin, relative_margin * target)``. With
        a ``target_range`` spanning small and large gaps, an absolute margin alone leaves
        nothing to train for at the small ones (``relative_margin=0.5`` trains for at
        least half of each target). 1: the absolute margin alone, down to a goal of 0.
    hidden_channels : int, default=None
        Width of the metanetwork's node and edge features. None: the requirement's
        value (see *Defaults* below), as for the next four.
    num_layers : int, default=None
        Rounds of message passing.
    mlp_hidden : int, default=None
        Hidden width of the metanetwork's MLPs.
    max_steps : int, default=None
        Optimisation steps of the metanetwork.
    networks_per_step : int, default=6
        Networks per step.
    rows_per_step : int, default=512
        Task rows per step.
    learning_rate : float, default=None
        AdamW learning rate (gradients are clipped at norm 1). None: the requirement's
        value (see *Defaults* below), as for ``temperature`` and ``eval_every``.
    temperature : float, default=None
        Temperature of the soft gates (and of the soft decisions of the fairness loss).
    holdout_fraction : float, default=0.2
        Fraction of the task rows kept out of training. The fitted editor keeps their
        positions (``holdout_indices_``), never the rows: pass ``X[holdout_indices_]``
        (and the matching ``y``) to :meth:`score` or :meth:`report` to measure on rows the
        metanetwork never saw.
    validation_fraction : float, default=0.2
        Fraction of the networks (with at least 5 networks) kept out of training to pick
        the best checkpoint, evaluated every ``eval_every`` steps with exact edits.
    eval_every : int, default=None
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
        magnitudes; saliencies and least-squares refits on rows drawn from them;
        compensation of dropped features), so that an edit reads no task rows.
    target_ : float or int or None
        The target edits meet by default.
    n_features_in_task_ : int
        Input width of the networks.
    n_classes_ : int
        Output width of the networks.
    classes_ : ndarray
        The networks' classes: a skorch net's ``classes_``, or ``0 .. n_classes_ - 1``
        for plain modules; output ``i`` of the networks predicts ``classes_[i]``. The task
        data's labels must be among them (a ``ValueError`` names any that are not).
    task_feature_names_ : list of str
        Names of the input features (the task data's columns, or "x0", "x1", ...).
    forbidden_features_ : list of int
        Indices of the features the edited networks may not use.
    groups_ : ndarray or None
        Sensitive groups seen in fit.
    holdout_indices_ : ndarray of int
        Positions, in the task data's rows, of the rows held out of training
        (``holdout_fraction``). A fitted editor keeps no task rows, labels or sensitive
        features: a pickle or a :func:`save_editor` file holds weights and statistics
        (the inputs' mean and covariance) only.
    history_ : pandas.DataFrame
        Per step: training loss; per evaluation: validation loss and validation score
        (mean over the validation networks of the exact edit's accuracy less its violation
        of the target, on up to 8,192 task rows; a pruning before ``transform``'s refinement,
        so below it). The checkpoint of best validation score is kept where its gain over
        step 0 is beyond the validation networks' spread (a one-sided t-test at 97.5%).
    selected_step_ : int or None
        Step of the checkpoint kept: 0 is the untrained metanetwork (``fit`` then warns
        with a ``ConvergenceWarning``); None without validation networks, when the last
        step is kept.
    settings_ : dict
        The training settings used: the parameters above that default to None, with
        the requirement's value where they were left at None.
    training_gain_ : float
        What training added: the kept checkpoint's validation score minus the untrained
        one's (0 with ``max_steps=0``, NaN without validation networks).
    fit_seconds_ : float
        Wall-clock time of fit.

    See Also
    --------
    make_population : Train a population of networks to fit an editor on.

    Notes
    -----
    **Defaults.** The training settings left at None take the configuration that
    ``benchmarks/bench_editor.py`` measures for each requirement (the editing guide's
    "Measured on Adult"), so that ``MetanetEditor(requirement)`` edits as well as the
    benchmark reports: ``hidden_channels=16``, ``num_layers=2``, ``mlp_hidden=16``,
    ``max_steps=500``, ``learning_rate=3e-4``, ``temperature=0.3``,
    ``utility_weight=1.0``, ``target_margin=0.0`` and ``eval_every=50``; for
    ``"data_minimisation"`` one round of message passing (``num_layers=1``) at
    ``learning_rate=1e-3``, since the least-squares compensation does most of the work;
    for the fairness requirements ``learning_rate=1e-3``, ``utility_weight=0.5`` and
    ``target_margin=0.02``, so that the gap measured on new rows and networks stays
    below the target. :attr:`settings_` holds the values used.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import make_classification
    >>> from skorch import NeuralNetClassifier
    >>> import torch
    >>> from sklearn_metaedit import MLP, MetanetEditor, make_population
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
    >>> report = editor.report(population, data=(X, y))
    >>> bool((report["sparsity_after"] >= 0.7).all())
    True

    One editor for several requirements (a joint editor), with its report's compliance
    columns:

    >>> joint = MetanetEditor(["sparsity", "data_minimisation"], target={"sparsity": 0.7},
    ...                       features=[0, 1], max_steps=5, random_state=0)
    >>> table = joint.fit(population, data=(X, y)).report(population, data=(X, y))
    >>> bool(table["meets_sparsity"].all() and table["meets_data_minimisation"].all())
    True
    """

    # the task data is requested by default: under metadata routing, GridSearchCV,
    # cross_validate and Pipeline pass ``data`` to fit and score without set_*_request
    __metadata_request__fit: ClassVar[dict] = {"data": True}
    __metadata_request__score: ClassVar[dict] = {"data": True}

    _parameter_constraints: ClassVar[dict] = {
        "requirement": [StrOptions(set(REQUIREMENTS)), list, tuple],
        "target": [Real, dict, None],
        "features": ["array-like", str, Integral, None],
        "utility_weight": [Interval(Real, 0, np.inf, closed="left"), None],
        "divergence": [StrOptions({"kl", "js"})],
        "task_weight": [Interval(Real, 0, np.inf, closed="left")],
        "sensitive_feature": [Hashable, list, None],
        "target_range": ["array-like", None],
        "target_margin": [Interval(Real, 0, np.inf, closed="left"), None],
        "relative_margin": [Interval(Real, 0, 1, closed="both")],
        "hidden_channels": [Interval(Integral, 1, None, closed="left"), None],
        "num_layers": [Interval(Integral, 1, None, closed="left"), None],
        "mlp_hidden": [Interval(Integral, 1, None, closed="left"), None],
        "max_steps": [Interval(Integral, 0, None, closed="left"), None],
        "networks_per_step": [Interval(Integral, 1, None, closed="left")],
        "rows_per_step": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, np.inf, closed="left"), None],
        "temperature": [Interval(Real, 0, np.inf, closed="neither"), None],
        "holdout_fraction": [Interval(Real, 0, 1, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "eval_every": [Interval(Integral, 0, None, closed="left"), None],
        "device": [str, torch.device],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        requirement: str | list[str] = "sparsity",
        *,
        target: float | int | dict | None = None,
        features: Any = None,
        utility_weight: float | None = None,
        divergence: str = "kl",
        task_weight: float = 2.0,
        sensitive_feature: Any = None,
        target_range: tuple[float, float] | None = None,
        target_margin: float | None = None,
        relative_margin: float = 1.0,
        hidden_channels: int | None = None,
        num_layers: int | None = None,
        mlp_hidden: int | None = None,
        max_steps: int | None = None,
        networks_per_step: int = 6,
        rows_per_step: int = 512,
        learning_rate: float | None = None,
        temperature: float | None = None,
        holdout_fraction: float = 0.2,
        validation_fraction: float = 0.2,
        eval_every: int | None = None,
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

    def set_params(self, **params: Any) -> MetanetEditor:
        """Set the editor's parameters, as any scikit-learn estimator's.

        A joint editor's targets are also reachable one by one as
        ``target__<requirement>``, so that ``GridSearchCV`` searches a grid over each
        requirement's target: ``{"target__sparsity": [0.8, 0.9],
        "target__demographic_parity": [0.03, 0.05]}``. Each sets that entry of a copy of
        the ``target`` dict (or of a new one, where ``target`` is None); the dict given
        before is not changed.

        Returns
        -------
        self : MetanetEditor
        """
        params = with_target_entries(params, self.target)
        return super().set_params(**params)

    # ------------------------------------------------------------------ fit

    @_fit_context(prefer_skip_nested_validation=True)
    @with_thread_limit
    def fit(self, networks: list, y: None = None, *, data: Any = None) -> MetanetEditor:
        """Train the metanetwork on a population of networks.

        With an integer ``random_state`` the fit is reproducible, also in threads (of
        ``GridSearchCV`` or a Dask worker): its draws come from generators of its own,
        never from torch's or numpy's global generator.

        Parameters
        ----------
        networks : list of fitted skorch NeuralNetClassifier or nn.Sequential
            The population (the samples), all with the task data's input width. A network
            that an editor of a later requirement returned stands for its source.
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
        device = check_device(self.device)
        X, y_task, sensitive = unpack_task_data(data)
        X_np, y_np, labels, names, has_names = task_arrays(
            X, y_task, sensitive, self.sensitive_feature
        )
        networks = unedited(self.requirement, networks)
        modules = check_networks(networks, X_np.shape[1])
        n_classes = {
            next(m for m in reversed(mod) if isinstance(m, nn.Linear)).out_features
            for mod in modules
        }
        if len(n_classes) != 1:
            raise ValueError(
                f"the networks have different numbers of outputs: {sorted(n_classes)}."
            )
        classes = network_classes(networks, modules)
        # the labels are mapped to the networks' outputs, never re-derived from y: task
        # data without some class must not shift the others onto the wrong output
        y_codes = encode_labels(classes, y_np)
        self.n_classes_ = len(classes)
        self.classes_ = classes
        self.n_features_in_task_ = X_np.shape[1]
        self.task_feature_names_ = names
        self.forbidden_features_ = resolve_features(self.features, names, has_names)
        requirement = make_requirement(
            self.requirement, self.n_features_in_task_, self.forbidden_features_
        )
        requirement.check_settings(target=self.target, features=self.features)
        requirement.check_task(n_classes=self.n_classes_, has_groups=labels is not None)
        requirement.check_population(modules)
        self.requirement_ = requirement
        self.settings_ = requirement.resolve_settings(self.get_params(deep=False))
        self.target_ = requirement.check_target(
            requirement.default_target() if self.target is None else self.target
        )
        target_range = requirement.check_target_range(self.target_range)
        self.groups_ = None if labels is None else fit_groups(labels)
        group_codes = None if labels is None else encode_groups(labels, self.groups_)
        if labels is not None and len(self.groups_) < 2:
            raise ValueError("sensitive_features holds a single group; parity needs at least 2.")

        rng = check_random_state(self.random_state)
        order = rng.permutation(len(X_np))
        n_holdout = round(self.holdout_fraction * len(X_np))
        if len(X_np) - n_holdout < 1:
            raise ValueError("the task data has too few rows to hold some out.")
        holdout, train_rows = order[:n_holdout], order[n_holdout:]
        # positions only: a fitted editor keeps no task rows (privacy; see score)
        self.holdout_indices_ = np.sort(holdout)

        requirement.set_input_statistics(*input_statistics(X_np[train_rows]))
        n_networks = len(modules)
        net_order = rng.permutation(n_networks)
        n_val = round(self.validation_fraction * n_networks) if n_networks >= 5 else 0
        val_nets, train_nets = net_order[:n_val], net_order[n_val:]

        init_seed = int(rng.randint(2**31 - 1))
        self.metanet_params_ = {
            "n_features": int(self.n_features_in_task_),
            "n_classes": int(self.n_classes_),
            "hidden_channels": int(self.settings_["hidden_channels"]),
            "num_layers": int(self.settings_["num_layers"]),
            "mlp_hidden": int(self.settings_["mlp_hidden"]),
            "n_node_flags": int(requirement.n_node_flags) + N_INPUT_FLAGS,
            "target_anchors": None
            if target_range is None
            else requirement.target_anchors(*map(float, target_range)),
        }
        self.metanet_ = seeded_metanet(self.metanet_params_, init_seed).to(device)

        self.history_ = pd.DataFrame(columns=HISTORY_COLUMNS)
        if self.settings_["max_steps"] > 0:
            task = {
                "X": torch.as_tensor(X_np[train_rows], device=device),
                "y": torch.as_tensor(y_codes[train_rows], device=device),
                "groups": None
                if group_codes is None
                else torch.as_tensor(group_codes[train_rows], device=device),
            }
            prepared = [prepare_network(module, requirement, device) for module in modules]
            trainer = MetanetTrainer(
                self.metanet_,
                requirement,
                TrainingSettings.of(self.get_params(deep=False), self.settings_),
                target=self.target_,
                target_range=target_range,
                n_groups=0 if self.groups_ is None else len(self.groups_),
            )
            trainer.fit(prepared, train_nets, val_nets, task, rng)
            self.history_ = trainer.history_
            self.selected_step_ = trainer.selected_step_
            self.training_gain_ = trainer.training_gain_
            if self.selected_step_ == 0:
                # stacklevel: the caller of fit, above scikit-learn's _fit_context wrapper
                message = untrained_message(self.history_, trainer.rejected_gain_)
                warnings.warn(message, ConvergenceWarning, stacklevel=4)
        else:
            self.selected_step_, self.training_gain_ = 0, 0.0
        self.metanet_.eval()
        self.fit_seconds_ = time.perf_counter() - started
        return self

    # ------------------------------------------------------------------ edit

    @with_thread_limit
    def _edit(
        self, networks: list, target: Any = None, calibration: Any = None
    ) -> tuple[list, list[dict], list[float]]:
        """Edited networks, their prepared originals and edited weights, and edit times."""
        check_is_fitted(self, "metanet_")
        target = self.target_ if target is None else self.requirement_.check_target(target)
        device = next(self.metanet_.parameters()).device
        arrays, rows = calibration_arrays(self, calibration, device)
        if not (isinstance(networks, nn.Module) or hasattr(networks, "module")):
            networks = list(networks)
        modules = check_networks(networks, self.n_features_in_task_)
        check_outputs(networks, modules, self.classes_)
        # the metanetwork is in eval mode (fit, load_editor) and only read: threads share it
        met, replays = self.requirement_.targets_met(target), replayed(self.requirement_, networks)
        out, details, seconds = ([None] * len(networks) for _ in range(3))
        direct = [i for i in range(len(networks)) if i not in replays]
        # one metanetwork pass edits a batch of networks, each as it would alone
        for start in range(0, len(direct), _EDIT_CHUNK):
            chunk = direct[start : start + _EDIT_CHUNK]
            started = time.perf_counter()
            items = [prepare_network(modules[i], self.requirement_, device, rows) for i in chunk]
            with torch.no_grad():
                edited = edit_networks(
                    self.metanet_,
                    self.requirement_,
                    items,
                    [target] * len(items),
                    hard=True,
                    temperature=self.settings_["temperature"],
                    calibration=arrays,
                )
            elapsed = (time.perf_counter() - started) / len(items)
            for i, item, weights in zip(chunk, items, edited, strict=True):
                out[i] = edited_copy(networks[i], modules[i], weights, self.classes_, met)
                details[i], seconds[i] = {"item": item, "weights": weights}, elapsed
        replay(self, replays, modules, (target, calibration), (out, details, seconds))
        record_edits(self, networks, out, details, target, calibration)
        return out, details, seconds

    def transform(
        self, networks: list, target: float | int | None = None, *, calibration: Any = None
    ) -> list:
        """Edit networks, one metanetwork forward pass each.

        ``transform``, ``score`` and ``report`` only read the fitted editor (and the
        networks given), so threads may share one fitted editor; fitting it again while
        others use it is not safe.

        Parameters
        ----------
        networks : list of fitted skorch NeuralNetClassifier or nn.Sequential
            Networks of the task the editor was fitted on; they are not modified. One that
            an editor of a later requirement returned (in the order data minimisation,
            sparsity, parity) is edited before that edit, which is made again after it.
        target : float or int, default=None
            Edit for this target instead of the fitted one (meaningful within
            ``target_range``).
        calibration : TaskData, tuple (X, y[, sensitive_features]) or X, default=None
            Rows read at edit time, not kept by the editor (an edited network's record,
            in memory only, refers to them: the editing guide). Parity requirements: rows
            the networks were not trained on, on which each edit takes its own strength,
            the residuals scaled by the least factor (up to 6) whose gap plus 2.326
            standard errors (a 99% bound per pair of groups) is at most the target (a
            warning where none is). Sparsity and data minimisation (alone or together):
            inputs the layers are refitted on in place of rows drawn from the fit-time
            statistics.

        Returns
        -------
        edited : list of fitted skorch NeuralNetClassifier
            Edited copies (plain modules come back wrapped in a skorch net), in order;
            ``module_.metaedit_requirements`` records what the edits were made for.

        Examples
        --------
        >>> import numpy as np, torch
        >>> from skorch import NeuralNetClassifier
        >>> from sklearn_metaedit import MLP, MetanetEditor, TaskData, make_population
        >>> from sklearn_metaedit.datasets import make_biased_classification
        >>> X, y, s = make_biased_classification(n_samples=600, random_state=0)
        >>> net = NeuralNetClassifier(MLP, module__n_features=X.shape[1], max_epochs=3,
        ...     criterion=torch.nn.CrossEntropyLoss, train_split=None, verbose=0)
        >>> networks = make_population(net, X, y, n_networks=4, random_state=0)
        >>> editor = MetanetEditor("demographic_parity", target=0.05, max_steps=0)
        >>> editor = editor.fit(networks, data=TaskData(X, y, s))
        >>> edited = editor.transform(networks, calibration=TaskData(X, y, s))
        >>> len(edited)
        4
        """
        return self._edit(networks, target, calibration)[0]

    # ------------------------------------------------------------------ evaluate

    def _measure(self, networks, data, target, method, calibration=None):
        arrays = evaluation_arrays(self, data, method)  # checked before the edits
        target = self.target_ if target is None else self.requirement_.check_target(target)
        edited, details, seconds = self._edit(networks, target, calibration)
        return edited, report_table(self, arrays, details, seconds, target)

    def score(
        self, networks: list, y: None = None, *, data: Any = None, sample_weight: None = None
    ) -> float:
        """Rate the edits of ``networks`` on task data (higher is better).

        ``score = mean over networks of (accuracy_after - violation)``, where
        ``accuracy_after`` is the edited network's accuracy on ``data`` and ``violation``
        is how far the edited network misses the target: ``max(0, gap - target)`` for the
        fairness requirements, and 0 for ``sparsity`` and ``data_minimisation``, which
        every edit meets exactly.

        A fitted editor keeps no task rows, so ``data`` is required. In ``GridSearchCV``
        or ``cross_validate``, which call ``score(networks)`` on the held-out networks,
        turn on scikit-learn's metadata routing: the editor requests ``data`` for ``fit``
        and ``score`` by default, so the search passes it to both::

            sklearn.set_config(enable_metadata_routing=True)
            GridSearchCV(MetanetEditor(...), grid, cv=KFold(3)).fit(
                population, data=TaskData(X, y))

        Without routing, the search gives ``data`` to ``fit`` alone, and every score is
        NaN, with scikit-learn's warning that scoring failed.

        Parameters
        ----------
        networks : list of fitted networks
        y : None
            Ignored.
        data : TaskData or tuple
            The task rows to score on, e.g. ``TaskData(X_test, y_test)``; the rows that
            fit held out of training are ``X[holdout_indices_]``. Labels must be among
            ``classes_``.
        sample_weight : None
            Not supported (the samples are networks); present so that a ``Pipeline``'s
            ``score`` under metadata routing, which passes ``sample_weight=None``, works.

        Returns
        -------
        score : float

        Raises
        ------
        ValueError
            If ``data`` is missing (the message says how to pass it), has no rows, or
            holds labels the networks do not predict, or ``sample_weight`` is given.
        """
        if sample_weight is not None:
            raise ValueError("sample_weight is not supported: the samples are networks.")
        _, table = self._measure(networks, data, None, "score")
        return float((table["accuracy_after"] - table["violation"]).mean())

    def report(
        self,
        networks: list,
        *,
        data: Any = None,
        target: float | int | dict | None = None,
        calibration: Any = None,
    ) -> pd.DataFrame:
        """A compliance report, one row per network.

        Parameters
        ----------
        networks : list of fitted networks
        data : TaskData or tuple
            The task rows to measure on (required: a fitted editor keeps none), e.g.
            ``TaskData(X_test, y_test, groups_test)``; at least one row, labels among
            ``classes_``.
        target : float, int or dict, default=None
            Edit for this target instead of the fitted one.
        calibration : TaskData, tuple (X, y[, sensitive_features]) or X, default=None
            Report the edits that :meth:`transform` makes with these calibration rows
            (read, not kept), made again at transform's cost.

        Returns
        -------
        report : pandas.DataFrame
            Columns ``network``, ``accuracy_before``/``_after``, ``sparsity_before``/
            ``_after``, ``n_features_used_before``/``_after``, ``features_used`` and
            ``features_dropped`` (names), ``parity_gap_before``/``_after`` (selection-rate
            gap, where sensitive features are known), ``requirement_gap_before``/``_after``
            (fairness requirements), ``violation`` and ``edit_seconds`` (the network's share
            of its batched edit); a joint editor adds ``meets_<requirement>`` per
            requirement (``data_minimisation``: no forbidden feature read, and at most
            its budget).
        """
        return self._measure(networks, data, target, "report", calibration)[1]
