"""Randomness a fit owns, so that fits in parallel threads equal a serial fit.

torch's global generator is one per process: a fit that seeds it and draws from it
while another thread does the same gets the other's draws (dropout masks, shuffles,
initial weights), so that ``GridSearchCV`` on the threading backend, or a Dask worker
with several threads, would not reproduce. Here a fit draws from generators of its own
wherever it can:

* dropout masks come from :class:`GeneratorDropout`, which replaces each ``nn.Dropout``
  of the network while it trains and is swapped back after;
* data loaders carry their own generator (:func:`loader_generators`).

What cannot take a generator draws from the global one under :data:`GLOBAL_RNG_LOCK`
(:func:`seeded_global_rng`): a module's initialisation, which is short, and the whole
training of a module whose forward pass itself draws from the global generator
(functional dropout, ``nn.Dropout2d``, ``nn.RReLU``...; :func:`draws_from_global_rng`
finds out). Such trainings run one at a time, but reproduce.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.data import DataLoader

__all__ = [
    "GLOBAL_RNG_LOCK",
    "GeneratorDropout",
    "draws_from_global_rng",
    "loader_generators",
    "own_dropout",
    "restore_dropout",
    "seeded_global_rng",
]

#: Held by every section of this package that seeds and draws from torch's global
#: generator. Re-entrant: a fit under the lock may fit an estimator that takes it too.
GLOBAL_RNG_LOCK = threading.RLock()


@contextmanager
def seeded_global_rng(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Hold :data:`GLOBAL_RNG_LOCK` with torch's global generator seeded by ``seed``.

    The generator's state (CPU, and the CUDA device of ``device`` if it is one) is
    restored on exit, so the caller's random state is left as it was.

    Parameters
    ----------
    seed : int
    device : torch.device or str, optional
        Also seed the global generator of this CUDA device.
    """
    device = None if device is None else torch.device(device)
    cuda = [device] if device is not None and device.type == "cuda" else []
    with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=cuda):
        # default_generator only: torch.manual_seed would also reseed every CUDA device
        torch.default_generator.manual_seed(int(seed))
        for d in cuda:
            with torch.cuda.device(d):
                torch.cuda.manual_seed(int(seed))
        yield


class GeneratorDropout(nn.Dropout):
    """``nn.Dropout`` whose masks come from a generator of its own, seeded by ``seed``.

    One generator per device, made on first use. In training mode an element is kept
    with probability ``1 - p`` and scaled by ``1 / (1 - p)``, as ``nn.Dropout`` does; in
    eval mode the input passes through.

    Parameters
    ----------
    p : float
        Probability of zeroing an element.
    seed : int
    """

    def __init__(self, p: float, seed: int):
        super().__init__(p)
        self.seed = int(seed)
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        generator = self._generators.get(device)
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(self.seed)
            self._generators[device] = generator
        return generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` of any shape, with elements dropped and the rest rescaled."""
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return x * 0
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self._generator(x.device))
        return x * keep / (1.0 - self.p)


def own_dropout(module: nn.Module, seed: int) -> list[tuple[nn.Module, str, nn.Module]]:
    """Replace every ``nn.Dropout`` in ``module`` by a :class:`GeneratorDropout`, in place.

    Each layer gets its own seed (``seed + its position``). Subclasses of ``nn.Dropout``
    and the other dropout layers are left alone: their forward may differ.

    Returns
    -------
    swapped : list of (parent, name, original)
        What :func:`restore_dropout` puts back.
    """
    swapped = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                replacement = GeneratorDropout(child.p, seed + len(swapped))
                replacement.train(child.training)
                setattr(parent, name, replacement)
                swapped.append((parent, name, child))
    return swapped


def restore_dropout(swapped: list[tuple[nn.Module, str, nn.Module]]) -> None:
    """Put back the layers :func:`own_dropout` replaced, in the replacements' mode."""
    for parent, name, original in swapped:
        original.train(getattr(parent, name).training)
        setattr(parent, name, original)


def draws_from_global_rng(module: nn.Module, example: torch.Tensor | Mapping) -> bool:
    """Whether a training-mode forward pass of ``module`` draws from torch's global generator.

    A copy of ``module`` runs ``example`` (a small batch of its input: a tensor, or a
    dict of tensors given as keywords) under
    :data:`GLOBAL_RNG_LOCK`; any draw moves the global generator's state. A forward
    pass that fails counts as drawing, so the caller takes the safe path (and training
    raises the error).
    """
    # on the CPU, whose generator the check reads
    probe = copy.deepcopy(module).cpu().train()
    try:
        with GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]), torch.no_grad():
            before = torch.get_rng_state()
            if isinstance(example, Mapping):
                probe(**{key: value.cpu() for key, value in example.items()})
            else:
                probe(example.cpu())
            return not torch.equal(before, torch.get_rng_state())
    except Exception:
        return True


def loader_generators(params: dict, seed: int) -> dict:
    """skorch parameters that give a net's plain ``DataLoader`` iterators generators of their own.

    A plain ``DataLoader`` draws each iteration's base seed, and a shuffling one its
    order, from torch's global generator. With these parameters (a persistent generator
    per iterator, so that every epoch shuffles anew) neither training nor prediction
    draws from it. An iterator that is not a plain ``DataLoader``, or has a generator
    already, is left alone.

    Parameters
    ----------
    params : dict
        The net's ``get_params(deep=False)``.
    seed : int
        Seeds the training iterator's generator.

    Returns
    -------
    dict
        Parameters to set on the net.
    """
    update = {}
    for offset, name in enumerate(("iterator_train", "iterator_valid")):
        if params.get(name) is DataLoader and params.get(f"{name}__generator") is None:
            update[f"{name}__generator"] = torch.Generator().manual_seed(int(seed) + offset)
    return update
