"""The prompted-LLM baseline, the paper's "generalists" (docs/method.md §7, docs/prompted.md).

An off-the-shelf instruction-tuned LLM is never trained here. Each round it reads, through its own chat template,

* a system message with the task: sequences of exactly L integers in [0, v), that some neighbouring pairs are
  forbidden (which ones is not said; every example shown is feasible), and that a higher score is better;
* a user message with k scored examples in the project's text format (`[x1, x2, ..., xL]`), lowest score first:
  the `num_best` best labelled so far (seed data and earlier rounds) and random feasible seed-data sequences,
  then the request for one new, better sequence in the same format.

The assistant's reply starts with `reply_prefix` ("[" by default, so the model continues a list). `num_samples`
replies are sampled at one temperature; decoding stops at the first token holding "]" or at eos. A reply is read
from its first "[" with llome.text's parser, so a preamble is forgiven but the list must be exactly L integers in
range. Valid proposals that are new (never labelled, first in the round) are labelled in draw order, at most
`num_to_label` = n of them, through a CountedOracle of budget n: every score is a paid call. The next round's
prompt then holds the best sequences labelled so far.

Randomness comes from the run's seed alone: the examples from a numpy generator seeded per round, the samples
from a torch generator seeded per round and chunk of `batch_size` rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from llome.generate import decode
from llome.io import read_json, read_table, write_json, write_table
from llome.objective import CountedOracle, optimum_of
from llome.provenance import move_aside
from llome.rounds import TIMING_FILE, round_dir, round_seed
from llome.prompted_settings import PromptedConfig, prompted_config
from llome.schema import ConfigError
from llome.text import COMPLETION_END, OUT_OF_RANGE, UNPARSABLE, VALID, Parsed, format_sequence, parse_completion

# Room for a short preamble ("Here is a sequence: ") before the list, when max_new_tokens is left to the task.
PREAMBLE_TOKENS = 16
PROPOSAL_COLUMNS = ["reply", "sequence", "status", "tokens", "new", "labelled"]

Sampler = Callable[[str, int, int], tuple[list[str], np.ndarray]]  # (prompt, how many, seed) -> replies, tokens


def choose_examples(pool: pd.DataFrame, seed_table: pd.DataFrame, num_examples: int, num_best: int,
                    rng: np.random.Generator) -> pd.DataFrame:
    """The sequences a round shows, lowest score first (so the best sits next to the request).

    The `num_best` best feasible sequences of `pool` (everything labelled so far; ties go to the first labelled),
    then random feasible sequences of the seed data up to `num_examples`. Infeasible ones are never shown: their
    score is no number the model could read.
    """
    feasible = pool[np.isfinite(pool["score"].to_numpy(np.float64))].drop_duplicates("sequence")
    best = feasible.sort_values("score", ascending=False, kind="stable").head(num_best)
    seed_feasible = seed_table[np.isfinite(seed_table["score"].to_numpy(np.float64))].drop_duplicates("sequence")
    others = seed_feasible[~seed_feasible["sequence"].isin(set(best["sequence"]))]
    drawn = rng.choice(len(others), size=min(num_examples - len(best), len(others)), replace=False)
    examples = pd.concat([best, others.iloc[np.sort(drawn)]], ignore_index=True)[["sequence", "score"]]
    return examples.sort_values("score", kind="stable").reset_index(drop=True)


def format_score(score: float) -> str:
    return f"{float(score):.6g}"


def build_messages(examples: pd.DataFrame, dim: int, num_states: int, optimum: float | None = None) -> list[dict]:
    """The chat: a system message with the task, a user message with the examples and the request."""
    top = num_states - 1
    best_possible = f", and the best possible score is {format_score(optimum)}" if optimum is not None else ""
    system = (
        "You propose integer sequences for a black-box optimisation task.\n"
        f"A sequence is a list of exactly {dim} integers, each from 0 to {top}, written like the examples: "
        f"[a, b, c, ...] with a comma and a space between numbers.\n"
        "Some values must not directly follow certain other values. A sequence containing such a forbidden "
        "neighbouring pair is infeasible and worth nothing. The forbidden pairs are not listed, but every example "
        "you are shown is feasible.\n"
        f"A feasible sequence gets a score; higher is better{best_possible}."
    )
    if len(examples):
        lines = "\n".join(f"score {format_score(s)}: {format_sequence(x)}"
                          for x, s in zip(examples["sequence"], examples["score"]))
        shown = (f"Here are {len(examples)} feasible sequences and their scores, from lowest to highest score:\n"
                 f"{lines}\n\n")
        goal = "stays feasible and scores higher than all of them"
    else:
        shown, goal = "No feasible sequence is known yet.\n\n", "is feasible and scores as high as possible"
    user = (f"{shown}Propose one new sequence of exactly {dim} integers from 0 to {top} that {goal}. "
            "Reply with the list only, in the same format.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def render_prompt(tokenizer, messages: list[dict], reply_prefix: str = "[", chat_template: str | None = None) -> str:
    """The chat as the model's template writes it, the assistant's turn opened and started with `reply_prefix`."""
    if chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise ConfigError("prompted.chat_template: the tokenizer has no chat template, and the prompted baseline "
                          "talks to an instruction-tuned model through one; set prompted.chat_template or choose "
                          "an instruction-tuned checkpoint")
    text = tokenizer.apply_chat_template(messages, chat_template=chat_template, tokenize=False,
                                         add_generation_prompt=True)
    return text + reply_prefix


def read_reply(reply: str, dim: int, num_states: int) -> Parsed:
    """A reply read from its first "[" by the text format's parser; no "[" at all is unparsable."""
    start = reply.find("[")
    if start < 0:
        return Parsed(None, UNPARSABLE)
    return parse_completion(reply[start:], dim, num_states)


