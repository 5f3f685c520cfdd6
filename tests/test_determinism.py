"""The same seed gives the same population, editor, edits and decisions, run to run.

Each run is a fresh Python process with its own hash seed and its own global torch and
numpy seeds, so that nothing can depend on set ordering or on a global random state
left by earlier code. A second seed within one run shows that every fingerprint
compared does depend on the seed.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

RUN = textwrap.dedent(
    """
    import hashlib
    import json
    import sys

    import numpy as np
    import torch
    from skorch import NeuralNetClassifier
    from sklearn.linear_model import LogisticRegression

    from sklearn_metaedit import MLP
    from sklearn_metaedit.datasets import make_biased_classification
    from sklearn_metaedit import MetanetEditor
    from sklearn_metaedit import make_population
    from sklearn_metaedit import FairnessLayerClassifier
    from sklearn_metaedit import OnlineFairPredictor

    torch.set_num_threads(1)
    noise = int(sys.argv[1])
    torch.manual_seed(noise)
    np.random.seed(noise)

    def digest(*arrays):
        h = hashlib.sha256()
        for a in arrays:
            a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def weights(nets):
        return [p for net in nets for p in net.module_.state_dict().values()]

    X, y, groups = make_biased_classification(400, 5, bias=1.0, random_state=0)
    out = {}
    for seed in map(int, sys.argv[2:]):
        net = NeuralNetClassifier(
            MLP, module__hidden_sizes=(8,), criterion=torch.nn.CrossEntropyLoss,
            optimizer=torch.optim.Adam, lr=0.01, max_epochs=3, batch_size=64,
            train_split=None, verbose=0,
        )
        population = make_population(
            net, X, y, n_networks=4,
            param_distributions={
                "module__hidden_sizes": [(8,), (6, 6)], "module__dropout": [0.0, 0.2]
            },
            random_state=seed,
        )
        editor = MetanetEditor(
            "demographic_parity", target=0.05, max_steps=4, hidden_channels=8, num_layers=1,
            mlp_hidden=16, random_state=seed,
        ).fit(population, data=(X, y, groups))
        edited = editor.transform(population)
        layer = FairnessLayerClassifier(net, epsilon=0.05, random_state=seed).fit(
            X, y, sensitive_features=groups
        )
        online = OnlineFairPredictor(layer, epsilon=0.05, random_state=seed).fit(
            X[:200], y[:200], sensitive_features=groups[:200]
        )
        stream = [
            online.partial_predict(X[i : i + 1], sensitive_features=groups[i : i + 1])
            for i in range(200, 260)
        ]
        out[seed] = {
            "population": digest(*weights(population)),
            "editor": digest(*editor.metanet_.state_dict().values()),
            "edits": digest(*weights(edited)),
            "layer_decisions": digest(
                layer.predict_proba(X, sensitive_features=groups),
                layer.predict(X, sensitive_features=groups),
            ),
            "online_decisions": digest(
                online.predict_proba(X[200:], sensitive_features=groups[200:]),
                np.concatenate(stream),
            ),
        }
    print(json.dumps(out))
    """
)


def _run(noise, *seeds):
    result = subprocess.run(
        [sys.executable, "-c", RUN, str(noise), *map(str, seeds)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": str(noise)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs():
    return _run(11, 0, 1), _run(12345, 0)


@pytest.mark.parametrize(
    "what", ["population", "editor", "edits", "layer_decisions", "online_decisions"]
)
def test_same_seed_gives_the_same_result_in_another_run(runs, what):
    first, second = runs
    assert first["0"][what] == second["0"][what]


@pytest.mark.parametrize(
    "what", ["population", "editor", "edits", "layer_decisions", "online_decisions"]
)
def test_another_seed_gives_another_result(runs, what):
    first, _ = runs
    assert first["0"][what] != first["1"][what]
