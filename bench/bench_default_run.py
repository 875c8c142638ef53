"""The default run's wall time with the numerics pins and without them, in one bench run.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_default_run.py            # the whole default run, twice
    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_default_run.py --slice    # seed 0, MargE, 2 rounds

Each setting runs `dvc repro` stage by stage in a scratch copy of the project of its own (your data/ is
untouched), `LLOME_NUMERICS=native` for the unpinned one, and the two settings alternate stage by stage, so
that a change in the machine's load falls on both alike. The pins can only change the cost of the stages that
run torch (round 0 and the LLOME rounds); the GA and test-function stages are numpy and Python.
`--slice` keeps the default profile's sizes but runs one seed of one method for two rounds, the part of the
run whose per-round cost sets the whole run's: it takes about 25 minutes here instead of three hours.
"""

from __future__ import annotations

import argparse
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

from machine import describe_machine  # noqa: E402

from llome.numerics import PINS, SWITCH  # noqa: E402
from scratch_project import copy_project, tool_env  # noqa: E402

SETTINGS = {"pinned": {}, "native": {"LLOME_NUMERICS": "native"}}
WHOLE_RUN = ["params", "test_functions", "ga_difficulty", "seed_data", "sft", "llome@sft", "llome@marge",
             "llome@dpo", "ga_baseline", "lambo2", "prompted", "figures"]
SLICE = ["params", "seed_data", "sft", "llome@marge"]


def scratch_copy(parent: Path, name: str, slice_only: bool) -> Path:
    root = copy_project(parent / name)
    if slice_only:
        from ruamel.yaml import YAML

        yaml = YAML()
        params = yaml.load((root / "params.yaml").read_text())
        params["profiles"]["default"]["seeds"] = [0]
        params["profiles"]["default"]["llome"]["rounds"] = 2
        with open(root / "params.yaml", "w") as handle:
            yaml.dump(params, handle)
    return root


def run_stage(root: Path, stage: str, extra_env: dict) -> float:
    # The venv's start-up hook put the pins into this process's environment: the native run must not inherit them.
    env = {k: v for k, v in tool_env().items() if k not in (*PINS, SWITCH)}
    env.update(extra_env)
    started = time.perf_counter()
    subprocess.run(["dvc", "repro", "--single-item", stage], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice", action="store_true", help="seed 0 of MargE for 2 rounds instead of the whole run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies (their data/ and dvc.lock)")
    args = parser.parse_args()
    stages = SLICE if args.slice else WHOLE_RUN
    print(describe_machine())
    print(f"{'slice: seed 0, MargE, 2 rounds' if args.slice else 'the whole default run'}; stages {stages}")
    scratch = Path(tempfile.mkdtemp(prefix="bench-default-run-"))
    try:
        roots = {name: scratch_copy(scratch, name, args.slice) for name in SETTINGS}
        seconds = {name: {} for name in SETTINGS}
        for stage in stages:
            for name, extra in SETTINGS.items():
                seconds[name][stage] = run_stage(roots[name], stage, extra)
                print(f"  {stage:14s} {name:7s} {seconds[name][stage]:8.1f} s", flush=True)
        print(f"\n{'stage':14s} {'pinned s':>9s} {'native s':>9s} {'ratio':>6s}")
        for stage in stages + ["total"]:
            pinned = sum(seconds["pinned"].values()) if stage == "total" else seconds["pinned"][stage]
            native = sum(seconds["native"].values()) if stage == "total" else seconds["native"][stage]
            print(f"{stage:14s} {pinned:9.1f} {native:9.1f} {pinned / native:6.2f}")
        locks = [(roots[name] / "dvc.lock").read_text() for name in SETTINGS]
        print("\ndvc.lock of the two settings:", "identical" if locks[0] == locks[1] else "different (expected: "
              "the pins change the floats of round 0 and after)")
    finally:
        if args.keep:
            print(f"scratch copies kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
