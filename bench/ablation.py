"""One factor at a time from the default profile's LLOME-MargE: best f after the same LLOME calls, per seed.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/ablation.py                  # every cell, then docs/ablation.md
    flock /tmp/llome-cpu.lock .venv/bin/python bench/ablation.py --cell history_pairs
    .venv/bin/python bench/ablation.py --render-only --write docs/ablation.md    # the table of the finished cells

Every cell is the default profile with one change (`CELLS`), run for `--rounds` rounds on `--seeds`. Seed data
is the default's; round 0 is shared by every cell with the default model and rebuilt per model size. Runs go
under `--workdir` and carry provenance, so a finished cell is reused and an interrupted one resumes. Each
cell's result is saved as JSON beside its runs, and the table is written from all saved results.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from machine import describe_machine
from overrides import override

from llome.config import load_profile, stage_configs
from llome.io import write_json
from llome.stages.llome_rounds import llome_method
from llome.stages.round_zero import round_zero
from llome.stages.seed_data import seed_data

ROOT = Path(__file__).resolve().parents[1]
MARGE_TRAIN = "llome.methods.marge.train"

# name -> (what changes, overrides as PATH: VALUE on the default profile)
CELLS = {
    "default": ("none: the default profile (fixed estimator, round pairs, 3 iterations, checkpoint choice, "
                "temperature schedule, the authors' next-input rule, 4×64)", {}),
    "old_estimator": ("MargE reward term averaged over the batch (the estimator before the fix)",
                      {f"{MARGE_TRAIN}.reward_reduction": "mean"}),
    "history_pairs": ("pairs from every label so far, not the round's alone", {"pairs.source": "history"}),
    "iterations_2": ("2 refinement iterations", {"llome.generation.num_iterations": 2}),
    "iterations_10": ("10 refinement iterations (the authors')", {"llome.generation.num_iterations": 10}),
    "no_checkpoint_choice": ("keep the last checkpoint", {f"{MARGE_TRAIN}.select_checkpoint": False}),
    "schedule_off": ("temperature schedule off", {"llome.generation.temperature_schedule": False}),
    "skip_copies": ("a trajectory never moves to an exact copy of its input",
                    {"llome.generation.skip_copies": True}),
    "model_6x128": ("model 6 layers × 128 (4 heads, MLP 512)",
                    {"model.gpt_neox.num_hidden_layers": 6, "model.gpt_neox.hidden_size": 128,
                     "model.gpt_neox.intermediate_size": 512}),
    "model_8x256": ("model 8 layers × 256 (8 heads, MLP 1024)",
                    {"model.gpt_neox.num_hidden_layers": 8, "model.gpt_neox.hidden_size": 256,
                     "model.gpt_neox.num_attention_heads": 8, "model.gpt_neox.intermediate_size": 1024}),
}


def apply(cfg: dict, overrides: dict) -> dict:
    """Overrides may add a key only where the method's train settings take it (reward_reduction)."""
    cfg = copy.deepcopy(cfg)
    for path, value in overrides.items():
        override(cfg, path, value, may_add=path.startswith(MARGE_TRAIN))
    return cfg


def model_tag(cfg: dict) -> str:
    neox = cfg["model"]["gpt_neox"]
    return f"{neox['num_hidden_layers']}x{neox['hidden_size']}"


def run_cell(name: str, base: dict, workdir: Path) -> dict:
    overrides = CELLS[name][1]
    cfg = apply(base, overrides)
    stages = stage_configs(cfg)
    seed_dir_ = workdir / "seed"
    if not all((seed_dir_ / f"seed_{s}.parquet").exists() for s in cfg["seeds"]):
        seed_data(stages["seed_data"], seed_dir_, progress=False)
    # Round 0 depends on the model alone among the factors here, so cells share it per model size.
    round_zero_cfg = stage_configs(apply(base, {k: v for k, v in overrides.items() if k.startswith("model.")}))["sft"]
    round_zero_dir = workdir / "round_zero" / model_tag(cfg)
    start = time.perf_counter()
    round_zero(round_zero_cfg, seed_dir_, round_zero_dir, progress=False)
    round_zero_seconds = time.perf_counter() - start
    start = time.perf_counter()
    llome_method(stages["llome_marge"], seed_dir_, round_zero_dir, workdir / "cells" / name,
                            progress=False)
    seconds = time.perf_counter() - start
    result = {"cell": name, "change": CELLS[name][0], "overrides": overrides, "rounds": cfg["llome"]["rounds"],
              "seeds": list(cfg["seeds"]), "seed_data_oracle_calls": stages["llome_marge"]["seed_data_oracle_calls"],
              "round_zero_seconds": round_zero_seconds, "seconds": seconds, "machine": describe_machine()}
    write_json(workdir / "cells" / name / "ablation.json", result)
    return result


