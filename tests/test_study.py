"""llome.study: the study's settings checked by key path, its jobs paired by seed in waves, its tables' shape."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from llome.config import ConfigError, llome_oracle_budget, load_profile, stage_configs
from llome.executor import Outcome
from llome.io import write_csv, write_table
from llome.provenance import STALE_MARK, make_record, write_record
from llome.study import (CALIBRATION_COLUMNS, ROUND_METRICS, WAVES, _build_unless_done, difficulty_key, ga_dir,
                         load_study, method_dir, plan, round_zero_root, seed_data_dir, timing_table, write_tables)

ROOT = Path(__file__).resolve().parents[1]
STUDY_PARAMS = ROOT / "study" / "params.yaml"
BASE_PARAMS = ROOT / "params.yaml"
MAIN, SOLVABLE = "ehr_v-32_l-032_m-4_c-4_q-4", "ehr_v-32_l-032_m-4_c-2_q-4"
LLOME_BASE = ["llome_sft", "llome_marge", "llome_dpo"]


@pytest.fixture(scope="module")
def full():
    return load_study(STUDY_PARAMS, BASE_PARAMS, "full")


@pytest.fixture(scope="module")
def smoke():
    return load_study(STUDY_PARAMS, BASE_PARAMS, "smoke")


def edited(tmp_path, edit) -> Path:
    """study/params.yaml with `edit` applied to its parsed content, written to tmp_path."""
    params = yaml.safe_load(STUDY_PARAMS.read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def problems_of(path, name=None) -> str:
    with pytest.raises(ConfigError) as raised:
        load_study(path, BASE_PARAMS, name)
    return str(raised.value)


# --- settings ---------------------------------------------------------------------------------------------------


def test_the_study_reports_ten_fresh_seeds_on_the_main_and_a_solvable_instance(full):
    assert full.seeds == list(range(10, 20))
    tuning = set().union(*map(set, full.settings.seeds.tuning.values()))
    assert {0, 1, 2, 100, 101} <= tuning and not tuning & set(full.seeds)
    roles = {name: spec.role for name, spec in full.settings.instances.items()}
    assert roles == {MAIN: "main", SOLVABLE: "solvable"}
    assert set(full.settings.instances[MAIN].methods) == {*LLOME_BASE, "llome_marge_6x128", "ga_paper", "ga_swept"}
    assert full.base == load_profile(BASE_PARAMS, "default")  # the committed default's method, unchanged


def test_the_smoke_study_is_the_smoke_profile_for_one_round_on_two_seeds(smoke):
    assert smoke.seeds == [10, 11] and smoke.base["profile"] == "smoke" and smoke.base["llome"]["rounds"] == 1
    assert smoke.settings.instances[SOLVABLE].methods == ["llome_marge", "ga_paper", "ga_swept"]
    assert not smoke.settings.for_claims


def test_a_reported_seed_that_a_setting_was_tuned_on_is_refused_by_name(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"]["seeds"].update(reported=[0, *range(11, 20)]))
    message = problems_of(path)
    assert "studies.full.seeds.reported: seed 0 is a tuning seed (seeds.tuning.temperatures, seeds.tuning.ablation)" \
        in message


def test_an_overlap_set_in_the_smoke_study_is_named_there(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["smoke"]["seeds"].update(reported=[100, 11]))
    message = problems_of(path, "full")  # every study is checked, whichever runs
    assert "studies.smoke.seeds.reported: seed 100 is a tuning seed (seeds.tuning.ga_sweep)" in message


def test_the_ga_sweep_seeds_must_be_declared_as_tuning_seeds(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"]["seeds"]["tuning"].pop("ga_sweep"))
    assert "studies.full.seeds.tuning: must list the GA sweep's seeds [100, 101]" in problems_of(path)


def test_claims_need_ten_seeds(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"]["seeds"].update(reported=[10, 11, 12]))
    assert "studies.full.seeds.reported: tables for the claims need at least 10 reported seeds, got 3" \
        in problems_of(path)


def test_an_unknown_method_of_an_instance_is_named_by_its_key(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"]["instances"][MAIN]["methods"].append("llome_ppo"))
    assert f"studies.full.instances.{MAIN}.methods.6: unknown method 'llome_ppo'" in problems_of(path)


def test_a_bad_method_definition_is_named_by_its_key(tmp_path):
    def edit(params):
        methods = params["studies"]["full"]["methods"]
        methods["llome_ppo"] = {"llome": "ppo", "round_zero": "base"}
        methods["ga_both"] = {"llome": "sft", "ga": "paper", "round_zero": "base"}
    message = problems_of(edited(tmp_path, edit))
    assert "studies.full.methods.llome_ppo.llome: input should be 'sft', 'marge' or 'dpo', got 'ppo'" in message
    assert "studies.full.methods.ga_both: " in message and "exactly one of `llome`" in message


def test_an_unknown_round_zero_variant_is_named(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"]["methods"]["llome_marge"].update(round_zero="8x256"))
    assert "studies.full.methods.llome_marge.round_zero: unknown round-0 variant '8x256'" in problems_of(path)


def test_overrides_name_only_keys_the_profile_has(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"].update(overrides={"llome": {"roundz": 3}}))
    assert "unknown setting 'overrides.llome.roundz'" in problems_of(path)


def test_a_smoke_key_the_full_study_lacks_is_a_typo(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["smoke"].update(instancez={}))
    assert "unknown setting 'studies.smoke.instancez': studies.full has no such key" in problems_of(path, "smoke")


def test_an_instance_must_be_a_valid_ehrlich_name(tmp_path):
    # m is the motif length, c the number of motifs: quantization 4 cannot exceed a motif length of 2
    path = edited(tmp_path, lambda p: p["studies"]["full"]["instances"].update(
        {"ehr_v-32_l-032_m-2_c-4_q-4": {"role": "extra", "methods": ["ga_paper"]}}))
    assert "studies.full.instances.ehr_v-32_l-032_m-2_c-4_q-4: quantization must be in 1..motif_length=2" \
        in problems_of(path)


def test_a_variant_is_checked_by_the_profile_schema(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"]["round_zero"]["6x128"]["model"]["gpt_neox"].update(
        hidden_size=130))
    assert f"instances.{MAIN} with round_zero.6x128: model.gpt_neox: hidden_size 130 is not divisible" \
        in problems_of(path)


def test_a_variant_that_changes_the_seed_data_would_break_pairing(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"]["round_zero"]["6x128"].update(
        seed_data={"num_steps": 5}))
    assert "studies.full.round_zero.6x128: changes the seed data or the oracle budget" in problems_of(path)


def test_one_main_instance(tmp_path):
    path = edited(tmp_path, lambda p: p["studies"]["full"]["instances"][SOLVABLE].update(role="main"))
    assert "exactly one instance must have role main, got 2" in problems_of(path)


# --- jobs -------------------------------------------------------------------------------------------------------


def _by(jobs, **fields):
    return [j for j in jobs if all(getattr(j, k) == v for k, v in fields.items())]


def test_jobs_come_in_three_waves_each_needing_only_earlier_ones(full, tmp_path):
    jobs = plan(full, tmp_path)
    assert [j.wave for j in jobs] == sorted(j.wave for j in jobs)
    counts = [len(_by(jobs, wave=w)) for w in range(len(WAVES))]
    # seed data 2 x 10 and one GA job per instance; round 0: (2 variants on main + 1 on solvable) x 10; methods
    assert counts == [2 * 10 + 2, 3 * 10, (4 + 3) * 10]
    made = {j.job.kwargs["out_dir"]: j.wave for j in jobs}
    for job in _by(jobs, wave=1):
        assert made[job.job.kwargs["seed_data_dir"]] == 0
    for job in _by(jobs, wave=2):
        assert made[job.job.kwargs["seed_data_dir"]] == 0 and made[job.job.kwargs["round_zero_dir"]] == 1
    assert all(j.job.threads == full.base["numerics"]["threads"] for j in jobs)


def test_every_llome_method_of_a_seed_starts_from_that_seeds_round_zero(full, tmp_path):
    jobs = plan(full, tmp_path)
    for instance in (MAIN, SOLVABLE):
        for seed in full.seeds:
            runs = {j.name: j.job.kwargs for j in _by(jobs, wave=2, instance=instance, seed=seed)}
            base = [m for m in LLOME_BASE if m in runs]
            assert base == LLOME_BASE
            assert {runs[m]["round_zero_dir"] for m in base} == {str(round_zero_root(tmp_path, instance, "base"))}
            assert {kw["seed_data_dir"] for kw in runs.values()} == {str(seed_data_dir(tmp_path, instance, seed))}
            assert all(kw["seed"] == seed and kw["cfg"]["seeds"] == [seed] for kw in runs.values())
            assert len({kw["out_dir"] for kw in runs.values()}) == len(runs)
        capacity = _by(jobs, wave=2, instance=instance, name="llome_marge_6x128")
        if instance == MAIN:
            assert {j.job.kwargs["round_zero_dir"] for j in capacity} == {str(round_zero_root(tmp_path, MAIN, "6x128"))}
        else:
            assert capacity == []
    big = _by(jobs, instance=MAIN, name="round_zero/6x128", seed=10)[0].job.kwargs["cfg"]["model"]["gpt_neox"]
    small = _by(jobs, instance=MAIN, name="round_zero/base", seed=10)[0].job.kwargs["cfg"]["model"]["gpt_neox"]
    assert (big["num_hidden_layers"], big["hidden_size"], big["num_attention_heads"], big["intermediate_size"]) == \
        (6, 128, 4, 512)
    assert {k: v for k, v in big.items() if k not in ("num_hidden_layers", "hidden_size", "intermediate_size")} == \
        {k: v for k, v in small.items() if k not in ("num_hidden_layers", "hidden_size", "intermediate_size")}


def test_each_job_runs_the_config_the_params_stage_would_write(full, tmp_path):
    """On the main instance, the default profile's own stage configs, for one seed (all seeds for the GA)."""
    pipeline = stage_configs(load_profile(BASE_PARAMS, "default"))
    jobs = plan(full, tmp_path)
    assert _by(jobs, instance=MAIN, name="seed_data", seed=12)[0].job.kwargs["cfg"] == \
        {**pipeline["seed_data"], "seeds": [12]}
    assert _by(jobs, instance=MAIN, name="round_zero/base", seed=12)[0].job.kwargs["cfg"] == \
        {**pipeline["sft"], "seeds": [12]}
    for method in LLOME_BASE:
        assert _by(jobs, instance=MAIN, name=method, seed=12)[0].job.kwargs["cfg"] == \
            {**pipeline[method], "seeds": [12]}
    ga = _by(jobs, instance=MAIN, name="ga_baseline")[0].job.kwargs["cfg"]
    assert ga == {**pipeline["ga_baseline"], "seeds": full.seeds}
    assert ga["max_oracle_calls"] == llome_oracle_budget(full.base) == 15_000
    solvable_ga = _by(jobs, instance=SOLVABLE, name="ga_baseline")[0].job.kwargs["cfg"]
    assert solvable_ga == {**ga, "function": SOLVABLE}


