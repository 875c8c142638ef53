"""One figure per claim of the claims study, drawn from the tables its verdicts read (study/tables/).

    python -m llome.claims_figures --tables study/tables --out docs/figures/claims

Each figure shows the numbers its claim is judged on (llome.claims computes them; nothing here decides anything):
claim 1 the regret of every method on the main instance; claim 2 the binned rewards and per-round rank correlations
of the calibration sample; claim 3 edit distance and diversity per round; claim 4 the share of seeds that reached the
optimum on the solvable instance; claims 5 and 6 every run's final best f and regret AUC on every instance. The file
names are llome.claims.CLAIM_FIGURES, which the claims table links to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from llome.claims import (CLAIM_FIGURES, DEFAULT_FIGURES, LLOME_VARIANTS, WELL_CALIBRATED_RHO, Study, StudyTableError, binned_rewards,
                          calibration_per_round, load_study, run_outcomes)
from llome.metrics import regret_on_grid
from llome.plots import (_color, _drawing_order, _in_legend_order, _label, _linestyle, _marker, _save, regret_bands,
                         regret_figure, round_panels_figure)
from llome.report import end_unsolved_runs

GRID_POINTS = 400
COLLAPSE_PANELS = [("edit_distance", "edit distance, input to output"), ("unique_fraction", "unique fraction"),
                   ("mean_pairwise_distance", "mean pairwise distance")]


def _methods(table: pd.DataFrame, instance: str, among=None) -> list[str]:
    present = table.loc[table["instance"] == instance, "method"]
    return [m for m in _in_legend_order(present) if among is None or m in among]


def regret_per_seed(study: Study, instance: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bands, per-seed regret) on a grid of the instance's budget, as the pipeline's regret figure has them. A run
    with nothing feasible yet (best f of -inf) is drawn at the regret of f = 0."""
    info = study.instance_info(instance)
    optimum = float(info["optimum"])
    trace = study.trace[study.trace["instance"] == instance]
    trace = trace.assign(regret=optimum - trace["best_value"].clip(lower=0.0))[["method", "seed", "oracle_calls",
                                                                                "regret"]]
    grid = np.unique(np.linspace(1, int(info["oracle_budget"]), GRID_POINTS).astype(int))
    on_grid = regret_on_grid(trace, grid, runs=("method", "seed"))
    return (regret_bands(end_unsolved_runs(on_grid, trace, whole_method=True)),
            end_unsolved_runs(on_grid, trace))


def efficiency_figure(study: Study):
    instance = study.instance_with_role("main")
    info = study.instance_info(instance)
    bands, per_seed = regret_per_seed(study, instance)
    from_seed_data = [m for m in bands["method"].unique() if not m.startswith("ga_")]
    fig = regret_figure(bands, per_seed, instance, int(info["seed_data_calls"]), int(info["oracle_budget"]),
                        from_seed_data)
    fig.suptitle(f"Claim 1: regret vs oracle calls on {instance}, {per_seed['seed'].nunique()} reported seeds")
    return fig


