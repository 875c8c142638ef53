import pytest
import torch
from transformers import TrainerControl, TrainerState, TrainingArguments

from llome.checkpoints import (
    CheckpointSelector,
    EvenEvaluations,
    Evaluation,
    gate_fractions,
    passes_gates,
)
from llome.models import build_model
from llome.tokenizer import build_tokenizer

DIM, NUM_STATES = 3, 4
INPUTS = [(1, 2, 3), (0, 0, 0), (3, 3, 3)]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(NUM_STATES)


def test_gate_fractions_on_hand_made_completions():
    texts = ["[1, 2, 3]", "[1, 2, 0]<eos>junk", "[1, 2]", "[1, 2, 9]", "hello", "[0, 0, 0]", "[3, 3, -1]", "[3]"]
    inputs = [(1, 2, 3), (1, 2, 3), (1, 2, 3), (1, 2, 3), (1, 2, 3), (0, 0, 0), (3, 3, 3), (3, 3, 3)]
    # unparsable: "hello" -> 7/8 parse; wrong length: "[1, 2]", "[3]" -> 5/8; out of range: 9 and -1 -> 3/8 valid;
    # copies of their input: "[1, 2, 3]" and "[0, 0, 0]" -> 2/8.
    assert gate_fractions(texts, inputs, DIM, NUM_STATES) == {
        "parsable": 7 / 8, "right_length": 5 / 8, "in_range": 3 / 8, "copies": 2 / 8,
    }
    with pytest.raises(ValueError, match="one input per completion"):
        gate_fractions(texts, inputs[:-1], DIM, NUM_STATES)


@pytest.mark.parametrize(
    ("in_range", "copies", "passed"),
    [(0.9, 0.1, True), (1.0, 0.0, True), (0.89, 0.0, False), (1.0, 0.11, False)],
)
def test_gates_need_90_percent_valid_and_at_most_10_percent_copies(in_range, copies, passed):
    assert passes_gates({"parsable": 1.0, "right_length": 1.0, "in_range": in_range, "copies": copies}) is passed


