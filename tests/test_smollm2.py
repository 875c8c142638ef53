"""SmolLM2-135M-Instruct (`make smollm2`, a real pretrained LLM with a BPE tokenizer) through the project's code.

Loaded once per module (~25 s on 2 cores) through the pipeline's own path: params.yaml's `model` section, read by
llome.jobs.model_spec, built by llome.models.build_model_and_tokenizer. Skipped when the GGUF file is absent.
"""

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from llome.generate import (
    Decoded,
    GenerationConfig,
    TokenGrammar,
    _closing_tokens,
    completion_logliks,
    read_candidates,
    refine,
)
from llome.jobs import model_spec
from llome.models import load_model_and_tokenizer, save_model_and_tokenizer
from llome.smollm2 import DEFAULT_DIR, GGUF_FILE, gguf_path, is_intact
from llome.text import STATUSES, UNPARSABLE, VALID, format_completion, format_prompt
from llome.train import sft_trainer, train_sft

pytestmark = pytest.mark.slow

NUM_STATES = 32
# As params.yaml would set it: the GPT-NeoX sizes stay in the section and must be ignored for a checkpoint.
MODEL_SECTION = {"name_or_path": str(DEFAULT_DIR), "gguf_file": GGUF_FILE,
                 "gpt_neox": {"num_hidden_layers": 4, "hidden_size": 64}}
ONE_STEP = {"max_steps": 1, "per_device_train_batch_size": 2, "learning_rate": 1e-4, "eval_fraction": 0.0,
            "logging_steps": 1, "save_steps": 1000, "disable_tqdm": True, "report_to": "none"}


@pytest.fixture(scope="module")
def smollm2():
    from llome.models import build_model_and_tokenizer

    if not gguf_path().is_file():
        pytest.skip(f"SmolLM2 checkpoint absent ({gguf_path()}): run `make smollm2` to fetch it (98 MB)")
    if not is_intact():
        pytest.fail(f"{gguf_path()} does not have the recorded sha256: rerun `make smollm2`")
    model, tokenizer = build_model_and_tokenizer(model_spec(MODEL_SECTION, seed=0), NUM_STATES)
    return model.eval(), tokenizer


def _pairs(rows: int, dim: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, NUM_STATES, size=(rows, dim))
    y = rng.integers(0, NUM_STATES, size=(rows, dim))
    x[0], y[0] = 0, NUM_STATES - 1  # the extreme states, one and two digits
    return pd.DataFrame({"x": [tuple(map(int, r)) for r in x], "y": [tuple(map(int, r)) for r in y],
                         "reward": 1.0})


def test_it_is_the_pretrained_llama_with_its_own_tokenizer(smollm2):
    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert len(tokenizer) == model.get_input_embeddings().num_embeddings == 49152
    # BPE spells a state over several tokens: generation must fall back to parsing text.
    assert TokenGrammar.of(tokenizer, NUM_STATES) is None


def test_the_text_format_round_trips_through_its_tokenizer(smollm2):
    _, tokenizer = smollm2
    for x, y in zip(*_pairs(8, dim=32)[["x", "y"]].to_numpy().T):
        prompt, completion = format_prompt(x), format_completion(y)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(prompt_ids + completion_ids) == prompt + completion
        assert tokenizer.decode(tokenizer(prompt + completion)["input_ids"]) == prompt + completion
        # No special token creeps in: the prompt the trainer masks is exactly the tokens decoding conditions on.
        assert tokenizer.all_special_ids and not set(prompt_ids + completion_ids) & set(tokenizer.all_special_ids)


def test_pad_is_eos_everywhere(smollm2):
    model, tokenizer = smollm2
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == tokenizer.eos_token_id
    for config in (model.config, model.generation_config):
        assert config.pad_token_id == config.eos_token_id == tokenizer.eos_token_id