# ---------------------------------------------------------------------------------------------------------------
# Sampling


def list_tokens(tokenizer, dim: int, num_states: int) -> int:
    """Tokens the widest valid list takes: every state the largest, which has the most digits."""
    return len(tokenizer(format_sequence([num_states - 1] * dim), add_special_tokens=False)["input_ids"])


def closing_tokens(tokenizer, vocab_size: int, device) -> torch.Tensor:
    """Which token ids hold "]": the parser reads nothing past the first one, so decoding may stop there."""
    texts = tokenizer.batch_decode([[i] for i in range(min(len(tokenizer), vocab_size))])
    closes = torch.zeros(vocab_size, dtype=torch.bool)
    closes[[i for i, text in enumerate(texts) if COMPLETION_END in text]] = True
    return closes.to(device)


class ModelSampler:
    """Replies of a causal LM to one prompt, sampled at one temperature in chunks of `batch_size` rows.

    llome.generate's decoder rather than `model.generate`: it samples from a torch.Generator of its own (generate
    draws from the global RNG), and it stops a row at the token that closes its list.
    """

    def __init__(self, model, tokenizer, *, temperature: float, max_new_tokens: int, batch_size: int):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.temperature, self.max_new_tokens = float(temperature), int(max_new_tokens)
        self.batch_size = int(batch_size)
        self.closes = closing_tokens(tokenizer, model.get_output_embeddings().weight.shape[0], model.device)
        self.context = getattr(model.config, "max_position_embeddings", None)

    @classmethod
    def for_task(cls, model, tokenizer, settings: PromptedConfig, dim: int, num_states: int) -> ModelSampler:
        """A sampler whose max_new_tokens holds a list of `dim` states (the setting, or the list plus a preamble)."""
        needed = list_tokens(tokenizer, dim, num_states)
        if settings.max_new_tokens is not None and settings.max_new_tokens < needed:
            raise ConfigError(f"prompted.max_new_tokens: a list of L={dim} states up to {num_states - 1} takes up "
                              f"to {needed} tokens with this tokenizer, got {settings.max_new_tokens}")
        max_new_tokens = settings.max_new_tokens or needed + PREAMBLE_TOKENS
        return cls(model, tokenizer, temperature=settings.temperature, max_new_tokens=max_new_tokens,
                   batch_size=settings.batch_size)

    def __call__(self, prompt: str, num: int, seed: int) -> tuple[list[str], np.ndarray]:
        """`num` replies (decoded text, special tokens dropped) and the tokens each generated."""
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if self.context is not None and len(ids) + self.max_new_tokens > self.context:
            raise ConfigError(f"prompted.num_examples: the prompt takes {len(ids)} tokens and a reply up to "
                              f"{self.max_new_tokens}, more than the model's {self.context} positions; show fewer "
                              "examples")
        generator = torch.Generator(device=self.model.device)
        replies, tokens = [], []
        for chunk, start in enumerate(range(0, num, self.batch_size)):
            rows = min(self.batch_size, num - start)
            generator.manual_seed(round_seed(seed, chunk))
            decoded = decode(self.model, [ids] * rows, torch.full((rows,), self.temperature, dtype=torch.float64),
                             closes=self.closes, eos=self.tokenizer.eos_token_id, pad=self.tokenizer.pad_token_id,
                             max_new_tokens=self.max_new_tokens, generator=generator)
            replies += [self.tokenizer.decode(decoded.tokens[i, :decoded.length[i]].tolist(), skip_special_tokens=True)
                        for i in range(rows)]
            tokens.append(decoded.length)
        return replies, np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64)


