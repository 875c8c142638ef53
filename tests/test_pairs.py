import numpy as np
import pytest
from conftest import brute_force_neighbours

from llome import pairs
from llome.pairs import PAIR_COLUMNS, TRIPLE_COLUMNS, make_dpo_triples, make_pairs


def brute_force_pairs(sequences, scores, max_distance, num_neighbors):
    """make_pairs without the infeasible cap, from the spec, one pair at a time."""
    pool = sorted(set(zip(map(tuple, sequences), scores)))
    array = np.array([sequence for sequence, _ in pool])
    values = [score for _, score in pool]
    length = array.shape[1]
    rows, cols, _ = brute_force_neighbours(array, int(np.floor(max_distance * length + 1e-9)), num_neighbors)
    found = set()
    for i, j in zip(rows, cols):
        if values[i] == values[j]:
            continue
        worse, better = (i, j) if values[i] < values[j] else (j, i)
        f_worse, f_better = (0.0 if np.isinf(values[k]) else values[k] for k in (worse, better))
        found.add((pool[worse][0], pool[better][0], values[worse], values[better],
                   max(f_better - f_worse, 0.0), (array[worse] != array[better]).mean()))
    return found


def as_rows(frame):
    return {tuple(row) for row in frame[PAIR_COLUMNS].itertuples(index=False)}


def star_pool(length=8):
    """A centre of zeros and the `length` sequences one mutation away from it."""
    centre = (0,) * length
    leaves = [tuple(1 if k == i else 0 for k in range(length)) for i in range(length)]
    return [centre] + leaves


# --- make_pairs on hand-made pools -----------------------------------------------------------


def test_orientation_reward_and_inclusive_threshold():
    sequences = [(0, 0, 0, 1), (0, 0, 0, 0), (1, 1, 1, 1)]
    scores = [0.75, 0.5, 1.0]
    result = make_pairs(sequences, scores)
    assert list(result.columns) == PAIR_COLUMNS
    # (1,1,1,1) is 0.75 and 1.0 away from the others; one mismatch in 4 is exactly 0.25 and counts.
    assert as_rows(result) == {((0, 0, 0, 0), (0, 0, 0, 1), 0.5, 0.75, 0.25, 0.25)}


def test_threshold_excludes_two_mismatches_at_quarter_but_not_at_half():
    sequences = [(0, 0, 0, 0), (0, 0, 1, 1)]
    assert make_pairs(sequences, [0.1, 0.2]).empty
    wider = make_pairs(sequences, [0.1, 0.2], max_distance=0.5)
    assert wider["distance"].tolist() == [0.5]


def test_equal_scores_are_dropped_unless_allowed():
    sequences = [(2, 0, 0, 0), (1, 0, 0, 0)]
    assert make_pairs(sequences, [0.5, 0.5]).empty
    kept = make_pairs(sequences, [0.5, 0.5], allow_equal_scores=True)
    # Tie: the lexicographically smaller sequence is the input, whatever the input order.
    assert as_rows(kept) == {((1, 0, 0, 0), (2, 0, 0, 0), 0.5, 0.5, 0.0, 0.25)}


def test_infeasible_counts_as_zero_in_reward_and_as_worst_in_orientation():
    sequences = [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 1)]
    result = make_pairs(sequences, [0.5, -np.inf, 0.25], max_distance=0.5, infeasible_fraction=1.0)
    rows = as_rows(result)
    assert ((0, 0, 0, 1), (0, 0, 0, 0), -np.inf, 0.5, 0.5, 0.25) in rows
    assert ((0, 0, 0, 1), (0, 0, 1, 1), -np.inf, 0.25, 0.25, 0.25) in rows
    assert ((0, 0, 1, 1), (0, 0, 0, 0), 0.25, 0.5, 0.25, 0.5) in rows
    assert len(rows) == 3


def test_two_infeasible_sequences_tie_and_give_zero_reward():
    sequences = [(0, 1), (0, 0)]
    assert make_pairs(sequences, [-np.inf, -np.inf], max_distance=0.5, infeasible_fraction=1.0).empty
    tied = make_pairs(sequences, [-np.inf, -np.inf], max_distance=0.5, infeasible_fraction=1.0,
                      allow_equal_scores=True)
    assert tied["x"].tolist() == [(0, 0)] and tied["reward"].tolist() == [0.0]


def test_duplicates_are_dropped_and_conflicting_duplicates_rejected():
    sequences = [(0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 0, 0)]
    result = make_pairs(sequences, [0.5, 0.75, 0.5])
    assert len(result) == 1
    with pytest.raises(ValueError, match=r"scores disagree .*\(0, 0, 0, 0\)"):
        make_pairs(sequences, [0.5, 0.75, 0.25])
    with pytest.raises(ValueError, match="scores disagree"):
        make_pairs([(0, 0), (0, 0)], [-np.inf, 0.0])


