import copy
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from toy_round import TOY_ROUND

from llome.io import read_json, read_table
from llome.loop import CountedOracle, OracleBudgetExceeded, margin_reward, run_llome
from llome.rounds import round_dir, run_trace
from llome.pairs import make_pairs


def same(a, b) -> bool:
    """Equality that treats NaN as equal to NaN (metrics round-trip through JSON)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


class ToyFunction:
    """f(x) = fraction of positions equal to a target; infeasible when x starts with 7. Counts its calls."""

    dim, num_states = 8, 8

    def __init__(self):
        self.target = np.arange(8) % 8
        self.calls = 0

    def __call__(self, X):
        X = np.asarray(X)
        self.calls += len(X)
        score = (X == self.target).mean(axis=1).astype(np.float64)
        return np.where(X[:, 0] == 7, -np.inf, score)


def test_counted_oracle_refuses_to_pass_its_budget():
    f = ToyFunction()
    oracle = CountedOracle(f, budget=5)
    oracle(np.zeros((3, 8), dtype=int))
    with pytest.raises(OracleBudgetExceeded, match="3 sequences with 2"):
        oracle(np.zeros((3, 8), dtype=int))
    assert oracle.calls == 3 and f.calls == 3


def test_margin_reward_counts_infeasible_as_zero():
    assert margin_reward(np.array([0.5, -np.inf, 0.75, 0.2]), np.array([0.25, 0.5, -np.inf, 0.4])).tolist() == \
        [0.25, 0.0, 0.75, 0.0]


def _setup(copy_model, tmp_path):
    f = ToyFunction()
    pool = copy_model["pool"][:200]
    scores = f(pool)
    seed_table = pd.DataFrame({"sequence": [tuple(map(int, r)) for r in pool], "score": scores,
                               "step": 0, "oracle_calls": np.arange(1, len(pool) + 1)})
    round_zero = tmp_path / "sft"
    shutil.copytree(copy_model["dir"], round_zero / "model")
    pairs = make_pairs(pool, scores, max_distance=0.5, num_neighbors=10, seed=0)
    pairs.to_parquet(round_zero / "pairs.parquet")
    cfg = {
        "method": "marge", "objective": "marge", "rounds": 2, "function": "toy",
        **copy.deepcopy(TOY_ROUND),
        "seed_data_oracle_calls": len(pool),
    }
    f.calls = 0
    return f, seed_table, round_zero, cfg


@pytest.mark.slow
def test_two_rounds_spend_at_most_n_calls_each_resume_and_repeat_exactly(copy_model, tmp_path):
    f, seed_table, round_zero, cfg = _setup(copy_model, tmp_path)
    history = run_llome(cfg, function=f, seed_table=seed_table, round_zero_dir=round_zero,
                        run_dir=tmp_path / "run", seed=0, progress=False)
    assert [m["round"] for m in history] == [1, 2]
    paid = 0
    for index, metrics in enumerate(history, start=1):
        labelled = read_table(round_dir(tmp_path / "run", index) / "labelled.parquet")
        assert 0 < len(labelled) <= cfg["selection"]["num_to_label"]
        assert metrics["oracle_calls"] == len(labelled)
        assert labelled["sequence"].is_unique
        assert not set(labelled["sequence"]) & set(seed_table["sequence"])  # never pays twice for a known one
        np.testing.assert_array_equal(labelled["score"], ToyFunction()(np.array(list(labelled["sequence"]))))
        paid += metrics["oracle_calls"] + metrics["diagnostic_oracle_calls"]
        assert (round_dir(tmp_path / "run", index) / "model" / "config.json").exists()
    assert f.calls == paid  # every call the function saw is accounted for, paid or diagnostic

    # A finished run is not redone: no generation, no oracle call.
    again = run_llome(cfg, function=f, seed_table=seed_table, round_zero_dir=round_zero,
                      run_dir=tmp_path / "run", seed=0, progress=False)
    assert same(again, history) and f.calls == paid

    # An interrupted round 2 (candidates saved, nothing else) resumes from its candidates.
    done = round_dir(tmp_path / "run", 2)
    partial = done.with_name(done.name + ".partial")
    partial.mkdir()
    shutil.copy(done / "candidates.parquet", partial / "candidates.parquet")
    shutil.rmtree(done)
    resumed = run_llome(cfg, function=f, seed_table=seed_table, round_zero_dir=round_zero,
                        run_dir=tmp_path / "run", seed=0, progress=False)
    assert same(resumed[1]["labelled"], history[1]["labelled"])
    assert not partial.exists()

    # The same seed elsewhere gives the same labels; the trace adds the seed data's calls first.
    g = ToyFunction()
    rerun = run_llome(cfg, function=g, seed_table=seed_table, round_zero_dir=round_zero,
                      run_dir=tmp_path / "rerun", seed=0, progress=False)
    for index in (1, 2):
        a = read_table(round_dir(tmp_path / "run", index) / "labelled.parquet")
        b = read_table(round_dir(tmp_path / "rerun", index) / "labelled.parquet")
        pd.testing.assert_frame_equal(a, b)
    assert same(rerun[0]["labelled"], history[0]["labelled"])
    trace = run_trace(seed_table, cfg["seed_data_oracle_calls"], tmp_path / "run", cfg["rounds"])
    assert trace["oracle_calls"].max() == len(seed_table) + sum(m["oracle_calls"] for m in history)
    assert trace["best_value"].is_monotonic_increasing


@pytest.mark.slow
def test_changed_settings_start_a_run_over_but_more_rounds_extend_it(copy_model, tmp_path):
    f, seed_table, round_zero, cfg = _setup(copy_model, tmp_path)
    one = {**cfg, "rounds": 1}
    run_llome(one, function=f, seed_table=seed_table, round_zero_dir=round_zero, run_dir=tmp_path / "run", seed=0,
              progress=False)
    first = read_table(round_dir(tmp_path / "run", 1) / "labelled.parquet")
    calls = f.calls
    run_llome(cfg, function=f, seed_table=seed_table, round_zero_dir=round_zero, run_dir=tmp_path / "run", seed=0,
              progress=False)
    pd.testing.assert_frame_equal(first, read_table(round_dir(tmp_path / "run", 1) / "labelled.parquet"))
    assert f.calls > calls  # round 2 only
    assert read_json(round_dir(tmp_path / "run", 2) / "metrics.json")["round"] == 2

    changed = {**cfg, "selection": {**cfg["selection"], "num_to_label": 5}}
    history = run_llome(changed, function=f, seed_table=seed_table, round_zero_dir=round_zero,
                        run_dir=tmp_path / "run", seed=0, progress=False)
    assert all(m["oracle_calls"] <= 5 for m in history)


def _candidates(logliks, sequences=None):
    sequences = sequences or [(i, i) for i in range(len(logliks))]
    return pd.DataFrame({"sequence": sequences, "status": "valid", "loglik": logliks})


def test_selection_spends_all_n_labels_when_it_has_n_new_candidates():
    from llome.loop import select_candidates

    pool = pd.DataFrame({"sequence": [(0, 0), (1, 1)], "score": [0.1, 0.2]})
    selection = {"likelihood_quantile": 0.6, "num_to_label": 5}
    # 7 candidates, 2 already labelled: exactly n = 5 new ones, so no likelihood filter and all are labelled
    chosen = select_candidates(_candidates([-1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0]), pool, selection, seed=0)
    assert sorted(chosen["sequence"]) == [(i, i) for i in range(2, 7)]
    # 10 new candidates: the 60% quantile would keep 4 (< n), so the 5 most likely are kept instead
    chosen = select_candidates(_candidates([-float(i) for i in range(12)]), pool, selection, seed=0)
    assert sorted(chosen["sequence"]) == [(i, i) for i in range(2, 7)]
    # 30 new candidates: the filter keeps the top 40% (12), of which 5 are sampled
    many = select_candidates(_candidates([-float(i) for i in range(32)]), pool, selection, seed=0)
    assert len(many) == 5 and all(2 <= s[0] < 14 for s in many["sequence"])
    # fewer new candidates than n: every one of them, and no more
    few = select_candidates(_candidates([-1.0, -2.0, -3.0]), pool, selection, seed=0)
    assert sorted(few["sequence"]) == [(2, 2)]


def test_duplicates_and_invalid_candidates_are_never_paid_for():
    from llome.loop import select_candidates

    table = _candidates([-1.0, -0.5, -2.0, -3.0], [(5, 5), (5, 5), (6, 6), (7, 7)])
    table.loc[3, "status"] = "out_of_range"
    chosen = select_candidates(table, pd.DataFrame({"sequence": [], "score": []}),
                               {"likelihood_quantile": 0.6, "num_to_label": 10}, seed=0)
    assert sorted(chosen["sequence"]) == [(5, 5), (6, 6)]
    assert chosen.set_index("sequence").loc[[(5, 5)], "loglik"].item() == -0.5  # the likelier copy is kept


def test_round_pairs_come_from_the_round_alone_or_from_history():
    from llome.loop import training_pool

    pool = pd.DataFrame({"sequence": [(0, 0)], "score": [0.1]})
    labelled = pd.DataFrame({"sequence": [(1, 1), (2, 2)], "score": [0.2, 0.3], "loglik": [-1.0, -2.0]})
    assert list(training_pool(pool, labelled, "round")["sequence"]) == [(1, 1), (2, 2)]
    assert list(training_pool(pool, labelled, "history")["sequence"]) == [(0, 0), (1, 1), (2, 2)]
    with pytest.raises(ValueError, match="pairs.source"):
        training_pool(pool, labelled, "everything")


@pytest.mark.parametrize("objective", ["sft", "marge", "dpo"])
def test_a_round_that_labelled_nothing_builds_no_pairs_instead_of_failing(objective):
    from llome.jobs import build_training_set

    empty = pd.DataFrame({"sequence": [], "score": []})
    cfg = {"max_distance": 0.25, "num_neighbors": 30, "infeasible_fraction": 0.1, "max_pairs": None}
    assert len(build_training_set(objective, empty, cfg, seed=0)) == 0


@pytest.mark.slow
def test_diagnostic_scores_never_reach_the_pairs_and_switching_them_off_makes_no_unpaid_call(copy_model, tmp_path):
    runs = {}
    for diagnostics in (True, False):
        f, seed_table, round_zero, cfg = _setup(copy_model, tmp_path / str(diagnostics))
        cfg = {**cfg, "rounds": 1, "diagnostics": diagnostics}
        [metrics] = run_llome(cfg, function=f, seed_table=seed_table, round_zero_dir=round_zero,
                              run_dir=tmp_path / str(diagnostics) / "run", seed=0, progress=False)
        done = round_dir(tmp_path / str(diagnostics) / "run", 1)
        runs[diagnostics] = (metrics, f.calls, read_table(done / "labelled.parquet"), read_table(done / "pairs.parquet"))
    (on, on_calls, on_labelled, on_pairs), (off, off_calls, off_labelled, off_pairs) = runs[True], runs[False]
    assert on["diagnostic_oracle_calls"] > 0  # some inputs were never labelled: the check below has teeth
    assert on_calls == on["oracle_calls"] + on["diagnostic_oracle_calls"]
    assert off["diagnostic_oracle_calls"] == 0 and off_calls == off["oracle_calls"]
    # What the optimiser paid for and trains on is the same either way.
    pd.testing.assert_frame_equal(on_labelled[["sequence", "score"]], off_labelled[["sequence", "score"]])
    pd.testing.assert_frame_equal(on_pairs, off_pairs)
    # Pairs hold paid labels only: no sequence scored just for diagnostics, and no score it was not paid for.
    paid = dict(zip(on_labelled["sequence"], on_labelled["score"]))
    diagnostic_only = set(on_labelled["parent"]) - set(paid) - set(seed_table["sequence"])
    assert diagnostic_only
    for side in ("x", "y"):
        assert not set(on_pairs[side]) & diagnostic_only
        np.testing.assert_array_equal(on_pairs[f"{side}_score"], [paid[s] for s in on_pairs[side]])
    # Off, "improved" is measured on the candidates whose input score is known for free, and said so.
    unknown = off_labelled["parent"].isin(diagnostic_only)
    assert off_labelled.loc[unknown, "parent_score"].isna().all() and off_labelled.loc[unknown, "reward"].isna().all()
    assert off["labelled"]["known_parent_count"] == int((~unknown).sum()) < on["labelled"]["known_parent_count"]


# --- the calibration sample (claim 2): drawn before the likelihood filter, scored apart, read by nothing ------------


def test_the_calibration_sample_is_drawn_before_the_filter_from_the_candidates_it_ranks():
    from llome.loop import calibration_seed, draw_calibration_sample, eligible_for_labelling, filter_input

    pool = pd.DataFrame({"sequence": [(0, 0), (1, 1)], "score": [0.1, 0.2]})
    candidates = _candidates([-float(i) for i in range(32)] + [0.0], [(i, i) for i in range(32)] + [(40, 40)])
    candidates.loc[32, "status"] = "out_of_range"  # the likeliest row, but never valid
    selection = {"likelihood_quantile": 0.6, "num_to_label": 5}
    # 30 new valid sequences (2..31); the filter keeps those at or above the 60% quantile of their logliks, -13.6:
    # the 12 likeliest, (2, 2) .. (13, 13). The labels come from these only.
    kept = {(i, i) for i in range(2, 14)}
    assert set(eligible_for_labelling(filter_input(candidates, pool), selection)["sequence"]) == kept

    sample = draw_calibration_sample(candidates, pool, selection, size=20, seed=calibration_seed(0, 1))
    assert len(sample) == 20 and sample["sequence"].is_unique
    assert set(sample["sequence"]) <= {(i, i) for i in range(2, 32)}  # neither old labels nor invalid rows
    assert sample["passed_filter"].tolist() == [s in kept for s in sample["sequence"]]
    assert (~sample["passed_filter"]).sum() >= 8  # 20 of 30 cannot all be among the 12 kept

    again = draw_calibration_sample(candidates, pool, selection, size=20, seed=calibration_seed(0, 1))
    pd.testing.assert_frame_equal(sample, again)  # same seed and round, same sample
    other = draw_calibration_sample(candidates, pool, selection, size=20, seed=calibration_seed(0, 2))
    assert set(other["sequence"]) != set(sample["sequence"])
    everything = draw_calibration_sample(candidates, pool, selection, size=100, seed=calibration_seed(0, 1))
    assert sorted(everything["sequence"]) == [(i, i) for i in range(2, 32)]  # a sample larger than the round: all

    # Its own random stream: not the round's seed, which draws the labels.
    round_seed = int(np.random.SeedSequence([0, 1]).generate_state(1)[0])
    assert calibration_seed(0, 1) not in {round_seed, calibration_seed(0, 2), calibration_seed(1, 1)}


def _round_tables():
    """A pool, a round's labels and a calibration sample whose scores are each known for free or not, by hand."""
    f = ToyFunction()
    seq = {name: tuple(int(v) for v in row) for name, row in {
        "old": [0, 1, 2, 3, 4, 5, 0, 0],  # labelled in an earlier round: f = 6/8
        "label": [0, 1, 2, 3, 0, 0, 0, 0],  # labelled this round: 4/8
        "label_parent": [0, 1, 0, 0, 0, 0, 0, 0],  # the label's parent, scored by the round's diagnostics: 2/8
        "a": [0, 1, 2, 0, 0, 0, 0, 0],  # 3/8
        "b": [7, 1, 2, 3, 4, 5, 6, 7],  # infeasible
        "new_parent": [0, 0, 0, 0, 0, 0, 0, 0],  # 1/8, in no table before the sample
    }.items()}
    pool = pd.DataFrame({"sequence": [seq["old"]], "score": [0.75]})
    labelled = pd.DataFrame({"sequence": [seq["label"]], "parent": [seq["label_parent"]], "score": [0.5],
                             "parent_score": [0.25]})
    sample = pd.DataFrame({
        "sequence": [seq["label"], seq["a"], seq["b"], seq["label_parent"]],
        "parent": [seq["label_parent"], seq["old"], seq["new_parent"], seq["new_parent"]],
        "trajectory": [0, 1, 2, 3], "iteration": 0, "temperature": 1.0, "loglik": [-1.0, -2.0, -3.0, -4.0],
        "distance": 0.25, "passed_filter": [True, True, False, False]})
    return f, seq, pool, labelled, sample


