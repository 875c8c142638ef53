"""Collect every run into figures, metrics/summary.json and a self-contained HTML report."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

from llome.io import atomic_path, read_json, read_table, write_csv, write_json
from llome.metrics import calibration, regret_on_grid
from llome.provenance import file_digest, make_record, write_record
from llome.plots import (per_round_medians, plot_calibration, plot_difficulty, plot_regret, plot_round_panels,
                         regret_bands)

VALIDITY_PANELS = [
    ("generation.parsable", "parsable"), ("generation.correct_length", "right length"),
    ("generation.in_range", "values in range (valid)"), ("labelled.feasible", "feasible (labelled)"),
    ("generation.repeated_input", "repeats its input"), ("labelled.improved", "improves on its input"),
]
COLLAPSE_PANELS = [
    ("generation.mean_distance", "mean Hamming distance to input"),
    ("generation.unique_fraction", "unique fraction of valid proposals"),
    ("generation.mean_pairwise_distance", "mean pairwise distance of proposals"),
    ("min_temperature", "lowest sampling temperature"),
    ("labelled.mean_score", "mean score of labelled (feasible)"),
    ("labelled.best_score", "best score of labelled"),
]


def run_summary(trace: pd.DataFrame, diagnostic_calls: dict[int, int] | None = None) -> dict:
    """Per-seed outcome of one method's regret trace, and the medians the README reports.

    `oracle_calls` are the paid calls (the trace holds nothing else); `diagnostic_calls` (per seed, none
    for a GA) are the unpaid ones a run made for its metrics, reported beside them. Regret comes from the
    trace, so it is against the objective's own optimum, and NaN (with `solved` unknown) without one.
    """
    diagnostic_calls = diagnostic_calls or {}
    per_seed = []
    for seed, run in trace.groupby("seed"):
        run = run.sort_values("oracle_calls")
        best = float(run["best_value"].max())
        first_best = int(run["oracle_calls"].iloc[int(np.argmax(run["best_value"].to_numpy() >= best))])
        regret = float(run["regret"].min()) if run["regret"].notna().any() else float("nan")
        per_seed.append({"seed": int(seed), "oracle_calls": int(run["oracle_calls"].max()),
                         "diagnostic_oracle_calls": int(diagnostic_calls.get(int(seed), 0)), "best_value": best,
                         "regret": regret, "solved": None if np.isnan(regret) else bool(regret <= 0),
                         "oracle_calls_to_best": first_best})
    table = pd.DataFrame(per_seed)
    solved = table["solved"]
    return {
        "oracle_calls": float(table["oracle_calls"].median()),
        "diagnostic_oracle_calls": float(table["diagnostic_oracle_calls"].median()),
        "best_value": float(table["best_value"].median()),
        "regret": float(table["regret"].median()),
        "solved_fraction": float("nan") if solved.isna().any() else float(solved.astype(bool).mean()),
        "oracle_calls_to_best": float(table["oracle_calls_to_best"].median()),
        "num_seeds": int(len(table)),
        "per_seed": per_seed,
    }


def add_prompted_validity(method_summary: dict, prompted_summary: dict) -> None:
    """The prompted LLM's validity and feasibility beside its best f: per seed, and their medians."""
    own = {int(row["seed"]): row for row in prompted_summary["per_seed"]}
    missing = sorted({row["seed"] for row in method_summary["per_seed"]} - set(own))
    if missing:
        raise ValueError(f"data/prompted/summary.json has no seed {missing[0]}; rerun the prompted stage")
    for row in method_summary["per_seed"]:
        row.update({key: own[row["seed"]][key] for key in PROMPTED_SEED_FIELDS})
    for key in ("in_range", "feasible"):
        method_summary[f"median_{key}"] = float(np.median([row[key] for row in method_summary["per_seed"]]))


def diagnostic_calls_per_seed(rounds: pd.DataFrame) -> dict[int, int]:
    """Unpaid calls of one LLOME method, summed over its rounds, per seed."""
    if "diagnostic_oracle_calls" not in rounds.columns:
        return {}
    return {int(seed): int(calls) for seed, calls in rounds.groupby("seed")["diagnostic_oracle_calls"].sum().items()}


