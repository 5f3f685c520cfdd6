"""The estimators' own loops run with ``get_thread_limit()`` threads and restore the settings.

What is measured is what the loops see: a network module records torch's thread count on
every forward pass, and an OnlineFairPredictor's base model records the BLAS pools'
thread counts while it is fitted and asked for probabilities.
"""

import json
import subprocess
import sys
from typing import ClassVar

import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from skorch import NeuralNetClassifier
from threadpoolctl import ThreadpoolController

from sklearn_metaedit import (
    MLP,
    FairnessLayerClassifier,
    MetanetEditor,
    OnlineFairPredictor,
    get_thread_limit,
    make_population,
    set_thread_limit,
)
from sklearn_metaedit._threads import limited_threads
from sklearn_metaedit.datasets import make_biased_classification

OUTSIDE = 3  # a thread count that differs from every limit the tests set


def _blas_threads():
    """The thread counts of the BLAS libraries that the test's fixture set to OUTSIDE."""
    pools = ThreadpoolController().select(user_api="blas").lib_controllers
    return {pool.num_threads for pool in pools if pool.filepath in _limited}


_limited: set = set()


class CountingMLP(MLP):
    """The reference MLP, recording torch's thread count on each forward pass."""

    seen: ClassVar[list] = []

    def forward(self, X):
        CountingMLP.seen.append(torch.get_num_threads())
        return super().forward(X)


class CountingLogistic(ClassifierMixin, BaseEstimator):
    """A logistic regression recording the BLAS pools' thread counts when it is used."""

    seen: ClassVar[list] = []

    def fit(self, X, y):
        CountingLogistic.seen.append(_blas_threads())
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        CountingLogistic.seen.append(_blas_threads())
        return self.model_.predict_proba(X)


@pytest.fixture
def outside_threads():
    """torch and the BLAS pools set to OUTSIDE threads around the test, then as they were."""
    torch_before = torch.get_num_threads()
    limit_before = get_thread_limit()
    controller = ThreadpoolController()
    limiter = controller.select(user_api="blas").limit(limits=OUTSIDE)
    torch.set_num_threads(OUTSIDE)
    _limited.clear()
    # an OpenBLAS built to keep the count it started with (OMP_NUM_THREADS) cannot show one
    _limited.update(
        pool.filepath
        for pool in controller.select(user_api="blas").lib_controllers
        if pool.num_threads == OUTSIDE
    )
    if not _limited:
        pytest.fail("no BLAS library takes a thread count: the limits cannot be observed")
    yield
    set_thread_limit(limit_before)
    torch.set_num_threads(torch_before)
    limiter.restore_original_limits()


@pytest.fixture(scope="module")
def biased():
    return make_biased_classification(400, 5, n_groups=2, bias=1.0, random_state=0)


def _net():
    return NeuralNetClassifier(
        CountingMLP,
        module__hidden_sizes=(8,),
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=2,
        batch_size=100,
        train_split=None,
        verbose=0,
    )


@pytest.mark.parametrize("limit", [1, 2])
def test_fairness_layer_trains_and_predicts_with_the_limit_and_restores_torch(
    outside_threads, biased, limit
):
    X, y, groups = biased
    set_thread_limit(limit)
    CountingMLP.seen = []
    clf = FairnessLayerClassifier(_net(), epsilon=0.05, random_state=0)
    clf.fit(X, y, sensitive_features=groups)
    n_fit = len(CountingMLP.seen)
    clf.predict(X, sensitive_features=groups)
    assert n_fit > 0 and len(CountingMLP.seen) > n_fit
    assert set(CountingMLP.seen) == {limit}
    assert torch.get_num_threads() == OUTSIDE
    assert _blas_threads() == {OUTSIDE}


def test_none_leaves_the_thread_settings_as_they_are(outside_threads, biased):
    X, y, groups = biased
    set_thread_limit(None)
    CountingMLP.seen = []
    FairnessLayerClassifier(_net(), epsilon=0.05, random_state=0).fit(
        X, y, sensitive_features=groups
    )
    assert set(CountingMLP.seen) == {OUTSIDE}


