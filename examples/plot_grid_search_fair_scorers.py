"""
========================================
Tuning a fair Pipeline with GridSearchCV
========================================

scikit-learn's scorers call ``predict(X)`` without metadata, so an estimator that needs
each row's group at prediction time scores NaN inside ``GridSearchCV``. The scorers of
:mod:`sklearn_metaedit.metrics` pass ``sensitive_features`` to ``predict`` and to the
metric; :func:`~sklearn_metaedit.metrics.make_fair_scorer` with ``epsilon`` scores
"accuracy subject to a parity gap of at most ``epsilon``", so that the search picks
the most accurate candidate that meets the requirement on held-out folds.

Groups reach the estimator in one of two ways, both shown here on a slice of UCI Adult
(bundled, CC BY 4.0):

1. routed metadata: ``sklearn.set_config(enable_metadata_routing=True)`` and
   ``sensitive_features=...`` passed to ``GridSearchCV.fit``;
2. a column of ``X`` named by the estimator's ``sensitive_feature`` parameter, with no
   routing at all.
"""

# %%
# Data
# ----
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sklearn
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from skorch import NeuralNetClassifier

from sklearn_metaedit import MLP, FairnessLayerClassifier, OnlineFairPredictor
from sklearn_metaedit.datasets import load_adult, make_preprocessor
from sklearn_metaedit.metrics import fair_accuracy_scorer, make_fair_scorer, selection_rate_gap

train, test = load_adult(split="train"), load_adult(split="test")
rng = np.random.default_rng(0)
train_rows = rng.choice(len(train.target), 3000, replace=False)
test_rows = rng.choice(len(test.target), 5000, replace=False)
X_train, X_test = train.data.iloc[train_rows], test.data.iloc[test_rows]
y_train = train.target.to_numpy()[train_rows]
y_test = test.target.to_numpy()[test_rows]
sex_train = train.sensitive["sex"].to_numpy()[train_rows]
sex_test = test.sensitive["sex"].to_numpy()[test_rows]

requirement = 0.05  # the largest selection-rate gap allowed between women and men
scoring = {
    "accuracy": fair_accuracy_scorer,
    "accuracy_within_requirement": make_fair_scorer("accuracy", epsilon=requirement),
}
cv = StratifiedKFold(3, shuffle=True, random_state=0)

# %%
# 1. Routed metadata: a fairness-layer network in a Pipeline
# ----------------------------------------------------------
# The preprocessor leaves ``sex`` and ``race`` out of the network's inputs. The
# ``sensitive_features`` passed to ``fit`` are split with the folds and routed to the
# layer's ``fit`` and ``predict`` and to the scorers, which request them by default.
# The grid crosses the layer's bound with the network's width.
sklearn.set_config(enable_metadata_routing=True)

net = NeuralNetClassifier(
    MLP,
    criterion=torch.nn.CrossEntropyLoss,
    optimizer=torch.optim.Adam,
    lr=3e-3,
    batch_size=256,
    max_epochs=6,
    train_split=None,
    verbose=0,
)
pipeline = make_pipeline(
    make_preprocessor(drop=("sex", "race")), FairnessLayerClassifier(net, random_state=0)
)
grid = {
    "fairnesslayerclassifier__epsilon": [0.02, 0.04, 0.1],
    "fairnesslayerclassifier__estimator__module__hidden_sizes": [(16,), (64,)],
}
search = GridSearchCV(pipeline, grid, scoring=scoring, refit="accuracy_within_requirement", cv=cv)
search.fit(X_train, y_train, sensitive_features=sex_train)

results = pd.DataFrame(search.cv_results_)
columns = ["mean_test_accuracy", "mean_test_accuracy_within_requirement"]
table = results.set_index(
    [
        "param_fairnesslayerclassifier__epsilon",
        "param_fairnesslayerclassifier__estimator__module__hidden_sizes",
    ]
)[columns]
table.index.names = ["epsilon", "hidden_sizes"]
print(table.round(4))
print("selected:", search.best_params_)

