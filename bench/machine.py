"""What a benchmark ran on, printed beside its ratios: they shift with the CPU model and the thread counts.

    from machine import describe_machine    # a bench script's own directory is on sys.path
    print(describe_machine())
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The first `model name` of /proc/cpuinfo (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def numpy_blas_threads() -> str:
    """Threads of the OpenBLAS bundled in numpy's wheel, asked through its own C API: threadpoolctl, which
    would ask the same question, is not a dependency. "unknown" for a numpy built against another BLAS."""
    import numpy

    for path in sorted(Path(numpy.__file__).parent.with_name("numpy.libs").glob("*openblas*.so*")):
        library = ctypes.CDLL(str(path))  # numpy has loaded it already: this is the same library
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads"):
            if hasattr(library, symbol):
                return str(getattr(library, symbol)())
    return "unknown"


def describe_machine() -> str:
    import numpy
    import torch

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"machine: {cpu_model()}, {usable} usable of {os.cpu_count()} logical cores; "
            f"torch {torch.__version__} {torch.get_num_threads()} threads ({torch.get_num_interop_threads()} "
            f"inter-op); numpy {numpy.__version__} BLAS {numpy_blas_threads()} threads")


def source_commit() -> str:
    """The commit a bench's scratch copy was made from, marked when the working tree had changes beyond it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
    return head.strip() + (" with uncommitted changes" if changed else "")
