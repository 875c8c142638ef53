"""The paper's figures, each from a tidy table (the same table DVC shows as a plot)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.lines  # noqa: E402
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from llome.io import atomic_path  # noqa: E402


class MethodStyle(NamedTuple):
    label: str
    color: str | None
    linestyle: str | tuple
    marker: str


# Each method differs from the others in line style or marker as well as in colour, so that they read apart in
# grey print: the LLOME variants are solid and told apart by marker, the two GAs dash-dotted (the sweep's with two
# dots), LaMBO-2 dashed and the prompted LLM dotted. The order here is the order of every legend.
DASH_DOT_DOT = (0, (6, 1.5, 1, 1.5, 1, 1.5))
METHOD_STYLE = {
    "ga_paper": MethodStyle("GA, authors' settings", "#444444", "-.", "D"),
    "ga_swept": MethodStyle("GA, best of a sweep", "#999999", DASH_DOT_DOT, "v"),
    "llome_sft": MethodStyle("LLOME-SFT", "#1f77b4", "-", "o"),
    "llome_marge": MethodStyle("LLOME-MargE", "#d62728", "-", "s"),
    "llome_dpo": MethodStyle("LLOME-DPO", "#2ca02c", "-", "^"),
    "lambo2": MethodStyle("LaMBO-2", "#9467bd", "--", "P"),
    "prompted": MethodStyle("Prompted LLM", "#ff7f0e", ":", "X"),
    # The claims study's capacity check (6-layer, hidden-128 model): MargE's family, darker, dashed, a diamond.
    "llome_marge_6x128": MethodStyle("LLOME-MargE 6×128", "#8c1c13", "--", "d"),
}


def _style(method: str) -> MethodStyle:
    return METHOD_STYLE.get(method, MethodStyle(method, None, "-", "o"))


def _label(method: str) -> str:
    return _style(method).label


def _color(method: str):
    return _style(method).color


def _linestyle(method: str) -> str | tuple:
    return _style(method).linestyle


def _marker(method: str) -> str:
    return _style(method).marker


def _in_legend_order(methods) -> list[str]:
    """The distinct methods, known ones in METHOD_STYLE's order and any other after them as they come."""
    known = list(METHOD_STYLE)
    distinct = list(dict.fromkeys(methods))
    return sorted(distinct, key=lambda m: (known.index(m) if m in known else len(known), distinct.index(m)))


