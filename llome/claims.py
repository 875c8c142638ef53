"""Verdicts on the paper's claims (docs/method.md §8) from the per-seed tables of the claims study.

    python -m llome.claims --tables study/tables --json metrics/claims.json --doc docs/claims.md --readme README.md

writes ``metrics/claims.json`` (one entry per claim), ``docs/claims.md`` (the decision rules, then each
claim's numbers and verdict) and the claims table between the ``<!-- claims:start -->`` and
``<!-- claims:end -->`` markers of the README. ``--check`` writes nothing: it regenerates the three in
memory and exits 1 naming the first file on disk that differs; a refused table exits 2 with its error.
``--placeholder`` writes only the doc, with the decision rules, for before the study has run. The
output depends on the tables alone
(sorted keys, floats rounded to ``JSON_DECIMALS`` places, a seeded bootstrap, no dates or host names),
so the same tables give the same bytes.

Table interface
---------------
The folder holds the files below. A missing file (``calibration.csv`` excepted) or column, a value of
the wrong type, an unknown method or instance, a seed that is not a reported seed, or a reported seed
that is also a tuning seed is refused with an error naming the file, and the column or value.

``instances.csv``, one row per Ehrlich instance:
    instance (text), optimum (float, f*), difficulty_rank (int, unique, 1 = easiest), oracle_budget (int,
    the paid calls of one run, seed data included), seed_data_calls (int), role (``main``: the paper's
    main instance, claims 1-3; ``solvable``: the instance of claim 4; ``extra``: any other). At most one
    instance has each of the roles ``main`` and ``solvable``.
``trace.csv``, one row per (run, checkpoint), a run being (instance, method, seed):
    instance, method, seed (int), oracle_calls (int, at most the budget), best_value (float: the best f
    found in the first ``oracle_calls`` paid calls; non-decreasing within a run; ``-inf`` while nothing
    feasible has been found). Regret is ``optimum - best_value``.
``rounds.csv``, one row per (instance, method, seed, round), for the methods that work in rounds:
    round, paid_calls, diagnostic_calls (ints), valid_fraction, feasible_fraction, edit_distance (mean
    Hamming distance from a generation's input to its output), unique_fraction, mean_pairwise_distance,
    best_score, mean_score (floats; empty where a round had nothing to measure).
``calibration.csv`` (may be absent), one row per (instance, method, seed, round, bin):
    bin (int, likelihood decile 0-9 within the round), n (int), mean_loglik, mean_reward, reward_ci_low,
    reward_ci_high, over a diagnostic sample of the round's candidates drawn before the likelihood filter
    (so including those it cut), which the optimiser never paid for nor saw.
``seeds.json``:
    ``{"reported": [seeds...], "tuning": {"<what they tuned>": [seeds...], ...}}``.

Methods: ``ga_paper``, ``ga_swept`` (genetic algorithms), ``llome_sft``, ``llome_marge``, ``llome_dpo``,
``llome_marge_6x128`` (MargE on a larger model), ``lambo2`` (the specialist), ``prompted`` (the generalist).
Any of them may be absent: a claim with no data at all is ``not testable at this scale``, and one that
lacks some of the comparisons it needs (one of the two GAs, say) is at most ``inconclusive``.

The decision rules are the constants below; ``decision_rules_markdown`` states them in words for the doc.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from llome.io import atomic_path
from llome.stats import (
    calls_to_reach,
    censored_paired_comparison,
    kaplan_meier_median,
    linear_trend,
    paired_bootstrap_ci,
    regret_auc,
    sign_test,
    wilcoxon_signed_rank,
)

# Decision rules. Every interval is a paired percentile bootstrap over seeds.
CONFIDENCE = 0.95
N_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
# A cell (one comparison on one instance) with fewer paired seeds is at most inconclusive.
MIN_PAIRED_SEEDS = 10
# Claim 5: two methods are "on a par" when the interval of their regret-AUC difference lies inside
# +-PAR_MARGIN times the optimum.
PAR_MARGIN = 0.05
# Claim 2: a likelihood that orders mean rewards across its deciles at least this well (Spearman) is
# calibrated, not "moderately miscalibrated".
WELL_CALIBRATED_RHO = 0.8
# Claim 2: fewest deciles with candidates for a round's rank correlation to mean anything.
MIN_CALIBRATION_BINS = 3
# Claim 3: fewest distinct rounds for a trend.
MIN_TREND_ROUNDS = 3
# Levels of f are merged at this many decimals (f is a product of float32 factors).
LEVEL_DECIMALS = 6
JSON_DECIMALS = 6

SUPPORTED = "supported"
CONTRADICTED = "contradicted"
INCONCLUSIVE = "inconclusive"
NOT_TESTABLE = "not testable at this scale"

GAS = ("ga_paper", "ga_swept")
MARGE = "llome_marge"
MARGE_LARGE = "llome_marge_6x128"
LLOME_VARIANTS = ("llome_sft", MARGE, "llome_dpo", MARGE_LARGE)
SPECIALIST = "lambo2"
GENERALIST = "prompted"
METHODS = GAS + LLOME_VARIANTS + (SPECIALIST, GENERALIST)
ROLES = ("main", "solvable", "extra")

DEFAULT_TABLES = "study/tables"
DEFAULT_JSON = "metrics/claims.json"
DEFAULT_DOC = "docs/claims.md"
DEFAULT_README = "README.md"
DEFAULT_FIGURES = "docs/figures/claims"
# Each claim's figure in DEFAULT_FIGURES, drawn by llome.claims_figures from the same tables.
CLAIM_FIGURES = {1: "efficiency.png", 2: "calibration.png", 3: "collapse.png", 4: "solving.png", 5: "outcomes.png",
                 6: "outcomes.png"}
COMMAND = (f"python -m llome.claims --tables {DEFAULT_TABLES} --json {DEFAULT_JSON} --doc {DEFAULT_DOC} "
           f"--readme {DEFAULT_README}")
README_START = "<!-- claims:start -->"
README_END = "<!-- claims:end -->"

PAPER = "arXiv 2410.22296"
VERSION_EARLY = f"{PAPER} v1-v3, abstract"
VERSION_LATE = f"{PAPER} v4, ICML 2025"


class StudyTableError(ValueError):
    """A study table that does not follow the interface of this module's docstring."""


# Reading and checking the tables

TEXT, INT, FLOAT, FLOAT_OR_EMPTY = "text", "int", "float", "float or empty"
SCHEMAS: dict[str, dict[str, str]] = {
    "instances.csv": {"instance": TEXT, "optimum": FLOAT, "difficulty_rank": INT, "oracle_budget": INT,
                      "seed_data_calls": INT, "role": TEXT},
    "trace.csv": {"instance": TEXT, "method": TEXT, "seed": INT, "oracle_calls": INT, "best_value": FLOAT},
    "rounds.csv": {"instance": TEXT, "method": TEXT, "seed": INT, "round": INT, "paid_calls": INT,
                   "diagnostic_calls": INT, "valid_fraction": FLOAT_OR_EMPTY, "feasible_fraction": FLOAT_OR_EMPTY,
                   "edit_distance": FLOAT_OR_EMPTY, "unique_fraction": FLOAT_OR_EMPTY,
                   "mean_pairwise_distance": FLOAT_OR_EMPTY, "best_score": FLOAT_OR_EMPTY,
                   "mean_score": FLOAT_OR_EMPTY},
    "calibration.csv": {"instance": TEXT, "method": TEXT, "seed": INT, "round": INT, "bin": INT, "n": INT,
                        "mean_loglik": FLOAT_OR_EMPTY, "mean_reward": FLOAT_OR_EMPTY,
                        "reward_ci_low": FLOAT_OR_EMPTY, "reward_ci_high": FLOAT_OR_EMPTY},
}
RUN_KEYS = ["instance", "method", "seed"]
ROW_KEYS = {"instances.csv": ["instance"], "trace.csv": RUN_KEYS + ["oracle_calls"],
            "rounds.csv": RUN_KEYS + ["round"], "calibration.csv": RUN_KEYS + ["round", "bin"]}


@dataclass(frozen=True)
class Study:
    """The checked tables of one claims study."""

    instances: pd.DataFrame  # sorted by difficulty_rank
    trace: pd.DataFrame
    rounds: pd.DataFrame
    calibration: pd.DataFrame | None
    reported_seeds: tuple[int, ...]
    tuning_seeds: dict[str, tuple[int, ...]]

    def instance_with_role(self, role: str) -> str | None:
        names = self.instances.loc[self.instances["role"] == role, "instance"]
        return str(names.iloc[0]) if len(names) else None

    def instance_info(self, instance: str) -> pd.Series:
        return self.instances.set_index("instance").loc[instance]


