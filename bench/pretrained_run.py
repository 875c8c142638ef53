"""The `pretrained` profile's whole pipeline with SmolLM2-135M-Instruct, kept as a small committed run.

    make smollm2 && flock /tmp/llome-cpu.lock .venv/bin/python bench/pretrained_run.py

It runs `dvc repro` stage by stage in a scratch copy of the project (your data/ is untouched), then writes to
docs/runs/pretrained/ what a reader needs to see what a real pretrained LLM does at this size next to the default
run's model trained from scratch, and to check it: the run's dvc.lock (every output's md5 and the params that made
it), metrics/summary.json, the figures, each stage's wall seconds and the machine (timing.json), and a
README.md with the results table. The sizes are the profile's (params.yaml, `pretrained`): a smoke test of the
pretrained path on 2 CPU cores, not an experiment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from machine import describe_machine, source_commit  # noqa: E402

from llome.io import write_json  # noqa: E402
from llome.report import results_markdown  # noqa: E402
from llome.smollm2 import gguf_path  # noqa: E402
from scratch_project import copy_project, tool_env  # noqa: E402

PROFILE = "pretrained"
STAGES = ["params", "test_functions", "ga_difficulty", "seed_data", "sft", "llome@sft", "llome@marge", "llome@dpo",
          "ga_baseline", "lambo2", "prompted", "figures"]
OUT = ROOT / "docs" / "runs" / PROFILE


def scratch_project(parent: Path) -> Path:
    root = copy_project(parent / "project")
    (root / "models").symlink_to(ROOT / "models")  # git-ignored, so not in the copy
    params = root / "params.yaml"
    params.write_text("\n".join(f"profile: {PROFILE}" if line.startswith("profile:") else line
                                for line in params.read_text().splitlines()) + "\n")
    return root


def run_stage(root: Path, stage: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(["dvc", "repro", "--single-item", stage], cwd=root, env=tool_env(), capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def publish(root: Path, seconds: dict[str, float], machine: str, commit: str) -> None:
    work = OUT.with_name(OUT.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy2(root / "dvc.lock", work / "dvc.lock")
    shutil.copy2(root / "metrics" / "summary.json", work / "summary.json")
    for figure in sorted((root / "figures").glob("*.png")):
        shutil.copy2(figure, work / figure.name)
    write_json(work / "timing.json", {"commit": commit, "machine": machine, "seconds": {k: round(v, 1) for k, v in seconds.items()},
                                      "total_seconds": round(sum(seconds.values()), 1)})
    summary = json.loads((root / "metrics" / "summary.json").read_text())
    stage_lines = "\n".join(f"| `{stage}` | {s:,.0f} |" for stage, s in seconds.items())
    (work / "README.md").write_text(
        f"# The `{PROFILE}` profile: SmolLM2-135M-Instruct through the whole pipeline\n\n"
        f"Made by `bench/pretrained_run.py` from commit {commit} (a scratch copy of the project, `dvc repro` stage "
        "by stage); "
        "`dvc.lock` here is that run's lock. The sizes are params.yaml's `pretrained` profile: one seed, one "
        "labelled round of each LLOME variant with a handful of candidates, a smoke test of the pretrained path on "
        "2 CPU cores, not an experiment.\n\n"
        f"Machine: {machine}\n\n| stage | wall seconds |\n|---|---:|\n{stage_lines}\n"
        f"| total | {sum(seconds.values()):,.0f} |\n\n## Results\n\n"
        + results_markdown(summary, figures_dir=".") + "\n")
    if OUT.exists():
        shutil.rmtree(OUT)
    work.rename(OUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy (its data/ and dvc.lock)")
    args = parser.parse_args()
    if not gguf_path().is_file():
        raise SystemExit(f"{gguf_path()} is absent: run `make smollm2` first")
    machine, commit = describe_machine(), source_commit()
    print(machine)
    scratch = Path(tempfile.mkdtemp(prefix="pretrained-run-"))
    try:
        root = scratch_project(scratch)
        seconds = {}
        for stage in STAGES:
            seconds[stage] = run_stage(root, stage)
            print(f"  {stage:14s} {seconds[stage]:8.1f} s", flush=True)
        publish(root, seconds, machine, commit)
        print(f"{OUT.relative_to(ROOT)}/ written; total {sum(seconds.values()) / 60:.1f} min")
    finally:
        if args.keep:
            print(f"scratch copy kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
