"""`dvc exp run -S` with a float in exponent form, through the real `params` stage of a scratch copy of the project.

DVC writes `5e-06` back into params.yaml unquoted; the params stage must read it as DVC does (a float) and hand
it on as a float. Marked `pipeline`: it runs DVC in a scratch git repository (about a minute).
"""

import subprocess
import sys
from pathlib import Path

import pytest
from scratch_project import committed_copy, tool_env

from llome.io import read_json
from llome.schema import DPOTrainConfig

pytestmark = pytest.mark.pipeline



def _run(workdir: Path, *command: str) -> str:
    done = subprocess.run(command, cwd=workdir, env=tool_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done.stdout


def test_a_float_set_with_dvc_exp_run_reaches_the_stage_file_as_a_float(tmp_path):
    committed_copy(tmp_path)

    _run(tmp_path, sys.executable, "-m", "dvc", "exp", "run", "params", "--name", "dpo-lr",
         "-S", "profiles.default.llome.methods.dpo.train.learning_rate=5e-6")

    train = read_json(tmp_path / "data" / "params" / "llome_dpo.json")["train"]
    assert isinstance(train["learning_rate"], float) and train["learning_rate"] == 5e-6
    assert DPOTrainConfig.from_mapping({**train, "num_states": 32}).learning_rate == 5e-6
