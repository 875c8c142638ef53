"""What the figures draw, read back from their matplotlib objects (not from pixels)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from llome.metrics import regret_on_grid
from llome.plots import METHOD_STYLE, regret_bands, regret_figure

SEED_DATA_CALLS, LAST_CALL = 100, 150


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _regret_traces() -> pd.DataFrame:
    """Two seeds per method. The LLOME and LaMBO-2 runs share the seed data's regret 0.9 at call 100 and improve a
    little after it; the swept GA, a run of its own from the first call, is far better by then."""
    rows = []
    for seed in (0, 1):
        rows += [("ga_paper", seed, 1, 0.95), ("ga_paper", seed, 40, 0.9)]
        rows += [("ga_swept", seed, 1, 0.95), ("ga_swept", seed, 30, 0.5 - 0.1 * seed)]
        rows += [("llome_sft", seed, 1, 0.95), ("llome_sft", seed, 60, 0.9),
                 ("llome_sft", seed, 120, 0.85 - 0.05 * seed)]
        rows += [("lambo2", seed, 1, 0.95), ("lambo2", seed, 60, 0.9), ("lambo2", seed, 130 + seed, 0.88)]
    return pd.DataFrame(rows, columns=["method", "seed", "oracle_calls", "regret"])


def _regret_figure(from_seed_data=("llome_sft", "lambo2")):
    per_seed = regret_on_grid(_regret_traces(), np.arange(1, LAST_CALL + 1), runs=("method", "seed"))
    fig = regret_figure(regret_bands(per_seed), per_seed, "f", SEED_DATA_CALLS, LAST_CALL,
                        None if from_seed_data is None else list(from_seed_data))
    whole, phase = fig.axes
    return per_seed, whole, phase


def _lines(ax, prefix: str) -> dict[str, object]:
    return {line.get_gid(): line for line in ax.get_lines() if (line.get_gid() or "").startswith(prefix)}


def test_the_llome_phase_panel_spans_the_seed_data_calls_to_the_last_call():
    _, whole, phase = _regret_figure()
    assert phase.get_xlim() == (SEED_DATA_CALLS, LAST_CALL)
    assert whole.get_xlim()[0] < 1 and whole.get_xlim()[1] >= LAST_CALL  # the whole run beside it


def test_the_llome_phase_panel_draws_one_thin_line_per_method_and_seed_beside_a_thick_median():
    per_seed, _, phase = _regret_figure()
    seeds = _lines(phase, "seed ")
    assert set(seeds) == {f"seed {m} {s}" for m, s in per_seed[["method", "seed"]].drop_duplicates().itertuples(
        index=False)}
    assert len(seeds) == 8
    medians = _lines(phase, "median ")
    assert set(medians) == {f"median {m}" for m in ("ga_paper", "ga_swept", "llome_sft", "lambo2")}
    assert max(line.get_linewidth() for line in seeds.values()) < min(line.get_linewidth() for line in medians.values())
    # Each thin line is that seed's run, not a summary of several.
    seed1 = per_seed[(per_seed["method"] == "llome_sft") & (per_seed["seed"] == 1)]
    np.testing.assert_array_equal(seeds["seed llome_sft 1"].get_ydata(), seed1["regret"])


def test_the_llome_phase_regret_axis_fits_the_runs_from_the_seed_data_and_names_a_method_beyond_it():
    _, whole, phase = _regret_figure()
    low, high = phase.get_ylim()
    assert whole.get_ylim() == (-0.02, 1.02)
    assert 0.75 < low < 0.8 and 0.9 < high < 0.95  # LLOME-SFT's 0.8 to the seed data's 0.9, with a margin
    names = [text.get_text() for text in phase.texts if text.get_gid() == "off-panel ga_swept"]
    assert names == ["↓ GA, best of a sweep: median 0.45 at 150 calls, below this panel"]
    assert not [t for t in phase.texts if (t.get_gid() or "").startswith("off-panel ga_paper")]  # 0.9 is on it


def test_a_method_whose_runs_ended_early_is_named_where_its_line_ends():
    traces = pd.concat([_regret_traces(), pd.DataFrame(
        [("prompted", seed, call, regret) for seed in (0, 1) for call, regret in ((1, 0.95), (100, 0.9), (110, 0.2))],
        columns=["method", "seed", "oracle_calls", "regret"])])
    per_seed = regret_on_grid(traces, np.arange(1, LAST_CALL + 1), runs=("method", "seed"))
    per_seed.loc[(per_seed["method"] == "prompted") & (per_seed["oracle_calls"] > 120), "regret"] = np.nan
    fig = regret_figure(regret_bands(per_seed), per_seed, "f", SEED_DATA_CALLS, LAST_CALL, ["llome_sft", "lambo2"])
    names = [text.get_text() for text in fig.axes[1].texts if text.get_gid() == "off-panel prompted"]
    assert names == ["↓ Prompted LLM: median 0.20 at 120 calls, below this panel"]


def test_without_a_list_of_methods_from_the_seed_data_the_llome_phase_axis_fits_every_run():
    _, _, phase = _regret_figure(from_seed_data=None)
    low, high = phase.get_ylim()
    assert low < 0.4 and high > 0.9
    assert not [t for t in phase.texts if (t.get_gid() or "").startswith("off-panel")]


def test_the_two_gas_are_told_apart_by_line_style_and_by_a_label_that_says_which_ga():
    _, _, phase = _regret_figure()
    medians = _lines(phase, "median ")
    assert medians["median ga_paper"].get_linestyle() != medians["median ga_swept"].get_linestyle()
    assert "authors'" in METHOD_STYLE["ga_paper"].label and "sweep" in METHOD_STYLE["ga_swept"].label
    assert METHOD_STYLE["lambo2"].linestyle == "--" and METHOD_STYLE["prompted"].linestyle == ":"


def test_every_method_has_its_own_line_style_and_marker_pair_for_grey_print():
    pairs = [(str(style.linestyle), style.marker) for style in METHOD_STYLE.values()]
    assert len(set(pairs)) == len(pairs)
    assert len({style.marker for style in METHOD_STYLE.values()}) == len(METHOD_STYLE)


def _rounds() -> pd.DataFrame:
    """Three seeds of two methods over two rounds; the seeds of llome_sft spread widely in round 2."""
    return pd.DataFrame({
        "method": ["llome_sft"] * 6 + ["lambo2"] * 6,
        "seed": [0, 1, 2] * 4,
        "round": [1, 1, 1, 2, 2, 2] * 2,
        "generation.in_range": [0.5, 0.6, 0.7, 0.1, 0.5, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
    })


def test_per_round_panels_draw_the_median_and_a_min_max_band_over_seeds_per_method():
    from llome.plots import round_panels_figure

    fig = round_panels_figure(_rounds(), [("generation.in_range", "valid"), ("absent", "not drawn")], "t")
    ax = fig.axes[0]
    median = {line.get_gid(): line for line in ax.get_lines()}["median llome_sft"]
    np.testing.assert_allclose(median.get_ydata(), [0.6, 0.5])
    bands = {c.get_gid(): c for c in ax.collections}
    assert set(bands) == {"band llome_sft", "band lambo2"}
    # The band's outline runs along the lowest seed and back along the highest.
    outline = bands["band llome_sft"].get_paths()[0].vertices
    by_round = pd.DataFrame(outline, columns=["round", "y"]).groupby("round")["y"].agg(["min", "max"])
    np.testing.assert_allclose(by_round.loc[[1.0, 2.0]].to_numpy(), [[0.5, 0.7], [0.1, 0.9]])
    assert "median over 3 seeds" in fig._suptitle.get_text()
    assert "min–max over seeds" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_a_fraction_that_was_not_computed_is_marked_as_such_and_drawn_as_no_bar():
    from llome.plots import difficulty_figure

    difficulty = pd.DataFrame({"name": ["small", "large"], "log10_feasible_fraction": [-3.2, -13.1],
                               "log10_optimal_fraction": [-21.1, np.nan]})
    fig = difficulty_figure(difficulty, None)
    left = fig.axes[0]
    bars = {c.get_label(): c for c in left.containers}
    assert [bar.get_width() for bar in bars["feasible"]] == [-3.2, -13.1]
    optimal = bars["optimal (f = 1)"].patches
    assert [bar.get_width() for bar in optimal] == [-21.1]  # no bar for "large", of height 1 or any other
    marks = [t for t in left.texts if (t.get_gid() or "").startswith("not computed")]
    assert [(t.get_gid(), t.get_text()) for t in marks] == [
        ("not computed log10_optimal_fraction large", "optimal: not computed")]
    # Beside the row of "large"'s optimal bar, which the y axis shows upside down.
    assert marks[0].xy == (0, 1.2)


def test_binned_means_are_the_mean_reward_of_equal_count_bins_by_log_likelihood_with_a_95_percent_interval():
    from llome.plots import binned_means

    loglik = pd.Series([-0.8, -0.7, -0.6, -0.5, -0.4, -0.3, -0.2, -0.1])[::-1]  # order does not matter
    reward = pd.Series([0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0])[::-1]
    binned = binned_means(loglik, reward, bins=2)
    assert binned["count"].tolist() == [4, 4]
    np.testing.assert_allclose(binned["loglik"], [-0.65, -0.25])
    np.testing.assert_allclose(binned["mean"], [0.0, 0.5])
    half_width = 1.96 * np.std([0, 1, 0, 1], ddof=1) / 2
    np.testing.assert_allclose(binned["low"], [0.0, 0.5 - half_width])
    np.testing.assert_allclose(binned["high"], [0.0, 0.5 + half_width])


def test_the_calibration_figure_draws_each_methods_points_and_its_binned_means():
    from llome.plots import calibration_figure

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"method": ["llome_dpo"] * 50 + ["llome_sft"] * 50, "loglik": rng.normal(size=100),
                          "reward": rng.random(100)})
    fig = calibration_figure(table, {"llome_sft": 0.1}, "f")
    top, bottom = fig.axes[:2], fig.axes[2:]
    assert [ax.get_title().split()[0] for ax in top] == ["LLOME-SFT", "LLOME-DPO"]  # legend order
    assert [len(ax.collections[0].get_offsets()) for ax in top] == [50, 50]
    means = [ax.containers[0].lines[0] for ax in bottom]  # each errorbar's line through its means
    assert [(line.get_gid(), len(line.get_xdata())) for line in means] == [("binned llome_sft", 10),
                                                                            ("binned llome_dpo", 10)]
    assert "ρ = nan" in top[1].get_title()  # no correlation given for DPO: shown as unknown, not as 0
