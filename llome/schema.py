"""The typed schema of params.yaml and of the library's GA, generation and training configs (pydantic v2).

One set of rules: `GAConfig`, `GenerationConfig` and `TrainConfig` are the configs the library runs with, and a
profile's sections are those same models (plus the keys only the pipeline reads), so a value is checked the same
way whether it comes from params.yaml or from Python. `check_profile` checks a whole resolved profile before any
work starts and returns every problem, each naming its key path and value.

Models forbid unknown keys (a typo fails) and are strict where YAML could mislead: an int is accepted for a
float, but a string is never a number and only true/false are booleans. Building a model from Python raises
`ConfigError` (a ValueError) whose message lists every problem.

This module imports only pydantic, so the GA stages that build a GAConfig do not depend on training code.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, ValidationError, model_validator
from pydantic._internal._model_construction import ModelMetaclass
from pydantic_core import PydanticCustomError


class ConfigError(ValueError):
    """A config that cannot run; the message lists every problem, one a line."""


PositiveInt = Annotated[StrictInt, Field(ge=1)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Seed = Annotated[StrictInt, Field(ge=0, lt=2**63)]  # numpy's generators take no negative seed
PositiveFloat = Annotated[StrictFloat, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[StrictFloat, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[StrictFloat, Field(ge=0, le=1, allow_inf_nan=False)]
FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Seeds = Annotated[list[Seed], Field(min_length=1)]


class _RaisesConfigError(ModelMetaclass):
    # A model built from Python (GAConfig(...)) raises ConfigError naming each field. Not an __init__ override:
    # pydantic would call that for nested models too, and flatten their located errors into one message.
    def __call__(cls, *args: Any, **kwargs: Any):
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as error:
            raise ConfigError("\n".join(error_lines(error, cls.__name__))) from None


class Model(BaseModel, metaclass=_RaisesConfigError):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Section(Model):
    """A section of a profile: every key must be set, defaults or not (the default profile sets them all)."""

    optional_keys: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _every_key_is_set(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            missing = [name for name in cls.model_fields if name not in data and name not in cls.optional_keys]
            if missing:
                raise PydanticCustomError("missing_keys", "missing key(s) {keys}", {"keys": ", ".join(missing)})
        return data


# --- the library's configs ------------------------------------------------------------------------------------


class GAConfig(Model):
    """The genetic algorithm's settings (llome.ga). The run stops at whichever of num_steps and max_oracle_calls
    binds first, or after the step in which some particle scores at least `stop_at_value`."""

    num_particles: Annotated[StrictInt, Field(ge=2)] = 1000  # crossover needs two parents
    mutation_prob: Probability = 0.005
    recombine_prob: Probability = 0.0882
    survival_quantile: Probability = 0.1
    num_steps: PositiveInt | None = 10
    max_oracle_calls: PositiveInt | None = None
    stop_at_value: FiniteFloat | None = None

    @model_validator(mode="after")
    def _has_a_stopping_rule(self):
        if self.num_steps is None and self.max_oracle_calls is None:
            raise ValueError("GAConfig needs num_steps or max_oracle_calls (or both) to know when to stop")
        return self

    @property
    def total_oracle_calls(self) -> int:
        """Oracle calls the run makes unless stop_at_value ends it earlier."""
        by_steps = self.num_steps * self.num_particles if self.num_steps is not None else math.inf
        by_budget = self.max_oracle_calls if self.max_oracle_calls is not None else math.inf
        return int(min(by_steps, by_budget))


class GenerationConfig(Model):
    """How llome.generate.refine decodes candidates."""

    num_iterations: PositiveInt = 3
    greedy: StrictBool = True
    temperatures: tuple[PositiveFloat, ...] = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
    num_samples: PositiveInt = 4  # trajectories per seed and temperature (candidates, when the trajectory is shared)
    # Rows decoded at once. It bounds memory (the KV cache of a 4x64 GPT-NeoX holds ~0.3 MB a row at L=32); larger is
    # faster (bench/bench_generate.py, 2 cores: about +10% from 256 to 1024 rows, +2% more to 4096).
    batch_size: PositiveInt = 1024
    shared_trajectory: StrictBool = False  # False: every decoding mode is its own trajectory (the paper)
    # True: a candidate equal to its own input is never chosen as the next input. The authors' rule (False) lets a
    # trajectory that copies stay on its input; at the default's temperatures about 2% of proposals are copies, and
    # skipping them changed nothing measurable (docs/ablation.md).
    skip_copies: StrictBool = False

    @model_validator(mode="after")
    def _decodes_something(self):
        if not self.greedy and not self.temperatures:
            raise ValueError("GenerationConfig needs greedy decoding or at least one temperature")
        return self

    @property
    def candidates_per_seed(self) -> int:
        """Candidates one seed yields over all iterations: one per decoding mode and iteration."""
        return self.num_iterations * (int(self.greedy) + len(self.temperatures) * self.num_samples)

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> GenerationConfig:
        """The generation settings of a profile section, which also holds keys only the LLOME loop reads."""
        return cls(**{key: value for key, value in settings.items() if key in cls.model_fields})


class TrainConfig(Model):
    """Settings shared by the three trainers (llome.train); `extra` holds settings of the trainer's own config class.

    bf16 and activation (gradient) checkpointing default off: TRL turns both on, and on a CPU they make training
    7-10x slower (bench/bench_train.py). A job run through llome.launch gets its device and precision from the
    launcher instead (llome.train.placement).
    """

    learning_rate: PositiveFloat | None = None  # None: the trainer config's own (MargEConfig's is the authors' rate)
    num_train_epochs: Annotated[StrictFloat, Field(ge=1, allow_inf_nan=False)] = 1.0
    max_steps: Annotated[StrictInt, Field(ge=-1)] = -1  # > 0 overrides num_train_epochs; -1 (or 0): epochs decide
    per_device_train_batch_size: PositiveInt = 16
    gradient_accumulation_steps: PositiveInt = 1
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeFloat = 0.0  # a fraction of the training steps when < 1
    lr_scheduler_type: str = "linear"
    max_grad_norm: NonNegativeFloat = 1.0
    logging_steps: PositiveFloat = 10
    save_steps: PositiveFloat = 500
    save_total_limit: PositiveInt | None = 2
    seed: Seed = 0
    bf16: StrictBool = False
    activation_checkpointing: StrictBool = False  # the current name of gradient_checkpointing
    disable_tqdm: StrictBool = False
    dataloader_num_workers: NonNegativeInt = 0
    # Held-out evaluation and checkpoint choice (llome.train's docstring); not TrainingArguments settings.
    eval_fraction: Annotated[StrictFloat, Field(ge=0, lt=1)] = 0.05  # the authors' 5%; 0 never evaluates
    num_evals: PositiveInt = 10
    select_checkpoint: StrictBool = False  # llome.launch turns it on for rounds >= 1
    max_eval_prompts: PositiveInt = 64  # held-out prompts decoded per evaluation for the gates
    num_states: PositiveInt | None = None  # alphabet size, for the gates' range check; needed by select_checkpoint
    extra: dict[str, Any] = Field(default_factory=dict)

    # Fields that shape the run around the Trainer, not the Trainer itself.
    run_fields: ClassVar[frozenset[str]] = frozenset(
        {"extra", "eval_fraction", "num_evals", "select_checkpoint", "max_eval_prompts", "num_states"})
    # Fields whose None means "the trainer config's own default".
    trainer_defaults: ClassVar[frozenset[str]] = frozenset({"learning_rate"})

    @model_validator(mode="after")
    def _selection_can_run(self):
        if self.select_checkpoint and self.eval_fraction == 0:
            raise ValueError("select_checkpoint needs held-out pairs to evaluate: eval_fraction must be > 0")
        if self.select_checkpoint and self.num_states is None:
            raise ValueError("select_checkpoint needs num_states, the alphabet size, to check generations' range")
        return self

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
        """A config of this class from a dict: its fields by name, any other key into `extra` (checked later
        against the trainer's own config class)."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        if isinstance(settings, TrainConfig):
            settings = settings.model_dump()
        if not isinstance(settings, Mapping):
            raise ValueError(f"training config must be a TrainConfig or a dict, got {type(settings).__name__}")
        settings = dict(settings)
        if "gradient_checkpointing" in settings:  # the old name, still TRL's documented one
            if "activation_checkpointing" in settings:
                raise ValueError("set activation_checkpointing or gradient_checkpointing, not both")
            settings["activation_checkpointing"] = settings.pop("gradient_checkpointing")
        names = set(cls.model_fields) - {"extra"}
        known = {key: value for key, value in settings.items() if key in names}
        extra = {**settings.get("extra", {}), **{k: v for k, v in settings.items() if k not in names | {"extra"}}}
        return cls(**known, extra=extra)

    def trainer_settings(self) -> dict[str, Any]:
        """The settings for the trainer's config class: the Trainer's fields, then `extra`."""
        settings = {name: getattr(self, name) for name in type(self).model_fields if name not in self.run_fields}
        for name in self.trainer_defaults:
            if settings.get(name) is None:
                settings.pop(name, None)
        return {**settings, **self.extra}


class SFTTrainConfig(TrainConfig):
    """Supervised fine-tuning: the shared settings only."""


class DPOTrainConfig(TrainConfig):
    beta: PositiveFloat | None = None  # None: llome.train.DPO_DEFAULTS (the authors' 0.4)

    trainer_defaults: ClassVar[frozenset[str]] = TrainConfig.trainer_defaults | {"beta"}


REWARD_REDUCTIONS = ("sum", "mean")


class MargETrainConfig(TrainConfig):
    """MargE's coefficients (llome.marge.MargEConfig); None leaves MargEConfig's default, the authors' value."""

    alpha: NonNegativeFloat | None = None
    beta: PositiveFloat | None = None
    self_normalize: StrictBool | None = None
    reward_reduction: Literal["sum", "mean"] | None = None

    trainer_defaults: ClassVar[frozenset[str]] = TrainConfig.trainer_defaults | {
        "alpha", "beta", "self_normalize", "reward_reduction"}

    @model_validator(mode="after")
    def _estimator_is_meaningful(self):
        check_marge_estimator(self.self_normalize is not False, self.reward_reduction or "sum",
                              self.per_device_train_batch_size)
        return self


def check_marge_estimator(self_normalize: bool, reward_reduction: str,
                          per_device_train_batch_size: int | None = None) -> None:
    """The MargE settings that only make sense together (llome.marge's loss and config check them here too)."""
    if reward_reduction not in REWARD_REDUCTIONS:
        raise ValueError(f"reward_reduction must be one of {REWARD_REDUCTIONS}, got {reward_reduction!r}")
    if reward_reduction == "mean" and not self_normalize:
        raise ValueError(
            "reward_reduction='mean' only changes the self-normalised estimator; with self_normalize=False the "
            "reward term is mean_i w_i (l_i - r_i) either way"
        )
    if self_normalize and per_device_train_batch_size is not None and per_device_train_batch_size < 2:
        raise ValueError(
            f"per_device_train_batch_size={per_device_train_batch_size} with self_normalize=True: "
            "self-normalised weights over a batch of 1 are exactly 1, so the reward would have no gradient. "
            "Use a per-device batch of at least 2."
        )


TRAIN_CONFIGS: dict[str, type[TrainConfig]] = {"sft": SFTTrainConfig, "dpo": DPOTrainConfig, "marge": MargETrainConfig}
OBJECTIVES = tuple(TRAIN_CONFIGS)


def train_config(objective: str | None, settings: Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
    """The training config of `objective` (None: the shared settings only) from a dict or a config."""
    if objective is None:
        return TrainConfig.from_mapping(settings)
    if objective not in TRAIN_CONFIGS:
        raise ConfigError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return TRAIN_CONFIGS[objective].from_mapping(settings)


def path_of(loc: tuple) -> str:
    return ".".join(str(part) for part in loc)


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "extra_forbidden": "unknown key (a typo? the default profile defines every key)",
    "missing": "missing key",
    "bool_type": "must be true or false",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "string_type": "must be a string",
    "too_short": "must not be empty",
    "finite_number": "must be a finite number",
}


def message_of(error: dict) -> str:
    template = _MESSAGES.get(error["type"])
    context = error.get("ctx") or {}
    if template is not None:
        text = template.format(**{key: f"{value:g}" if isinstance(value, float) else value
                                  for key, value in context.items()})
    elif error["type"] == "value_error":
        text = str(context.get("error", error["msg"]))
    else:
        text = error["msg"][:1].lower() + error["msg"][1:]
    if error["type"] in ("missing", "missing_keys") or isinstance(error["input"], Mapping):
        return text  # a missing key has no value, and a whole section is too long to show
    return f"{text}, got {error['input']!r}"


def error_lines(error: ValidationError, prefix: str) -> list[str]:
    return [f"{path_of((prefix, *e['loc']))}: {message_of(e)}" for e in error.errors()]
