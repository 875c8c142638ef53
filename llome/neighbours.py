"""Exact nearest-neighbour search in Hamming distance over a pool of equal-length integer sequences.

Two exact methods, chosen per pool: a pigeonhole block filter that compares only pairs agreeing on
some block (fast on diverse pools), and one matrix product over sparse deviation features (fast on
dense, GA-like pools, where almost every pair shares a block).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch

# The candidate-pair search (below) verifies pairs one by one; past this many it is cheaper and
# safer for memory to compare every pair with one matrix product.
MAX_CANDIDATE_PAIRS = 20_000_000
# Bytes of the (rows x pool) block of ranking keys held at once by the matrix-product search.
DENSE_CHUNK_BYTES = 2**26
# Cost of one stored feature per row in a sparse product, in dense-product columns (measured).
SPARSE_FEATURE_COST = 32


def nearest_neighbours(
    array: np.ndarray, max_mismatch: int, num_neighbors: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed neighbour lists of a pool without duplicate rows.

    Returns (rows, cols, mismatches): for each row i, up to num_neighbors rows j != i with at most
    max_mismatch mismatching positions (all of them when num_neighbors is None), nearest first,
    ties broken by the lower index j. Edges are sorted by (row, mismatches, col).
    """
    empty = np.zeros(0, dtype=np.int64)
    count = len(array)
    if count < 2 or max_mismatch < 1 or num_neighbors == 0:
        return empty, empty, empty
    found = _neighbours_by_blocks(array, max_mismatch, num_neighbors)
    if found is None:
        found = _neighbours_by_matrix_product(array, max_mismatch, num_neighbors)
    return found


def _neighbours_by_blocks(array, max_mismatch, num_neighbors, max_candidates=None):
    """Exact search that checks only pairs sharing a block (see _candidate_pairs); None if the
    pool is too dense for that to pay off."""
    count = len(array)
    if max_candidates is None:
        max_candidates = min(MAX_CANDIDATE_PAIRS, count * (count - 1) // 8)
    candidates = _candidate_pairs(array, max_mismatch, max_candidates)
    if candidates is None:
        return None
    first, second = candidates
    mismatches = _count_mismatches(array, first, second)
    close = mismatches <= max_mismatch
    first, second, mismatches = first[close], second[close], mismatches[close]
    rows = np.concatenate([first, second])
    cols = np.concatenate([second, first])
    distances = np.concatenate([mismatches, mismatches])
    return _nearest_per_row(rows, cols, distances, num_neighbors)


def _candidate_pairs(array: np.ndarray, max_mismatch: int, max_candidates: int):
    """Unordered index pairs (i < j) that could be within max_mismatch, or None when there are more
    than max_candidates.

    Pigeonhole: cut the positions into max_mismatch + 1 blocks; two sequences with at most
    max_mismatch mismatches agree exactly on at least one block. So only pairs sharing a block
    need checking. Diverse pools share few blocks; dense pools (GA populations) share almost all,
    and those go to the matrix product instead.
    """
    count, length = array.shape
    if max_mismatch + 1 > length:
        return None
    groups = []
    total = 0
    for positions in np.array_split(np.arange(length), max_mismatch + 1):
        _, group = np.unique(array[:, positions], axis=0, return_inverse=True)
        group = group.reshape(-1)
        sizes = np.bincount(group)
        total += int((sizes * (sizes - 1) // 2).sum())
        if total > max_candidates:
            return None
        groups.append(group)
    keys = np.concatenate([_pairs_within_groups(group, count) for group in groups])
    keys.sort()  # then drop repeats; np.unique's hashing is several times slower here
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])] if len(keys) else keys
    return keys // count, keys % count


