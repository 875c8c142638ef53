"""llome.claims_figures: one figure per claim, drawn from synthetic study tables whose content is known."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from test_claims import GOOD, write_study

from llome import claims
from llome.claims import CLAIM_FIGURES, load_study, run_outcomes
from llome.claims_figures import (calibration_figure, collapse_figure, efficiency_figure, main, outcomes_figure,
                                  regret_per_seed, solved_share, solving_figure)

SEEDS = range(10, 22)


@pytest.fixture(autouse=True)
def fewer_resamples(monkeypatch):
    monkeypatch.setattr(claims, "N_RESAMPLES", 500)


@pytest.fixture
def study(tmp_path):
    return load_study(write_study(tmp_path, {**GOOD, "lambo2": 2.0, "prompted": 0.3}, seeds=SEEDS))


def _gids(fig, prefix: str) -> set[str]:
    return {artist.get_gid() for artist in fig.findobj() if (artist.get_gid() or "").startswith(prefix)}


def test_the_command_writes_every_figure_the_claims_table_links_to(tmp_path, capsys):
    tables = write_study(tmp_path / "tables", {**GOOD, "lambo2": 2.0, "prompted": 0.3}, seeds=SEEDS)
    assert main(["--tables", str(tables), "--out", str(tmp_path / "figures")]) == 0
    written = {p.name for p in (tmp_path / "figures").iterdir()}
    assert written == set(CLAIM_FIGURES.values())
    assert all((tmp_path / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in written)


def test_a_bad_table_stops_the_command_with_its_name(tmp_path, capsys):
    tables = write_study(tmp_path / "tables", GOOD, seeds=SEEDS)
    (tables / "trace.csv").unlink()
    assert main(["--tables", str(tables), "--out", str(tmp_path / "figures")]) == 2
    assert "trace.csv" in capsys.readouterr().err
    assert not (tmp_path / "figures").exists()


def test_regret_on_the_grid_follows_each_run_and_its_median(study):
    bands, per_seed = regret_per_seed(study, "main_instance")
    trace = study.trace[study.trace["instance"] == "main_instance"]
    run = trace[(trace["method"] == "llome_marge") & (trace["seed"] == 13)]
    for calls, best in zip(run["oracle_calls"], run["best_value"]):  # on the grid at or after each step
        at = per_seed[(per_seed["method"] == "llome_marge") & (per_seed["seed"] == 13)
                      & (per_seed["oracle_calls"] >= calls)].iloc[0]
        later = run[run["oracle_calls"] <= at["oracle_calls"]]["best_value"].max()
        assert at["regret"] == pytest.approx(1.0 - later)
    last = per_seed[per_seed["oracle_calls"] == per_seed["oracle_calls"].max()]
    by_method = last.groupby("method")["regret"].median()
    final = bands[bands["oracle_calls"] == bands["oracle_calls"].max()].set_index("method")["median"]
    assert final.to_dict() == pytest.approx(by_method.to_dict())


def test_solved_share_counts_the_seeds_at_the_optimum_by_each_budget(study):
    grid = np.array([1, 500, 1000])
    outcomes = run_outcomes(study)
    for method in ("ga_paper", "llome_marge"):
        rows = outcomes[(outcomes["instance"] == "middling") & (outcomes["method"] == method)]
        share = solved_share(outcomes, "middling", method, grid)
        assert share[-1] == pytest.approx(rows["solved"].mean())
        assert share[0] == 0.0 and (np.diff(share) >= 0).all()
        expected = np.mean([c <= 500 for c, s in zip(rows["calls_to_solve"], rows["solved"]) if s] +
                           [False] * int((~rows["solved"]).sum()))
        assert share[1] == pytest.approx(expected)


def test_each_figure_draws_every_method_and_seed_it_is_about(study):
    outcomes = run_outcomes(study)
    fig = efficiency_figure(study)
    assert len(_gids(fig, "seed ")) == 7 * len(SEEDS)  # 5 methods of GOOD, LaMBO-2 and the prompted LLM
    fig = calibration_figure(study)
    assert _gids(fig, "binned ") == {f"binned {m}" for m in GOOD if m.startswith("llome_")}
    assert _gids(fig, "rho ") == {f"rho {m}" for m in GOOD if m.startswith("llome_")}
    fig = collapse_figure(study)
    assert _gids(fig, "median ") == {f"median {m}" for m in GOOD if m.startswith("llome_")}
    fig = solving_figure(study, outcomes)
    assert len(_gids(fig, "solved ")) == 7
    fig = outcomes_figure(study, outcomes)
    points = [a for a in fig.findobj() if a.get_gid() == "seeds llome_marge"]
    assert len(points) == 2 * 4 and all(len(p.get_offsets()) == len(SEEDS) for p in points)  # 2 rows x 4 instances
    plt.close("all")


def test_the_calibration_figure_shows_the_binned_means_the_verdict_reads(study):
    fig = calibration_figure(study)
    line = next(a for a in fig.findobj() if a.get_gid() == "binned llome_marge")
    drawn = line.lines[0].get_ydata() if hasattr(line, "lines") else line.get_ydata()
    expected = [b["mean_reward"] for b in claims.binned_rewards(study.calibration, "main_instance", "llome_marge")]
    assert np.asarray(drawn, float) == pytest.approx(expected)
    plt.close("all")


def test_every_method_of_the_study_has_a_style_of_its_own():
    from llome.plots import METHOD_STYLE  # as llome.claims_figures leaves it

    styles = {method: METHOD_STYLE.get(method) for method in claims.METHODS}
    assert all(style is not None for style in styles.values()), [m for m, s in styles.items() if s is None]
    assert len({s.label for s in styles.values()}) == len(styles)
    assert len({(s.color, s.marker) for s in styles.values()}) == len(styles)
    assert styles["llome_marge_6x128"].label == "LLOME-MargE 6×128"