def calibration_figure(study: Study):
    """Left, per LLOME variant, the mean reward in each likelihood decile (each seed's mean over rounds, then the
    mean over seeds, with its bootstrap interval). Right, each round's rank correlation across the deciles: the
    median over seeds, and their min–max; the shaded range is what the rule calls moderate."""
    instance = study.instance_with_role("main")
    fig, (bins_ax, rho_ax) = plt.subplots(1, 2, figsize=(12, 4.6))
    calibration = study.calibration
    methods = [] if calibration is None else _methods(calibration, instance, LLOME_VARIANTS)
    for method in _drawing_order(methods):
        binned = pd.DataFrame(binned_rewards(calibration, instance, method))
        if not binned.empty:
            deciles = binned["bin"] + 1
            bins_ax.errorbar(deciles, binned["mean_reward"], yerr=[binned["mean_reward"] - binned["ci_low"],
                                                                   binned["ci_high"] - binned["mean_reward"]],
                             color=_color(method), marker=_marker(method), ms=5, capsize=3, ls=_linestyle(method),
                             label=_label(method), gid=f"binned {method}")
        per_round = calibration_per_round(calibration, instance, method)
        if not per_round.empty:
            spread = per_round.groupby("round")["rho"].agg(["median", "min", "max"]).reset_index()
            rho_ax.fill_between(spread["round"], spread["min"], spread["max"], color=_color(method), alpha=0.15,
                                lw=0)
            rho_ax.plot(spread["round"], spread["median"], color=_color(method), marker=_marker(method), ms=5,
                        ls=_linestyle(method), label=_label(method), gid=f"rho {method}")
    rho_ax.axhspan(0.0, WELL_CALIBRATED_RHO, color="grey", alpha=0.08, lw=0)
    rho_ax.annotate(f"shaded: 0 < ρ < {WELL_CALIBRATED_RHO}, what the rule calls moderately miscalibrated",
                    (0.01, 0.0), xycoords=("axes fraction", "data"), xytext=(0, -12), textcoords="offset points",
                    fontsize=8, color="dimgrey")
    rho_ax.axhline(0.0, color="grey", lw=0.8)
    rho_ax.set_ylim(-1.05, 1.05)
    bins_ax.set_xlabel("likelihood decile within its round (1 = least likely)")
    bins_ax.set_ylabel("mean reward  max(f(y) − f(x), 0)")
    bins_ax.set_title("Mean reward per likelihood decile (95% interval over seeds)", fontsize=10)
    rho_ax.set_xlabel("round")
    rho_ax.set_ylabel("Spearman ρ across the deciles")
    rho_ax.set_title("Per round: median over seeds, band = min–max", fontsize=10)
    for ax in (bins_ax, rho_ax):
        ax.grid(alpha=0.3)
    if methods:
        _legend_in_order(bins_ax, methods)
    fig.suptitle(f"Claim 2: calibration on {instance}, candidates sampled before the likelihood filter")
    fig.tight_layout()
    return fig


def collapse_figure(study: Study):
    instance = study.instance_with_role("main")
    rounds = study.rounds[(study.rounds["instance"] == instance) & study.rounds["method"].isin(LLOME_VARIANTS)]
    return round_panels_figure(rounds, COLLAPSE_PANELS, f"Claim 3: generator collapse on {instance}", ylim01=False)


def solved_share(outcomes: pd.DataFrame, instance: str, method: str, grid: np.ndarray) -> np.ndarray:
    """The share of the method's seeds that reached the optimum within each number of calls in `grid`
    (run_outcomes' `solved` and `calls_to_solve`, which claim 4 is judged on)."""
    runs = outcomes[(outcomes["instance"] == instance) & (outcomes["method"] == method)]
    first = np.where(runs["solved"].to_numpy(bool), runs["calls_to_solve"].to_numpy(float), np.inf)
    return (first[None, :] <= grid[:, None]).mean(axis=1) if first.size else np.zeros(len(grid))


def _strip(ax, values: dict[str, np.ndarray], methods: list[str]) -> None:
    """One row per method, the first at the top: its seeds as points spread evenly across the row (no random
    jitter), and their median as a bar."""
    for position, method in enumerate(methods):
        points = np.asarray(values.get(method, []), dtype=float)
        if not points.size:
            continue
        offsets = np.linspace(-0.25, 0.25, points.size) if points.size > 1 else np.zeros(1)
        ax.scatter(np.sort(points), position + offsets, s=14, color=_color(method), marker=_marker(method),
                   alpha=0.8, lw=0, gid=f"seeds {method}")
        ax.vlines(np.median(points), position - 0.38, position + 0.38, color="black", lw=1.6, gid=f"median {method}")
    ax.set_yticks(range(len(methods)), [_label(m) for m in methods], fontsize=8)
    ax.set_ylim(len(methods) - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)


def _legend_in_order(ax, methods: list[str]) -> None:
    handles, labels = ax.get_legend_handles_labels()
    order = [labels.index(_label(m)) for m in methods if _label(m) in labels]
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8)


