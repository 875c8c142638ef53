"""LaMBO-2 (the paper's strongest baseline) driven from the project process.

pytorch-cortex 0.0.4 pins Lightning 1.9.5, which needs numpy<2, so LaMBO-2 runs in its own environment,
.lambo-venv (`make lambo-env`, pins in requirements/lambo.txt), as a subprocess: lambo/runner.py receives the
labelled sequences as JSON and answers with proposals. The objective never leaves this process: every
proposal is scored here through a counted oracle, and the next round's request carries the new labels.

A run lives in one directory, one sub-directory per round, laid out as an LLOME run's (llome/loop.py): a
round is built in `round_NN.partial/` and renamed to `round_NN/` when complete. The runner's proposals are
saved before the oracle is called and the labels right after, so a killed run neither asks the runner
again for a round whose proposals it has nor pays twice for a label.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from llome.io import read_json, read_table, write_json, write_table
from llome.lambo_settings import LamboSettings
from llome.metrics import generation_metrics, labelled_metrics
from llome.objective import CountedOracle
from llome.provenance import move_aside
from llome.rounds import TIMING_FILE, round_dir, round_seed

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
# A scratch copy of the project (the pipeline tests) points here at the checkout's environment.
VENV_VARIABLE = "LLOME_LAMBO_VENV"
LAMBO_VENV = Path(os.environ.get(VENV_VARIABLE) or REPO_ROOT / ".lambo-venv")
RUNNER = REPO_ROOT / "lambo" / "runner.py"
REQUIREMENTS = REPO_ROOT / "requirements" / "lambo.txt"
BUILD_HINT = "run `make lambo-env` to build .lambo-venv (pins in requirements/lambo.txt)"
MODEL_DIR = "lambo_model"  # in round 1: the model it trained, which every later round starts from
MODEL_FILE = "model.pt"  # lambo/runner.py's name for it


class LamboEnvironmentError(RuntimeError):
    """.lambo-venv is missing or cannot import cortex's LaMBO."""


class LamboRunnerError(RuntimeError):
    """The runner failed; the message ends with the tail of its log."""


