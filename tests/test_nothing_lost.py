"""Nothing lost: a paid label is never deleted or silently bought again, and what llome did not make is not touched.

The run-level tests use the real loop at toy size (tests/test_loop.py's toy function and round 0) and the real
round-0 stage function with a two-layer model.
"""

import logging
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from llome.io import read_json, read_table, write_json, write_table
from llome.loop import round_zero_inputs, run_llome
from llome.rounds import round_dir
from llome.provenance import (RECORD_FILE, STALE_MARK, TRAINING_RECORDS, CorruptResultError, ForeignDirectoryError,
                              check_readable, claim, read_record)
from test_loop import ToyFunction, _setup, same

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent


def files_under(directory: Path) -> dict:
    """Every file under `directory` by relative path, with what shows it was not rewritten: inode, mtime, bytes."""
    return {str(p.relative_to(directory)): (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(directory.rglob("*")) if p.is_file()}


def stale_siblings(directory: Path) -> list[Path]:
    return sorted(directory.parent.glob(f"{directory.name}{STALE_MARK}*"))


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


# --- claim: move aside, refuse what is not a result --------------------------------------------------------------

RECORD = {"config": {"a": (1, 2)}, "code": {}, "inputs": {}}


def test_claim_moves_a_result_of_another_record_aside_keeping_every_file(tmp_path, caplog):
    result = tmp_path / "r"
    assert claim(result, RECORD) is False
    (result / "labelled.parquet").write_bytes(b"paid labels")
    other = {**RECORD, "config": {"a": (1, 3)}}
    with caplog.at_level(logging.WARNING, logger="llome.provenance"):
        assert claim(result, other) is False
    [aside] = stale_siblings(result)
    assert (aside / "labelled.parquet").read_bytes() == b"paid labels"
    assert read_record(aside)["config"] == {"a": [1, 2]}
    assert str(aside) in caplog.text
    assert sorted(p.name for p in result.iterdir()) == [RECORD_FILE] and read_record(result)["config"] == {"a": [1, 3]}

    (result / "labelled.parquet").write_bytes(b"more paid labels")
    claim(result, RECORD)  # a second move within the same second needs a name of its own
    assert [(p / "labelled.parquet").read_bytes() for p in stale_siblings(result)] == [b"paid labels",
                                                                                       b"more paid labels"]


@pytest.mark.parametrize("contents", ["folder", "file"])
def test_claim_refuses_what_is_not_a_llome_result_and_leaves_it_as_it_was(tmp_path, contents):
    precious = tmp_path / "precious"
    if contents == "folder":
        precious.mkdir()
        (precious / "my_notes.txt").write_text("not yours")
    else:
        precious.write_text("not yours either")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ForeignDirectoryError, match=str(precious)):
        claim(precious, RECORD)
    assert sorted(tmp_path.rglob("*")) == before
    assert (precious / "my_notes.txt" if contents == "folder" else precious).read_text().startswith("not yours")


def test_claim_takes_an_empty_directory_and_moves_one_with_an_unreadable_record_aside(tmp_path):
    (tmp_path / "empty").mkdir()
    assert claim(tmp_path / "empty", RECORD) is False and not stale_siblings(tmp_path / "empty")
    assert claim(tmp_path / "empty", RECORD) is True

    (tmp_path / "r").mkdir()
    (tmp_path / "r" / RECORD_FILE).write_text('{"config": ')  # cut short
    (tmp_path / "r" / "labelled.parquet").write_bytes(b"paid labels")
    assert claim(tmp_path / "r", RECORD) is False
    [aside] = stale_siblings(tmp_path / "r")
    assert (aside / "labelled.parquet").read_bytes() == b"paid labels"


