import numpy as np
import pandas as pd
import pytest

from llome.metrics import regret_on_grid
from llome.plots import regret_bands
from llome.report import end_unsolved_runs, run_summary, write_html_report


def _trace():
    # seed 0 reaches the optimum at call 30; seed 1 stalls at 0.5 (first reached at call 20).
    return pd.DataFrame({
        "seed": [0, 0, 0, 1, 1, 1],
        "oracle_calls": [1, 10, 30, 1, 20, 40],
        "best_value": [0.25, 0.5, 1.0, 0.25, 0.5, 0.5],
    }).assign(regret=lambda t: 1 - t["best_value"], method="m")


def test_run_summary_medians_by_hand():
    s = run_summary(_trace())
    assert s["best_value"] == pytest.approx(0.75)          # median of 1.0 and 0.5
    assert s["regret"] == pytest.approx(0.25)
    assert s["solved_fraction"] == pytest.approx(0.5)
    assert s["oracle_calls"] == pytest.approx(35)          # median of 30 and 40
    assert s["oracle_calls_to_best"] == pytest.approx(25)  # median of 30 and 20
    assert [p["solved"] for p in s["per_seed"]] == [True, False]


def test_regret_on_grid_is_a_step_function_held_after_the_run_ends():
    grid = np.array([1, 9, 10, 29, 30, 100])
    on_grid = regret_on_grid(_trace(), grid, runs=["method", "seed"])
    seed0 = on_grid[on_grid["seed"] == 0]["regret"].tolist()
    assert seed0 == [0.75, 0.75, 0.5, 0.5, 0.0, 0.0]
    bands = regret_bands(on_grid)
    assert bands["high"].tolist() == [0.75, 0.75, 0.75, 0.5, 0.5, 0.5]  # seed 1 reaches 0.5 at call 20
    assert bands["low"].tolist() == seed0


def test_a_run_is_drawn_up_to_its_last_call_unless_it_solved():
    # Seed 0 solves at call 30 and holds regret 0 beyond; seed 1 stops unsolved at call 40, so it has no value past 40.
    grid = np.array([10, 30, 40, 41, 100])
    per_seed = end_unsolved_runs(regret_on_grid(_trace(), grid, runs=("method", "seed")), _trace())
    assert per_seed[per_seed["seed"] == 0]["regret"].tolist() == [0.5, 0.0, 0.0, 0.0, 0.0]
    assert per_seed[per_seed["seed"] == 1]["regret"].tolist()[:3] == [0.75, 0.5, 0.5]
    assert per_seed[per_seed["seed"] == 1]["regret"].iloc[3:].isna().all()
    # The median holds seed 1 at its final 0.5 (its best within any budget past 40), as long as a run of the method
    # still counts (seed 0, solved); taken over the runs still drawn, it would be seed 0's 0.0 alone.
    whole = end_unsolved_runs(regret_on_grid(_trace(), grid, runs=("method", "seed")), _trace(), whole_method=True)
    bands = regret_bands(whole).set_index("oracle_calls")
    assert bands.loc[40, "median"] == pytest.approx(0.25) and bands.loc[100, "median"] == pytest.approx(0.25)
    assert bands.loc[100, "high"] == pytest.approx(0.5)


def test_a_median_ends_when_the_last_run_of_its_method_ends():
    # Neither seed solves: seed 0 stops at call 10 with 0.5, seed 1 at call 40 with 0.25.
    trace = pd.DataFrame({"seed": [0, 0, 1, 1], "oracle_calls": [1, 10, 1, 40],
                          "best_value": [0.25, 0.5, 0.25, 0.75]}).assign(regret=lambda t: 1 - t["best_value"],
                                                                        method="m")
    grid = np.array([10, 20, 40, 41])
    on_grid = regret_on_grid(trace, grid, runs=("method", "seed"))
    whole = regret_bands(end_unsolved_runs(on_grid, trace, whole_method=True)).set_index("oracle_calls")["median"]
    assert whole.loc[10] == pytest.approx(0.625) and whole.loc[20] == pytest.approx(0.625)  # (0.5 + 0.75) / 2
    assert whole.loc[40] == pytest.approx(0.375) and np.isnan(whole.loc[41])                # (0.5 + 0.25) / 2
    per_run = end_unsolved_runs(on_grid, trace)
    assert per_run[per_run["seed"] == 0]["regret"].iloc[1:].isna().all()  # seed 0's own line ends at 10


