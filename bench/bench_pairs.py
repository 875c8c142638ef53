"""Time make_pairs on 20,000-sequence pools (L=32, v=32), against a brute-force reference in the
same run: a diverse (uniform random) pool, a clustered pool (variants of 200 seeds, like a LLOME
round's labelled candidates) and a dense GA-like pool of near-identical sequences.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_pairs.py [--size 20000]

Also printed: the dense matrix product timed on the same pool, which calibrates
llome.neighbours.SPARSE_FEATURE_COST (the sparse product is used when it is expected to be faster).

The reference computes the same exact neighbour lists with one full (rows x pool) integer
comparison per chunk and a stable sort per row: the obvious vectorised approach. It is timed on a
subset of rows and scaled to the full pool (its cost is linear in the rows searched).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from machine import describe_machine

from llome import neighbours as neighbours_module
from llome.neighbours import nearest_neighbours
from llome.pairs import make_pairs, max_mismatches, unique_pool

LENGTH, VOCABULARY = 32, 32


def random_pool(size: int, rng: np.random.Generator) -> np.ndarray:
    return np.unique(rng.integers(0, VOCABULARY, (size * 2, LENGTH)), axis=0)[rng.permutation(size)]


def clustered_pool(size: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.integers(0, VOCABULARY, (200, LENGTH))
    pool = centres[rng.integers(0, len(centres), size * 2)]
    hit = rng.random(pool.shape) < 5 / LENGTH
    pool[hit] = rng.integers(0, VOCABULARY, hit.sum())
    return np.unique(pool, axis=0)[rng.permutation(size)]


def ga_like_pool(size: int, rng: np.random.Generator) -> np.ndarray:
    """Lineages of a GA seeded with one sequence: a few founders a couple of mutations from the
    start, children a few more mutations from a founder, like 10 GA steps at a low mutation rate."""
    start = rng.integers(0, VOCABULARY, LENGTH)

    def mutate(parents, rate):
        children = parents.copy()
        hit = rng.random(children.shape) < rate
        children[hit] = rng.integers(0, VOCABULARY, hit.sum())
        return children

    founders = mutate(np.tile(start, (200, 1)), 2 / LENGTH)
    pool = np.zeros((0, LENGTH), dtype=np.int64)
    while len(pool) < size:
        children = mutate(founders[rng.integers(0, len(founders), size)], 3 / LENGTH)
        pool = np.unique(np.concatenate([pool, children]), axis=0)
    return pool[rng.permutation(len(pool))[:size]]


def brute_force_neighbours(pool: np.ndarray, max_mismatch: int, num_neighbors: int, rows: np.ndarray):
    found = []
    for start in range(0, len(rows), 256):
        chunk = rows[start:start + 256]
        mismatches = (pool[chunk, None, :] != pool[None, :, :]).sum(axis=2)
        mismatches[np.arange(len(chunk)), chunk] = LENGTH + 1
        order = np.argsort(mismatches, axis=1, kind="stable")[:, :num_neighbors]
        nearest = np.take_along_axis(mismatches, order, axis=1)
        found.append((order, nearest <= max_mismatch))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--reference-rows", type=int, default=1_000)
    args = parser.parse_args()
    print(describe_machine())
    rng = np.random.default_rng(0)
    pools = [
        ("random", random_pool(args.size, rng)),
        ("clustered", clustered_pool(args.size, rng)),
        ("ga-like", ga_like_pool(args.size, rng)),
    ]
    for name, pool in pools:
        scores = np.where(rng.random(len(pool)) < 0.3, -np.inf, rng.integers(0, 5, len(pool)) / 4)
        mean_distance = (pool[:500, None] != pool[None, :500]).mean()

        started = time.perf_counter()
        pairs = make_pairs(pool, scores)
        ours = time.perf_counter() - started

        unique, _ = unique_pool(pool, scores)
        max_mismatch = max_mismatches(0.25, LENGTH)
        started = time.perf_counter()
        rows, cols, _ = nearest_neighbours(unique, max_mismatch, 30)
        search = time.perf_counter() - started

        dense_note = ""
        if name == "ga-like":
            started = time.perf_counter()
            saved, neighbours_module.SPARSE_FEATURE_COST = neighbours_module.SPARSE_FEATURE_COST, 10**9
            dense = neighbours_module._neighbours_by_matrix_product(unique, max_mismatch, 30)
            neighbours_module.SPARSE_FEATURE_COST = saved
            dense_seconds = time.perf_counter() - started
            same = all(np.array_equal(a, b) for a, b in zip(dense, (rows, cols)))
            dense_note = f"; dense product {dense_seconds:.2f} s (same result: {same})"

        subset = np.arange(min(args.reference_rows, len(unique)))
        started = time.perf_counter()
        reference = brute_force_neighbours(unique, max_mismatch, 30, subset)
        naive = (time.perf_counter() - started) * len(unique) / len(subset)
        # Check the two searches agree on the subset (same ties rule: distance, then index).
        expected = np.concatenate([order[close] for order, close in reference])
        agree = np.array_equal(cols[rows < len(subset)], expected)

        print(
            f"{name:9s} n={len(pool)} mean pairwise distance {mean_distance:.3f}: "
            f"make_pairs {ours:.2f} s ({len(pairs)} pairs), neighbour search {search:.2f} s, "
            f"brute force ~{naive:.1f} s (scaled from {len(subset)} rows) -> {naive / search:.0f}x; "
            f"neighbours agree: {agree}{dense_note}"
        )


if __name__ == "__main__":
    main()
