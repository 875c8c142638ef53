"""llome.study: the study's settings checked by key path, its jobs paired by seed in waves, its tables' shape."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from llome.config import ConfigError, llome_oracle_budget, load_profile, stage_configs
from llome.executor import ExecutorSettings, Outcome
from llome.io import write_csv, write_json, write_table
from llome.provenance import STALE_MARK, make_record, write_record
from llome.study import (CALIBRATION_COLUMNS, ROUND_METRICS, WAVES, _build_unless_done, difficulty_key, ga_dir,
                         lambo2_job, load_study, method_dir, plan, prompted_job, recorded_seconds, round_zero_root,
                         seed_data_dir, status_summary, status_table, timing_table, write_timing, write_tables)

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


def default_on_one_thread() -> dict:
    """The committed default profile as the study runs it: each job on one thread (two jobs share 2 cores)."""
    default = load_profile(BASE_PARAMS, "default")
    return {**default, "numerics": {**default["numerics"], "threads": 1}}


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
    assert set(full.settings.instances[MAIN].methods) == {*LLOME_BASE, "llome_marge_6x128", "ga_paper", "ga_swept",
                                                          "lambo2", "prompted"}
    assert set(full.settings.instances[SOLVABLE].methods) == {*LLOME_BASE, "ga_paper", "ga_swept"}
    assert {name: spec.kind for name, spec in full.settings.methods.items() if spec.kind in ("lambo2", "prompted")} \
        == {"lambo2": "lambo2", "prompted": "prompted"}
    # The committed default's method, unchanged: only each job's thread count differs.
    assert full.base == default_on_one_thread() != load_profile(BASE_PARAMS, "default")
    assert full.executor.max_workers == 2


def test_the_smoke_study_is_the_smoke_profile_for_one_round_on_two_seeds(smoke):
    assert smoke.seeds == [10, 11] and smoke.base["profile"] == "smoke" and smoke.base["llome"]["rounds"] == 1
    assert smoke.settings.instances[SOLVABLE].methods == ["llome_marge", "ga_paper", "ga_swept"]
    # LaMBO-2 and the prompted LLM cost minutes a seed even at smoke size (study/params.yaml): not in the smoke study
    assert not {"lambo2", "prompted"} & set(smoke.settings.instances[MAIN].methods)
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
    assert f"studies.full.instances.{MAIN}.methods.8: unknown method 'llome_ppo'" in problems_of(path)


def test_a_bad_method_definition_is_named_by_its_key(tmp_path):
    def edit(params):
        methods = params["studies"]["full"]["methods"]
        methods["llome_ppo"] = {"llome": "ppo", "round_zero": "base"}
        methods["ga_both"] = {"llome": "sft", "ga": "paper", "round_zero": "base"}
    message = problems_of(edited(tmp_path, edit))
    assert "studies.full.methods.llome_ppo.llome: input should be 'sft', 'marge' or 'dpo', got 'ppo'" in message
    assert "studies.full.methods.ga_both: " in message and "exactly one of `llome`" in message


def test_lambo2_and_prompted_are_kinds_of_their_own_named_by_their_key(tmp_path):
    def edit(params):
        params["studies"]["full"]["methods"].update({
            "both": {"lambo2": True, "ga": "paper"}, "off": {"prompted": False}, "word": {"lambo2": "yes"},
            "with_round_zero": {"prompted": True, "round_zero": "base"}, "none": {}, "typo": {"lambo": True}})
    message = problems_of(edited(tmp_path, edit))
    assert "studies.full.methods.both: set exactly one of `llome`" in message and "(found `ga`, `lambo2`)" in message
    assert "studies.full.methods.off: `prompted` is true or left out" in message
    assert "studies.full.methods.word.lambo2: must be true or false, got 'yes'" in message
    assert "studies.full.methods.with_round_zero: a `prompted` method has no round 0: drop `round_zero`" in message
    assert "studies.full.methods.none: set exactly one of `llome`" in message
    assert "studies.full.methods.typo.lambo: unknown key" in message


def test_lambo2_must_pay_llomes_budget_and_prompted_at_most_it(tmp_path):
    def edit(params):
        params["studies"]["full"]["overrides"] = {"lambo2": {"rounds": 12}, "prompted": {"rounds": 300}}
    message = problems_of(edited(tmp_path, edit))
    assert "studies.full.methods.lambo2: LaMBO-2 would pay 16,000 oracle calls (lambo2.rounds=12) against LLOME's " \
           "15,000" in message
    assert "studies.full.methods.prompted: the prompted LLM may pay 17,200 oracle calls, over LLOME's budget of " \
           "15,000" in message


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


def test_jobs_come_in_four_waves_each_needing_only_earlier_ones(full, tmp_path):
    jobs = plan(full, tmp_path)
    assert [j.wave for j in jobs] == sorted(j.wave for j in jobs)
    counts = [len(_by(jobs, wave=w)) for w in range(len(WAVES))]
    # seed data 2 x 10 and one GA job per instance; round 0: (2 variants on main + 1 on solvable) x 10; LLOME
    # methods; last LaMBO-2 and the prompted LLM (main instance) x 10, which need only the seed data
    assert counts == [2 * 10 + 2, 3 * 10, (4 + 3) * 10, 2 * 10]
    made = {j.job.kwargs["out_dir"]: j.wave for j in jobs}
    for job in _by(jobs, wave=1):
        assert made[job.job.kwargs["seed_data_dir"]] == 0
    for job in _by(jobs, wave=2):
        assert made[job.job.kwargs["seed_data_dir"]] == 0 and made[job.job.kwargs["round_zero_dir"]] == 1
    for job in _by(jobs, wave=3):
        assert made[job.job.kwargs["seed_data_dir"]] == 0 and "round_zero_dir" not in job.job.kwargs
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
    """On the main instance, the default profile's own stage configs, for one seed (all seeds for the GA), on the
    study's one thread a job."""
    default = load_profile(BASE_PARAMS, "default")
    pipeline = stage_configs(default_on_one_thread())
    jobs = plan(full, tmp_path)
    assert {j.job.threads for j in jobs} == {1}
    committed = stage_configs(default)["llome_marge"]
    study_marge = _by(jobs, instance=MAIN, name="llome_marge", seed=12)[0].job.kwargs["cfg"]
    assert {k: v for k, v in study_marge.items() if k not in ("numerics", "seeds")} == \
        {k: v for k, v in committed.items() if k not in ("numerics", "seeds")}
    assert _by(jobs, instance=MAIN, name="seed_data", seed=12)[0].job.kwargs["cfg"] == \
        {**pipeline["seed_data"], "seeds": [12]}
    assert _by(jobs, instance=MAIN, name="round_zero/base", seed=12)[0].job.kwargs["cfg"] == \
        {**pipeline["sft"], "seeds": [12]}
    for method in LLOME_BASE:
        assert _by(jobs, instance=MAIN, name=method, seed=12)[0].job.kwargs["cfg"] == \
            {**pipeline[method], "seeds": [12]}
    for stage in ("lambo2", "prompted"):
        assert _by(jobs, instance=MAIN, name=stage, seed=12)[0].job.kwargs["cfg"] == {**pipeline[stage], "seeds": [12]}
    ga = _by(jobs, instance=MAIN, name="ga_baseline")[0].job.kwargs["cfg"]
    assert ga == {**pipeline["ga_baseline"], "seeds": full.seeds}
    assert ga["max_oracle_calls"] == llome_oracle_budget(full.base) == 15_000
    solvable_ga = _by(jobs, instance=SOLVABLE, name="ga_baseline")[0].job.kwargs["cfg"]
    assert solvable_ga == {**ga, "function": SOLVABLE}


