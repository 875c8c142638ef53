"""Refinement generation, LLOME's inner loop (PAPER.md §4): the model proposes, nothing is scored.

This module never receives an oracle: every choice in it is made from the model's own likelihoods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from llome.text import VALID, format_completion, format_prompt, parse_completion

GREEDY = 0.0  # the temperature recorded for greedy decoding


@dataclass(frozen=True)
class GenerationConfig:
    num_iterations: int = 3
    greedy: bool = True
    temperatures: tuple[float, ...] = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
    num_samples: int = 4  # per temperature and trajectory
    batch_size: int = 256  # sequences decoded at once

    def __post_init__(self):
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        for name in ("num_iterations", "num_samples", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"GenerationConfig.{name} must be a positive integer, got {value!r}")
        if any(t <= 0 for t in self.temperatures):
            raise ValueError(f"GenerationConfig.temperatures must be positive, got {self.temperatures}")
        if not self.greedy and not self.temperatures:
            raise ValueError("GenerationConfig needs greedy decoding or at least one temperature")

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def temperature_schedule(mean_distance: float | None, base=(0.6, 0.8, 1.0, 1.2, 1.4, 1.6)) -> tuple[float, ...]:
    """Shift the temperatures up when the last round's edits were small (generator collapse, PAPER.md §4)."""
    base = tuple(float(t) for t in base)
    if mean_distance is None or not np.isfinite(mean_distance):
        return base
    start = base[0]
    for threshold, shifted in ((0.075, 1.2), (0.1, 1.0), (0.15, 0.8)):
        if mean_distance < threshold:
            start = max(start, shifted)
            break
    shift = start - base[0]
    return tuple(round(t + shift, 6) for t in base)


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _decode_batch(model, tokenizer, prompts: list[str], temperature: float, num_return: int,
                  max_new_tokens: int, seed: int) -> list[str]:
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    kwargs = dict(max_new_tokens=max_new_tokens, num_return_sequences=num_return,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, use_cache=True)
    if temperature == GREEDY:
        kwargs.update(do_sample=False)
    else:
        # Pure temperature sampling: the library defaults (top_k=50) would silently truncate the distribution.
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    with torch.random.fork_rng(devices=[]):  # sampling draws from torch's global RNG; keep it untouched
        torch.manual_seed(seed)
        out = model.generate(**enc, **kwargs)
    new_tokens = out[:, enc["input_ids"].shape[1]:]
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


@torch.inference_mode()
def completion_logliks(model, tokenizer, prompts: list[str], completions: list[str], batch_size: int = 256) -> np.ndarray:
    """Mean log-probability per completion token (eos included), given the prompt: the length-normalised likelihood."""
    out = np.empty(len(prompts), dtype=np.float64)
    eos = tokenizer.eos_token_id
    for start in range(0, len(prompts), batch_size):
        p_ids = tokenizer(prompts[start:start + batch_size], add_special_tokens=False)["input_ids"]
        c_ids = tokenizer(completions[start:start + batch_size], add_special_tokens=False)["input_ids"]
        rows = [p + c + [eos] for p, c in zip(p_ids, c_ids)]
        width = max(map(len, rows))
        ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
        target_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, p) in enumerate(zip(rows, p_ids)):
            ids[i, :len(row)] = torch.tensor(row)
            attention[i, :len(row)] = 1
            target_mask[i, len(p):len(row)] = True
        ids, attention, target_mask = ids.to(model.device), attention.to(model.device), target_mask.to(model.device)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        mask = target_mask[:, 1:]
        out[start:start + len(rows)] = ((logp * mask).sum(1) / mask.sum(1)).cpu().numpy()
    return out


@torch.inference_mode()
def refine(model, tokenizer, seeds, *, dim: int, num_states: int, config: GenerationConfig,
           temperatures: tuple[float, ...] | None = None, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Run `config.num_iterations` refinement steps from each seed sequence.

    Every candidate is kept, one row each: trajectory, iteration, temperature (0 = greedy), parent, text,
    sequence (None unless valid), status, loglik (length-normalised; NaN unless valid), distance
    (normalised Hamming distance to the parent; NaN unless valid). A trajectory's next input is its
    highest-likelihood valid candidate so far that differs from its current input.
    """
    seeds = [tuple(int(v) for v in s) for s in seeds]
    if not seeds:
        raise ValueError("refine needs at least one seed sequence")
    if any(len(s) != dim for s in seeds):
        raise ValueError(f"every seed must have length dim={dim}")
    temperatures = config.temperatures if temperatures is None else tuple(float(t) for t in temperatures)
    modes = ([(GREEDY, 1)] if config.greedy else []) + [(t, config.num_samples) for t in temperatures]
    longest = format_completion([num_states - 1] * dim)
    max_new_tokens = len(tokenizer(longest, add_special_tokens=False)["input_ids"]) + 2
    was_training = model.training
    model.eval()
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge

    inputs = list(seeds)
    best = [(-np.inf, None)] * len(seeds)
    rows = []
    bar = tqdm(total=config.num_iterations * len(modes), desc="refine", disable=not progress, leave=False)
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
                bar.update()
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
        bar.close()
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return pd.DataFrame(rows, columns=["trajectory", "iteration", "temperature", "parent", "text", "sequence",
                                       "status", "loglik", "distance"])
