"""FairnessLayerClassifier: a skorch network with an exact parity projection on its output."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Hashable
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
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn
from torch.utils.data import DataLoader, Subset

from .._device import check_device
from .._groups import encode_groups, fit_groups, resolve_sensitive_features
from .._pickle_version import PickleVersionMixin
from .._threads import with_thread_limit
from ._constraints import CONSTRAINTS, constraint_codes
from ._decisions import parity_decisions
from ._loss import ProjectedNLLLoss, criterion_options
from ._projection import project_parity
from ._random import (
    draws_from_global_rng,
    loader_generators,
    own_dropout,
    restore_dropout,
    seeded_global_rng,
)

__all__ = ["FairnessLayerClassifier"]


class ParityProjectionModule(nn.Module):
    """A network followed by the parity projection of its positive-class probabilities.

    Parameters
    ----------
    base : nn.Module
        Maps ``(n_samples, n_features)`` inputs to ``(n_samples, 2)`` outputs.
    to_proba : callable
        Turns ``base``'s outputs into probabilities (softmax for logits, identity for
        probabilities).
    constraint : str
        "demographic_parity", "equal_opportunity" or "equalized_odds".
    epsilon : float
        The largest allowed gap between group means.
    n_groups : int
        Number of group codes.
    """

    def __init__(self, base, to_proba, constraint, epsilon, n_groups):
        super().__init__()
        self.base = base
        self.to_proba = to_proba
        self.constraint = constraint
        self.epsilon = epsilon
        self.n_groups = n_groups

    def base_proba(self, X: torch.Tensor) -> torch.Tensor:
        """Positive-class probabilities ``(n_samples,)`` of the unprojected network."""
        proba = self.to_proba(self.base(X))
        if proba.ndim != 2 or proba.shape[1] != 2:
            raise ValueError(
                "the network must output two columns (one per class) for a binary target; "
                f"it output shape {tuple(proba.shape)}."
            )
        return proba[:, 1]

    def forward(self, X, groups, labels=None, strata=None):
        """Projected class probabilities ``(n_samples, 2)`` whose group means meet the constraint.

        ``groups`` and ``labels`` are ``(n_samples,)`` integer codes; ``strata`` is read
        by the batch sampler only.
        """
        codes = constraint_codes(self.constraint, groups, labels, n_groups=self.n_groups)
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


def _dataset_column(dataset, key):
    """Column ``key`` of the dict-valued X of a skorch Dataset (or a Subset of one)."""
    if isinstance(dataset, Subset):
        return _dataset_column(dataset.dataset, key)[np.asarray(dataset.indices)]
    return np.asarray(dataset.X[key])


class StratifiedBatchSampler:
    """Batches in which every group appears, in proportion to its size.

    Each epoch, the rows of each stratum are shuffled and dealt evenly over
    ``ceil(n / batch_size)`` batches, so a batch's group means estimate the population's.

    Parameters
    ----------
    strata : ndarray of int, shape (n_samples,)
    batch_size : int
    shuffle : bool
    seed : int, numpy.random.Generator or None
        With a Generator, the sampler draws from it (and advances it).
    """

    def __init__(self, strata, batch_size, shuffle=True, seed=None):
        self.strata = np.asarray(strata)
        self.n_batches = max(1, int(np.ceil(len(self.strata) / batch_size)))
        self.shuffle = shuffle
        self.rng = np.random.default_rng(seed)
        self.members = [np.flatnonzero(self.strata == s) for s in np.unique(self.strata)]

    def __len__(self):
        return self.n_batches

    def __iter__(self):
        batches = [[] for _ in range(self.n_batches)]
        for rows in self.members:
            rows = self.rng.permutation(rows) if self.shuffle else rows
            # a random rotation spreads the remainders of np.array_split over the batches
            start = self.rng.integers(self.n_batches) if self.shuffle else 0
            for i, part in enumerate(np.array_split(rows, self.n_batches)):
                batches[(i + start) % self.n_batches].extend(part.tolist())
        order = self.rng.permutation(self.n_batches) if self.shuffle else range(self.n_batches)
        for b in order:
            yield batches[b]


class StratifiedGroupLoader(DataLoader):
    """A DataLoader whose every batch holds every group (skorch's ``iterator_train``).

    The dataset's X must be a dict with a ``"strata"`` entry (integer codes). Batches
    are drawn from ``seed``, never from torch's global generator; skorch makes a loader
    per epoch, so pass a ``numpy.random.Generator`` for batches that change from epoch
    to epoch.
    """

    def __init__(self, dataset, batch_size=128, shuffle=True, seed=None, **kwargs):
        strata = _dataset_column(dataset, "strata")
        sampler = StratifiedBatchSampler(strata, batch_size, shuffle=shuffle, seed=seed)
        if kwargs.get("generator") is None:
            # a DataLoader draws the base seed of its workers from this generator, or
            # else from the global one
            kwargs["generator"] = torch.Generator()
        super().__init__(dataset, batch_sampler=sampler, **kwargs)


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
            names = (
                self.sensitive_feature
                if isinstance(self.sensitive_feature, list | tuple)
                else [self.sensitive_feature]
            )
            text = [c for c in names if c in X.columns and not is_numeric_dtype(X[c])]
            return X.drop(columns=text)
        return X

    def _groups_of(self, X_original, sensitive_features, n_samples):
        return resolve_sensitive_features(
            X_original, sensitive_features, self.sensitive_feature, n_samples=n_samples
        )

    # ------------------------------------------------------------------ fit

    def _make_net(self, n_features, loader_seed):
        """The net to train, its module built from torch's global generator (seed it first)."""
        base_net = clone(self.estimator)
        params = base_net.get_params(deep=False)
        module = params["module"]
        module_kwargs = {
            k[len("module__") :]: v for k, v in params.items() if k.startswith("module__")
        }
        if (
            isinstance(module, type)
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
            base_module, to_proba, self.constraint, float(self.epsilon), len(self.groups_)
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
        X : array-like of shape (n_samples, n_features)
            Numeric features (a DataFrame when ``sensitive_feature`` names a column).
        y : array-like of shape (n_samples,)
            Binary labels (any two values).
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
            Group of each row; several columns make intersectional groups. Optional
            when ``sensitive_feature`` names columns of ``X``.

        Returns
        -------
        self : FairnessLayerClassifier
        """
        self._check_estimator()
        X_original = X
        if sensitive_features is None and self.sensitive_feature is not None:
            # before X turns numeric, so that a missing column is named as such
            resolve_sensitive_features(X, None, self.sensitive_feature)
        X, y = validate_data(self, self._network_input(X), y, dtype=np.float32, reset=True)
        target_type = type_of_target(y, input_name="y", raise_unknown=True)
        self.classes_ = np.unique(y)
        if target_type != "binary" or len(self.classes_) != 2:
            raise ValueError(
                "Only binary classification is supported: FairnessLayerClassifier needs a "
                f"binary target with two classes; got {len(self.classes_)} class(es) "
                f"({target_type})."
            )
        y_codes = np.searchsorted(self.classes_, y).astype(np.int64)
        labels = self._groups_of(X_original, sensitive_features, len(X))
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
        X = _writable(X)
        inputs = {"X": X, "groups": group_codes, "strata": strata}
        if self.constraint != "demographic_parity":
            inputs["labels"] = y_codes
        init_seed, dropout_seed, loader_seed = (
            int(seed) for seed in check_random_state(self.random_state).randint(2**31, size=3)
        )
        with seeded_global_rng(init_seed):
            net, batch_size = self._make_net(X.shape[1], loader_seed)
        self._check_strata(strata, group_codes, y_codes, len(X), batch_size)
        self._train(net, inputs, y_codes, X, dropout_seed)
        self.estimator_ = net
        self.thresholds_ = self._fit_thresholds(X, y_codes, group_codes)
        return self

    @staticmethod
    def _train(net, inputs, y_codes, X, seed):
        """Fit ``net`` drawing from generators of its own, so that other threads' fits cannot
        change its dropout masks; it ends in eval mode, which inference never changes."""
        layer = net.module
        swapped = own_dropout(layer.base, seed)
        try:
            if draws_from_global_rng(layer.base, torch.as_tensor(X[:2])):
                # the module's own forward draws from torch's global generator: seed that
                # and hold it for the whole training, which then runs alone
                with seeded_global_rng(seed, device=net.device):
                    net.fit(inputs, y_codes)
            else:
                net.fit(inputs, y_codes)
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

    def _fit_thresholds(self, X, y_codes, group_codes):
        if self.constraint == "demographic_parity":
            return None
        # float64, so that the bound holds to float64 rounding rather than float32
        scores = self._base_scores(X).double()
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

    def _base_scores(self, X):
        # Inference never switches the shared module's mode, so that threads predicting
        # at once cannot run each other's forward pass in training mode. fit leaves it in
        # eval mode; one put back in training mode (further training through estimator_)
        # is evaluated on a copy.
        module = self.estimator_.module_
        if any(m.training for m in module.modules()):
            module = copy.deepcopy(module).eval()
        device = self.estimator_.device
        with torch.no_grad():
            chunks = [
                module.base_proba(torch.as_tensor(X[i : i + 65536], device=device))
                for i in range(0, len(X), 65536)
            ]
        return torch.cat(chunks) if chunks else torch.empty(0, device=device)

    def _scores(self, X, sensitive_features):
        """Group codes and (for demographic parity, projected) positive-class scores of X."""
        # estimator_ is set once training succeeded: a fit that failed earlier leaves it unset
        check_is_fitted(self, "estimator_")
        X_original = X
        if sensitive_features is None and self.sensitive_feature is not None:
            resolve_sensitive_features(X, None, self.sensitive_feature)
        X = _writable(validate_data(self, self._network_input(X), dtype=np.float32, reset=False))
        labels = self._groups_of(X_original, sensitive_features, len(X))
        codes = torch.as_tensor(encode_groups(labels, self.groups_), device=self.estimator_.device)
        # float64, so that the bound holds to float64 rounding rather than float32
        scores = self._base_scores(X).double()
        if self.constraint == "demographic_parity":
            scores = project_parity(scores, codes, float(self.epsilon), n_groups=len(self.groups_))
        return scores, codes

    @with_thread_limit
    def predict_proba(self, X, *, sensitive_features=None):
        """Class probabilities of the batch ``X``, projected so its group means meet the bound.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
            Groups of the rows; optional when ``sensitive_feature`` is set.

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
        X : array-like of shape (n_samples, n_features)
        sensitive_features : array-like of shape (n_samples,) or (n_samples, n_columns)
            Groups of the rows; optional when ``sensitive_feature`` is set.

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

    def score(self, X, y, *, sensitive_features=None):
        """Accuracy of :meth:`predict` on ``X`` (the constraint applied to this batch).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sensitive_features : array-like, optional

        Returns
        -------
        accuracy : float
        """
        # accuracy_score checks y: a wrong length, or labels of another type than
        # classes_, is an error rather than a broadcast comparison or a silent 0
        return float(accuracy_score(y, self.predict(X, sensitive_features=sensitive_features)))
