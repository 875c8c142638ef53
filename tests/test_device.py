"""The device setting: its validation, what it resolves to, and the precision that follows from it."""

import copy
from pathlib import Path

import pytest
import torch
import yaml

from llome.config import ConfigError, load_profile, stage_configs
from llome.launch import check_launcher
from llome.models import (
    build_model_and_tokenizer,
    check_device,
    effective_precision,
    inference_dtype,
    load_model_and_tokenizer,
    resolve_device,
)
from llome.train import placement

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
TINY = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32,
        "max_position_embeddings": 64, "seed": 0}
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_well_formed_devices_are_accepted(device):
    assert check_device(device) == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:01", "cuda:-1", "CPU", "mps", 0, ""])
def test_malformed_devices_are_refused_with_the_value(device):
    with pytest.raises(ValueError, match=f"auto, cpu, cuda or cuda:N, got {device!r}"):
        check_device(device)


def test_the_profiles_device_is_validated_and_reaches_the_training_and_generation_stages():
    stages = stage_configs(load_profile(PARAMS, "default"))
    for name in ("sft", "llome_sft", "llome_marge", "llome_dpo"):
        assert stages[name]["device"] == "auto" and stages[name]["launcher"]["device"] == "auto", name
    params = copy.deepcopy(PARAMS)
    params["profiles"]["default"]["device"] = "gpu0"
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N, got 'gpu0'"):
        load_profile(params, "default")
    params["profiles"]["default"]["device"] = "cuda:1"
    with pytest.raises(ConfigError, match="pins one GPU, but launcher.num_processes=8"):
        load_profile(params, "paper")


def test_launcher_settings_are_checked():
    assert check_launcher(None) == {"kind": "inprocess", "num_processes": 1, "mixed_precision": "no", "device": "auto"}
    with pytest.raises(ValueError, match="needs launcher.kind: accelerate"):
        check_launcher({"kind": "subprocess", "num_processes": 2})
    with pytest.raises(ValueError, match=r"launcher settings \['gpus'\] are unknown"):
        check_launcher({"kind": "accelerate", "gpus": 2})


@no_cuda
def test_without_a_gpu_auto_is_the_cpu_and_cuda_is_an_error():
    assert resolve_device("auto") == resolve_device(None) == torch.device("cpu")
    with pytest.raises(RuntimeError, match="'cuda:0' asks for a CUDA GPU, but torch sees none"):
        resolve_device("cuda:0")


@no_cuda
def test_half_precision_is_for_gpus_only():
    assert effective_precision("bf16", "cpu") == effective_precision("fp16", "auto") == "no"
    assert inference_dtype("auto", {"mixed_precision": "bf16"}) == torch.float32
    assert placement("auto", "bf16") == {"use_cpu": True, "dataloader_pin_memory": False, "bf16": False,
                                         "fp16": False}
    with pytest.raises(ValueError, match="'fp8'"):
        effective_precision("fp8", "cpu")


def test_a_half_precision_checkpoint_loads_in_float32_for_training(tmp_path):
    """transformers 5 loads a checkpoint in its saved dtype; Pythia's is float16, which AdamW cannot train."""
    model, tokenizer = build_model_and_tokenizer(TINY, num_states=4)
    model.to(torch.float16).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, _ = load_model_and_tokenizer(tmp_path, device="cpu")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert loaded.device == torch.device("cpu")
    half, _ = load_model_and_tokenizer(tmp_path, dtype=torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}

