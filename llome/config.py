"""Resolve params.yaml's chosen profile into one effective config per pipeline stage.

`python -m llome.config` writes data/params/<stage>.json. Stages depend on their own file, so DVC
reruns a stage only when a value it uses changes, whichever profile that value came from.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Mapping

from pydantic import Field, StrictBool, StrictFloat, StrictInt, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from llome.io import write_json
from llome.lambo_settings import LamboSettings
from llome.lora import LoraConfig
from llome.prompted_settings import PromptedConfig
from llome.schema import (OBJECTIVES, TRAIN_CONFIGS, ConfigError, GAConfig, GenerationConfig, NonNegativeInt,
                          PositiveInt, Probability, Section, Seed, Seeds, message_of, path_of)

METHODS = ("sft", "marge", "dpo")
__all__ = ["ConfigError", "METHODS", "OBJECTIVES", "load_params", "load_profile", "parse_params", "stage_configs",
           "write_stage_configs"]


def parse_params(text: str, path: str | Path = "params.yaml") -> dict:
    """params.yaml as DVC reads it: ruamel.yaml's safe loader, YAML 1.2 (dvc/utils/serialize/_yaml.py, dvc 3.67).

    Reading it any other way breaks `dvc exp run -S`: DVC writes `5e-06` back unquoted, a float in YAML 1.2 but a
    string in PyYAML's YAML 1.1, and drops the quotes of `"no"`, a string in 1.2 but false in 1.1.
    """
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.error import MarkedYAMLError

    try:
        params = YAML(typ="safe").load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {error.problem or error.context}") from None
    except YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    return params if params is not None else {}


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return parse_params(path.read_text(), path)


def deep_merge(base: dict, override: dict, path: str = "") -> dict:
    """Overrides may only name keys the base profile has: a typo fails here, not silently later."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in base:
            raise ConfigError(f"unknown setting '{where}': the default profile has no such key")
        if isinstance(base[key], dict) and isinstance(value, dict):
            merged[key] = deep_merge(base[key], value, where)
        elif isinstance(base[key], dict) and value is not None:
            raise ConfigError(f"setting '{where}' must be a mapping, got {value!r}")
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolve(profiles: dict, name: str) -> dict:
    """Profile `name` over the default profile, with its name added."""
    if name != "default":
        override = profiles[name] or {}
        if not isinstance(override, dict):
            raise ConfigError(f"profiles.{name} must be a mapping, got {override!r}")
        effective = deep_merge(profiles["default"], override, f"profiles.{name}")
    else:
        effective = copy.deepcopy(profiles["default"])
    effective["profile"] = name
    return effective


def load_profile(params: dict | str | Path = "params.yaml", profile: str | None = None) -> dict:
    """The chosen profile over the default, checked whole by llome.schema: a bad value fails here, before work.

    Every profile is checked, not only the chosen one, so a mistake in one the run does not use still shows.
    """
    source = "params" if isinstance(params, dict) else str(params)
    if not isinstance(params, dict):
        params = load_params(params)
    if not isinstance(params, dict) or not isinstance(params.get("profiles"), dict):
        raise ConfigError(f"{source} must have a 'profiles' mapping")
    profiles = params["profiles"]
    if not isinstance(profiles.get("default"), dict):
        raise ConfigError(f"{source}: profiles must define 'default' as a mapping")
    name = profile or params.get("profile", "default")
    if name not in profiles:
        raise ConfigError(f"profile '{name}' is not one of {sorted(profiles)}")
    problems = []
    for checked in [name, *sorted(set(profiles) - {name})]:
        try:
            problems += _located_problems(profiles, checked)
        except ConfigError as error:  # an override naming a key the default profile lacks
            problems.append(str(error))
    problems = list(dict.fromkeys(problems))  # a mistake in the default shows once, not once per profile
    if problems:
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the profiles:\n  " + "\n  ".join(problems))
    return resolve(profiles, name)


