"""The `lambo2` stage without the LaMBO environment: its settings, its accounting and its resumption, with the
runner call (llome.lambo.propose) replaced by a fake that answers random sequences. The real runner's end-to-end
test is tests/test_lambo.py (`-m lambo`)."""

import ast
import copy
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

import llome.lambo as lambo
import llome.stages.lambo2 as stage
from llome.config import ConfigError, Lambo2, load_profile, stage_configs
from llome.io import read_json, read_table
from llome.lambo_settings import LamboSettings
from llome.provenance import STALE_MARK
from llome.stages.seed_data import seed_data
from toy_objectives import CallCounting

ROOT = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
FUNCTION = "tests.toy_objectives:counting_up_v8"
SEED_GA = {"num_particles": 50, "mutation_prob": 0.125, "recombine_prob": 0.125, "survival_quantile": 0.2,
           "num_steps": 4}
N = 12


# --- settings ---------------------------------------------------------------------------------------------------


def _problems(path: str, value, profile="default") -> str:
    params = copy.deepcopy(PARAMS)
    *parents, last = path.split(".")
    node = params["profiles"]
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    with pytest.raises(ConfigError) as raised:
        load_profile(params, profile)
    return str(raised.value)


@pytest.mark.parametrize("path, value, expected", [
    ("default.lambo2.num_steps", 0, "profiles.default.lambo2.num_steps: must be >= 1, got 0"),
    ("default.lambo2.guidance_step_size", -0.05, "profiles.default.lambo2.guidance_step_size: must be > 0, got -0.05"),
    ("default.lambo2.kl_weight", 1.5, "profiles.default.lambo2.kl_weight: must be <= 1, got 1.5"),
    ("default.lambo2.resample_edit_positions", "yes",
     "profiles.default.lambo2.resample_edit_positions: must be true or false, got 'yes'"),
    ("default.lambo2.ensemble_size", 2.5, "profiles.default.lambo2.ensemble_size: must be an integer, got 2.5"),
    ("default.lambo2.rounds", 0, "profiles.default.lambo2.rounds: must be >= 1, got 0"),
    ("default.lambo2.num_stepz", 8, "profiles.default.lambo2.num_stepz: unknown key"),
    ("default.lambo2.num_proposals", 500,
     "profiles.default.lambo2: num_proposals is set by llome.selection.num_to_label"),
    ("default.lambo2.threads", 4, "profiles.default.lambo2: threads is set by numerics.threads"),
    ("default.lambo2.num_mutations_per_step", 33,
     "profiles.default.lambo2.num_mutations_per_step: LaMBO-2 edits at most the function's L=32 positions"),
])
def test_bad_lambo2_settings_are_refused_naming_their_key(path, value, expected):
    assert expected in _problems(path, value)


def test_a_key_deleted_from_the_lambo2_section_is_named():
    params = copy.deepcopy(PARAMS)
    del params["profiles"]["default"]["lambo2"]["retrain_epochs"]
    with pytest.raises(ConfigError, match=r"profiles\.default\.lambo2: missing key\(s\) retrain_epochs"):
        load_profile(params, "default")


def test_the_section_the_settings_and_the_runner_know_the_same_knobs():
    section = set(Lambo2.model_fields) - set(Lambo2.set_by_pipeline) - {"rounds"}
    assert section == set(LamboSettings.model_fields) - set(Lambo2.set_by_pipeline)
    # The runner lives in another environment: read its defaults without importing it.
    tree = ast.parse((ROOT / "lambo" / "runner.py").read_text())
    [defaults] = [node.value for node in tree.body if isinstance(node, ast.Assign)
                  and getattr(node.targets[0], "id", None) == "DEFAULT_SETTINGS"]
    runner = ast.literal_eval(defaults)
    assert set(runner) == set(LamboSettings().runner_settings())
    authors = {k: v for k, v in LamboSettings().runner_settings().items() if k in runner}
    assert authors == runner  # the authors' values on both sides


def test_default_and_paper_profiles_run_lambo2_on_llomes_budget_and_the_authors_settings():
    default = stage_configs(load_profile(PARAMS, "default"))
    assert default["lambo2"]["rounds"] == default["llome_marge"]["rounds"] == 10
    assert default["lambo2"]["num_to_label"] == default["llome_marge"]["selection"]["num_to_label"] == 500
    assert default["figures"]["lambo2"]["oracle_budget"] == default["figures"]["oracle_budget"] == 15_000
    settings = stage.lambo_settings(default["lambo2"])
    assert (settings.num_proposals, settings.threads, settings.device) == (500, 2, "auto")

    paper = stage_configs(load_profile(PARAMS, "paper"))
    authors = LamboSettings(num_proposals=2000, precision=16, threads=2)
    assert stage.lambo_settings(paper["lambo2"]) == authors
    assert paper["lambo2"]["rounds"] == 12 and paper["figures"]["lambo2"]["oracle_budget"] == 10_000 + 12 * 2000


