import inspect
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from generate_reference import reference_refine
from scipy import stats
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import llome.generate as generate_module
from llome.generate import (
    GREEDY,
    Decoded,
    GenerationConfig,
    TokenGrammar,
    completion_logliks,
    decode,
    read_candidates,
    refine,
    temperature_schedule,
)
from llome.models import build_model
from llome.text import COMPLETION_END, IMPROVE_TAG, STATUSES, VALID, format_completion, format_prompt
from llome.tokenizer import build_tokenizer


@pytest.mark.parametrize("distance, start", [(None, 0.6), (0.2, 0.6), (0.15, 0.6), (0.149, 0.8), (0.1, 0.8),
                                             (0.099, 1.0), (0.075, 1.0), (0.074, 1.2), (0.0, 1.2)])
def test_temperature_schedule_shifts_up_when_edits_shrink(distance, start):
    temps = temperature_schedule(distance)
    assert temps[0] == pytest.approx(start)
    assert len(temps) == 6
    assert np.allclose(np.diff(temps), 0.2)


def _authors_absolute_schedule(mean_distance, base):
    """The schedule as it was before it became relative: the rules' absolute lowest temperatures 0.8, 1.0, 1.2."""
    base = tuple(float(t) for t in base)
    if mean_distance is None or not np.isfinite(mean_distance):
        return base
    start = base[0]
    for threshold, shifted in ((0.075, 1.2), (0.1, 1.0), (0.15, 0.8)):
        if mean_distance < threshold:
            start = max(start, shifted)
            break
    return tuple(round(t + start - base[0], 6) for t in base)


def test_on_the_authors_temperatures_the_relative_schedule_is_exactly_the_absolute_one():
    base = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
    distances = [None, float("nan"), *np.linspace(0.0, 0.3, 3001)]
    distances += [np.nextafter(t, -1.0) for t in (0.075, 0.1, 0.15)] + [0.075, 0.1, 0.15]  # either side of a threshold
    for distance in distances:
        assert temperature_schedule(distance, base) == _authors_absolute_schedule(distance, base), distance
    assert temperature_schedule(0.0) == (1.2, 1.4, 1.6, 1.8, 2.0, 2.2)  # the default base is the authors'


@pytest.mark.parametrize("distance, expected", [
    (0.2, (0.9, 1.0, 1.1, 1.2)),  # edits large enough: no rule fires
    (0.15, (0.9, 1.0, 1.1, 1.2)),  # the thresholds are strict
    (0.149, (1.1, 1.2, 1.3, 1.4)),  # below 0.15: +0.2 (the authors' 0.6 -> 0.8)
    (0.1, (1.1, 1.2, 1.3, 1.4)),
    (0.099, (1.3, 1.4, 1.5, 1.6)),  # below 0.1: +0.4 (0.6 -> 1.0)
    (0.075, (1.3, 1.4, 1.5, 1.6)),
    (0.074, (1.5, 1.6, 1.7, 1.8)),  # below 0.075: +0.6 (0.6 -> 1.2)
    (0.0, (1.5, 1.6, 1.7, 1.8)),
])
def test_every_rule_fires_on_the_default_profiles_temperatures(distance, expected):
    # 0.9 ... 1.2: read as absolute targets, the first rule (lowest temperature 0.8) could never fire on them
    assert temperature_schedule(distance, (0.9, 1.0, 1.1, 1.2)) == expected


def test_every_profile_has_temperatures_each_rule_moves_differently():
    from llome.config import load_params, resolve

    profiles = load_params(Path(__file__).resolve().parents[1] / "params.yaml")["profiles"]
    assert resolve(profiles, "default")["llome"]["generation"]["temperatures"] == \
        [0.9, 1.0, 1.1, 1.2]  # the base the hand-computed test above uses
    for name in profiles:
        base = tuple(resolve(profiles, name)["llome"]["generation"]["temperatures"])
        outcomes = [temperature_schedule(d, base) for d in (0.2, 0.149, 0.099, 0.074)]
        assert len(set(outcomes)) == 4, name  # no rule, and each of the three rules, gives its own temperatures
        assert [t[0] for t in outcomes] == pytest.approx([base[0] + s for s in (0.0, 0.2, 0.4, 0.6)]), name


def test_generation_never_receives_the_oracle():
    params = inspect.signature(refine).parameters
    assert not {"oracle", "function", "objective", "scorer"} & set(params)
    source = inspect.getsource(generate_module)
    assert "ehrlich" not in source.lower()


