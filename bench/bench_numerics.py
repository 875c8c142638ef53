"""What pinned numerics cost, and whether each pin changes the bits, on this machine.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_numerics.py [--steps 40] [--repeats 3]

Each setting runs in a child process of its own (the pins are read when torch loads): it builds the default
4x64 GPT-NeoX from its seed, trains it for a fixed number of SFT steps on fixed random pairs with the project's
SFT trainer, then scores a batch of completions (the log-likelihood pass of generation). It prints the time of
each part (the minimum over repeats) as a ratio to the unpinned run of the same bench, and a hash of the
trained weights: equal hashes mean the setting leaves the result unchanged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

# Variants of the pins are set by hand, with llome's own pinning off so that it does not refuse them.
SETTINGS = {
    "native": {"LLOME_NUMERICS": "native"},
    "pinned": {},
    "pinned + older-CPU caps": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "ATen+oneDNN AVX2, MKL_CBWR=AVX2": {"LLOME_NUMERICS": "native", "ATEN_CPU_CAPABILITY": "avx2",
                                       "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"},
    "ATen+oneDNN AVX2, MKL unpinned": {"LLOME_NUMERICS": "native", "ATEN_CPU_CAPABILITY": "avx2",
                                      "ONEDNN_MAX_CPU_ISA": "AVX2"},
}
PIN_NAMES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "LLOME_NUMERICS")


def child(steps: int) -> dict:
    import time

    import llome.numerics as numerics  # first: the pins must be in place before torch loads
    import numpy as np
    import pandas as pd
    import torch

    from llome.generate import completion_logliks
    from llome.models import build_model
    from llome.text import format_completion, format_prompt
    from llome.tokenizer import build_tokenizer
    from llome.train import sft_trainer

    numerics.apply(2)
    num_states, length = 32, 32
    rng = np.random.default_rng(0)
    rows = [tuple(int(s) for s in rng.integers(0, num_states, length)) for _ in range(max(steps * 16, 1024))]
    pairs = pd.DataFrame({"x": rows[:steps * 16], "y": rows[:steps * 16][::-1], "x_score": 0.0, "y_score": 0.5, "reward": 0.5})
    tokenizer = build_tokenizer(num_states)
    model = build_model({"num_hidden_layers": 4, "hidden_size": 64, "num_attention_heads": 4,
                         "intermediate_size": 256, "max_position_embeddings": 256, "seed": 0}, tokenizer)
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        trainer = sft_trainer(model, tokenizer, pairs, {"max_steps": steps, "per_device_train_batch_size": 16,
                                                        "learning_rate": 1e-3, "logging_steps": 10 * steps,
                                                        "save_steps": 10 * steps, "disable_tqdm": True}, out)
        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
    model.eval()
    prompts = [format_prompt(r) for r in rows[:512]]
    completions = [format_completion(r) for r in rows[512:1024]]
    started = time.perf_counter()
    logliks = completion_logliks(model, tokenizer, prompts, completions)
    score_seconds = time.perf_counter() - started
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    digest.update(np.asarray(logliks, dtype=np.float64).tobytes())
    return {"train": train_seconds, "score": score_seconds, "hash": digest.hexdigest()[:16],
            "capability": torch.backends.cpu.get_cpu_capability()}


def run_setting(extra: dict, steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in PIN_NAMES}
    env.update(extra)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.steps)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import describe_machine

    print(describe_machine())
    results = {}
    for _ in range(args.repeats):  # interleaved, so that load on the machine hits every setting alike
        for name, extra in SETTINGS.items():
            run = run_setting(extra, args.steps)
            best = results.setdefault(name, run)
            best["train"], best["score"] = min(best["train"], run["train"]), min(best["score"], run["score"])
            if run["hash"] != best["hash"]:
                best["hash"] = "NOT REPEATABLE"
    base = results["native"]
    print(f"{'setting':34s} {'train s':>8s} {'ratio':>6s} {'score s':>8s} {'ratio':>6s}  weights+logliks hash")
    for name, r in results.items():
        print(f"{name:34s} {r['train']:8.2f} {r['train'] / base['train']:6.2f} {r['score']:8.2f} "
              f"{r['score'] / base['score']:6.2f}  {r['hash']} ({r['capability']})")


if __name__ == "__main__":
    main()