def test_neighbour_cap_keeps_each_sequences_nearest():
    pool = star_pool()
    scores = np.arange(len(pool)) / 10  # all distinct
    # Leaves are 1 mismatch from the centre and 2 from each other (2/8 = 0.25, inside the radius).
    everyone = make_pairs(pool, scores, num_neighbors=None)
    assert len(everyone) == 8 + 28
    nearest = make_pairs(pool, scores, num_neighbors=1)
    # Each leaf's single nearest is the centre; the union of lists gives exactly the 8 spokes.
    assert len(nearest) == 8
    assert all((0,) * 8 in (x, y) for x, y in zip(nearest["x"], nearest["y"]))
    assert (nearest["distance"] == 1 / 8).all()
    assert len(make_pairs(pool, scores, num_neighbors=0)) == 0


def test_ties_in_distance_are_broken_by_lexicographic_order():
    pool = star_pool()
    scores = np.arange(len(pool)) / 10
    two = make_pairs(pool, scores, num_neighbors=2)
    leaf_pairs = {frozenset((x, y)) for x, y in zip(two["x"], two["y"]) if (0,) * 8 not in (x, y)}
    # Every leaf's second choice is the lexicographically smallest other leaf (the last spoke,
    # (0,...,0,1)), except that leaf's own, which is the next smallest (0,...,0,1,0).
    smallest, second = (0,) * 7 + (1,), (0,) * 6 + (1, 0)
    expected = {frozenset((leaf, smallest)) for leaf in pool[1:] if leaf != smallest}
    expected.add(frozenset((smallest, second)))
    assert leaf_pairs == expected


def test_each_unordered_pair_appears_once():
    pool = star_pool()
    result = make_pairs(pool, np.arange(len(pool)) / 10, num_neighbors=None)
    unordered = [frozenset(pair) for pair in zip(result["x"], result["y"])]
    assert len(unordered) == len(set(unordered))


@pytest.mark.parametrize("num_neighbors", [None, 1, 3, 30])
def test_matches_brute_force_on_random_pools(num_neighbors):
    rng = np.random.default_rng(num_neighbors or 0)
    for _ in range(5):
        sequences = rng.integers(0, 3, (60, 6))
        scores = np.where(rng.random(60) < 0.3, -np.inf, rng.integers(0, 4, 60) / 4)
        # Give duplicates the same score, as an oracle would.
        first_score = {}
        scores = np.array([first_score.setdefault(tuple(s), v) for s, v in zip(sequences, scores)])
        result = make_pairs(sequences, scores, max_distance=0.34, num_neighbors=num_neighbors,
                            infeasible_fraction=1.0)
        assert as_rows(result) == brute_force_pairs(sequences, scores, 0.34, num_neighbors)


def test_infeasible_pairs_are_capped_with_a_seeded_subsample():
    rng = np.random.default_rng(3)
    sequences = rng.integers(0, 2, (80, 8))
    first_score = {}
    scores = np.array([first_score.setdefault(tuple(s), v) for s, v in
                       zip(sequences, np.where(rng.random(80) < 0.4, -np.inf, rng.random(80)))])
    uncapped = make_pairs(sequences, scores, infeasible_fraction=1.0)
    infeasible = np.isinf(uncapped["x_score"])
    feasible_count = int((~infeasible).sum())
    assert infeasible.sum() > feasible_count / 9  # so the cap binds

    capped = make_pairs(sequences, scores, infeasible_fraction=0.1, seed=1)
    capped_infeasible = np.isinf(capped["x_score"])
    # Largest m with m / (F + m) <= 0.1 is floor(F / 9).
    assert capped_infeasible.sum() == feasible_count // 9
    assert as_rows(capped[~capped_infeasible]) == as_rows(uncapped[~infeasible])
    assert as_rows(capped) <= as_rows(uncapped)

    assert capped.equals(make_pairs(sequences, scores, infeasible_fraction=0.1, seed=1))
    other_seeds = [as_rows(make_pairs(sequences, scores, infeasible_fraction=0.1, seed=s)) for s in range(2, 6)]
    assert any(rows != as_rows(capped) for rows in other_seeds)
    assert not np.isinf(make_pairs(sequences, scores, infeasible_fraction=0.0)["x_score"]).any()


def test_cap_arithmetic_at_the_boundary():
    assert pairs._largest_allowed_infeasible(9, 5, 0.1) == 1  # 1/10 is allowed, 2/11 is not
    assert pairs._largest_allowed_infeasible(8, 5, 0.1) == 0
    assert pairs._largest_allowed_infeasible(3, 5, 0.5) == 3
    assert pairs._largest_allowed_infeasible(0, 5, 1.0) == 5


