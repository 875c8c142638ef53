"""`llome.optimize`: LLOME on your own objective, in one call.

    import numpy as np
    import llome
    from llome.objective import CountingUp

    result = llome.optimize(CountingUp(), np.zeros((1, 8), dtype=int), {"rounds": 2})
    result.best, result.trace, result.rounds, result.paid_oracle_calls, result.diagnostic_oracle_calls

The objective follows the protocol of `llome.objective` (dim, num_states, a batch call that returns
-inf for infeasible sequences, an optional `optimum`). One call runs the pieces the DVC pipeline runs
as stages: seed data (a GA from a single starting sequence, or the labels of the sequences given),
round 0 (SFT of a fresh GPT-NeoX on pairs of the seed data) and the LLOME rounds. Every call to the
objective is either paid (through a `CountedOracle`, and counted in the trace) or diagnostic (for
metrics only, off by default here: see `LlomeConfig.diagnostics`).
"""

from __future__ import annotations

import copy
import hashlib
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from llome import numerics
from llome.objective import CountedOracle, check_objective, optimum_of

# The default profile's per-method training settings (params.yaml), one epoch a round.
METHOD_TRAINING = {
    "sft": {"learning_rate": 2.0e-4, "num_train_epochs": 1, "per_device_train_batch_size": 16, "warmup_steps": 0.05,
            "select_checkpoint": True},
    "marge": {"learning_rate": 2.0e-4, "num_train_epochs": 1, "per_device_train_batch_size": 16, "warmup_steps": 0.05,
              "alpha": 1.0, "beta": 10.0, "select_checkpoint": True},
    "dpo": {"learning_rate": 5.0e-5, "num_train_epochs": 1, "per_device_train_batch_size": 16, "warmup_steps": 0.05,
            "beta": 0.4, "select_checkpoint": True},
}


