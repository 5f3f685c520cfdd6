"""The demo's report folder: tables and figures in, ``index.html`` and PNG files out.

Pure functions of the demo's DataFrames (:func:`~sklearn_metaedit.demo.compare_fairness_layer`,
:func:`~sklearn_metaedit.demo.run_online_demo`,
:func:`~sklearn_metaedit.demo.online_gap_trajectory`,
:func:`~sklearn_metaedit.demo.run_editor_sweep`,
:func:`~sklearn_metaedit.demo.run_minimisation_comparison`): nothing here fits a model.
The page is self-contained (inline CSS, no scripts, no network); its images are PNG files
beside it, so the folder can be zipped, mailed or served as it is.
"""

from __future__ import annotations

import html
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "editor_summary",
    "minimisation_summary",
    "pareto_front",
    "plot_accuracy_vs_sparsity",
    "plot_edit_time",
    "plot_fairness_pareto",
    "plot_minimisation",
    "plot_online_gap",
    "write_report",
]

FLOAT_FORMAT = "{:.4g}".format
"""How every number of the page's tables is written."""

_ORIGINAL = "original"
_EDITOR = "MetanetEditor"
_PRUNED = "magnitude pruning"
_TUNED = "magnitude pruning + fine-tuning"
_ZEROED = "zero the columns"
_ZEROED_TUNED = "zero the columns + fine-tuning"
_RETRAINED = "retrain without the columns"


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError(
            "the demo's report draws its figures with matplotlib, which is not installed; "
            "install it with `pip install matplotlib` (or `pip install "
            "sklearn_metaedit[demo]`)."
        ) from exc

    # the report is written to files, also on machines with no display
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def pareto_front(accuracy: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both accuracy and gap, by gap.

    Parameters
    ----------
    accuracy, gap : ndarray of shape (n_points,)
        Higher accuracy and lower gap are better.

    Returns
    -------
    front : ndarray of int64
        Indices of the non-dominated points, in increasing gap.

    Examples
    --------
    >>> import numpy as np
    >>> pareto_front(np.array([0.8, 0.85, 0.7, 0.84]), np.array([0.01, 0.2, 0.05, 0.3])).tolist()
    [0, 1]
    """
    accuracy, gap = np.asarray(accuracy, dtype=float), np.asarray(gap, dtype=float)
    order = np.lexsort((-accuracy, gap))
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(int(i))
            best = accuracy[i]
    return np.asarray(front, dtype=np.int64)


def plot_fairness_pareto(
    fairness: pd.DataFrame,
    path: str | Path,
    *,
    epsilon: float,
    online: pd.DataFrame | None = None,
) -> Path:
    """Accuracy against selection-rate gap, every fairness method on one plot.

    Parameters
    ----------
    fairness : DataFrame
        :func:`~sklearn_metaedit.demo.compare_fairness_layer`'s table (columns
        ``method``, ``accuracy``, ``dp_gap``).
    path : str or Path
        The PNG to write.
    epsilon : float
        Drawn as a vertical line: methods to its left meet the constraint.
    online : DataFrame, default=None
        :func:`~sklearn_metaedit.demo.run_online_demo`'s table (index:
        methods; ``accuracy``, ``pooled_gap``), drawn with hollow markers: those methods
        use a different base model (a logistic regression) and decide a stream.

    Returns
    -------
    path : Path
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    acc, gap = fairness["accuracy"].to_numpy(), fairness["dp_gap"].to_numpy()
    colors = plt.get_cmap("tab10")
    for i, (method, a, g) in enumerate(zip(fairness["method"], acc, gap, strict=True)):
        ax.scatter(g, a, s=70, color=colors(i), label=method, zorder=3)
    front = pareto_front(acc, gap)
    ax.step(
        gap[front],
        acc[front],
        where="post",
        color="0.4",
        linewidth=1,
        zorder=2,
        label="Pareto front (batch methods)",
    )
    if online is not None:
        for j, (method, row) in enumerate(online.iterrows()):
            # shrinking sizes keep coinciding streams visible as nested diamonds
            ax.scatter(
                row["pooled_gap"],
                row["accuracy"],
                s=max(30, 130 - 30 * j),
                marker="D",
                facecolors="none",
                edgecolors=colors(len(fairness) + j),
                label=f"stream: {method}",
                zorder=3,
            )
    ax.axvline(epsilon, color="tab:red", linestyle=":", label=f"ε = {epsilon}")
    ax.set_xlabel("selection-rate gap on the test split (lower is fairer)")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs demographic-parity gap")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, Path(path))


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
    plt = _pyplot()
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
    return _save(fig, Path(path))


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
    plt = _pyplot()
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
    return _save(fig, Path(path))


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
    plt = _pyplot()
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
    return _save(fig, Path(path))


