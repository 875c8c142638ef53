"""LoRA (llome.lora, params.yaml model.lora): only the adapters train, the saved model is plain, null changes nothing."""

import copy
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM, TrainerCallback

from llome.config import ConfigError, load_profile, stage_configs
from llome.lora import LoraConfig, add_lora, lora_config
from llome.models import build_model, load_model_and_tokenizer, save_model_and_tokenizer
from llome.text import format_completion, format_prompt
from llome.tokenizer import build_tokenizer
from llome.train import train_sft

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
NUM_STATES, LENGTH = 8, 6
HIDDEN, LAYERS, INTERMEDIATE = 32, 2, 64
TINY = {"num_hidden_layers": LAYERS, "hidden_size": HIDDEN, "num_attention_heads": 4,
        "intermediate_size": INTERMEDIATE, "max_position_embeddings": 64, "seed": 0}
CFG = {"max_steps": 4, "per_device_train_batch_size": 8, "learning_rate": 1e-2, "logging_steps": 1,
       "save_steps": 100, "disable_tqdm": True, "eval_fraction": 0}
ATTENTION = "attention.query_key_value"  # peft's default target for GPT-NeoX


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(NUM_STATES)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    xs = [tuple(int(s) for s in rng.integers(0, NUM_STATES, LENGTH)) for _ in range(24)]
    return pd.DataFrame({"x": xs, "y": [tuple(sorted(x)) for x in xs], "reward": rng.uniform(0, 1, len(xs))})


def _triples(pairs):
    return pd.DataFrame({"x": pairs.x, "y_w": pairs.y, "y_l": pairs.x})


def _logits(model, tokenizer):
    ids = tokenizer(format_prompt([1, 2, 3, 4, 5, 6]) + format_completion([6, 5, 4, 3, 2, 1]),
                    return_tensors="pt")["input_ids"]
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def _changed(before: dict, after: dict) -> set[str]:
    assert before.keys() == after.keys()
    return {name for name in before if not torch.equal(before[name], after[name])}


def _attention_weights(layers=LAYERS) -> set[str]:
    return {f"gpt_neox.layers.{i}.{ATTENTION}.weight" for i in range(layers)}


def _assert_low_rank_update(before: dict, after: dict, names: set[str], rank: int):
    for name in names:
        assert torch.linalg.matrix_rank(after[name] - before[name]).item() <= rank, name


# --- the adapters ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("targets", "expected"), [
    # r x (in + out) per targeted layer, per block: query_key_value maps 32 -> 3 x 32, dense_4h_to_h 64 -> 32.
    (None, 2 * 4 * (32 + 96)),  # 1,024
    (["query_key_value", "dense_4h_to_h"], 2 * 4 * ((32 + 96) + (64 + 32))),  # 1,792
])
def test_the_trainable_parameters_are_r_times_in_plus_out_per_targeted_layer(tokenizer, targets, expected):
    model = build_model(TINY, tokenizer)
    total = sum(p.numel() for p in model.parameters())
    wrapped = add_lora(model, {"r": 4, "alpha": 8, "target_modules": targets})
    trainable = {name: p.numel() for name, p in wrapped.named_parameters() if p.requires_grad}
    assert sum(trainable.values()) == expected
    assert all(".lora_A." in name or ".lora_B." in name for name in trainable)
    assert sum(p.numel() for p in wrapped.parameters()) == total + expected  # the model's own weights, all frozen


