"""Populations of trained networks, trained together where they share an architecture.

Networks of one architecture (module, epochs, batch size, optimizer) train as one
vectorised model: their parameters are stacked (``torch.func.stack_module_state``) and
one ``torch.vmap`` of ``torch.func.functional_call`` runs all of them on their own
mini-batches at once; the optimizer update is written over the stacked tensors, with a
learning rate per network. The groups, cut into tasks of a bounded number of networks,
are spread over joblib workers (any backend: loky, threads, ``dask.distributed``). Each
network's result depends only on its own seed, learning rate and the data, never on which
task or worker trained it, so a task lost with its worker is simply run again, and a
network written to a checkpoint directory is never trained twice. Each trained network
comes back as a fitted skorch ``NeuralNetClassifier``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import os
import threading
import time
import warnings
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.model_selection import ParameterSampler
from sklearn.utils import check_random_state
from torch import nn
from torch.func import functional_call, stack_module_state
from tqdm.auto import tqdm

from .._device import check_device
from .._threads import with_thread_limit
from ._graph import as_sequential

__all__ = ["array_digest", "make_population", "train_group"]


def _optimizer_spec(net) -> tuple[str, dict]:
    """Name and keyword arguments of the net's optimizer, for the stacked update."""
    params = net.get_params()
    optimizer = params["optimizer"]
    kwargs = {
        key[len("optimizer__") :]: value
        for key, value in params.items()
        if key.startswith("optimizer__") and key.count("__") == 1
    }
    if optimizer in (torch.optim.Adam, torch.optim.AdamW):
        name = "adamw" if optimizer is torch.optim.AdamW else "adam"
        defaults = {"betas": (0.9, 0.999), "eps": 1e-8}
        defaults["weight_decay"] = 1e-2 if name == "adamw" else 0.0
    elif optimizer is torch.optim.SGD:
        name = "sgd"
        defaults = {"momentum": 0.0, "weight_decay": 0.0, "nesterov": False, "dampening": 0.0}
    else:
        raise ValueError(
            f"make_population trains with SGD, Adam or AdamW; the estimator's optimizer is "
            f"{getattr(optimizer, '__name__', optimizer)!r}."
        )
    unknown = set(kwargs) - set(defaults) - {"lr"}
    if unknown:
        raise ValueError(f"optimizer arguments {sorted(unknown)} are not supported for {name}.")
    kwargs.pop("lr", None)
    return name, {**defaults, **kwargs}


