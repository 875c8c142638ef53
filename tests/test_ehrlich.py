"""Ehrlich functions against the reference fixtures, a naive re-implementation, brute force and hand counts."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from llome.ehrlich import PAPER_INSTANCE_NAMES, PAPER_SEED, Ehrlich

FIXTURE_FILE = FIXTURES / "holo_ehrlich_reference.json"
BATCHES = ("uniform_random_sequences", "dmp_sequences", "near_optimal_sequences")


def load_reference_instances():
    if not FIXTURE_FILE.is_file():
        raise FileNotFoundError(f"reference fixture {FIXTURE_FILE} is missing; it is required, not optional")
    data = json.loads(FIXTURE_FILE.read_text())
    return data["instances"] + data["extra_instances"]


REFERENCE = load_reference_instances()


def reference_id(reference: dict) -> str:
    p = reference["params"]
    return "v{num_states}-L{dim}-c{num_motifs}-k{motif_length}-q{quantization}-seed{random_seed}".format(**p)


def from_reference_params(params: dict) -> Ehrlich:
    assert params["epistasis_factor"] == 0.0 and params["noise_std"] == 0.0 and not params["negate"]
    return Ehrlich(
        num_states=params["num_states"],
        dim=params["dim"],
        num_motifs=params["num_motifs"],
        motif_length=params["motif_length"],
        quantization=params["quantization"],
        seed=params["random_seed"],
    )


def naive_values(f: Ehrlich, X: np.ndarray) -> np.ndarray:
    """docs/method.md §2 written as loops, in float32 like the reference: an independent check."""
    step = math.ceil(f.motif_length / f.quantization)
    values = []
    for x in X.tolist():
        if any(not f.allowed[a, b] for a, b in zip(x[:-1], x[1:])):
            values.append(-np.inf)
            continue
        value = np.float32(1)
        for motif, spacing in zip(f.motifs.tolist(), f.spacings.tolist()):
            offsets = [0] + list(itertools.accumulate(spacing))
            best = max(
                sum(x[start + o] == m for o, m in zip(offsets, motif))
                for start in range(f.dim - offsets[-1])
            )
            value = value * (np.float32(best // step) / np.float32(f.motif_length // step))
        values.append(float(value))
    return np.array(values)


# -- the reference fixtures ---------------------------------------------------------------------


@pytest.mark.parametrize("reference", REFERENCE, ids=reference_id)
def test_construction_matches_reference(reference):
    f = from_reference_params(reference["params"])
    assert f.motifs.tolist() == reference["motifs"]
    assert f.spacings.tolist() == reference["spacings"]
    assert f.allowed.astype(int).tolist() == reference["allowed_transitions"]
    np.testing.assert_allclose(f.transition_matrix, reference["transition_matrix"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(f.stationary_distribution, reference["stationary_dist"], rtol=1e-5, atol=1e-8)
    assert f.initial_solution().tolist() == reference["initial_solution"]
    assert f.initial_solution(3).tolist() == reference["initial_solution_n3"]
    assert f.optimal_solution().tolist() == reference["optimal_solution"]
    assert f(f.initial_solution())[0] == reference["initial_solution_value"]
    assert f(f.optimal_solution())[0] == reference["optimal_solution_value"] == f.optimal_value


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("reference", REFERENCE, ids=reference_id)
def test_values_match_reference_bit_for_bit(reference, batch):
    f = from_reference_params(reference["params"])
    X = np.array(reference[batch]["X"])
    expected = np.array([-np.inf if value is None else value for value in reference[batch]["values"]])
    values = f(X)
    assert values.dtype == np.float64
    assert np.array_equal(values, expected)  # exact, including -inf
    assert np.array_equal(f.is_feasible(X), np.array(reference[batch]["feasible"]))
    assert np.array_equal(f.motif_presence(X), np.array(reference[batch]["motif_presence"]))


# -- evaluation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params", [(32, 32, 4, 4, 4, 0), (9, 40, 4, 3, 3, 1), (16, 60, 5, 6, 4, 2), (7, 20, 3, 4, 2, 3)]
)
def test_values_match_naive_formula_across_chunks(params):
    f = Ehrlich(*params)
    rng = np.random.default_rng(0)
    # More rows than one evaluation chunk, mixing random, DMP and near-optimal sequences.
    near = np.tile(f.optimal_solution(), (3000, 1))
    flips = rng.random(near.shape) < rng.random((3000, 1)) * 0.3
    near[flips] = rng.integers(0, f.num_states, int(flips.sum()))
    X = np.concatenate([near, f.initial_solution(1500), rng.integers(0, f.num_states, (1500, f.dim))])
    rows = rng.permutation(len(X))[:1200]
    values = f(X)
    assert np.array_equal(values[rows], naive_values(f, X[rows]))
    assert len(set(values.tolist())) > 3  # the batch exercises several quality levels


def test_value_is_product_of_presence_and_within_bounds():
    f = Ehrlich(32, 32, 4, 4, 2, seed=5)
    rng = np.random.default_rng(1)
    X = np.concatenate([f.initial_solution(500), rng.integers(0, 32, (500, 32))])
    values, presence, feasible = f(X), f.motif_presence(X), f.is_feasible(X)
    assert np.array_equal(np.isfinite(values), feasible)
    assert ((values[feasible] >= 0) & (values[feasible] <= 1)).all()
    assert np.array_equal(values[feasible], presence[feasible].prod(axis=1))
    assert set(np.unique(presence)) <= {0.0, 0.5, 1.0}  # q = 2 levels
    assert f.is_feasible(f.initial_solution(50)).all()  # DMP samples never use a banned transition


def test_input_forms_agree():
    f = Ehrlich.from_name(PAPER_INSTANCE_NAMES[0])
    X = f.initial_solution(5)
    expected = f(X)
    assert np.array_equal(f(X.astype(np.uint8)), expected)
    assert np.array_equal(f(torch.from_numpy(X)), expected)
    assert np.array_equal(f(X.tolist()), expected)
    single = f(X[2])
    assert single.shape == (1,) and single[0] == expected[2]
    assert f(np.empty((0, f.dim), dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((2, 31), dtype=int), "length dim=32"),
        (np.zeros((2, 2, 32), dtype=int), "shape"),
        (np.full((2, 32), 32), r"X\[0, 0\] = 32 is outside"),
        (np.concatenate([np.zeros((1, 32), int), np.r_[[0] * 5, -1, [0] * 26][None]]), r"X\[1, 5\] = -1"),
        (np.zeros((2, 32), dtype=np.float64), "integer"),
        ([[0] * 32, [0] * 31], "rectangular|length"),
        (np.zeros((2, 32), dtype=bool), "integer"),
    ],
)
def test_bad_sequences_are_rejected(bad, message):
    f = Ehrlich.from_name(PAPER_INSTANCE_NAMES[0])
    for method in (f, f.is_feasible, f.motif_presence):
        with pytest.raises(ValueError, match=message):
            method(bad)


# -- construction, names, serialisation ---------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_states=32, dim=15, num_motifs=4, motif_length=4, quantization=4), "exceeds dim"),
        (dict(num_states=32, dim=32, num_motifs=4, motif_length=4, quantization=0), "quantization"),
        (dict(num_states=32, dim=32, num_motifs=4, motif_length=4, quantization=5), "quantization"),
        (dict(num_states=32, dim=64, num_motifs=2, motif_length=8, quantization=3), "unreachable"),
        (dict(num_states=1, dim=32, num_motifs=4, motif_length=4, quantization=4), "num_states"),
        (dict(num_states=32, dim=32, num_motifs=4, motif_length=1, quantization=1), "motif_length"),
        (dict(num_states=32, dim=32, num_motifs=0, motif_length=4, quantization=4), "num_motifs"),
        (dict(num_states=32.0, dim=32, num_motifs=4, motif_length=4, quantization=4), "num_states must be an integer"),
        (dict(num_states=32, dim="32", num_motifs=4, motif_length=4, quantization=4), "dim must be an integer"),
        (dict(num_states=32, dim=32, num_motifs=True, motif_length=4, quantization=4), "num_motifs must be an integer"),
        (dict(num_states=32, dim=32, num_motifs=4, motif_length=4, quantization=4, seed=-1), "seed"),
    ],
)
def test_bad_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Ehrlich(**kwargs)


def test_paper_instances_by_name():
    # Motifs and spacings of the main instance as pytorch-holo 0.0.5 draws them for seed 50494.
    f = Ehrlich.from_name("ehr_v-32_l-032_m-4_c-4_q-4")
    assert f.seed == PAPER_SEED
    assert f.motifs.tolist() == [[23, 21, 10, 27], [14, 9, 31, 9], [31, 29, 6, 21], [10, 10, 8, 11]]
    assert f.spacings.tolist() == [[2, 1, 3], [1, 2, 2], [2, 2, 1], [2, 3, 1]]
    for name in PAPER_INSTANCE_NAMES:
        g = Ehrlich.from_name(name)
        assert g.name == name
        assert g(g.optimal_solution())[0] == 1.0
    last = Ehrlich.from_name(PAPER_INSTANCE_NAMES[-1])
    assert (last.num_states, last.dim, last.num_motifs, last.motif_length, last.quantization) == (8, 128, 8, 8, 8)
    other_seed = Ehrlich.from_name(PAPER_INSTANCE_NAMES[0], seed=1)
    assert other_seed.seed == 1 and other_seed.motifs.tolist() != f.motifs.tolist()


@pytest.mark.parametrize(
    "name, message",
    [
        ("ehr_v-32_l-32_m-4_c-4_q-4", "did you mean 'ehr_v-32_l-032_m-4_c-4_q-4'"),
        ("ehr_v-32_l-032_m-4_c-4", "malformed"),
        ("ehrlich", "malformed"),
        ("ehr_v-32_l-032_m-4_c-9_q-4", "exceeds dim"),
        ("ehr_v-32_l-064_m-8_c-2_q-3", "unreachable"),
    ],
)
def test_bad_names_are_rejected(name, message):
    with pytest.raises(ValueError, match=message):
        Ehrlich.from_name(name)


def test_json_round_trip_is_exact():
    f = Ehrlich(32, 64, 2, 6, 4, seed=0)
    g = Ehrlich.from_dict(json.loads(json.dumps(f.to_dict())))
    assert g == f and g.name == f.name
    assert np.array_equal(g.transition_matrix, f.transition_matrix)  # same float32 bits
    assert np.array_equal(g.stationary_distribution, f.stationary_distribution)
    assert np.array_equal(g.initial_solution(4), f.initial_solution(4))
    X = np.concatenate([f.initial_solution(100), np.tile(f.optimal_solution(), (3, 1))])
    assert np.array_equal(g(X), f(X))
    assert g != Ehrlich(32, 64, 2, 6, 4, seed=1)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(name="ehr_v-32_l-064_m-6_c-2_q-2"), "does not match"),
        (lambda d: d.update(motifs=d["motifs"][:1]), "shape"),
        (lambda d: d.update(spacings=[[0] * 5, [1] * 5]), "spacings"),
        (lambda d: d.pop("transition_matrix"), "missing"),
        (lambda d: d.update(format="other/1"), "format"),
        (lambda d: d.update(quantization=7, name="ehr_v-32_l-064_m-6_c-2_q-7"), "quantization must be in"),
    ],
)
def test_from_dict_rejects_inconsistent_data(edit, message):
    data = Ehrlich(32, 64, 2, 6, 4, seed=0).to_dict()
    edit(data)
    with pytest.raises(ValueError, match=message):
        Ehrlich.from_dict(data)


@settings(max_examples=25, deadline=None)
@given(
    v=st.integers(2, 12),
    c=st.integers(1, 4),
    k=st.integers(2, 5),
    slack=st.integers(0, 20),
    seed=st.integers(0, 2**32),
)
def test_random_instances_have_a_reachable_optimum(v, c, k, slack, seed):
    try:
        f = Ehrlich(v, c * k + slack, c, k, k, seed=seed)
    except ValueError as error:  # tiny state spaces can draw a non-ergodic chain
        assert "ergodic" in str(error)
        return
    optimum = f.optimal_solution()
    assert f(optimum)[0] == 1.0 and f.is_feasible(optimum)[0]
    assert (1 + f.spacings.sum(axis=1) <= f.dim // c).all()  # each spaced motif fits in L/c positions
    start = f.initial_solution()
    assert f.is_feasible(start)[0]  # a sample of the chain: every transition is allowed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)  # whatever the global RNG holds, the draw restarts from the instance's seed
        assert np.array_equal(f.initial_solution(), start)