def test_the_easier_instance_ranks_first():
    assert difficulty_key(SOLVABLE) < difficulty_key(MAIN)
    assert difficulty_key("ehr_v-32_l-128_m-4_c-4_q-4") > difficulty_key(MAIN)  # longer
    assert difficulty_key("ehr_v-32_l-032_m-4_c-4_q-2") > difficulty_key(MAIN)  # coarser credit


# --- reuse of the stages that always recompute ------------------------------------------------------------------


MODULE = "llome.stages.seed_data"


def _stage(calls: list, record_config=None):
    """A stand-in for a stage function: a result file and the record that stage writes."""
    def build(work: Path):
        calls.append(work)
        work.mkdir(parents=True, exist_ok=True)
        (work / "result.txt").write_text(f"made from {len(calls)}\n")
        write_record(work, make_record(record_config or {"x": 1}, code=[MODULE]))
    return build


def test_a_finished_job_is_reused_and_one_of_other_settings_moved_aside(tmp_path):
    out, calls = tmp_path / "seed_10", []
    assert _build_unless_done(out, {"x": 1}, MODULE, _stage(calls)) is True
    assert _build_unless_done(out, {"x": 1}, MODULE, _stage(calls)) is False
    assert len(calls) == 1 and (out / "result.txt").read_text() == "made from 1\n"
    assert _build_unless_done(out, {"x": 2}, MODULE, _stage(calls, {"x": 2})) is True
    stale = list(tmp_path.glob(f"seed_10{STALE_MARK}*"))
    assert len(stale) == 1 and (stale[0] / "result.txt").read_text() == "made from 1\n"
    assert not (tmp_path / "seed_10.partial").exists()


