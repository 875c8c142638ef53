"""llome.claims on synthetic study tables whose verdicts are known by construction."""

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llome import claims
from llome.claims import (CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, SUPPORTED, StudyTableError, judge_claims,
                          load_study, main, placeholder_doc, render)
from llome.config import parse_params

ROOT = Path(__file__).resolve().parents[1]
FULL_RESAMPLES = claims.N_RESAMPLES
BUDGET = 1000
LEVELS = (0.25, 0.5, 0.75, 1.0)
# (name, difficulty_rank, role): the main instance is middling, so that claim 5 has two middle instances.
INSTANCES = (("easy", 1, "extra"), ("main_instance", 2, "main"), ("middling", 3, "solvable"), ("hard", 4, "extra"))
README = "# project\n\n<!-- claims:start -->\n<!-- claims:end -->\n\nMore text.\n"


def _method_noise(method: str, seed: int, spread: float) -> float:
    rng = np.random.default_rng([zlib.crc32(method.encode()), seed])
    return float(rng.uniform(1 - spread, 1 + spread))


def _trace_rows(instance: str, method: str, seed: int, speed: float, noise: float) -> list[dict]:
    """A run that reaches f level k/4 after 200 k / speed calls, scaled by a seed effect that every method
    shares (what pairing by seed removes) and by its own noise."""
    seed_effect = np.random.default_rng(seed).uniform(0.8, 1.25)
    rows = [{"instance": instance, "method": method, "seed": seed, "oracle_calls": 50, "best_value": 0.0}]
    for k, level in enumerate(LEVELS, start=1):
        calls = int(200 * k / speed * seed_effect * _method_noise(method, seed, noise))
        if 50 < calls <= BUDGET:
            rows.append({**rows[0], "oracle_calls": calls, "best_value": level})
    final = rows[-1]["best_value"]
    if rows[-1]["oracle_calls"] < BUDGET:
        rows.append({**rows[0], "oracle_calls": BUDGET, "best_value": final})
    return rows


def write_study(folder: Path, speeds: dict, seeds=range(12), tuning=None, noise: float = 0.05,
                collapse: float = 1.0, calibration: bool = True) -> Path:
    """Study tables in ``folder``. ``speeds`` maps a method to its speed on every instance, or to a dict of
    speeds per instance (an instance left out: no runs there)."""
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{"instance": name, "optimum": 1.0, "difficulty_rank": rank, "oracle_budget": BUDGET,
                   "seed_data_calls": 200, "role": role} for name, rank, role in INSTANCES]
                 ).to_csv(folder / "instances.csv", index=False)
    trace, rounds, bins = [], [], []
    for method, speed in speeds.items():
        per_instance = speed if isinstance(speed, dict) else {name: speed for name, _, _ in INSTANCES}
        for instance, instance_speed in per_instance.items():
            for seed in seeds:
                trace += _trace_rows(instance, method, seed, instance_speed, noise)
                if not (method.startswith("llome_") or method == "prompted") or instance != "main_instance":
                    continue
                rng = np.random.default_rng([zlib.crc32(method.encode()), seed, 1])
                for rnd in range(1, 9):
                    rounds.append({"instance": instance, "method": method, "seed": seed, "round": rnd,
                                   "paid_calls": 100, "diagnostic_calls": 20, "valid_fraction": 0.9,
                                   "feasible_fraction": min(1.0, 0.3 * instance_speed),
                                   "edit_distance": 6 - 0.4 * collapse * rnd + rng.normal(0, 0.2),
                                   "unique_fraction": 0.9 - 0.05 * collapse * rnd + rng.normal(0, 0.01),
                                   "mean_pairwise_distance": 10 - 0.5 * collapse * rnd + rng.normal(0, 0.3),
                                   "best_score": 0.5, "mean_score": 0.2})
                    for decile in range(10):
                        bins.append({"instance": instance, "method": method, "seed": seed, "round": rnd,
                                     "bin": decile, "n": 50, "mean_loglik": -3 + 0.2 * decile,
                                     "mean_reward": 0.01 * decile + rng.normal(0, 0.03),
                                     "reward_ci_low": 0.0, "reward_ci_high": 0.1})
    pd.DataFrame(trace).to_csv(folder / "trace.csv", index=False)
    columns = list(claims.SCHEMAS["rounds.csv"])
    pd.DataFrame(rounds, columns=columns).to_csv(folder / "rounds.csv", index=False)
    if calibration:
        pd.DataFrame(bins, columns=list(claims.SCHEMAS["calibration.csv"])).to_csv(folder / "calibration.csv",
                                                                                      index=False)
    (folder / "seeds.json").write_text(json.dumps(
        {"reported": list(seeds), "tuning": tuning or {"temperatures": [100], "ablation": [101, 102]}}))
    return folder


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    """Synthetic verdicts sit far from their thresholds: 2,000 resamples decide them as well as 10,000, in
    a fifth of the time."""
    monkeypatch.setattr(claims, "N_RESAMPLES", 2_000)


