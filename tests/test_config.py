import copy
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
            "figures", "ga_difficulty"} <= set(stages)
    # The GA baseline gets exactly the oracle budget each LLOME run spends.
    assert stages["ga_baseline"]["max_oracle_calls"] == llome_oracle_budget(cfg)
    assert stages["figures"]["oracle_budget"] == llome_oracle_budget(cfg)


def test_paper_profile_has_the_papers_sizes():
    cfg = load_profile(PARAMS, "paper")
    gen = cfg["llome"]["generation"]
    assert cfg["model"]["name_or_path"] == "EleutherAI/pythia-2.8b"
    assert (gen["num_seeds"], gen["num_iterations"], gen["num_samples"], len(gen["temperatures"])) == (200, 10, 10, 6)
    assert cfg["llome"]["selection"]["num_to_label"] == 2000
    # 1 round of SFT on the seed data, then 9 labelled rounds: 10,000 + 9 x 2,000 = 28,000 calls (PAPER.md §4)
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
])
def test_bad_values_fail_before_any_work_and_name_the_setting(path, value, message):
    params = copy.deepcopy(PARAMS)
    node = params["profiles"]["default"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ValueError, match=message):
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


def test_the_function_seed_reaches_every_stage_that_builds_the_function():
    from llome.ehrlich import Ehrlich
    from llome.stages.common import load_function

    params = copy.deepcopy(PARAMS)
    params["profiles"]["default"]["test_functions"]["seed"] = 7
    stages = stage_configs(load_profile(params, "default"))
    builders = {"seed_data", "sft", "ga_baseline", "ga_difficulty", "llome_sft", "llome_marge", "llome_dpo"}
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
