"""The default run's wall time with the numerics pins and without them, in one bench run.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_default_run.py            # the whole default run, twice
    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_default_run.py --slice    # seed 0, MargE, 2 rounds

Each setting runs `dvc repro` stage by stage in a scratch copy of the project of its own (your data/ is
untouched), `LLOME_NUMERICS=native` for the unpinned one, and the two settings alternate stage by stage, so
that a change in the machine's load falls on both alike. The pins can only change the cost of the stages that
run torch (round 0, the LLOME rounds, LaMBO-2, the prompted LLM and the test functions' matrices); the GA
stages are numpy and Python.
`--slice` keeps the default profile's sizes but runs one seed of one method for two rounds, the part of the
run whose per-round cost sets the whole run's: it takes minutes instead of the whole run's two hours (117 minutes on
an AMD EPYC with AVX-512, 2026-12-07).

The whole run takes longer than one sitting on 2 cores, so it can be split: `--workdir DIR` keeps the two copies
and the times measured so far in DIR, and `--stages` runs some stages (in the pipeline's order, upstream ones
first), e.g. `--workdir scratch/bench-default-run --stages params test_functions ga_difficulty seed_data sft`,
then the rest in a later sitting with the same `--workdir`. Each stage's pair of times is still measured back to
back. A stage cut off mid-run (the machine went away) has its outputs removed and is rerun whole, because the
LLOME stages resume from their last round and would otherwise be timed in part. The copies are made once, so a
split run measures the code of its first sitting; the report names that commit.
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
from llome.numerics import PINS, SWITCH  # noqa: E402
from scratch_project import copy_project, tool_env  # noqa: E402

SETTINGS = {"pinned": {}, "native": {"LLOME_NUMERICS": "native"}}
WHOLE_RUN = ["params", "test_functions", "ga_difficulty", "seed_data", "sft", "llome@sft", "llome@marge",
             "llome@dpo", "ga_baseline", "lambo2", "prompted", "figures"]
SLICE = ["params", "seed_data", "sft", "llome@marge"]
STATE = "bench-state.json"  # in --workdir: the commit copied, each setting's stage times, the stage under way


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


def stage_outputs(root: Path, stage: str) -> list[Path]:
    """The outputs of `stage` as the copy at `root` declares them, each checked to lie inside that copy.

    The stage is named through the copy's own dvc.yaml: DVC reads a bare stage name against this process's
    working directory, which is the project itself, and would give the project's outputs, not the copy's.
    """
    from dvc.repo import Repo

    root = root.resolve()
    with Repo(str(root)) as repo:
        paths = [Path(out.fs_path).resolve()
                 for found in repo.stage.collect(f"{root / 'dvc.yaml'}:{stage}") for out in found.outs]
    outside = [str(p) for p in paths if not p.is_relative_to(root)]
    if outside or not paths:
        raise SystemExit(f"{stage}: outputs {outside or 'none'} found for the copy {root}; nothing removed")
    return paths


def remove_outputs(root: Path, stage: str) -> list[str]:
    """Delete what `stage` writes in the copy at `root`, so that a rerun starts it from nothing."""
    root = root.resolve()
    paths = stage_outputs(root, stage)
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return [str(p.relative_to(root)) for p in paths]


def chosen_stages(requested: list[str] | None, pipeline: list[str]) -> list[str]:
    if not requested:
        return pipeline
    unknown = [s for s in requested if s not in pipeline]
    if unknown:
        raise SystemExit(f"--stages: {unknown} not among this bench's stages {pipeline}")
    return [s for s in pipeline if s in requested]


def open_workdir(workdir: Path, slice_only: bool) -> dict:
    """The state of a split run in `workdir`, making its two copies on the first sitting."""
    state_file = workdir / STATE
    if state_file.exists():
        state = json.loads(state_file.read_text())
        if state["slice"] != slice_only:
            raise SystemExit(f"{workdir} holds a {'slice' if state['slice'] else 'whole-run'} bench; "
                             f"{'drop' if state['slice'] else 'add'} --slice or use another --workdir")
        return state
    workdir.mkdir(parents=True, exist_ok=True)
    for name in SETTINGS:
        scratch_copy(workdir, name, slice_only)
    state = {"commit": source_commit(), "slice": slice_only, "seconds": {name: {} for name in SETTINGS},
             "running": None}
    write_json(state_file, state)
    return state


def report(seconds: dict, pipeline: list[str], workdir: Path) -> None:
    done = [s for s in pipeline if all(s in seconds[name] for name in SETTINGS)]
    print(f"\n{'stage':14s} {'pinned s':>9s} {'native s':>9s} {'ratio':>6s}")
    for stage in done:
        print(f"{stage:14s} {seconds['pinned'][stage]:9.1f} {seconds['native'][stage]:9.1f} "
              f"{seconds['pinned'][stage] / seconds['native'][stage]:6.2f}")
    pinned = sum(seconds["pinned"][s] for s in done)
    native = sum(seconds["native"][s] for s in done)
    if done:
        print(f"{'total':14s} {pinned:9.1f} {native:9.1f} {pinned / native:6.2f}"
              f"   ({pinned / 60:.1f} min pinned, {native / 60:.1f} min native)")
    missing = [s for s in pipeline if s not in done]
    if missing:
        print(f"not yet measured: {missing}")
    else:
        locks = [(workdir / name / "dvc.lock").read_text() for name in SETTINGS]
        print("\ndvc.lock of the two settings:", "identical" if locks[0] == locks[1] else "different (expected: "
              "the pins change the floats of round 0 and after)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice", action="store_true", help="seed 0 of MargE for 2 rounds instead of the whole run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies (their data/ and dvc.lock)")
    parser.add_argument("--workdir", type=Path, help="keep the copies and times here, to split the run over sittings")
    parser.add_argument("--stages", nargs="+", help="run only these stages now (with --workdir)")
    args = parser.parse_args()
    pipeline = SLICE if args.slice else WHOLE_RUN
    if args.stages and not args.workdir:
        parser.error("--stages needs --workdir: the stages before them must have run in the same copies")
    stages = chosen_stages(args.stages, pipeline)
    print(describe_machine())
    print(f"{'slice: seed 0, MargE, 2 rounds' if args.slice else 'the whole default run'}; stages {stages}")
    workdir = args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bench-default-run-"))
    state = open_workdir(workdir, args.slice)
    print(f"code of commit {state['commit']}, copies in {workdir}")
    try:
        for stage in stages:
            for name, extra in SETTINGS.items():
                if stage in state["seconds"][name]:
                    continue
                if state["running"] == [name, stage]:
                    print(f"  {stage} ({name}) was cut off: removed {remove_outputs(workdir / name, stage)}")
                state["running"] = [name, stage]
                write_json(workdir / STATE, state)
                state["seconds"][name][stage] = run_stage(workdir / name, stage, extra)
                state["running"] = None
                write_json(workdir / STATE, state)
                print(f"  {stage:14s} {name:7s} {state['seconds'][name][stage]:8.1f} s", flush=True)
        report(state["seconds"], pipeline, workdir)
    finally:
        if args.keep or args.workdir:
            print(f"scratch copies kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
