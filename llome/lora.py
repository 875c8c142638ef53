"""LoRA: low-rank adapters (through `peft`) trained in place of a model's weights, then merged into them.

params.yaml's `model.lora` is null (full fine-tuning: the authors' choice, and every shipped profile's) or a
mapping {r, alpha, dropout, target_modules}. With a mapping, every training of the run does the same: round-0 SFT
and each LLOME round, whatever the objective, in the stage's process or a launched job (llome.train). Each
targeted linear layer y = W x gains y = W x + (alpha / r) B A x, with A (r x in) and B (out x r) the only weights
that train, and B starting at zero so that training starts from the model as it was. Before the model is saved,
the adapters are merged in, W <- W + (alpha / r) B A, and peft's wrapping is dropped: the saved directory is a
plain transformers model. The next round, its MargE/DPO reference (the previous round's merged model, loaded
apart as with full fine-tuning) and generation load it without peft and cannot tell that LoRA was used.

This module imports peft only inside `add_lora` and for the architecture defaults of `lora_targets`: checking a
profile needs pydantic alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any

import torch
from pydantic import Field, StrictFloat, ValidationError

from llome.schema import ConfigError, Model, PositiveFloat, PositiveInt, error_lines

logger = logging.getLogger(__name__)

ModuleName = Annotated[str, Field(strict=True, min_length=1)]


class LoraConfig(Model):
    """The LoRA setting; the defaults are peft's own (r 8, alpha 8, no dropout, the architecture's targets).

    `target_modules` names linear layers by the end of their name, as peft matches them (GPT-NeoX:
    query_key_value, dense, dense_h_to_4h, dense_4h_to_h; Llama: q_proj, k_proj, v_proj, o_proj, gate_proj,
    up_proj, down_proj); None takes peft's default for the architecture (GPT-NeoX: query_key_value; Llama:
    q_proj, v_proj). `dropout` acts in SFT only: MargE and DPO switch every dropout of the model off (their
    disable_dropout), the adapters' included.
    """

    r: PositiveInt = 8
    alpha: PositiveFloat = 8.0
    dropout: Annotated[StrictFloat, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.0
    target_modules: Annotated[list[ModuleName], Field(min_length=1)] | None = None


def lora_config(settings: LoraConfig | Mapping[str, Any] | None) -> LoraConfig | None:
    """None (full fine-tuning) or the LoRA setting, checked; a bad value raises ConfigError naming `lora.<key>`."""
    if settings is None or isinstance(settings, LoraConfig):
        return settings
    if not isinstance(settings, Mapping):
        raise ConfigError(f"lora must be null or a mapping of {sorted(LoraConfig.model_fields)}, got {settings!r}")
    try:
        return LoraConfig.model_validate(dict(settings))
    except ValidationError as error:
        raise ConfigError("\n".join(error_lines(error, "lora"))) from None


def add_lora(model: torch.nn.Module, lora: LoraConfig | Mapping[str, Any], seed: int = 0):
    """`model` wrapped in LoRA adapters (a peft PeftModel) on `lora`'s target layers, for training.

    Only the adapters train; every weight of `model` is frozen. The adapters start as a no-op (B = 0), so the
    wrapped model computes what `model` did, and A is drawn from `seed` alone, leaving the caller's random state
    as it was. `model` itself changes in place (its targeted layers become LoRA layers) until `merge_lora`.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    lora = lora_config(lora)
    targets = lora_targets(model, lora.target_modules)
    peft_config = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                                 bias="none", task_type="CAUSAL_LM")
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        wrapped = get_peft_model(model, peft_config)
    trainable = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    total = sum(p.numel() for p in wrapped.parameters())
    logger.info("LoRA r=%d, alpha=%g on %s: %d of %d parameters train (%.2f%%)", lora.r, lora.alpha, targets,
                trainable, total, 100 * trainable / total)
    return wrapped


def merge_lora(model) -> torch.nn.Module:
    """The plain model under a PeftModel, with its adapters merged into the weights: W + (alpha / r) B A."""
    # safe_merge refuses adapters that went NaN rather than write them into the weights.
    return model.merge_and_unload(safe_merge=True)


def lora_targets(model: torch.nn.Module, target_modules: list[str] | None) -> list[str]:
    """The linear layers LoRA adapts in `model`: `target_modules`, or peft's default for the architecture.

    A name matches each layer whose full name is that name or ends in "." and that name (peft's rule). A name that
    matches no linear layer is refused, and so is the output layer: TRL's SFT and DPO compute log-probabilities
    from its weight directly, so an adapter there would never train.
    """
    linear = [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    layer_names = sorted({name.rsplit(".", 1)[-1] for name in linear})
    if target_modules is None:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_DEFAULTS

        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in PEFT_DEFAULTS:
            raise ConfigError(f"lora.target_modules is null, but peft has no default for model type {model_type!r}: "
                              f"name the linear layers to adapt, among {layer_names}")
        target_modules = list(PEFT_DEFAULTS[model_type])

    def matches(name: str, target: str) -> bool:
        return name == target or name.endswith("." + target)

    unknown = [target for target in target_modules if not any(matches(name, target) for name in linear)]
    if unknown:
        raise ConfigError(f"lora.target_modules: {unknown} name no linear layer of {type(model).__name__}, whose "
                          f"linear layers are {layer_names}")
    output_layer = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    output = next((name for name, module in model.named_modules() if module is output_layer), None)
    if output is not None and any(matches(output, target) for target in target_modules):
        raise ConfigError(f"lora.target_modules: the output layer {output!r} cannot take an adapter (TRL's SFT and "
                          "DPO compute log-probabilities from its weight directly, so it would never train)")
    return list(target_modules)
