import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml

from llome.config import (ConfigError, deep_merge, llome_oracle_budget, load_profile, stage_configs,
                          write_stage_configs)

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_every_profile_resolves_and_validates(profile):
    cfg = load_profile(PARAMS, profile)
    assert cfg["profile"] == profile
    stages = stage_configs(cfg)
    assert {"test_functions", "seed_data", "sft", "llome_sft", "llome_marge", "llome_dpo", "ga_baseline",
            "figures", "ga_difficulty", "lambo2", "prompted"} <= set(stages)
    # The GA baseline gets exactly the oracle budget each LLOME run spends.
    assert stages["ga_baseline"]["max_oracle_calls"] == llome_oracle_budget(cfg)
    assert stages["figures"]["oracle_budget"] == llome_oracle_budget(cfg)


def test_paper_profile_has_the_papers_sizes():
    cfg = load_profile(PARAMS, "paper")
    gen = cfg["llome"]["generation"]
    assert cfg["model"]["name_or_path"] == "EleutherAI/pythia-2.8b"
    assert (gen["num_seeds"], gen["num_iterations"], gen["num_samples"], len(gen["temperatures"])) == (200, 10, 10, 6)
    assert cfg["llome"]["selection"]["num_to_label"] == 2000
    # 1 round of SFT on the seed data, then 9 labelled rounds: 10,000 + 9 x 2,000 = 28,000 calls (docs/method.md §4)
    assert cfg["llome"]["rounds"] == 9
    assert llome_oracle_budget(cfg) == 28_000
    assert cfg["llome"]["methods"]["marge"]["train"]["alpha"] == 1.0
    assert cfg["llome"]["methods"]["marge"]["train"]["beta"] == 10.0
    assert cfg["llome"]["methods"]["dpo"]["train"]["beta"] == 0.4


def test_budget_is_seed_data_plus_n_per_round():
    cfg = load_profile(PARAMS, "default")
    expected = 1000 * 10 + cfg["llome"]["rounds"] * cfg["llome"]["selection"]["num_to_label"]
    assert llome_oracle_budget(cfg) == expected


def test_override_of_unknown_key_is_refused_with_its_path():
    with pytest.raises(ConfigError, match=r"llome\.generation\.num_seedz"):
        deep_merge({"llome": {"generation": {"num_seeds": 1}}}, {"llome": {"generation": {"num_seedz": 2}}})


def test_override_merges_deeply_without_touching_the_base():
    base = {"a": {"b": 1, "c": 2}, "d": 3}
    merged = deep_merge(base, {"a": {"b": 10}})
    assert merged == {"a": {"b": 10, "c": 2}, "d": 3}
    assert base == {"a": {"b": 1, "c": 2}, "d": 3}


@pytest.mark.parametrize("path, value, message", [
    (("seeds",), [], "seeds"),
    (("seed_data", "mutation_prob"), 1.5, "seed_data.mutation_prob"),
    (("llome", "generation", "temperatures"), [0.5, -1], "temperatures"),
    (("llome", "selection", "num_to_label"), 0, "num_to_label"),
    (("function",), "ehr_v-32_l-032_m-8_c-4_q-3", "quantization|q"),
    (("function",), "ehr_v-32_l-032_m-4_c-9_q-4", "num_motifs|motif_length|dim"),
    (("function",), "not-a-name", "not-a-name"),
    (("llome", "methods", "marge", "objective"), "ppo", "objective"),
    (("prompted", "num_best"), 9, r"prompted\.num_best"),
    (("prompted", "num_to_label"), 25, r"prompted\.num_to_label"),
    (("prompted", "temperature"), 0, r"prompted\.temperature"),
])
def test_bad_values_fail_before_any_work_and_name_the_setting(path, value, message):
    params = copy.deepcopy(PARAMS)
    node = params["profiles"]["default"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValueError, match=message):
        load_profile(params, "default")


def test_the_prompted_baseline_pays_for_the_seed_data_and_at_most_n_a_round():
    cfg = load_profile(PARAMS, "default")
    stages = stage_configs(cfg)
    prompted = cfg["prompted"]
    assert stages["prompted"]["seed_data_oracle_calls"] == stages["figures"]["seed_data_oracle_calls"] == 1000 * 10
    assert stages["figures"]["prompted"]["oracle_budget"] == 1000 * 10 + prompted["rounds"] * prompted["num_to_label"]
    params = copy.deepcopy(PARAMS)
    del params["profiles"]["default"]["prompted"]["num_best"]
    with pytest.raises(ConfigError, match=r"prompted.*num_best"):
        load_profile(params, "default")


def test_unknown_profile_is_refused():
    with pytest.raises(ConfigError, match="nightly"):
        load_profile(PARAMS, "nightly")


