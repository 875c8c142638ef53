"""Where training runs: in the notebook's process (CPU default) or in a launched job (GPUs).

The `launcher` setting picks one of:

    {kind: inprocess}                                          # default: in the stage's process
    {kind: subprocess}                                         # a fresh Python process, same machine
    {kind: accelerate, num_processes: 8, mixed_precision: bf16} # `accelerate launch`, one process per GPU

plus `device` (auto, cpu, cuda, cuda:N; see llome.models.resolve_device), which the stage configs copy from
params.yaml's top-level `device`. Training runs on that device at the launcher's mixed precision where the
hardware has it (llome.models.effective_precision): on CPUs, always in fp32.

A launched job is a directory holding job.json and the training table; `python -m llome.launch DIR`
trains and saves the model into DIR/model. `accelerate launch --num_processes N` with N > 1 starts N
data-parallel processes (DDP) on the GPUs, or on the CPU with the gloo backend when the device is `cpu`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd

from llome.io import read_json, read_table, write_json, write_table
from llome.runtime import check_launcher

# Where the `llome` package that launches a job lives: the job's processes must import this same copy.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def training_command(launcher: dict, job_dir: Path, port: int | None = None) -> list[str]:
    """The command that runs the job; `port` is the rendezvous port of a multi-process job (default 29500)."""
    launcher = check_launcher(launcher)
    entry = ["-m", "llome.launch", str(job_dir)]
    if launcher["kind"] == "accelerate":
        n = launcher["num_processes"]
        command = ["accelerate", "launch", "--num_processes", str(n), "--num_machines", "1",
                   "--mixed_precision", launcher["mixed_precision"], "--dynamo_backend", "no"]
        if n > 1:
            # `--multi_gpu` is the launcher that starts n processes (torchrun), on CPUs too: the job itself asks
            # for the CPU (see run_job). `--cpu` would start a single process whatever --num_processes says.
            command.append("--multi_gpu")
            if port is not None:
                command += ["--main_process_port", str(port)]
        return [*command, *entry]
    if launcher["kind"] == "subprocess":
        return [sys.executable, *entry]
    raise ValueError("an in-process launcher runs no command")


def write_job(job_dir: Path, *, objective: str, model_dir: Path, table: pd.DataFrame, train_cfg: dict,
              model_spec: dict | None = None, num_states: int | None = None, launcher: dict | None = None,
              lora: dict | None = None) -> Path:
    """`model_spec` builds a fresh model (round 0); otherwise the job continues from `model_dir`. `lora`: None
    trains every weight, a LoRA setting (llome.lora) trains adapters that are merged in before saving."""
    job_dir = Path(job_dir)
    write_table(job_dir / "table.parquet", table)
    write_json(job_dir / "job.json", {"objective": objective, "model_dir": str(model_dir) if model_dir else None,
                                      "train": train_cfg, "model_spec": model_spec, "num_states": num_states,
                                      "launcher": check_launcher(launcher), "lora": lora})
    return job_dir


def run_job(job_dir: Path) -> Path:
    """Train as job.json says; the trained model and tokenizer land in job_dir/model, with the run's records
    (train_log.csv, and checkpoints.csv when it selected a checkpoint, see llome.train)."""
    import torch

    from llome.models import (build_model_and_tokenizer, load_model_and_tokenizer, resolve_device,
                              save_model_and_tokenizer)
    from llome.train import CHECKPOINTS_FILE, OBJECTIVES, TRAIN_LOG_FILE, TRAIN_TIMING_FILE, placement, train

    job_dir = Path(job_dir)
    job = read_json(job_dir / "job.json")
    table = read_table(job_dir / "table.parquet")
    launcher = check_launcher(job.get("launcher"))
    settings = placement(launcher["device"], launcher["mixed_precision"])
    if launcher["num_processes"] > 1:
        # Every weight of a causal LM is used in each step; DDP's search for unused ones costs a graph traversal.
        settings["ddp_find_unused_parameters"] = False
    job["train"] = {**job["train"], **settings}
    if "ACCELERATE_MIXED_PRECISION" in os.environ:
        # accelerate launch exports its --mixed_precision, which TrainingArguments would take over bf16=False.
        os.environ["ACCELERATE_MIXED_PRECISION"] = "bf16" if settings["bf16"] else "fp16" if settings["fp16"] else "no"
    device = resolve_device(launcher["device"])
    if device.type == "cuda" and launcher["num_processes"] == 1:
        torch.cuda.set_device(device)  # Trainer puts a single process on the current CUDA device
    if job["model_spec"] is not None:
        model, tokenizer = build_model_and_tokenizer(job["model_spec"], job["num_states"])
    else:
        model, tokenizer = load_model_and_tokenizer(job["model_dir"])
    checkpoints = job_dir / "checkpoints"
    objective = job["objective"]
    train_cfg = job_train_config(job)
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} in {job_dir / 'job.json'}")
    # The reference is the previous round's model as saved: with LoRA too, a plain model with the adapters merged.
    reference = load_model_and_tokenizer(job["model_dir"])[0] if OBJECTIVES[objective].reference else None
    model = train(objective, model, tokenizer, table, train_cfg, checkpoints, ref_model=reference,
                  lora=job.get("lora"))
    if _is_main_process():
        save_model_and_tokenizer(model, tokenizer, job_dir / "model")
        for name in (TRAIN_LOG_FILE, CHECKPOINTS_FILE, TRAIN_TIMING_FILE):  # the run's records travel with its model
            if (checkpoints / name).is_file():
                shutil.copyfile(checkpoints / name, job_dir / "model" / name)
    return job_dir / "model"


def job_train_config(job: dict) -> dict:
    """The job's training settings, with the alphabet size the job knows (checkpoint selection's gates need it)."""
    if job.get("num_states") is None:
        return dict(job["train"])
    return {"num_states": job["num_states"], **job["train"]}


def run_launched(launcher: dict, job_dir: Path) -> Path:
    """Run the job in its own process(es) and return where the model was saved."""
    multi = check_launcher(launcher)["num_processes"] > 1
    command = training_command(launcher, job_dir, port=_free_port() if multi else None)
    try:
        completed = subprocess.run(command, env=child_environment(), check=False)
    except FileNotFoundError as error:
        raise RuntimeError(f"cannot start the training job: {command[0]!r} is not installed here") from error
    if completed.returncode != 0:
        raise RuntimeError(f"training job failed with exit code {completed.returncode}: {' '.join(command)}")
    model_dir = Path(job_dir) / "model"
    if not (model_dir / "config.json").exists():
        raise RuntimeError(f"training job finished but wrote no model to {model_dir}")
    return model_dir


def child_environment(environ: dict | None = None) -> dict[str, str]:
    """The caller's environment, with this interpreter's scripts (accelerate) and this llome first on the paths.

    Without them a job could run another environment's accelerate, or import another checkout's llome (an
    editable install elsewhere): it would train with code the caller never ran.
    """
    env = dict(os.environ if environ is None else environ)
    for name, first in (("PATH", Path(sys.executable).parent), ("PYTHONPATH", PROJECT_ROOT)):
        rest = [p for p in env.get(name, "").split(os.pathsep) if p and p != str(first)]
        env[name] = os.pathsep.join([str(first), *rest])
    return env


def _free_port() -> int:
    # Two multi-process jobs on one machine (two stages, two users) must not share torchrun's default port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
