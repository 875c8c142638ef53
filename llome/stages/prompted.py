"""Stage `prompted`: the prompted-LLM baseline's rounds for every seed (docs/prompted.md, docs/method.md §7).

The pipeline runs it as notebooks/10_prompted.ipynb from data/params/prompted.json; by hand, from a profile:

    python -m llome.config --params params.yaml --profile smoke --out scratch/params
    python -m llome.stages.prompted --config scratch/params/prompted.json --out scratch/prompted
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from llome import smollm2
from llome.io import read_json, write_csv, write_json
from llome.models import build_model, load_tokenizer, resolve_device
from llome.objective import optimum_of
from llome.prompted import ModelSampler, run_prompted
from llome.prompted_settings import PromptedConfig, prompted_config
from llome.provenance import claim, file_digest, make_record, model_digest, result_config, table_digest
from llome.rounds import best_so_far_trace
from llome.schema import ConfigError
from llome.stages.common import apply_numerics, load_function, read_seed_table, seed_dir

METHOD = "prompted"


# The checkout whose git-ignored models/ `make smollm2` filled; the Makefile exports it (as LLOME_LAMBO_VENV for
# LaMBO-2), so that a scratch copy or a queued experiment (dvc exp), which has no models/ of its own, finds it.
CHECKOUT_VARIABLE = "LLOME_CHECKOUT"


def locate(name_or_path: str) -> str:
    """A relative model directory, looked up in the working directory, then under $LLOME_CHECKOUT, then beside the
    imported `llome` package. Anything found nowhere (a hub name) is returned as it is."""
    path = Path(name_or_path)
    if path.is_absolute() or path.exists():
        return name_or_path
    for root in (os.environ.get(CHECKOUT_VARIABLE), smollm2.ROOT):
        if root and (Path(root) / path).exists():
            return str(Path(root) / path)
    return name_or_path


def load_prompted_model(settings: PromptedConfig, device: str = "auto"):
    """The off-the-shelf model and its tokenizer, on `device`, for inference only."""
    where = locate(settings.name_or_path)
    if settings.gguf_file == smollm2.GGUF_FILE and not (Path(where) / settings.gguf_file).is_file():
        raise FileNotFoundError(f"{Path(settings.name_or_path) / settings.gguf_file} is absent: run `make smollm2` "
                                "to fetch it (98 MB), or name another model in prompted.name_or_path")
    spec = {"name_or_path": where, **({"gguf_file": settings.gguf_file} if settings.gguf_file else {})}
    tokenizer = load_tokenizer(where, gguf_file=settings.gguf_file)
    model = build_model(spec, tokenizer).to(resolve_device(device)).eval()
    return model, tokenizer


def model_identity(settings: PromptedConfig) -> dict[str, str]:
    """A digest of the checkpoint when it is on disk (the model is the method here); a hub name stands for itself."""
    path = Path(locate(settings.name_or_path))
    if settings.gguf_file and (path / settings.gguf_file).is_file():
        return {"model": file_digest(path / settings.gguf_file)}
    if (path / "config.json").is_file():
        return {"model": model_digest(path)}
    return {}


def prompted_method(cfg: dict, seed_data_dir: Path, out_dir: Path, model=None, tokenizer=None, progress: bool = True):
    """Returns (one row of metrics per seed and round, the regret trace of every seed, the summary).

    Writes `rounds.csv`, `regret.csv` (method `prompted`) and `summary.json` into `out_dir`, and each seed's rounds
    under `out_dir/seed_<s>/`. A seed whose record still matches resumes: its finished rounds are read back.
    `model` and `tokenizer`, when given, stand in for loading `prompted.name_or_path`.
    """
    apply_numerics(cfg)
    settings = prompted_config(cfg["prompted"])
    function = load_function(cfg["function"], seed=cfg["function_seed"])
    if model is None or tokenizer is None:
        model, tokenizer = load_prompted_model(settings, cfg.get("device", "auto"))
    sampler = ModelSampler.for_task(model, tokenizer, settings, function.dim, function.num_states)
    # More rounds extend a run: a round's draws depend on its seed and index, and on the rounds before it only.
    extendable = {key: value for key, value in settings.model_dump().items() if key != "rounds"}
    record_config = result_config({**cfg, "prompted": extendable})
    rows, traces, per_seed = [], [], []
    bar = tqdm(total=len(cfg["seeds"]) * settings.rounds, desc="prompted rounds", unit="round", disable=not progress)
    for seed in cfg["seeds"]:
        seed_table = read_seed_table(seed_data_dir, seed)
        run_dir = seed_dir(out_dir, seed)
        claim(run_dir, make_record(record_config, code=[__name__], seed=seed,
                                   inputs={"seed_data": table_digest(seed_table), **model_identity(settings)}))
        history, labels = run_prompted(settings, function=function, seed_table=seed_table, seed=seed,
                                       tokenizer=tokenizer, sampler=sampler, run_dir=run_dir,
                                       on_round=lambda metrics: bar.update())
        rows += [{"seed": seed, **metrics} for metrics in history]
        paid = [(table, metrics["oracle_calls"]) for table, metrics in zip(labels, history, strict=True)]
        traces.append(best_so_far_trace(seed_table, cfg["seed_data_oracle_calls"], paid,
                                        optimum=optimum_of(function)).assign(seed=seed))
        per_seed.append(seed_summary(seed, seed_table, history, labels))
    bar.close()
    rounds = pd.DataFrame(rows)
    trace = pd.concat(traces, ignore_index=True).assign(method=METHOD)
    summary = {"method": METHOD, "function": cfg["function"], "model": settings.name_or_path,
               "gguf_file": settings.gguf_file, "rounds": settings.rounds, "num_to_label": settings.num_to_label,
               **medians(per_seed), "per_seed": per_seed}
    out_dir = Path(out_dir)
    write_csv(out_dir / "rounds.csv", rounds)
    write_csv(out_dir / "regret.csv", trace)
    write_json(out_dir / "summary.json", summary)
    return rounds, trace, summary


def seed_summary(seed: int, seed_table: pd.DataFrame, history: list[dict], labels: list[pd.DataFrame]) -> dict:
    """Validity, feasibility and best f of one seed's run, over all its rounds."""
    proposals = sum(m["num_candidates"] for m in history)
    weighted = {key: sum(m[f"generation.{key}"] * m["num_candidates"] for m in history) / proposals if proposals else
                float("nan") for key in ("parsable", "correct_length", "in_range")}
    scores = np.concatenate([table["score"].to_numpy(np.float64) for table in labels]) if labels else np.empty(0)
    seed_best = float(np.max(seed_table["score"].to_numpy(np.float64), initial=-np.inf))
    best = float(scores.max()) if len(scores) else float("nan")
    return {"seed": int(seed), "proposals": int(proposals), **weighted,
            "oracle_calls": int(len(scores)),  # paid in the rounds, on top of the seed data's
            "labels_short": int(sum(m["labels_short"] for m in history)),
            "feasible": float(np.isfinite(scores).mean()) if len(scores) else float("nan"),
            "best_value": best,  # of its own labels (NaN when it labelled none); the trace adds the seed data's
            "seed_data_best_value": seed_best,
            "improved_on_seed_data": bool(len(scores) and best > seed_best)}


def medians(per_seed: list[dict]) -> dict:
    table = pd.DataFrame(per_seed)
    columns = ["parsable", "correct_length", "in_range", "feasible", "oracle_calls", "best_value"]
    return {f"median_{c}": float(table[c].median()) for c in columns} | {
        "improved_fraction": float(table["improved_on_seed_data"].mean())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="data/params/prompted.json",
                        help="the stage config JSON the params stage writes (python -m llome.config)")
    parser.add_argument("--seed-data-dir", default="data/seed")
    parser.add_argument("--out", default="data/prompted")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        _, _, summary = prompted_method(read_json(args.config), Path(args.seed_data_dir), Path(args.out),
                                        progress=not args.quiet)
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{args.out}: median best f {summary['median_best_value']:.4f}, median in range "
          f"{summary['median_in_range']:.2f}, median feasible {summary['median_feasible']:.2f}")


if __name__ == "__main__":
    main()
