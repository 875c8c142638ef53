"""What each pipeline stage does, as plain functions: the notebooks call these, show and save.

Every function takes its stage's resolved config (data/params/<stage>.json) and directories, and
writes its outputs atomically, so a stage can be rerun or tested without Jupyter.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from llome.ehrlich import Ehrlich
from llome.ga import GAConfig, run_ga
from llome.io import read_json, read_table, write_csv, write_json, write_table
from llome.loop import run_llome, run_round_zero, run_trace


def seed_dir(root: Path, seed: int) -> Path:
    return Path(root) / f"seed_{seed}"


# --- test functions -----------------------------------------------------------------------------

def build_test_functions(cfg: dict, out_dir: Path) -> pd.DataFrame:
    """Each configured instance as JSON, and its difficulty: exact feasible and optimal fractions."""
    out_dir = Path(out_dir)
    rows = []
    for name in tqdm(cfg["names"], desc="test functions"):
        function = Ehrlich.from_name(name, seed=cfg["seed"])
        write_json(out_dir / f"{name}.json", function.to_dict())
        d = function.difficulty()
        rows.append({
            "name": name, "num_states": function.num_states, "dim": function.dim,
            "num_motifs": function.num_motifs, "motif_length": function.motif_length,
            "quantization": function.quantization,
            # Counts overflow 64-bit integers: kept exact as decimal strings.
            "num_feasible": str(d["num_feasible"]), "log10_feasible_fraction": d["log10_feasible_fraction"],
            "num_optimal": None if d["num_optimal"] is None else str(d["num_optimal"]),
            "log10_optimal_fraction": d["log10_optimal_fraction"],
            "optimal_unavailable_reason": d["optimal_unavailable_reason"],
        })
    table = pd.DataFrame(rows)
    write_csv(out_dir / "difficulty.csv", table)
    return table


def load_function(name: str, test_functions_dir: Path | None = None, seed: int | None = None) -> Ehrlich:
    """The instance as the test_functions stage saved it, or built from its name."""
    if test_functions_dir is not None and (Path(test_functions_dir) / f"{name}.json").exists():
        return Ehrlich.from_dict(read_json(Path(test_functions_dir) / f"{name}.json"))
    return Ehrlich.from_name(name) if seed is None else Ehrlich.from_name(name, seed=seed)


# --- GA runs ------------------------------------------------------------------------------------

def ga_difficulty(cfg: dict, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Oracle calls the GA needs to reach f = 1 on each instance; censored at max_oracle_calls."""
    rows = []
    for name, seed in tqdm(list(itertools.product(cfg["names"], cfg["seeds"])), desc="GA to solve", disable=not progress):
        function = Ehrlich.from_name(name, seed=cfg["function_seed"])
        rate = 1.0 / function.dim
        ga = GAConfig(num_particles=cfg["num_particles"],
                      mutation_prob=cfg["mutation_prob"] if cfg["mutation_prob"] is not None else rate,
                      recombine_prob=cfg["recombine_prob"] if cfg["recombine_prob"] is not None else rate,
                      survival_quantile=cfg["survival_quantile"], num_steps=None,
                      max_oracle_calls=cfg["max_oracle_calls"], stop_at_value=function.optimal_value)
        result = run_ga(function, function.initial_solution(), function.num_states, ga, seed=seed, progress=False)
        solved = result.best_value >= function.optimal_value
        calls = int(result.oracle_calls[np.argmax(result.scores >= function.optimal_value)]) if solved else None
        rows.append({"name": name, "seed": seed, "solved": bool(solved), "oracle_calls_to_solve": calls,
                     "best_value": float(result.best_value), "oracle_calls": int(len(result))})
    table = pd.DataFrame(rows)
    write_csv(Path(out_dir) / "ga_difficulty.csv", table)
    return table


