"""Refinement throughput: candidates with their likelihoods per second, the batched engine against the old one.

    PYTHONPATH=$PWD flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_generate.py

For the default profile's GPT-NeoX (4 layers x 64) and the authors' from-scratch size (6 x 64): build the model,
SFT it briefly on a copy task so that its generations have realistic lengths and validity, then time `refine`
against the reference engine (tests/generate_reference.py: `model.generate` per mode and chunk, text parsing, then a
teacher-forced pass for the likelihoods) on the same seeds, with the default profile's generation settings. Both
produce the same number of candidates, each with its likelihood when valid. Each size also reports a floor: the
rate at which the model's matmuls and attention alone run at that batch (`decode_floor`), which bounds what any
engine can reach on this machine. The last line compares the engines on the
default model, both at the profile's settings; the new engine in its default (the paper's) trajectory shape, which
prefills a distinct prompt per trajectory after the first iteration where the reference's shape has one per seed.
"""

from __future__ import annotations

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
from machine import describe_machine  # noqa: E402

from llome.config import load_profile  # noqa: E402
from llome.generate import GenerationConfig, refine  # noqa: E402
from llome.jobs import model_spec  # noqa: E402
from llome.models import build_model_and_tokenizer  # noqa: E402
from llome.text import format_completion, format_prompt  # noqa: E402
from llome.train import train_sft  # noqa: E402

DIM, NUM_STATES, NUM_SEEDS = 32, 32, 32
AUTHORS_SIZE = {"num_hidden_layers": 6, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256}


def copy_model(spec: dict, x: np.ndarray):
    rng = np.random.default_rng(1)
    y = x.copy()
    edit = rng.random(x.shape) < 0.05
    y[edit] = rng.integers(0, NUM_STATES, size=int(edit.sum()))
    pairs = pd.DataFrame({"x": [tuple(map(int, r)) for r in x], "y": [tuple(map(int, r)) for r in y],
                          "x_score": 0.0, "y_score": 1.0, "reward": 1.0})
    model, tokenizer = build_model_and_tokenizer(spec, NUM_STATES)
    start = time.perf_counter()
    with TemporaryDirectory() as tmp:  # then about 3/4 of its generations are valid at the profile's temperatures
        model = train_sft(model, tokenizer, pairs, {"learning_rate": 3e-3, "num_train_epochs": 3, "warmup_steps": 0.05,
                                                    "per_device_train_batch_size": 16, "disable_tqdm": True,
                                                    "logging_steps": 100000, "save_steps": 100000}, tmp)
    return model, tokenizer, time.perf_counter() - start


def timed(fn) -> tuple[pd.DataFrame, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def describe(name: str, out: pd.DataFrame, seconds: float) -> float:
    rate = len(out) / seconds
    valid = out["status"] == "valid"
    print(f"  {name:<52} {len(out):5d} candidates in {seconds:6.2f} s = {rate:5.0f}/s "
          f"(valid {valid.mean():.2f}, new {np.mean(out.loc[valid, 'distance'] > 0):.2f})")
    return rate


def decode_floor(model, tokenizer, seeds: list[tuple[int, ...]], rows: int, repeats: int = 30) -> float:
    """Candidates/s that no engine built from torch ops beats here: one decode step's matmuls and one attention read.

    With random tensors of the model's shapes, times what every decoded token must cost at `rows` rows: the
    weight matmuls of all layers and the head, and scaled-dot-product attention over a cache as long as the
    mean context of a decode (prompt plus half the completion). Norms, activations, sampling, cache writes,
    the prefill and the Python around them all count as zero, so the real engine is slower than this.
    """
    config = model.config
    d, ff, layers, heads = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_attention_heads
    prompt = len(tokenizer(format_prompt(seeds[0]))["input_ids"])
    steps = len(tokenizer(format_completion(seeds[0]), add_special_tokens=False)["input_ids"]) + 1  # + eos
    context = prompt + steps // 2
    generator = torch.Generator().manual_seed(0)
    weights = [(torch.randn(d, 3 * d, generator=generator), torch.randn(d, d, generator=generator),
                torch.randn(d, ff, generator=generator), torch.randn(ff, d, generator=generator))
               for _ in range(layers)]
    head = torch.randn(d, config.vocab_size, generator=generator)
    x = torch.randn(rows, d, generator=generator)
    keys = torch.randn(rows, heads, context, d // heads, generator=generator)
    values = torch.randn(rows, heads, context, d // heads, generator=generator)
    query = torch.randn(rows, heads, 1, d // heads, generator=generator)

    def step():
        for qkv, out, up, down in weights:
            (x @ qkv)[:, :d] @ out
            (x @ up) @ down
            torch.nn.functional.scaled_dot_product_attention(query, keys, values)
        x @ head

    step()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    per_step = (time.perf_counter() - start) / repeats
    return rows / (per_step * steps)


def main() -> None:
    torch.set_num_threads(2)
    cfg = load_profile(ROOT / "params.yaml", "default")
    profile = GenerationConfig.from_dict(cfg["llome"]["generation"])
    print(describe_machine())
    print(f"generation: {NUM_SEEDS} seeds, L={DIM}, v={NUM_STATES}, {profile}")
    x = np.random.default_rng(0).integers(0, NUM_STATES, size=(2000, DIM))
    seeds = [tuple(map(int, r)) for r in x[:NUM_SEEDS]]
    default_size = model_spec(cfg["model"], 0)
    rates = {}
    for label, spec in (("default 4x64", default_size), ("authors 6x64", {**default_size, **AUTHORS_SIZE})):
        model, tokenizer, trained = copy_model(spec, x)
        print(f"{label} ({sum(p.numel() for p in model.parameters()):,} parameters, SFT {trained:.0f} s):")
        args = dict(dim=DIM, num_states=NUM_STATES, seed=0)
        runs = {
            f"new, paper shape, batch {profile.batch_size} (profile)": profile,
            "new, paper shape, batch 1024": replace(profile, batch_size=1024),
            f"new, shared trajectories, batch {profile.batch_size}": replace(profile, shared_trajectory=True),
        }
        for name, config in runs.items():
            out, seconds = timed(lambda: refine(model, tokenizer, seeds, config=config, progress=False, **args))
            rates[label, name] = describe(name, out, seconds)
        out, seconds = timed(lambda: reference_refine(model, tokenizer, seeds, config=profile, **args))
        rates[label, "reference"] = describe(f"reference (shared trajectories), batch {profile.batch_size}", out,
                                             seconds)
        headline = rates[label, f"new, paper shape, batch {profile.batch_size} (profile)"]
        print(f"  {label}: {headline / rates[label, 'reference']:.1f}x at the profile's settings")
        floor = decode_floor(model, tokenizer, seeds, profile.batch_size)
        print(f"  {label}: floor of any engine here (matmuls + attention only) {floor:.0f} candidates/s = "
              f"{floor / rates[label, 'reference']:.1f}x the reference; the new engine reaches {headline / floor:.0%} of it")
    new = rates["default 4x64", f"new, paper shape, batch {profile.batch_size} (profile)"]
    reference = rates["default 4x64", "reference"]
    print(f"refine speedup: {new / reference:.1f}x "
          f"(new {new:.0f} candidates/s, reference {reference:.0f} candidates/s)")


if __name__ == "__main__":
    main()
