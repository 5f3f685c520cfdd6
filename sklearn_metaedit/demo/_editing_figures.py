"""The report's editing figures and summaries: accuracy against sparsity, the time per
network with the editor's break-even, and the data-minimisation comparison."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from . import _figures
from ._figures import _EDITOR, _ORIGINAL, _PRUNED, _RETRAINED, _TUNED, _ZEROED, _ZEROED_TUNED


def _tuned_label(method: str, table: pd.DataFrame) -> str:
    """A fine-tuning method's name with its number of epochs, where the table records it."""
    epochs = table.attrs.get("fine_tune_epochs")
    if method not in (_TUNED, _ZEROED_TUNED) or epochs is None:
        return method
    return f"{method} ({epochs} epoch{'s' if epochs != 1 else ''})"


def break_even(fit_seconds: float, edit_seconds: float, other_seconds: float) -> int | None:
    """The number of networks from which training the editor once and editing each costs less.

    Against another method that takes ``other_seconds`` per network: the smallest ``n`` with
    ``fit_seconds + n * edit_seconds <= n * other_seconds``; None when the other method is
    not slower per network.

    Examples
    --------
    >>> break_even(30.0, 0.01, 0.61)
    50
    >>> break_even(30.0, 0.5, 0.2) is None
    True
    """
    saved = other_seconds - edit_seconds
    if not saved > 0:
        return None
    return max(1, int(np.ceil(fit_seconds / saved - 1e-9)))