GOOD = {"ga_paper": 1.0, "ga_swept": 1.2, "llome_sft": 2.0, "llome_marge": 3.0, "llome_dpo": 2.0}


def verdicts(folder: Path) -> dict[int, dict]:
    return {claim["id"]: claim for claim in judge_claims(load_study(folder))}


def comparison(claim: dict, label: str) -> dict:
    return next(entry for entry in claim["comparisons"] if entry["label"] == label)


# Claim 1

def test_a_clear_llome_advantage_over_both_gas_on_12_seeds_is_supported(tmp_path):
    claim = verdicts(write_study(tmp_path, GOOD))[1]
    assert claim["verdict"] == SUPPORTED
    assert claim["n_seeds"] == 12 and claim["ci_low"] > 0
    assert claim["verdict_per_variant"] == {"llome_sft": SUPPORTED, "llome_marge": SUPPORTED, "llome_dpo": SUPPORTED}
    assert claim["verdict_at_6x128"] is None  # not run
    levels = comparison(claim, "llome_marge vs ga_paper: calls to each f level")
    assert levels["estimate"] > 0 and levels["test"].startswith("sign test")


def test_identical_methods_are_inconclusive(tmp_path):
    same = {method: 1.5 for method in GOOD}
    claim = verdicts(write_study(tmp_path, same, noise=0.0))[1]
    assert claim["verdict"] == INCONCLUSIVE
    assert (claim["estimate"], claim["ci_low"], claim["ci_high"]) == (0.0, 0.0, 0.0)
    assert "more seeds cannot separate" in claim["what would decide it"]


def test_differences_that_cancel_out_are_not_called_all_zero():
    cancelling = {"label": "a vs b: calls to solve", "n_seeds": 10, "estimate": 0.0, "ci_low": -0.4, "ci_high": 0.4}
    text = claims.what_would_decide(INCONCLUSIVE, cancelling, [], "more data")
    assert "cancel out" in text and "Every paired difference" not in text
    all_zero = {**cancelling, "ci_low": 0.0, "ci_high": 0.0}
    text = claims.what_would_decide(INCONCLUSIVE, all_zero, [], "more data")
    assert text.startswith("Every paired difference in 'a vs b: calls to solve' is 0")
    assert text.endswith("; in all, more data.")


def test_llome_clearly_worse_is_contradicted(tmp_path):
    worse = {"ga_paper": 3.0, "ga_swept": 3.0, "llome_sft": 1.0, "llome_marge": 1.0, "llome_dpo": 1.0}
    claim = verdicts(write_study(tmp_path, worse))[1]
    assert claim["verdict"] == CONTRADICTED and claim["ci_high"] < 0


def test_five_seeds_are_never_enough_to_support(tmp_path):
    claim = verdicts(write_study(tmp_path, GOOD, seeds=range(5)))[1]
    assert claim["ci_low"] > 0  # the interval alone would say supported
    assert claim["verdict"] == INCONCLUSIVE
    assert "At least 10 paired seeds" in claim["what would decide it"]


def test_one_ga_missing_caps_claim_1_at_inconclusive_and_says_what_is_missing(tmp_path):
    speeds = {m: s for m, s in GOOD.items() if m != "ga_swept"}
    claim = verdicts(write_study(tmp_path, speeds))[1]
    assert claim["verdict"] == INCONCLUSIVE
    assert "llome_marge vs ga_swept" in claim["what would decide it"]


