"""Training the proposal model on pairs: SFT and DPO through TRL, MargE through llome.marge (PAPER.md section 5).

Each `train_*` function takes the model, the tokenizer, a DataFrame of pairs or triples, a config and an output
directory, and returns the trained model. The config is a `TrainConfig` or a dict of its fields; a dict may also
carry any field of the trainer's own config class (DPOConfig's `beta`, MargEConfig's `alpha`, `beta`,
`self_normalize`, or any TrainingArguments field), which is checked against that class.

Held-out pairs and checkpoint choice (PAPER.md section 4, step 4): `eval_fraction` of the rows (at least one; 0
turns it off) is held out and evaluated `num_evals` times, evenly over the run. With `select_checkpoint`, the
returned (and saved) model is the lowest-eval-loss evaluated checkpoint whose greedy generations pass the gates of
llome.checkpoints; that needs `num_states`, the sequences' alphabet size. Each run writes, beside the final model
in `output_dir`: `train_log.csv`, the Trainer's log history (loss, learning_rate, grad_norm, eval_loss, the MargE
terms, epoch, step), and with selection `checkpoints.csv`, one row per evaluation with its gate numbers and which
one was chosen.

Checkpoints go to `output_dir/checkpoint-<step>` every `save_steps` steps and at the end, and a call whose
`output_dir` already holds a checkpoint resumes from the latest one: an interrupted run picks up where it
stopped, and a finished one reloads its final weights without training again. The final model and tokenizer are
also saved in `output_dir` itself. The same code runs on CPU and under `accelerate launch` on GPUs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback, TrainingArguments
from transformers.utils import logging as transformers_logging
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

from llome.checkpoints import CheckpointSelector, EvenEvaluations
from llome.marge import MargEConfig, MargETrainer
from llome.text import format_completion, format_prompt

logger = logging.getLogger(__name__)

DPO_DEFAULTS: dict[str, Any] = {"beta": 0.4}  # the authors' value; MargE's are MargEConfig's own


@dataclass(frozen=True)
class TrainConfig:
    """Settings shared by the three trainers; `extra` holds trainer-specific ones (see the module docstring).

    bf16 and activation (gradient) checkpointing default off: TRL turns both on, and on a CPU they make training
    7-10x slower (bench/bench_train.py). A job run through llome.launch gets its device and precision from the
    launcher instead (see `placement`).
    """

    learning_rate: float | None = None  # None: the trainer config's own (MargEConfig's is the authors' MargE rate)
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
    # Held-out evaluation and checkpoint choice (see the module docstring); not TrainingArguments settings.
    eval_fraction: float = 0.05  # the authors' 5%; 0 holds nothing out and never evaluates
    num_evals: int = 10
    select_checkpoint: bool = False  # llome.launch turns it on for rounds >= 1
    max_eval_prompts: int = 64  # held-out prompts decoded per evaluation for the gates
    num_states: int | None = None  # alphabet size, for the gates' range check; needed by select_checkpoint
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        fraction = self.eval_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction < 1.0:
            raise ValueError(f"eval_fraction must be a number in [0, 1), got {fraction!r}")
        for name in ("num_evals", "max_eval_prompts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.num_states is not None and (
            isinstance(self.num_states, bool) or not isinstance(self.num_states, int) or self.num_states < 1
        ):
            raise ValueError(f"num_states must be a positive integer or None, got {self.num_states!r}")
        if not isinstance(self.select_checkpoint, bool):
            raise ValueError(f"select_checkpoint must be true or false, got {self.select_checkpoint!r}")
        if self.select_checkpoint and fraction == 0:
            raise ValueError("select_checkpoint needs held-out pairs to evaluate: eval_fraction must be > 0")
        if self.select_checkpoint and self.num_states is None:
            raise ValueError("select_checkpoint needs num_states, the alphabet size, to check generations' range")

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


# TrainConfig fields that shape the run around the Trainer, not the Trainer itself.
_RUN_FIELDS = frozenset({"extra", "eval_fraction", "num_evals", "select_checkpoint", "max_eval_prompts", "num_states"})
TRAIN_LOG_FILE = "train_log.csv"
CHECKPOINTS_FILE = "checkpoints.csv"


def training_args(
    config_class: type[TrainingArguments],
    cfg: Mapping[str, Any] | TrainConfig | None,
    output_dir: str | os.PathLike,
    defaults: Mapping[str, Any] | None = None,
    **fixed: Any,
) -> TrainingArguments:
    """`config_class` built from `cfg` over `defaults`, with `fixed` settings the trainer needs."""
    config = TrainConfig.from_mapping(cfg)
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name not in _RUN_FIELDS}
    if settings["learning_rate"] is None:
        del settings["learning_rate"]  # the trainer config's default applies
    # Evaluation only needs the loss (not the logits gathered over the held-out set), in batches as in training.
    evaluation = {"per_device_eval_batch_size": config.per_device_train_batch_size, "prediction_loss_only": True}
    settings = {**evaluation, **(defaults or {}), **settings, **config.extra}
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
    _check_frame(pairs, ("x", "y"), "pairs")
    training, held_out, watchers, selector = _evaluation_plan(pairs, cfg, tokenizer)
    with _quiet(cfg), _unpatched_after([model]):
        trainer = sft_trainer(model, tokenizer, training, cfg, output_dir, [*(callbacks or []), *watchers], held_out)
        return _run(trainer, output_dir, selector)


def train_dpo(
    model: PreTrainedModel,
    ref_model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    triples: pd.DataFrame,
    cfg: Mapping[str, Any] | TrainConfig | None,
    output_dir: str | os.PathLike,
    callbacks: list[TrainerCallback] | None = None,
) -> PreTrainedModel:
    """Sigmoid DPO on (x, y_w, y_l) triples against the frozen `ref_model` (the previous round's model).

    Its eval loss, for checkpoint choice, is the DPO loss on the held-out triples.
    """
    _check_frame(triples, ("x", "y_w", "y_l"), "triples")
    training, held_out, watchers, selector = _evaluation_plan(triples, cfg, tokenizer)
    with _quiet(cfg), _unpatched_after([model, ref_model]):
        trainer = dpo_trainer(
            model, ref_model, tokenizer, training, cfg, output_dir, [*(callbacks or []), *watchers], held_out
        )
        return _run(trainer, output_dir, selector)


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
    _check_frame(pairs, ("x", "y", "reward"), "pairs")
    training, held_out, watchers, selector = _evaluation_plan(pairs, cfg, tokenizer)
    with _quiet(cfg), _unpatched_after([model, ref_model]):
        trainer = marge_trainer(
            model, ref_model, tokenizer, training, cfg, output_dir, [*(callbacks or []), *watchers], held_out
        )
        return _run(trainer, output_dir, selector)


def split_held_out(table: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random `fraction` of the rows held out (at least one, and at least one left to train on).

    Nothing is held out when fraction is 0 or there is a single row. Both parts keep the table's row order.
    """
    count = len(table)
    if fraction <= 0 or count < 2:
        return table, table.iloc[:0]
    size = min(count - 1, max(1, round(fraction * count)))
    held = np.zeros(count, dtype=bool)
    held[np.random.default_rng(seed).choice(count, size=size, replace=False)] = True
    return table[~held], table[held]


def _evaluation_plan(table: pd.DataFrame, cfg, tokenizer):
    """The rows to train on, the held-out rows (or None), and the callbacks that evaluate and choose."""
    config = TrainConfig.from_mapping(cfg)
    training, held_out = split_held_out(table, config.eval_fraction, config.seed)
    if held_out.empty:
        if config.select_checkpoint:
            # A round may label too little to hold anything out; it trains on what it has rather than fail.
            logger.warning("checkpoint selection skipped: %d row(s) leave none to hold out", len(table))
        return training, None, [], None
    selector = None
    if config.select_checkpoint:
        try:
            lengths = {len(x) for x in table["x"]}
        except TypeError as error:
            raise ValueError(f"column 'x' must hold sequences: {error}") from error
        if len(lengths) != 1:
            raise ValueError(f"checkpoint selection needs inputs of one length, got lengths {sorted(lengths)}")
        selector = CheckpointSelector(held_out["x"], dim=lengths.pop(), num_states=config.num_states,
                                      tokenizer=tokenizer, max_prompts=config.max_eval_prompts)
    watchers = [EvenEvaluations(config.num_evals)] + ([selector] if selector else [])
    return training, held_out, watchers, selector


# The trainers themselves, for inspection. Unlike the train_* functions, these leave TRL's forward patch on the
# models (see _unpatched_after). `eval_table`, when given, is the held-out part, evaluated when a callback asks.


def sft_trainer(model, tokenizer, pairs, cfg, output_dir, callbacks=None, eval_table=None) -> SFTTrainer:
    dataset, eval_dataset = sft_dataset(pairs), _maybe(sft_dataset, eval_table)
    both = _concat(dataset, eval_dataset)
    _check_fits(model, tokenizer, list(both["prompt"]), list(both["completion"]))
    args = training_args(SFTConfig, cfg, output_dir, max_length=None, completion_only_loss=True)
    return SFTTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
                      processing_class=tokenizer, callbacks=callbacks)


