"""Training pairs and triples from a labelled pool, and candidate selection (PAPER.md section 4).

PropEn-style pairs: every sequence is matched with its nearest neighbours in normalised Hamming
distance, and each pair is oriented so that the model learns to turn the worse sequence (x) into
the better one (y). DPO triples reuse the same neighbourhoods. The last two functions select which
generated candidates the oracle labels.

Conventions: a sequence is a tuple of ints in DataFrame cells and an (N, L) integer array in bulk
code; scores are float64 with -inf for infeasible sequences.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["x", "y", "x_score", "y_score", "reward", "distance"]
TRIPLE_COLUMNS = ["x", "y_w", "y_l", "x_score", "y_w_score", "y_l_score"]

# The candidate-pair search (below) verifies pairs one by one; past this many it is cheaper and
# safer for memory to compare every pair with one matrix product.
MAX_CANDIDATE_PAIRS = 20_000_000
# Bytes of the (rows x pool) block of ranking keys held at once by the matrix-product search.
DENSE_CHUNK_BYTES = 2**26
# Cost of one stored feature per row in a sparse product, in dense-product columns (measured).
SPARSE_FEATURE_COST = 32


# ---------------------------------------------------------------------------------------------
# Input conversion and validation


def as_sequence_array(sequences, name: str = "sequences") -> np.ndarray:
    """(N, L) int64 array from a 2-D integer array or an iterable of equal-length integer sequences."""
    if isinstance(sequences, (str, bytes)):
        raise ValueError(f"{name} must be integer sequences, got a string")
    if isinstance(sequences, np.ndarray):
        array = sequences
    else:
        if not isinstance(sequences, Iterable):
            raise ValueError(f"{name} must be an iterable of integer sequences, got {type(sequences).__name__}")
        rows = list(sequences)
        for position, row in enumerate(rows):
            if isinstance(row, (str, bytes)) or not isinstance(row, (Iterable, np.ndarray)):
                raise ValueError(f"{name} must hold integer sequences, got {row!r} at position {position}")
        rows = [row if isinstance(row, np.ndarray) else tuple(row) for row in rows]
        if not rows:
            return np.zeros((0, 0), dtype=np.int64)
        lengths = {len(row) for row in rows}
        if len(lengths) != 1:
            raise ValueError(f"{name} must all have the same length, got lengths {sorted(lengths)}")
        array = np.asarray(rows)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N, L), got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"{name} must contain integers, got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError(f"{name} must contain non-negative integers, found {array.min()}")
    return array.astype(np.int64, copy=False)


def as_score_array(scores, count: int, name: str = "scores") -> np.ndarray:
    """float64 scores, one per sequence; -inf marks an infeasible sequence, NaN and +inf are errors."""
    try:
        array = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numbers: {error}") from None
    if array.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},) to match the sequences, got {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN at position {int(np.flatnonzero(np.isnan(array))[0])}")
    if np.isposinf(array).any():
        raise ValueError(f"{name} contains +inf at position {int(np.flatnonzero(np.isposinf(array))[0])}")
    return array


def as_tuples(array: np.ndarray) -> list[tuple[int, ...]]:
    """Rows of an integer array as tuples of Python ints (the DataFrame cell format)."""
    return [tuple(row) for row in array.tolist()]


def max_mismatches(max_distance: float, length: int) -> int:
    """Largest number of mismatches whose normalised distance is <= max_distance (inclusive)."""
    # The small slack keeps e.g. 0.29 * 100 = 28.999999999999996 from losing its boundary case.
    return int(math.floor(max_distance * length + 1e-9))


def _check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _check_count(value, name: str, *, allow_none: bool, minimum: int) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def unique_pool(sequences, scores) -> tuple[np.ndarray, np.ndarray]:
    """Drop duplicate sequences; rows come back in lexicographic order, so results do not depend
    on the input order. A sequence listed with two different scores is an error."""
    array = as_sequence_array(sequences)
    values = as_score_array(scores, len(array))
    if len(array) == 0:
        return array, values
    unique, inverse = np.unique(array, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    lowest = np.full(len(unique), np.inf)
    highest = np.full(len(unique), -np.inf)
    np.minimum.at(lowest, inverse, values)
    np.maximum.at(highest, inverse, values)
    conflicting = np.flatnonzero(lowest != highest)
    if len(conflicting):
        first = conflicting[0]
        raise ValueError(
            f"scores disagree for {len(conflicting)} duplicated sequence(s), e.g. "
            f"{tuple(unique[first].tolist())} has scores {lowest[first]} and {highest[first]}"
        )
    return unique, lowest


# ---------------------------------------------------------------------------------------------
# Exact nearest-neighbour search in Hamming distance


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


# ---------------------------------------------------------------------------------------------
# Pairs and triples


def _empty_frame(columns) -> pd.DataFrame:
    sequence_columns = ("x", "y", "y_w", "y_l")
    return pd.DataFrame({c: pd.Series(dtype=object if c in sequence_columns else np.float64) for c in columns})


def _largest_allowed_infeasible(feasible: int, infeasible: int, fraction: float) -> int:
    """Largest m <= infeasible with m / (feasible + m) <= fraction."""
    if fraction >= 1.0:
        return infeasible
    allowed = int(math.floor(fraction * feasible / (1.0 - fraction) + 1e-9))
    return min(infeasible, allowed)


def make_pairs(
    sequences,
    scores,
    *,
    max_distance: float = 0.25,
    num_neighbors: int | None = 30,
    infeasible_fraction: float = 0.1,
    allow_equal_scores: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """PropEn-style pairs (x worse, y better) between near neighbours of a labelled pool.

    Duplicates are dropped. Each sequence is linked to its num_neighbors exact nearest neighbours
    within normalised Hamming distance <= max_distance (None: all of them); each unordered pair
    appears once. Equal-score pairs are dropped unless allow_equal_scores (then x is the
    lexicographically smaller sequence). reward = max(f(y) - f(x), 0) with -inf counted as 0.
    Pairs containing an infeasible sequence are subsampled (seeded) to at most
    infeasible_fraction of the returned rows. Rows are ordered by the pair's (lexicographically
    smaller, larger) sequence, so the result does not depend on the input order.
    """
    max_distance = _check_fraction(max_distance, "max_distance")
    num_neighbors = _check_count(num_neighbors, "num_neighbors", allow_none=True, minimum=0)
    infeasible_fraction = _check_fraction(infeasible_fraction, "infeasible_fraction")
    seed = _check_seed(seed)
    pool, values = unique_pool(sequences, scores)
    if len(pool) < 2:
        return _empty_frame(PAIR_COLUMNS)
    length = pool.shape[1]
    rows, cols, mismatches = nearest_neighbours(pool, max_mismatches(max_distance, length), num_neighbors)

    # One row per unordered pair (the neighbour relation is not symmetric).
    low, high = np.minimum(rows, cols), np.maximum(rows, cols)
    keys, first = np.unique(low * len(pool) + high, return_index=True)
    low, high, mismatches = keys // len(pool), keys % len(pool), mismatches[first]
    neighbour_pairs = len(low)
    if not allow_equal_scores:
        differ = values[low] != values[high]
        low, high, mismatches = low[differ], high[differ], mismatches[differ]

    # Orient worse -> better; on a tie the lexicographically smaller row (low) is the input.
    swap = values[high] < values[low]
    worse = np.where(swap, high, low)
    better = np.where(swap, low, high)

    infeasible = np.isneginf(values[worse])  # the worse one is infeasible whenever either is
    allowed = _largest_allowed_infeasible(int((~infeasible).sum()), int(infeasible.sum()), infeasible_fraction)
    if allowed < infeasible.sum():
        rng = np.random.default_rng(seed)
        kept = rng.choice(np.flatnonzero(infeasible), size=allowed, replace=False)
        keep = ~infeasible
        keep[kept] = True
        worse, better, mismatches = worse[keep], better[keep], mismatches[keep]

    log.info(
        "make_pairs: %d unique sequences, %d neighbour pairs, %d dropped for equal scores, "
        "%d of %d pairs with an infeasible sequence kept, %d pairs returned",
        len(pool), neighbour_pairs, neighbour_pairs - len(infeasible), allowed,
        int(infeasible.sum()), len(worse),
    )
    if len(worse) == 0:
        return _empty_frame(PAIR_COLUMNS)
    feasible_value = np.where(np.isneginf(values), 0.0, values)
    sequence = as_tuples(pool)
    return pd.DataFrame(
        {
            "x": [sequence[i] for i in worse],
            "y": [sequence[i] for i in better],
            "x_score": values[worse],
            "y_score": values[better],
            "reward": np.maximum(feasible_value[better] - feasible_value[worse], 0.0),
            "distance": mismatches / length,
        }
    )


def make_dpo_triples(
    sequences,
    scores,
    *,
    max_distance: float = 0.25,
    num_neighbors: int | None = 30,
    infeasible_fraction: float = 0.1,
    max_triples: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """DPO triples (x, y_w, y_l) from the neighbourhoods make_pairs uses (PAPER.md section 4, step 3).

    For each distinct x, its neighbourhood is its num_neighbors nearest sequences within max_distance (None:
    all of them). Every neighbour y_w that beats x (score > x's) is paired with every neighbour y_l that does not
    (score <= x's, infeasible included): all combinations. Each y_w also gets a triple (x, y_w, x) whose rejected
    answer is a copy of the prompt, so the model is taught not to repeat its input. An x with k winners and m
    other neighbours gives k * (m + 1) triples, up to num_neighbors**2: mind the size.

    Triples holding an infeasible sequence are subsampled (seeded) to at most infeasible_fraction of the rows, as
    in make_pairs; then, with max_triples, a seeded uniform subset of that many is kept. Rows are in lexicographic
    order of (x, y_w, y_l) as sequences, so the result does not depend on the input order.
    """
    max_distance = _check_fraction(max_distance, "max_distance")
    num_neighbors = _check_count(num_neighbors, "num_neighbors", allow_none=True, minimum=0)
    infeasible_fraction = _check_fraction(infeasible_fraction, "infeasible_fraction")
    max_triples = _check_count(max_triples, "max_triples", allow_none=True, minimum=0)
    rng = np.random.default_rng(_check_seed(seed))
    pool, values = unique_pool(sequences, scores)
    if len(pool) < 2:
        return _empty_frame(TRIPLE_COLUMNS)
    rows, cols, _ = nearest_neighbours(pool, max_mismatches(max_distance, pool.shape[1]), num_neighbors)
    better = values[cols] > values[rows]
    winners = pd.DataFrame({"x": rows[better], "y_w": cols[better]})
    losers = pd.DataFrame({"x": rows[~better], "y_l": cols[~better]})
    combinations = winners.merge(losers, on="x", how="inner")
    copies = winners.assign(y_l=winners["x"])
    triples = pd.concat([combinations, copies], ignore_index=True)
    inputs, chosen, rejected = (triples[c].to_numpy(np.int64) for c in ("x", "y_w", "y_l"))
    # unique_pool sorts the pool lexicographically, so index order is sequence order.
    order = np.lexsort((rejected, chosen, inputs))
    inputs, chosen, rejected = inputs[order], chosen[order], rejected[order]

    # y_w beats x, so it is feasible whenever the triple holds an infeasible sequence elsewhere too.
    infeasible = np.isneginf(values[inputs]) | np.isneginf(values[rejected])
    allowed = _largest_allowed_infeasible(int((~infeasible).sum()), int(infeasible.sum()), infeasible_fraction)
    keep = ~infeasible
    keep[np.sort(rng.choice(np.flatnonzero(infeasible), size=allowed, replace=False))] = True
    total = len(inputs)
    inputs, chosen, rejected = inputs[keep], chosen[keep], rejected[keep]
    if max_triples is not None and len(inputs) > max_triples:
        kept = np.sort(rng.choice(len(inputs), size=max_triples, replace=False))
        inputs, chosen, rejected = inputs[kept], chosen[kept], rejected[kept]
    log.info(
        "make_dpo_triples: %d unique sequences, %d triples (%d copies of the prompt as rejected), "
        "%d of %d with an infeasible sequence kept, %d returned",
        len(pool), total, len(copies), allowed, int(infeasible.sum()), len(inputs),
    )
    if len(inputs) == 0:
        return _empty_frame(TRIPLE_COLUMNS)
    sequence = as_tuples(pool)
    return pd.DataFrame(
        {
            "x": [sequence[i] for i in inputs],
            "y_w": [sequence[i] for i in chosen],
            "y_l": [sequence[i] for i in rejected],
            "x_score": values[inputs],
            "y_w_score": values[chosen],
            "y_l_score": values[rejected],
        }
    )


# ---------------------------------------------------------------------------------------------
# Choosing which candidates to label


def likelihood_filter(candidates: pd.DataFrame, quantile: float = 0.6, column: str = "loglik") -> pd.DataFrame:
    """Rows whose column is >= its quantile (numpy's linear interpolation); the index is kept."""
    if not isinstance(candidates, pd.DataFrame):
        raise ValueError(f"candidates must be a pandas DataFrame, got {type(candidates).__name__}")
    if column not in candidates.columns:
        raise ValueError(f"column {column!r} is not in candidates (columns: {list(candidates.columns)})")
    quantile = _check_fraction(quantile, "quantile")
    if len(candidates) == 0:
        return candidates.copy()
    try:
        values = candidates[column].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"column {column!r} must be numeric: {error}") from None
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"column {column!r} must be finite, found {values[bad]} in row {candidates.index[bad]!r}")
    return candidates[values >= np.quantile(values, quantile)]


def sample_for_labelling(candidates: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """A seeded uniform sample without replacement of min(n, len(candidates)) rows, in table order."""
    if not isinstance(candidates, pd.DataFrame):
        raise ValueError(f"candidates must be a pandas DataFrame, got {type(candidates).__name__}")
    n = _check_count(n, "n", allow_none=False, minimum=0)
    rng = np.random.default_rng(_check_seed(seed))
    chosen = np.sort(rng.choice(len(candidates), size=min(n, len(candidates)), replace=False))
    return candidates.iloc[chosen]
