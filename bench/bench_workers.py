"""Jobs at once against threads per job: how a study's jobs should share this machine's cores.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_workers.py [--jobs 2] [--round 5]

A study job is a run of LLOME rounds, and a default-size round is mostly one MargE training (with checkpoint
choice). This bench runs `--jobs` such trainings, each in a child process of its own under the pinned numerics
(round `--round` of the committed run's seed 0: its pairs, trained from the model of the round before, with the
default profile's settings), in two ways: one after another on all the cores (`numerics.threads` = cores), and all
at once on one thread each. It prints the wall time of each way and their ratio, the study's throughput gain from
`executor.max_workers` = cores with `numerics.threads: 1`. The two ways give different bits (a thread count is part
of the pin), so this measures time only. Needs `make repro`'s data/llome/marge/seed_0 (or `dvc pull`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe_machine

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "data" / "llome" / "marge" / "seed_0"

CHILD = r"""
import json, sys, time
import llome  # pins the numerics before torch loads
import pandas as pd
from llome.models import load_model_and_tokenizer
from llome.numerics import apply
from llome.train import train

run, round_, threads, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
apply(threads)
cfg = json.load(open(sys.argv[5]))
before = f"{run}/round_{round_ - 1:02d}/model"
model, tokenizer = load_model_and_tokenizer(before, device="cpu")
reference, _ = load_model_and_tokenizer(before, device="cpu")
pairs = pd.read_parquet(f"{run}/round_{round_:02d}/pairs.parquet")
start = time.perf_counter()
train("marge", model, tokenizer, pairs, {**cfg["train"], "seed": 0, "num_states": 32}, out, ref_model=reference)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def run_children(count: int, threads: int, at_once: bool, round_: int, config: Path, work: Path) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    commands = [[sys.executable, "-c", CHILD, str(RUN), str(round_), str(threads), str(work / f"job{i}"),
                 str(config)] for i in range(count)]
    start = time.perf_counter()
    if at_once:
        children = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, text=True) for c in commands]
        for child in children:
            child.communicate()
            if child.returncode:
                raise SystemExit(f"a training child failed (exit {child.returncode})")
    else:
        for command in commands:
            subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="trainings, and cores to share")
    parser.add_argument("--round", type=int, default=5, help="the committed round whose training is rerun")
    args = parser.parse_args()
    config = ROOT / "data" / "params" / "llome_marge.json"
    for needed in (config, RUN / f"round_{args.round:02d}" / "pairs.parquet", RUN / f"round_{args.round - 1:02d}"):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run `make repro` (or `dvc pull`) first")
    print(describe_machine())
    with tempfile.TemporaryDirectory() as tmp:
        serial = run_children(args.jobs, args.jobs, False, args.round, config, Path(tmp) / "serial")
        parallel = run_children(args.jobs, 1, True, args.round, config, Path(tmp) / "parallel")
    print(json.dumps({"trainings": args.jobs, f"one after another, {args.jobs} threads each (s)": round(serial, 1),
                      "all at once, 1 thread each (s)": round(parallel, 1),
                      "throughput gain": round(serial / parallel, 2)}, indent=1))


if __name__ == "__main__":
    main()