def test_the_calibration_sample_buys_only_unknown_scores_and_only_through_a_diagnostic_counter():
    from llome.loop import calibration_sample_calls, score_calibration_sample

    f, seq, pool, labelled, sample = _round_tables()
    table = score_calibration_sample(sample, pool, labelled, f, index=3)
    # Known for free: "old" (pool), "label" (paid this round), "label_parent" (the round's parent scores).
    # Bought: "a", "b" and "new_parent" (a parent of two rows, scored once).
    assert f.calls == 3 == calibration_sample_calls(table, pool, labelled)
    assert table["score"].tolist() == [0.5, 0.375, -np.inf, 0.25]
    assert table["parent_score"].tolist() == [0.25, 0.75, 0.125, 0.125]
    assert table["reward"].tolist() == [0.25, 0.0, 0.0, 0.125]  # margin over the input; infeasible counts as 0
    assert table["labelled"].tolist() == [True, False, False, False]
    assert table["passed_filter"].tolist() == [True, True, False, False] and set(table["round"]) == {3}
    # Its scores are the objective's, and the round's labels and pool are left as they were.
    np.testing.assert_array_equal(table["score"], ToyFunction()(np.array(list(table["sequence"]))))
    assert labelled["score"].tolist() == [0.5] and len(pool) == 1