class _StackedOptimizer:
    """SGD / Adam / AdamW over stacked parameters, with one learning rate per network.

    Element-wise, so that each network's update equals what ``torch.optim`` would do to
    that network alone.
    """

    def __init__(self, params: dict[str, torch.Tensor], name: str, lrs: torch.Tensor, **kw):
        self.params, self.name, self.kw, self.step_count = params, name, kw, 0
        self.lrs = lrs
        self.state = {k: {} for k in params}

    def _lr(self, p: torch.Tensor) -> torch.Tensor:
        return self.lrs.reshape(-1, *([1] * (p.dim() - 1))).to(p.dtype)

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        t, kw = self.step_count, self.kw
        for key, p in self.params.items():
            grad, state, lr = p.grad, self.state[key], self._lr(p)
            if grad is None:
                continue
            if self.name == "sgd":
                if kw["weight_decay"]:
                    grad = grad + kw["weight_decay"] * p
                if kw["momentum"]:
                    if "buf" not in state:
                        state["buf"] = grad.clone()
                    else:
                        state["buf"].mul_(kw["momentum"]).add_(grad, alpha=1 - kw["dampening"])
                    grad = grad + kw["momentum"] * state["buf"] if kw["nesterov"] else state["buf"]
                p.sub_(lr * grad)
                continue
            beta1, beta2 = kw["betas"]
            if self.name == "adamw":
                p.mul_(1 - lr * kw["weight_decay"])
            elif kw["weight_decay"]:
                grad = grad + kw["weight_decay"] * p
            if not state:
                state["m"], state["v"] = torch.zeros_like(p), torch.zeros_like(p)
            state["m"].lerp_(grad, 1 - beta1)
            state["v"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            bias1, bias2 = 1 - beta1**t, 1 - beta2**t
            denom = (state["v"].sqrt() / np.sqrt(bias2)).add_(kw["eps"])
            p.sub_(lr / bias1 * state["m"] / denom)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None


def _batch_order(n_rows: int, seed: int, epoch: int) -> torch.Tensor:
    """The row order of one network's epoch: a permutation seeded by (seed, epoch)."""
    generator = torch.Generator().manual_seed(int(seed) * 100_003 + epoch)
    return torch.randperm(n_rows, generator=generator)


# torch's default generator is one per process: threads that seed it and draw from it
# at once (joblib's threading backend) would interleave their draws.
_GLOBAL_RNG = threading.RLock()


def _build_module(module_cls, module_kwargs: dict, seed: int) -> nn.Module:
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return module_cls(**module_kwargs)


def _dropout_seed(seeds: list[int]) -> int:
    return int.from_bytes(hashlib.sha256(repr(list(map(int, seeds))).encode()).digest()[:7], "big")


def train_group(
    module_cls: type[nn.Module],
    module_kwargs: dict,
    seeds: list[int],
    lrs: list[float],
    X: np.ndarray,
    y: np.ndarray,
    *,
    max_epochs: int,
    batch_size: int,
    optimizer: tuple[str, dict],
) -> tuple[list[dict], np.ndarray]:
    """Train networks of one architecture together, vectorised over the networks.

    Parameters
    ----------
    module_cls, module_kwargs
        Each network is ``module_cls(**module_kwargs)`` initialised under its seed.
    seeds : list of int
        One per network: initialisation and mini-batch order.
    lrs : list of float
        One learning rate per network.
    X : ndarray of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,), int64 class codes
    max_epochs, batch_size : int
        ``batch_size=-1`` trains on all rows at once.
    optimizer : (str, dict)
        ``("sgd" | "adam" | "adamw", keyword arguments)``.

    Returns
    -------
    states : list of dict
        One ``state_dict`` per network (CPU tensors).
    losses : ndarray of shape (n_networks, max_epochs)
        Mean training loss of each epoch.

    Notes
    -----
    Without dropout, a network's result depends only on its own seed and learning rate,
    not on the other networks trained beside it. Dropout masks are drawn for the whole
    stack from a generator seeded by all of ``seeds``, so with dropout the result also
    depends on which networks train together.
    """
    modules = [_build_module(module_cls, module_kwargs, seed) for seed in seeds]
    random = any(isinstance(m, nn.Dropout) and m.p > 0 for m in modules[0].modules())
    if not random:
        return _train_stacked(modules, seeds, lrs, X, y, max_epochs, batch_size, optimizer)
    # dropout draws its masks from torch's default generator: seed it from the task's
    # networks, and hold it for the whole task so that no other thread draws meanwhile
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        torch.manual_seed(_dropout_seed(seeds))
        return _train_stacked(modules, seeds, lrs, X, y, max_epochs, batch_size, optimizer)


def _train_stacked(modules, seeds, lrs, X, y, max_epochs, batch_size, optimizer):
    for module in modules:
        module.train()
    params, buffers = stack_module_state(modules)
    base = copy.deepcopy(modules[0]).to("meta")

    def logits_of(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    batched = torch.vmap(logits_of, in_dims=(0, 0, 0), randomness="different")
    name, kwargs = optimizer
    opt = _StackedOptimizer(params, name, torch.tensor(lrs, dtype=torch.float32), **kwargs)
    # pandas hands out read-only arrays, which torch refuses to wrap without a warning
    X = X if X.flags.writeable else X.copy()
    X_t, y_t = torch.as_tensor(X), torch.as_tensor(y, dtype=torch.long)
    n_rows, n_nets = len(X_t), len(seeds)
    step = n_rows if batch_size in (-1, None) else int(batch_size)
    losses = np.zeros((n_nets, max_epochs))
    for epoch in range(max_epochs):
        orders = torch.stack([_batch_order(n_rows, seed, epoch) for seed in seeds])
        sums = torch.zeros(n_nets)
        for start in range(0, n_rows, step):
            index = orders[:, start : start + step]
            # index_select of the flat rows: the same rows as X_t[index], several times faster
            flat = index.reshape(-1)
            logits = batched(params, buffers, X_t.index_select(0, flat).reshape(*index.shape, -1))
            targets = y_t.index_select(0, flat).reshape(index.shape)
            per_net = (
                nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
                )
                .reshape(n_nets, -1)
                .mean(dim=1)
            )
            opt.zero_grad()
            # each network's loss depends only on its own slice of the stacked parameters,
            # so the gradient of the sum is every network's own gradient
            per_net.sum().backward()
            opt.step()
            sums += per_net.detach() * index.shape[1]
        losses[:, epoch] = (sums / n_rows).numpy()
    states = []
    for i in range(n_nets):
        states.append(
            {
                **{k: v[i].detach().clone() for k, v in params.items()},
                **{k: v[i].detach().clone() for k, v in buffers.items()},
            }
        )
    return states, losses


def _module_kwargs(net, n_features: int, n_classes: int) -> dict:
    params = net.get_params()
    kwargs = {
        key[len("module__") :]: value
        for key, value in params.items()
        if key.startswith("module__") and key.count("__") == 1
    }
    module = params["module"]
    if not isinstance(module, type):
        raise ValueError(
            "make_population needs the estimator's module as a class (e.g. "
            "module=sklearn_metaedit.MLP), not an instance, to build networks of many widths."
        )
    signature = inspect.signature(module)
    if "n_features" in signature.parameters and "n_features" not in kwargs:
        kwargs["n_features"] = n_features
    if "n_classes" in signature.parameters:
        if "n_classes" not in kwargs:
            kwargs["n_classes"] = n_classes
        elif kwargs["n_classes"] < n_classes:
            raise ValueError(
                f"module__n_classes={kwargs['n_classes']} but y holds {n_classes} classes; "
                "leave it unset (make_population sets it from y) or set it to at least "
                f"{n_classes}."
            )
    return kwargs


def _group_key(module_cls, kwargs, max_epochs, batch_size, optimizer) -> str:
    return repr(
        (
            module_cls,
            sorted((k, repr(v)) for k, v in kwargs.items()),
            max_epochs,
            batch_size,
            optimizer[0],
            sorted((k, repr(v)) for k, v in optimizer[1].items()),
        )
    )


def array_digest(*arrays: np.ndarray) -> str:
    """A fingerprint of arrays (their dtypes, shapes and values, in order): of the training
    data, so that a checkpoint never resumes other data, or of a network's weights."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _network_key(spec: dict, seed: int, lr: float, data_digest: str, classes) -> str:
    """What determines one trained network: architecture, training, seed, rate and data."""
    module_cls = spec["module_cls"]
    text = repr(
        (
            f"{module_cls.__module__}.{module_cls.__qualname__}",
            sorted((k, repr(v)) for k, v in spec["module_kwargs"].items()),
            spec["max_epochs"],
            spec["batch_size"],
            spec["optimizer"][0],
            sorted((k, repr(v)) for k, v in spec["optimizer"][1].items()),
            int(seed),
            repr(float(lr)),
            data_digest,
            [repr(c) for c in np.asarray(classes).tolist()],
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _checkpoint_path(directory: Path, index: int) -> Path:
    return directory / f"network-{index:06d}.pt"


def _read_checkpoint(path: Path, key: str, index: int) -> tuple[dict, np.ndarray] | None:
    """The saved state and losses of network ``index``, or None when it is not saved yet."""
    if not path.exists():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved.get("key") != key:
        raise ValueError(
            f"checkpoint_dir holds {path.name}, a network {index} of another population (a "
            "different estimator, param_distributions, random_state or training data); pass "
            "an empty directory, or the directory of this very run to resume it."
        )
    return saved["state_dict"], saved["train_loss"].numpy()


def _write_checkpoint(path: Path, key: str, state: dict, losses: np.ndarray) -> None:
    """Write one network, all or nothing: a partial file never passes for a finished one."""
    if path.exists():
        # every network is written once; a second write would mean it was trained twice
        raise RuntimeError(f"{path.name} is already written; a network was trained twice.")
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    torch.save({"key": key, "state_dict": state, "train_loss": torch.as_tensor(losses)}, partial)
    os.replace(partial, path)


def _train_task(
    task: dict, X: np.ndarray, y: np.ndarray
) -> tuple[list[int], list[dict], np.ndarray, float]:
    """One unit of parallel work: some networks of one architecture, trained together."""
    started = time.perf_counter()
    states, losses = train_group(
        task["module_cls"],
        task["module_kwargs"],
        task["seeds"],
        task["lrs"],
        X,
        y,
        max_epochs=task["max_epochs"],
        batch_size=task["batch_size"],
        optimizer=task["optimizer"],
    )
    return task["members"], states, losses, time.perf_counter() - started


@with_thread_limit
def make_population(
    estimator: Any,
    X: Any,
    y: Any,
    *,
    n_networks: int = 16,
    param_distributions: dict | list[dict] | None = None,
    random_state: Any = None,
    n_jobs: int | None = None,
    networks_per_task: int | None = 32,
    checkpoint_dir: str | os.PathLike | None = None,
    verbose: int = 0,
) -> list:
    """Train a population of networks, varied in seed, width, depth and hyper-parameters.

    Networks that share an architecture and training settings train together, vectorised,
    in tasks of at most ``networks_per_task`` networks; joblib spreads the tasks over its
    workers, so any joblib backend scales it out (``joblib.parallel_config(backend=
    "dask")`` spreads it over a ``dask.distributed`` cluster). A network's weights depend
    only on its draw, its seed and the data: the same ``random_state`` gives the same
    population for every ``n_jobs``, backend and ``networks_per_task`` (with dropout,
    whose masks are drawn per task, for every ``n_jobs`` and backend), also when several
    threads of yours call it at once; torch's global random state is left as it was.

    Parameters
    ----------
    estimator : skorch NeuralNetClassifier
        The template: its ``module`` is a class (e.g. ``sklearn_metaedit.MLP``), its
        ``criterion`` ``torch.nn.CrossEntropyLoss``, its optimizer SGD, Adam or AdamW.
        ``module__n_features`` is set from ``X``, and ``module__n_classes`` from the
        number of classes in ``y``, when the module takes them and they are not set.
        The population trains on all rows of ``X`` (``train_split`` is not used).
    X : array-like of shape (n_samples, n_features)
        Numeric inputs.
    y : array-like of shape (n_samples,)
        Labels.
    n_networks : int, default=16
        Population size.
    param_distributions : dict or list of dicts, default=None
        Distributions of the estimator's parameters, as for ``RandomizedSearchCV``
        (e.g. ``{"module__hidden_sizes": [(16,), (32, 32)], "lr": loguniform(1e-3, 1e-2)}``);
        one draw per network. None: every network has the estimator's parameters and
        differs only in its seed.
    random_state : int, RandomState or None, default=None
        Seeds the draws and each network's initialisation and batch order.
    n_jobs : int, default=None
        joblib workers over the tasks (``-1``: all workers of the active backend, e.g.
        every thread of a dask cluster).
    networks_per_task : int or None, default=32
        The most networks one task trains together. Smaller tasks spread better over
        many workers, and a lost worker costs less; larger ones vectorise more. None:
        one task per architecture group.
    checkpoint_dir : str or path-like, default=None
        A directory to write each network to as soon as its task finishes (one file per
        network, ``network-000000.pt``, loadable with ``torch.load(weights_only=True)``).
        Run again with the same arguments and directory to resume an interrupted run:
        networks already written are loaded, not retrained. A file of another run
        (other estimator, draws, seed or data) is an error.
    verbose : int, default=0
        1: a progress bar over the networks (on stderr); 2: also a line per finished
        task.

    Returns
    -------
    population : list of skorch NeuralNetClassifier
        Fitted nets, in draw order; ``predict`` works and equals the trained parameters.
        As with any skorch classifier, ``predict`` returns class indices and
        ``classes_`` (the sorted labels of ``y``) maps them to labels. Each net's
        ``history`` holds its per-epoch ``train_loss``.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from sklearn.datasets import make_classification
    >>> from skorch import NeuralNetClassifier
    >>> from sklearn_metaedit import MLP
    >>> X, y = make_classification(200, 5, random_state=0)
    >>> net = NeuralNetClassifier(MLP, module__n_features=5, criterion=torch.nn.CrossEntropyLoss,
    ...                           optimizer=torch.optim.Adam, max_epochs=2, verbose=0)
    >>> population = make_population(net, X.astype(np.float32), y, n_networks=4,
    ...     param_distributions={"module__hidden_sizes": [(8,), (16, 8)]}, random_state=0)
    >>> len(population), population[0].predict(X[:3].astype(np.float32)).shape
    (4, (3,))
    """
    if not hasattr(estimator, "get_params") or not hasattr(estimator, "initialize"):
        raise TypeError(
            "estimator must be a skorch NeuralNetClassifier (e.g. NeuralNetClassifier(MLP, "
            f"criterion=torch.nn.CrossEntropyLoss)), got {type(estimator).__name__}."
        )
    device = estimator.get_params(deep=False).get("device")
    if device is not None:
        check_device(device, name="the estimator's device")
    if isinstance(n_networks, bool) or not isinstance(n_networks, Integral) or n_networks < 1:
        raise ValueError(f"n_networks must be a positive integer, got {n_networks!r}.")
    if networks_per_task is not None and (
        isinstance(networks_per_task, bool)
        or not isinstance(networks_per_task, Integral)
        or networks_per_task < 1
    ):
        raise ValueError(
            f"networks_per_task must be a positive integer or None, got {networks_per_task!r}."
        )
    try:
        X_np = np.asarray(X, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"X must be numeric (the networks' inputs); preprocess it first ({exc})."
        ) from exc
    if X_np.ndim != 2 or 0 in X_np.shape:
        raise ValueError(f"X must be a non-empty 2-D array, got shape {X_np.shape}.")
    if not np.isfinite(X_np).all():
        raise ValueError("X holds NaN or infinite values; the networks need finite inputs.")
    y_np = np.asarray(y)
    if y_np.ndim != 1 or len(y_np) != len(X_np):
        raise ValueError(
            f"y must be 1-D with one label per row of X ({len(X_np)} rows), got shape "
            f"{y_np.shape}."
        )
    classes, codes = np.unique(y_np, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(
            f"y holds a single class {classes.tolist()}; the networks need at least two."
        )
    directory = None
    if checkpoint_dir is not None:
        directory = Path(checkpoint_dir)
        directory.mkdir(parents=True, exist_ok=True)
    rng = check_random_state(random_state)
    if param_distributions is None:
        draws = [{} for _ in range(int(n_networks))]
    else:
        # a grid of lists yields each point at most once per pass; pass again until every
        # network has its draw, so a small grid covers the population evenly
        draws = []
        while len(draws) < int(n_networks):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "The total space of parameters", UserWarning)
                sampler = ParameterSampler(
                    param_distributions, n_iter=int(n_networks) - len(draws), random_state=rng
                )
                draws.extend(sampler)
    seeds = rng.randint(0, 2**31 - 1, size=len(draws)).tolist()
    nets, groups = [], {}
    for index, draw in enumerate(draws):
        net = clone(estimator).set_params(**draw)
        criterion = net.get_params()["criterion"]
        if criterion is not nn.CrossEntropyLoss:
            raise ValueError(
                "make_population trains networks that output logits: set criterion="
                f"torch.nn.CrossEntropyLoss (got {getattr(criterion, '__name__', criterion)!r})."
            )
        kwargs = _module_kwargs(net, X_np.shape[1], len(classes))
        module_cls = net.get_params()["module"]
        optimizer = _optimizer_spec(net)
        max_epochs = int(net.get_params()["max_epochs"])
        batch_size = int(net.get_params()["batch_size"])
        as_sequential(_build_module(module_cls, kwargs, 0), name=f"network {index}")
        key = _group_key(module_cls, kwargs, max_epochs, batch_size, optimizer)
        spec = groups.setdefault(
            key,
            {
                "module_cls": module_cls,
                "module_kwargs": kwargs,
                "max_epochs": max_epochs,
                "batch_size": batch_size,
                "optimizer": optimizer,
                "members": [],
            },
        )
        spec["members"].append(index)
        nets.append(net)
    specs = list(groups.values())
    spec_of = {member: spec for spec in specs for member in spec["members"]}
    lrs = [float(net.get_params()["lr"]) for net in nets]

    trained: dict[int, tuple[dict, np.ndarray]] = {}
    keys: dict[int, str] = {}
    if directory is not None:
        digest = array_digest(X_np, codes)
        for index in range(len(nets)):
            keys[index] = _network_key(spec_of[index], seeds[index], lrs[index], digest, classes)
            saved = _read_checkpoint(_checkpoint_path(directory, index), keys[index], index)
            if saved is not None:
                trained[index] = saved

    tasks = []
    for spec in specs:
        todo = [i for i in spec["members"] if i not in trained]
        size = len(todo) if networks_per_task is None else int(networks_per_task)
        for start in range(0, len(todo), max(size, 1)):
            members = todo[start : start + size]
            tasks.append(
                {
                    **{k: v for k, v in spec.items() if k != "members"},
                    "members": members,
                    "seeds": [seeds[i] for i in members],
                    "lrs": [lrs[i] for i in members],
                }
            )
    if verbose >= 2:
        resumed = f", {len(trained)} loaded from {directory}" if trained else ""
        print(
            f"[make_population] {len(draws)} networks in {len(specs)} architecture group(s): "
            f"{len(tasks)} task(s) to train{resumed}",
            flush=True,
        )

    progress = tqdm(
        total=len(nets),
        initial=len(trained),
        desc="make_population",
        unit="net",
        disable=verbose < 1,
    )
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_train_task)(task, X_np, codes) for task in tasks
    )
    for members, states, losses, seconds in results:
        for member, state, loss in zip(members, states, losses, strict=True):
            if member in trained:
                raise RuntimeError(f"network {member} came back twice from the workers.")
            trained[member] = (state, loss)
            if directory is not None:
                _write_checkpoint(_checkpoint_path(directory, member), keys[member], state, loss)
        progress.update(len(members))
        if verbose >= 2:
            progress.write(
                f"[make_population] {len(trained)}/{len(nets)} networks: "
                f"{len(members)} {spec_of[members[0]]['module_kwargs']} trained in "
                f"{seconds:.1f}s"
            )
    progress.close()
    for index, net in enumerate(nets):
        state, loss = trained[index]
        spec = spec_of[index]
        net.set_params(**{f"module__{k}": v for k, v in spec["module_kwargs"].items()})
        # initialize draws a module from torch's global generator (its weights are then
        # replaced): under the lock and on a forked state, so that it neither changes the
        # dropout masks of a population training in another thread nor the caller's state
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
            net.initialize()
        net.module_.load_state_dict(state)
        net.classes_inferred_ = classes
        for epoch, value in enumerate(loss, start=1):
            net.history.new_epoch()
            net.history.record("epoch", epoch)
            net.history.record("train_loss", float(value))
    return nets
