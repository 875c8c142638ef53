"""Where training runs: in the notebook's process (CPU default) or in a launched job (GPUs).

The `launcher` setting picks one of:

    {kind: inprocess}                                          # default: the CPU, in the stage's process
    {kind: subprocess}                                         # a fresh Python process, same machine
    {kind: accelerate, num_processes: 8, mixed_precision: bf16} # `accelerate launch` over the GPUs

A launched job is a directory holding job.json and the training table; `python -m llome.launch DIR`
trains and saves the model into DIR/model.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from llome.io import read_json, read_table, write_json, write_table

LAUNCHERS = ("inprocess", "subprocess", "accelerate")


def check_launcher(launcher: dict | None) -> dict:
    launcher = dict(launcher or {"kind": "inprocess"})
    kind = launcher.get("kind", "inprocess")
    if kind not in LAUNCHERS:
        raise ValueError(f"launcher.kind must be one of {LAUNCHERS}, got {kind!r}")
    n = launcher.get("num_processes", 1)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"launcher.num_processes must be a positive integer, got {n!r}")
    if launcher.get("mixed_precision", "no") not in ("no", "fp16", "bf16"):
        raise ValueError(f"launcher.mixed_precision must be no, fp16 or bf16, got {launcher['mixed_precision']!r}")
    return {"kind": kind, "num_processes": n, "mixed_precision": launcher.get("mixed_precision", "no")}


def training_command(launcher: dict, job_dir: Path) -> list[str]:
    launcher = check_launcher(launcher)
    entry = ["-m", "llome.launch", str(job_dir)]
    if launcher["kind"] == "accelerate":
        return ["accelerate", "launch", "--num_processes", str(launcher["num_processes"]),
                "--mixed_precision", launcher["mixed_precision"], *entry]
    if launcher["kind"] == "subprocess":
        return [sys.executable, *entry]
    raise ValueError("an in-process launcher runs no command")


def write_job(job_dir: Path, *, objective: str, model_dir: Path, table: pd.DataFrame, train_cfg: dict,
              model_spec: dict | None = None, num_states: int | None = None) -> Path:
    """`model_spec` builds a fresh model (round 0); otherwise the job continues from `model_dir`."""
    job_dir = Path(job_dir)
    write_table(job_dir / "table.parquet", table)
    write_json(job_dir / "job.json", {"objective": objective, "model_dir": str(model_dir) if model_dir else None,
                                      "train": train_cfg, "model_spec": model_spec, "num_states": num_states})
    return job_dir


def run_job(job_dir: Path) -> Path:
    """Train as job.json says; the trained model and tokenizer land in job_dir/model, with the run's records
    (train_log.csv, and checkpoints.csv when it selected a checkpoint, see llome.train)."""
    from llome.models import build_model_and_tokenizer, load_model_and_tokenizer, save_model_and_tokenizer
    from llome.train import CHECKPOINTS_FILE, TRAIN_LOG_FILE, train_dpo, train_marge, train_sft

    job_dir = Path(job_dir)
    job = read_json(job_dir / "job.json")
    table = read_table(job_dir / "table.parquet")
    if job["model_spec"] is not None:
        model, tokenizer = build_model_and_tokenizer(job["model_spec"], job["num_states"])
    else:
        model, tokenizer = load_model_and_tokenizer(job["model_dir"])
    checkpoints = job_dir / "checkpoints"
    objective = job["objective"]
    train_cfg = job_train_config(job)
    if objective == "sft":
        model = train_sft(model, tokenizer, table, train_cfg, checkpoints)
    elif objective in ("marge", "dpo"):
        reference, _ = load_model_and_tokenizer(job["model_dir"])
        trainer = train_marge if objective == "marge" else train_dpo
        model = trainer(model, reference, tokenizer, table, train_cfg, checkpoints)
    else:
        raise ValueError(f"unknown objective {objective!r} in {job_dir / 'job.json'}")
    if _is_main_process():
        save_model_and_tokenizer(model, tokenizer, job_dir / "model")
        for name in (TRAIN_LOG_FILE, CHECKPOINTS_FILE):  # the run's records travel with its model
            if (checkpoints / name).is_file():
                shutil.copyfile(checkpoints / name, job_dir / "model" / name)
    return job_dir / "model"


def job_train_config(job: dict) -> dict:
    """The job's training settings over two defaults: the alphabet size the job knows, and checkpoint selection
    (PAPER.md section 4, step 4) on for every round that continues a model (round >= 1), off for round 0."""
    defaults = {"select_checkpoint": job["model_spec"] is None}
    if job.get("num_states") is not None:
        defaults["num_states"] = job["num_states"]
    return {**defaults, **job["train"]}


def run_launched(launcher: dict, job_dir: Path) -> Path:
    """Run the job in its own process(es) and return where the model was saved."""
    command = training_command(launcher, job_dir)
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"training job failed with exit code {completed.returncode}: {' '.join(command)}")
    model_dir = Path(job_dir) / "model"
    if not (model_dir / "config.json").exists():
        raise RuntimeError(f"training job finished but wrote no model to {model_dir}")
    return model_dir


def _is_main_process() -> bool:
    try:
        from accelerate import PartialState
        return PartialState().is_main_process
    except Exception:  # accelerate not initialised: a single process
        return True


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m llome.launch JOB_DIR")
    run_job(Path(sys.argv[1]))