# ---------------------------------------------------------------------------------------------------------------
# Rounds


def read_proposals(replies: list[str], tokens: np.ndarray, reply_prefix: str, dim: int, num_states: int,
                   labelled_before: set) -> pd.DataFrame:
    """One row per reply: its text (prefix included), sequence (None unless valid), status, tokens generated, and
    `new`: valid, never labelled, and the first of its kind in the round."""
    seen = set(labelled_before)
    rows = []
    for reply, count in zip(replies, tokens, strict=True):
        text = reply_prefix + reply
        parsed = read_reply(text, dim, num_states)
        new = parsed.status == VALID and parsed.sequence not in seen
        if new:
            seen.add(parsed.sequence)
        rows.append({"reply": text, "sequence": parsed.sequence, "status": parsed.status, "tokens": int(count),
                     "new": new, "labelled": False})
    return pd.DataFrame(rows, columns=PROPOSAL_COLUMNS)


def label(proposals: pd.DataFrame, function, num_to_label: int) -> tuple[pd.DataFrame, int]:
    """Pays for the first `num_to_label` new proposals in draw order, marking them `labelled`; returns their labels
    and the calls paid."""
    chosen = proposals.index[proposals["new"].to_numpy(dtype=bool)][:num_to_label]
    proposals.loc[chosen, "labelled"] = True
    sequences = list(proposals.loc[chosen, "sequence"])
    oracle = CountedOracle(function, num_to_label)
    scores = oracle(np.array(sequences, dtype=np.int64)) if sequences else np.empty(0)
    labelled = pd.DataFrame({"sequence": sequences, "score": scores,
                             "oracle_calls_round": np.arange(1, len(sequences) + 1)})
    return labelled, oracle.calls


def _fraction(mask) -> float:
    mask = np.asarray(mask, dtype=bool)
    return float(mask.mean()) if len(mask) else float("nan")


def round_metrics(index: int, proposals: pd.DataFrame, labelled: pd.DataFrame, examples: pd.DataFrame,
                  oracle_calls: int, num_to_label: int, best_so_far: float, prompt_tokens: int) -> dict:
    """A round's row of rounds.csv; the generation.* and labelled.* names mean what they mean for LLOME's rounds."""
    status = proposals["status"].to_numpy()
    valid = proposals[status == VALID]["sequence"].tolist()
    scores = labelled["score"].to_numpy(np.float64)
    feasible = np.isfinite(scores)
    best_example = float(examples["score"].max()) if len(examples) else -np.inf
    shown = set(examples["sequence"])
    return {
        "round": index,
        "examples": int(len(examples)),
        "examples_best_score": best_example,
        "prompt_tokens": int(prompt_tokens),
        "generated_tokens": int(proposals["tokens"].sum()),
        "num_candidates": int(len(proposals)),
        "generation.parsable": _fraction(status != UNPARSABLE),
        "generation.correct_length": _fraction((status == VALID) | (status == OUT_OF_RANGE)),
        "generation.in_range": _fraction(status == VALID),
        "generation.unique_fraction": len(set(valid)) / len(valid) if valid else float("nan"),
        "generation.copies_of_examples": _fraction([x in shown for x in valid]),
        "generation.new": int(proposals["new"].sum()),
        "oracle_calls": int(oracle_calls),
        "labels_short": int(num_to_label - oracle_calls),  # > 0 when the round had fewer than n new proposals
        "labelled.count": int(len(labelled)),
        "labelled.feasible": _fraction(feasible),
        "labelled.mean_score": float(scores[feasible].mean()) if feasible.any() else float("nan"),
        "labelled.best_score": float(scores.max()) if len(scores) else float("nan"),
        "labelled.beats_examples": _fraction(scores > best_example),
        "best_so_far": float(best_so_far),
    }


