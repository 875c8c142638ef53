"""The refinement engine as it was before the batched one (kept to test and benchmark against, not for use).

One `model.generate` call per decoding mode and chunk, text decoding and parsing, then a second, teacher-forced
pass for the likelihoods. One trajectory per seed is fed by every mode, and a candidate equal to its input is
never chosen as the next input: the `shared_trajectory=True, skip_copies=True` shape of `llome.generate.refine`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from llome.generate import GREEDY, GenerationConfig, completion_logliks
from llome.text import VALID, format_completion, format_prompt, parse_completion


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _decode_batch(model, tokenizer, prompts, temperature, num_return, max_new_tokens, seed):
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    kwargs = dict(max_new_tokens=max_new_tokens, num_return_sequences=num_return,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, use_cache=True)
    if temperature == GREEDY:
        kwargs.update(do_sample=False)
    else:
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = model.generate(**enc, **kwargs)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


@torch.inference_mode()
def reference_refine(model, tokenizer, seeds, *, dim: int, num_states: int, config: GenerationConfig,
                     temperatures=None, seed: int = 0) -> pd.DataFrame:
    seeds = [tuple(int(v) for v in s) for s in seeds]
    temperatures = config.temperatures if temperatures is None else tuple(float(t) for t in temperatures)
    modes = ([(GREEDY, 1)] if config.greedy else []) + [(t, config.num_samples) for t in temperatures]
    longest = format_completion([num_states - 1] * dim)
    max_new_tokens = len(tokenizer(longest, add_special_tokens=False)["input_ids"]) + 2
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    inputs = list(seeds)
    best = [(-np.inf, None)] * len(seeds)
    rows = []
    try:
        for iteration in range(config.num_iterations):
            prompts = [format_prompt(x) for x in inputs]
            texts, owners, temps = [], [], []
            for mode_index, (temperature, num_return) in enumerate(modes):
                per_chunk = max(1, config.batch_size // num_return)
                for chunk_index, start in enumerate(range(0, len(prompts), per_chunk)):
                    chunk = prompts[start:start + per_chunk]
                    call_seed = _derived_seed(seed, iteration, mode_index, chunk_index)
                    decoded = _decode_batch(model, tokenizer, chunk, temperature, num_return, max_new_tokens, call_seed)
                    texts.extend(decoded)
                    owners.extend(np.repeat(np.arange(start, start + len(chunk)), num_return).tolist())
                    temps.extend([temperature] * len(decoded))
            parsed = [parse_completion(t, dim, num_states) for t in texts]
            valid = [i for i, p in enumerate(parsed) if p.status == VALID]
            logliks = np.full(len(texts), np.nan)
            if valid:
                logliks[valid] = completion_logliks(
                    model, tokenizer, [prompts[owners[i]] for i in valid],
                    [format_completion(parsed[i].sequence) for i in valid], batch_size=config.batch_size)
            for i, (text, p) in enumerate(zip(texts, parsed)):
                parent = inputs[owners[i]]
                distance = np.nan
                if p.status == VALID:
                    distance = float(np.mean(np.asarray(p.sequence) != np.asarray(parent)))
                    if p.sequence != parent and logliks[i] > best[owners[i]][0]:
                        best[owners[i]] = (logliks[i], p.sequence)
                rows.append({"trajectory": owners[i], "iteration": iteration, "temperature": temps[i],
                             "parent": parent, "text": text, "sequence": p.sequence, "status": p.status,
                             "loglik": logliks[i], "distance": distance})
            inputs = [b[1] if b[1] is not None else x for b, x in zip(best, inputs)]
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return pd.DataFrame(rows, columns=["trajectory", "iteration", "temperature", "parent", "text", "sequence",
                                       "status", "loglik", "distance"])