def test_html_report_inlines_every_figure(tmp_path):
    import matplotlib.pyplot as plt

    paths = []
    for name in ("regret.png", "validity.png"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        fig.savefig(tmp_path / name)
        plt.close(fig)
        paths.append(tmp_path / name)
    summary = {"function": "f", "profile": "smoke", "oracle_budget": 10, "methods": {"ga": run_summary(_trace())}}
    write_html_report(summary, paths, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2
    assert "http" not in page  # nothing to fetch: it renders offline


def test_lambo2_joins_the_traces_rounds_and_summary_when_the_config_names_it(tmp_path):
    from llome.plots import _linestyle
    from llome.report import collect, results_markdown

    (tmp_path / "ga_baseline").mkdir()
    (tmp_path / "ga_baseline" / "regret.csv").write_text("oracle_calls,best_value,regret,seed,method\n1,0.5,0.5,0,ga_paper\n")
    (tmp_path / "lambo2").mkdir()
    (tmp_path / "lambo2" / "regret.csv").write_text(
        "oracle_calls,best_value,regret,round,seed,method\n1,0.25,0.75,0,0,lambo2\n12,0.5,0.5,1,0,lambo2\n")
    (tmp_path / "lambo2" / "rounds.csv").write_text("seed,round,oracle_calls,labelled.feasible\n0,1,2,0.5\n")
    cfg = {"methods": [], "seeds": [0], "rounds": 1, "lambo2": {"oracle_budget": 12}}
    trace, rounds, labelled = collect(cfg, tmp_path)
    assert sorted(trace["method"].unique()) == ["ga_paper", "lambo2"]
    assert rounds["method"].tolist() == ["lambo2"] and len(labelled) == 0  # no likelihoods: no calibration points

    s = run_summary(trace[trace["method"] == "lambo2"])
    summary = {"function": "f", "profile": "p", "oracle_budget": 12, "methods": {"lambo2": s}}
    assert "LaMBO-2" not in results_markdown(summary)  # a summary without it renders as before
    text = results_markdown({**summary, "lambo2_oracle_budget": 12})
    assert "| lambo2 | 12 | 0 | 0.500 | 0.500 |" in text and "LaMBO-2 (`lambo2`) starts from the same GA seed data" in text
    assert _linestyle("lambo2") == "--" and _linestyle("llome_marge") == "-"


def test_a_baseline_without_temperatures_beside_llome_rounds_gets_none_for_its_lowest():
    from llome.report import lowest_temperature

    rounds = pd.DataFrame({"method": ["llome_sft", "llome_sft", "lambo2"],
                           "temperatures": ["0.9 1.0 1.1", 0.8, np.nan]})
    lowest = rounds["temperatures"].map(lowest_temperature)
    assert lowest.iloc[0] == 0.9 and lowest.iloc[1] == 0.8 and np.isnan(lowest.iloc[2])


def _prompted_dir(tmp_path, seeds=(0, 1)):
    (tmp_path / "ga_baseline").mkdir()
    (tmp_path / "ga_baseline" / "regret.csv").write_text("oracle_calls,best_value,regret,seed,method\n1,0.5,0.5,0,ga_paper\n")
    (tmp_path / "prompted").mkdir()
    (tmp_path / "prompted" / "regret.csv").write_text(
        "oracle_calls,best_value,regret,round,seed,method\n"
        "10,0.25,0.75,0,0,prompted\n13,0.5,0.5,1,0,prompted\n10,0.25,0.75,0,1,prompted\n12,0.25,0.75,1,1,prompted\n")
    (tmp_path / "prompted" / "rounds.csv").write_text(
        "seed,round,labels_short,generation.in_range\n0,1,1,0.75\n1,1,2,0.5\n")
    per_seed = [{"seed": s, "proposals": 4, "parsable": 1.0, "correct_length": 0.75 - 0.25 * s,
                 "in_range": 0.75 - 0.25 * s, "feasible": [1 / 3, 0.5][s], "seed_data_best_value": 0.25} for s in seeds]
    (tmp_path / "prompted" / "summary.json").write_text(__import__("json").dumps({"per_seed": per_seed}))
    return {"methods": [], "seeds": [0, 1], "rounds": 1, "prompted": {"oracle_budget": 14}}


def test_the_prompted_llm_joins_the_summary_with_its_validity_and_feasibility_per_seed(tmp_path):
    from llome.plots import _linestyle
    from llome.report import add_prompted_validity, collect, read_json, results_markdown, short_rounds

    cfg = _prompted_dir(tmp_path)
    trace, rounds, labelled = collect(cfg, tmp_path)
    assert sorted(trace["method"].unique()) == ["ga_paper", "prompted"] and len(labelled) == 0
    s = run_summary(trace[trace["method"] == "prompted"])
    add_prompted_validity(s, read_json(tmp_path / "prompted" / "summary.json"))
    assert [row["in_range"] for row in s["per_seed"]] == [0.75, 0.5]
    assert s["median_in_range"] == 0.625 and s["median_feasible"] == pytest.approx(5 / 12)
    assert s["best_value"] == 0.375  # median of 0.5 and 0.25
    s["short_rounds"] = short_rounds(rounds)
    assert [r["labels_short"] for r in s["short_rounds"]] == [1, 2]
    text = results_markdown({"function": "f", "profile": "p", "oracle_budget": 12, "prompted_oracle_budget": 14,
                             "methods": {"prompted": s}})
    assert "| prompted | 12 |" in text  # the median of its seeds' 13 and 12 paid calls, seed data included
    assert "a median of 62% of its replies were valid sequences, and 42% of its paid labels feasible" in text
    assert _linestyle("prompted") == ":"


def test_a_prompted_summary_that_lacks_a_seed_is_named(tmp_path):
    from llome.report import add_prompted_validity, collect, read_json

    cfg = _prompted_dir(tmp_path, seeds=(0,))
    trace, _, _ = collect(cfg, tmp_path)
    with pytest.raises(ValueError, match="no seed 1"):
        add_prompted_validity(run_summary(trace[trace["method"] == "prompted"]),
                              read_json(tmp_path / "prompted" / "summary.json"))


def test_a_prompted_run_that_paid_for_nothing_says_so_instead_of_a_percentage():
    from llome.report import results_markdown

    prompted = {"oracle_calls": 10.0, "diagnostic_oracle_calls": 0.0, "best_value": 0.25, "regret": 0.75,
                "solved_fraction": 0.0, "oracle_calls_to_best": 1.0, "num_seeds": 1, "median_in_range": 0.0,
                "median_feasible": float("nan"), "short_rounds": [],
                "per_seed": [{"seed": 0, "best_value": 0.25}]}
    text = results_markdown({"function": "f", "profile": "p", "oracle_budget": 12, "prompted_oracle_budget": 14,
                             "methods": {"prompted": prompted}})
    assert "a median of 0% of its replies were valid sequences, and it paid for no label." in text
    assert "nan" not in text.lower()
