"""One round of LaMBO-2 proposals (``cortex.optim.generative.LaMBO``), run under .lambo-venv's Python.

    .lambo-venv/bin/python -I lambo/runner.py request.json response.json
    .lambo-venv/bin/python -I lambo/runner.py --serve

The second form answers one request per line of its input, `<request.json>\t<response.json>`, with one line on
its output, `ok` or `error` (the traceback goes to its error stream), until its input closes: its imports, about
11 s on 2 cores, are then paid once for a whole run rather than once a round.

This file imports only the standard library and the packages of .lambo-venv (pytorch-cortex 0.0.4 and its
Lightning 1.9 / numpy<2 stack, which cannot live in the project's environment). It never sees the objective:
the project process (llome/lambo.py) scores sequences through its counted oracle and sends the labelled data
here each round.

Request (JSON):
    num_states, length      the Ehrlich alphabet size v and sequence length L
    sequences               (N, L) integer states, every sequence labelled so far
    scores                  N floats, null for an infeasible sequence
    rounds                  N ints, the round that labelled each sequence (0 = seed data)
    num_proposals           how many sequences to return (the authors' optimizer.num_samples)
    seed                    seeds python, numpy, torch and Lightning
    state_dir               where the model trained on the first call is kept for later rounds
    settings                see DEFAULT_SETTINGS
Response (JSON): proposals ((num_proposals, L) integer states), the starting point each grew from, their
acquisition values, timings, the device used, versions.

The model and optimiser mirror the authors' bbo-bench harness for "reproduce LLOME LaMBO results" (its
optimizer/lambo2 Hydra tree and its wandb sweep) and poli-baselines' LaMBO2 solver that the harness calls:
a conv-1d sequence tree with a masked denoising language-model head, an ensemble of regressors on feasible
scores and an ensemble of feasibility classifiers; guidance by log expected improvement (cortex GraphNEI) on
the regressors. The configuration is written here in code rather than composed from Hydra files.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path

import edlib
import hydra
import lightning
import numpy as np
import torch
from omegaconf import OmegaConf

import cortex
from cortex.acquisition import GraphNEI, get_graph_nei_runtime_kwargs
from cortex.optim.generative import LaMBO

# The 32 symbols bbo-bench gives the Ehrlich states; cortex's tokenizer needs string tokens.
ALPHABET = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ123456")
# cortex's protein tokenizer expects these utility tokens in its vocabulary file.
UTILITY_TOKENS = ["<cls>", "<pad>", "<eos>", "<unk>", ".", "-", "<mask>"]
GAP_TOKEN = "-"
# cortex's LaMBO reads the root node, tokenizer and denoising leaf under this domain name.
DOMAIN = "protein_seq"
OBJECTIVE_TASK = "generic_task"
FEASIBILITY_TASK = "generic_constraint"
MODEL_FILE = "model.pt"

# The authors' values (bbo-bench optimizer/lambo2.yaml, optim/lambo.yaml, tree/sequence_model_conservative.yaml,
# overridden by wandb/reproduce_llome_lambo_results.yaml where it sets them).
DEFAULT_SETTINGS = {
    "batch_size": 128,
    "num_steps": 64,
    "num_mutations_per_step": 16,
    "max_guidance_updates": 2,
    "guidance_step_size": 0.05,
    "kl_weight": 0.0,
    "feature_attr_temp": 1.0,
    "exclude_initial_solution": False,
    "resample_edit_positions": True,
    "max_epochs": 16,
    "retrain_epochs": 16,
    "fft_expansion_factor": 2,
    "feature_dim": 128,
    "embed_dim": 32,
    "kernel_size": 5,
    "ensemble_size": 8,
    "feasibility_task": True,
    "learning_rate": 5e-3,
    "precision": 32,
    "device": "auto",
    "threads": None,
}


def tokens_for(num_states: int) -> list[str]:
    if num_states > len(ALPHABET):
        raise ValueError(f"num_states={num_states}: the runner names at most {len(ALPHABET)} states")
    return ALPHABET[:num_states]


def to_text(sequences: np.ndarray, tokens: list[str]) -> np.ndarray:
    """cortex's tokenizer splits on single spaces."""
    return np.array([" ".join(tokens[state] for state in row) for row in sequences])


def from_text(texts, tokens: list[str], length: int) -> np.ndarray:
    index = {token: state for state, token in enumerate(tokens)}
    rows = []
    for text in texts:
        symbols = text.split(" ")
        unknown = [s for s in symbols if s not in index]
        if unknown or len(symbols) != length:
            raise RuntimeError(f"LaMBO returned {text!r}: {len(symbols)} tokens (want {length}), unknown {unknown}")
        rows.append([index[s] for s in symbols])
    return np.array(rows, dtype=np.int64)


