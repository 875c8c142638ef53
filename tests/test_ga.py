import itertools
import math

import numpy as np
import pytest

from llome.ehrlich import Ehrlich
from llome.ga import GAConfig, _bernoulli_successes, next_generation, run_ga, survivors

LENGTH, NUM_STATES = 12, 6
TARGET = np.arange(LENGTH) % NUM_STATES


def matches_oracle(x: np.ndarray) -> np.ndarray:
    """Fraction of positions equal to TARGET; sequences starting with 5 are infeasible."""
    score = (x == TARGET).mean(axis=1)
    score[x[:, 0] == 5] = -np.inf
    return score


class RecordingOracle:
    def __init__(self, oracle):
        self.oracle, self.inputs, self.outputs = oracle, [], []

    def __call__(self, x):
        self.inputs.append(x.copy())
        self.outputs.append(self.oracle(x))
        return self.outputs[-1]


def config(**overrides) -> GAConfig:
    settings = dict(num_particles=50, mutation_prob=0.05, recombine_prob=0.3, survival_quantile=0.2, num_steps=6)
    return GAConfig(**(settings | overrides))


def start() -> np.ndarray:
    return np.zeros(LENGTH, dtype=np.int64)


# --- selection -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("quantile", [0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 1.0])
def test_survivors_match_numpy_linear_quantile_on_finite_losses(quantile):
    rng = np.random.default_rng(1)
    losses = -rng.integers(0, 5, size=203) / 4.0  # quantised like Ehrlich values, so many ties
    expected = losses <= np.quantile(losses, quantile, method="linear")
    np.testing.assert_array_equal(survivors(losses, quantile), expected)


def test_survivors_hand_computed_threshold():
    # position 0.25 * 9 = 2.25 -> threshold 2 + 0.25 * (3 - 2) = 2.25
    losses = np.array([5.0, 0, 9, 1, 7, 2, 8, 3, 6, 4])
    assert survivors(losses, 0.25).tolist() == [v <= 2.25 for v in losses.tolist()]


def test_ties_at_threshold_all_survive():
    losses = np.array([-1.0] * 30 + [0.0] * 70)
    assert survivors(losses, 0.1).sum() == 30  # 10% of 100, but all 30 tied particles survive


def test_infinite_quantile_means_everyone_survives():
    # 100 feasible of 1000: position 99.9 interpolates toward +inf, so selection is off.
    assert survivors(np.array([-1.0] * 100 + [np.inf] * 900), 0.1).all()
    assert survivors(np.full(20, np.inf), 0.5).all()
    # 101 feasible: both order statistics are finite, selection is on.
    assert survivors(np.array([-1.0] * 101 + [np.inf] * 899), 0.1).sum() == 101


def test_quantile_landing_exactly_on_an_order_statistic_ignores_the_next_one():
    # position 0.1 * 10 = 1.0 exactly: threshold is the 2nd smallest even though the 3rd is +inf.
    losses = np.array([-1.0, -0.5] + [np.inf] * 9)
    assert survivors(losses, 0.1).tolist() == [True, True] + [False] * 9


def test_bernoulli_successes_edge_rates():
    rng = np.random.default_rng(0)
    assert _bernoulli_successes(rng, 500, 0.0).size == 0
    np.testing.assert_array_equal(_bernoulli_successes(rng, 500, 1.0), np.arange(500))
    for tiny in (1e-300, 5e-324):  # huge gaps must neither overflow nor turn into NaN
        assert _bernoulli_successes(rng, 500, tiny).size == 0


@pytest.mark.parametrize("prob", [0.005, 0.0882, 0.5])
def test_bernoulli_successes_are_independent_trials(prob):
    rng = np.random.default_rng(1)
    num_trials, draws = 640, 2000
    hits = np.zeros(num_trials)
    counts = []
    for _ in range(draws):
        successes = _bernoulli_successes(rng, num_trials, prob)
        assert np.all(np.diff(successes) > 0) and (successes.size == 0 or successes[-1] < num_trials)
        hits[successes] += 1
        counts.append(successes.size)
    mean, var = num_trials * prob, num_trials * prob * (1 - prob)
    assert np.mean(counts) == pytest.approx(mean, abs=4 * math.sqrt(var / draws))
    assert np.var(counts) == pytest.approx(var, rel=0.15)
    # Each position succeeds with probability prob, wherever it is (no edge effect at either end).
    for block in np.split(hits, 8):
        assert block.mean() / draws == pytest.approx(prob, abs=5 * math.sqrt(prob / (draws * block.size)))


