"""Choosing which candidates to label: the likelihood filter and the seeded uniform sample."""

import numpy as np
import pandas as pd
import pytest

from llome.selection import likelihood_filter, sample_for_labelling


def test_likelihood_filter_keeps_the_top_of_the_distribution():
    candidates = pd.DataFrame({"loglik": np.arange(1.0, 11.0)}, index=list("abcdefghij"))
    kept = likelihood_filter(candidates)
    # numpy's 60th percentile of 1..10 is 6.4.
    assert kept.index.tolist() == list("ghij")
    assert len(likelihood_filter(candidates, quantile=0.0)) == 10
    assert likelihood_filter(candidates, quantile=1.0)["loglik"].tolist() == [10.0]
    ties = pd.DataFrame({"score": [1.0, 1.0, 1.0, 2.0]})
    assert len(likelihood_filter(ties, quantile=0.5, column="score")) == 4


@pytest.mark.parametrize(
    "frame, kwargs, message",
    [
        (pd.DataFrame({"loglik": [1.0, np.nan]}), {}, "finite"),
        (pd.DataFrame({"other": [1.0]}), {}, "'loglik' is not in candidates"),
        (pd.DataFrame({"loglik": [1.0]}), {"quantile": 60}, "quantile"),
        ([1.0, 2.0], {}, "DataFrame"),
    ],
)
def test_likelihood_filter_rejects_bad_input(frame, kwargs, message):
    with pytest.raises(ValueError, match=message):
        likelihood_filter(frame, **kwargs)


def test_sample_for_labelling_is_uniform_seeded_and_bounded():
    candidates = pd.DataFrame({"value": np.arange(100)}, index=np.arange(100) * 3)
    sample = sample_for_labelling(candidates, 10, seed=0)
    assert len(sample) == 10 and sample.index.is_unique and sample.index.is_monotonic_increasing
    assert set(sample.index) <= set(candidates.index)
    assert sample.equals(sample_for_labelling(candidates, 10, seed=0))
    assert not sample.equals(sample_for_labelling(candidates, 10, seed=1))
    assert sample_for_labelling(candidates, 500, seed=0).equals(candidates)
    assert sample_for_labelling(candidates, 0, seed=0).empty
    # Uniform: over many seeds every row is drawn about n / len = 10% of the time.
    counts = np.zeros(100)
    for seed in range(400):
        counts[sample_for_labelling(candidates, 10, seed=seed)["value"].to_numpy()] += 1
    assert counts.min() > 15 and counts.max() < 70  # mean 40, sd about 6
    with pytest.raises(ValueError, match="n must"):
        sample_for_labelling(candidates, -1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        sample_for_labelling(candidates, 1, seed=None)
