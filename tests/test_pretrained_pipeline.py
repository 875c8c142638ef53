"""SmolLM2-135M-Instruct, a real pretrained LLM, through the pipeline's own stages (`make smoke`): round-0 SFT and
one LLOME-MargE round with the `pretrained` profile, in a scratch copy of the project.

Marked `pipeline`: `make test` leaves it out; `make smoke` fetches the checkpoint first (`make smollm2`) and runs it.
"""

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from scratch_project import copy_project, dvc_in

from llome.smollm2 import gguf_path

pytestmark = pytest.mark.pipeline

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory):
    if not gguf_path().is_file():
        pytest.fail(f"{gguf_path()} is absent: run `make smollm2` (make smoke does it first)")
    workdir = copy_project(tmp_path_factory.mktemp("project"))
    (workdir / "models").symlink_to(ROOT / "models")  # git-ignored, so not in the copy
    params = workdir / "params.yaml"
    params.write_text("\n".join("profile: pretrained" if line.startswith("profile:") else line
                                for line in params.read_text().splitlines()) + "\n")
    start = time.monotonic()
    log = dvc_in(workdir, "repro", "llome@marge")
    print(f"pretrained profile, round 0 and one MargE round: {time.monotonic() - start:.0f} s")
    return workdir, log


def test_round_zero_and_one_marge_round_run_through_the_same_stages(pretrained_run):
    workdir, log = pretrained_run
    for stage in ("params", "seed_data", "sft", "llome@marge"):  # the test functions are not upstream
        assert f"Running stage '{stage}'" in log
    assert "llome@sft" not in log and "llome@dpo" not in log  # only what llome@marge needs

    config = json.loads((workdir / "data" / "sft" / "seed_0" / "model" / "config.json").read_text())
    assert config["model_type"] == "llama" and config["vocab_size"] == 49152  # SmolLM2 itself, not the toy GPT-NeoX

    rounds = pd.read_csv(workdir / "data" / "llome" / "marge" / "rounds.csv")
    assert rounds[["seed", "round"]].values.tolist() == [[0, 1]]
    metrics = json.loads((workdir / "data" / "llome" / "marge" / "seed_0" / "round_01" / "metrics.json").read_text())
    cfg = json.loads((workdir / "data" / "params" / "llome_marge.json").read_text())
    generation = cfg["generation"]
    made = generation["num_seeds"] * generation["num_iterations"] * (1 + len(generation["temperatures"])
                                                                        * generation["num_samples"])
    assert metrics["num_candidates"] == metrics["generation"]["count"] == made
    # Every paid call is one label; a pretrained model that writes no valid sequence pays for nothing.
    assert metrics["oracle_calls"] == metrics["labelled"]["count"] <= cfg["selection"]["num_to_label"]
    assert metrics["oracle_calls"] + metrics["labels_short"] == cfg["selection"]["num_to_label"]
    for key in ("parsable", "correct_length", "in_range"):
        assert 0.0 <= metrics["generation"][key] <= 1.0
    trained = workdir / "data" / "llome" / "marge" / "seed_0" / "round_01" / "model"
    assert json.loads((trained / "config.json").read_text())["model_type"] == "llama"

    timing = json.loads((workdir / "data" / "llome" / "marge" / "seed_0" / "round_01" / "timing.json").read_text())
    print("pretrained MargE round (s):", json.dumps(timing))