# --- file modes --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_results_follow_the_umask_as_git_and_dvc_leave_files(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_json(tmp_path / "run" / "metrics.json", {"a": 1})
        write_table(tmp_path / "run" / "labelled.parquet", pd.DataFrame({"score": [0.5]}))
        claim(tmp_path / "run" / "round", RECORD)
    finally:
        os.umask(previous)
    for name in ("metrics.json", "labelled.parquet", "round/" + RECORD_FILE):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o666 & ~umask, name
    for directory in (tmp_path / "run", tmp_path / "run" / "round"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o777 & ~umask, directory


# --- reading back ------------------------------------------------------------------------------------------------

def test_a_damaged_file_is_named_when_read_back(tmp_path):
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((64, 64), dtype=np.float32)}, str(tmp_path / "model.safetensors"))
    write_table(tmp_path / "pairs.parquet", pd.DataFrame({"reward": np.arange(100.0)}))
    write_json(tmp_path / "config.json", {"hidden_size": 32})
    for path in tmp_path.iterdir():
        check_readable(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(CorruptResultError, match=str(path)):
            check_readable(path)
    with pytest.raises(ValueError, match=str(tmp_path / "pairs.parquet")):
        read_table(tmp_path / "pairs.parquet")
    with pytest.raises(FileNotFoundError, match="absent.json"):
        check_readable(tmp_path / "absent.json")


# --- a finished run, shared by the run-level tests ---------------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(copy_model, tmp_path_factory):
    """Two finished rounds of the toy loop. Round 0's model directory carries its training log as
    llome.launch.run_job leaves it (the copy model's own log)."""
    root = tmp_path_factory.mktemp("finished")
    f, seed_table, round_zero, cfg = _setup(copy_model, root)
    training_log = copy_model["dir"].parent / "train" / "train_log.csv"
    (round_zero / "model" / "train_log.csv").write_bytes(training_log.read_bytes())
    history = run_llome(cfg, function=f, seed_table=seed_table, round_zero_dir=round_zero, run_dir=root / "run",
                        seed=0, progress=False)
    return {"root": root, "cfg": cfg, "seed_table": seed_table, "history": history}


@pytest.fixture
def project(finished_run, tmp_path):
    import shutil

    shutil.copytree(finished_run["root"], tmp_path / "p", copy_function=shutil.copy2)
    return {**finished_run, "root": tmp_path / "p", "round_zero": tmp_path / "p" / "sft", "run": tmp_path / "p" / "run"}


def rerun(project, function, **overrides):
    return run_llome({**project["cfg"], **overrides}, function=function, seed_table=project["seed_table"],
                     round_zero_dir=project["round_zero"], run_dir=project["run"], seed=0, progress=False)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.slow
@pytest.mark.parametrize("damage, named", [
    (lambda r0: truncate(r0 / "model" / "model.safetensors"), "model.safetensors"),
    (lambda r0: (r0 / "pairs.parquet").unlink(), "pairs.parquet"),
    (lambda r0: truncate(r0 / "pairs.parquet"), "pairs.parquet"),
    (lambda r0: truncate(r0 / "model" / "tokenizer_config.json"), "tokenizer_config.json"),
    (lambda r0: (r0 / "model" / "config.json").unlink(), "config.json"),
    (lambda r0: (r0 / "model" / "model.safetensors").unlink(), "safetensors"),
], ids=["truncated weights", "deleted pairs", "truncated pairs", "truncated tokenizer", "deleted model config",
        "deleted weights"])
def test_a_damaged_round_zero_raises_naming_the_file_and_leaves_every_finished_round_as_it_was(project, damage,
                                                                                                named):
    before = files_under(project["run"])
    damage(project["round_zero"])
    f = ToyFunction()
    with pytest.raises((FileNotFoundError, CorruptResultError), match=named):
        rerun(project, f)
    assert files_under(project["run"]) == before
    assert not stale_siblings(project["run"]) and f.calls == 0


@pytest.mark.slow
def test_a_seed_table_without_scores_raises_before_the_run_is_touched(project):
    before = files_under(project["run"])
    with pytest.raises(ValueError, match="'score'"):
        run_llome(project["cfg"], function=ToyFunction(), seed_table=project["seed_table"].drop(columns="score"),
                  round_zero_dir=project["round_zero"], run_dir=project["run"], seed=0, progress=False)
    assert files_under(project["run"]) == before


@pytest.mark.slow
@pytest.mark.parametrize("record", ["model/train_log.csv", "metrics.json", RECORD_FILE])
def test_editing_a_record_beside_round_zero_rebuilds_nothing_and_pays_nothing(project, record):
    path = project["round_zero"] / record
    if path.exists():
        path.write_bytes(path.read_bytes() + b"\n")
    else:  # _setup's round 0 has no metrics or provenance: one appearing must not matter either
        path.write_text("{}\n")
    before = files_under(project["run"])
    f = ToyFunction()
    history = rerun(project, f)
    assert f.calls == 0 and same(history, project["history"])
    assert files_under(project["run"]) == before


@pytest.mark.slow
def test_a_changed_round_zero_moves_the_run_aside_with_its_labels_and_starts_over(project, caplog):
    before = files_under(project["run"])
    pairs = read_table(project["round_zero"] / "pairs.parquet")
    write_table(project["round_zero"] / "pairs.parquet", pairs.head(len(pairs) // 2))
    f = ToyFunction()
    with caplog.at_level(logging.WARNING, logger="llome.provenance"):
        history = rerun(project, f, rounds=1)
    [aside] = stale_siblings(project["run"])
    assert {k: v[2] for k, v in files_under(aside).items()} == {k: v[2] for k, v in before.items()}
    assert str(aside) in caplog.text
    assert [m["round"] for m in history] == [1] and f.calls > 0
    assert read_record(project["run"])["inputs"]["round_zero_pairs"] != read_record(aside)["inputs"]["round_zero_pairs"]


@pytest.mark.slow
def test_run_llome_refuses_a_folder_that_is_not_a_run(project):
    precious = project["root"] / "precious"
    precious.mkdir()
    (precious / "my_notes.txt").write_text("not a run")
    f = ToyFunction()
    with pytest.raises(ForeignDirectoryError, match="precious"):
        run_llome(project["cfg"], function=f, seed_table=project["seed_table"], round_zero_dir=project["round_zero"],
                  run_dir=precious, seed=0, progress=False)
    assert [p.name for p in precious.iterdir()] == ["my_notes.txt"] and f.calls == 0
    assert (precious / "my_notes.txt").read_text() == "not a run"


CHILD = """
import pickle, sys
sys.path.insert(0, {tests!r})
from test_loop import ToyFunction
from llome.loop import run_llome
with open(sys.argv[1], "rb") as handle:
    cfg, seed_table = pickle.load(handle)
run_llome(cfg, function=ToyFunction(), seed_table=seed_table, round_zero_dir=sys.argv[2], run_dir=sys.argv[3],
          seed=0, progress=False)
"""


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in metrics.items() if k != "seconds"} for metrics in history]  # from before timing.json


@pytest.mark.slow
def test_a_run_killed_mid_round_resumes_reusing_every_finished_round(project, tmp_path, umask_022):
    run = tmp_path / "killed"
    arguments = tmp_path / "arguments.pickle"
    arguments.write_bytes(pickle.dumps((project["cfg"], project["seed_table"])))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    mid_round = run / "round_02.partial" / "candidates.parquet"
    with open(tmp_path / "child.log", "wb") as child_log:
        child = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(TESTS_DIR)), str(arguments),
                                  str(project["round_zero"]), str(run)], env=env, stdout=child_log, stderr=child_log)
        deadline = time.monotonic() + 300
        while not mid_round.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert mid_round.exists(), (tmp_path / "child.log").read_text()[-3000:]
    assert child.returncode == -signal.SIGKILL and not round_dir(run, 2).exists()
    round_one = files_under(round_dir(run, 1))
    labelled_before_kill = (mid_round.parent / "labelled.parquet").exists()

    f = ToyFunction()
    history = run_llome(project["cfg"], function=f, seed_table=project["seed_table"],
                        round_zero_dir=project["round_zero"], run_dir=run, seed=0, progress=False)
    assert files_under(round_dir(run, 1)) == round_one
    reference = project["history"]
    # only round 2's labels are bought, and only if the kill came before they were saved
    round_two_calls = reference[1]["oracle_calls"] + reference[1]["diagnostic_oracle_calls"]
    assert f.calls == (0 if labelled_before_kill else round_two_calls)
    for got, want in zip(without_timings(history), without_timings(reference), strict=True):
        differing = [key for key in want if not same(got.get(key), want[key])]
        assert not differing, f"round {want['round']} differs from the uninterrupted run in {differing}"
    for index in (1, 2):
        pd.testing.assert_frame_equal(read_table(round_dir(run, index) / "labelled.parquet"),
                                      read_table(round_dir(project["run"], index) / "labelled.parquet"))
    assert not mid_round.parent.exists() and not stale_siblings(run)
    for path in [run, *run.rglob("*")]:  # readable by group and others, as under umask 022 git and DVC leave files
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path


