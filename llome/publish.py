"""Publish a finished default run for readers who will not rerun it.

    python -m llome.publish        (or `make publish`, after `make repro`)

Copies each stage's executed notebook (HTML) to docs/reports/, with the machine records of its stages, and the figures to docs/figures/, and
rewrites the README's results block from metrics/summary.json. Commit them with dvc.lock, which
records the params, code and data hashes of the run: tests/test_published_run.py checks that the
summary, the reports, dvc.lock and params.yaml still agree.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

from llome.compare import MACHINE_FILE, machines
from llome.io import write_json
from llome.report import update_readme

DOCS_REPORTS = Path("docs/reports")


def stage_reports(lock_path: str | Path = "dvc.lock") -> list[str]:
    """Every reports/*.html that dvc.lock records as a stage output."""
    stages = yaml.safe_load(Path(lock_path).read_text())["stages"]
    return sorted(out["path"] for stage in stages.values() for out in stage.get("outs", [])
                  if out["path"].startswith("reports/") and out["path"].endswith(".html"))


def publish(root: str | Path = ".") -> list[Path]:
    root = Path(root)
    lock = root / "dvc.lock"
    if not lock.exists():
        raise FileNotFoundError(f"{lock} does not exist: run `make repro` first")
    target = root / DOCS_REPORTS
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    copied = []
    for report in stage_reports(lock):
        source = root / report
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: dvc.lock lists it, so rerun `dvc repro` (or `dvc checkout`)")
        copied.append(Path(shutil.copy2(source, target / source.name)))
    write_json(target / MACHINE_FILE, machines(root))  # which CPU and numerics made the published run
    update_readme(root / "README.md", root / "metrics" / "summary.json", root / "figures", root / "docs" / "figures")
    return copied


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    for path in publish():
        print(path)


if __name__ == "__main__":
    main()
