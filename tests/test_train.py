import copy
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, TrainerCallback
from trl import DPOConfig, SFTConfig

from llome.marge import MargECollator, MargEConfig, completion_logps, marge_loss, tokenize_prompt_completion
from llome.models import build_model
from llome.text import format_completion, format_prompt
from llome.tokenizer import build_tokenizer
from llome.train import (
    TrainConfig,
    latest_checkpoint,
    sft_trainer,
    split_held_out,
    train_dpo,
    train_marge,
    train_sft,
    training_args,
)

NUM_STATES, LENGTH, BATCH = 8, 6, 8
TINY = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 64, "seed": 0}
CFG = {"max_steps": 8, "per_device_train_batch_size": BATCH, "learning_rate": 3e-3, "logging_steps": 1,
       "save_steps": 100, "disable_tqdm": True}


def _sequences(rng, count):
    return [tuple(int(s) for s in rng.integers(0, NUM_STATES, LENGTH)) for _ in range(count)]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(NUM_STATES)


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    xs = _sequences(rng, 24)
    ys = [tuple(sorted(x)) for x in xs]  # something learnable: sort the input
    return pd.DataFrame({"x": xs, "y": ys, "x_score": 0.25, "y_score": 0.5, "reward": rng.uniform(0, 1, 24)})


def _model(tokenizer, **changes):
    return build_model({**TINY, **changes}, tokenizer)


def _batched_logps(model, tokenizer, prompts, completions):
    examples = [{**tokenize_prompt_completion(tokenizer, p, c), "reward": 0.0} for p, c in zip(prompts, completions)]
    batch = MargECollator(pad_token_id=tokenizer.pad_token_id)(examples)
    model.eval()
    with torch.no_grad():
        return completion_logps(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])


def _sft_loss(model, tokenizer, frame):
    logps, lengths = _batched_logps(model, tokenizer, [format_prompt(x) for x in frame.x],
                                    [format_completion(y) for y in frame.y])
    return (-logps.sum() / lengths.sum()).item()


def test_sft_masks_the_prompt_and_ends_with_eos(tokenizer, pairs, tmp_path):
    trainer = sft_trainer(_model(tokenizer), tokenizer, pairs, CFG, tmp_path)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(3)])
    for row in range(3):
        prompt = format_prompt(pairs.x[row])
        prompt_length = len(tokenizer(prompt)["input_ids"])
        labels, input_ids = batch["labels"][row], batch["input_ids"][row]
        assert (labels[:prompt_length] == -100).all()
        trained = labels[labels != -100]
        assert trained.tolist() == input_ids[prompt_length : prompt_length + len(trained)].tolist()
        assert tokenizer.decode(trained) == format_completion(pairs.y[row]) + tokenizer.eos_token


def test_sft_lowers_its_loss_and_returns_an_independent_model(tokenizer, pairs, tmp_path):
    model = _model(tokenizer)
    before = _sft_loss(model, tokenizer, pairs)
    trained = train_sft(model, tokenizer, pairs, CFG, tmp_path)
    after = _sft_loss(trained, tokenizer, pairs)
    assert after < before - 0.2, (before, after)
    assert (tmp_path / "config.json").exists() and (tmp_path / "checkpoint-8").is_dir()

    # TRL patches model.forward on the instance; a deepcopy of a still-patched model would run the original's
    # weights. The returned model must be clean, so that copies (e.g. reference models) are independent.
    assert "forward" not in trained.__dict__
    reference = copy.deepcopy(trained)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.1)
    assert _sft_loss(trained, tokenizer, pairs) == pytest.approx(after)
    assert _sft_loss(reference, tokenizer, pairs) != pytest.approx(after)


def _dpo_loss(model, ref, tokenizer, triples, beta):
    prompts = [format_prompt(x) for x in triples.x]
    chosen, rejected = ([format_completion(y) for y in column] for column in (triples.y_w, triples.y_l))
    chosen = [_batched_logps(m, tokenizer, prompts, chosen)[0] for m in (model, ref)]
    rejected = [_batched_logps(m, tokenizer, prompts, rejected)[0] for m in (model, ref)]
    margin = (chosen[0] - chosen[1]) - (rejected[0] - rejected[1])
    return -F.logsigmoid(beta * margin).mean().item()


