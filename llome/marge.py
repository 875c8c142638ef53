"""MargE (Margin-Aligned Expectation), docs/method.md §5, as a transformers Trainer in TRL's style.

MargE pulls the policy pi_theta towards the reward distribution p_r(y) ∝ exp(r) while keeping it close to a frozen
reference pi_ref (the previous round's model). With lp the summed and l = lp / |y| the mean completion
log-probability, a batch of pairs (x_i, y_i, r_i) drawn near pi_ref gives

    loss = alpha * sum_i w~_i (l_theta_i - r_i) - beta * mean_i l_theta_i,
    w_i = exp(lp_theta_i - lp_ref_i),    w~_i = w_i / sum_j w_j.

The first term estimates alpha * KL(pi_theta || p_r) (up to a constant) by self-normalised importance sampling: a
weighted average, so a SUM over the normalised weights. Without self-normalisation it is the plain importance
sampling estimate alpha * mean_i w_i (l_theta_i - r_i). The second term estimates beta * KL(pi_ref || pi_theta)
(up to a constant) as a plain mean. The weights are NOT detached: the gradient flows through them too.

`reward_reduction="mean"` reproduces an earlier estimator of this project, alpha * mean_i w~_i (l_theta_i - r_i),
which divides the self-normalised reward term by the batch size; it is kept for the ablation only.

With a batch of one, self-normalised weights are always exactly 1 and the reward drops out of the gradient, so that
configuration is refused.

The dataset has columns "prompt", "completion" (text, see llome.text) and "reward". Completions are scored with
the tokenizer's eos token appended, as in SFT and DPO, so the model keeps learning where a proposal ends.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainingArguments
from trl.trainer.utils import disable_dropout_in_model, selective_log_softmax

from llome.schema import MargETrainConfig, check_marge_estimator

logger = logging.getLogger(__name__)

# The authors' MargE settings (docs/method.md §5): MargEConfig's defaults, and marge_loss's. Nowhere else.
ALPHA = 1.0
BETA = 10.0
LEARNING_RATE = 1e-6
SELF_NORMALIZE = True
REWARD_REDUCTION = "sum"


def importance_weights(policy_logps: torch.Tensor, ref_logps: torch.Tensor, self_normalize: bool) -> torch.Tensor:
    """w_i = exp(lp_theta_i - lp_ref_i); self-normalised as a softmax of the log-ratios, which cannot overflow."""
    log_ratios = policy_logps - ref_logps
    return torch.softmax(log_ratios, dim=0) if self_normalize else torch.exp(log_ratios)


def effective_sample_size(weights: torch.Tensor) -> torch.Tensor:
    """(sum w)^2 / sum w^2, 1 / sum w_i^2 when normalised: from 1 (one pair dominates) to the batch size."""
    weights = weights.detach()
    return weights.sum() ** 2 / (weights**2).sum()




def marge_terms(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    completion_lengths: torch.Tensor,
    rewards: torch.Tensor,
    self_normalize: bool = SELF_NORMALIZE,
    reward_reduction: str = REWARD_REDUCTION,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two estimates MargE weighs, before alpha and beta: (reward estimate, likelihood estimate).

    reward estimate: sum_i w~_i (l_i - r_i) when self-normalised, mean_i w_i (l_i - r_i) otherwise; with
    reward_reduction="mean" the self-normalised sum is divided by the batch size (the old estimator).
    likelihood estimate: mean_i l_i. Arguments are 1-D tensors over the batch; the log-probs are summed ones.
    """
    _check_batch(policy_logps=policy_logps, ref_logps=ref_logps, completion_lengths=completion_lengths, rewards=rewards)
    check_marge_estimator(self_normalize, reward_reduction)
    weights = importance_weights(policy_logps, ref_logps, self_normalize)
    mean_logps = policy_logps / completion_lengths
    weighted = weights * (mean_logps - rewards)
    # Self-normalised weights sum to 1: their weighted average is a sum. Plain weights average to 1 in
    # expectation: their estimate is a mean. "mean" on self-normalised weights is the old estimator.
    reward_estimate = weighted.sum() if self_normalize and reward_reduction == "sum" else weighted.mean()
    return reward_estimate, mean_logps.mean()


