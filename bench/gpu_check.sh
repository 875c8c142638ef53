#!/usr/bin/env bash
# GPU check: LLOME-MargE at the paper's inner-loop size on CUDA GPUs, for about 8 minutes.
#
#   bench/gpu_check.sh OUT_DIR              # needs a CUDA GPU; refuses (exit 2) without one
#   bench/gpu_check.sh OUT_DIR --dry-run    # the same path at toy size on the CPU, in seconds (the tests run it)
#
# What runs: the `paper` profile (accelerate launch with bf16, one process per GPU; six temperatures with the
# temperature schedule; n = 2000 labels per round) with its inner loop at the paper's size (200 seeds x 10
# refinement iterations x (greedy + 6 temperatures x 10 samples) = 122,000 proposals a round), one seed, and
# only what cannot be the paper's changed: no hub, so a GPT-NeoX from scratch (8 layers x 256 hidden instead of
# Pythia-2.8B) trained with the default profile's from-scratch settings, pairs capped at 20,000 per round and
# 1,024 sequences decoded at once. It runs the GA seed data, round 0 (SFT), then MargE rounds until the next one
# would not finish within GPU_CHECK_BUDGET_S seconds (default 480; a hard timeout stops it 2 minutes later).
# Then, when a pretrained checkpoint is there (models/smollm2 from `make smollm2`, or any saved model directory
# named by GPU_CHECK_PRETRAINED), round 0 and one MargE round with it at a small inner loop (20 seeds x 2
# iterations x 25 decodings, n = 200), in 40% of the budget kept for it; timings.json["pretrained"] has its times.
#
# It writes to OUT_DIR: env.json (machine, GPU, versions), timings.json (each part's seconds), rounds.jsonl (each
# round's metrics, its generation and training seconds and proposals per second), nvidia-smi.txt, and the run
# itself under OUT_DIR/work.
#
# Python: $PYTHON if set, else .venv/bin/python, else python3, as long as it imports llome's requirements
# (llome itself is imported from this checkout). Otherwise the script creates .venv-gpu and installs
# requirements/base.txt into it from PyPI, whose Linux torch wheel is the CUDA build.
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR [--dry-run]" >&2; exit 64; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
OUT="$1"
MODE=gpu
if [ $# -eq 2 ]; then [ "$2" = "--dry-run" ] || usage; MODE=dry-run; fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
BUDGET_S="${GPU_CHECK_BUDGET_S:-480}"

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
if ! "$PY" -c "import torch, transformers, trl, accelerate, pandas, llome.loop" 2>/dev/null; then
    VENV="$ROOT/.venv-gpu"
    echo "gpu_check: $PY lacks llome's requirements; installing requirements/base.txt into $VENV" >&2
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r "$ROOT/requirements/base.txt"
    PY="$VENV/bin/python"
fi

if [ "$MODE" = gpu ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA GPU: torch $("$PY" -c 'import torch; print(torch.__version__)') sees none" \
         "(torch.cuda.is_available() is False). Nothing was run; --dry-run runs the toy CPU version." >&2
    exit 2
fi

mkdir -p "$OUT"
if command -v nvidia-smi >/dev/null; then nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true; fi

# The accelerate launcher must be the one beside this interpreter (llome.launch puts its directory first on PATH).
cd "$ROOT"
timeout "$((BUDGET_S + 120))" "$PY" - "$OUT" "$MODE" "$BUDGET_S" <<'PY'
import json
import os
import sys
import time
from pathlib import Path

import torch

from bench.machine import describe_machine
from llome.config import check_profile, load_profile, stage_configs
from llome.loop import run_llome
from llome.rounds import round_timing
from llome.stages.common import load_function, read_seed_table, seed_dir
from llome.stages.round_zero import round_zero
from llome.stages.seed_data import seed_data

out, mode, budget = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
dry = mode == "dry-run"
started = time.perf_counter()
gpus = torch.cuda.device_count()

# The paper profile, with its inner loop at the paper's size and everything that cannot be the paper's resized.
sizes = {
    "seeds": [0],
    "device": "cpu" if dry else "auto",
    "launcher.num_processes": 1 if dry else gpus,
    "model.name_or_path": None,
    "model.gpt_neox": {"num_hidden_layers": 8, "hidden_size": 256, "num_attention_heads": 8,
                       "intermediate_size": 1024, "max_position_embeddings": 256},
    "pairs.max_pairs": 20000,
    "sft": {"learning_rate": 1e-3, "num_train_epochs": 2, "per_device_train_batch_size": 64,
            "gradient_accumulation_steps": 1, "warmup_steps": 0.05, "weight_decay": 0.0},
    "llome.methods": {"marge": {"objective": "marge", "train": {
        "learning_rate": 2e-4, "num_train_epochs": 1, "per_device_train_batch_size": 64, "warmup_steps": 0.05,
        "alpha": 1.0, "beta": 10.0}}},
    "llome.generation.batch_size": 1024,
}
if dry:
    sizes.update({
        "seed_data.num_particles": 64, "seed_data.num_steps": 2,
        "model.gpt_neox": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                           "intermediate_size": 64, "max_position_embeddings": 256},
        "pairs.max_pairs": 200,
        "llome.generation.num_seeds": 4, "llome.generation.num_iterations": 1, "llome.generation.num_samples": 1,
        "llome.generation.batch_size": 64, "llome.selection.num_to_label": 8, "llome.rounds": 1,
    })


def resized_paper_profile(sizes: dict, what: str) -> tuple[dict, dict]:
    """The paper profile with `sizes` (dotted key paths) put in: (the profile, its stage configs)."""
    profile = load_profile(Path("params.yaml"), "paper")
    for path, value in sizes.items():
        *parents, leaf = path.split(".")
        node = profile
        for key in parents:
            node = node[key]
        node[leaf] = value
    for train in [profile["sft"], *(m["train"] for m in profile["llome"]["methods"].values())]:
        train["disable_tqdm"] = True
    problems = check_profile(profile)
    if problems:
        sys.exit(f"{what} is not valid:\n  " + "\n  ".join(f"{where}: {why}" for where, why in problems))
    return profile, stage_configs(profile)


cfg, stages = resized_paper_profile(sizes, "the resized paper profile")

env = {"mode": mode, "machine": describe_machine(), "torch": torch.__version__, "cuda": torch.version.cuda, "num_gpus": gpus,
       "gpus": [torch.cuda.get_device_name(i) for i in range(gpus)],
       "bf16_supported": bool(gpus and torch.cuda.is_bf16_supported()), "budget_s": budget,
       "launcher": stages["llome_marge"]["launcher"], "model": cfg["model"]["gpt_neox"],
       "generation": cfg["llome"]["generation"], "selection": cfg["llome"]["selection"]}
out.mkdir(parents=True, exist_ok=True)
(out / "env.json").write_text(json.dumps(env, indent=2) + "\n")
work = out / "work"
timings = {}


def save_timings():
    timings["total_s"] = round(time.perf_counter() - started, 2)
    (out / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")


t = time.perf_counter()
seed_data(stages["seed_data"], work / "seed", progress=False)
timings["seed_data_s"] = round(time.perf_counter() - t, 2)
t = time.perf_counter()
round_zero(stages["sft"], work / "seed", work / "sft")
timings["round0_sft_s"] = round(time.perf_counter() - t, 2)
save_timings()

method = stages["llome_marge"]
function = load_function(method["function"], seed=method["function_seed"])
run_dir, last = work / "llome_marge" / "seed_0", 0.0
# A pretrained-model round (below) runs after these; when a checkpoint is there, it keeps 40% of the budget.
wants_pretrained = bool(os.environ.get("GPU_CHECK_PRETRAINED")) or (not dry and Path("models/smollm2").is_dir())
pretrained_reserve = 0.4 * budget if wants_pretrained else 0.0
timings["rounds_s"] = []
for index in range(1, cfg["llome"]["rounds"] + 1):
    if time.perf_counter() - started + 1.2 * last > budget - pretrained_reserve:
        break  # the next round would not finish in the budget
    method["rounds"] = index  # run_llome resumes: only round `index` runs
    t = time.perf_counter()
    metrics = run_llome(method, function=function, seed_table=read_seed_table(work / "seed", 0),
                        round_zero_dir=seed_dir(work / "sft", 0), run_dir=run_dir, seed=0, progress=False)[-1]
    last = time.perf_counter() - t
    step_seconds = round_timing(run_dir, index)
    generation_s, training_s = step_seconds["generation"], step_seconds["training"]
    row = {"round": index, "seconds": round(last, 2), "generation_s": round(generation_s, 2),
           "training_s": round(training_s, 2), "proposals": metrics["num_candidates"],
           "proposals_per_s": round(metrics["num_candidates"] / max(generation_s, 1e-9), 1),
           "peak_generation_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpus else None,
           "metrics": metrics}
    with open(out / "rounds.jsonl", "a") as handle:
        handle.write(json.dumps(row) + "\n")
    timings["rounds_s"].append(round(last, 2))
    save_timings()
    print(f"round {index}: {last:.0f} s (generation {generation_s:.0f} s, training {training_s:.0f} s), "
          f"{metrics['num_candidates']} proposals, best labelled {metrics['labelled'].get('best_score')}",
          flush=True)
timings["rounds_done"] = len(timings["rounds_s"])
save_timings()


def pretrained_model():
    """(directory, gguf file or None) of the pretrained checkpoint to try, or None when there is none."""
    named = os.environ.get("GPU_CHECK_PRETRAINED")
    folder = Path(named) if named else (None if dry else Path("models/smollm2"))
    if folder is None or not folder.is_dir():
        return None
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if ggufs:
        return folder, ggufs[0]
    return (folder, None) if (folder / "config.json").exists() else None


# One MargE round of a pretrained LLM (`make smollm2`, or GPU_CHECK_PRETRAINED=<dir>), at an inner loop small
# enough to finish in what is left of the budget: its seconds per round and proposals per second are what a
# pretrained-model profile on this GPU would cost.
found = pretrained_model()
if found is None:
    timings["pretrained"] = "skipped: no checkpoint (run `make smollm2` first, or set GPU_CHECK_PRETRAINED)"
else:
    folder, gguf = found
    p_sizes = {
        "seeds": [0], "device": "cpu" if dry else "auto", "launcher.num_processes": 1 if dry else gpus,
        "model.name_or_path": str(folder), "model.gguf_file": gguf, "pairs.max_pairs": 16 if dry else 2000,
        "sft.num_train_epochs": 1, "sft.per_device_train_batch_size": 8,
        "llome.methods": {"marge": {"objective": "marge", "train": {
            "learning_rate": 1e-5, "num_train_epochs": 1, "per_device_train_batch_size": 8, "warmup_steps": 0.05,
            "alpha": 1.0, "beta": 10.0}}},
        "llome.generation.num_seeds": 2 if dry else 20, "llome.generation.num_iterations": 1 if dry else 2,
        "llome.generation.num_samples": 1 if dry else 4, "llome.generation.batch_size": 64 if dry else 512,
        "llome.selection.num_to_label": 4 if dry else 200, "llome.rounds": 1,
    }
    _, p_stages = resized_paper_profile(p_sizes, "the pretrained check's profile")
    t = time.perf_counter()
    round_zero(p_stages["sft"], work / "seed", work / "pretrained_sft")
    p_round0 = time.perf_counter() - t
    p_method = p_stages["llome_marge"]
    p_run_dir = work / "pretrained_marge" / "seed_0"
    t = time.perf_counter()
    p_metrics = run_llome(p_method, function=function, seed_table=read_seed_table(work / "seed", 0),
                          round_zero_dir=seed_dir(work / "pretrained_sft", 0), run_dir=p_run_dir, seed=0,
                          progress=False)[-1]
    p_seconds = time.perf_counter() - t
    p_steps = round_timing(p_run_dir, 1)
    timings["pretrained"] = {
        "model": str(folder / gguf) if gguf else str(folder), "round0_sft_s": round(p_round0, 2),
        "round_s": round(p_seconds, 2), "generation_s": round(p_steps["generation"], 2),
        "training_s": round(p_steps["training"], 2), "proposals": p_metrics["num_candidates"],
        "proposals_per_s": round(p_metrics["num_candidates"] / max(p_steps["generation"], 1e-9), 1),
        "labelled": p_metrics["oracle_calls"], "in_range": p_metrics["generation"].get("in_range"),
    }
    print(f"pretrained {folder}: round 0 {p_round0:.0f} s, one MargE round {p_seconds:.0f} s", flush=True)
save_timings()
print(json.dumps(timings))
PY
