"""Exact difficulty counts against brute force and hand counts."""

import itertools
import json
import math

import numpy as np
import pytest

from llome.difficulty import count_feasible_sequences, count_sequences_with_all_motifs, difficulty
from llome.ehrlich import PAPER_INSTANCE_NAMES, Ehrlich


def brute_force_counts(allowed: np.ndarray, motifs, offsets, length: int) -> tuple[int, int]:
    """(#feasible, #feasible containing every spaced motif) by enumerating all sequences."""
    v = allowed.shape[0]
    X = np.array(list(itertools.product(range(v), repeat=length)), dtype=np.int64)
    feasible = allowed[X[:, :-1], X[:, 1:]].all(axis=1)
    has_all = np.ones(len(X), dtype=bool)
    for motif, motif_offsets in zip(motifs, offsets):
        found = np.zeros(len(X), dtype=bool)
        for start in range(length - motif_offsets[-1]):
            found |= np.all([X[:, start + o] == m for o, m in zip(motif_offsets, motif)], axis=0)
        has_all &= found
    return int(feasible.sum()), int((feasible & has_all).sum())


@pytest.mark.parametrize(
    "params",
    [(4, 8, 2, 2, 2, 0), (4, 8, 2, 2, 2, 1), (4, 9, 2, 3, 3, 7), (6, 7, 2, 3, 3, 5), (7, 6, 2, 2, 2, 1), (4, 8, 1, 3, 3, 3)],
)
def test_difficulty_matches_brute_force(params):
    f = Ehrlich(*params)
    feasible, optimal = brute_force_counts(f.allowed, f.motifs.tolist(), f.offsets.tolist(), f.dim)
    result = difficulty(f)
    assert (result["num_feasible"], result["num_optimal"]) == (feasible, optimal)
    log10_total = f.dim * math.log10(f.num_states)
    assert result["log10_optimal_fraction"] == pytest.approx(math.log10(optimal) - log10_total)
    assert result["log10_feasible_fraction"] == pytest.approx(math.log10(feasible) - log10_total)
    assert result["optimal_unavailable_reason"] is None


@pytest.mark.parametrize("word_bits", [64, 5])
def test_optimal_count_on_hand_made_motifs(word_bits):
    rng = np.random.default_rng(3)
    for _ in range(6):
        v, length = 3, 8
        allowed = rng.random((v, v)) < 0.75
        np.fill_diagonal(allowed, True)
        motifs = [rng.integers(0, v, 2).tolist(), rng.integers(0, v, 3).tolist(), [0, 0]]
        offsets = [[0, int(rng.integers(1, 4))], [0, 1, int(rng.integers(2, 4))], [0, 1]]
        expected = brute_force_counts(allowed, motifs, offsets, length)
        assert count_feasible_sequences(allowed, length) == expected[0]
        # Motifs as ragged Python lists: the counter takes one motif at a time.
        counted = count_sequences_with_all_motifs(allowed, motifs, offsets, length, word_bits=word_bits)
        assert counted == expected[1]


def test_counts_by_hand():
    # Two states, 1 -> 0 banned: feasible sequences are 0...01...1, so L + 1 of them.
    assert count_feasible_sequences(np.array([[True, True], [False, True]]), 6) == 7
    # All of {0,1}^3 allowed; "00" as adjacent pair occurs in 000, 001, 100.
    everything = np.ones((2, 2), dtype=bool)
    assert count_sequences_with_all_motifs(everything, [[0, 0]], [[0, 1]], 3) == 3
    # "0?1" (gap 2) in length 3: 001 and 011.
    assert count_sequences_with_all_motifs(everything, [[0, 1]], [[0, 2]], 3) == 2
    # Both "00" and "11" in length 4: only 0011 and 1100.
    assert count_sequences_with_all_motifs(everything, [[0, 0], [1, 1]], [[0, 1], [0, 1]], 4) == 2


def test_difficulty_of_the_main_paper_instance():
    f = Ehrlich.from_name(PAPER_INSTANCE_NAMES[0])
    result = difficulty(f)
    assert json.loads(json.dumps(result)) == result
    assert 0 < result["num_optimal"] < result["num_feasible"] < 32**32
    assert result["log10_optimal_fraction"] < result["log10_feasible_fraction"] < 0


def test_difficulty_reports_budget_instead_of_guessing():
    f = Ehrlich.from_name(PAPER_INSTANCE_NAMES[0])
    result = difficulty(f, max_states=20)
    assert result["num_optimal"] is None and result["log10_optimal_fraction"] is None
    assert "max_states=20" in result["optimal_unavailable_reason"]
    assert result["num_feasible"] == difficulty(f)["num_feasible"]


@pytest.mark.parametrize("max_states", [0, 2**22, 10.5])
def test_difficulty_rejects_bad_budget(max_states):
    with pytest.raises(ValueError, match="max_states"):
        difficulty(Ehrlich.from_name(PAPER_INSTANCE_NAMES[0]), max_states=max_states)


@pytest.mark.parametrize(
    "motifs, offsets, message",
    [
        ([[0, 0]], [[0, 0]], "offsets must start at 0, increase"),
        ([[0, 0]], [[1, 2]], "offsets must start at 0"),
        ([[0, 2]], [[0, 1]], "outside"),
        ([[0, 0]], [[0, 1], [0, 1]], "offset lists"),
    ],
)
def test_counter_rejects_malformed_motifs(motifs, offsets, message):
    with pytest.raises(ValueError, match=message):
        count_sequences_with_all_motifs(np.ones((2, 2), dtype=bool), motifs, offsets, 3)
