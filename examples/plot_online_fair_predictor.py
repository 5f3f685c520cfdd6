"""
===========================================================
Parity over a stream of decisions with OnlineFairPredictor
===========================================================

A deployed model decides requests as they arrive, and parity is measured on *all* the
decisions made so far. :class:`~sklearn_metaedit.OnlineFairPredictor` wraps any
classifier with ``predict_proba`` and keeps the pooled selection-rate gap of the stream
within ``epsilon`` up to a term that vanishes as :math:`O(1/N)`, for any batch size and
any drift of the group proportions (see :ref:`online`).

Here the base model is a logistic regression fitted on a slice of UCI Adult (bundled,
CC BY 4.0), and the stream is drawn from Adult's test split with a drift: nine in ten
of the first requests come from men, most of the later ones from women.
"""

# %%
# A base model and a drifting stream
# ----------------------------------
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from sklearn_metaedit import OnlineFairPredictor
from sklearn_metaedit.datasets import load_adult, make_preprocessor
from sklearn_metaedit.metrics import selection_rate_gap

train, test = load_adult(split="train"), load_adult(split="test")
rng = np.random.default_rng(0)
train_rows = rng.choice(len(train.target), 8000, replace=False)
X_train = train.data.iloc[train_rows]
y_train = train.target.to_numpy()[train_rows]
sex_train = train.sensitive["sex"].to_numpy()[train_rows]

sex = test.sensitive["sex"].to_numpy()
men, women = np.flatnonzero(sex == "Male"), np.flatnonzero(sex == "Female")
men, women = rng.permutation(men), rng.permutation(women)
# First 3,000 requests: 90% men. Next 3,000: 30% men.
first = rng.permutation(np.concatenate([men[:2700], women[:300]]))
second = rng.permutation(np.concatenate([men[2700:3600], women[300:2400]]))
stream = np.concatenate([first, second])
X_stream = test.data.iloc[stream]
y_stream = test.target.to_numpy()[stream]
sex_stream = sex[stream]

base = make_pipeline(make_preprocessor(drop=("sex", "race")), LogisticRegression(max_iter=500))
epsilon = 0.03
online = OnlineFairPredictor(base, epsilon=epsilon)
online.fit(X_train, y_train, sensitive_features=sex_train)

# %%
# Deciding the stream
# -------------------
# Requests arrive in batches of 25 here; the decisions are those that batches of one
# would get, since rows are decided in order. After each batch the report gives the
# pooled gap so far and the bound the guarantee allows for the decisions made.
batch_size = 25
decisions, seen, pooled_gaps, bounds = [], [], [], []
for start in range(0, len(stream), batch_size):
    rows = slice(start, start + batch_size)
    decisions.append(online.partial_predict(X_stream[rows], sensitive_features=sex_stream[rows]))
    report = online.report()
    seen.append(report.n_decisions)
    pooled_gaps.append(report.pooled_gap)
    bounds.append(report.bound)
decisions = np.concatenate(decisions)
print(report)

# The unconstrained decisions of the same base model, and their running gap.
unconstrained = online.estimator_.predict(X_stream)
unconstrained_gaps = [
    selection_rate_gap(unconstrained[:n], sensitive_features=sex_stream[:n]) for n in seen
]
online_accuracy = float((decisions == y_stream).mean())
unconstrained_accuracy = float((unconstrained == y_stream).mean())
print(
    f"accuracy: online {online_accuracy:.3f}, unconstrained {unconstrained_accuracy:.3f}; "
    f"final pooled gap: online {pooled_gaps[-1]:.4f}, unconstrained {unconstrained_gaps[-1]:.4f}"
)

# %%
# The pooled gap over the stream
# ------------------------------
# The online decisions stay under the guaranteed bound at every point of the stream, and
# the bound itself falls below ``epsilon`` by the end of the stream, once each group
# has a couple of thousand decisions. Early on, with a handful of women decided, any
# gap is possible; then the unconstrained model's gap settles near 0.2, while the
# online decisions stay within ``epsilon``, through the drift at decision 3,000 too.
fig, ax = plt.subplots(figsize=(6.4, 4.8))
ax.plot(seen, unconstrained_gaps, color="tab:gray", label="unconstrained base model")
ax.plot(seen, pooled_gaps, color="tab:blue", label="OnlineFairPredictor")
ax.plot(seen, bounds, color="tab:blue", linestyle="--", linewidth=1, label="guaranteed bound")
ax.axhline(epsilon, color="tab:red", linestyle=":", label=f"ε = {epsilon}")
ax.axvline(3000, color="black", linewidth=0.6, alpha=0.5)
ax.annotate("drift", (3000, 0.27), textcoords="offset points", xytext=(-28, 0), fontsize=8)
ax.set_xscale("log")
ax.set_ylim(0, 0.3)
ax.set_xlabel("decisions so far")
ax.set_ylabel("pooled selection-rate gap (women vs. men)")
ax.set_title("A drifting Adult stream, decided online")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9)
fig.tight_layout()
plt.show()