def test_lambo2_and_prompted_run_per_seed_on_that_seeds_seed_data_beside_the_others(full, tmp_path):
    jobs = plan(full, tmp_path)
    for instance, methods in ((MAIN, ("lambo2", "prompted")), (SOLVABLE, ())):
        for method, job_function in (("lambo2", lambo2_job), ("prompted", prompted_job)):
            runs = _by(jobs, instance=instance, name=method)
            if method not in methods:
                assert runs == []
                continue
            assert [j.seed for j in runs] == full.seeds and {j.wave for j in runs} == {len(WAVES) - 1}
            for run in runs:
                assert run.job.fn is job_function and run.job.threads == full.base["numerics"]["threads"]
                assert run.job.kwargs == {"cfg": run.job.kwargs["cfg"], "seed": run.seed,
                                          "seed_data_dir": str(seed_data_dir(tmp_path, instance, run.seed)),
                                          "out_dir": str(method_dir(tmp_path, instance, method, run.seed))}
                assert run.job.kwargs["cfg"]["seeds"] == [run.seed]
                assert run.job.kwargs["cfg"]["function"] == instance
    # the same seed data as the LLOME methods of that seed, made in the wave before
    marge = _by(jobs, instance=MAIN, name="llome_marge", seed=13)[0].job.kwargs["seed_data_dir"]
    assert _by(jobs, instance=MAIN, name="prompted", seed=13)[0].job.kwargs["seed_data_dir"] == marge
    assert _by(jobs, instance=MAIN, name="seed_data", seed=13)[0].job.kwargs["out_dir"] == marge
    # one folder per run: seed data (2 instances x 10), LaMBO-2 and the prompted LLM (10 each), LLOME (7 x 10)
    assert len({j.job.kwargs["out_dir"] for j in jobs if "out_dir" in j.job.kwargs and j.name != "ga_baseline"
                and not j.name.startswith("round_zero/")}) == 20 + 10 + 10 + 70


@pytest.mark.parametrize("stage, job_function, rounds_of", [
    ("llome.stages.lambo2.lambo2_method", lambo2_job, lambda cfg: cfg["rounds"]),
    ("llome.stages.prompted.prompted_method", prompted_job, lambda cfg: cfg["prompted"]["rounds"])])
