"""The baselines the demo and the benchmarks share: each does what its name says."""

import numpy as np
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from torch import nn

from sklearn_metaedit import MLP
from sklearn_metaedit.demo import Float64Proba, fine_tune, retrain_on_columns, zero_columns


def _task(n=800, d=6, seed=0):
    X, y = make_classification(n, d, n_informative=4, n_redundant=0, random_state=seed)
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)


def _loss(module, X, y):
    with torch.no_grad():
        return float(nn.functional.cross_entropy(module(X), y))


def test_fine_tuning_lowers_the_loss_and_keeps_every_zero_weight_at_zero():
    X, y = _task()
    torch.manual_seed(0)
    module = MLP(6, hidden_sizes=(16,))
    with torch.no_grad():
        for layer in module:
            if isinstance(layer, nn.Linear):
                layer.weight[torch.rand_like(layer.weight) < 0.5] = 0.0
    zeros = [layer.weight == 0 for layer in module if isinstance(layer, nn.Linear)]
    before = _loss(module, X, y)
    tuned = fine_tune(module, X, y, epochs=5, random_state=0, batch_size=64, lr=1e-2)
    assert tuned is module and not tuned.training
    assert _loss(tuned, X, y) < 0.8 * before
    linears = [layer for layer in tuned if isinstance(layer, nn.Linear)]
    for layer, zero in zip(linears, zeros, strict=True):
        assert torch.all(layer.weight[zero] == 0)


def test_zeroing_columns_leaves_the_original_untouched():
    torch.manual_seed(0)
    module = MLP(5, hidden_sizes=(4,))
    first = module[0].weight.detach().clone()
    zeroed = zero_columns(module, [0, 3])
    assert torch.equal(module[0].weight, first)
    expected = first.clone()
    expected[:, [0, 3]] = 0
    assert torch.equal(zeroed[0].weight, expected)


def test_retraining_on_columns_reads_only_them_and_learns_the_task():
    X, y = _task(d=8)
    kept = [0, 1, 2, 3, 4, 5]
    net = retrain_on_columns((16,), kept, X, y, epochs=20, random_state=0, batch_size=64)
    assert net[0].weight.shape == (16, 8) and not net.training
    noisy = X.clone()
    noisy[:, [6, 7]] = torch.randn(len(X), 2) * 100
    with torch.no_grad():
        assert torch.equal(net(X), net(noisy))
        accuracy = float((net(X).argmax(1) == y).float().mean())
    assert accuracy > 0.8
    # the seed fixes the result; another seed gives another network
    again = retrain_on_columns((16,), kept, X, y, epochs=20, random_state=0, batch_size=64)
    other = retrain_on_columns((16,), kept, X, y, epochs=20, random_state=1, batch_size=64)
    assert torch.equal(again[0].weight, net[0].weight)
    assert not torch.equal(other[0].weight, net[0].weight)


def test_float64_wrapper_keeps_the_predictions_and_widens_the_probabilities():
    X, y = make_classification(200, 4, random_state=0)
    model = LogisticRegression().fit(X.astype(np.float32), y)
    wrapped = Float64Proba(model).fit(X, y)
    proba = wrapped.predict_proba(X.astype(np.float32))
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba, model.predict_proba(X.astype(np.float32)))
    np.testing.assert_array_equal(wrapped.predict(X), model.predict(X))
    np.testing.assert_array_equal(wrapped.classes_, model.classes_)


def test_threshold_optimizer_post_processes_a_float32_skorch_net_through_the_wrapper():
    # the way the data guide documents through ThresholdOptimizer's float64 writes into
    # float32 scores (refused by pandas 3): prefit, wrapped, within the tolerance asked
    import warnings

    from fairlearn.postprocessing import ThresholdOptimizer
    from skorch import NeuralNetClassifier

    from sklearn_metaedit import MLP
    from sklearn_metaedit.datasets import make_biased_classification
    from sklearn_metaedit.metrics import selection_rate_gap

    X, y, groups = make_biased_classification(1500, 6, bias=1.0, random_state=0)
    X = X.astype(np.float32)
    torch.manual_seed(0)
    net = NeuralNetClassifier(
        MLP,
        module__n_features=6,
        criterion=torch.nn.CrossEntropyLoss,
        max_epochs=5,
        lr=0.05,
        train_split=None,
        optimizer=torch.optim.Adam,
        verbose=0,
    ).fit(X, y)
    assert net.predict_proba(X).dtype == np.float32
    postprocessed = ThresholdOptimizer(
        estimator=Float64Proba(net),
        prefit=True,
        predict_method="predict_proba",
        constraints="demographic_parity",
        tol=0.05,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        postprocessed.fit(X, y, sensitive_features=groups)
        y_pred = postprocessed.predict(X, sensitive_features=groups, random_state=0)
    assert set(np.unique(y_pred)) <= {0, 1}
    # the base network is biased; post-processed on its own training rows, within tol
    # up to the randomised decisions' sampling noise
    assert selection_rate_gap(net.predict(X), sensitive_features=groups) > 0.1
    assert selection_rate_gap(y_pred, sensitive_features=groups) <= 0.05 + 0.03
