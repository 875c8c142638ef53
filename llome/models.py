"""Causal language models: a small GPT-NeoX (Pythia architecture) from scratch, or any local/hub checkpoint.

A model config is a plain dict. Either it describes a GPT-NeoX to build from scratch:

    {"num_hidden_layers": 6, "hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 256,
     "max_position_embeddings": 1024, "seed": 0}

(the authors' from-scratch setting was 6 layers, hidden 64, 4 heads), or it names a checkpoint:

    {"name_or_path": "path/to/checkpoint"}      # or a hub name, when the hub is reachable
    {"name_or_path": "models/smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}

`gguf_file` names a GGUF file in that directory (e.g. `make smollm2`, llome/smollm2.py): transformers dequantises
it, with its tokenizer, through the `gguf` package. Once trained and saved, the model is a plain safetensors
directory and loads without it.

The vocabulary size and the pad/eos ids always come from the tokenizer.

Where a model runs is a device setting (params.yaml `device`): "auto" (the first CUDA GPU when there is one,
else the CPU), "cpu", "cuda" or "cuda:N"; `resolve_device` turns it into a torch.device.
"""

from __future__ import annotations

import os
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GgufConfig,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from llome.io import share_as_umask
from llome.runtime import PRECISIONS, check_device
from llome.tokenizer import build_tokenizer

_PRECISION_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

_REQUIRED_SIZES = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)
# Set from the tokenizer, never from the config, so that model and tokenizer cannot disagree.
_FROM_TOKENIZER = ("vocab_size", "pad_token_id", "eos_token_id", "bos_token_id")
_GPT_NEOX_FIELDS = frozenset(GPTNeoXConfig().to_dict()) - set(_FROM_TOKENIZER)

def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch.device a device setting names on this machine; a GPU that is not there is an error, not the CPU."""
    if isinstance(device, torch.device):
        return device
    device = check_device(device)
    if device == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asks for a CUDA GPU, but torch sees none (torch.cuda.is_available() "
                           "is False); set device: cpu or auto")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device("cuda", index)


def effective_precision(mixed_precision: str | None, device: str | torch.device | None) -> str:
    """The launcher's mixed precision where the device has it, else "no" (full fp32).

    Half precision is for CUDA GPUs only: on a CPU, bf16 autocast runs 7-10x slower (bench/bench_train.py), and
    a GPU without bf16 (before Ampere) falls back to fp32 rather than to fp16's different numerics.
    """
    mixed_precision = mixed_precision or "no"
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {mixed_precision!r}")
    if mixed_precision == "no" or resolve_device(device).type != "cuda":
        return "no"
    if mixed_precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "no"
    return mixed_precision


def inference_dtype(device: str | torch.device | None, launcher: dict | None = None) -> torch.dtype:
    """The dtype to generate in: the launcher's half precision on a GPU that has it, float32 otherwise."""
    return _PRECISION_DTYPES[effective_precision((launcher or {}).get("mixed_precision"), device)]


