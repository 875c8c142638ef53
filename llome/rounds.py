"""A run of rounds on disk, whatever proposes in them (LLOME, LaMBO-2, the prompted LLM).

A run directory holds one `round_NN/` per finished round, with its labels (`labelled.parquet`, whose
`oracle_calls_round` counts paid calls within the round), its `metrics.json` and the wall times of its steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from llome.io import read_json, read_table
from llome.metrics import regret_curve

TIMING_FILE = "timing.json"  # each step's wall time, beside a round's data; .dvcignore keeps it out of the md5


def round_dir(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"round_{index:02d}"


def round_seed(seed: int, index: int) -> int:
    """Independent streams per seed and round (seed + index would give seed 0's round 2 to seed 1's round 1)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def round_timing(run_dir: Path, index: int) -> dict[str, float]:
    """Seconds each step of a finished round took ({} when its timing file is gone, e.g. after `dvc checkout`)."""
    path = round_dir(run_dir, index) / TIMING_FILE
    return read_json(path) if path.exists() else {}


def best_so_far_trace(seed_table: pd.DataFrame, seed_oracle_calls: int,
                      rounds: Iterable[tuple[pd.DataFrame, int]], optimum: float | None = 1.0) -> pd.DataFrame:
    """Best-so-far over every paid evaluation: the GA seed data, then each round's (labels, paid calls) in order.

    The seed table holds first sightings only, which is all a best-so-far curve needs; round 1 starts after the
    GA's full spend, repeats included. Regret is against the objective's `optimum` (1 for Ehrlich functions),
    and NaN when it is unknown (None). Diagnostic calls are not in the trace: the optimiser never saw them.
    """
    seed_part = seed_table[["oracle_calls", "score"]].assign(round=0)
    if len(seed_table) == 0 or seed_part["oracle_calls"].max() < seed_oracle_calls:
        # The GA's last paid calls may all be repeats: record that they were spent, improving nothing.
        spent = pd.DataFrame({"oracle_calls": [int(seed_oracle_calls)], "score": [-np.inf], "round": [0]})
        seed_part = pd.concat([seed_part, spent], ignore_index=True)
    parts, offset = [seed_part], int(seed_oracle_calls)
    for index, (labelled, paid_calls) in enumerate(rounds, start=1):
        parts.append(pd.DataFrame({"oracle_calls": offset + labelled["oracle_calls_round"].to_numpy(np.int64),
                                   "score": labelled["score"].to_numpy(np.float64), "round": index}))
        offset += int(paid_calls)
    trace = pd.concat(parts, ignore_index=True)
    curve = regret_curve(trace["oracle_calls"].to_numpy(np.int64), trace["score"].to_numpy(np.float64), optimum)
    return curve.assign(round=trace["round"].to_numpy())


def run_trace(seed_table: pd.DataFrame, seed_oracle_calls: int, run_dir: Path, rounds: int,
              optimum: float | None = 1.0) -> pd.DataFrame:
    """`best_so_far_trace` of the first `rounds` finished rounds of the run in `run_dir`."""
    def finished():
        for index in range(1, rounds + 1):
            folder = round_dir(run_dir, index)
            yield read_table(folder / "labelled.parquet"), read_json(folder / "metrics.json")["oracle_calls"]

    return best_so_far_trace(seed_table, seed_oracle_calls, finished(), optimum)
