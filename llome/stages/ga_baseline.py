"""Stage `ga_baseline`: the GA at the LLOME runs' total oracle budget, two ways (docs/method.md §3, §6).

`ga_paper` is the paper's comparison: the GA with the authors' seed-data settings, continued to the
budget. It is the same run, seed for seed, whose first calls are LLOME's seed data. `ga_swept` is a
stronger baseline the paper does not have: settings picked by a small sweep at this budget, on
held-out seeds.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from llome.ga import GAConfig, run_ga
from llome.io import write_csv, write_json
from llome.metrics import regret_curve
from llome.objective import CountedOracle, initial_solution, optimum_of
from llome.provenance import make_record, write_record
from llome.stages.common import apply_numerics, load_function


def sweep_ga(function, grid: list[dict], seeds: list[int], recombine_prob: float, budget: int,
             progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every setting of `grid` on every seed; returns (one row per run, settings ranked best first)."""
    rows = []
    for setting, settings in enumerate(tqdm(grid, desc="GA sweep", disable=not progress)):
        ga = GAConfig(recombine_prob=recombine_prob, num_steps=None, max_oracle_calls=budget,
                      stop_at_value=optimum_of(function), **settings)
        for seed in seeds:
            result = run_ga(CountedOracle(function, budget), initial_solution(function), function.num_states, ga,
                            seed=seed, progress=False)
            best = float(result.best_value)
            calls_to_best = int(result.oracle_calls[int((result.scores >= best).argmax())])
            rows.append({"setting": setting, **settings, "seed": seed, "best_value": best,
                         "oracle_calls_to_best": calls_to_best})
    runs = pd.DataFrame(rows)
    ranked = (runs.groupby("setting", as_index=False)
              .agg(median_best_value=("best_value", "median"), median_calls_to_best=("oracle_calls_to_best", "median"))
              .sort_values(["median_best_value", "median_calls_to_best"], ascending=[False, True], kind="stable"))
    ranked = pd.concat([pd.DataFrame(grid).iloc[ranked["setting"]].reset_index(drop=True),
                        ranked.reset_index(drop=True)], axis=1)
    return runs, ranked


def ga_traces(function, ga: GAConfig, seeds: list[int], method: str, progress: bool = True) -> pd.DataFrame:
    traces = []
    for seed in seeds:
        result = run_ga(CountedOracle(function, ga.total_oracle_calls), initial_solution(function), function.num_states,
                        ga, seed=seed, progress=progress)
        curve = regret_curve(result.oracle_calls, result.scores, optimum_of(function), improvements_only=True)
        traces.append(curve.assign(seed=seed))
    return pd.concat(traces, ignore_index=True).assign(method=method)


def ga_baseline(cfg: dict, out_dir: Path, progress: bool = True):
    """Returns (swept settings ranked, the chosen setting, both GAs' regret traces)."""
    apply_numerics(cfg)
    function = load_function(cfg["function"], seed=cfg["function_seed"])
    budget = int(cfg["max_oracle_calls"])
    sweep = cfg["sweep"]
    grid = [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())]
    runs, ranked = sweep_ga(function, grid, cfg["sweep_seeds"], cfg["recombine_prob"], budget, progress)
    chosen = grid[int(ranked["setting"].iloc[0])]
    swept = GAConfig(recombine_prob=cfg["recombine_prob"], num_steps=None, max_oracle_calls=budget,
                     stop_at_value=optimum_of(function), **chosen)
    paper = GAConfig(**{**cfg["paper_ga"], "num_steps": None, "max_oracle_calls": budget,
                        "stop_at_value": optimum_of(function)})
    trace = pd.concat([ga_traces(function, paper, cfg["seeds"], "ga_paper", progress),
                       ga_traces(function, swept, cfg["seeds"], "ga_swept", progress)], ignore_index=True)
    out_dir = Path(out_dir)
    write_csv(out_dir / "sweep.csv", runs)
    write_json(out_dir / "chosen.json", {"settings": chosen, "recombine_prob": cfg["recombine_prob"],
                                         "max_oracle_calls": budget})
    write_csv(out_dir / "regret.csv", trace)
    write_record(out_dir, make_record(cfg, code=[__name__]))
    return ranked, chosen, trace