def test_regret_auc_difference_matches_a_hand_computation(tmp_path):
    """GA: f = 0.5 from call 500, so its regret AUC is (500 * 1 + 500 * 0.5) / 1000 = 0.75. MargE on seed s
    solves at 100 (s + 1) calls: regret AUC 0.1 (s + 1). Differences 0.65, 0.55, 0.45, 0.35: mean 0.5."""
    write_study(tmp_path, {})
    rows = []
    for seed in range(4):
        rows += [{"instance": "main_instance", "method": "ga_paper", "seed": seed, "oracle_calls": c,
                  "best_value": v} for c, v in ((500, 0.5), (1000, 0.5))]
        rows += [{"instance": "main_instance", "method": "llome_marge", "seed": seed, "oracle_calls": c,
                  "best_value": 1.0} for c in (100 * (seed + 1), 1000)]
    pd.DataFrame(rows).to_csv(tmp_path / "trace.csv", index=False)
    claim = verdicts(tmp_path)[1]
    auc = comparison(claim, "llome_marge vs ga_paper: regret AUC")
    assert auc["estimate"] == pytest.approx(0.5)
    assert auc["n_seeds"] == 4 and auc["verdict"] == INCONCLUSIVE
    assert comparison(claim, "llome_marge vs ga_paper: final regret")["estimate"] == pytest.approx(0.5)
    # MargE reaches both levels (0.5 and 1.0) first on every seed; the GA never reaches 1.0 (censored).
    assert comparison(claim, "llome_marge vs ga_paper: calls to each f level")["estimate"] == pytest.approx(1.0)
    reach = {(r["method"], r["level"]): r for r in claim["calls_to_reach"]}
    assert reach[("ga_paper", 1.0)]["median_calls"] is None and reach[("ga_paper", 1.0)]["reached_fraction"] == 0
    assert reach[("llome_marge", 1.0)]["median_calls"] == 200  # Kaplan-Meier: lower middle of 100..400


# Claims 2 and 3

def test_loose_calibration_is_supported_and_needs_its_table(tmp_path):
    claim = verdicts(write_study(tmp_path / "with", GOOD))[2]
    assert claim["verdict"] == SUPPORTED
    assert 0 < claim["ci_low"] and claim["ci_high"] < claims.WELL_CALIBRATED_RHO
    overall = comparison(claim, "llome_marge: calibration")
    assert [b["bin"] for b in overall["binned_means"]] == list(range(10))
    assert verdicts(write_study(tmp_path / "without", GOOD, calibration=False))[2]["verdict"] == NOT_TESTABLE


def test_falling_edit_distance_and_diversity_is_collapse_and_rising_contradicts_it(tmp_path):
    falling = verdicts(write_study(tmp_path / "falling", GOOD))[3]
    assert falling["verdict"] == SUPPORTED and falling["ci_high"] < 0
    edit = comparison(falling, "llome_marge: edit distance (input to output) per round")
    assert edit["seed_slopes"]["falling_fraction"] == 1.0
    assert verdicts(write_study(tmp_path / "rising", GOOD, collapse=-1.0))[3]["verdict"] == CONTRADICTED


# Claim 4

def test_marge_solving_where_sft_and_dpo_do_not_is_supported(tmp_path):
    claim = verdicts(write_study(tmp_path, {**GOOD, "llome_sft": 0.5, "llome_dpo": 0.5}))[4]
    assert claim["verdict"] == SUPPORTED
    assert claim["estimate"] == 1.0  # MargE certainly first on every seed
    solved = comparison(claim, "llome_sft: solved fraction")
    assert solved["estimate"] == 0.0 and solved["median_calls_to_solve"] is None
    assert comparison(claim, "llome_marge: solved fraction")["estimate"] == 1.0


def test_nobody_solving_cannot_decide_claim_4(tmp_path):
    slow = {"llome_sft": 0.5, "llome_marge": 0.5, "llome_dpo": 0.5}
    assert verdicts(write_study(tmp_path, slow))[4]["verdict"] == INCONCLUSIVE


