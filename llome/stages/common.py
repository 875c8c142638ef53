"""What several stages share: where a seed's results live, the objective under study, the seed data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llome import numerics
from llome.io import read_json, read_table
from llome.objective import resolve


def apply_numerics(cfg: dict) -> None:
    """A stage's first call: the pinned numerics in effect, torch on the profile's thread count."""
    numerics.apply(cfg["numerics"]["threads"])


def seed_dir(root: Path, seed: int) -> Path:
    return Path(root) / f"seed_{seed}"


def load_function(name: str, test_functions_dir: Path | None = None, seed: int | None = None):
    """The objective params.yaml's `function` names: an Ehrlich instance or a `package.module:factory`'s object.

    An Ehrlich instance is read as the test_functions stage saved it, or built from its name and `seed`.
    A stage passes its config's `function_seed` (params.yaml's test_functions.seed): a default seed here would
    let a stage optimise another instance than the one test_functions describes. A factory takes no seed.
    """
    if ":" in name:
        return resolve(name)
    if test_functions_dir is not None and (Path(test_functions_dir) / f"{name}.json").exists():
        from llome.ehrlich import Ehrlich

        return Ehrlich.from_dict(read_json(Path(test_functions_dir) / f"{name}.json"))
    if seed is None:
        raise ValueError(f"load_function({name!r}) needs the function's seed (a stage config's function_seed)")
    return resolve(name, seed=seed)


def seed_data_path(seed_data_dir: Path, seed: int) -> Path:
    return Path(seed_data_dir) / f"seed_{seed}.parquet"


def read_seed_table(seed_data_dir: Path, seed: int) -> pd.DataFrame:
    return read_table(seed_data_path(seed_data_dir, seed))
