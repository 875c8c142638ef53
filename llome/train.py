"""Training the proposal model on pairs: SFT and DPO through TRL, MargE through llome.marge (PAPER.md section 5).

Each `train_*` function takes the model, the tokenizer, a DataFrame of pairs or triples, a config and an output
directory, and returns the trained model. The config is a `TrainConfig` or a dict of its fields; a dict may also
carry any field of the trainer's own config class (DPOConfig's `beta`, MargEConfig's `alpha`, `beta`,
`self_normalize`, or any TrainingArguments field), which is checked against that class.

Checkpoints go to `output_dir/checkpoint-<step>` every `save_steps` steps and at the end, and a call whose
`output_dir` already holds a checkpoint resumes from the latest one: an interrupted run picks up where it
stopped, and a finished one reloads its final weights without training again. The final model and tokenizer are
also saved in `output_dir` itself. The same code runs on CPU and under `accelerate launch` on GPUs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback, TrainingArguments
from transformers.utils import logging as transformers_logging
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from llome.marge import MargEConfig, MargETrainer
from llome.text import format_completion, format_prompt

DPO_DEFAULTS: dict[str, Any] = {"beta": 0.4}  # the authors' value
MARGE_DEFAULTS: dict[str, Any] = {"alpha": 1.0, "beta": 10.0, "self_normalize": True}  # the authors' values


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by the three trainers; `extra` holds trainer-specific ones (see the module docstring).

    bf16 and activation (gradient) checkpointing default off: TRL turns both on, and on a CPU they make training
    7-10x slower (bench/bench_train.py). A job run through llome.launch gets its device and precision from the
    launcher instead (see `placement`).
    """

    learning_rate: float = 1e-4
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    warmup_steps: float = 0.0  # a fraction of the training steps when < 1
    lr_scheduler_type: str = "linear"
    max_grad_norm: float = 1.0
    logging_steps: float = 10
    save_steps: float = 500
    save_total_limit: int | None = 2
    seed: int = 0
    bf16: bool = False
    activation_checkpointing: bool = False  # the current name of gradient_checkpointing
    disable_tqdm: bool = False
    dataloader_num_workers: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
        """A TrainConfig from a dict: known keys become fields, the others go to `extra`."""
        if settings is None:
            return cls()
        if isinstance(settings, TrainConfig):
            return settings
        if not isinstance(settings, Mapping):
            raise ValueError(f"training config must be a TrainConfig or a dict, got {type(settings).__name__}")
        settings = dict(settings)
        if "gradient_checkpointing" in settings:  # the old name, still TRL's documented one
            if "activation_checkpointing" in settings:
                raise ValueError("set activation_checkpointing or gradient_checkpointing, not both")
            settings["activation_checkpointing"] = settings.pop("gradient_checkpointing")
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {key: value for key, value in settings.items() if key in names}
        extra = {**settings.get("extra", {}), **{k: v for k, v in settings.items() if k not in names | {"extra"}}}
        return cls(**known, extra=extra)


