"""Wall time of LLOME rounds, and their metrics: two LLOME-MargE rounds on ehr_v-32_l-032_m-4_c-4_q-4.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_round.py --profile smoke
    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_round.py --profile default
    .venv/bin/python bench/bench_round.py --profile default --method marge --rounds 3 \
        --set model.gpt_neox.hidden_size=128 --set llome.selection.num_to_label=250 --workdir /tmp/exp

Runs the GA seed data, round 0 (SFT) and two MargE rounds with the profile's settings (one seed),
in a temporary directory, and prints the time of each part and each round's metrics.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import yaml

from machine import describe_machine
from overrides import override

from llome.config import load_profile, stage_configs
from llome.stages.llome_rounds import llome_method
from llome.stages.round_zero import round_zero
from llome.stages.seed_data import seed_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--method", default="marge", choices=["sft", "marge", "dpo"])
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="override a profile value, e.g. llome.selection.num_to_label=250 (VALUE is YAML)")
    parser.add_argument("--workdir", default=None,
                        help="keep the runs here; finished parts (seed data, round 0, rounds) are reused")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(describe_machine())
    cfg = load_profile(Path(__file__).resolve().parents[1] / "params.yaml", args.profile)
    cfg["seeds"] = [args.seed]
    cfg["llome"]["rounds"] = args.rounds
    for assignment in args.set:
        path, _, value = assignment.partition("=")
        override(cfg, path, yaml.safe_load(value))
    stages = stage_configs(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        start = time.perf_counter()
        seed_data(stages["seed_data"], root / "seed", progress=False)
        t_seed = time.perf_counter() - start
        start = time.perf_counter()
        round_zero(stages["sft"], root / "seed", root / "sft")
        t_sft = time.perf_counter() - start
        start = time.perf_counter()
        rounds, trace = llome_method(stages[f"llome_{args.method}"], root / "seed", root / "sft",
                                     root / args.method, progress=False)
        t_rounds = time.perf_counter() - start
    columns = ["round", "temperatures", "oracle_calls", "num_pairs", "generation.in_range", "generation.mean_distance",
               "generation.unique_fraction", "labelled.feasible", "labelled.improved", "labelled.mean_score",
               "labelled.best_score", "calibration.spearman"]
    print(f"profile {args.profile}: function {cfg['function']}, seed {args.seed}")
    print(rounds[[c for c in columns if c in rounds.columns]].to_string(index=False))
    print(f"GA seed data {t_seed:.1f} s | round 0 (SFT) {t_sft:.1f} s | "
          f"{args.rounds} {args.method} rounds {t_rounds:.1f} s ({t_rounds / args.rounds:.1f} s per round)")
    print(f"best f so far: {trace['best_value'].max():.4f} after {int(trace['oracle_calls'].max())} oracle calls")


if __name__ == "__main__":
    main()