def editor_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean test accuracy and seconds over the held-out networks, per method and target.

    Parameters
    ----------
    sweep : DataFrame
        :func:`~sklearn_metaedit.demo.run_editor_sweep`'s table.

    Returns
    -------
    summary : DataFrame
        Columns ``method``, ``target``, ``accuracy``, ``accuracy_min``, ``accuracy_max``,
        ``sparsity``, ``seconds`` (means over networks, except min and max; no seconds
        for the original, which the methods start from).

    Examples
    --------
    >>> import pandas as pd
    >>> sweep = pd.DataFrame({"network": [0, 1], "method": "MetanetEditor", "target": 0.9,
    ...                       "accuracy": [0.8, 0.9], "sparsity": 0.9, "seconds": 0.01})
    >>> editor_summary(sweep)[["accuracy", "accuracy_min"]].round(2).values.tolist()
    [[0.85, 0.8]]
    """
    grouped = sweep.groupby(["method", "target"], sort=False)
    summary = grouped.agg(
        accuracy=("accuracy", "mean"),
        accuracy_min=("accuracy", "min"),
        accuracy_max=("accuracy", "max"),
        sparsity=("sparsity", "mean"),
        seconds=("seconds", "mean"),
    )
    # the original is what the methods start from, not one of them: no time to make it
    summary.loc[summary.index.get_level_values("method") == _ORIGINAL, "seconds"] = np.nan
    return summary.reset_index()


def plot_accuracy_vs_sparsity(sweep: pd.DataFrame, path: str | Path) -> Path:
    """Test accuracy against the fraction of zero weights, per pruning method.

    Points are means over the held-out networks at the sparsities measured, bars span
    their min and max; no line joins them, as nothing was measured in between.

    Parameters
    ----------
    sweep : DataFrame
        :func:`~sklearn_metaedit.demo.run_editor_sweep`'s table.
    path : str or Path
        The PNG to write.

    Returns
    -------
    path : Path
    """
    plt = _figures._pyplot()
    summary = editor_summary(sweep)
    fig, ax = plt.subplots(figsize=(6.4, 4.5))
    original = summary[summary["method"] == _ORIGINAL]
    if len(original):
        ax.axhline(
            original["accuracy"].iloc[0],
            color="0.3",
            linestyle="--",
            label="original (sparsity 0)",
        )
    styles = {_PRUNED: ("tab:gray", "s"), _TUNED: ("tab:orange", "^"), _EDITOR: ("tab:blue", "o")}
    # points at the sparsities measured, no lines between them: nothing was measured there
    for method, (color, marker) in styles.items():
        part = summary[summary["method"] == method].sort_values("sparsity")
        if not len(part):
            continue
        ax.errorbar(
            part["sparsity"],
            part["accuracy"],
            # a mean of equal values can differ from them in the last bit
            yerr=[
                np.maximum(part["accuracy"] - part["accuracy_min"], 0.0),
                np.maximum(part["accuracy_max"] - part["accuracy"], 0.0),
            ],
            color=color,
            marker=marker,
            markersize=6,
            capsize=3,
            linestyle="none",
            label=_tuned_label(method, sweep),
        )
    targets = sorted(summary.loc[summary["method"] != _ORIGINAL, "target"].unique())
    if targets:
        ax.set_xticks(targets, [f"{t:g}" for t in targets])
    n = sweep["network"].nunique()
    ax.set_xlabel("sparsity (fraction of weights that are exactly zero)")
    ax.set_ylabel("test accuracy")
    ax.set_title(
        f"Accuracy vs sparsity ({n} held-out network{'s' if n != 1 else ''}; "
        "points: mean, bars: min to max)",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _figures._save(fig, Path(path))


def plot_edit_time(
    sweep: pd.DataFrame, path: str | Path, *, editor_fit_seconds: float | None = None
) -> Path:
    """Seconds to make each held-out network sparse, on a log axis.

    Per network, one bar per method: the editor's forward pass, one-shot magnitude
    pruning, and magnitude pruning followed by fine-tuning. Bars are medians over the
    target sparsities; the dots are the individual sparsities. With the editor's training
    time, the title gives the break-even: the number of networks from which training the
    editor once and editing each costs less than fine-tuning each (:func:`break_even`).

    Parameters
    ----------
    sweep : DataFrame
        :func:`~sklearn_metaedit.demo.run_editor_sweep`'s table.
    path : str or Path
        The PNG to write.
    editor_fit_seconds : float, default=None
        The editor's one-off training time, drawn as a horizontal line.

    Returns
    -------
    path : Path
    """
    plt = _figures._pyplot()
    methods = [m for m in (_EDITOR, _PRUNED, _TUNED) if m in set(sweep["method"])]
    colors = {_EDITOR: "tab:blue", _PRUNED: "tab:gray", _TUNED: "tab:orange"}
    networks = sorted(sweep["network"].unique())
    width = 0.8 / max(1, len(methods))
    fig, ax = plt.subplots(figsize=(6.4, 4.5))
    for k, method in enumerate(methods):
        part = sweep[sweep["method"] == method]
        offset = (k - (len(methods) - 1) / 2) * width
        medians = [part.loc[part["network"] == n, "seconds"].median() for n in networks]
        x = np.arange(len(networks)) + offset
        ax.bar(
            x,
            medians,
            width=width,
            color=colors[method],
            alpha=0.75,
            label=_tuned_label(method, sweep),
        )
        for i, n in enumerate(networks):
            seconds = part.loc[part["network"] == n, "seconds"].to_numpy()
            ax.scatter(np.full(len(seconds), x[i]), seconds, color="black", s=8, zorder=3)
    if editor_fit_seconds is not None:
        ax.axhline(
            editor_fit_seconds,
            color="tab:blue",
            linestyle="--",
            linewidth=1,
            label=f"editor training, once ({editor_fit_seconds:.3g} s)",
        )
    ax.set_yscale("log")
    ax.set_xticks(np.arange(len(networks)), [f"network {n}" for n in networks])
    ax.set_ylabel("seconds (log scale)")
    title = (
        "Time to prune a held-out network\n(bars: median over the target sparsities; dots: each)"
    )
    if editor_fit_seconds is not None and _TUNED in methods and _EDITOR in methods:
        edit = sweep.loc[sweep["method"] == _EDITOR, "seconds"].median()
        tune = sweep.loc[sweep["method"] == _TUNED, "seconds"].median()
        n_even = break_even(editor_fit_seconds, edit, tune)
        title += (
            f"\nbreak-even against fine-tuning: training the editor once pays off from "
            f"{n_even} network{'s' if n_even != 1 else ''}"
            if n_even is not None
            else "\nfine-tuning is faster per network: the editor never pays off on time"
        )
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.86))
    return _figures._save(fig, Path(path))


def minimisation_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy, forbidden columns read and seconds per method, over the held-out networks.

    Parameters
    ----------
    table : DataFrame
        :func:`~sklearn_metaedit.demo.run_minimisation_comparison`'s table.

    Returns
    -------
    summary : DataFrame
        Columns ``method``, ``accuracy`` (mean), ``accuracy_min``,
        ``forbidden_columns_used`` (the most that any of the method's networks reads:
        0 means none of them reads a forbidden column) and ``seconds`` (mean per
        network; NaN for the original, which the methods start from), one row per
        method in the table's order.

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"network": [0, 1, 0, 1],
    ...                       "method": ["original"] * 2 + ["MetanetEditor"] * 2,
    ...                       "accuracy": [0.85, 0.83, 0.84, 0.80],
    ...                       "forbidden_columns_used": [3, 2, 0, 0],
    ...                       "seconds": [1.0, 1.0, 0.02, 0.01]})
    >>> minimisation_summary(table)[["method", "accuracy_min", "forbidden_columns_used"]]
              method  accuracy_min  forbidden_columns_used
    0       original          0.83                       3
    1  MetanetEditor          0.80                       0
    """
    grouped = table.groupby("method", sort=False)
    summary = grouped.agg(
        accuracy=("accuracy", "mean"),
        accuracy_min=("accuracy", "min"),
        forbidden_columns_used=("forbidden_columns_used", "max"),
        seconds=("seconds", "mean"),
    )
    # the original is what the methods start from, not one of them: no time to make it
    summary.loc[summary.index == _ORIGINAL, "seconds"] = np.nan
    return summary.reset_index()


