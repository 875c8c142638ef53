import math

import pytest
import torch

from llome.marge import (
    MargECollator,
    MargEConfig,
    completion_logps,
    effective_sample_size,
    importance_weights,
    marge_loss,
    marge_terms,
    tokenize_prompt_completion,
)
from llome.models import build_model
from llome.text import format_completion, format_prompt
from llome.tokenizer import build_tokenizer

POLICY = [-2.0, -4.0, -1.5]
REF = [-3.0, -3.0, -2.5]
LENGTHS = [2.0, 4.0, 3.0]
REWARDS = [0.5, 0.0, 0.25]


def _t(values, grad=False):
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def _hand_loss(alpha, beta, self_normalize):
    raw = [math.exp(p - r) for p, r in zip(POLICY, REF)]
    means = [p / n for p, n in zip(POLICY, LENGTHS)]
    if self_normalize:  # a weighted average: the normalised weights sum to 1
        reward = sum(w / sum(raw) * (m - r) for w, m, r in zip(raw, means, REWARDS))
    else:
        reward = sum(w * (m - r) for w, m, r in zip(raw, means, REWARDS)) / len(raw)
    return alpha * reward - beta * sum(means) / len(means)


@pytest.mark.parametrize("self_normalize", [True, False])
@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 10.0), (2.5, 0.0), (0.0, 1.0)])
def test_loss_matches_the_formula(alpha, beta, self_normalize):
    loss = marge_loss(_t(POLICY), _t(REF), _t(LENGTHS), _t(REWARDS), alpha, beta, self_normalize)
    assert loss.item() == pytest.approx(_hand_loss(alpha, beta, self_normalize), rel=1e-12)


# Two pairs with log-ratios 0 and ln 3: raw weights 1 and 3, self-normalised 1/4 and 3/4. Both completions have
# mean log-prob l = -1 (lp -2 over 2 tokens, lp -4 over 4), rewards 0.5 and 0, so l - r = -1.5 and -1.
HAND = dict(policy=[-2.0, -4.0], ref=[-2.0, -4.0 - math.log(3.0)], lengths=[2.0, 4.0], rewards=[0.5, 0.0])


@pytest.mark.parametrize(
    ("self_normalize", "reduction", "expected"),
    [
        (True, "sum", 8.875),  # 1/4 * -1.5 + 3/4 * -1 = -1.125; -1.125 - 10 * -1 = 8.875
        (True, "mean", 9.4375),  # the old estimator: -1.125 / 2 + 10 = 9.4375
        (False, "sum", 7.75),  # plain importance sampling: (1 * -1.5 + 3 * -1) / 2 + 10 = 7.75
    ],
)
def test_loss_on_numbers_worked_by_hand(self_normalize, reduction, expected):
    tensors = [_t(HAND[key]) for key in ("policy", "ref", "lengths", "rewards")]
    loss = marge_loss(*tensors, alpha=1.0, beta=10.0, self_normalize=self_normalize, reward_reduction=reduction)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    reward_estimate, likelihood_estimate = marge_terms(
        *tensors, self_normalize=self_normalize, reward_reduction=reduction
    )
    assert likelihood_estimate.item() == pytest.approx(-1.0, rel=1e-12)
    assert reward_estimate.item() == pytest.approx(expected - 10.0, rel=1e-12)


@pytest.mark.parametrize(("self_normalize", "reduction"), [(True, "sum"), (True, "mean"), (False, "sum")])
def test_gradient_matches_finite_differences(self_normalize, reduction):
    lengths, rewards = _t(LENGTHS), _t(REWARDS)

    def loss(policy, ref):
        return marge_loss(policy, ref, lengths, rewards, 1.5, 2.0, self_normalize, reduction)

    assert torch.autograd.gradcheck(loss, (_t(POLICY, grad=True), _t(REF)), eps=1e-6, atol=1e-8)