def solving_figure(study: Study, outcomes: pd.DataFrame):
    """Left, the share of seeds that reached the optimum by each number of calls; right, each run's final best f."""
    instance = study.instance_with_role("solvable")
    fig, (share_ax, final_ax) = plt.subplots(1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.3, 1]})
    if instance is None:
        share_ax.text(0.5, 0.5, "no instance with role 'solvable'", ha="center", transform=share_ax.transAxes)
        return fig
    info = study.instance_info(instance)
    grid = np.unique(np.linspace(1, int(info["oracle_budget"]), GRID_POINTS).astype(int))
    methods = _methods(study.trace, instance)
    for method in _drawing_order(methods):
        share_ax.step(grid, solved_share(outcomes, instance, method, grid), where="post", color=_color(method), lw=2,
                      ls=_linestyle(method), label=_label(method), gid=f"solved {method}")
    share_ax.axvline(int(info["seed_data_calls"]), color="grey", ls=":", lw=1)
    share_ax.set_ylim(-0.03, 1.03)
    share_ax.set_xlabel("cumulative oracle calls")
    share_ax.set_ylabel("share of seeds that reached f = optimum")
    share_ax.grid(alpha=0.3)
    _legend_in_order(share_ax, methods)
    rows = outcomes[outcomes["instance"] == instance]
    _strip(final_ax, {m: rows.loc[rows["method"] == m, "final_best"].to_numpy() for m in methods}, methods)
    final_ax.set_xlabel("final best f, one point per seed; bar = median")
    final_ax.set_xlim(-0.03, float(info["optimum"]) + 0.03)
    fig.suptitle(f"Claim 4: reaching the optimum on {instance}, {rows['seed'].nunique()} seeds")
    fig.tight_layout()
    return fig


def outcomes_figure(study: Study, outcomes: pd.DataFrame):
    """Claims 5 and 6: per instance in order of difficulty (a column each), every run's final best f and regret
    AUC, the numbers those claims compare."""
    instances = [name for name in study.instances["instance"] if (outcomes["instance"] == name).any()]
    methods = _in_legend_order(outcomes["method"])
    columns = max(1, len(instances))
    fig, axes = plt.subplots(2, columns, figsize=(5.2 * columns, 0.5 * len(methods) * 2 + 2.4), squeeze=False,
                             sharey=True)
    for column, instance in enumerate(instances):
        rows = outcomes[outcomes["instance"] == instance]
        info = study.instance_info(instance)
        for row, (measure, label) in enumerate((("final_best", "final best f"),
                                                ("regret_auc", "regret AUC (mean regret over the budget)"))):
            ax = axes[row, column]
            _strip(ax, {m: rows.loc[rows["method"] == m, measure].to_numpy() for m in methods}, methods)
            ax.set_xlim(-0.03, float(info["optimum"]) + 0.03)
            ax.set_xlabel(f"{label}; bar = median")
        axes[0, column].set_title(f"{instance}\n(difficulty rank {int(info['difficulty_rank'])} of "
                                  f"{len(study.instances)}, 1 = easiest)", fontsize=10)
    fig.suptitle("Claims 5 and 6: every run's outcome, one point per seed")
    fig.tight_layout()
    return fig


def write_figures(tables: str | Path, out_dir: str | Path) -> list[Path]:
    """Every claim's figure from the tables in `tables`, written atomically under `out_dir`."""
    study = load_study(tables)
    outcomes = run_outcomes(study)
    out_dir = Path(out_dir)
    figures = {"efficiency.png": efficiency_figure(study), "calibration.png": calibration_figure(study),
               "collapse.png": collapse_figure(study), "solving.png": solving_figure(study, outcomes),
               "outcomes.png": outcomes_figure(study, outcomes)}
    assert set(figures) == set(CLAIM_FIGURES.values())
    return [_save(fig, out_dir / name) for name, fig in figures.items()]

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llome.claims_figures", description=__doc__.split("\n")[0])
    parser.add_argument("--tables", default="study/tables", type=Path)
    parser.add_argument("--out", default=DEFAULT_FIGURES, type=Path)
    args = parser.parse_args(argv)
    try:
        paths = write_figures(args.tables, args.out)
    except (StudyTableError, ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
