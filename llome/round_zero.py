"""Round 0 of LLOME: SFT of a fresh (or pretrained) model on PropEn pairs from the GA seed data (docs/method.md §4)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd

from llome.io import read_json, read_table, write_json, write_table
from llome.jobs import build_training_set, model_spec, train
from llome.provenance import (CorruptResultError, check_model, check_readable, claim, make_record, matches, move_aside,
                              refuse_foreign, result_config, table_digest)

log = logging.getLogger(__name__)


def run_round_zero(seed_table: pd.DataFrame, *, model_cfg: dict, pairs_cfg: dict, train_cfg: dict,
                   num_states: int, out_dir: Path, seed: int, launcher: dict | None = None,
                   stage_cfg: dict | None = None, progress: bool = True) -> dict:
    """Round 0: SFT of a fresh (or pretrained) model on pairs from the GA seed data.

    `out_dir` is reused only if its provenance (the settings, this module's code, the seed data) matches,
    and only once its files read back: a damaged one raises rather than being retrained, since a new
    model would make every LLOME run built on this one start over. One of other provenance is moved
    aside when the new one is done; a non-empty `out_dir` without provenance raises.
    """
    out_dir = Path(out_dir)
    settings = result_config(stage_cfg if stage_cfg is not None else
                             {"model": model_cfg, "pairs": pairs_cfg, "train": train_cfg, "launcher": launcher})
    record = make_record(settings, code=[__name__], seed=seed, inputs={"seed_data": table_digest(seed_table)})
    work = out_dir.with_name(out_dir.name + ".partial")
    refuse_foreign(out_dir)
    if matches(out_dir, record) and (out_dir / "metrics.json").exists():
        check_round_zero(out_dir)
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
                        num_states=num_states, launcher=launcher, lora=model_cfg.get("lora"))
        trained.rename(work / "model")
        shutil.rmtree(work / "job", ignore_errors=True)
    metrics = {"round": 0, "objective": "sft", "num_pairs": int(len(pairs)),
               "mean_pair_reward": float(pairs["reward"].mean())}
    write_json(work / "metrics.json", metrics)
    log.info("seed %d round 0: SFT on %d pairs done", seed, len(pairs))
    if out_dir.exists():
        if any(out_dir.iterdir()):
            move_aside(out_dir)
        else:
            out_dir.rmdir()
    work.rename(out_dir)
    return metrics


def check_round_zero(out_dir: Path) -> None:
    """Raise, naming the file, unless each file a round-0 result is made of is there and reads back."""
    out_dir = Path(out_dir)
    try:
        check_model(out_dir / "model")
        for path in (out_dir / "pairs.parquet", out_dir / "metrics.json"):
            check_readable(path)
    except (FileNotFoundError, CorruptResultError) as error:
        raise type(error)(f"round 0 in {out_dir} is damaged or incomplete: {error}. Restore it (e.g. `dvc "
                          f"checkout`); or move {out_dir} away to train it again, and every LLOME run built on it will "
                          "start over") from error