@pytest.mark.parametrize(
    ("max_steps", "num_evals", "expected"),
    [
        (25, 10, [3, 5, 8, 10, 13, 15, 18, 20, 23, 25]),
        (100, 10, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
        (4, 10, [1, 2, 3, 4]),  # a short run is evaluated at every step
        (7, 1, [7]),
    ],
)
def test_evaluations_are_spread_evenly_and_end_at_the_last_step(max_steps, num_evals, expected):
    schedule = EvenEvaluations(num_evals)
    assert schedule.steps(max_steps) == expected
    asked = []
    for step in range(1, max_steps + 1):
        control = schedule.on_step_end(None, TrainerState(global_step=step, max_steps=max_steps), TrainerControl())
        if control.should_evaluate:
            asked.append(step)
    assert asked == expected
    with pytest.raises(ValueError, match="num_evals"):
        EvenEvaluations(0)


def _evaluation(step, loss, passed):
    fraction = 1.0 if passed else 0.5
    return Evaluation(step=step, epoch=step / 10, eval_loss=loss, num_prompts=3, parsable=1.0, right_length=1.0,
                      in_range=fraction, copies=0.0, passed=passed)


def _stamped_model(tokenizer):
    model = build_model({"num_hidden_layers": 1, "hidden_size": 8, "num_attention_heads": 2,
                         "intermediate_size": 8, "max_position_embeddings": 32, "seed": 0}, tokenizer)
    return model, next(model.parameters())


def _feed(selector, model, stamp, evaluations):
    """Record each evaluation with the model's weights marked by its step, as training would have moved them."""
    for evaluation in evaluations:
        with torch.no_grad():
            stamp.fill_(evaluation.step)
        selector.record(evaluation, model)


def test_the_chosen_checkpoint_is_the_lowest_eval_loss_one_that_passes(tokenizer):
    selector = CheckpointSelector(INPUTS, DIM, NUM_STATES, tokenizer)
    model, stamp = _stamped_model(tokenizer)
    # step 2 has the lowest loss but fails the gates; of those that pass, step 6 is lowest
    _feed(selector, model, stamp, [_evaluation(2, 0.5, False), _evaluation(4, 0.8, True),
                                   _evaluation(6, 0.6, True), _evaluation(8, 0.7, True), _evaluation(10, 0.4, False)])
    assert selector.chosen().step == 6
    assert selector.apply(model).step == 6
    assert torch.all(stamp == 6)  # the weights as they were at step 6, not the last ones
    table = selector.table()
    assert table["step"].tolist() == [2, 4, 6, 8, 10]
    assert table["chosen"].tolist() == [False, False, True, False, False]
    assert table["passed"].tolist() == [False, True, True, True, False]


def test_when_no_checkpoint_passes_the_lowest_eval_loss_is_kept(tokenizer):
    selector = CheckpointSelector(INPUTS, DIM, NUM_STATES, tokenizer)
    model, stamp = _stamped_model(tokenizer)
    _feed(selector, model, stamp, [_evaluation(1, 0.9, False), _evaluation(2, 0.3, False), _evaluation(3, 0.6, False)])
    assert selector.apply(model).step == 2 and torch.all(stamp == 2)
    # a tie goes to the earlier checkpoint
    tied = CheckpointSelector(INPUTS, DIM, NUM_STATES, tokenizer)
    _feed(tied, model, stamp, [_evaluation(1, 0.5, True), _evaluation(2, 0.5, True)])
    assert tied.chosen().step == 1


def test_a_saved_selection_is_restored(tokenizer, tmp_path):
    selector = CheckpointSelector(INPUTS, DIM, NUM_STATES, tokenizer)
    model, stamp = _stamped_model(tokenizer)
    _feed(selector, model, stamp, [_evaluation(1, 0.7, True), _evaluation(2, 0.6, True), _evaluation(3, 0.9, True)])
    selector.save(tmp_path)
    restored = CheckpointSelector(INPUTS, DIM, NUM_STATES, tokenizer)
    restored.restore(tmp_path)
    assert restored.evaluations == selector.evaluations and restored.best_step == 2
    other, other_stamp = _stamped_model(tokenizer)
    restored.apply(other)
    assert torch.all(other_stamp == 2)
    empty = CheckpointSelector(INPUTS, DIM, NUM_STATES, tokenizer)
    empty.restore(tmp_path / "nothing-here")
    assert empty.evaluations == [] and empty.apply(other) is None


def test_on_evaluate_decodes_the_held_out_prompts(tokenizer, tmp_path):
    """An untrained model writes no valid list: every evaluation fails, and its eval loss is what was reported."""
    selector = CheckpointSelector(INPUTS * 2, DIM, NUM_STATES, tokenizer, max_prompts=2)
    assert selector.inputs == INPUTS[:2]  # distinct inputs, capped
    model, _ = _stamped_model(tokenizer)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    state = TrainerState(global_step=5, epoch=0.5)
    selector.on_evaluate(args, state, TrainerControl(), metrics={"eval_loss": 1.25}, model=model.train())
    assert model.training  # left as it was found
    [evaluation] = selector.evaluations
    assert (evaluation.step, evaluation.eval_loss, evaluation.num_prompts) == (5, 1.25, 2)
    assert evaluation.in_range == 0.0 and not evaluation.passed


def test_the_selector_refuses_bad_settings(tokenizer):
    with pytest.raises(ValueError, match="num_states"):
        CheckpointSelector(INPUTS, DIM, 0, tokenizer)
    with pytest.raises(ValueError, match="dim=4"):
        CheckpointSelector(INPUTS, 4, NUM_STATES, tokenizer)
    with pytest.raises(ValueError, match="at least one held-out input"):
        CheckpointSelector([], DIM, NUM_STATES, tokenizer)