def training_args(
    config_class: type[TrainingArguments],
    cfg: Mapping[str, Any] | TrainConfig | None,
    output_dir: str | os.PathLike,
    defaults: Mapping[str, Any] | None = None,
    **fixed: Any,
) -> TrainingArguments:
    """`config_class` built from `cfg` over `defaults`, with `fixed` settings the trainer needs."""
    config = TrainConfig.from_mapping(cfg)
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "extra"}
    settings = {**(defaults or {}), **settings, **config.extra}
    accepted = {f.name for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise ValueError(f"training config fields {unknown} are not settings of {config_class.__name__}")
    for name in ("output_dir", "resume_from_checkpoint"):
        if name in settings:
            raise ValueError(f"training config field {name!r} is set by the train function, not the config")
    on_gpu = torch.cuda.is_available()
    settings = {
        "report_to": "none",
        "save_strategy": "steps",
        "use_cpu": not on_gpu,
        "dataloader_pin_memory": on_gpu,
        **settings,
        **fixed,
    }
    try:
        return config_class(output_dir=str(output_dir), **settings)
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid training config for {config_class.__name__}: {error}") from error


def placement(device: str | None = "auto", mixed_precision: str | None = "no") -> dict[str, Any]:
    """TrainingArguments settings that train on `device` at the launcher's mixed precision, where it has it.

    `device` is a device setting (llome.models.resolve_device): only its kind matters here, since Trainer puts a
    single process on the current CUDA device and each process of `accelerate launch` on its own. Half precision
    is for GPUs (llome.models.effective_precision); on a CPU these settings train in fp32 even if the launcher
    or the config asked for bf16.
    """
    from llome.models import effective_precision, resolve_device

    target = resolve_device(device)
    precision = effective_precision(mixed_precision, target)
    return {"use_cpu": target.type == "cpu", "dataloader_pin_memory": target.type == "cuda",
            "bf16": precision == "bf16", "fp16": precision == "fp16"}


def sft_dataset(pairs: pd.DataFrame) -> datasets.Dataset:
    """TRL's prompt–completion format: improve x (prompt) into y (completion)."""
    _check_frame(pairs, ("x", "y"), "pairs")
    return datasets.Dataset.from_dict(
        {
            "prompt": _formatted(pairs, "x", format_prompt, "pairs"),
            "completion": _formatted(pairs, "y", format_completion, "pairs"),
        }
    )


def dpo_dataset(triples: pd.DataFrame) -> datasets.Dataset:
    """TRL's preference format: y_w (chosen) is preferred over y_l (rejected) as an improvement of x."""
    _check_frame(triples, ("x", "y_w", "y_l"), "triples")
    return datasets.Dataset.from_dict(
        {
            "prompt": _formatted(triples, "x", format_prompt, "triples"),
            "chosen": _formatted(triples, "y_w", format_completion, "triples"),
            "rejected": _formatted(triples, "y_l", format_completion, "triples"),
        }
    )


def marge_dataset(pairs: pd.DataFrame) -> datasets.Dataset:
    """Prompt–completion pairs with their reward (the score margin, see PAPER.md section 5)."""
    _check_frame(pairs, ("x", "y", "reward"), "pairs")
    rewards = pd.to_numeric(pairs["reward"], errors="coerce").astype(float)
    bad = [str(index) for index, reward in rewards.items() if not pd.notna(reward) or abs(reward) == float("inf")]
    if bad:
        raise ValueError(f"pairs have missing or non-finite 'reward' in rows {bad[:10]}")
    return datasets.Dataset.from_dict(
        {
            "prompt": _formatted(pairs, "x", format_prompt, "pairs"),
            "completion": _formatted(pairs, "y", format_completion, "pairs"),
            "reward": rewards.tolist(),
        }
    )


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: pd.DataFrame,
    cfg: Mapping[str, Any] | TrainConfig | None,
    output_dir: str | os.PathLike,
    callbacks: list[TrainerCallback] | None = None,
) -> PreTrainedModel:
    """Supervised fine-tuning on (x -> y) pairs; the loss covers completion tokens (and eos) only."""
    with _quiet(cfg), _unpatched_after([model]):
        return _run(sft_trainer(model, tokenizer, pairs, cfg, output_dir, callbacks), output_dir)


def train_dpo(
    model: PreTrainedModel,
    ref_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    triples: pd.DataFrame,
    cfg: Mapping[str, Any] | TrainConfig | None,
    output_dir: str | os.PathLike,
    callbacks: list[TrainerCallback] | None = None,
) -> PreTrainedModel:
    """Sigmoid DPO on (x, y_w, y_l) triples against the frozen `ref_model` (the previous round's model)."""
    with _quiet(cfg), _unpatched_after([model, ref_model]):
        return _run(dpo_trainer(model, ref_model, tokenizer, triples, cfg, output_dir, callbacks), output_dir)


def train_marge(
    model: PreTrainedModel,
    ref_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: pd.DataFrame,
    cfg: Mapping[str, Any] | TrainConfig | None,
    output_dir: str | os.PathLike,
    callbacks: list[TrainerCallback] | None = None,
) -> PreTrainedModel:
    """MargE on (x, y, reward) pairs against the frozen `ref_model` (the previous round's model)."""
    with _quiet(cfg), _unpatched_after([model, ref_model]):
        return _run(marge_trainer(model, ref_model, tokenizer, pairs, cfg, output_dir, callbacks), output_dir)


# The trainers themselves, for inspection. Unlike the train_* functions, these leave TRL's forward patch on the
# models (see _unpatched_after).


def sft_trainer(model, tokenizer, pairs, cfg, output_dir, callbacks=None) -> SFTTrainer:
    dataset = sft_dataset(pairs)
    _check_fits(model, tokenizer, list(dataset["prompt"]), list(dataset["completion"]))
    args = training_args(SFTConfig, cfg, output_dir, max_length=None, completion_only_loss=True)
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)