def test_dpo_lowers_its_loss(tokenizer, pairs, tmp_path):
    rng = np.random.default_rng(1)
    triples = pd.DataFrame({"x": pairs.x, "y_w": pairs.y, "y_l": _sequences(rng, len(pairs))})
    model = _model(tokenizer)
    reference = copy.deepcopy(model)
    assert _dpo_loss(model, reference, tokenizer, triples, 0.4) == pytest.approx(math.log(2))
    trained = train_dpo(model, reference, tokenizer, triples, {**CFG, "learning_rate": 1e-3}, tmp_path)
    assert _dpo_loss(trained, reference, tokenizer, triples, 0.4) < math.log(2) - 0.05
    assert not any(parameter.requires_grad for parameter in reference.parameters())


class _Logs(TrainerCallback):
    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def _marge_loss_on(model, ref, tokenizer, frame):
    prompts, completions = [format_prompt(x) for x in frame.x], [format_completion(y) for y in frame.y]
    losses = []
    for start in range(0, len(frame), BATCH):
        part = slice(start, start + BATCH)
        policy, lengths = _batched_logps(model, tokenizer, prompts[part], completions[part])
        reference, _ = _batched_logps(ref, tokenizer, prompts[part], completions[part])
        rewards = torch.tensor(frame.reward.to_numpy()[part], dtype=torch.float32)
        losses.append(marge_loss(policy, reference, lengths, rewards).item())
    return sum(losses) / len(losses)


def test_marge_lowers_its_loss_and_logs_the_effective_sample_size(tokenizer, pairs, tmp_path):
    model = _model(tokenizer)
    reference = copy.deepcopy(model)
    before = _marge_loss_on(model, reference, tokenizer, pairs)
    logs = _Logs()
    trained = train_marge(model, reference, tokenizer, pairs, {**CFG, "learning_rate": 1e-3}, tmp_path, [logs])
    assert _marge_loss_on(trained, reference, tokenizer, pairs) < before - 0.5
    ess = [entry["marge/ess"] for entry in logs.logs if "marge/ess" in entry]
    assert len(ess) == CFG["max_steps"]  # one per step with logging_steps=1
    assert all(1.0 <= value <= BATCH + 1e-6 for value in ess)
    assert ess[0] == pytest.approx(BATCH)  # policy == reference at the start: uniform weights
    assert ess[-1] < BATCH  # and no longer once the policy moved


def test_marge_refuses_a_self_normalised_batch_of_one(tokenizer, pairs, tmp_path):
    model = _model(tokenizer)
    with pytest.raises(ValueError, match="per_device_train_batch_size=1"):
        train_marge(model, copy.deepcopy(model), tokenizer, pairs, {**CFG, "per_device_train_batch_size": 1}, tmp_path)


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_an_interrupted_run_resumes_to_the_same_weights(tokenizer, pairs, tmp_path):
    cfg = {**CFG, "max_steps": 4, "save_steps": 2}
    straight = train_sft(_model(tokenizer), tokenizer, pairs, cfg, tmp_path / "straight")

    train_sft(_model(tokenizer), tokenizer, pairs, cfg, tmp_path / "resumed", callbacks=[_StopAt(2)])
    assert latest_checkpoint(tmp_path / "resumed").endswith("checkpoint-2")
    # a fresh process would start from a fresh model; the checkpoint supplies weights, optimizer and data order
    resumed = train_sft(_model(tokenizer, seed=7), tokenizer, pairs, cfg, tmp_path / "resumed")
    assert latest_checkpoint(tmp_path / "resumed").endswith("checkpoint-4")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name

    # a finished run reloads its final weights instead of training again
    again = train_sft(_model(tokenizer, seed=7), tokenizer, pairs, cfg, tmp_path / "straight")
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), again.state_dict().values()))