def test_online_predictor_holds_the_blas_pools_to_the_limit_then_restores_them(
    outside_threads, biased
):
    X, y, groups = biased
    set_thread_limit(1)
    CountingLogistic.seen = []
    online = OnlineFairPredictor(CountingLogistic(), epsilon=0.05)
    online.fit(X, y, sensitive_features=groups)
    online.predict(X[:50], sensitive_features=groups[:50])
    online.partial_predict(X[:1], sensitive_features=groups[:1])
    assert len(CountingLogistic.seen) >= 3
    assert all(seen == {1} for seen in CountingLogistic.seen)
    assert _blas_threads() == {OUTSIDE}
    assert torch.get_num_threads() == OUTSIDE


def test_editor_and_population_run_with_the_limit(outside_threads, biased):
    X, y, _ = biased
    set_thread_limit(2)
    CountingMLP.seen = []
    population = make_population(
        _net().set_params(max_epochs=1), X, y, n_networks=3, random_state=0
    )
    editor = MetanetEditor(requirement="sparsity", target=0.5, max_steps=2, random_state=0)
    editor.fit(population, data=(X, y))
    editor.transform(population)
    assert set(CountingMLP.seen) == {2}
    assert torch.get_num_threads() == OUTSIDE
    assert _blas_threads() == {OUTSIDE}


# Run in a process of its own: OpenBLAS lets threads other than the main one change its
# thread count only while the main thread has never set it, which earlier tests may have.
MANY_THREADS = """
import json, threading
import numpy, scipy.linalg, torch
from threadpoolctl import ThreadpoolController
from sklearn_metaedit._threads import limited_threads

def blas_pools():
    return ThreadpoolController().select(user_api="blas").lib_controllers

def set_blas(n):
    blas_pools() and ThreadpoolController().select(user_api="blas").limit(limits=n)

setter = threading.Thread(target=set_blas, args=(3,))
setter.start()
setter.join()
torch.set_num_threads(3)
paths = {p.filepath for p in blas_pools() if p.num_threads == 3}

def blas():
    return sorted({p.num_threads for p in blas_pools() if p.filepath in paths})

barrier = threading.Barrier(4)
seen = []

def loop(i):
    barrier.wait()
    # the later threads ask torch for its count first while an earlier one holds the limit
    threading.Event().wait(3e-3 * i)
    pause = 1e-3 * (i + 1)
    for _ in range(30):
        with limited_threads():
            seen.append([torch.get_num_threads(), blas()])
            # start and end out of step with the other threads
            threading.Event().wait(pause)

workers = [threading.Thread(target=loop, args=(i,)) for i in range(4)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
later = []
thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
thread.start()
thread.join()
print(json.dumps({"paths": len(paths), "seen": seen, "torch": torch.get_num_threads(),
                  "blas": blas(), "later": later}))
"""


def test_loops_in_many_threads_at_once_keep_the_limit_and_leave_none_behind():
    result = subprocess.run(
        [sys.executable, "-c", MANY_THREADS], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["paths"] > 0, "no BLAS library took a thread count"
    assert len(out["seen"]) == 4 * 30
    # inside every loop: one torch thread in that thread, one BLAS thread
    assert {tuple([torch_threads, *blas]) for torch_threads, blas in out["seen"]} == {(1, 1)}
    # after them: the BLAS pools, this thread's torch count and that of threads started
    # later are back where they were
    assert out["blas"] == [3]
    assert out["torch"] == 3
    assert out["later"] == [3]


def test_a_loop_inside_another_keeps_the_outer_limit(outside_threads):
    set_thread_limit(2)
    with limited_threads():
        set_thread_limit(1)
        with limited_threads():
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == OUTSIDE


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_thread_limit_refuses_what_is_not_a_positive_whole_number(bad):
    with pytest.raises(ValueError, match="n_threads must be a whole number"):
        set_thread_limit(bad)
    assert get_thread_limit() == 1


def test_default_limit_is_one_thread():
    assert get_thread_limit() == 1
