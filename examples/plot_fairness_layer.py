"""
=====================================================
Exact demographic parity with FairnessLayerClassifier
=====================================================

:class:`~sklearn_metaedit.FairnessLayerClassifier` trains a skorch network through an
exact projection layer and projects every prediction batch, so that the selection-rate
gap between groups of the decisions it returns is at most ``epsilon`` -- the quantity
fairlearn's ``demographic_parity_difference`` measures.

We train it on a slice of the UCI Adult data (bundled, CC BY 4.0) for several values
of ``epsilon``, beside the same network without the layer, and plot test accuracy
against the selection-rate gap between women and men.
"""

# %%
# Data: a group-blind network
# ---------------------------
# ``sex`` and ``race`` are left out of the network's inputs; the groups reach the
# estimator as ``sensitive_features`` instead.
import matplotlib.pyplot as plt
import numpy as np
import torch
from skorch import NeuralNetClassifier

from sklearn_metaedit import MLP, FairnessLayerClassifier
from sklearn_metaedit.datasets import load_adult, make_preprocessor
from sklearn_metaedit.metrics import selection_rate_gap

train, test = load_adult(split="train"), load_adult(split="test")
rng = np.random.default_rng(0)
train_rows = rng.choice(len(train.target), 6000, replace=False)
test_rows = rng.choice(len(test.target), 6000, replace=False)

preprocessor = make_preprocessor(drop=("sex", "race"))
X_train = preprocessor.fit_transform(train.data.iloc[train_rows])
X_test = preprocessor.transform(test.data.iloc[test_rows])
y_train = train.target.to_numpy()[train_rows]
y_test = test.target.to_numpy()[test_rows]
sex_train = train.sensitive["sex"].to_numpy()[train_rows]
sex_test = test.sensitive["sex"].to_numpy()[test_rows]


def make_net():
    """A small MLP, trained for a few epochs: enough for Adult."""
    return NeuralNetClassifier(
        MLP,
        module__hidden_sizes=(32,),
        criterion=torch.nn.CrossEntropyLoss,
        optimizer=torch.optim.Adam,
        lr=3e-3,
        batch_size=256,
        max_epochs=8,
        train_split=None,
        verbose=0,
    )


# %%
# The unconstrained network
# -------------------------
torch.manual_seed(0)
plain = make_net().set_params(module__n_features=X_train.shape[1])
plain.fit(X_train, y_train)
y_plain = plain.predict(X_test)
plain_accuracy = float((y_plain == y_test).mean())
plain_gap = selection_rate_gap(y_plain, sensitive_features=sex_test)
print(f"unconstrained: accuracy {plain_accuracy:.3f}, selection-rate gap {plain_gap:.3f}")

# %%
# The fairness layer, for several bounds
# --------------------------------------
# ``predict`` is given the whole test slice as one batch, so the bound holds for the
# gap measured on that slice.
epsilons = [0.01, 0.02, 0.05, 0.1]
results = []
for epsilon in epsilons:
    clf = FairnessLayerClassifier(make_net(), epsilon=epsilon, random_state=0)
    clf.fit(X_train, y_train, sensitive_features=sex_train)
    y_pred = clf.predict(X_test, sensitive_features=sex_test)
    accuracy = float((y_pred == y_test).mean())
    gap = selection_rate_gap(y_pred, sensitive_features=sex_test)
    results.append((epsilon, accuracy, gap))
    print(f"epsilon {epsilon:.2f}: accuracy {accuracy:.3f}, selection-rate gap {gap:.4f}")


# %%
# Accuracy against parity
# -----------------------
# Each point is one model on the same 6,000 test rows; the dotted lines are the
# bounds. The layer trades a little accuracy for a gap that never exceeds its bound.
fig, ax = plt.subplots(figsize=(6.4, 4.2))
ax.scatter(plain_gap, plain_accuracy, s=70, color="tab:gray", label="unconstrained MLP")
gaps = [gap for _, _, gap in results]
accuracies = [accuracy for _, accuracy, _ in results]
ax.plot(gaps, accuracies, "o-", color="tab:blue", label="FairnessLayerClassifier")
for epsilon, accuracy, gap in results:
    ax.axvline(epsilon, color="tab:blue", linestyle=":", linewidth=0.8)
    ax.annotate(
        f"ε={epsilon}", (gap, accuracy), textcoords="offset points", xytext=(6, -12), fontsize=8
    )
ax.set_xlabel("selection-rate gap between women and men (test)")
ax.set_ylabel("accuracy (test)")
ax.set_title("UCI Adult: accuracy vs. demographic parity")
ax.legend(loc="lower right")
fig.tight_layout()
plt.show()