def short_rounds(rounds: pd.DataFrame) -> list[dict]:
    """The rounds that paid for fewer than n labels because they had fewer new valid candidates."""
    if "labels_short" not in rounds.columns:
        return []
    short = rounds[rounds["labels_short"] > 0]
    return [{"seed": int(r.seed), "round": int(r.round), "labels_short": int(r.labels_short)} for r in short.itertuples()]


def _read_csv(path: Path) -> pd.DataFrame:
    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist; run the stage that writes it first")
    return pd.read_csv(path)


def lowest_temperature(temperatures) -> float:
    """A round's lowest sampling temperature from its space-separated list; NaN for a method that samples none."""
    return float("nan") if pd.isna(temperatures) else min(map(float, str(temperatures).split()))


# Baselines with a stage and a data directory of their own, named as their method.
BASELINE_STAGES = ("lambo2", "prompted")
# What the prompted LLM's own summary adds per seed: how many of its replies were valid, and of its labels feasible.
PROMPTED_SEED_FIELDS = ("proposals", "parsable", "correct_length", "in_range", "feasible", "seed_data_best_value")


def collect(cfg: dict, data_dir: Path):
    """Every configured method's trace and rounds, and the labels of exactly the configured seeds and rounds.

    LaMBO-2 and the prompted LLM (`lambo2`, `prompted` in the config) add their traces and rounds; neither is
    trained on likelihoods of its labels, so they have no calibration labels.
    """
    data_dir = Path(data_dir)
    traces = [_read_csv(data_dir / "ga_baseline" / "regret.csv")]
    rounds, labelled = [], []
    for method in BASELINE_STAGES:
        if method in cfg:
            traces.append(_read_csv(data_dir / method / "regret.csv").assign(method=method))
            rounds.append(_read_csv(data_dir / method / "rounds.csv").assign(method=method))
    for method in cfg["methods"]:
        run_root = data_dir / "llome" / method
        traces.append(_read_csv(run_root / "regret.csv").assign(method=f"llome_{method}"))
        rounds.append(_read_csv(run_root / "rounds.csv").assign(method=f"llome_{method}"))
        for seed in cfg["seeds"]:
            for index in range(1, cfg["rounds"] + 1):
                path = run_root / f"seed_{seed}" / f"round_{index:02d}" / "labelled.parquet"
                table = read_table(path)[["loglik", "reward", "score"]]
                labelled.append(table.assign(method=f"llome_{method}"))
    trace = pd.concat(traces, ignore_index=True)
    rounds = pd.concat(rounds, ignore_index=True)
    if "temperatures" in rounds.columns:
        rounds["min_temperature"] = rounds["temperatures"].map(lowest_temperature)
    labelled = pd.concat(labelled, ignore_index=True) if labelled else pd.DataFrame(columns=["loglik", "reward", "method"])
    return trace, rounds, labelled


def end_unsolved_runs(per_seed: pd.DataFrame, trace: pd.DataFrame, whole_method: bool = False) -> pd.DataFrame:
    """`per_seed` (regret_on_grid of `trace`) with each run's regret NaN past its last paid call, unless the run
    reached the optimum there: a run that stopped early (the prompted LLM's smaller budget, a DPO run left with
    nothing new to label) is not drawn as if it had spent the calls it never made, while a solved run holds 0.

    With `whole_method`, a method's runs end together, when its last one does: until then a run that stopped holds
    its final regret, which is its best within any larger budget. That is what a median over seeds needs; without
    it, the median past the first run's end would be that of the runs that kept finding something to label."""
    ends = (trace.sort_values("oracle_calls", kind="stable").groupby(["method", "seed"])
            .agg(last_call=("oracle_calls", "max"), final_regret=("regret", "last")).reset_index())
    joined = per_seed.merge(ends, on=["method", "seed"], how="left", validate="many_to_one")
    unspent = (joined["oracle_calls"] > joined["last_call"]) & ~(joined["final_regret"] <= 0)
    if whole_method:
        unspent = unspent.groupby([joined["method"], joined["oracle_calls"]]).transform("all")
    return per_seed.assign(regret=per_seed["regret"].where(~unspent.to_numpy()))


