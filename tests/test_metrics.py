import itertools
import math

import numpy as np
import pandas as pd
import pytest

from llome.metrics import (
    calibration,
    generation_metrics,
    hamming_distance,
    labelled_metrics,
    mean_pairwise_distance,
    regret_curve,
    regret_on_grid,
)

# --- regret ----------------------------------------------------------------------------------


def test_regret_curve_tracks_the_best_so_far_and_is_infinite_before_any_feasible():
    curve = regret_curve([10, 20, 30, 40, 50], [-np.inf, 0.25, 0.125, 1.0, 0.5])
    assert curve["oracle_calls"].tolist() == [10, 20, 30, 40, 50]
    assert curve["best_value"].tolist() == [-np.inf, 0.25, 0.25, 1.0, 1.0]
    assert curve["regret"].tolist() == [np.inf, 0.75, 0.75, 0.0, 0.0]


def test_regret_curve_defaults_to_one_call_per_score_and_accepts_another_optimum():
    curve = regret_curve(None, [0.5, 2.0], optimum=3.0)
    assert curve["oracle_calls"].tolist() == [1, 2]
    assert curve["regret"].tolist() == [2.5, 1.0]
    assert regret_curve(None, []).empty


@pytest.mark.parametrize(
    "calls, scores, message",
    [
        ([1, 2], [0.5, 1.5], "exceed optimum"),
        ([1, 2], [0.5, np.nan], "NaN"),
        ([2, 1], [0.5, 0.6], "non-decreasing"),
        ([1], [0.5, 0.6], "oracle_calls must have shape"),
        ([1.5, 2.0], [0.5, 0.6], "integers"),
    ],
)
def test_regret_curve_rejects_bad_input(calls, scores, message):
    with pytest.raises(ValueError, match=message):
        regret_curve(calls, scores)


def test_improvements_only_keeps_the_same_step_function_in_fewer_rows():
    scores = [-np.inf, 0.25, 0.125, 0.5, 0.5, 0.375]
    curve = regret_curve(None, scores, improvements_only=True)
    assert curve["oracle_calls"].tolist() == [1, 2, 4, 6]  # first, each improvement, last
    assert curve["best_value"].tolist() == [-np.inf, 0.25, 0.5, 0.5]
    assert curve["regret"].tolist() == [np.inf, 0.75, 0.5, 0.5]
    grid = np.arange(0, 8)
    full = regret_on_grid(regret_curve(None, scores), grid)
    assert regret_on_grid(curve, grid).equals(full)
    assert regret_curve(None, [0.5], improvements_only=True)["oracle_calls"].tolist() == [1]
    assert regret_curve(None, [], improvements_only=True).empty


def test_regret_on_grid_reads_the_step_function():
    curve = regret_curve([10, 20, 30], [-np.inf, 0.25, 0.5])
    on_grid = regret_on_grid(curve, [5, 10, 25, 30, 1000])
    assert on_grid["oracle_calls"].tolist() == [5, 10, 25, 30, 1000]
    # NaN before the first call; +inf while nothing feasible is found; held after the last call.
    np.testing.assert_array_equal(on_grid["regret"], [np.nan, np.inf, 0.75, 0.5, 0.5])


def test_regret_on_grid_reads_each_run_apart():
    # Two seeds of two methods, stacked in no particular run order.
    trace = pd.concat([
        regret_curve([1, 4], [0.25, 0.5]).assign(method="b", seed=0),
        regret_curve([1, 2, 3], [0.5, 0.75, 1.0]).assign(method="a", seed=1),
        regret_curve([2], [0.5]).assign(method="a", seed=0),
    ], ignore_index=True)
    on_grid = regret_on_grid(trace, [1, 3], runs=["method", "seed"])
    assert list(on_grid.columns) == ["method", "seed", "oracle_calls", "regret"]
    assert list(zip(on_grid["method"], on_grid["seed"])) == [("a", 0), ("a", 0), ("a", 1), ("a", 1),
                                                               ("b", 0), ("b", 0)]
    np.testing.assert_array_equal(on_grid["regret"], [np.nan, 0.5, 0.5, 0.0, 0.75, 0.75])
    with pytest.raises(ValueError, match="non-decreasing"):
        regret_on_grid(trace.iloc[::-1], [1], runs=["method", "seed"])
    with pytest.raises(ValueError, match="missing column"):
        regret_on_grid(trace, [1], runs=["round"])


# --- diversity -------------------------------------------------------------------------------


def test_hamming_distance_is_normalised_per_row():
    assert hamming_distance([(0, 0, 0, 0), (1, 2, 3, 4)], [(0, 0, 0, 1), (4, 3, 2, 1)]).tolist() == [0.25, 1.0]
    with pytest.raises(ValueError, match="same shape"):
        hamming_distance([(0, 0)], [(0, 0, 0)])


def test_mean_pairwise_distance_by_hand_and_against_all_pairs():
    # d((0,0),(0,1)) = 0.5, d((0,0),(1,1)) = 1, d((0,1),(1,1)) = 0.5
    assert mean_pairwise_distance([(0, 0), (0, 1), (1, 1)]) == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    sequences = rng.integers(0, 5, (40, 7))
    every_pair = [np.mean(a != b) for a, b in itertools.combinations(sequences, 2)]
    assert mean_pairwise_distance(sequences) == pytest.approx(np.mean(every_pair))
    assert math.isnan(mean_pairwise_distance([(1, 2)]))


# --- generation metrics ----------------------------------------------------------------------

PARENT = (0, 0, 0, 0)