def _located_problems(profiles: dict, name: str) -> list[str]:
    """Problems of profile `name`, each under the profile that sets the value: its own override or the default."""
    override = (profiles[name] or {}) if name != "default" else {}
    located = []
    for path, message in check_profile(resolve(profiles, name)):
        owner = name if _sets(override, path) else "default"
        located.append(f"profiles.{owner}.{path}: {message}")
    return located


def _sets(override: dict, path: str) -> bool:
    node = override
    for key in path.split("."):
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False
    return True


# --- the profile schema: every section is a model of llome.schema or built of its types ---------------------


def _ehrlich_name(name: str) -> str:
    from llome.ehrlich import Ehrlich

    Ehrlich.from_name(name)  # a malformed name or impossible parameters raise a ValueError naming them
    return name


def _function_shape(name: str) -> dict[str, int]:
    """(dim, num_states) of the function a profile optimises: an Ehrlich name, or a factory's object built once."""
    from llome.ehrlich import Ehrlich
    from llome.objective import resolve

    if ":" not in name:
        _ehrlich_name(name)
        return Ehrlich.parse_name(name)
    objective = resolve(name)  # a factory that cannot be imported or breaks the protocol raises a ValueError
    return {"dim": int(objective.dim), "num_states": int(objective.num_states)}


FunctionName = Annotated[str, Field(strict=True)]


class TestFunctions(Section):
    __test__ = False  # not a pytest class
    names: Annotated[list[FunctionName], Field(min_length=1)]
    seed: Seed


class GADifficulty(Section):
    seeds: Seeds
    max_oracle_calls: PositiveInt
    num_particles: Annotated[StrictInt, Field(ge=2)]
    mutation_prob: Probability | None  # None: 1/L
    recombine_prob: Probability | None  # None: 1/L
    survival_quantile: Probability


class SeedData(Section, GAConfig):
    optional_keys: ClassVar[frozenset[str]] = frozenset({"max_oracle_calls", "stop_at_value"})


class GPTNeoX(Section):
    num_hidden_layers: PositiveInt
    hidden_size: PositiveInt
    num_attention_heads: PositiveInt
    intermediate_size: PositiveInt
    max_position_embeddings: PositiveInt

    @model_validator(mode="after")
    def _heads_split_the_hidden_size(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                             f"{self.num_attention_heads}")
        return self


class Lora(Section, LoraConfig):
    """LoRA for every training of the run (llome.lora); in a profile, each of its keys is set."""


class ModelSettings(Section):
    name_or_path: Annotated[str, Field(strict=True, min_length=1)] | None
    gguf_file: Annotated[str, Field(strict=True, min_length=1)] | None  # a GGUF file inside name_or_path
    gpt_neox: GPTNeoX
    lora: Lora | None  # None: full fine-tuning (the authors')


class Launcher(Section):
    kind: Literal["inprocess", "subprocess", "accelerate"]
    num_processes: PositiveInt
    mixed_precision: Literal["no", "fp16", "bf16"]


class Pairs(Section):
    source: Literal["round", "history"]
    max_distance: Probability
    num_neighbors: PositiveInt | None  # None: every neighbour within max_distance
    infeasible_fraction: Probability
    max_pairs: PositiveInt | None


class Generation(Section, GenerationConfig):
    num_seeds: PositiveInt
    temperature_schedule: StrictBool


class Selection(Section):
    likelihood_quantile: Annotated[StrictFloat, Field(ge=0, lt=1)]
    num_to_label: PositiveInt


class Method(Section):
    objective: Literal["sft", "marge", "dpo"]
    train: dict[str, Any]  # checked by the objective's TrainConfig in check_profile


class Numerics(Section):
    threads: PositiveInt  # part of the pin: every job runs on this many, whatever the machine has


class Llome(Section):
    diagnostics: StrictBool  # score unlabelled parents for figures, through a counter of their own
    # Candidates a round samples before the likelihood filter and scores for calibration only (0: none); unpaid
    # like the parents, so `diagnostics: false` draws none either
    diagnostics_calibration_sample: NonNegativeInt
    rounds: PositiveInt
    generation: Generation
    selection: Selection
    methods: Annotated[dict[Literal["sft", "marge", "dpo"], Method], Field(min_length=1)]


