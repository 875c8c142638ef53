"""The prompted-LLM baseline (llome.prompted, llome.stages.prompted), with a tiny GPT-NeoX from scratch.

The tiny model reads and writes single characters and has a chat template of its own, so every path a real
instruction-tuned checkpoint takes runs in seconds; untrained, it replies with garbage. Replies that must be valid
come from scripted samplers. The real SmolLM2 is the slow test at the end.
"""

import json

import numpy as np
import pandas as pd
import pytest
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from llome.io import read_table, write_table
from llome.models import build_model, save_model_and_tokenizer
from llome.objective import CountingUp
from llome.prompted import (
    ModelSampler,
    build_messages,
    choose_examples,
    format_score,
    list_tokens,
    read_reply,
    render_prompt,
    run_prompted,
)
from llome.prompted_settings import PromptedConfig, prompted_config
from llome.rounds import best_so_far_trace
from llome.schema import ConfigError
from llome.stages.common import seed_data_path
from llome.stages.prompted import prompted_method
from llome.text import OUT_OF_RANGE, STATUSES, UNPARSABLE, VALID, WRONG_LENGTH, format_sequence

DIM, NUM_STATES = 8, 4  # CountingUp's default instance: optimum 6
CHAT_TEMPLATE = ("{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
TINY = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 2048, "seed": 0}
QUICK = {"rounds": 2, "num_samples": 6, "num_to_label": 4, "num_examples": 4, "num_best": 2, "batch_size": 4,
         "gguf_file": None}