def _gpt_neox() -> dict:
    # The smoke profile's model: big enough to learn to copy and edit short sequences from scratch in seconds.
    return {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


@dataclass(frozen=True)
class LlomeConfig:
    """Settings of `optimize`; the defaults are toy-sized (a minute or so on 2 CPU cores at L=8).

    The dict-valued sections take the keys of the same sections of params.yaml, and a dict given for one
    of them is merged over its default, so `{"generation": {"num_samples": 8}}` changes only that key.
    """

    method: str = "marge"  # how each round trains: sft, marge or dpo
    rounds: int = 3
    num_to_label: int = 40  # paid oracle calls per round
    # Unpaid calls for metrics ("improves on its input"); off, a round makes no call beyond its n labels.
    diagnostics: bool = False
    # With diagnostics on: candidates a round samples before the likelihood filter and scores, unpaid, to measure
    # calibration (params.yaml's llome.diagnostics_calibration_sample); 0 draws none.
    diagnostics_calibration_sample: int = 0
    device: str = "auto"
    threads: int = 2  # torch's threads: part of the pinned numerics, so the same on every machine (llome.numerics)
    # The GA that makes seed data from a single starting sequence (null rates: 1/L).
    seed_data: dict = field(default_factory=lambda: {"num_particles": 200, "num_steps": 5, "mutation_prob": None,
                                                     "recombine_prob": 0.0882, "survival_quantile": 0.1})
    # A local directory or hub name of a pretrained causal LM, or None for a fresh GPT-NeoX of `gpt_neox` sizes.
    model_name_or_path: str | None = None
    gpt_neox: dict = field(default_factory=_gpt_neox)
    pairs: dict = field(default_factory=lambda: {"source": "round", "max_distance": 0.25, "num_neighbors": 30,
                                                 "infeasible_fraction": 0.1, "max_pairs": 500})
    sft: dict = field(default_factory=lambda: {"learning_rate": 3.0e-3, "num_train_epochs": 8,
                                               "per_device_train_batch_size": 16, "gradient_accumulation_steps": 1,
                                               "warmup_steps": 0.05, "weight_decay": 0.0})
    train: dict | None = None  # None: METHOD_TRAINING[method]
    generation: dict = field(default_factory=lambda: {
        # Enough proposals that each round has its n new candidates at L=8, v=4 (the smoke profile's run short).
        "num_seeds": 16, "num_iterations": 2, "greedy": True, "temperatures": [0.8, 1.0, 1.2], "num_samples": 4,
        "batch_size": 1024, "shared_trajectory": False, "skip_copies": False, "temperature_schedule": True})
    likelihood_quantile: float = 0.6

    def __post_init__(self):
        if self.method not in METHOD_TRAINING:
            raise ValueError(f"LlomeConfig.method must be one of {sorted(METHOD_TRAINING)}, got {self.method!r}")
        for name in ("rounds", "num_to_label"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LlomeConfig.{name} must be a positive integer, got {value!r}")
        if not isinstance(self.diagnostics, bool):
            raise ValueError(f"LlomeConfig.diagnostics must be true or false, got {self.diagnostics!r}")
        sample = self.diagnostics_calibration_sample
        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
            raise ValueError(f"LlomeConfig.diagnostics_calibration_sample must be an integer >= 0, got {sample!r}")

    @classmethod
    def coerce(cls, config: LlomeConfig | dict | None) -> LlomeConfig:
        """A LlomeConfig from None (the defaults), a LlomeConfig, or a dict of overrides."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if not isinstance(config, dict):
            raise ValueError(f"config must be a LlomeConfig, a dict or None, got {type(config).__name__}")
        defaults = cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown LlomeConfig setting(s) {unknown}; known: {sorted(known)}")
        merged = {}
        for key, value in config.items():
            default = getattr(defaults, key)
            merged[key] = {**default, **value} if isinstance(default, dict) and isinstance(value, dict) else value
        return cls(**merged)

    def ga_settings(self, dim: int) -> dict:
        rate = 1.0 / dim
        ga = dict(self.seed_data)
        for key in ("mutation_prob", "recombine_prob"):
            if ga.get(key) is None:
                ga[key] = rate
        return ga

    def model_config(self, dim: int) -> dict:
        # A prompt and its completion take about 4 tokens a position; 8 leaves room for the tags.
        return {"name_or_path": self.model_name_or_path,
                "gpt_neox": {"max_position_embeddings": max(64, 8 * dim), **self.gpt_neox}}

    def launcher(self) -> dict:
        return {"kind": "inprocess", "num_processes": 1, "mixed_precision": "no", "device": self.device}

    def round_config(self, seed_oracle_calls: int) -> dict:
        """What llome.loop.run_llome reads, as the pipeline's llome stage config holds it."""
        return {
            "method": self.method, "objective": self.method, "rounds": self.rounds,
            "train": copy.deepcopy(self.train if self.train is not None else METHOD_TRAINING[self.method]),
            "pairs": copy.deepcopy(self.pairs), "generation": copy.deepcopy(self.generation),
            "selection": {"likelihood_quantile": self.likelihood_quantile, "num_to_label": self.num_to_label},
            "seed_data_oracle_calls": int(seed_oracle_calls), "launcher": self.launcher(), "device": self.device,
            "diagnostics": self.diagnostics, "diagnostics_calibration_sample": self.diagnostics_calibration_sample,
        }


@dataclass
class OptimizeResult:
    """What `optimize` found, as tables rather than paths.

    best: the best labelled sequences, best first (sequence as a tuple, score, round: 0 for seed data).
    labelled: every paid label of the run, seed data included, in the order paid.
    trace: oracle_calls (paid, cumulative), best_value and regret (NaN when the optimum is unknown), round.
    rounds: one row of metrics per LLOME round (nested keys joined by dots, as in the pipeline's rounds.csv).
    paid_oracle_calls: seed data plus every round's labels. diagnostic_oracle_calls: the unpaid ones.
    """

    best: pd.DataFrame
    labelled: pd.DataFrame
    trace: pd.DataFrame
    rounds: pd.DataFrame
    paid_oracle_calls: int
    diagnostic_oracle_calls: int
    optimum: float | None
    config: LlomeConfig
    run_dir: Path | None

    @property
    def best_sequence(self) -> tuple:
        return self.best["sequence"].iloc[0]

    @property
    def best_value(self) -> float:
        return float(self.best["score"].iloc[0])


def _as_sequences(seed_sequences, objective) -> np.ndarray:
    array = np.asarray(seed_sequences)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != objective.dim or len(array) == 0:
        raise ValueError(f"seed_sequences must be a non-empty (n, {objective.dim}) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"seed_sequences must hold integers, got dtype {array.dtype}")
    if array.min() < 0 or array.max() >= objective.num_states:
        raise ValueError(f"seed_sequences values must lie in [0, {objective.num_states})")
    return array.astype(np.int64)


def _seed_data(objective, sequences: np.ndarray, seed_scores, cfg: LlomeConfig, seed: int,
               progress: bool) -> tuple[pd.DataFrame, int]:
    """The seed table (sequence, score, oracle_calls) and the paid calls that made it."""
    from llome.ga import GAConfig, run_ga

    if seed_scores is not None:
        scores = np.asarray(seed_scores, dtype=np.float64)
        if scores.shape != (len(sequences),):
            raise ValueError(f"seed_scores must have shape ({len(sequences)},), got {scores.shape}")
        table = pd.DataFrame({"sequence": list(map(tuple, sequences.tolist())), "score": scores, "oracle_calls": 0})
        return table.drop_duplicates("sequence").reset_index(drop=True), 0
    if len(sequences) == 1:
        ga = GAConfig(**cfg.ga_settings(objective.dim))
        oracle = CountedOracle(objective, ga.total_oracle_calls)
        result = run_ga(oracle, sequences[0], objective.num_states, ga, seed=seed, progress=progress)
        return result.unique(), oracle.calls
    unique = np.unique(sequences, axis=0)
    oracle = CountedOracle(objective, len(unique))
    scores = oracle(unique)
    table = pd.DataFrame({"sequence": list(map(tuple, unique.tolist())), "score": scores,
                          "oracle_calls": np.arange(1, len(unique) + 1)})
    return table, oracle.calls


def _cached_seed_data(root: Path, objective, sequences, seed_scores, cfg, seed, progress):
    """Seed data made once per run directory: calling optimize again on it does not pay for it twice."""
    from llome.io import read_json, read_table, write_json, write_table

    key = hashlib.sha256(repr((sequences.tolist(), None if seed_scores is None else np.asarray(seed_scores).tolist(),
                               cfg.ga_settings(objective.dim), seed, objective.dim,
                               objective.num_states)).encode()).hexdigest()
    path, meta_path = root / "seed_data.parquet", root / "seed_data.json"
    if path.exists() and meta_path.exists() and read_json(meta_path).get("key") == key:
        return read_table(path), int(read_json(meta_path)["oracle_calls"])
    table, calls = _seed_data(objective, sequences, seed_scores, cfg, seed, progress)
    write_table(path, table)
    write_json(meta_path, {"key": key, "oracle_calls": calls})
    return table, calls


def optimize(objective, seed_sequences, config: LlomeConfig | dict | None = None, *, seed_scores=None,
             run_dir: str | Path | None = None, seed: int = 0, top_k: int = 10, progress: bool = False) -> OptimizeResult:
    """LLOME on `objective` from `seed_sequences`; see the module docstring.

    seed_sequences: one starting sequence (L,) or (1, L), from which a GA makes the seed data through the
    counted oracle (`config.seed_data`); or several (n, L), each labelled once through it; or several with
    `seed_scores`, already scored, which costs no call. run_dir: where rounds are checkpointed, so that an
    interrupted or extended run resumes (None: a temporary directory, deleted at the end).
    """
    from llome.io import read_table
    from llome.loop import run_llome
    from llome.rounds import round_dir, run_trace
    from llome.round_zero import run_round_zero

    check_objective(objective)
    cfg = LlomeConfig.coerce(config)
    numerics.apply(cfg.threads)
    sequences = _as_sequences(seed_sequences, objective)
    temporary = tempfile.TemporaryDirectory(prefix="llome-optimize-") if run_dir is None else None
    root = Path(temporary.name if temporary else run_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        seed_table, seed_calls = _cached_seed_data(root, objective, sequences, seed_scores, cfg, seed, progress)
        model_cfg = cfg.model_config(objective.dim)
        run_round_zero(seed_table, model_cfg=model_cfg, pairs_cfg=cfg.pairs, train_cfg=cfg.sft,
                       num_states=objective.num_states, out_dir=root / "round_zero", seed=seed,
                       launcher=cfg.launcher(), progress=progress)
        round_cfg = cfg.round_config(seed_calls)
        history = run_llome(round_cfg, function=objective, seed_table=seed_table, round_zero_dir=root / "round_zero",
                            run_dir=root / "rounds", seed=seed, progress=progress)
        optimum = optimum_of(objective)
        trace = run_trace(seed_table, seed_calls, root / "rounds", cfg.rounds, optimum=optimum)
        labels = [seed_table[["sequence", "score"]].assign(round=0)]
        for index in range(1, cfg.rounds + 1):
            labels.append(read_table(round_dir(root / "rounds", index) / "labelled.parquet")[["sequence", "score", "round"]])
    finally:
        if temporary is not None:
            temporary.cleanup()
    labelled = pd.concat(labels, ignore_index=True)
    best = (labelled.sort_values("score", ascending=False, kind="stable").drop_duplicates("sequence")
            .head(top_k).reset_index(drop=True))
    return OptimizeResult(
        best=best, labelled=labelled, trace=trace, rounds=pd.json_normalize(history),
        paid_oracle_calls=int(seed_calls + sum(m["oracle_calls"] for m in history)),
        diagnostic_oracle_calls=int(sum(m["diagnostic_oracle_calls"] for m in history)),
        optimum=optimum, config=cfg, run_dir=None if temporary else root)

