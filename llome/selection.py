"""Which generated candidates the oracle labels (docs/method.md §4, step 2): a likelihood filter,
then a seeded uniform sample."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llome.pairs import check_count, check_fraction, check_seed


def likelihood_filter(candidates: pd.DataFrame, quantile: float = 0.6, column: str = "loglik") -> pd.DataFrame:
    """Rows whose column is >= its quantile (numpy's linear interpolation); the index is kept."""
    if not isinstance(candidates, pd.DataFrame):
        raise ValueError(f"candidates must be a pandas DataFrame, got {type(candidates).__name__}")
    if column not in candidates.columns:
        raise ValueError(f"column {column!r} is not in candidates (columns: {list(candidates.columns)})")
    quantile = check_fraction(quantile, "quantile")
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
    n = check_count(n, "n", allow_none=False, minimum=0)
    rng = np.random.default_rng(check_seed(seed))
    chosen = np.sort(rng.choice(len(candidates), size=min(n, len(candidates)), replace=False))
    return candidates.iloc[chosen]
