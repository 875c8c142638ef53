import os

# No hub on this machine or in CI: every test runs offline, and torch stays on the cores it has.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture(scope="session")
def copy_model(tmp_path_factory):
    """A tiny GPT-NeoX that has learnt the format: it copies its input with a few edits (L=8, v=8).

    Trained once per session (~15 s); tests that need valid generations share it.
    """
    import numpy as np
    import pandas as pd

    from llome.models import build_model_and_tokenizer, save_model_and_tokenizer
    from llome.train import train_sft

    rng = np.random.default_rng(0)
    dim, num_states = 8, 8
    x = rng.integers(0, num_states, size=(400, dim))
    y = x.copy()
    edit = rng.random(x.shape) < 0.2
    y[edit] = rng.integers(0, num_states, size=int(edit.sum()))
    pairs = pd.DataFrame({"x": [tuple(map(int, r)) for r in x], "y": [tuple(map(int, r)) for r in y],
                          "x_score": 0.0, "y_score": 1.0, "reward": 1.0})
    spec = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
            "max_position_embeddings": 64, "seed": 0}
    model, tokenizer = build_model_and_tokenizer(spec, num_states)
    root = tmp_path_factory.mktemp("copy_model")
    model = train_sft(model, tokenizer, pairs, {"learning_rate": 3e-3, "num_train_epochs": 25,
                                                "per_device_train_batch_size": 32, "disable_tqdm": True,
                                                "logging_steps": 1000, "save_steps": 100000}, root / "train")
    save_model_and_tokenizer(model, tokenizer, root / "model")
    return {"dir": root / "model", "model": model, "tokenizer": tokenizer, "dim": dim, "num_states": num_states,
            "pool": x}
