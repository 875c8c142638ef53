"""The LLOME outer loop: each round generates, selects, pays the oracle for n labels, pairs and trains.

A run lives in one directory, one sub-directory per round. A round is built in `round_NN.partial/`
and renamed to `round_NN/` only when complete, so a finished round is never redone and an
interrupted one resumes from the last artifact it saved (candidates, labels, training checkpoints).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from llome.generate import GenerationConfig, refine, temperature_schedule
from llome.io import read_json, read_table, write_json, write_table
from llome.metrics import calibration, generation_metrics, labelled_metrics, regret_curve
from llome.launch import check_launcher, run_job, run_launched, write_job
from llome.models import inference_dtype, load_model_and_tokenizer
from llome.pairs import likelihood_filter, make_dpo_triples, make_pairs, sample_for_labelling
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


def margin_reward(score, parent_score):
    """max(f(y) - f(x), 0) with an infeasible score counted as 0 (PAPER.md §5)."""
    y = np.where(np.isfinite(score), score, 0.0)
    x = np.where(np.isfinite(parent_score), parent_score, 0.0)
    return np.maximum(y - x, 0.0)


def _as_array(sequences) -> np.ndarray:
    return np.array([list(s) for s in sequences], dtype=np.int64)


def _subsample(table: pd.DataFrame, max_rows: int | None, seed: int, newest: set | None = None) -> pd.DataFrame:
    """At most `max_rows` rows, seeded; rows that touch the newest labels are kept first.

    Without that priority the seed data's thousands of pairs would drown the few hundred a round adds.
    """
    if max_rows is None or len(table) <= max_rows:
        return table.reset_index(drop=True)
    shuffled = table.sample(frac=1.0, random_state=seed)
    if newest:
        sequence_columns = [c for c in ("x", "y", "y_w", "y_l") if c in shuffled.columns]
        touches = np.zeros(len(shuffled), dtype=bool)
        for column in sequence_columns:
            touches |= shuffled[column].isin(newest).to_numpy()
        shuffled = pd.concat([shuffled[touches], shuffled[~touches]])
    return shuffled.head(max_rows).reset_index(drop=True)


def build_training_set(objective: str, pool: pd.DataFrame, pairs_cfg: dict, seed: int,
                       newest: set | None = None) -> pd.DataFrame:
    """PropEn pairs (SFT, MargE) or DPO triples from every sequence labelled so far."""
    X, scores = _as_array(pool["sequence"]), pool["score"].to_numpy(np.float64)
    common = dict(max_distance=pairs_cfg["max_distance"], num_neighbors=pairs_cfg["num_neighbors"], seed=seed)
    if objective == "dpo":
        table = make_dpo_triples(X, scores, **common)
    else:
        table = make_pairs(X, scores, infeasible_fraction=pairs_cfg["infeasible_fraction"],
                           allow_equal_scores=False, **common)
    return _subsample(table, pairs_cfg.get("max_pairs"), seed, newest)


def train(objective: str, table: pd.DataFrame, train_cfg: dict, job_dir: Path, seed: int, *,
          model_dir: Path | None = None, model_spec: dict | None = None, num_states: int | None = None,
          launcher: dict | None = None) -> Path:
    """Train on `table` and return the directory of the trained model.

    From `model_dir` (the previous round's model, also the MargE/DPO reference) or, in round 0, from a
    fresh model built from `model_spec`. Runs here or as a launched job (`launcher`, e.g. accelerate).
    """
    write_job(job_dir, objective=objective, model_dir=model_dir, table=table, train_cfg={**train_cfg, "seed": seed},
              model_spec=model_spec, num_states=num_states, launcher=launcher)
    if check_launcher(launcher)["kind"] == "inprocess":
        return run_job(job_dir)
    return run_launched(launcher, job_dir)


def model_spec(model_cfg: dict, seed: int) -> dict:
    """params.yaml's `model` section as llome.models takes it: a checkpoint, or GPT-NeoX sizes and a seed."""
    if model_cfg.get("name_or_path"):
        return {"name_or_path": model_cfg["name_or_path"]}
    return {**model_cfg["gpt_neox"], "seed": seed}


def run_round_zero(seed_table: pd.DataFrame, *, model_cfg: dict, pairs_cfg: dict, train_cfg: dict,
                   num_states: int, out_dir: Path, seed: int, launcher: dict | None = None) -> dict:
    """Round 0: SFT of a fresh (or pretrained) model on pairs from the GA seed data."""
    out_dir = Path(out_dir)
    if (out_dir / "metrics.json").exists():
        return read_json(out_dir / "metrics.json")
    work = out_dir.with_name(out_dir.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    pairs_path = work / "pairs.parquet"
    if not pairs_path.exists():
        write_table(pairs_path, build_training_set("sft", seed_table, pairs_cfg, seed))
    pairs = read_table(pairs_path)
    if len(pairs) == 0:
        raise RuntimeError("the seed data gave no pairs to train on: every neighbour has the same score "
                           "(try a larger pairs.max_distance or more GA steps)")
    if not (work / "model" / "config.json").exists():
        trained = train("sft", pairs, train_cfg, work / "job", seed, model_spec=model_spec(model_cfg, seed),
                        num_states=num_states, launcher=launcher)
        trained.rename(work / "model")
        shutil.rmtree(work / "job", ignore_errors=True)
    metrics = {"round": 0, "objective": "sft", "num_pairs": int(len(pairs)),
               "mean_pair_reward": float(pairs["reward"].mean())}
    write_json(work / "metrics.json", metrics)
    shutil.rmtree(out_dir, ignore_errors=True)
    work.rename(out_dir)
    return metrics


def _fingerprint(cfg: dict) -> str:
    """Everything that changes results except `rounds`, so a run extended by more rounds resumes."""
    stable = {k: v for k, v in cfg.items() if k not in ("rounds", "profile")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]


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
    """Valid, new, likely candidates; then a uniform sample of n to label (PAPER.md §4 step 2)."""
    valid = candidates[candidates["status"] == VALID]
    unique = valid.sort_values("loglik", ascending=False, kind="stable").drop_duplicates("sequence")
    known = set(pool["sequence"])
    new = unique[~unique["sequence"].isin(known)]
    likely = likelihood_filter(new, quantile=selection["likelihood_quantile"], column="loglik")
    return sample_for_labelling(likely, selection["num_to_label"], seed).reset_index(drop=True)


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

    if not (work / "candidates.parquet").exists():
        model, tokenizer = load_model_and_tokenizer(prev_model_dir, device=cfg.get("device"),
                                                    dtype=inference_dtype(cfg.get("device"), cfg.get("launcher")))
        seeds = _generation_seeds(prev_pairs, pool, int(cfg["generation"]["num_seeds"]))
        candidates = refine(model, tokenizer, seeds, dim=function.dim, num_states=function.num_states,
                            config=generation, temperatures=temperatures, seed=round_seed, progress=progress)
        write_table(work / "candidates.parquet", candidates)
        del model
    candidates = read_table(work / "candidates.parquet")

    if not (work / "labelled.parquet").exists():
        selected = select_candidates(candidates, pool, cfg["selection"], round_seed)
        oracle = CountedOracle(function, cfg["selection"]["num_to_label"])
        scores = oracle(_as_array(selected["sequence"])) if len(selected) else np.empty(0)
        # Parent scores feed diagnostics only ("improved over input"); unpaid ones are counted apart.
        known = dict(zip(pool["sequence"], pool["score"]))
        unknown = sorted(set(selected["parent"]) - set(known))
        diagnostic = dict(zip(unknown, function(_as_array(unknown)))) if unknown else {}
        parent_scores = np.array([known.get(p, diagnostic.get(p)) for p in selected["parent"]], dtype=np.float64)
        labelled = selected[["sequence", "parent", "trajectory", "iteration", "temperature", "loglik", "distance"]].copy()
        labelled["score"] = scores
        labelled["parent_score"] = parent_scores
        labelled["reward"] = margin_reward(scores, parent_scores)
        labelled["round"] = index
        labelled["oracle_calls_round"] = np.arange(1, len(labelled) + 1)
        write_table(work / "labelled.parquet", labelled)
        write_json(work / "oracle.json", {"oracle_calls": oracle.calls, "diagnostic_calls": len(unknown)})
    labelled = read_table(work / "labelled.parquet")
    oracle_log = read_json(work / "oracle.json")

    pool_after = pd.concat([pool, labelled[["sequence", "score"]]], ignore_index=True)
    if not (work / "pairs.parquet").exists():
        write_table(work / "pairs.parquet", build_training_set(cfg["objective"], pool_after, cfg["pairs"], round_seed,
                                                                newest=set(labelled["sequence"])))
    pairs = read_table(work / "pairs.parquet")

    if not (work / "model" / "config.json").exists():
        if len(pairs) == 0:
            log.warning("round %d: no pairs to train on; the model is carried over unchanged", index)
            shutil.copytree(prev_model_dir, work / "model")
        else:
            trained = train(cfg["objective"], pairs, cfg["train"], work / "job", round_seed,
                            model_dir=prev_model_dir, launcher=cfg.get("launcher"))
            trained.rename(work / "model")
        shutil.rmtree(work / "job", ignore_errors=True)

    metrics = {
        "round": index,
        "model_round": index - 1,  # the candidates were generated by the previous round's model
        "objective": cfg["objective"],
        "temperatures": list(temperatures),
        "oracle_calls": oracle_log["oracle_calls"],
        "diagnostic_oracle_calls": oracle_log["diagnostic_calls"],
        "num_candidates": int(len(candidates)),
        "num_pairs": int(len(pairs)),
        "generation": generation_metrics(candidates),
        "labelled": labelled_metrics(labelled),
        "calibration": calibration(labelled, reward_column="reward", loglik_column="loglik"),
    }
    write_json(work / "metrics.json", metrics)
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    return metrics


def run_llome(cfg: dict, *, function, seed_table: pd.DataFrame, round_zero_dir: Path, run_dir: Path, seed: int,
              progress: bool = True) -> list[dict]:
    """All rounds of one method and seed, resuming whatever is already done."""
    run_dir = Path(run_dir)
    fingerprint = _fingerprint(cfg)
    marker = run_dir / "run.json"
    if marker.exists() and read_json(marker).get("fingerprint") != fingerprint:
        log.warning("%s was made with other settings; starting it over", run_dir)
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": fingerprint, "seed": seed, "method": cfg.get("method")})

    pool = seed_table[["sequence", "score"]].copy()
    prev_model_dir, prev_pairs, prev_distance = Path(round_zero_dir) / "model", read_table(Path(round_zero_dir) / "pairs.parquet"), None
    history = []
    for index in range(1, cfg["rounds"] + 1):
        metrics = run_round(index, run_dir=run_dir, cfg=cfg, function=function, pool=pool,
                            prev_model_dir=prev_model_dir, prev_pairs=prev_pairs,
                            prev_mean_distance=prev_distance, seed=seed, progress=progress)
        history.append(metrics)
        done = round_dir(run_dir, index)
        labelled = read_table(done / "labelled.parquet")
        pool = pd.concat([pool, labelled[["sequence", "score"]]], ignore_index=True)
        prev_model_dir, prev_pairs = done / "model", read_table(done / "pairs.parquet")
        prev_distance = metrics["generation"].get("mean_distance")
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
