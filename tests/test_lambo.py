"""LaMBO-2 through its own environment (.lambo-venv, `make lambo-env`): the environment check, and one toy
end-to-end run (`pytest -m lambo tests/test_lambo.py`, about a minute on 2 cores)."""

import numpy as np
import pytest

from llome.ehrlich import Ehrlich
from llome.lambo import LAMBO_VENV, LamboEnvironmentError, LamboSettings, lambo_python, run_lambo
from llome.loop import CountedOracle


def test_missing_environment_names_make_target(tmp_path):
    with pytest.raises(LamboEnvironmentError, match="make lambo-env"):
        lambo_python(tmp_path / "no-such-venv")


def test_broken_environment_names_make_target(tmp_path):
    # An interpreter that exists but cannot import LaMBO (as after a failed or partial build).
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    python = tmp_path / "venv" / "bin" / "python"
    python.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named cortex' >&2\nexit 1\n")
    python.chmod(0o755)
    with pytest.raises(LamboEnvironmentError, match="make lambo-env"):
        lambo_python(tmp_path / "venv")


class CountingFunction:
    """The objective, counting the sequences that reach it, to check that all go through the oracle."""

    def __init__(self, function):
        self.function, self.sequences_seen = function, 0
        self.num_states = function.num_states

    def __call__(self, x):
        self.sequences_seen += len(x)
        return self.function(x)


TOY_SETTINGS = LamboSettings(
    num_proposals=16, batch_size=16, num_steps=2, num_mutations_per_step=2, max_guidance_updates=2,
    max_epochs=2, retrain_epochs=1, feature_dim=16, embed_dim=8, kernel_size=3, ensemble_size=2)


@pytest.mark.lambo
@pytest.mark.skipif(not (LAMBO_VENV / "bin" / "python").exists(),
                    reason=".lambo-venv is absent: build it with `make lambo-env`")
def test_lambo_two_toy_rounds(tmp_path, record_property):
    function = Ehrlich(num_states=8, dim=16, num_motifs=2, motif_length=4, quantization=4, seed=0)
    seed_sequences = function.initial_solution(64)
    # Mutate half the seed data so it holds infeasible sequences too, as GA seed data does.
    rng = np.random.default_rng(0)
    mutated = seed_sequences[::2].copy()
    edit = rng.random(mutated.shape) < 0.2
    mutated[edit] = rng.integers(0, 8, size=int(edit.sum()))
    seed_sequences = np.concatenate([seed_sequences, mutated])
    seed_scores = function(seed_sequences)
    assert np.isfinite(seed_scores).any()

    counted = CountingFunction(function)
    oracle = CountedOracle(counted, budget=10_000)
    run = run_lambo(counted, oracle, seed_sequences, seed_scores, TOY_SETTINGS, num_rounds=2, seed=0,
                    work_dir=tmp_path)

    proposals = np.stack(run.history["sequence"].to_numpy())
    assert proposals.shape == (2 * 16, 16)
    assert proposals.dtype.kind == "i" and proposals.min() >= 0 and proposals.max() < 8
    assert oracle.calls == counted.sequences_seen == 2 * 16
    np.testing.assert_array_equal(run.history["score"].to_numpy(), function(proposals))
    assert [r["round"] for r in run.rounds] == [1, 2]
    assert [r["oracle_calls"] for r in run.rounds] == [16, 32]
    # Round 1 trains the model; round 2 starts from the model round 1 kept.
    assert [r["trained_from_scratch"] for r in run.rounds] == [True, False]
    feasible = float(np.isfinite(run.history["score"]).mean())
    record_property("lambo_feasible_fraction", feasible)
    print(f"LaMBO-2 toy run: feasible fraction {feasible:.3f}, rounds {run.rounds}")
