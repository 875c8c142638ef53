"""Exact difficulty of an Ehrlich function (docs/method.md §2): how many sequences are feasible,
and how many are optimal (f = 1).

Counts reach v**L (640 bits for the paper's largest instance), so they are Python ints; the bulk
work runs modulo a few primes below 2**31 in float64 (exact: every intermediate is an integer
below 2**53) and is recombined by the Chinese remainder theorem.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from llome.ehrlich import Ehrlich, require_int

# The paper's exact instances need about 1,000 automaton states; each state costs
# num_states * (number of primes) * 8 bytes per array, about 5 kB for v = 32 and L = 128.
DEFAULT_MAX_STATES = 10_000

# Sums of up to this many residues below 2**31 stay below 2**53, so float64 holds them exactly.
_MAX_EXACT_STATES = 2**21


class StateBudgetExceeded(RuntimeError):
    """The exact optimal count would need more automaton states than allowed."""


def _check_max_states(max_states: int) -> None:
    require_int("max_states", max_states, 1)
    if max_states > _MAX_EXACT_STATES:
        raise ValueError(f"max_states must be <= {_MAX_EXACT_STATES} (float64 exactness), got {max_states}")


def difficulty(function: Ehrlich, max_states: int = DEFAULT_MAX_STATES) -> dict[str, Any]:
    """Exact counts of feasible and of optimal (f = 1) sequences, and their log10 fractions of v**L.

    The optimal count needs an automaton whose size grows exponentially with the motif gaps;
    if it would exceed ``max_states`` states, ``num_optimal`` is None and
    ``optimal_unavailable_reason`` says why (a missing number, never a wrong one)."""
    _check_max_states(max_states)
    log10_total = function.dim * math.log10(function.num_states)
    num_feasible = count_feasible_sequences(function.allowed, function.dim)
    try:
        num_optimal = count_sequences_with_all_motifs(
            function.allowed, function.motifs, function.offsets, function.dim, max_states=max_states
        )
        reason = None
    except StateBudgetExceeded as error:
        num_optimal, reason = None, str(error)
    return {
        "name": function.name,
        "seed": function.seed,
        "log10_num_sequences": log10_total,
        "num_feasible": num_feasible,
        "num_optimal": num_optimal,
        "log10_feasible_fraction": math.log10(num_feasible) - log10_total,
        "log10_optimal_fraction": None if num_optimal is None else math.log10(num_optimal) - log10_total,
        "optimal_unavailable_reason": reason,
    }


def count_feasible_sequences(allowed: np.ndarray, length: int) -> int:
    """Number of length-``length`` sequences whose consecutive pairs are all allowed."""
    successors = [np.flatnonzero(row).tolist() for row in np.asarray(allowed, dtype=bool)]
    counts = [1] * len(successors)  # sequences of length 1 ending in each state
    for _ in range(length - 1):
        next_counts = [0] * len(successors)
        for state, count in enumerate(counts):
            for successor in successors[state]:
                next_counts[successor] += count
        counts = next_counts
    return sum(counts)


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    for p in (2, 3, 5, 7):
        if n % p == 0:
            return n == p
    # Miller-Rabin with bases 2, 3, 5, 7 is deterministic below 3,215,031,751.
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for base in (2, 3, 5, 7):
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _primes_with_product_above(bound: int) -> list[int]:
    primes, product, candidate = [], 1, 2**31 - 1
    while product <= bound:
        if _is_prime(candidate):
            primes.append(candidate)
            product *= candidate
        candidate -= 2
    return primes


def _from_residues(residues: list[int], primes: list[int]) -> int:
    """The unique integer in [0, prod(primes)) with these residues."""
    value, modulus = 0, 1
    for residue, prime in zip(residues, primes):
        # Garner step: adjust value by a multiple of modulus so that it also fits this prime.
        step = (residue - value) * pow(modulus, -1, prime) % prime
        value += step * modulus
        modulus *= prime
    return value


class _PackedMotifMatcher:
    """Bit-parallel matcher for a set of spaced motifs, all packed into a few 64-bit words.

    Each motif owns a bit field of ``span`` bits. Bit d of the field is set when the occurrence
    that started d positions ago has matched every element placed so far; the field's top bit
    means an occurrence just completed. Reading a symbol keeps the bits whose next due element is
    that symbol (or which have none due), shifts every field up by one and sets bit 0 of the
    fields whose motif starts with the symbol. Fields never spill into each other: the top bit is
    never kept, so the shift only moves it out of a field when it was already cleared."""

    def __init__(
        self, motifs: list[np.ndarray], offsets: list[np.ndarray], num_states: int, length: int, word_bits: int = 64
    ) -> None:
        self.num_states, self.length = num_states, length
        self.fields = []  # (word, lowest bit, span) per motif
        word, low = 0, 0
        for motif_offsets in offsets:
            span = int(motif_offsets[-1]) + 1
            if span > word_bits:
                raise StateBudgetExceeded(
                    f"a motif spans {span} positions; the exact counter handles <= {word_bits}"
                )
            if low + span > word_bits:
                word, low = word + 1, 0
            self.fields.append((word, low, span))
            low += span
        self.num_words = word + 1

        self.keep = np.zeros((num_states, self.num_words), dtype=np.uint64)
        self.opens = np.zeros((num_states, self.num_words), dtype=np.uint64)
        self.completed = np.zeros(self.num_words, dtype=np.uint64)
        for motif, motif_offsets, (word, low, span) in zip(motifs, offsets, self.fields):
            due = {int(offset): int(state) for offset, state in zip(motif_offsets[1:], motif[1:])}
            for symbol in range(num_states):
                bits = sum(1 << d for d in range(span - 1) if due.get(d + 1, symbol) == symbol)
                self.keep[symbol, word] |= np.uint64(bits << low)
            self.opens[int(motif[0]), word] |= np.uint64(1 << low)
            self.completed[word] |= np.uint64(1 << (low + span - 1))

    def live_bits(self, position: int) -> np.ndarray:
        """Per word, the bits of occurrences that can still complete after ``position``."""
        remaining = self.length - 1 - position
        live = np.zeros(self.num_words, dtype=np.uint64)
        for word, low, span in self.fields:
            lowest = span - 1 - remaining  # an occurrence d positions old needs span-1-d more
            bits = sum(1 << d for d in range(max(0, lowest), span - 1))
            live[word] |= np.uint64(bits << low)
        return live


def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(rows, axis=0, return_inverse=True), but via 1-D integer sorts, which are far faster
    than sorting rows as records: columns are mixed-radix-coded into one int64 key, re-compacted
    whenever the radix would overflow."""
    key = np.zeros(len(rows), dtype=np.int64)
    cardinality = 1
    for column in rows.T:
        values, codes = np.unique(column, return_inverse=True)
        if cardinality * len(values) >= 2**62:
            _, key = np.unique(key, return_inverse=True)
            cardinality = int(key.max()) + 1
        key = key * len(values) + np.asarray(codes).ravel()
        cardinality *= len(values)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return rows[first], np.asarray(inverse).ravel()


