"""Training the proposal model on pairs: SFT and DPO through TRL, MargE through llome.marge (docs/method.md §5).

`train(objective, model, tokenizer, table, cfg, output_dir, ref_model)` takes the model, the tokenizer, a DataFrame
of pairs or triples, a config and an output directory, and returns the trained model; `OBJECTIVES` says what sets
sft, dpo and marge apart (dataset columns, trainer, its config class), and `train_sft`, `train_dpo` and
`train_marge` are its per-objective names. The config is the objective's TrainConfig (llome.schema) or a dict of
its fields (DPO's `beta`, MargE's `alpha`, `beta`, ... among them, checked there); a dict may also carry any other
field of the trainer's own config class (any TrainingArguments field), which is checked against that class.

Held-out pairs and checkpoint choice (docs/method.md §4, step 4): `eval_fraction` of the rows (at least one; 0
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

With `lora` (llome.lora; None, the default, trains every weight), LoRA adapters train instead of the model's
weights: checkpoints then hold the adapters alone, and the returned (and saved) model has them merged in, a plain
model of the class it was given.
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
from llome.io import write_json
from llome.lora import LoraConfig, add_lora, lora_config, merge_lora
from llome.marge import MargEConfig, MargETrainer
from llome.schema import TrainConfig, train_config
from llome.text import format_completion, format_prompt
from llome.tokenizer import example_lengths

logger = logging.getLogger(__name__)

DPO_DEFAULTS: dict[str, Any] = {"beta": 0.4}  # the authors' value; MargE's are MargEConfig's own


TRAIN_LOG_FILE = "train_log.csv"
TRAIN_TIMING_FILE = "timing.json"  # .dvcignore keeps it out of the model's md5
CHECKPOINTS_FILE = "checkpoints.csv"


def training_args(
    config_class: type[TrainingArguments],
    cfg: Mapping[str, Any] | TrainConfig | None,
    output_dir: str | os.PathLike,
    defaults: Mapping[str, Any] | None = None,
    objective: str | None = None,
    **fixed: Any,
) -> TrainingArguments:
    """`config_class` built from `cfg` (checked as `objective`'s TrainConfig) over `defaults`, with `fixed` settings
    the trainer needs."""
    config = train_config(objective, cfg)
    # Evaluation only needs the loss (not the logits gathered over the held-out set), in batches as in training.
    evaluation = {"per_device_eval_batch_size": config.per_device_train_batch_size, "prediction_loss_only": True}
    settings = {**evaluation, **(defaults or {}), **config.trainer_settings()}
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


@dataclass(frozen=True)
class Objective:
    """What sets one training objective apart; everything else is the same path (`train`)."""

    texts: Mapping[str, tuple[str, Callable]]  # dataset column -> (table column, its formatter)
    examples: tuple[tuple[str, str], ...]  # the (prompt, completion) dataset columns the model reads
    reference: bool  # trains against a frozen reference model (the previous round's)
    config_class: type[TrainingArguments]
    trainer_class: type
    defaults: Mapping[str, Any] = field(default_factory=dict)  # over the config class's own defaults
    fixed: Mapping[str, Any] = field(default_factory=dict)  # what the trainer needs, whatever the config says
    reward: bool = False  # the table's `reward` column goes into the dataset

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(column for column, _ in self.texts.values()) + (("reward",) if self.reward else ())


_PROMPT = ("x", format_prompt)
OBJECTIVES: dict[str, Objective] = {
    # TRL's prompt–completion format: improve x (prompt) into y (completion); the loss covers the completion only.
    "sft": Objective(texts={"prompt": _PROMPT, "completion": ("y", format_completion)},
                     examples=(("prompt", "completion"),), reference=False, config_class=SFTConfig,
                     trainer_class=SFTTrainer, fixed={"max_length": None, "completion_only_loss": True}),
    # TRL's preference format: y_w (chosen) is preferred over y_l (rejected) as an improvement of x.
    "dpo": Objective(texts={"prompt": _PROMPT, "chosen": ("y_w", format_completion),
                            "rejected": ("y_l", format_completion)},
                     examples=(("prompt", "chosen"), ("prompt", "rejected")), reference=True, config_class=DPOConfig,
                     trainer_class=DPOTrainer, defaults=DPO_DEFAULTS,
                     fixed={"max_length": None, "loss_type": ["sigmoid"]}),
    # Prompt–completion pairs with their reward, the score margin (llome.pairs.margin_reward, docs/method.md §5).
    "marge": Objective(texts={"prompt": _PROMPT, "completion": ("y", format_completion)},
                       examples=(("prompt", "completion"),), reference=True, config_class=MargEConfig,
                       trainer_class=MargETrainer, reward=True),
}


def objective_dataset(objective: str, table: pd.DataFrame) -> datasets.Dataset:
    """The objective's dataset of a table of pairs (sft, marge: x, y; marge also reward) or triples (dpo: x, y_w,
    y_l)."""
    spec = _objective(objective)
    name = "triples" if objective == "dpo" else "pairs"
    _check_frame(table, spec.columns, name)
    columns = {column: _formatted(table, source, formatter, name) for column, (source, formatter) in spec.texts.items()}
    if spec.reward:
        rewards = pd.to_numeric(table["reward"], errors="coerce").astype(float)
        bad = [str(index) for index, reward in rewards.items() if not pd.notna(reward) or abs(reward) == float("inf")]
        if bad:
            raise ValueError(f"{name} have missing or non-finite 'reward' in rows {bad[:10]}")
        columns["reward"] = rewards.tolist()
    return datasets.Dataset.from_dict(columns)


def sft_dataset(pairs: pd.DataFrame) -> datasets.Dataset:
    return objective_dataset("sft", pairs)


def dpo_dataset(triples: pd.DataFrame) -> datasets.Dataset:
    return objective_dataset("dpo", triples)


def marge_dataset(pairs: pd.DataFrame) -> datasets.Dataset:
    return objective_dataset("marge", pairs)


def train(
    objective: str,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    table: pd.DataFrame,
    cfg: Mapping[str, Any] | TrainConfig | None,
    output_dir: str | os.PathLike,
    ref_model: PreTrainedModel | None = None,
    callbacks: list[TrainerCallback] | None = None,
    lora: LoraConfig | Mapping[str, Any] | None = None,
) -> PreTrainedModel:
    """Train `model` on `table` with `objective` (sft, dpo or marge); see the module docstring.

    DPO and MargE train against the frozen `ref_model` (the previous round's model); DPO's eval loss, for
    checkpoint choice, is the DPO loss on the held-out triples. With `lora`, adapters train on `model` (their
    initial A drawn from the config's seed) and the returned model is `model` itself with them merged in.
    """
    spec = _objective(objective)
    config = train_config(objective, cfg)
    lora = lora_config(lora)
    _check_frame(table, spec.columns, "triples" if objective == "dpo" else "pairs")
    training, held_out, watchers, selector = _evaluation_plan(table, config, tokenizer)
    # TRL patches the forward of the model it trains, the PeftModel's base model under LoRA: that is `model`.
    with _quiet(config), _unpatched_after([model, ref_model]):
        trained = model if lora is None else add_lora(model, lora, seed=config.seed)
        trainer = build_trainer(objective, trained, tokenizer, training, config, output_dir,
                                ref_model=ref_model, callbacks=[*(callbacks or []), *watchers], eval_table=held_out)
        return _run(trainer, output_dir, selector, merge=lora is not None)


def build_trainer(objective, model, tokenizer, table, cfg, output_dir, ref_model=None, callbacks=None,
                  eval_table=None):
    """The objective's trainer, for inspection. Unlike `train`, it leaves TRL's forward patch on the models (see
    _unpatched_after). `eval_table`, when given, is the held-out part, evaluated when a callback asks."""
    spec = _objective(objective)
    if spec.reference and (ref_model is None or ref_model is model):
        # DPOTrainer(ref_model=None) would reload the reference from model.name_or_path, which a model built from
        # scratch and never saved does not have.
        raise ValueError(f"{objective} needs a separate reference model (the previous round's model)")
    dataset = objective_dataset(objective, table)
    eval_dataset = None if eval_table is None else objective_dataset(objective, eval_table)
    both = dataset if eval_dataset is None else datasets.concatenate_datasets([dataset, eval_dataset])
    prompts, completions = [], []
    for prompt, completion in spec.examples:
        prompts += list(both[prompt])
        completions += list(both[completion])
    _check_fits(model, tokenizer, prompts, completions)
    args = training_args(spec.config_class, cfg, output_dir, defaults=spec.defaults, objective=objective, **spec.fixed)
    references = {}
    if spec.reference:
        ref_model.requires_grad_(False)
        references["ref_model"] = ref_model.eval()
    return spec.trainer_class(model=model, args=args, train_dataset=dataset, eval_dataset=eval_dataset,
                              processing_class=tokenizer, callbacks=callbacks, **references)


def _objective(objective: str) -> Objective:
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {tuple(OBJECTIVES)}, got {objective!r}")
    return OBJECTIVES[objective]


# The per-objective names the notebooks, benches and tests call; each is `train` or `build_trainer` of its objective.


def train_sft(model, tokenizer, pairs, cfg, output_dir, callbacks=None, lora=None) -> PreTrainedModel:
    """Supervised fine-tuning on (x -> y) pairs; the loss covers completion tokens (and eos) only."""
    return train("sft", model, tokenizer, pairs, cfg, output_dir, callbacks=callbacks, lora=lora)


def train_dpo(model, ref_model, tokenizer, triples, cfg, output_dir, callbacks=None, lora=None) -> PreTrainedModel:
    """Sigmoid DPO on (x, y_w, y_l) triples against the frozen `ref_model`."""
    return train("dpo", model, tokenizer, triples, cfg, output_dir, ref_model=ref_model, callbacks=callbacks,
                 lora=lora)


def train_marge(model, ref_model, tokenizer, pairs, cfg, output_dir, callbacks=None, lora=None) -> PreTrainedModel:
    """MargE on (x, y, reward) pairs against the frozen `ref_model`."""
    return train("marge", model, tokenizer, pairs, cfg, output_dir, ref_model=ref_model, callbacks=callbacks,
                 lora=lora)


def sft_trainer(model, tokenizer, pairs, cfg, output_dir, callbacks=None, eval_table=None) -> SFTTrainer:
    return build_trainer("sft", model, tokenizer, pairs, cfg, output_dir, callbacks=callbacks, eval_table=eval_table)


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


def _evaluation_plan(table: pd.DataFrame, config: TrainConfig, tokenizer):
    """The rows to train on, the held-out rows (or None), and the callbacks that evaluate and choose."""
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


def _run(trainer, output_dir: str | os.PathLike, selector: CheckpointSelector | None = None,
         merge: bool = False) -> PreTrainedModel:
    """Train (or resume, or reload a finished run), keep the chosen checkpoint, write the records and the model.

    `merge`: trainer.model is a LoRA PeftModel, whose adapters are merged in before the model is returned and saved.
    """
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None:
        if not merge:  # an adapter checkpoint has no renamed weights: Trainer's resume loads it (load_adapter)
            _load_checkpoint_weights(trainer.model, checkpoint)
        if selector is not None:
            selector.restore(checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    if selector is not None:
        selector.apply(trainer.model)
    if trainer.is_world_process_zero():
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        log_table(trainer.state.log_history).to_csv(Path(output_dir) / TRAIN_LOG_FILE, index=False)
        write_json(Path(output_dir) / TRAIN_TIMING_FILE, wall_times(trainer.state.log_history))
        if selector is not None:
            selector.table().to_csv(Path(output_dir) / CHECKPOINTS_FILE, index=False)
    if not merge:
        trainer.save_model(str(output_dir))
        return trainer.model
    # Trainer.save_model would write the adapters alone; the merged model is what output_dir promises.
    model = merge_lora(trainer.model)
    if trainer.args.should_save:
        model.save_pretrained(str(output_dir))
        trainer.processing_class.save_pretrained(str(output_dir))
    return model


def _is_wall_time(column: str) -> bool:
    return column.endswith(("_runtime", "_per_second"))


def log_table(log_history: list[dict[str, Any]]) -> pd.DataFrame:
    """The Trainer's log history as a table: one row per log entry, step and epoch first.

    Wall times (train_runtime, eval_samples_per_second, ...) are left out: the table is saved beside the
    model, in data whose md5 must not depend on the machine's speed. `wall_times` keeps them apart.
    """
    table = pd.DataFrame(log_history)
    table = table[[column for column in table.columns if not _is_wall_time(column)]]
    first = [column for column in ("step", "epoch") if column in table.columns]
    return table[first + [column for column in table.columns if column not in first]]


def wall_times(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds spent training and evaluating, from the Trainer's log history."""
    evals = [entry["eval_runtime"] for entry in log_history if "eval_runtime" in entry]
    train = [entry["train_runtime"] for entry in log_history if "train_runtime" in entry]
    return {"train_seconds": round(float(sum(train)), 3), "eval_seconds": round(float(sum(evals)), 3),
            "evaluations": len(evals)}


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
def _quiet(config: TrainConfig):
    # datasets (tokenization) and transformers (saving) draw their own bars besides the Trainer's. Silence them
    # too when asked, then restore the global settings.
    enabled = not config.disable_tqdm
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
    lengths = example_lengths(tokenizer, prompts, completions)
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    if lengths[longest] > limit:
        raise ValueError(
            f"example {longest} is {lengths[longest]} tokens long, more than the model's "
            f"max_position_embeddings={limit}"
        )