def _save(fig, path: Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def regret_bands(on_grid: pd.DataFrame) -> pd.DataFrame:
    """Median with min–max over seeds."""
    return (on_grid.groupby(["method", "oracle_calls"], as_index=False)["regret"]
            .agg(median="median", low="min", high="max"))


def regret_zoom_limits(per_seed: pd.DataFrame, first_call: int, last_call: int,
                       methods: list[str] | None = None) -> tuple[float, float]:
    """Regret limits that hold every run of `methods` (all, if None) between `first_call` and `last_call`, with a
    little margin."""
    window = per_seed[per_seed["oracle_calls"].between(first_call, last_call)]
    if methods is not None:
        window = window[window["method"].isin(methods)]
    regret = window["regret"].dropna()
    if regret.empty:
        return -0.02, 1.02
    low, high = float(regret.min()), float(regret.max())
    # Wide enough that a thick line on the extreme level is not cut in half by the frame.
    margin = max(0.015, 0.1 * (high - low))
    return max(-0.02, low - margin), min(1.02, high + margin)


def _drawing_order(methods: list[str]) -> list[str]:
    """Solid lines first: a dashed or dotted line drawn over a solid one on the same level leaves both visible."""
    return sorted(methods, key=lambda m: _linestyle(m) != "-")


def regret_figure(bands: pd.DataFrame, per_seed: pd.DataFrame, function_name: str, seed_data_calls: int,
                  last_call: int, from_seed_data: list[str] | None = None):
    """Left, the whole run: median and min–max band per method. Right, the LLOME phase, from the end of the GA
    seed data to `last_call`: the median thick and every seed's run thin, on a regret axis fitted to the runs of
    `from_seed_data` (the methods that start from the seed data; all methods if None). A method whose median
    ends outside that axis is named at the panel's edge with its final median.

    `bands` is regret_bands' table; `per_seed` is the regret_on_grid table it was reduced from (method, seed).
    """
    fig, (whole, phase) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.2]})
    low, high = regret_zoom_limits(per_seed, seed_data_calls, last_call, from_seed_data)
    legend_methods = _in_legend_order(bands["method"])
    for method in _drawing_order(legend_methods):
        rows = bands[bands["method"] == method]
        # Markers staggered per method, so that two methods on the same level still show both.
        markers = dict(marker=_marker(method), markersize=4.5,
                       markevery=(0.015 * legend_methods.index(method), 0.12))
        whole.step(rows["oracle_calls"], rows["median"], where="post", color=_color(method), lw=2,
                   ls=_linestyle(method), label=_label(method), **markers)
        whole.fill_between(rows["oracle_calls"], rows["low"], rows["high"], step="post", alpha=0.15, lw=0,
                           color=_color(method))
        for seed, run in per_seed[per_seed["method"] == method].groupby("seed"):
            phase.step(run["oracle_calls"], run["regret"], where="post", color=_color(method), lw=0.8, alpha=0.6,
                       ls=_linestyle(method), gid=f"seed {method} {seed}")
        phase.step(rows["oracle_calls"], rows["median"], where="post", color=_color(method), lw=2.2,
                   ls=_linestyle(method), gid=f"median {method}", **markers)

    # Each method's last drawn median and where it is: a method whose runs all ended early ends before last_call.
    finals = {}
    for method, rows in bands[bands["oracle_calls"] <= last_call].groupby("method"):
        drawn = rows.dropna(subset=["median"]).sort_values("oracle_calls")
        if len(drawn):
            finals[method] = (float(drawn["median"].iloc[-1]), int(drawn["oracle_calls"].iloc[-1]))
    below = [m for m in legend_methods if m in finals and finals[m][0] < low]
    above = [m for m in legend_methods if m in finals and finals[m][0] > high]
    for side, methods, arrow, y, step in (("below", below, "↓", 0.02, 0.07), ("above", above, "↑", 0.9, -0.07)):
        for row, method in enumerate(methods):
            median, at_call = finals[method]
            phase.annotate(f"{arrow} {_label(method)}: median {median:.2f} at {at_call:,} calls, {side} "
                           "this panel", (0.01, y + step * row), xycoords="axes fraction", fontsize=8,
                           gid=f"off-panel {method}",
                           bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85))

    whole.set_ylim(-0.02, 1.02)
    whole.axvline(seed_data_calls, color="grey", ls=":", lw=1)
    whole.annotate("end of GA seed data", (seed_data_calls, 0.0), xytext=(-4, 4), textcoords="offset points",
                   ha="right", fontsize=8, color="grey")
    # Where the right panel's window lies in the whole run.
    whole.add_patch(matplotlib.patches.Rectangle((seed_data_calls, low), last_call - seed_data_calls, high - low,
                                                 fill=False, ec="black", lw=1, ls="--", zorder=4))
    whole.annotate("shown at right", (last_call, high), xytext=(-2, 3), textcoords="offset points", ha="right",
                   va="bottom", fontsize=8)
    whole.set_title("Whole run: median over seeds, band = min–max", fontsize=10)

    phase.set_xlim(seed_data_calls, last_call)
    phase.set_ylim(low, high)
    phase.set_title(f"After the GA seed data ({seed_data_calls:,} calls): median thick, each seed thin", fontsize=10)
    for ax in (whole, phase):
        ax.set_xlabel("cumulative oracle calls")
        ax.grid(alpha=0.3)
    whole.set_ylabel("regret  (1 − best f so far)")

    handles, labels = whole.get_legend_handles_labels()
    order = [labels.index(_label(m)) for m in legend_methods]
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    handles.append(matplotlib.lines.Line2D([], [], color="black", lw=0.8, alpha=0.6))
    labels.append("one seed's run (right)")
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=9, frameon=False, bbox_to_anchor=(0.5, -0.01))
    fig.suptitle(f"Regret vs oracle calls on {function_name}")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_regret(bands: pd.DataFrame, per_seed: pd.DataFrame, function_name: str, seed_data_calls: int,
                last_call: int, path: Path, from_seed_data: list[str] | None = None) -> Path:
    return _save(regret_figure(bands, per_seed, function_name, seed_data_calls, last_call, from_seed_data), path)