def _predecessor_plan(allowed: np.ndarray) -> list[tuple[np.ndarray, bool]]:
    """Per next symbol b: the rows to combine, and whether to subtract them from the total (when the
    banned predecessors of b are fewer than the allowed ones)."""
    plan = []
    for column in allowed.T:
        from_total = column.sum() > len(column) // 2
        plan.append((np.flatnonzero(~column if from_total else column), from_total))
    return plan


def _sum_over_predecessors(plan: list[tuple[np.ndarray, bool]], counts: np.ndarray) -> np.ndarray:
    """out[b] = sum of counts[a] over the a allowed before b, in int64 (entries stay below v * 2**31).

    Row additions rather than a matrix product: a 32 x 32 product is too small to gain from BLAS,
    and BLAS threads stall badly when the machine is busy."""
    total = counts.sum(axis=0)
    out = np.empty_like(counts)
    for symbol, (rows, from_total) in enumerate(plan):
        out[symbol] = total if from_total else 0
        combine = np.subtract if from_total else np.add
        for row in rows:
            combine(out[symbol], counts[row], out=out[symbol])
    return out


def _count_avoiding_modular(
    allowed: np.ndarray, matcher: _PackedMotifMatcher, primes: np.ndarray, max_states: int
) -> np.ndarray:
    """Residues modulo ``primes`` of the number of feasible sequences containing none of the motifs.

    A state is the matcher's packed masks. Counts are kept per (last symbol, prime, state), because
    the last symbol decides which symbols may follow. Symbols acting identically on every mask form
    a class; a (state, class) pair has a single successor state, shared by the class's symbols."""
    num_states, num_primes, length = allowed.shape[0], len(primes), matcher.length
    modulus = primes[None, :, None]  # int64 remainders are far faster than float64 fmod
    predecessors = _predecessor_plan(allowed)
    class_actions, class_of_symbol = np.unique(
        np.concatenate([matcher.keep, matcher.opens], axis=1), axis=0, return_inverse=True
    )
    class_of_symbol = np.asarray(class_of_symbol).ravel()
    num_classes = len(class_actions)
    keep = class_actions[None, :, : matcher.num_words]  # (1, classes, words)
    opens = class_actions[None, :, matcher.num_words :]
    symbols_by_class = np.argsort(class_of_symbol, kind="stable")
    class_starts = np.searchsorted(class_of_symbol[symbols_by_class], np.arange(num_classes))

    masks = np.zeros((1, matcher.num_words), dtype=np.uint64)
    counts = np.zeros((num_states, num_primes, 1), dtype=np.int64)
    for position in range(length):
        if position == 0:  # the first symbol is free
            by_next = np.ones((num_states, num_primes, 1), dtype=np.int64)
        else:
            by_next = _sum_over_predecessors(predecessors, counts)
        reachable = by_next.any(axis=1)  # (symbols, states)

        shifted = ((masks[:, None, :] & keep) << np.uint64(1)) | opens  # (states, classes, words)
        completes = (shifted & matcher.completed).any(axis=2)
        entered = np.logical_or.reduceat(reachable[symbols_by_class], class_starts, axis=0).T
        successor = np.flatnonzero((entered & ~completes).ravel())  # index: state * classes + class
        if len(successor) == 0:
            return np.zeros(num_primes, dtype=np.int64)
        new_masks, target = _unique_rows(
            (shifted & matcher.live_bits(position)).reshape(-1, matcher.num_words)[successor]
        )
        if len(new_masks) > max_states:
            raise StateBudgetExceeded(
                f"avoiding {len(matcher.fields)} motif(s) needs more than max_states={max_states} "
                f"automaton states at position {position} of {length} (the state count grows "
                f"exponentially with the motif gaps)"
            )
        target_of_pair = np.full(len(masks) * num_classes, -1, dtype=np.int64)
        target_of_pair[successor] = target
        # Cell (symbol b, old state j) moves to cell (b, successor of (j, class of b)).
        cell_target = target_of_pair.reshape(len(masks), num_classes)[:, class_of_symbol].T
        symbol, old_state = np.nonzero((cell_target >= 0) & reachable)
        new_state = cell_target[symbol, old_state]
        moving = by_next[symbol, :, old_state]  # (moving cells, primes), each below v * 2**31
        if len(masks) * num_states >= 2**22:  # a float64 sum of len(masks) of them could pass 2**53
            moving = np.remainder(moving, primes)
        # One bincount over (symbol, prime, new state) cells adds up every prime at once.
        destination = ((symbol * num_primes)[:, None] + np.arange(num_primes)) * len(new_masks) + new_state[:, None]
        summed = np.bincount(
            destination.ravel(), weights=moving.ravel(), minlength=num_states * num_primes * len(new_masks)
        )
        counts = summed.astype(np.int64).reshape(num_states, num_primes, len(new_masks))
        np.remainder(counts, modulus, out=counts)
        masks = new_masks
    return counts.sum(axis=(0, 2)) % primes