def dpo_trainer(model, ref_model, tokenizer, triples, cfg, output_dir, callbacks=None, eval_table=None) -> DPOTrainer:
    # DPOTrainer(ref_model=None) would reload the reference from model.name_or_path, which a model built from
    # scratch and never saved does not have.
    if ref_model is None or ref_model is model:
        raise ValueError("DPO needs a separate reference model (the previous round's model)")
    dataset, eval_dataset = dpo_dataset(triples), _maybe(dpo_dataset, eval_table)
    both = _concat(dataset, eval_dataset)
    prompts, chosen, rejected = list(both["prompt"]), list(both["chosen"]), list(both["rejected"])
    _check_fits(model, tokenizer, prompts * 2, chosen + rejected)
    args = training_args(DPOConfig, cfg, output_dir, defaults=DPO_DEFAULTS, max_length=None, loss_type=["sigmoid"])
    ref_model.requires_grad_(False)
    return DPOTrainer(
        model=model,
        ref_model=ref_model.eval(),
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def marge_trainer(model, ref_model, tokenizer, pairs, cfg, output_dir, callbacks=None, eval_table=None) -> MargETrainer:
    dataset, eval_dataset = marge_dataset(pairs), _maybe(marge_dataset, eval_table)
    both = _concat(dataset, eval_dataset)
    _check_fits(model, tokenizer, list(both["prompt"]), list(both["completion"]))
    args = training_args(MargEConfig, cfg, output_dir)
    return MargETrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )


