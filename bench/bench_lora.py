"""A MargE training of SmolLM2-135M-Instruct with every weight trained against LoRA adapters, on this machine.

    make smollm2 && flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_lora.py [--steps 2] [--batch-size 8]

The `pretrained` profile's MargE settings (its learning rate, alpha, beta, batch size), on random L = 32 pairs in the
project's text format, for `--steps` optimiser steps without held-out evaluation or checkpoint choice, once with full fine-tuning (the
paper's choice, `model.lora: null`) and once with LoRA at r = 8 on q_proj and v_proj (`docs/smollm2.md`, "LoRA").
Each starts from the same loaded model, so the ratio is the adapters' saving on the step itself: the frozen
reference's forward pass and the backward pass through the activations stay in both.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import llome  # noqa: E402,F401  (the pinned numerics, before torch loads)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from machine import describe_machine  # noqa: E402

from llome.config import load_profile, stage_configs  # noqa: E402
from llome.jobs import model_spec  # noqa: E402
from llome.models import build_model_and_tokenizer  # noqa: E402
from llome.numerics import apply  # noqa: E402
from llome.smollm2 import gguf_path  # noqa: E402
from llome.train import train_marge  # noqa: E402

LORA = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}


def random_pairs(rows: int, length: int, states: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, states, size=(rows, length))
    y = x.copy()
    edits = rng.random(size=x.shape) < 0.1  # about the edit distance of an LLOME pair
    y[edits] = rng.integers(0, states, size=int(edits.sum()))
    return pd.DataFrame({"x": [tuple(map(int, r)) for r in x], "y": [tuple(map(int, r)) for r in y],
                         "reward": rng.random(rows)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    if not gguf_path().is_file():
        raise SystemExit(f"{gguf_path()} is missing: run `make smollm2` first")
    transformers_logging.set_verbosity_error()
    profile = load_profile("params.yaml", "pretrained")
    stage = stage_configs(profile)["llome_marge"]
    apply(stage["numerics"]["threads"])
    print(describe_machine())

    start = time.perf_counter()
    model, tokenizer = build_model_and_tokenizer(model_spec(profile["model"], seed=0), 32)
    print(f"load SmolLM2 from its GGUF file: {time.perf_counter() - start:.1f} s")
    pairs = random_pairs(args.steps * args.batch_size, 32, 32)
    cfg = {**stage["train"], "per_device_train_batch_size": args.batch_size, "select_checkpoint": False,
           "eval_fraction": 0.0, "seed": 0, "num_states": 32}
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, lora in (("full fine-tuning", None), ("LoRA r=8 q_proj,v_proj", LORA)):
            policy, reference = copy.deepcopy(model).train(), copy.deepcopy(model).eval()
            start = time.perf_counter()
            train_marge(policy, reference, tokenizer, pairs, cfg, f"{tmp}/{len(seconds)}", lora=lora)
            seconds[name] = time.perf_counter() - start
            print(f"{name}: {args.steps} MargE steps at batch {args.batch_size} in {seconds[name]:.1f} s "
                  f"({seconds[name] / args.steps:.1f} s a step, the trainer's set-up included)", flush=True)
            del policy, reference
    full, lora = seconds.values()
    print(f"LoRA / full: {lora / full:.2f} of the time ({full / lora:.2f}x faster)")


if __name__ == "__main__":
    main()
