"""llome: language models as black-box optimisers of Ehrlich functions (the LLOME paper), reproducibly.

On your own objective: `llome.optimize(objective, seed_sequences)`, the objective following
`llome.Objective` (llome/objective.py).

The main names are importable from here; each loads its module on first use, so that
`import llome` stays light (training pulls in torch, transformers and TRL).
"""

from importlib import import_module

from llome import numerics as _numerics

_numerics.pin_environment()  # before anything imports torch: the pins are read when it loads

__version__ = "0.1.0"

_EXPORTS = {
    "Ehrlich": "llome.ehrlich",
    "optimize": "llome.api",
    "LlomeConfig": "llome.api",
    "OptimizeResult": "llome.api",
    "Objective": "llome.objective",
    "DiagnosticOracle": "llome.objective",
    "GAConfig": "llome.ga",
    "run_ga": "llome.ga",
    "format_prompt": "llome.text",
    "format_completion": "llome.text",
    "parse_completion": "llome.text",
    "build_tokenizer": "llome.tokenizer",
    "build_model_and_tokenizer": "llome.models",
    "load_model_and_tokenizer": "llome.models",
    "make_pairs": "llome.pairs",
    "make_dpo_triples": "llome.pairs",
    "marge_loss": "llome.marge",
    "MargEConfig": "llome.marge",
    "MargETrainer": "llome.marge",
    "train_sft": "llome.train",
    "train_dpo": "llome.train",
    "train_marge": "llome.train",
    "GenerationConfig": "llome.generate",
    "refine": "llome.generate",
    "run_round": "llome.loop",
    "run_llome": "llome.loop",
    "CountedOracle": "llome.objective",
    "regret_curve": "llome.metrics",
    "load_profile": "llome.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llome' has no attribute {name!r}")
