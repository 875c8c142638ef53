"""Stage `llome@<method>`: every LLOME round of one variant, for every seed (docs/method.md §4)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llome.io import write_csv
from llome.loop import run_llome
from llome.objective import optimum_of
from llome.rounds import round_timing, run_trace
from llome.stages.common import apply_numerics, load_function, read_seed_table, seed_dir

TIMING_TABLE = "timing.csv"  # seconds per seed, round and step; .dvcignore keeps it out of the data's md5


def llome_method(cfg: dict, seed_data_dir: Path, round_zero_dir: Path, out_dir: Path, progress: bool = True):
    """Returns (one row of metrics per seed and round, the regret trace of every seed)."""
    apply_numerics(cfg)
    function = load_function(cfg["function"], seed=cfg["function_seed"])
    metrics_rows, traces, timings = [], [], []
    for seed in cfg["seeds"]:
        seed_table = read_seed_table(seed_data_dir, seed)
        run_dir = seed_dir(out_dir, seed)
        history = run_llome(cfg, function=function, seed_table=seed_table,
                            round_zero_dir=seed_dir(round_zero_dir, seed), run_dir=run_dir, seed=seed,
                            progress=progress)
        metrics_rows.extend(flatten_round_metrics(m, seed) for m in history)
        timings.extend({"seed": seed, "round": m["round"], **round_timing(run_dir, m["round"])} for m in history)
        traces.append(run_trace(seed_table, cfg["seed_data_oracle_calls"], run_dir, cfg["rounds"],
                                optimum=optimum_of(function)).assign(seed=seed))
    rounds = pd.DataFrame(metrics_rows)
    trace = pd.concat(traces, ignore_index=True).assign(method=f"llome_{cfg['method']}")
    write_csv(Path(out_dir) / "rounds.csv", rounds)
    write_csv(Path(out_dir) / "regret.csv", trace)
    write_csv(Path(out_dir) / TIMING_TABLE, pd.DataFrame(timings))
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
