"""Stage `test_functions`: the Ehrlich instances as JSON, with their exact difficulty (docs/method.md §2)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from llome.difficulty import difficulty
from llome.ehrlich import Ehrlich
from llome.io import write_csv, write_json
from llome.provenance import make_record, write_record
from llome.stages.common import apply_numerics


def build_test_functions(cfg: dict, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Each configured instance as JSON, and its difficulty: exact feasible and optimal fractions."""
    apply_numerics(cfg)
    out_dir = Path(out_dir)
    rows = []
    for name in tqdm(cfg["names"], desc="test functions", disable=not progress):
        function = Ehrlich.from_name(name, seed=cfg["seed"])
        write_json(out_dir / f"{name}.json", function.to_dict())
        d = difficulty(function)
        rows.append({
            "name": name, "num_states": function.num_states, "dim": function.dim,
            "num_motifs": function.num_motifs, "motif_length": function.motif_length,
            "quantization": function.quantization,
            # Counts overflow 64-bit integers: kept exact as decimal strings.
            "num_feasible": str(d["num_feasible"]), "log10_feasible_fraction": d["log10_feasible_fraction"],
            "num_optimal": None if d["num_optimal"] is None else str(d["num_optimal"]),
            "log10_optimal_fraction": d["log10_optimal_fraction"],
            "optimal_unavailable_reason": d["optimal_unavailable_reason"],
        })
    table = pd.DataFrame(rows)
    write_csv(out_dir / "difficulty.csv", table)
    write_record(out_dir, make_record(cfg, code=[__name__]))
    return table