def test_latest_checkpoint_skips_half_written_ones(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-10").mkdir()  # interrupted while saving
    assert latest_checkpoint(tmp_path).endswith("checkpoint-2")


def test_training_args_defaults_suit_a_cpu(tmp_path):
    args = training_args(SFTConfig, {"learning_rate": 1e-3, "lr_scheduler_type": "constant"}, tmp_path)
    assert not args.bf16 and not args.activation_checkpointing and not args.gradient_checkpointing
    assert args.report_to in ([], "none", ["none"])
    assert args.learning_rate == 1e-3 and args.lr_scheduler_type == "constant"
    assert args.use_cpu == (not torch.cuda.is_available())
    assert args.save_strategy == "steps" and args.save_steps == TrainConfig().save_steps
    # the old name still works, and is not silently overridden by the default of the new one
    assert training_args(SFTConfig, {"gradient_checkpointing": True}, tmp_path).activation_checkpointing


def test_method_settings_reach_their_own_config_only(tmp_path):
    from llome.train import DPO_DEFAULTS

    assert training_args(DPOConfig, {}, tmp_path, defaults=DPO_DEFAULTS).beta == 0.4
    assert training_args(DPOConfig, {"beta": 0.1}, tmp_path, defaults=DPO_DEFAULTS).beta == 0.1
    # As marge_trainer builds it: the authors' MargE settings (MargEConfig's) unless the config says otherwise.
    marge = training_args(MargEConfig, {"alpha": 2.0}, tmp_path)
    assert (marge.alpha, marge.beta, marge.self_normalize, marge.reward_reduction) == (2.0, 10.0, True, "sum")
    assert marge.learning_rate == 1e-6
    assert training_args(MargEConfig, {"learning_rate": 2e-4}, tmp_path).learning_rate == 2e-4
    with pytest.raises(ValueError, match="beta"):
        training_args(SFTConfig, {"beta": 0.4}, tmp_path)
    with pytest.raises(ValueError, match="learning_rat"):
        training_args(SFTConfig, {"learning_rat": 1e-3}, tmp_path)
    with pytest.raises(ValueError, match="output_dir"):
        training_args(SFTConfig, {"output_dir": "elsewhere"}, tmp_path)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"x": [(1, 2)]}), "'y'"),
        (pd.DataFrame({"x": [], "y": []}), "empty"),
        (pd.DataFrame({"x": [(1, 2), (1, 2.5)], "y": [(1, 2), (2, 1)]}, index=[10, 11]), "row 11"),
    ],
)
def test_bad_pairs_are_refused_before_training(tokenizer, tmp_path, frame, message):
    with pytest.raises(ValueError, match=message):
        train_sft(_model(tokenizer), tokenizer, frame, CFG, tmp_path)


def test_bad_rewards_and_missing_reference_are_refused(tokenizer, pairs, tmp_path):
    model = _model(tokenizer)
    bad = pairs.assign(reward=[float("nan")] + [0.0] * (len(pairs) - 1))
    with pytest.raises(ValueError, match="reward"):
        train_marge(model, copy.deepcopy(model), tokenizer, bad, CFG, tmp_path)
    triples = pd.DataFrame({"x": pairs.x, "y_w": pairs.y, "y_l": pairs.x})
    with pytest.raises(ValueError, match="reference"):
        train_dpo(model, None, tokenizer, triples, CFG, tmp_path)


def test_examples_longer_than_the_context_are_refused(tokenizer, pairs, tmp_path):
    with pytest.raises(ValueError, match="max_position_embeddings=16"):
        train_sft(_model(tokenizer, max_position_embeddings=16), tokenizer, pairs, CFG, tmp_path)


def _bpe_tokenizer(pairs):
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    texts = [format_prompt(x) + format_completion(y) for x, y in zip(pairs.x, pairs.y)]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    backend.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                                           initial_alphabet=alphabet))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    tokenizer.pad_token = tokenizer.eos_token  # as llome.models.load_tokenizer does for Pythia
    return tokenizer


def test_sft_works_with_a_foreign_bpe_tokenizer(pairs, tmp_path):
    bpe = _bpe_tokenizer(pairs)
    model = _model(bpe)
    trainer = sft_trainer(model, bpe, pairs, CFG, tmp_path / "inspect")
    example = trainer.train_dataset[0]
    prompt_length = len(bpe(format_prompt(pairs.x[0]))["input_ids"])
    assert example["labels"][:prompt_length] == [-100] * prompt_length
    assert bpe.decode(example["labels"][prompt_length:]) == format_completion(pairs.y[0]) + bpe.eos_token

    before = _sft_loss(model, bpe, pairs)
    trained = train_sft(_model(bpe), bpe, pairs, CFG, tmp_path / "train")
    assert _sft_loss(trained, bpe, pairs) < before


# --- held-out evaluation, checkpoint choice and the run's records ------------------------------------------------

SELECT = {**CFG, "select_checkpoint": True, "num_states": NUM_STATES, "eval_fraction": 0.25, "num_evals": 4}


@pytest.mark.parametrize(("count", "fraction", "held"), [(24, 0.05, 1), (100, 0.05, 5), (24, 0.25, 6), (2, 0.9, 1),
                                                         (1, 0.5, 0), (24, 0.0, 0)])
def test_split_held_out_sizes(count, fraction, held):
    table = pd.DataFrame({"x": range(count)}, index=range(10, 10 + count))
    training, held_out = split_held_out(table, fraction, seed=3)
    assert len(held_out) == held and len(training) == count - held
    assert sorted(training.index.tolist() + held_out.index.tolist()) == table.index.tolist()
    assert training.index.is_monotonic_increasing and held_out.index.is_monotonic_increasing
    assert split_held_out(table, fraction, seed=3)[1].equals(held_out)  # seeded


