"""Pinned CPU numerics: the same float32 results on any x86-64 CPU with AVX2, Intel or AMD.

torch's CPU build picks kernels by the instruction set it finds: ATen's own (softmax, SDPA, LayerNorm
backward), oneDNN's (GELU) and MKL's (the matrix multiplies, exp and tanh). Results then differ in the
last bits between an AVX2 and an AVX-512 machine, and between Intel and AMD, and a trained model drifts
from there. Three caps fix the code path: ATen and oneDNN to AVX2, and MKL to its one bitwise-reproducible
mode documented for both vendors (COMPATIBLE). Each is read once, when its library loads, so they must be
in the environment before torch is imported: `import llome` sets them, and so do the virtualenv's start-up
hook and the kernel spec that `make setup` installs, for code that imports torch first.

A fixed thread count belongs to the pin as well (a reduction split over 2 threads rounds differently from one
over 1): the profile's `numerics.threads`, never the machine's core count.

LLOME_NUMERICS=native turns the pins off, for speed; results then record that they are unpinned.
"""

from __future__ import annotations

import os
import platform
import sys

SWITCH = "LLOME_NUMERICS"
MODES = ("pinned", "native")
PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "COMPATIBLE",
}
# The caps of a CPU just below what the pins need; tests run under them to show the pins do not move.
OLDER_CPU = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


# Decided when this module first loads, before `pin_environment` can set anything.
_loaded_without_pins = "torch" in sys.modules and any(os.environ.get(k) != v for k, v in PINS.items())


class NumericsError(RuntimeError):
    pass


def mode() -> str:
    value = os.environ.get(SWITCH, "pinned")
    if value not in MODES:
        raise NumericsError(f"{SWITCH} must be one of {MODES}, got {value!r}")
    return value


def pin_environment() -> None:
    """Put the pins into the environment (and so into every child process), unless turned off.

    A pin already set to another value is an error: it would silently make other numbers.
    """
    if mode() == "native":
        return
    for name, value in PINS.items():
        current = os.environ.setdefault(name, value)
        if current != value:
            raise NumericsError(f"{name}={current} conflicts with the pinned numerics ({name}={value}); "
                                f"unset it, or set {SWITCH}=native to run unpinned")


def torch_loaded_before_pins() -> bool:
    """True when torch was imported before the pins were in the environment: they then did nothing."""
    return "torch" in sys.modules and mode() == "pinned" and _loaded_without_pins


def check_in_effect() -> None:
    """Refuse to compute a pinned result in a process where torch loaded before the pins."""
    if torch_loaded_before_pins():
        raise NumericsError("torch was imported before llome set its pinned numerics, so they are not in effect; "
                            "import llome first, start Python from the project's .venv (make setup installs a "
                            f"start-up hook), or set {SWITCH}=native to run unpinned")


def apply(threads: int) -> None:
    """A job's first call: the pins must be in effect, and torch runs on the profile's thread count.

    The count also goes into the environment, so that a training job launched in its own process uses it.
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise NumericsError(f"numerics.threads must be a positive integer, got {threads!r}")
    check_in_effect()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector extensions that decide kernel choice (avx2, fma, avx512*), as /proc/cpuinfo lists them."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return sorted(f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "fma", "amx")))
    except OSError:
        pass
    return []


def settings(threads: int | None = None) -> dict:
    """What decides the bits of a result, identical on every machine that should reproduce it."""
    current = mode()
    record = {"mode": current, "pins": dict(PINS) if current == "pinned" else {}}
    if threads is not None:
        record["threads"] = threads
    return record


def machine() -> dict:
    """Where a result was computed: kept beside it, never inside what is hashed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    return {"cpu": cpu_model(), "arch": platform.machine(), "cpu_flags": cpu_flags(), "torch": torch_version,
            "environment": {name: os.environ.get(name) for name in
                            [*PINS, "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS", SWITCH]}}


def startup_hook_line() -> str:
    """One line for a .pth file in site-packages: pins the environment whenever Python starts there."""
    return ("import os; os.environ.get('%s', 'pinned') == 'pinned' and [os.environ.setdefault(k, v) for k, v in %r.items()]\n"
            % (SWITCH, PINS))



def install_hook(site_packages: str | None = None) -> str:
    """Write the start-up hook into this interpreter's site-packages (what `make setup` does)."""
    import sysconfig

    path = os.path.join(site_packages or sysconfig.get_paths()["purelib"], "llome_numerics.pth")
    with open(path, "w") as handle:
        handle.write(startup_hook_line())
    return path

