"""Seed sweeps on DVC's own machinery: queue an experiment with `dvc exp run --queue -S ...`, run the queue with
`dvc queue start`, and find its parameters and summary metrics in `dvc exp show --json` (`make smoke`).

Marked `pipeline`: the queued experiment is the whole smoke pipeline for one new seed, in a scratch git copy of
the project, so your workspace, data/ and experiments are untouched.
"""

import json
import time

import pytest
import yaml
from scratch_project import ROOT, committed_copy, dvc_in

pytestmark = pytest.mark.pipeline

QUEUE_TIMEOUT_S = 1200


def _experiments(show: list[dict]) -> list[dict]:
    """The experiments (not the baseline) of `dvc exp show --json`, as {name, params, metrics} each."""
    found = []
    for commit in show:
        for experiment in commit.get("experiments") or []:
            for revision in experiment.get("revs", []):
                data = revision.get("data") or {}
                found.append({"name": revision.get("name") or experiment.get("name"),
                              "params": data.get("params", {}).get("params.yaml", {}).get("data", {}),
                              "metrics": data.get("metrics", {}).get("metrics/summary.json", {}).get("data", {})})
    return found


@pytest.fixture(scope="module")
def queued_run(tmp_path_factory):
    workdir = committed_copy(tmp_path_factory.mktemp("project"))

    start = time.monotonic()
    dvc_in(workdir, "exp", "run", "--queue", "--name", "smoke-seed-3", "-S", "profile=smoke",
         "-S", "profiles.smoke.seeds=[3]")
    assert "smoke-seed-3" in dvc_in(workdir, "queue", "status")
    dvc_in(workdir, "queue", "start", "-j", "1")
    while time.monotonic() - start < QUEUE_TIMEOUT_S:
        status = dvc_in(workdir, "queue", "status")
        if not any(state in status for state in ("Queued", "Running")):
            break
        time.sleep(5)
    else:
        dvc_in(workdir, "queue", "kill", "smoke-seed-3")
        raise AssertionError(f"the queued experiment did not finish in {QUEUE_TIMEOUT_S} s:\n{status}")
    elapsed = time.monotonic() - start
    status = dvc_in(workdir, "queue", "status")
    assert "Failed" not in status, dvc_in(workdir, "queue", "logs", "smoke-seed-3")
    print(f"queued smoke experiment: {elapsed:.0f} s from queueing to done")
    return workdir, json.loads(dvc_in(workdir, "exp", "show", "--json"))


def test_queued_seed_experiment_shows_its_params_and_summary_metrics(queued_run):
    _, show = queued_run
    experiments = {e["name"]: e for e in _experiments(show)}
    assert "smoke-seed-3" in experiments, experiments
    experiment = experiments["smoke-seed-3"]
    assert experiment["params"]["profile"] == "smoke"
    assert experiment["params"]["profiles"]["smoke"]["seeds"] == [3]
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())["profiles"]["default"]
    assert experiment["params"]["profiles"]["default"]["seeds"] == committed["seeds"]  # only the named value changed
    summary = experiment["metrics"]
    assert summary["profile"] == "smoke"
    assert set(summary["methods"]) == {"ga_paper", "ga_swept", "llome_sft", "llome_marge", "llome_dpo", "lambo2",
                                          "prompted"}
    for method, metrics in summary["methods"].items():
        assert 0 <= metrics["regret"] <= 1 and metrics["oracle_calls"] <= summary["oracle_budget"], method
        assert metrics["num_seeds"] == 1, method  # dvc exp show leaves out lists such as per_seed


def test_the_workspace_is_left_as_it_was(queued_run):
    workdir, _ = queued_run
    assert "profile: default" in (workdir / "params.yaml").read_text()  # the experiment ran in its own copy
    assert not (workdir / "data" / "llome").exists()