def generations():
    return pd.DataFrame(
        [
            (PARENT, (0, 0, 0, 0), "valid", -1.0, 0.0),  # repeats its input
            (PARENT, (0, 0, 0, 1), "valid", -2.0, 0.25),
            (PARENT, (0, 0, 0, 1), "valid", -2.0, 0.25),  # duplicate proposal
            (PARENT, None, "out_of_range", -3.0, np.nan),
            (PARENT, None, "wrong_length", -4.0, np.nan),
            (PARENT, None, "unparsable", np.nan, np.nan),
        ],
        columns=["parent", "sequence", "status", "loglik", "distance"],
    )


def test_generation_metrics_on_a_hand_made_table():
    metrics = generation_metrics(generations())
    assert metrics["count"] == 6 and metrics["valid_count"] == 3
    assert metrics["parsable"] == pytest.approx(5 / 6)
    assert metrics["correct_length"] == pytest.approx(4 / 6)
    assert metrics["in_range"] == pytest.approx(3 / 6)
    assert metrics["repeated_input"] == pytest.approx(1 / 3)
    assert metrics["mean_distance"] == pytest.approx(1 / 6)
    assert metrics["mean_loglik"] == pytest.approx(-5 / 3)
    assert metrics["unique_fraction"] == pytest.approx(2 / 3)
    assert metrics["mean_pairwise_distance"] == pytest.approx(0.25)


def test_generation_metrics_when_nothing_is_valid():
    table = generations().iloc[3:]
    metrics = generation_metrics(table)
    assert metrics["valid_count"] == 0 and metrics["in_range"] == 0.0
    assert all(math.isnan(metrics[key]) for key in ("repeated_input", "mean_distance", "unique_fraction"))
    empty = generation_metrics(table.iloc[:0])
    assert empty["count"] == 0 and math.isnan(empty["parsable"])


def test_generation_metrics_rejects_bad_tables():
    with pytest.raises(ValueError, match="missing column"):
        generation_metrics(generations().drop(columns="distance"))
    bad_status = generations()
    bad_status.loc[0, "status"] = "broken"
    with pytest.raises(ValueError, match="broken"):
        generation_metrics(bad_status)
    missing_distance = generations()
    missing_distance.loc[1, "distance"] = np.nan
    with pytest.raises(ValueError, match="distance"):
        generation_metrics(missing_distance)


# --- labelled metrics and calibration --------------------------------------------------------


def test_labelled_metrics_on_a_hand_made_table():
    labelled = pd.DataFrame(
        {
            "sequence": [(0, 0), (0, 1), (1, 1), (1, 0), (2, 2)],
            "score": [-np.inf, 0.5, 1.0, 0.25, 0.25],
            "parent_score": [0.25, np.nan, 0.5, 0.25, -np.inf],
            "loglik": [-1.0, -2.0, -3.0, -4.0, -5.0],
            "distance": [0.5, 0.5, 0.0, 0.5, 1.0],
        }
    )
    metrics = labelled_metrics(labelled)
    assert metrics["count"] == 5
    assert metrics["feasible"] == pytest.approx(0.8) and metrics["infeasible"] == pytest.approx(0.2)
    # Known parents: rows 0, 2, 3, 4. Row 2 beats 0.5; row 4 is feasible over an infeasible parent.
    assert metrics["known_parent_count"] == 4
    assert metrics["improved"] == pytest.approx(2 / 4)
    assert metrics["mean_score"] == pytest.approx((0.5 + 1.0 + 0.25 + 0.25) / 4)
    assert metrics["best_score"] == 1.0
    assert metrics["mean_loglik"] == pytest.approx(-3.0)
    assert metrics["mean_distance"] == pytest.approx(0.5)


def test_labelled_metrics_all_infeasible_and_bad_scores():
    labelled = pd.DataFrame({"sequence": [(0,), (1,)], "score": [-np.inf, -np.inf], "parent_score": [np.nan] * 2})
    metrics = labelled_metrics(labelled)
    assert metrics["feasible"] == 0.0 and math.isnan(metrics["mean_score"]) and metrics["best_score"] == -np.inf
    assert math.isnan(metrics["improved"]) and metrics["known_parent_count"] == 0
    with pytest.raises(ValueError, match="score"):
        labelled_metrics(labelled.assign(score=[np.nan, 0.0]))


def test_calibration_against_the_rank_formula():
    table = pd.DataFrame({"reward": [1.0, 2.0, 3.0, 4.0, 5.0], "loglik": [2.0, 1.0, 4.0, 3.0, 5.0]})
    # No ties: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 120
    assert calibration(table)["spearman"] == pytest.approx(0.8)
    assert calibration(table)["n"] == 5
    reversed_table = table.assign(loglik=-table["reward"])
    assert calibration(reversed_table)["spearman"] == pytest.approx(-1.0)


def test_calibration_is_nan_safe():
    table = pd.DataFrame({"reward": [0.0, 1.0, np.nan, 2.0, 3.0], "loglik": [-np.inf, -2.0, -1.0, np.nan, 0.0]})
    result = calibration(table)
    assert result["n"] == 3 and result["spearman"] == pytest.approx(1.0)  # -inf ranks lowest
    constant = calibration(pd.DataFrame({"reward": [0.0, 0.0, 0.0], "loglik": [1.0, 2.0, 3.0]}))
    assert math.isnan(constant["spearman"]) and constant["n"] == 3
    assert math.isnan(calibration(pd.DataFrame({"reward": [1.0], "loglik": [1.0]}))["spearman"])
    with pytest.raises(ValueError, match="margin"):
        calibration(table, reward_column="margin")