def build_report(cfg: dict, data_dir, figures_dir, plots_dir, summary_path, report_path):
    data_dir, figures_dir, plots_dir = Path(data_dir), Path(figures_dir), Path(plots_dir)
    name = cfg["function"]
    trace, rounds, labelled = collect(cfg, data_dir)

    budget = int(cfg["oracle_budget"])
    # LaMBO-2 may run more rounds than LLOME (the paper profile's 12 against 9): the axis shows all of it.
    widest = max([budget] + [int(cfg[m]["oracle_budget"]) for m in BASELINE_STAGES if m in cfg])
    grid = np.unique(np.linspace(1, widest, 400).astype(int))
    on_grid = regret_on_grid(trace, grid, runs=("method", "seed"))
    per_seed = end_unsolved_runs(on_grid, trace)
    bands = regret_bands(end_unsolved_runs(on_grid, trace, whole_method=True))
    write_csv(plots_dir / "regret.csv", bands)
    # The methods that start from the GA seed data: the LLOME phase's panel fits its regret axis to their runs.
    from_seed_data = [f"llome_{m}" for m in cfg["methods"]] + [m for m in BASELINE_STAGES if m in cfg]
    figures = [plot_regret(bands, per_seed, name, cfg["seed_data_oracle_calls"], widest, figures_dir / "regret.png",
                           from_seed_data)]

    medians = per_round_medians(rounds, [c for c, _ in VALIDITY_PANELS + COLLAPSE_PANELS])
    # Vega-Lite reads a dot in a field name as nesting: the DVC table spells them with underscores.
    write_csv(plots_dir / "rounds.csv", medians.rename(columns=lambda c: c.replace(".", "_")))
    figures.append(plot_round_panels(rounds, VALIDITY_PANELS, f"Validity of proposals per round on {name}",
                                     figures_dir / "validity.png"))
    figures.append(plot_round_panels(rounds, COLLAPSE_PANELS, f"Generator collapse per round on {name}",
                                     figures_dir / "collapse.png", ylim01=False))

    correlations = {m: calibration(rows, reward_column="reward", loglik_column="loglik")["spearman"]
                    for m, rows in labelled.groupby("method")}
    write_csv(plots_dir / "calibration.csv", labelled[["method", "loglik", "reward"]])
    figures.append(plot_calibration(labelled, correlations, name, figures_dir / "calibration.png"))

    difficulty = _read_csv(data_dir / "test_functions" / "difficulty.csv")
    ga_difficulty = _read_csv(data_dir / "ga_difficulty" / "ga_difficulty.csv")
    write_csv(plots_dir / "difficulty.csv", difficulty)
    figures.append(plot_difficulty(difficulty, ga_difficulty, figures_dir / "difficulty.png"))

    methods = {method: run_summary(rows, diagnostic_calls_per_seed(rounds[rounds["method"] == method]))
               for method, rows in trace.groupby("method", sort=True)}
    for method, summary_of_method in methods.items():
        if method.startswith("llome_") or method == "prompted":
            summary_of_method["short_rounds"] = short_rounds(rounds[rounds["method"] == method])
    if "prompted" in methods:
        add_prompted_validity(methods["prompted"], read_json(data_dir / "prompted" / "summary.json"))
    summary = {
        "function": name,
        "profile": cfg["profile"],
        "oracle_budget": budget,
        "methods": methods,
        "calibration_spearman": correlations,
    }
    for method in BASELINE_STAGES:
        if method in cfg:
            summary[f"{method}_oracle_budget"] = int(cfg[method]["oracle_budget"])
    write_json(summary_path, summary)
    inputs = [data_dir / "ga_baseline" / "regret.csv", data_dir / "test_functions" / "difficulty.csv",
              data_dir / "ga_difficulty" / "ga_difficulty.csv"]
    inputs += [data_dir / "llome" / m / f for m in cfg["methods"] for f in ("regret.csv", "rounds.csv")]
    for method in BASELINE_STAGES:
        if method in cfg:
            inputs += [data_dir / method / f for f in ("regret.csv", "rounds.csv")]
    if "prompted" in cfg:
        inputs.append(data_dir / "prompted" / "summary.json")
    write_record(plots_dir, make_record(cfg, code=[__name__],
                                        inputs={str(p.relative_to(data_dir)): file_digest(p) for p in inputs}))
    write_html_report(summary, figures, report_path)
    return summary, figures