def marge_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    completion_lengths: torch.Tensor,
    rewards: torch.Tensor,
    alpha: float = ALPHA,
    beta: float = BETA,
    self_normalize: bool = SELF_NORMALIZE,
    reward_reduction: str = REWARD_REDUCTION,
) -> torch.Tensor:
    """alpha * sum_i w~_i (l_i - r_i) - beta * mean_i l_i, with l_i = policy_logps_i / completion_lengths_i.

    Without self_normalize the first term is alpha * mean_i w_i (l_i - r_i); reward_reduction="mean" divides the
    self-normalised one by the batch size (the old estimator, for the ablation). All arguments are 1-D tensors
    over the batch; policy_logps and ref_logps are summed completion log-probs. See the module docstring.
    """
    reward_estimate, likelihood_estimate = marge_terms(
        policy_logps, ref_logps, completion_lengths, rewards, self_normalize, reward_reduction
    )
    return alpha * reward_estimate - beta * likelihood_estimate


def completion_logps(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probabilities of the completion tokens of each row, and the number of those tokens.

    Rows are prompt + completion, right-padded; completion_mask marks the completion tokens.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    # Token t is predicted from position t-1, so the first token of a row is never scored.
    scored = completion_mask[:, 1:]
    token_logps = selective_log_softmax(logits[:, :-1].float(), input_ids[:, 1:], row_mask=scored)  # 0 off the mask
    return token_logps.sum(dim=1), scored.sum(dim=1)


def tokenize_prompt_completion(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str
) -> dict[str, list[int]]:
    """Prompt and completion token ids, tokenized apart as at generation time, with eos closing the completion."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids}


@dataclass
class MargECollator:
    """Right-pads prompt + completion rows and keeps which tokens are the completion, plus the rewards."""

    pad_token_id: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [example["prompt_ids"] + example["completion_ids"] for example in examples]
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        completion_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (row, example) in enumerate(zip(rows, examples, strict=True)):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
            completion_mask[i, len(example["prompt_ids"]) : len(row)] = 1
        rewards = torch.tensor([float(example["reward"]) for example in examples], dtype=torch.float32)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "completion_mask": completion_mask,
            "rewards": rewards,
        }


@dataclass
class MargEConfig(TrainingArguments):
    """TrainingArguments plus MargE's coefficients. Defaults follow the authors (ALPHA, BETA, LEARNING_RATE, ...)."""

    alpha: float = field(default=ALPHA, metadata={"help": "Weight of KL(pi_theta || p_r), the reward term."})
    beta: float = field(default=BETA, metadata={"help": "Weight of KL(pi_ref || pi_theta), the likelihood term."})
    self_normalize: bool = field(
        default=SELF_NORMALIZE, metadata={"help": "Normalise the importance weights over each per-device batch."}
    )
    reward_reduction: str = field(
        default=REWARD_REDUCTION,
        metadata={
            "help": "sum: the paper's self-normalised estimate sum_i w~_i (l_i - r_i); mean: the old estimator, "
            "divided by the batch size (ablation only; needs self_normalize)."
        },
    )
    disable_dropout: bool = field(
        default=True, metadata={"help": "Zero dropout in both models, so log-probs are not noisy."}
    )
    learning_rate: float = field(default=LEARNING_RATE, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})

    def __post_init__(self):
        # MargE's rules live in the schema, so this config and a profile's MargE settings meet the same ones.
        MargETrainConfig(alpha=self.alpha, beta=self.beta, self_normalize=self.self_normalize,
                         reward_reduction=self.reward_reduction,
                         per_device_train_batch_size=self.per_device_train_batch_size)
        super().__post_init__()