def test_selection_settings_are_checked():
    with pytest.raises(ValueError, match="num_states"):
        TrainConfig.from_mapping({"select_checkpoint": True})
    with pytest.raises(ValueError, match="eval_fraction"):
        TrainConfig.from_mapping({"select_checkpoint": True, "num_states": 8, "eval_fraction": 0})
    with pytest.raises(ValueError, match="eval_fraction"):
        TrainConfig.from_mapping({"eval_fraction": 1.0})
    with pytest.raises(ValueError, match="num_evals"):
        TrainConfig.from_mapping({"num_evals": 0})
    config = TrainConfig()
    assert (config.eval_fraction, config.num_evals, config.select_checkpoint, config.max_eval_prompts) == (
        0.05, 10, False, 64)


class _Snapshots(TrainerCallback):
    """The weights at every evaluation, to check which ones a run returns."""

    def __init__(self):
        self.weights = {}

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        self.weights[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_weights(a, b):
    return all(torch.equal(x, b[name]) for name, x in a.items())


def _run_objective(objective, tokenizer, pairs, cfg, output_dir, callbacks=None):
    model = _model(tokenizer)
    if objective == "sft":
        return train_sft(model, tokenizer, pairs, cfg, output_dir, callbacks)
    if objective == "marge":
        return train_marge(model, copy.deepcopy(model), tokenizer, pairs, cfg, output_dir, callbacks)
    triples = pd.DataFrame({"x": pairs.x, "y_w": pairs.y, "y_l": pairs.x})
    return train_dpo(model, copy.deepcopy(model), tokenizer, triples, cfg, output_dir, callbacks)


@pytest.mark.parametrize("objective", ["sft", "marge", "dpo"])
def test_a_selecting_run_writes_its_evaluations_and_returns_the_chosen_checkpoint(objective, tokenizer, pairs,
                                                                                  tmp_path):
    snapshots = _Snapshots()
    trained = _run_objective(objective, tokenizer, pairs, SELECT, tmp_path, [snapshots])
    table = pd.read_csv(tmp_path / "checkpoints.csv")
    assert table["step"].tolist() == [2, 4, 6, 8]  # 4 evaluations over 8 steps
    assert (table["num_prompts"] == 6).all()  # 25% of 24 pairs held out, all decoded
    assert table["chosen"].sum() == 1
    passed = table[table["passed"]]
    expected = (passed if len(passed) else table).sort_values(["eval_loss", "step"]).iloc[0]["step"]
    assert table.loc[table["chosen"], "step"].item() == expected
    assert _same_weights(trained.state_dict(), snapshots.weights[expected])
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert log["eval_loss"].dropna().tolist() == pytest.approx(table["eval_loss"].tolist())


def test_the_chosen_checkpoint_is_what_the_run_returns_and_saves(tokenizer, pairs, tmp_path, monkeypatch):
    from llome import checkpoints
    from llome.models import load_model_and_tokenizer

    # Gates that only the first two evaluations pass: the loss keeps falling, so the second one is chosen.
    verdicts = iter([True, True, False, False])
    monkeypatch.setattr(checkpoints, "passes_gates", lambda fractions: next(verdicts))
    snapshots = _Snapshots()
    trained = train_sft(_model(tokenizer), tokenizer, pairs, SELECT, tmp_path, [snapshots])
    table = pd.read_csv(tmp_path / "checkpoints.csv")
    assert table["passed"].tolist() == [True, True, False, False]
    assert table["eval_loss"].is_monotonic_decreasing
    assert table["chosen"].tolist() == [False, True, False, False]
    assert _same_weights(trained.state_dict(), snapshots.weights[4])
    assert not _same_weights(trained.state_dict(), snapshots.weights[8])
    tokenizer.save_pretrained(tmp_path)
    saved, _ = load_model_and_tokenizer(tmp_path)
    assert _sft_loss(saved, tokenizer, pairs) == pytest.approx(_sft_loss(trained, tokenizer, pairs))


def test_an_interrupted_selecting_run_resumes_to_the_same_choice(tokenizer, pairs, tmp_path, monkeypatch):
    from llome import checkpoints

    # The first evaluation alone passes, so the choice is made before the interruption and must survive it.
    def gates(*verdicts):
        monkeypatch.setattr(checkpoints, "passes_gates", lambda fractions, verdicts=iter(verdicts): next(verdicts))

    cfg = {**SELECT, "save_steps": 2}
    gates(True, False, False, False)
    straight = train_sft(_model(tokenizer), tokenizer, pairs, cfg, tmp_path / "straight")
    gates(True, False)
    train_sft(_model(tokenizer), tokenizer, pairs, cfg, tmp_path / "resumed", callbacks=[_StopAt(4)])
    assert latest_checkpoint(tmp_path / "resumed").endswith("checkpoint-4")
    gates(False, False)  # steps 6 and 8
    resumed = train_sft(_model(tokenizer, seed=7), tokenizer, pairs, cfg, tmp_path / "resumed")
    expected = pd.read_csv(tmp_path / "straight" / "checkpoints.csv")
    found = pd.read_csv(tmp_path / "resumed" / "checkpoints.csv")
    assert expected["chosen"].tolist() == found["chosen"].tolist() == [True, False, False, False]
    assert found["eval_loss"].tolist() == pytest.approx(expected["eval_loss"].tolist(), abs=1e-5)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    # a finished run reloads its chosen weights, not its last ones
    gates()  # and evaluates nothing
    again = train_sft(_model(tokenizer, seed=7), tokenizer, pairs, cfg, tmp_path / "straight")
    assert _same_weights(again.state_dict(), straight.state_dict())


def test_the_marge_log_keeps_both_terms_and_the_effective_sample_size(tokenizer, pairs, tmp_path):
    model = _model(tokenizer)
    train_marge(model, copy.deepcopy(model), tokenizer, pairs, {**CFG, "num_evals": 2}, tmp_path)
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert {"step", "epoch", "loss", "learning_rate", "grad_norm", "eval_loss", "marge/reward_term",
            "marge/likelihood_term", "marge/ess"} <= set(log.columns)
    steps = log.dropna(subset=["loss"])
    assert steps["step"].tolist() == list(range(1, CFG["max_steps"] + 1))
    # the two terms make up the logged loss (logging_steps=1: one step per entry)
    assert (steps["marge/reward_term"] + steps["marge/likelihood_term"]).tolist() == pytest.approx(
        steps["loss"].tolist(), rel=1e-5)
    assert log["eval_loss"].notna().sum() == 2
    assert not (tmp_path / "checkpoints.csv").exists()  # evaluated, but nothing selected


def test_no_held_out_rows_means_no_evaluation(tokenizer, pairs, tmp_path, caplog):
    train_sft(_model(tokenizer), tokenizer, pairs, {**CFG, "eval_fraction": 0}, tmp_path / "none")
    assert "eval_loss" not in pd.read_csv(tmp_path / "none" / "train_log.csv").columns
    # a single pair leaves nothing to hold out: selection steps aside instead of failing the round
    train_sft(_model(tokenizer), tokenizer, pairs.head(1), SELECT, tmp_path / "one")
    assert "eval_loss" not in pd.read_csv(tmp_path / "one" / "train_log.csv").columns
    assert not (tmp_path / "one" / "checkpoints.csv").exists()
    assert "checkpoint selection skipped" in caplog.text


def test_a_job_passes_its_alphabet_size_and_keeps_its_own_settings():
    from llome.launch import job_train_config

    job = {"model_spec": None, "num_states": 8, "train": {"learning_rate": 1e-3, "select_checkpoint": True}}
    assert job_train_config(job) == {"num_states": 8, "learning_rate": 1e-3, "select_checkpoint": True}
    assert job_train_config({**job, "num_states": None}) == {"learning_rate": 1e-3, "select_checkpoint": True}


def test_the_saved_training_log_holds_no_wall_times_and_they_are_kept_apart():
    from llome.train import log_table, wall_times

    history = [{"loss": 1.0, "step": 1, "epoch": 0.5},
               {"eval_loss": 0.9, "eval_runtime": 0.4, "eval_samples_per_second": 10.0, "step": 1, "epoch": 0.5},
               {"eval_loss": 0.8, "eval_runtime": 0.6, "eval_steps_per_second": 3.0, "step": 2, "epoch": 1.0},
               {"train_runtime": 12.5, "train_samples_per_second": 4.0, "train_loss": 0.95, "step": 2, "epoch": 1.0}]
    table = log_table(history)
    assert list(table.columns[:2]) == ["step", "epoch"]
    assert not [c for c in table.columns if "runtime" in c or "per_second" in c]
    assert {"loss", "eval_loss", "train_loss"} <= set(table.columns)
    assert wall_times(history) == {"train_seconds": 12.5, "eval_seconds": 1.0, "evaluations": 2}
