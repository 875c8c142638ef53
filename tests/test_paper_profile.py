"""The `paper` profile end to end at toy size, through the stage functions the notebooks call.

Only sizes are overridden: a small Ehrlich instance, a tiny pretrained-style checkpoint (byte-level BPE
tokenizer without a pad token, like Pythia's, taught to copy its input so that it proposes valid sequences),
2 CPU processes instead of 8 GPUs, 2 rounds, small n and seed data, one seed. Everything else is the paper
profile's: `name_or_path` loading, `accelerate launch` with bf16 asked for, the learning rates, the temperature
schedule, six temperatures, and no cap on the number of pairs.
"""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from llome.config import load_profile, stage_configs
from llome.ehrlich import Ehrlich
from llome.generate import temperature_schedule
from llome.io import read_json, read_table
from llome.jobs import build_training_set
from llome.models import build_model, load_model_and_tokenizer, save_model_and_tokenizer
from llome.stages.common import read_seed_table
from llome.stages.llome_rounds import llome_method
from llome.stages.round_zero import round_zero
from llome.stages.seed_data import seed_data
from llome.text import format_completion, format_prompt
from llome.train import train_sft

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parents[1]
FUNCTION = "ehr_v-08_l-008_m-2_c-2_q-2"
EOS = "<|endoftext|>"


def _pretrained_checkpoint(path: Path, function: Ehrlich) -> Path:
    """A 2-layer GPT-NeoX with its own BPE tokenizer, trained to copy a sequence with a few edits (~6 s)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, function.num_states, size=(400, function.dim))
    y = np.where(rng.random(x.shape) < 0.03, rng.integers(0, function.num_states, size=x.shape), x)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(
        [format_prompt(a) + format_completion(b) for a, b in zip(x[:200], y[:200])],
        trainers.BpeTrainer(vocab_size=300, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS)
    tokenizer.pad_token = EOS  # for this pre-training only: the saved tokenizer has no pad token
    model = build_model({"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
                         "intermediate_size": 64, "max_position_embeddings": 256, "seed": 0}, tokenizer)
    pairs = pd.DataFrame({"x": [tuple(map(int, r)) for r in x], "y": [tuple(map(int, r)) for r in y]})
    model = train_sft(model, tokenizer, pairs, {"learning_rate": 3e-3, "num_train_epochs": 25, "disable_tqdm": True,
                                                "per_device_train_batch_size": 32, "logging_steps": 1000,
                                                "save_steps": 100000}, path.parent / "pretraining")
    tokenizer.pad_token = None
    save_model_and_tokenizer(model, tokenizer, path)
    return path


def _toy_paper_profile(checkpoint: Path) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    paper = params["profiles"]["paper"]
    sizes = {
        "function": FUNCTION,
        "seeds": [0],
        "device": "cpu",  # 2 processes on the CPU even where there is one GPU
        "model": {"name_or_path": str(checkpoint)},
        "launcher": {"num_processes": 2},
        "seed_data": {"num_particles": 64, "num_steps": 3},
        "llome": {"rounds": 2,
                  "generation": {"num_seeds": 4, "num_iterations": 2, "num_samples": 2},
                  "selection": {"num_to_label": 24}},
        "lambo2": {"num_mutations_per_step": 4},  # not run here, but a profile's LaMBO-2 edits at most L=8 a step
    }
    params["profiles"]["paper"] = _merge(paper, sizes)
    return load_profile(params, "paper")


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        merged[key] = _merge(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    checkpoint = _pretrained_checkpoint(root / "pretrained", Ehrlich.from_name(FUNCTION))
    cfg = _toy_paper_profile(checkpoint)
    stages = stage_configs(cfg)
    seed_data(stages["seed_data"], root / "seed", progress=False)
    round_zero(stages["sft"], root / "seed", root / "sft")
    results = {}
    for method in cfg["llome"]["methods"]:
        results[method] = llome_method(stages[f"llome_{method}"], root / "seed", root / "sft",
                                       root / "llome" / method, progress=False)
    return {"root": root, "cfg": cfg, "stages": stages, "checkpoint": checkpoint, "results": results}


def test_toy_run_keeps_every_paper_setting_but_sizes(paper_run):
    cfg = paper_run["cfg"]
    paper = load_profile(ROOT / "params.yaml", "paper")
    assert cfg["launcher"] == {**paper["launcher"], "num_processes": 2}
    assert cfg["launcher"]["kind"] == "accelerate" and cfg["launcher"]["mixed_precision"] == "bf16"
    assert cfg["pairs"] == paper["pairs"] and cfg["pairs"]["max_pairs"] is None
    assert cfg["llome"]["generation"]["temperature_schedule"] is True
    assert cfg["llome"]["generation"]["temperatures"] == paper["llome"]["generation"]["temperatures"]
    assert cfg["llome"]["methods"] == paper["llome"]["methods"]
    assert cfg["sft"] == paper["sft"]


def test_round_zero_trains_the_checkpoint_with_its_own_tokenizer_on_every_pair(paper_run):
    root, stages = paper_run["root"], paper_run["stages"]
    model, tokenizer = load_model_and_tokenizer(root / "sft" / "seed_0" / "model")
    _, original = load_model_and_tokenizer(paper_run["checkpoint"])
    assert tokenizer.get_vocab() == original.get_vocab() and tokenizer.eos_token == EOS
    assert tokenizer.pad_token == EOS  # Pythia's convention, set on loading
    assert model.config.hidden_size == 32  # the checkpoint's architecture, not the profile's gpt_neox sizes
    # max_pairs: null keeps every pair the seed data gives.
    every_pair = build_training_set("sft", read_seed_table(root / "seed", 0), stages["sft"]["pairs"], seed=0)
    metrics = read_json(root / "sft" / "seed_0" / "metrics.json")
    assert metrics["num_pairs"] == len(every_pair) == len(read_table(root / "sft" / "seed_0" / "pairs.parquet"))


def test_every_method_runs_two_rounds_on_the_temperature_schedule(paper_run):
    root, cfg = paper_run["root"], paper_run["cfg"]
    base = cfg["llome"]["generation"]["temperatures"]
    n = cfg["llome"]["selection"]["num_to_label"]
    shifted = 0
    for method, (rounds, trace) in paper_run["results"].items():
        assert list(rounds["round"]) == [1, 2], method
        assert (rounds["oracle_calls"] <= n).all() and rounds["oracle_calls"].sum() > 0, method
        # Pairs come from the round's own few labels, so a toy round can have none; most launch a training job.
        assert (rounds["num_pairs"] > 0).any(), method
        first, second = (read_json(root / "llome" / method / "seed_0" / f"round_{i:02d}" / "metrics.json")
                         for i in (1, 2))
        assert first["temperatures"] == base
        # Round 2's temperatures follow from round 1's mean edit distance (docs/method.md §4).
        expected = temperature_schedule(first["generation"]["mean_distance"], base)
        assert second["temperatures"] == pytest.approx(list(expected)), method
        shifted += second["temperatures"] != base
        for index in (1, 2):
            model_dir = root / "llome" / method / "seed_0" / f"round_{index:02d}" / "model"
            load_model_and_tokenizer(model_dir)
        assert trace["oracle_calls"].max() <= cfg["seed_data"]["num_particles"] * cfg["seed_data"]["num_steps"] + 2 * n
    assert shifted > 0  # the copying model's small edits move the schedule at least once
