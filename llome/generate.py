"""Refinement generation, LLOME's inner loop (docs/method.md §4 step 1): the model proposes, nothing is scored.

Shape. Each decoding mode of each seed is its own trajectory: one greedy (temperature 0) and `num_samples` per
temperature. Every iteration each trajectory proposes one candidate, and its next input is its candidate with the
highest length-normalised log-likelihood so far. (`shared_trajectory=True` is the older shape: one trajectory per
seed, fed by all of that seed's modes.)

Engine. All rows of an iteration, one per trajectory, are decoded together in chunks of `batch_size`: one prefill
per distinct prompt, then a token-by-token loop over a KV cache in which every row has its own temperature. The
loop keeps the log-probability of each chosen token under the untempered distribution, so a candidate's likelihood
comes from the decoding pass itself. A row stops at the token that closes its list, or at eos; one more step reads
the probability of eos after the list, which the likelihood includes (as `completion_logliks` does). On a CPU the
small models spend most of a step in attention, reading every row's cache: the cache is therefore written in place
(never copied to grow), and large chunks are faster than small ones as long as memory lasts.

Validity. With the word-level tokenizer the completion "[y1, ..., yL]" is exactly the tokens `[ y1 , ... yL ]`, so
such rows are checked and read on token ids. Every other row (another spelling, or any row of a tokenizer where
that does not hold) is decoded to text and parsed; a valid one whose tokens differ from the tokenization of its
formatted sequence is rescored by a teacher-forced pass.

This module never receives an oracle: every choice in it is made from the model's own likelihoods.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from llome.schema import GenerationConfig  # decoding settings, checked by the profile schema
from llome.text import COMPLETION_END, SEPARATOR, VALID, format_completion, format_prompt, parse_completion

GREEDY = 0.0  # the temperature recorded for greedy decoding
COLUMNS = ["trajectory", "seed_index", "iteration", "temperature", "parent", "text", "sequence", "status", "loglik",
           "distance"]


# The authors' sampling temperatures and their schedule (docs/method.md §4 step 5). They wrote each rule as a new
# lowest temperature for their base: 0.8 when the last round's mean edit distance fell below 0.15, 1.0 below 0.1,
# 1.2 below 0.075. Over their lowest base temperature of 0.6 those are shifts of +0.2, +0.4 and +0.6, which is how
# the rules are kept here, so that they also act on a profile whose temperatures start elsewhere: read as absolute
# targets, a rule whose target is not above the profile's lowest temperature could never fire.
AUTHORS_TEMPERATURES = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
SCHEDULE_SHIFTS = ((0.075, 0.6), (0.1, 0.4), (0.15, 0.2))  # (edit distance below which, shift); strictest first


def temperature_schedule(mean_distance: float | None, base=AUTHORS_TEMPERATURES) -> tuple[float, ...]:
    """Shift every temperature up when the last round's edits were small (generator collapse, docs/method.md §4).

    The first rule of SCHEDULE_SHIFTS whose threshold `mean_distance` is below sets the shift; None or NaN (no round
    before) and distances of at least 0.15 leave `base` as it is.
    """
    base = tuple(float(t) for t in base)
    if mean_distance is None or not np.isfinite(mean_distance):
        return base
    shift = next((shift for threshold, shift in SCHEDULE_SHIFTS if mean_distance < threshold), 0.0)
    return tuple(round(t + shift, 6) for t in base)


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


# ---------------------------------------------------------------------------------------------------------------
# Decoding


class _RoomCache(Cache):
    """A KV cache with room reserved for the whole generation, filled in place at slot `self.slot`.

    The library's DynamicCache concatenates, i.e. copies its whole cache, to grow by one token: with thousands of
    rows that copy costs more than the model. Attention runs over the whole room with a 4D mask that hides the
    slots not yet written (a slice of the room would be strided, which attention reads about twice as slowly).
    """

    def __init__(self, prefill: Cache, rows: torch.Tensor, size: int):
        layers = []
        for old in prefill.layers:
            layer = DynamicLayer()
            layer.lazy_initialization(old.keys, old.values)
            layer.keys, layer.values = self._reserve(old.keys, rows, size), self._reserve(old.values, rows, size)
            layers.append(layer)
        super().__init__(layers=layers)
        self.slot = prefill.layers[0].keys.shape[-2]  # where the next token's keys and values go

    @staticmethod
    def _reserve(states: torch.Tensor, rows: torch.Tensor, size: int) -> torch.Tensor:
        room = states.new_empty((len(rows), *states.shape[1:-2], size, states.shape[-1]))
        room[..., :states.shape[-2], :] = states[rows]
        room[..., states.shape[-2]:, :] = 0.0  # masked slots still meet the values: they must be finite
        return room

    @staticmethod
    def applies(model) -> bool:
        # A prepared 4D mask reaches these attention functions untouched (flash-attention kernels need their own),
        # and only plain full-attention layers can be replaced (not sliding windows, nor recurrent states).
        return (model.config._attn_implementation in ("sdpa", "eager")
                and all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers))

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        layer = self.layers[layer_idx]
        end = self.slot + key_states.shape[-2]
        layer.keys[..., self.slot:end, :] = key_states
        layer.values[..., self.slot:end, :] = value_states
        return layer.keys, layer.values


@dataclass
class Decoded:
    """One chunk's generations. Row i generated tokens[i, :length[i]], ending with its closing token or eos."""

    tokens: np.ndarray  # (rows, steps) token ids, padded
    token_logp: np.ndarray  # (rows, steps) log p(token) at temperature 1, 0 after the end
    length: np.ndarray  # (rows,)
    eos_logp: np.ndarray  # (rows,) log p(eos) right after the closing token; NaN for rows that never closed


