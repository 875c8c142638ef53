"""The prompted-LLM baseline's settings, apart from llome.prompted so that the params stage, which checks them,
imports pydantic alone (llome.prompted imports torch)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from llome.schema import ConfigError, Model, NonNegativeInt, PositiveFloat, PositiveInt, error_lines


class PromptedConfig(Model):
    """The prompted-LLM baseline (llome.prompted, docs/prompted.md): an off-the-shelf instruction-tuned LLM is shown
    the task and scored examples through its chat template and asked, never fine-tuned, for better sequences.

    A profile holds it as the optional section `prompted`; every key has a default, and `prompted_config` checks a
    section, naming each problem's key path.
    """

    # The default is `make smollm2`'s checkpoint; any local directory or hub name of an instruction-tuned causal LM.
    name_or_path: Annotated[str, Field(strict=True, min_length=1)] = "models/smollm2"
    gguf_file: Annotated[str, Field(strict=True, min_length=1)] | None = "SmolLM2-135M-Instruct.Q4_1.gguf"
    chat_template: Annotated[str, Field(strict=True, min_length=1)] | None = None  # None: the tokenizer's own
    # Sized for SmolLM2 on 2 CPU cores: 3 seeds in about 25 minutes, 50 at worst (docs/prompted.md has the arithmetic).
    rounds: PositiveInt = 4
    num_samples: PositiveInt = 24  # proposals drawn per round
    num_to_label: PositiveInt = 24  # n: the most oracle calls a round pays for
    num_examples: PositiveInt = 8  # scored sequences shown in the prompt
    num_best: NonNegativeInt = 4  # of which the best labelled so far; the rest are random feasible seed data
    temperature: PositiveFloat = 0.7  # not tuned; greedy decoding would give one proposal per prompt
    max_new_tokens: PositiveInt | None = None  # None: the widest list of L states, plus a little for a preamble
    reply_prefix: Annotated[str, Field(strict=True)] = "["  # the assistant's reply starts with it; "" leaves it free
    batch_size: PositiveInt = 24  # rows decoded at once; each chunk draws its own random stream

    @field_validator("num_to_label")
    @classmethod
    def _labels_what_it_draws(cls, value: int, info: ValidationInfo) -> int:
        drawn = info.data.get("num_samples")
        if drawn is not None and value > drawn:
            raise ValueError(f"a round labels at most the num_samples={drawn} proposals it draws")
        return value

    @field_validator("num_best")
    @classmethod
    def _best_among_the_examples(cls, value: int, info: ValidationInfo) -> int:
        shown = info.data.get("num_examples")
        if shown is not None and value > shown:
            raise ValueError(f"must be at most num_examples={shown}: the best are some of the examples shown")
        return value


def prompted_config(settings: Mapping[str, Any] | PromptedConfig | None, where: str = "prompted") -> PromptedConfig:
    """The prompted baseline's settings from a profile section (None: every default); a bad one raises ConfigError
    naming its key path under `where`."""
    if isinstance(settings, PromptedConfig):
        return settings
    if settings is not None and not isinstance(settings, Mapping):
        raise ConfigError(f"{where}: must be a mapping of settings, got {settings!r}")
    try:
        return PromptedConfig.model_validate(dict(settings or {}))
    except ValidationError as error:
        raise ConfigError("\n".join(error_lines(error, where))) from None