def seed_data(cfg: dict, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """GA seed data per seed: every unique particle seen, with its score, step and oracle-call count."""
    function = load_function(cfg["function"])
    ga = GAConfig(**cfg["ga"])
    rows = []
    for seed in cfg["seeds"]:
        result = run_ga(function, function.initial_solution(), function.num_states, ga, seed=seed, progress=progress)
        table = result.unique()
        write_table(Path(out_dir) / f"seed_{seed}.parquet", table)
        rows.append({"seed": seed, "oracle_calls": int(len(result)), "unique_sequences": int(len(table)),
                     "feasible_fraction": float(np.isfinite(table["score"]).mean()),
                     "best_value": float(result.best_value)})
    summary = pd.DataFrame(rows)
    write_json(Path(out_dir) / "summary.json", {"function": cfg["function"], "runs": rows})
    return summary


def read_seed_table(seed_data_dir: Path, seed: int) -> pd.DataFrame:
    return read_table(Path(seed_data_dir) / f"seed_{seed}.parquet")


def round_zero(cfg: dict, seed_data_dir: Path, out_dir: Path) -> pd.DataFrame:
    """Round 0 per seed: SFT on the seed-data pairs, from a freshly built model (or a checkpoint)."""
    function = load_function(cfg["function"])
    rows = []
    for seed in cfg["seeds"]:
        metrics = run_round_zero(read_seed_table(seed_data_dir, seed), model_cfg=cfg["model"],
                                 pairs_cfg=cfg["pairs"], train_cfg=cfg["train"], num_states=function.num_states,
                                 out_dir=seed_dir(out_dir, seed), seed=seed, launcher=cfg.get("launcher"))
        rows.append({"seed": seed, **metrics})
    return pd.DataFrame(rows)


def llome_method(cfg: dict, seed_data_dir: Path, round_zero_dir: Path, out_dir: Path, progress: bool = True):
    """Every round of one LLOME variant for every seed; returns (round metrics, regret traces)."""
    function = load_function(cfg["function"])
    metrics_rows, traces = [], []
    for seed in cfg["seeds"]:
        seed_table = read_seed_table(seed_data_dir, seed)
        run_dir = seed_dir(out_dir, seed)
        history = run_llome(cfg, function=function, seed_table=seed_table,
                            round_zero_dir=seed_dir(round_zero_dir, seed), run_dir=run_dir, seed=seed,
                            progress=progress)
        for m in history:
            metrics_rows.append(flatten_round_metrics(m, seed))
        trace = run_trace(seed_table, cfg["seed_data_oracle_calls"], run_dir, cfg["rounds"]).assign(seed=seed)
        traces.append(trace)
    rounds = pd.DataFrame(metrics_rows)
    trace = pd.concat(traces, ignore_index=True).assign(method=f"llome_{cfg['method']}")
    write_csv(Path(out_dir) / "rounds.csv", rounds)
    write_csv(Path(out_dir) / "regret.csv", trace)
    return rounds, trace


def flatten_round_metrics(metrics: dict, seed: int) -> dict:
    row = {"seed": seed}
    for key, value in metrics.items():
        if isinstance(value, dict):
            row.update({f"{key}.{k}": v for k, v in value.items()})
        elif isinstance(value, list):
            row[key] = " ".join(str(v) for v in value)
        else:
            row[key] = value
    return row


def ga_baseline(cfg: dict, out_dir: Path, progress: bool = True):
    """The GA at the LLOME budget: pick settings by a sweep on held-out seeds, then run every seed."""
    function = load_function(cfg["function"])
    budget = int(cfg["max_oracle_calls"])
    start = function.initial_solution()
    sweep = cfg["sweep"]
    grid = [dict(zip(sweep, values)) for values in itertools.product(*sweep.values())]
    rows = []
    for setting, settings in enumerate(tqdm(grid, desc="GA sweep", disable=not progress)):
        ga = GAConfig(recombine_prob=cfg["recombine_prob"], num_steps=None, max_oracle_calls=budget,
                      stop_at_value=function.optimal_value, **settings)
        for seed in cfg["sweep_seeds"]:
            result = run_ga(function, start, function.num_states, ga, seed=seed, progress=False)
            best = float(result.best_value)
            calls_to_best = int(result.oracle_calls[np.argmax(result.scores >= best)])
            rows.append({"setting": setting, **settings, "seed": seed, "best_value": best,
                         "oracle_calls_to_best": calls_to_best})
    sweep_table = pd.DataFrame(rows)
    by_setting = (sweep_table.groupby("setting", as_index=False)
                  .agg(median_best_value=("best_value", "median"), median_calls_to_best=("oracle_calls_to_best", "median"))
                  .sort_values(["median_best_value", "median_calls_to_best"], ascending=[False, True], kind="stable"))
    by_setting = pd.concat([pd.DataFrame(grid).iloc[by_setting["setting"]].reset_index(drop=True),
                            by_setting.reset_index(drop=True)], axis=1)
    chosen = grid[int(by_setting["setting"].iloc[0])]
    write_csv(Path(out_dir) / "sweep.csv", sweep_table)
    write_json(Path(out_dir) / "chosen.json", {"settings": chosen, "recombine_prob": cfg["recombine_prob"],
                                                "max_oracle_calls": budget})
    ga = GAConfig(recombine_prob=cfg["recombine_prob"], num_steps=None, max_oracle_calls=budget,
                  stop_at_value=function.optimal_value, **chosen)
    traces = []
    for seed in cfg["seeds"]:
        result = run_ga(function, start, function.num_states, ga, seed=seed, progress=progress)
        traces.append(result.best_curve(optimal_value=function.optimal_value).assign(seed=seed))
    trace = pd.concat(traces, ignore_index=True).assign(method="ga")
    write_csv(Path(out_dir) / "regret.csv", trace)
    return by_setting, chosen, trace