def test_a_baseline_job_counts_the_rounds_its_stage_function_computed(full, tmp_path, monkeypatch, stage,
                                                                      job_function, rounds_of):
    """The stage function resumes a seed round by round (a stand-in here, which does what it does on disk)."""
    import importlib

    module, name = stage.rsplit(".", 1)
    calls = []

    def resuming_stage(cfg, seed_data_dir, out_dir, progress=True):
        calls.append((cfg, seed_data_dir, out_dir, progress))
        run_dir = out_dir / f"seed_{cfg['seeds'][0]}"
        for index in range(1, rounds_of(cfg) + 1):
            metrics = run_dir / f"round_{index:02d}" / "metrics.json"
            if not metrics.exists():
                metrics.parent.mkdir(parents=True, exist_ok=True)
                metrics.write_text("{}")

    monkeypatch.setattr(importlib.import_module(module), name, resuming_stage)
    job = _by(plan(full, tmp_path), instance=MAIN, name=job_function.__name__.removesuffix("_job"), seed=14)[0].job
    rounds = rounds_of(job.kwargs["cfg"])
    done = Path(job.kwargs["out_dir"]) / "seed_14" / "round_01" / "metrics.json"  # a run interrupted after round 1
    done.parent.mkdir(parents=True)
    done.write_text("{}")
    assert job_function(**job.kwargs) == {"computed": True, "rounds_computed": rounds - 1}
    assert job_function(**job.kwargs) == {"computed": False, "rounds_computed": 0}
    cfg, seed_data, out, progress = calls[0]
    assert cfg == job.kwargs["cfg"] and progress is False
    assert (seed_data, out) == (Path(job.kwargs["seed_data_dir"]), Path(job.kwargs["out_dir"]))


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
                if kind.kind in ("lambo2", "prompted"):
                    cfg = study.stages(instance)[kind.kind]
                    write_baseline = _fake_lambo2 if kind.kind == "lambo2" else _fake_prompted
                    write_baseline(cfg, method_dir(data_dir, instance, method, seed), seed, rng)
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


L, V = 32, 32  # both instances' sequence length and alphabet


def _fake_seed_table(cfg: dict, rng) -> pd.DataFrame:
    """Seed data as llome.stages.seed_data keeps it: first sightings, the call that paid for each, one infeasible."""
    calls = cfg["seed_data_oracle_calls"]
    paid = np.sort(rng.choice(np.arange(1, calls + 1), size=20, replace=False))
    scores = np.round(rng.random(20) * 0.25, 3)
    scores[0] = -np.inf
    return pd.DataFrame({"sequence": [tuple(rng.integers(0, V, L)) for _ in paid], "score": scores,
                         "oracle_calls": paid})


def _fake_lambo2(cfg: dict, out_dir: Path, seed: int, rng) -> None:
    """A LaMBO-2 job's files as llome.stages.lambo2 writes them, each round's labels and metrics made and read by
    the pipeline's own code: rounds.csv (flattened metrics) and regret.csv (llome.rounds.run_trace)."""
    from llome.io import write_json
    from llome.rounds import round_dir, run_trace
    from llome.metrics import generation_metrics, labelled_metrics
    from llome.stages.lambo2 import flatten_round_metrics

    seed_table, n, run_dir = _fake_seed_table(cfg, rng), cfg["num_to_label"], out_dir / f"seed_{seed}"
    rows = []
    for index in range(1, cfg["rounds"] + 1):
        parents = [seed_table["sequence"].iloc[i] for i in rng.integers(0, len(seed_table), n)]
        proposals = [tuple(np.where(rng.random(L) < 0.25, rng.integers(0, V, L), parent)) for parent in parents]
        scores = np.where(rng.random(n) < 0.4, np.round(rng.random(n) * 0.5, 3), -np.inf)
        labelled = pd.DataFrame({"sequence": proposals, "parent": parents, "score": scores,
                                 "parent_score": [dict(zip(seed_table["sequence"], seed_table["score"]))[p]
                                                  for p in parents],
                                 "distance": [np.mean(np.array(a) != np.array(b)) for a, b in zip(proposals, parents)],
                                 "round": index, "oracle_calls_round": np.arange(1, n + 1)})
        metrics = {"round": index, "oracle_calls": n, "diagnostic_oracle_calls": 0, "num_candidates": n,
                   "labels_short": 0, "generation": generation_metrics(labelled.assign(status="valid", loglik=np.nan)),
                   "labelled": labelled_metrics(labelled), "lambo": {"already_labelled": 0.0}}
        write_table(round_dir(run_dir, index) / "labelled.parquet", labelled)
        write_json(round_dir(run_dir, index) / "metrics.json", metrics)
        rows.append(flatten_round_metrics(metrics, seed))
    write_csv(out_dir / "rounds.csv", pd.DataFrame(rows))
    trace = run_trace(seed_table, cfg["seed_data_oracle_calls"], run_dir, cfg["rounds"]).assign(seed=seed)
    write_csv(out_dir / "regret.csv", trace.assign(method="lambo2"))


