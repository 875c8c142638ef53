"""The committed run agrees with itself: params.yaml, dvc.lock, metrics/summary.json, docs/ and the README.

docs/reports/run.json names the commit whose code made the run. While it is the current code, every locked
dependency must match the working tree; once the code moves on, it must match that commit, and the README
must say that the published numbers are that commit's, not the current code's.
"""

import functools
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from llome.config import load_params, parse_params
from llome.publish import DOCS_REPORTS, stage_reports
from llome.report import results_markdown

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "dvc.lock"

pytestmark = pytest.mark.skipif(not LOCK.exists(), reason="no committed run (dvc.lock) to check")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@functools.cache
def _lock_stages() -> dict:
    # YAML 1.2 as DVC writes dvc.lock: `no` is a string and `1e-05` a float.
    return parse_params(LOCK.read_text(), LOCK)["stages"]


def _lock_out(path: str) -> dict:
    for stage in _lock_stages().values():
        for out in stage.get("outs", []):
            if out["path"] == path:
                return out
    raise AssertionError(f"dvc.lock records no output {path}")


RUN = json.loads((ROOT / DOCS_REPORTS / "run.json").read_text()) if (ROOT / DOCS_REPORTS / "run.json").exists() \
    else {"current": True}


def _file_at_run(path: str) -> bytes | None:
    """A file as the run's code had it: the working tree's while the run is current, else its commit's."""
    if RUN["current"]:
        return (ROOT / path).read_bytes() if (ROOT / path).is_file() else None
    shown = subprocess.run(["git", "show", f"{RUN['commit']}:{path}"], cwd=ROOT, capture_output=True)
    return shown.stdout if shown.returncode == 0 else None


def test_the_locked_params_are_the_params_yaml_of_the_run():
    locked = _lock_stages()["params"]["params"]["params.yaml"]
    current = parse_params(_file_at_run("params.yaml").decode(), "params.yaml")
    assert locked == {"profile": current["profile"], "profiles": current["profiles"]}, \
        "params.yaml changed since the committed run: rerun `make repro` and `make publish`, or revert it"


def test_the_locked_code_is_the_code_of_the_run():
    """Every file a stage ran (library modules, notebooks) is as the run had it, or `dvc status` is dirty."""
    changed = sorted({dep["path"] for stage in _lock_stages().values() for dep in stage.get("deps", [])
                      if not dep["path"].startswith("data/") and (content := _file_at_run(dep["path"])) is not None
                      and hashlib.md5(content).hexdigest() != dep["md5"]})
    assert not changed, (f"{changed} changed since the committed run, so its summary is not this code's: "
                         "rerun `make repro` and `make publish`, and commit dvc.lock, the summary and docs/")


def test_a_run_of_older_code_is_named_as_such_in_the_readme():
    if RUN["current"]:
        pytest.skip("the published run is the current code's")
    readme = (ROOT / "README.md").read_text()
    assert f"commit {RUN['commit'][:7]}" in readme and "not the current code" in readme


def test_the_committed_summary_is_the_one_the_locked_run_wrote():
    summary = ROOT / "metrics" / "summary.json"
    assert _lock_out("metrics/summary.json")["md5"] == _md5(summary)


def test_every_stage_report_is_published_as_the_locked_run_wrote_it():
    reports = stage_reports(LOCK)
    assert len(reports) >= 9
    for report in reports:
        published = ROOT / DOCS_REPORTS / Path(report).name
        assert published.exists(), f"{published} is missing: run `make publish`"
        assert _md5(published) == _lock_out(report)["md5"], f"{published} is not the locked run's {report}"


def test_the_readme_results_block_is_generated_from_the_summary():
    import json

    summary = json.loads((ROOT / "metrics" / "summary.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert results_markdown(summary, "docs/figures") in readme