def test_result_does_not_depend_on_input_order():
    rng = np.random.default_rng(4)
    sequences = np.unique(rng.integers(0, 3, (50, 6)), axis=0)
    scores = np.where(rng.random(len(sequences)) < 0.3, -np.inf, rng.random(len(sequences)))
    order = rng.permutation(len(sequences))
    first = make_pairs(sequences, scores, max_distance=0.34, seed=7)
    shuffled = make_pairs([tuple(s) for s in sequences[order]], scores[order], max_distance=0.34, seed=7)
    assert first.equals(shuffled)


def test_max_distance_boundary_survives_float_rounding():
    # 0.29 * 100 is 28.999999999999996 in floating point; 29 mismatches must still count.
    assert pairs.max_mismatches(0.29, 100) == 29
    assert pairs.max_mismatches(0.25, 32) == 8
    assert pairs.max_mismatches(0.25, 10) == 2


def test_small_and_empty_pools_give_empty_frames_with_the_columns():
    for sequences, scores in [([], []), ([(0, 1)], [0.5])]:
        result = make_pairs(sequences, scores)
        assert result.empty and list(result.columns) == PAIR_COLUMNS


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sequences=[(0, 1), (0, 1, 2)], scores=[0, 1]), "same length"),
        (dict(sequences=[(0, -1), (0, 1)], scores=[0, 1]), "non-negative"),
        (dict(sequences=[(0.5, 1.0), (0, 1)], scores=[0, 1]), "integers"),
        (dict(sequences="0101", scores=[0]), "string"),
        (dict(sequences=[(0, 1), None], scores=[0, 1]), "None at position 1"),
        (dict(sequences=[(0, 1), (1, 1)], scores=[0.0]), "scores must have shape"),
        (dict(sequences=[(0, 1), (1, 1)], scores=[0.0, np.nan]), "NaN"),
        (dict(sequences=[(0, 1), (1, 1)], scores=[0.0, np.inf]), r"\+inf"),
        (dict(sequences=[(0, 1), (1, 1)], scores=[0, 1], max_distance=1.5), "max_distance"),
        (dict(sequences=[(0, 1), (1, 1)], scores=[0, 1], num_neighbors=-1), "num_neighbors"),
        (dict(sequences=[(0, 1), (1, 1)], scores=[0, 1], num_neighbors=2.0), "num_neighbors"),
        (dict(sequences=[(0, 1), (1, 1)], scores=[0, 1], infeasible_fraction=-0.1), "infeasible_fraction"),
        (dict(sequences=[(0, 1), (1, 1)], scores=[0, 1], seed=-1), "seed"),
    ],
)
def test_bad_input_is_rejected_with_the_argument_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_pairs(**kwargs)


# --- DPO triples -----------------------------------------------------------------------------