CAPTIONS = {
    "regret.png": "Regret (1 − best f so far) against cumulative oracle calls. Left, the whole run: median over seeds "
                  "with a min–max band; the methods that start from the GA seed data include the GA calls that made "
                  "it. Right, the calls after the seed data (the dashed box at left): each method's median thick and "
                  "each seed's run thin, on a regret axis fitted to the methods that start from the seed data; a "
                  "method off that axis is named at its edge with its final median. The GAs are dash-dotted: one dot "
                  "for the authors' settings, two for the best of a sweep. A run's line ends at its last paid call (the "
                  "prompted LLM's budget is smaller; a run may find nothing new to label), unless it reached the "
                  "optimum there; a median holds a run that ended at its final value, and ends with its method's "
                  "last run.",
    "validity.png": "Per round: fractions of generations that parse, have the right length, stay in range, are feasible, "
                    "repeat their input, or improve on it; the median over seeds as a line, the min–max over seeds as "
                    "a band.",
    "collapse.png": "Generator collapse: edit distance and diversity of proposals per round, and the lowest sampling "
                    "temperature of each round (it moves only when `temperature_schedule` is on); the median over seeds "
                    "as a line, the min–max over seeds as a band.",
    "calibration.png": "Calibration: the model's length-normalised likelihood of each labelled candidate against its "
                       "true reward, one column per method. Above, every candidate as a faint point; below, the mean "
                       "reward of each tenth of the candidates ordered by likelihood, with a normal 95% interval.",
    "difficulty.png": "Difficulty of each Ehrlich instance: exact feasible and optimal fractions (log10 bars; a count "
                      "that was not computed, for the reason given in data/test_functions/difficulty.csv, is marked "
                      "\"not computed\" instead of a bar), and the GA's oracle calls to reach f = 1.",
}


def _diagnostic_calls(method_summary: dict) -> str:
    """A summary written before diagnostic calls were counted says nothing of them: shown as unknown, not as 0."""
    calls = method_summary.get("diagnostic_oracle_calls")
    return "n/a" if calls is None else f"{calls:,.0f}"