def plot_online_gap(trajectory: pd.DataFrame, path: str | Path, *, epsilon: float) -> Path:
    """The pooled selection-rate gap over a stream, with ``epsilon`` and the guarantee.

    Parameters
    ----------
    trajectory : DataFrame
        :func:`~sklearn_metaedit.demo.online_gap_trajectory`'s table
        (``n_decisions``, ``pooled_gap``, ``bound``, ``unconstrained_gap``).
    path : str or Path
        The PNG to write.
    epsilon : float

    Returns
    -------
    path : Path
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.5))
    n = trajectory["n_decisions"]
    ax.plot(n, trajectory["unconstrained_gap"], color="tab:gray", label="unconstrained base model")
    ax.plot(n, trajectory["pooled_gap"], color="tab:blue", label="OnlineFairPredictor")
    # the bound is a ceiling on a gap, which never exceeds 1: above 1 it says nothing, and
    # before every group has a decision there is no gap to bound (the report says 0)
    bound = trajectory["bound"].to_numpy(dtype=float)
    informative = (bound > 0) & (bound < 1)
    if informative.any():
        first = int(np.argmax(informative))
        ax.plot(
            n[first:],
            np.minimum(bound[first:], 1.0),
            color="tab:blue",
            linestyle="--",
            linewidth=1,
            label=f"guaranteed bound (below 1 from decision {int(n.iloc[first])})",
        )
    ax.axhline(epsilon, color="tab:red", linestyle=":", label=f"ε = {epsilon}")
    ax.set_xscale("log")
    # every gap lies in [0, 1]: the whole range, linear up to 0.01 and logarithmic above,
    # so that both the first decisions and the gaps near epsilon can be read
    ax.set_yscale("symlog", linthresh=0.01, linscale=0.5)
    ax.set_ylim(0, 1.0)
    ticks = [0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlim(1, max(2, int(n.max())))
    ax.set_xlabel("decisions so far (batch size 1)")
    ax.set_ylabel("pooled selection-rate gap")
    ax.set_title("Parity over the stream of decisions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, Path(path))


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8em 0 1.4em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; }
"""


def _table(frame: pd.DataFrame, name: str) -> str:
    return frame.to_html(
        index=False, float_format=FLOAT_FORMAT, border=0, table_id=name, escape=True, na_rep="–"
    )