def test_gradient_flows_through_the_normalised_weights():
    alpha, beta = 1.0, 10.0
    policy = _t(POLICY, grad=True)
    marge_loss(policy, _t(REF), _t(LENGTHS), _t(REWARDS), alpha, beta, self_normalize=True).backward()
    # d/dp_j of alpha sum_i w_i (p_i/n_i - r_i) - beta mean_i p_i/n_i, with dw_i/dp_j = w_i (delta_ij - w_j)
    raw = [math.exp(p - r) for p, r in zip(POLICY, REF)]
    w = [x / sum(raw) for x in raw]
    margins = [p / n - r for p, n, r in zip(POLICY, LENGTHS, REWARDS)]
    size = len(POLICY)
    expected = [
        alpha * sum(w[i] * ((i == j) - w[j]) * margins[i] for i in range(size))
        + alpha * w[j] / LENGTHS[j]
        - beta / LENGTHS[j] / size
        for j in range(size)
    ]
    assert policy.grad.tolist() == pytest.approx(expected, rel=1e-12)


def test_the_old_mean_reduction_weakens_the_reward_term_by_the_batch_size():
    def reward_gradient(reduction):
        policy = _t(POLICY, grad=True)
        marge_loss(policy, _t(REF), _t(LENGTHS), _t(REWARDS), 1.0, 0.0, reward_reduction=reduction).backward()
        return policy.grad

    assert torch.allclose(reward_gradient("sum"), len(POLICY) * reward_gradient("mean"), rtol=1e-12)


def test_the_reduction_is_checked():
    tensors = [_t(values) for values in (POLICY, REF, LENGTHS, REWARDS)]
    with pytest.raises(ValueError, match="'median'"):
        marge_loss(*tensors, reward_reduction="median")
    with pytest.raises(ValueError, match="self_normalize=False"):
        marge_loss(*tensors, self_normalize=False, reward_reduction="mean")


def _grad(policy, rewards, self_normalize=True):
    policy = _t(policy, grad=True)
    lengths = _t([4.0] * len(rewards))
    marge_loss(policy, policy.detach() + 0.3, lengths, _t(rewards), self_normalize=self_normalize).backward()
    return policy.grad


def test_rewards_change_the_gradient_with_a_batch():
    assert not torch.allclose(_grad([-2.0, -3.0], [0.0, 0.0]), _grad([-2.0, -3.0], [1.0, 0.0]))


def test_rewards_drop_out_of_the_gradient_with_a_self_normalised_batch_of_one():
    # why MargEConfig refuses per-device batches of 1 with self_normalize
    assert torch.equal(_grad([-2.0], [0.0]), _grad([-2.0], [1.0]))
    assert not torch.equal(_grad([-2.0], [0.0], self_normalize=False), _grad([-2.0], [1.0], self_normalize=False))


def test_self_normalisation_is_stable_for_huge_log_ratios():
    policy, ref = _t([0.0, -1.0]), _t([-2000.0, 1000.0])
    weights = importance_weights(policy, ref, self_normalize=True)
    assert weights.tolist() == pytest.approx([1.0, 0.0])
    assert torch.isfinite(marge_loss(policy, ref, _t([2.0, 2.0]), _t([0.0, 0.0]))).item()


def test_effective_sample_size():
    assert effective_sample_size(torch.full((8,), 1 / 8)).item() == pytest.approx(8.0)
    assert effective_sample_size(torch.tensor([1.0, 0.0, 0.0])).item() == pytest.approx(1.0)
    assert effective_sample_size(torch.tensor([0.5, 0.25, 0.25])).item() == pytest.approx(1 / 0.375)
    # unnormalised weights: the same value as after normalising them
    assert effective_sample_size(torch.tensor([2.0, 1.0, 1.0])).item() == pytest.approx(1 / 0.375)


@pytest.mark.parametrize(
    "tensors",
    [
        ([[-1.0]], [-1.0], [1.0], [0.0]),  # 2-D
        ([-1.0, -2.0], [-1.0], [1.0], [0.0]),  # sizes differ
        ([], [], [], []),  # empty
    ],
)
def test_loss_rejects_malformed_batches(tensors):
    with pytest.raises(ValueError):
        marge_loss(*(torch.tensor(t) for t in tensors))