def _pairs_within_groups(group: np.ndarray, count: int) -> np.ndarray:
    """Every unordered pair of rows with the same group label, as keys i * count + j with i < j."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    group_end = np.searchsorted(sorted_group, sorted_group, side="right")
    position = np.arange(len(order))
    partners = group_end - position - 1  # later members of the same group
    total = int(partners.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    run_start = np.repeat(np.cumsum(partners) - partners, partners)
    offset = np.arange(total) - run_start
    left = np.repeat(order, partners)
    right = order[np.repeat(position + 1, partners) + offset]
    return np.minimum(left, right) * count + np.maximum(left, right)


def _count_mismatches(array: np.ndarray, first: np.ndarray, second: np.ndarray, chunk: int = 1_000_000) -> np.ndarray:
    array = array.astype(np.min_scalar_type(array.max()), copy=False)  # less memory to gather
    out = np.empty(len(first), dtype=np.int64)
    for start in range(0, len(first), chunk):
        stop = start + chunk
        out[start:stop] = (array[first[start:stop]] != array[second[start:stop]]).sum(axis=1)
    return out


def _nearest_per_row(rows, cols, distances, num_neighbors):
    order = np.lexsort((cols, distances, rows))
    rows, cols, distances = rows[order], cols[order], distances[order]
    if num_neighbors is not None:
        rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
        keep = rank < num_neighbors
        rows, cols, distances = rows[keep], cols[keep], distances[keep]
    return rows, cols, distances


def _deviation_features(array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse 0/1 features whose dot products count what two rows share away from the consensus.

    Let c be the most common value at each position and P_i the positions where row i differs
    from c. Then matches(i, j) = L - |P_i| - |P_j| + |P_i & P_j| + #{l in P_i & P_j: x_il == x_jl},
    and the last two terms are the dot product of feature rows holding one indicator per deviating
    position and one per deviating (position, value). GA-like pools deviate from their consensus
    in a few positions, so these rows are far sparser than a one-hot of whole sequences.

    Returns CSR arrays (indptr, indices) over compacted columns, and |P_i| per row.
    """
    count, length = array.shape
    vocabulary = int(array.max()) + 1
    cells = np.arange(length) * vocabulary + array
    consensus = np.bincount(cells.ravel(), minlength=length * vocabulary).reshape(length, vocabulary).argmax(axis=1)
    row, position = np.nonzero(array != consensus)
    rows = np.concatenate([row, row])
    features = np.concatenate([position, length + cells[row, position]])
    order = np.lexsort((features, rows))
    _, indices = np.unique(features[order], return_inverse=True)
    deviations = np.bincount(row, minlength=count)
    indptr = np.concatenate([[0], np.cumsum(2 * deviations)])
    return indptr, indices.reshape(-1), deviations


def _neighbours_by_matrix_product(array: np.ndarray, max_mismatch: int, num_neighbors: int | None):
    count, length = array.shape
    indptr, indices, deviations = _deviation_features(array)
    width = int(indices.max()) + 1 if len(indices) else 1
    # key[i, j] = count * matches(i, j) - j ranks neighbours by distance, then by lower index.
    # Its parts stay below count * (2L + 1), so float32 holds it exactly when that is below 2**24.
    dtype = torch.float32 if count * (2 * length + 1) < 2**24 else torch.float64
    features_t = torch.zeros(width, count, dtype=dtype)
    features_t[torch.from_numpy(indices), torch.from_numpy(np.repeat(np.arange(count), 2 * deviations))] = 1.0
    deviations_t = torch.from_numpy(deviations).to(dtype)
    index = torch.arange(count)
    row_bias = count * (length - deviations_t)
    column_bias = -(count * deviations_t + index.to(dtype))
    # A sparse product costs per stored feature, a dense one per column; on this kind of CPU one
    # feature per row costs about as much as 32 dense columns (bench/bench_pairs.py).
    sparse = len(indices) * SPARSE_FEATURE_COST < count * width
    dense_rows = None if sparse else features_t.T.contiguous()

    min_key = count * (length - max_mismatch)  # key + j >= min_key  <=>  close enough
    take = None if num_neighbors is None else min(num_neighbors, count - 1)
    chunk = max(1, min(count, DENSE_CHUNK_BYTES // (features_t.element_size() * count)))
    rows, cols, distances = [], [], []
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        local = torch.arange(stop - start)
        if sparse:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                block = torch.sparse_csr_tensor(
                    torch.from_numpy(indptr[start:stop + 1] - indptr[start]),
                    torch.from_numpy(indices[indptr[start]:indptr[stop]]),
                    torch.ones(int(indptr[stop] - indptr[start]), dtype=dtype),
                    size=(stop - start, width),
                    check_invariants=False,
                )
            key = torch.sparse.mm(block, features_t).mul_(count).add_(column_bias)
        else:
            key = torch.addmm(column_bias, dense_rows[start:stop], features_t, alpha=count)
        key.add_(row_bias[start:stop].unsqueeze(1))
        key[local, local + start] = -math.inf  # never one's own neighbour
        if take is None:
            row, col = torch.nonzero(key + index >= min_key, as_tuple=True)
            top = key[row, col]
            row = row + start
        else:
            top, col = torch.topk(key, take, dim=1, largest=True, sorted=True)
            row = (local + start).unsqueeze(1).expand_as(col)
            close = top + col >= min_key
            row, col, top = row[close], col[close], top[close]
        rows.append(row.numpy().astype(np.int64))
        cols.append(col.numpy().astype(np.int64))
        distances.append(length - ((top + col) / count).round().numpy().astype(np.int64))
    rows, cols, distances = (np.concatenate(part) for part in (rows, cols, distances))
    if take is None:
        return _nearest_per_row(rows, cols, distances, None)
    return rows, cols, distances