def _maybe(build: Callable, table: pd.DataFrame | None) -> datasets.Dataset | None:
    return None if table is None else build(table)


def _concat(dataset: datasets.Dataset, extra: datasets.Dataset | None) -> datasets.Dataset:
    return dataset if extra is None else datasets.concatenate_datasets([dataset, extra])


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


def _run(trainer, output_dir: str | os.PathLike, selector: CheckpointSelector | None = None) -> PreTrainedModel:
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None:
        _load_checkpoint_weights(trainer.model, checkpoint)
        if selector is not None:
            selector.restore(checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    if selector is not None:
        selector.apply(trainer.model)
    if trainer.is_world_process_zero():
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        log_table(trainer.state.log_history).to_csv(Path(output_dir) / TRAIN_LOG_FILE, index=False)
        if selector is not None:
            selector.table().to_csv(Path(output_dir) / CHECKPOINTS_FILE, index=False)
    trainer.save_model(str(output_dir))
    return trainer.model


def log_table(log_history: list[dict[str, Any]]) -> pd.DataFrame:
    """The Trainer's log history as a table: one row per log entry, step and epoch first."""
    table = pd.DataFrame(log_history)
    first = [column for column in ("step", "epoch") if column in table.columns]
    return table[first + [column for column in table.columns if column not in first]]


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