def run_round(index: int, *, settings: PromptedConfig, function, pool: pd.DataFrame, seed_table: pd.DataFrame,
              seed: int, tokenizer, sampler: Sampler) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """One round: prompt, sample, read, label. Returns (proposals, labels, metrics); at most n paid calls."""
    this_seed = round_seed(seed, index)
    examples = choose_examples(pool, seed_table, settings.num_examples, settings.num_best,
                               np.random.default_rng(this_seed))
    messages = build_messages(examples, function.dim, function.num_states, optimum_of(function))
    prompt = render_prompt(tokenizer, messages, settings.reply_prefix, settings.chat_template)
    replies, tokens = sampler(prompt, settings.num_samples, this_seed)
    proposals = read_proposals(replies, tokens, settings.reply_prefix, function.dim, function.num_states,
                               set(pool["sequence"]))
    labelled, calls = label(proposals, function, settings.num_to_label)
    labelled.insert(2, "round", index)
    best = float(np.max(np.concatenate([pool["score"].to_numpy(np.float64), labelled["score"].to_numpy(np.float64)]),
                     initial=-np.inf))
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    metrics = round_metrics(index, proposals, labelled, examples, calls, settings.num_to_label, best, prompt_tokens)
    return proposals, labelled, metrics


def run_prompted(settings: PromptedConfig | dict | None, *, function, seed_table: pd.DataFrame, seed: int, tokenizer,
                 sampler: Sampler, run_dir: Path | None = None,
                 on_round: Callable[[dict], None] | None = None) -> tuple[list[dict], list[pd.DataFrame]]:
    """Every round for one seed; returns each round's metrics and labels. `on_round` sees each round's metrics.

    The pool of labelled sequences starts as the seed data (already paid for) and grows by each round's labels.
    With `run_dir`, a round is kept in `round_NN/` (proposals, labels, metrics), built in `round_NN.partial/` and
    renamed when complete, so a finished round is read back rather than redone; checking that the directory holds
    this run's settings and inputs is the caller's (llome.stages.prompted claims it first).
    """
    settings = prompted_config(settings)
    missing = [column for column in ("sequence", "score") if column not in seed_table.columns]
    if missing:
        raise ValueError(f"the seed table has no column {missing[0]!r} (it has {list(seed_table.columns)})")
    pool = seed_table[["sequence", "score"]].copy()
    history, labels = [], []
    for index in range(1, settings.rounds + 1):
        final = round_dir(run_dir, index) if run_dir is not None else None
        if final is not None and (final / "metrics.json").exists():
            labelled, metrics = read_table(final / "labelled.parquet"), read_json(final / "metrics.json")
        else:
            started = time.perf_counter()
            proposals, labelled, metrics = run_round(index, settings=settings, function=function, pool=pool,
                                                     seed_table=seed_table, seed=seed, tokenizer=tokenizer,
                                                     sampler=sampler)
            if final is not None:
                _save_round(final, proposals, labelled, metrics, time.perf_counter() - started)
        history.append(metrics)
        labels.append(labelled)
        if on_round is not None:
            on_round(metrics)
        pool = pd.concat([pool, labelled[["sequence", "score"]]], ignore_index=True)
    return history, labels


def _save_round(final: Path, proposals: pd.DataFrame, labelled: pd.DataFrame, metrics: dict, seconds: float) -> None:
    work = final.with_name(final.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    write_table(work / "proposals.parquet", proposals)
    write_table(work / "labelled.parquet", labelled)
    write_json(work / TIMING_FILE, {"round": round(seconds, 3)})
    write_json(work / "metrics.json", metrics)
    if final.exists():  # a round directory someone emptied of its metrics; its labels may still be there
        move_aside(final)
    work.rename(final)
