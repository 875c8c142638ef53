"""Ehrlich evaluation throughput: llome.ehrlich vs pytorch-holo 0.0.5 in one process, plus our peak memory.

Run with the holo venv's python (bench/holo_venv.sh creates it and prints its path), one heavy job at a time:

    flock /tmp/llome-cpu.lock $(bench/holo_venv.sh) bench/bench_ehrlich.py

For (v=32, L=32, c=4, k=4) and (v=32, L=128, c=4, k=4), at batch 1, 1e3 and 1e5, both implementations
evaluate the same int64 batch (half uniform-random sequences, half mutated optima, so values vary);
the outputs are checked equal, and the best of a few repeats is reported with the ratio holo/ours.
Then a subprocess evaluates a batch of 1e5 at (v=32, L=256, c=8, k=4) with our code alone and reports
its peak traced allocation during evaluation (tracemalloc; numpy reports its buffers to it) and the
process's peak RSS before and after evaluating (torch, numpy and the 195 MB int64 input are already in
the first number). The reference needs ~5.5 GB there, so it is not run at that size.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from machine import describe_machine

from llome.ehrlich import PAPER_SEED, Ehrlich

SHAPES = [(32, 32, 4, 4), (32, 128, 4, 4)]
BATCHES = [1, 1_000, 100_000]
REPEATS = {1: 200, 1_000: 20, 100_000: 3}
MEMORY_SHAPE = (32, 256, 8, 4)
MEMORY_BATCH = 100_000


def make_batch(f: Ehrlich, size: int, rng: np.random.Generator) -> np.ndarray:
    uniform = rng.integers(0, f.num_states, size=(size - size // 2, f.dim))
    mutated = np.tile(f.optimal_solution(), (size // 2, 1))
    flips = rng.random(mutated.shape) < rng.random((len(mutated), 1)) * 0.2
    mutated[flips] = rng.integers(0, f.num_states, size=int(flips.sum()))
    return np.concatenate([uniform, mutated]).astype(np.int64)


def best_time(function, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def compare_throughput() -> None:
    from holo.test_functions.closed_form import Ehrlich as HoloEhrlich

    rng = np.random.default_rng(0)
    print(describe_machine())
    print(f"{'shape (v,L,c,k)':>18} {'batch':>7} {'holo s':>10} {'ours s':>10} {'holo/ours':>10}")
    for v, length, c, k in SHAPES:
        ours = Ehrlich(v, length, c, k, k, seed=PAPER_SEED)
        holo = HoloEhrlich(
            num_states=v, dim=length, num_motifs=c, motif_length=k, quantization=k, random_seed=PAPER_SEED
        )
        assert ours.motifs.tolist() == [m.tolist() for m in holo.motifs], "instances differ"
        for batch_size in BATCHES:
            X = make_batch(ours, batch_size, rng)
            X_torch = torch.from_numpy(X)
            reference = holo.evaluate_true(X_torch).numpy().astype(np.float64)
            assert np.array_equal(ours(X), reference), "values differ from the reference"
            repeats = REPEATS[batch_size]
            holo_seconds = best_time(lambda: holo.evaluate_true(X_torch), repeats)
            ours_seconds = best_time(lambda: ours(X), repeats)
            print(
                f"{str((v, length, c, k)):>18} {batch_size:>7} {holo_seconds:>10.2e} {ours_seconds:>10.2e} "
                f"{holo_seconds / ours_seconds:>10.1f}",
                flush=True,
            )


def peak_rss_mb() -> float:
    """VmHWM from /proc: unlike ru_maxrss it is not inherited from the parent across fork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def measure_memory() -> dict:
    """Runs in a fresh process so that peak RSS belongs to this measurement alone."""
    import tracemalloc

    v, length, c, k = MEMORY_SHAPE
    f = Ehrlich(v, length, c, k, k, seed=PAPER_SEED)
    rng = np.random.default_rng(1)
    X = np.empty((MEMORY_BATCH, length), dtype=np.int64)
    for start in range(0, MEMORY_BATCH, 10_000):  # built in pieces so that building it sets no RSS peak
        X[start : start + 10_000] = make_batch(f, 10_000, rng)
    rss_before = peak_rss_mb()
    tracemalloc.start()
    start = time.perf_counter()
    values = f(X)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "shape": MEMORY_SHAPE,
        "batch": MEMORY_BATCH,
        "input_MB": X.nbytes / 2**20,
        "evaluation_peak_traced_MB": peak / 2**20,
        "process_peak_rss_MB_before_eval": rss_before,
        "process_peak_rss_MB_after_eval": peak_rss_mb(),
        "seconds": seconds,
        "feasible_fraction": float(np.isfinite(values).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory-only", action="store_true", help="(internal) run the memory measurement")
    args = parser.parse_args()
    if args.memory_only:
        print(json.dumps(measure_memory()))
        return
    warnings.filterwarnings("ignore")  # botorch/gpytorch import chatter
    compare_throughput()
    result = subprocess.run(
        [sys.executable, __file__, "--memory-only"], check=True, capture_output=True, text=True
    )
    memory = json.loads(result.stdout.strip().splitlines()[-1])
    print("memory (ours):", json.dumps(memory, indent=1))


if __name__ == "__main__":
    main()
