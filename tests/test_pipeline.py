"""The whole DVC pipeline at smoke size, in a scratch copy of the project (`make smoke`).

Marked `pipeline`: `make test` leaves it out, `make smoke` and CI run it.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scratch_project import copy_project, dvc_in, headless_chromium, tool_env

from llome.compare import fingerprint, read_lock, report
from llome.numerics import cpu_flags, cpu_model

pytestmark = pytest.mark.pipeline

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ["regret.png", "validity.png", "collapse.png", "calibration.png", "difficulty.png"]


def _set_profile(workdir: Path, profile: str) -> None:
    params = workdir / "params.yaml"
    lines = [f"profile: {profile}" if line.startswith("profile:") else line
             for line in params.read_text().splitlines()]
    params.write_text("\n".join(lines) + "\n")


def _scratch_project(workdir: Path) -> Path:
    copy_project(workdir)
    _set_profile(workdir, "smoke")
    return workdir


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = _scratch_project(tmp_path_factory.mktemp("project"))
    log = dvc_in(workdir, "repro")
    shutil.copy2(workdir / "metrics" / "summary.json", workdir.parent / "first_summary.json")  # later tests change it
    shutil.copy2(workdir / "dvc.lock", workdir.parent / "first_dvc.lock")
    return workdir, log


FINGERPRINT = ROOT / "tests" / "fixtures" / "smoke_fingerprint.json"


def test_the_smoke_run_reproduces_the_committed_fingerprint_bit_for_bit(smoke_run):
    """The md5 of every data output, made on the machine named in the fixture, checked on whatever machine
    runs this (CI's included). `make fingerprint` rewrites it after a change that is meant to move numbers."""
    workdir, _ = smoke_run
    lock = workdir.parent / "first_dvc.lock"
    actual = fingerprint(read_lock(lock.read_text(), str(lock)))
    if os.environ.get("LLOME_WRITE_FINGERPRINT") == "1":
        FINGERPRINT.write_text(json.dumps({"made_on": {"cpu": cpu_model(), "cpu_flags": cpu_flags()},
                                           "outputs": actual}, indent=2) + "\n")
    committed = json.loads(FINGERPRINT.read_text())
    text, same = report(committed["outputs"], actual)
    assert same, (f"made on {committed['made_on']}, run on {cpu_model()} {cpu_flags()}:\n{text}\n"
                  "If a change is meant to move the numbers, run `make fingerprint` and commit the fixture.")


def _changed_stages(workdir: Path) -> set[str]:
    # The main pipeline's stages only: without a target `dvc status` also lists study/dvc.yaml's, never run here.
    return set(json.loads(dvc_in(workdir, "status", "--json", "dvc.yaml")))


def test_smoke_pipeline_writes_every_figure_report_and_metric(smoke_run):
    workdir, _ = smoke_run
    for name in FIGURES:
        assert (workdir / "figures" / name).stat().st_size > 10_000, name
    for stage in ("01_test_functions", "02_seed_data", "03_sft", "04_llome_sft", "04_llome_marge",
                  "04_llome_dpo", "05_ga_baseline", "06_ga_difficulty", "07_figures", "09_lambo2", "10_prompted"):
        assert (workdir / "reports" / f"{stage}.html").exists(), stage
        assert (workdir / "reports" / f"{stage}.ipynb").exists(), stage
    summary = json.loads((workdir / "metrics" / "summary.json").read_text())
    assert summary["profile"] == "smoke"
    assert summary["function"] == "ehr_v-32_l-032_m-4_c-4_q-4"
    assert set(summary["methods"]) == {"ga_paper", "ga_swept", "llome_sft", "llome_marge", "llome_dpo", "lambo2",
                                          "prompted"}
    assert summary["methods"]["lambo2"]["oracle_calls"] == summary["lambo2_oracle_budget"] == summary["oracle_budget"]
    for method, s in summary["methods"].items():
        assert 0 <= s["regret"] <= 1 and s["best_value"] == pytest.approx(1 - s["regret"])
        assert s["oracle_calls"] <= summary["oracle_budget"], method
    for ga in ("ga_paper", "ga_swept"):
        assert summary["methods"][ga]["oracle_calls"] == summary["oracle_budget"] or \
            summary["methods"][ga]["solved_fraction"] == 1.0
    for name in ("regret", "rounds", "difficulty"):
        assert len(pd.read_csv(workdir / "data" / "plots" / f"{name}.csv")) > 0, name
    # At smoke size the model may propose nothing worth labelling: the table can be empty, never missing.
    assert list(pd.read_csv(workdir / "data" / "plots" / "calibration.csv").columns) == ["method", "loglik", "reward"]
    assert "dvc metrics" not in dvc_in(workdir, "metrics", "show")  # prints the table, not an error
    assert "llome_marge" in dvc_in(workdir, "metrics", "show")


@pytest.mark.parametrize("module, stages", [
    ("llome/plots.py", {"figures"}),
    ("llome/ga.py", {"ga_difficulty", "seed_data", "ga_baseline"}),
    ("llome/generate.py", {"llome@sft", "llome@marge", "llome@dpo", "prompted"}),
    ("llome/train.py", {"sft", "llome@sft", "llome@marge", "llome@dpo"}),
    ("llome/runtime.py", {"params", "sft", "llome@sft", "llome@marge", "llome@dpo", "prompted"}),
    ("llome/lambo.py", {"lambo2"}),
    ("llome/rounds.py", {"llome@sft", "llome@marge", "llome@dpo", "lambo2", "prompted"}),
    ("lambo/runner.py", {"lambo2"}),
])
def test_a_changed_module_names_exactly_the_stages_that_run_it(smoke_run, module, stages):
    workdir, _ = smoke_run
    path = workdir / module
    original = path.read_text()
    try:
        path.write_text(original + "\n_EDITED = True\n")
        assert _changed_stages(workdir) == stages
    finally:
        path.write_text(original)


def test_second_repro_does_nothing_and_one_param_reruns_only_its_method(smoke_run):
    workdir, _ = smoke_run
    assert "up to date" in dvc_in(workdir, "status", "dvc.yaml").lower() or dvc_in(workdir, "status", "dvc.yaml").strip() == ""
    original = (workdir / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["profiles"]["smoke"]["llome"]["methods"]["dpo"]["train"]["learning_rate"] = 3.5e-4
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_in(workdir, "repro", "params")
    assert _changed_stages(workdir) == {"llome@dpo"}  # figures follows once llome@dpo's outputs change
    (workdir / "params.yaml").write_text(original)
    dvc_in(workdir, "repro", "params")
    assert _changed_stages(workdir) == set()


def test_an_upstream_setting_reruns_and_rebuilds_everything_downstream(smoke_run):
    workdir, _ = smoke_run
    model = workdir / "data" / "sft" / "seed_0" / "model" / "model.safetensors"
    labelled = workdir / "data" / "llome" / "marge" / "seed_0" / "round_01" / "labelled.parquet"
    before = model.read_bytes(), pd.read_parquet(labelled)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["profiles"]["smoke"]["sft"]["learning_rate"] = 1.0e-3
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dvc_in(workdir, "repro", "params")
    assert _changed_stages(workdir) == {"sft"}
    log = dvc_in(workdir, "repro")
    for stage in ("sft", "llome@sft", "llome@marge", "llome@dpo", "figures"):
        assert f"Running stage '{stage}'" in log, stage
    assert model.read_bytes() != before[0]
    assert not pd.read_parquet(labelled).equals(before[1])
    assert _changed_stages(workdir) == set()


def test_report_renders_offline_in_a_headless_browser(smoke_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian chromium is not installed (make ci installs it)")
    workdir, _ = smoke_run
    shot = tmp_path / "report.png"
    dom = subprocess.run(
        headless_chromium(browser, tmp_path / "profile",
                          "--virtual-time-budget=5000", "--dump-dom", (workdir / "reports" / "figures.html").as_uri()),
        capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<img") == len(FIGURES)
    assert "llome_marge" in dom.stdout
    subprocess.run(
        headless_chromium(browser, tmp_path / "profile",
                          "--window-size=1200,2400", f"--screenshot={shot}", (workdir / "reports" / "figures.html").as_uri()),
        capture_output=True, text=True, timeout=120, check=True)
    from PIL import Image

    pixels = Image.open(shot).convert("L")
    histogram = pixels.histogram()
    non_white = sum(histogram[:200]) / sum(histogram)
    assert non_white > 0.02  # figures drew, not a blank page


def test_dvc_plots_draw_one_series_per_method_offline(smoke_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian chromium is not installed (make ci installs it)")
    workdir, _ = smoke_run
    subprocess.run([sys.executable, "-m", "llome.dvc_plots", "-o", "dvc_plots"], cwd=workdir, env=tool_env(), check=True,
                   capture_output=True)
    page = (workdir / "dvc_plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in page and "<script src=" not in page
    dvc = yaml.safe_load((workdir / "dvc.yaml").read_text())
    dom = subprocess.run(
        headless_chromium(browser, tmp_path / "profile",
                          "--virtual-time-budget=10000", "--dump-dom", (workdir / "dvc_plots" / "index.html").as_uri()),
        capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # vega-embed draws each plot as an svg of marks; a spec it cannot draw leaves an error message instead
    assert dom.stdout.count('class="marks"') == len(dvc["plots"]), dom.stdout[-3000:]
    legend = dom.stdout.split('role-legend-label', 1)[-1]
    assert "llome_marge" in legend and "ga_paper" in dom.stdout  # one series per method, named in the legend


def _kill_tree(process: subprocess.Popen) -> None:
    import psutil

    parent = psutil.Process(process.pid)
    family = [parent, *parent.children(recursive=True)]
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)


def test_a_run_killed_inside_an_llome_stage_resumes_to_the_same_summary(smoke_run, tmp_path):
    """SIGKILL to dvc and every process under it (the notebook kernel too) in the middle of a round."""
    import time

    reference = json.loads((smoke_run[0].parent / "first_summary.json").read_text())
    workdir = _scratch_project(tmp_path / "killed")
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=workdir, env=tool_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    marker = None
    while marker is None and time.monotonic() < deadline and process.poll() is None:
        # a run directory appears when an LLOME stage starts its first seed; at smoke size a round lasts a second
        found = sorted(workdir.glob("data/llome/*/seed_*/round_*.partial")) or \
            sorted(workdir.glob("data/llome/*/seed_*/provenance.json"))
        marker = found[0] if found else None
        time.sleep(0.05)
    assert marker is not None, "the run ended or timed out before any LLOME round was under way"
    _kill_tree(process)
    unfinished = [m for m in ("sft", "marge", "dpo") if not (workdir / "data" / "llome" / m / "regret.csv").exists()]
    assert unfinished, "every LLOME stage had finished before the kill"
    dvc_in(workdir, "repro")
    resumed = json.loads((workdir / "metrics" / "summary.json").read_text())
    assert resumed == reference
