"""Training batches of the fairness layer: every batch holds every group (or stratum).

A batch's projection can only hold its groups' means together if each group is in it;
these samplers deal each stratum's rows evenly over the batches of an epoch.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from ._inputs import dataset_column

__all__ = ["StratifiedBatchSampler", "StratifiedGroupLoader"]


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

    The dataset's X must be a dict with a ``"strata"`` entry (integer codes), or the
    dataset a :class:`~sklearn_metaedit.fairness._inputs.GroupedDataset` with one. Batches
    are drawn from ``seed``, never from torch's global generator; skorch makes a loader
    per epoch, so pass a ``numpy.random.Generator`` for batches that change from epoch
    to epoch.
    """

    def __init__(self, dataset, batch_size=128, shuffle=True, seed=None, **kwargs):
        strata = dataset_column(dataset, "strata")
        sampler = StratifiedBatchSampler(strata, batch_size, shuffle=shuffle, seed=seed)
        if kwargs.get("generator") is None:
            # a DataLoader draws the base seed of its workers from this generator, or
            # else from the global one
            kwargs["generator"] = torch.Generator()
        super().__init__(dataset, batch_sampler=sampler, **kwargs)