def test_the_adapters_start_as_a_no_op_drawn_from_their_seed_alone(tokenizer):
    plain = _logits(build_model(TINY, tokenizer), tokenizer)
    state = torch.random.get_rng_state()
    first = add_lora(build_model(TINY, tokenizer), LoraConfig(r=4), seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(_logits(first, tokenizer), plain)  # B = 0: the model computes what it did
    again = add_lora(build_model(TINY, tokenizer), LoraConfig(r=4), seed=3).state_dict()
    other = add_lora(build_model(TINY, tokenizer), LoraConfig(r=4), seed=4).state_dict()
    a_weights = [name for name in again if ".lora_A." in name]
    assert a_weights and all(torch.equal(first.state_dict()[n], again[n]) for n in a_weights)
    assert not any(torch.equal(again[n], other[n]) for n in a_weights)


class _Watch(TrainerCallback):
    """What a training step did: the parameters with a gradient before the update, and the weights after it."""

    def __init__(self):
        self.with_gradient, self.after_step = set(), None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.with_gradient |= {name for name, p in model.named_parameters() if p.grad is not None}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.after_step is None:
            self.after_step = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_only_the_adapters_get_gradients_and_the_weights_stay_put_until_the_merge(tokenizer, pairs, tmp_path):
    model = build_model(TINY, tokenizer)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    watch = _Watch()
    trained = train_sft(model, tokenizer, pairs, {**CFG, "max_steps": 1}, tmp_path, callbacks=[watch],
                        lora={"r": 4, "alpha": 8})
    adapters = {name for name in watch.after_step if ".lora_A." in name or ".lora_B." in name}
    assert len(adapters) == 2 * LAYERS
    assert watch.with_gradient == adapters
    # After the step, before the merge: every weight of the model as it was, the adapters B moved off zero.
    for name, tensor in watch.after_step.items():
        base_name = name.removeprefix("base_model.model.").replace(".base_layer.", ".")
        if name in adapters:
            assert ".lora_A." in name or tensor.abs().sum() > 0, name
        else:
            assert torch.equal(tensor, before[base_name]), name
    # Merged: the attention weights alone changed, each by a matrix of rank at most r.
    after = trained.state_dict()
    assert _changed(before, after) == _attention_weights()
    _assert_low_rank_update(before, after, _attention_weights(), rank=4)


def test_a_lora_run_returns_and_saves_a_plain_model(tokenizer, pairs, tmp_path):
    model = build_model(TINY, tokenizer)
    trained = train_sft(model, tokenizer, pairs, CFG, tmp_path / "run", lora={"r": 2, "alpha": 4})
    assert trained is model and type(trained) is GPTNeoXForCausalLM
    assert not any("lora" in name for name in trained.state_dict())
    assert "forward" not in trained.__dict__  # TRL's forward patch is dropped, as with full fine-tuning
    expected = _logits(trained, tokenizer)
    save_model_and_tokenizer(trained, tokenizer, tmp_path / "saved")
    # train's own output_dir holds the merged model too, not adapters
    for directory in (tmp_path / "run", tmp_path / "saved"):
        assert not (directory / "adapter_config.json").exists() and not (directory / "adapter_model.safetensors").exists()
        loaded, _ = load_model_and_tokenizer(directory)
        assert type(loaded) is GPTNeoXForCausalLM
        assert torch.equal(_logits(loaded, tokenizer), expected)


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_an_interrupted_lora_run_resumes_from_its_adapters_and_a_finished_one_is_not_trained_again(
        tokenizer, pairs, tmp_path):
    from llome.train import latest_checkpoint

    cfg, lora = {**CFG, "save_steps": 2}, {"r": 4, "alpha": 8}
    straight = train_sft(build_model(TINY, tokenizer), tokenizer, pairs, cfg, tmp_path / "straight", lora=lora)
    train_sft(build_model(TINY, tokenizer), tokenizer, pairs, cfg, tmp_path / "resumed", callbacks=[_StopAt(2)],
              lora=lora)
    checkpoint = Path(latest_checkpoint(tmp_path / "resumed"))
    assert checkpoint.name == "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()
    # A checkpoint holds the adapters alone: the job rebuilds the same model under them (the previous round's,
    # or round 0's seeded one), and the adapters, optimizer and data order come from the checkpoint.
    resumed = train_sft(build_model(TINY, tokenizer), tokenizer, pairs, cfg, tmp_path / "resumed", lora=lora)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    # finished: the last checkpoint's adapters are loaded and merged, nothing trains
    again = train_sft(build_model(TINY, tokenizer), tokenizer, pairs, cfg, tmp_path / "straight", lora=lora)
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), again.state_dict().values()))