def cell_row(cell_dir: Path, meta: dict) -> dict:
    """Per seed, from the runs themselves: best f by the last round, LLOME calls, and the last round's generations."""
    seeds = sorted(map(int, meta["seeds"]))
    rounds = pd.read_csv(cell_dir / "rounds.csv")
    trace = pd.read_csv(cell_dir / "regret.csv")
    last = rounds[rounds["round"] == meta["rounds"]].set_index("seed")
    if (cell_dir / "timing.csv").exists():  # runs since wall times left the hashed round metrics
        timing = pd.read_csv(cell_dir / "timing.csv")
        seconds = timing.drop(columns=["seed", "round"]).sum(axis=1)
    else:
        seconds = rounds[[c for c in rounds.columns if c.startswith("seconds.")]].sum(axis=1)
    return {
        "change": meta["change"], "machine": meta["machine"],
        "best": [float(trace.loc[trace["seed"] == s, "best_value"].max()) for s in seeds],
        "calls": sorted({int(trace.loc[trace["seed"] == s, "oracle_calls"].max()) - meta["seed_data_oracle_calls"]
                         for s in seeds}),
        "in_range": float(last.loc[seeds, "generation.in_range"].mean()),
        "improved": float(last.loc[seeds, "labelled.improved"].mean()),
        "mean_score": float(last.loc[seeds, "labelled.mean_score"].mean()),
        "round_seconds": float(seconds.mean()),
    }


def render(workdir: Path, rounds: int, seeds: list[int], list_missing: bool) -> tuple[str, str]:
    """The table of the cells in `workdir` run at these rounds and seeds (CELLS' order first), and the machine."""
    seeds = sorted(seeds)
    found = {}
    for path in sorted(workdir.glob("cells/*/ablation.json")):
        meta = json.loads(path.read_text())
        if meta["rounds"] == rounds and sorted(map(int, meta["seeds"])) == sorted(seeds):
            found[path.parent.name] = cell_row(path.parent, meta)
    names = [n for n in CELLS if n in found] + sorted(set(found) - set(CELLS))
    lines = [
        "| cell | change from the default | best f per seed (" + ", ".join(map(str, seeds)) + ") | median | "
        "LLOME calls | last round (mean over seeds): in range / improved / mean f of feasible labels | s per round |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in names:
        row = found[name]
        lines.append(f"| `{name}` | {row['change']} | {', '.join(f'{b:.3f}' for b in row['best'])} | "
                     f"{statistics.median(row['best']):.3f} | {'/'.join(f'{c:,}' for c in row['calls'])} | "
                     f"{row['in_range']:.0%} / {row['improved']:.1%} / {row['mean_score']:.3f} | "
                     f"{row['round_seconds']:.0f} |")
    lines += [f"| `{name}` | {change} | not run | | | | |" for name, (change, _) in CELLS.items()
              if name not in found and list_missing]
    machine = next(iter(found.values()))["machine"].removeprefix("machine: ") if found else "not run"
    return "\n".join(lines), machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", action="append", choices=list(CELLS), help="run only these cells (repeatable)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", type=Path, default=ROOT / "scratch" / "ablation")
    parser.add_argument("--write", type=Path, default=None,
                        help="fill a table block of this file (docs/ablation.md)")
    parser.add_argument("--block", default="main", help="which block: <!-- ablation table: NAME --> ... (default main)")
    parser.add_argument("--render-only", action="store_true", help="print the table of the finished cells")
    args = parser.parse_args()
    if not args.render_only:
        torch.set_num_threads(2)
        print(describe_machine(), flush=True)
        base = load_profile(ROOT / "params.yaml", "default")
        base["seeds"] = list(args.seeds)
        base["llome"]["rounds"] = args.rounds
        for name in args.cell or list(CELLS):
            result = run_cell(name, base, args.workdir)
            best = ", ".join(f"{value:.3f}" for value in cell_row(args.workdir / "cells" / name, result)["best"])
            print(f"{name}: best f {best} | round 0 {result['round_zero_seconds']:.0f} s | "
                  f"rounds {result['seconds']:.0f} s", flush=True)
    table, machine = render(args.workdir, args.rounds, args.seeds, list_missing=args.block == "main")
    block = f"{table}\n\nMeasured on: {machine}."
    print(block)
    if args.write:
        write_block(args.write, args.block, block)
        print(f"wrote block {args.block!r} of {args.write}")


def write_block(path: Path, name: str, block: str) -> None:
    """Replaces the text between the block's markers, so the prose around the table stays as written."""
    begin, end_marker = f"<!-- ablation table: {name} -->", f"<!-- /ablation table: {name} -->"
    text = path.read_text()
    start, end = text.find(begin), text.find(end_marker)
    if start < 0 or end < start:
        raise SystemExit(f"{path} has no {begin} ... {end_marker} block to fill")
    path.write_text(text[:start + len(begin)] + "\n" + block + "\n" + text[end:])


if __name__ == "__main__":
    main()