def write_vocabulary(path: Path, tokens: list[str]) -> Path:
    path.write_text("\n".join(tokens + UTILITY_TOKENS) + "\n")
    return path


def model_config(settings: dict, length: int, vocab_file: Path) -> OmegaConf:
    """The tree that bbo-bench's optimizer/lambo2.yaml composes, as one OmegaConf object."""
    feature_dim, embed_dim, kernel_size = settings["feature_dim"], settings["embed_dim"], settings["kernel_size"]
    tokenizer = {"_target_": "cortex.tokenization.ProteinSequenceTokenizerFast", "vocab_file": str(vocab_file)}

    def data_module(balance, **extra):
        return {
            "_target_": "cortex.data.data_module.TaskDataModule",
            "_recursive_": False,
            "lengths": [1.0, 0.0],
            "balance_train_partition": balance,
            "batch_size": settings["batch_size"],
            # Loading runs in the training process: worker processes only add start-up time on CPU.
            "num_workers": 0,
            "pin_memory": False,
            "dataset_config": {"_target_": "cortex.data.dataset.NumpyDataset", "train": True},
            **extra,
        }

    def conv_branch(out_dim, num_blocks):
        return {"_target_": "cortex.model.branch.Conv1dBranch", "out_dim": out_dim, "channel_dim": feature_dim,
                "num_blocks": num_blocks, "kernel_size": kernel_size}

    branches = {"protein_property": conv_branch(8, 1), "protein_generation": conv_branch(32, 0)}
    tasks = {
        "protein_property": {OBJECTIVE_TASK: {
            "_target_": "cortex.task.RegressionTask", "input_map": {DOMAIN: ["tokenized_seq"]},
            "outcome_cols": [OBJECTIVE_TASK], "corrupt_train_inputs": True, "root_key": DOMAIN,
            "nominal_label_var": 0.01, "ensemble_size": settings["ensemble_size"],
            "data_module": data_module(["recency"])}},
        "protein_generation": {DOMAIN: {
            "_target_": "cortex.task.DenoisingLanguageModelTask", "tokenizer": tokenizer,
            "input_map": {DOMAIN: ["tokenized_seq"]}, "root_key": DOMAIN, "ensemble_size": 1,
            "data_module": data_module(None, drop_last=False, train_on_everything=False)}},
    }
    if settings["feasibility_task"]:
        branches["protein_constraint"] = conv_branch(8, 1)
        tasks["protein_constraint"] = {FEASIBILITY_TASK: {
            "_target_": "cortex.task.ClassificationTask", "input_map": {DOMAIN: ["tokenized_seq"]},
            "class_col": "is_feasible", "num_classes": 2, "corrupt_train_inputs": True, "root_key": DOMAIN,
            "ensemble_size": settings["ensemble_size"], "data_module": data_module(["is_feasible", "recency"])}}
    return OmegaConf.create({
        "data_dir": str(vocab_file.parent),
        "tree": {
            "_target_": "cortex.model.tree.SequenceModelTree",
            "_recursive_": False,
            "fit_cfg": {
                "reinitialize_roots": False, "linear_probing": False, "weight_averaging": None,
                "optimizer": {"_target_": "torch.optim.Adam", "lr": settings["learning_rate"], "weight_decay": 0.0,
                              "betas": [0.9, 0.99], "fused": False},
                "lr_scheduler": {"_target_": "transformers.get_cosine_schedule_with_warmup",
                                 "num_warmup_steps": 2, "num_training_steps": settings["max_epochs"]},
            },
        },
        "roots": {DOMAIN: {
            "_target_": "cortex.model.root.Conv1dRoot",
            "corruption_process": {"_target_": "cortex.corruption.MaskCorruptionProcess"},
            "tokenizer_transform": {"_target_": "cortex.transforms.HuggingFaceTokenizerTransform",
                                    "tokenizer": tokenizer},
            "max_len": length, "embed_dim": embed_dim, "channel_dim": feature_dim, "out_dim": embed_dim,
            "num_blocks": 2, "kernel_size": kernel_size,
        }},
        "trunk": {"_target_": "cortex.model.trunk.SumTrunk"},
        "branches": branches,
        "tasks": tasks,
    })


def recency_partition(rounds: np.ndarray) -> np.ndarray:
    """0 for the newest round, 1 for the two before it, 2 for the four before those, ...: the training
    sampler draws evenly from each partition, so recent rounds are not swamped by the seed data."""
    age = rounds.max() - rounds
    return np.floor(np.log2(age + 1)).astype(np.int64)