def _convert(path: Path, table: pd.DataFrame, column: str, kind: str) -> pd.Series:
    raw = table[column]
    if kind == TEXT:
        empty = raw.str.strip() == ""
        if empty.any():
            raise StudyTableError(f"{path}: column '{column}' is empty on line {int(np.flatnonzero(empty)[0]) + 2}")
        return raw.str.strip()
    values = pd.to_numeric(raw.str.strip(), errors="coerce")
    blank = raw.str.strip().str.lower().isin(["", "nan"])
    unreadable = values.isna() & ~blank
    if unreadable.any():
        line = int(np.flatnonzero(unreadable)[0])
        raise StudyTableError(f"{path}: column '{column}' line {line + 2}: {raw.iloc[line]!r} is not a number")
    if kind != FLOAT_OR_EMPTY and blank.any():
        line = int(np.flatnonzero(blank)[0])
        hint = " (write -inf for a run that has found nothing feasible yet)" if column == "best_value" else ""
        raise StudyTableError(f"{path}: column '{column}' is empty on line {line + 2}{hint}")
    if kind == INT:
        integral = np.isfinite(values) & (values == np.round(values))
        if not integral.all():
            line = int(np.flatnonzero(~integral)[0])
            raise StudyTableError(f"{path}: column '{column}' line {line + 2}: {raw.iloc[line]!r} is not an integer")
        return values.astype(np.int64)
    return values.astype(float)


def read_study_table(folder: Path, name: str) -> pd.DataFrame:
    """One table of the interface, its columns checked and typed; extra columns are kept as text."""
    path = Path(folder) / name
    if not path.exists():
        raise StudyTableError(f"{path} does not exist: the claims study writes it (see llome/claims.py)")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column, kind in SCHEMAS[name].items():
        if column not in table.columns:
            raise StudyTableError(f"{path}: column '{column}' is missing (it has {', '.join(table.columns)})")
        table[column] = _convert(path, table, column, kind)
    duplicated = table.duplicated(ROW_KEYS[name])
    if duplicated.any():
        row = table.loc[duplicated, ROW_KEYS[name]].iloc[0]
        key = ", ".join(f"{column}={row[column]}" for column in ROW_KEYS[name])
        raise StudyTableError(f"{path}: more than one row for {key}")
    return table