def test_a_bad_setting_in_a_hand_made_stage_config_is_named(tmp_path):
    cfg = stage_configs(load_profile(PARAMS, "smoke"))["lambo2"]
    cfg["lambo2"]["num_steps"] = 0
    with pytest.raises(ConfigError, match=r"LamboSettings\.num_steps: must be >= 1, got 0"):
        stage.lambo2_method(cfg, tmp_path / "seed", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_lambo_environment_is_named_with_its_make_target_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(lambo, "LAMBO_VENV", tmp_path / "no-venv")
    cfg = stage_configs(load_profile(PARAMS, "smoke"))["lambo2"]
    with pytest.raises(lambo.LamboEnvironmentError, match="make lambo-env"):
        stage.lambo2_method(cfg, tmp_path / "seed", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- the stage with a fake runner --------------------------------------------------------------------------------


class FakeRunner:
    """Answers a runner call as lambo/runner.py does, with random proposals; two of them repeat their starting
    point, so some proposals are labels already paid for. Records what each call received."""

    def __init__(self):
        self.calls = []

    def __call__(self, python, sequences, scores, rounds, num_states, settings, seed, work_dir, state_dir):
        self.calls.append({"labelled": len(sequences), "newest_round": int(rounds.max()), "seed": seed,
                           "state_dir": Path(state_dir)})
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / "runner.log").write_text("fake\n")
        rng = np.random.default_rng(seed)
        n, length = settings.num_proposals, sequences.shape[1]
        ranked = np.argsort(-np.where(np.isfinite(scores), scores, -np.inf), kind="stable")
        starts = sequences[np.resize(ranked[:n], n)]
        proposals = rng.integers(0, num_states, size=(n, length))
        proposals[:2] = starts[:2]
        checkpoint = Path(state_dir) / lambo.MODEL_FILE
        trained_from_scratch = not checkpoint.exists()
        if trained_from_scratch:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_bytes(b"weights")
        return {"proposals": proposals, "starting_points": starts, "acquisition": rng.normal(size=n).tolist(),
                "train_seconds": 1.0, "optimise_seconds": 2.0, "wall_seconds": 3.5,
                "trained_from_scratch": trained_from_scratch, "device": "cpu", "precision": 32,
                "versions": {"cortex": "fake"}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Seed data for seeds 0 and 1 from the real seed_data stage, a counting objective, a fake runner."""
    seed_data({"function": FUNCTION, "function_seed": 0, "seeds": [0, 1], "ga": SEED_GA, "numerics": {"threads": 2}},
              tmp_path / "seed", progress=False)
    function = CallCounting(dim=8, num_states=8)
    runner = FakeRunner()
    monkeypatch.setattr(stage, "load_function", lambda name, seed=None: function)
    monkeypatch.setattr(lambo, "lambo_python", lambda venv=None: Path("/no/lambo/python"))
    monkeypatch.setattr(lambo, "propose", runner)
    cfg = stage_configs(load_profile(PARAMS, "smoke"))["lambo2"]
    cfg.update(function=FUNCTION, seeds=[0, 1], rounds=3, num_to_label=N,
               seed_data_oracle_calls=SEED_GA["num_particles"] * SEED_GA["num_steps"])
    return cfg, tmp_path, function, runner


def _run(cfg, root):
    return stage.lambo2_method(cfg, root / "seed", root / "lambo2", progress=False)


def test_every_round_pays_for_exactly_n_labels_and_every_call_is_counted(project):
    cfg, root, function, runner = project
    rounds, trace = _run(cfg, root)
    assert function.calls == 2 * 3 * N  # two seeds, three rounds, n each: the seed data was paid for upstream
    assert rounds[["seed", "round"]].values.tolist() == [[s, r] for s in (0, 1) for r in (1, 2, 3)]
    assert (rounds["oracle_calls"] == N).all() and (rounds["labels_short"] == 0).all()
    assert (rounds["diagnostic_oracle_calls"] == 0).all()
    assert (rounds["lambo.already_labelled"] > 0).all()  # repeats are paid for too, as the authors' harness does
    assert rounds["lambo.trained_from_scratch"].tolist() == [True, False, False] * 2
    # Each round's runner saw every label so far, and later rounds start from the model round 1 kept.
    for seed in (0, 1):
        seed_labels = len(read_table(root / "seed" / f"seed_{seed}.parquet"))
        calls = [c for c in runner.calls if c["state_dir"].is_relative_to(root / "lambo2" / f"seed_{seed}")]
        assert [c["labelled"] for c in calls] == [seed_labels + k * N for k in range(3)]
        assert [c["newest_round"] for c in calls] == [0, 1, 2]
        assert {c["state_dir"] for c in calls[1:]} == {root / "lambo2" / f"seed_{seed}" / "round_01" / lambo.MODEL_DIR}
    for seed in (0, 1):
        run = root / "lambo2" / f"seed_{seed}"
        for index in (1, 2, 3):
            labelled = read_table(run / f"round_{index:02d}" / "labelled.parquet")
            assert labelled["oracle_calls_round"].tolist() == list(range(1, N + 1))
            np.testing.assert_array_equal(labelled["score"], CallCounting(8, 8)(np.array(list(labelled["sequence"]))))
            assert not (run / f"round_{index:02d}" / "runner").exists()  # request, answer and log are not data
    assert len({c["seed"] for c in runner.calls}) == 6  # its own random stream for every seed and round

    written = pd.read_csv(root / "lambo2" / "regret.csv")
    assert set(written["method"]) == {"lambo2"}
    assert written.groupby("seed")["oracle_calls"].max().tolist() == [200 + 3 * N] * 2
    timing = pd.read_csv(root / "lambo2" / "timing.csv")
    assert timing["runner"].tolist() == [3.5] * 6


def test_the_trace_is_the_table_llome_makes_of_its_own_runs(project):
    from llome.rounds import run_trace  # the training stack: only this test needs it

    cfg, root, _, _ = project
    _, trace = _run(cfg, root)
    for seed in (0, 1):
        seed_table = read_table(root / "seed" / f"seed_{seed}.parquet")
        expected = run_trace(seed_table, cfg["seed_data_oracle_calls"], root / "lambo2" / f"seed_{seed}", 3,
                             optimum=7.0)
        actual = trace[trace["seed"] == seed].drop(columns=["seed", "method"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(actual, expected)
    assert list(pd.read_csv(root / "lambo2" / "rounds.csv").columns[:2]) == ["seed", "round"]


def test_a_finished_run_is_not_redone_and_more_rounds_extend_it(project):
    cfg, root, function, runner = project
    first_rounds, first_trace = _run({**cfg, "rounds": 2}, root)
    calls, labels = len(runner.calls), function.calls
    round_one = (root / "lambo2" / "seed_0" / "round_01" / "labelled.parquet").read_bytes()
    rounds, trace = _run(cfg, root)
    assert len(runner.calls) == calls + 2 and function.calls == labels + 2 * N  # round 3 of each seed, nothing else
    assert (root / "lambo2" / "seed_0" / "round_01" / "labelled.parquet").read_bytes() == round_one
    pd.testing.assert_frame_equal(rounds[rounds["round"] < 3].reset_index(drop=True), first_rounds)
    again_rounds, again_trace = _run(cfg, root)
    assert len(runner.calls) == calls + 2 and function.calls == labels + 2 * N
    pd.testing.assert_frame_equal(again_rounds, rounds)
    pd.testing.assert_frame_equal(again_trace, trace)


def _interrupt(run: Path, index: int, keep: tuple[str, ...]) -> Path:
    """Round `index` as a run killed inside it left it: its partial directory with only the files in `keep`."""
    done = run / f"round_{index:02d}"
    partial = done.with_name(done.name + ".partial")
    partial.mkdir()
    for name in keep:
        source = done / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, partial / name)
    shutil.rmtree(done)
    return partial


@pytest.mark.parametrize("keep, runner_calls, oracle_calls", [
    (("proposals.parquet", "runner.json", "timing.json"), 0, N),           # killed before labelling: pays once
    (("proposals.parquet", "runner.json", "timing.json", "labelled.parquet"), 0, 0),  # labels saved: pays nothing
    (("proposals.parquet", "runner.json", "labelled.parquet", "oracle.json"), 0, 0),
])
def test_a_round_killed_after_the_runner_answered_resumes_without_asking_it_again(project, keep, runner_calls,
                                                                                  oracle_calls):
    cfg, root, function, runner = project
    rounds, trace = _run(cfg, root)
    run = root / "lambo2" / "seed_0"
    labels = read_table(run / "round_02" / "labelled.parquet")
    partial = _interrupt(run, 2, keep)
    calls, paid = len(runner.calls), function.calls
    resumed_rounds, resumed_trace = _run(cfg, root)
    assert len(runner.calls) - calls == runner_calls and function.calls - paid == oracle_calls
    assert not partial.exists()
    pd.testing.assert_frame_equal(read_table(run / "round_02" / "labelled.parquet"), labels)
    pd.testing.assert_frame_equal(resumed_rounds, rounds)
    pd.testing.assert_frame_equal(resumed_trace, trace)


def test_a_round_killed_inside_the_runner_asks_it_again_and_round_one_trains_afresh(project):
    cfg, root, function, runner = project
    _run(cfg, root)
    run = root / "lambo2" / "seed_0"
    labels = {i: read_table(run / f"round_{i:02d}" / "labelled.parquet") for i in (1, 2)}
    partial = _interrupt(run, 1, ())
    (partial / lambo.MODEL_DIR).mkdir()
    (partial / lambo.MODEL_DIR / lambo.MODEL_FILE).write_bytes(b"half-trained")  # left by the killed runner
    calls = len(runner.calls)
    _run(cfg, root)
    assert len(runner.calls) == calls + 1
    assert runner.calls[-1]["labelled"] == len(read_table(root / "seed" / "seed_0.parquet"))
    assert read_json(run / "round_01" / "metrics.json")["lambo"]["trained_from_scratch"] is True
    for index in (1, 2):  # the fake answers alike for the same seed and round
        pd.testing.assert_frame_equal(read_table(run / f"round_{index:02d}" / "labelled.parquet"), labels[index])


def test_a_lost_round_one_model_is_named_and_no_label_is_paid_for(project):
    cfg, root, function, runner = project
    _run({**cfg, "rounds": 2}, root)
    shutil.rmtree(root / "lambo2" / "seed_0" / "round_01" / lambo.MODEL_DIR)
    paid = function.calls
    with pytest.raises(FileNotFoundError, match=r"round_01/lambo_model/model\.pt does not exist"):
        _run(cfg, root)
    assert function.calls == paid


def test_other_settings_move_a_run_aside_with_its_paid_labels(project):
    cfg, root, function, runner = project
    _run(cfg, root)
    labels = (root / "lambo2" / "seed_0" / "round_03" / "labelled.parquet").read_bytes()
    changed = copy.deepcopy(cfg)
    changed["lambo2"]["num_steps"] += 1
    _run(changed, root)
    [aside] = sorted((root / "lambo2").glob(f"seed_0{STALE_MARK}*"))
    assert (aside / "round_03" / "labelled.parquet").read_bytes() == labels
    assert function.calls == 2 * (2 * 3 * N)


def test_a_changed_runner_moves_a_run_aside(project, monkeypatch, tmp_path):
    cfg, root, _, _ = project
    _run(cfg, root)
    edited = tmp_path / "runner.py"
    edited.write_text(lambo.RUNNER.read_text() + "\n# edited\n")
    monkeypatch.setattr(lambo, "RUNNER", edited)
    _run(cfg, root)
    assert len(sorted((root / "lambo2").glob(f"seed_0{STALE_MARK}*"))) == 1


# --- the served runner's failures --------------------------------------------------------------------------------


def _fake_interpreter(tmp_path, body: str) -> Path:
    """A stand-in for .lambo-venv/bin/python that speaks `runner.py --serve`'s protocol (it ignores its arguments)."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n" + body)
    python.chmod(0o755)
    return python


def _ask(runner, tmp_path, name):
    sequences = np.array([[0, 1, 2, 3, 4, 5, 6, 7]] * 4)
    return lambo.propose(runner, sequences, np.full(4, 0.5), np.zeros(4, dtype=int), 8,
                         LamboSettings(num_proposals=4, device="cpu"), seed=0, work_dir=tmp_path / name,
                         state_dir=tmp_path / "model")


@pytest.mark.parametrize("body, status", [
    ('while read line; do echo "Traceback: boom in training" >&2; echo error; done\n', 1),  # it answers, failing
    ('read line; echo "Traceback: boom in training" >&2; exit 3\n', 3),                       # it dies
    # it writes its traceback, closes its output and exits a second later, as a dying Python process closes its
    # output before its status can be read: the status is waited for, not read as "still running"
    ('read line; echo "Traceback: boom in training" >&2; exec 1>&-; sleep 1; exit 4\n', 4),
])
def test_a_failing_served_runner_is_named_with_its_log_and_a_dead_one_is_restarted(tmp_path, body, status):
    with lambo.LamboServer(_fake_interpreter(tmp_path, body)) as runner:
        for call in ("first", "second"):
            with pytest.raises(lambo.LamboRunnerError, match=rf"failed with status {status} .*\n.*boom in training"):
                _ask(runner, tmp_path, call)
            assert "boom in training" in (tmp_path / call / "runner.log").read_text()  # this call's part of the log
    assert runner.process is None
