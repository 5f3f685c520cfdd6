import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from sklearn_metaedit.demo import run_editor_demo, run_minimisation_comparison


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


def _first_layer(module):
    return next(layer for layer in module if isinstance(layer, torch.nn.Linear)).weight


def test_minimisation_comparison_leaves_every_forbidden_column_unread():
    X, y = make_classification(900, 10, n_informative=6, random_state=1)
    X = X.astype(np.float32)
    forbidden = [1, 4, 7]
    table, networks = run_minimisation_comparison(
        X[:600],
        y[:600],
        X[600:],
        y[600:],
        forbidden_features=forbidden,
        n_networks=4,
        n_held_out=2,
        max_steps=5,
        verbose=0,
        return_networks=True,
    )
    methods = [
        "original",
        "zero the columns",
        "zero the columns + fine-tuning",
        "retrain without the columns",
        "MetanetEditor",
    ]
    assert list(networks) == methods
    assert list(table["method"]) == methods * 2
    assert list(table["network"]) == [0] * 5 + [1] * 5
    assert ((table["accuracy"] >= 0) & (table["accuracy"] <= 1)).all()
    assert (table.loc[table["method"] == "original", "accuracy"] > 0.7).all()
    assert table.attrs["forbidden_features"] == ["x1", "x4", "x7"]
    allowed = [j for j in range(10) if j not in forbidden]
    for method, modules in networks.items():
        counts = table.loc[table["method"] == method, "forbidden_columns_used"].tolist()
        for module, count in zip(modules, counts, strict=True):
            first = _first_layer(module).detach()
            read = int((first[:, forbidden] != 0).any(dim=0).sum())
            # the table counts what the weights hold
            assert count == read
            if method == "original":
                assert read == len(forbidden)
            else:
                assert torch.all(first[:, forbidden] == 0), method
                # blind to the forbidden columns, not to the task: the others are read
                assert (first[:, allowed] != 0).any(dim=0).all(), method
    # zeroing changes the forbidden columns of the original and nothing else
    for original, zeroed in zip(networks["original"], networks["zero the columns"], strict=True):
        expected = _first_layer(original).detach().clone()
        expected[:, forbidden] = 0
        assert torch.equal(_first_layer(zeroed), expected)


def test_minimisation_comparison_names_a_forbidden_column_it_cannot_find():
    X, y = make_classification(100, 4, random_state=0)
    arrays = (X[:80], y[:80], X[80:], y[80:])
    names = ["age", "income", "hours", "sex_Male"]
    with pytest.raises(ValueError, match="'race_White', which is not in feature_names"):
        run_minimisation_comparison(
            *arrays, forbidden_features=["race_White"], feature_names=names
        )
    with pytest.raises(ValueError, match="forbidden_features is empty"):
        run_minimisation_comparison(*arrays, forbidden_features=[], feature_names=names)
    with pytest.raises(ValueError, match=r"indices in \[0, 4\), got 4"):
        run_minimisation_comparison(*arrays, forbidden_features=[4])