# --- one generation ------------------------------------------------------------------------------------


def diverse_population(rng, num_particles=40):
    return rng.integers(0, NUM_STATES, size=(num_particles, LENGTH))


def test_survivors_are_kept_in_place_without_mutation():
    rng = np.random.default_rng(2)
    population = diverse_population(rng)
    losses = rng.random(len(population))
    alive = survivors(losses, 0.25)
    cfg = config(num_particles=len(population), mutation_prob=0.0, recombine_prob=0.5, survival_quantile=0.25)
    offspring = next_generation(population, losses, NUM_STATES, cfg, np.random.default_rng(0))
    np.testing.assert_array_equal(offspring[alive], population[alive])
    assert not np.array_equal(offspring[~alive], population[~alive])


@pytest.mark.parametrize("recombine_prob", [0.0, 0.3, 1.0])
def test_children_take_each_position_from_one_of_two_survivors(recombine_prob):
    rng = np.random.default_rng(3)
    population = diverse_population(rng)
    losses = rng.random(len(population))
    alive = survivors(losses, 0.2)
    cfg = config(
        num_particles=len(population), mutation_prob=0.0, recombine_prob=recombine_prob, survival_quantile=0.2
    )
    offspring = next_generation(population, losses, NUM_STATES, cfg, np.random.default_rng(1))
    parents = population[alive]
    for child in offspring[~alive]:
        if recombine_prob in (0.0, 1.0):
            assert (parents == child).all(axis=1).any(), "with p in {0, 1} a child copies one survivor"
        else:
            assert any(
                ((child == a) | (child == b)).all() for a, b in itertools.product(parents, repeat=2)
            ), f"child {child} is not a crossover of two survivors"


@pytest.mark.parametrize("recombine_prob", [0.0882, 0.5])
def test_crossover_rate_matches_recombine_prob(recombine_prob):
    # Two survivors, all-0 and all-1. Two positions of a child agree with probability
    # P(same parent twice) + P(different parents) * (r^2 + (1-r)^2) = 1/2 + (r^2 + (1-r)^2) / 2.
    length, n = 16, 4000
    population = np.zeros((n, length), dtype=np.int64)
    population[1] = 1
    losses = np.ones(n)
    losses[:2] = 0.0
    cfg = config(num_particles=n, mutation_prob=0.0, recombine_prob=recombine_prob, survival_quantile=0.0)
    children = next_generation(population, losses, 2, cfg, np.random.default_rng(4))[2:]
    agree = (children[:, 1:] == children[:, :1]).mean()
    expected = 0.5 + (recombine_prob**2 + (1 - recombine_prob) ** 2) / 2
    assert agree == pytest.approx(expected, abs=0.02)


def test_mutation_rate_and_range():
    # Everyone survives (quantile 1), so only mutation changes anything. A resampled position keeps its value
    # with probability 1/v, so the visible change rate is p * (1 - 1/v).
    n, v, p = 2000, 8, 0.3
    population = np.zeros((n, LENGTH), dtype=np.int64)
    cfg = config(num_particles=n, mutation_prob=p, survival_quantile=1.0)
    offspring = next_generation(population, np.zeros(n), v, cfg, np.random.default_rng(5))
    assert (offspring != 0).mean() == pytest.approx(p * (1 - 1 / v), abs=0.01)
    assert offspring.min() >= 0 and offspring.max() == v - 1
    counts = np.bincount(offspring[offspring != 0], minlength=v)[1:]
    assert counts.min() > 0.8 * counts.mean()  # uniform over the other values


# --- full runs -----------------------------------------------------------------------------------------


def test_first_step_evaluates_copies_of_the_initial_solution():
    initial = np.array([1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2])
    result = run_ga(matches_oracle, initial, NUM_STATES, config(), seed=0, progress=False)
    first_step = result.sequences[result.steps == 0]
    assert len(first_step) == 50
    assert (first_step == initial).all()