# %%
# A candidate with ``epsilon=0.1`` may be the most accurate, but its folds break the
# requirement, so its constrained score is the negative gap and it ranks last. The
# refitted pipeline takes the groups at prediction too:
y_pred = search.best_estimator_.predict(X_test, sensitive_features=sex_test)
layer_accuracy = float((y_pred == y_test).mean())
layer_gap = selection_rate_gap(y_pred, sensitive_features=sex_test)
print(f"test: accuracy {layer_accuracy:.3f}, selection-rate gap {layer_gap:.4f}")

sklearn.set_config(enable_metadata_routing=False)

# %%
# 2. No routing: the groups are a column of X
# -------------------------------------------
# :class:`~sklearn_metaedit.OnlineFairPredictor` reads the groups from the ``sex``
# column of the DataFrame it is given; its base pipeline drops that column before the
# logistic regression, which stays group-blind. The fair scorers find the column
# through the estimator's ``sensitive_feature`` parameter, so a plain ``GridSearchCV``
# needs no metadata at all. Here the search tunes the bound and the step size.
online = OnlineFairPredictor(
    make_pipeline(make_preprocessor(drop=("sex", "race")), LogisticRegression(max_iter=500)),
    sensitive_feature="sex",
)
online_search = GridSearchCV(
    online,
    {"epsilon": [0.02, 0.04, 0.1], "step_size": [0.1, 1.0]},
    scoring=scoring,
    refit="accuracy_within_requirement",
    cv=cv,
)
online_search.fit(X_train, y_train)
print("selected:", online_search.best_params_)
y_online = online_search.predict(X_test)
online_accuracy = float((y_online == y_test).mean())
online_gap = selection_rate_gap(y_online, sensitive_features=sex_test)
print(f"test: accuracy {online_accuracy:.3f}, selection-rate gap {online_gap:.4f}")


# %%
# The candidates, side by side
# ----------------------------
# Mean accuracy over the held-out folds of every candidate, in blue where the
# candidate met the requirement on every fold, in red where it broke it on some fold.
# The most accurate candidates are often the ones that break it; the search selects
# (black edge) the most accurate blue one.
SHORT = {"epsilon": "ε", "hidden_sizes": "hidden", "step_size": "step"}


def label(params):
    """``ε=0.04, hidden=(64,)`` for a candidate's parameters."""
    names = {name.rsplit("__", 1)[-1]: value for name, value in params.items()}
    return ", ".join(f"{SHORT[name]}={value}" for name, value in sorted(names.items()))


fig, axes = plt.subplots(2, 1, figsize=(7, 6.4))
for ax, fitted, title in [
    (axes[0], search, "FairnessLayerClassifier in a Pipeline (routed groups)"),
    (axes[1], online_search, "OnlineFairPredictor (groups from a column of X)"),
]:
    res = fitted.cv_results_
    accuracy = res["mean_test_accuracy"]
    met = np.isclose(accuracy, res["mean_test_accuracy_within_requirement"])
    positions = np.arange(len(accuracy))
    bars = ax.barh(positions, accuracy, color=np.where(met, "tab:blue", "tab:red"))
    bars[fitted.best_index_].set_edgecolor("black")
    bars[fitted.best_index_].set_linewidth(2.5)
    ax.set_yticks(positions, [label(params) for params in res["params"]], fontsize=8)
    ax.set_xlim(accuracy.min() - 0.02, accuracy.max() + 0.01)
    ax.set_title(title, fontsize=10)
axes[1].set_xlabel("mean accuracy over the held-out folds")
axes[0].legend(
    handles=[
        plt.Rectangle((0, 0), 1, 1, color="tab:blue"),
        plt.Rectangle((0, 0), 1, 1, color="tab:red"),
    ],
    labels=[f"gap ≤ {requirement} on every fold", f"gap > {requirement} on a fold"],
    loc="lower right",
    fontsize=8,
)
fig.tight_layout()
plt.show()
