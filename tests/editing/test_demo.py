import numpy as np
from sklearn.datasets import make_classification

from sklearn_metaedit.editing._demo import run_editor_demo


def test_demo_compares_the_editor_with_magnitude_pruning_at_equal_sparsity():
    X, y = make_classification(1200, 12, n_informative=6, random_state=0)
    X = X.astype(np.float32)
    table = run_editor_demo(
        X[:900], y[:900], X[900:], y[900:], n_networks=4, max_steps=10, verbose=0
    )
    assert list(table.index) == ["original", "magnitude pruning", "MetanetEditor"]
    assert list(table.columns) == ["accuracy", "sparsity", "seconds"]
    assert table.loc["original", "sparsity"] == 0.0
    assert table.loc["magnitude pruning", "sparsity"] == table.loc["MetanetEditor", "sparsity"]
    assert table.loc["MetanetEditor", "sparsity"] >= 0.9
    # the original network learned the task; the accuracies are of real predictions
    assert table.loc["original", "accuracy"] > 0.7
    assert ((table["accuracy"] > 0) & (table["accuracy"] <= 1)).all()
