"""The committed run agrees with itself: params.yaml, dvc.lock, metrics/summary.json, docs/ and the README."""

import functools
import hashlib
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


def test_the_locked_params_are_the_current_params_yaml():
    locked = _lock_stages()["params"]["params"]["params.yaml"]
    current = load_params(ROOT / "params.yaml")
    assert locked == {"profile": current["profile"], "profiles": current["profiles"]}, \
        "params.yaml changed since the committed run: rerun `make repro` and `make publish`, or revert it"


def test_the_locked_code_is_the_current_code():
    """Every file a stage ran (library modules, notebooks) is as the committed run had it, or `dvc status` is dirty."""
    changed = sorted({dep["path"] for stage in _lock_stages().values() for dep in stage.get("deps", [])
                      if (ROOT / dep["path"]).is_file() and not dep["path"].startswith("data/")
                      and _md5(ROOT / dep["path"]) != dep["md5"]})
    assert not changed, (f"{changed} changed since the committed run, so its summary is not this code's: "
                         "rerun `make repro` and `make publish`, and commit dvc.lock, the summary and docs/")


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