# --- round 0's identity ------------------------------------------------------------------------------------------

def tiny_round_zero(seed_table: pd.DataFrame, out_dir: Path, learning_rate: float = 1e-3) -> dict:
    from llome.round_zero import run_round_zero

    model_cfg = {"gpt_neox": {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
                              "intermediate_size": 32, "max_position_embeddings": 64}}
    pairs_cfg = {"max_distance": 0.5, "num_neighbors": 4, "infeasible_fraction": 0.1, "max_pairs": 64}
    train_cfg = {"learning_rate": learning_rate, "num_train_epochs": 1, "per_device_train_batch_size": 16,
                 "logging_steps": 1, "save_steps": 100000, "eval_fraction": 0.1, "num_evals": 1}
    return run_round_zero(seed_table, model_cfg=model_cfg, pairs_cfg=pairs_cfg, train_cfg=train_cfg,
                          num_states=ToyFunction.num_states, out_dir=out_dir, seed=0, progress=False)


@pytest.fixture(scope="module")
def toy_seed_table() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    pool = rng.integers(0, ToyFunction.num_states, size=(120, ToyFunction.dim))
    return pd.DataFrame({"sequence": [tuple(map(int, r)) for r in pool], "score": ToyFunction()(pool)})


@pytest.mark.slow
def test_round_zero_identity_is_its_model_and_pairs_not_its_records(toy_seed_table, tmp_path, umask_022):
    from llome.models import load_model_and_tokenizer, save_model_and_tokenizer

    out = tmp_path / "seed_0"
    tiny_round_zero(toy_seed_table, out)
    for path in [out, *out.rglob("*")]:  # the weights too, which safetensors writes 0600
        assert stat.S_IMODE(path.stat().st_mode) & 0o044 == 0o044, path
    records = {"metrics.json", RECORD_FILE, "model/train_log.csv", "model/timing.json"}
    assert records <= set(files_under(out))  # the records this contract is about are really written
    assert {Path(name).name for name in files_under(out / "model")} & TRAINING_RECORDS == {"train_log.csv",
                                                                                         "timing.json"}

    # What a model is: exactly the files saving it writes; all the rest under model/ is a training record.
    model, tokenizer = load_model_and_tokenizer(out / "model")
    save_model_and_tokenizer(model, tokenizer, tmp_path / "saved")
    identity = {f"model/{name}" for name in files_under(tmp_path / "saved")} | {"pairs.parquet"}
    assert set(files_under(out)) == identity | records

    digest = round_zero_inputs(out)
    for name in records:
        (out / name).write_bytes((out / name).read_bytes() + b"\n")
        assert round_zero_inputs(out) == digest, f"{name} is a record, yet changing it changes round 0's identity"
    config = read_json(out / "model" / "config.json")
    write_json(out / "model" / "config.json", {**config, "note": "changed"})
    assert round_zero_inputs(out)["round_zero_model"] != digest["round_zero_model"]
    write_table(out / "pairs.parquet", read_table(out / "pairs.parquet").head(3))
    assert round_zero_inputs(out)["round_zero_pairs"] != digest["round_zero_pairs"]


