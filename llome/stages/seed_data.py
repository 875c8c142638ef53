"""Stage `seed_data`: the GA with the authors' seed-data settings, one run per seed (docs/method.md §3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llome.ga import GAConfig, run_ga
from llome.io import write_json, write_table
from llome.objective import CountedOracle, initial_solution
from llome.provenance import make_record, write_record
from llome.stages.common import apply_numerics, load_function, seed_data_path


def seed_data(cfg: dict, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Per seed, every unique particle seen, with its score, step and oracle-call count."""
    apply_numerics(cfg)
    function = load_function(cfg["function"], seed=cfg["function_seed"])
    ga = GAConfig(**cfg["ga"])
    rows = []
    for seed in cfg["seeds"]:
        oracle = CountedOracle(function, ga.total_oracle_calls)
        result = run_ga(oracle, initial_solution(function), function.num_states, ga, seed=seed, progress=progress)
        table = result.unique()
        write_table(seed_data_path(out_dir, seed), table)
        rows.append({"seed": seed, "oracle_calls": oracle.calls, "unique_sequences": int(len(table)),
                     "feasible_fraction": float(np.isfinite(table["score"]).mean()),
                     "best_value": float(result.best_value)})
    write_json(Path(out_dir) / "summary.json", {"function": cfg["function"], "runs": rows})
    write_record(out_dir, make_record(cfg, code=[__name__]))
    return pd.DataFrame(rows)