def _fake_prompted(cfg: dict, out_dir: Path, seed: int, rng) -> None:
    """A prompted job's files as llome.stages.prompted writes them: llome.prompted's round_metrics for rounds.csv
    and llome.rounds.best_so_far_trace for regret.csv. Each round pays for fewer than n labels (few replies are new and valid)."""
    from llome.prompted import round_metrics
    from llome.rounds import best_so_far_trace
    from llome.text import OUT_OF_RANGE, UNPARSABLE, VALID

    seed_table, settings = _fake_seed_table(cfg, rng), cfg["prompted"]
    rows, paid_rounds = [], []
    for index in range(1, settings["rounds"] + 1):
        draws = settings["num_samples"]
        status = rng.choice([VALID, UNPARSABLE, OUT_OF_RANGE], size=draws, p=[0.5, 0.3, 0.2])
        proposals = pd.DataFrame({"status": status, "tokens": 120, "new": status == VALID,
                                  "sequence": [tuple(rng.integers(0, V, L)) if s == VALID else None for s in status]})
        paid = proposals[proposals["new"]].head(settings["num_to_label"])
        scores = np.where(rng.random(len(paid)) < 0.3, np.round(rng.random(len(paid)) * 0.5, 3), -np.inf)
        labelled = pd.DataFrame({"sequence": paid["sequence"].to_list(), "score": scores,
                                 "oracle_calls_round": np.arange(1, len(paid) + 1)})
        examples = seed_table.head(settings["num_examples"])
        rows.append({"seed": seed, **round_metrics(index, proposals, labelled, examples, len(paid),
                                                   settings["num_to_label"], 0.5, 1200)})
        paid_rounds.append((labelled, len(paid)))
    write_csv(out_dir / "rounds.csv", pd.DataFrame(rows))
    trace = best_so_far_trace(seed_table, cfg["seed_data_oracle_calls"], paid_rounds).assign(seed=seed)
    write_csv(out_dir / "regret.csv", trace.assign(method="prompted"))


def with_baselines(tmp_path) -> Path:
    """The smoke study with LaMBO-2 on both instances (the tables read it per instance) and the prompted LLM on the
    main one."""
    def edit(params):
        instances = params["studies"]["smoke"]["instances"]
        instances[MAIN]["methods"] += ["lambo2", "prompted"]
        instances[SOLVABLE]["methods"] += ["lambo2"]
    return edited(tmp_path, edit)


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
    assert list(second["computed"]) == [True, True, True]
    assert list(second.columns) == ["instance", "job", "seed", "computed", "seconds", "rounds_computed",
                                    "recorded_seconds"]
    # A job reused with no earlier row says so: its seconds are the check's, not its cost.
    fresh = timing_table(rerun, None)
    assert list(fresh["computed"]) == [False, True, False] and list(fresh["seconds"]) == [0.5, 42.0, 0.7]


def test_timing_written_after_a_wave_keeps_the_rows_of_waves_a_sitting_did_not_reach(smoke, tmp_path):
    jobs = plan(smoke, tmp_path / "data")
    first_sitting = [(j, Outcome(j.job, {"computed": True, "rounds_computed": 1}, 10.0)) for j in jobs]
    write_timing(tmp_path, first_sitting, final=False)
    later = [j for j in jobs if j.wave == 0]
    second_sitting = [(j, Outcome(j.job, {"computed": False}, 0.1)) for j in later]
    partial = write_timing(tmp_path, second_sitting, final=False)
    assert len(partial) == len(jobs) and set(partial["seconds"]) == {10.0}
    final = write_timing(tmp_path, second_sitting, final=True)  # the study's whole plan is in the last write
    assert len(final) == len(later)


def _timing(run_dir, index, seconds, finished=True):
    folder = run_dir / f"round_{index:02d}"
    folder.mkdir(parents=True)
    write_json(folder / "timing.json", seconds)
    if finished:
        write_json(folder / "metrics.json", {"round": index})


def test_recorded_seconds_add_up_the_rounds_each_job_wrote_in_any_sitting(tmp_path):
    study = load_study(with_baselines(tmp_path), BASE_PARAMS, "smoke")
    jobs = plan(study, tmp_path / "data")

    def job(name, seed=10):
        return _by(jobs, instance=MAIN, name=name, seed=seed)[0]

    marge = job("llome_marge")
    run_dir = Path(marge.job.kwargs["out_dir"]) / "seed_10"
    assert marge.job.kwargs["cfg"]["rounds"] == 1
    assert np.isnan(recorded_seconds(marge))  # nothing finished, nothing recorded
    _timing(run_dir, 1, {"generation": 1.5, "selection": 0.25, "labelling": 0.125, "pairs": 0.5, "training": 10.0})
    assert recorded_seconds(marge) == 12.375

    lambo = job("lambo2")
    run_dir = Path(lambo.job.kwargs["out_dir"]) / "seed_10"
    for index in range(1, lambo.job.kwargs["cfg"]["rounds"] + 1):  # the runner's time already holds its parts
        _timing(run_dir, index, {"training": 3.0, "optimisation": 4.0, "runner": 8.0, "labelling": 0.5})
    assert recorded_seconds(lambo) == 8.5 * lambo.job.kwargs["cfg"]["rounds"]

    prompted = job("prompted")
    run_dir = Path(prompted.job.kwargs["out_dir"]) / "seed_10"
    rounds = prompted.job.kwargs["cfg"]["prompted"]["rounds"]
    for index in range(1, rounds + 1):
        _timing(run_dir, index, {"round": 2.25})
    _timing(run_dir, rounds + 1, {"round": 1000.0})  # not a round of this run's settings
    assert recorded_seconds(prompted) == 2.25 * rounds
    (run_dir / "round_01" / "timing.json").unlink()  # a finished round without its time: unknown, not 0
    assert np.isnan(recorded_seconds(prompted))

    zero = job("round_zero/base")
    model = Path(zero.job.kwargs["out_dir"]) / "seed_10" / "model"
    model.mkdir(parents=True)
    write_json(model / "timing.json", {"train_seconds": 143.25, "eval_seconds": 6.5, "evaluations": 10})
    assert recorded_seconds(zero) == 143.25  # the Trainer's train_runtime includes its evaluations
    assert np.isnan(recorded_seconds(job("seed_data")))


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