def test_config_refuses_a_self_normalised_batch_of_one(tmp_path):
    with pytest.raises(ValueError, match="per_device_train_batch_size=1"):
        MargEConfig(output_dir=str(tmp_path), per_device_train_batch_size=1, self_normalize=True, use_cpu=True)
    config = MargEConfig(output_dir=str(tmp_path), per_device_train_batch_size=1, self_normalize=False, use_cpu=True)
    assert (config.alpha, config.beta) == (1.0, 10.0)
    with pytest.raises(ValueError, match="beta"):
        MargEConfig(output_dir=str(tmp_path), beta=-1.0, use_cpu=True)
    assert MargEConfig(output_dir=str(tmp_path), use_cpu=True).reward_reduction == "sum"
    assert MargEConfig(output_dir=str(tmp_path), use_cpu=True, reward_reduction="mean").reward_reduction == "mean"
    with pytest.raises(ValueError, match="reward_reduction"):
        MargEConfig(output_dir=str(tmp_path), use_cpu=True, reward_reduction="avg")


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_tokenizer(8)
    config = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
              "max_position_embeddings": 64, "seed": 0}
    return build_model(config, tokenizer).eval(), tokenizer


def test_collator_marks_completion_tokens_and_pads_right(tiny):
    _, tokenizer = tiny
    examples = [
        {**tokenize_prompt_completion(tokenizer, format_prompt([1, 2]), format_completion([3, 4])), "reward": 0.5},
        {**tokenize_prompt_completion(tokenizer, format_prompt([1]), format_completion([3])), "reward": 0.0},
    ]
    batch = MargECollator(pad_token_id=tokenizer.pad_token_id)(examples)
    prompt_length, completion_length = 8, 6  # "<inc> [1, 2]\n" and "[3, 4]" + eos
    assert batch["input_ids"].shape == (2, prompt_length + completion_length)
    assert batch["completion_mask"][0].tolist() == [0] * prompt_length + [1] * completion_length
    completion = batch["input_ids"][0][batch["completion_mask"][0].bool()].tolist()
    assert tokenizer.decode(completion) == "[3, 4]" + tokenizer.eos_token
    short = batch["attention_mask"][1].sum().item()
    assert short == 6 + 4 and (batch["input_ids"][1, short:] == tokenizer.pad_token_id).all()
    assert batch["completion_mask"][1].sum().item() == 4
    assert batch["rewards"].tolist() == [0.5, 0.0]


def test_completion_logps_equal_unpadded_per_row_sums(tiny):
    model, tokenizer = tiny
    pairs = [([1, 2, 3], [3, 2, 1]), ([0], [7]), ([5, 5], [6, 0])]
    examples = [
        {**tokenize_prompt_completion(tokenizer, format_prompt(x), format_completion(y)), "reward": 0.0}
        for x, y in pairs
    ]
    batch = MargECollator(pad_token_id=tokenizer.pad_token_id)(examples)
    with torch.no_grad():
        logps, lengths = completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        for i, example in enumerate(examples):
            row = torch.tensor([example["prompt_ids"] + example["completion_ids"]])
            log_softmax = torch.log_softmax(model(row).logits[0], dim=-1)
            start = len(example["prompt_ids"])
            expected = sum(log_softmax[t - 1, row[0, t]].item() for t in range(start, row.shape[1]))
            assert logps[i].item() == pytest.approx(expected, abs=1e-4)
            assert lengths[i].item() == len(example["completion_ids"])


@pytest.mark.parametrize("disable_dropout", [True, False])
def test_trainer_zeroes_dropout_in_both_models_only_when_asked(tmp_path, disable_dropout):
    from datasets import Dataset

    from llome.marge import MargETrainer

    tokenizer = build_tokenizer(8)
    config = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
              "max_position_embeddings": 64, "hidden_dropout": 0.25, "attention_dropout": 0.25, "seed": 0}
    policy, reference = build_model(config, tokenizer), build_model(config, tokenizer)
    pairs = Dataset.from_dict({"prompt": [format_prompt([1, 2])] * 2, "completion": [format_completion([2, 1])] * 2,
                               "reward": [0.0, 0.5]})
    args = MargEConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, use_cpu=True, report_to="none",
                       disable_dropout=disable_dropout)
    MargETrainer(model=policy, ref_model=reference, args=args, train_dataset=pairs, processing_class=tokenizer)
    for model in (policy, reference):
        rates = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
        assert rates == ({0.0} if disable_dropout else {0.25})
