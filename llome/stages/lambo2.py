"""Stage `lambo2`: LaMBO-2 on LLOME's function, seed data and budget, every round and seed (docs/method.md §7).

Each seed starts from the same GA seed data as LLOME's run of that seed, pays for the same n labels a round
through a counted oracle, for as many rounds, and writes the same tables: `rounds.csv` (one row per seed and
round) and `regret.csv` (method `lambo2`). LaMBO-2 itself runs in its own environment (llome/lambo.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llome import lambo
from llome.io import write_csv
from llome.objective import optimum_of
from llome.provenance import claim, file_digest, make_record, result_config, table_digest
from llome.rounds import round_timing, run_trace
from llome.stages.common import apply_numerics, load_function, read_seed_table, seed_dir

METHOD = "lambo2"
TIMING_TABLE = "timing.csv"  # seconds per seed, round and step; .dvcignore keeps it out of the data's md5


def lambo_settings(cfg: dict) -> lambo.LamboSettings:
    """The runner's settings: the profile's `lambo2` section, with n, the device and the thread count the
    pipeline sets for every method."""
    return lambo.LamboSettings(**cfg["lambo2"], num_proposals=cfg["num_to_label"], device=cfg["device"],
                               threads=cfg["numerics"]["threads"])


def run_inputs() -> dict[str, str]:
    """What a run's results depend on outside the `llome` package: the runner and the LaMBO environment's pins."""
    return {"lambo_runner": file_digest(lambo.RUNNER), "lambo_requirements": file_digest(lambo.REQUIREMENTS)}


def lambo2_method(cfg: dict, seed_data_dir: Path, out_dir: Path, progress: bool = True):
    """Returns (one row of metrics per seed and round, the regret trace of every seed). `progress` is taken as
    every stage takes it; the runner shows no progress bars, and each round logs one line."""
    settings = lambo_settings(cfg)  # a bad setting fails here, naming it
    python = lambo.lambo_python()  # and a missing LaMBO environment here, before any work
    apply_numerics(cfg)
    function = load_function(cfg["function"], seed=cfg["function_seed"])
    if settings.num_mutations_per_step > function.dim:
        raise ValueError(f"lambo2.num_mutations_per_step={settings.num_mutations_per_step}: LaMBO-2 edits at most "
                         f"the function's L={function.dim} positions per step")
    rows, traces, timings = [], [], []
    with lambo.LamboServer(python) as runner:
        for seed in cfg["seeds"]:
            seed_table = read_seed_table(seed_data_dir, seed)
            run_dir = seed_dir(out_dir, seed)
            inputs = {"seed_data": table_digest(seed_table), **run_inputs()}
            claim(run_dir, make_record(result_config(cfg), code=[__name__], seed=seed, inputs=inputs))
            history = lambo.run_lambo(function, seed_table, settings, cfg["rounds"], seed, run_dir, runner=runner)
            rows.extend(flatten_round_metrics(metrics, seed) for metrics in history)
            timings.extend({"seed": seed, "round": m["round"], **round_timing(run_dir, m["round"])}
                           for m in history)
            traces.append(run_trace(seed_table, cfg["seed_data_oracle_calls"], run_dir, cfg["rounds"],
                                            optimum=optimum_of(function)).assign(seed=seed))
    rounds = pd.DataFrame(rows)
    trace = pd.concat(traces, ignore_index=True).assign(method=METHOD)
    write_csv(Path(out_dir) / "rounds.csv", rounds)
    write_csv(Path(out_dir) / "regret.csv", trace)
    write_csv(Path(out_dir) / TIMING_TABLE, pd.DataFrame(timings))
    return rounds, trace


def flatten_round_metrics(metrics: dict, seed: int) -> dict:
    """One rounds.csv row, its nested metrics as `section.key` columns, as LLOME's rows are."""
    row = {"seed": seed}
    for key, value in metrics.items():
        if isinstance(value, dict):
            row.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            row[key] = value
    return row