def test_stage_files_depend_only_on_their_own_settings(tmp_path):
    """Changing one method's learning rate changes that method's file and no other."""
    before = write_stage_configs(ROOT / "params.yaml", tmp_path / "a", "default")
    params = copy.deepcopy(PARAMS)
    params["profiles"]["default"]["llome"]["methods"]["dpo"]["train"]["learning_rate"] = 1e-5
    changed_yaml = tmp_path / "params.yaml"
    changed_yaml.write_text(yaml.safe_dump(params))
    after = write_stage_configs(changed_yaml, tmp_path / "b", "default")
    differing = {name for name in before if before[name] != after[name]}
    assert differing == {"llome_dpo"}
    for name in before:
        same = (tmp_path / "a" / f"{name}.json").read_bytes() == (tmp_path / "b" / f"{name}.json").read_bytes()
        assert same == (name != "llome_dpo")


def test_the_calibration_sample_size_reaches_every_llome_stage_and_a_profile_may_set_it_apart():
    params = copy.deepcopy(PARAMS)
    params["profiles"]["smoke"]["llome"]["diagnostics_calibration_sample"] = 7
    for profile, size in (("default", 500), ("smoke", 7)):
        stages = stage_configs(load_profile(params, profile))
        assert {stages[f"llome_{m}"]["diagnostics_calibration_sample"] for m in ("sft", "marge", "dpo")} == {size}
    assert "profiles.smoke.llome.diagnostics_calibration_sample: must be >= 0" in \
        _problems(_set("smoke.llome.diagnostics_calibration_sample", -5), profile="smoke")


def test_the_function_seed_reaches_every_stage_that_builds_the_function():
    from llome.ehrlich import Ehrlich
    from llome.stages.common import load_function

    params = copy.deepcopy(PARAMS)
    params["profiles"]["default"]["test_functions"]["seed"] = 7
    stages = stage_configs(load_profile(params, "default"))
    builders = {"seed_data", "sft", "ga_baseline", "ga_difficulty", "llome_sft", "llome_marge", "llome_dpo", "lambo2",
                "prompted"}
    assert {name for name, stage in stages.items() if stage.get("function_seed") == 7} == builders
    assert stages["test_functions"]["seed"] == 7
    name = stages["seed_data"]["function"]
    function = load_function(name, seed=stages["seed_data"]["function_seed"])
    assert function.seed == 7 and function == Ehrlich.from_name(name, seed=7) != Ehrlich.from_name(name)
    with pytest.raises(ValueError, match="seed"):
        load_function(name)  # no default seed to fall back on


def test_paper_profile_trains_under_accelerate_launch(tmp_path):
    from llome.launch import training_command

    stages = stage_configs(load_profile(PARAMS, "paper"))
    for name in ("sft", "llome_sft", "llome_marge", "llome_dpo"):
        command = training_command(stages[name]["launcher"], tmp_path / "job")
        assert command[:2] == ["accelerate", "launch"]
        assert command[command.index("--num_processes") + 1] == "8"
        assert command[command.index("--mixed_precision") + 1] == "bf16"
        assert command[-3:] == ["-m", "llome.launch", str(tmp_path / "job")]
    assert stage_configs(load_profile(PARAMS, "default"))["sft"]["launcher"]["kind"] == "inprocess"


def test_every_dvc_stage_reads_a_file_the_params_stage_writes():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    written = set(dvc["stages"]["params"]["outs"])
    stages = stage_configs(load_profile(PARAMS, "default"))
    assert {f"data/params/{name}.json" for name in stages} | {"data/params/effective.json"} == written
    for name, stage in dvc["stages"].items():
        if name == "params":
            continue
        body = stage.get("do", stage)
        config_deps = [d for d in body["deps"] if str(d).startswith("data/params/")]
        assert len(config_deps) == 1, name
        assert config_deps[0] in body["cmd"], name
        notebook = body["cmd"].split()[3]
        assert (ROOT / notebook).exists() and notebook in body["deps"], name


def test_package_exports_resolve():
    import llome

    for name in llome.__all__:
        assert getattr(llome, name) is not None, name


def test_params_written_back_by_dvc_exp_run_still_load(tmp_path):
    """`dvc exp run -S` rewrites params.yaml in YAML 1.2 and drops the quotes of "no" (dvc 3.67)."""
    from dvc.utils.hydra import apply_overrides

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(str(params), ["profile=smoke", "profiles.smoke.seeds=[3]"])
    assert 'mixed_precision: no\n' in params.read_text()
    cfg = load_profile(params)
    assert cfg["profile"] == "smoke" and cfg["seeds"] == [3]
    assert cfg["launcher"]["mixed_precision"] == "no"
    assert cfg["llome"]["generation"]["greedy"] is True


# --- params.yaml is read as DVC reads it (YAML 1.2) ------------------------------------------------------------