def _copy_rounds_to_the_solvable_instance(folder: Path, methods=("llome_sft", "llome_marge", "llome_dpo"),
                                          source: str = "llome_marge") -> None:
    rounds = pd.read_csv(folder / "rounds.csv")
    template = rounds[(rounds["instance"] == "main_instance") & (rounds["method"] == source)]
    copies = [template.assign(instance="middling", method=method, valid_fraction=0.02) for method in methods]
    pd.concat([rounds, *copies]).to_csv(folder / "rounds.csv", index=False)


def test_claim_4_says_when_the_llome_variants_never_differed_on_its_instance(tmp_path):
    folder = write_study(tmp_path, {**GOOD, "llome_sft": 0.5, "llome_marge": 0.5, "llome_dpo": 0.5})
    _copy_rounds_to_the_solvable_instance(folder)
    claim = verdicts(folder)[4]
    assert claim["verdict"] == INCONCLUSIVE  # the note explains the verdict; it never changes it
    solved, same = claim["notes"]
    assert solved.startswith("Seeds that reached the optimum")
    assert "ga_swept 12 of 12" in solved and "llome_marge 0 of 12" in solved
    assert "made the same rounds on every seed" in same
    assert "valid sequences 2.0% of the time" in same and "against 90.0% for llome_marge" in same


def test_claim_4_says_nothing_of_identical_rounds_when_one_variant_differs(tmp_path):
    folder = write_study(tmp_path, GOOD)
    _copy_rounds_to_the_solvable_instance(folder, methods=("llome_sft", "llome_marge"))
    rounds = pd.read_csv(folder / "rounds.csv")
    template = rounds[(rounds["instance"] == "main_instance") & (rounds["method"] == "llome_dpo")]
    pd.concat([rounds, template.assign(instance="middling")]).to_csv(folder / "rounds.csv", index=False)
    notes = verdicts(folder)[4]["notes"]
    assert len(notes) == 1 and "ga_swept 12 of 12" in notes[0]
    loaded = load_study(folder)
    assert claims.identical_rounds(loaded.rounds, "middling", ("llome_sft", "llome_marge"))
    assert not claims.identical_rounds(loaded.rounds, "middling", ("llome_sft", "llome_marge", "llome_dpo"))
    assert not claims.identical_rounds(loaded.rounds, "hard", ("llome_sft", "llome_marge"))  # no rounds there


# Claim 5

def test_marge_better_in_the_middle_and_on_a_par_at_the_ends_is_supported(tmp_path):
    marge = {"easy": 8.0, "main_instance": 3.0, "middling": 2.0, "hard": 0.1}
    lambo = {"easy": 8.0, "main_instance": 1.0, "middling": 1.0, "hard": 0.1}
    claim = verdicts(write_study(tmp_path, {"llome_marge": marge, "lambo2": lambo}))[5]
    positions = {c["instance"]: c["position"] for c in claim["comparisons"]}
    assert positions == {"easy": "easiest", "main_instance": "middle", "middling": "middle", "hard": "hardest"}
    assert claim["verdict"] == SUPPORTED


def test_lambo2_absent_makes_claim_5_not_testable(tmp_path):
    claim = verdicts(write_study(tmp_path, GOOD))[5]
    assert claim["verdict"] == NOT_TESTABLE
    assert claim["estimate"] is None and claim["n_seeds"] == 0
    assert "lambo2" in claim["what would decide it"]


# Claim 6 and the larger model

def test_a_weak_prompted_llm_is_supported_and_the_6x128_verdict_is_reported(tmp_path):
    speeds = {**GOOD, "llome_marge_6x128": 0.5, "lambo2": 3.0, "prompted": 0.3}
    judged = verdicts(write_study(tmp_path, speeds))
    assert judged[6]["verdict"] == SUPPORTED
    feasibility = comparison(judged[6], "llome_marge vs prompted on main_instance: feasible fraction")
    assert feasibility["estimate"] > 0
    # The 6x128 model is slower than both GAs but still faster than the prompted LLM.
    assert judged[1]["verdict"] == SUPPORTED and judged[1]["verdict_at_6x128"] == CONTRADICTED
    assert judged[1]["verdict_per_variant"]["llome_marge_6x128"] == CONTRADICTED
    assert judged[6]["verdict_at_6x128"] == SUPPORTED