def _read_seeds(folder: Path) -> tuple[tuple[int, ...], dict[str, tuple[int, ...]]]:
    path = Path(folder) / "seeds.json"
    if not path.exists():
        raise StudyTableError(f"{path} does not exist: it lists the reported and the tuning seeds")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise StudyTableError(f"{path} is not valid JSON: {error.msg}") from None

    def seed_list(value, where: str) -> tuple[int, ...]:
        if not isinstance(value, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
            raise StudyTableError(f"{path}: '{where}' must be a list of integer seeds")
        return tuple(value)

    if not isinstance(content, dict) or "reported" not in content or "tuning" not in content:
        raise StudyTableError(f"{path}: needs the keys 'reported' and 'tuning'")
    reported = seed_list(content["reported"], "reported")
    if not reported or len(set(reported)) != len(reported):
        raise StudyTableError(f"{path}: 'reported' must list at least one seed, each once")
    if not isinstance(content["tuning"], dict):
        raise StudyTableError(f"{path}: 'tuning' must map what was tuned to its seeds")
    tuning = {str(k): seed_list(v, f"tuning.{k}") for k, v in sorted(content["tuning"].items())}
    for group, seeds in tuning.items():
        for seed in seeds:
            if seed in reported:
                raise StudyTableError(
                    f"{path}: seed {seed} is both a reported seed and a tuning seed ('{group}'); a seed that "
                    "chose the settings cannot also judge them: report other seeds")
    return tuple(sorted(reported)), tuning


def _check_instances(path: Path, instances: pd.DataFrame) -> pd.DataFrame:
    unknown = sorted(set(instances["role"]) - set(ROLES))
    if unknown:
        raise StudyTableError(f"{path}: column 'role' has {unknown[0]!r}; roles are {', '.join(ROLES)}")
    for role in ("main", "solvable"):
        if (instances["role"] == role).sum() > 1:
            raise StudyTableError(f"{path}: column 'role': more than one instance is '{role}'")
    if instances["difficulty_rank"].duplicated().any():
        raise StudyTableError(f"{path}: column 'difficulty_rank' repeats a rank; claim 5 needs a strict order")
    for column, ok in (("optimum", instances["optimum"] > 0), ("oracle_budget", instances["oracle_budget"] > 0),
                       ("seed_data_calls", instances["seed_data_calls"].between(0, instances["oracle_budget"]))):
        if not ok.all():
            raise StudyTableError(f"{path}: column '{column}' is out of range for instance "
                                  f"{instances.loc[~ok, 'instance'].iloc[0]!r}")
    return instances.sort_values("difficulty_rank", kind="stable").reset_index(drop=True)


def _check_keys(path: Path, table: pd.DataFrame, instances: pd.DataFrame, reported, tuning) -> None:
    unknown_methods = sorted(set(table["method"]) - set(METHODS))
    if unknown_methods:
        raise StudyTableError(f"{path}: column 'method' has unknown method {unknown_methods[0]!r}; known: "
                              f"{', '.join(METHODS)}")
    unknown_instances = sorted(set(table["instance"]) - set(instances["instance"]))
    if unknown_instances:
        raise StudyTableError(f"{path}: column 'instance' has {unknown_instances[0]!r}, which instances.csv "
                              "does not list")
    unreported = sorted(set(table["seed"].tolist()) - set(reported))
    if unreported:
        seed = unreported[0]
        groups = [group for group, seeds in tuning.items() if seed in seeds]
        why = f" (it is a tuning seed: '{groups[0]}')" if groups else ""
        raise StudyTableError(f"{path}: column 'seed' has {seed}, which is not a reported seed of seeds.json{why}")


def _check_trace(path: Path, trace: pd.DataFrame, instances: pd.DataFrame) -> pd.DataFrame:
    info = instances.set_index("instance")
    trace = trace.sort_values(RUN_KEYS + ["oracle_calls"], kind="stable").reset_index(drop=True)
    budget = trace["instance"].map(info["oracle_budget"])
    optimum = trace["instance"].map(info["optimum"])
    for column, bad in (("oracle_calls", (trace["oracle_calls"] < 0) | (trace["oracle_calls"] > budget)),
                        ("best_value", trace["best_value"] > optimum + 1e-6)):
        if bad.any():
            row = trace.loc[bad].iloc[0]
            limit = "[0, oracle_budget]" if column == "oracle_calls" else "at most the optimum"
            raise StudyTableError(f"{path}: column '{column}' must be {limit}; run {row['instance']}/{row['method']}/"
                                  f"seed {row['seed']} has {row[column]}")
    falls = trace.groupby(RUN_KEYS, sort=False)["best_value"].diff() < -1e-9
    if falls.any():
        row = trace.loc[falls].iloc[0]
        raise StudyTableError(f"{path}: column 'best_value' falls within run {row['instance']}/{row['method']}/"
                              f"seed {row['seed']} at {row['oracle_calls']} calls; it is the best so far")
    return trace


def load_study(folder) -> Study:
    """Read and check every table of the interface in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StudyTableError(f"{folder} is not a folder of study tables")
    reported, tuning = _read_seeds(folder)
    instances = _check_instances(folder / "instances.csv", read_study_table(folder, "instances.csv"))
    tables = {}
    for name in ("trace.csv", "rounds.csv", "calibration.csv"):
        if name == "calibration.csv" and not (folder / name).exists():
            tables[name] = None
            continue
        table = read_study_table(folder, name)
        _check_keys(folder / name, table, instances, reported, tuning)
        tables[name] = table
    trace = _check_trace(folder / "trace.csv", tables["trace.csv"], instances)
    return Study(instances, trace, tables["rounds.csv"], tables["calibration.csv"], reported, tuning)


# Per-run outcomes

def f_levels(trace: pd.DataFrame) -> np.ndarray:
    """Every positive value of f that some run reached: the steps f moves in on this instance."""
    values = trace["best_value"].to_numpy(float)
    return np.unique(np.round(values[np.isfinite(values) & (values > 0)], LEVEL_DECIMALS))


def run_outcomes(study: Study) -> pd.DataFrame:
    """One row per run: regret AUC, final regret and best f, whether and when it reached the optimum,
    and the calls it needed to reach each f level of its instance (``level_calls``, ``level_observed``)."""
    rows = []
    for instance, runs in study.trace.groupby("instance", sort=True):
        info = study.instance_info(instance)
        optimum, budget = float(info["optimum"]), int(info["oracle_budget"])
        levels = f_levels(runs)
        for (method, seed), run in runs.groupby(["method", "seed"], sort=True):
            calls = run["oracle_calls"].to_numpy(float)
            best = run["best_value"].to_numpy(float)
            final_best = float(min(max(best.max(), 0.0), optimum))
            solve = calls_to_reach(calls, best, [optimum], budget, tolerance=10.0 ** -LEVEL_DECIMALS)
            hits = calls_to_reach(calls, best, levels, budget, tolerance=10.0 ** -LEVEL_DECIMALS)
            rows.append({"instance": instance, "method": method, "seed": int(seed),
                         "regret_auc": regret_auc(calls, best, budget, optimum=optimum),
                         "final_regret": optimum - final_best, "final_best": final_best,
                         "solved": bool(solve.observed[0]), "calls_to_solve": float(solve.calls[0]),
                         "levels": levels, "level_calls": hits.calls, "level_observed": hits.observed})
    columns = ["instance", "method", "seed", "regret_auc", "final_regret", "final_best", "solved",
               "calls_to_solve", "levels", "level_calls", "level_observed"]
    return pd.DataFrame(rows, columns=columns)


def per_seed(table: pd.DataFrame, instance: str, method: str, column: str) -> pd.Series:
    """``column`` of ``method``'s runs on ``instance``, indexed by seed (empty if it has none)."""
    rows = table[(table["instance"] == instance) & (table["method"] == method)]
    return pd.Series(rows[column].to_list(), index=rows["seed"].to_numpy(), dtype=object).sort_index()


def paired_values(a: pd.Series, b: pd.Series) -> tuple[list[int], list, list]:
    seeds = sorted(set(a.index) & set(b.index))
    return seeds, [a[s] for s in seeds], [b[s] for s in seeds]


# Comparisons

def directional_verdict(low: float, high: float, n_seeds: int, predicted_sign: int = 1) -> str:
    """The claim predicts the difference has ``predicted_sign``: supported when the whole interval has it,
    contradicted when the whole interval has the other sign, and at most inconclusive on too few seeds."""
    if n_seeds == 0 or not (math.isfinite(low) and math.isfinite(high)):
        return NOT_TESTABLE
    if n_seeds < MIN_PAIRED_SEEDS:
        return INCONCLUSIVE
    low, high = (low, high) if predicted_sign > 0 else (-high, -low)
    if low > 0:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def comparison(label: str, metric: str, a: Iterable[float], b: Iterable[float], seeds: list[int],
               test: str | None = "wilcoxon", **extra) -> dict:
    """``mean(a - b)`` over paired seeds with its bootstrap interval and a paired test.

    ``test`` is ``"wilcoxon"`` (signed-rank), ``"sign"`` or None. ``verdict`` is left None: the claim's
    rule decides which comparisons get one.
    """
    a, b = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    entry = {"label": label, "metric": metric, "n_seeds": len(seeds), "seeds": list(seeds), "verdict": None,
             "estimate": None, "ci_low": None, "ci_high": None, "test": None, "p_value": None}
    entry.update(extra)
    if not seeds:
        return entry
    interval = paired_bootstrap_ci(a, b, n_resamples=N_RESAMPLES, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
    entry.update(estimate=interval.estimate, ci_low=interval.low, ci_high=interval.high)
    if test == "wilcoxon":
        entry.update(test="Wilcoxon signed-rank, two-sided", p_value=wilcoxon_signed_rank(a, b))
    elif test == "sign":
        entry.update(test="sign test, two-sided", p_value=sign_test(a, b))
    return entry


def with_directional_verdict(entry: dict, predicted_sign: int = 1) -> dict:
    if entry["n_seeds"] == 0:
        return {**entry, "verdict": NOT_TESTABLE}
    return {**entry, "verdict": directional_verdict(entry["ci_low"], entry["ci_high"], entry["n_seeds"],
                                                    predicted_sign)}


def all_required(required: dict[str, dict | None]) -> tuple[str, dict | None, list[str]]:
    """A claim that needs every comparison in ``required`` to go its way.

    Contradicted when any one is contradicted; supported only when all are present and supported;
    otherwise inconclusive (not testable when none is present). Returns the verdict, the comparison
    that limits it (the contradicting one, else the one whose interval reaches lowest) and the labels of
    the missing ones.
    """
    missing = [label for label, entry in required.items() if entry is None or entry["n_seeds"] == 0]
    present = [entry for entry in required.values() if entry is not None and entry["n_seeds"] > 0]
    if not present:
        return NOT_TESTABLE, None, missing
    contradicted = [entry for entry in present if entry["verdict"] == CONTRADICTED]
    if contradicted:
        return CONTRADICTED, min(contradicted, key=lambda e: e["ci_high"]), missing
    limiting = min(present, key=lambda e: e["ci_low"])
    if not missing and all(entry["verdict"] == SUPPORTED for entry in present):
        return SUPPORTED, limiting, missing
    return INCONCLUSIVE, limiting, missing


def seeds_to_decide(entry: dict | None) -> str:
    """How many paired seeds would separate the interval from 0, if effect and spread stayed as seen."""
    if entry is None or not entry["n_seeds"]:
        return ""
    n, estimate = entry["n_seeds"], entry["estimate"]
    if n < MIN_PAIRED_SEEDS:
        return (f"At least {MIN_PAIRED_SEEDS} paired seeds in '{entry['label']}' (it has {n}); ")
    if entry["ci_low"] <= 0 <= entry["ci_high"]:
        if entry["ci_low"] == entry["ci_high"] == 0:  # a bootstrap of all-zero differences, and only of those
            return (f"Every paired difference in '{entry['label']}' is 0: more seeds cannot separate the methods "
                    "here, though a larger budget or another instance might; ")
        if estimate == 0:
            return (f"The paired differences in '{entry['label']}' cancel out (mean 0): no number of seeds can be "
                    "read off them; ")
        half_width = (entry["ci_high"] - entry["ci_low"]) / 2
        needed = math.ceil(n * (half_width / abs(estimate)) ** 2)
        return (f"About {needed} paired seeds in '{entry['label']}' (it has {n}) if the effect and its spread "
                "stay as seen, an interval's half-width shrinking as 1/sqrt(seeds); ")
    return ""


# Claim 1: efficiency against the GAs

def efficiency_comparisons(outcomes: pd.DataFrame, instance: str, variant: str, ga: str) -> list[dict]:
    """``variant`` against ``ga`` on one instance: regret AUC (decides), final regret, calls to each f level."""
    entries = []
    for column, metric in (("regret_auc", "regret AUC"), ("final_regret", "final regret")):
        seeds, ga_values, llome_values = paired_values(per_seed(outcomes, instance, ga, column),
                                                       per_seed(outcomes, instance, variant, column))
        if not seeds:
            return []
        entries.append(comparison(f"{variant} vs {ga}: {metric}",
                                  f"{ga} {metric} - {variant} {metric} (positive: LLOME lower)",
                                  ga_values, llome_values, seeds, instance=instance, method=variant, against=ga))
    entries[0] = with_directional_verdict(entries[0])
    seeds, llome_hits, ga_hits = paired_values(per_seed(outcomes, instance, variant, "level_calls"),
                                               per_seed(outcomes, instance, ga, "level_calls"))
    _, llome_seen, ga_seen = paired_values(per_seed(outcomes, instance, variant, "level_observed"),
                                           per_seed(outcomes, instance, ga, "level_observed"))
    levels = outcomes.loc[outcomes["instance"] == instance, "levels"].iloc[0]
    if len(levels):
        net = [float(np.mean(censored_paired_comparison(lc, lo, gc, go)))
               for lc, lo, gc, go in zip(llome_hits, llome_seen, ga_hits, ga_seen)]
        entries.append(comparison(
            f"{variant} vs {ga}: calls to each f level", "share of f levels reached first by LLOME minus "
            "share reached first by the GA, per seed (censored at the budget; positive: LLOME faster)",
            net, np.zeros(len(net)), seeds, test="sign", instance=instance, method=variant, against=ga))
    return entries


def calls_to_levels(outcomes: pd.DataFrame, instance: str) -> list[dict]:
    """Per method and f level: share of seeds that reached it and the Kaplan-Meier median calls
    (None where fewer than half got there)."""
    rows = []
    runs = outcomes[outcomes["instance"] == instance]
    for method, by_method in runs.groupby("method", sort=True):
        calls = np.stack(by_method["level_calls"].to_list())
        seen = np.stack(by_method["level_observed"].to_list())
        for index, level in enumerate(by_method["levels"].iloc[0]):
            median = kaplan_meier_median(calls[:, index], seen[:, index])
            rows.append({"method": method, "level": float(level), "reached_fraction": float(seen[:, index].mean()),
                         "median_calls": median if math.isfinite(median) else None, "n_seeds": int(len(by_method))})
    return rows


def claim_efficiency(study: Study, outcomes: pd.DataFrame) -> dict:
    instance = study.instance_with_role("main")
    comparisons = []
    if instance is not None:
        for variant in LLOME_VARIANTS:
            for ga in GAS:
                comparisons += efficiency_comparisons(outcomes, instance, variant, ga)

    def judge(variant: str):
        required = {f"{variant} vs {ga}": next((c for c in comparisons if c["method"] == variant and c["against"] == ga
                                               and c["label"].endswith("regret AUC")), None) for ga in GAS}
        return all_required(required)

    return {
        "instance": instance,
        "judge": judge,
        "comparisons": comparisons,
        "calls_to_reach": calls_to_levels(outcomes, instance) if instance is not None else [],
    }


# Claim 2: calibration

def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < MIN_CALIBRATION_BINS or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(scipy_stats.spearmanr(x, y).statistic)


def calibration_per_round(calibration: pd.DataFrame, instance: str, method: str) -> pd.DataFrame:
    """Spearman's rho between mean likelihood and mean reward across the deciles of each (seed, round)."""
    rows = calibration[(calibration["instance"] == instance) & (calibration["method"] == method)
                       & (calibration["n"] > 0)].dropna(subset=["mean_loglik", "mean_reward"])
    records = [{"seed": int(seed), "round": int(rnd),
                "rho": rank_correlation(group["mean_loglik"].to_numpy(float), group["mean_reward"].to_numpy(float))}
               for (seed, rnd), group in rows.groupby(["seed", "round"], sort=True)]
    return pd.DataFrame(records, columns=["seed", "round", "rho"]).dropna()


def calibration_verdict(entry: dict) -> str:
    """"Moderately miscalibrated": the likelihood orders rewards, but loosely."""
    n, low, high = entry["n_seeds"], entry["ci_low"], entry["ci_high"]
    if n == 0:
        return NOT_TESTABLE
    if n < MIN_PAIRED_SEEDS:
        return INCONCLUSIVE
    if low >= WELL_CALIBRATED_RHO or high < 0:
        return CONTRADICTED
    if low > 0 and high < WELL_CALIBRATED_RHO:
        return SUPPORTED
    return INCONCLUSIVE


def binned_rewards(calibration: pd.DataFrame, instance: str, method: str) -> list[dict]:
    """Per likelihood decile: the mean over seeds of each seed's mean reward (averaged over rounds),
    with a bootstrap interval over seeds."""
    rows = calibration[(calibration["instance"] == instance) & (calibration["method"] == method)
                       & (calibration["n"] > 0)].dropna(subset=["mean_loglik", "mean_reward"])
    seed_means = rows.groupby(["bin", "seed"], sort=True)[["mean_loglik", "mean_reward"]].mean().reset_index()
    result = []
    for bin_index, group in seed_means.groupby("bin", sort=True):
        rewards = group["mean_reward"].to_numpy(float)
        interval = paired_bootstrap_ci(rewards, np.zeros_like(rewards), n_resamples=N_RESAMPLES,
                                       confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
        result.append({"bin": int(bin_index), "mean_loglik": float(group["mean_loglik"].mean()),
                       "mean_reward": interval.estimate, "ci_low": interval.low, "ci_high": interval.high,
                       "n_seeds": int(len(group))})
    return result


def calibration_comparisons(calibration: pd.DataFrame, instance: str, method: str) -> list[dict]:
    per_round = calibration_per_round(calibration, instance, method)
    if per_round.empty:
        return []
    per_seed_rho = per_round.groupby("seed", sort=True)["rho"].mean()
    seeds = per_seed_rho.index.tolist()
    overall = comparison(f"{method}: calibration", "Spearman's rho between mean likelihood and mean reward across "
                         "likelihood deciles, averaged over rounds per seed, then over seeds",
                         per_seed_rho.to_numpy(), np.zeros(len(seeds)), seeds, method=method, instance=instance,
                         binned_means=binned_rewards(calibration, instance, method))
    overall["test"] = "Wilcoxon signed-rank of per-seed rho against 0, two-sided"
    entries = [{**overall, "verdict": calibration_verdict(overall)}]
    for rnd, group in per_round.groupby("round", sort=True):
        entry = comparison(f"{method}: calibration in round {int(rnd)}", "Spearman's rho across likelihood deciles, "
                           "mean over seeds", group["rho"].to_numpy(), np.zeros(len(group)),
                           group["seed"].tolist(), method=method, instance=instance, round=int(rnd))
        entry["test"] = "Wilcoxon signed-rank of per-seed rho against 0, two-sided"
        entries.append(entry)
    return entries


def claim_calibration(study: Study, outcomes: pd.DataFrame) -> dict:
    instance = study.instance_with_role("main")
    comparisons = []
    if instance is not None and study.calibration is not None:
        for method in LLOME_VARIANTS:
            comparisons += calibration_comparisons(study.calibration, instance, method)

    def judge(variant: str):
        entry = next((c for c in comparisons if c["method"] == variant and "round" not in c), None)
        if entry is None:
            return NOT_TESTABLE, None, [f"calibration of {variant}"]
        return entry["verdict"], entry, []

    return {
        "instance": instance,
        "judge": judge,
        "comparisons": comparisons,
    }


# Claim 3: generator collapse

COLLAPSE_MEASURES = (("edit_distance", "edit distance (input to output)"),
                     ("unique_fraction", "unique fraction of proposals"),
                     ("mean_pairwise_distance", "mean pairwise distance of proposals"))


def seed_slopes(rows: pd.DataFrame, column: str) -> np.ndarray:
    slopes = []
    for _, run in rows.groupby("seed", sort=True):
        if run["round"].nunique() >= 2:
            slopes.append(float(np.polyfit(run["round"].to_numpy(float), run[column].to_numpy(float), 1)[0]))
    return np.array(slopes)


def trend_comparison(rounds: pd.DataFrame, instance: str, method: str, column: str, name: str) -> dict | None:
    rows = rounds[(rounds["instance"] == instance) & (rounds["method"] == method)].dropna(subset=[column])
    if rows.empty:
        return None
    seeds = sorted(rows["seed"].unique().tolist())
    entry = {"label": f"{method}: {name} per round", "metric": f"least-squares slope of {column} on round, pooled "
             "over seeds (interval: seeds resampled whole)", "method": method, "instance": instance,
             "measure": column, "n_seeds": len(seeds), "seeds": seeds, "n_rounds": int(rows["round"].nunique()),
             "estimate": None, "ci_low": None, "ci_high": None, "test": None, "p_value": None, "verdict": None}
    if entry["n_rounds"] < 2:
        return entry
    interval = linear_trend(rows["round"].to_numpy(float), rows[column].to_numpy(float), groups=rows["seed"].to_numpy(),
                            n_resamples=N_RESAMPLES, confidence=CONFIDENCE, seed=BOOTSTRAP_SEED)
    slopes = seed_slopes(rows, column)
    entry.update(estimate=interval.estimate, ci_low=interval.low, ci_high=interval.high,
                 test="sign test of per-seed slopes against 0, two-sided",
                 p_value=sign_test(slopes, np.zeros_like(slopes)) if slopes.size else None,
                 seed_slopes={"min": float(slopes.min()), "median": float(np.median(slopes)),
                              "max": float(slopes.max()), "falling_fraction": float(np.mean(slopes < 0))}
                 if slopes.size else None)
    return entry


def falls(entry: dict | None) -> str:
    if entry is None or entry["estimate"] is None:
        return NOT_TESTABLE
    if entry["n_rounds"] < MIN_TREND_ROUNDS:
        return INCONCLUSIVE
    return directional_verdict(entry["ci_low"], entry["ci_high"], entry["n_seeds"], predicted_sign=-1)


def collapse_verdict(edit: dict | None, diversity: list[dict | None]) -> str:
    edit_falls = falls(edit)
    if edit_falls in (NOT_TESTABLE, CONTRADICTED):
        return edit_falls
    if edit_falls == SUPPORTED and any(falls(entry) == SUPPORTED for entry in diversity):
        return SUPPORTED
    return INCONCLUSIVE


def claim_collapse(study: Study, outcomes: pd.DataFrame) -> dict:
    instance = study.instance_with_role("main")
    comparisons = []
    if instance is not None:
        for method in LLOME_VARIANTS:
            entries = [trend_comparison(study.rounds, instance, method, column, name)
                       for column, name in COLLAPSE_MEASURES]
            if entries[0] is not None:
                entries[0]["verdict"] = collapse_verdict(entries[0], entries[1:])
            comparisons += [entry for entry in entries if entry is not None]

    def judge(variant: str):
        edit = next((c for c in comparisons if c["method"] == variant and c["measure"] == "edit_distance"), None)
        if edit is None:
            return NOT_TESTABLE, None, [f"rounds of {variant}"]
        return edit["verdict"], edit, []

    return {
        "instance": instance,
        "judge": judge,
        "comparisons": comparisons,
    }


# Claim 4: explicit rewards

def solving_comparisons(outcomes: pd.DataFrame, instance: str, method: str, against: str) -> list[dict]:
    seeds, calls_a, calls_b = paired_values(per_seed(outcomes, instance, method, "calls_to_solve"),
                                            per_seed(outcomes, instance, against, "calls_to_solve"))
    if not seeds:
        return []
    _, seen_a, seen_b = paired_values(per_seed(outcomes, instance, method, "solved"),
                                      per_seed(outcomes, instance, against, "solved"))
    first = censored_paired_comparison(calls_a, seen_a, calls_b, seen_b)
    censored = comparison(f"{method} vs {against}: calls to solve", f"per seed +1 if {method} certainly reached "
                          f"the optimum in fewer calls, -1 if {against} did, 0 if the censored data cannot tell; "
                          "mean over seeds", first, np.zeros(len(first)), seeds, test="sign",
                          instance=instance, method=method, against=against)
    solved = comparison(f"{method} vs {against}: solved fraction", f"solved fraction of {method} minus that of "
                        f"{against}, paired by seed", np.array(seen_a, float), np.array(seen_b, float), seeds,
                        test="sign", instance=instance, method=method, against=against)
    return [with_directional_verdict(censored), solved]


def solving_summary(outcomes: pd.DataFrame, instance: str, method: str) -> dict | None:
    solved = per_seed(outcomes, instance, method, "solved")
    if solved.empty:
        return None
    calls = per_seed(outcomes, instance, method, "calls_to_solve")
    seen = np.array(solved.to_list(), float)
    entry = comparison(f"{method}: solved fraction", "share of seeds that reached the optimum within the budget",
                       seen, np.zeros_like(seen), solved.index.tolist(), test=None, instance=instance, method=method)
    median = kaplan_meier_median(np.array(calls.to_list(), float), seen.astype(bool))
    entry["median_calls_to_solve"] = median if math.isfinite(median) else None
    return entry


def claim_explicit_rewards(study: Study, outcomes: pd.DataFrame) -> dict:
    instance = study.instance_with_role("solvable")
    comparisons = []
    if instance is not None:
        comparisons += [s for m in LLOME_VARIANTS if (s := solving_summary(outcomes, instance, m)) is not None]
        for method in (MARGE, MARGE_LARGE):
            for against in ("llome_sft", "llome_dpo"):
                comparisons += solving_comparisons(outcomes, instance, method, against)

    def judge(variant: str):
        required = {f"{variant} vs {against}": next(
            (c for c in comparisons if c.get("against") == against and c["method"] == variant
             and c["label"].endswith("calls to solve")), None) for against in ("llome_sft", "llome_dpo")}
        return all_required(required)

    return {
        "instance": instance,
        "judge": judge,
        "comparisons": comparisons,
        "notes": solving_notes(study, outcomes, instance) if instance is not None else [],
    }


def identical_rounds(rounds: pd.DataFrame, instance: str, methods: Iterable[str]) -> bool:
    """Whether the methods' rounds on the instance are the same rows, seed by seed and round by round: they
    then proposed and paid for the same sequences, so none of them trained past the model they share."""
    rows = [rounds[(rounds["instance"] == instance) & (rounds["method"] == m)].drop(columns="method")
            .sort_values(["seed", "round"]).reset_index(drop=True) for m in methods]
    return len(rows) > 1 and not rows[0].empty and all(r.equals(rows[0]) for r in rows[1:])


def solving_notes(study: Study, outcomes: pd.DataFrame, instance: str) -> list[str]:
    """What a reader needs beside claim 4's verdict: which methods solve the instance at all, and whether the
    compared LLOME variants differ there in anything but their names."""
    notes = []
    runs = outcomes[outcomes["instance"] == instance]
    solved = runs.groupby("method")["solved"].agg(["sum", "count"])
    if not solved.empty:
        notes.append("Seeds that reached the optimum within the budget: " + ", ".join(
            f"{method} {int(row['sum'])} of {int(row['count'])}" for method, row in solved.iterrows()) + ".")
    variants = [m for m in ("llome_sft", MARGE, "llome_dpo") if m in set(runs["method"])]
    if identical_rounds(study.rounds, instance, variants):
        def marge_valid(on: str | None) -> pd.Series:
            return study.rounds.loc[(study.rounds["instance"] == on) & (study.rounds["method"] == MARGE),
                                    "valid_fraction"]

        valid, on_main = marge_valid(instance), marge_valid(study.instance_with_role("main"))
        text = (f"{', '.join(variants)} made the same rounds on every seed (their rounds.csv rows are equal): "
                "none trained past round 0, so this instance does not compare their objectives at all. Their "
                f"proposals were valid sequences {valid.mean():.1%} of the time "
                f"(per round {valid.min():.1%} to {valid.max():.1%})")
        if not on_main.empty:
            text += f", against {on_main.mean():.1%} for {MARGE} on the main instance"
        notes.append(text + ".")
    return notes


# Claim 5: the specialist

def on_a_par(entry: dict, margin: float) -> str:
    """The ends of the difficulty scale: the claim is that the two are on a par there."""
    if entry["n_seeds"] < MIN_PAIRED_SEEDS:
        return INCONCLUSIVE
    if -margin <= entry["ci_low"] and entry["ci_high"] <= margin:
        return SUPPORTED
    if entry["ci_low"] > margin or entry["ci_high"] < -margin:
        return CONTRADICTED
    return INCONCLUSIVE


def better_in_the_middle(entry: dict, margin: float) -> str:
    """Middling difficulty: the claim is that MargE can do better; a certain loss, or a difference
    certainly inside the margin, says it does not here."""
    verdict = directional_verdict(entry["ci_low"], entry["ci_high"], entry["n_seeds"])
    if verdict == INCONCLUSIVE and entry["n_seeds"] >= MIN_PAIRED_SEEDS and \
            -margin <= entry["ci_low"] and entry["ci_high"] <= margin:
        return CONTRADICTED
    return verdict


def difficulty_position(index: int, count: int) -> str:
    """Where the index-th easiest of ``count`` instances sits: its ends, its middle, or nowhere under three."""
    if count < 3:
        return "unplaced"
    return "easiest" if index == 0 else "hardest" if index == count - 1 else "middle"


def claim_specialist(study: Study, outcomes: pd.DataFrame) -> dict:
    comparisons = []
    for method in (MARGE, MARGE_LARGE):
        paired = []
        for instance in study.instances["instance"]:
            seeds, lambo, llome = paired_values(per_seed(outcomes, instance, SPECIALIST, "regret_auc"),
                                                per_seed(outcomes, instance, method, "regret_auc"))
            if seeds:
                paired.append((instance, seeds, lambo, llome))
        for index, (instance, seeds, lambo, llome) in enumerate(paired):
            info = study.instance_info(instance)
            margin = PAR_MARGIN * float(info["optimum"])
            position = difficulty_position(index, len(paired))
            entry = comparison(f"{method} vs {SPECIALIST} on {instance} ({position})",
                               f"{SPECIALIST} regret AUC - {method} regret AUC (positive: MargE lower)",
                               lambo, llome, seeds, instance=instance,
                               method=method, against=SPECIALIST, position=position,
                               difficulty_rank=int(info["difficulty_rank"]), par_margin=margin)
            if position == "middle":
                entry["verdict"] = better_in_the_middle(entry, margin)
            elif position != "unplaced":
                entry["verdict"] = on_a_par(entry, margin)
            comparisons.append(entry)

    def judge(variant: str):
        entries = [c for c in comparisons if c["method"] == variant]
        if sum(c["position"] != "unplaced" for c in entries) < 3:
            return NOT_TESTABLE, None, [f"{variant} and {SPECIALIST} on at least three instances"]
        middle = [c for c in entries if c["position"] == "middle"]
        ends = [c for c in entries if c["position"] in ("easiest", "hardest")]
        best_middle = max(middle, key=lambda c: c["ci_low"])
        contradicting = [c for c in ends if c["verdict"] == CONTRADICTED]
        if contradicting:
            return CONTRADICTED, contradicting[0], []
        if all(c["verdict"] == CONTRADICTED for c in middle):
            return CONTRADICTED, best_middle, []
        if best_middle["verdict"] == SUPPORTED and all(c["verdict"] == SUPPORTED for c in ends):
            return SUPPORTED, best_middle, []
        return INCONCLUSIVE, best_middle, []

    return {
        "instance": None,
        "judge": judge,
        "comparisons": comparisons,
    }


# Claim 6: generalists

def mean_feasibility(rounds: pd.DataFrame, instance: str, method: str) -> pd.Series:
    rows = rounds[(rounds["instance"] == instance) & (rounds["method"] == method)].dropna(subset=["feasible_fraction"])
    return rows.groupby("seed", sort=True)["feasible_fraction"].mean()


def pooled_best_f(outcomes: pd.DataFrame, instances: Iterable[str], method: str) -> dict | None:
    """``method``'s final best f minus the prompted LLM's, per seed averaged over every instance where both
    ran, on the seeds common to all of them."""
    per_instance = []
    for instance in instances:
        seeds, other, prompted = paired_values(per_seed(outcomes, instance, method, "final_best"),
                                               per_seed(outcomes, instance, GENERALIST, "final_best"))
        if seeds:
            per_instance.append((instance, dict(zip(seeds, np.subtract(other, prompted)))))
    if not per_instance:
        return None
    common = sorted(set.intersection(*(set(d) for _, d in per_instance)))
    differences = [float(np.mean([d[s] for _, d in per_instance])) for s in common]
    entry = comparison(f"{method} vs {GENERALIST}: best f", f"final best f of {method} minus that of "
                       f"{GENERALIST}, per seed averaged over instances (positive: prompting worse)",
                       differences, np.zeros(len(differences)), common, method=method, against=GENERALIST,
                       instances=[name for name, _ in per_instance])
    return with_directional_verdict(entry)


def claim_generalists(study: Study, outcomes: pd.DataFrame) -> dict:
    instances = list(study.instances["instance"])
    comparisons = []
    for method in LLOME_VARIANTS + (SPECIALIST,):
        pooled = pooled_best_f(outcomes, instances, method)
        if pooled is not None:
            comparisons.append(pooled)
    for instance in instances:
        for method in LLOME_VARIANTS + (SPECIALIST,):
            seeds, other, prompted = paired_values(per_seed(outcomes, instance, method, "final_best"),
                                                   per_seed(outcomes, instance, GENERALIST, "final_best"))
            if seeds:
                comparisons.append(comparison(f"{method} vs {GENERALIST} on {instance}: best f",
                                              f"final best f of {method} minus that of {GENERALIST}", other,
                                              prompted, seeds, instance=instance, method=method, against=GENERALIST))
            seeds, other, prompted = paired_values(mean_feasibility(study.rounds, instance, method),
                                                   mean_feasibility(study.rounds, instance, GENERALIST))
            if seeds:
                comparisons.append(comparison(
                    f"{method} vs {GENERALIST} on {instance}: feasible fraction", f"feasible fraction of proposals "
                    f"(mean over rounds) of {method} minus that of {GENERALIST}", other, prompted, seeds,
                    instance=instance, method=method, against=GENERALIST))

    def judge(variant: str):
        required = {f"{method} vs {GENERALIST}": next(
            (c for c in comparisons if c["method"] == method and "instances" in c), None)
            for method in (variant, SPECIALIST)}
        return all_required(required)

    return {
        "instance": None,
        "judge": judge,
        "comparisons": comparisons,
    }


# Assembling the claims

@dataclass(frozen=True)
class ClaimSpec:
    number: int
    title: str
    statement: str  # docs/method.md §8's wording of the paper's claim
    version: str
    metric: str
    rule: str
    needs: str  # the data that would make it testable
    analyse: Callable[[Study, pd.DataFrame], dict]


CLAIMS = (
    ClaimSpec(
        1, "Efficiency against the GA",
        "LLMs reach significantly lower regret than GA baselines while using fewer test-function evaluations.",
        VERSION_EARLY,
        "regret AUC (mean regret over the whole budget, seed data included), GA minus LLOME-MargE, paired by "
        "seed; positive: MargE lower",
        f"Per LLOME variant and GA: supported if the {CONFIDENCE:.0%} interval of (GA regret AUC - LLOME regret "
        "AUC) lies above 0, contradicted if below 0, else inconclusive. The claim is judged on LLOME-MargE, the "
        "method the paper introduces: supported if it is supported against both GAs, contradicted if "
        "contradicted against either. Final regret and calls to each f level are reported beside it.",
        "trace.csv rows of llome_marge, ga_paper and ga_swept on the main instance (role 'main' in "
        f"instances.csv), at least {MIN_PAIRED_SEEDS} paired seeds each",
        claim_efficiency),
    ClaimSpec(
        2, "Calibration",
        "LLMs are moderately miscalibrated: their likelihood of a sequence tracks its reward only loosely.",
        VERSION_EARLY,
        "Spearman's rho between mean likelihood and mean reward across the likelihood deciles of a round "
        "(diagnostic candidates the optimiser never paid for), LLOME-MargE, averaged over rounds per seed, then "
        "over seeds",
        "Moderately miscalibrated means the likelihood orders rewards, but loosely: supported if the "
        f"{CONFIDENCE:.0%} interval of the mean rho lies inside (0, {WELL_CALIBRATED_RHO}); contradicted if it "
        f"lies at or above {WELL_CALIBRATED_RHO} (calibrated) or below 0 (likelihood runs against reward, worse "
        "than moderate); else inconclusive. Judged on LLOME-MargE.",
        "calibration.csv with rows of llome_marge on the main instance: per round and seed, the likelihood "
        f"deciles of unpaid diagnostic candidates, at least {MIN_CALIBRATION_BINS} of them non-empty, for at "
        f"least {MIN_PAIRED_SEEDS} seeds",
        claim_calibration),
    ClaimSpec(
        3, "Generator collapse", "LLMs are susceptible to generator collapse.", VERSION_EARLY,
        "slope per round of LLOME-MargE's mean edit distance from input to output, pooled over seeds (interval: "
        "seeds resampled whole)",
        f"Supported if the {CONFIDENCE:.0%} interval of the edit-distance slope lies below 0 and so does that of "
        "at least one diversity measure (unique fraction, mean pairwise distance); contradicted if the "
        "edit-distance interval lies above 0 (proposals move further from their inputs); else inconclusive. A "
        f"trend needs at least {MIN_TREND_ROUNDS} rounds. Judged on LLOME-MargE.",
        f"rounds.csv rows of llome_marge on the main instance, at least {MIN_TREND_ROUNDS} rounds for each of at "
        f"least {MIN_PAIRED_SEEDS} seeds, with edit_distance, unique_fraction and mean_pairwise_distance",
        claim_collapse),
    ClaimSpec(
        4, "Explicit rewards",
        "Trained without ground-truth rewards (SFT, DPO), LLOME struggles to find the optimum; MargE, which uses "
        "the reward, does better.",
        VERSION_EARLY,
        "calls to reach the optimum on the solvable instance, censored at the budget: per seed +1 if MargE "
        "certainly got there first, -1 if the other variant did, 0 if the data cannot tell; mean over seeds",
        "Per seed, +1 if MargE certainly reached the optimum in fewer calls, -1 if the other variant did, 0 if "
        f"the censored data cannot tell: supported if the {CONFIDENCE:.0%} interval of the mean lies above 0 "
        "against both LLOME-SFT and LLOME-DPO; contradicted if it lies below 0 against either; else inconclusive. "
        "Solved fractions and Kaplan-Meier medians of the calls to solve are reported beside it.",
        "an instance with role 'solvable' in instances.csv and trace.csv rows of llome_marge, llome_sft and "
        f"llome_dpo on it, at least {MIN_PAIRED_SEEDS} paired seeds, with a budget at which some runs reach the "
        "optimum",
        claim_explicit_rewards),
    ClaimSpec(
        5, "Specialist",
        "On Ehrlich instances of middling difficulty LLOME-MargE can do better than LaMBO-2, while at the very "
        "easy and the very hard end the two are on a par.",
        VERSION_LATE,
        "regret AUC, LaMBO-2 minus LLOME-MargE, paired by seed, per instance in order of difficulty; the "
        "headline numbers are those of the middling instance where MargE's case is strongest",
        "Instances with both methods are ordered by difficulty_rank; the first and last are the ends, the rest "
        "the middle (at least three instances are needed). A middle instance supports the claim if the "
        f"{CONFIDENCE:.0%} interval of (LaMBO-2 - MargE regret AUC) lies above 0, and counts against it if the "
        f"interval lies below 0 or inside +-{PAR_MARGIN} x optimum. An end supports it if the interval lies "
        f"inside +-{PAR_MARGIN} x optimum (on a par) and counts against it if the interval lies wholly outside "
        "that band. Supported: some middle instance and both ends support it. Contradicted: an end counts "
        "against it, or every middle instance does. Else inconclusive.",
        "trace.csv rows of llome_marge and lambo2 on at least three instances of distinct difficulty_rank (the "
        f"easiest, a middling and the hardest), at least {MIN_PAIRED_SEEDS} paired seeds each",
        claim_specialist),
    ClaimSpec(
        6, "Generalists",
        "Prompted LLMs, without fine-tuning, handle these constraints poorly, doing worse than LLOME and LaMBO-2.",
        VERSION_LATE,
        "final best f, LLOME-MargE (and LaMBO-2) minus the prompted LLM, per seed averaged over the instances "
        "where both ran; the headline numbers are those of the comparison that limits the verdict",
        f"Supported if the {CONFIDENCE:.0%} interval of (best f of LLOME-MargE - best f prompted) and that of "
        "(best f of LaMBO-2 - best f prompted) both lie above 0; contradicted if either lies below 0; else "
        "inconclusive. Feasible fractions of the paid proposals per instance are reported beside it (LaMBO-2's too).",
        f"trace.csv rows of prompted, llome_marge and lambo2 on the same instances, at least {MIN_PAIRED_SEEDS} "
        "paired seeds; rounds.csv rows of prompted for its feasibility",
        claim_generalists),
)


def method_present(study: Study, method: str, spec: ClaimSpec) -> bool:
    table = {2: study.calibration, 3: study.rounds}.get(spec.number, study.trace)
    return table is not None and bool((table["method"] == method).any())


def what_would_decide(verdict: str, limiting: dict | None, missing: list[str], needs: str) -> str:
    if verdict == NOT_TESTABLE:
        return f"Data this study does not have: {needs}."
    if verdict == INCONCLUSIVE:
        text = seeds_to_decide(limiting)
        if missing:
            text += f"the missing comparisons ({'; '.join(missing)}); "
        return (text + f"in all, {needs}.").strip()
    label = limiting["label"] if limiting else "the deciding comparison"
    return (f"Decided under the rules above by '{label}'. Fresh seeds (not the tuning seeds) with the same rules "
            "would test it; the verdict would change only if its interval moved across the rule's threshold.")


def judge_claim(spec: ClaimSpec, study: Study, outcomes: pd.DataFrame) -> dict:
    analysis = spec.analyse(study, outcomes)
    verdict, limiting, missing = analysis["judge"](MARGE)
    large = None
    if method_present(study, MARGE_LARGE, spec):
        large = analysis["judge"](MARGE_LARGE)[0]
    numbers = {key: (limiting or {}).get(key) for key in ("estimate", "ci_low", "ci_high", "p_value", "test")}
    entry = {
        "id": spec.number,
        "title": spec.title,
        "claim": spec.statement,
        "paper_version": spec.version,
        "metric": spec.metric,
        "decision_rule": spec.rule,
        "instance": analysis["instance"],
        "headline": limiting["label"] if limiting else None,
        **numbers,
        "n_seeds": limiting["n_seeds"] if limiting else 0,
        "verdict": verdict,
        "verdict_at_6x128": large,
        "what would decide it": what_would_decide(verdict, limiting, missing, spec.needs),
        "comparisons": analysis["comparisons"],
        "notes": analysis.get("notes", []),
    }
    if spec.number in (1, 2, 3):
        entry["verdict_per_variant"] = {variant: analysis["judge"](variant)[0] for variant in LLOME_VARIANTS
                                        if method_present(study, variant, spec)}
    if "calls_to_reach" in analysis:
        entry["calls_to_reach"] = analysis["calls_to_reach"]
    return entry


def judge_claims(study: Study) -> list[dict]:
    outcomes = run_outcomes(study)
    return [judge_claim(spec, study, outcomes) for spec in CLAIMS]


# Rendering

def _clean(value):
    """JSON-ready and byte-stable: floats rounded, non-finite ones null, numpy scalars made plain."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if not math.isfinite(value):
            return None
        return round(float(value), JSON_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0
    return value


def claims_json(claims: list[dict]) -> str:
    return json.dumps(_clean(claims), indent=2, sort_keys=True, allow_nan=False) + "\n"


def _number(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _p_value(value) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _interval(entry: dict) -> str:
    if entry.get("estimate") is None:
        return "n/a"
    return f"{_number(entry['estimate'])} [{_number(entry['ci_low'])}, {_number(entry['ci_high'])}]"


def decision_rules_markdown() -> str:
    lines = [
        "## Decision rules",
        "",
        "Each claim is a prediction about the sign (or the size) of a difference between methods run on the same "
        "seeds. Every interval below is a paired percentile bootstrap over seeds "
        f"(`llome.stats.paired_bootstrap_ci`): {CONFIDENCE:.0%} confidence, {N_RESAMPLES:,} resamples, bootstrap "
        f"seed {BOOTSTRAP_SEED}, so the numbers are exactly reproducible. The verdicts are:",
        "",
        f"- **{SUPPORTED}**: the interval lies wholly on the side the claim predicts;",
        f"- **{CONTRADICTED}**: it lies wholly on the other side;",
        f"- **{INCONCLUSIVE}**: it straddles the threshold, or the cell has fewer than {MIN_PAIRED_SEEDS} paired "
        f"seeds: **a cell with fewer than {MIN_PAIRED_SEEDS} paired seeds is at most {INCONCLUSIVE}**, whatever its "
        "interval;",
        f"- **{NOT_TESTABLE}**: the tables hold no data for it.",
        "",
        "A claim that needs several comparisons (against both GAs, against SFT and DPO) is supported only when all "
        "are, and contradicted as soon as one is; its headline numbers are those of the comparison that limits "
        "the verdict. Claims 1-3, which speak of LLMs in general, are judged on LLOME-MargE, the method the "
        "paper introduces, so that no variant is picked after the fact; the other variants get their own verdicts "
        "in the tables, and `verdict at 6x128` repeats the judgement with MargE on the "
        "larger model (`llome_marge_6x128`), so capacity's effect on the verdict shows. p-values (Wilcoxon "
        "signed-rank or sign test, two-sided) are reported beside the intervals and decide nothing.",
        "",
        "| constant | value | used for |",
        "|---|---|---|",
        f"| `MIN_PAIRED_SEEDS` | {MIN_PAIRED_SEEDS} | fewer paired seeds in a cell: at most {INCONCLUSIVE} |",
        f"| `CONFIDENCE` | {CONFIDENCE} | every interval |",
        f"| `N_RESAMPLES`, `BOOTSTRAP_SEED` | {N_RESAMPLES}, {BOOTSTRAP_SEED} | every bootstrap |",
        f"| `WELL_CALIBRATED_RHO` | {WELL_CALIBRATED_RHO} | claim 2: a likelihood that orders rewards this well is "
        "calibrated |",
        f"| `MIN_CALIBRATION_BINS` | {MIN_CALIBRATION_BINS} | claim 2: non-empty deciles needed for a round's rho |",
        f"| `MIN_TREND_ROUNDS` | {MIN_TREND_ROUNDS} | claim 3: rounds needed for a trend |",
        f"| `PAR_MARGIN` | {PAR_MARGIN} | claim 5: \"on a par\" band for regret AUC, times the optimum |",
        f"| `LEVEL_DECIMALS` | {LEVEL_DECIMALS} | f levels are merged at this many decimals |",
        "",
        "Per claim:",
        "",
    ]
    for spec in CLAIMS:
        lines.append(f"{spec.number}. **{spec.title}.** {spec.rule}")
    lines += ["", "Regret AUC is `llome.stats.regret_auc`: the mean of `optimum - best f so far` over the whole "
              "oracle budget, seed data included (until a run has found something feasible its f counts as 0). An "
              "\"f level\" is any value of f that some run on the instance reached; f moves in whole motif steps, "
              "so calls to each level, censored at the budget (`llome.stats.censored_paired_comparison`), resolve "
              "more than the final best f does."]
    return "\n".join(lines)


def _comparison_table(comparisons: list[dict]) -> list[str]:
    lines = ["| comparison | estimate [95% CI] | n seeds | test | p | verdict |", "|---|---|---:|---|---:|---|"]
    for entry in comparisons:
        lines.append(f"| {entry['label']} | {_interval(entry)} | {entry['n_seeds']} | {entry['test'] or '-'} | "
                     f"{_p_value(entry['p_value'])} | {entry['verdict'] or '-'} |")
    return lines


def _claim_section(claim: dict, figures_link: str) -> list[str]:
    figure = f"{figures_link}/{CLAIM_FIGURES[claim['id']]}"
    lines = [f'<a id="claim-{claim["id"]}"></a>', "", f"## Claim {claim['id']}: {claim['title']}", "",
             f"**The claim** ({claim['paper_version']}; docs/method.md §8's wording): {claim['claim']}", "",
             f"**Metric:** {claim['metric']}." + (f" Instance: `{claim['instance']}`." if claim["instance"] else ""),
             "", f"**Rule:** {claim['decision_rule']}", "",
             f"**Result:** {_interval(claim)}, n = {claim['n_seeds']} seeds"
             + (f" ({claim['headline']})" if claim["headline"] else "")
             + (f"; {claim['test']}, p = {_p_value(claim['p_value'])}" if claim["p_value"] is not None else "") + ".",
             "", f"**Verdict:** {claim['verdict']}; with MargE at 6x128: {claim['verdict_at_6x128'] or 'not run'}."]
    if claim.get("verdict_per_variant"):
        lines += ["", "Per variant: " + ", ".join(f"`{k}` {v}" for k, v in claim["verdict_per_variant"].items()) + "."]
    if claim.get("notes"):
        lines += ["", "**Read with:** " + " ".join(claim["notes"])]
    lines += ["", f"**What would decide it:** {claim['what would decide it']}", "",
              f"![Claim {claim['id']}: {claim['title']}]({figure})", ""]
    if claim["comparisons"]:
        lines += _comparison_table(claim["comparisons"]) + [""]
    if claim.get("calls_to_reach"):
        lines += ["Calls to reach each f level (Kaplan-Meier median over seeds, censored at the budget; `>budget` "
                  "where fewer than half got there):", "", "| method | level | reached by | median calls |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {row['method']} | {row['level']:.4f} | {row['reached_fraction']:.0%} | "
                  f"{'>budget' if row['median_calls'] is None else format(int(row['median_calls']), ',')} |"
                  for row in claim["calls_to_reach"]] + [""]
    return lines


def doc_header(how: str) -> list[str]:
    return ["# Claims: verdicts from the claims study", "",
            f"{how} Do not edit it by hand: change `llome/claims.py` or the tables and regenerate. The "
            "interface of the tables is in the docstring of `llome/claims.py`.", "",
            f"The claims are those of docs/method.md §8, from {PAPER}: claims 1-4 from the abstract of versions "
            "v1-v3, claims 5-6 from version v4 (ICML 2025).", ""]


def claims_doc(claims: list[dict], study: Study, figures_link: str) -> str:
    """The doc; `figures_link` is the figures' folder relative to the doc's."""
    tuning = "; ".join(f"{group}: {', '.join(map(str, seeds)) or 'none'}"
                       for group, seeds in study.tuning_seeds.items())
    lines = doc_header(f"Generated by `{COMMAND}` from the tables in `{DEFAULT_TABLES}/`.") + [
        "## Seeds", "",
        f"Reported (every number below): {', '.join(map(str, study.reported_seeds))}.", "",
        f"Tuning (used to choose settings, never reported): {tuning or 'none'}.", "",
        decision_rules_markdown(), ""]
    for claim in claims:
        lines += _claim_section(claim, figures_link)
    return "\n".join(lines).rstrip("\n") + "\n"


def placeholder_doc() -> str:
    """docs/claims.md before the study has run: the rules only."""
    how = (f"Generated by `python -m llome.claims --placeholder`, before the claims study has run; once it has "
           f"written `{DEFAULT_TABLES}/`, `{COMMAND}` regenerates this page with the verdicts.")
    lines = doc_header(how) + ["**The claims study has not been run yet**: there are no verdicts. The rules that "
                               "will decide them are fixed in advance:", "", decision_rules_markdown()]
    return "\n".join(lines).rstrip("\n") + "\n"


def readme_block(claims: list[dict], doc_link: str = DEFAULT_DOC, json_link: str = DEFAULT_JSON,
                 figures_link: str = DEFAULT_FIGURES) -> str:
    lines = [f"The paper's claims and the verdicts of this project's claims study ([rules and details]({doc_link})):",
             "",
             "| the paper's claim | this project's figure | command | numbers (95% CI) | verdict |",
             "|---|---|---|---|---|"]
    for claim in claims:
        numbers = (f"{_interval(claim)}, n = {claim['n_seeds']} ({claim['headline']})" if claim["estimate"] is not None
                   else "no data")
        large = f" (6x128: {claim['verdict_at_6x128']})" if claim["verdict_at_6x128"] else ""
        lines.append(f"| {claim['id']}. {claim['claim']} ({claim['paper_version']}) | "
                     f"[figure]({figures_link}/{CLAIM_FIGURES[claim['id']]}), "
                     f"[details]({doc_link}#claim-{claim['id']}) | `make claims` | {numbers} | "
                     f"**{claim['verdict']}**{large} |")
    lines += ["", f"Every number, with each comparison behind it: `{json_link}`."]
    return "\n".join(lines)


def readme_with_block(readme_text: str, block: str, readme_path: str = DEFAULT_README) -> str:
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), flags=re.S)
    if not pattern.search(readme_text):
        raise ValueError(f"{readme_path} has no {README_START} ... {README_END} markers for the claims table")
    return pattern.sub(lambda _: f"{README_START}\n{block}\n{README_END}", readme_text, count=1)


def _relative_to(path, document) -> str:
    """`path` as a link from `document`."""
    return Path(os.path.relpath(Path(path).resolve(), Path(document).resolve().parent)).as_posix()


def render(tables, readme, doc=DEFAULT_DOC, json_path=DEFAULT_JSON,
           figures=DEFAULT_FIGURES) -> tuple[str, str, str | None]:
    """The three outputs, as text: the claims JSON, the doc and the whole README with its claims table (None when
    `readme` is None). `figures` is the folder of llome.claims_figures' output, which the doc and the table link
    to."""
    study = load_study(tables)
    claims = _clean(judge_claims(study))
    json_text, doc_text = claims_json(claims), claims_doc(claims, study, _relative_to(figures, doc))
    if readme is None:
        return json_text, doc_text, None
    block = readme_block(claims, _relative_to(doc, readme), _relative_to(json_path, readme),
                         _relative_to(figures, readme))
    return json_text, doc_text, readme_with_block(Path(readme).read_text(), block, str(readme))


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llome.claims", description=__doc__.split("\n")[0])
    parser.add_argument("--tables", default=DEFAULT_TABLES, type=Path)
    parser.add_argument("--json", default=DEFAULT_JSON, type=Path)
    parser.add_argument("--doc", default=DEFAULT_DOC, type=Path)
    # No default: tables from a partial or scratch study must not rewrite the project's README by accident.
    parser.add_argument("--readme", default=None, type=Path,
                        help=f"the README whose claims table is rewritten (the study's: {DEFAULT_README}); "
                             f"left alone when not given")
    parser.add_argument("--figures", default=DEFAULT_FIGURES, type=Path,
                        help="where llome.claims_figures writes the figures the doc and the table link to")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming the first file that differs from its regeneration")
    parser.add_argument("--placeholder", action="store_true",
                        help="write only the doc, saying the study has not run, with the decision rules")
    args = parser.parse_args(argv)
    if args.placeholder:
        outputs = [(args.doc, placeholder_doc())]
    else:
        try:
            json_text, doc_text, readme_text = render(args.tables, args.readme, args.doc, args.json, args.figures)
        except (StudyTableError, ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        outputs = [(args.json, json_text), (args.doc, doc_text)]
        if args.readme is not None:
            outputs.append((args.readme, readme_text))
    if args.check:
        for path, text in outputs:
            if not path.exists() or path.read_bytes() != text.encode():
                print(f"{path} differs from what `python -m llome.claims` regenerates", file=sys.stderr)
                return 1
        return 0
    for path, text in outputs:
        _write(path, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
