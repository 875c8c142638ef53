"""Checks of llome.stats against hand-worked values and scipy/numpy references."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from llome.stats import (
    binned_means,
    calls_to_reach,
    censored_paired_comparison,
    kaplan_meier_median,
    linear_trend,
    paired_bootstrap_ci,
    regret_auc,
    sign_test,
    spearman_with_ci,
    wilcoxon_signed_rank,
)


# paired_bootstrap_ci

def test_bootstrap_interval_covers_the_true_difference_on_synthetic_seeds():
    rng = np.random.default_rng(123)
    b = rng.normal(0.0, 1.0, size=40)
    a = b + 0.3 + rng.normal(0.0, 0.2, size=40)
    estimate, low, high = paired_bootstrap_ci(a, b, n_resamples=4000, seed=7)
    assert estimate == pytest.approx(np.mean(a - b))
    assert low < 0.3 < high
    # Standard error of the mean difference is about 0.2 / sqrt(40) = 0.032,
    # so a 95% interval is about 0.12 wide; far wider means the pairing is lost.
    assert 0.06 < high - low < 0.2


def test_bootstrap_resamples_seeds_as_pairs():
    # a - b is exactly 1 on every seed while each method alone varies wildly:
    # only a paired resampling gives a zero-width interval.
    b = np.array([0.0, 10.0, -5.0, 3.0, 100.0])
    assert tuple(paired_bootstrap_ci(b + 1.0, b, n_resamples=500)) == (1.0, 1.0, 1.0)


def test_bootstrap_is_reproducible_for_a_seed_and_varies_between_seeds():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    first = paired_bootstrap_ci(a, b, n_resamples=2000, seed=5)
    assert paired_bootstrap_ci(a, b, n_resamples=2000, seed=5) == first
    assert paired_bootstrap_ci(a, b, n_resamples=2000, seed=6) != first


def test_bootstrap_takes_other_statistics_and_wider_confidence_widens():
    a = np.array([0.1, 0.4, 0.2, 0.9, 0.5, 0.3, 0.8])
    b = np.zeros_like(a)
    median_estimate, low, high = paired_bootstrap_ci(a, b, statistic=np.median, n_resamples=3000)
    assert median_estimate == pytest.approx(0.4)
    assert 0.1 <= low <= 0.4 <= high <= 0.9

    def range_of(values):  # takes no axis argument: exercises the per-row path
        return float(np.max(values) - np.min(values))

    estimate, low, high = paired_bootstrap_ci(a, b, statistic=range_of, n_resamples=300)
    assert estimate == pytest.approx(0.8)
    assert 0.0 <= low <= high <= 0.8
    narrow = paired_bootstrap_ci(a, b, confidence=0.5, n_resamples=3000)
    wide = paired_bootstrap_ci(a, b, confidence=0.99, n_resamples=3000)
    assert wide.low < narrow.low and narrow.high < wide.high


def test_bootstrap_rejects_unpaired_input():
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0, 2.0], [1.0, 2.0, 3.0])


# sign_test and wilcoxon_signed_rank

@pytest.mark.parametrize(
    "a, b",
    [
        ([1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 0, 0]),
        ([1, 2, 3, 4, 5, 6, 7, 8], [0, 0, 0, 0, 0, 0, 9, 9]),
        ([0.3, 0.1, 0.5, 0.2, 0.9], [0.2, 0.4, 0.1, 0.6, 0.3]),
        ([1, 1, 1, 5, 6, 7, 0, 2, 3, 4, 9], [1, 1, 2, 4, 5, 6, 1, 1, 2, 3, 8]),
    ],
)
def test_sign_test_matches_scipy_binomtest_after_dropping_ties(a, b):
    differences = np.subtract(a, b)
    nonzero = differences[differences != 0]
    expected = scipy_stats.binomtest(int(np.sum(nonzero > 0)), nonzero.size, 0.5).pvalue
    assert sign_test(a, b) == pytest.approx(expected, rel=1e-12)


def test_sign_test_hand_values():
    # 5 wins of 5: p = 2 * (1/2)^5.
    assert sign_test([1, 1, 1, 1, 1], [0, 0, 0, 0, 0]) == pytest.approx(2 / 32)
    # 3 ties are dropped, leaving 2 wins of 2: p = 2 * 1/4.
    assert sign_test([1, 1, 0, 0, 0], [0, 0, 0, 0, 0]) == pytest.approx(0.5)
    assert sign_test([0.5, 0.5], [0.5, 0.5]) == 1.0


@pytest.mark.parametrize("differences", [
    [0.25, 0.25, 0.5, -0.25, 0.75, 0.5],
    [1, 1, 1, 1, 1, 1, 1, 1],
    [-0.5, 0.25, 0.25, -0.25, 0.5, 0.5, 1.0, 0.25, -1.0, 0.75],
    [2, -2, 3, 3, -1, 1, 4],
])
def test_wilcoxon_with_ties_matches_scipys_enumeration_of_sign_flips(differences):
    # Tied magnitudes take the vectorised path; scipy's own (one statistic call per flip) is the reference.
    differences = np.array(differences, dtype=float)
    assert np.unique(np.abs(differences)).size < differences.size
    expected = scipy_stats.wilcoxon(differences, alternative="two-sided").pvalue
    assert wilcoxon_signed_rank(differences, np.zeros_like(differences)) == pytest.approx(expected, rel=1e-12)


def test_wilcoxon_matches_scipy_and_handles_zero_differences():
    a = np.array([2.1, 3.4, 1.9, 5.0, 4.2, 3.3, 2.8, 4.9])
    b = np.array([1.0, 3.0, 2.5, 3.1, 3.2, 3.3, 1.1, 2.0])
    without_zero = (a - b)[a != b]
    assert wilcoxon_signed_rank(a, b) == pytest.approx(scipy_stats.wilcoxon(without_zero).pvalue)
    # Six positive differences, no ties: exact p = 2 * (1/2)^6.
    assert wilcoxon_signed_rank([1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0]) == pytest.approx(2 / 64)
    # A zero is dropped, not ranked: five positive ones give 2 * (1/2)^5.
    assert wilcoxon_signed_rank([0, 2, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0]) == pytest.approx(2 / 32)
    # Tied magnitudes: 2^4 equally likely sign patterns under the null; the
    # observed signed-rank sum (all positive, ranks 1.5, 1.5, 3.5, 3.5) is
    # matched in extremity only by all-negative: p = 2 / 16.
    assert wilcoxon_signed_rank([1, 1, 2, 2], [0, 0, 0, 0]) == pytest.approx(2 / 16)
    assert wilcoxon_signed_rank([0.25, 0.5, 0.75], [0.25, 0.5, 0.75]) == 1.0


# regret_auc

def test_regret_auc_of_a_hand_drawn_step_curve():
    # Budget 100. Regret 1 until call 10, then 1 - 0.25 = 0.75 until 40,
    # then 0.5 until 70, then 0 to the end.
    # Area = 10 * 1 + 30 * 0.75 + 30 * 0.5 + 30 * 0 = 47.5, mean 0.475.
    calls = [10, 40, 70]
    best = [0.25, 0.5, 1.0]
    assert regret_auc(calls, best, budget=100) == pytest.approx(0.475)


def test_regret_auc_window_and_out_of_window_entries():
    calls = [10, 40, 70, 150]
    best = [0.25, 0.5, 0.75, 1.0]
    # From 20: 0.75 over [20, 40), 0.5 over [40, 70), 0.25 over [70, 100).
    # (15 + 15 + 7.5) / 80; the entry at 150 lies past the budget.
    assert regret_auc(calls, best, budget=100, start=20) == pytest.approx(37.5 / 80)


def test_regret_auc_bounds_infeasible_values_and_running_best():
    # Nothing feasible ever: regret is the optimum throughout.
    assert regret_auc([5, 50], [-np.inf, -np.inf], budget=100) == pytest.approx(1.0)
    # Found the optimum at the first call: zero regret.
    assert regret_auc([0], [1.0], budget=100) == pytest.approx(0.0)
    # Raw per-query scores: a worse later value does not raise regret again.
    raw = regret_auc([10, 20, 30], [0.5, 0.25, -np.inf], budget=40)
    assert raw == pytest.approx((10 * 1.0 + 30 * 0.5) / 40)
    # Another optimum scales the curve.
    assert regret_auc([10], [2.0], budget=20, optimum=4.0) == pytest.approx((10 * 4 + 10 * 2) / 20)


def test_regret_auc_rejects_unsorted_calls_and_empty_windows():
    with pytest.raises(ValueError):
        regret_auc([20, 10], [0.1, 0.2], budget=100)
    with pytest.raises(ValueError):
        regret_auc([10], [0.1], budget=10, start=10)


# calls_to_reach, kaplan_meier_median, censored_paired_comparison

def test_calls_to_reach_with_censoring():
    calls = [1000, 2000, 3000, 4000, 5000]
    best = [0.0625, 0.25, 0.25, 0.5625, 0.75]
    hits = calls_to_reach(calls, best, thresholds=[0.05, 0.25, 0.5, 0.75, 1.0], budget=4500)
    np.testing.assert_array_equal(hits.calls, [1000, 2000, 4000, 4500, 4500])
    np.testing.assert_array_equal(hits.observed, [True, True, True, False, False])


def test_calls_to_reach_tolerates_float32_scores():
    just_below = float(np.float32(0.75) * np.float32(1.0)) - 1e-12
    hits = calls_to_reach([10], [just_below], thresholds=[0.75], budget=100)
    assert hits.observed[0] and hits.calls[0] == 10


def test_kaplan_meier_median_hand_computed():
    # Survival: 4/5 after 2; the censored run at 3 leaves 3 at risk;
    # 0.8 * 2/3 = 0.533 after 4; 0.533 * 1/2 = 0.267 after 5: median 5.
    assert kaplan_meier_median([2, 3, 4, 5, 6], [True, False, True, True, True]) == 5
    # Without censoring it is the lower middle value.
    assert kaplan_meier_median([4, 1, 3, 2], [True] * 4) == 2
    assert kaplan_meier_median([7, 1, 5], [True] * 3) == 5
    # Two of three runs censored: survival never reaches 1/2.
    assert math.isinf(kaplan_meier_median([1, 10, 10], [True, False, False]))


def test_censored_paired_comparison():
    result = censored_paired_comparison(
        calls_a=[100, 300, 500, 500, 200, 250],
        observed_a=[True, True, False, False, True, True],
        calls_b=[200, 200, 400, 500, 500, 250],
        observed_b=[True, True, True, False, False, True],
    )
    # a first; b first; b observed before a's censoring; both censored;
    # a observed before b's censoring; a tie.
    np.testing.assert_array_equal(result, [1, -1, -1, 0, 1, 0])
    # b observed only after a's censoring point: cannot tell.
    assert censored_paired_comparison([300], [False], [400], [True])[0] == 0


# spearman_with_ci and binned_means

def test_spearman_matches_scipy_and_covers_the_truth():
    rng = np.random.default_rng(4)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    rho, low, high = spearman_with_ci(x, y, n_resamples=2000, seed=1)
    assert rho == pytest.approx(scipy_stats.spearmanr(x, y).statistic)
    # For a bivariate normal with correlation 1/sqrt(2), Spearman's rho is
    # (6 / pi) * asin(r / 2).
    true_rho = 6 / np.pi * np.arcsin(1 / np.sqrt(2) / 2)
    assert low < true_rho < high
    assert spearman_with_ci(x, y, n_resamples=2000, seed=1) == (rho, low, high)


def test_spearman_with_ties_matches_scipy():
    x = [1, 2, 2, 3, 4, 4, 4, 5]
    y = [0.1, 0.1, 0.3, 0.2, 0.5, 0.4, 0.4, 0.9]
    assert spearman_with_ci(x, y, n_resamples=100).estimate == pytest.approx(
        scipy_stats.spearmanr(x, y).statistic
    )


def test_binned_means_on_deciles():
    x = np.arange(100.0)
    y = 3.0 * x + np.tile([-1.0, 1.0], 50)
    result = binned_means(x, y, num_bins=10)
    assert len(result.mean) == 10
    np.testing.assert_array_equal(result.count, np.full(10, 10))
    for index in range(10):
        members = y[10 * index: 10 * index + 10]
        assert result.mean[index] == pytest.approx(members.mean())
        low, high = scipy_stats.t.interval(0.95, 9, loc=members.mean(), scale=scipy_stats.sem(members))
        assert result.low[index] == pytest.approx(low)
        assert result.high[index] == pytest.approx(high)
    assert result.x_low[0] == 0 and result.x_high[-1] == 99


def test_binned_means_drops_bins_emptied_by_ties():
    x = np.array([0.0] * 8 + [1.0, 2.0])
    y = np.arange(10.0)
    result = binned_means(x, y, num_bins=5)
    assert result.count.sum() == 10
    assert len(result.mean) < 5
    assert result.mean[0] == pytest.approx(np.mean(y[:8]))


# linear_trend

def test_linear_trend_on_a_known_line():
    rounds = np.tile(np.arange(10.0), 3)
    seeds = np.repeat([0, 1, 2], 10)
    values = 0.02 * rounds + 0.1 * seeds  # same slope, different intercepts
    slope, low, high = linear_trend(rounds, values, groups=seeds, n_resamples=500)
    assert slope == pytest.approx(0.02)
    assert low == pytest.approx(0.02) and high == pytest.approx(0.02)


def test_linear_trend_matches_polyfit_and_covers_the_true_slope():
    rng = np.random.default_rng(9)
    rounds = np.tile(np.arange(1.0, 11.0), 8)
    seeds = np.repeat(np.arange(8), 10)
    values = -0.05 * rounds + rng.normal(0, 0.3, size=8)[seeds] + rng.normal(0, 0.1, size=80)
    slope, low, high = linear_trend(rounds, values, groups=seeds, n_resamples=3000, seed=2)
    assert slope == pytest.approx(np.polyfit(rounds, values, 1)[0])
    assert low < -0.05 < high < 0
    assert linear_trend(rounds, values, groups=seeds, n_resamples=3000, seed=2) == (slope, low, high)
    # Seeds are independent draws of the whole curve; resampling points
    # instead would treat 80 points as independent and give another interval.
    assert linear_trend(rounds, values, n_resamples=3000, seed=2) != (slope, low, high)