def test_an_interrupted_build_is_kept_aside_and_rebuilt(tmp_path):
    out, calls = tmp_path / "seed_10", []
    (tmp_path / "seed_10.partial").mkdir()
    (tmp_path / "seed_10.partial" / "half.parquet").write_text("half")
    assert _build_unless_done(out, {"x": 1}, MODULE, _stage(calls)) is True
    assert list(tmp_path.glob(f"seed_10.partial{STALE_MARK}*"))
    assert (out / "result.txt").exists()


def test_a_stage_whose_record_differs_is_refused_rather_than_rebuilt_forever(tmp_path):
    with pytest.raises(RuntimeError, match="another provenance record"):
        _build_unless_done(tmp_path / "seed_10", {"x": 1}, MODULE, _stage([], {"x": 99}))


@pytest.mark.slow
def test_a_seed_data_job_is_reused_the_second_time(smoke, tmp_path):
    from llome.study import seed_data_job

    job = _by(plan(smoke, tmp_path), instance=SOLVABLE, name="seed_data", seed=10)[0].job
    table = Path(job.kwargs["out_dir"]) / "seed_10.parquet"
    assert seed_data_job(**job.kwargs) == {"computed": True}
    before = table.stat().st_mtime_ns, table.read_bytes()
    assert seed_data_job(**job.kwargs) == {"computed": False}
    assert (table.stat().st_mtime_ns, table.read_bytes()) == before