def build_model(model_cfg: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A causal LM for `tokenizer`: a seeded GPT-NeoX from scratch, or the checkpoint `model_cfg["name_or_path"]`."""
    if not isinstance(model_cfg, dict):
        raise ValueError(f"model_cfg must be a dict, got {type(model_cfg).__name__}")
    _check_tokenizer(tokenizer)
    if "name_or_path" in model_cfg:
        return _load_pretrained(model_cfg, tokenizer)
    return _build_gpt_neox(model_cfg, tokenizer)


def build_model_and_tokenizer(
    model_cfg: dict[str, Any], num_states: int
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and its tokenizer: the format's word-level tokenizer from scratch, a checkpoint's own otherwise."""
    if isinstance(model_cfg, dict) and "name_or_path" in model_cfg:
        tokenizer = load_tokenizer(model_cfg["name_or_path"], gguf_file=model_cfg.get("gguf_file"))
    else:
        tokenizer = build_tokenizer(num_states)
    return build_model(model_cfg, tokenizer), tokenizer


def load_tokenizer(name_or_path: str | os.PathLike, gguf_file: str | None = None) -> PreTrainedTokenizerBase:
    """A checkpoint's tokenizer, with the eos token doubling as pad token when it has none (as in Pythia)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, **_gguf_argument(gguf_file))
    except OSError as error:
        raise OSError(_unavailable_message("tokenizer", name_or_path)) from error
    if tokenizer.eos_token is None:
        raise ValueError(f"the tokenizer of {str(name_or_path)!r} has no eos token; generations could never end")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    path: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model and tokenizer saved together in directory `path` (e.g. by `save_model_and_tokenizer`).

    The model lands on `device` (a device setting, see `resolve_device`; None leaves it on the CPU) in `dtype`
    (None: float32, whatever the checkpoint was saved in, so that it can be trained).
    """
    directory = Path(path)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a saved model directory (no config.json)")
    tokenizer = load_tokenizer(directory)
    model = _load_pretrained({"name_or_path": str(directory)}, tokenizer, dtype=dtype)
    if device is not None:
        model = model.to(resolve_device(device))
    return model, tokenizer


def save_model_and_tokenizer(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | os.PathLike
) -> None:
    """Write both into directory `path`, so that `load_model_and_tokenizer(path)` restores them."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    share_as_umask(path)  # safetensors writes the weights 0600


def _build_gpt_neox(model_cfg: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> GPTNeoXForCausalLM:
    settings = dict(model_cfg)
    seed = settings.pop("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"model seed must be an integer, got {seed!r}")
    for name in settings:
        if name in _FROM_TOKENIZER:
            raise ValueError(f"model config field {name!r} is taken from the tokenizer; remove it from the config")
        if name not in _GPT_NEOX_FIELDS:
            raise ValueError(f"unknown model config field {name!r} (not a GPTNeoXConfig setting)")
    for name in _REQUIRED_SIZES:
        value = settings.get(name)
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"model config field {name!r} must be a positive integer, got {value!r}")
    if settings["hidden_size"] % settings["num_attention_heads"]:
        raise ValueError(
            f"hidden_size={settings['hidden_size']} is not divisible by "
            f"num_attention_heads={settings['num_attention_heads']}"
        )

    config = GPTNeoXConfig(
        **settings,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    # Weight init draws from torch's global generator; forking it makes the init a function of `seed` alone and
    # leaves the caller's global RNG state untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = GPTNeoXForCausalLM(config)
    _align_generation_ids(model, tokenizer)
    return model


def _load_pretrained(
    model_cfg: dict[str, Any], tokenizer: PreTrainedTokenizerBase, dtype: torch.dtype | None = None
) -> PreTrainedModel:
    extra = set(model_cfg) - {"name_or_path", "gguf_file"}
    if extra:
        raise ValueError(
            f"model config fields {sorted(extra)} have no effect with 'name_or_path': a checkpoint brings its own "
            "architecture"
        )
    name_or_path = model_cfg["name_or_path"]
    try:
        # transformers 5 loads a checkpoint in its saved dtype by default (Pythia's is float16), and AdamW on
        # half-precision weights has no fp32 master copy: training needs float32 unless told otherwise.
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype or torch.float32,
                                                     **_gguf_model_arguments(model_cfg.get("gguf_file")))
    except OSError as error:
        raise OSError(_unavailable_message("model", name_or_path)) from error
    if getattr(model, "is_quantized", False):
        raise ValueError(f"the model {str(name_or_path)!r} loaded with quantized weights, which cannot be trained")
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        # A pad token added to the tokenizer needs an embedding row.
        model.resize_token_embeddings(len(tokenizer))
    _align_generation_ids(model, tokenizer)
    return model


def _gguf_argument(gguf_file: str | None) -> dict[str, str]:
    if gguf_file is None:
        return {}
    if not isinstance(gguf_file, str) or not gguf_file:
        raise ValueError(f"gguf_file must be the name of a GGUF file in name_or_path, got {gguf_file!r}")
    return {"gguf_file": gguf_file}


def _gguf_model_arguments(gguf_file: str | None) -> dict[str, Any]:
    if gguf_file is None:
        return {}
    # Plain float weights, not GGUF blocks: the Trainer refuses a model that still counts as quantized, and a
    # quantized model cannot be saved as the safetensors directory the next round loads.
    return {**_gguf_argument(gguf_file), "quantization_config": GgufConfig(dequantize=True)}


def _align_generation_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    for config in (model.config, model.generation_config):
        config.pad_token_id = tokenizer.pad_token_id
        config.eos_token_id = tokenizer.eos_token_id


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    if not isinstance(tokenizer, PreTrainedTokenizerBase):
        raise ValueError(f"tokenizer must be a transformers tokenizer, got {type(tokenizer).__name__}")
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer needs both an eos and a pad token")


def _unavailable_message(what: str, name_or_path: str | os.PathLike) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    hint = " and the hub is offline (HF_HUB_OFFLINE=1)" if offline else " or the hub could not serve it"
    return f"cannot load the {what} {str(name_or_path)!r}: it is not a saved local directory{hint}"
