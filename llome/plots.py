"""The paper's figures, each from a tidy table (the same table DVC shows as a plot)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from llome.io import atomic_path  # noqa: E402

# label, colour, line style; the specialist baseline is dashed and the prompted one dotted, so they read apart from
# the LLOME variants in grey print
METHOD_STYLE = {
    "ga_paper": ("GA (paper's settings)", "#444444", "-"),
    "ga_swept": ("GA (swept)", "#999999", "-"),
    "llome_sft": ("LLOME-SFT", "#1f77b4", "-"),
    "llome_marge": ("LLOME-MargE", "#d62728", "-"),
    "llome_dpo": ("LLOME-DPO", "#2ca02c", "-"),
    "lambo2": ("LaMBO-2", "#9467bd", "--"),
    "prompted": ("Prompted LLM", "#ff7f0e", ":"),
}


def _label(method: str) -> str:
    return METHOD_STYLE.get(method, (method, None, "-"))[0]


def _color(method: str):
    return METHOD_STYLE.get(method, (None, None, "-"))[1]


def _linestyle(method: str) -> str:
    return METHOD_STYLE.get(method, (None, None, "-"))[2]


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


def plot_regret(bands: pd.DataFrame, function_name: str, seed_data_calls: int | None, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for method, rows in bands.groupby("method", sort=False):
        ax.step(rows["oracle_calls"], rows["median"], where="post", label=_label(method), color=_color(method), lw=2,
                ls=_linestyle(method))
        ax.fill_between(rows["oracle_calls"], rows["low"], rows["high"], step="post", alpha=0.18, color=_color(method))
    if seed_data_calls:
        ax.axvline(seed_data_calls, color="grey", ls=":", lw=1)
        ax.annotate("end of GA seed data", (seed_data_calls, 0.0), xytext=(4, 4), textcoords="offset points",
                    fontsize=8, color="grey")
    ax.set_xlabel("cumulative oracle calls")
    ax.set_ylabel("regret  (1 − best f so far)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Regret vs oracle calls on {function_name}\nmedian over seeds, band = min–max")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return _save(fig, path)


def per_round_medians(rounds: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    present = [c for c in columns if c in rounds.columns]
    return rounds.groupby(["method", "round"], as_index=False)[present].median()


def plot_round_panels(medians: pd.DataFrame, panels: list[tuple[str, str]], title: str, path: Path,
                      ylim01: bool = True) -> Path:
    panels = [(c, label) for c, label in panels if c in medians.columns]
    ncols = 3
    nrows = max(1, int(np.ceil(len(panels) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, (column, label) in zip(axes.flat, panels):
        for method, rows in medians.groupby("method", sort=False):
            ax.plot(rows["round"], rows[column], marker="o", label=_label(method), color=_color(method),
                    ls=_linestyle(method))
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if column.endswith("temperature"):
            # From 0, so a constant temperature reads as constant rather than as noise around it.
            ax.set_ylim(0.0, max(2.0, float(medians[column].max()) + 0.2))
        elif ylim01 and not column.endswith("distance"):
            ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_calibration(table: pd.DataFrame, correlations: dict, function_name: str, path: Path) -> Path:
    methods = list(dict.fromkeys(table["method"]))
    fig, axes = plt.subplots(1, max(1, len(methods)), figsize=(4.3 * max(1, len(methods)), 3.8), squeeze=False,
                             sharey=True)
    for ax, method in zip(axes.flat, methods):
        rows = table[table["method"] == method]
        ax.scatter(rows["loglik"], rows["reward"], s=6, alpha=0.35, color=_color(method))
        rho = correlations.get(method, float("nan"))
        ax.set_title(f"{_label(method)}  (Spearman ρ = {rho:.2f}, n = {len(rows)})", fontsize=10)
        ax.set_xlabel("length-normalised log-likelihood (nats/token)")
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("reward  max(f(y) − f(x), 0)")
    fig.suptitle(f"Calibration on {function_name}: model likelihood vs true reward of labelled candidates")
    fig.tight_layout()
    return _save(fig, path)


def plot_difficulty(difficulty: pd.DataFrame, ga: pd.DataFrame | None, path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.55 * len(difficulty) + 2.2))
    names = difficulty["name"].tolist()
    y = np.arange(len(names))
    left.barh(y - 0.2, difficulty["log10_feasible_fraction"], height=0.4, label="feasible", color="#1f77b4")
    optimal = pd.to_numeric(difficulty["log10_optimal_fraction"], errors="coerce")
    left.barh(y + 0.2, optimal, height=0.4, label="optimal (f = 1)", color="#d62728")
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
    return _save(fig, path)