def write_report(
    folder: str | Path,
    *,
    fairness: pd.DataFrame,
    online: pd.DataFrame,
    trajectory: pd.DataFrame,
    sweep: pd.DataFrame,
    epsilon: float,
    minimisation: pd.DataFrame | None = None,
    minimisation_note: str | None = None,
    title: str = "sklearn_metaedit demo",
    details: dict | None = None,
) -> Path:
    """Write ``index.html`` and its PNG figures (four, five with ``minimisation``) into ``folder``.

    Parameters
    ----------
    folder : str or Path
        Created if missing; files of the same names are overwritten.
    fairness : DataFrame
        :func:`~sklearn_metaedit.demo.compare_fairness_layer`'s table.
    online : DataFrame
        :func:`~sklearn_metaedit.demo.run_online_demo`'s table.
    trajectory : DataFrame
        :func:`~sklearn_metaedit.demo.online_gap_trajectory`'s table.
    sweep : DataFrame
        :func:`~sklearn_metaedit.demo.run_editor_sweep`'s table; its
        ``attrs["editor_fit_seconds"]``, if present, is drawn and quoted.
    epsilon : float
        The parity constraint of the fairness methods.
    minimisation : DataFrame, default=None
        :func:`~sklearn_metaedit.demo.run_minimisation_comparison`'s table; its
        ``attrs["forbidden_features"]`` and ``attrs["editor_fit_seconds"]``, if present,
        are quoted. None: the page has no data-minimisation section.
    minimisation_note : str, default=None
        A sentence on which columns were forbidden and why, added to that section.
    title : str, default="sklearn_metaedit demo"
    details : dict, default=None
        How the run was made (data set, size, seed, seconds...), listed under the title.

    Returns
    -------
    index : Path
        The written ``index.html``.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> fairness = pd.DataFrame({"method": ["a", "b"], "accuracy": [0.8, 0.85],
    ...                          "dp_gap": [0.01, 0.2]})
    >>> online = pd.DataFrame({"accuracy": [0.8], "pooled_gap": [0.03]},
    ...                       index=pd.Index(["online"], name="method"))
    >>> trajectory = pd.DataFrame({"n_decisions": [1, 10], "pooled_gap": [0.0, 0.02],
    ...                            "bound": [1.0, 0.5], "unconstrained_gap": [0.0, 0.2]})
    >>> sweep = pd.DataFrame({"network": 0, "method": ["original", "MetanetEditor"],
    ...                       "target": [0.0, 0.9], "accuracy": [0.85, 0.8],
    ...                       "sparsity": [0.0, 0.9], "seconds": [1.0, 0.01]})
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     index = write_report(folder, fairness=fairness, online=online,
    ...                          trajectory=trajectory, sweep=sweep, epsilon=0.05)
    ...     sorted(p.suffix for p in index.parent.iterdir())
    ['.html', '.png', '.png', '.png', '.png']
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fit_seconds = sweep.attrs.get("editor_fit_seconds")
    plot_fairness_pareto(fairness, folder / "fairness_pareto.png", epsilon=epsilon, online=online)
    plot_accuracy_vs_sparsity(sweep, folder / "accuracy_vs_sparsity.png")
    plot_edit_time(sweep, folder / "edit_time.png", editor_fit_seconds=fit_seconds)
    plot_online_gap(trajectory, folder / "online_gap.png", epsilon=epsilon)
    minimisation_section = ""
    if minimisation is not None:
        minimisation_section = _minimisation_section(minimisation, folder, minimisation_note)

    fairness_shown = fairness.drop(columns=[c for c in ("task", "epsilon") if c in fairness])
    final = trajectory.iloc[-1]
    fit_note = (
        f" The editor trained once, in {fit_seconds:.3g} s, and served every sparsity."
        if fit_seconds is not None
        else ""
    )
    listing = "".join(
        f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
        for k, v in (details or {}).items()
    )
    e = html.escape
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{e(title)}</h1>
<ul class="note">{listing}</ul>

<h2>Fairness: accuracy vs parity gap</h2>
<p>Every method is fitted on the training split and predicts the whole test split as one
batch; <code>dp_gap</code> is the largest minus the smallest selection rate over the groups
(fairlearn's <code>demographic_parity_difference</code>). Methods left of the dotted line meet
ε = {epsilon}. Hollow diamonds: the streaming methods below (a logistic-regression base model,
decisions one at a time).</p>
<img src="fairness_pareto.png" alt="accuracy vs parity gap">
{_table(fairness_shown, "fairness")}

<h2>Online decisions over the test stream</h2>
<p>The test rows arrive in a shuffled order and are decided one at a time;
<code>pooled_gap</code> is the gap of all decisions of the stream. The dashed line is the
ceiling that OnlineFairPredictor guarantees for the decisions made so far, whatever their
order; after {int(final["n_decisions"])} decisions the pooled gap is
{FLOAT_FORMAT(final["pooled_gap"])} against a bound of {FLOAT_FORMAT(final["bound"])}.</p>
<img src="online_gap.png" alt="pooled gap over the stream">
{_table(online.reset_index(), "online")}

<h2>Editing: accuracy vs sparsity</h2>
<p>Held-out networks (never seen by the editor in training) pruned to each sparsity by
one-shot global magnitude pruning, by magnitude pruning plus fine-tuning, and by the
MetanetEditor's forward pass; means over the networks, with their min and max.{fit_note}</p>
<img src="accuracy_vs_sparsity.png" alt="accuracy vs sparsity">
{_table(editor_summary(sweep), "editor_summary")}

<h2>Editing: time per network</h2>
<p>Seconds to produce each pruned network, on a log axis.</p>
<img src="edit_time.png" alt="edit time vs fine-tuning time">
<details><summary>Every held-out network and sparsity</summary>
{_table(sweep, "editor_sweep")}
</details>
{minimisation_section}
</body></html>
"""
    index = folder / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def _minimisation_section(table: pd.DataFrame, folder: Path, note: str | None) -> str:
    """The page's data-minimisation section; writes its figure into ``folder``."""
    fit_seconds = table.attrs.get("editor_fit_seconds")
    plot_minimisation(table, folder / "minimisation.png", editor_fit_seconds=fit_seconds)
    forbidden = table.attrs.get("forbidden_features")
    e = html.escape
    # the columns are named once: in the note, which the demo writes, else here
    if forbidden is None:
        columns = ""
    elif note and all(name in note for name in forbidden):
        columns = f" ({len(forbidden)})"
    else:
        columns = f" ({len(forbidden)}: {e(', '.join(forbidden))})"
    fit_note = (
        f"trained once, on the rest of the population, in {fit_seconds:.3g} s"
        if fit_seconds is not None
        else "trained once on the rest of the population"
    )
    return f"""
<h2>Editing: data minimisation</h2>
<p>The held-out networks of the sparsity comparison, made blind to the forbidden input
columns{columns}: by zeroing the columns' first-layer weights, by zeroing them and
fine-tuning with them held at zero, by training the same architecture from scratch without
them (the population's schedule), and by a <code>MetanetEditor("data_minimisation")</code>
{fit_note}. {e(note or "")}</p>
<p><code>forbidden_columns_used</code> is the largest number of forbidden columns that any
of a method's networks reads (a column is read when one of its first-layer weights is not
zero); every method but the original must show 0. <code>accuracy</code> is the mean test
accuracy over the networks, <code>accuracy_min</code> the worst of them, and
<code>seconds</code> the time to produce one network (none for the original, which the
others start from). In the figure, the left panel is each network's accuracy minus
that of the original it was made from, in points; the right panel the seconds per network
on a log axis, with the editor's one-off training as a dashed line.</p>
<img src="minimisation.png" alt="accuracy and time per network of the data-minimisation methods">
{_table(minimisation_summary(table), "minimisation_summary")}
<details><summary>Every held-out network</summary>
{_table(table, "minimisation")}
</details>"""
