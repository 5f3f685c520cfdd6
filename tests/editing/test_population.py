import numpy as np
import pytest
import torch
from torch import nn

from sklearn_metaedit import MLP, make_population
from sklearn_metaedit.editing._population import _batch_order, _build_module, train_group

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


DISTRIBUTIONS = {"module__hidden_sizes": [(8,), (6, 6)], "lr": [0.01, 0.02]}


def _same_weights(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        state_a, state_b = a.module_.state_dict(), b.module_.state_dict()
        assert state_a.keys() == state_b.keys()
        assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
        assert a.history[:, "train_loss"] == b.history[:, "train_loss"]


@pytest.fixture(scope="module")
def small(task):
    X, y = task
    X, y = X[:300], y[:300]
    net = make_net(X.shape[1], max_epochs=3)
    kwargs = dict(n_networks=6, param_distributions=DISTRIBUTIONS, random_state=3)
    reference = make_population(net, X, y, networks_per_task=None, **kwargs)
    return X, y, net, kwargs, reference


@pytest.mark.parametrize("networks_per_task", [1, 2, 5])
def test_population_does_not_depend_on_how_networks_are_cut_into_tasks(small, networks_per_task):
    X, y, net, kwargs, reference = small
    _same_weights(
        make_population(net, X, y, networks_per_task=networks_per_task, **kwargs), reference
    )


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_population_is_the_same_on_every_joblib_backend(small, backend):
    from joblib import parallel_config

    X, y, net, kwargs, reference = small
    with parallel_config(backend=backend):
        population = make_population(net, X, y, n_jobs=2, networks_per_task=1, **kwargs)
    _same_weights(population, reference)


def test_checkpoint_dir_holds_one_weights_only_file_per_network(small, tmp_path):
    X, y, net, kwargs, reference = small
    population = make_population(net, X, y, checkpoint_dir=tmp_path, networks_per_task=2, **kwargs)
    _same_weights(population, reference)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"network-{i:06d}.pt" for i in range(6)]
    for i, ref in enumerate(reference):
        saved = torch.load(tmp_path / files[i], weights_only=True)
        for key, value in ref.module_.state_dict().items():
            assert torch.equal(saved["state_dict"][key], value)
        np.testing.assert_allclose(saved["train_loss"].numpy(), ref.history[:, "train_loss"])


def test_interrupted_run_resumes_without_retraining_finished_networks(
    small, tmp_path, monkeypatch
):
    from sklearn_metaedit.editing import _population

    X, y, net, kwargs, reference = small
    real_train_group = _population.train_group
    trained_seeds = []

    def interrupted_after_two_tasks(*args, **kw):
        if len(trained_seeds) == 2:
            raise KeyboardInterrupt
        trained_seeds.append(list(args[2]))
        return real_train_group(*args, **kw)

    monkeypatch.setattr(_population, "train_group", interrupted_after_two_tasks)
    with pytest.raises(KeyboardInterrupt):
        make_population(net, X, y, checkpoint_dir=tmp_path, networks_per_task=2, **kwargs)
    written = sorted(p.name for p in tmp_path.glob("network-*.pt"))
    assert len(written) == 4  # two tasks of two networks finished before the interruption
    before = {name: (tmp_path / name).read_bytes() for name in written}

    resumed_seeds = []

    def counting(*args, **kw):
        resumed_seeds.append(list(args[2]))
        return real_train_group(*args, **kw)

    monkeypatch.setattr(_population, "train_group", counting)
    population = make_population(net, X, y, checkpoint_dir=tmp_path, networks_per_task=2, **kwargs)
    _same_weights(population, reference)
    # only the two networks not written were trained, and the written files were kept
    assert sum(len(s) for s in resumed_seeds) == 2
    assert not {s for seeds in resumed_seeds for s in seeds} & {
        s for seeds in trained_seeds for s in seeds
    }
    assert all((tmp_path / name).read_bytes() == data for name, data in before.items())
    assert len(list(tmp_path.iterdir())) == 6

    # a finished directory loads the whole population without training anything
    resumed_seeds.clear()
    again = make_population(net, X, y, checkpoint_dir=tmp_path, networks_per_task=2, **kwargs)
    _same_weights(again, reference)
    assert resumed_seeds == []


