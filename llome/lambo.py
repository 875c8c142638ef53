"""LaMBO-2 (the paper's strongest baseline) driven from the project process.

pytorch-cortex 0.0.4 pins Lightning 1.9.5, which needs numpy<2, so LaMBO-2 runs in its own environment,
.lambo-venv (`make lambo-env`, pins in requirements/lambo.txt), as a subprocess: lambo/runner.py receives the
labelled sequences as JSON and answers with proposals. The objective never leaves this process: every
proposal is scored here through the counted oracle, and the next round's request carries the new labels.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from llome.loop import CountedOracle

REPO_ROOT = Path(__file__).resolve().parent.parent
LAMBO_VENV = REPO_ROOT / ".lambo-venv"
RUNNER = REPO_ROOT / "lambo" / "runner.py"
BUILD_HINT = "run `make lambo-env` to build .lambo-venv (pins in requirements/lambo.txt)"


class LamboEnvironmentError(RuntimeError):
    """.lambo-venv is missing or cannot import cortex's LaMBO."""


class LamboRunnerError(RuntimeError):
    """The runner failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class LamboSettings:
    """The runner's knobs; defaults are the authors' "reproduce LLOME LaMBO results" values (bbo-bench),
    with the swept ones (num_mutations_per_step 16 or 24, guidance_step_size 0.01 or 0.05) at one choice."""

    num_proposals: int = 2000
    batch_size: int = 128
    num_steps: int = 64
    num_mutations_per_step: int = 16
    max_guidance_updates: int = 2
    guidance_step_size: float = 0.05
    kl_weight: float = 0.0
    feature_attr_temp: float = 1.0
    exclude_initial_solution: bool = False
    resample_edit_positions: bool = True
    max_epochs: int = 16
    retrain_epochs: int = 16
    fft_expansion_factor: int = 2
    feature_dim: int = 128
    embed_dim: int = 32
    kernel_size: int = 5
    ensemble_size: int = 8
    feasibility_task: bool = True
    learning_rate: float = 5e-3
    threads: int | None = None

    def runner_settings(self) -> dict:
        settings = asdict(self)
        del settings["num_proposals"]
        return settings


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


def _json_scores(scores: np.ndarray) -> list:
    return [float(s) if math.isfinite(s) else None for s in np.asarray(scores, dtype=np.float64)]


def propose(python: Path, sequences: np.ndarray, scores: np.ndarray, rounds: np.ndarray, num_states: int,
            settings: LamboSettings, seed: int, work_dir: Path, state_dir: Path) -> dict:
    """One runner call: the labelled data in, `settings.num_proposals` sequences out (validated)."""
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
    with open(log_path, "w") as log:
        # -I: the runner sees only .lambo-venv, not this project's PYTHONPATH or working directory.
        result = subprocess.run([str(python), "-I", str(RUNNER), str(request_path), str(response_path)],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "WANDB_MODE": "disabled"})
    seconds = time.perf_counter() - started
    if result.returncode != 0 or not response_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise LamboRunnerError(f"lambo/runner.py exited with {result.returncode} (log {log_path}):\n{tail}")
    response = json.loads(response_path.read_text())
    proposals = np.asarray(response["proposals"], dtype=np.int64)
    expected = (settings.num_proposals, sequences.shape[1])
    if proposals.shape != expected or proposals.min() < 0 or proposals.max() >= num_states:
        raise LamboRunnerError(f"runner returned proposals of shape {proposals.shape} in "
                               f"[{proposals.min()}, {proposals.max()}], want {expected} in [0, {num_states})")
    response["proposals"] = proposals
    response["wall_seconds"] = seconds
    return response


@dataclass
class LamboRun:
    """Every sequence LaMBO-2 proposed, with its oracle score, and one summary row per round."""

    history: pd.DataFrame
    rounds: list[dict] = field(default_factory=list)

    @property
    def best_value(self) -> float:
        return float(self.history["score"].max()) if len(self.history) else -math.inf


def run_lambo(function, oracle: CountedOracle, seed_sequences: np.ndarray, seed_scores: np.ndarray,
              settings: LamboSettings, num_rounds: int, seed: int, work_dir: Path,
              python: Path | None = None) -> LamboRun:
    """`num_rounds` rounds of LaMBO-2 from labelled seed data (scored earlier, not charged to `oracle`);
    each round's proposals are scored through `oracle`, so its count is exactly what LaMBO-2 spent."""
    python = python or lambo_python()
    work_dir = Path(work_dir)
    sequences = np.asarray(seed_sequences, dtype=np.int64)
    scores = np.asarray(seed_scores, dtype=np.float64)
    rounds = np.zeros(len(sequences), dtype=np.int64)
    labelled = {row.tobytes(): score for row, score in zip(sequences, scores)}
    history, summaries = [], []
    for index in range(1, num_rounds + 1):
        response = propose(python, sequences, scores, rounds, function.num_states, settings,
                           seed=seed + index, work_dir=work_dir / f"round_{index:02d}", state_dir=work_dir / "state")
        proposals = response["proposals"]
        # LaMBO edits its starting points in place: proposal i grew from starting point i.
        starts = np.asarray(response["starting_points"], dtype=np.int64)
        proposal_scores = oracle(proposals)
        feasible = np.isfinite(proposal_scores)
        history.append(pd.DataFrame({"round": index, "sequence": list(proposals), "score": proposal_scores}))
        summaries.append({
            "round": index,
            "proposals": int(len(proposals)),
            "feasible_fraction": float(feasible.mean()),
            "already_labelled_fraction": float(np.mean([row.tobytes() in labelled for row in proposals])),
            "starting_points_feasible_fraction": float(np.mean([np.isfinite(labelled[row.tobytes()])
                                                               for row in starts])),
            "unique_fraction": float(len(np.unique(proposals, axis=0)) / len(proposals)),
            "mean_positions_changed": float((proposals != starts).sum(axis=1).mean()),
            "best_value": float(proposal_scores.max()),
            "best_so_far": float(max(np.max(scores), proposal_scores.max())),
            "oracle_calls": int(oracle.calls),
            "trained_from_scratch": bool(response["trained_from_scratch"]),
            "train_seconds": float(response["train_seconds"]),
            "optimise_seconds": float(response["optimise_seconds"]),
            "wall_seconds": float(response["wall_seconds"]),
        })
        labelled.update((row.tobytes(), score) for row, score in zip(proposals, proposal_scores))
        sequences = np.concatenate([sequences, proposals])
        scores = np.concatenate([scores, proposal_scores])
        rounds = np.concatenate([rounds, np.full(len(proposals), index)])
    return LamboRun(history=pd.concat(history, ignore_index=True) if history else pd.DataFrame(), rounds=summaries)