def count_sequences_with_all_motifs(
    allowed: np.ndarray,
    motifs: Sequence[Sequence[int]],
    offsets: Sequence[Sequence[int]],
    length: int,
    max_states: int = DEFAULT_MAX_STATES,
    word_bits: int = 64,
) -> int:
    """Number of feasible sequences in which every spaced motif occurs (possibly overlapping).

    Inclusion-exclusion over the sets T of motifs a sequence avoids:
    sum over T of (-1)^|T| * #(feasible sequences avoiding every motif in T). Each term is counted
    by a bit-parallel automaton; raises StateBudgetExceeded instead of exceeding ``max_states``.
    ``word_bits`` < 64 packs fewer motifs per machine word (only useful to test the packing)."""
    _check_max_states(max_states)
    require_int("length", length, 1)
    allowed = np.asarray(allowed, dtype=bool)
    num_states = allowed.shape[0]
    if allowed.shape != (num_states, num_states):
        raise ValueError(f"allowed must be a square matrix, got shape {allowed.shape}")
    if len(motifs) != len(offsets):
        raise ValueError(f"got {len(motifs)} motifs but {len(offsets)} offset lists")
    for i, (motif, motif_offsets) in enumerate(zip(motifs, offsets)):
        steps = np.diff(motif_offsets)
        if len(motif) != len(motif_offsets) or motif_offsets[0] != 0 or (steps < 1).any():
            raise ValueError(f"motif {i}: offsets must start at 0, increase, and match the motif's length")
        if min(motif) < 0 or max(motif) >= num_states:
            raise ValueError(f"motif {i} has states outside [0, {num_states})")
    primes = np.array(_primes_with_product_above(num_states**length), dtype=np.int64)
    residues = np.zeros(len(primes), dtype=np.int64)
    for size in range(len(motifs) + 1):
        for subset in itertools.combinations(range(len(motifs)), size):
            if size == 0:
                term = np.array([count_feasible_sequences(allowed, length) % p for p in primes.tolist()])
            else:
                matcher = _PackedMotifMatcher(
                    [motifs[i] for i in subset], [offsets[i] for i in subset], num_states, length, word_bits
                )
                term = _count_avoiding_modular(allowed, matcher, primes, max_states)
            residues = (residues + (-1) ** size * term) % primes
    return _from_residues(residues.tolist(), primes.tolist())
