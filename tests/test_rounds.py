import numpy as np
import pandas as pd

from llome.io import write_json, write_table
from llome.rounds import best_so_far_trace, round_dir, round_seed, round_timing, run_trace


def _labels(scores):
    return pd.DataFrame({"sequence": [(i,) for i in range(len(scores))], "score": scores,
                         "oracle_calls_round": np.arange(1, len(scores) + 1)})


def test_trace_offsets_each_round_by_the_calls_paid_before_it():
    seed_table = pd.DataFrame({"oracle_calls": [1, 4], "score": [0.25, 0.5]})
    # The GA paid 6 calls (its last two repeats); round 1 paid 3 for 2 first sightings, round 2 paid 2.
    trace = best_so_far_trace(seed_table, 6, [(_labels([0.1, 0.75]), 3), (_labels([-np.inf, 1.0]), 2)])
    assert trace["oracle_calls"].tolist() == [1, 4, 6, 7, 8, 10, 11]
    assert trace["best_value"].tolist() == [0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 1.0]
    assert trace["regret"].tolist() == [0.75, 0.5, 0.5, 0.5, 0.25, 0.25, 0.0]
    assert trace["round"].tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_trace_without_a_known_optimum_has_no_regret():
    trace = best_so_far_trace(pd.DataFrame({"oracle_calls": [2], "score": [3.0]}), 2, [(_labels([5.0]), 1)],
                              optimum=None)
    assert trace["best_value"].tolist() == [3.0, 5.0] and trace["regret"].isna().all()


def test_run_trace_reads_the_finished_rounds_of_a_run(tmp_path):
    seed_table = pd.DataFrame({"oracle_calls": [1], "score": [0.0]})
    for index, (scores, paid) in enumerate([([0.5], 1), ([0.25, 1.0], 2)], start=1):
        write_table(round_dir(tmp_path, index) / "labelled.parquet", _labels(scores))
        write_json(round_dir(tmp_path, index) / "metrics.json", {"oracle_calls": paid})
    from_disk = run_trace(seed_table, 1, tmp_path, rounds=2, optimum=1.0)
    in_memory = best_so_far_trace(seed_table, 1, [(_labels([0.5]), 1), (_labels([0.25, 1.0]), 2)])
    pd.testing.assert_frame_equal(from_disk, in_memory)
    assert from_disk["oracle_calls"].tolist() == [1, 2, 3, 4]


def test_round_folders_streams_and_timings():
    assert round_dir("run", 7).as_posix() == "run/round_07"
    streams = {round_seed(seed, index) for seed in range(3) for index in range(1, 4)}
    assert len(streams) == 9  # seed + index would repeat: seed 0 round 2 is seed 1 round 1
    assert round_seed(np.int64(1), 2) == round_seed(1, 2)


def test_a_round_without_its_timing_file_has_no_timings(tmp_path):
    assert round_timing(tmp_path, 1) == {}
    write_json(round_dir(tmp_path, 1) / "timing.json", {"training": 2.5})
    assert round_timing(tmp_path, 1) == {"training": 2.5}
