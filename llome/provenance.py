"""What made a result: its config, the code it ran, and digests of its inputs, kept beside it.

A result directory holds `provenance.json`. A stage that finds a directory made by the same record
resumes or reuses it. One made by another record is never deleted, since it may hold paid oracle
labels: it is moved aside to a sibling `<name>.stale-<UTC time>` (a warning says where) and the
stage starts over in a fresh directory; delete the stale copy once you no longer need it. A
non-empty directory without `provenance.json` is not a llome result (a user's folder, or a result
from before records existed): a stage refuses to write into it or remove it, and says so.

The code part hashes each `llome` module the stage can reach, as parsed (comments and docstrings do
not count), so a change that cannot alter behaviour does not throw away hours of training, and every
other one does. The inputs part hashes what a result is made from, not the records kept beside it:
a model's identity is its weights, config and tokenizer, not its training log (`TRAINING_RECORDS`).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

import pandas as pd

from llome import numerics
from llome.io import read_json, write_json

log = logging.getLogger(__name__)

RECORD_FILE = "provenance.json"
STALE_MARK = ".stale-"
# The files llome.train writes beside a model's weights: they describe how it was trained, not what it
# is, so editing one (or a rerun that rewrites one) changes no result made from the model.
TRAINING_RECORDS = frozenset({"train_log.csv", "checkpoints.csv", "timing.json"})
PACKAGE = "llome"
PACKAGE_ROOT = Path(__file__).resolve().parent


def _module_path(name: str) -> Path | None:
    """The source file of a `llome` module or package, found without importing it."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every module an import statement anywhere in `tree` names, relative imports resolved."""
    names = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            names.add(base)
            # `from llome.stages import common` imports a module, not a name
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _with_parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py too."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def module_files(entry_points: list[str], source_imports: list[str] = ()) -> list[Path]:
    """The source files of every `llome` module reachable from `entry_points` by import statements.

    `source_imports` are extra module names imported by code outside the package (a notebook's cells).
    Imports inside functions count: a stage that calls them runs them.
    """
    pending = [n for name in [*entry_points, *source_imports] for n in _with_parents(name)]
    seen: dict[str, Path] = {}
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        path = _module_path(name)
        if path is None:
            continue
        seen[name] = path
        tree = ast.parse(path.read_text(), filename=str(path))
        for imported in _imported_modules(tree, name, path.name == "__init__.py"):
            pending.extend(_with_parents(imported))
    return sorted(set(seen.values()))


def notebook_imports(notebook: str | Path) -> list[str]:
    """Modules imported by a notebook's code cells (IPython magics are skipped)."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    source = "\n".join(
        "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
        for cell in cells if cell["cell_type"] == "code")
    return sorted(_imported_modules(ast.parse(source), "__notebook__", False))


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def code_digest(entry_points: list[str]) -> dict[str, str]:
    """{module path: hash of its syntax tree without docstrings} over what `entry_points` reach."""
    digests = {}
    for path in module_files(entry_points):
        tree = _strip_docstrings(ast.parse(path.read_text(), filename=str(path)))
        digests[str(path.relative_to(PACKAGE_ROOT.parent))] = hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]
    return digests


def file_digest(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def tree_files(directory: str | Path, include: Callable[[PurePosixPath], bool] | None = None) -> list[Path]:
    """The files under `directory`, sorted; with `include`, those whose path relative to it passes."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} does not exist; run the stage that writes it first")
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    if include is None:
        return files
    return [p for p in files if include(PurePosixPath(p.relative_to(directory).as_posix()))]


def tree_digest(directory: str | Path, include: Callable[[PurePosixPath], bool] | None = None) -> str:
    """One hash over every file under `directory` (or those `include` accepts), with their relative paths."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in tree_files(directory, include):
        digest.update(f"{path.relative_to(directory).as_posix()}\0{file_digest(path)}\0".encode())
    return digest.hexdigest()[:16]


def is_model_file(relative: PurePosixPath) -> bool:
    """Part of what a saved model is (weights, config, tokenizer), as opposed to a record of its training."""
    return relative.name not in TRAINING_RECORDS


def model_digest(model_dir: str | Path) -> str:
    return tree_digest(model_dir, include=is_model_file)


def check_model(model_dir: str | Path) -> list[Path]:
    """The files a saved model is made of, once each has been read back; raises naming a missing or damaged one."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir / 'config.json'} does not exist, so {model_dir} is no saved model")
    files = tree_files(model_dir, include=is_model_file)
    if not any(path.suffix == ".safetensors" for path in files):
        raise FileNotFoundError(f"{model_dir} holds no *.safetensors weights, so it is no saved model")
    for path in files:
        check_readable(path)
    return files