# --- tables -----------------------------------------------------------------------------------------------------


def _fake_outputs(study, data_dir: Path) -> None:
    """What the jobs write, in miniature: each LLOME run's rounds.csv, regret.csv and labels, the GA's regret.csv."""
    rng = np.random.default_rng(0)
    rounds = study.base["llome"]["rounds"]
    for instance, spec in study.settings.instances.items():
        ga_rows = []
        for method in spec.methods:
            kind = study.settings.methods[method]
            for seed in study.seeds:
                if kind.ga is not None:
                    ga_rows.append(pd.DataFrame({"oracle_calls": [1, 500, 1040], "best_value": [-np.inf, 0.25, 0.5],
                                                 "regret": [np.inf, 0.75, 0.5], "seed": seed,
                                                 "method": f"ga_{kind.ga}"}))
                    continue
                job_dir = method_dir(data_dir, instance, method, seed)
                metrics = {"seed": seed, "round": list(range(1, rounds + 1)), "oracle_calls": 40,
                           "diagnostic_oracle_calls": 7, "generation.in_range": 0.9, "labelled.feasible": 0.5,
                           "generation.mean_distance": 0.1, "generation.unique_fraction": 0.8,
                           "labelled.best_score": 0.5, "labelled.mean_score": 0.25}
                write_csv(job_dir / "rounds.csv", pd.DataFrame(metrics))  # no mean_pairwise_distance: NaN
                calls = np.arange(1, 1041)
                best = np.maximum.accumulate(np.where(calls % 300 == 0, calls / 2000, 0.0))
                write_csv(job_dir / "regret.csv", pd.DataFrame({"oracle_calls": calls, "best_value": best,
                                                                "regret": 1 - best, "round": 0, "seed": seed,
                                                                "method": "llome_whatever"}))
                for index in range(1, rounds + 1):
                    labelled = pd.DataFrame({"loglik": rng.normal(size=40), "reward": rng.random(40),
                                             "score": rng.random(40)})
                    labelled.loc[0, "reward"] = np.nan  # a parent never scored
                    write_table(job_dir / f"seed_{seed}" / f"round_{index:02d}" / "labelled.parquet", labelled)
                    # The diagnostic sample from before the filter: more rows, reaching below the labels' likelihoods
                    sample = pd.DataFrame({"loglik": rng.normal(-1.0, size=60), "reward": rng.random(60),
                                           "score": rng.random(60), "passed_filter": np.arange(60) < 24})
                    write_table(job_dir / f"seed_{seed}" / f"round_{index:02d}" / "calibration_sample.parquet", sample)
        write_csv(ga_dir(data_dir, instance) / "regret.csv", pd.concat(ga_rows, ignore_index=True))


