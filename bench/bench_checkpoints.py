"""What held-out evaluation and checkpoint selection cost a training run, on CPU.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_checkpoints.py [--pairs 2000] [--objective marge]

One round's training at the default profile's size (L=32, v=32, GPT-NeoX 4x64, batch 16, one epoch) three ways:
nothing held out (eval_fraction 0); 5% held out and evaluated 10 times (eval loss only); and the same with
checkpoint selection (plus a greedy decode of up to 64 held-out prompts per evaluation, and the weights kept in
memory). The model is fresh, so its decodes never stop early: the worst case for the decode's cost.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from machine import describe_machine  # noqa: E402

from llome.models import build_model  # noqa: E402
from llome.tokenizer import build_tokenizer  # noqa: E402
from llome.train import train_dpo, train_marge, train_sft  # noqa: E402

NUM_STATES, LENGTH = 32, 32
MODEL = {"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256,
         "max_position_embeddings": 256, "seed": 0}
SETTINGS = {
    "nothing held out": {"eval_fraction": 0.0},
    "5% held out, 10 evals": {"eval_fraction": 0.05, "num_evals": 10},
    "+ checkpoint selection": {"eval_fraction": 0.05, "num_evals": 10, "select_checkpoint": True,
                               "num_states": NUM_STATES},
}


def random_pairs(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    xs = rng.integers(0, NUM_STATES, (count, LENGTH))
    ys = np.where(rng.random(xs.shape) < 0.1, rng.integers(0, NUM_STATES, xs.shape), xs)
    return pd.DataFrame({"x": [tuple(map(int, r)) for r in xs], "y": [tuple(map(int, r)) for r in ys],
                         "reward": rng.random(count)})


def run(objective: str, pairs: pd.DataFrame, settings: dict, output_dir: str) -> float:
    tokenizer = build_tokenizer(NUM_STATES)
    model = build_model(MODEL, tokenizer)
    cfg = {"learning_rate": 2e-4, "num_train_epochs": 1, "per_device_train_batch_size": 16, "logging_steps": 10,
           "save_steps": 10_000, "disable_tqdm": True, **settings}
    start = time.perf_counter()
    if objective == "sft":
        train_sft(model, tokenizer, pairs, cfg, output_dir)
    elif objective == "marge":
        train_marge(model, copy.deepcopy(model), tokenizer, pairs, cfg, output_dir)
    else:
        triples = pairs.rename(columns={"y": "y_w"}).assign(y_l=pairs["x"])
        train_dpo(model, copy.deepcopy(model), tokenizer, triples, cfg, output_dir)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--objective", choices=("sft", "marge", "dpo"), default="marge")
    options = parser.parse_args()
    torch.set_num_threads(2)
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    pairs = random_pairs(options.pairs)
    print(describe_machine())
    print(f"{options.objective}, {options.pairs} pairs, L={LENGTH}, v={NUM_STATES}")
    with tempfile.TemporaryDirectory() as scratch:
        # The first training run of a process pays one-time costs (imports, thread pools); pay them untimed.
        for settings in SETTINGS.values():
            run(options.objective, pairs.head(64), settings, f"{scratch}/warm-up-{len(settings)}")
        for name, settings in SETTINGS.items():
            seconds = run(options.objective, pairs, settings, f"{scratch}/{len(name)}")
            print(f"{name:>24}: {seconds:6.1f} s")


if __name__ == "__main__":
    main()
