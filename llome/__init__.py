"""llome: language models as black-box optimisers of Ehrlich functions (the LLOME paper), reproducibly."""

__version__ = "0.1.0"