class GASweep(Section):
    num_particles: Annotated[list[Annotated[StrictInt, Field(ge=2)]], Field(min_length=1)]
    mutation_prob: Annotated[list[Probability], Field(min_length=1)]
    survival_quantile: Annotated[list[Probability], Field(min_length=1)]


class GABaseline(Section):
    sweep_seeds: Seeds
    sweep: GASweep
    recombine_prob: Probability


class Lambo2(Section, LamboSettings):
    """LaMBO-2's settings (llome.lambo_settings) less the ones the pipeline sets alike for every method."""

    # The key each of these comes from instead, so that LaMBO-2 and LLOME cannot drift apart.
    set_by_pipeline: ClassVar[dict[str, str]] = {
        "num_proposals": "llome.selection.num_to_label (the same n labels a round as LLOME)",
        "device": "the profile's `device`",
        "threads": "numerics.threads",
    }
    optional_keys: ClassVar[frozenset[str]] = frozenset(set_by_pipeline)

    rounds: PositiveInt | None  # None: LLOME's rounds, so the same budget

    @model_validator(mode="before")
    @classmethod
    def _pipeline_keys_are_not_set_here(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            for key, source in cls.set_by_pipeline.items():
                if key in data:
                    raise PydanticCustomError("set_by_pipeline", "{key} is set by {source}; remove it here",
                                              {"key": key, "source": source})
        return data


class Prompted(Section, PromptedConfig):
    """The prompted-LLM baseline (llome.prompted): an off-the-shelf instruction-tuned LLM, never trained."""


class Profile(Section):
    optional_keys: ClassVar[frozenset[str]] = frozenset({"profile"})

    profile: str | None = None  # the name load_profile adds to the resolved profile
    function: FunctionName
    seeds: Seeds
    test_functions: TestFunctions
    ga_difficulty: GADifficulty
    seed_data: SeedData
    model: ModelSettings
    numerics: Numerics
    device: Annotated[str, Field(strict=True)]
    launcher: Launcher
    pairs: Pairs
    sft: dict[str, Any]  # checked by SFTTrainConfig in check_profile
    llome: Llome
    ga_baseline: GABaseline
    lambo2: Lambo2
    prompted: Prompted


def check_profile(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem of a resolved profile, as (key path, message); empty when it can run."""
    try:
        profile = Profile.model_validate(cfg)
    except ValidationError as error:
        return [(path_of(e["loc"]), message_of(e)) for e in error.errors()]

    problems: list[tuple[str, str]] = []
    function = None
    try:
        function = _function_shape(profile.function)
    except ValueError as error:
        problems.append(("function", str(error)))
    for i, name in enumerate(profile.test_functions.names):
        try:
            _ehrlich_name(name)
        except ValueError as error:
            problems.append((f"test_functions.names.{i}", str(error)))
    if len(set(profile.seeds)) != len(profile.seeds):
        problems.append(("seeds", f"must be distinct, got {profile.seeds}"))
    problems += _runtime_problems(cfg)
    if problems:
        return problems  # the checks below read the function and the launcher

    trainings = [("sft", "sft", profile.sft)] + [
        (f"llome.methods.{name}.train", method.objective, method.train) for name, method in profile.llome.methods.items()]
    for where, objective, settings in trainings:
        try:
            # The launcher gives every training job the instance's alphabet size (llome.launch.job_train_config).
            TRAIN_CONFIGS[objective].model_validate({"num_states": function["num_states"], **settings})
        except ValidationError as error:
            problems += [(path_of((where, *e["loc"])), message_of(e)) for e in error.errors()]

    generation = profile.llome.generation
    per_round = profile.llome.generation.num_seeds * generation.candidates_per_seed
    if per_round < profile.llome.selection.num_to_label:
        problems.append(("llome.selection.num_to_label",
                         f"a round labels at most the {per_round} candidates it generates (num_seeds x num_iterations "
                         f"x (greedy + temperatures x num_samples)), got {profile.llome.selection.num_to_label}"))
    if profile.model.name_or_path is None:
        problems += _context_problems(profile.model.gpt_neox, function["dim"], function["num_states"])
        if profile.model.lora is not None and profile.model.lora.target_modules is not None:
            problems += _lora_target_problems(profile.model.gpt_neox, profile.model.lora.target_modules)
    if profile.lambo2.num_mutations_per_step > function["dim"]:
        problems.append(("lambo2.num_mutations_per_step", f"LaMBO-2 edits at most the function's L={function['dim']} "
                         f"positions per step, got {profile.lambo2.num_mutations_per_step}"))
    return problems


def _runtime_problems(cfg: Mapping[str, Any]) -> list[tuple[str, str]]:
    from llome.runtime import check_device, check_launcher

    problems = []
    try:
        check_device(cfg["device"])
    except ValueError as error:
        problems.append(("device", str(error)))
    try:
        check_launcher({**cfg["launcher"], "device": cfg["device"]})
    except ValueError as error:
        problems.append(("launcher", str(error)))
    return problems


def _context_problems(gpt_neox: GPTNeoX, dim: int, num_states: int) -> list[tuple[str, str]]:
    """A from-scratch model must hold the function's longest prompt and completion in its positions."""
    from llome.tokenizer import build_tokenizer, example_lengths
    from llome.text import format_completion, format_prompt

    widest = [num_states - 1] * dim  # the most characters a sequence can take, for tokenizers that split digits
    (length,) = example_lengths(build_tokenizer(num_states), [format_prompt(widest)], [format_completion(widest)])
    if length > gpt_neox.max_position_embeddings:
        return [("model.gpt_neox.max_position_embeddings",
                 f"a prompt and completion of length L={dim} take {length} tokens, more than "
                 f"max_position_embeddings={gpt_neox.max_position_embeddings}")]
    return []


def _lora_target_problems(gpt_neox: GPTNeoX, target_modules: list[str]) -> list[tuple[str, str]]:
    """LoRA's target layers must be linear layers of the GPT-NeoX built from scratch (a checkpoint's are known only
    once it is loaded, and are checked then)."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from llome.lora import lora_targets

    with torch.device("meta"):  # the layer names without the weights
        model = GPTNeoXForCausalLM(GPTNeoXConfig(**gpt_neox.model_dump(), vocab_size=16))
    try:
        lora_targets(model, target_modules)
    except ValueError as error:
        return [("model.lora.target_modules", str(error).removeprefix("lora.target_modules: "))]
    return []


def seed_data_oracle_calls(cfg: dict) -> int:
    return cfg["seed_data"]["num_particles"] * cfg["seed_data"]["num_steps"]


def llome_oracle_budget(cfg: dict) -> int:
    """Every LLOME run pays for its GA seed data and then n labels per round (docs/method.md §4)."""
    return seed_data_oracle_calls(cfg) + cfg["llome"]["rounds"] * cfg["llome"]["selection"]["num_to_label"]


def lambo2_rounds(cfg: dict) -> int:
    return cfg["lambo2"]["rounds"] or cfg["llome"]["rounds"]


def lambo2_oracle_budget(cfg: dict) -> int:
    """LaMBO-2 pays for the same GA seed data and n labels a round; as many rounds as LLOME unless set apart."""
    return seed_data_oracle_calls(cfg) + lambo2_rounds(cfg) * cfg["llome"]["selection"]["num_to_label"]


def prompted_oracle_budget(cfg: dict) -> int:
    """The prompted baseline pays for the same GA seed data, then at most n labels a round of its own."""
    return seed_data_oracle_calls(cfg) + cfg["prompted"]["rounds"] * cfg["prompted"]["num_to_label"]


def launcher_config(cfg: dict) -> dict:
    """The launcher with the device: a launched training job reads only its own job file."""
    return {**cfg["launcher"], "device": cfg["device"]}


def stage_configs(cfg: dict) -> dict[str, dict]:
    """What each stage reads; a stage reruns only when its own entry changes."""
    common = {"profile": cfg["profile"], "function": cfg["function"]}
    # A stage that builds the function builds the instance test_functions saved: same name, same seed.
    builds_function = {**common, "function_seed": cfg["test_functions"]["seed"]}
    stages = {
        "test_functions": {"profile": cfg["profile"], **cfg["test_functions"]},
        "ga_difficulty": {"profile": cfg["profile"], "names": cfg["test_functions"]["names"],
                          "function_seed": cfg["test_functions"]["seed"], **cfg["ga_difficulty"]},
        "seed_data": {**builds_function, "seeds": cfg["seeds"], "ga": cfg["seed_data"]},
        "sft": {**builds_function, "seeds": cfg["seeds"], "model": cfg["model"], "pairs": cfg["pairs"],
                "train": cfg["sft"], "launcher": launcher_config(cfg), "device": cfg["device"]},
        "ga_baseline": {**builds_function, "seeds": cfg["seeds"], "max_oracle_calls": llome_oracle_budget(cfg),
                        "paper_ga": cfg["seed_data"], **cfg["ga_baseline"]},
        "figures": {**common, "seeds": cfg["seeds"], "methods": sorted(cfg["llome"]["methods"]), "rounds": cfg["llome"]["rounds"],
                    "oracle_budget": llome_oracle_budget(cfg), "seed_data_oracle_calls": seed_data_oracle_calls(cfg),
                    "lambo2": {"oracle_budget": lambo2_oracle_budget(cfg)},
                    "prompted": {"oracle_budget": prompted_oracle_budget(cfg)}},
        "lambo2": {**builds_function, "seeds": cfg["seeds"], "rounds": lambo2_rounds(cfg),
                   "num_to_label": cfg["llome"]["selection"]["num_to_label"],
                   "seed_data_oracle_calls": seed_data_oracle_calls(cfg), "device": cfg["device"],
                   "lambo2": {k: v for k, v in cfg["lambo2"].items() if k != "rounds"}},
        "prompted": {**builds_function, "seeds": cfg["seeds"], "seed_data_oracle_calls": seed_data_oracle_calls(cfg),
                     "prompted": cfg["prompted"], "device": cfg["device"]},
    }
    llome = cfg["llome"]
    for method, spec in llome["methods"].items():
        stages[f"llome_{method}"] = {
            **builds_function, "method": method, "seeds": cfg["seeds"], "rounds": llome["rounds"],
            "objective": spec["objective"], "train": spec["train"], "lora": cfg["model"]["lora"], "pairs": cfg["pairs"],
            "generation": llome["generation"], "selection": llome["selection"],
            "seed_data_oracle_calls": seed_data_oracle_calls(cfg), "launcher": launcher_config(cfg),
            "device": cfg["device"], "diagnostics": llome["diagnostics"],
            "diagnostics_calibration_sample": llome["diagnostics_calibration_sample"],
        }
    for stage in stages.values():  # every stage computes under the same pins and thread count
        stage["numerics"] = cfg["numerics"]
    return stages


def write_stage_configs(params_path="params.yaml", out_dir="data/params", profile: str | None = None) -> dict:
    cfg = load_profile(params_path, profile)
    stages = stage_configs(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, stage in stages.items():
        # Sorted keys: reordering params.yaml must not look like a change to DVC.
        write_json(out / f"{name}.json", stage, sort_keys=True)
    write_json(out / "effective.json", cfg)
    return stages


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/params")
    parser.add_argument("--profile", default=None, help="override params.yaml's `profile`")
    args = parser.parse_args(argv)
    try:
        stages = write_stage_configs(args.params, args.out, args.profile)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"wrote {len(stages)} stage configs to {args.out}")


if __name__ == "__main__":
    main()