def training_data(texts: np.ndarray, scores: np.ndarray, rounds: np.ndarray) -> dict:
    """Per task, the columns cortex's NumpyDataset gets: the classifier sees every labelled sequence, the
    regressors the feasible ones, the denoising model each feasible sequence once (poli-baselines' LaMBO2)."""
    is_feasible = np.isfinite(scores)
    recency = recency_partition(rounds)
    unique_texts, first = np.unique(texts[is_feasible], return_index=True)
    return {
        FEASIBILITY_TASK: {"data": {"tokenized_seq": texts, "is_feasible": is_feasible, "recency": recency}},
        OBJECTIVE_TASK: {"data": {"tokenized_seq": texts[is_feasible], OBJECTIVE_TASK: scores[is_feasible],
                                  "recency": recency[is_feasible]}},
        DOMAIN: {"data": {"tokenized_seq": unique_texts, "recency": recency[is_feasible][first]}},
    }


def resolve_device(name: str) -> torch.device:
    """auto: the first CUDA GPU this environment's torch sees, else the CPU; a named GPU must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r}: the LaMBO environment's torch sees no CUDA device")
    return device


def training_precision(settings: dict, device: torch.device) -> int:
    """16 (mixed) only on a GPU: Lightning 1.9 has no fp16 on CPUs, which train in 32."""
    return settings["precision"] if device.type == "cuda" else 32


def train_model(cfg, settings: dict, data: dict, checkpoint: Path, device: torch.device):
    """Train the tree; the first round's model is kept and every later round starts from it, as the
    authors' solver does (it reloads its pre-trained checkpoint each round and trains on all labels)."""
    model = hydra.utils.instantiate(cfg.tree)
    model.build_tree(cfg, skip_task_setup=True)
    first_call = not checkpoint.exists()
    if not first_call:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    for task_key, task in model.task_dict.items():
        task.data_module.setup(stage="test", dataset_kwargs=data[task_key])
        task.data_module.setup(stage="fit", dataset_kwargs=data[task_key])
    on_gpu = device.type == "cuda"
    trainer = lightning.Trainer(
        max_epochs=settings["max_epochs"] if first_call else settings["retrain_epochs"],
        num_sanity_val_steps=0, accelerator="gpu" if on_gpu else "cpu", devices=[device.index or 0] if on_gpu else 1,
        precision=training_precision(settings, device), logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, train_dataloaders=model.get_dataloader(split="train"))
    if first_call:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        partial = checkpoint.with_name(checkpoint.name + ".partial")
        torch.save(model.state_dict(), partial)
        partial.rename(checkpoint)  # a killed save leaves no checkpoint that later rounds would start from
    return model.to(device), first_call