class _Snapshots(TrainerCallback):
    """The adapters and weights at every evaluation, to check which ones a selecting run returns."""

    def __init__(self):
        self.states = {}

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.states[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_selecting_lora_run_merges_the_chosen_checkpoints_adapters(tokenizer, pairs, tmp_path):
    snapshots = _Snapshots()
    select = {**CFG, "max_steps": 8, "eval_fraction": 0.25, "num_evals": 4, "select_checkpoint": True,
              "num_states": NUM_STATES}
    model = build_model(TINY, tokenizer)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    trained = train_sft(model, tokenizer, pairs, select, tmp_path, callbacks=[snapshots],
                        lora={"r": 4, "alpha": 2, "target_modules": ["query_key_value"]})
    table = pd.read_csv(tmp_path / "checkpoints.csv")
    chosen = snapshots.states[int(table.loc[table["chosen"], "step"].item())]
    after = trained.state_dict()
    for name in _attention_weights():
        prefix = "base_model.model." + name.removesuffix(".weight")
        A, B = chosen[f"{prefix}.lora_A.default.weight"], chosen[f"{prefix}.lora_B.default.weight"]
        assert torch.allclose(after[name], before[name] + (2 / 4) * B @ A, atol=1e-6), name  # W + alpha/r B A
    assert _changed(before, after) == _attention_weights()


PLAIN_LOAD = """
import sys
sys.modules["peft"] = None  # peft cannot be imported here
import json, torch
from llome.models import load_model_and_tokenizer
model, tokenizer = load_model_and_tokenizer(sys.argv[1])
assert type(model).__name__ == "GPTNeoXForCausalLM"
ids = torch.tensor([json.loads(sys.argv[2])])
with torch.no_grad():
    print(json.dumps(model.eval()(input_ids=ids).logits.flatten().tolist()))
"""


@pytest.mark.slow
def test_the_saved_model_loads_without_peft_and_gives_the_merged_models_logits(tokenizer, pairs, tmp_path):
    trained = train_sft(build_model(TINY, tokenizer), tokenizer, pairs, CFG, tmp_path / "run", lora={"r": 4})
    save_model_and_tokenizer(trained, tokenizer, tmp_path / "saved")
    ids = tokenizer(format_prompt([1, 2, 3, 4, 5, 6]) + format_completion([6, 5, 4, 3, 2, 1]))["input_ids"]
    done = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(tmp_path / "saved"), json.dumps(ids)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": _python_path()})
    assert done.returncode == 0, done.stderr[-3000:]
    logits = torch.tensor(json.loads(done.stdout.strip().splitlines()[-1]))
    assert torch.allclose(logits, _logits(trained, tokenizer).flatten(), atol=1e-5)


def _python_path() -> str:
    return os.pathsep.join([str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


# --- every objective, as a round's job -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def previous_round(tokenizer, tmp_path_factory):
    """A saved model, as a round's job finds its previous round's."""
    directory = tmp_path_factory.mktemp("previous") / "model"
    save_model_and_tokenizer(build_model({**TINY, "seed": 5}, tokenizer), tokenizer, directory)
    return directory


@pytest.mark.parametrize(("objective", "launcher"), [
    ("sft", "inprocess"), ("marge", "inprocess"), ("dpo", "inprocess"),
    pytest.param("marge", "subprocess", marks=pytest.mark.slow),  # a launched job (llome.launch) does the same
])
def test_a_lora_round_changes_only_the_targeted_weights_and_saves_a_plain_model(objective, launcher, pairs,
                                                                                previous_round, tmp_path):
    from llome import jobs

    table = _triples(pairs) if objective == "dpo" else pairs
    job = jobs.train(objective, table, {**CFG, "learning_rate": 1e-2}, tmp_path / "job", seed=0,
                     model_dir=previous_round, launcher={"kind": launcher, "device": "cpu"},
                     lora={"r": 2, "alpha": 16, "dropout": 0.0, "target_modules": ["query_key_value"]})
    assert not (job / "adapter_config.json").exists()
    before = load_model_and_tokenizer(previous_round)[0].state_dict()
    after = load_model_and_tokenizer(job)[0].state_dict()
    assert _changed(before, after) == _attention_weights()
    _assert_low_rank_update(before, after, _attention_weights(), rank=2)


def test_round_zero_trains_lora_on_the_model_it_builds(tmp_path):
    from llome.jobs import model_spec
    from llome.round_zero import run_round_zero

    rng = np.random.default_rng(1)
    pool = rng.integers(0, NUM_STATES, size=(80, LENGTH))
    seed_table = pd.DataFrame({"sequence": [tuple(map(int, row)) for row in pool],
                               "score": (pool == np.arange(LENGTH)).mean(axis=1)})
    model_cfg = {"name_or_path": None, "gpt_neox": {k: v for k, v in TINY.items() if k != "seed"},
                 "lora": {"r": 2, "alpha": 2, "dropout": 0.1, "target_modules": ["dense"]}}
    pairs_cfg = {"max_distance": 0.5, "num_neighbors": 4, "infeasible_fraction": 0.1, "max_pairs": 32}
    run_round_zero(seed_table, model_cfg=model_cfg, pairs_cfg=pairs_cfg, train_cfg=CFG, num_states=NUM_STATES,
                   out_dir=tmp_path / "seed_1", seed=1, progress=False)
    before = build_model(model_spec(model_cfg, seed=1), build_tokenizer(NUM_STATES)).state_dict()
    after = load_model_and_tokenizer(tmp_path / "seed_1" / "model")[0].state_dict()
    dense = {f"gpt_neox.layers.{i}.attention.dense.weight" for i in range(LAYERS)}
    assert _changed(before, after) == dense
    _assert_low_rank_update(before, after, dense, rank=2)


@pytest.mark.slow
def test_every_llome_round_trains_lora_from_the_previous_rounds_merged_model(copy_model, tmp_path):
    from test_loop import _setup

    from llome.loop import run_llome
    from llome.rounds import round_dir

    f, seed_table, round_zero, cfg = _setup(copy_model, tmp_path)  # two MargE rounds from the copy model
    lora = {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": None}
    run_llome({**cfg, "lora": lora}, function=f, seed_table=seed_table, round_zero_dir=round_zero,
              run_dir=tmp_path / "run", seed=0, progress=False)
    previous = load_model_and_tokenizer(round_zero / "model")[0].state_dict()
    for index in (1, 2):
        model = load_model_and_tokenizer(round_dir(tmp_path / "run", index) / "model")[0].state_dict()
        assert _changed(previous, model) == _attention_weights()
        _assert_low_rank_update(previous, model, _attention_weights(), rank=2)
        previous = model


def test_peft_picks_q_proj_and_v_proj_for_a_llama_when_no_targets_are_named(tokenizer, pairs, tmp_path):
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    wrapped = add_lora(copy.deepcopy(model), {"r": 4})
    # q_proj maps 32 -> 32, v_proj 32 -> 2 key-value heads x 8 = 16; two blocks
    assert sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == 2 * 4 * ((32 + 32) + (32 + 16))
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    merged = train_sft(model, tokenizer, pairs, CFG, tmp_path, lora={"r": 4})
    assert type(merged) is LlamaForCausalLM
    projections = {f"model.layers.{i}.self_attn.{name}.weight" for i in range(2) for name in ("q_proj", "v_proj")}
    assert _changed(before, merged.state_dict()) == projections


# --- the setting ---------------------------------------------------------------------------------------------


def _profile_with_lora(lora, profile="default"):
    params = copy.deepcopy(PARAMS)
    params["profiles"][profile].setdefault("model", {})["lora"] = lora
    return params


GOOD = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["query_key_value"]}


@pytest.mark.parametrize(("change", "key"), [
    ({"r": 0}, r"model\.lora\.r: must be >= 1, got 0"),
    ({"r": 2.5}, r"model\.lora\.r: must be an integer"),
    ({"alpha": 0}, r"model\.lora\.alpha: must be > 0"),
    ({"dropout": 1.0}, r"model\.lora\.dropout: must be < 1"),
    ({"target_modules": []}, r"model\.lora\.target_modules: must not be empty"),
    ({"target_modules": "query_key_value"}, r"model\.lora\.target_modules"),
    ({"target_modules": ["q_proj"]}, r"model\.lora\.target_modules: \['q_proj'\] name no linear layer of "
                                     r"GPTNeoXForCausalLM"),
    ({"target_modules": ["lm_head"]}, r"model\.lora\.target_modules: the output layer 'lm_head'"),
    ({"rank": 8}, r"model\.lora\.rank: unknown key"),
])
def test_a_bad_lora_setting_fails_before_any_work_and_names_its_key(change, key):
    with pytest.raises(ConfigError, match=rf"profiles\.default\.{key}"):
        load_profile(_profile_with_lora({**GOOD, **change}), "default")


def test_a_profile_must_set_every_lora_key():
    with pytest.raises(ConfigError, match=r"profiles\.default\.model\.lora: missing key\(s\) alpha, dropout"):
        load_profile(_profile_with_lora({"r": 8, "target_modules": None}), "default")


@pytest.mark.parametrize(("settings", "message"), [
    ({"r": -1}, r"^lora\.r: must be >= 1, got -1$"),
    ({"target_modules": ["q_proj"]}, r"^lora\.target_modules: \['q_proj'\] name no linear layer"),
    ("r=8", r"^lora must be null or a mapping"),
])
def test_a_bad_lora_setting_given_to_training_names_its_key(tokenizer, pairs, tmp_path, settings, message):
    with pytest.raises(ConfigError, match=message):
        train_sft(build_model(TINY, tokenizer), tokenizer, pairs, CFG, tmp_path, lora=settings)
    assert not (tmp_path / "checkpoint-4").exists()


def test_the_library_defaults_are_peft_defaults():
    from peft import LoraConfig as PeftLoraConfig

    ours, theirs = lora_config({}), PeftLoraConfig()
    assert (ours.r, ours.alpha, ours.dropout, ours.target_modules) == (
        theirs.r, theirs.lora_alpha, theirs.lora_dropout, theirs.target_modules)


def test_every_shipped_profile_fine_tunes_every_weight():
    for profile in PARAMS["profiles"]:
        assert PARAMS["profiles"][profile]["model"]["lora"] is None, profile  # set, and null, in each
        stages = stage_configs(load_profile(PARAMS, profile))
        assert stages["sft"]["model"]["lora"] is None
        assert all(stages[f"llome_{m}"]["lora"] is None for m in ("sft", "marge", "dpo"))


def test_model_lora_reaches_round_zero_and_every_method():
    stages = stage_configs(load_profile(_profile_with_lora(GOOD), "default"))
    assert stages["sft"]["model"]["lora"] == GOOD
    assert all(stages[f"llome_{m}"]["lora"] == GOOD for m in ("sft", "marge", "dpo"))
    # a checkpoint's layers are known once it loads: a Llama's names pass the profile check
    llama = {**GOOD, "target_modules": ["q_proj", "v_proj"]}
    params = _profile_with_lora(llama, "pretrained")
    assert stage_configs(load_profile(params, "pretrained"))["sft"]["model"]["lora"] == llama


# --- null LoRA: the training of before, bit for bit ----------------------------------------------------------

# Three short runs (SFT, MargE, DPO) from a seeded tiny GPT-NeoX, under the pinned numerics on 2 threads, and a hash
# of each trained model's weights. The digests were recorded at commit 46ba2ac, before LoRA existed (and before
# peft was installed); with lora null the same calls must give the same bits. A deliberate change to training
# (its defaults, TRL, transformers) moves them: record them again then, with this script, and say why.
TRAIN_THREE_OBJECTIVES = """
import hashlib, sys, tempfile, llome, llome.numerics as numerics
numerics.apply(2)
import numpy as np, pandas as pd
from llome.models import build_model
from llome.tokenizer import build_tokenizer
from llome.train import train_dpo, train_marge, train_sft
tokenizer = build_tokenizer(8)
spec = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 64, "seed": 0}
rng = np.random.default_rng(0)
xs = [tuple(int(v) for v in rng.integers(0, 8, 6)) for _ in range(16)]
pairs = pd.DataFrame({"x": xs, "y": [tuple(sorted(x)) for x in xs], "reward": rng.uniform(0, 1, 16)})
triples = pd.DataFrame({"x": xs, "y_w": pairs.y, "y_l": xs})
cfg = {"max_steps": 3, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "logging_steps": 100,
       "save_steps": 100, "disable_tqdm": True, "eval_fraction": 0}
out = tempfile.mkdtemp()
def digest(model):
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode() + tensor.numpy().tobytes())
    return h.hexdigest()[:16]
for objective in ("sft", "marge", "dpo"):
    model = build_model(spec, tokenizer)
    if objective == "sft":
        trained = train_sft(model, tokenizer, pairs, cfg, f"{out}/sft")
    elif objective == "marge":
        trained = train_marge(model, build_model(spec, tokenizer), tokenizer, pairs, cfg, f"{out}/marge")
    else:
        trained = train_dpo(model, build_model(spec, tokenizer), tokenizer, triples, cfg, f"{out}/dpo")
    print(objective, digest(trained))
"""
BEFORE_LORA = {"sft": "4b4ae8059c5086be", "marge": "b1f0d8c02b5ecb72", "dpo": "e827cb84ee64c56d"}


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the pinned numerics are x86-64's")
def test_null_lora_trains_exactly_as_before_lora_existed():
    from llome import numerics

    env = {k: v for k, v in os.environ.items() if k not in (*numerics.PINS, numerics.SWITCH, "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS")}
    done = subprocess.run([sys.executable, "-c", TRAIN_THREE_OBJECTIVES], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": _python_path(), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    digests = dict(line.split() for line in done.stdout.splitlines() if line.split()[:1] in (["sft"], ["marge"], ["dpo"]))
    assert digests == BEFORE_LORA
