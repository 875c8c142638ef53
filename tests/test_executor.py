"""llome.executor: the same numbers in this process and in spawned workers, failures named, submitit optional."""

import os
import sys

import pytest
from executor_jobs import fail, touch, train_tiny_model
from pydantic import ValidationError

from llome.executor import ExecutorError, ExecutorSettings, Job, JobsFailed, run_jobs

# Seeds on alternating thread counts: a job that ran on its neighbour's count would round its sums differently.
TORCH_JOBS = [Job(f"seed {seed} on {threads} thread(s)", train_tiny_model, {"seed": seed}, threads)
              for seed, threads in [(0, 1), (1, 2), (2, 1), (3, 2)]]


@pytest.fixture(autouse=True)
def keep_thread_settings(monkeypatch):
    """A serial job sets this process's torch thread count and the OMP/MKL variables: put them back afterwards."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None:
        torch.set_num_threads(before)


@pytest.mark.multiprocess
def test_spawned_workers_give_the_numbers_of_this_process():
    serial = run_jobs(TORCH_JOBS, {"kind": "serial"}, progress=False)
    pooled = run_jobs(TORCH_JOBS, {"kind": "process", "max_workers": 2}, progress=False)
    assert [o.value for o in pooled] == [o.value for o in serial]
    assert [o.value["threads"] for o in pooled] == [job.threads for job in TORCH_JOBS]
    assert [o.job.label for o in pooled] == [job.label for job in TORCH_JOBS]  # the order of the jobs, not of finishing


@pytest.mark.multiprocess
def test_the_thread_count_changes_the_bits_so_the_check_above_can_fail():
    one, two = run_jobs([Job("1", train_tiny_model, {"seed": 0}, 1), Job("2", train_tiny_model, {"seed": 0}, 2)],
                        {"kind": "process", "max_workers": 2}, progress=False)
    assert (one.value["threads"], two.value["threads"]) == (1, 2)
    if one.value == {**two.value, "threads": 1}:
        pytest.skip("on this CPU 1 and 2 threads round these sums alike")


def test_a_failed_job_is_named_once_the_others_have_finished(tmp_path):
    jobs = [Job("first", touch, {"path": str(tmp_path / "first")}),
            Job("broken seed 3", fail, {"message": "the seed table is damaged"}),
            Job("last", touch, {"path": str(tmp_path / "last")})]
    failed = r"1 of 3 job\(s\) failed[\s\S]*broken seed 3: ValueError: the seed table"
    with pytest.raises(JobsFailed, match=failed) as raised:
        run_jobs(jobs, {"kind": "serial"}, progress=False)
    assert (tmp_path / "first").exists() and (tmp_path / "last").exists()
    assert [o.job.label for o in raised.value.failed] == ["broken seed 3"]
    assert "Traceback" in raised.value.failed[0].error


@pytest.mark.multiprocess
def test_a_failed_job_in_a_worker_is_named_with_its_traceback(tmp_path):
    jobs = [Job("broken", fail, {"message": "no round 0"}), Job("fine", touch, {"path": str(tmp_path / "fine")})]
    with pytest.raises(JobsFailed, match="broken: ValueError: no round 0"):
        run_jobs(jobs, {"kind": "process", "max_workers": 2}, progress=False)
    assert (tmp_path / "fine").exists()


def test_submitit_missing_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    with pytest.raises(ExecutorError, match=r"pip install submitit"):
        run_jobs([Job("never runs", touch, {"path": str(tmp_path / "x")})],
                 {"kind": "submitit", "submitit": {"folder": str(tmp_path / "submitit")}}, progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.multiprocess
def test_submitit_runs_jobs_where_it_is_installed(tmp_path):
    """Without SLURM, submitit's AutoExecutor runs the array as local processes: the same path, the same numbers."""
    pytest.importorskip("submitit")
    settings = {"kind": "submitit", "submitit": {"folder": str(tmp_path / "submitit"), "poll_seconds": 1.0,
                                                 "parameters": {"timeout_min": 10}}}
    remote = run_jobs(TORCH_JOBS[:2], settings, progress=False)
    local = run_jobs(TORCH_JOBS[:2], {"kind": "serial"}, progress=False)
    assert [o.value for o in remote] == [o.value for o in local]


def test_executor_settings_are_checked():
    with pytest.raises(ValidationError, match="kind"):
        ExecutorSettings.model_validate({"kind": "slurm"})
    with pytest.raises(ValidationError, match="max_workers"):
        ExecutorSettings.model_validate({"kind": "process", "max_workers": 0})
    with pytest.raises(ValidationError, match="max_worker"):
        ExecutorSettings.model_validate({"kind": "process", "max_worker": 2})  # a typo
    with pytest.raises(ValidationError, match="needs a `submitit` section"):
        ExecutorSettings.model_validate({"kind": "submitit"})
    assert ExecutorSettings.model_validate({"kind": "process"}).max_workers == 1


def test_no_jobs_is_no_work():
    assert run_jobs([], {"kind": "process"}, progress=False) == []