def test_tables_have_the_columns_the_claims_module_reads(smoke, tmp_path):
    _fake_outputs(smoke, tmp_path / "data")
    tables = write_tables(smoke, tmp_path / "data", tmp_path / "tables")
    written = {p.name for p in (tmp_path / "tables").iterdir()}
    assert written == {"instances.csv", "trace.csv", "rounds.csv", "calibration.csv", "calibration_post_filter.csv",
                       "seeds.json"}

    instances = pd.read_csv(tmp_path / "tables" / "instances.csv")
    assert list(instances.columns) == ["instance", "optimum", "difficulty_rank", "oracle_budget", "seed_data_calls",
                                       "role"]
    assert dict(zip(instances["instance"], instances["difficulty_rank"])) == {SOLVABLE: 1, MAIN: 2}
    assert set(instances["optimum"]) == {1.0}
    assert set(instances["oracle_budget"]) == {llome_oracle_budget(smoke.base)}

    trace = pd.read_csv(tmp_path / "tables" / "trace.csv")
    assert list(trace.columns) == ["instance", "method", "seed", "oracle_calls", "best_value"]
    cells = {(i, m) for i, spec in smoke.settings.instances.items() for m in spec.methods}
    assert set(zip(trace["instance"], trace["method"])) == cells
    one = trace[(trace["instance"] == MAIN) & (trace["method"] == "llome_dpo") & (trace["seed"] == 10)]
    # first row, the three improvements, the last row: the step function, not every call
    assert list(one["oracle_calls"]) == [1, 300, 600, 900, 1040]
    assert np.isneginf(trace[trace["method"] == "ga_paper"]["best_value"]).any()

    rounds = pd.read_csv(tmp_path / "tables" / "rounds.csv")
    assert list(rounds.columns) == ["instance", "method", "seed", "round", *ROUND_METRICS]
    assert rounds["mean_pairwise_distance"].isna().all() and not rounds["valid_fraction"].isna().any()
    assert not set(rounds["method"]) & {"ga_paper", "ga_swept"}

    calibration = pd.read_csv(tmp_path / "tables" / "calibration.csv")
    assert list(calibration.columns) == CALIBRATION_COLUMNS
    per_round = calibration.groupby(["instance", "method", "seed", "round"])
    assert set(per_round["n"].sum()) == {60}  # the whole diagnostic sample, not the labels
    assert set(per_round["bin"].max()) == {smoke.settings.calibration_bins - 1}
    assert set(calibration["sample"]) == {"diagnostic_pre_filter"}
    assert (calibration["reward_ci_low"] <= calibration["mean_reward"]).all()
    assert len(per_round) == len(rounds)  # every LLOME round of every run has its bins

    post_filter = pd.read_csv(tmp_path / "tables" / "calibration_post_filter.csv")
    assert list(post_filter.columns) == CALIBRATION_COLUMNS
    per_round = post_filter.groupby(["instance", "method", "seed", "round"])
    assert set(per_round["n"].sum()) == {39}  # 40 labels less the one without a reward
    assert set(post_filter["sample"]) == {"labelled_post_filter"}

    import json
    seeds = json.loads((tmp_path / "tables" / "seeds.json").read_text())
    assert seeds["reported"] == [10, 11] and seeds["tuning"]["ga_sweep"] == [100]
    assert set(tables) == {"instances", "trace", "rounds", "calibration", "calibration_post_filter"}


