"""Cost of LaMBO-2 rounds, and the feasibility of their proposals, from GA seed data.

    flock /tmp/llome-cpu.lock python bench/bench_lambo.py --size profile --rounds 2 --out lambo_bench.json

Seed data: the GA with the seed_data stage's settings (1000 particles, 10 steps) on
ehr_v-32_l-032_m-4_c-4_q-4 at the paper's function seed; every distinct particle is a label. Then `--rounds`
rounds of LaMBO-2 per size through llome.lambo (its environment: `make lambo-env`), n = 500 proposals a round
as in the default profile. Sizes: "authors" is the authors' configuration; "profile" is params.yaml's default
`lambo2` section, what the pipeline's stage runs; "small" shrinks the model, the epochs and the steps. Round 1
trains from scratch and later rounds retrain from its model, so `--rounds 2` times both kinds. As in the stage,
one runner process answers every round of a size (its start-up, mostly imports, lands in round 1).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from llome.config import load_profile
from llome.ehrlich import Ehrlich
from llome.ga import GAConfig, run_ga
from llome.lambo import LamboServer, LamboSettings, lambo_python, run_lambo
from llome.rounds import round_timing

ROOT = Path(__file__).resolve().parent.parent
FUNCTION, FUNCTION_SEED = "ehr_v-32_l-032_m-4_c-4_q-4", 50494
SEED_GA = GAConfig(num_particles=1000, mutation_prob=0.005, recombine_prob=0.0882, survival_quantile=0.1,
                   num_steps=10)
NUM_PROPOSALS = 500


def sizes() -> dict[str, LamboSettings]:
    profile = {k: v for k, v in load_profile(ROOT / "params.yaml", "default")["lambo2"].items() if k != "rounds"}
    return {
        "small": LamboSettings(num_proposals=64, num_steps=8, max_epochs=2, retrain_epochs=2, feature_dim=32,
                               ensemble_size=2, device="cpu", threads=2),
        "authors": LamboSettings(num_proposals=NUM_PROPOSALS, device="cpu", threads=2),
        "profile": LamboSettings(**profile, num_proposals=NUM_PROPOSALS, device="cpu", threads=2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", action="append", choices=["small", "authors", "profile"], required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--num-steps", type=int, help="override LaMBO's optimisation steps")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    function = Ehrlich.from_name(FUNCTION, seed=FUNCTION_SEED)
    started = time.perf_counter()
    ga = run_ga(function, function.initial_solution(), function.num_states, SEED_GA, seed=0, progress=False)
    seed_table = ga.unique()
    seed_y = seed_table["score"].to_numpy()
    report = {"function": FUNCTION, "function_seed": FUNCTION_SEED, "ga_seconds": time.perf_counter() - started,
              "seed_labels": int(len(seed_table)), "seed_feasible_fraction": float(np.isfinite(seed_y).mean()),
              "seed_best": float(seed_y.max()), "runs": []}
    print(json.dumps(report), flush=True)
    python = lambo_python()
    for size in args.size:
        settings = sizes()[size]
        if args.num_steps is not None:
            settings = LamboSettings(**{**settings.model_dump(), "num_steps": args.num_steps})
        with tempfile.TemporaryDirectory() as run_dir, LamboServer(python) as runner:
            started = time.perf_counter()
            history = run_lambo(function, seed_table, settings, args.rounds, seed=0, run_dir=Path(run_dir),
                                runner=runner)
            seconds = time.perf_counter() - started
            timings = [round_timing(Path(run_dir), m["round"]) for m in history]
        run = {"size": size, "settings": settings.model_dump(), "seconds": seconds, "rounds": [
            {"round": m["round"], "oracle_calls": m["oracle_calls"], **timing,
             "feasible_fraction": m["labelled"]["feasible"], "best_value": m["labelled"]["best_score"],
             "mean_positions_changed": m["generation"]["mean_distance"] * function.dim,
             "unique_fraction": m["generation"]["unique_fraction"], **m["lambo"]}
            for m, timing in zip(history, timings)]}
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
