"""Stage `prompted`: the prompted-LLM baseline's rounds for every seed (docs/prompted.md, docs/method.md §7).

Not in dvc.yaml yet: docs/prompted.md proposes its stage block and params section. Until then the stage config can
be made from a resolved profile, which has no `prompted` section yet (its defaults then apply):

    python -m llome.stages.prompted --params params.yaml --seed-data-dir data/seed --out data/prompted
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from llome import smollm2
from llome.io import read_json, write_csv, write_json
from llome.models import build_model, load_tokenizer, resolve_device
from llome.objective import optimum_of
from llome.prompted import ModelSampler, PromptedConfig, prompted_config, prompted_trace, run_prompted
from llome.provenance import claim, file_digest, make_record, model_digest, result_config, table_digest
from llome.schema import ConfigError
from llome.stages.common import apply_numerics, load_function, read_seed_table, seed_dir

METHOD = "prompted"


def stage_config(profile: dict) -> dict:
    """What the stage reads, from a resolved profile (llome.config.load_profile): the shape llome.config's
    stage_configs would give it, with the `prompted` section's defaults where the profile has none."""
    from llome.config import seed_data_oracle_calls

    return {"profile": profile["profile"], "function": profile["function"],
            "function_seed": profile["test_functions"]["seed"], "seeds": profile["seeds"],
            "seed_data_oracle_calls": seed_data_oracle_calls(profile),
            "prompted": prompted_config(profile.get("prompted")).model_dump(),
            "device": profile["device"], "numerics": profile["numerics"]}


def load_prompted_model(settings: PromptedConfig, device: str = "auto"):
    """The off-the-shelf model and its tokenizer, on `device`, for inference only."""
    if settings.gguf_file == smollm2.GGUF_FILE and not (Path(settings.name_or_path) / settings.gguf_file).is_file():
        raise FileNotFoundError(f"{Path(settings.name_or_path) / settings.gguf_file} is absent: run `make smollm2` "
                                "to fetch it (98 MB), or name another model in prompted.name_or_path")
    spec = {"name_or_path": settings.name_or_path, **({"gguf_file": settings.gguf_file} if settings.gguf_file else {})}
    tokenizer = load_tokenizer(settings.name_or_path, gguf_file=settings.gguf_file)
    model = build_model(spec, tokenizer).to(resolve_device(device)).eval()
    return model, tokenizer


def model_identity(settings: PromptedConfig) -> dict[str, str]:
    """A digest of the checkpoint when it is on disk (the model is the method here); a hub name stands for itself."""
    path = Path(settings.name_or_path)
    if settings.gguf_file and (path / settings.gguf_file).is_file():
        return {"model": file_digest(path / settings.gguf_file)}
    if (path / "config.json").is_file():
        return {"model": model_digest(path)}
    return {}


def prompted_method(cfg: dict, seed_data_dir: Path, out_dir: Path, model=None, tokenizer=None):
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
    for seed in cfg["seeds"]:
        seed_table = read_seed_table(seed_data_dir, seed)
        run_dir = seed_dir(out_dir, seed)
        claim(run_dir, make_record(record_config, code=[__name__], seed=seed,
                                   inputs={"seed_data": table_digest(seed_table), **model_identity(settings)}))
        history, labels = run_prompted(settings, function=function, seed_table=seed_table, seed=seed,
                                       tokenizer=tokenizer, sampler=sampler, run_dir=run_dir)
        rows += [{"seed": seed, **metrics} for metrics in history]
        traces.append(prompted_trace(seed_table, cfg["seed_data_oracle_calls"], labels,
                                     optimum=optimum_of(function)).assign(seed=seed))
        per_seed.append(seed_summary(seed, seed_table, history, labels))
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
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", help="a stage config JSON (as llome.config would write data/params/prompted.json)")
    source.add_argument("--params", default="params.yaml", help="make the stage config from this params file")
    parser.add_argument("--profile", default=None, help="with --params: override its `profile`")
    parser.add_argument("--seed-data-dir", default="data/seed")
    parser.add_argument("--out", default="data/prompted")
    args = parser.parse_args(argv)
    try:
        if args.config:
            cfg = read_json(args.config)
        else:
            from llome.config import load_profile

            cfg = stage_config(load_profile(args.params, args.profile))
        _, _, summary = prompted_method(cfg, Path(args.seed_data_dir), Path(args.out))
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
    print(f"{args.out}: median best f {summary['median_best_value']:.4f}, median in range "
          f"{summary['median_in_range']:.2f}, median feasible {summary['median_feasible']:.2f}")


if __name__ == "__main__":
    main()