def dpo_trainer(model, ref_model, tokenizer, triples, cfg, output_dir, callbacks=None) -> DPOTrainer:
    # DPOTrainer(ref_model=None) would reload the reference from model.name_or_path, which a model built from
    # scratch and never saved does not have.
    if ref_model is None or ref_model is model:
        raise ValueError("DPO needs a separate reference model (the previous round's model)")
    dataset = dpo_dataset(triples)
    prompts, chosen, rejected = list(dataset["prompt"]), list(dataset["chosen"]), list(dataset["rejected"])
    _check_fits(model, tokenizer, prompts * 2, chosen + rejected)
    args = training_args(DPOConfig, cfg, output_dir, defaults=DPO_DEFAULTS, max_length=None, loss_type=["sigmoid"])
    ref_model.requires_grad_(False)
    return DPOTrainer(
        model=model,
        ref_model=ref_model.eval(),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def marge_trainer(model, ref_model, tokenizer, pairs, cfg, output_dir, callbacks=None) -> MargETrainer:
    dataset = marge_dataset(pairs)
    _check_fits(model, tokenizer, list(dataset["prompt"]), list(dataset["completion"]))
    args = training_args(MargEConfig, cfg, output_dir, defaults=MARGE_DEFAULTS)
    return MargETrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def latest_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The latest complete checkpoint in `output_dir`, or None; half-written ones (no trainer state) are skipped."""
    directory = Path(output_dir)
    if not directory.is_dir():
        return None
    steps = []
    for child in directory.glob("checkpoint-*"):
        suffix = child.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (child / "trainer_state.json").is_file():
            steps.append((int(suffix), child))
    return str(max(steps)[1]) if steps else None


def _run(trainer, output_dir: str | os.PathLike) -> PreTrainedModel:
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None:
        _load_checkpoint_weights(trainer.model, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(output_dir))
    return trainer.model


def _load_checkpoint_weights(model: PreTrainedModel, checkpoint: str) -> None:
    """Load a checkpoint's weights the way from_pretrained does, before Trainer's own resume.

    save_pretrained renames some weights for the hub (GPT-NeoX writes lm_head as `embed_out`), and Trainer's
    resume (transformers 5.23) loads the raw file non-strictly: it would warn about the renamed keys and leave
    them at their fresh values. Loaded here first, they are right; Trainer then rewrites the other weights with
    the same values.
    """
    saved = type(model).from_pretrained(checkpoint, dtype=next(model.parameters()).dtype)
    model.load_state_dict(saved.state_dict())


@contextlib.contextmanager
def _unpatched_after(models: list[PreTrainedModel]):
    """Give the models back with their class's own forward.

    TRL's trainers replace `model.forward` on the instance (a fused LM head, trl.trainer.utils.add_fused_lm_head),
    and the replacement closes over the original bound method. A copy.deepcopy of such a model would still run
    the ORIGINAL model's weights in an unfused forward: a reference model made by deepcopy, or generation from a
    copy, would silently use the wrong parameters. Dropping the instance attribute restores the class method.
    """
    for model in models:
        _drop_forward_patch(model)
    try:
        yield
    finally:
        for model in models:
            _drop_forward_patch(model)


def _drop_forward_patch(model: torch.nn.Module | None) -> None:
    if model is not None:  # a missing reference model is refused by the trainer
        model.__dict__.pop("forward", None)


@contextlib.contextmanager
def _quiet(cfg: Mapping[str, Any] | TrainConfig | None):
    # datasets (tokenization) and transformers (saving) draw their own bars besides the Trainer's. Silence them
    # too when asked, then restore the global settings.
    enabled = not TrainConfig.from_mapping(cfg).disable_tqdm
    datasets_enabled = datasets.is_progress_bar_enabled()
    transformers_enabled = transformers_logging.is_progress_bar_enabled()
    if not enabled:
        datasets.disable_progress_bars()
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_enabled:
            datasets.enable_progress_bars()
        if transformers_enabled:
            transformers_logging.enable_progress_bar()


def _check_frame(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing} (has {list(frame.columns)})")
    if frame.empty:
        raise ValueError(f"{name} is empty: nothing to train on")


def _formatted(frame: pd.DataFrame, column: str, formatter: Callable, name: str) -> list[str]:
    texts = []
    for index, sequence in frame[column].items():
        try:
            texts.append(formatter(sequence))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{name} row {index!r}, column {column!r}: {error}") from error
    return texts


def _check_fits(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[str]
) -> None:
    """Refuse examples longer than the model's context up front, rather than truncate them or fail mid-training."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is None:
        return
    prompt_ids = tokenizer(prompts)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    lengths = [len(p) + len(c) + 1 for p, c in zip(prompt_ids, completion_ids, strict=True)]  # + eos
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[longest] > limit:
        raise ValueError(
            f"example {longest} is {lengths[longest]} tokens long, more than the model's "
            f"max_position_embeddings={limit}"
        )
