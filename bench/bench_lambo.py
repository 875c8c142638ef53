"""Cost of one LaMBO-2 round, and the feasibility of its proposals, from GA seed data.

    flock /tmp/llome-cpu.lock python bench/bench_lambo.py --size small --size default --out lambo_bench.json

Seed data: the GA with the seed_data stage's settings (1000 particles, 10 steps) on
ehr_v-32_l-032_m-4_c-4_q-4 at the paper's function seed; every distinct particle is a label. Then one round
of LaMBO-2 per size through llome.lambo (its environment: `make lambo-env`). "default" is the authors'
configuration with 500 proposals; "small" shrinks the model, the epochs and the steps.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from llome.ehrlich import Ehrlich
from llome.ga import GAConfig, run_ga
from llome.lambo import LamboSettings, lambo_python, run_lambo
from llome.loop import CountedOracle

FUNCTION, FUNCTION_SEED = "ehr_v-32_l-032_m-4_c-4_q-4", 50494
SEED_GA = GAConfig(num_particles=1000, mutation_prob=0.005, recombine_prob=0.0882, survival_quantile=0.1,
                   num_steps=10)
SIZES = {
    "small": LamboSettings(num_proposals=64, num_steps=8, max_epochs=2, retrain_epochs=2, feature_dim=32,
                           ensemble_size=2),
    "default": LamboSettings(num_proposals=500),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", choices=sorted(SIZES), required=True)
    parser.add_argument("--num-steps", type=int, help="override LaMBO's optimisation steps")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    function = Ehrlich.from_name(FUNCTION, seed=FUNCTION_SEED)
    started = time.perf_counter()
    ga = run_ga(function, function.initial_solution(), function.num_states, SEED_GA, seed=0, progress=False)
    seed_table = ga.unique()
    seed_x = np.array(seed_table["sequence"].tolist(), dtype=np.int64)
    seed_y = seed_table["score"].to_numpy()
    report = {"function": FUNCTION, "function_seed": FUNCTION_SEED, "ga_seconds": time.perf_counter() - started,
              "seed_labels": int(len(seed_x)), "seed_feasible_fraction": float(np.isfinite(seed_y).mean()),
              "seed_best": float(seed_y.max()), "runs": []}
    print(json.dumps(report), flush=True)
    python = lambo_python()
    for size in args.size:
        settings = SIZES[size] if args.num_steps is None else replace(SIZES[size], num_steps=args.num_steps)
        oracle = CountedOracle(function, budget=settings.num_proposals)
        with tempfile.TemporaryDirectory() as work_dir:
            started = time.perf_counter()
            run = run_lambo(function, oracle, seed_x, seed_y, settings, num_rounds=1, seed=0,
                            work_dir=Path(work_dir), python=python)
            seconds = time.perf_counter() - started
        report["runs"].append({"size": size, "settings": asdict(settings), "seconds": seconds,
                               "oracle_calls": oracle.calls, **run.rounds[0]})
        print(json.dumps(report["runs"][-1]), flush=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
