"""SFT training throughput on CPU: llome.train's TRL setup against a plain PyTorch loop, measured in the same run.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_train.py [--steps 30] [--batch-size 64]

For each model size it reports the tokens/s of SFTTrainer as llome.train configures it, the tokens/s of a
hand-written loop doing the same work (same model init, batches, AdamW and masked loss), and their ratio: what
the Trainer machinery costs. It also reports the padding fraction of the batches (zero when every pair has the
same length, as with the word-level tokenizer) and the thread count, and, for the default model, the slowdown of
TRL's own defaults (bf16 autocast and activation checkpointing on).
"""

from __future__ import annotations

import argparse
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
from llome.train import sft_trainer  # noqa: E402

NUM_STATES, LENGTH = 32, 32  # the main Ehrlich function
SIZES = {
    "tiny 2x32": {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64},
    "authors' 6x64": {"num_hidden_layers": 6, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256},
    "4x128": {"num_hidden_layers": 4, "hidden_size": 128, "num_attention_heads": 4, "intermediate_size": 512},
}


def random_pairs(count: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    xs = [tuple(int(s) for s in rng.integers(0, NUM_STATES, LENGTH)) for _ in range(count)]
    ys = [tuple(int(s) for s in rng.integers(0, NUM_STATES, LENGTH)) for _ in range(count)]
    return pd.DataFrame({"x": xs, "y": ys, "x_score": 0.0, "y_score": 0.5, "reward": 0.5})


def make_trainer(size: dict, pairs: pd.DataFrame, steps: int, batch_size: int, output_dir: str, **overrides):
    tokenizer = build_tokenizer(NUM_STATES)
    model = build_model({**size, "max_position_embeddings": 256, "seed": 0}, tokenizer)
    cfg = {"max_steps": steps, "per_device_train_batch_size": batch_size, "learning_rate": 1e-3,
           "logging_steps": 10 * steps, "save_steps": 10 * steps, "disable_tqdm": True, **overrides}
    return sft_trainer(model, tokenizer, pairs, cfg, output_dir)


def batches(trainer, steps: int) -> list[dict]:
    loader = iter(trainer.get_train_dataloader())
    return [next(loader) for _ in range(steps)]


def trainer_tokens_per_second(trainer, tokens: int) -> float:
    start = time.perf_counter()
    trainer.train()
    return tokens / (time.perf_counter() - start)


def plain_loop_tokens_per_second(trainer, steps: list[dict], tokens: int) -> float:
    """The same work without the Trainer: forward with masked labels, backward, clip, AdamW step."""
    model = trainer.model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    start = time.perf_counter()
    for batch in steps:
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    options = parser.parse_args()
    torch.set_num_threads(2)  # the machine's cores; more threads than cores only adds contention
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    pairs = random_pairs(options.steps * options.batch_size)
    print(describe_machine())
    print(f"L={LENGTH}, v={NUM_STATES}, batch {options.batch_size}, {options.steps} steps")
    print(f"{'model':>14} {'params':>8} {'pad %':>6} {'TRL tok/s':>10} {'plain tok/s':>12} {'TRL/plain':>10}")

    with tempfile.TemporaryDirectory() as scratch:
        for name, size in SIZES.items():
            trainer = make_trainer(size, pairs, options.steps, options.batch_size, f"{scratch}/{name}")
            steps = batches(trainer, options.steps)
            real = sum(int(batch["attention_mask"].sum()) for batch in steps)
            padded = sum(batch["attention_mask"].numel() for batch in steps)
            params = sum(p.numel() for p in trainer.model.parameters())
            # the plain loop first, on a copy of the initial weights, so both start from the same model
            reference = make_trainer(size, pairs, options.steps, options.batch_size, f"{scratch}/{name}-ref")
            plain = plain_loop_tokens_per_second(reference, steps, real)
            trl = trainer_tokens_per_second(trainer, real)
            print(f"{name:>14} {params:>8,} {100 * (1 - real / padded):>6.1f} {trl:>10,.0f} {plain:>12,.0f} "
                  f"{trl / plain:>10.2f}")

        size = SIZES["authors' 6x64"]
        ours = make_trainer(size, pairs, options.steps, options.batch_size, f"{scratch}/ours")
        trl_defaults = make_trainer(size, pairs, options.steps, options.batch_size, f"{scratch}/trl-defaults",
                                    bf16=True, activation_checkpointing=True)
        tokens = sum(int(batch["attention_mask"].sum()) for batch in batches(ours, options.steps))
        fast = trainer_tokens_per_second(ours, tokens)
        slow = trainer_tokens_per_second(trl_defaults, tokens)
        print(f"authors' 6x64 with TRL's defaults (bf16 + activation checkpointing): {slow:,.0f} tok/s, "
              f"{fast / slow:.1f}x slower than llome.train's settings ({fast:,.0f} tok/s)")


if __name__ == "__main__":
    main()