# A star: A is one mismatch from each of B, C, D, E, which are two apart from each other (max_distance 0.25 of
# length 4 allows one). Indices follow lexicographic order, which is also the output order.
A, B, C, D, E = (0, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (0, 1, 0, 0), (1, 0, 0, 0)
STAR = {A: 0.5, B: 1.0, C: 0.25, D: 0.75, E: -np.inf}
# x=A: winners B, D; losers C, E -> 2 x 2 combinations + 2 copies of A. x=C: winner A, no loser -> a copy only.
# x=E (infeasible): winner A -> a copy only. B and D have A as their only neighbour, and it does not beat them.
STAR_TRIPLES = [(A, B, A), (A, B, C), (A, B, E), (A, D, A), (A, D, C), (A, D, E), (C, A, C), (E, A, E)]
STAR_INFEASIBLE = [(A, B, E), (A, D, E), (E, A, E)]


def _triples(frame):
    return list(zip(frame["x"], frame["y_w"], frame["y_l"]))


def test_dpo_triples_on_a_hand_made_pool():
    triples = make_dpo_triples(list(STAR), list(STAR.values()), infeasible_fraction=1.0)
    assert list(triples.columns) == TRIPLE_COLUMNS
    assert _triples(triples) == STAR_TRIPLES
    for row in triples.itertuples(index=False):
        assert (row.x_score, row.y_w_score, row.y_l_score) == (STAR[row.x], STAR[row.y_w], STAR[row.y_l])
    # the input order does not matter
    shuffled = list(reversed(STAR))
    assert make_dpo_triples(shuffled, [STAR[s] for s in shuffled], infeasible_fraction=1.0).equals(triples)


def test_dpo_triples_cap_the_infeasible_ones():
    feasible = [t for t in STAR_TRIPLES if t not in STAR_INFEASIBLE]
    # 5 feasible triples: at 10% not even one infeasible fits (1/6 > 0.1); at 25% exactly one does (1/6, not 2/7).
    assert _triples(make_dpo_triples(list(STAR), list(STAR.values()), infeasible_fraction=0.1)) == feasible
    picked = set()
    for seed in range(8):
        found = _triples(make_dpo_triples(list(STAR), list(STAR.values()), infeasible_fraction=0.25, seed=seed))
        extra = [t for t in found if t not in feasible]
        assert len(found) == 6 and len(extra) == 1 and extra[0] in STAR_INFEASIBLE
        assert found == [t for t in STAR_TRIPLES if t in feasible or t == extra[0]]  # still in order
        picked.add(extra[0])
    assert len(picked) > 1  # the seed decides which


def test_dpo_triples_use_the_nearest_neighbours_only():
    # A's two nearest are B and C (all at one mismatch, ties to the lower index): winner B, loser C.
    triples = make_dpo_triples(list(STAR), list(STAR.values()), num_neighbors=2, infeasible_fraction=1.0)
    assert _triples(triples) == [(A, B, A), (A, B, C), (C, A, C), (E, A, E)]


def brute_force_triples(sequences, scores, max_mismatch, num_neighbors):
    """Every triple from the spec, one neighbourhood at a time."""
    rows, cols, _ = brute_force_neighbours(sequences, max_mismatch, num_neighbors)
    found = []
    for i in range(len(sequences)):
        neighbours = cols[rows == i]
        winners = [j for j in neighbours if scores[j] > scores[i]]
        others = [j for j in neighbours if scores[j] <= scores[i]]
        found += [(i, w, lose) for w in winners for lose in others + [i]]
    return found


def test_dpo_triples_are_every_combination_in_each_neighbourhood():
    rng = np.random.default_rng(6)
    sequences = np.unique(rng.integers(0, 3, (150, 6)), axis=0)
    scores = np.where(rng.random(len(sequences)) < 0.3, -np.inf, rng.integers(0, 5, len(sequences)) / 4)
    expected = brute_force_triples(sequences, scores, 2, 5)
    triples = make_dpo_triples(sequences, scores, max_distance=0.34, num_neighbors=5, infeasible_fraction=1.0)
    index = {tuple(s): i for i, s in enumerate(sequences)}
    found = [(index[x], index[w], index[lose]) for x, w, lose in _triples(triples)]
    assert len(found) == len(expected) > 200
    assert found == sorted(expected)  # sequences are sorted, so index order is lexicographic order
    for row in triples.itertuples(index=False):
        assert row.y_w_score > row.x_score and (row.y_l_score <= row.x_score or row.y_l == row.x)

    capped = make_dpo_triples(sequences, scores, max_distance=0.34, num_neighbors=5, infeasible_fraction=0.1)
    infeasible = np.isneginf(capped[["x_score", "y_l_score"]].to_numpy()).any(axis=1)
    feasible_expected = sum(not (np.isneginf(scores[i]) or np.isneginf(scores[j])) for i, _, j in expected)
    assert (~infeasible).sum() == feasible_expected  # every feasible triple stays
    kept = infeasible.sum()
    assert 0 < kept <= 0.1 * len(capped)
    assert (kept + 1) / (len(capped) + 1) > 0.1  # one more would not fit: as many as fit are kept


def test_dpo_triples_max_triples_is_a_seeded_sample():
    rng = np.random.default_rng(7)
    sequences = np.unique(rng.integers(0, 3, (150, 6)), axis=0)
    scores = rng.random(len(sequences))
    everything = _triples(make_dpo_triples(sequences, scores, max_distance=0.34))
    first = make_dpo_triples(sequences, scores, max_distance=0.34, max_triples=10, seed=1)
    assert first.equals(make_dpo_triples(sequences, scores, max_distance=0.34, max_triples=10, seed=1))
    assert not first.equals(make_dpo_triples(sequences, scores, max_distance=0.34, max_triples=10, seed=2))
    sample = _triples(first)
    assert len(sample) == 10 and set(sample) <= set(everything)
    assert sample == sorted(sample, key=everything.index)  # kept in order
    assert sample != everything[:10]  # a sample, not the first ten
    with pytest.raises(ValueError, match="max_triples"):
        make_dpo_triples(sequences, scores, max_triples=-1)
    with pytest.raises(ValueError, match="infeasible_fraction"):
        make_dpo_triples(sequences, scores, infeasible_fraction=1.5)
    assert make_dpo_triples([(0, 1)], [0.5]).empty
    assert make_dpo_triples([(0, 0), (0, 1)], [0.5, 0.5]).empty  # no neighbour beats another
