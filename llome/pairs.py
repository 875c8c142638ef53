"""Training pairs and triples from a labelled pool (docs/method.md §4).

PropEn-style pairs: every sequence is matched with its nearest neighbours in normalised Hamming
distance (llome.neighbours), and each pair is oriented so that the model learns to turn the worse
sequence (x) into the better one (y). DPO triples reuse the same neighbourhoods.

Conventions: a sequence is a tuple of ints in DataFrame cells and an (N, L) integer array in bulk
code; scores are float64 with -inf for infeasible sequences.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from llome.neighbours import nearest_neighbours

log = logging.getLogger(__name__)

PAIR_COLUMNS = ["x", "y", "x_score", "y_score", "reward", "distance"]
TRIPLE_COLUMNS = ["x", "y_w", "y_l", "x_score", "y_w_score", "y_l_score"]


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


def margin_reward(score, parent_score) -> np.ndarray:
    """MargE's reward for improving x (parent_score) into y (score): max(f(y) - f(x), 0), an infeasible score
    counted as 0 (docs/method.md §5). The one definition: pairs and a round's labels both use it.

    An unknown parent score (NaN: diagnostics off and the parent never labelled) is not an infeasible one,
    so it gives no reward (NaN) rather than a made-up one.
    """
    score, parent_score = np.asarray(score, dtype=np.float64), np.asarray(parent_score, dtype=np.float64)
    y = np.where(np.isfinite(score), score, 0.0)
    x = np.where(np.isfinite(parent_score), parent_score, 0.0)
    return np.where(np.isnan(parent_score), np.nan, np.maximum(y - x, 0.0))


def check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def check_count(value, name: str, *, allow_none: bool, minimum: int) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def check_seed(seed) -> int:
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
    max_distance = check_fraction(max_distance, "max_distance")
    num_neighbors = check_count(num_neighbors, "num_neighbors", allow_none=True, minimum=0)
    infeasible_fraction = check_fraction(infeasible_fraction, "infeasible_fraction")
    seed = check_seed(seed)
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
    sequence = as_tuples(pool)
    return pd.DataFrame(
        {
            "x": [sequence[i] for i in worse],
            "y": [sequence[i] for i in better],
            "x_score": values[worse],
            "y_score": values[better],
            "reward": margin_reward(values[better], values[worse]),
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
    """DPO triples (x, y_w, y_l) from the neighbourhoods make_pairs uses (docs/method.md §4, step 3).

    For each distinct x, its neighbourhood is its num_neighbors nearest sequences within max_distance (None:
    all of them). Every neighbour y_w that beats x (score > x's) is paired with every neighbour y_l that does not
    (score <= x's, infeasible included): all combinations. Each y_w also gets a triple (x, y_w, x) whose rejected
    answer is a copy of the prompt, so the model is taught not to repeat its input. An x with k winners and m
    other neighbours gives k * (m + 1) triples, up to num_neighbors**2: mind the size.

    Triples holding an infeasible sequence are subsampled (seeded) to at most infeasible_fraction of the rows, as
    in make_pairs; then, with max_triples, a seeded uniform subset of that many is kept. Rows are in lexicographic
    order of (x, y_w, y_l) as sequences, so the result does not depend on the input order.
    """
    max_distance = check_fraction(max_distance, "max_distance")
    num_neighbors = check_count(num_neighbors, "num_neighbors", allow_none=True, minimum=0)
    infeasible_fraction = check_fraction(infeasible_fraction, "infeasible_fraction")
    max_triples = check_count(max_triples, "max_triples", allow_none=True, minimum=0)
    rng = np.random.default_rng(check_seed(seed))
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