@pytest.mark.slow
def test_round_zero_reuses_a_result_with_edited_logs_refuses_a_damaged_one_and_moves_a_stale_one_aside(
        toy_seed_table, tmp_path, caplog):
    out = tmp_path / "seed_0"
    metrics = tiny_round_zero(toy_seed_table, out)
    log_file = out / "model" / "train_log.csv"
    log_file.write_bytes(log_file.read_bytes() + b"\n")
    before = files_under(out)
    assert tiny_round_zero(toy_seed_table, out) == metrics and files_under(out) == before

    weights = out / "model" / "model.safetensors"
    intact = weights.read_bytes()
    truncate(weights)
    with pytest.raises(CorruptResultError, match="model.safetensors"):
        tiny_round_zero(toy_seed_table, out)
    assert weights.read_bytes() == intact[: len(intact) // 2] and not stale_siblings(out)
    weights.write_bytes(intact)

    with caplog.at_level(logging.WARNING, logger="llome.provenance"):
        tiny_round_zero(toy_seed_table, out, learning_rate=3e-3)
    [aside] = stale_siblings(out)
    assert {k: v[2] for k, v in files_under(aside).items()} == {k: v[2] for k, v in before.items()}
    assert str(aside) in caplog.text and (out / "model" / "model.safetensors").read_bytes() != intact


@pytest.mark.slow
def test_round_zero_refuses_an_output_folder_that_is_not_a_result(toy_seed_table, tmp_path):
    out = tmp_path / "seed_0"
    out.mkdir()
    (out / "my_notes.txt").write_text("not a model")
    with pytest.raises(ForeignDirectoryError, match="seed_0"):
        tiny_round_zero(toy_seed_table, out)
    assert [p.name for p in out.iterdir()] == ["my_notes.txt"]
    assert not out.with_name("seed_0.partial").exists()


@pytest.mark.slow
def test_a_round_killed_after_saving_its_labels_resumes_without_paying_again(project):
    """The kill fell between the labels and the oracle log: the labels say what was paid, nothing is rebought."""
    final = project["run"] / "round_02"
    partial = final.with_name("round_02.partial")
    final.rename(partial)
    for name in ("metrics.json", "oracle.json"):
        (partial / name).unlink()
    f = ToyFunction()
    history = rerun(project, f)
    assert f.calls == 0
    for key in ("oracle_calls", "diagnostic_oracle_calls"):
        assert history[1][key] == project["history"][1][key], key


def test_a_sequence_column_whose_first_row_is_missing_still_reads_back_as_tuples(tmp_path):
    from llome.io import read_table, write_table

    write_table(tmp_path / "t.parquet", pd.DataFrame({"sequence": [None, (1, 2), (3, 4)]}))
    assert read_table(tmp_path / "t.parquet")["sequence"].tolist() == [None, (1, 2), (3, 4)]
