"""Generation throughput of the default model: sequences per second, ours against a naive loop.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_generate.py

Builds the default profile's GPT-NeoX (untrained weights decode as fast as trained ones, but to keep
lengths realistic it first SFTs it briefly on a copy task), then times `refine` (batched, KV cache,
inference mode) against the same number of sequences decoded one prompt at a time without the KV
cache, measured in the same run.
"""

from __future__ import annotations

import time
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
import pandas as pd
import torch

from llome.config import load_profile
from llome.generate import GenerationConfig, refine
from llome.loop import model_spec
from llome.models import build_model_and_tokenizer
from llome.text import format_prompt
from llome.train import train_sft


def main() -> None:
    torch.set_num_threads(2)
    cfg = load_profile(Path(__file__).resolve().parents[1] / "params.yaml", "default")
    dim, num_states = 32, 32
    rng = np.random.default_rng(0)
    x = rng.integers(0, num_states, size=(2000, dim))
    y = x.copy()
    edit = rng.random(x.shape) < 0.05
    y[edit] = rng.integers(0, num_states, size=int(edit.sum()))
    pairs = pd.DataFrame({"x": [tuple(map(int, r)) for r in x], "y": [tuple(map(int, r)) for r in y],
                          "x_score": 0.0, "y_score": 1.0, "reward": 1.0})
    model, tokenizer = build_model_and_tokenizer(model_spec(cfg["model"], 0), num_states)
    with TemporaryDirectory() as tmp:
        model = train_sft(model, tokenizer, pairs, {"learning_rate": 2e-3, "num_train_epochs": 2,
                                                    "per_device_train_batch_size": 64, "disable_tqdm": True,
                                                    "logging_steps": 1000, "save_steps": 100000}, tmp)
    gen = GenerationConfig.from_dict({**cfg["llome"]["generation"], "num_iterations": 1})
    seeds = [tuple(map(int, r)) for r in x[:64]]
    start = time.perf_counter()
    out = refine(model, tokenizer, seeds, dim=dim, num_states=num_states, config=gen, seed=0, progress=False)
    batched = time.perf_counter() - start
    rate = len(out) / batched
    print(f"refine: {len(out)} sequences in {batched:.1f} s = {rate:.0f} sequences/s "
          f"(valid {np.mean(out['status'] == 'valid'):.2f})")

    model.eval()
    naive_n = 32
    start = time.perf_counter()
    with torch.inference_mode():
        for seq in seeds[:naive_n]:
            ids = tokenizer(format_prompt(seq), return_tensors="pt", add_special_tokens=False)["input_ids"]
            for _ in range(2 * dim + 2):
                logits = model(input_ids=ids, use_cache=False).logits[:, -1]
                token = torch.multinomial(torch.softmax(logits, -1), 1)
                ids = torch.cat([ids, token], dim=1)
                if token.item() == tokenizer.eos_token_id:
                    break
    naive = naive_n / (time.perf_counter() - start)
    print(f"naive one-at-a-time, no KV cache: {naive:.1f} sequences/s; batched refine is {rate / naive:.1f}x faster")


if __name__ == "__main__":
    main()