@torch.inference_mode()
def decode(model, prompts: list[list[int]], temperatures: torch.Tensor, *, closes: torch.Tensor, eos: int, pad: int,
           max_new_tokens: int, generator: torch.Generator) -> Decoded:
    """Decode every prompt (token ids) at its own temperature (0 = greedy) until it closes its list or emits eos.

    `closes` marks the vocabulary's tokens that close a list. Sampling is plain temperature sampling from the whole
    distribution, drawn from `generator` only. All rows take one token per step, so every row's next token goes
    in the same cache slot.
    """
    device, rows = model.device, len(prompts)
    distinct = list(dict.fromkeys(tuple(p) for p in prompts))
    index = {p: i for i, p in enumerate(distinct)}
    owner = torch.tensor([index[tuple(p)] for p in prompts], device=device)
    width = max(map(len, distinct))
    ids = torch.full((len(distinct), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(distinct):  # padded on the left, so that every row's next token goes in one column
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(device), mask.to(device)
    padded = not bool(mask.all())  # without padding the mask is implicit, and attention takes its fastest path
    out = model(input_ids=ids, attention_mask=mask if padded else None, position_ids=(mask.cumsum(1) - 1).clamp_min(0),
                past_key_values=DynamicCache(config=model.config), use_cache=True, logits_to_keep=1)
    logits = out.logits[owner, -1].float()
    mask = mask[owner] if padded else mask[:1]
    next_position = mask.sum(1, keepdim=True)
    if _RoomCache.applies(model):
        cache = _RoomCache(out.past_key_values, owner, width + max_new_tokens)
        hidden = torch.finfo(model.dtype).min
        room_mask = torch.full((len(mask), 1, 1, width + max_new_tokens), hidden, dtype=model.dtype, device=device)
        room_mask[:, 0, 0, :width].masked_fill_(mask.bool(), 0.0)
    else:  # the model's own cache, and its own mask
        cache, room_mask = out.past_key_values, None
        cache.reorder_cache(owner)

    tokens = torch.full((rows, max_new_tokens), pad, dtype=torch.long, device=device)
    token_logp = torch.zeros((rows, max_new_tokens), dtype=torch.float32, device=device)
    eos_logp = torch.full((rows,), float("nan"), device=device)
    length = torch.zeros(rows, dtype=torch.long, device=device)
    closed = torch.zeros(rows, dtype=torch.bool, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    temperatures = temperatures.to(device=device, dtype=torch.float32)
    sampled = temperatures > 0
    scale = torch.where(sampled, temperatures, 1.0)[:, None]
    for step in range(max_new_tokens + 1):
        logp = torch.log_softmax(logits, dim=-1)
        eos_logp = torch.where(closed & ~done, logp[:, eos], eos_logp)  # eos right after the list, never sampled
        done |= closed
        if step == max_new_tokens or bool(done.all()):
            break
        # Every row draws, greedy ones included, so that a row's draws do not depend on the other rows' modes.
        draw = torch.multinomial(torch.softmax(logits / scale, dim=-1), 1, generator=generator).squeeze(1)
        choice = torch.where(sampled, draw, logits.argmax(dim=-1)).masked_fill(done, pad)
        tokens[:, step] = choice
        token_logp[:, step] = logp.gather(1, choice[:, None]).squeeze(1).masked_fill(done, 0.0)
        length += ~done
        closed |= closes[choice] & ~done
        done |= choice == eos
        if room_mask is not None:
            cache.slot = width + step
            room_mask[..., width + step] = 0.0
            attention = room_mask
        else:
            attention = torch.cat([mask, torch.ones_like(mask[:, :1]).expand(-1, step + 1)], dim=1) if padded else None
        logits = model(input_ids=choice[:, None], attention_mask=attention, position_ids=next_position + step,
                       past_key_values=cache, use_cache=True).logits[:, -1].float()
    steps = int(length.max())
    return Decoded(tokens[:, :steps].cpu().numpy(), token_logp[:, :steps].double().cpu().numpy(),
                   length.cpu().numpy(), eos_logp.double().cpu().numpy())


# ---------------------------------------------------------------------------------------------------------------
# Reading the generations


@dataclass(frozen=True)
class TokenGrammar:
    """Token ids of the completion's pieces, when each of "[", ", ", "]" and every state is a single token."""

    open: int
    separator: int
    close: int
    states: np.ndarray  # states[s] is the token id of state s

    @classmethod
    def of(cls, tokenizer, num_states: int) -> "TokenGrammar | None":
        """The grammar of `tokenizer`, or None when completions are not spelled token for token (e.g. BPE)."""
        def single(text):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            return ids[0] if len(ids) == 1 else None

        pieces = [single(text) for text in ("[", SEPARATOR, COMPLETION_END)]
        states = [single(str(s)) for s in range(num_states)]
        if None in pieces or None in states or len(set(pieces + states)) != num_states + 3:
            return None
        grammar = cls(*pieces, np.array(states))
        probe = list(range(num_states))
        text, ids = format_completion(probe), grammar.spell(np.array([probe]))[0].tolist()
        if tokenizer(text, add_special_tokens=False)["input_ids"] != ids or tokenizer.decode(ids) != text:
            return None
        return grammar

    def spell(self, sequences: np.ndarray) -> np.ndarray:
        """The token ids of the completions of `sequences` (rows of states)."""
        out = np.full((len(sequences), 2 * sequences.shape[1] + 1), self.separator)
        out[:, 0], out[:, -1] = self.open, self.close
        out[:, 1::2] = self.states[sequences]
        return out

    def read(self, tokens: np.ndarray, length: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Which rows are exactly the completion of `dim` states, and those states (-1 elsewhere)."""
        width = 2 * dim + 1
        if tokens.shape[1] < width:
            return np.zeros(len(tokens), dtype=bool), np.full((len(tokens), dim), -1)
        state_of = np.full(max(int(tokens.max()), int(self.states.max())) + 1, -1)
        state_of[self.states] = np.arange(len(self.states))
        head = tokens[:, :width]
        states = state_of[head[:, 1::2]]
        exact = ((length == width) & (head[:, 0] == self.open) & (head[:, -1] == self.close)
                 & (head[:, 2:-1:2] == self.separator).all(axis=1) & (states >= 0).all(axis=1))
        return exact, np.where(exact[:, None], states, -1)


def _closing_tokens(tokenizer, grammar: TokenGrammar | None, vocab_size: int, device) -> torch.Tensor:
    closes = torch.zeros(vocab_size, dtype=torch.bool)
    if grammar is not None:
        closes[grammar.close] = True
    else:  # any token whose text holds "]" ends the parsed prefix
        texts = tokenizer.batch_decode([[i] for i in range(min(len(tokenizer), vocab_size))])
        closes[[i for i, t in enumerate(texts) if COMPLETION_END in t]] = True
    return closes.to(device)


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


def read_candidates(decoded: Decoded, prompts: list[str], *, model, tokenizer, grammar: TokenGrammar | None,
                    dim: int, num_states: int, batch_size: int) -> tuple[list[str], list, list[str], np.ndarray]:
    """Text, sequence (None unless valid), status and length-normalised log-likelihood (NaN unless valid) per row."""
    rows = len(decoded.length)
    texts, sequences, statuses = [""] * rows, [None] * rows, [""] * rows
    logliks = np.full(rows, np.nan)
    exact = np.zeros(rows, dtype=bool)
    if grammar is not None:
        exact, states = grammar.read(decoded.tokens, decoded.length, dim)
        exact &= (states < num_states).all(axis=1)  # a tokenizer may know more states than the function has
    steps = np.arange(decoded.tokens.shape[1])
    # Sum in float64 over the row's own tokens, plus eos after them: the mean over length + 1 tokens.
    from_pass = ((decoded.token_logp * (steps < decoded.length[:, None])).sum(1) + decoded.eos_logp) / (
        decoded.length + 1)
    for i in np.flatnonzero(exact):
        sequences[i] = tuple(int(s) for s in states[i])
        texts[i], statuses[i], logliks[i] = format_completion(sequences[i]), VALID, from_pass[i]
    rescore = []
    for i in np.flatnonzero(~exact):
        ids = decoded.tokens[i, :decoded.length[i]].tolist()
        texts[i] = tokenizer.decode(ids, skip_special_tokens=True)
        parsed = parse_completion(texts[i], dim, num_states)
        sequences[i], statuses[i] = parsed.sequence, parsed.status
        if parsed.status != VALID:
            continue
        spelled = tokenizer(format_completion(parsed.sequence), add_special_tokens=False)["input_ids"]
        if spelled == ids and np.isfinite(decoded.eos_logp[i]):
            logliks[i] = from_pass[i]
        else:  # e.g. "[1,2]" or "[1" "0" "]": scored as the formatted sequence, like every candidate
            rescore.append(i)
    if rescore:
        logliks[rescore] = completion_logliks(model, tokenizer, [prompts[i] for i in rescore],
                                              [format_completion(sequences[i]) for i in rescore], batch_size)
    return texts, sequences, statuses, logliks


# ---------------------------------------------------------------------------------------------------------------
# The inner loop


@torch.inference_mode()
def refine(model, tokenizer, seeds, *, dim: int, num_states: int, config: GenerationConfig,
           temperatures: tuple[float, ...] | None = None, seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Run `config.num_iterations` refinement steps from each seed sequence.

    Every candidate is kept, one row each: trajectory (global id), seed_index, iteration, temperature (0 = greedy),
    parent (the trajectory's input), text, sequence (None unless valid), status, loglik (length-normalised; NaN
    unless valid), distance (normalised Hamming distance to the parent; NaN unless valid). A trajectory's next
    input is its valid candidate with the highest loglik so far (with `skip_copies`, among those that differed from
    their own input); it keeps its input until it has one.
    """
    seeds = [tuple(int(v) for v in s) for s in seeds]
    if not seeds:
        raise ValueError("refine needs at least one seed sequence")
    if any(len(s) != dim for s in seeds):
        raise ValueError(f"every seed must have length dim={dim}")
    temperatures = config.temperatures if temperatures is None else tuple(float(t) for t in temperatures)
    modes = ([GREEDY] if config.greedy else []) + [t for t in temperatures for _ in range(config.num_samples)]
    # Rows of an iteration: seed-major, modes in order. A row is a trajectory, or a member of its seed's one.
    row_seed = np.repeat(np.arange(len(seeds)), len(modes))
    row_temperature = np.tile(np.array(modes, dtype=np.float64), len(seeds))
    row_trajectory = row_seed if config.shared_trajectory else np.arange(len(row_seed))
    trajectory_seed = np.arange(len(seeds)) if config.shared_trajectory else row_seed
    inputs = [seeds[s] for s in trajectory_seed]
    best_loglik = np.full(len(inputs), -np.inf)
    best = [None] * len(inputs)

    grammar = TokenGrammar.of(tokenizer, num_states)
    device = model.device
    closes = _closing_tokens(tokenizer, grammar, model.get_output_embeddings().weight.shape[0], device)
    longest = format_completion([num_states - 1] * dim)
    max_new_tokens = len(tokenizer(longest, add_special_tokens=False)["input_ids"]) + 2
    generator = torch.Generator(device=device)
    was_training = model.training
    model.eval()
    chunks = range(0, len(row_seed), config.batch_size)
    bar = tqdm(total=config.num_iterations * len(chunks), desc="refine", disable=not progress, leave=False)
    tables = []
    try:
        for iteration in range(config.num_iterations):
            parents = [inputs[t] for t in row_trajectory]
            distinct = list(dict.fromkeys(parents))
            prompt_of = dict(zip(distinct, map(format_prompt, distinct)))
            ids_of = dict(zip(distinct, tokenizer(list(prompt_of.values()), add_special_tokens=False)["input_ids"]))
            prompts = [prompt_of[x] for x in parents]
            texts, sequences, statuses, logliks = [], [], [], []
            for chunk_index, start in enumerate(chunks):
                rows = slice(start, start + config.batch_size)
                generator.manual_seed(_derived_seed(seed, iteration, chunk_index))
                decoded = decode(model, [ids_of[x] for x in parents[rows]], torch.from_numpy(row_temperature[rows]),
                                 closes=closes, eos=tokenizer.eos_token_id, pad=tokenizer.pad_token_id,
                                 max_new_tokens=max_new_tokens, generator=generator)
                for out, part in zip((texts, sequences, statuses, logliks), read_candidates(
                        decoded, prompts[rows], model=model, tokenizer=tokenizer, grammar=grammar, dim=dim,
                        num_states=num_states, batch_size=config.batch_size)):
                    out.extend(part)
                bar.update()
            logliks = np.asarray(logliks)
            distances = np.full(len(parents), np.nan)
            for r in np.flatnonzero(np.asarray(statuses) == VALID):
                distances[r] = np.mean(np.asarray(sequences[r]) != np.asarray(parents[r]))
                t = row_trajectory[r]
                if config.skip_copies and sequences[r] == parents[r]:
                    continue
                if logliks[r] > best_loglik[t]:
                    best_loglik[t], best[t] = logliks[r], sequences[r]
            tables.append(pd.DataFrame({
                "trajectory": row_trajectory, "seed_index": row_seed, "iteration": iteration,
                "temperature": row_temperature, "parent": parents, "text": texts, "sequence": sequences,
                "status": statuses, "loglik": logliks, "distance": distances}, columns=COLUMNS))
            inputs = [b if b is not None else x for b, x in zip(best, inputs)]
    finally:
        bar.close()
        model.train(was_training)
    return pd.concat(tables, ignore_index=True)
