"""The exact Hamming neighbour search: every path against a brute-force reference."""

import numpy as np
import pytest
from conftest import brute_force_neighbours

from llome import neighbours
from llome.neighbours import nearest_neighbours


def random_pool(rng, size, length, vocabulary):
    return np.unique(rng.integers(0, vocabulary, (size, length)), axis=0)


@pytest.mark.parametrize("search", ["auto", "blocks", "dense", "sparse"])
def test_every_search_path_agrees_with_brute_force(search, monkeypatch):
    rng = np.random.default_rng(["auto", "blocks", "dense", "sparse"].index(search))
    if search == "dense":
        monkeypatch.setattr(neighbours, "SPARSE_FEATURE_COST", 10**9)
    if search == "sparse":
        monkeypatch.setattr(neighbours, "SPARSE_FEATURE_COST", 0)
    for trial in range(60):
        length, vocabulary = int(rng.integers(1, 12)), int(rng.integers(1, 5))
        array = random_pool(rng, int(rng.integers(1, 50)), length, vocabulary)
        max_mismatch = int(rng.integers(0, length + 2))
        num_neighbors = [None, 1, 3, 100][trial % 4]
        if search == "auto":
            found = nearest_neighbours(array, max_mismatch, num_neighbors)
        elif search == "blocks":
            found = neighbours._neighbours_by_blocks(array, max_mismatch, num_neighbors, max_candidates=10**9)
            if found is None:  # pigeonhole needs max_mismatch + 1 <= length blocks
                assert max_mismatch + 1 > length
                continue
        else:
            if max_mismatch < 1 or len(array) < 2:
                continue
            found = neighbours._neighbours_by_matrix_product(array, max_mismatch, num_neighbors)
        expected = brute_force_neighbours(array, max_mismatch, num_neighbors)
        for got, want in zip(found, expected):
            np.testing.assert_array_equal(got, want)


def test_dense_pools_take_the_matrix_product_and_diverse_pools_the_blocks():
    rng = np.random.default_rng(5)
    diverse = random_pool(rng, 2000, 32, 32)
    assert neighbours._neighbours_by_blocks(diverse, 8, 30) is not None
    start = rng.integers(0, 32, 32)
    dense = np.tile(start, (2000, 1))
    hit = rng.random(dense.shape) < 0.05
    dense[hit] = rng.integers(0, 32, hit.sum())
    dense = np.unique(dense, axis=0)
    assert neighbours._neighbours_by_blocks(dense, 8, 30) is None
    rows, cols, mismatches = nearest_neighbours(dense, 8, 30)
    assert np.bincount(rows).max() == 30 and (mismatches <= 8).all()