def test_bad_generation_config_is_refused():
    with pytest.raises(ValueError, match="num_samples"):
        GenerationConfig(num_samples=0)
    with pytest.raises(ValueError, match="temperatures"):
        GenerationConfig(temperatures=(0.5, -1.0))
    with pytest.raises(ValueError, match="skip_copies"):
        GenerationConfig(skip_copies="no")
    with pytest.raises(ValueError, match="batch_size"):
        GenerationConfig(batch_size=True)


def _run(copy_model, seed=0, **config):
    seeds = [tuple(map(int, r)) for r in copy_model["pool"][:5]]
    cfg = GenerationConfig(**{"num_iterations": 3, "temperatures": (0.8, 1.4), "num_samples": 3, **config})
    return refine(copy_model["model"], copy_model["tokenizer"], seeds, dim=copy_model["dim"],
                  num_states=copy_model["num_states"], config=cfg, seed=seed, progress=False), seeds, cfg


def _prompts(out):
    return [format_prompt(p) for p in out["parent"]]


def test_each_decoding_mode_is_its_own_trajectory(copy_model):
    out, seeds, cfg = _run(copy_model, batch_size=7)  # chunks that cut across seeds
    modes = [GREEDY] + [t for t in cfg.temperatures for _ in range(cfg.num_samples)]
    assert len(out) == cfg.num_iterations * len(seeds) * len(modes)
    assert out["trajectory"].nunique() == len(seeds) * len(modes)
    for trajectory, rows in out.groupby("trajectory"):
        assert sorted(rows["iteration"]) == list(range(cfg.num_iterations))  # one candidate per iteration
        assert rows["seed_index"].nunique() == 1 and rows["temperature"].nunique() == 1
        first = rows[rows["iteration"] == 0].iloc[0]
        assert first["parent"] == seeds[first["seed_index"]]
    per_seed = out[out["iteration"] == 0].groupby("seed_index")["temperature"].apply(sorted)
    assert all(temps == sorted(modes) for temps in per_seed)
    assert set(out["status"]) <= set(STATUSES)
    assert (out["status"] == VALID).mean() > 0.5  # the fixture model has learnt the format
    valid = out[out["status"] == VALID]
    assert (valid["loglik"] <= 0).all()
    assert out.loc[out["status"] != VALID, ["loglik", "distance", "sequence"]].isna().all().all()
    for _, row in valid.iterrows():
        assert len(row["sequence"]) == copy_model["dim"]
        assert row["distance"] == pytest.approx(np.mean(np.array(row["sequence"]) != np.array(row["parent"])))


@pytest.mark.parametrize("shared_trajectory, skip_copies", [(False, True), (False, False), (True, True)])
def test_next_input_is_the_most_likely_candidate_so_far(copy_model, shared_trajectory, skip_copies):
    out, seeds, cfg = _run(copy_model, shared_trajectory=shared_trajectory, skip_copies=skip_copies)
    if shared_trajectory:
        assert (out["trajectory"] == out["seed_index"]).all()
    moved = 0
    for trajectory, rows in out.groupby("trajectory"):
        current = seeds[rows["seed_index"].iloc[0]]
        best = (-np.inf, None)
        for iteration in range(cfg.num_iterations):
            now = rows[rows["iteration"] == iteration]
            assert set(now["parent"]) == {current}
            for _, row in now[now["status"] == VALID].iterrows():
                if skip_copies and row["sequence"] == row["parent"]:
                    continue
                if row["loglik"] > best[0]:
                    best = (row["loglik"], row["sequence"])
            moved += best[1] is not None and best[1] != current
            current = best[1] if best[1] is not None else current
    assert moved > 0  # the rule was exercised, not only the "keep your input" branch


