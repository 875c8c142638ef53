import json

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from llome.text import (
    OUT_OF_RANGE,
    STATUSES,
    UNPARSABLE,
    VALID,
    WRONG_LENGTH,
    Parsed,
    format_completion,
    format_prompt,
    parse_completion,
)


def test_format_matches_the_paper():
    assert format_prompt([3, 0, 12]) == "<inc> [3, 0, 12]\n"
    assert format_completion((7, 31)) == "[7, 31]"
    assert format_completion(np.array([1, 2], dtype=np.int64)) == "[1, 2]"


@pytest.mark.parametrize("bad", [[], [1.0, 2], [True, 1], ["1"], [None]])
def test_format_rejects_non_integer_sequences(bad):
    with pytest.raises(ValueError):
        format_completion(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2, 3]", Parsed((1, 2, 3), VALID)),
        ("[1,2,3]", Parsed((1, 2, 3), VALID)),  # any JSON spacing
        (" [ 1 ,2 , 3 ]", Parsed((1, 2, 3), VALID)),
        ("[1, 2, 3]<eos>[9, 9, 9]junk", Parsed((1, 2, 3), VALID)),  # cut after the first "]"
        ("[1, 2, 3", Parsed(None, UNPARSABLE)),  # never closed
        ("<inc> [1, 2, 3]", Parsed(None, UNPARSABLE)),
        ("[1, [2], 3]", Parsed(None, UNPARSABLE)),  # cut to "[1, [2]"
        ("[01, 2, 3]", Parsed(None, UNPARSABLE)),  # leading zeros are not JSON
        ("[1.0, 2, 3]", Parsed(None, UNPARSABLE)),
        ("[true, 2, 3]", Parsed(None, UNPARSABLE)),
        ("[1, 2, 3,]", Parsed(None, UNPARSABLE)),
        ("[\u0661, 2, 3]", Parsed(None, UNPARSABLE)),  # a non-ASCII digit
        ("[]", Parsed(None, WRONG_LENGTH)),
        ("[1, 2]", Parsed(None, WRONG_LENGTH)),
        ("[1, 2, 3, 4]", Parsed(None, WRONG_LENGTH)),
        ("[1, 2, 99, 4]", Parsed(None, WRONG_LENGTH)),  # length is checked before range
        ("[1, 2, 8]", Parsed(None, OUT_OF_RANGE)),
        ("[1, -2, 3]", Parsed(None, OUT_OF_RANGE)),
        ("[1, -0, 3]", Parsed(None, OUT_OF_RANGE)),
        ("[1, 2, " + "9" * 5000 + "]", Parsed(None, OUT_OF_RANGE)),  # beyond int()'s digit limit, no crash
    ],
)
def test_parse_completion_cases(text, expected):
    assert parse_completion(text, dim=3, num_states=8) == expected


@pytest.mark.parametrize(("dim", "num_states"), [(0, 8), (3, 0), (3.0, 8), (True, 8)])
def test_parse_rejects_bad_dimensions(dim, num_states):
    with pytest.raises(ValueError):
        parse_completion("[1]", dim=dim, num_states=num_states)


@st.composite
def sequences(draw):
    num_states = draw(st.integers(1, 300))
    dim = draw(st.integers(1, 40))
    sequence = draw(st.lists(st.integers(0, num_states - 1), min_size=dim, max_size=dim))
    return sequence, num_states


@given(sequences(), st.text(max_size=20))
def test_format_then_parse_is_identity(case, suffix):
    sequence, num_states = case
    parsed = parse_completion(format_completion(sequence) + suffix, dim=len(sequence), num_states=num_states)
    assert parsed == Parsed(tuple(sequence), VALID)


@given(st.text(max_size=200), st.integers(1, 40), st.integers(1, 300))
def test_any_text_gives_a_consistent_parsed(text, dim, num_states):
    parsed = parse_completion(text, dim=dim, num_states=num_states)
    assert parsed.status in STATUSES
    assert (parsed.sequence is not None) == (parsed.status == VALID)
    if parsed.sequence is not None:
        assert len(parsed.sequence) == dim
        assert all(0 <= value < num_states for value in parsed.sequence)


def _json_reference(text: str, dim: int, num_states: int) -> str:
    """The status by json.loads, an independent reading of the same rules."""
    end = text.find("]")
    if end < 0:
        return UNPARSABLE
    try:
        values = json.loads(text[: end + 1])
    except ValueError:
        return UNPARSABLE
    if not isinstance(values, list) or not all(type(value) is int for value in values):
        return UNPARSABLE
    if len(values) != dim:
        return WRONG_LENGTH
    return VALID if all(0 <= value < num_states for value in values) else OUT_OF_RANGE


@settings(max_examples=400)
@given(st.text(alphabet="[]0123456789, -.\n\te", max_size=40), st.integers(1, 4), st.integers(1, 30))
def test_parse_agrees_with_json(text, dim, num_states):
    assume("-0" not in text)  # JSON reads "-0" as 0; the format treats any minus sign as out of range
    assert parse_completion(text, dim, num_states).status == _json_reference(text, dim, num_states)
