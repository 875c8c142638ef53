"""A result never outlives what made it: upstream changes rebuild it, unrelated ones leave it alone.

Runs the real stage functions at toy size: GA seed data, round 0, and one LLOME round of two methods.
"""

import copy
import os
import shutil

import pytest

from llome.config import load_profile, stage_configs
from llome.provenance import PACKAGE_ROOT, ForeignDirectoryError, claim, code_digest, read_record
from llome.report import collect
from llome.stages.llome_rounds import llome_method
from llome.stages.round_zero import round_zero
from llome.stages.seed_data import seed_data

pytestmark = pytest.mark.slow
PARAMS = PACKAGE_ROOT.parent / "params.yaml"
METHODS = ("sft", "marge")


def tiny_profile() -> dict:
    cfg = load_profile(PARAMS, "smoke")
    cfg["seeds"] = [0]
    cfg["seed_data"].update(num_particles=100, num_steps=3)
    cfg["pairs"]["max_pairs"] = 200
    cfg["sft"].update(num_train_epochs=2)
    cfg["llome"]["rounds"] = 1
    cfg["llome"]["generation"].update(num_seeds=4, num_iterations=1, temperatures=[1.0], num_samples=2)
    cfg["llome"]["selection"]["num_to_label"] = 8
    cfg["llome"]["methods"] = {m: cfg["llome"]["methods"][m] for m in METHODS}
    return cfg


def run_all(cfg: dict, root) -> None:
    stages = stage_configs(cfg)
    if not (root / "seed" / "provenance.json").exists() or read_record(root / "seed")["config"] != stages["seed_data"]:
        shutil.rmtree(root / "seed", ignore_errors=True)
        seed_data(stages["seed_data"], root / "seed", progress=False)  # DVC reruns it whole when its config changes
    round_zero(stages["sft"], root / "seed", root / "sft")
    for method in METHODS:
        llome_method(stages[f"llome_{method}"], root / "seed", root / "sft", root / "llome" / method, progress=False)


def stamp(path):
    """Identity of a file on disk: a rebuilt file has a new inode or a new modification time."""
    info = os.stat(path)
    return info.st_ino, info.st_mtime_ns


def weights(root, *parts):
    return root.joinpath(*parts, "model", "model.safetensors")


def snapshot(root) -> dict:
    files = {"sft": weights(root, "sft", "seed_0")}
    for method in METHODS:
        files[method] = weights(root, "llome", method, "seed_0", "round_01")
    return {name: (stamp(path), path.read_bytes()) for name, path in files.items()}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline")
    cfg = tiny_profile()
    run_all(cfg, root)
    return cfg, root


@pytest.fixture
def project(baseline, tmp_path):
    cfg, root = baseline
    shutil.copytree(root, tmp_path / "p", copy_function=shutil.copy2)
    return copy.deepcopy(cfg), tmp_path / "p"


def test_an_unchanged_rerun_rebuilds_nothing(project):
    cfg, root = project
    before = snapshot(root)
    run_all(cfg, root)
    after = snapshot(root)
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}


@pytest.mark.parametrize("change", [
    lambda cfg: cfg["sft"].update(learning_rate=cfg["sft"]["learning_rate"] / 3),
    lambda cfg: cfg["model"]["gpt_neox"].update(intermediate_size=2 * cfg["model"]["gpt_neox"]["intermediate_size"]),
    lambda cfg: cfg["seed_data"].update(num_steps=cfg["seed_data"]["num_steps"] + 1),
    lambda cfg: cfg["model"].update(lora={"r": 2, "alpha": 4.0, "dropout": 0.0, "target_modules": None}),
], ids=["sft.learning_rate", "model size", "seed_data.num_steps", "model.lora"])
def test_an_upstream_change_rebuilds_every_downstream_result(project, change):
    cfg, root = project
    before = snapshot(root)
    change(cfg)
    run_all(cfg, root)
    after = snapshot(root)
    for name in before:
        assert after[name][0] != before[name][0], f"{name} was not rebuilt"
        assert after[name][1] != before[name][1], f"{name} was rebuilt but came out the same"