def test_checkpoint_of_another_population_is_refused(small, tmp_path):
    X, y, net, kwargs, _ = small
    make_population(net, X, y, checkpoint_dir=tmp_path, **kwargs)
    with pytest.raises(ValueError, match=r"checkpoint_dir holds network-000000\.pt"):
        make_population(net, X, y, checkpoint_dir=tmp_path, **{**kwargs, "random_state": 4})
    with pytest.raises(ValueError, match="checkpoint_dir"):
        make_population(net, X[::-1].copy(), y[::-1].copy(), checkpoint_dir=tmp_path, **kwargs)


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_networks_per_task_must_be_a_positive_integer(small, value):
    X, y, net, kwargs, _ = small
    with pytest.raises(ValueError, match="networks_per_task"):
        make_population(net, X, y, networks_per_task=value, **kwargs)


def test_population_with_dropout_is_reproducible_whatever_the_global_torch_seed(small):
    from joblib import parallel_config

    X, y, _, kwargs, _ = small
    net = make_net(X.shape[1], max_epochs=3, module__dropout=0.3)
    torch.manual_seed(0)
    first = make_population(net, X, y, networks_per_task=2, **kwargs)
    torch.manual_seed(1)
    with parallel_config(backend="threading"):
        second = make_population(net, X, y, networks_per_task=2, n_jobs=2, **kwargs)
    _same_weights(first, second)
    # dropout was active: training without it ends elsewhere
    without = make_population(make_net(X.shape[1], max_epochs=3), X, y, **kwargs)
    assert not torch.equal(first[0].module_[0].weight, without[0].module_[0].weight)


def test_population_leaves_torch_global_generator_as_it_was(small):
    X, y, net, kwargs, _ = small
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    make_population(net, X, y, **{**kwargs, "n_networks": 2})
    assert torch.equal(torch.rand(3), expected)


def test_populations_with_dropout_built_in_four_threads_at_once_equal_a_serial_one(small):
    from concurrent.futures import ThreadPoolExecutor

    X, y, _, kwargs, _ = small
    net = make_net(X.shape[1], max_epochs=3, module__dropout=0.3)
    kwargs = {**kwargs, "n_networks": 2}
    serial = make_population(net, X, y, **kwargs)
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda _: make_population(net, X, y, **kwargs), range(4)))
    for population in threaded:
        _same_weights(population, serial)


@pytest.mark.parametrize("verbose", [0, 1, 2])
def test_verbose_shows_a_progress_bar_over_the_networks(task, capsys, verbose):
    X, y = task
    make_population(
        make_net(X.shape[1], max_epochs=1), X, y, n_networks=3, random_state=0, verbose=verbose
    )
    out, err = capsys.readouterr()
    assert ("make_population" in err and "3/3" in err) == (verbose >= 1)
    assert ("networks in 1 architecture group" in out) == (verbose >= 2)


def test_the_number_of_classes_comes_from_y_unless_it_is_set():
    from sklearn.datasets import make_blobs

    X, y = make_blobs(300, n_features=4, centers=3, random_state=0)
    X = X.astype(np.float32)
    # the template names no n_classes: three logits, and the networks learn three classes
    nets = make_population(make_net(4, max_epochs=20), X, y, n_networks=2, random_state=0)
    for net in nets:
        assert net.module_(torch.as_tensor(X[:5])).shape == (5, 3)
        assert set(net.predict(X)) == {0, 1, 2}
        assert (net.predict(X) == y).mean() > 0.9
    # set too small for y: a clear error, not an index error from the loss
    with pytest.raises(ValueError, match=r"module__n_classes=2 but y holds 3 classes"):
        make_population(make_net(4, module__n_classes=2), X, y, n_networks=1, random_state=0)