def test_calibration_sample_metrics_count_the_cut_rows_and_say_when_there_is_no_sample():
    from llome.loop import calibration_sample_metrics, score_calibration_sample

    f, _, pool, labelled, sample = _round_tables()
    metrics = calibration_sample_metrics(score_calibration_sample(sample, pool, labelled, f, index=1), calls=3)
    assert (metrics["size"], metrics["diagnostic_calls"], metrics["cut_by_filter"], metrics["n"]) == (4, 3, 2, 4)
    # rewards 0.25, 0, 0, 0.125 against logliks -1 .. -4: ranks 4, 1.5, 1.5, 3 against 4, 3, 2, 1, whose
    # deviations from 2.5 give 1.5 / sqrt(4.5 x 5)
    assert metrics["spearman"] == pytest.approx(1.5 / np.sqrt(22.5))
    none = calibration_sample_metrics(None, calls=0)
    assert (none["size"], none["diagnostic_calls"], none["n"]) == (0, 0, 0) and np.isnan(none["spearman"])


@pytest.mark.slow
def test_the_calibration_sample_changes_nothing_the_optimiser_sees_and_its_calls_are_counted_apart(copy_model,
                                                                                                   tmp_path):
    from llome.loop import CALIBRATION_SAMPLE_FILE
    from llome.provenance import model_digest

    runs = {}
    for size in (0, 40):
        f, seed_table, round_zero, cfg = _setup(copy_model, tmp_path / str(size))
        cfg = {**cfg, "diagnostics": True, "diagnostics_calibration_sample": size}
        history = run_llome(cfg, function=f, seed_table=seed_table, round_zero_dir=round_zero,
                            run_dir=tmp_path / str(size) / "run", seed=0, progress=False)
        runs[size] = (history, f.calls, [round_dir(tmp_path / str(size) / "run", i) for i in (1, 2)])
    (without, without_calls, without_dirs), (with_, with_calls, with_dirs) = runs[0], runs[40]
    for index, (a, b) in enumerate(zip(without_dirs, with_dirs), start=1):
        # Round 2's candidates come from round 1's model and seeds: equal, they show the sample fed nothing back.
        for name in ("candidates.parquet", "labelled.parquet", "pairs.parquet"):
            pd.testing.assert_frame_equal(read_table(a / name), read_table(b / name), obj=f"round {index} {name}")
        assert model_digest(a / "model") == model_digest(b / "model"), index
        assert read_json(a / "oracle.json") == read_json(b / "oracle.json")
        assert not (a / CALIBRATION_SAMPLE_FILE).exists()

    # Every call the objective saw is in the metrics: paid labels, then the unpaid parents and sample apart.
    for history, calls in ((without, without_calls), (with_, with_calls)):
        assert calls == sum(m["oracle_calls"] + m["diagnostic_oracle_calls"] for m in history)
    for a, b in zip(without, with_):
        assert a["oracle_calls"] == b["oracle_calls"]
        assert b["diagnostic_oracle_calls"] - a["diagnostic_oracle_calls"] == b["calibration_sample"]["diagnostic_calls"]
        assert a["calibration_sample"]["size"] == 0 and b["calibration_sample"]["size"] > 0

    cut = 0
    for d in with_dirs:
        sample = read_table(d / CALIBRATION_SAMPLE_FILE)
        candidates = read_table(d / "candidates.parquet")
        valid = candidates[candidates["status"] == "valid"]
        assert set(sample["sequence"]) <= set(valid["sequence"]) and sample["sequence"].is_unique
        np.testing.assert_array_equal(sample["score"], ToyFunction()(np.array(list(sample["sequence"]))))
        labelled = read_table(d / "labelled.parquet")
        assert sample["labelled"].tolist() == sample["sequence"].isin(set(labelled["sequence"])).tolist()
        assert not (sample["labelled"] & ~sample["passed_filter"]).any()  # a label always passed the filter
        cut += int((~sample["passed_filter"]).sum())
    assert cut > 0  # the sample reaches candidates the filter cut, which no label can

    # A round interrupted after its labels redraws the same sample, and says the same.
    done = with_dirs[1]
    partial = done.with_name(done.name + ".partial")
    shutil.copytree(done, partial)
    (partial / CALIBRATION_SAMPLE_FILE).unlink()
    (partial / "metrics.json").unlink()
    kept = read_table(done / CALIBRATION_SAMPLE_FILE)
    shutil.rmtree(done)
    f, seed_table, round_zero, cfg = _setup(copy_model, tmp_path / "resume")
    cfg = {**cfg, "diagnostics": True, "diagnostics_calibration_sample": 40}
    resumed = run_llome(cfg, function=f, seed_table=seed_table, round_zero_dir=tmp_path / "40" / "sft",
                        run_dir=tmp_path / "40" / "run", seed=0, progress=False)
    pd.testing.assert_frame_equal(read_table(done / CALIBRATION_SAMPLE_FILE), kept)
    assert same(resumed[1], with_[1])
    assert f.calls == with_[1]["calibration_sample"]["diagnostic_calls"]  # the sample's calls, nothing else
