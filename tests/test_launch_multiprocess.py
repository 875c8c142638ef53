"""Training jobs launched in their own processes: `accelerate launch` with 2 data-parallel CPU processes, and
the `subprocess` launcher, through llome.jobs.train as the stages call it.

Marked `multiprocess` (each launch starts fresh Python processes, a few seconds apiece); `make test` runs them.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from llome.launch import child_environment, training_command
from llome.jobs import train
from llome.marge import completion_logps, tokenize_prompt_completion
from llome.models import build_model_and_tokenizer, load_model_and_tokenizer, save_model_and_tokenizer
from llome.text import format_completion, format_prompt
from llome.train import latest_checkpoint

pytestmark = pytest.mark.multiprocess

DIM, NUM_STATES, NUM_PAIRS, BATCH = 8, 8, 64, 8
SPEC = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
        "max_position_embeddings": 64, "seed": 0}
TWO_CPU_PROCESSES = {"kind": "accelerate", "num_processes": 2, "mixed_precision": "no", "device": "cpu"}
TRAIN = {"learning_rate": 1e-3, "num_train_epochs": 1, "per_device_train_batch_size": BATCH, "disable_tqdm": True,
         "logging_steps": 1000, "save_steps": 100000}


def _rows(array):
    return [tuple(int(v) for v in row) for row in array]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A saved tiny model (the previous round's, and the reference) and pairs, triples for it."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, NUM_STATES, size=(NUM_PAIRS, DIM))
    y = rng.integers(0, NUM_STATES, size=(NUM_PAIRS, DIM))
    y_other = rng.integers(0, NUM_STATES, size=(NUM_PAIRS, DIM))
    pairs = pd.DataFrame({"x": _rows(x), "y": _rows(y), "reward": 1.0})
    triples = pd.DataFrame({"x": _rows(x), "y_w": _rows(y), "y_l": _rows(y_other)})
    model, tokenizer = build_model_and_tokenizer(SPEC, NUM_STATES)
    base = tmp_path_factory.mktemp("base") / "model"
    save_model_and_tokenizer(model, tokenizer, base)
    return {"base": base, "pairs": pairs, "triples": triples}


def _steps(job_dir) -> int:
    checkpoint = latest_checkpoint(job_dir / "checkpoints")
    assert checkpoint is not None, f"no checkpoint in {job_dir}"
    return int(checkpoint.rsplit("-", 1)[1])


def _weights(model_dir) -> dict[str, torch.Tensor]:
    return load_model_and_tokenizer(model_dir)[0].state_dict()


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[name], after[name]) for name in before)


def _mean_logp(model, tokenizer, table) -> np.ndarray:
    """Mean completion log-probability per token of each pair."""
    rows = [tokenize_prompt_completion(tokenizer, format_prompt(x), format_completion(y))
            for x, y in zip(table["x"], table["y"])]
    ids = torch.tensor([r["prompt_ids"] + r["completion_ids"] for r in rows])  # all rows have one length
    completion = torch.tensor([[0] * len(r["prompt_ids"]) + [1] * len(r["completion_ids"]) for r in rows])
    with torch.no_grad():
        logps, lengths = completion_logps(model.eval(), ids, torch.ones_like(ids), completion)
    return (logps / lengths).numpy()


REWARDED = np.arange(NUM_PAIRS) % 2 == 0  # every micro-batch holds rewarded and unrewarded pairs


@pytest.fixture(scope="module")
def marge_runs(data, tmp_path_factory):
    """Two MargE jobs on 2 processes from the same start and pairs: rewards all zero, or 4 on half the pairs.

    Returns, per run, the job directory and the mean log-likelihood margin of the rewarded pairs over the others.
    """
    root = tmp_path_factory.mktemp("marge")
    runs = {}
    for name, rewards in (("zero", np.zeros(NUM_PAIRS)), ("informative", 4.0 * REWARDED)):
        table = data["pairs"].assign(reward=rewards)
        cfg = {**TRAIN, "num_train_epochs": 8, "alpha": 10.0, "beta": 1.0}
        model_dir = train("marge", table, cfg, root / name, seed=0, model_dir=data["base"],
                          launcher=TWO_CPU_PROCESSES)
        logp = _mean_logp(*load_model_and_tokenizer(model_dir), table)
        runs[name] = {"job": root / name, "margin": logp[REWARDED].mean() - logp[~REWARDED].mean()}
    return runs


def test_sft_marge_and_dpo_train_in_two_data_parallel_processes(data, marge_runs, tmp_path):
    base = _weights(data["base"])
    jobs = {
        "sft": dict(table=data["pairs"], model_spec=SPEC, num_states=NUM_STATES),  # round 0: a fresh model
        "dpo": dict(table=data["triples"], model_dir=data["base"]),
    }
    for objective, job in jobs.items():
        table = job.pop("table")
        model_dir = train(objective, table, TRAIN, tmp_path / objective, seed=0, launcher=TWO_CPU_PROCESSES, **job)
        assert model_dir == tmp_path / objective / "model"
        model, tokenizer = load_model_and_tokenizer(model_dir)
        assert len(tokenizer) == model.get_input_embeddings().num_embeddings
        # Two processes split each epoch: half the optimizer steps of one process with the same per-device batch.
        assert _steps(tmp_path / objective) == math.ceil(NUM_PAIRS / (2 * BATCH)), objective
        assert _changed(base, model.state_dict()), objective
    marge = marge_runs["informative"]["job"]
    assert _steps(marge) == 8 * math.ceil(NUM_PAIRS / (2 * BATCH))  # 8 epochs
    assert _changed(base, _weights(marge / "model"))


def test_a_lora_job_in_two_data_parallel_processes_merges_one_low_rank_update(data, tmp_path):
    # DDP averages the adapters' gradients alone (the model's weights are frozen); the saved model has the
    # adapters merged in: only the attention weights moved, each by a matrix of rank at most r.
    model_dir = train("dpo", data["triples"], TRAIN, tmp_path, seed=0, model_dir=data["base"],
                      launcher=TWO_CPU_PROCESSES, lora={"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": None})
    base, trained = _weights(data["base"]), _weights(model_dir)
    attention = {f"gpt_neox.layers.{i}.attention.query_key_value.weight" for i in range(SPEC["num_hidden_layers"])}
    assert {name for name in base if not torch.equal(base[name], trained[name])} == attention
    for name in attention:
        assert torch.linalg.matrix_rank(trained[name] - base[name]).item() <= 2, name
    assert _steps(tmp_path) == math.ceil(NUM_PAIRS / (2 * BATCH))


def test_subprocess_launcher_trains_in_one_fresh_process(data, tmp_path):
    launcher = {"kind": "subprocess", "device": "cpu"}
    model_dir = train("sft", data["pairs"], TRAIN, tmp_path, seed=0, model_dir=None, model_spec=SPEC,
                      num_states=NUM_STATES, launcher=launcher)
    load_model_and_tokenizer(model_dir)
    assert _steps(tmp_path) == math.ceil(NUM_PAIRS / BATCH)


def test_marge_rewards_reach_the_gradient_across_two_processes(marge_runs):
    """Each process self-normalises the weights over its own micro-batch of 8 and DDP averages the gradients.
    The reward must still steer training: rewarding half of the pairs raises their likelihood relative to the
    others, where rewards that are all zero leave the two halves alike (measured: 0.07 vs 0.003 nats/token)."""
    assert marge_runs["informative"]["margin"] > marge_runs["zero"]["margin"] + 0.03, marge_runs
    assert abs(marge_runs["zero"]["margin"]) < 0.02, marge_runs


def test_launch_commands_use_this_interpreter_and_this_llome(tmp_path):
    import sys
    from pathlib import Path

    import llome

    command = training_command(TWO_CPU_PROCESSES, tmp_path, port=12345)
    # --cpu would start ONE process whatever --num_processes says; --multi_gpu starts torchrun's N processes.
    assert "--multi_gpu" in command and "--cpu" not in command
    assert command[command.index("--main_process_port") + 1] == "12345"
    env = child_environment({"PATH": "/usr/bin", "PYTHONPATH": "/elsewhere"})
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    assert env["PYTHONPATH"].split(":") == [str(Path(llome.__file__).resolve().parents[1]), "/elsewhere"]
    single = training_command({**TWO_CPU_PROCESSES, "num_processes": 1}, tmp_path, port=12345)
    assert "--multi_gpu" not in single and "--main_process_port" not in single
