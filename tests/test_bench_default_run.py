"""bench/bench_default_run.py's cut-off path: a stage interrupted in a scratch copy has its outputs removed
there, and only there. It once read the stage's outputs against the working directory, the project itself,
and deleted the project's round-0 models instead of the copy's. Here the working directory is a second copy
(a decoy with outputs of its own), so that a regression deletes a scratch folder, not your data/."""

import sys

import pytest
from scratch_project import ROOT, copy_project

sys.path.insert(0, str(ROOT / "bench"))
from bench_default_run import remove_outputs, stage_outputs  # noqa: E402


def _with_round_zero(project):
    model = project / "data" / "sft" / "seed_0" / "model.safetensors"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_bytes(b"weights")
    return model


@pytest.fixture
def copies(tmp_path, monkeypatch):
    copy, decoy = (copy_project(tmp_path / name).resolve() for name in ("copy", "decoy"))
    monkeypatch.chdir(decoy)  # as the bench runs: from a project with a dvc.yaml of the same stages
    return copy, decoy


@pytest.mark.parametrize("stage", ["sft", "llome@marge"])
def test_outputs_are_the_copys_own_whatever_the_working_directory(copies, stage):
    copy, _ = copies
    paths = stage_outputs(copy, stage)
    assert paths and all(p.is_relative_to(copy) for p in paths), paths
    assert any(p.relative_to(copy).parts[0] == "data" for p in paths), paths


def test_a_cut_off_stage_loses_its_outputs_in_the_copy_and_nowhere_else(copies):
    copy, decoy = copies
    _with_round_zero(copy)
    kept = _with_round_zero(decoy)

    removed = remove_outputs(copy, "sft")

    assert "data/sft" in removed and not (copy / "data" / "sft").exists()
    assert kept.read_bytes() == b"weights"


def test_an_unknown_stage_removes_nothing(copies):
    copy, _ = copies
    model = _with_round_zero(copy)
    with pytest.raises(Exception):
        remove_outputs(copy, "no_such_stage")
    assert model.exists()
