import numpy as np
import pytest
import torch
from torch import nn

from sklearn_metaedit._mlp import MLP
from sklearn_metaedit.editing._population import (
    _batch_order,
    _build_module,
    make_population,
    train_group,
)

from .conftest import make_net

OPTIMIZERS = [
    ("adam", {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}, torch.optim.Adam),
    ("adamw", {"betas": (0.9, 0.99), "eps": 1e-8, "weight_decay": 0.05}, torch.optim.AdamW),
    (
        "sgd",
        {"momentum": 0.9, "weight_decay": 1e-3, "nesterov": True, "dampening": 0.0},
        torch.optim.SGD,
    ),
]


@pytest.mark.parametrize(("name", "kwargs", "optimizer_cls"), OPTIMIZERS)
def test_vectorised_training_equals_training_each_network_alone(task, name, kwargs, optimizer_cls):
    X, y = task
    X, y = X[:200], y[:200]
    seeds, lrs = [3, 11, 42], [0.01, 0.003, 0.02]
    module_kwargs = {"n_features": X.shape[1], "hidden_sizes": (6, 5)}
    states, losses = train_group(
        MLP,
        module_kwargs,
        seeds,
        lrs,
        X,
        y,
        max_epochs=3,
        batch_size=64,
        optimizer=(name, kwargs),
    )
    for seed, lr, state in zip(seeds, lrs, states, strict=True):
        module = _build_module(MLP, module_kwargs, seed)
        optimizer = optimizer_cls(module.parameters(), lr=lr, **kwargs)
        for epoch in range(3):
            order = _batch_order(len(X), seed, epoch)
            for start in range(0, len(X), 64):
                index = order[start : start + 64]
                loss = nn.functional.cross_entropy(
                    module(torch.as_tensor(X[index])), torch.as_tensor(y[index])
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        for key, value in module.state_dict().items():
            assert torch.allclose(state[key], value, atol=1e-5), key
    assert losses.shape == (3, 3)


def test_population_follows_param_distributions_and_predicts_with_its_weights(task):
    X, y = task
    distributions = {"module__hidden_sizes": [(8,), (6, 6)], "lr": [0.01, 0.02]}
    population = make_population(
        make_net(X.shape[1], max_epochs=2),
        X,
        y,
        n_networks=6,
        param_distributions=distributions,
        random_state=0,
    )
    assert len(population) == 6
    widths = [
        tuple(m.out_features for m in net.module_ if isinstance(m, nn.Linear))[:-1]
        for net in population
    ]
    assert set(widths) == {(8,), (6, 6)}
    for net in population:
        assert tuple(net.module__hidden_sizes) == widths[population.index(net)]
        logits = net.module_(torch.as_tensor(X)).detach()
        assert np.array_equal(net.predict(X), logits.argmax(1).numpy())
        assert len(net.history) == 2
    # networks differ in their seeds: no two share their first-layer weights
    firsts = {net.module_[0].weight.detach().numpy().tobytes() for net in population}
    assert len(firsts) == 6


def test_population_learns_the_task_and_is_reproducible(task):
    X, y = task
    first = make_population(make_net(X.shape[1]), X, y, n_networks=3, random_state=1)
    again = make_population(make_net(X.shape[1]), X, y, n_networks=3, random_state=1, n_jobs=2)
    for a, b in zip(first, again, strict=True):
        assert all(
            torch.equal(v, b.module_.state_dict()[k]) for k, v in a.module_.state_dict().items()
        )
        assert (a.predict(X) == y).mean() > 0.8


def test_population_needs_logits_and_a_supported_optimizer(task):
    X, y = task
    with pytest.raises(ValueError, match="CrossEntropyLoss"):
        make_population(make_net(X.shape[1], criterion=nn.NLLLoss), X, y, n_networks=2)
    with pytest.raises(ValueError, match="SGD, Adam or AdamW"):
        make_population(make_net(X.shape[1], optimizer=torch.optim.RMSprop), X, y, n_networks=2)
