import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import AutoTokenizer

from llome.text import format_completion, format_prompt
from llome.tokenizer import build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(32)


def test_every_state_is_one_distinct_token(tokenizer):
    ids = [tokenizer(str(state), add_special_tokens=False)["input_ids"] for state in range(32)]
    assert all(len(token_ids) == 1 for token_ids in ids)
    assert len({token_ids[0] for token_ids in ids}) == 32
    assert tokenizer.unk_token_id not in {token_ids[0] for token_ids in ids}
    # a state the tokenizer was not built for is unknown, not split into digits
    assert tokenizer("32", add_special_tokens=False)["input_ids"] == [tokenizer.unk_token_id]


def test_sequences_cost_one_token_per_state_and_separator(tokenizer):
    length = 32
    x = list(range(length))
    # "<inc>", " ", "[", L states, L-1 separators, "]", "\n"
    assert len(tokenizer(format_prompt(x))["input_ids"]) == 2 * length + 4
    assert len(tokenizer(format_completion(x))["input_ids"]) == 2 * length + 1


def test_pad_and_eos_are_distinct_special_tokens(tokenizer):
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    # the trainers append the eos *string* to completions, so it must encode to the eos id
    ids = tokenizer(format_completion([1, 2]) + tokenizer.eos_token)["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "[1, 2]"


@given(st.integers(1, 200).flatmap(lambda v: st.tuples(st.just(v), st.lists(st.integers(0, v - 1), min_size=1))))
def test_encode_decode_is_lossless_on_the_format(case):
    num_states, sequence = case
    tokenizer = build_tokenizer(num_states)
    prompt, completion = format_prompt(sequence), format_completion(sequence)
    for text in (prompt, completion, prompt + completion):
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text


@given(st.text(max_size=100))
def test_garbage_text_encodes_without_error(text):
    tokenizer = build_tokenizer(8)
    ids = tokenizer(text)["input_ids"]
    assert all(0 <= token_id < len(tokenizer) for token_id in ids)


def test_save_and_load_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = format_prompt([5, 31, 0]) + format_completion([1, 2, 3]) + tokenizer.eos_token
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"]) == text
    assert (loaded.pad_token, loaded.eos_token) == (tokenizer.pad_token, tokenizer.eos_token)
    assert len(loaded) == len(tokenizer)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "32"])
def test_rejects_bad_num_states(bad):
    with pytest.raises(ValueError, match="num_states"):
        build_tokenizer(bad)