def test_completion_logliks_are_finite_and_unmoved_by_padding(smollm2):
    model, tokenizer = smollm2
    pairs = _pairs(3, dim=8)
    prompts = [format_prompt(x) for x in pairs.x]
    completions = [format_completion(y) for y in pairs.y]
    completions[1] = format_completion(pairs.y[1][:3])  # a shorter row, padded with pad = eos in the batch
    together = completion_logliks(model, tokenizer, prompts, completions)
    alone = np.array([completion_logliks(model, tokenizer, [p], [c])[0] for p, c in zip(prompts, completions)])
    assert np.isfinite(together).all() and (together < 0).all()
    np.testing.assert_allclose(together, alone, rtol=1e-4)
    copied = completion_logliks(model, tokenizer, prompts[:1], [format_completion(pairs.x[0])])
    assert copied[0] > together[0]  # a pretrained model finds copying its input likelier than a random list


def test_text_parsing_reads_its_tokens(smollm2):
    model, tokenizer = smollm2
    pairs = _pairs(2, dim=8)
    valid = tokenizer(format_completion(pairs.y[0]), add_special_tokens=False)["input_ids"]
    garbage = tokenizer("The answer is [1, 2", add_special_tokens=False)["input_ids"]
    width = max(len(valid), len(garbage))
    tokens = np.full((2, width), tokenizer.pad_token_id)
    tokens[0, :len(valid)], tokens[1, :len(garbage)] = valid, garbage
    decoded = Decoded(tokens, np.full((2, width), -0.5), np.array([len(valid), len(garbage)]),
                      np.array([-1.0, np.nan]))
    texts, sequences, statuses, logliks = read_candidates(
        decoded, [format_prompt(x) for x in pairs.x], model=model, tokenizer=tokenizer, grammar=None, dim=8,
        num_states=NUM_STATES, batch_size=4)
    assert statuses == [VALID, UNPARSABLE] and sequences == [pairs.y[0], None]
    assert logliks[0] == pytest.approx((-0.5 * len(valid) - 1.0) / (len(valid) + 1)) and np.isnan(logliks[1])
    closes = _closing_tokens(tokenizer, None, len(tokenizer), "cpu")
    assert closes[valid[-1]] and not closes[valid[0]]  # decoding stops on the token that holds "]"


def test_refine_proposes_candidates_it_can_classify(smollm2):
    model, tokenizer = smollm2
    seeds = list(_pairs(2, dim=8).x)
    config = GenerationConfig(num_iterations=1, greedy=True, temperatures=(1.0,), num_samples=1, batch_size=8)
    table = refine(model, tokenizer, seeds, dim=8, num_states=NUM_STATES, config=config, seed=0, progress=False)
    assert len(table) == 4 and set(table.status) <= set(STATUSES)
    valid = table.status == VALID
    assert np.isfinite(table.loglik[valid]).all() and table.loglik[~valid].isna().all()
    assert all(len(s) == 8 for s in table.sequence[valid])
    assert (table.text.str.len() > 0).all()


def test_one_sft_step_trains_and_saves_a_model_that_loads_back(smollm2, tmp_path):
    pretrained, tokenizer = smollm2
    pairs = _pairs(4, dim=8)
    model = copy.deepcopy(pretrained).train()  # the module's shared model stays pretrained

    inspected = sft_trainer(model, tokenizer, pairs, ONE_STEP, tmp_path / "inspect")  # train_sft drops its patch
    batch = inspected.data_collator([inspected.train_dataset[i] for i in range(2)])
    for row in range(2):
        trained = batch["labels"][row][batch["labels"][row] != -100]
        # pad = eos: the eos that ends the completion must still be a target, or generations would never stop.
        assert tokenizer.decode(trained) == format_completion(pairs.y[row]) + tokenizer.eos_token

    before = copy.deepcopy(model.lm_head.weight)
    trained_model = train_sft(model, tokenizer, pairs, ONE_STEP, tmp_path / "train")
    assert not torch.equal(trained_model.lm_head.weight, before)

    save_model_and_tokenizer(trained_model, tokenizer, tmp_path / "saved")
    saved = {path.name for path in (tmp_path / "saved").iterdir()}
    assert "model.safetensors" in saved and not any(name.endswith(".gguf") for name in saved)
    loaded, loaded_tokenizer = load_model_and_tokenizer(tmp_path / "saved")
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab()
    assert loaded_tokenizer.pad_token_id == loaded_tokenizer.eos_token_id == tokenizer.eos_token_id
    inputs = tokenizer([format_prompt(pairs.x[0]) + format_completion(pairs.y[0])], return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded.eval()(**inputs).logits, trained_model.eval()(**inputs).logits)

