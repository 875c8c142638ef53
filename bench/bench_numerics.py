"""What pinned numerics cost, and whether each pin changes the bits, on this machine.

    flock /tmp/llome-cpu.lock .venv/bin/python bench/bench_numerics.py [--steps 40] [--repeats 3]

Each setting runs in a child process of its own (the pins are read when torch loads): it builds the default
4x64 GPT-NeoX from its seed, trains it for a fixed number of SFT steps on fixed random pairs with the project's
SFT trainer, then scores a batch of completions (the log-likelihood pass of generation). It prints the time of
each part (the minimum over repeats) as a ratio to the unpinned run of the same bench, and a hash of the
trained weights: equal hashes mean the setting leaves the result unchanged.

Whether a cheaper pin holds across CPU vendors can only be seen on two machines. `--record FILE` writes each
setting's hash with the machine that made it; `--compare FILE` on another machine says, per setting, whether its
bits match that record. bench/numerics_reference.json is such a record, made on an AMD EPYC (`--steps 30`): on an
Intel CPU with AVX2 or AVX-512, `--steps 30 --compare bench/numerics_reference.json` shows whether the cheap
candidate `MKL_CBWR=AVX2` agrees across vendors (the adopted pins must, and `make smoke` checks that they do).
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
    parser.add_argument("--record", type=Path, help="write each setting's hash and this machine to this JSON file")
    parser.add_argument("--compare", type=Path, help="compare each setting's hash with a --record file's")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    reference = read_reference(args.compare, args.steps) if args.compare else None
    if args.child:
        print(json.dumps(child(args.steps)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import describe_machine

    machine = describe_machine()
    print(machine)
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
    if reference is not None:
        print(f"\nagainst {args.compare} ({reference['machine']}; {', '.join(reference['cpu_flags'])}):")
        for name, r in results.items():
            theirs = reference["hashes"].get(name)
            verdict = "not in the record" if theirs is None else ("same bits" if theirs == r["hash"] else "DIFFERENT")
            print(f"  {name:34s} {verdict}")
    if args.record:
        from llome.io import write_json
        from llome.numerics import cpu_flags

        write_json(args.record, {"machine": machine, "cpu_flags": cpu_flags(), "steps": args.steps,
                                 "versions": versions(),
                                 "hashes": {name: r["hash"] for name, r in results.items()}})
        print(f"recorded in {args.record}")


def versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "trl", "numpy")}


def read_reference(path: Path, steps: int) -> dict:
    """A --record file, refused before any work when its steps or library versions would make every hash differ."""
    try:
        reference = json.loads(path.read_text())
        recorded_steps, recorded_versions = reference["steps"], reference["versions"]
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"--compare {path}: not a record written by --record ({error})") from None
    if recorded_steps != steps:
        raise SystemExit(f"--compare {path}: recorded with --steps {recorded_steps}; rerun with --steps {recorded_steps}")
    if recorded_versions != versions():
        raise SystemExit(f"--compare {path}: recorded with {recorded_versions}, this environment has {versions()}; "
                         "other library versions change the bits whatever the CPU")
    return reference


if __name__ == "__main__":
    main()
