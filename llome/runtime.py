"""Where work runs: the device and launcher settings, checked before any work starts.

Kept apart from llome.models and llome.launch so that checking a profile imports no training code.
"""

from __future__ import annotations

import re

DEVICES = "auto, cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(?::(0|[1-9][0-9]*))?")
PRECISIONS = ("no", "fp16", "bf16")  # accelerate's --mixed_precision values

LAUNCHERS = ("inprocess", "subprocess", "accelerate")


def check_device(device: str | None) -> str:
    """The device setting itself, if it is one of auto, cpu, cuda, cuda:N (None means auto)."""
    if device is None:
        return "auto"
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"device must be {DEVICES}, got {device!r}")
    return device


def check_launcher(launcher: dict | None) -> dict:
    launcher = dict(launcher or {"kind": "inprocess"})
    unknown = sorted(set(launcher) - {"kind", "num_processes", "mixed_precision", "device"})
    if unknown:
        raise ValueError(f"launcher settings {unknown} are unknown (kind, num_processes, mixed_precision, device)")
    kind = launcher.get("kind", "inprocess")
    if kind not in LAUNCHERS:
        raise ValueError(f"launcher.kind must be one of {LAUNCHERS}, got {kind!r}")
    n = launcher.get("num_processes", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"launcher.num_processes must be a positive integer, got {n!r}")
    if n > 1 and kind != "accelerate":
        raise ValueError(f"launcher.num_processes={n} needs launcher.kind: accelerate ({kind} runs one process)")
    mixed_precision = launcher.get("mixed_precision", "no")
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"launcher.mixed_precision must be one of {PRECISIONS}, got {mixed_precision!r}")
    try:
        device = check_device(launcher.get("device", "auto"))
    except ValueError as error:
        raise ValueError(f"launcher.{error}") from None
    if n > 1 and device.startswith("cuda:"):
        raise ValueError(f"device {device!r} pins one GPU, but launcher.num_processes={n} trains on {n} GPUs: "
                         "use device auto or cuda")
    return {"kind": kind, "num_processes": n, "mixed_precision": mixed_precision, "device": device}