def test_records_are_what_the_oracle_saw_in_order():
    oracle = RecordingOracle(matches_oracle)
    result = run_ga(oracle, start(), NUM_STATES, config(), seed=0, progress=False)
    np.testing.assert_array_equal(result.sequences, np.concatenate(oracle.inputs))
    np.testing.assert_array_equal(result.scores, np.concatenate(oracle.outputs))
    np.testing.assert_array_equal(result.oracle_calls, np.arange(1, len(result) + 1))
    np.testing.assert_array_equal(result.steps, np.repeat(np.arange(6), 50))
    assert result.stop_reason == "num_steps"
    assert result.sequences.dtype == np.uint8


def test_budget_is_spent_exactly_with_a_partial_last_step():
    oracle = RecordingOracle(matches_oracle)
    cfg = config(num_steps=None, max_oracle_calls=1234)
    result = run_ga(oracle, start(), NUM_STATES, cfg, seed=0, progress=False)
    assert len(result) == 1234 and result.oracle_calls[-1] == 1234
    assert [len(x) for x in oracle.inputs] == [50] * 24 + [34]
    assert (result.steps[-34:] == 24).all()
    assert result.stop_reason == "max_oracle_calls"


def test_the_tighter_of_steps_and_budget_wins():
    few_steps = run_ga(matches_oracle, start(), NUM_STATES, config(num_steps=3, max_oracle_calls=10_000), progress=False)
    assert len(few_steps) == 150 and few_steps.stop_reason == "num_steps"
    small_budget = run_ga(matches_oracle, start(), NUM_STATES, config(num_steps=30, max_oracle_calls=120), progress=False)
    assert len(small_budget) == 120 and small_budget.stop_reason == "max_oracle_calls"


def test_stop_at_value_ends_after_the_step_that_reached_it():
    cfg = config(num_particles=200, num_steps=200, stop_at_value=1.0, mutation_prob=0.02)
    result = run_ga(matches_oracle, start(), NUM_STATES, cfg, seed=0, progress=False)
    last_step = result.steps[-1]
    assert result.stop_reason == "stop_at_value"
    assert len(result) == 200 * (last_step + 1) < 200 * 200
    assert result.scores[result.steps == last_step].max() == 1.0
    assert result.scores[result.steps < last_step].max() < 1.0


def test_same_seed_same_run_different_seed_different_run():
    runs = [run_ga(matches_oracle, start(), NUM_STATES, config(), seed=s, progress=False) for s in (7, 7, 8)]
    np.testing.assert_array_equal(runs[0].sequences, runs[1].sequences)
    np.testing.assert_array_equal(runs[0].scores, runs[1].scores)
    assert not np.array_equal(runs[0].sequences, runs[2].sequences)
    from_generator = run_ga(matches_oracle, start(), NUM_STATES, config(), seed=np.random.default_rng(7), progress=False)
    np.testing.assert_array_equal(runs[0].sequences, from_generator.sequences)


def test_no_elitism_the_best_particle_can_be_lost():
    # Heavy mutation destroys good particles; without elitism the per-step best is not monotone.
    cfg = config(num_particles=20, mutation_prob=0.5, num_steps=40)
    result = run_ga(matches_oracle, start(), NUM_STATES, cfg, seed=0, progress=False)
    per_step_best = [result.scores[result.steps == s].max() for s in range(40)]
    assert any(later < earlier for earlier, later in zip(per_step_best, per_step_best[1:]))


def test_an_oracle_that_edits_its_input_cannot_corrupt_the_run():
    seen = []

    def vandal(x):
        seen.append(x.copy())
        scores = matches_oracle(x)
        x[:] = 0
        return scores

    result = run_ga(vandal, start(), NUM_STATES, config(), seed=0, progress=False)
    np.testing.assert_array_equal(result.sequences, np.concatenate(seen))
    assert result.sequences.any()


def test_an_oracle_that_reuses_its_output_buffer_cannot_corrupt_the_records():
    buffer = np.empty(50)

    def reuser(x):
        buffer[:] = matches_oracle(x)
        return buffer

    result = run_ga(reuser, start(), NUM_STATES, config(), seed=0, progress=False)
    np.testing.assert_array_equal(result.scores, matches_oracle(result.sequences.astype(np.int64)))


def test_wide_alphabets_are_stored_in_wider_integers():
    result = run_ga(lambda x: -x.sum(axis=1).astype(float), np.full(4, 299), 300, config(num_steps=2), progress=False)
    assert result.sequences.dtype == np.uint16 and result.sequences.max() == 299


