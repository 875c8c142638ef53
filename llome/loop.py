"""The LLOME outer loop: each round generates, selects, pays the oracle for n labels, pairs and trains.

A run lives in one directory, one sub-directory per round. A round is built in `round_NN.partial/`
and renamed to `round_NN/` only when complete, so a finished round is never redone and an
interrupted one resumes from the last artifact it saved (candidates, labels, training checkpoints).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from llome.generate import GenerationConfig, refine, temperature_schedule
from llome.io import read_json, read_table, write_json, write_table
from llome.metrics import calibration, generation_metrics, labelled_metrics, regret_curve
from llome.jobs import as_int_array, build_training_set, train
from llome.models import inference_dtype, load_model_and_tokenizer
from llome.pairs import margin_reward
from llome.provenance import claim, make_record, result_config, table_digest, tree_digest
from llome.selection import likelihood_filter, sample_for_labelling
from llome.text import VALID

log = logging.getLogger(__name__)


class OracleBudgetExceeded(RuntimeError):
    pass


class CountedOracle:
    """The only door to the objective: it counts every sequence scored and refuses to pass its budget."""

    def __init__(self, function, budget: int):
        if budget < 0:
            raise ValueError(f"oracle budget must be >= 0, got {budget}")
        self.function = function
        self.budget = int(budget)
        self.calls = 0

    @property
    def remaining(self) -> int:
        return self.budget - self.calls

    def __call__(self, sequences) -> np.ndarray:
        sequences = np.asarray(sequences)
        if len(sequences) > self.remaining:
            raise OracleBudgetExceeded(
                f"asked to score {len(sequences)} sequences with {self.remaining} of {self.budget} calls left")
        self.calls += len(sequences)
        return np.asarray(self.function(sequences), dtype=np.float64)


def round_dir(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"round_{index:02d}"


def _generation_seeds(pairs: pd.DataFrame, pool: pd.DataFrame, num_seeds: int) -> list[tuple]:
    """The targets of the best-scoring training pairs; the best labelled sequences when pairs run short."""
    target_column = "y_w" if "y_w" in pairs.columns else "y"
    score_column = "y_w_score" if "y_w_score" in pairs.columns else "y_score"
    ranked = pairs.sort_values(score_column, ascending=False, kind="stable")
    seeds = list(dict.fromkeys(ranked[target_column]))[:num_seeds]
    if len(seeds) < num_seeds:
        extra = pool[np.isfinite(pool["score"])].sort_values("score", ascending=False, kind="stable")["sequence"]
        seeds = list(dict.fromkeys(seeds + list(extra)))[:num_seeds]
    return seeds


def select_candidates(candidates: pd.DataFrame, pool: pd.DataFrame, selection: dict, seed: int) -> pd.DataFrame:
    """A uniform sample of n valid, new candidates to label (PAPER.md §4 step 2).

    Only when more than n new candidates remain does the likelihood filter apply, and it never cuts below
    the n most likely: a round spends its whole n whenever it has n candidates. Sequences labelled before
    are dropped rather than paid for again (the authors relabel them; that wastes calls).
    """
    n = int(selection["num_to_label"])
    valid = candidates[candidates["status"] == VALID]
    unique = valid.sort_values("loglik", ascending=False, kind="stable").drop_duplicates("sequence")
    new = unique[~unique["sequence"].isin(set(pool["sequence"]))]
    eligible = new
    if len(new) > n:
        eligible = likelihood_filter(new, quantile=selection["likelihood_quantile"], column="loglik")
        if len(eligible) < n:
            eligible = new.head(n)
    return sample_for_labelling(eligible, n, seed).reset_index(drop=True)


def training_pool(pool: pd.DataFrame, labelled: pd.DataFrame, source: str) -> pd.DataFrame:
    """What a round's pairs are built from: its own labels (the authors' choice) or every label so far."""
    if source == "round":
        return labelled[["sequence", "score"]].reset_index(drop=True)
    if source == "history":
        return pd.concat([pool, labelled[["sequence", "score"]]], ignore_index=True)
    raise ValueError(f"pairs.source must be 'round' or 'history', got {source!r}")


def run_round(index: int, *, run_dir: Path, cfg: dict, function, pool: pd.DataFrame, prev_model_dir: Path,
              prev_pairs: pd.DataFrame, prev_mean_distance: float | None, seed: int, progress: bool = True) -> dict:
    """One LLOME round; returns its metrics. Spends at most `selection.num_to_label` oracle calls."""
    final = round_dir(run_dir, index)
    if (final / "metrics.json").exists():
        return read_json(final / "metrics.json")
    work = final.with_name(final.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    round_seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
    generation = GenerationConfig.from_dict(cfg["generation"])
    temperatures = generation.temperatures
    if cfg["generation"].get("temperature_schedule", True):
        temperatures = temperature_schedule(prev_mean_distance, generation.temperatures)

    seconds = read_json(work / "seconds.json") if (work / "seconds.json").exists() else {}

    def timed(step: str, started: float) -> None:
        seconds[step] = round(time.perf_counter() - started, 3)
        write_json(work / "seconds.json", seconds)

    if not (work / "candidates.parquet").exists():
        started = time.perf_counter()
        model, tokenizer = load_model_and_tokenizer(prev_model_dir, device=cfg.get("device"),
                                                    dtype=inference_dtype(cfg.get("device"), cfg.get("launcher")))
        seeds = _generation_seeds(prev_pairs, pool, int(cfg["generation"]["num_seeds"]))
        candidates = refine(model, tokenizer, seeds, dim=function.dim, num_states=function.num_states,
                            config=generation, temperatures=temperatures, seed=round_seed, progress=progress)
        write_table(work / "candidates.parquet", candidates)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the training job may need the GPU memory generation held
        timed("generation", started)
    candidates = read_table(work / "candidates.parquet")

    if not (work / "labelled.parquet").exists():
        started = time.perf_counter()
        selected = select_candidates(candidates, pool, cfg["selection"], round_seed)
        timed("selection", started)
        started = time.perf_counter()
        oracle = CountedOracle(function, cfg["selection"]["num_to_label"])
        scores = oracle(as_int_array(selected["sequence"])) if len(selected) else np.empty(0)
        # Parent scores feed diagnostics only ("improved over input"); unpaid ones are counted apart.
        known = dict(zip(pool["sequence"], pool["score"]))
        unknown = sorted(set(selected["parent"]) - set(known))
        diagnostic = dict(zip(unknown, function(as_int_array(unknown)))) if unknown else {}
        parent_scores = np.array([known.get(p, diagnostic.get(p)) for p in selected["parent"]], dtype=np.float64)
        labelled = selected[["sequence", "parent", "trajectory", "iteration", "temperature", "loglik", "distance"]].copy()
        labelled["score"] = scores
        labelled["parent_score"] = parent_scores
        labelled["reward"] = margin_reward(scores, parent_scores)
        labelled["round"] = index
        labelled["oracle_calls_round"] = np.arange(1, len(labelled) + 1)
        write_table(work / "labelled.parquet", labelled)
        write_json(work / "oracle.json", {"oracle_calls": oracle.calls, "diagnostic_calls": len(unknown)})
        timed("labelling", started)
    labelled = read_table(work / "labelled.parquet")
    oracle_log = read_json(work / "oracle.json")

    if not (work / "pairs.parquet").exists():
        started = time.perf_counter()
        source = training_pool(pool, labelled, cfg["pairs"].get("source", "round"))
        write_table(work / "pairs.parquet", build_training_set(cfg["objective"], source, cfg["pairs"], round_seed,
                                                                newest=set(labelled["sequence"])))
        timed("pairs", started)
    pairs = read_table(work / "pairs.parquet")

    if not (work / "model" / "config.json").exists():
        started = time.perf_counter()
        if len(pairs) == 0:
            log.warning("round %d: no pairs to train on; the model is carried over unchanged", index)
            shutil.copytree(prev_model_dir, work / "model")
        else:
            trained = train(cfg["objective"], pairs, {**cfg["train"], "disable_tqdm": not progress}, work / "job",
                            round_seed, model_dir=prev_model_dir, launcher=cfg.get("launcher"),
                            num_states=function.num_states)  # for checkpoint selection's gates
            trained.rename(work / "model")
        shutil.rmtree(work / "job", ignore_errors=True)
        timed("training", started)

    metrics = {
        "round": index,
        "model_round": index - 1,  # the candidates were generated by the previous round's model
        "objective": cfg["objective"],
        "temperatures": list(temperatures),
        "oracle_calls": oracle_log["oracle_calls"],
        "diagnostic_oracle_calls": oracle_log["diagnostic_calls"],
        "num_candidates": int(len(candidates)),
        # n minus the labels paid for: > 0 only when the round had fewer than n new valid candidates
        "labels_short": int(cfg["selection"]["num_to_label"] - oracle_log["oracle_calls"]),
        "num_pairs": int(len(pairs)),
        "generation": generation_metrics(candidates),
        "labelled": labelled_metrics(labelled),
        "calibration": calibration(labelled, reward_column="reward", loglik_column="loglik"),
        # wall time of each step (a step done before an interruption keeps the time it took then)
        "seconds": seconds,
    }
    write_json(work / "metrics.json", metrics)
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    return metrics


def run_llome(cfg: dict, *, function, seed_table: pd.DataFrame, round_zero_dir: Path, run_dir: Path, seed: int,
              progress: bool = True) -> list[dict]:
    """All rounds of one method and seed, resuming whatever is already done."""
    run_dir = Path(run_dir)
    record = make_record(result_config(cfg), code=[__name__], seed=seed,
                         inputs={"seed_data": table_digest(seed_table), "round_zero": tree_digest(round_zero_dir)})
    claim(run_dir, record)

    pool = seed_table[["sequence", "score"]].copy()
    prev_model_dir, prev_pairs, prev_distance = Path(round_zero_dir) / "model", read_table(Path(round_zero_dir) / "pairs.parquet"), None
    history = []
    best = float(np.max(seed_table["score"].to_numpy(), initial=-np.inf))
    for index in range(1, cfg["rounds"] + 1):
        started = time.perf_counter()
        metrics = run_round(index, run_dir=run_dir, cfg=cfg, function=function, pool=pool,
                            prev_model_dir=prev_model_dir, prev_pairs=prev_pairs,
                            prev_mean_distance=prev_distance, seed=seed, progress=progress)
        history.append(metrics)
        done = round_dir(run_dir, index)
        labelled = read_table(done / "labelled.parquet")
        pool = pd.concat([pool, labelled[["sequence", "score"]]], ignore_index=True)
        prev_model_dir, prev_pairs = done / "model", read_table(done / "pairs.parquet")
        prev_distance = metrics["generation"].get("mean_distance")
        best = max(best, float(np.max(labelled["score"].to_numpy(), initial=-np.inf)))
        log.info("%s seed %d round %d/%d: %d candidates, %d labelled, best f so far %.4f (%.0f s)",
                 cfg.get("method", ""), seed, index, cfg["rounds"], metrics["num_candidates"], metrics["oracle_calls"],
                 best, time.perf_counter() - started)
    return history


def run_trace(seed_table: pd.DataFrame, seed_oracle_calls: int, run_dir: Path, rounds: int) -> pd.DataFrame:
    """Best-so-far over every paid evaluation of a run: the GA seed data, then each round's labels.

    The seed table holds first sightings only, which is all a best-so-far curve needs; the offset of
    round 1 is the GA's full spend, repeats included.
    """
    seed_part = seed_table[["oracle_calls", "score"]].assign(round=0)
    if len(seed_table) == 0 or seed_part["oracle_calls"].max() < seed_oracle_calls:
        # The GA's last paid calls may all be repeats: record that they were spent, improving nothing.
        spent = pd.DataFrame({"oracle_calls": [int(seed_oracle_calls)], "score": [-np.inf], "round": [0]})
        seed_part = pd.concat([seed_part, spent], ignore_index=True)
    parts, offset = [seed_part], int(seed_oracle_calls)
    for index in range(1, rounds + 1):
        labelled = read_table(round_dir(run_dir, index) / "labelled.parquet")
        parts.append(pd.DataFrame({"oracle_calls": offset + labelled["oracle_calls_round"].to_numpy(),
                                   "score": labelled["score"].to_numpy(), "round": index}))
        offset += int(read_json(round_dir(run_dir, index) / "metrics.json")["oracle_calls"])
    trace = pd.concat(parts, ignore_index=True)
    curve = regret_curve(trace["oracle_calls"].to_numpy(), trace["score"].to_numpy())
    return curve.assign(round=trace["round"].to_numpy())