def farthest_first(texts: np.ndarray, ranked_scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` texts, greedily the one farthest (edit distance) from those already chosen,
    ties to the better score; the first is the best. Spreads LaMBO's starting points (bbo-bench uses
    beignet's farthest-first traversal over the top fft_expansion_factor * num_samples)."""
    order = np.argsort(-ranked_scores, kind="stable")
    rank = np.empty(len(texts), dtype=np.int64)
    rank[order] = np.arange(len(texts))
    chosen = [int(order[0])]
    nearest = np.full(len(texts), np.inf)
    nearest[chosen[0]] = -1
    while len(chosen) < min(count, len(texts)):
        last = texts[chosen[-1]]
        for i in np.flatnonzero(nearest > 0):
            nearest[i] = min(nearest[i], edlib.align(last, texts[i])["editDistance"])
        farthest = np.flatnonzero(nearest == nearest.max())
        best = int(farthest[np.argmin(rank[farthest])])
        nearest[best] = -1
        chosen.append(best)
    return np.array(chosen, dtype=np.int64)


def starting_points(texts: np.ndarray, scores: np.ndarray, num_proposals: int, expansion: int) -> np.ndarray:
    ranked = np.where(np.isfinite(scores), scores, -np.inf)
    pool = np.argsort(-ranked, kind="stable")[: min(len(texts), expansion * num_proposals)]
    # Each token is one character, so the edit distance of the joined strings is the distance of the sequences.
    compact = np.array([t.replace(" ", "") for t in texts[pool]])
    chosen = pool[farthest_first(compact, ranked[pool], num_proposals)]
    # Fewer labels than proposals (the paper's 2,000 a round from about 1,000 distinct seed labels): the best start
    # again, as the authors' pool of every GA evaluation, repeats included, does; LaMBO's sampling tells them apart.
    return texts[np.resize(chosen, num_proposals)]


def propose(request: dict) -> dict:
    settings = {**DEFAULT_SETTINGS, **request.get("settings", {})}
    unknown = set(settings) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ValueError(f"unknown LaMBO settings {sorted(unknown)}")
    if settings["threads"]:
        torch.set_num_threads(int(settings["threads"]))
    seed = int(request["seed"])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    lightning.seed_everything(seed, workers=True)

    length, num_proposals = int(request["length"]), int(request["num_proposals"])
    tokens = tokens_for(int(request["num_states"]))
    sequences = np.asarray(request["sequences"], dtype=np.int64).reshape(-1, length)
    scores = np.array([-np.inf if s is None else float(s) for s in request["scores"]])
    rounds = np.asarray(request["rounds"], dtype=np.int64)
    if not len(sequences) == len(scores) == len(rounds):
        raise ValueError("sequences, scores and rounds differ in length")
    if not np.isfinite(scores).any():
        raise ValueError("no feasible labelled sequence: the regressors have nothing to learn from")
    texts = to_text(sequences, tokens)

    device = resolve_device(settings["device"])
    # The vocabulary is read when the tokenizer is built, so it need not outlive this call.
    vocab_dir = tempfile.TemporaryDirectory(prefix="lambo-vocab-")
    cfg = model_config(settings, length, write_vocabulary(Path(vocab_dir.name) / "vocab.txt", tokens))
    data = training_data(texts, scores, rounds)

    started = time.perf_counter()
    model, trained_from_scratch = train_model(cfg, settings, data, Path(request["state_dir"]) / MODEL_FILE, device)
    trained = time.perf_counter()

    candidates = starting_points(texts, scores, num_proposals, settings["fft_expansion_factor"])
    runtime_kwargs = get_graph_nei_runtime_kwargs(
        model=model, candidate_points=candidates, objectives=[OBJECTIVE_TASK], constraints=None, scaling=None)
    acquisition = GraphNEI(objectives=[OBJECTIVE_TASK], constraints=None, scaling=None, **runtime_kwargs)

    tokenizer_transform = model.root_nodes[DOMAIN].eval_transform
    tokenizer = tokenizer_transform[0].tokenizer
    # Fixed length: the gap token may neither be masked nor sampled.
    tokenizer.corruption_vocab_excluded.add(GAP_TOKEN)
    tokenizer.sampling_vocab_excluded.add(GAP_TOKEN)
    tok_idxs = tokenizer_transform(candidates).to(device)
    optimizer = LaMBO(
        params=tok_idxs,
        is_mutable=tokenizer.get_corruptible_mask(tok_idxs),
        model=model,
        objective=acquisition,
        max_num_solutions=num_proposals,
        num_mutations_per_step=settings["num_mutations_per_step"],
        max_guidance_updates=settings["max_guidance_updates"],
        guidance_step_size=settings["guidance_step_size"],
        guidance_layer="trunk",
        kl_weight=settings["kl_weight"],
        feature_attr_temp=settings["feature_attr_temp"],
        constraint_fn=None,
        domain_name=DOMAIN,
        exclude_initial_solution=settings["exclude_initial_solution"],
        resample_edit_positions=settings["resample_edit_positions"],
    )
    for _ in range(settings["num_steps"]):
        optimizer.step()
    best = optimizer.get_best_solutions()
    optimised = time.perf_counter()

    proposals = from_text(best[DOMAIN].values, tokens, length)
    return {
        "proposals": proposals.tolist(),
        "starting_points": from_text(candidates, tokens, length).tolist(),
        "acquisition": [float(v) for v in best["obj_val"].values],
        "train_seconds": trained - started,
        "optimise_seconds": optimised - trained,
        "trained_from_scratch": trained_from_scratch,
        "device": str(device),
        "precision": training_precision(settings, device),
        "settings": settings,
        "versions": {"cortex": getattr(cortex, "__version__", "0.0.4"), "torch": torch.__version__,
                     "lightning": lightning.__version__, "numpy": np.__version__},
    }


def answer(request_path: Path, response_path: Path) -> None:
    response = propose(json.loads(request_path.read_text()))
    partial = response_path.with_name(response_path.name + ".partial")
    partial.write_text(json.dumps(response))
    partial.rename(response_path)


def serve() -> int:
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # cortex's LaMBO prints its progress: into the log, not between the replies
    for line in sys.stdin:
        request_path, response_path = line.rstrip("\n").split("\t")
        try:
            answer(Path(request_path), Path(response_path))
            reply = "ok"
        except Exception:
            traceback.print_exc()
            reply = "error"
        sys.stdout.flush()
        sys.stderr.flush()
        print(reply, file=replies, flush=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["--serve"]:
        return serve()
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    answer(Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