def plot_minimisation(
    table: pd.DataFrame, path: str | Path, *, editor_fit_seconds: float | None = None
) -> Path:
    """Accuracy change and seconds per network of each way to stop reading forbidden columns.

    Two panels sharing the methods. On the left, each network's test accuracy minus that
    of the original network it was made from, in percentage points: bars are means over
    the held-out networks, dots the networks. On the right, the seconds to produce each
    network, on a log axis (bars: medians; none for the original, which takes no time to
    make). Each method's label gives its mean test accuracy and the most forbidden columns
    any of its networks reads.

    Parameters
    ----------
    table : DataFrame
        :func:`~sklearn_metaedit.demo.run_minimisation_comparison`'s table.
    path : str or Path
        The PNG to write.
    editor_fit_seconds : float, default=None
        The editor's one-off training time, drawn as a vertical line on the time panel.

    Returns
    -------
    path : Path
    """
    plt = _figures._pyplot()
    summary = minimisation_summary(table)
    forbidden = list(table.attrs.get("forbidden_features", ()))
    colors = {
        _ORIGINAL: "0.35",
        _ZEROED: "tab:gray",
        _ZEROED_TUNED: "tab:orange",
        _RETRAINED: "tab:green",
        _EDITOR: "tab:blue",
    }
    original = table[table["method"] == _ORIGINAL].set_index("network")["accuracy"]
    # paired with the network each one was made from: the networks differ more from one
    # another than the methods do
    change = 100 * (table["accuracy"] - table["network"].map(original))
    methods = list(summary["method"])
    y = np.arange(len(methods))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(9.6, 0.55 * len(methods) + 2.4), sharey=True, width_ratios=(3, 2)
    )
    for i, row in summary.iterrows():
        color = colors.get(row["method"], f"C{i}")
        rows = table["method"] == row["method"]
        left.barh(y[i], change[rows].mean(), color=color, alpha=0.75, height=0.6)
        left.scatter(change[rows], np.full(rows.sum(), y[i]), color="black", s=10, zorder=3)
        if row["method"] == _ORIGINAL:
            # the original is what the others start from: it takes no time to make
            continue
        # the median, which sits among the dots on a log axis where a mean need not
        right.barh(y[i], table.loc[rows, "seconds"].median(), color=color, alpha=0.75, height=0.6)
        right.scatter(
            table.loc[rows, "seconds"], np.full(rows.sum(), y[i]), color="black", s=10, zorder=3
        )
    low, high = min(change.min(), 0.0), max(change.max(), 0.0)
    margin = 0.12 * max(high - low, 0.05)
    left.set_xlim(low - margin, high + margin)
    left.axvline(0, color="0.3", linewidth=0.8)
    of = f" of {len(forbidden)}" if forbidden else ""
    labels = [
        f"{_tuned_label(row.method, table)}\naccuracy {row.accuracy:.4f}, "
        f"reads {row.forbidden_columns_used}{of} "
        "forbidden"
        for row in summary.itertuples()
    ]
    left.set_yticks(y, labels, fontsize=8)
    left.invert_yaxis()
    n = table["network"].nunique()
    left.set_xlabel(
        f"test accuracy minus the original's (points)\nbars: mean of {n} held-out "
        f"network{'s' if n != 1 else ''}; dots: each"
    )
    left.grid(axis="x", alpha=0.3)
    if editor_fit_seconds is not None:
        right.axvline(
            editor_fit_seconds,
            color="tab:blue",
            linestyle="--",
            linewidth=1,
            label=f"editor training, once ({editor_fit_seconds:.3g} s)",
        )
        right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    right.set_xscale("log")
    right.set_xlabel("seconds per network (log scale)\nbars: median; dots: each")
    right.grid(axis="x", alpha=0.3)
    title = "Data minimisation: held-out networks made blind to the forbidden columns"
    if forbidden:
        title += "\n" + textwrap.fill(
            f"forbidden: {', '.join(forbidden)}",
            width=130,
            break_on_hyphens=False,
            break_long_words=False,
        )
    fig.suptitle(title, fontsize=10)
    return _figures._save(fig, Path(path))
