"""Which checkpoint a training run keeps (docs/method.md §4, step 4).

The authors hold out 5% of the pairs, evaluate ten times per training run, and keep the lowest-eval-loss
checkpoint among those whose generations pass gates. Two Trainer callbacks do that here:

- `EvenEvaluations` asks for `num_evals` evaluations spread evenly over the run, the last at its final step.
- `CheckpointSelector`, at each evaluation, greedily decodes the held-out prompts (at most `max_prompts`), scores
  the completions against the oracle-free gates, and keeps the weights of the best checkpoint so far in memory.

The gates: at least 90% of the completions parse, have the right length and are in range (each fraction counts
the completions that pass that check and every one before it, so "in range" is the share of valid ones), and
at most 10% are exact copies of their input. The paper's gate also asks for feasible generations; that needs
the oracle, whose calls would fall outside the round's budget of `n` labels, so it is left out.

The chosen checkpoint is the one with the lowest eval loss among those that pass; when none passes, the one with
the lowest eval loss regardless (see `CheckpointSelector.chosen`). The weights live in memory (a CPU copy, on the
main process only) rather than in extra checkpoints on disk; whenever the Trainer saves a checkpoint, the
selection so far is saved into it too, so a resumed run chooses among the same evaluations. That copy assumes
each process holds the whole model (CPU or data-parallel GPUs); sharded training (FSDP, DeepSpeed ZeRO-3) would
need the state gathered first.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from llome.text import OUT_OF_RANGE, UNPARSABLE, VALID, WRONG_LENGTH, format_completion, format_prompt, parse_completion

MIN_VALID_FRACTION = 0.9
MAX_COPY_FRACTION = 0.1
SELECTION_FILE = "selection.json"
SELECTED_WEIGHTS_FILE = "selected_weights.pt"


class EvenEvaluations(TrainerCallback):
    """Evaluate `num_evals` times per run, at steps ceil(k * max_steps / num_evals), k = 1..num_evals.

    The Trainer's own eval_steps repeat a fixed interval, which need not land on the final step; this schedule
    always ends there, and asks for every step when the run is shorter than `num_evals` steps.
    """

    def __init__(self, num_evals: int):
        if isinstance(num_evals, bool) or not isinstance(num_evals, int) or num_evals < 1:
            raise ValueError(f"num_evals must be a positive integer, got {num_evals!r}")
        self.num_evals = num_evals

    def steps(self, max_steps: int) -> list[int]:
        return sorted({-(-k * max_steps // self.num_evals) for k in range(1, self.num_evals + 1)})

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in self.steps(state.max_steps):
            control.should_evaluate = True
        return control


@dataclass
class Evaluation:
    """One evaluation of a training run: its eval loss and the gate numbers of its greedy generations."""

    step: int
    epoch: float
    eval_loss: float
    num_prompts: int
    parsable: float
    right_length: float
    in_range: float
    copies: float
    passed: bool


def gate_fractions(texts: list[str], inputs: list[tuple[int, ...]], dim: int, num_states: int) -> dict[str, float]:
    """Shares of completions that parse, then also have the right length, then are also in range; and copies.

    Each share counts the completions that pass that check and all before it; `copies` are valid completions
    equal to their input. All four are fractions of every completion.
    """
    if len(texts) != len(inputs) or not texts:
        raise ValueError(f"need one input per completion and at least one, got {len(texts)} and {len(inputs)}")
    statuses, copies = [], 0
    for text, source in zip(texts, inputs, strict=True):
        parsed = parse_completion(text, dim, num_states)
        statuses.append(parsed.status)
        copies += parsed.status == VALID and parsed.sequence == tuple(source)
    count = len(texts)
    failed_parse = statuses.count(UNPARSABLE)
    failed_length = failed_parse + statuses.count(WRONG_LENGTH)
    failed_range = failed_length + statuses.count(OUT_OF_RANGE)
    return {
        "parsable": (count - failed_parse) / count,
        "right_length": (count - failed_length) / count,
        "in_range": (count - failed_range) / count,
        "copies": copies / count,
    }


def passes_gates(fractions: dict[str, float]) -> bool:
    # The shares are nested (in_range <= right_length <= parsable), so the last one decides all three.
    return fractions["in_range"] >= MIN_VALID_FRACTION and fractions["copies"] <= MAX_COPY_FRACTION


@torch.no_grad()
def greedy_completions(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], max_new_tokens: int,
    batch_size: int = 64,
) -> list[str]:
    """A plain greedy decode of each prompt, special tokens dropped from the text."""
    was_training = model.training
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
    model.eval()
    texts = []
    try:
        for start in range(0, len(prompts), batch_size):
            encoded = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(model.device)
            out = model.generate(**encoded, do_sample=False, max_new_tokens=max_new_tokens,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            texts += tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return texts


class CheckpointSelector(TrainerCallback):
    """Keeps the lowest-eval-loss checkpoint whose greedy generations pass the gates (see the module docstring).

    `inputs` are the held-out sequences x; their prompts are decoded at every evaluation, the first
    `max_prompts` distinct ones only, to bound the cost. After training, `apply(model)` loads the chosen weights
    and `table()` lists every evaluation, with a `chosen` column.
    """

    def __init__(self, inputs, dim: int, num_states: int, tokenizer: PreTrainedTokenizerBase, max_prompts: int = 64):
        for name, value in (("dim", dim), ("num_states", num_states), ("max_prompts", max_prompts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.inputs = list(dict.fromkeys(tuple(int(v) for v in x) for x in inputs))[:max_prompts]
        if not self.inputs:
            raise ValueError("checkpoint selection needs at least one held-out input to generate from")
        if any(len(x) != dim for x in self.inputs):
            raise ValueError(f"every held-out input must have length dim={dim}")
        self.dim, self.num_states, self.tokenizer = dim, num_states, tokenizer
        longest = format_completion([num_states - 1] * dim)
        self.max_new_tokens = len(tokenizer(longest, add_special_tokens=False)["input_ids"]) + 2
        self.evaluations: list[Evaluation] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step: int | None = None

    # -- the rule --------------------------------------------------------------------------------------------

    def chosen(self) -> Evaluation | None:
        """The lowest eval loss among the evaluations that pass the gates, the earliest on a tie.

        When none passes, the lowest eval loss regardless, rather than the last checkpoint: the gates then tell
        the checkpoints apart no better than not at all, while the eval loss still ranks them by the objective on
        held-out pairs; the last one has no claim beyond having trained longest, which with a from-scratch model
        and a high learning rate is as likely to have overfitted the round's few pairs.
        """
        candidates = [e for e in self.evaluations if e.passed] or self.evaluations
        candidates = [e for e in candidates if math.isfinite(e.eval_loss)] or candidates
        return min(candidates, key=lambda e: (e.eval_loss, e.step)) if candidates else None

    def record(self, evaluation: Evaluation, model: PreTrainedModel | None) -> bool:
        """Add an evaluation; keep `model`'s weights if it is now the chosen one. Returns whether it is."""
        self.evaluations = [e for e in self.evaluations if e.step != evaluation.step] + [evaluation]
        if self.chosen() is not evaluation:
            return False
        self.best_step = evaluation.step
        self.best_state = None if model is None else {
            name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()
        }
        return True

    # -- Trainer events --------------------------------------------------------------------------------------

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not state.is_world_process_zero or not metrics or "eval_loss" not in metrics:
            return control
        prompts = [format_prompt(x) for x in self.inputs]
        texts = greedy_completions(model, self.tokenizer, prompts, self.max_new_tokens,
                                   batch_size=max(1, args.per_device_eval_batch_size))
        fractions = gate_fractions(texts, self.inputs, self.dim, self.num_states)
        evaluation = Evaluation(step=state.global_step, epoch=float(state.epoch or 0.0),
                                eval_loss=float(metrics["eval_loss"]), num_prompts=len(prompts), **fractions,
                                passed=passes_gates(fractions))
        self.record(evaluation, model)
        return control

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.save(Path(args.output_dir) / f"checkpoint-{state.global_step}")
        return control

    # -- persistence and results -----------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the evaluations so far and the chosen weights into a Trainer checkpoint directory."""
        directory = Path(directory)
        if not directory.is_dir():
            return
        if self.best_state is not None:
            torch.save(self.best_state, directory / SELECTED_WEIGHTS_FILE)
        payload = {"best_step": self.best_step, "evaluations": [asdict(e) for e in self.evaluations]}
        (directory / SELECTION_FILE).write_text(json.dumps(payload, indent=1))

    def restore(self, checkpoint: str | Path) -> None:
        """Pick up the selection saved in `checkpoint`, when resuming from it; nothing there, nothing restored."""
        checkpoint = Path(checkpoint)
        if not (checkpoint / SELECTION_FILE).is_file():
            return
        payload = json.loads((checkpoint / SELECTION_FILE).read_text())
        self.evaluations = [Evaluation(**e) for e in payload["evaluations"]]
        self.best_step = payload["best_step"]
        weights = checkpoint / SELECTED_WEIGHTS_FILE
        self.best_state = torch.load(weights, map_location="cpu", weights_only=True) if weights.is_file() else None

    def apply(self, model: PreTrainedModel) -> Evaluation | None:
        """Load the chosen checkpoint's weights into `model` (left as it is when nothing was kept)."""
        chosen = self.chosen()
        if chosen is not None and self.best_state is not None:
            model.load_state_dict(self.best_state)
        return chosen

    def table(self) -> pd.DataFrame:
        columns = [*Evaluation.__dataclass_fields__, "chosen"]
        chosen = self.chosen()
        rows = [{**asdict(e), "chosen": chosen is not None and e.step == chosen.step} for e in self.evaluations]
        return pd.DataFrame(rows, columns=columns).sort_values("step", kind="stable").reset_index(drop=True)