class CorruptResultError(RuntimeError):
    """A result file that exists but cannot be read back (truncated, half-copied, overwritten)."""


def check_readable(path: str | Path) -> None:
    """Raise, naming `path`, unless it exists and parses as its kind of file.

    JSON, Parquet and safetensors files are read through (safetensors checks that its header covers the
    whole file, so a truncated weights file fails here); other files only need to exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run the stage that writes it first")
    try:
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq
            pq.read_table(path)
        elif path.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), framework="numpy") as weights:
                weights.keys()
    except Exception as error:
        raise CorruptResultError(f"{path} cannot be read ({type(error).__name__}: {error})") from error


def table_digest(table: pd.DataFrame) -> str:
    return hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()[:16]


def result_config(stage_cfg: dict) -> dict:
    """A stage config less what cannot change one seed's result: the list of seeds, the round count
    (more rounds extend a run), the profile's name and how training is launched (not what it runs)."""
    config = {k: v for k, v in stage_cfg.items() if k not in ("seeds", "rounds", "profile")}
    if isinstance(config.get("launcher"), dict):
        config["launcher"] = {k: v for k, v in config["launcher"].items() if k != "kind"}
    return config


def make_record(config: dict, *, code: list[str], inputs: dict | None = None, **extra) -> dict:
    """The provenance of one result: its settings, the code it runs, its inputs' digests, and whether its
    numerics were pinned (an unpinned result is never reused as a pinned one, nor the reverse)."""
    return {"config": config, **extra, "numerics": numerics.settings(), "code": code_digest(code),
            "inputs": dict(sorted((inputs or {}).items()))}


def _normalised(record: dict) -> dict:
    """As it reads back from JSON (tuples become lists), so that equal records compare equal."""
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def read_record(directory: str | Path) -> dict | None:
    path = Path(directory) / RECORD_FILE
    return read_json(path) if path.exists() else None


def write_record(directory: str | Path, record: dict) -> None:
    write_json(Path(directory) / RECORD_FILE, record, sort_keys=True)


def _readable_record(directory: Path) -> dict | None:
    """The record in `directory`, or None when there is none or it does not parse (an unreadable record
    identifies nothing, so its result counts as stale)."""
    try:
        return read_record(directory)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def matches(directory: str | Path, record: dict) -> bool:
    return _readable_record(Path(directory)) == _normalised(record)


class ForeignDirectoryError(FileExistsError):
    """A path a result would go to holds something llome did not make."""


def refuse_foreign(directory: str | Path) -> None:
    """Raise unless `directory` is absent, empty, or a llome result (it holds a provenance record)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ForeignDirectoryError(f"{directory} is a file, not a result directory; llome will not replace it: "
                                    "move it away or choose another output directory")
    if directory.is_dir() and not (directory / RECORD_FILE).exists() and any(directory.iterdir()):
        raise ForeignDirectoryError(
            f"{directory} holds files but no {RECORD_FILE}, so it is not a llome result; llome neither writes "
            "into nor removes such a directory: move its contents away or choose another output directory")


def move_aside(directory: str | Path) -> Path:
    """Rename `directory` to an unused sibling `<name>.stale-<UTC time>[-<n>]` and return the new path."""
    directory = Path(directory)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = directory.with_name(f"{directory.name}{STALE_MARK}{stamp}")
    counter = 1
    while target.exists():  # several moves within one second
        counter += 1
        target = directory.with_name(f"{directory.name}{STALE_MARK}{stamp}-{counter}")
    directory.rename(target)
    log.warning("%s was made by other settings, code or inputs: moved it aside to %s and starting over "
                "(its files, paid labels included, are kept there; delete it when no longer needed)",
                directory, target)
    return target


def claim(directory: str | Path, record: dict) -> bool:
    """Make `directory` the home of `record`'s result. True if it already was (resume or reuse it).

    A result of another record (other config, code or inputs, or an unreadable record) is moved aside
    with `move_aside`, never deleted and never reused. A non-empty directory without a record raises
    ForeignDirectoryError and is left as it was.
    """
    directory = Path(directory)
    refuse_foreign(directory)
    if directory.exists():
        if matches(directory, record):
            return True
        if any(directory.iterdir()):
            move_aside(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_record(directory, record)
    return False
