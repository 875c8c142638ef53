"""The text format the language model reads and writes (docs/method.md §4).

A training example is a prompt and a completion:

    prompt      "<inc> [x1, x2, ..., xL]\\n"     ("<inc>" asks the model to improve x)
    completion  "[y1, y2, ..., yL]"

Both sequences are JSON integer lists with ", " separators. A generated completion is cut after its first "]"
and then classified by `parse_completion`. Whether a parsed sequence is feasible is the oracle's business, not
this module's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

IMPROVE_TAG = "<inc>"
SEPARATOR = ", "
COMPLETION_END = "]"  # a generation is cut right after the first one; usable as a stop string

VALID = "valid"
UNPARSABLE = "unparsable"
WRONG_LENGTH = "wrong_length"
OUT_OF_RANGE = "out_of_range"
STATUSES = (VALID, UNPARSABLE, WRONG_LENGTH, OUT_OF_RANGE)

# JSON grammar for a flat list of integers. JSON whitespace is exactly these four characters, and JSON integers
# have no leading zeros and no "+" sign. [0-9] rather than \d, which would also accept non-ASCII digits.
_JSON_WS = "[ \t\n\r]*"
_JSON_INT = "-?(?:0|[1-9][0-9]*)"
_INT_LIST = re.compile(
    rf"{_JSON_WS}\[{_JSON_WS}(?:{_JSON_INT}(?:{_JSON_WS},{_JSON_WS}{_JSON_INT})*{_JSON_WS})?\]{_JSON_WS}"
)
_INT = re.compile(_JSON_INT)


@dataclass(frozen=True)
class Parsed:
    """A parsed completion: the sequence when `status == VALID`, else None."""

    sequence: tuple[int, ...] | None
    status: str


def format_sequence(sequence: Sequence[int]) -> str:
    """`[s1, s2, ...]`: a non-empty integer sequence as a JSON list."""
    values = list(sequence)
    if not values:
        raise ValueError("sequence is empty: the text format needs at least one state")
    for position, value in enumerate(values):
        # bool is an Integral but never a state; numpy integers are Integral and welcome.
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise ValueError(f"sequence[{position}] = {value!r} is not an integer")
    return "[" + SEPARATOR.join(str(int(value)) for value in values) + "]"


def format_prompt(x: Sequence[int]) -> str:
    """The prompt asking the model to improve `x`."""
    return f"{IMPROVE_TAG} {format_sequence(x)}\n"


def format_completion(y: Sequence[int]) -> str:
    """The completion proposing `y` (no end-of-sequence token: trainers append the tokenizer's own)."""
    return format_sequence(y)


def parse_completion(text: str, dim: int, num_states: int) -> Parsed:
    """Classify a generated completion. Never raises on the text, whatever it holds.

    The text is cut after its first "]". It is VALID when that prefix is a JSON list of exactly `dim` integers,
    all in [0, num_states). Otherwise the status says what went wrong first: UNPARSABLE (not a flat JSON integer
    list), WRONG_LENGTH, then OUT_OF_RANGE.
    """
    _check_positive_int("dim", dim)
    _check_positive_int("num_states", num_states)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")

    end = text.find(COMPLETION_END)
    if end < 0 or not _INT_LIST.fullmatch(text, 0, end + 1):
        return Parsed(None, UNPARSABLE)
    literals = _INT.findall(text, 0, end + 1)
    if len(literals) != dim:
        return Parsed(None, WRONG_LENGTH)
    # Compare digit counts before calling int(): a generation can hold thousands of digits, which int() refuses.
    # Any minus sign is out of range, "-0" included: no state is written that way.
    max_digits = len(str(num_states - 1))
    if any(literal.startswith("-") or len(literal) > max_digits for literal in literals):
        return Parsed(None, OUT_OF_RANGE)
    sequence = tuple(int(literal) for literal in literals)
    if any(value >= num_states for value in sequence):
        return Parsed(None, OUT_OF_RANGE)
    return Parsed(sequence, VALID)


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