def lambo_python(venv: Path | None = None) -> Path:
    """The LaMBO environment's interpreter, after checking that it can import cortex's LaMBO."""
    venv = Path(venv) if venv is not None else LAMBO_VENV
    python = venv / "bin" / "python"
    if not python.exists():
        raise LamboEnvironmentError(f"{venv} has no bin/python: {BUILD_HINT}")
    probe = subprocess.run([str(python), "-I", "-c", "from cortex.optim.generative import LaMBO"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        tail = "\n".join(probe.stderr.strip().splitlines()[-5:])
        raise LamboEnvironmentError(f"{python} cannot import cortex.optim.generative.LaMBO: {BUILD_HINT}\n{tail}")
    return python


def _runner_env() -> dict:
    return {**os.environ, "WANDB_MODE": "disabled"}


class LamboServer:
    """One runner process answering every round it is given (`lambo/runner.py --serve`), so that its imports,
    about 11 s of a round on 2 cores, are paid once per stage instead of once a round. It starts on its first
    request: a run whose rounds are all done starts none. Use it as a context manager.

    Each request runs as a one-shot call's would (the runner seeds everything and builds a fresh model each
    time; tests/test_lambo.py holds their proposals equal). Its log goes to a temporary file, and each call's
    part of it to that call's `runner.log`, as a one-shot call's does.
    """

    def __init__(self, python: Path):
        self.python = Path(python)
        self.process: subprocess.Popen | None = None
        self.log = None

    def __enter__(self) -> LamboServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        self.log = tempfile.NamedTemporaryFile("w+", prefix="lambo-runner-", suffix=".log")
        self.process = subprocess.Popen([str(self.python), "-I", str(RUNNER), "--serve"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True, env=_runner_env())

    def answer(self, request_path: Path, response_path: Path, log_path: Path) -> int:
        """0 once the runner has written `response_path`, else its exit status (1 when it is still running)."""
        if self.process is None or self.process.poll() is not None:
            self.close()
            self._start()
        self.log.seek(0, os.SEEK_END)
        start = self.log.tell()
        try:
            self.process.stdin.write(f"{request_path}\t{response_path}\n")
            self.process.stdin.flush()
            reply = self.process.stdout.readline().strip()
        except BrokenPipeError:
            reply = ""
        self.log.seek(start)
        log_path.write_text(self.log.read())
        if reply == "ok":
            return 0
        if reply:
            status = self.process.poll()
        else:  # its stdout closed: the runner is exiting, and its status may not be there yet
            try:
                status = self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                status = None
        return 1 if status is None or status == 0 else status

    def close(self) -> None:
        if self.process is not None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.log is not None:
            self.log.close()
            self.log = None


def _json_scores(scores: np.ndarray) -> list:
    return [float(s) if math.isfinite(s) else None for s in np.asarray(scores, dtype=np.float64)]


def propose(runner: Path | LamboServer, sequences: np.ndarray, scores: np.ndarray, rounds: np.ndarray,
            num_states: int, settings: LamboSettings, seed: int, work_dir: Path, state_dir: Path) -> dict:
    """One runner call: the labelled data in, `settings.num_proposals` sequences out (validated). `runner` is the
    LaMBO environment's interpreter (a process for this call alone) or a LamboServer."""
    work_dir.mkdir(parents=True, exist_ok=True)
    sequences = np.asarray(sequences, dtype=np.int64)
    request = {
        "num_states": int(num_states),
        "length": int(sequences.shape[1]),
        "sequences": sequences.tolist(),
        "scores": _json_scores(scores),
        "rounds": [int(r) for r in rounds],
        "num_proposals": int(settings.num_proposals),
        "seed": int(seed),
        "state_dir": str(state_dir),
        "settings": settings.runner_settings(),
    }
    request_path, response_path, log_path = (work_dir / name for name in
                                             ("request.json", "response.json", "runner.log"))
    request_path.write_text(json.dumps(request))
    response_path.unlink(missing_ok=True)
    started = time.perf_counter()
    if isinstance(runner, LamboServer):
        status = runner.answer(request_path, response_path, log_path)
    else:
        with open(log_path, "w") as runner_log:
            # -I: the runner sees only .lambo-venv, not this project's PYTHONPATH or working directory.
            status = subprocess.run([str(runner), "-I", str(RUNNER), str(request_path), str(response_path)],
                                    stdout=runner_log, stderr=subprocess.STDOUT, env=_runner_env()).returncode
    seconds = time.perf_counter() - started
    if status != 0 or not response_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise LamboRunnerError(f"lambo/runner.py failed with status {status} (log {log_path}):\n{tail}")
    response = json.loads(response_path.read_text())
    expected = (settings.num_proposals, sequences.shape[1])
    for key in ("proposals", "starting_points"):
        array = np.asarray(response[key], dtype=np.int64)
        if array.shape != expected:
            raise LamboRunnerError(f"runner returned {key} of shape {array.shape}, want {expected}")
        if array.min() < 0 or array.max() >= num_states:
            raise LamboRunnerError(f"runner returned {key} in [{array.min()}, {array.max()}], want [0, {num_states})")
        response[key] = array
    response["wall_seconds"] = seconds
    return response


def as_tuples(array) -> list[tuple]:
    return [tuple(int(v) for v in row) for row in np.asarray(array)]


def as_array(sequences) -> np.ndarray:
    return np.array([list(s) for s in sequences], dtype=np.int64)


def _save_proposals(work: Path, response: dict, pool: pd.DataFrame) -> None:
    """The runner's answer, kept so that a killed round never asks the runner again."""
    table = pd.DataFrame({"sequence": as_tuples(response["proposals"]), "parent": as_tuples(response["starting_points"]),
                          "acquisition": np.asarray(response["acquisition"], dtype=np.float64)})
    write_table(work / "proposals.parquet", table)
    write_json(work / "runner.json", {"trained_from_scratch": bool(response["trained_from_scratch"]),
                                      "device": response["device"], "precision": response["precision"],
                                      "versions": response["versions"],
                                      "labelled_sequences": int(len(pool))})


def _check_checkpoint(model_dir: Path) -> None:
    if not (model_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{model_dir / MODEL_FILE} does not exist: every round after the first starts from "
                                "the model round 1 trained. Restore it (e.g. `dvc checkout`), or move the run aside "
                                "to start it over")


def lambo_round(index: int, *, run_dir: Path, function, pool: pd.DataFrame, settings: LamboSettings, seed: int,
                runner: Path | LamboServer) -> dict:
    """One LaMBO-2 round; returns its metrics. Pays for exactly `settings.num_proposals` labels.

    `pool` holds every label so far (sequence, score, round). The runner trains on it (round 1 from scratch,
    later rounds from round 1's model), proposes, and each proposal is scored once through a counted oracle,
    repeats included: the authors' harness pays for every proposal, so the round spends n calls, as LLOME's do.
    """
    final = round_dir(run_dir, index)
    if (final / "metrics.json").exists():
        return read_json(final / "metrics.json")
    work = final.with_name(final.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    seconds = read_json(work / TIMING_FILE) if (work / TIMING_FILE).exists() else {}

    if not (work / "proposals.parquet").exists():
        model_dir = (work if index == 1 else round_dir(run_dir, 1)) / MODEL_DIR
        if index == 1:
            # A model a killed first round left behind would turn its rerun into a retraining of that model.
            shutil.rmtree(model_dir, ignore_errors=True)
        else:
            _check_checkpoint(model_dir)
        response = propose(runner, as_array(pool["sequence"]), pool["score"].to_numpy(np.float64),
                           pool["round"].to_numpy(np.int64), function.num_states, settings,
                           seed=round_seed(seed, index), work_dir=work / "runner", state_dir=model_dir)
        _save_proposals(work, response, pool)
        seconds.update(training=round(float(response["train_seconds"]), 3),
                       optimisation=round(float(response["optimise_seconds"]), 3),
                       runner=round(float(response["wall_seconds"]), 3))
        write_json(work / TIMING_FILE, seconds)
        shutil.rmtree(work / "runner")  # its request repeats the pool, and its log holds wall times
    proposals = read_table(work / "proposals.parquet")

    if not (work / "labelled.parquet").exists():
        started = time.perf_counter()
        oracle = CountedOracle(function, settings.num_proposals)
        scores = oracle(as_array(proposals["sequence"]))
        known = dict(zip(pool["sequence"], pool["score"]))
        labelled = proposals.copy()
        labelled["score"] = scores
        # Every starting point is a label the run already paid for, so its score costs nothing.
        labelled["parent_score"] = [known[parent] for parent in labelled["parent"]]
        labelled["distance"] = (as_array(labelled["sequence"]) != as_array(labelled["parent"])).mean(axis=1)
        labelled["round"] = index
        labelled["oracle_calls_round"] = np.arange(1, len(labelled) + 1)
        write_table(work / "labelled.parquet", labelled)
        write_json(work / "oracle.json", {"oracle_calls": oracle.calls, "diagnostic_calls": 0})
        seconds["labelling"] = round(time.perf_counter() - started, 3)
        write_json(work / TIMING_FILE, seconds)
    labelled = read_table(work / "labelled.parquet")
    if not (work / "oracle.json").exists():  # killed between the two writes: one paid call per saved label
        write_json(work / "oracle.json", {"oracle_calls": int(len(labelled)), "diagnostic_calls": 0})
    oracle_log = read_json(work / "oracle.json")
    runner = read_json(work / "runner.json")

    labelled_before = set(pool["sequence"])
    starts_feasible = np.isfinite(labelled["parent_score"].to_numpy(np.float64))
    candidates = labelled.assign(status="valid", loglik=np.nan)  # LaMBO-2 writes states, never text: all valid
    metrics = {
        "round": index,
        "oracle_calls": oracle_log["oracle_calls"],
        "diagnostic_oracle_calls": oracle_log["diagnostic_calls"],
        "num_candidates": int(len(proposals)),
        "labels_short": int(settings.num_proposals - oracle_log["oracle_calls"]),
        "generation": generation_metrics(candidates),
        "labelled": labelled_metrics(labelled),
        "lambo": {
            "already_labelled": float(np.mean([s in labelled_before for s in labelled["sequence"]])),
            "starting_points_feasible": float(starts_feasible.mean()),
            "mean_acquisition": float(labelled["acquisition"].mean()),
            "trained_from_scratch": runner["trained_from_scratch"],
            "labelled_sequences": runner["labelled_sequences"],
        },
    }
    write_json(work / "metrics.json", metrics)
    if final.exists():  # a round directory someone emptied of its metrics; its labels may still be there
        move_aside(final)
    work.rename(final)
    return metrics


def run_lambo(function, seed_table: pd.DataFrame, settings: LamboSettings, num_rounds: int, seed: int,
              run_dir: Path, runner: Path | LamboServer | None = None) -> list[dict]:
    """`num_rounds` rounds of LaMBO-2 from labelled seed data (sequence and score columns; paid for before),
    resuming whatever is already done under `run_dir`; returns each round's metrics. Without a `runner`, each
    round starts the LaMBO environment's interpreter anew."""
    runner = runner or lambo_python()
    pool = seed_table[["sequence", "score"]].assign(round=0)
    history = []
    for index in range(1, num_rounds + 1):
        started = time.perf_counter()
        metrics = lambo_round(index, run_dir=Path(run_dir), function=function, pool=pool, settings=settings,
                              seed=seed, runner=runner)
        history.append(metrics)
        labelled = read_table(round_dir(run_dir, index) / "labelled.parquet")
        pool = pd.concat([pool, labelled[["sequence", "score", "round"]]], ignore_index=True)
        log.info("lambo2 seed %d round %d/%d: %d labelled, %.0f%% feasible, best f so far %.4f (%.0f s)", seed, index,
                 num_rounds, metrics["oracle_calls"], 100 * metrics["labelled"]["feasible"],
                 float(np.max(pool["score"].to_numpy(np.float64), initial=-np.inf)), time.perf_counter() - started)
    return history
