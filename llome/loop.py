"""The LLOME outer loop: each round generates, selects, pays the oracle for n labels, pairs and trains.

With diagnostics on, a round also scores, unpaid, the unlabelled inputs of its labels and a calibration sample of
its candidates drawn before the likelihood filter (`llome.diagnostics_calibration_sample`); both are counted in
`diagnostic_oracle_calls` and neither is read by selection, pairs or training.

A run lives in one directory, one sub-directory per round. A round is built in `round_NN.partial/`
and renamed to `round_NN/` only when complete, so a finished round is never redone and an
interrupted one resumes from the last artifact it saved (candidates, labels, training checkpoints).
A run's inputs (the seed table, round 0's model and pairs) are checked before its directory is
touched; a run made from other inputs or settings is moved aside, never deleted (llome.provenance).
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
from llome.metrics import calibration, generation_metrics, labelled_metrics
from llome.jobs import as_int_array, build_training_set, train
from llome.models import inference_dtype, load_model_and_tokenizer
from llome.objective import CountedOracle, DiagnosticOracle, OracleBudgetExceeded  # noqa: F401  (re-exported)
from llome.pairs import margin_reward
from llome.rounds import TIMING_FILE, round_dir, round_seed
from llome.provenance import (CorruptResultError, check_model, check_readable, claim, file_digest, make_record,
                              model_digest, move_aside, result_config, table_digest)
from llome.selection import likelihood_filter, sample_for_labelling
from llome.text import VALID

log = logging.getLogger(__name__)


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


def filter_input(candidates: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """What the likelihood filter ranks: one row per valid sequence not labelled before, the likeliest of its copies.

    Sorted by likelihood, best first; the candidates' index is kept, so a row can be found again in later subsets.
    """
    valid = candidates[candidates["status"] == VALID]
    unique = valid.sort_values("loglik", ascending=False, kind="stable").drop_duplicates("sequence")
    return unique[~unique["sequence"].isin(set(pool["sequence"]))]


def eligible_for_labelling(new: pd.DataFrame, selection: dict) -> pd.DataFrame:
    """The rows of `filter_input` the likelihood filter keeps, and the labels are drawn from.

    Only when more than n new candidates remain does the filter apply, and it never cuts below the n most likely.
    """
    n = int(selection["num_to_label"])
    eligible = new
    if len(new) > n:
        eligible = likelihood_filter(new, quantile=selection["likelihood_quantile"], column="loglik")
        if len(eligible) < n:
            eligible = new.head(n)
    return eligible


def select_candidates(candidates: pd.DataFrame, pool: pd.DataFrame, selection: dict, seed: int) -> pd.DataFrame:
    """A uniform sample of n valid, new candidates to label (docs/method.md §4 step 2).

    The sample is drawn from what the likelihood filter keeps (`eligible_for_labelling`), so a round spends its whole
    n whenever it has n candidates. Sequences labelled before are dropped rather than paid for again (the authors
    relabel them; that wastes calls).
    """
    eligible = eligible_for_labelling(filter_input(candidates, pool), selection)
    return sample_for_labelling(eligible, int(selection["num_to_label"]), seed).reset_index(drop=True)


# --- the calibration sample: a diagnostic of claim 2, never seen by the optimiser ---------------------------------

CALIBRATION_SAMPLE_FILE = "calibration_sample.parquet"
# The sample's random stream is SeedSequence([seed, round, CALIBRATION_STREAM]): apart from the round's own seed,
# SeedSequence([seed, round]), which draws the labels. With the same seed the two samples would take the same
# positions of their tables, and the calibration sample would lean towards the labelled candidates.
CALIBRATION_STREAM = 1
CALIBRATION_SAMPLE_COLUMNS = ["sequence", "parent", "trajectory", "iteration", "temperature", "loglik", "distance",
                       "passed_filter", "labelled", "score", "parent_score", "reward", "round"]


def calibration_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index, CALIBRATION_STREAM]).generate_state(1)[0])


def draw_calibration_sample(candidates: pd.DataFrame, pool: pd.DataFrame, selection: dict, size: int,
                            seed: int) -> pd.DataFrame:
    """A uniform sample of `size` of the rows the likelihood filter ranks, drawn before it cuts any.

    The labelled candidates come from the top of the likelihood order only (when a round has more than n), so
    likelihood against reward measured on them misses the low end; this sample spans the whole range.
    `passed_filter` says whether the filter kept the row, i.e. whether it could have been labelled.
    """
    new = filter_input(candidates, pool)
    kept = eligible_for_labelling(new, selection)
    sample = sample_for_labelling(new, size, seed)
    return sample.assign(passed_filter=sample.index.isin(kept.index)).reset_index(drop=True)


def _scores_known_for_free(pool: pd.DataFrame, labelled: pd.DataFrame) -> dict:
    """Scores already bought by the time of the calibration sample: the pool's, this round's labels, their parents'."""
    known = dict(zip(pool["sequence"], pool["score"]))
    parents = labelled[~labelled["parent_score"].isna()]
    known.update(zip(parents["parent"], parents["parent_score"]))
    known.update(zip(labelled["sequence"], labelled["score"]))
    return known


