"""What the paper measures (docs/method.md §6): regret against oracle calls, per-round generation
and labelling statistics, calibration of likelihood against reward, and diversity.

Every function takes plain arrays or the pipeline's tables and returns plain numbers, so notebooks
only plot. Fractions over an empty set are NaN rather than an error: an early round may produce
no valid candidate at all, and that is a result to report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from llome.pairs import as_sequence_array

GENERATION_STATUSES = ("valid", "unparsable", "wrong_length", "out_of_range")


def _require_columns(table, columns, name):
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(table).__name__}")
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing} (has {list(table.columns)})")


def _numeric_column(table, column, name) -> np.ndarray:
    try:
        return table[column].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}[{column!r}] must be numeric: {error}") from None


def _mean_or_nan(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else float("nan")


# ---------------------------------------------------------------------------------------------
# Regret


def regret_curve(oracle_calls, scores, optimum: float | None = 1.0, *,
                 improvements_only: bool = False) -> pd.DataFrame:
    """Best value so far and regret (optimum - best) after each evaluation, in evaluation order.

    `optimum` is the objective's best value: 1 for an Ehrlich function (the default), whatever another
    objective declares (llome.objective.optimum_of), or None when unknown, which makes regret NaN and
    leaves best_value the measure.

    The one best-so-far computation of the project: the GA baseline's and LLOME's traces both come from it.
    oracle_calls[i] is the cumulative number of oracle calls when scores[i] was obtained (None:
    1, 2, ..., n). Until the first feasible score the best value is -inf and the regret +inf, so
    runs that never find a feasible sequence stay visibly at infinite regret. With improvements_only,
    only the first row, each row where the best improves and the last row are kept: the same step
    function (regret_on_grid reads both alike) in far fewer rows for a long run.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError(f"scores contains NaN at position {int(np.flatnonzero(np.isnan(values))[0])}")
    if optimum is not None and not np.isfinite(optimum):
        raise ValueError(f"optimum must be finite or None, got {optimum!r}")
    if optimum is not None and (values > optimum).any():
        raise ValueError(f"scores exceed optimum={optimum}: max score {values.max()}")
    if oracle_calls is None:
        calls = np.arange(1, len(values) + 1, dtype=np.int64)
    else:
        calls = np.asarray(oracle_calls)
        if calls.shape != values.shape:
            raise ValueError(f"oracle_calls must have shape {values.shape} like scores, got {calls.shape}")
        if calls.size and calls.dtype.kind not in "iu":
            raise ValueError(f"oracle_calls must be integers, got dtype {calls.dtype}")
        if calls.size and (calls.min() < 0 or (np.diff(calls) < 0).any()):
            raise ValueError("oracle_calls must be non-negative and non-decreasing")
        calls = calls.astype(np.int64)
    best = np.maximum.accumulate(values) if len(values) else values
    if improvements_only and len(values):
        improved = np.flatnonzero(best[1:] > best[:-1]) + 1
        rows = np.unique(np.concatenate([[0], improved, [len(values) - 1]]))
        calls, best = calls[rows], best[rows]
    regret = optimum - best if optimum is not None else np.full(len(best), np.nan)
    return pd.DataFrame({"oracle_calls": calls, "best_value": best, "regret": regret})


