"""What made a result: its config, the code it ran, and digests of its inputs, kept beside it.

A result directory holds `provenance.json`. A stage that finds a directory made by another record
empties it and starts over; one made by the same record is resumed or reused. The code part hashes
each `llome` module the stage can reach, as parsed (comments and docstrings do not count), so a
change that cannot alter behaviour does not throw away hours of training, and every other one does.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import pandas as pd

from llome.io import read_json, write_json

log = logging.getLogger(__name__)

RECORD_FILE = "provenance.json"
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


def tree_digest(directory: str | Path) -> str:
    """One hash over every file under `directory`, with their relative paths."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} does not exist; run the stage that writes it first")
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(directory).as_posix()}\0{file_digest(path)}\0".encode())
    return digest.hexdigest()[:16]


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
    """The provenance of one result: its settings, the code it runs, and its inputs' digests."""
    return {"config": config, **extra, "code": code_digest(code), "inputs": dict(sorted((inputs or {}).items()))}


def _normalised(record: dict) -> dict:
    """As it reads back from JSON (tuples become lists), so that equal records compare equal."""
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def read_record(directory: str | Path) -> dict | None:
    path = Path(directory) / RECORD_FILE
    return read_json(path) if path.exists() else None


def write_record(directory: str | Path, record: dict) -> None:
    write_json(Path(directory) / RECORD_FILE, record, sort_keys=True)


def matches(directory: str | Path, record: dict) -> bool:
    return read_record(directory) == _normalised(record)


def claim(directory: str | Path, record: dict) -> bool:
    """Make `directory` the home of `record`'s result. True if it already was (resume or reuse it).

    Anything else there (made by another config, other code or other inputs, or of unknown origin)
    is deleted: a stale result is never reused.
    """
    directory = Path(directory)
    if directory.exists():
        if matches(directory, record):
            return True
        if any(directory.iterdir()):
            log.warning("%s was made by other settings, code or inputs: rebuilding it", directory)
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    write_record(directory, record)
    return False