def write_html_report(summary: dict, figures: list[Path], path) -> None:
    """One file, images inlined: it needs no network and no server, unlike `dvc plots show`."""
    rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{s['oracle_calls']:,.0f}</td><td>{_diagnostic_calls(s)}</td>"
        f"<td>{s['best_value']:.3f}</td>"
        f"<td>{s['regret']:.3f}</td><td>{s['solved_fraction']:.2f}</td><td>{s['oracle_calls_to_best']:,.0f}</td></tr>"
        for m, s in summary["methods"].items())
    images = "".join(
        f"<figure><img alt='{html.escape(p.name)}' src='data:image/png;base64,"
        f"{base64.b64encode(Path(p).read_bytes()).decode()}'><figcaption>{html.escape(CAPTIONS.get(p.name, ''))}"
        f"</figcaption></figure>" for p in figures)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>LLOME on {html.escape(summary['function'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;}}img{{max-width:100%;}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style></head>
<body><h1>LLOME on {html.escape(summary['function'])} ({html.escape(summary['profile'])} profile)</h1>
<p>Medians over seeds at an oracle budget of {summary['oracle_budget']:,} calls per run.</p>
<p>Paid oracle calls are what the optimiser spent; diagnostic calls were made only to measure it
(scores of unlabelled generation inputs, for "improves on its input") and never reached its training data.</p>
<table id="summary"><tr><th>method</th><th>paid oracle calls</th><th>diagnostic calls (unpaid)</th><th>best f</th><th>regret</th><th>solved fraction</th>
<th>oracle calls to best</th></tr>{rows}</table>{images}</body></html>"""
    with atomic_path(path) as tmp:
        tmp.write_text(page)


def results_markdown(summary: dict, figures_dir: str = "docs/figures") -> str:
    """The README's results section, generated from metrics/summary.json."""
    lines = [
        f"Profile `{summary['profile']}`, function `{summary['function']}`, an oracle budget of "
        f"{summary['oracle_budget']:,} calls per run (LLOME's includes its GA seed data); medians over "
        f"{max(s['num_seeds'] for s in summary['methods'].values())} seeds.",
        "",
        "Paid oracle calls are what the optimiser spent; diagnostic calls were made only to measure it (scores "
        "of unlabelled generation inputs, for \"improves on its input\") and never reached its training data.",
        "",
        "| method | paid oracle calls | diagnostic calls (unpaid) | best f | regret | solved fraction | "
        "oracle calls to best | best f per seed |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for method, s in summary["methods"].items():
        per_seed = ", ".join(f"{r['best_value']:.3f}" for r in sorted(s["per_seed"], key=lambda r: r["seed"]))
        lines.append(f"| {method} | {s['oracle_calls']:,.0f} | {_diagnostic_calls(s)} | "
                     f"{s['best_value']:.3f} | {s['regret']:.3f} | "
                     f"{s['solved_fraction']:.2f} | {s['oracle_calls_to_best']:,.0f} | {per_seed} |")
    short = {m: s["short_rounds"] for m, s in summary["methods"].items() if s.get("short_rounds")}
    lines.append("")
    if "lambo2_oracle_budget" in summary:
        lines.append(f"LaMBO-2 (`lambo2`) starts from the same GA seed data and pays for the same n labels a round, "
                     f"{summary['lambo2_oracle_budget']:,} calls per run in all, every proposal counted.")
        lines.append("")
    if "prompted" in summary["methods"]:
        prompted = summary["methods"]["prompted"]
        feasible = ("it paid for no label" if np.isnan(prompted["median_feasible"]) else
                    f"{prompted['median_feasible']:.0%} of its paid labels feasible")
        lines.append(f"The prompted LLM (`prompted`, never trained) starts from the same GA seed data and pays for at "
                     f"most {summary['prompted_oracle_budget']:,} calls per run; a median of "
                     f"{prompted['median_in_range']:.0%} of its replies were valid sequences, and {feasible}.")
        lines.append("")
    if short:
        lines.append("Rounds that had fewer than n new candidates, and so paid for fewer labels: " + "; ".join(
            f"{m} " + ", ".join(f"seed {r['seed']} round {r['round']} ({r['labels_short']} short)" for r in rounds)
            for m, rounds in short.items()) + ".")
    else:
        lines.append("Every LLOME round paid for exactly n labels.")
    lines.append("")
    for name, caption in CAPTIONS.items():
        lines.append(f"![{caption}]({figures_dir}/{name})")
        lines.append("")
    return "\n".join(lines)


def update_readme(readme="README.md", summary_path="metrics/summary.json", figures_dir="figures",
                  docs_dir="docs/figures") -> None:
    """Rewrite the block between the RESULTS markers and copy the figures it embeds next to it."""
    import json
    import re
    import shutil

    summary = json.loads(Path(summary_path).read_text())
    Path(docs_dir).mkdir(parents=True, exist_ok=True)
    for name in CAPTIONS:
        shutil.copy(Path(figures_dir) / name, Path(docs_dir) / name)
    text = Path(readme).read_text()
    block = f"<!-- RESULTS -->\n{results_markdown(summary, docs_dir)}\n<!-- /RESULTS -->"
    if "<!-- /RESULTS -->" in text:
        text = re.sub(r"<!-- RESULTS -->.*<!-- /RESULTS -->", lambda _: block, text, flags=re.S)
    else:
        text = text.replace("<!-- RESULTS -->", block)
    with atomic_path(readme) as tmp:
        tmp.write_text(text)


if __name__ == "__main__":
    update_readme()
