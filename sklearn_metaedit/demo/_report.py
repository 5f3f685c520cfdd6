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
from pathlib import Path

import numpy as np
import pandas as pd

from . import _figures
from ._editing_figures import (
    break_even,
    editor_summary,
    minimisation_summary,
    plot_accuracy_vs_sparsity,
    plot_edit_time,
    plot_minimisation,
)
from ._figures import _pyplot  # noqa: F401 - the command line checks matplotlib through it

__all__ = [
    "break_even",
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
    plt = _figures._pyplot()
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
    return _figures._save(fig, Path(path))


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
    plt = _figures._pyplot()
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
    return _figures._save(fig, Path(path))


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