def per_round_medians(rounds: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    present = [c for c in columns if c in rounds.columns]
    return rounds.groupby(["method", "round"], as_index=False)[present].median()


def per_round_spread(rounds: pd.DataFrame, column: str) -> pd.DataFrame:
    """Median, min and max over seeds of one per-round column, per method and round."""
    return (rounds.groupby(["method", "round"], as_index=False)[column]
            .agg(median="median", low="min", high="max"))


def round_panels_figure(rounds: pd.DataFrame, panels: list[tuple[str, str]], title: str, ylim01: bool = True):
    """One panel per (column, label) of `rounds` (one row per method, seed and round): per method, the median over
    seeds as a line with markers and the min–max over seeds as a band around it."""
    panels = [(c, label) for c, label in panels if c in rounds.columns]
    methods = _in_legend_order(rounds["method"])
    ncols = 3
    nrows = max(1, int(np.ceil(len(panels) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (column, label) in zip(axes.flat, panels):
        spread = per_round_spread(rounds, column)
        for method in _drawing_order(methods):
            rows = spread[spread["method"] == method]
            ax.fill_between(rows["round"], rows["low"], rows["high"], color=_color(method), alpha=0.15, lw=0,
                            gid=f"band {method}")
            ax.plot(rows["round"], rows["median"], marker=_marker(method), markersize=5, label=_label(method),
                    color=_color(method), ls=_linestyle(method), gid=f"median {method}")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if column.endswith("temperature"):
            # From 0, so a constant temperature reads as constant rather than as noise around it.
            ax.set_ylim(0.0, max(2.0, float(spread["high"].max()) + 0.2))
        elif ylim01 and not column.endswith("distance"):
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    order = [labels.index(_label(m)) for m in methods if _label(m) in labels]
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    handles.append(matplotlib.patches.Patch(color="grey", alpha=0.3, lw=0))
    labels.append("min–max over seeds")
    # Below the panels, where it covers no data.
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    seeds = rounds.groupby("method")["seed"].nunique()
    counted = f"{seeds.min()}" if seeds.min() == seeds.max() else f"{seeds.min()}–{seeds.max()}"
    fig.suptitle(f"{title}\nline = median over {counted} seeds, band = min–max over them")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_round_panels(rounds: pd.DataFrame, panels: list[tuple[str, str]], title: str, path: Path,
                      ylim01: bool = True) -> Path:
    return _save(round_panels_figure(rounds, panels, title, ylim01), path)


def binned_means(loglik: pd.Series, reward: pd.Series, bins: int = 10) -> pd.DataFrame:
    """Mean reward in each of `bins` equal-count bins of log-likelihood, with a normal 95% interval of the mean.

    One row per bin, in order of log-likelihood: its median log-likelihood, the mean reward and the interval's
    low and high ends, and its count. Ties can merge bins, so there may be fewer than `bins`.
    """
    table = pd.DataFrame({"loglik": np.asarray(loglik, dtype=float), "reward": np.asarray(reward, dtype=float)})
    table = table.dropna()
    if table.empty:
        return pd.DataFrame(columns=["loglik", "mean", "low", "high", "count"])
    table["bin"] = pd.qcut(table["loglik"].rank(method="first"), min(bins, len(table)), labels=False)
    grouped = table.groupby("bin")
    means = grouped["reward"].mean()
    half_width = 1.96 * grouped["reward"].std(ddof=1).fillna(0.0) / np.sqrt(grouped.size())
    return pd.DataFrame({"loglik": grouped["loglik"].median(), "mean": means, "low": means - half_width,
                         "high": means + half_width, "count": grouped.size()}).reset_index(drop=True)


def calibration_figure(table: pd.DataFrame, correlations: dict, function_name: str):
    """Per method, a column: above, every labelled candidate's log-likelihood against its reward, faint, as there
    are thousands; below, the mean reward per tenth of the candidates by log-likelihood, with its 95% interval."""
    methods = _in_legend_order(table["method"])
    ncols = max(1, len(methods))
    fig, axes = plt.subplots(2, ncols, figsize=(4.3 * ncols, 6.4), squeeze=False, sharex="col",
                             gridspec_kw={"height_ratios": [1.2, 1]})
    for column, method in enumerate(methods):
        points, means = axes[0, column], axes[1, column]
        rows = table[table["method"] == method]
        # Rasterised: thousands of points as vectors would only slow any vector copy of the figure.
        points.scatter(rows["loglik"], rows["reward"], s=5, alpha=0.15, lw=0, color=_color(method), rasterized=True)
        rho = correlations.get(method, float("nan"))
        points.set_title(f"{_label(method)}  (Spearman ρ = {rho:.2f}, n = {len(rows)})", fontsize=10)
        binned = binned_means(rows["loglik"], rows["reward"])
        means.errorbar(binned["loglik"], binned["mean"], yerr=[binned["mean"] - binned["low"],
                                                               binned["high"] - binned["mean"]],
                       color=_color(method), marker=_marker(method), ms=5, capsize=3, ls=_linestyle(method),
                       gid=f"binned {method}")
        means.set_xlabel("length-normalised log-likelihood (nats/token)")
        for ax in (points, means):
            ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("reward  max(f(y) − f(x), 0)\none point per labelled candidate")
    axes[1, 0].set_ylabel("mean reward per tenth\nby log-likelihood (95% interval)")
    for ax in axes[1, 1:]:
        ax.sharey(axes[1, 0])
    for ax in axes[0, 1:]:
        ax.sharey(axes[0, 0])
    fig.suptitle(f"Calibration on {function_name}: model likelihood vs true reward of labelled candidates")
    fig.tight_layout()
    return fig


def plot_calibration(table: pd.DataFrame, correlations: dict, function_name: str, path: Path) -> Path:
    return _save(calibration_figure(table, correlations, function_name), path)


def difficulty_figure(difficulty: pd.DataFrame, ga: pd.DataFrame | None):
    """Left, the exact feasible and optimal fractions of each instance, as log10 bars; a fraction that was not
    computed (NaN) gets no bar, which would read as a fraction of 1, but a "not computed" mark. Right, the GA's
    oracle calls to reach f = 1 per seed."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.55 * len(difficulty) + 2.2))
    names = difficulty["name"].tolist()
    y = np.arange(len(names))
    # Hatched as well as coloured, so the two bars of an instance read apart in grey print.
    for column, offset, label, color, hatch in (("log10_feasible_fraction", -0.2, "feasible", "#1f77b4", None),
                                                ("log10_optimal_fraction", 0.2, "optimal (f = 1)", "#d62728", "//")):
        fraction = pd.to_numeric(difficulty[column], errors="coerce")
        computed = fraction.notna().to_numpy()
        left.barh(y[computed] + offset, fraction[computed], height=0.4, label=label, color=color, hatch=hatch,
                  edgecolor="white", lw=0)
        for row in y[~computed]:
            left.annotate(f"{label.split()[0]}: not computed", (0, row + offset), xytext=(-4, 0),
                          textcoords="offset points", ha="right", va="center", fontsize=7, style="italic",
                          color=color, gid=f"not computed {column} {names[row]}",
                          bbox=dict(boxstyle="square,pad=0.15", fc="white", ec=color, lw=0.6, ls="--"))
    left.set_yticks(y, names, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("log10 fraction of all v^L sequences")
    left.set_title("Exact feasible and optimal fractions")
    left.legend(fontsize=8)
    left.grid(alpha=0.3, axis="x")
    if ga is not None and len(ga):
        for i, name in enumerate(names):
            runs = ga[ga["name"] == name]
            solved = runs[runs["solved"]]
            right.scatter(solved["oracle_calls_to_solve"], np.full(len(solved), i), color="#2ca02c", zorder=3,
                          label="solved" if i == 0 else None)
            unsolved = runs[~runs["solved"]]
            right.scatter(unsolved["oracle_calls"], np.full(len(unsolved), i), marker=">", color="#999999", zorder=3,
                          label="not solved within the cap" if i == 0 else None)
        right.set_xscale("log")
        right.set_yticks(y, names, fontsize=8)
        right.invert_yaxis()
        right.set_xlabel("oracle calls to reach f = 1 (one point per seed)")
        right.set_title("How hard each instance is for the GA")
        handles, labels = right.get_legend_handles_labels()
        if handles:
            right.legend(fontsize=8)
        right.grid(alpha=0.3, axis="x")
    else:
        right.axis("off")
    fig.tight_layout()
    return fig


def plot_difficulty(difficulty: pd.DataFrame, ga: pd.DataFrame | None, path: Path) -> Path:
    return _save(difficulty_figure(difficulty, ga), path)
