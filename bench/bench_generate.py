"""Refinement throughput: candidates with their likelihoods per second, the batched engine against the old one.

    PYTHONPATH=$PWD flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_generate.py

For the default profile's GPT-NeoX (4 layers x 64) and the authors' from-scratch size (6 x 64): build the model,
SFT it briefly on a copy task so that its generations have realistic lengths and validity, then time `refine`
against the reference engine (tests/generate_reference.py: `model.generate` per mode and chunk, text parsing, then a
teacher-forced pass for the likelihoods) on the same seeds, with the default profile's generation settings. Both
sides produce the same number of candidates, each with its likelihood when valid. The last line compares them on
the default model.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from generate_reference import reference_refine  # noqa: E402

from llome.config import load_profile  # noqa: E402
from llome.generate import GenerationConfig, refine  # noqa: E402
from llome.loop import model_spec  # noqa: E402
from llome.models import build_model_and_tokenizer  # noqa: E402
from llome.train import train_sft  # noqa: E402

DIM, NUM_STATES, NUM_SEEDS = 32, 32, 32
AUTHORS_SIZE = {"num_hidden_layers": 6, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256}


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def copy_model(spec: dict, x: np.ndarray):
    rng = np.random.default_rng(1)
    y = x.copy()
    edit = rng.random(x.shape) < 0.05
    y[edit] = rng.integers(0, NUM_STATES, size=int(edit.sum()))
    pairs = pd.DataFrame({"x": [tuple(map(int, r)) for r in x], "y": [tuple(map(int, r)) for r in y],
                          "x_score": 0.0, "y_score": 1.0, "reward": 1.0})
    model, tokenizer = build_model_and_tokenizer(spec, NUM_STATES)
    with TemporaryDirectory() as tmp:
        model = train_sft(model, tokenizer, pairs, {"learning_rate": 2e-3, "num_train_epochs": 1,
                                                    "per_device_train_batch_size": 32, "disable_tqdm": True,
                                                    "logging_steps": 1000, "save_steps": 100000}, tmp)
    return model, tokenizer


def timed(fn) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def describe(name: str, out: pd.DataFrame, seconds: float) -> float:
    rate = len(out) / seconds
    valid = out["status"] == "valid"
    print(f"  {name:<44} {len(out):5d} candidates in {seconds:6.2f} s = {rate:7.0f}/s "
          f"(valid {valid.mean():.2f}, new {np.mean(out.loc[valid, 'distance'] > 0):.2f})")
    return rate


def main() -> None:
    torch.set_num_threads(2)
    cfg = load_profile(ROOT / "params.yaml", "default")
    generation = GenerationConfig.from_dict(cfg["llome"]["generation"])
    print(f"CPU: {cpu_name()}; torch threads: {torch.get_num_threads()}; torch {torch.__version__}")
    print(f"generation: {NUM_SEEDS} seeds, L={DIM}, v={NUM_STATES}, {generation}")
    x = np.random.default_rng(0).integers(0, NUM_STATES, size=(2000, DIM))
    seeds = [tuple(map(int, r)) for r in x[:NUM_SEEDS]]
    default_size = {k: v for k, v in model_spec(cfg["model"], 0).items()}
    speedups = {}
    for label, spec in (("default 4x64", default_size), ("authors 6x64", {**default_size, **AUTHORS_SIZE})):
        model, tokenizer = copy_model(spec, x)
        print(f"{label} ({sum(p.numel() for p in model.parameters()):,} parameters):")
        args = dict(dim=DIM, num_states=NUM_STATES, seed=0)
        ours, ours_s = timed(lambda: refine(model, tokenizer, seeds, config=generation, progress=False, **args))
        large = replace(generation, batch_size=4096)
        big, big_s = timed(lambda: refine(model, tokenizer, seeds, config=large, progress=False, **args))
        shared = replace(large, shared_trajectory=True)
        same, same_s = timed(lambda: refine(model, tokenizer, seeds, config=shared, progress=False, **args))
        theirs, theirs_s = timed(lambda: reference_refine(model, tokenizer, seeds, config=generation, **args))
        describe(f"new, batch {generation.batch_size}", ours, ours_s)
        new_rate = describe(f"new, batch {large.batch_size}", big, big_s)
        describe(f"new, batch {large.batch_size}, shared trajectories", same, same_s)
        reference_rate = describe(f"reference, batch {generation.batch_size}, shared trajectories", theirs, theirs_s)
        speedups[label] = (new_rate, reference_rate)
        print(f"  {label}: {new_rate / reference_rate:.1f}x")
    new_rate, reference_rate = speedups["default 4x64"]
    print(f"refine speedup: {new_rate / reference_rate:.1f}x "
          f"(new {new_rate:.0f} candidates/s, reference {reference_rate:.0f} candidates/s)")


if __name__ == "__main__":
    main()