def test_lambo2_and_prompted_are_in_the_tables_as_their_stages_wrote_them(tmp_path):
    import llome.claims as claims
    from llome.config import prompted_oracle_budget

    study = load_study(with_baselines(tmp_path), BASE_PARAMS, "smoke")
    data, tables_dir = tmp_path / "data", tmp_path / "tables"
    _fake_outputs(study, data)
    tables = write_tables(study, data, tables_dir)
    baselines = {(MAIN, "lambo2"), (MAIN, "prompted"), (SOLVABLE, "lambo2")}
    seed_calls = study.stages(MAIN)["lambo2"]["seed_data_oracle_calls"]

    trace = tables["trace"]
    assert baselines <= set(zip(trace["instance"], trace["method"]))
    for instance, method in baselines:
        for seed in study.seeds:
            run = trace[(trace["instance"] == instance) & (trace["method"] == method) & (trace["seed"] == seed)]
            written = pd.read_csv(method_dir(data, instance, method, seed) / "regret.csv")
            # best f against paid calls, the seed data's first: the stage's own trace as the step function
            assert run["oracle_calls"].iloc[0] == written["oracle_calls"].iloc[0] <= seed_calls
            assert run["oracle_calls"].iloc[-1] == written["oracle_calls"].iloc[-1]
            assert run["best_value"].iloc[-1] == written["best_value"].max()
            assert run["best_value"].is_monotonic_increasing
    lambo_end = trace[trace["method"] == "lambo2"].groupby(["instance", "seed"])["oracle_calls"].max()
    assert set(lambo_end) == {llome_oracle_budget(study.base)}  # every label paid: the same budget as LLOME
    prompted_end = trace[trace["method"] == "prompted"]["oracle_calls"].max()
    assert seed_calls < prompted_end <= prompted_oracle_budget(study.base)

    rounds = tables["rounds"]
    lambo = rounds[rounds["method"] == "lambo2"]
    assert set(zip(lambo["instance"], lambo["seed"], lambo["round"])) == \
        {(i, s, 1) for i in (MAIN, SOLVABLE) for s in study.seeds}
    assert lambo["valid_fraction"].isna().all()  # states, never text: valid by construction, not measured
    assert (lambo["diagnostic_calls"] == 0).all() and (lambo["paid_calls"] == study.stages(MAIN)["lambo2"][
        "num_to_label"]).all()
    for column in ("feasible_fraction", "edit_distance", "unique_fraction", "mean_pairwise_distance", "best_score"):
        assert lambo[column].notna().all(), column
    assert lambo["edit_distance"].between(0.05, 0.5).all()  # about a quarter of the positions redrawn

    prompted = rounds[rounds["method"] == "prompted"]
    assert set(zip(prompted["instance"], prompted["seed"])) == {(MAIN, s) for s in study.seeds}
    assert prompted["edit_distance"].isna().all() and prompted["mean_pairwise_distance"].isna().all()
    assert (prompted["diagnostic_calls"] == 0).all()  # none drawn: 0, as the claims' integer column needs
    for column in ("valid_fraction", "feasible_fraction", "unique_fraction"):
        assert prompted[column].between(0, 1).all(), column
    one = pd.read_csv(method_dir(data, MAIN, "prompted", 10) / "rounds.csv")
    row = prompted[prompted["seed"] == 10].iloc[0]
    assert (row["valid_fraction"], row["feasible_fraction"], row["paid_calls"]) == \
        (one["generation.in_range"].iloc[0], one["labelled.feasible"].iloc[0], one["oracle_calls"].iloc[0])

    calibration = tables["calibration"]
    assert not set(calibration["method"]) & {"lambo2", "prompted"} and not calibration.empty

    checked = claims.load_study(tables_dir)  # the claims' own reader accepts them
    assert {"lambo2", "prompted"} <= set(checked.trace["method"]) and {"lambo2", "prompted"} <= set(
        checked.rounds["method"])
    outcomes = claims.run_outcomes(checked)
    generalists = claims.claim_generalists(checked, outcomes)["comparisons"]
    assert any(c["method"] == "lambo2" and c["against"] == "prompted" for c in generalists)


