"""FairnessLayerClassifier: a skorch network with an exact parity projection on its output."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Hashable, Mapping
from numbers import Real
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from pandas.api.types import is_numeric_dtype
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, _fit_context, clone
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)
from torch import nn

from .._device import check_device
from .._groups import encode_groups, fit_groups, resolve_sensitive_features, sensitive_columns
from .._pickle_version import PickleVersionMixin
from .._threads import with_thread_limit
from ._batches import StratifiedBatchSampler, StratifiedGroupLoader
from ._constraints import CONSTRAINTS, constraint_codes
from ._decisions import parity_decisions
from ._inputs import (
    RESERVED_KEYS,
    NetworkInput,
    check_network_input,
    check_same_shapes,
    dataset_targets,
    example_batch,
    inference_batches,
    input_kind,
    kind_mismatch,
    training_input,
)
from ._loss import ProjectedNLLLoss, criterion_options
from ._projection import project_parity
from ._random import (
    draws_from_global_rng,
    loader_generators,
    own_dropout,
    restore_dropout,
    seeded_global_rng,
)

__all__ = [
    "FairnessLayerClassifier",
    "ParityProjectionModule",
    "StratifiedBatchSampler",
    "StratifiedGroupLoader",
]


class ParityProjectionModule(nn.Module):
    """A network followed by the parity projection of its positive-class probabilities.

    Parameters
    ----------
    base : nn.Module
        Maps a batch of ``n_samples`` inputs (a table ``(n_samples, n_features)``, images
        ``(n_samples, channels, height, width)``, any tensor, or keyword tensors) to
        ``(n_samples, 2)`` outputs.
    to_proba : callable
        Turns ``base``'s outputs into probabilities (softmax for logits, identity for
        probabilities).
    constraint : str
        "demographic_parity", "equal_opportunity" or "equalized_odds".
    epsilon : float
        The largest allowed gap between group means.
    n_groups : int
        Number of group codes.
    keyword_inputs : bool, default=False
        Whether ``base`` takes its inputs as keywords (skorch's dict X) rather than as
        one tensor.
    """

    def __init__(self, base, to_proba, constraint, epsilon, n_groups, keyword_inputs=False):
        super().__init__()
        self.base = base
        self.to_proba = to_proba
        self.constraint = constraint
        self.epsilon = epsilon
        self.n_groups = n_groups
        self.keyword_inputs = keyword_inputs

    def base_proba(self, X) -> torch.Tensor:
        """Positive-class probabilities ``(n_samples,)`` of the unprojected network.

        ``X`` is a tensor whose first dimension indexes the samples, or a dict of such
        tensors, given to ``base`` as keywords.
        """
        outputs = self.base(**X) if isinstance(X, Mapping) else self.base(X)
        proba = self.to_proba(outputs)
        if proba.ndim != 2 or proba.shape[1] != 2:
            raise ValueError(
                "the network must output two columns (one per class) for a binary target; "
                f"it output shape {tuple(proba.shape)}."
            )
        return proba[:, 1]

    def forward(self, X=None, groups=None, labels=None, strata=None, **inputs):
        """Projected class probabilities ``(n_samples, 2)`` whose group means meet the constraint.

        ``X`` is the network's input tensor; with ``keyword_inputs``, the network's
        inputs are the keywords ``inputs`` instead (``X`` among them if given).
        ``groups`` and ``labels`` are ``(n_samples,)`` integer codes; ``strata`` is read
        by the batch sampler only.
        """
        if groups is None:
            raise ValueError("the projection needs the group codes of the batch (groups=).")
        codes = constraint_codes(self.constraint, groups, labels, n_groups=self.n_groups)
        if getattr(self, "keyword_inputs", False):
            X = inputs if X is None else {"X": X, **inputs}
        elif inputs:
            raise TypeError(
                f"unexpected inputs {sorted(inputs)}: a network that takes keyword inputs "
                "needs keyword_inputs=True."
            )
        z = project_parity(
            self.base_proba(X),
            codes.groups,
            self.epsilon,
            n_groups=codes.n_groups,
            blocks=codes.blocks,
        )
        return torch.stack([1.0 - z, z], dim=1)


def _writable(X):
    """pandas hands out read-only arrays, which torch refuses to wrap without a warning."""
    return X if X.flags.writeable else X.copy()


def _softmax(outputs):
    return torch.softmax(outputs, dim=-1)


def _identity(outputs):
    return outputs


class FairnessLayerClassifier(
    PickleVersionMixin, MetaEstimatorMixin, ClassifierMixin, BaseEstimator
):
    """A skorch network with an exact, differentiable parity projection layer on its output.

    ``fit`` clones ``estimator`` and appends a layer that projects each training batch's
    positive-class probabilities onto the set where every group's mean lies within
    ``epsilon`` of every other's (the Euclidean projection, computed exactly); the loss
    is taken on the projected probabilities, and batches are stratified so that each
    holds every group. At prediction, ``predict_proba`` projects the batch it is given
    and ``predict`` returns 0/1 decisions whose selection-rate gap on that batch is at
    most ``epsilon`` exactly (what fairlearn's ``demographic_parity_difference``
    measures), changing the least confident decisions, one threshold per group.

    For ``equal_opportunity`` and ``equalized_odds`` the training batches are projected
    using their labels; at prediction there are no labels, so ``predict_proba``
    returns the trained network's probabilities and ``predict`` applies group
    thresholds learnt on the training data (true positive rates within ``epsilon`` on
    the training data). Their gap on new data is measured, not guaranteed.

    Parameters
    ----------
    estimator : skorch.NeuralNetClassifier
        Unfitted; its module must output two columns (logits with
        ``criterion=torch.nn.CrossEntropyLoss``, or probabilities with the default
        ``NLLLoss``). When the module takes ``n_features`` and the net does not set
        ``module__n_features``, it is set to the width of ``X``. The loss is taken on the
        projected probabilities with the criterion's settings: class weights
        (``criterion__weight``, one per class), ``ignore_index``, ``reduction`` ("mean" or
        "sum") and, for ``CrossEntropyLoss``, ``label_smoothing``, each with torch's
        meaning; any other criterion parameter, and ``reduction="none"``, is an error.
    constraint : {"demographic_parity", "equal_opportunity", "equalized_odds"}, \
            default="demographic_parity"
    epsilon : float, default=0.05
        The largest allowed gap between group means, in [0, 1).
    sensitive_feature : str, int or list, default=None
        Column(s) of ``X`` that hold the groups, used when ``sensitive_features`` is
        not passed (so that un-routed Pipelines and GridSearchCV work). Several columns
        make intersectional groups. The column stays an input of the network.
    random_state : int or None, default=None
        Seeds the network's initialisation, dropout and batch order; the global torch
        random state is left as it was. Fits in parallel threads equal a serial fit
        (see Notes).

    Attributes
    ----------
    estimator_ : skorch.NeuralNetClassifier
        The trained network, its module a :class:`ParityProjectionModule`.
    classes_ : ndarray of shape (2,)
    groups_ : ndarray of object, shape (n_groups,)
        The groups seen in fit.
    thresholds_ : ndarray of shape (n_groups,)
        For equal opportunity / equalized odds: each group's decision threshold.
    n_features_in_ : int

    See Also
    --------
    sklearn_metaedit.OnlineFairPredictor : parity of all decisions over a stream.
    fairlearn.postprocessing.ThresholdOptimizer : randomised group thresholds, post hoc.

    Notes
    -----
    A prediction batch that lacks some of the groups seen in fit is fine: the
    constraint binds among the groups it holds. A group of the batch that was not
    seen in fit is an error.

    Threads: fits with the same ``random_state`` give the same network whether they run
    one after another or at once in several threads (``GridSearchCV`` on the threading
    backend, a Dask worker with several threads). Dropout masks and batch order come
    from generators each fit owns (every ``torch.nn.Dropout`` is replaced by one that
    draws from such a generator while training, and put back after); the module is
    built from torch's global generator, seeded and held for the moment it takes. A
    module whose own forward pass draws from the global generator (functional dropout,
    ``nn.Dropout2d``, ``nn.RReLU``...) trains holding it: reproducible, but such fits run
    one at a time, and any other code drawing from that generator meanwhile (in a thread
    of yours) changes them. A fitted classifier's :meth:`predict`,
    :meth:`predict_proba` and :meth:`score` read the network and never change it (not
    even its train/eval mode), so they may be called from many threads at once. Never
    fit one instance in two threads at once; fit clones.

    Examples
    --------
    >>> import torch
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn_metaedit import MLP, FairnessLayerClassifier
    >>> from sklearn_metaedit.datasets import make_biased_classification
    >>> from sklearn_metaedit.metrics import selection_rate_gap
    >>> X, y, groups = make_biased_classification(600, bias=1.0, random_state=0)
    >>> net = NeuralNetClassifier(MLP, module__hidden_sizes=(16,), max_epochs=5,
    ...                           criterion=torch.nn.CrossEntropyLoss, verbose=0)
    >>> clf = FairnessLayerClassifier(net, epsilon=0.02, random_state=0)
    >>> clf = clf.fit(X, y, sensitive_features=groups)
    >>> selection_rate_gap(clf.predict(X, sensitive_features=groups),
    ...                    sensitive_features=groups) <= 0.02
    True
    """

    # sensitive features are requested by default under metadata routing
    __metadata_request__fit: ClassVar[dict] = {"sensitive_features": True}
    __metadata_request__predict: ClassVar[dict] = {"sensitive_features": True}
    __metadata_request__predict_proba: ClassVar[dict] = {"sensitive_features": True}
    __metadata_request__score: ClassVar[dict] = {"sensitive_features": True}

    _parameter_constraints: ClassVar[dict] = {
        "estimator": [HasMethods(["fit", "predict_proba"])],
        "constraint": [StrOptions(set(CONSTRAINTS))],
        "epsilon": [Interval(Real, 0, 1, closed="left")],
        "sensitive_feature": [Hashable, list, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimator,
        *,
        constraint: str = "demographic_parity",
        epsilon: float = 0.05,
        sensitive_feature=None,
        random_state: int | None = None,
    ):
        self.estimator = estimator
        self.constraint = constraint
        self.epsilon = epsilon
        self.sensitive_feature = sensitive_feature
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        tags.non_deterministic = self.random_state is None
        return tags

    # ------------------------------------------------------------------ validation

    def _check_estimator(self):
        from skorch import NeuralNetClassifier

        if not isinstance(self.estimator, NeuralNetClassifier):
            raise ValueError(
                "estimator must be an unfitted skorch NeuralNetClassifier, got "
                f"{type(self.estimator).__name__}; wrap a torch module as "
                "NeuralNetClassifier(module, criterion=torch.nn.CrossEntropyLoss)."
            )
        device = self.estimator.get_params(deep=False).get("device")
        if device is not None:
            check_device(device, name="the estimator's device")

    def _network_input(self, X):
        """X without the non-numeric sensitive columns, which a network cannot take."""
        if isinstance(X, pd.DataFrame) and self.sensitive_feature is not None:
            names = sensitive_columns(X, self.sensitive_feature)
            text = [c for c in names if not is_numeric_dtype(X[c])]
            return X.drop(columns=text)
        return X

    def _groups_of(self, X_original, sensitive_features, n_samples):
        if (
            sensitive_features is None
            and self.sensitive_feature is not None
            and input_kind(X_original) == "dataset"
        ):
            raise ValueError(
                f"sensitive_feature {self.sensitive_feature!r} cannot be read from X: X is a "
                "Dataset, which has no columns to name; pass the groups as "
                "sensitive_features (one per item)."
            )
        return resolve_sensitive_features(
            X_original, sensitive_features, self.sensitive_feature, n_samples=n_samples
        )

    def _inputs(self, X, *, reset, y=None):
        """X checked and converted for the network (and y for fit), whatever its kind.

        Tables go through scikit-learn's validation (``n_features_in_``, feature names);
        N-D arrays, tensors, dicts and Datasets through :func:`check_network_input`, and
        at prediction must match fit's kind and sample shapes.
        """
        kind = input_kind(X)
        fitted_kind = None if reset else getattr(self, "_input_kind", "table")
        if fitted_kind is not None and (kind == "table") != (fitted_kind == "table"):
            raise ValueError(kind_mismatch(kind, fitted_kind))
        if kind == "table":
            if reset:
                X, y = validate_data(self, self._network_input(X), y, dtype=np.float32, reset=True)
            else:
                X = validate_data(self, self._network_input(X), dtype=np.float32, reset=False)
            X = _writable(X)
            inputs = NetworkInput("table", X, len(X), (X.shape[1],))
        else:
            drop = sensitive_columns(X, self.sensitive_feature) if kind == "dict" else None
            inputs = check_network_input(X, kind=kind, drop_keys=drop, reserved_keys=RESERVED_KEYS)
            if not reset:
                check_same_shapes(getattr(self, "_sample_shapes", None), inputs, fitted_kind)
            elif y is None and kind == "dataset":
                y = dataset_targets(X)
            elif y is None:
                raise ValueError(
                    "FairnessLayerClassifier requires y to be passed, but the target y is None "
                    "(only a Dataset of (X_i, y_i) pairs carries its own)."
                )
        if reset:
            for name in ("n_features_in_", "feature_names_in_"):
                if kind != "table" and hasattr(self, name):
                    delattr(self, name)
            self._input_kind = kind
            self._sample_shapes = inputs.sample_shapes
            y = column_or_1d(y, warn=True)
            check_consistent_length(np.empty(inputs.n_samples), y)
        return inputs, y

    # ------------------------------------------------------------------ fit

    def _make_net(self, n_features, loader_seed, keyword_inputs=False):
        """The net to train, its module built from torch's global generator (seed it first)."""
        base_net = clone(self.estimator)
        params = base_net.get_params(deep=False)
        module = params["module"]
        module_kwargs = {
            k[len("module__") :]: v for k, v in params.items() if k.startswith("module__")
        }
        if (
            isinstance(module, type)
            and n_features is not None
            and "n_features" not in module_kwargs
            and "n_features" in inspect.signature(module).parameters
        ):
            module_kwargs["n_features"] = n_features
        base_module = module(**module_kwargs) if isinstance(module, type) else module
        criterion = params["criterion"]
        criterion_type = criterion if isinstance(criterion, type) else type(criterion)
        if issubclass(criterion_type, nn.CrossEntropyLoss):
            to_proba = _softmax
        elif issubclass(criterion_type, nn.NLLLoss):
            to_proba = _identity
        else:
            raise ValueError(
                f"estimator's criterion {criterion_type.__name__} is not supported: use "
                "torch.nn.CrossEntropyLoss (module outputs logits) or torch.nn.NLLLoss "
                "(module outputs probabilities)."
            )
        loss_options = criterion_options(criterion, params)
        layer = ParityProjectionModule(
            base_module,
            to_proba,
            self.constraint,
            float(self.epsilon),
            len(self.groups_),
            keyword_inputs=keyword_inputs,
        )
        kept = {k: v for k, v in params.items() if not k.startswith(("module__", "criterion__"))}
        kept.update(
            module=layer,
            criterion=ProjectedNLLLoss,
            predict_nonlinearity=None,
            iterator_train=StratifiedGroupLoader,
            # one generator for all epochs, so that each epoch deals new batches
            iterator_train__seed=np.random.default_rng(loader_seed),
            **{f"criterion__{k}": v for k, v in loss_options.items()},
        )
        # the training iterator is ours; a plain validation DataLoader gets a generator
        valid = {k: v for k, v in params.items() if k.startswith("iterator_valid")}
        kept.update(loader_generators(valid, loader_seed))
        batch_size = params.get("iterator_train__batch_size", params["batch_size"])
        return type(base_net)(**kept), batch_size

    @_fit_context(prefer_skip_nested_validation=False)
    @with_thread_limit
    def fit(self, X, y, *, sensitive_features=None):
        """Train the network with the projection layer on its output.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), ndarray or Tensor of shape \
                (n_samples, ...), dict of arrays, or Dataset
            What the skorch net takes: a table of numeric features (a DataFrame when
            ``sensitive_feature`` names a column), an N-D array or a tensor (images of
            shape ``(n_samples, channels, height, width)``...), a dict of arrays or
            tensors with one row per sample (given to the module's ``forward`` as
            keywords), or a torch ``Dataset`` of ``(X_i, y_i)`` pairs. Floating arrays
            and tensors are given to the network as float32; integer ones keep their
            dtype. Tables are validated as scikit-learn does; the other kinds must be
            numeric and finite.
        y : array-like of shape (n_samples,)
            Binary labels (any two values). May be None for a Dataset, whose items'
            labels are then read once.
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
            Group of each sample; several columns make intersectional groups. Optional
            when ``sensitive_feature`` names columns of ``X`` (or keys of a dict ``X``).

        Returns
        -------
        self : FairnessLayerClassifier
        """
        self._check_estimator()
        X_original = X
        if sensitive_features is None and self.sensitive_feature is not None:
            # before X turns numeric, so that a missing column is named as such
            self._groups_of(X, None, None)
        inputs, y = self._inputs(X, reset=True, y=y)
        target_type = type_of_target(y, input_name="y", raise_unknown=True)
        self.classes_ = np.unique(y)
        if target_type != "binary" or len(self.classes_) != 2:
            raise ValueError(
                "Only binary classification is supported: FairnessLayerClassifier needs a "
                f"binary target with two classes; got {len(self.classes_)} class(es) "
                f"({target_type})."
            )
        y_codes = np.searchsorted(self.classes_, y).astype(np.int64)
        labels = self._groups_of(X_original, sensitive_features, inputs.n_samples)
        self.groups_ = fit_groups(labels)
        if len(self.groups_) < 2:
            raise ValueError(
                f"sensitive features hold a single group {self.groups_.tolist()}; parity needs "
                "at least two groups."
            )
        group_codes = encode_groups(labels, self.groups_)
        n_groups = len(self.groups_)
        strata = (
            group_codes
            if self.constraint == "demographic_parity"
            else group_codes + n_groups * y_codes
        )
        extra = {"groups": group_codes, "strata": strata}
        if self.constraint != "demographic_parity":
            extra["labels"] = y_codes
        init_seed, dropout_seed, loader_seed = (
            int(seed) for seed in check_random_state(self.random_state).randint(2**31, size=3)
        )
        shapes = inputs.sample_shapes
        # a module that takes n_features gets the width of a table (or of 1-D samples)
        n_features = shapes[0] if isinstance(shapes, tuple) and len(shapes) == 1 else None
        with seeded_global_rng(init_seed):
            net, batch_size = self._make_net(n_features, loader_seed, inputs.keyword)
        self._check_strata(strata, group_codes, y_codes, inputs.n_samples, batch_size)
        self._train(net, inputs, extra, y_codes, dropout_seed)
        self.estimator_ = net
        self.thresholds_ = self._fit_thresholds(inputs, y_codes, group_codes)
        return self

    @staticmethod
    def _train(net, inputs, extra, y_codes, seed):
        """Fit ``net`` drawing from generators of its own, so that other threads' fits cannot
        change its dropout masks; it ends in eval mode, which inference never changes."""
        layer = net.module
        swapped = own_dropout(layer.base, seed)
        X_train, y_train = training_input(inputs, extra, y_codes)
        try:
            if draws_from_global_rng(layer.base, example_batch(inputs)):
                # the module's own forward draws from torch's global generator: seed that
                # and hold it for the whole training, which then runs alone
                with seeded_global_rng(seed, device=net.device):
                    net.fit(X_train, y_train)
            else:
                net.fit(X_train, y_train)
        finally:
            # the user's dropout layers come back, so the network out is plain torch
            restore_dropout(swapped)
        net.module_.eval()

    def _check_strata(self, strata, group_codes, y_codes, n_samples, batch_size):
        batch_size = n_samples if batch_size == -1 else int(batch_size)
        n_batches = max(1, int(np.ceil(n_samples / batch_size)))
        counts = np.bincount(strata, minlength=len(self.groups_) * 2)
        present = np.unique(strata)
        smallest = present[np.argmin(counts[present])]
        if self.constraint != "demographic_parity":
            missing = [
                g
                for g in range(len(self.groups_))
                if not np.any((group_codes == g) & (y_codes == 1))
            ]
            if missing:
                raise ValueError(
                    f"constraint={self.constraint!r} needs positive examples of every group; "
                    f"group(s) {self.groups_[missing].tolist()} have none."
                )
        if counts[smallest] < n_batches:
            group = self.groups_[smallest % len(self.groups_)]
            raise ValueError(
                f"group {group!r} has {counts[smallest]} training row(s), too few to appear in "
                f"every one of the {n_batches} training batches of batch_size={batch_size}; "
                "increase the estimator's batch_size (or iterator_train__batch_size), or "
                "merge small groups."
            )

    def _fit_thresholds(self, inputs, y_codes, group_codes):
        if self.constraint == "demographic_parity":
            return None
        # float64, so that the bound holds to float64 rounding rather than float32
        scores = self._base_scores(inputs).double()
        codes = torch.as_tensor(np.where(y_codes == 1, group_codes, -1))
        decisions = parity_decisions(
            scores, codes, float(self.epsilon), n_groups=len(self.groups_)
        )
        thresholds = np.empty(len(self.groups_))
        s = scores.detach().cpu().numpy()
        d = decisions.cpu().numpy()
        for g in range(len(self.groups_)):
            positives = (group_codes == g) & (y_codes == 1)
            selected = s[positives & (d == 1)]
            # the lowest selected positive score is the group's threshold
            thresholds[g] = selected.min() if len(selected) else np.inf
        return thresholds

    # ------------------------------------------------------------------ predict

    def _chunk_size(self):
        """Rows per forward pass at inference: many for a table; for other inputs (images,
        whose activations are large) the net's own validation batch size, as skorch's
        ``predict_proba`` uses."""
        if getattr(self, "_input_kind", "table") == "table":
            return 65536
        params = self.estimator_.get_params(deep=False)
        return params.get("iterator_valid__batch_size", params["batch_size"])

    def _base_scores(self, inputs):
        # Inference never switches the shared module's mode, so that threads predicting
        # at once cannot run each other's forward pass in training mode. fit leaves it in
        # eval mode; one put back in training mode (further training through estimator_)
        # is evaluated on a copy.
        module = self.estimator_.module_
        if any(m.training for m in module.modules()):
            module = copy.deepcopy(module).eval()
        device = self.estimator_.device
        # the projection then runs once over the scores of the whole batch
        with torch.no_grad():
            chunks = [
                module.base_proba(batch)
                for batch in inference_batches(inputs, self._chunk_size(), device)
            ]
        return torch.cat(chunks) if chunks else torch.empty(0, device=device)

    def _scores(self, X, sensitive_features):
        """Group codes and (for demographic parity, projected) positive-class scores of X."""
        # estimator_ is set once training succeeded: a fit that failed earlier leaves it unset
        check_is_fitted(self, "estimator_")
        X_original = X
        if sensitive_features is None and self.sensitive_feature is not None:
            self._groups_of(X, None, None)
        inputs, _ = self._inputs(X, reset=False)
        labels = self._groups_of(X_original, sensitive_features, inputs.n_samples)
        codes = torch.as_tensor(encode_groups(labels, self.groups_), device=self.estimator_.device)
        # float64, so that the bound holds to float64 rounding rather than float32
        scores = self._base_scores(inputs).double()
        if self.constraint == "demographic_parity":
            scores = project_parity(scores, codes, float(self.epsilon), n_groups=len(self.groups_))
        return scores, codes

    @with_thread_limit
    def predict_proba(self, X, *, sensitive_features=None):
        """Class probabilities of the batch ``X``, projected so its group means meet the bound.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), ndarray or Tensor of shape \
                (n_samples, ...), dict of arrays, or Dataset
            The same kind of input as in :meth:`fit`, with samples of the same shape. It
            goes through the network in chunks (of 65,536 rows for a table, of the net's
            validation batch size otherwise); the projection then runs once over the
            whole batch.
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
            Groups of the samples; optional when ``sensitive_feature`` is set.

        Returns
        -------
        proba : ndarray of shape (n_samples, 2)
            For demographic parity, the positive-class column's group means differ by at
            most ``epsilon`` (exactly, to floating point).
        """
        scores, _ = self._scores(X, sensitive_features)
        z = scores.detach().cpu().double().numpy()
        return np.column_stack([1.0 - z, z])

    @with_thread_limit
    def predict(self, X, *, sensitive_features=None):
        """0/1 decisions for the batch ``X`` whose selection-rate gap is at most ``epsilon``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), ndarray or Tensor of shape \
                (n_samples, ...), dict of arrays, or Dataset
            The same kind of input as in :meth:`fit`, with samples of the same shape. It
            goes through the network in chunks (of 65,536 rows for a table, of the net's
            validation batch size otherwise); the projection then runs once over the
            whole batch.
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
            Groups of the samples; optional when ``sensitive_feature`` is set.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``. For demographic parity, the selection rates of the
            groups present differ by at most ``epsilon`` (exactly).
        """
        scores, codes = self._scores(X, sensitive_features)
        if self.constraint == "demographic_parity":
            decisions = parity_decisions(
                scores, codes, float(self.epsilon), n_groups=len(self.groups_)
            )
        else:
            thresholds = torch.as_tensor(
                self.thresholds_, dtype=scores.dtype, device=scores.device
            )
            decisions = (scores >= thresholds[codes]).long()
        decisions = decisions.cpu().numpy().astype(np.int64)
        return self.classes_[decisions]

    def score(self, X, y, sample_weight=None, *, sensitive_features=None):
        """Accuracy of :meth:`predict` on ``X`` (the constraint applied to this batch).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), ndarray, Tensor, dict or Dataset
            As in :meth:`predict`.
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the accuracy (scikit-learn's ``score``); the
            decisions themselves do not depend on them. Under metadata routing it is
            passed only when requested (``set_score_request(sample_weight=True)``).
        sensitive_features : array-like, optional

        Returns
        -------
        accuracy : float
            The (weighted) fraction of correct decisions.
        """
        # accuracy_score checks y: a wrong length, or labels of another type than
        # classes_, is an error rather than a broadcast comparison or a silent 0
        y_pred = self.predict(X, sensitive_features=sensitive_features)
        return float(accuracy_score(y, y_pred, sample_weight=sample_weight))
