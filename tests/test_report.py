import numpy as np
import pandas as pd
import pytest

from llome.metrics import regret_on_grid
from llome.plots import regret_bands
from llome.report import run_summary, write_html_report


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