def regret_on_grid(trace: pd.DataFrame, grid, runs: Sequence[str] = ()) -> pd.DataFrame:
    """Regret of each run after each budget in grid, so that runs with different call counts can be
    summarised on a common axis.

    trace is a regret_curve, or several stacked and told apart by the `runs` columns (e.g. method and
    seed). Returns the `runs` columns, oracle_calls (the grid) and regret, run by run in sorted order.
    A run's regret holds after its last evaluation (a run that reached the optimum stopped there). Before
    its first evaluation it is NaN, not +inf: the run has no value there, and medians over seeds skip it.
    """
    runs = list(runs)
    _require_columns(trace, [*runs, "oracle_calls", "regret"], "trace")
    budgets = np.asarray(grid)
    if budgets.ndim != 1:
        raise ValueError(f"grid must be 1-D, got shape {budgets.shape}")
    tables = []
    for key, run in (trace.groupby(runs, sort=True) if runs else [((), trace)]):
        calls = run["oracle_calls"].to_numpy()
        if (np.diff(calls) < 0).any():
            raise ValueError(f"trace['oracle_calls'] must be non-decreasing within a run, not in run {key}")
        regret = run["regret"].to_numpy(dtype=np.float64)
        last = np.searchsorted(calls, budgets, side="right") - 1
        values = np.where(last >= 0, regret[np.maximum(last, 0)], np.nan)
        tables.append(pd.DataFrame({**dict(zip(runs, key)), "oracle_calls": budgets, "regret": values}))
    if not tables:
        return pd.DataFrame(columns=[*runs, "oracle_calls", "regret"])
    return pd.concat(tables, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Diversity


def hamming_distance(first, second) -> np.ndarray:
    """Normalised Hamming distance between matching rows of two (N, L) sequence collections."""
    a = as_sequence_array(first, "first")
    b = as_sequence_array(second, "second")
    if a.shape != b.shape:
        raise ValueError(f"first and second must have the same shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return np.zeros(len(a))
    return (a != b).mean(axis=1)


def mean_pairwise_distance(sequences) -> float:
    """Exact mean normalised Hamming distance over all pairs of distinct rows (NaN for < 2 rows).

    Counted per position instead of per pair: at a position where value a occurs c_a times, the
    number of ordered pairs that differ there is n^2 - sum_a c_a^2. So the cost is O(N L).
    """
    array = as_sequence_array(sequences)
    count = len(array)
    if count < 2:
        return float("nan")
    length = array.shape[1]
    vocabulary = int(array.max()) + 1
    counts = np.bincount((np.arange(length) * vocabulary + array).ravel(), minlength=length * vocabulary)
    differing_ordered_pairs = count * count * length - int((counts * counts).sum())
    return differing_ordered_pairs / (count * (count - 1) * length)


# ---------------------------------------------------------------------------------------------
# Per-round statistics


def generation_metrics(candidates: pd.DataFrame) -> dict:
    """Statistics of one round's generations (one row per generated candidate).

    Columns: parent (tuple), sequence (tuple, or None unless valid), status (one of
    GENERATION_STATUSES), loglik (length-normalised), distance (normalised Hamming to parent,
    NaN unless valid). The checks run in order parse -> length -> range, so a candidate of the
    wrong length counts as parsable, and an out-of-range one as parsable and of correct length.

    parsable, correct_length, in_range: fractions of all generations.
    repeated_input, mean_distance, mean_loglik, unique_fraction: over valid generations.
    mean_pairwise_distance: exact, over the unique valid sequences.
    """
    _require_columns(candidates, ["parent", "sequence", "status", "loglik", "distance"], "candidates")
    status = candidates["status"].to_numpy()
    unknown = sorted({str(value) for value in status} - set(GENERATION_STATUSES))
    if unknown:
        raise ValueError(f"candidates['status'] has unknown value(s) {unknown}; allowed: {GENERATION_STATUSES}")
    valid = status == "valid"
    valid_rows = candidates[valid]
    distance = _numeric_column(valid_rows, "distance", "candidates")
    if np.isnan(distance).any() or (distance < 0).any() or (distance > 1).any():
        raise ValueError("candidates['distance'] must be in [0, 1] for every valid candidate")
    loglik = _numeric_column(valid_rows, "loglik", "candidates")
    sequences = as_sequence_array(list(valid_rows["sequence"]), "candidates['sequence'] (valid rows)")
    parents = as_sequence_array(list(valid_rows["parent"]), "candidates['parent'] (valid rows)")
    if len(sequences) and parents.shape != sequences.shape:
        raise ValueError(f"valid sequences and their parents differ in shape: {sequences.shape} vs {parents.shape}")
    unique = np.unique(sequences, axis=0) if len(sequences) else sequences
    count = len(candidates)
    return {
        "count": count,
        "valid_count": int(valid.sum()),
        "parsable": _mean_or_nan(status != "unparsable"),
        "correct_length": _mean_or_nan((status == "valid") | (status == "out_of_range")),
        "in_range": _mean_or_nan(valid),
        "repeated_input": _mean_or_nan((sequences == parents).all(axis=1)) if len(sequences) else float("nan"),
        "mean_distance": _mean_or_nan(distance),
        "mean_loglik": _mean_or_nan(loglik),
        "unique_fraction": len(unique) / len(sequences) if len(sequences) else float("nan"),
        "mean_pairwise_distance": mean_pairwise_distance(unique),
    }


def labelled_metrics(labelled: pd.DataFrame) -> dict:
    """Statistics of one round's labelled candidates.

    Columns: sequence, score (-inf if infeasible), parent_score (score of its input, NaN when
    unknown); loglik and distance are summarised when present. improved is the fraction with
    score > parent_score among rows whose parent score is known (an infeasible parent counts as
    -inf, so any feasible child improves on it). mean_score is over feasible rows.
    """
    _require_columns(labelled, ["sequence", "score", "parent_score"], "labelled")
    score = _numeric_column(labelled, "score", "labelled")
    if np.isnan(score).any() or np.isposinf(score).any():
        raise ValueError("labelled['score'] must be a number or -inf (infeasible), found NaN or +inf")
    parent_score = _numeric_column(labelled, "parent_score", "labelled")
    known_parent = ~np.isnan(parent_score)
    feasible = ~np.isneginf(score)
    result = {
        "count": len(labelled),
        "feasible": _mean_or_nan(feasible),
        "infeasible": _mean_or_nan(~feasible),
        "improved": _mean_or_nan(score[known_parent] > parent_score[known_parent]),
        "known_parent_count": int(known_parent.sum()),
        "mean_score": _mean_or_nan(score[feasible]),
        "best_score": float(score.max()) if len(score) else float("nan"),
    }
    for column in ("distance", "loglik"):
        if column in labelled.columns:
            values = _numeric_column(labelled, column, "labelled")
            result[f"mean_{column}"] = _mean_or_nan(values[~np.isnan(values)])
    return result


def calibration(labelled: pd.DataFrame, reward_column: str = "reward", loglik_column: str = "loglik") -> dict:
    """Spearman rank correlation between the model's likelihood and the true reward.

    Rows with NaN in either column are left out (n counts the rows used). With fewer than 2 rows
    or a constant column the correlation is undefined and reported as NaN.
    """
    _require_columns(labelled, [reward_column, loglik_column], "labelled")
    reward = _numeric_column(labelled, reward_column, "labelled")
    loglik = _numeric_column(labelled, loglik_column, "labelled")
    used = ~(np.isnan(reward) | np.isnan(loglik))
    reward, loglik = reward[used], loglik[used]
    n = int(used.sum())
    if n < 2 or np.all(reward == reward[0]) or np.all(loglik == loglik[0]):
        return {"spearman": float("nan"), "pvalue": float("nan"), "n": n}
    result = stats.spearmanr(reward, loglik)  # ranks, so -inf is simply the lowest
    return {"spearman": float(result.statistic), "pvalue": float(result.pvalue), "n": n}
