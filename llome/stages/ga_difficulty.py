"""Stage `ga_difficulty`: oracle calls the GA needs to reach f = 1 on each instance (docs/method.md §6)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from llome.ehrlich import Ehrlich
from llome.ga import GAConfig, run_ga
from llome.io import write_csv
from llome.objective import CountedOracle
from llome.provenance import make_record, write_record
from llome.stages.common import apply_numerics


def ga_difficulty(cfg: dict, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Per instance and seed, calls until some particle reaches f = 1; censored at max_oracle_calls."""
    apply_numerics(cfg)
    rows = []
    for name, seed in tqdm(list(itertools.product(cfg["names"], cfg["seeds"])), desc="GA to solve", disable=not progress):
        function = Ehrlich.from_name(name, seed=cfg["function_seed"])
        rate = 1.0 / function.dim
        ga = GAConfig(num_particles=cfg["num_particles"],
                      mutation_prob=cfg["mutation_prob"] if cfg["mutation_prob"] is not None else rate,
                      recombine_prob=cfg["recombine_prob"] if cfg["recombine_prob"] is not None else rate,
                      survival_quantile=cfg["survival_quantile"], num_steps=None,
                      max_oracle_calls=cfg["max_oracle_calls"], stop_at_value=function.optimal_value)
        result = run_ga(CountedOracle(function, ga.total_oracle_calls), function.initial_solution(), function.num_states, ga, seed=seed, progress=False)
        solved = result.best_value >= function.optimal_value
        calls = int(result.oracle_calls[np.argmax(result.scores >= function.optimal_value)]) if solved else None
        rows.append({"name": name, "seed": seed, "solved": bool(solved), "oracle_calls_to_solve": calls,
                     "best_value": float(result.best_value), "oracle_calls": int(len(result))})
    table = pd.DataFrame(rows)
    write_csv(Path(out_dir) / "ga_difficulty.csv", table)
    write_record(out_dir, make_record(cfg, code=[__name__]))
    return table