def _calibration_unknowns(sample: pd.DataFrame, known: dict) -> list:
    return sorted((set(sample["sequence"]) | set(sample["parent"])) - set(known))


def score_calibration_sample(sample: pd.DataFrame, pool: pd.DataFrame, labelled: pd.DataFrame, function,
                             index: int) -> pd.DataFrame:
    """The sample with its scores, its parents' scores and the margin reward, as the labels have them.

    Scores known for free are reused; every other sequence and parent is scored once through a DiagnosticOracle,
    never the round's CountedOracle. The result is written beside the labels and read by nothing that builds pairs,
    trains or selects.
    """
    known = _scores_known_for_free(pool, labelled)
    unknown = _calibration_unknowns(sample, known)
    if unknown:
        known.update(zip(unknown, DiagnosticOracle(function)(as_int_array(unknown))))
    table = sample.assign(labelled=sample["sequence"].isin(set(labelled["sequence"])))
    table["score"] = np.array([known[s] for s in sample["sequence"]], dtype=np.float64)
    table["parent_score"] = np.array([known[p] for p in sample["parent"]], dtype=np.float64)
    table["reward"] = margin_reward(table["score"].to_numpy(), table["parent_score"].to_numpy())
    table["round"] = index
    return table[CALIBRATION_SAMPLE_COLUMNS]


def calibration_sample_calls(table: pd.DataFrame, pool: pd.DataFrame, labelled: pd.DataFrame) -> int:
    """The unpaid calls `score_calibration_sample` made for `table`, read back from it (also after a resume)."""
    return len(_calibration_unknowns(table, _scores_known_for_free(pool, labelled)))


def calibration_sample_metrics(table: pd.DataFrame | None, calls: int) -> dict:
    """Size, unpaid calls, rows the filter cut, and Spearman's rho of likelihood against reward over the sample."""
    if table is None:
        return {"size": 0, "diagnostic_calls": 0, "cut_by_filter": 0,
                **calibration(pd.DataFrame({"reward": [], "loglik": []}))}
    return {"size": int(len(table)), "diagnostic_calls": int(calls),
            "cut_by_filter": int((~table["passed_filter"]).sum()),
            **calibration(table, reward_column="reward", loglik_column="loglik")}


def training_pool(pool: pd.DataFrame, labelled: pd.DataFrame, source: str) -> pd.DataFrame:
    """What a round's pairs are built from: its own labels (the authors' choice) or every label so far."""
    if source == "round":
        return labelled[["sequence", "score"]].reset_index(drop=True)
    if source == "history":
        return pd.concat([pool, labelled[["sequence", "score"]]], ignore_index=True)
    raise ValueError(f"pairs.source must be 'round' or 'history', got {source!r}")


def _parent_scores(selected: pd.DataFrame, scores: np.ndarray, pool: pd.DataFrame, function,
                   enabled: bool) -> tuple[np.ndarray, int]:
    """Each selected candidate's parent score, for "improved over input" and the calibration reward only.

    Parents labelled before or in this round are known for free. The rest are scored through a
    DiagnosticOracle when diagnostics are on, and are NaN (left out of `improved`) when off. These values
    go into the `parent_score` and `reward` columns alone: pairs are built from `score`, never from them.
    Returns the scores and the number of unpaid calls made.
    """
    known = dict(zip(pool["sequence"], pool["score"]))
    known.update(zip(selected["sequence"], scores))
    diagnostics = DiagnosticOracle(function, enabled=enabled)
    unknown = sorted(set(selected["parent"]) - set(known))
    if unknown and diagnostics.enabled:
        known.update(zip(unknown, diagnostics(as_int_array(unknown))))
    parent_scores = np.array([known.get(p, np.nan) for p in selected["parent"]], dtype=np.float64)
    return parent_scores, diagnostics.calls