def test_a_baseline_run_over_its_own_budget_stops_the_tables(tmp_path):
    study = load_study(with_baselines(tmp_path), BASE_PARAMS, "smoke")
    _fake_outputs(study, tmp_path / "data")
    path = method_dir(tmp_path / "data", MAIN, "prompted", 11) / "regret.csv"
    trace = pd.read_csv(path)
    trace.loc[len(trace) - 1, "oracle_calls"] += 1000  # more than rounds x n after the seed data
    write_csv(path, trace)
    with pytest.raises(ValueError, match=f"{MAIN} prompted seed 11 spent .* over the budget of"):
        write_tables(study, tmp_path / "data", tmp_path / "tables")


def test_timing_has_a_row_per_baseline_job(tmp_path):
    study = load_study(with_baselines(tmp_path), BASE_PARAMS, "smoke")
    jobs = [j for j in plan(study, tmp_path) if j.name in ("lambo2", "prompted")]
    table = timing_table([(j, Outcome(j.job, {"computed": True, "rounds_computed": 1}, 60.0)) for j in jobs], None)
    assert set(zip(table["instance"], table["job"], table["seed"])) == \
        {(i, m, s) for i, m in ((MAIN, "lambo2"), (MAIN, "prompted"), (SOLVABLE, "lambo2")) for s in (10, 11)}
    assert set(table["rounds_computed"]) == {1}


def test_status_counts_finished_rounds_and_scales_their_time_to_what_is_left(tmp_path):
    study = load_study(edited(tmp_path, lambda p: p["studies"]["smoke"]["overrides"]["llome"].update({"rounds": 4})),
                       BASE_PARAMS, "smoke")
    data = tmp_path / "data"
    jobs = plan(study, data)
    marge = [j for j in jobs if j.instance == MAIN and j.name == "llome_marge"]
    assert [j.job.kwargs["cfg"]["rounds"] for j in marge] == [4, 4]
    first = Path(marge[0].job.kwargs["out_dir"]) / "seed_10"
    for index in (1, 2, 3, 4):
        _timing(first, index, {"generation": 10.0, "training": 80.0})
    _timing(Path(marge[1].job.kwargs["out_dir"]) / "seed_11", 1, {"generation": 30.0, "training": 150.0})
    _timing(Path(marge[1].job.kwargs["out_dir"]) / "seed_11", 2, {"generation": 1.0}, finished=False)  # running
    write_record(seed_data_dir(data, MAIN, 10), make_record({"x": 1}, code=[]))

    table = status_table(study, data).set_index(["instance", "job"])
    row = table.loc[(MAIN, "llome_marge")]
    assert (row["jobs"], row["jobs_finished"], row["units"], row["units_finished"]) == (2, 1, 8, 5)
    assert row["recorded_hours"] == round((4 * 90 + 180) / 3600, 2)
    assert row["remaining_hours"] == round((4 * 90 + 180) / 5 * 3 / 3600, 2)  # mean per round x rounds left
    seed_data = table.loc[(MAIN, "seed_data")]
    assert (seed_data["jobs_finished"], seed_data["units_finished"]) == (1, 1)
    assert np.isnan(table.loc[(MAIN, "llome_sft"), "remaining_hours"])  # nothing timed: no guess
    assert table.loc[(MAIN, "llome_sft"), "units_finished"] == 0


def _status_rows(*rows):
    return pd.DataFrame([{"wave": 1, "instance": MAIN, "job": job, "jobs": 1, "jobs_finished": 0, "units": units,
                          "units_finished": done, "recorded_hours": recorded, "remaining_hours": left}
                         for job, units, done, recorded, left in rows])


def test_status_summary_never_reads_an_untimed_row_as_no_time_left():
    two_at_once = ExecutorSettings(kind="process", max_workers=2)
    timed = _status_rows(("llome_marge", 10, 4, 1.0, 1.5), ("llome_sft", 10, 0, 0.0, float("nan")))
    line = status_summary(timed, two_at_once)
    assert "left about 1.5 job-hours, about 0.8 h of wall time with process at 2" in line
    assert line.endswith("more for the 1 row(s) with nothing timed yet")
    only_untimed = _status_rows(("llome_marge", 10, 10, 2.5, 0.0), ("llome_sft", 10, 0, 0.0, float("nan")))
    line = status_summary(only_untimed, two_at_once)
    assert "units finished 10 of 20; recorded 2.5 job-hours" in line
    assert "0.0" not in line.split("job-hours", 1)[1] and "unknown" in line
    assert status_summary(_status_rows(("llome_marge", 10, 10, 2.5, 0.0)), two_at_once).endswith("nothing left")


# --- the committed runs (study/runs) ----------------------------------------------------------------------------