# Refusals

def test_a_reported_seed_that_is_also_a_tuning_seed_is_refused_by_name(tmp_path):
    write_study(tmp_path, GOOD, tuning={"ga_sweep": [7, 100]})
    with pytest.raises(StudyTableError, match=r"seed 7 is both a reported seed and a tuning seed \('ga_sweep'\)"):
        load_study(tmp_path)


def test_a_table_seed_outside_the_reported_seeds_is_refused(tmp_path):
    write_study(tmp_path, GOOD)
    seeds = json.loads((tmp_path / "seeds.json").read_text())
    (tmp_path / "seeds.json").write_text(json.dumps({**seeds, "reported": list(range(11))}))
    with pytest.raises(StudyTableError, match=r"trace.csv: column 'seed' has 11, which is not a reported seed"):
        load_study(tmp_path)


def test_a_missing_column_is_refused_naming_file_and_column(tmp_path):
    write_study(tmp_path, GOOD)
    rounds = pd.read_csv(tmp_path / "rounds.csv").drop(columns=["edit_distance"])
    rounds.to_csv(tmp_path / "rounds.csv", index=False)
    with pytest.raises(StudyTableError, match=r"rounds.csv: column 'edit_distance' is missing"):
        load_study(tmp_path)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.assign(method=t["method"].replace("llome_marge", "llome_merge")), r"unknown method 'llome_merge'"),
    (lambda t: t.assign(best_value=t["best_value"].astype(object).where(t.index != 3, "high")),
     r"column 'best_value' line 5: 'high' is not a number"),
    (lambda t: t.assign(best_value=t["best_value"][::-1].to_numpy()), r"column 'best_value' (falls|must be)"),
])
def test_malformed_traces_are_refused_naming_the_problem(tmp_path, edit, message):
    write_study(tmp_path, GOOD)
    edit(pd.read_csv(tmp_path / "trace.csv")).to_csv(tmp_path / "trace.csv", index=False)
    with pytest.raises(StudyTableError, match=message):
        load_study(tmp_path)


def test_a_missing_table_is_refused_by_name_but_calibration_may_be_absent(tmp_path):
    write_study(tmp_path, GOOD, calibration=False)
    assert load_study(tmp_path).calibration is None
    (tmp_path / "rounds.csv").unlink()
    with pytest.raises(StudyTableError, match=r"rounds.csv does not exist"):
        load_study(tmp_path)


# The command line

def _project(root: Path, speeds=None) -> list[str]:
    write_study(root / "study" / "tables", speeds or {**GOOD, "lambo2": 2.0, "prompted": 0.3})
    (root / "README.md").write_text(README)
    return ["--tables", str(root / "study" / "tables"), "--json", str(root / "metrics" / "claims.json"),
            "--doc", str(root / "docs" / "claims.md"), "--readme", str(root / "README.md"),
            "--figures", str(root / "docs" / "figures" / "claims")]


def _outputs(root: Path) -> list[bytes]:
    return [(root / p).read_bytes() for p in ("metrics/claims.json", "docs/claims.md", "README.md")]


def test_regeneration_is_byte_for_byte_identical(tmp_path):
    first, second = _project(tmp_path / "a"), _project(tmp_path / "b")
    assert main(first) == 0 and main(second) == 0
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")
    assert main(first) == 0
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")
    entries = json.loads((tmp_path / "a" / "metrics" / "claims.json").read_text())
    assert [e["id"] for e in entries] == [1, 2, 3, 4, 5, 6]
    required = {"id", "claim", "metric", "estimate", "ci_low", "ci_high", "n_seeds", "test", "p_value", "verdict",
                "what would decide it", "comparisons", "verdict_at_6x128"}
    assert all(required <= set(entry) for entry in entries)
    readme = (tmp_path / "a" / "README.md").read_text()
    assert "| `make claims` |" in readme and "](docs/claims.md#claim-5)" in readme
    assert "[figure](docs/figures/claims/outcomes.png), [details](docs/claims.md#claim-6)" in readme
    doc = (tmp_path / "a" / "docs" / "claims.md").read_text()
    assert "![Claim 1: Efficiency against the GA](figures/claims/efficiency.png)" in doc
    assert readme.endswith("<!-- claims:end -->\n\nMore text.\n")