def char_tokenizer() -> PreTrainedTokenizerFast:
    """One token per printable character, plus the chat roles and eos as special tokens."""
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    specials = ["<pad>", "<eos>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(specials + chars)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(specials)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>",
                                        unk_token="<unk>", clean_up_tokenization_spaces=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def tiny():
    tokenizer = char_tokenizer()
    return build_model(TINY, tokenizer).eval(), tokenizer


def seed_table(size: int = 40, seed: int = 0) -> pd.DataFrame:
    """Random sequences scored by CountingUp, as the seed_data stage writes them (some are infeasible)."""
    rng = np.random.default_rng(seed)
    x = np.unique(rng.integers(0, NUM_STATES, size=(size, DIM)), axis=0)
    x = x[rng.permutation(len(x))]
    return pd.DataFrame({"sequence": list(map(tuple, x.tolist())), "score": CountingUp()(x), "step": 0,
                         "oracle_calls": np.arange(1, len(x) + 1)})


class Spy:
    """CountingUp, recording every sequence that reaches it."""

    dim, num_states = DIM, NUM_STATES

    def __init__(self):
        self.function, self.seen = CountingUp(), []
        self.optimum = self.function.optimum

    def __call__(self, sequences):
        self.seen += [tuple(row) for row in np.asarray(sequences).tolist()]
        return self.function(sequences)


class Scripted:
    """A sampler that replies with the given texts, in turn, whatever the prompt."""

    def __init__(self, replies):
        self.replies, self.prompts = list(replies), []

    def __call__(self, prompt, num, seed):
        self.prompts.append(prompt)
        out = [self.replies[i % len(self.replies)] for i in range(len(self.prompts) * num - num,
                                                                  len(self.prompts) * num)]
        return out, np.full(num, 5)


def listed(sequence) -> str:
    """A reply as the sampler returns it: the text after the prompt's "[" prefix."""
    return format_sequence(sequence)[1:]


# ---------------------------------------------------------------------------------------------------------------
# The prompt


def test_the_prompt_states_the_task_and_shows_the_examples_in_the_text_format(tiny):
    _, tokenizer = tiny
    table = seed_table()
    examples = choose_examples(table, table, num_examples=4, num_best=2, rng=np.random.default_rng(0))
    prompt = render_prompt(tokenizer, build_messages(examples, DIM, NUM_STATES, optimum=6.0))
    assert prompt.startswith("<|system|>") and prompt.endswith("<|assistant|>[")
    assert f"exactly {DIM} integers, each from 0 to {NUM_STATES - 1}" in prompt
    assert "infeasible" in prompt and "higher is better" in prompt and "best possible score is 6" in prompt
    for sequence, score in zip(examples["sequence"], examples["score"]):
        assert f"score {format_score(score)}: {format_sequence(sequence)}\n" in prompt
    positions = [prompt.index(format_sequence(s)) for s in examples["sequence"]]
    assert positions == sorted(positions)  # lowest score first, the best next to the request


def test_examples_are_the_best_so_far_then_random_feasible_seed_data():
    table = seed_table()
    round_label = pd.DataFrame({"sequence": [(0, 1, 2, 3, 0, 1, 2, 3)], "score": [6.0]})
    pool = pd.concat([table[["sequence", "score"]], round_label], ignore_index=True)
    examples = choose_examples(pool, table, num_examples=5, num_best=2, rng=np.random.default_rng(1))
    assert len(examples) == 5 and examples["sequence"].is_unique
    assert np.isfinite(examples["score"]).all() and examples["score"].is_monotonic_increasing
    feasible = table[np.isfinite(table["score"])].sort_values("score", ascending=False, kind="stable")
    best_two = {round_label["sequence"][0], feasible["sequence"].iloc[0]}
    assert best_two <= set(examples["sequence"])
    assert set(examples["sequence"]) - best_two <= set(feasible["sequence"])
    again = choose_examples(pool, table, num_examples=5, num_best=2, rng=np.random.default_rng(1))
    pd.testing.assert_frame_equal(examples, again)


def test_without_a_feasible_sequence_the_prompt_shows_none():
    table = seed_table().assign(score=-np.inf)
    examples = choose_examples(table, table, num_examples=4, num_best=2, rng=np.random.default_rng(0))
    assert len(examples) == 0
    user = build_messages(examples, DIM, NUM_STATES)[1]["content"]
    assert user.startswith("No feasible sequence is known yet.") and ": [" not in user


def test_a_tokenizer_without_a_chat_template_is_an_error_naming_the_setting(tiny):
    _, tokenizer = tiny
    bare = char_tokenizer()
    bare.chat_template = None
    messages = build_messages(seed_table().head(2), DIM, NUM_STATES)
    with pytest.raises(ConfigError, match="prompted.chat_template"):
        render_prompt(bare, messages)
    assert render_prompt(bare, messages, chat_template=CHAT_TEMPLATE) == render_prompt(tokenizer, messages)


# ---------------------------------------------------------------------------------------------------------------
# Reading replies


@pytest.mark.parametrize("reply, status", [
    ("[0, 1, 2, 3, 0, 1, 2, 3]", VALID),
    ("Sure! Here it is: [0, 1, 2, 3, 0, 1, 2, 3] done", VALID),
    ("", UNPARSABLE), ("no list here", UNPARSABLE), ("[0, 1, 2", UNPARSABLE), ("[0; 1]", UNPARSABLE),
    ("[0, 1, 2]", WRONG_LENGTH), ("[0, 1, 2, 3, 0, 1, 2, 4]", OUT_OF_RANGE), ("[" + "9" * 5000 + "]", WRONG_LENGTH),
])
def test_replies_are_read_from_their_first_bracket(reply, status):
    assert read_reply(reply, DIM, NUM_STATES).status == status


# ---------------------------------------------------------------------------------------------------------------
# Rounds and accounting


GARBAGE = ["", "hello", "0, 1, 2", "1, 2, 3]", "0, 1, 2, 3, 0, 1, 2, 9]", "\x00\uffff]", "9" * 3000 + "]"]


def test_garbage_is_counted_and_never_reaches_the_oracle(tiny):
    _, tokenizer = tiny
    spy, table = Spy(), seed_table()
    history, labels = run_prompted({**QUICK, "num_samples": 7}, function=spy, seed_table=table, seed=0,
                                   tokenizer=tokenizer, sampler=Scripted(GARBAGE))
    assert spy.seen == [] and all(len(t) == 0 for t in labels)
    first = history[0]
    assert first["num_candidates"] == 7 and first["oracle_calls"] == 0 and first["labels_short"] == 4
    assert first["generation.in_range"] == 0.0
    assert first["generation.parsable"] == pytest.approx(3 / 7)  # wrong length twice, out of range once
    assert first["generation.correct_length"] == pytest.approx(1 / 7)
    assert np.isnan(first["labelled.feasible"]) and np.isnan(first["labelled.best_score"])


def test_the_untrained_model_replies_garbage_without_a_crash_or_an_oracle_call(tiny, tmp_path):
    model, tokenizer = tiny
    spy, settings = Spy(), prompted_config(QUICK)
    sampler = ModelSampler.for_task(model, tokenizer, settings, DIM, NUM_STATES)
    history, labels = run_prompted(settings, function=spy, seed_table=seed_table(), seed=0, tokenizer=tokenizer,
                                   sampler=sampler, run_dir=tmp_path)
    proposals = read_table(tmp_path / "round_01" / "proposals.parquet")
    assert len(proposals) == 6 and set(proposals["status"]) <= set(STATUSES)
    assert (proposals["reply"].str.startswith("[")).all()
    assert (proposals["tokens"] <= list_tokens(tokenizer, DIM, NUM_STATES) + 16).all()
    assert len(spy.seen) == sum(m["oracle_calls"] for m in history) == sum(len(t) for t in labels)
    both = pd.concat([proposals, read_table(tmp_path / "round_02" / "proposals.parquet")])
    assert set(spy.seen) <= set(both.loc[both["status"] == VALID, "sequence"])


def test_every_call_is_counted_and_a_round_labels_at_most_n(tiny):
    _, tokenizer = tiny
    table = seed_table()
    rng = np.random.default_rng(5)
    fresh = [tuple(r) for r in np.unique(rng.integers(0, NUM_STATES, size=(40, DIM)), axis=0).tolist()
             if tuple(r) not in set(table["sequence"])]
    old = table["sequence"].iloc[0]
    # Per round of 6: a sequence labelled in the seed data, a repeat within the round, garbage, then new ones.
    replies = []
    for r in range(3):
        new = fresh[5 * r: 5 * r + 5]
        replies += [listed(old), listed(new[0]), listed(new[0]), "junk", listed(new[1]), listed(new[2])]
    spy = Spy()
    history, labels = run_prompted({**QUICK, "rounds": 3, "num_to_label": 3}, function=spy, seed_table=table, seed=0,
                                   tokenizer=tokenizer, sampler=Scripted(replies))
    assert [m["oracle_calls"] for m in history] == [len(t) for t in labels] == [3, 3, 3]
    assert [m["generation.new"] for m in history] == [3, 3, 3] and [m["labels_short"] for m in history] == [0, 0, 0]
    assert len(spy.seen) == 9 == len(set(spy.seen)) and not set(spy.seen) & set(table["sequence"])
    assert [list(t["sequence"]) for t in labels] == [[fresh[5 * r], fresh[5 * r + 1], fresh[5 * r + 2]]
                                                     for r in range(3)]
    for t in labels:
        assert list(t["oracle_calls_round"]) == [1, 2, 3]
    # n below the new proposals: the first n in draw order, never more.
    spy = Spy()
    history, labels = run_prompted({**QUICK, "rounds": 1, "num_to_label": 2}, function=spy, seed_table=table, seed=0,
                                   tokenizer=tokenizer, sampler=Scripted(replies))
    assert history[0]["oracle_calls"] == len(spy.seen) == len(labels[0]) == 2
    assert history[0]["generation.new"] == 3


def test_the_next_round_shows_the_best_labelled_so_far(tiny):
    _, tokenizer = tiny
    best = (0, 1, 2, 3, 0, 1, 2, 3)  # the optimum, 6
    sampler = Scripted([listed(best)])
    run_prompted({**QUICK, "num_samples": 1, "num_to_label": 1}, function=Spy(), seed_table=seed_table(), seed=0,
                 tokenizer=tokenizer, sampler=sampler)
    assert format_sequence(best) not in sampler.prompts[0]
    assert f"score 6: {format_sequence(best)}\nPropose" in sampler.prompts[1].replace("\n\n", "\n")


def test_the_trace_follows_the_seed_data_with_every_paid_call(tiny):
    _, tokenizer = tiny
    table = seed_table()
    best = (0, 1, 2, 3, 0, 1, 2, 3)
    history, labels = run_prompted({**QUICK, "num_samples": 2, "num_to_label": 2}, function=Spy(), seed_table=table,
                                   seed=0, tokenizer=tokenizer, sampler=Scripted(["junk", listed(best)]))
    trace = best_so_far_trace(table, 100, [(t, m["oracle_calls"]) for t, m in zip(labels, history)], optimum=6.0)
    assert list(trace.columns) == ["oracle_calls", "best_value", "regret", "round"]
    assert trace["oracle_calls"].is_monotonic_increasing and trace["oracle_calls"].iloc[-1] == 101
    assert list(trace.loc[trace["round"] == 1, "oracle_calls"]) == [101]
    assert trace["regret"].iloc[-1] == 0 and trace.loc[trace["round"] == 0, "regret"].min() > 0


def test_the_same_seed_gives_the_same_proposals(tiny, tmp_path):
    model, tokenizer = tiny
    settings = prompted_config({**QUICK, "rounds": 1, "num_samples": 5, "batch_size": 2})
    sampler = ModelSampler.for_task(model, tokenizer, settings, DIM, NUM_STATES)

    def replies(seed, where):
        run_prompted(settings, function=Spy(), seed_table=seed_table(), seed=seed, tokenizer=tokenizer,
                     sampler=sampler, run_dir=tmp_path / where)
        return list(read_table(tmp_path / where / "round_01" / "proposals.parquet")["reply"])

    first = replies(0, "a")
    assert replies(0, "b") == first
    assert len(set(first)) > 1  # sampled, not greedy
    assert replies(1, "c") != first


# ---------------------------------------------------------------------------------------------------------------
# Settings


@pytest.mark.parametrize("settings, key", [
    ({"rounds": 0}, "prompted.rounds"),
    ({"num_to_label": 40, "num_samples": 8}, "prompted.num_to_label"),
    ({"num_best": 9, "num_examples": 8}, "prompted.num_best"),
    ({"temperature": 0.0}, "prompted.temperature"),
    ({"temperature": "hot"}, "prompted.temperature"),
    ({"batch_size": 1.5}, "prompted.batch_size"),
    ({"tempreature": 1.0}, "prompted.tempreature"),
    ({"name_or_path": ""}, "prompted.name_or_path"),
])
def test_bad_settings_are_an_error_naming_the_key(settings, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        prompted_config(settings)


def test_defaults_are_smollm2_and_a_section_need_not_set_every_key():
    defaults = prompted_config(None)
    assert defaults == PromptedConfig() == prompted_config({})
    assert defaults.name_or_path == "models/smollm2" and defaults.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert prompted_config({"rounds": 5}).rounds == 5


def test_max_new_tokens_must_hold_a_list_and_the_prompt_the_context(tiny):
    model, tokenizer = tiny
    needed = list_tokens(tokenizer, DIM, NUM_STATES)
    with pytest.raises(ConfigError, match=r"prompted\.max_new_tokens"):
        ModelSampler.for_task(model, tokenizer, prompted_config({"max_new_tokens": needed - 1}), DIM, NUM_STATES)
    assert ModelSampler.for_task(model, tokenizer, prompted_config({}), DIM, NUM_STATES).max_new_tokens > needed
    short = build_model({**TINY, "max_position_embeddings": 256}, tokenizer)
    sampler = ModelSampler.for_task(short, tokenizer, prompted_config(QUICK), DIM, NUM_STATES)
    with pytest.raises(ConfigError, match=r"prompted\.num_examples"):
        run_prompted(QUICK, function=Spy(), seed_table=seed_table(), seed=0, tokenizer=tokenizer, sampler=sampler)


# ---------------------------------------------------------------------------------------------------------------
# The stage


def test_the_stage_writes_rounds_regret_and_summary_and_resumes(tiny, tmp_path):
    model, tokenizer = tiny
    save_model_and_tokenizer(model, tokenizer, tmp_path / "llm")
    seeds_dir = tmp_path / "seed"
    for seed in (0, 1):
        write_table(seed_data_path(seeds_dir, seed), seed_table(seed=seed))
    cfg = {"profile": "test", "function": "llome.objective:counting_up", "function_seed": 0, "seeds": [0, 1],
           "seed_data_oracle_calls": 50, "device": "cpu", "numerics": {"threads": 2},
           "prompted": {**QUICK, "name_or_path": str(tmp_path / "llm")}}
    rounds, trace, summary = prompted_method(cfg, seeds_dir, tmp_path / "out")
    assert len(rounds) == 4 and list(rounds[["seed", "round"]].itertuples(index=False, name=None)) == [
        (0, 1), (0, 2), (1, 1), (1, 2)]
    assert (rounds["oracle_calls"] <= QUICK["num_to_label"]).all()
    assert set(trace["method"]) == {"prompted"}
    assert list(trace.columns) == ["oracle_calls", "best_value", "regret", "round", "seed", "method"]
    for seed, run in trace.groupby("seed"):
        assert run["oracle_calls"].max() == 50 + rounds.loc[rounds["seed"] == seed, "oracle_calls"].sum()
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["method"] == "prompted" and [s["seed"] for s in written["per_seed"]] == [0, 1]
    for row in written["per_seed"]:
        assert {"parsable", "in_range", "feasible", "best_value", "oracle_calls"} <= set(row)
    assert pd.read_csv(tmp_path / "out" / "rounds.csv").shape == rounds.shape
    # Run again: the finished rounds are read back, not sampled or paid for again.
    stamp = (tmp_path / "out" / "seed_0" / "round_01" / "metrics.json").stat().st_mtime_ns
    again, _, _ = prompted_method(cfg, seeds_dir, tmp_path / "out")
    pd.testing.assert_frame_equal(again, rounds)
    assert (tmp_path / "out" / "seed_0" / "round_01" / "metrics.json").stat().st_mtime_ns == stamp


def test_a_relative_model_directory_is_found_in_the_working_directory_then_in_the_checkout(tmp_path, monkeypatch):
    from llome import smollm2
    from llome.stages.prompted import locate

    checkout, work = tmp_path / "checkout", tmp_path / "work"
    (checkout / "models" / "m").mkdir(parents=True)
    work.mkdir()
    monkeypatch.setattr(smollm2, "ROOT", tmp_path / "package")
    monkeypatch.delenv("LLOME_CHECKOUT", raising=False)
    monkeypatch.chdir(work)
    assert locate("models/m") == "models/m"  # found nowhere: left for transformers to name
    monkeypatch.setattr(smollm2, "ROOT", checkout)
    assert locate("models/m") == str(checkout / "models" / "m")  # beside the imported package
    monkeypatch.setattr(smollm2, "ROOT", tmp_path / "package")
    monkeypatch.setenv("LLOME_CHECKOUT", str(checkout))
    assert locate("models/m") == str(checkout / "models" / "m")  # a scratch copy or a queued experiment
    (work / "models" / "m").mkdir(parents=True)
    assert locate("models/m") == "models/m"  # the working directory's own comes first
    assert locate("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"  # a hub name
    assert locate(str(tmp_path / "elsewhere")) == str(tmp_path / "elsewhere")


# ---------------------------------------------------------------------------------------------------------------
# The real thing


@pytest.mark.slow
def test_one_tiny_round_with_smollm2():
    from llome.ehrlich import Ehrlich
    from llome.smollm2 import DEFAULT_DIR, GGUF_FILE, gguf_path
    from llome.stages.prompted import load_prompted_model

    if not gguf_path().is_file():
        pytest.skip(f"SmolLM2 checkpoint absent ({gguf_path()}): run `make smollm2` to fetch it (98 MB)")
    function = Ehrlich.from_name("ehr_v-32_l-032_m-4_c-4_q-4")
    start = np.asarray(function.initial_solution())
    rng = np.random.default_rng(0)
    x = np.repeat(start[None], 20, axis=0)
    edit = rng.random(x.shape) < 0.1
    x[edit] = rng.integers(0, function.num_states, size=int(edit.sum()))
    x = np.unique(x, axis=0)
    table = pd.DataFrame({"sequence": list(map(tuple, x.tolist())), "score": function(x),
                          "oracle_calls": np.arange(1, len(x) + 1)})
    settings = prompted_config({"name_or_path": str(DEFAULT_DIR), "gguf_file": GGUF_FILE, "rounds": 1,
                                "num_samples": 2, "num_to_label": 2, "num_examples": 3, "num_best": 1,
                                "batch_size": 2})
    model, tokenizer = load_prompted_model(settings, "cpu")
    assert tokenizer.chat_template, "the GGUF file should bring SmolLM2's chat template"
    sampler = ModelSampler.for_task(model, tokenizer, settings, function.dim, function.num_states)
    calls = []

    def oracle(sequences):
        calls.append(len(sequences))
        return function(sequences)

    oracle.dim, oracle.num_states, oracle.optimum = function.dim, function.num_states, 1.0
    history, labels = run_prompted(settings, function=oracle, seed_table=table, seed=0, tokenizer=tokenizer,
                                   sampler=sampler)
    metrics = history[0]
    assert metrics["num_candidates"] == 2 and metrics["prompt_tokens"] > 300
    assert sum(calls) == metrics["oracle_calls"] == len(labels[0]) <= 2
    assert 0 <= metrics["generation.in_range"] <= metrics["generation.parsable"] <= 1