def test_refine_is_deterministic_for_a_seed_and_leaves_global_rng_alone(copy_model):
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, _, _ = _run(copy_model, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    b, _, _ = _run(copy_model, seed=7)
    c, _, _ = _run(copy_model, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert a["text"].tolist() != c["text"].tolist()


def test_completion_loglik_matches_the_models_own_loss(copy_model):
    model, tokenizer = copy_model["model"], copy_model["tokenizer"]
    x, y = tuple(map(int, copy_model["pool"][0])), tuple(map(int, copy_model["pool"][1]))
    prompt, completion = format_prompt(x), format_completion(y)
    ours = completion_logliks(model, tokenizer, [prompt, prompt], [completion, format_completion(x)])
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    c = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ids = torch.tensor([p + c])
    labels = torch.tensor([[-100] * len(p) + c])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=labels).loss.item()
    assert ours[0] == pytest.approx(-loss, rel=1e-5)
    assert ours[1] > ours[0]  # the copy model prefers copying its input


def test_loglik_from_the_decoding_pass_equals_teacher_forcing(copy_model):
    out, _, _ = _run(copy_model)
    valid = out[out["status"] == VALID]
    forced = completion_logliks(copy_model["model"], copy_model["tokenizer"], _prompts(valid),
                                [format_completion(s) for s in valid["sequence"]])
    np.testing.assert_allclose(valid["loglik"].to_numpy(), forced, rtol=0, atol=1e-5)


def test_the_word_level_tokenizer_spells_completions_token_for_token(copy_model):
    tokenizer, dim, num_states = copy_model["tokenizer"], copy_model["dim"], copy_model["num_states"]
    grammar = TokenGrammar.of(tokenizer, num_states)
    sequences = np.array(copy_model["pool"][:20])
    spelled = grammar.spell(sequences)
    for row, ids in zip(sequences, spelled):
        assert tokenizer(format_completion(row), add_special_tokens=False)["input_ids"] == ids.tolist()
    exact, states = grammar.read(spelled, np.full(len(spelled), 2 * dim + 1), dim)
    assert exact.all() and (states == sequences).all()
    cut = grammar.read(spelled, np.full(len(spelled), 2 * dim - 1), dim - 1)[0]  # a shorter list closed early
    assert not cut.any()


def _assert_greedy_matches_the_reference(model, tokenizer, seeds, dim, num_states):
    cfg = GenerationConfig(num_iterations=3, temperatures=(), num_samples=1, batch_size=5,
                           shared_trajectory=True, skip_copies=True)
    args = dict(dim=dim, num_states=num_states, config=cfg, seed=3)
    ours = refine(model, tokenizer, seeds, progress=False, **args)
    theirs = reference_refine(model, tokenizer, seeds, **args)
    # The reference decodes on past the closing "]"; the parser ignores what follows, and so does the new engine.
    cut = [t[:t.find(COMPLETION_END) + 1] if COMPLETION_END in t else t for t in theirs["text"]]
    assert ours["text"].tolist() == cut
    for column in ("trajectory", "iteration", "parent", "sequence", "status"):
        assert ours[column].tolist() == theirs[column].tolist(), column
    np.testing.assert_allclose(ours["loglik"], theirs["loglik"], rtol=0, atol=1e-5)
    return ours


def test_greedy_decoding_matches_the_reference_engine_token_for_token(copy_model):
    seeds = [tuple(map(int, r)) for r in copy_model["pool"][:12]]
    ours = _assert_greedy_matches_the_reference(copy_model["model"], copy_model["tokenizer"], seeds,
                                                copy_model["dim"], copy_model["num_states"])
    assert (ours["status"] == VALID).all()  # the copy model copies: the check covers whole valid lists


@pytest.mark.parametrize("char_level", [False, True])
def test_greedy_decoding_of_a_barely_trained_model_matches_the_reference(char_level):
    dim, num_states = 3, 12  # states 10 and 11 take two tokens at character level
    tokenizer = _char_tokenizer(num_states) if char_level else build_tokenizer(num_states)
    model = _tiny_trained_model(tokenizer, dim, num_states, steps=100)
    seeds = [tuple(map(int, s)) for s in np.random.default_rng(1).integers(0, num_states, (12, dim))]
    ours = _assert_greedy_matches_the_reference(model, tokenizer, seeds, dim, num_states)
    valid = ours[ours["status"] == VALID]  # edits and trajectories that move are compared, not only copies
    assert (valid["sequence"] != valid["parent"]).any() and valid["sequence"].nunique() > 1
    assert len(valid) < len(ours) or not char_level  # at character level, failed parses too


def test_misspelt_but_valid_completions_are_parsed_and_rescored(copy_model):
    model, tokenizer, dim = copy_model["model"], copy_model["tokenizer"], copy_model["dim"]
    vocab = tokenizer.get_vocab()
    y = tuple(map(int, copy_model["pool"][1]))
    canonical = TokenGrammar.of(tokenizer, copy_model["num_states"]).spell(np.array([y]))[0].tolist()
    spaced = [vocab["["]] + [t for v in y for t in (vocab[str(v)], vocab[","], vocab[" "])][:-2] + [vocab["]"]]
    unclosed = canonical[:-1] + [tokenizer.eos_token_id]
    rows = [canonical, spaced, unclosed]
    width = max(map(len, rows))
    decoded = Decoded(tokens=np.array([r + [0] * (width - len(r)) for r in rows]),
                      token_logp=np.full((3, width), -0.1) * (np.arange(width) < np.array([[len(r)] for r in rows])),
                      length=np.array(list(map(len, rows))), eos_logp=np.array([-0.2, -0.2, np.nan]))
    prompts = [format_prompt(tuple(map(int, copy_model["pool"][0])))] * 3
    texts, sequences, statuses, logliks = read_candidates(
        decoded, prompts, model=model, tokenizer=tokenizer, grammar=TokenGrammar.of(tokenizer, 8), dim=dim,
        num_states=8, batch_size=4)
    assert texts[:2] == [format_completion(y)] * 2  # same text, two spellings
    assert statuses == [VALID, VALID, "unparsable"] and sequences[:2] == [y, y]
    assert logliks[0] == pytest.approx((-0.1 * (2 * dim + 1) - 0.2) / (2 * dim + 2))  # read off the pass
    assert logliks[1] == pytest.approx(completion_logliks(model, tokenizer, prompts[:1], [format_completion(y)])[0])
    assert np.isnan(logliks[2])


def test_the_models_own_cache_gives_the_same_candidates(copy_model, monkeypatch):
    fast, _, _ = _run(copy_model, seed=5)
    monkeypatch.setattr(generate_module._RoomCache, "applies", staticmethod(lambda model: False))
    slow, _, _ = _run(copy_model, seed=5)
    pd.testing.assert_frame_equal(fast.drop(columns="loglik"), slow.drop(columns="loglik"))
    np.testing.assert_allclose(fast["loglik"], slow["loglik"], rtol=0, atol=1e-5)


def test_eager_attention_takes_the_same_path_and_agrees_with_teacher_forcing():
    dim, num_states = 3, 12
    tokenizer = _char_tokenizer(num_states)  # prompts of several lengths: padding in the mask
    model = _tiny_trained_model(tokenizer, dim, num_states, steps=100)
    model.set_attn_implementation("eager")
    assert generate_module._RoomCache.applies(model)
    seeds = [tuple(map(int, s)) for s in np.random.default_rng(1).integers(0, num_states, (12, dim))]
    _assert_greedy_matches_the_reference(model, tokenizer, seeds, dim, num_states)
    cfg = GenerationConfig(num_iterations=1, temperatures=(1.0,), num_samples=10)
    out = refine(model, tokenizer, seeds, dim=dim, num_states=num_states, config=cfg, progress=False)
    valid = out[out["status"] == VALID]
    forced = completion_logliks(model, tokenizer, _prompts(valid), [format_completion(s) for s in valid["sequence"]])
    assert len(valid) > 10
    np.testing.assert_allclose(valid["loglik"].to_numpy(), forced, rtol=0, atol=1e-5)


def test_without_a_token_grammar_text_parsing_gives_the_same_candidates(copy_model, monkeypatch):
    fast, _, _ = _run(copy_model, seed=5)
    monkeypatch.setattr(TokenGrammar, "of", classmethod(lambda cls, tokenizer, num_states: None))
    slow, _, _ = _run(copy_model, seed=5)
    pd.testing.assert_frame_equal(fast.drop(columns="loglik"), slow.drop(columns="loglik"))
    np.testing.assert_allclose(fast["loglik"], slow["loglik"], rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Sampling from the right distribution, on a model small enough to enumerate (L = 2, v = 3)


def _char_tokenizer(num_states):
    """One token per character: states >= 10 and ", " take several tokens, so no token grammar applies."""
    chars = sorted(set("0123456789[], \n"))
    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>", IMPROVE_TAG, *chars])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"<inc>|[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>", clean_up_tokenization_spaces=False)


def _tiny_trained_model(tokenizer, dim, num_states, steps=60):
    """A one-layer GPT-NeoX nudged towards copying its input with many edits, so its lists spread over many values."""
    spec = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 64, "seed": 0}
    model = build_model(spec, tokenizer)
    rng = np.random.default_rng(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for _ in range(steps):
        xs = rng.integers(0, num_states, (32, dim))
        ys = np.where(rng.random(xs.shape) < 0.5, rng.integers(0, num_states, xs.shape), xs)
        p = tokenizer([format_prompt(x) for x in xs], add_special_tokens=False)["input_ids"]
        c = tokenizer([format_completion(y) for y in ys], add_special_tokens=False)["input_ids"]
        width = max(len(a) + len(b) + 1 for a, b in zip(p, c))
        ids = torch.tensor([a + b + [eos] + [pad] * (width - len(a) - len(b) - 1) for a, b in zip(p, c)])
        labels = torch.tensor([[-100] * len(a) + b + [eos] + [-100] * (width - len(a) - len(b) - 1)
                               for a, b in zip(p, c)])
        loss = model(input_ids=ids, attention_mask=(labels != -100) | (ids != pad), labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def test_samples_follow_the_tempered_distribution_of_the_model():
    dim, num_states, per_temperature = 2, 3, 20000
    tokenizer = build_tokenizer(num_states)
    model = _tiny_trained_model(tokenizer, dim, num_states)
    grammar = TokenGrammar.of(tokenizer, num_states)
    prompt = tokenizer(format_prompt((0, 2)), add_special_tokens=False)["input_ids"]
    completions = list(itertools.product(range(num_states), repeat=dim))
    spelled = torch.from_numpy(grammar.spell(np.array(completions)))
    temperatures = (0.7, 1.0, 1.6)
    with torch.inference_mode():  # exact probabilities, by teacher forcing every list the model could write
        ids = torch.cat([torch.tensor(prompt).expand(len(spelled), -1), spelled], dim=1)
        logits = model(input_ids=ids).logits[:, len(prompt) - 1:-1].double()
    generator = torch.Generator().manual_seed(0)
    decoded = decode(model, [prompt] * (per_temperature * len(temperatures)),
                     torch.tensor(temperatures).repeat_interleave(per_temperature),
                     closes=torch.arange(logits.shape[-1]) == grammar.close, eos=tokenizer.eos_token_id,
                     pad=tokenizer.pad_token_id, max_new_tokens=2 * dim + 3, generator=generator)
    exact, states = grammar.read(decoded.tokens, decoded.length, dim)
    for k, temperature in enumerate(temperatures):
        logp = torch.log_softmax(logits / temperature, dim=-1).gather(-1, spelled[..., None]).squeeze(-1).sum(1)
        expected = np.append(logp.exp().numpy(), 0.0)
        expected[-1] = 1.0 - expected[:-1].sum()  # every other token path
        assert (per_temperature * expected).min() >= 5  # enough expected in every cell for the chi-square law
        rows = slice(k * per_temperature, (k + 1) * per_temperature)
        observed = np.zeros(len(completions) + 1)
        for ok, s in zip(exact[rows], states[rows]):
            observed[completions.index(tuple(s)) if ok else -1] += 1
        statistic = ((observed - per_temperature * expected) ** 2 / (per_temperature * expected)).sum()
        # A correct sampler fails this with probability 1e-4 per temperature (for the fixed seed, never).
        assert statistic < stats.chi2.ppf(1 - 1e-4, df=len(expected) - 1), (temperature, observed, expected)
    # Greedy rows of the same batch follow the argmax, whatever the other rows do.
    greedy = decode(model, [prompt] * 2, torch.tensor([0.0, 1.0]), eos=tokenizer.eos_token_id,
                    closes=torch.arange(logits.shape[-1]) == grammar.close, pad=tokenizer.pad_token_id,
                    max_new_tokens=2 * dim + 3, generator=generator)
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        for _ in range(greedy.length[0]):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1:].argmax(-1)], dim=1)
    assert greedy.tokens[0, :greedy.length[0]].tolist() == ids[0, len(prompt):].tolist()


def test_a_tokenizer_without_token_grammar_falls_back_to_text():
    dim, num_states = 2, 12
    tokenizer = _char_tokenizer(num_states)
    assert TokenGrammar.of(tokenizer, num_states) is None
    model = _tiny_trained_model(tokenizer, dim, num_states, steps=100)
    cfg = GenerationConfig(num_iterations=2, temperatures=(0.8, 1.2), num_samples=20)
    out = refine(model, tokenizer, [(0, 11), (10, 3)], dim=dim, num_states=num_states, config=cfg, progress=False)
    valid = out[out["status"] == VALID]
    assert len(valid) > 20 and {s for seq in valid["sequence"] for s in seq} & {10, 11}
    forced = completion_logliks(model, tokenizer, _prompts(valid), [format_completion(s) for s in valid["sequence"]])
    np.testing.assert_allclose(valid["loglik"].to_numpy(), forced, rtol=0, atol=1e-5)