def test_check_passes_on_fresh_output_and_names_an_edited_file(tmp_path, capsys):
    arguments = _project(tmp_path)
    assert main(arguments) == 0
    assert main(arguments + ["--check"]) == 0
    doc = tmp_path / "docs" / "claims.md"
    doc.write_text(doc.read_text().replace("supported", "contradicted", 1))
    assert main(arguments + ["--check"]) == 1
    assert str(doc) in capsys.readouterr().err


def test_the_command_reports_a_bad_table_without_a_traceback(tmp_path, capsys):
    arguments = _project(tmp_path)
    (tmp_path / "study" / "tables" / "seeds.json").unlink()
    assert main(arguments) == 2
    assert "seeds.json does not exist" in capsys.readouterr().err


def test_without_readme_the_readme_is_left_alone(tmp_path):
    arguments = _project(tmp_path)
    readme_at = arguments.index("--readme")
    assert main(arguments[:readme_at] + arguments[readme_at + 2:]) == 0
    assert (tmp_path / "README.md").read_text() == README
    assert "## Claim 1" in (tmp_path / "docs" / "claims.md").read_text()
    assert len(json.loads((tmp_path / "metrics" / "claims.json").read_text())) == 6


def test_a_readme_without_markers_is_refused(tmp_path):
    arguments = _project(tmp_path)
    (tmp_path / "README.md").write_text("# no markers\n")
    with pytest.raises(ValueError, match="claims:start"):
        render(tmp_path / "study" / "tables", tmp_path / "README.md")
    assert main(arguments) == 2


# The repository's own files

def test_the_committed_claims_regenerate_byte_for_byte(monkeypatch):
    monkeypatch.setattr(claims, "N_RESAMPLES", FULL_RESAMPLES)
    tables, committed_json = ROOT / "study" / "tables", ROOT / "metrics" / "claims.json"
    if not (tables.is_dir() and committed_json.exists()):
        pytest.skip("the claims study has not been run: study/tables/ and metrics/claims.json are not committed")
    json_text, doc_text, readme_text = render(tables, ROOT / "README.md", ROOT / "docs" / "claims.md",
                                              committed_json, ROOT / "docs" / "figures" / "claims")
    assert committed_json.read_text() == json_text
    assert (ROOT / "docs" / "claims.md").read_text() == doc_text
    assert (ROOT / "README.md").read_text() == readme_text


def test_before_the_study_the_committed_doc_is_the_placeholder_with_the_current_rules(monkeypatch):
    monkeypatch.setattr(claims, "N_RESAMPLES", FULL_RESAMPLES)
    if (ROOT / "study" / "tables").is_dir():
        pytest.skip("the claims study has run: the doc is generated from its tables")
    assert (ROOT / "docs" / "claims.md").read_text() == placeholder_doc()
    readme = (ROOT / "README.md").read_text()
    assert readme.count(claims.README_START) == 1 and readme.count(claims.README_END) == 1


def test_the_committed_study_is_the_current_codes():
    """study/dvc.lock records the code each study stage ran; every file it names is as the committed study had it
    (else `make claims` would rerun, and the committed verdicts would be an older code's)."""
    lock = ROOT / "study" / "dvc.lock"
    if not lock.exists():
        pytest.skip("the claims study has not been run: study/dvc.lock is not committed")
    stages = parse_params(lock.read_text(), lock)["stages"]
    files = [(name, dep) for name, stage in stages.items() for dep in stage["deps"] if (ROOT / dep["path"]).is_file()]
    assert {dep["path"] for _, dep in files} >= {"llome/study.py", "llome/claims.py", "llome/claims_figures.py"}
    changed = [f"{name}: {dep['path']}" for name, dep in files
               if hashlib.md5((ROOT / dep["path"]).read_bytes()).hexdigest() != dep["md5"]]
    assert not changed, f"changed since the committed study: {changed}; rerun `make claims` and commit its outputs"
