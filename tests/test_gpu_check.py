"""bench/gpu_check.sh where there is no GPU: it refuses clearly, and its --dry-run runs the same path at toy size."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}  # never build .venv-gpu in a test
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_without_a_gpu_it_refuses_and_runs_nothing(tmp_path):
    done = _run(str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert "no CUDA GPU" in done.stderr and "--dry-run" in done.stderr
    assert not (tmp_path / "out").exists()


def test_bad_arguments_print_the_usage(tmp_path):
    done = _run(str(tmp_path), "--dry")
    assert done.returncode == 64 and "usage:" in done.stderr


@pytest.mark.slow
def test_dry_run_writes_timings_and_round_metrics(tmp_path):
    done = _run(str(tmp_path), "--dry-run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["mode"] == "dry-run"
    assert env["launcher"] == {"kind": "accelerate", "num_processes": 1, "mixed_precision": "bf16", "device": "cpu"}
    assert env["generation"]["temperatures"] == [0.6, 0.8, 1.0, 1.2, 1.4, 1.6]
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert timings["rounds_done"] == 1 and len(timings["rounds_s"]) == 1
    assert timings["pretrained"].startswith("skipped: no checkpoint")  # a dry run tries one only when named
    assert timings["total_s"] >= timings["round0_sft_s"] + timings["rounds_s"][0]
    (row,) = [json.loads(line) for line in (tmp_path / "rounds.jsonl").read_text().splitlines()]
    # 4 seeds x 1 iteration x (greedy + 6 temperatures x 1 sample)
    assert row["proposals"] == row["metrics"]["num_candidates"] == 4 * (1 + 6)
    assert row["metrics"]["oracle_calls"] <= 8
    assert 0 < row["generation_s"] <= row["seconds"] and 0 <= row["training_s"] <= row["seconds"]


@pytest.mark.slow
def test_dry_run_times_one_round_of_a_pretrained_checkpoint(tmp_path):
    """GPU_CHECK_PRETRAINED names a saved model directory; the check adds round 0 and one MargE round with it."""
    from llome.models import build_model, save_model_and_tokenizer
    from llome.tokenizer import build_tokenizer

    tokenizer = build_tokenizer(32)
    model = build_model({"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
                         "intermediate_size": 32, "max_position_embeddings": 256, "seed": 0}, tokenizer)
    checkpoint = tmp_path / "checkpoint"
    save_model_and_tokenizer(model, tokenizer, checkpoint)
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_PRETRAINED": str(checkpoint)}
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out"), "--dry-run"], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pretrained = json.loads((tmp_path / "out" / "timings.json").read_text())["pretrained"]
    assert pretrained["model"] == str(checkpoint)
    assert pretrained["round0_sft_s"] > 0 and pretrained["round_s"] >= pretrained["generation_s"] > 0
    # 2 seeds x 1 iteration x (greedy + 6 temperatures x 1 sample); an untrained model may propose nothing valid
    assert pretrained["proposals"] == 2 * (1 + 6) and 0 <= pretrained["labelled"] <= 4