class MargETrainer(Trainer):
    """Trainer whose loss is MargE against a frozen reference model.

    Besides the loss it logs, averaged over the steps since the last log (prefixed "eval_" in evaluation):
    marge/reward_term (alpha times the reward estimate) and marge/likelihood_term (-beta times the likelihood
    estimate), which add up to the loss; marge/ess and marge/ess_fraction, the importance weights' effective
    sample size and its share of the batch; marge/log_ratio, marge/mean_logp and marge/reward.

    Across processes (`accelerate launch --num_processes N`), each process self-normalises the importance weights
    over its own micro-batch of `per_device_train_batch_size` pairs, and DDP averages the N gradients. The
    estimator is therefore the average of N per-device self-normalised estimates, not one estimate normalised
    over the global batch of N x per-device pairs: a per-device batch, not the global one, sets its bias and
    effective sample size (logged as marge/ess). The reward still reaches the gradient whenever a micro-batch
    holds unequal rewards (tests/test_launch_multiprocess.py).
    """

    # compute_loss returns a per-micro-batch mean, so Trainer must divide it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: PreTrainedModel,
        ref_model: PreTrainedModel,
        args: MargEConfig,
        train_dataset: Dataset,
        processing_class: PreTrainedTokenizerBase,
        eval_dataset: Dataset | None = None,
        callbacks: list | None = None,
        optimizers: tuple = (None, None),
    ):
        if not isinstance(args, MargEConfig):
            raise ValueError(f"args must be a MargEConfig, got {type(args).__name__}")
        if ref_model is None or ref_model is model:
            raise ValueError("MargE needs a separate frozen reference model (the previous round's model)")
        if processing_class.eos_token_id is None or processing_class.pad_token_id is None:
            raise ValueError("the tokenizer needs both an eos and a pad token")
        train_dataset = self._prepare_dataset(train_dataset, processing_class, "train_dataset")
        if eval_dataset is not None:
            eval_dataset = self._prepare_dataset(eval_dataset, processing_class, "eval_dataset")
        if args.self_normalize and len(train_dataset) % args.per_device_train_batch_size == 1:
            logger.warning(
                "MargE: %d pairs in batches of %d leave a last batch of 1, whose self-normalised weight is 1: "
                "that pair trains on likelihood alone",
                len(train_dataset),
                args.per_device_train_batch_size,
            )

        super().__init__(
            model=model,
            args=args,
            data_collator=MargECollator(pad_token_id=processing_class.pad_token_id),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
        )
        ref_model.eval()
        ref_model.requires_grad_(False)
        if args.disable_dropout:
            disable_dropout_in_model(self.model)
            disable_dropout_in_model(ref_model)
        self.ref_model = self.accelerator.prepare_model(ref_model, evaluation_mode=True)
        self._metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}

    @staticmethod
    def _prepare_dataset(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, name: str) -> Dataset:
        missing = {"prompt", "completion", "reward"} - set(dataset.column_names)
        if missing:
            raise ValueError(f"{name} lacks columns {sorted(missing)}; MargE needs prompt, completion and reward")
        if len(dataset) == 0:
            raise ValueError(f"{name} is empty")
        bad = [i for i, reward in enumerate(dataset["reward"]) if reward is None or not math.isfinite(reward)]
        if bad:
            raise ValueError(f"{name} has non-finite rewards at rows {bad[:10]}")
        return dataset.map(
            lambda example: tokenize_prompt_completion(tokenizer, example["prompt"], example["completion"]),
            desc=f"Tokenizing MargE {name}",
        )

    def _set_signature_columns_if_needed(self):
        # Keep the columns the collator reads; Trainer would otherwise drop everything the model's forward lacks.
        if self._signature_columns is None:
            self._signature_columns = ["prompt_ids", "completion_ids", "reward"]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        sequence = (inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"])
        policy_logps, lengths = completion_logps(model, *sequence)
        with torch.no_grad():
            ref_logps, _ = completion_logps(self.ref_model, *sequence)
        args = self.args
        reward_estimate, likelihood_estimate = marge_terms(
            policy_logps, ref_logps, lengths, inputs["rewards"], args.self_normalize, args.reward_reduction
        )
        reward_term, likelihood_term = args.alpha * reward_estimate, -args.beta * likelihood_estimate
        loss = reward_term + likelihood_term

        with torch.no_grad():
            weights = importance_weights(policy_logps, ref_logps, args.self_normalize)
            metrics = self._metrics[mode]
            # The loss is the sum of these two; logged apart to see which one drives training.
            metrics["marge/reward_term"].append(reward_term.item())
            metrics["marge/likelihood_term"].append(likelihood_term.item())
            metrics["marge/ess"].append(effective_sample_size(weights).item())
            metrics["marge/ess_fraction"].append(effective_sample_size(weights).item() / len(weights))
            metrics["marge/log_ratio"].append((policy_logps - ref_logps).mean().item())
            metrics["marge/mean_logp"].append((policy_logps / lengths).mean().item())
            metrics["marge/reward"].append(inputs["rewards"].mean().item())
        return (loss, {"policy_logps": policy_logps}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # The per-step metrics gathered since the last log are averaged into this log entry.
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        logs.update({prefix + key: sum(values) / len(values) for key, values in self._metrics[mode].items()})
        self._metrics[mode].clear()
        super().log(logs, start_time)


def _check_batch(**tensors: torch.Tensor) -> None:
    sizes = set()
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or tensor.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor over the batch")
        sizes.add(tensor.shape[0])
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"marge_loss needs non-empty tensors of one batch size, got sizes {sorted(sizes)}")