def _fake_records(study, data_dir: Path) -> None:
    """The provenance record each run's stage writes (llome.loop, llome.stages.*), for _fake_outputs' files: what
    the store checks before it keeps a run. Inputs as digests of the seed's seed data and its variant's round 0."""
    from llome.provenance import model_digest, result_config
    from llome.stages.common import seed_dir

    for instance, spec in study.settings.instances.items():
        for seed in study.seeds:
            write_record(seed_data_dir(data_dir, instance, seed),
                         make_record({**study.stages(instance)["seed_data"], "seeds": [seed]},
                                     code=["llome.stages.seed_data"]))
            for variant in study.variants(instance):
                zero = round_zero_root(data_dir, instance, variant) / f"seed_{seed}"
                (zero / "model").mkdir(parents=True, exist_ok=True)
                (zero / "model" / "model.safetensors").write_bytes(f"{variant}-{seed}".encode())
                write_record(zero, make_record({"variant": variant}, code=["llome.round_zero"], seed=seed))
        for method in spec.methods:
            kind = study.settings.methods[method]
            if kind.kind == "ga":
                write_record(ga_dir(data_dir, instance), make_record(study.stages(instance)["ga_baseline"],
                                                                     code=["llome.stages.ga_baseline"]))
                continue
            for seed in study.seeds:
                inputs = {"seed_data": f"seed-data-{seed}"}
                if kind.kind == "llome":
                    cfg, module = study.stages(instance, kind.round_zero)[f"llome_{kind.llome}"], "llome.loop"
                    inputs["round_zero_model"] = model_digest(round_zero_root(data_dir, instance, kind.round_zero)
                                                              / f"seed_{seed}" / "model")
                else:
                    cfg, module = study.stages(instance)[kind.kind], f"llome.stages.{kind.kind}"
                if kind.kind == "prompted":  # llome.stages.prompted records its settings whole, less the rounds
                    from llome.prompted_settings import prompted_config

                    settings = prompted_config(cfg["prompted"]).model_dump()
                    cfg = {**cfg, "prompted": {k: v for k, v in settings.items() if k != "rounds"}}
                write_record(seed_dir(method_dir(data_dir, instance, method, seed), seed),
                             make_record(result_config(cfg), code=[module], seed=seed, inputs=inputs))


@pytest.fixture
def stored_study(tmp_path):
    """The smoke study with LaMBO-2 and the prompted LLM, its jobs' files faked and every run stored."""
    from llome.study import store_finished

    study = load_study(with_baselines(tmp_path), BASE_PARAMS, "smoke")
    data, store = tmp_path / "data", tmp_path / "runs"
    _fake_outputs(study, data)
    _fake_records(study, data)
    stored = store_finished(study, data, store)
    return study, data, store, stored


def test_tables_from_the_stored_runs_are_byte_for_byte_those_from_the_data(stored_study, tmp_path):
    study, data, store, stored = stored_study
    runs = [(i, m, s) for i, spec in study.settings.instances.items() for m in spec.methods for s in study.seeds]
    assert sorted(stored) == sorted(runs)
    write_tables(study, data, tmp_path / "from_data")
    write_tables(study, tmp_path / "nowhere", tmp_path / "from_store", store=store)  # no data/study needed
    for name in ("trace", "rounds", "calibration", "calibration_post_filter", "instances"):
        assert (tmp_path / "from_store" / f"{name}.csv").read_bytes() == \
            (tmp_path / "from_data" / f"{name}.csv").read_bytes(), name


def test_a_stored_run_is_not_planned_again_nor_what_only_it_needed(smoke, tmp_path):
    from llome.study import store_finished

    data, store = tmp_path / "data", tmp_path / "runs"
    full_plan = {(j.instance, j.name, j.seed) for j in plan(smoke, data, store)}
    assert full_plan == {(j.instance, j.name, j.seed) for j in plan(smoke, data)}
    _fake_outputs(smoke, data)
    _fake_records(smoke, data)
    store_finished(smoke, data, store)
    assert plan(smoke, data, store) == []
    # Seed 10's base-variant runs on the main instance made stale: their jobs and round 0 come back, nothing else
    for method in LLOME_BASE:
        write_record(run_folder_of(store, MAIN, method, 10), {"stale": True})
    again = {(j.instance, j.name, j.seed) for j in plan(smoke, data, store)}
    assert again == {(MAIN, "seed_data", 10), (MAIN, "round_zero/base", 10),
                     *((MAIN, method, 10) for method in LLOME_BASE)}
    # One of them stored again: the other two still need that round 0
    store_finished(smoke, data, store)
    assert plan(smoke, data, store) == []


def run_folder_of(store, instance, method, seed):
    from llome.study import run_folder

    return run_folder(store, instance, method, seed)


def test_a_stored_run_goes_stale_when_its_settings_or_the_code_that_wrote_its_rows_change(stored_study, tmp_path,
                                                                                            monkeypatch):
    import llome.study as study_module

    study, _, store, _ = stored_study
    assert study_module.is_stored(study, store, MAIN, "llome_marge", 11)
    other_bins = load_study(edited(tmp_path, lambda p: p["studies"]["full"].update(calibration_bins=4)), BASE_PARAMS,
                            "smoke")
    assert not study_module.is_stored(other_bins, store, MAIN, "llome_marge", 11)
    lr = study.base["sft"]["learning_rate"]  # round 0's: every LLOME run reads it, the GA does not
    other_lr = load_study(edited(tmp_path, lambda p: p["studies"]["smoke"]["overrides"].update(
        sft={"learning_rate": lr * 2})), BASE_PARAMS, "smoke")
    assert not study_module.is_stored(other_lr, store, MAIN, "llome_marge", 11)
    assert study_module.is_stored(other_lr, store, MAIN, "ga_paper", 11)
    monkeypatch.setattr(study_module, "_table_code_digest", lambda: "another")
    assert not study_module.is_stored(study, store, MAIN, "ga_paper", 11)