def _oracle_log_from_labels(labelled: pd.DataFrame, pool: pd.DataFrame, diagnostics: bool) -> dict:
    """The counts `_parent_scores` made, from the saved labels: one paid call per label, one unpaid per new parent."""
    unknown = set(labelled["parent"]) - set(pool["sequence"]) - set(labelled["sequence"])
    return {"oracle_calls": int(len(labelled)), "diagnostic_calls": len(unknown) if diagnostics else 0}


def run_round(index: int, *, run_dir: Path, cfg: dict, function, pool: pd.DataFrame, prev_model_dir: Path,
              prev_pairs: pd.DataFrame, prev_mean_distance: float | None, seed: int, progress: bool = True) -> dict:
    """One LLOME round; returns its metrics. Spends at most `selection.num_to_label` oracle calls."""
    final = round_dir(run_dir, index)
    if (final / "metrics.json").exists():
        return read_json(final / "metrics.json")
    work = final.with_name(final.name + ".partial")
    work.mkdir(parents=True, exist_ok=True)
    stream = round_seed(seed, index)  # generation, selection, pairs and training of this round draw from it
    generation = GenerationConfig.from_dict(cfg["generation"])
    temperatures = generation.temperatures
    if cfg["generation"].get("temperature_schedule", True):
        temperatures = temperature_schedule(prev_mean_distance, generation.temperatures)

    # Wall times live in their own file, which .dvcignore keeps out of the run's md5: a rerun on another
    # machine then compares data only. A step done before an interruption keeps the time it took then.
    seconds = read_json(work / TIMING_FILE) if (work / TIMING_FILE).exists() else {}

    def timed(step: str, started: float) -> None:
        seconds[step] = round(time.perf_counter() - started, 3)
        write_json(work / TIMING_FILE, seconds)

    if not (work / "candidates.parquet").exists():
        started = time.perf_counter()
        model, tokenizer = load_model_and_tokenizer(prev_model_dir, device=cfg.get("device"),
                                                    dtype=inference_dtype(cfg.get("device"), cfg.get("launcher")))
        seeds = _generation_seeds(prev_pairs, pool, int(cfg["generation"]["num_seeds"]))
        candidates = refine(model, tokenizer, seeds, dim=function.dim, num_states=function.num_states,
                            config=generation, temperatures=temperatures, seed=stream, progress=progress)
        write_table(work / "candidates.parquet", candidates)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the training job may need the GPU memory generation held
        timed("generation", started)
    candidates = read_table(work / "candidates.parquet")

    if not (work / "labelled.parquet").exists():
        started = time.perf_counter()
        selected = select_candidates(candidates, pool, cfg["selection"], stream)
        timed("selection", started)
        started = time.perf_counter()
        oracle = CountedOracle(function, cfg["selection"]["num_to_label"])
        scores = oracle(as_int_array(selected["sequence"])) if len(selected) else np.empty(0)
        parent_scores, diagnostic_calls = _parent_scores(selected, scores, pool, function,
                                                         enabled=cfg.get("diagnostics", True))
        labelled = selected[["sequence", "parent", "trajectory", "iteration", "temperature", "loglik", "distance"]].copy()
        labelled["score"] = scores
        labelled["parent_score"] = parent_scores
        labelled["reward"] = margin_reward(scores, parent_scores)
        labelled["round"] = index
        labelled["oracle_calls_round"] = np.arange(1, len(labelled) + 1)
        write_table(work / "labelled.parquet", labelled)
        write_json(work / "oracle.json", {"oracle_calls": oracle.calls, "diagnostic_calls": diagnostic_calls})
        timed("labelling", started)
    labelled = read_table(work / "labelled.parquet")
    if not (work / "oracle.json").exists():  # killed between the two writes: the saved labels say what was paid
        write_json(work / "oracle.json", _oracle_log_from_labels(labelled, pool, cfg.get("diagnostics", True)))
    oracle_log = read_json(work / "oracle.json")

    # The calibration sample comes after the labels are saved and only reads them: nothing below reads it back.
    sample_size = int(cfg.get("diagnostics_calibration_sample", 0)) if cfg.get("diagnostics", True) else 0
    sample, sample_calls = None, 0
    if sample_size:
        if not (work / CALIBRATION_SAMPLE_FILE).exists():
            started = time.perf_counter()
            drawn = draw_calibration_sample(candidates, pool, cfg["selection"], sample_size,
                                            calibration_seed(seed, index))
            write_table(work / CALIBRATION_SAMPLE_FILE,
                        score_calibration_sample(drawn, pool, labelled, function, index))
            timed("calibration_sample", started)
        sample = read_table(work / CALIBRATION_SAMPLE_FILE)
        sample_calls = calibration_sample_calls(sample, pool, labelled)

    if not (work / "pairs.parquet").exists():
        started = time.perf_counter()
        source = training_pool(pool, labelled, cfg["pairs"].get("source", "round"))
        write_table(work / "pairs.parquet", build_training_set(cfg["objective"], source, cfg["pairs"], stream,
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
                            stream, model_dir=prev_model_dir, launcher=cfg.get("launcher"),
                            num_states=function.num_states,  # for checkpoint selection's gates
                            lora=cfg.get("lora"))  # params.yaml's model.lora: null trains every weight
            trained.rename(work / "model")
        shutil.rmtree(work / "job", ignore_errors=True)
        timed("training", started)

    metrics = {
        "round": index,
        "model_round": index - 1,  # the candidates were generated by the previous round's model
        "objective": cfg["objective"],
        "temperatures": list(temperatures),
        "oracle_calls": oracle_log["oracle_calls"],
        # Unpaid, for metrics only: the labels' parent scores and the calibration sample
        "diagnostic_oracle_calls": oracle_log["diagnostic_calls"] + sample_calls,
        "diagnostics": bool(cfg.get("diagnostics", True)),
        "num_candidates": int(len(candidates)),
        # n minus the labels paid for: > 0 only when the round had fewer than n new valid candidates
        "labels_short": int(cfg["selection"]["num_to_label"] - oracle_log["oracle_calls"]),
        "num_pairs": int(len(pairs)),
        "generation": generation_metrics(candidates),
        "labelled": labelled_metrics(labelled),
        "calibration": calibration(labelled, reward_column="reward", loglik_column="loglik"),  # after the filter
        "calibration_sample": calibration_sample_metrics(sample, sample_calls),  # before it
    }
    write_json(work / "metrics.json", metrics)
    if final.exists():  # a round directory someone emptied of its metrics; its labels may still be there
        move_aside(final)
    work.rename(final)
    return metrics


SEED_TABLE_COLUMNS = ("sequence", "score")


def round_zero_inputs(round_zero_dir: Path) -> dict[str, str]:
    """Digests of what the rounds take from round 0, once every one of those files has been read back.

    The rounds read round 0's model (weights, config, tokenizer) and its pairs, so those are the run's
    inputs. The records beside them (training log, metrics, provenance) are not: editing one rebuilds
    nothing. A missing or unreadable input raises, naming the file.
    """
    round_zero_dir = Path(round_zero_dir)
    model_dir, pairs = round_zero_dir / "model", round_zero_dir / "pairs.parquet"
    try:
        check_model(model_dir)
        check_readable(pairs)
    except (FileNotFoundError, CorruptResultError) as error:
        raise type(error)(f"round 0 ({round_zero_dir}) is damaged or incomplete: {error}. Restore it (e.g. "
                          "`dvc checkout`) so that the finished rounds built on it stay valid") from error
    return {"round_zero_model": model_digest(model_dir), "round_zero_pairs": file_digest(pairs)}


def run_llome(cfg: dict, *, function, seed_table: pd.DataFrame, round_zero_dir: Path, run_dir: Path, seed: int,
              progress: bool = True) -> list[dict]:
    """All rounds of one method and seed, resuming whatever is already done.

    Nothing under `run_dir` is touched until the inputs have been checked. A run of other settings or
    inputs there is moved aside (not deleted) and started over; a folder that is not a llome run raises.
    """
    run_dir = Path(run_dir)
    missing = [column for column in SEED_TABLE_COLUMNS if column not in seed_table.columns]
    if missing:
        raise ValueError(f"the seed table has no column {missing[0]!r} (it has {list(seed_table.columns)})")
    inputs = {"seed_data": table_digest(seed_table), **round_zero_inputs(round_zero_dir)}
    record = make_record(result_config(cfg), code=[__name__], seed=seed, inputs=inputs)
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
