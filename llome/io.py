"""Atomic writes: an interrupted stage leaves either the old file or the new one, never half of one.

Files and directories are created with the process umask, as git and DVC leave theirs (0644 and 0755
under the usual 022), so a result can be read by the group and others it is shared with.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[int, str]:
    """A new, uniquely named file next to `path`, created 0666 less the umask.

    tempfile.mkstemp would make it 0600, and os.replace keeps that mode: every result would be private.
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), str(tmp)
        except FileExistsError:
            continue


def share_as_umask(directory: str | os.PathLike) -> None:
    """Give every file under `directory` the mode a new file gets here, 0666 less the umask.

    For files written by libraries that go through private temporary files (safetensors leaves a
    model's weights 0600), so that a model is as readable as the tables and JSON beside it.
    """
    directory = Path(directory)
    probe, name = _create_beside(directory / "umask-probe")
    os.close(probe)
    try:
        mode = stat.S_IMODE(os.stat(name).st_mode)
    finally:
        os.unlink(name)
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path, obj, sort_keys: bool = False) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=True, sort_keys=sort_keys) + "\n")


def read_json(path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run the stage that writes it first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        # Same type, so callers that catch it still do; the message names the file, which json's does not.
        raise json.JSONDecodeError(f"{path} is not valid JSON: {error.msg}", error.doc, error.pos) from None


def write_table(path, table: pd.DataFrame) -> None:
    """Parquet keeps sequence columns (tuples of ints) as lists; they come back as tuples in read_table."""
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def read_table(path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; run the stage that writes it first")
    try:
        table = pd.read_parquet(path)
    except Exception as error:  # pyarrow's messages do not say which file
        raise ValueError(f"{path} is not a readable Parquet table ({type(error).__name__}: {error}); restore it "
                         "(e.g. `dvc checkout`) or rerun the stage that writes it") from error
    for column in table.columns:
        # The first row may be None (an unparsable generation has no sequence): look past it.
        first = next((v for v in table[column] if v is not None), None) if table[column].dtype == object else None
        if isinstance(first, np.ndarray):
            table[column] = [None if v is None else tuple(int(i) for i in v) for v in table[column]]
    return table


def write_csv(path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