def test_runs_of_a_seed_that_read_other_inputs_are_refused_as_unpaired(stored_study, tmp_path):
    from llome.study import run_folder

    study, data, store, _ = stored_study
    path = run_folder(store, MAIN, "llome_dpo", 10) / "inputs.json"
    made_here = read_json_file(path)["round_zero_model"]
    write_json(path, {**read_json_file(path), "round_zero_model": "made-elsewhere"}, sort_keys=True)
    with pytest.raises(ValueError, match=r"seed 10: llome_dpo read round_zero_model .* but llome_sft read"):
        write_tables(study, data, tmp_path / "tables", store=store)
    # Put back, the tables pass: seed 10's 6x128 run read another round 0, compared only within its own variant
    write_json(path, {**read_json_file(path), "round_zero_model": made_here}, sort_keys=True)
    write_tables(study, data, tmp_path / "tables", store=store)


def read_json_file(path):
    from llome.io import read_json

    return read_json(path)


def test_an_unfinished_run_or_one_made_by_other_code_is_not_stored(smoke, tmp_path):
    from llome.provenance import read_record
    from llome.stages.common import seed_dir
    from llome.study import is_stored, store_finished

    data, store = tmp_path / "data", tmp_path / "runs"
    _fake_outputs(smoke, data)
    _fake_records(smoke, data)
    (seed_dir(method_dir(data, MAIN, "llome_sft", 10), 10) / "round_01" / "labelled.parquet").unlink()
    run = seed_dir(method_dir(data, MAIN, "llome_dpo", 11), 11)
    record = read_record(run)
    write_record(run, {**record, "code": {**record["code"], "llome/loop.py": "0000"}})
    # Seed 11's round 0 retrained since its runs were made (other bytes than their records name): none is kept
    (round_zero_root(data, SOLVABLE, "base") / "seed_11" / "model" / "model.safetensors").write_bytes(b"retrained")
    ga = read_record(ga_dir(data, SOLVABLE))  # a GA of another budget in the same folder
    write_record(ga_dir(data, SOLVABLE), {**ga, "config": {**ga["config"], "max_oracle_calls": 7}})
    stored = store_finished(smoke, data, store)
    assert (MAIN, "llome_sft", 10) not in stored and (MAIN, "llome_dpo", 11) not in stored
    assert not is_stored(smoke, store, MAIN, "llome_sft", 10) and is_stored(smoke, store, MAIN, "llome_sft", 11)
    assert not is_stored(smoke, store, SOLVABLE, "ga_paper", 10) and is_stored(smoke, store, MAIN, "ga_paper", 10)
    assert not is_stored(smoke, store, SOLVABLE, "llome_marge", 11) and is_stored(smoke, store, SOLVABLE,
                                                                                    "llome_marge", 10)
    with pytest.raises(FileNotFoundError, match=r"7 run\(s\) of study smoke are not stored"):
        write_tables(smoke, data, tmp_path / "tables", store=store)


def test_only_runs_the_named_runs_and_what_they_need(full, tmp_path):
    from llome.study import restrict

    part = restrict(full, [f"{MAIN}:llome_marge", "ga_swept"])
    assert {i: s.methods for i, s in part.settings.instances.items()} == {MAIN: ["llome_marge", "ga_swept"],
                                                                           SOLVABLE: ["ga_swept"]}
    jobs = {(j.instance, j.name, j.seed): j.job for j in plan(part, tmp_path)}
    whole = {(j.instance, j.name, j.seed): j.job for j in plan(full, tmp_path)}
    assert {name for _, name, _ in jobs} == {"seed_data", "ga_baseline", "round_zero/base", "llome_marge"}
    assert all(jobs[key].kwargs == whole[key].kwargs for key in jobs)  # the same jobs as the whole study's
    for bad, named in ((["llome_sgd"], "'llome_sgd' is not a method"), ([f"{SOLVABLE}:lambo2"], "on " + SOLVABLE),
                       (["ehr_nope:llome_sft"], "'ehr_nope' is not an instance")):
        with pytest.raises(ConfigError, match=named):
            restrict(full, bad)
    three = restrict(full, ["llome_marge_6x128"], [12, 10, 11])
    jobs = plan(three, tmp_path)
    assert {(j.name, j.seed) for j in jobs} == {*(("seed_data", s) for s in (10, 11, 12)),
                                                *((f"round_zero/6x128", s) for s in (10, 11, 12)),
                                                *(("llome_marge_6x128", s) for s in (10, 11, 12))}
    assert all(j.job.kwargs == whole[(j.instance, j.name, j.seed)].kwargs for j in jobs)
    with pytest.raises(ConfigError, match=r"--seeds 3: not a reported seed"):
        restrict(full, None, [3, 10])
