"""Round 0 of LLOME: SFT of a fresh (or pretrained) model on PropEn pairs from the GA seed data (PAPER.md §4)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from llome.io import read_json, read_table, write_json, write_table
from llome.jobs import build_training_set, model_spec, train
from llome.provenance import claim, make_record, matches, result_config, table_digest

log = logging.getLogger(__name__)


def run_round_zero(seed_table: pd.DataFrame, *, model_cfg: dict, pairs_cfg: dict, train_cfg: dict,
                   num_states: int, out_dir: Path, seed: int, launcher: dict | None = None,
                   stage_cfg: dict | None = None, progress: bool = True) -> dict:
    """Round 0: SFT of a fresh (or pretrained) model on pairs from the GA seed data.

    `out_dir` is reused only if its provenance (the settings, this module's code, the seed data) matches.
    """
    out_dir = Path(out_dir)
    settings = result_config(stage_cfg if stage_cfg is not None else
                             {"model": model_cfg, "pairs": pairs_cfg, "train": train_cfg, "launcher": launcher})
    record = make_record(settings, code=[__name__], seed=seed, inputs={"seed_data": table_digest(seed_table)})
    work = out_dir.with_name(out_dir.name + ".partial")
    if matches(out_dir, record) and (out_dir / "metrics.json").exists():
        return read_json(out_dir / "metrics.json")
    claim(work, record)
    pairs_path = work / "pairs.parquet"
    if not pairs_path.exists():
        write_table(pairs_path, build_training_set("sft", seed_table, pairs_cfg, seed))
    pairs = read_table(pairs_path)
    if len(pairs) == 0:
        raise RuntimeError("the seed data gave no pairs to train on: every neighbour has the same score "
                           "(try a larger pairs.max_distance or more GA steps)")
    if not (work / "model" / "config.json").exists():
        trained = train("sft", pairs, {**train_cfg, "disable_tqdm": not progress}, work / "job", seed, model_spec=model_spec(model_cfg, seed),
                        num_states=num_states, launcher=launcher)
        trained.rename(work / "model")
        shutil.rmtree(work / "job", ignore_errors=True)
    metrics = {"round": 0, "objective": "sft", "num_pairs": int(len(pairs)),
               "mean_pair_reward": float(pairs["reward"].mean())}
    write_json(work / "metrics.json", metrics)
    log.info("seed %d round 0: SFT on %d pairs done", seed, len(pairs))
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
    return metrics
