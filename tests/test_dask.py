"""On a real ``dask.distributed`` cluster (two worker processes), populations and grid
searches over editors give exactly the local results, and a worker killed in the middle
of a population costs only the networks it was training."""

import os
import signal
import threading
import time

import numpy as np
import pytest
import sklearn
import torch
from distributed import Client, LocalCluster, get_task_stream
from joblib import parallel_config
from sklearn.datasets import make_classification
from sklearn.model_selection import GridSearchCV, KFold
from skorch import NeuralNetClassifier

from sklearn_metaedit import MLP, MetanetEditor, TaskData, make_population

pytestmark = pytest.mark.dask

POPULATION = dict(
    n_networks=8,
    param_distributions={"module__hidden_sizes": [(8,), (6, 6)], "lr": [0.01, 0.02]},
    random_state=0,
    networks_per_task=1,
)


def make_net(n_features, max_epochs):
    return NeuralNetClassifier(
        MLP,
        module__n_features=n_features,
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        max_epochs=max_epochs,
        batch_size=64,
        train_split=None,
        verbose=0,
    )


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def task():
    X, y = make_classification(400, 6, n_informative=4, random_state=0)
    return X.astype(np.float32), y


def _states(population):
    return [net.module_.state_dict() for net in population]


def _assert_same_networks(first, second):
    assert len(first) == len(second)
    for a, b in zip(_states(first), _states(second), strict=True):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_population_on_a_dask_cluster_equals_the_local_run(client, task):
    X, y = task
    net = make_net(X.shape[1], max_epochs=3)
    local = make_population(net, X, y, **POPULATION)
    with get_task_stream(client) as stream, parallel_config(backend="dask"):
        remote = make_population(net, X, y, n_jobs=-1, **POPULATION)
    _assert_same_networks(local, remote)
    # the work really was spread: both worker processes trained networks
    workers = {event["worker"] for event in stream.data if "_train_task" in event["key"]}
    assert len(workers) == 2


def test_grid_search_over_editors_on_a_dask_cluster_equals_the_local_run(client, task):
    X, y = task
    population = make_population(make_net(X.shape[1], max_epochs=3), X, y, **POPULATION)
    editor = MetanetEditor(
        "sparsity",
        target=0.5,
        max_steps=4,
        hidden_channels=8,
        num_layers=1,
        mlp_hidden=16,
        validation_fraction=0.0,
        random_state=0,
    )
    grid = {"target": [0.4, 0.7]}

    def search():
        # routing passes the task data to score as well (a fitted editor keeps no rows)
        with sklearn.config_context(enable_metadata_routing=True):
            return GridSearchCV(editor, grid, cv=KFold(2), n_jobs=-1, error_score="raise").fit(
                population, data=TaskData(X, y)
            )

    local = search()
    with parallel_config(backend="dask"):
        remote = search()
    for key in ("split0_test_score", "split1_test_score", "mean_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
    assert remote.best_params_ == local.best_params_
    state_local = local.best_estimator_.metanet_.state_dict()
    state_remote = remote.best_estimator_.metanet_.state_dict()
    assert all(torch.equal(state_local[k], state_remote[k]) for k in state_local)


def test_killed_worker_loses_no_finished_network_and_duplicates_none(client, task, tmp_path):
    X, y = task
    net = make_net(X.shape[1], max_epochs=25)
    local = make_population(net, X, y, **POPULATION)
    outcome = {}

    def build():
        try:
            with parallel_config(backend="dask"):
                outcome["population"] = make_population(
                    net, X, y, n_jobs=-1, checkpoint_dir=tmp_path, **POPULATION
                )
        except BaseException as exc:  # re-raised in the test's thread below
            outcome["error"] = exc

    worker_pids = client.run(os.getpid)
    builder = threading.Thread(target=build)
    builder.start()
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("network-*.pt")) and time.monotonic() < deadline:
        time.sleep(0.02)
    busy = [w for w, keys in client.processing().items() if keys]
    finished = {p.name: p.read_bytes() for p in tmp_path.glob("network-*.pt")}
    assert busy and 0 < len(finished) < POPULATION["n_networks"]
    os.kill(worker_pids[busy[0]], signal.SIGKILL)
    builder.join(timeout=120)
    assert not builder.is_alive()
    if "error" in outcome:
        raise outcome["error"]

    _assert_same_networks(local, outcome["population"])
    names = sorted(p.name for p in tmp_path.iterdir())
    # one file per network, each written once (a second write raises in make_population)
    assert names == [f"network-{i:06d}.pt" for i in range(POPULATION["n_networks"])]
    assert all((tmp_path / name).read_bytes() == data for name, data in finished.items())
