"""The loop's training jobs: the pairs or triples a model trains on, and one training run, here or launched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from llome.launch import check_launcher, run_job, run_launched, write_job
from llome.pairs import make_dpo_triples, make_pairs


def as_int_array(sequences) -> np.ndarray:
    """(N, L) int64; an empty list gives shape (0, 0), still 2-D, so a round that labelled nothing pairs nothing."""
    rows = [list(s) for s in sequences]
    return np.array(rows, dtype=np.int64) if rows else np.empty((0, 0), dtype=np.int64)


def _subsample(table: pd.DataFrame, max_rows: int | None, seed: int, newest: set | None = None) -> pd.DataFrame:
    """At most `max_rows` rows, seeded; rows that touch the newest labels are kept first.

    Without that priority the seed data's thousands of pairs would drown the few hundred a round adds.
    """
    if max_rows is None or len(table) <= max_rows:
        return table.reset_index(drop=True)
    shuffled = table.sample(frac=1.0, random_state=seed)
    if newest:
        sequence_columns = [c for c in ("x", "y", "y_w", "y_l") if c in shuffled.columns]
        touches = np.zeros(len(shuffled), dtype=bool)
        for column in sequence_columns:
            touches |= shuffled[column].isin(newest).to_numpy()
        shuffled = pd.concat([shuffled[touches], shuffled[~touches]])
    return shuffled.head(max_rows).reset_index(drop=True)


def build_training_set(objective: str, pool: pd.DataFrame, pairs_cfg: dict, seed: int,
                       newest: set | None = None) -> pd.DataFrame:
    """PropEn pairs (SFT, MargE) or DPO triples from every sequence labelled so far."""
    X, scores = as_int_array(pool["sequence"]), pool["score"].to_numpy(np.float64)
    common = dict(max_distance=pairs_cfg["max_distance"], num_neighbors=pairs_cfg["num_neighbors"], seed=seed)
    if objective == "dpo":
        table = make_dpo_triples(X, scores, infeasible_fraction=pairs_cfg["infeasible_fraction"], **common)
    else:
        table = make_pairs(X, scores, infeasible_fraction=pairs_cfg["infeasible_fraction"],
                           allow_equal_scores=False, **common)
    return _subsample(table, pairs_cfg.get("max_pairs"), seed, newest)


def train(objective: str, table: pd.DataFrame, train_cfg: dict, job_dir: Path, seed: int, *,
          model_dir: Path | None = None, model_spec: dict | None = None, num_states: int | None = None,
          launcher: dict | None = None, lora: dict | None = None) -> Path:
    """Train on `table` and return the directory of the trained model.

    From `model_dir` (the previous round's model, also the MargE/DPO reference) or, in round 0, from a
    fresh model built from `model_spec`. Runs here or as a launched job (`launcher`, e.g. accelerate).
    `lora` (params.yaml's model.lora, llome.lora) trains LoRA adapters, merged in before the model is saved.
    """
    write_job(job_dir, objective=objective, model_dir=model_dir, table=table, train_cfg={**train_cfg, "seed": seed},
              model_spec=model_spec, num_states=num_states, launcher=launcher, lora=lora)
    if check_launcher(launcher)["kind"] == "inprocess":
        return run_job(job_dir)
    return run_launched(launcher, job_dir)


def model_spec(model_cfg: dict, seed: int) -> dict:
    """params.yaml's `model` section as llome.models takes it: a checkpoint, or GPT-NeoX sizes and a seed."""
    if model_cfg.get("name_or_path"):
        gguf_file = model_cfg.get("gguf_file")
        return {"name_or_path": model_cfg["name_or_path"], **({"gguf_file": gguf_file} if gguf_file else {})}
    return {**model_cfg["gpt_neox"], "seed": seed}