TRICKY_SCALARS = ["1e-5", "5e-6", "5e-06", "1.0e-3", "no", "yes", "on", "off", "true", "False", "0x10", "010", "0o10",
                  ".5", "null", "~", "1_000", "'no'"]


def test_params_scalars_parse_exactly_as_dvc_parses_them():
    from dvc.utils.serialize import parse_yaml

    from llome.config import parse_params

    text = "".join(f"k{i}: {scalar}\n" for i, scalar in enumerate(TRICKY_SCALARS))
    ours, dvcs = parse_params(text), parse_yaml(text, "params.yaml")
    assert ours == dvcs
    assert [type(value) for value in ours.values()] == [type(value) for value in dvcs.values()]
    by_scalar = dict(zip(TRICKY_SCALARS, ours.values()))
    assert by_scalar["1e-5"] == 1e-5 and by_scalar["5e-6"] == 5e-6 and by_scalar["1.0e-3"] == 1e-3
    assert all(isinstance(by_scalar[s], float) for s in ("1e-5", "5e-6", "5e-06", "1.0e-3", ".5"))
    assert [by_scalar[s] for s in ("no", "yes", "on", "off", "'no'")] == ["no", "yes", "on", "off", "no"]
    assert by_scalar["true"] is True and by_scalar["False"] is False
    assert by_scalar["null"] is None and by_scalar["~"] is None


def test_floats_set_with_dvc_exp_run_s_reach_the_stage_files_and_the_trainers(tmp_path):
    """`dvc exp run -S` writes these back as 5e-06 and 1e-05, which YAML 1.1 would read as strings."""
    from dvc.utils.hydra import apply_overrides
    from trl import DPOConfig, SFTConfig

    from llome.io import read_json
    from llome.launch import job_train_config
    from llome.train import training_args

    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(str(params), ["profiles.default.llome.methods.dpo.train.learning_rate=5e-6",
                                  "profiles.default.sft.learning_rate=1e-5"])
    written = params.read_text()
    assert re.search(r"learning_rate: 5e-06\s", written) and re.search(r"learning_rate: 1e-05\s", written), written
    write_stage_configs(params, tmp_path / "params", "default")
    dpo, sft = read_json(tmp_path / "params" / "llome_dpo.json"), read_json(tmp_path / "params" / "sft.json")
    assert dpo["train"]["learning_rate"] == 5e-6 and isinstance(dpo["train"]["learning_rate"], float)
    assert sft["train"]["learning_rate"] == 1e-5 and isinstance(sft["train"]["learning_rate"], float)
    # As llome.launch hands them to training: with the instance's alphabet size, which checkpoint selection needs.
    dpo_args = training_args(DPOConfig, job_train_config({"train": dpo["train"], "num_states": 32}), tmp_path / "dpo",
                             objective="dpo")
    sft_args = training_args(SFTConfig, job_train_config({"train": sft["train"], "num_states": 32}), tmp_path / "sft",
                             objective="sft")
    assert (dpo_args.learning_rate, dpo_args.beta, sft_args.learning_rate) == (5e-6, 0.4, 1e-5)


def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("profile: default\nprofiles:\n  default:\n    seeds: [0, 1\n    function: x\n")
    with pytest.raises(ConfigError, match=r"params\.yaml, line \d+, column \d+: invalid YAML"):
        load_profile(params)


def test_corrupt_json_names_the_file(tmp_path):
    from llome.io import read_json

    broken = tmp_path / "sft.json"
    broken.write_text('{"train": {"learning_rate": 1e-5,}}')
    with pytest.raises(ValueError, match=r"sft\.json is not valid JSON"):
        read_json(broken)


# --- the schema checks every profile before any work ----------------------------------------------------------


def _problems(edit, profile="default") -> str:
    params = copy.deepcopy(PARAMS)
    edit(params["profiles"])
    with pytest.raises(ConfigError) as raised:
        load_profile(params, profile)
    return str(raised.value)


def _set(path: str, value):
    def edit(profiles):
        *parents, last = path.split(".")
        node = profiles
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


def test_a_typo_in_the_default_profile_is_refused():
    message = _problems(_set("default.llome.generation.temprature_schedule", False))
    assert "profiles.default.llome.generation.temprature_schedule: unknown key" in message


def test_a_key_deleted_from_the_default_profile_is_named():
    message = _problems(lambda profiles: profiles["default"]["seed_data"].pop("num_steps"))
    assert "profiles.default.seed_data: missing key(s) num_steps" in message


