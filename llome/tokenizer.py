"""A word-level tokenizer over the text format's symbols, for models trained from scratch.

Every state 0..v-1 is one token, and so is each symbol of the format ("<inc>", "[", "]", ", ", "\\n", plus "," and
" " alone so that other spacings still encode). A prompt of length L is 2L+4 tokens, a completion 2L+1.
Anything else maps to "<unk>", so garbage text still encodes (lossily) instead of failing.

Nothing downstream may rely on these token ids: a pretrained checkpoint brings its own tokenizer (e.g. GPT-NeoX
BPE), and the rest of the code goes through the tokenizer's encode/decode only.
"""

from __future__ import annotations

from numbers import Integral

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from llome.text import IMPROVE_TAG, SEPARATOR

PAD_TOKEN = "<pad>"
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"
FORMAT_SYMBOLS = (IMPROVE_TAG, "[", "]", SEPARATOR, ",", " ", "\n")

# Split text into the pieces the vocabulary knows: the tag, the separator, whole numbers, then single characters.
# Alternation is leftmost-first, so ", " wins over "," and "<inc>" over "<".
_PIECES = Regex(r"<inc>|, |[0-9]+|[\s\S]")


def build_tokenizer(num_states: int) -> PreTrainedTokenizerFast:
    """A tokenizer for sequences over `num_states` states; saves and loads with save_pretrained / AutoTokenizer."""
    if isinstance(num_states, bool) or not isinstance(num_states, Integral) or num_states < 1:
        raise ValueError(f"num_states must be a positive integer, got {num_states!r}")

    tokens = [PAD_TOKEN, EOS_TOKEN, UNK_TOKEN, *FORMAT_SYMBOLS, *(str(state) for state in range(int(num_states)))]
    backend = Tokenizer(models.WordLevel(vocab={token: i for i, token in enumerate(tokens)}, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(_PIECES, behavior="isolated")
    # Tokens carry their own spaces, so decoding concatenates them as they are.
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        # The default clean-up rewrites spaces around punctuation, which would break the round trip.
        clean_up_tokenization_spaces=False,
    )


def example_lengths(tokenizer: PreTrainedTokenizerBase, prompts: list[str], completions: list[str]) -> list[int]:
    """Tokens each prompt + completion example takes in training: the prompt as the tokenizer encodes it (with its
    special tokens), the completion without, and the eos the trainers append."""
    prompt_ids = tokenizer(prompts)["input_ids"]
    completion_ids = tokenizer(completions, add_special_tokens=False)["input_ids"]
    return [len(p) + len(c) + 1 for p, c in zip(prompt_ids, completion_ids, strict=True)]
