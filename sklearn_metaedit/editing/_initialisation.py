"""The metanetwork's initial weights, drawn from a generator that belongs to one fit.

torch's layers draw their initial weights from the process-wide generator, which
concurrent fits (the threads of ``GridSearchCV`` or of a Dask worker) share: seeding it
does not make a fit reproducible, and seeding it inside ``torch.random.fork_rng`` races
with the other threads. :func:`seeded_metanet` draws every weight again from a
``torch.Generator`` of its own, so that the result depends on the seed alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._metanet import GraphMetanetwork

__all__ = ["seeded_metanet"]


def seeded_metanet(params: dict, seed: int) -> GraphMetanetwork:
    """``GraphMetanetwork(**params)`` with initial weights that depend on ``seed`` alone.

    Every ``Linear`` and ``Embedding`` is drawn from a generator seeded by ``seed``, with
    torch's default distributions (those of their ``reset_parameters``). Parameters that
    construction set to zero (the output heads, so that the untrained metanetwork edits
    nothing) stay zero, and ``LayerNorm`` keeps its constants.

    Raises
    ------
    TypeError
        If the metanetwork holds a layer with parameters of another kind (this function
        would not know how to draw them).
    """
    generator = torch.Generator().manual_seed(int(seed))
    metanet = GraphMetanetwork(**params)
    with torch.no_grad():
        for module in metanet.modules():
            if isinstance(module, nn.Linear):
                if module.weight.any():
                    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None and module.bias.any():
                    bound = 1 / math.sqrt(module.in_features)
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, generator=generator)
            elif list(module.parameters(recurse=False)) and not isinstance(module, nn.LayerNorm):
                raise TypeError(f"no seeded initialisation for {type(module).__name__}.")
    return metanet
