"""llome.optimize and the llome stage on an objective that is not an Ehrlich function, whose optimum is not 1."""

import copy
import shutil

import numpy as np
import pandas as pd
import pytest
from toy_round import TOY_ROUND

import llome
from llome.api import LlomeConfig
from tests.toy_objectives import CallCounting


def test_config_merges_a_dict_over_the_defaults_and_rejects_unknown_keys():
    cfg = LlomeConfig.coerce({"rounds": 4, "generation": {"num_samples": 8}})
    assert cfg.rounds == 4 and cfg.generation["num_samples"] == 8 and cfg.generation["num_seeds"] == 16
    assert cfg.diagnostics is False  # a user's objective pays for nothing it is not told about
    assert cfg.round_config(100)["train"] == llome.api.METHOD_TRAINING["marge"]
    with pytest.raises(ValueError, match="unknown LlomeConfig setting"):
        LlomeConfig.coerce({"round": 4})
    with pytest.raises(ValueError, match="method"):
        LlomeConfig.coerce({"method": "ppo"})
    assert cfg.round_config(100)["diagnostics_calibration_sample"] == 0  # no unpaid sample unless asked for
    assert LlomeConfig.coerce({"diagnostics": True, "diagnostics_calibration_sample": 30}).round_config(100)[
        "diagnostics_calibration_sample"] == 30
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="diagnostics_calibration_sample must be an integer >= 0"):
            LlomeConfig.coerce({"diagnostics_calibration_sample": bad})
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        llome.optimize(CallCounting(), np.zeros((1, 7), dtype=int))


@pytest.mark.slow
def test_optimize_accounts_for_every_call_and_reports_regret_against_optimum_six(tmp_path):
    f = CallCounting()  # L=8, v=4, optimum 6
    result = llome.optimize(f, np.zeros(8, dtype=int), {"rounds": 1, "num_to_label": 20}, run_dir=tmp_path, seed=0)
    assert result.optimum == 6.0
    assert result.diagnostic_oracle_calls == 0 and f.calls == result.paid_oracle_calls
    assert result.paid_oracle_calls == 1000 + result.rounds["oracle_calls"].sum()  # GA seed data: 200 x 5
    assert result.trace["oracle_calls"].max() == result.paid_oracle_calls
    np.testing.assert_allclose(result.trace["regret"], 6.0 - result.trace["best_value"])
    assert result.best_value == result.trace["best_value"].max() == f(np.array([result.best_sequence]))[0]
    assert result.best["score"].is_monotonic_decreasing and len(result.rounds) == 1
    np.testing.assert_array_equal(result.labelled["score"], f(np.array(list(result.labelled["sequence"]))))

    # Asked again on the same directory, nothing is paid twice; one more round pays only for its labels.
    before = f.calls
    again = llome.optimize(f, np.zeros(8, dtype=int), {"rounds": 1, "num_to_label": 20}, run_dir=tmp_path, seed=0)
    assert f.calls == before
    pd.testing.assert_frame_equal(again.trace, result.trace)
    more = llome.optimize(f, np.zeros(8, dtype=int), {"rounds": 2, "num_to_label": 20}, run_dir=tmp_path, seed=0)
    assert f.calls - before == more.rounds["oracle_calls"].iloc[1] <= 20


@pytest.mark.slow
def test_llome_stage_runs_an_import_path_objective_with_its_own_optimum(copy_model, tmp_path):
    from llome.stages.common import seed_data_path, seed_dir
    from llome.stages.llome_rounds import llome_method
    from llome.pairs import make_pairs

    f = CallCounting(dim=8, num_states=8)
    pool = copy_model["pool"][:200]
    scores = f(pool)
    seed_table = pd.DataFrame({"sequence": [tuple(map(int, r)) for r in pool], "score": scores,
                               "step": 0, "oracle_calls": np.arange(1, len(pool) + 1)})
    (tmp_path / "seed").mkdir()
    seed_table.to_parquet(seed_data_path(tmp_path / "seed", 0))
    zero = seed_dir(tmp_path / "sft", 0)
    shutil.copytree(copy_model["dir"], zero / "model")
    make_pairs(pool, scores, max_distance=0.5, num_neighbors=10, seed=0).to_parquet(zero / "pairs.parquet")
    cfg = {
        "function": "tests.toy_objectives:counting_up_v8", "function_seed": 50494, "seeds": [0], "numerics": {"threads": 2},
        "method": "sft", "objective": "sft", "rounds": 1, "diagnostics": False,
        **copy.deepcopy(TOY_ROUND),
        "seed_data_oracle_calls": len(pool),
    }
    rounds, trace = llome_method(cfg, tmp_path / "seed", tmp_path / "sft", tmp_path / "llome", progress=False)
    assert rounds["diagnostic_oracle_calls"].tolist() == [0] and rounds["diagnostics"].tolist() == [False]
    np.testing.assert_allclose(trace["regret"], 7.0 - trace["best_value"])  # CountingUp(8, 8): optimum 7
    assert trace["oracle_calls"].max() == len(pool) + rounds["oracle_calls"].sum()
