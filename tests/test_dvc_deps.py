"""dvc.yaml's code deps are exactly the `llome` modules each stage can run, so `dvc status` misses no change."""

import shlex
from pathlib import Path

import pytest
import yaml

from llome.provenance import PACKAGE_ROOT, module_files, notebook_imports

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _stage_definitions():
    for name, stage in STAGES.items():
        yield name, stage.get("do", stage)


def reached_modules(cmd: str) -> list[str]:
    """The modules a stage's command runs: its `python -m` module, and the imports of the notebook it executes."""
    words = shlex.split(cmd)
    entry = words[words.index("-m") + 1]
    modules = [entry]
    notebooks = [w for w in words if w.endswith(".ipynb")]
    for notebook in notebooks:
        modules += notebook_imports(ROOT / notebook)
    return modules


@pytest.mark.parametrize("name, stage", list(_stage_definitions()), ids=[n for n, _ in _stage_definitions()])
def test_code_deps_are_exactly_the_modules_the_stage_reaches(name, stage):
    expected = {str(p.relative_to(ROOT)) for p in module_files(reached_modules(stage["cmd"]))}
    declared = {d for d in stage["deps"] if d.startswith("llome/")}
    assert declared == expected, (f"stage {name}: missing {sorted(expected - declared)}, "
                                  f"not reached {sorted(declared - expected)}")


@pytest.mark.parametrize("name, stage", list(_stage_definitions()), ids=[n for n, _ in _stage_definitions()])
def test_notebook_stages_depend_on_their_notebook_and_params(name, stage):
    words = shlex.split(stage["cmd"])
    for notebook in [w for w in words if w.endswith(".ipynb")]:
        assert notebook in stage["deps"], name
        config = words[words.index("config_path") + 1]
        assert config in stage["deps"], name


def _package(tmp_path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_module_files_follows_every_kind_of_import(monkeypatch, tmp_path):
    import llome.provenance as provenance

    root = _package(tmp_path, {
        "llome/__init__.py": "",
        "llome/a.py": "from llome.b import thing\n",
        "llome/b.py": "import os\ndef f():\n    import llome.c\n",          # an import inside a function counts
        "llome/c.py": "from . import d\n",                                   # relative import of a module
        "llome/d.py": "",
        "llome/e.py": "",                                                    # never imported
        "llome/sub/__init__.py": "",
        "llome/sub/x.py": "from ..d import y\n",
    })
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", root / "llome")
    names = lambda paths: sorted(str(p.relative_to(root)) for p in paths)  # noqa: E731
    assert names(provenance.module_files(["llome.a"])) == ["llome/__init__.py", "llome/a.py", "llome/b.py",
                                                            "llome/c.py", "llome/d.py"]
    assert names(provenance.module_files(["llome.sub.x"])) == ["llome/__init__.py", "llome/d.py",
                                                                "llome/sub/__init__.py", "llome/sub/x.py"]
    assert names(provenance.module_files(["numpy"])) == []


STUDY_STAGES = yaml.safe_load((ROOT / "study" / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("name, stage", list(STUDY_STAGES.items()), ids=list(STUDY_STAGES))
def test_study_code_deps_are_exactly_the_modules_the_stage_reaches(name, stage):
    """study/dvc.yaml's stages run from the root (wdir ..), so their deps are root-relative like dvc.yaml's."""
    assert stage.get("wdir") == "..", name
    entry = reached_modules(stage["cmd"])[0]
    if not (ROOT / (entry.replace(".", "/") + ".py")).exists():
        pytest.skip(f"{entry} is not in this checkout yet")
    expected = {str(p.relative_to(ROOT)) for p in module_files(reached_modules(stage["cmd"]))}
    declared = {d for d in stage["deps"] if d.startswith("llome/")}
    assert declared == expected, (f"study stage {name}: missing {sorted(expected - declared)}, "
                                  f"not reached {sorted(declared - expected)}")


def test_stage_modules_do_not_reach_each_other():
    reached = {str(p.relative_to(PACKAGE_ROOT)) for p in module_files(["llome.stages.seed_data"])}
    assert "stages/llome_rounds.py" not in reached and "train.py" not in reached and "plots.py" not in reached
