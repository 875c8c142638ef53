"""The smoke study end to end in a scratch copy of the project (`make claims-smoke`): study/dvc.yaml's study stage,
its tables, the pairing on disk, a rerun that reuses every job, a run from the stored runs alone (as on a fresh
clone), and the same tables from serial and parallel runs.

Marked `pipeline`: `make test` leaves it out; `make ci` runs it. About 20 minutes on 2 cores (the smoke study runs
twice; 20:24 measured).
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scratch_project import copy_project, dvc_in, run_in

from llome.provenance import RECORD_FILE, STALE_MARK
from llome.study import ROUND_METRICS, load_study

pytestmark = pytest.mark.pipeline

MAIN, SOLVABLE = "ehr_v-32_l-032_m-4_c-4_q-4", "ehr_v-32_l-032_m-4_c-2_q-4"
TABLES = ["instances.csv", "trace.csv", "rounds.csv", "calibration.csv", "calibration_post_filter.csv", "seeds.json"]
REWRITTEN = {"rounds.csv", "regret.csv", "timing.csv"}  # an LLOME job rewrites these, same bytes, even when reused


def _study(workdir: Path, *args: str) -> str:
    return run_in(workdir, sys.executable, "-m", "llome.study", *args, "--no-progress")


def _scratch_project(workdir: Path) -> Path:
    copy_project(workdir)
    params = workdir / "study" / "params.yaml"
    lines = ["study: smoke" if line.startswith("study:") else
             "  max_workers: 2" if line.startswith("  max_workers:") else line
             for line in params.read_text().splitlines()]
    params.write_text("\n".join(lines) + "\n")
    for made_here in ("tables", "runs"):  # not copied from the checkout
        shutil.rmtree(workdir / "study" / made_here, ignore_errors=True)
    return workdir


def files_under(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    workdir = _scratch_project(tmp_path_factory.mktemp("project"))
    log = dvc_in(workdir, "repro", "study/dvc.yaml:study")
    return workdir, log


def test_the_smoke_study_writes_every_table(smoke_study):
    workdir, _ = smoke_study
    tables = workdir / "study" / "tables"
    for name in [*TABLES, "timing.csv"]:
        assert (tables / name).exists(), name
    study = load_study(workdir / "study" / "params.yaml", workdir / "params.yaml")
    assert study.name == "smoke"
    cells = {(instance, method, seed) for instance, spec in study.settings.instances.items()
             for method in spec.methods for seed in study.seeds}
    trace = pd.read_csv(tables / "trace.csv")
    assert set(zip(trace["instance"], trace["method"], trace["seed"])) == cells
    instances = pd.read_csv(tables / "instances.csv").set_index("instance")
    assert (trace.groupby("instance")["oracle_calls"].max() <= instances["oracle_budget"]).all()
    rounds = pd.read_csv(tables / "rounds.csv")
    llome = {c for c in cells if study.settings.methods[c[1]].llome is not None}
    assert set(zip(rounds["instance"], rounds["method"], rounds["seed"])) == llome
    assert list(rounds.columns) == ["instance", "method", "seed", "round", *ROUND_METRICS]
    assert (rounds["paid_calls"] <= study.base["llome"]["selection"]["num_to_label"]).all()
    assert json.loads((tables / "seeds.json").read_text())["reported"] == [10, 11]
    # Calibration is binned on each round's diagnostic sample from before the likelihood filter, the labels apart.
    calibration, post_filter = (pd.read_csv(tables / name) for name in ("calibration.csv", "calibration_post_filter.csv"))
    assert set(calibration["sample"]) == {"diagnostic_pre_filter"} and set(post_filter["sample"]) == {"labelled_post_filter"}
    # A cell has bins unless no candidate of its sample had both a likelihood and a reward (at smoke size that
    # happens: the solvable instance's MargE on seed 11 proposed no valid sequence, 0 of 80, in its one round).
    binned = set(zip(calibration["instance"], calibration["method"], calibration["seed"]))
    assert binned <= llome and len(binned) >= len(llome) // 2
    for instance, method, seed in llome - binned:
        sample = pd.read_parquet(workdir / "data" / "study" / instance / method / f"seed_{seed}" / f"seed_{seed}"
                                 / "round_01" / "calibration_sample.parquet")
        assert not (np.isfinite(sample["loglik"]) & sample["reward"].notna()).any(), (instance, method, seed)
    timing = pd.read_csv(tables / "timing.csv")
    assert len(timing) == 6 + 6 + 10 and (timing["seconds"] > 0).all()


def test_the_methods_of_a_seed_share_its_seed_data_and_round_zero(smoke_study):
    workdir, _ = smoke_study
    data = workdir / "data" / "study"

    def inputs(instance, method, seed):
        return json.loads((data / instance / method / f"seed_{seed}" / f"seed_{seed}" / RECORD_FILE).read_text())[
            "inputs"]

    for seed in (10, 11):
        base = [inputs(MAIN, m, seed) for m in ("llome_sft", "llome_marge", "llome_dpo")]
        assert all(i == base[0] for i in base)
        capacity = inputs(MAIN, "llome_marge_6x128", seed)
        assert capacity["seed_data"] == base[0]["seed_data"]
        assert capacity["round_zero_model"] != base[0]["round_zero_model"]
    assert inputs(MAIN, "llome_marge", 10)["seed_data"] != inputs(MAIN, "llome_marge", 11)["seed_data"]
    assert inputs(MAIN, "llome_marge", 10)["seed_data"] != inputs(SOLVABLE, "llome_marge", 10)["seed_data"]


def test_a_rerun_reuses_every_job_and_keeps_the_timing(smoke_study):
    workdir, _ = smoke_study
    data, tables = workdir / "data" / "study", workdir / "study" / "tables"
    before = {rel: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for rel, p in files_under(data).items()}
    tables_before = {name: (tables / name).read_bytes() for name in [*TABLES, "timing.csv"]}
    _study(workdir, "run")
    after = files_under(data)
    assert set(after) == set(before)  # nothing new, nothing moved aside
    assert not [rel for rel in after if STALE_MARK in rel]
    for rel, path in after.items():
        if Path(rel).name in REWRITTEN:
            assert path.read_bytes() == before[rel][2], rel
        else:
            assert (path.stat().st_ino, path.stat().st_mtime_ns) == before[rel][:2], rel
    assert {name: (tables / name).read_bytes() for name in [*TABLES, "timing.csv"]} == tables_before
    assert "study/dvc.yaml:study" not in json.loads(dvc_in(workdir, "status", "--json", "study/dvc.yaml:study"))


def test_the_stored_runs_carry_the_study_on_without_its_data(smoke_study):
    """As on a fresh clone: study/runs is committed, data/study is not. Nothing runs, the tables are the same, and
    the stage still has its output, so that `dvc repro` (`make claims`) succeeds."""
    workdir, _ = smoke_study
    stored = files_under(workdir / "study" / "runs")
    assert {rel.split("/")[-1] for rel in stored} >= {"provenance.json", "trace.csv", "inputs.json", "timing.json"}
    _study(workdir, "run", "--data", "scratch/no_data", "--tables", "scratch/no_data_tables")
    assert not any((workdir / "scratch" / "no_data").iterdir())  # made, and empty: nothing was computed
    tables = {name: (workdir / "study" / "tables" / name).read_bytes() for name in TABLES}
    for name in TABLES:
        assert (workdir / "scratch" / "no_data_tables" / name).read_bytes() == tables[name], name
    shutil.rmtree(workdir / "data" / "study")
    dvc_in(workdir, "repro", "study/dvc.yaml:study")
    assert (workdir / "data" / "study").is_dir()
    assert {name: (workdir / "study" / "tables" / name).read_bytes() for name in TABLES} == tables


def test_serial_and_parallel_runs_make_the_same_tables(smoke_study):
    workdir, _ = smoke_study
    _study(workdir, "run", "--executor", "serial", "--data", "scratch/serial/data", "--store", "scratch/serial/runs",
           "--tables", "scratch/serial/tables")
    for name in TABLES:
        assert (workdir / "scratch" / "serial" / "tables" / name).read_bytes() == \
            (workdir / "study" / "tables" / name).read_bytes(), name


def test_the_main_pipeline_does_not_see_the_study(smoke_study):
    workdir, _ = smoke_study
    stages = json.loads(dvc_in(workdir, "status", "--json", "dvc.yaml"))
    assert stages and not [stage for stage in stages if stage.startswith("study/")]


def test_the_claims_stage_reads_the_tables(smoke_study):
    workdir, _ = smoke_study
    if not (workdir / "llome" / "claims.py").exists():
        pytest.skip("llome/claims.py is not in this checkout yet")
    dvc_in(workdir, "repro", "study/dvc.yaml:claims")
    assert json.loads((workdir / "metrics" / "claims.json").read_text())
    assert (workdir / "docs" / "claims.md").read_text().strip()


def test_the_claims_figures_stage_draws_every_linked_figure_from_the_real_tables(smoke_study):
    from llome.claims import CLAIM_FIGURES

    workdir, _ = smoke_study
    dvc_in(workdir, "repro", "study/dvc.yaml:claims_figures")
    dvc_in(workdir, "repro", "study/dvc.yaml:claims")  # the README's links (nothing to do if it already ran)
    figures = workdir / "docs" / "figures" / "claims"
    assert {p.name for p in figures.iterdir()} == set(CLAIM_FIGURES.values())
    readme = (workdir / "README.md").read_text()
    for name in set(CLAIM_FIGURES.values()):
        assert f"](docs/figures/claims/{name})" in readme, name
