"""Genetic algorithm baseline (docs/method.md §3).

A population of particles starts as copies of one initial sequence. Each step evaluates every particle,
keeps those whose loss (-f) is at or below a quantile of the population's losses, refills the rest by
uniform crossover of two random survivors, and then mutates every position of every particle with a
small probability. There is no elitism: the best particle can be lost to mutation.

The semantics follow the authors' reference optimiser (pytorch-holo 0.0.5, DiscreteEvolution):
- the quantile is linearly interpolated between order statistics; if an infinite loss takes part in the
  interpolation the threshold is +inf and every particle survives (selection is off);
- ties at the threshold all survive, so far more than quantile * N particles can survive;
- survivors keep their place in the population, children fill the non-survivors' places in order;
- both parents are drawn uniformly with replacement from the survivors (a child may have one parent twice);
- a child takes each position from parent 1 with probability `recombine_prob`, else from parent 2;
- mutation applies to survivors and children alike, resampling a position uniformly from [0, num_states)
  (possibly to the value it already had).

Every evaluation is recorded (particle, score, step, oracle-call count), so one run gives both the seed
dataset (`GAResult.unique`) and the regret-vs-oracle-calls curve (llome.metrics.regret_curve of its scores).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from llome.schema import GAConfig  # the GA's settings, checked by the profile schema

# Takes an (n, L) int64 array of sequences, returns n scores (higher is better, -inf = infeasible).
Oracle = Callable[[np.ndarray], np.ndarray]


@dataclass
class GAResult:
    """Every evaluation of a GA run, in the order the oracle saw them.

    Row i is the (i+1)-th oracle call. `steps` is the 0-based GA step that made the call.
    """

    sequences: np.ndarray  # (n, L), uint8 when num_states <= 256
    scores: np.ndarray  # (n,) float64, -inf = infeasible
    steps: np.ndarray  # (n,) int32
    num_states: int
    stop_reason: str  # "num_steps", "max_oracle_calls" or "stop_at_value"

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def oracle_calls(self) -> np.ndarray:
        """Cumulative oracle-call count after each evaluation: 1, 2, ..., n."""
        return np.arange(1, len(self) + 1, dtype=np.int64)

    @property
    def best_value(self) -> float:
        return float(self.scores.max())

    def unique(self) -> pd.DataFrame:
        """First sighting of each distinct particle, in the order first seen: the seed dataset."""
        rows = np.ascontiguousarray(self.sequences)
        as_bytes = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
        _, first_seen = np.unique(as_bytes, return_index=True)
        first_seen.sort()
        return pd.DataFrame(
            {
                "sequence": list(map(tuple, rows[first_seen].tolist())),
                "score": self.scores[first_seen],
                "step": self.steps[first_seen],
                "oracle_calls": first_seen + 1,
            }
        )


def run_ga(
    oracle: Oracle,
    initial_solution: np.ndarray,
    num_states: int,
    config: GAConfig,
    seed: int | np.random.Generator = 0,
    progress: bool = True,
) -> GAResult:
    """Runs the GA on `oracle` from copies of `initial_solution`; see the module docstring.

    When max_oracle_calls binds, the last step evaluates only the first (budget - calls so far) particles,
    so exactly max_oracle_calls calls are made. The population is exchangeable (nothing depends on a
    particle's index), so those first particles are an unbiased subset.
    """
    _require_int("num_states", num_states, minimum=1)
    start = np.asarray(initial_solution)
    if start.ndim != 1 or start.size == 0 or not np.issubdtype(start.dtype, np.integer):
        raise ValueError(
            f"initial_solution must be a non-empty 1-D integer array, got shape {start.shape} dtype {start.dtype}"
        )
    if start.min() < 0 or start.max() >= num_states:
        raise ValueError(f"initial_solution values must lie in [0, {num_states}), got {start.min()}..{start.max()}")
    if isinstance(seed, np.random.Generator):
        rng = seed
    else:
        _require_int("seed", seed, minimum=0)  # None would seed from the OS and break reproducibility
        rng = np.random.default_rng(seed)

    num_particles = config.num_particles
    total_calls = config.total_oracle_calls
    # Particles live in the smallest integer type that holds every state (uint8 for v <= 256): it is what
    # the records store, and it makes the per-step copies and gathers cheap.
    population = np.tile(start.astype(_compact_dtype(num_states)), (num_particles, 1))
    # One block per step. next_generation returns a new array, so a block is never written again; nothing
    # is allocated up front for a budget that stop_at_value may never use.
    evaluated_blocks, score_blocks = [], []

    calls, step, best = 0, 0, -np.inf
    stop_reason = "num_steps"
    bar = tqdm(total=math.ceil(total_calls / num_particles), desc="GA", unit="step", disable=not progress)
    while calls < total_calls:
        batch = min(num_particles, total_calls - calls)
        # The oracle gets its own int64 copy: small unsigned types overflow in index arithmetic, and torch
        # reads uint8 index tensors as masks.
        batch_scores = _checked_scores(oracle(population[:batch].astype(np.int64)), batch, step)
        evaluated_blocks.append(population[:batch])
        score_blocks.append(batch_scores)
        calls += batch
        bar.update(1)
        if progress:
            best = max(best, float(batch_scores.max()))
            bar.set_postfix(best=best, refresh=False)

        if config.stop_at_value is not None and batch_scores.max() >= config.stop_at_value:
            stop_reason = "stop_at_value"
            break
        if calls == total_calls:
            if config.max_oracle_calls == total_calls:
                stop_reason = "max_oracle_calls"
            break
        population = next_generation(population, -batch_scores, num_states, config, rng)
        step += 1
    bar.close()

    return GAResult(
        sequences=np.concatenate(evaluated_blocks),
        scores=np.concatenate(score_blocks),
        steps=np.repeat(np.arange(len(score_blocks), dtype=np.int32), [len(b) for b in score_blocks]),
        num_states=num_states,
        stop_reason=stop_reason,
    )


def survivors(losses: np.ndarray, quantile: float) -> np.ndarray:
    """Mask of particles whose loss is at or below the (linearly interpolated) `quantile` of `losses`.

    If an infinite loss enters the interpolation the threshold is +inf and everyone survives.
    """
    if losses.ndim != 1 or losses.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D array, got shape {losses.shape}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must lie in [0, 1], got {quantile!r}")
    position = quantile * (len(losses) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(losses) - 1)
    weight = position - lower
    ordered = np.partition(losses, (lower, upper))
    low, high = ordered[lower], ordered[upper]
    if weight == 0:  # lands on an order statistic; the next one, even if infinite, plays no part
        threshold = low
    elif np.isinf(low) or np.isinf(high):
        threshold = np.inf
    else:
        threshold = low + weight * (high - low)
    if threshold == np.inf:
        return np.ones(len(losses), dtype=bool)
    return losses <= threshold


def next_generation(
    population: np.ndarray, losses: np.ndarray, num_states: int, config: GAConfig, rng: np.random.Generator
) -> np.ndarray:
    """One GA update of an evaluated (N, L) population with losses -f: selection, crossover, mutation."""
    if population.ndim != 2 or losses.shape != (len(population),):
        raise ValueError(f"need an (N, L) population and N losses, got {population.shape} and {losses.shape}")
    alive = survivors(losses, config.survival_quantile)
    survivor_index, dead_index = np.flatnonzero(alive), np.flatnonzero(~alive)
    length = population.shape[1]
    offspring = population.copy()
    if len(dead_index):
        parent_1, parent_2 = survivor_index[rng.integers(0, len(survivor_index), size=(2, len(dead_index)))]
        offspring[dead_index] = population.take(parent_2, axis=0)
        # Positions taken from parent 1 instead, as flat indices child * L + position into the children's
        # block; moving them to the child's row, or to parent 1's row, is a shift by a multiple of L.
        swapped = _bernoulli_successes(rng, len(dead_index) * length, config.recombine_prob)
        child = swapped // length
        into_child = swapped + (dead_index[child] - child) * length
        from_parent_1 = swapped + (parent_1[child] - child) * length
        offspring.reshape(-1)[into_child] = population.reshape(-1)[from_parent_1]

    flat = offspring.reshape(-1)
    mutated = _bernoulli_successes(rng, flat.size, config.mutation_prob)
    flat[mutated] = rng.integers(0, num_states, size=mutated.size, dtype=flat.dtype)
    return offspring


def _bernoulli_successes(rng: np.random.Generator, num_trials: int, prob: float) -> np.ndarray:
    """Sorted indices of the successes among `num_trials` independent Bernoulli(`prob`) trials.

    Same distribution as np.flatnonzero(rng.random(num_trials) < prob), but it walks from success to
    success with geometric gaps, so it costs O(successes): that matters at the small rates the GA uses.
    """
    if prob == 0.0 or num_trials == 0:
        return np.empty(0, dtype=np.int64)
    expected = num_trials * prob
    draws = int(expected + 6 * math.sqrt(expected) + 16)  # enough to pass the end almost always
    successes = np.cumsum(_geometric(rng, prob, draws, cap=num_trials)) - 1
    while successes[-1] < num_trials:  # ran short: continue the same process from the last success
        successes = np.concatenate([successes, successes[-1] + np.cumsum(_geometric(rng, prob, draws, cap=num_trials))])
    return successes[: np.searchsorted(successes, num_trials)]


def _geometric(rng: np.random.Generator, prob: float, size: int, cap: int) -> np.ndarray:
    """Trials up to and including the first success: 1 + floor(E / rate), E ~ Exp(1), rate = -log(1 - prob),
    since P(floor(E / rate) >= k) = exp(-k rate) = (1 - prob)^k.

    Values above `cap` + 1 are lowered to it (so a tiny `prob` cannot overflow int64); callers only need
    to know that such a gap runs past their end. Several times faster than rng.geometric.
    """
    if prob == 1.0:
        return np.ones(size, dtype=np.int64)
    failures_per_unit = -1 / math.log1p(-prob)  # inf when prob underflows (below ~1e-308)
    if not math.isfinite(failures_per_unit):
        return np.full(size, cap + 1, dtype=np.int64)
    failures = np.minimum(rng.standard_exponential(size) * failures_per_unit, cap)
    return failures.astype(np.int64) + 1  # truncation is floor here: failures >= 0


def _checked_scores(raw, expected: int, step: int) -> np.ndarray:
    scores = np.array(raw, dtype=np.float64)  # a copy: the oracle may reuse its output buffer
    if scores.shape != (expected,):
        raise ValueError(f"oracle returned shape {scores.shape} at step {step}, expected ({expected},)")
    if not (scores < np.inf).all():  # NaN fails the comparison too
        bad = int(np.flatnonzero(~(scores < np.inf))[0])
        raise ValueError(f"oracle returned {scores[bad]} for particle {bad} at step {step}; scores must be finite or -inf")
    return scores


def _compact_dtype(num_states: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if num_states - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _require_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
