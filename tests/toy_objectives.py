"""Objectives that params.yaml's `function` can name by import path in tests (`tests.toy_objectives:<factory>`)."""

import numpy as np

from llome.objective import CountingUp


class CallCounting(CountingUp):
    """CountingUp that counts every sequence it scores, to check that each call is accounted for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def __call__(self, sequences):
        self.calls += len(np.asarray(sequences))
        return super().__call__(sequences)


def counting_up_v8():
    """L=8, v=8 (the shared test model's shape): the best is 0..7, f = 7."""
    return CallCounting(dim=8, num_states=8)


class NoOptimum:
    """Fraction of positions equal to their index, with no declared optimum."""

    dim, num_states = 8, 8

    def __call__(self, sequences):
        x = np.asarray(sequences)
        return (x == np.arange(self.dim)).mean(axis=1) * 5.0

    def initial_solution(self):
        return np.zeros(self.dim, dtype=np.int64)


def no_optimum():
    return NoOptimum()


def not_an_objective():
    return object()
