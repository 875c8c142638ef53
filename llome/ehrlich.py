"""Ehrlich functions: the closed-form, constrained sequence-design objectives of docs/method.md §2.

An instance is drawn from one seeded CPU ``torch.Generator`` with the same draws, in the same order
and dtypes, as the authors' reference (pytorch-holo 0.0.5), so equal parameters and seed give equal
motifs, spacings, feasibility pattern and values, bit for bit. Evaluation itself is plain numpy over
row chunks, which keeps memory flat and is much faster than the reference.

Conventions:

* ``f(X)`` takes a batch ``(N, L)`` of integer states: a numpy array, a torch tensor or nested lists.
  A single sequence of shape ``(L,)`` is a batch of one, so results always have shape ``(N,)``.
* Values are float64 copies of float32 numbers, because the reference computes in float32 and the
  fixtures pin those exact numbers. ``-inf`` marks an infeasible sequence.
* Float inputs are rejected, even when they hold whole numbers: sequences are categorical.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch

PAPER_SEED = 50494  # random.seed(0); random.randint(0, 2**16), as in the authors' pipeline
PAPER_INSTANCE_NAMES = (
    "ehr_v-32_l-032_m-4_c-4_q-4",
    "ehr_v-32_l-032_m-4_c-4_q-2",
    "ehr_v-32_l-128_m-4_c-4_q-4",
    "ehr_v-32_l-128_m-4_c-4_q-2",
    "ehr_v-32_l-128_m-8_c-8_q-8",
    "ehr_v-08_l-128_m-8_c-8_q-8",
)

_SOFTMAX_TEMPERATURE = 0.5
_BAND_FRACTION = 0.4  # each state may move to 2*int(0.4 v)+1 states (plus itself)
_STATIONARY_TOLERANCE = 1e-5
_NAME_PATTERN = re.compile(r"ehr_v-(\d+)_l-(\d+)_m-(\d+)_c-(\d+)_q-(\d+)")
_DICT_FORMAT = "llome.ehrlich/1"
# Rows per chunk are chosen so that one chunk of states stays in the L2 cache.
_CHUNK_ELEMENTS = 1 << 17


def require_int(name: str, value: Any, minimum: int) -> int:
    """`value` as an int, or a ValueError naming it (a bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def validate_parameters(
    num_states: int, dim: int, num_motifs: int, motif_length: int, quantization: int, seed: int
) -> None:
    """Raise ValueError naming the first parameter that breaks a rule of docs/method.md §2."""
    v = require_int("num_states", num_states, 2)
    length = require_int("dim", dim, 1)
    c = require_int("num_motifs", num_motifs, 1)
    k = require_int("motif_length", motif_length, 2)
    q = require_int("quantization", quantization, 1)
    require_int("seed", seed, 0)
    if seed >= 2**63:
        raise ValueError(f"seed must be < 2**63, got {seed}")
    if v > 2**15:
        raise ValueError(f"num_states must be <= {2**15}, got {v}")
    if q > k:
        raise ValueError(f"quantization must be in 1..motif_length={k}, got {q}")
    step = math.ceil(k / q)
    if k % step:
        raise ValueError(
            f"quantization={q} with motif_length={k}: ceil(k/q)={step} does not divide k, so the "
            f"best quantized motif quality is {k // step}/{k / step:g} < 1 and the optimum f=1 "
            f"would be unreachable; choose q with ceil(k/q) dividing k (e.g. q dividing k)"
        )
    if c * k > length:
        raise ValueError(
            f"num_motifs * motif_length = {c}*{k} = {c * k} exceeds dim={length}: "
            f"the motifs cannot all fit in one sequence"
        )


# ----------------------------------------------------------------------------------------------
# Construction: the reference's draws, in its order, from one generator.


def _sample_transition_matrix(num_states: int, generator: torch.Generator) -> torch.Tensor:
    """Sparse ergodic-candidate transition matrix (float32), docs/method.md §2 steps 1-3."""
    logits = torch.randn(num_states, num_states, generator=generator)
    dense = (logits / _SOFTMAX_TEMPERATURE).softmax(dim=-1)

    half_width = int(num_states * _BAND_FRACTION)
    # Cyclic distance between row and column decides band membership.
    shift = (torch.arange(num_states)[None, :] - torch.arange(num_states)[:, None]) % num_states
    band = (shift <= half_width) | (shift >= num_states - half_width)
    allowed = band[torch.randperm(num_states, generator=generator)]
    allowed = allowed | torch.eye(num_states, dtype=torch.bool)  # repeating a state is always allowed

    sparse = torch.where(allowed, dense, torch.zeros_like(dense))
    return sparse / sparse.sum(dim=-1, keepdim=True)


def _is_primitive(support: np.ndarray) -> bool:
    """Wielandt's test: a nonnegative n x n matrix is primitive (irreducible and aperiodic, i.e. the
    chain is ergodic) iff its ((n-1)^2 + 1)-th power has no zero entry. Done on the 0/1 support, so
    float underflow cannot fake a zero."""
    n = support.shape[0]
    exponent = (n - 1) ** 2 + 1
    base = support.astype(np.int64)
    power = np.eye(n, dtype=np.int64)
    while exponent:
        if exponent & 1:
            power = np.minimum(power @ base, 1)
        base = np.minimum(base @ base, 1)
        exponent >>= 1
    return bool(power.all())


def _stationary_distribution(transition: torch.Tensor) -> torch.Tensor:
    """pi with pi P = pi and sum(pi) = 1, as a float32 least-squares solve via QR.

    The motifs are drawn from pi, so its last bits matter: the solve mirrors the reference's
    float32 operations rather than using a (more accurate) float64 eigen-solver."""
    n = transition.shape[0]
    system = torch.cat([(torch.eye(n) - transition).T, torch.ones(1, n)], dim=0)
    rhs = torch.zeros(n + 1, 1)
    rhs[-1] = 1
    q_factor, r_factor = torch.linalg.qr(system)
    solution = torch.linalg.solve(r_factor, q_factor.T @ rhs)
    residual = torch.norm(system @ solution - rhs) / torch.norm(rhs)
    if residual > _STATIONARY_TOLERANCE:
        raise ValueError(f"stationary distribution solve failed (relative residual {float(residual):.3g})")
    return solution.squeeze(-1)


def _sample_markov_chain(
    start: torch.Tensor, transition: torch.Tensor, length: int, num_samples: int, generator: torch.Generator
) -> torch.Tensor:
    """(num_samples, length) int64 trajectories: first state ~ start, then row by row.

    The call pattern (one multinomial with replacement for the first column, then one
    single-draw multinomial per step over a (num_samples, v) batch of rows) fixes which random
    numbers are consumed, so it matches the reference's samples exactly."""
    samples = torch.zeros(num_samples, length, dtype=torch.int64)
    samples[:, 0] = torch.multinomial(start, num_samples, replacement=True, generator=generator)
    for t in range(1, length):
        samples[:, t] = torch.multinomial(transition[samples[:, t - 1]], 1, generator=generator).squeeze(-1)
    return samples


def _sample_spacings(
    num_motifs: int, motif_length: int, dim: int, generator: torch.Generator
) -> np.ndarray:
    """(c, k-1) gaps: a uniform point on the simplex scaled to the per-motif slack, floored, plus 1."""
    slack_per_motif = (dim - num_motifs * motif_length) // num_motifs
    spacings = []
    for _ in range(num_motifs):
        weights = torch.rand(motif_length - 1, generator=generator)
        weights = weights / weights.sum()
        spacings.append((1 + (slack_per_motif * weights).floor().to(torch.int64)).numpy())
    return np.stack(spacings)


# ----------------------------------------------------------------------------------------------


class Ehrlich:
    """One Ehrlich function instance; see the module docstring for input and output conventions."""

    optimal_value = 1.0
    optimum = optimal_value  # the name llome.objective's protocol reads

    def __init__(
        self,
        num_states: int,
        dim: int,
        num_motifs: int,
        motif_length: int,
        quantization: int | None = None,
        seed: int = 0,
    ) -> None:
        if quantization is None:
            quantization = motif_length
        validate_parameters(num_states, dim, num_motifs, motif_length, quantization, seed)
        self._set_parameters(num_states, dim, num_motifs, motif_length, quantization, seed)

        generator = torch.Generator().manual_seed(self.seed)
        transition = _sample_transition_matrix(self.num_states, generator)
        if not _is_primitive(transition.numpy() > 0):
            raise ValueError(
                f"seed={self.seed} with num_states={self.num_states} gives a transition matrix whose "
                f"chain is not ergodic; choose another seed"
            )
        stationary = _stationary_distribution(transition)
        all_motifs = _sample_markov_chain(
            stationary, transition, self.num_motifs * self.motif_length, 1, generator
        )
        motifs = all_motifs.reshape(self.num_motifs, self.motif_length).numpy()
        spacings = _sample_spacings(self.num_motifs, self.motif_length, self.dim, generator)
        self._set_parts(motifs, spacings, transition.numpy(), stationary.numpy())

    def _set_parameters(self, num_states, dim, num_motifs, motif_length, quantization, seed) -> None:
        self.num_states = int(num_states)
        self.dim = int(dim)
        self.num_motifs = int(num_motifs)
        self.motif_length = int(motif_length)
        self.quantization = int(quantization)
        self.seed = int(seed)

    def _set_parts(self, motifs, spacings, transition_matrix, stationary_distribution) -> None:
        """Store the drawn parts and precompute the lookup tables evaluation uses."""
        self.motifs = np.asarray(motifs, dtype=np.int64).reshape(self.num_motifs, self.motif_length)
        self.spacings = np.asarray(spacings, dtype=np.int64).reshape(self.num_motifs, self.motif_length - 1)
        self.transition_matrix = np.asarray(transition_matrix, dtype=np.float32)
        self.stationary_distribution = np.asarray(stationary_distribution, dtype=np.float32)
        for array in (self.motifs, self.spacings, self.transition_matrix, self.stationary_distribution):
            array.flags.writeable = False

        self.offsets = np.concatenate(
            [np.zeros((self.num_motifs, 1), dtype=np.int64), np.cumsum(self.spacings, axis=1)], axis=1
        )
        self.offsets.flags.writeable = False
        # The reference calls a transition banned when its float32 probability is 0.
        self.allowed = self.transition_matrix > 0
        self.allowed.flags.writeable = False
        self._allowed_flat = self.allowed.ravel()

        self._state_dtype = np.min_scalar_type(self.num_states - 1)
        self._count_dtype = np.min_scalar_type(self.motif_length)
        # Quantized quality per match count h, as float32(floor(h / step)) / float32(k / step):
        # a true float32 division, the reference's arithmetic.
        step = math.ceil(self.motif_length / self.quantization)
        levels = (np.arange(self.motif_length + 1) // step).astype(np.float32)
        self._quality_by_count = levels / np.float32(self.motif_length // step)
        self._search_plan = [
            (self.dim - int(offsets[-1]), [(int(o), int(m)) for o, m in zip(offsets, motif)])
            for motif, offsets in zip(self.motifs, self.offsets)
        ]

    # -- names and serialisation ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return (
            f"ehr_v-{self.num_states:02d}_l-{self.dim:03d}_m-{self.motif_length}"
            f"_c-{self.num_motifs}_q-{self.quantization}"
        )

    @staticmethod
    def parse_name(name: str) -> dict[str, int]:
        """Parameters encoded in a name like ``ehr_v-32_l-032_m-4_c-4_q-4`` (no seed in names)."""
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {type(name).__name__}")
        match = _NAME_PATTERN.fullmatch(name)
        if match is None:
            raise ValueError(
                f"malformed Ehrlich name {name!r}: expected 'ehr_v-<v>_l-<L>_m-<k>_c-<c>_q-<q>', "
                f"e.g. {PAPER_INSTANCE_NAMES[0]!r}"
            )
        v, length, k, c, q = (int(group) for group in match.groups())
        canonical = f"ehr_v-{v:02d}_l-{length:03d}_m-{k}_c-{c}_q-{q}"
        if canonical != name:
            raise ValueError(
                f"non-canonical Ehrlich name {name!r}: v has 2 digits and L 3 digits, zero-padded, "
                f"and m, c, q no padding; did you mean {canonical!r}?"
            )
        return {"num_states": v, "dim": length, "num_motifs": c, "motif_length": k, "quantization": q}

    @classmethod
    def from_name(cls, name: str, seed: int = PAPER_SEED) -> Ehrlich:
        """The instance a name denotes; the paper's instances all use ``seed=PAPER_SEED``."""
        return cls(**cls.parse_name(name), seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this instance bit for bit, as JSON-able Python types.

        float32 arrays are stored as the Python floats they convert to exactly, so a JSON round
        trip restores the same bits without depending on this machine's torch kernels."""
        return {
            "format": _DICT_FORMAT,
            "name": self.name,
            "num_states": self.num_states,
            "dim": self.dim,
            "num_motifs": self.num_motifs,
            "motif_length": self.motif_length,
            "quantization": self.quantization,
            "seed": self.seed,
            "motifs": self.motifs.tolist(),
            "spacings": self.spacings.tolist(),
            "transition_matrix": self.transition_matrix.astype(np.float64).tolist(),
            "stationary_distribution": self.stationary_distribution.astype(np.float64).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ehrlich:
        """Inverse of ``to_dict``; checks that the stored parts are consistent before using them."""
        if not isinstance(data, dict):
            raise ValueError(f"from_dict needs a dict, got {type(data).__name__}")
        if data.get("format") != _DICT_FORMAT:
            raise ValueError(f"unknown Ehrlich dict format {data.get('format')!r}, expected {_DICT_FORMAT!r}")
        keys = ("num_states", "dim", "num_motifs", "motif_length", "quantization", "seed")
        missing = [key for key in keys + ("motifs", "spacings", "transition_matrix", "stationary_distribution")
                   if key not in data]
        if missing:
            raise ValueError(f"Ehrlich dict is missing {missing}")
        params = {key: data[key] for key in keys}
        validate_parameters(**params)
        self = cls.__new__(cls)
        self._set_parameters(**params)
        if "name" in data and data["name"] != self.name:
            raise ValueError(f"Ehrlich dict name {data['name']!r} does not match its parameters ({self.name!r})")

        v, c, k = self.num_states, self.num_motifs, self.motif_length
        arrays = {
            "motifs": (np.asarray(data["motifs"]), (c, k)),
            "spacings": (np.asarray(data["spacings"]), (c, k - 1)),
            "transition_matrix": (np.asarray(data["transition_matrix"]), (v, v)),
            "stationary_distribution": (np.asarray(data["stationary_distribution"]), (v,)),
        }
        for key, (array, shape) in arrays.items():
            if array.shape != shape:
                raise ValueError(f"Ehrlich dict {key} has shape {array.shape}, expected {shape}")
        motifs, spacings = arrays["motifs"][0], arrays["spacings"][0]
        if motifs.dtype.kind not in "iu" or motifs.min() < 0 or motifs.max() >= v:
            raise ValueError(f"Ehrlich dict motifs must be integers in [0, {v})")
        if spacings.dtype.kind not in "iu" or spacings.min() < 1:
            raise ValueError("Ehrlich dict spacings must be integers >= 1")
        if (1 + spacings.sum(axis=1)).max() > self.dim:
            raise ValueError(f"Ehrlich dict spacings make a motif longer than dim={self.dim}")
        transition = arrays["transition_matrix"][0].astype(np.float32)
        if (transition < 0).any() or not _is_primitive(transition > 0):
            raise ValueError("Ehrlich dict transition_matrix is not a nonnegative ergodic matrix")
        # The motifs are consecutive pieces of one feasible trajectory; the optimal solution needs that.
        trajectory = motifs.ravel()
        if not (transition[trajectory[:-1], trajectory[1:]] > 0).all():
            raise ValueError("Ehrlich dict motifs contain banned transitions, so f=1 is unreachable")
        self._set_parts(motifs, spacings, transition, arrays["stationary_distribution"][0])
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ehrlich):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # mutable arrays inside; equality is by value

    def __repr__(self) -> str:
        return (
            f"Ehrlich(num_states={self.num_states}, dim={self.dim}, num_motifs={self.num_motifs}, "
            f"motif_length={self.motif_length}, quantization={self.quantization}, seed={self.seed})"
        )

    # -- special solutions ---------------------------------------------------------------------

    def initial_solution(self, num_samples: int | None = None) -> np.ndarray:
        """A DMP sample of length L from pi, drawn from a generator reset to ``seed`` (so the same on
        every call). ``num_samples=None`` gives one (L,) sequence, an int n gives (n, L)."""
        n = 1 if num_samples is None else require_int("num_samples", num_samples, 1)
        generator = torch.Generator().manual_seed(self.seed)
        samples = _sample_markov_chain(
            torch.tensor(self.stationary_distribution),
            torch.tensor(self.transition_matrix),
            self.dim,
            n,
            generator,
        ).numpy()
        return samples[0] if num_samples is None else samples

    def optimal_solution(self) -> np.ndarray:
        """(L,) sequence with f = 1: each spaced motif written in turn, every gap filled by repeating
        the previous motif element (repeats are always allowed), the tail padded with the last state."""
        solution = np.empty(self.dim, dtype=np.int64)
        position = 0
        for motif, offsets in zip(self.motifs, self.offsets):
            span = int(offsets[-1]) + 1
            # Element j covers positions offsets[j] .. offsets[j+1]-1 of this motif's block.
            solution[position : position + span] = np.repeat(motif, np.diff(np.append(offsets, span)))
            position += span
        solution[position:] = solution[position - 1]
        if self(solution)[0] != self.optimal_value:
            raise RuntimeError(f"{self!r}: constructed optimal solution does not reach f = 1")
        return solution

    # -- evaluation ----------------------------------------------------------------------------

    def _as_batch(self, X: Any) -> np.ndarray:
        """Validate X and return it as an (N, L) integer numpy array (no copy when possible)."""
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        try:
            batch = np.asarray(X)
        except ValueError as error:  # ragged nested lists
            raise ValueError(f"X must be a rectangular (N, {self.dim}) batch of integers: {error}") from None
        if batch.dtype.kind not in "iu":
            raise ValueError(f"X must hold integer states, got dtype {batch.dtype}")
        if batch.ndim == 1:
            batch = batch.reshape(1, -1)
        if batch.ndim != 2:
            raise ValueError(f"X must have shape (N, {self.dim}) or ({self.dim},), got shape {batch.shape}")
        if batch.shape[1] != self.dim:
            raise ValueError(f"X rows must have length dim={self.dim}, got length {batch.shape[1]}")
        if batch.size and (batch.min() < 0 or batch.max() >= self.num_states):
            row, col = np.argwhere((batch < 0) | (batch >= self.num_states))[0]
            raise ValueError(
                f"X[{row}, {col}] = {batch[row, col]} is outside the states [0, {self.num_states})"
            )
        return batch

    def _chunks(self, batch: np.ndarray):
        rows = max(1, _CHUNK_ELEMENTS // self.dim)
        for start in range(0, len(batch), rows):
            yield start, batch[start : start + rows].astype(self._state_dtype, copy=False)

    def _feasible_chunk(self, x: np.ndarray) -> np.ndarray:
        pair_codes = x[:, :-1].astype(np.intp) * self.num_states
        pair_codes += x[:, 1:]
        return self._allowed_flat[pair_codes].all(axis=1)

    def _best_match_counts_chunk(self, x: np.ndarray) -> np.ndarray:
        """(n, c) largest number of matching motif elements over all start positions."""
        best = np.empty((len(x), self.num_motifs), dtype=self._count_dtype)
        for i, (num_starts, elements) in enumerate(self._search_plan):
            matches = np.zeros((len(x), num_starts), dtype=self._count_dtype)
            equal = np.empty((len(x), num_starts), dtype=bool)
            for offset, state in elements:
                np.equal(x[:, offset : offset + num_starts], state, out=equal)
                matches += equal
            matches.max(axis=1, out=best[:, i])
        return best

    def _product_of_qualities(self, qualities: np.ndarray) -> np.ndarray:
        # float32, multiplied motif by motif in order, as the reference does.
        value = qualities[:, 0].copy()
        for i in range(1, self.num_motifs):
            value *= qualities[:, i]
        return value

    def __call__(self, X: Any) -> np.ndarray:
        """(N,) float64 values: the product of quantized motif qualities, or -inf if infeasible."""
        batch = self._as_batch(X)
        values = np.empty(len(batch), dtype=np.float64)
        for start, x in self._chunks(batch):
            qualities = self._quality_by_count[self._best_match_counts_chunk(x)]
            value = self._product_of_qualities(qualities).astype(np.float64)
            value[~self._feasible_chunk(x)] = -np.inf
            values[start : start + len(x)] = value
        return values

    def is_feasible(self, X: Any) -> np.ndarray:
        """(N,) bool: no consecutive pair of the sequence is a banned transition."""
        batch = self._as_batch(X)
        feasible = np.empty(len(batch), dtype=bool)
        for start, x in self._chunks(batch):
            feasible[start : start + len(x)] = self._feasible_chunk(x)
        return feasible

    def motif_presence(self, X: Any) -> np.ndarray:
        """(N, c) float64 quantized quality of each motif (also for infeasible sequences)."""
        batch = self._as_batch(X)
        presence = np.empty((len(batch), self.num_motifs), dtype=np.float64)
        for start, x in self._chunks(batch):
            presence[start : start + len(x)] = self._quality_by_count[self._best_match_counts_chunk(x)]
        return presence