@pytest.mark.parametrize("path, value, expected", [
    ("sft.num_train_epochs", -4, "sft.num_train_epochs: must be >= 1, got -4"),
    ("sft.num_train_epochs", 0, "sft.num_train_epochs: must be >= 1, got 0"),
    ("llome.methods.sft.train.num_train_epochs", 0, "llome.methods.sft.train.num_train_epochs: must be >= 1"),
    ("llome.methods.dpo.train.beta", -1, "llome.methods.dpo.train.beta: must be > 0, got -1"),
    ("llome.methods.marge.train.beta", -1, "llome.methods.marge.train.beta: must be > 0, got -1"),
    ("llome.methods.marge.train.alpha", -0.5, "llome.methods.marge.train.alpha: must be >= 0"),
    ("llome.methods.dpo.train.learning_rate", "5e-06", "llome.methods.dpo.train.learning_rate: must be a number, got '5e-06'"),
    ("model.gpt_neox.hidden_size", 0, "model.gpt_neox.hidden_size: must be >= 1, got 0"),
    ("model.gpt_neox.hidden_size", 66, "model.gpt_neox: hidden_size 66 is not divisible by num_attention_heads 4"),
    ("pairs.num_neighbors", -3, "pairs.num_neighbors: must be >= 1, got -3"),
    ("pairs.max_distance", 1.5, "pairs.max_distance: must be <= 1, got 1.5"),
    ("seed_data.survival_quantile", -0.1, "seed_data.survival_quantile: must be >= 0"),
    ("ga_difficulty.mutation_prob", 2, "ga_difficulty.mutation_prob: must be <= 1"),
    ("llome.selection.likelihood_quantile", 1.0, "llome.selection.likelihood_quantile: must be < 1, got 1.0"),
    ("llome.selection.num_to_label", 5000, "llome.selection.num_to_label: a round labels at most the 3120 candidates"),
    ("llome.generation.greedy", "yes", "llome.generation.greedy: must be true or false, got 'yes'"),
    ("llome.methods.sft.train.select_checkpoint", 1, "llome.methods.sft.train.select_checkpoint: must be true or false, got 1"),
    ("test_functions.seed", 1.5, "test_functions.seed: must be an integer, got 1.5"),
    ("test_functions.seed", True, "test_functions.seed: must be an integer, got True"),
    ("seeds", [0, 0], "seeds: must be distinct"),
    ("llome.methods.sft.train.beta", 0.1, "llome.methods.sft.train.beta: unknown key"),
    ("llome.diagnostics_calibration_sample", -1, "llome.diagnostics_calibration_sample: must be >= 0, got -1"),
    ("llome.diagnostics_calibration_sample", 0.5, "llome.diagnostics_calibration_sample: must be an integer, got 0.5"),
    ("llome.diagnostics_calibration_sample", True,
     "llome.diagnostics_calibration_sample: must be an integer, got True"),
])
def test_bad_values_are_refused_with_their_key_path_and_value(path, value, expected):
    assert f"profiles.default.{expected}" in _problems(_set(f"default.{path}", value))


def test_an_instance_too_long_for_the_models_positions_fails_at_the_params_stage():
    # L=62 takes 2L+4 + 2L+1 + eos = 254 of the default model's 256 positions; L=63 takes 258.
    load_profile(_edited(_set("default.function", "ehr_v-32_l-062_m-4_c-4_q-4")), "default")
    message = _problems(_set("default.function", "ehr_v-32_l-063_m-4_c-4_q-4"))
    assert "profiles.default.model.gpt_neox.max_position_embeddings" in message and "258 tokens" in message
    # A pretrained checkpoint brings its own positions: nothing to check against the from-scratch size.
    pretrained = _edited(_set("default.function", "ehr_v-32_l-063_m-4_c-4_q-4"),
                         _set("default.model.name_or_path", "some/checkpoint"))
    assert load_profile(pretrained, "default")["model"]["name_or_path"] == "some/checkpoint"


def _edited(*edits) -> dict:
    params = copy.deepcopy(PARAMS)
    for edit in edits:
        edit(params["profiles"])
    return params


def test_a_problem_is_named_under_the_profile_that_sets_it_and_all_problems_are_listed():
    message = _problems(lambda profiles: (_set("smoke.model.gpt_neox.hidden_size", 33)(profiles),
                                          _set("default.pairs.max_distance", -1)(profiles)), "smoke")
    assert "profiles.smoke.model.gpt_neox: hidden_size 33 is not divisible by num_attention_heads 2" in message
    assert "profiles.default.pairs.max_distance: must be >= 0, got -1" in message
    assert "2 problem(s)" in message


def test_a_bad_profile_the_run_does_not_use_still_fails():
    assert "profiles.paper.llome.rounds: must be >= 1, got 0" in _problems(_set("paper.llome.rounds", 0), "default")


def test_the_params_stage_stops_before_writing_anything(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("num_train_epochs: 4", "num_train_epochs: -4"))
    with pytest.raises(ConfigError, match="profiles.default.sft.num_train_epochs: must be >= 1, got -4"):
        write_stage_configs(params, tmp_path / "out", "default")
    assert not (tmp_path / "out").exists()
