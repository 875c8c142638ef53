"""What LLOME needs of an objective, the two counters every call to it goes through, and an example.

An objective is any object with

* ``dim``: the sequence length L;
* ``num_states``: the alphabet size v (positions hold integers 0 .. v-1);
* ``__call__(X)``: scores for a batch, ``np.ndarray[int]`` of shape ``(n, L)`` in, ``np.ndarray[float]`` of
  shape ``(n,)`` out, higher is better and ``-inf`` marks an infeasible sequence;
* optionally ``optimum``: the best value it can take, or None when unknown. Regret is reported only
  against a known optimum; best-so-far always;
* optionally ``initial_solution()``: one feasible sequence of shape ``(L,)``. Only the DVC pipeline's GA
  stages need it (they start from it); `llome.optimize` takes its starting sequences as an argument.

`llome.ehrlich.Ehrlich` is one (optimum 1). `CountingUp` below is another, with optimum 6 at L=8, v=4.

Accounting. The optimiser sees an objective only through a `CountedOracle`: every sequence it scores
there is a paid call, bounded by a budget. Values the optimiser does not pay for, because they only
feed figures and metrics (the score of a generation's unlabelled input, for "improved over input"),
go through a `DiagnosticOracle`, counted apart. Nothing from a DiagnosticOracle may reach training
data or a selection; `llome.loop.run_round` keeps them in the `parent_score` column only.

This module imports numpy alone, so the GA stages can use it without pulling in torch.
"""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Objective(Protocol):
    """The protocol above; `optimum` and `initial_solution` are optional, so they are not part of the check."""

    dim: int
    num_states: int

    def __call__(self, sequences: np.ndarray) -> np.ndarray: ...


def check_objective(objective) -> None:
    """Raise a ValueError naming what `objective` lacks, before any work is done with it."""
    for name in ("dim", "num_states"):
        value = getattr(objective, name, None)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"an objective needs a positive integer `{name}`, got {value!r} "
                             f"on {type(objective).__name__}")
    if not callable(objective):
        raise ValueError(f"an objective must be callable on an (n, L) integer array, {type(objective).__name__} is not")
    optimum = optimum_of(objective)
    if optimum is not None and not np.isfinite(optimum):
        raise ValueError(f"an objective's optimum must be finite or None, got {optimum!r}")


def optimum_of(objective) -> float | None:
    """The objective's known best value, or None when it does not say."""
    value = getattr(objective, "optimum", None)
    return None if value is None else float(value)


def initial_solution(objective) -> np.ndarray:
    """The objective's own starting sequence, which the pipeline's GA stages start from."""
    if not callable(getattr(objective, "initial_solution", None)):
        raise ValueError(f"{type(objective).__name__} has no initial_solution(): the pipeline's GA stages need one "
                         f"feasible (L,) sequence to start from (llome.optimize takes them as an argument instead)")
    start = np.asarray(objective.initial_solution())
    if start.shape != (objective.dim,):
        raise ValueError(f"initial_solution() must have shape ({objective.dim},), got {start.shape}")
    return start


