"""Our GA (llome.ga) against the authors' DiscreteEvolution (pytorch-holo 0.0.5), in one process.

Run with the holo venv, one heavy job at a time:
    flock /tmp/llome-cpu.lock $(bench/holo_venv.sh) bench/bench_ga.py

1. Speed, ms per GA step with 1,000 particles at L=32, ours and holo's timed alternately in the same run:
   a. GA work alone: the oracle replays precomputed random scores (free, all distinct, so 10% survive and
      90% of the particles are rebuilt by crossover every step, the most work a step can have).
      Target: ours >= 5x faster.
   b. A real step: each side with its own Ehrlich function (llome.ehrlich vs holo's) as the oracle.
   torch runs on one thread, like numpy: on this shared 2-core machine torch's thread pool spin-waits
   whenever another process holds a core, which made holo's steps 20x slower and the ratio meaningless.
2. Statistics: over 10 GA seeds on ehr_v-32_l-032_m-4_c-4_q-4 (the project's function seed) with the
   seed-data settings, the best value so far after 10 and after 50 steps, ours vs holo's. The two Ehrlich
   implementations are checked to agree on every particle of one run, so differences come from the GA.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from holo.optim import DiscreteEvolution
from holo.test_functions.closed_form import Ehrlich as HoloEhrlich

from machine import describe_machine

from llome.ehrlich import Ehrlich
from llome.ga import GAConfig, run_ga

NAME = "ehr_v-32_l-032_m-4_c-4_q-4"
SEED_DATA = dict(num_particles=1000, mutation_prob=0.005, recombine_prob=0.0882, survival_quantile=0.1)


def both_functions() -> tuple[Ehrlich, HoloEhrlich]:
    ours = Ehrlich.from_name(NAME)
    holo = HoloEhrlich(
        num_states=ours.num_states, dim=ours.dim, num_motifs=ours.num_motifs, motif_length=ours.motif_length,
        quantization=ours.quantization, random_seed=ours.seed,
    )
    if not np.array_equal(ours.initial_solution(), holo.initial_solution().numpy()):
        raise RuntimeError("llome and holo Ehrlich disagree on the initial solution; the comparison is void")
    return ours, holo


def holo_optimizer(initial: np.ndarray, num_states: int) -> DiscreteEvolution:
    # holo's own usage: the particles are float copies of the integer sequence.
    param = torch.nn.Parameter(torch.from_numpy(initial).float())
    return DiscreteEvolution([param], vocab=list(range(num_states)), **SEED_DATA)


def ms_per_step_ours(oracle, initial: np.ndarray, num_states: int, steps: int, seed: int) -> float:
    config = GAConfig(**SEED_DATA, num_steps=steps)
    start = time.perf_counter()
    run_ga(oracle, initial, num_states, config, seed=seed, progress=False)
    return (time.perf_counter() - start) / steps * 1e3


def ms_per_step_holo(loss, initial: np.ndarray, num_states: int, steps: int, seed: int) -> float:
    torch.manual_seed(seed)
    optimizer = holo_optimizer(initial, num_states)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step(lambda particles: loss(particles[0]))
    return (time.perf_counter() - start) / steps * 1e3


class Replay:
    """An oracle that ignores its input and returns the next row of a fixed score table."""

    def __init__(self, table: np.ndarray, as_torch_loss: bool = False):
        self.table, self.as_torch_loss, self.row = table, as_torch_loss, 0

    def __call__(self, x):
        scores = self.table[self.row % len(self.table)]
        self.row += 1
        return -torch.from_numpy(scores) if self.as_torch_loss else scores


def speed(steps: int, repeats: int) -> None:
    ours_f, holo_f = both_functions()
    initial = ours_f.initial_solution()
    table = np.random.default_rng(0).random((steps, SEED_DATA["num_particles"]))
    torch.set_num_threads(1)
    cases = {
        "GA work (free oracle)": (lambda: Replay(table), lambda: Replay(table, as_torch_loss=True)),
        "step with own Ehrlich": (lambda: ours_f, lambda: (lambda x: -holo_f(x))),
    }
    print(f"== 1. ms per step, N=1000, L={ours_f.dim}: best of {repeats} alternating runs of {steps} steps "
          f"(torch threads={torch.get_num_threads()})")
    for name, (make_ours, make_holo) in cases.items():
        ms_per_step_ours(make_ours(), initial, ours_f.num_states, 3, seed=0)  # warm-up: one-off costs
        ms_per_step_holo(make_holo(), initial, ours_f.num_states, 3, seed=0)
        ours, holo = [], []
        for repeat in range(repeats):
            ours.append(ms_per_step_ours(make_ours(), initial, ours_f.num_states, steps, seed=repeat))
            holo.append(ms_per_step_holo(make_holo(), initial, ours_f.num_states, steps, seed=repeat))
        print(f"{name:>22}: ours {min(ours):7.3f}  holo {min(holo):7.3f}  holo/ours = {min(holo) / min(ours):5.2f}x")


def statistics(seeds: int, steps: int, checkpoints=(10, 50)) -> None:
    ours_f, holo_f = both_functions()
    initial = ours_f.initial_solution()
    ours, holo = [], []
    for seed in range(seeds):
        result = run_ga(ours_f, initial, ours_f.num_states, GAConfig(**SEED_DATA, num_steps=steps), seed=seed,
                        progress=False)
        ours.append([result.scores[result.steps == s].max() for s in range(steps)])
        if seed == 0:
            holo_scores = holo_f(torch.from_numpy(result.sequences.astype(np.int64))).double().numpy()
            agree = np.array_equal(holo_scores, result.scores)
            print(f"holo's Ehrlich on our {len(result)} evaluations of seed 0: identical scores = {agree}")

        torch.manual_seed(seed)
        optimizer = holo_optimizer(initial, ours_f.num_states)
        holo.append([-float(optimizer.step(lambda particles: -holo_f(particles[0]))) for _ in range(steps)])
    ours, holo = np.maximum.accumulate(ours, axis=1), np.maximum.accumulate(holo, axis=1)

    print(f"\n== 2. best value so far on {NAME} (function seed {ours_f.seed}), {seeds} GA seeds, "
          f"seed-data settings {SEED_DATA}")
    print(f"initial solution value: {ours_f(initial)[0]:.4f}")
    for step in [c for c in checkpoints if c <= steps]:
        for name, runs in (("ours", ours), ("holo", holo)):
            values = runs[:, step - 1]
            print(f"after {step:3d} steps {name}: median {np.median(values):.4f}  mean {values.mean():.4f}  "
                  f"sorted {np.round(np.sort(values), 4).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5, help="0 skips the speed part")
    parser.add_argument("--seeds", type=int, default=10, help="0 skips the statistics part")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    print(describe_machine())
    if args.repeats:
        speed(args.timing_steps, args.repeats)
    if args.seeds:
        statistics(args.seeds, args.steps)


if __name__ == "__main__":
    main()
