"""Resolve params.yaml's chosen profile into one effective config per pipeline stage.

`python -m llome.config` writes data/params/<stage>.json. Stages depend on their own file, so DVC
reruns a stage only when a value it uses changes, whichever profile that value came from.
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import yaml

from llome.io import write_json

METHODS = ("sft", "marge", "dpo")
OBJECTIVES = ("sft", "marge", "dpo")


class ConfigError(ValueError):
    pass


class ParamsLoader(yaml.SafeLoader):
    """YAML 1.2 booleans (true/false only), as DVC reads params.yaml.

    `dvc exp run -S` writes params.yaml back without the quotes of `mixed_precision: "no"`; YAML 1.1 (PyYAML's
    default) would read that `no` as false.
    """


ParamsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ParamsLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                   list("tTfF"))


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


def load_profile(params: dict | str | Path = "params.yaml", profile: str | None = None) -> dict:
    if not isinstance(params, dict):
        path = Path(params)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        params = yaml.load(path.read_text(), Loader=ParamsLoader)
    if not isinstance(params, dict) or "profiles" not in params:
        raise ConfigError("params must have a 'profiles' mapping")
    profiles = params["profiles"]
    if "default" not in profiles:
        raise ConfigError("params.profiles must define 'default'")
    name = profile or params.get("profile", "default")
    if name not in profiles:
        raise ConfigError(f"profile '{name}' is not one of {sorted(profiles)}")
    effective = profiles["default"] if name == "default" else deep_merge(profiles["default"], profiles[name] or {})
    effective = copy.deepcopy(effective)
    effective["profile"] = name
    validate(effective)
    return effective


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _positive_int(value, where: str) -> None:
    _require(isinstance(value, int) and not isinstance(value, bool) and value > 0,
             f"{where} must be a positive integer, got {value!r}")


def _probability(value, where: str, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _require(isinstance(value, (int, float)) and 0.0 <= value <= 1.0, f"{where} must be in [0, 1], got {value!r}")


def validate(cfg: dict) -> None:
    """Cheap checks of the values every stage relies on, so a bad value fails before any work."""
    from llome.ehrlich import Ehrlich
    from llome.objective import resolve

    resolve(cfg["function"])  # an Ehrlich name or `package.module:factory`; raises ValueError naming what is wrong
    for name in cfg["test_functions"]["names"]:
        Ehrlich.from_name(name)  # raises ValueError naming a malformed name or impossible parameters
    seeds = cfg["seeds"]
    _require(isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds),
             f"seeds must be a non-empty list of integers, got {seeds!r}")
    _require(len(set(seeds)) == len(seeds), f"seeds must be distinct, got {seeds!r}")

    ga = cfg["seed_data"]
    _positive_int(cfg["numerics"]["threads"], "numerics.threads")
    _positive_int(ga["num_particles"], "seed_data.num_particles")
    _positive_int(ga["num_steps"], "seed_data.num_steps")
    for key in ("mutation_prob", "recombine_prob", "survival_quantile"):
        _probability(ga[key], f"seed_data.{key}")

    diff = cfg["ga_difficulty"]
    _positive_int(diff["max_oracle_calls"], "ga_difficulty.max_oracle_calls")
    _positive_int(diff["num_particles"], "ga_difficulty.num_particles")
    for key in ("mutation_prob", "recombine_prob"):
        _probability(diff[key], f"ga_difficulty.{key}", allow_none=True)
    _probability(diff["survival_quantile"], "ga_difficulty.survival_quantile")

    pairs = cfg["pairs"]
    _require(pairs["source"] in ("round", "history"), f"pairs.source must be 'round' or 'history', got {pairs['source']!r}")
    _probability(pairs["max_distance"], "pairs.max_distance")
    _probability(pairs["infeasible_fraction"], "pairs.infeasible_fraction")
    if pairs["max_pairs"] is not None:
        _positive_int(pairs["max_pairs"], "pairs.max_pairs")

    llome = cfg["llome"]
    _positive_int(llome["rounds"], "llome.rounds")
    gen = llome["generation"]
    for key in ("num_seeds", "num_iterations", "num_samples", "batch_size"):
        _positive_int(gen[key], f"llome.generation.{key}")
    temps = gen["temperatures"]
    _require(isinstance(temps, list) and temps and all(isinstance(t, (int, float)) and t > 0 for t in temps),
             f"llome.generation.temperatures must be a non-empty list of positive numbers, got {temps!r}")
    _probability(llome["selection"]["likelihood_quantile"], "llome.selection.likelihood_quantile")
    _positive_int(llome["selection"]["num_to_label"], "llome.selection.num_to_label")
    for method, spec in llome["methods"].items():
        _require(method in METHODS, f"llome.methods.{method}: methods are {METHODS}")
        _require(spec.get("objective") in OBJECTIVES,
                 f"llome.methods.{method}.objective must be one of {OBJECTIVES}, got {spec.get('objective')!r}")
        lr = spec["train"].get("learning_rate")
        _require(isinstance(lr, (int, float)) and lr > 0,
                 f"llome.methods.{method}.train.learning_rate must be positive, got {lr!r}")

    from llome.runtime import check_device, check_launcher

    try:
        check_device(cfg["device"])
        check_launcher(launcher_config(cfg))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    sweep = cfg["ga_baseline"]["sweep"]
    for key, values in sweep.items():
        _require(isinstance(values, list) and values, f"ga_baseline.sweep.{key} must be a non-empty list")


def seed_data_oracle_calls(cfg: dict) -> int:
    return cfg["seed_data"]["num_particles"] * cfg["seed_data"]["num_steps"]


def llome_oracle_budget(cfg: dict) -> int:
    """Every LLOME run pays for its GA seed data and then n labels per round (PAPER.md §4)."""
    return seed_data_oracle_calls(cfg) + cfg["llome"]["rounds"] * cfg["llome"]["selection"]["num_to_label"]


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
                    "oracle_budget": llome_oracle_budget(cfg), "seed_data_oracle_calls": seed_data_oracle_calls(cfg)},
    }
    llome = cfg["llome"]
    for method, spec in llome["methods"].items():
        stages[f"llome_{method}"] = {
            **builds_function, "method": method, "seeds": cfg["seeds"], "rounds": llome["rounds"],
            "objective": spec["objective"], "train": spec["train"], "pairs": cfg["pairs"],
            "generation": llome["generation"], "selection": llome["selection"],
            "seed_data_oracle_calls": seed_data_oracle_calls(cfg), "launcher": launcher_config(cfg),
            "device": cfg["device"], "diagnostics": llome["diagnostics"],
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
    stages = write_stage_configs(args.params, args.out, args.profile)
    print(f"wrote {len(stages)} stage configs to {args.out}")


if __name__ == "__main__":
    main()