def test_a_change_to_one_method_reruns_only_that_method(project):
    cfg, root = project
    before = snapshot(root)
    cfg["llome"]["methods"]["marge"]["train"]["learning_rate"] *= 2
    run_all(cfg, root)
    after = snapshot(root)
    assert after["sft"][0] == before["sft"][0] and after["marge"][0] != before["marge"][0]
    assert snapshot(root)["sft"] == before["sft"]


def test_a_new_seed_runs_alone_and_the_report_reads_exactly_the_configured_seeds_and_rounds(project, monkeypatch):
    import llome.report as report

    cfg, root = project
    before = snapshot(root)
    cfg["seeds"] = [0, 1]
    run_all(cfg, root)
    assert {k: v[0] for k, v in snapshot(root).items()} == {k: v[0] for k, v in before.items()}
    assert weights(root, "llome", "marge", "seed_1", "round_01").exists()

    figures = {**stage_configs(cfg)["figures"], "methods": list(METHODS)}
    del figures["lambo2"], figures["prompted"]  # no LaMBO-2 or prompted run here: the report reads each only when configured
    shutil.copytree(root / "llome" / "marge" / "seed_1", root / "llome" / "marge" / "seed_9")  # not configured
    (root / "ga_baseline").mkdir()
    (root / "ga_baseline" / "regret.csv").write_text("oracle_calls,best_value,regret,seed,method\n1,0.5,0.5,0,ga_paper\n")
    read = []
    monkeypatch.setattr(report, "read_table", lambda path: read.append(path) or report.pd.read_parquet(path))
    _, rounds, _ = collect(figures, root)
    assert sorted(rounds["seed"].unique()) == [0, 1]
    assert sorted(str(p.relative_to(root)) for p in read) == sorted(
        f"llome/{m}/seed_{s}/round_01/labelled.parquet" for m in METHODS for s in (0, 1))  # seed_9 is not read


def test_more_rounds_extend_a_run_instead_of_restarting_it(project):
    cfg, root = project
    before = snapshot(root)
    cfg["llome"]["rounds"] = 2
    run_all(cfg, root)
    assert {k: v[0] for k, v in snapshot(root).items()} == {k: v[0] for k, v in before.items()}
    assert weights(root, "llome", "sft", "seed_0", "round_02").exists()


def test_claim_keeps_a_directory_of_the_same_record_and_moves_any_other_aside(tmp_path):
    record = {"config": {"a": (1, 2)}, "code": {}, "inputs": {}}
    assert claim(tmp_path / "r", record) is False
    (tmp_path / "r" / "result.txt").write_text("done")
    assert claim(tmp_path / "r", copy.deepcopy(record)) is True and (tmp_path / "r" / "result.txt").exists()
    assert claim(tmp_path / "r", {**record, "config": {"a": (1, 3)}}) is False
    assert not (tmp_path / "r" / "result.txt").exists()
    [aside] = tmp_path.glob("r.stale-*")
    assert (aside / "result.txt").read_text() == "done"
    (tmp_path / "unknown").mkdir()
    (tmp_path / "unknown" / "old.txt").write_text("who made me?")
    with pytest.raises(ForeignDirectoryError, match="unknown"):
        claim(tmp_path / "unknown", record)
    assert (tmp_path / "unknown" / "old.txt").read_text() == "who made me?"


def test_code_digest_ignores_docstrings_and_comments_but_not_code(monkeypatch, tmp_path):
    import llome.provenance as provenance

    package = tmp_path / "llome"
    package.mkdir()
    (package / "__init__.py").write_text("")
    module = package / "m.py"
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", package)
    module.write_text('"""Doc."""\ndef f(x):\n    """What f does."""\n    return x + 1\n')
    first = code_digest(["llome.m"])
    module.write_text('"""Other words."""\ndef f(x):  # a comment\n    return x + 1\n')
    assert code_digest(["llome.m"]) == first
    module.write_text('"""Doc."""\ndef f(x):\n    return x + 2\n')
    assert code_digest(["llome.m"]) != first
