"""run_by_length, the Python backend's length grouping, on a stand-in `run` that records what it was given."""

from __future__ import annotations

import numpy as np

from export.python_backend.ort_model import run_by_length


def _feeds(lengths: list[int], width: int) -> dict[str, np.ndarray]:
    mask = np.array([[1] * n + [0] * (width - n) for n in lengths], dtype=np.int64)
    ids = mask * (np.arange(len(lengths))[:, None] + 1)  # row i's tokens are i + 1: tells rows apart
    return {"input_ids": ids, "attention_mask": mask}


def _recording_run(calls: list):
    def run(feeds):
        calls.append({name: array.copy() for name, array in feeds.items()})
        # One output row per input row: the row's id, its length, and the run's width.
        ids = feeds["input_ids"]
        mask = feeds.get("attention_mask", np.ones_like(ids))
        return [np.stack([ids.max(axis=1), mask.sum(axis=1), np.full(len(ids), ids.shape[1])], axis=1)]
    return run


def test_rows_run_in_length_groups_cut_to_their_longest_and_come_back_in_order():
    lengths = [40, 5, 30, 6, 7, 41, 8, 12]
    calls = []
    (out,) = run_by_length(_recording_run(calls), _feeds(lengths, 48), group_rows=3)
    assert len(calls) == 3  # 8 rows in groups of about 3
    assert [call["input_ids"].shape[1] for call in calls] == [7, 30, 41]  # 5 6 7 | 8 12 30 | 40 41, each cut to its longest
    assert out[:, 0].tolist() == list(range(1, 9))  # rows back in their original order
    assert out[:, 1].tolist() == lengths  # no real token was cut


def test_without_grouping_or_mask_the_batch_runs_as_it_came():
    calls = []
    feeds = _feeds([3, 9], 12)
    run_by_length(_recording_run(calls), feeds, group_rows=0)
    run_by_length(_recording_run(calls), {"input_ids": feeds["input_ids"]}, group_rows=4)
    assert [call["input_ids"].shape for call in calls] == [(2, 12), (2, 12)]


def test_left_padded_rows_keep_every_column():
    feeds = _feeds([2, 3], 5)
    feeds = {name: array[:, ::-1].copy() for name, array in feeds.items()}  # padding on the left
    calls = []
    (out,) = run_by_length(_recording_run(calls), feeds, group_rows=8)
    assert calls[0]["input_ids"].shape == (2, 5)
    assert out[:, 1].tolist() == [2, 3]
