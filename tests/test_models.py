from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GPTNeoXForCausalLM, PreTrainedTokenizerFast

from llome.config import load_profile
from llome.jobs import model_spec
from llome.models import (
    build_model,
    build_model_and_tokenizer,
    load_model_and_tokenizer,
    load_tokenizer,
    save_model_and_tokenizer,
)
from llome.text import format_completion, format_prompt
from llome.tokenizer import build_tokenizer

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
TINY = {
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "seed": 0,
}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(16)


def _input(tokenizer):
    return tokenizer(format_prompt([1, 2, 3]) + format_completion([3, 2, 1]), return_tensors="pt")


def test_the_pipelines_model_setting_builds_that_gpt_neox(tokenizer):
    # The model the sft stage builds from params.yaml (default profile): the sizes it names, the tokenizer's ids.
    setting = load_profile(PARAMS)["model"]
    model = build_model(model_spec(setting, seed=0), tokenizer)
    assert isinstance(model, GPTNeoXForCausalLM)
    config = model.config
    assert setting["gpt_neox"] and all(getattr(config, k) == v for k, v in setting["gpt_neox"].items())
    assert config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert config.pad_token_id == tokenizer.pad_token_id
    assert config.eos_token_id == model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert next(model.parameters()).dtype == torch.float32


def test_init_depends_on_the_seed_alone_and_spares_the_global_rng(tokenizer):
    state = torch.random.get_rng_state()
    first = build_model(TINY, tokenizer).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(1234)  # a different global state must not change the model
    again = build_model(TINY, tokenizer).state_dict()
    other = build_model({**TINY, "seed": 1}, tokenizer).state_dict()
    name = "gpt_neox.layers.0.attention.query_key_value.weight"
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not torch.equal(first[name], other[name])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"hidden_size": 30}, "hidden_size"),  # not divisible by 4 heads
        ({"num_hidden_layers": 0}, "num_hidden_layers"),
        ({"intermediate_size": 64.0}, "intermediate_size"),
        ({"max_position_embeddings": None}, "max_position_embeddings"),
        ({"hidden_sise": 32}, "hidden_sise"),  # a typo
        ({"vocab_size": 100}, "vocab_size"),  # taken from the tokenizer
        ({"seed": "zero"}, "seed"),
        ({"name_or_path": "somewhere"}, "name_or_path"),  # with architecture fields
    ],
)
def test_bad_config_names_the_field(tokenizer, change, field):
    with pytest.raises(ValueError, match=field):
        build_model({**TINY, **change}, tokenizer)


def test_missing_field_is_named(tokenizer):
    config = dict(TINY)
    del config["num_attention_heads"]
    with pytest.raises(ValueError, match="num_attention_heads"):
        build_model(config, tokenizer)


def test_save_and_load_round_trip(tokenizer, tmp_path):
    model = build_model(TINY, tokenizer).eval()
    save_model_and_tokenizer(model, tokenizer, tmp_path)
    loaded, loaded_tokenizer = load_model_and_tokenizer(tmp_path)
    inputs = _input(loaded_tokenizer)
    assert inputs["input_ids"].tolist() == _input(tokenizer)["input_ids"].tolist()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, model(**inputs).logits)


def test_from_scratch_and_checkpoint_share_one_entry_point(tokenizer, tmp_path):
    model, built_tokenizer = build_model_and_tokenizer(TINY, num_states=16)
    assert len(built_tokenizer) == len(tokenizer)
    save_model_and_tokenizer(model, built_tokenizer, tmp_path)
    again, again_tokenizer = build_model_and_tokenizer({"name_or_path": str(tmp_path)}, num_states=16)
    assert again_tokenizer.get_vocab() == built_tokenizer.get_vocab()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def _bpe_checkpoint(path):
    """A tiny pretrained-style checkpoint with a byte-level BPE tokenizer and no pad token, like Pythia's."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    texts = [format_prompt([i % 7, 3 * i % 11, 5]) + format_completion([i % 5, 2, 9]) for i in range(50)]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    backend.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=alphabet)
    )
    backend.decoder = decoders.ByteLevel()
    bpe = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    assert bpe.pad_token is None
    # the checkpoint's architecture and sizes are its own; pad it like a pretrained model
    bpe.pad_token = bpe.eos_token
    model = build_model(TINY, bpe)
    bpe.pad_token = None
    save_model_and_tokenizer(model, bpe, path)
    return model


def test_pretrained_checkpoint_brings_its_own_tokenizer(tmp_path):
    saved = _bpe_checkpoint(tmp_path).eval()
    model, bpe = build_model_and_tokenizer({"name_or_path": str(tmp_path)}, num_states=16)
    assert bpe.pad_token == bpe.eos_token == "<|endoftext|>"  # the Pythia convention
    assert model.config.pad_token_id == bpe.pad_token_id
    text = format_prompt([1, 2]) + format_completion([3, 4])
    assert bpe.decode(bpe(text)["input_ids"]) == text
    inputs = bpe(text, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, saved(**inputs).logits)


def test_unavailable_hub_model_fails_clearly(tokenizer):
    # conftest sets HF_HUB_OFFLINE=1, so a hub name that is not a local directory cannot load
    with pytest.raises(OSError, match="EleutherAI/pythia-14m-not-cached"):
        build_model({"name_or_path": "EleutherAI/pythia-14m-not-cached"}, tokenizer)
    with pytest.raises(OSError, match="EleutherAI/pythia-14m-not-cached"):
        load_tokenizer("EleutherAI/pythia-14m-not-cached")


def test_loading_a_directory_without_a_model_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model_and_tokenizer(tmp_path)


def test_a_gguf_file_setting_travels_with_the_checkpoint():
    section = {"name_or_path": "models/smollm2", "gguf_file": "model.gguf", "gpt_neox": {"hidden_size": 64}}
    assert model_spec(section, seed=0) == {"name_or_path": "models/smollm2", "gguf_file": "model.gguf"}
    assert model_spec({**section, "gguf_file": None}, seed=0) == {"name_or_path": "models/smollm2"}


@pytest.mark.parametrize("gguf_file", ["", 3])
def test_a_bad_gguf_file_setting_is_named(gguf_file):
    with pytest.raises(ValueError, match="gguf_file"):
        build_model_and_tokenizer({"name_or_path": "models/smollm2", "gguf_file": gguf_file}, num_states=16)


def test_the_pretrained_profile_loads_the_checkpoint_make_smollm2_fetches():
    from llome import smollm2

    setting = load_profile(PARAMS, "pretrained")["model"]
    assert model_spec(setting, seed=0) == {"name_or_path": "models/smollm2", "gguf_file": smollm2.GGUF_FILE}
    assert (PARAMS.parent / setting["name_or_path"]) == smollm2.DEFAULT_DIR
    assert load_profile(PARAMS, "default")["model"]["gguf_file"] is None