def resolve(name: str, seed: int | None = None):
    """The objective a params.yaml `function` names: an Ehrlich name (`ehr_v-..`) or `package.module:factory`.

    A factory is called with no arguments and must return an object satisfying the protocol above.
    `seed` is the Ehrlich instance seed (params.yaml's test_functions.seed); None means the paper's.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"function must be an Ehrlich name or 'package.module:factory', got {name!r}")
    if ":" not in name:
        from llome.ehrlich import PAPER_SEED, Ehrlich  # torch: only for Ehrlich names

        return Ehrlich.from_name(name, seed=PAPER_SEED if seed is None else seed)
    module_name, _, factory_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"function {name!r}: cannot import module {module_name!r} ({error})") from None
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"function {name!r}: module {module_name!r} has no callable {factory_name!r}")
    objective = factory()
    check_objective(objective)
    return objective


class OracleBudgetExceeded(RuntimeError):
    pass


def _scores(function, sequences: np.ndarray) -> np.ndarray:
    scores = np.asarray(function(sequences), dtype=np.float64)
    if scores.shape != (len(sequences),):
        raise ValueError(f"the objective returned shape {scores.shape} for {len(sequences)} sequences")
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise ValueError("the objective returned NaN or +inf; scores must be finite or -inf (infeasible)")
    return scores


class CountedOracle:
    """The only door from the optimiser to the objective: it counts every sequence scored and refuses to pass its budget."""

    def __init__(self, function, budget: int):
        if budget < 0:
            raise ValueError(f"oracle budget must be >= 0, got {budget}")
        self.function = function
        self.budget = int(budget)
        self.calls = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.calls

    def __call__(self, sequences) -> np.ndarray:
        sequences = np.asarray(sequences)
        if len(sequences) > self.remaining:
            raise OracleBudgetExceeded(
                f"asked to score {len(sequences)} sequences with {self.remaining} of {self.budget} calls left")
        self.calls += len(sequences)
        return _scores(self.function, sequences)


class DiagnosticOracle:
    """Calls the optimiser did not pay for, made only to measure it; `enabled=False` refuses every one.

    Kept apart from CountedOracle so that a run reports them, and a user whose objective is costly can
    switch them off (params.yaml `llome.diagnostics`, `LlomeConfig.diagnostics`).
    """

    def __init__(self, function, enabled: bool = True):
        self.function = function
        self.enabled = bool(enabled)
        self.calls = 0

    def __call__(self, sequences) -> np.ndarray:
        if not self.enabled:
            raise RuntimeError("diagnostic calls are switched off")
        sequences = np.asarray(sequences)
        self.calls += len(sequences)
        return _scores(self.function, sequences)


class CountingUp:
    """A constrained counting objective, for trying LLOME on something that is not an Ehrlich function.

    f(x) counts the steps that go up by exactly one (x[i+1] == x[i] + 1). A sequence that takes any banned
    transition (a, b), i.e. has x[i] == a and x[i+1] == b, is infeasible (-inf). Without wrap-around a run
    of steps up has at most v-1 of them, so at L=8, v=4 the best is 0 1 2 3 0 1 2 3 with f = 6. By default
    the jumps of two, (a, a+2 mod v), are banned: a quarter of all transitions, none of them on that path.
    """

    def __init__(self, dim: int = 8, num_states: int = 4, banned: tuple[tuple[int, int], ...] | None = None):
        if dim < 2 or num_states < 2:
            raise ValueError(f"CountingUp needs dim >= 2 and num_states >= 2, got {dim} and {num_states}")
        self.dim, self.num_states = int(dim), int(num_states)
        if banned is None:
            banned = tuple((a, (a + 2) % num_states) for a in range(num_states))
        self.banned = tuple((int(a), int(b)) for a, b in banned)
        self.allowed = np.ones((num_states, num_states), dtype=bool)
        for a, b in self.banned:
            self.allowed[a, b] = False
        self.optimum = self._best_value()

    def __call__(self, sequences) -> np.ndarray:
        x = np.asarray(sequences)
        if x.ndim != 2 or x.shape[1] != self.dim or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"CountingUp takes an (n, {self.dim}) integer array, got shape {x.shape} dtype {x.dtype}")
        if x.size and (x.min() < 0 or x.max() >= self.num_states):
            raise ValueError(f"states must lie in [0, {self.num_states})")
        steps_up = (x[:, 1:] == x[:, :-1] + 1).sum(axis=1).astype(np.float64)
        feasible = self.allowed[x[:, :-1], x[:, 1:]].all(axis=1)
        return np.where(feasible, steps_up, -np.inf)

    def initial_solution(self) -> np.ndarray:
        """All zeros: feasible (a state may always repeat unless a ban says otherwise), and worth 0."""
        start = np.zeros(self.dim, dtype=np.int64)
        if not np.isfinite(self(start[None])[0]):
            raise ValueError("the all-zeros sequence is infeasible under these bans; give the optimiser a start")
        return start

    def _best_value(self) -> float | None:
        """Exact, by dynamic programming over the last state: the best count of any feasible prefix ending there."""
        best = np.zeros(self.num_states)
        gain = (np.arange(self.num_states)[None, :] == np.arange(self.num_states)[:, None] + 1).astype(float)
        through = np.where(self.allowed, gain, -np.inf)  # through[a, b]: what the step a -> b adds
        for _ in range(self.dim - 1):
            best = (best[:, None] + through).max(axis=0)
        value = float(best.max())
        return value if np.isfinite(value) else None  # every sequence infeasible: no optimum to speak of

    def __repr__(self) -> str:
        return f"CountingUp(dim={self.dim}, num_states={self.num_states}, banned={self.banned})"


def counting_up() -> CountingUp:
    """The factory params.yaml can name as `function: llome.objective:counting_up` (L=8, v=4, optimum 6)."""
    return CountingUp()
