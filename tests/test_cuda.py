"""The CUDA path: every estimator and the projection on a GPU, checked against the CPU.

Marked ``cuda``; without a CUDA device every test here is skipped. ``benchmarks/
run_gpu_checks.sh`` runs them on a GPU machine together with the GPU benchmark rows.
``SKLEARN_METAEDIT_TEST_DEVICE=cpu`` runs the same tests on the CPU, to check the tests
themselves on a machine without a GPU (where the comparisons are then CPU against CPU).
"""

import math
import os

import numpy as np
import pytest
import torch
from skorch import NeuralNetClassifier
from torch import nn

from sklearn_metaedit import (
    MLP,
    FairnessLayerClassifier,
    MetanetEditor,
    OnlineFairPredictor,
    make_population,
)
from sklearn_metaedit.datasets import make_biased_classification
from sklearn_metaedit.fairness import project_parity
from sklearn_metaedit.metrics import selection_rate_gap

DEVICE = os.environ.get("SKLEARN_METAEDIT_TEST_DEVICE", "cuda")

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        torch.device(DEVICE).type == "cuda" and not torch.cuda.is_available(),
        reason="needs a CUDA device (torch.cuda.is_available() is False)",
    ),
]

EPSILON = 0.03


def _instance(n, n_groups, dtype, seed=0):
    generator = torch.Generator().manual_seed(seed)
    groups = torch.randint(0, n_groups, (n,), generator=generator)
    powers = torch.linspace(0.5, 2.0, n_groups, dtype=torch.float64)[groups]
    scores = (torch.rand(n, generator=generator, dtype=torch.float64) ** powers).to(dtype)
    weights = torch.randn(n, generator=generator, dtype=torch.float64).to(dtype)
    return scores, groups, weights


def _project_with_grad(scores, groups, weights, n_groups, device):
    s = scores.to(device).clone().requires_grad_(True)
    z = project_parity(s, groups.to(device), EPSILON, n_groups=n_groups)
    (z * weights.to(device)).sum().backward()
    return z.detach().cpu(), s.grad.cpu()


@pytest.mark.parametrize("n_groups", [2, 5])
@pytest.mark.parametrize(
    ("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=str
)
def test_projection_forward_and_backward_on_the_gpu_equal_the_cpu(n_groups, dtype, tolerance):
    scores, groups, weights = _instance(20_000, n_groups, dtype)
    z_cpu, grad_cpu = _project_with_grad(scores, groups, weights, n_groups, "cpu")
    z_gpu, grad_gpu = _project_with_grad(scores, groups, weights, n_groups, DEVICE)
    assert z_gpu.dtype == dtype
    torch.testing.assert_close(z_gpu, z_cpu, atol=tolerance, rtol=0)
    torch.testing.assert_close(grad_gpu, grad_cpu, atol=tolerance, rtol=0)
    means = torch.stack([z_gpu[groups == g].double().mean() for g in range(n_groups)])
    assert float(means.max() - means.min()) <= EPSILON + 10 * tolerance


def _net(**params):
    if "module" not in params:
        params = {"module": MLP, "module__hidden_sizes": (16,), **params}
    defaults = dict(
        criterion=nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=0.02,
        max_epochs=4,
        batch_size=128,
        train_split=None,
        verbose=0,
        device=DEVICE,
    )
    return NeuralNetClassifier(**{**defaults, **params})


@pytest.fixture(scope="module")
def biased():
    return make_biased_classification(2000, 6, n_groups=3, bias=1.5, random_state=0)


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 2)
        )

    def forward(self, X):
        return self.body(X)


@pytest.mark.parametrize("kind", ["table", "images"])
def test_fairness_layer_fits_and_predicts_on_the_gpu_with_the_exact_bound(kind, biased):
    X, y, groups = biased
    if kind == "images":
        # six features, each tiled into a 6 x 6 image: any network input shape works
        X = np.repeat(X[:, None, :, None], 6, axis=3).astype(np.float32)
        net = _net(module=TinyCNN)
    else:
        net = _net()
    clf = FairnessLayerClassifier(net, epsilon=EPSILON, random_state=0)
    clf.fit(X, y, sensitive_features=groups)
    assert next(clf.estimator_.module_.parameters()).device.type == torch.device(DEVICE).type
    y_pred = clf.predict(X, sensitive_features=groups)
    assert selection_rate_gap(y_pred, sensitive_features=groups) <= EPSILON
    # the projected probabilities are the CPU projection of the GPU network's scores
    proba = clf.predict_proba(X, sensitive_features=groups)[:, 1]
    with torch.no_grad():
        base = clf.estimator_.module_.base_proba(torch.as_tensor(X, device=DEVICE))
    expected = project_parity(
        base.double().cpu(), torch.as_tensor(groups), EPSILON, n_groups=3
    ).numpy()
    np.testing.assert_allclose(proba, expected, atol=1e-9)
    # and training on the GPU learns as training on the CPU does
    cpu = FairnessLayerClassifier(
        net.set_params(device="cpu"), epsilon=EPSILON, random_state=0
    ).fit(X, y, sensitive_features=groups)
    cpu_accuracy = np.mean(cpu.predict(X, sensitive_features=groups) == y)
    assert abs(np.mean(y_pred == y) - cpu_accuracy) < 0.05


def test_online_predictor_decides_from_a_gpu_network_as_from_its_probabilities(biased):
    X, y, groups = biased
    net = _net(module__n_features=X.shape[1]).fit(X[:1000], y[:1000])
    online = OnlineFairPredictor(net, prefit=True, epsilon=0.05)
    online.fit(X[:1000], y[:1000], sensitive_features=groups[:1000])
    decisions = [
        online.partial_predict(X[i : i + 1], sensitive_features=groups[i : i + 1])[0]
        for i in range(1000, 2000)
    ]
    report = online.report()
    assert report.pooled_gap <= report.bound
    # the same stream replayed from the fit state, in one batch, decides alike
    replay = online.predict(X[1000:], sensitive_features=groups[1000:])
    np.testing.assert_array_equal(decisions, replay)


def test_population_and_editor_on_the_gpu_meet_the_sparsity_target_exactly():
    X, y, _ = make_biased_classification(800, 8, random_state=0)
    template = _net(module__n_features=8, max_epochs=6)
    population = make_population(template, X, y, n_networks=4, random_state=0)
    again = make_population(template, X, y, n_networks=4, random_state=0)
    for net, twin in zip(population, again, strict=True):
        assert next(net.module_.parameters()).device.type == torch.device(DEVICE).type
        for a, b in zip(net.module_.parameters(), twin.module_.parameters(), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert np.mean(net.predict(X) == y) > 0.7
    editor = MetanetEditor(
        "sparsity",
        target=0.6,
        max_steps=6,
        hidden_channels=8,
        mlp_hidden=16,
        num_layers=2,
        device=DEVICE,
        random_state=0,
    ).fit(population, data=(X, y))
    for original, edited in zip(population, editor.transform(population), strict=True):
        weights = [w for w in edited.module_.parameters() if w.ndim == 2]
        total = sum(w.numel() for w in weights)
        zeros = sum(int((w == 0).sum()) for w in weights)
        assert zeros >= math.ceil(0.6 * total - 1e-9)
        # the edit keeps most of what the network knew
        agreement = np.mean(edited.predict(X) == original.predict(X))
        assert agreement > 0.7