def test_a_missing_job_output_stops_the_tables_naming_it(smoke, tmp_path):
    _fake_outputs(smoke, tmp_path / "data")
    (method_dir(tmp_path / "data", MAIN, "llome_sft", 11) / "regret.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"llome_sft/seed_11/regret.csv does not exist"):
        write_tables(smoke, tmp_path / "data", tmp_path / "tables")


def test_a_run_that_should_have_a_calibration_sample_but_has_none_stops_the_tables(smoke, tmp_path):
    _fake_outputs(smoke, tmp_path / "data")
    run = method_dir(tmp_path / "data", MAIN, "llome_marge", 10) / "seed_10"
    (run / "round_01" / "calibration_sample.parquet").unlink()
    with pytest.raises(FileNotFoundError, match=r"llome_marge/seed_10/seed_10/round_01/calibration_sample.parquet"):
        write_tables(smoke, tmp_path / "data", tmp_path / "tables")


def test_without_a_calibration_sample_in_the_settings_the_table_has_no_rows_and_reads_no_sample(tmp_path):
    def edit(params):
        params["studies"]["smoke"]["overrides"]["llome"]["diagnostics_calibration_sample"] = 0

    study = load_study(edited(tmp_path, edit), BASE_PARAMS, "smoke")
    _fake_outputs(study, tmp_path / "data")
    for path in (tmp_path / "data").rglob("calibration_sample.parquet"):
        path.unlink()
    tables = write_tables(study, tmp_path / "data", tmp_path / "tables")
    assert tables["calibration"].empty and list(tables["calibration"].columns) == CALIBRATION_COLUMNS
    assert not tables["calibration_post_filter"].empty  # the labels are still there to bin


def test_timing_keeps_the_seconds_of_a_job_a_rerun_only_reused(smoke, tmp_path):
    jobs = [j for j in plan(smoke, tmp_path) if j.name in ("ga_baseline", "llome_marge")][:3]
    first = timing_table([(j, Outcome(j.job, {"computed": True, "rounds_computed": 1}, 100.0)) for j in jobs], None)
    path = tmp_path / "timing.csv"
    write_csv(path, first)
    rerun = [(jobs[0], Outcome(jobs[0].job, {"computed": False}, 0.5)),
             (jobs[1], Outcome(jobs[1].job, {"computed": True, "rounds_computed": 1}, 42.0)),
             (jobs[2], Outcome(jobs[2].job, {"computed": False, "rounds_computed": 0}, 0.7))]
    second = timing_table(rerun, pd.read_csv(path))
    assert list(second["seconds"]) == [100.0, 42.0, 100.0]
    assert list(second.columns) == ["instance", "job", "seed", "seconds", "rounds_computed"]


def test_the_job_list_command_runs_nothing(tmp_path, capsys):
    from llome.study import main

    main(["jobs", "--params", str(STUDY_PARAMS), "--base-params", str(BASE_PARAMS), "--study", "smoke",
          "--data", str(tmp_path / "data")])
    out = capsys.readouterr().out
    assert "wave 1, seed data and GA: 6 job(s)" in out and "llome_marge_6x128 seed 11" in out
    assert not (tmp_path / "data").exists()


def test_a_bad_study_file_stops_the_command_with_every_problem(tmp_path):
    from llome.study import main

    def edit(params):
        params["studies"]["full"]["seeds"]["reported"] = [0, 1]
        params["studies"]["full"]["instances"][MAIN]["methods"].append("nope")
    with pytest.raises(SystemExit, match=r"problem\(s\)[\s\S]*seed 0[\s\S]*seed 1[\s\S]*unknown method 'nope'"):
        main(["jobs", "--params", str(edited(tmp_path, edit)), "--base-params", str(BASE_PARAMS)])


def test_the_study_file_is_read_as_dvc_reads_it(tmp_path):
    """YAML 1.2 like params.yaml (llome.config.parse_params): an unquoted `no` is a string, not false."""
    text = STUDY_PARAMS.read_text().replace("for_claims: true ", "for_claims: no ")
    path = tmp_path / "params.yaml"
    path.write_text(text)
    assert "for_claims: must be true or false, got 'no'" in problems_of(path)


def test_tables_from_a_copy_of_the_settings_do_not_change_the_study(smoke):
    before = copy.deepcopy(smoke.base)
    smoke.profile(MAIN, "6x128")
    assert smoke.base == before