# --- seed dataset and regret curve -------------------------------------------------------------------------


def test_unique_keeps_the_first_sighting_of_each_particle():
    result = run_ga(matches_oracle, start(), NUM_STATES, config(mutation_prob=0.02), seed=0, progress=False)
    table = result.unique()
    seen = {}
    for i, row in enumerate(map(tuple, result.sequences.tolist())):
        seen.setdefault(row, i)
    assert len(table) == len(seen) < len(result)
    assert table["sequence"].tolist() == list(seen)  # same particles, in first-seen order
    first = np.array(list(seen.values()))
    np.testing.assert_array_equal(table["oracle_calls"], first + 1)
    np.testing.assert_array_equal(table["score"], result.scores[first])
    np.testing.assert_array_equal(table["step"], result.steps[first])
    assert all(type(v) is int for v in table["sequence"][0])


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("num_particles", 1),
        ("num_particles", 10.0),
        ("mutation_prob", -0.1),
        ("mutation_prob", 1.5),
        ("recombine_prob", math.nan),
        ("survival_quantile", 2.0),
        ("num_steps", 0),
        ("max_oracle_calls", 0),
        ("stop_at_value", math.inf),
    ],
)
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"GAConfig.{field}"):
        config(**{field: value})


def test_config_needs_a_stopping_rule():
    with pytest.raises(ValueError, match="num_steps or max_oracle_calls"):
        GAConfig(num_steps=None, max_oracle_calls=None)


@pytest.mark.parametrize(
    "initial, num_states, message",
    [
        (np.array([0, 6]), 6, r"\[0, 6\)"),
        (np.array([-1, 0]), 6, r"\[0, 6\)"),
        (np.zeros((2, 3), int), 6, "1-D"),
        (np.array([0.0, 1.0]), 6, "integer"),
        (np.array([0, 1]), 0, "num_states"),
    ],
)
def test_bad_initial_solution_is_rejected_before_any_oracle_call(initial, num_states, message):
    oracle = RecordingOracle(matches_oracle)
    with pytest.raises(ValueError, match=message):
        run_ga(oracle, initial, num_states, config(), progress=False)
    assert oracle.inputs == []


def test_survivors_and_next_generation_reject_malformed_input():
    with pytest.raises(ValueError, match="quantile"):
        survivors(np.zeros(5), 1.5)
    with pytest.raises(ValueError, match="losses"):
        survivors(np.zeros((2, 2)), 0.5)
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(5,\)"):
        next_generation(np.zeros((4, 3), np.uint8), np.zeros(5), 2, config(), np.random.default_rng(0))


def test_progress_bar_reports_steps_and_can_be_silenced(capsys):
    run_ga(matches_oracle, start(), NUM_STATES, config(num_steps=3), progress=True)
    assert "3/3" in capsys.readouterr().err
    run_ga(matches_oracle, start(), NUM_STATES, config(num_steps=3), progress=False)
    assert capsys.readouterr().err == ""


def test_bad_seed_is_rejected():
    with pytest.raises(ValueError, match="seed"):
        run_ga(matches_oracle, start(), NUM_STATES, config(), seed=None, progress=False)


@pytest.mark.parametrize(
    "bad_oracle, message",
    [
        (lambda x: np.zeros(len(x) - 1), "shape"),
        (lambda x: np.full(len(x), np.nan), "nan"),
        (lambda x: np.full(len(x), np.inf), "inf"),
    ],
)
def test_bad_oracle_output_is_a_clear_error(bad_oracle, message):
    with pytest.raises(ValueError, match=message):
        run_ga(bad_oracle, start(), NUM_STATES, config(), progress=False)


# --- on the Ehrlich function -------------------------------------------------------------------------------


def test_scores_on_ehrlich_are_the_function_values_of_the_recorded_particles():
    f = Ehrlich.from_name("ehr_v-32_l-032_m-4_c-4_q-4")
    result = run_ga(f, f.initial_solution(), f.num_states, config(num_particles=200, num_steps=5), progress=False)
    np.testing.assert_array_equal(result.scores, f(result.sequences.astype(np.int64)))
    assert result.scores[0] == f(f.initial_solution()[None])[0] > -np.inf
