"""Stage `sft`: round 0, SFT on each seed's GA pairs from a fresh model or a checkpoint (docs/method.md §4)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llome.round_zero import run_round_zero
from llome.stages.common import apply_numerics, load_function, read_seed_table, seed_dir


def round_zero(cfg: dict, seed_data_dir: Path, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """One model per seed under `out_dir/seed_<s>/`; a seed whose provenance still matches is reused."""
    apply_numerics(cfg)
    function = load_function(cfg["function"], seed=cfg["function_seed"])
    rows = []
    for seed in cfg["seeds"]:
        metrics = run_round_zero(read_seed_table(seed_data_dir, seed), model_cfg=cfg["model"],
                                 pairs_cfg=cfg["pairs"], train_cfg=cfg["train"], num_states=function.num_states,
                                 out_dir=seed_dir(out_dir, seed), seed=seed, launcher=cfg.get("launcher"),
                                 stage_cfg=cfg, progress=progress)
        rows.append({"seed": seed, **metrics})
    return pd.DataFrame(rows)
