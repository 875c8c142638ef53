"""Independent jobs through an executor: this process, a pool of fresh processes, or SLURM through submitit.

A job is an importable function with keyword arguments and its torch thread count. It fixes that count itself
(llome.numerics.apply) wherever it runs, so the same job gives the same numbers in this process, in a worker or
on a cluster node. The jobs of one `run_jobs` call must not depend on each other: a caller with dependent jobs
runs them in waves, one call per wave.

A job that raises does not stop the others of its wave: they finish (their results are saved where they write
them), and then `JobsFailed` names every failed job with the end of its traceback.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Mapping

from pydantic import Field, model_validator
from tqdm import tqdm

from llome import numerics
from llome.schema import PositiveFloat, PositiveInt, Section

KINDS = ("serial", "process", "submitit")


class SubmititSettings(Section):
    folder: str  # submitit's pickles and logs, one folder per SLURM job
    parameters: dict[str, Any] = Field(default_factory=dict)  # for submitit.AutoExecutor.update_parameters
    poll_seconds: PositiveFloat = 30.0

    optional_keys: ClassVar[frozenset[str]] = frozenset({"parameters", "poll_seconds"})


class ExecutorSettings(Section):
    kind: Literal["serial", "process", "submitit"]
    max_workers: PositiveInt = 1  # process: jobs at once
    submitit: SubmititSettings | None = None

    optional_keys: ClassVar[frozenset[str]] = frozenset({"max_workers", "submitit"})

    @model_validator(mode="after")
    def _submitit_has_a_folder(self):
        if self.kind == "submitit" and self.submitit is None:
            raise ValueError("kind submitit needs a `submitit` section with at least `folder` (its logs and pickles)")
        return self


class ExecutorError(RuntimeError):
    """An executor that cannot start (a missing package, a bad setting)."""


@dataclass(frozen=True)
class Job:
    label: str  # names the job in progress, errors and timing
    fn: Callable[..., Any]  # a module-level function: a worker process or cluster node imports it by name
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    threads: int = 1


@dataclass(frozen=True)
class Outcome:
    job: Job
    value: Any = None
    seconds: float = float("nan")
    error: str | None = None  # the job's traceback when it raised


class JobsFailed(RuntimeError):
    def __init__(self, failed: list[Outcome], total: int):
        self.failed = failed
        lines = [f"{o.job.label}: {(o.error or '').strip().splitlines()[-1] if o.error else 'failed'}" for o in failed]
        super().__init__(f"{len(failed)} of {total} job(s) failed (the others finished and kept their results):\n  "
                         + "\n  ".join(lines))


def run_job(job: Job) -> tuple[Any, float]:
    """One job on its own thread count; returns its value and wall seconds. Module-level, so a worker can import it."""
    numerics.apply(job.threads)
    started = time.perf_counter()
    value = job.fn(**job.kwargs)
    return value, time.perf_counter() - started


def run_jobs(jobs: list[Job], settings: ExecutorSettings | Mapping[str, Any], desc: str = "jobs",
             progress: bool = True) -> list[Outcome]:
    """Every job of `jobs`, through the executor `settings` names; outcomes in the order of `jobs`.

    Raises JobsFailed after all jobs have ended if any of them raised.
    """
    if not isinstance(settings, ExecutorSettings):
        settings = ExecutorSettings.model_validate(dict(settings))
    if not jobs:
        return []
    runner = {"serial": _serial, "process": _process_pool, "submitit": _submitit}[settings.kind]
    with tqdm(total=len(jobs), desc=desc, unit="job", disable=not progress) as bar:
        outcomes = runner(jobs, settings, bar)
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    if failed:
        raise JobsFailed(failed, len(jobs))
    return outcomes


def _error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _serial(jobs: list[Job], settings: ExecutorSettings, bar) -> list[Outcome]:
    outcomes = []
    for job in jobs:
        try:
            value, seconds = run_job(job)
            outcomes.append(Outcome(job, value, seconds))
        except Exception as error:  # the other jobs still run; JobsFailed reports this one
            outcomes.append(Outcome(job, error=_error_text(error)))
        bar.update()
    return outcomes


def _process_pool(jobs: list[Job], settings: ExecutorSettings, bar) -> list[Outcome]:
    """Each job in a freshly spawned process: no torch state, thread pool or RNG carried over from a fork or an
    earlier job, so a job's numbers do not depend on which jobs ran before it in the same worker."""
    context = multiprocessing.get_context("spawn")
    fresh = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    outcomes: list[Outcome | None] = [None] * len(jobs)
    pool = ProcessPoolExecutor(max_workers=min(settings.max_workers, len(jobs)), mp_context=context, **fresh)
    try:
        futures = {pool.submit(run_job, job): index for index, job in enumerate(jobs)}
        for future in as_completed(futures):
            index = futures[future]
            try:
                value, seconds = future.result()
                outcomes[index] = Outcome(jobs[index], value, seconds)
            except Exception as error:
                outcomes[index] = Outcome(jobs[index], error=_error_text(error))
            bar.update()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return outcomes


def _submitit(jobs: list[Job], settings: ExecutorSettings, bar) -> list[Outcome]:
    """One SLURM array of all jobs (or local processes where submitit finds no SLURM), polled until all end."""
    try:
        import submitit
    except ImportError:
        raise ExecutorError("executor kind 'submitit' needs the submitit package, which the lock file does not "
                            "install: pip install submitit (into .venv), or choose kind 'process'") from None
    executor = submitit.AutoExecutor(folder=settings.submitit.folder)
    # A node gets the CPUs its job's threads use, unless the settings say otherwise.
    executor.update_parameters(**{"cpus_per_task": max(job.threads for job in jobs), **settings.submitit.parameters})
    with executor.batch():
        submitted = [executor.submit(run_job, job) for job in jobs]
    outcomes: list[Outcome | None] = [None] * len(jobs)
    pending = set(range(len(jobs)))
    while pending:
        for index in sorted(pending):
            if not submitted[index].done():
                continue
            try:
                value, seconds = submitted[index].result()
                outcomes[index] = Outcome(jobs[index], value, seconds)
            except Exception as error:  # submitit's FailedJobError carries the node's traceback
                outcomes[index] = Outcome(jobs[index], error=_error_text(error))
            pending.discard(index)
            bar.update()
        if pending:
            time.sleep(settings.submitit.poll_seconds)
    return outcomes
