"""Window schedule and overlap averaging (Make-Your-Anchor+ Algorithm 1)."""

import itertools

import pytest
import torch

from anchorgen.errors import InputError
from anchorgen.pipelines.windows import (
    accumulate_windows,
    batch_windows,
    normalize_windows,
    rank_batches,
    resolve_windows,
    window_counts,
    window_schedule,
    window_sums,
)

LENGTHS = [1, 15, 16, 17, 40, 301]


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize(("ws", "os"), [(16, 4), (8, 2), (32, 8), (16, 0), (1, 0)])
def test_schedule_covers_every_frame_with_full_windows(length, ws, os):
    windows = window_schedule(length, ws, os)
    covered = torch.zeros(length, dtype=torch.bool)
    for start, stop in windows:
        assert 0 <= start < stop <= length
        covered[start:stop] = True
    assert bool(covered.all())
    assert windows[0][0] == 0
    assert windows[-1][1] == length, "last window must end exactly at the last frame"
    sizes = {stop - start for start, stop in windows}
    assert sizes == {min(ws, length)}, "every window has the same size (no degenerate tail)"
    starts = [start for start, _ in windows]
    assert starts == sorted(set(starts))
    stride = ws - os
    for (a, _), (b, _) in itertools.pairwise(windows[:-1]):
        assert b - a == stride


def test_schedule_examples():
    assert window_schedule(1) == [(0, 1)]
    assert window_schedule(15) == [(0, 15)]
    assert window_schedule(16) == [(0, 16)]
    assert window_schedule(17) == [(0, 16), (1, 17)]
    assert window_schedule(40) == [(0, 16), (12, 28), (24, 40)]
    windows = window_schedule(301)
    assert len(windows) == 25
    assert windows[-2:] == [(276, 292), (285, 301)]
    assert window_schedule(5, 1, 0) == [(i, i + 1) for i in range(5)]


def test_schedule_bad_arguments():
    with pytest.raises(InputError, match="empty"):
        window_schedule(0)
    with pytest.raises(ValueError, match="overlap"):
        window_schedule(10, 4, 4)
    with pytest.raises(ValueError, match="window_size"):
        window_schedule(10, 0, 0)


def test_batch_windows():
    windows = window_schedule(40)
    assert batch_windows(windows, 2) == [[(0, 16), (12, 28)], [(24, 40)]]
    assert batch_windows(windows, 8) == [windows]


@pytest.mark.parametrize("length", LENGTHS)
def test_constant_window_predictions_give_exact_weighted_mean(length):
    windows = window_schedule(length, 16, 4)
    values = [float(3 * i + 1) for i in range(len(windows))]
    predictions = [
        (start, stop, torch.full((2, stop - start, 3, 2, 2), value))
        for (start, stop), value in zip(windows, values, strict=True)
    ]
    averaged = accumulate_windows(predictions, length)
    assert averaged.shape == (2, length, 3, 2, 2)
    for frame in range(length):
        covering = [
            v for (start, stop), v in zip(windows, values, strict=True) if start <= frame < stop
        ]
        expected = sum(covering) / len(covering)
        assert torch.equal(averaged[:, frame], torch.full((2, 3, 2, 2), expected))


def test_no_overlap_is_identity():
    length = 48
    sequence = torch.randn(1, length, 4, 3, 3)
    windows = window_schedule(length, 16, 0)
    averaged = accumulate_windows([(a, b, sequence[:, a:b]) for a, b in windows], length)
    assert torch.equal(averaged, sequence)


def test_overlapping_windows_of_one_sequence_reproduce_it():
    length = 301
    sequence = torch.randn(1, length, 2)
    windows = window_schedule(length)
    averaged = accumulate_windows([(a, b, sequence[:, a:b]) for a, b in windows], length)
    torch.testing.assert_close(averaged, sequence)


def test_sums_and_counts_compose_like_an_all_reduce():
    length = 40
    windows = window_schedule(length)
    predictions = [(a, b, torch.randn(1, b - a, 2)) for a, b in windows]
    total_a, count_a = window_sums(predictions[:2], length)
    total_b, count_b = window_sums(predictions[2:], length)
    merged = normalize_windows(total_a + total_b, count_a + count_b)
    torch.testing.assert_close(merged, accumulate_windows(predictions, length))
    assert torch.equal(count_a + count_b, window_counts(windows, length))
    assert window_counts(window_schedule(300), 300).sum() == 400  # as counted in section V-C9


def test_uncovered_frame_is_an_error():
    with pytest.raises(ValueError, match="not covered"):
        accumulate_windows([(0, 2, torch.ones(1, 2))], 3)


def test_rank_batches_deal_windows_evenly_and_cover_each_once():
    windows = window_schedule(300, 16, 4)  # 25 windows
    shares = [rank_batches(windows, 4, rank, 2) for rank in range(2)]
    dealt = [[w for batch in share for w in batch] for share in shares]
    assert sorted(dealt[0] + dealt[1]) == sorted(windows)
    assert [len(d) for d in dealt] == [13, 12]
    assert all(len(batch) <= 4 for share in shares for batch in share)
    frames = [(i, i + 1) for i in range(300)]  # a frame-wise model: one-frame windows
    assert [sum(len(b) for b in rank_batches(frames, 64, r, 2)) for r in range(2)] == [150, 150]
    assert rank_batches(windows, 4, 0, 1) == batch_windows(windows, 4)
    with pytest.raises(ValueError, match="rank"):
        rank_batches(windows, 4, 2, 2)


def test_resolved_windows_follow_the_trained_clip_length_then_the_paper():
    # a model trained on 4-frame clips: windows of 4, a quarter overlapping, 64 frames a forward
    assert resolve_windows(None, None, None, temporal_window=4) == (4, 1, 16)
    # unknown (older models, frame-wise models): the paper's ws 16 / os 4
    assert resolve_windows(None, None, None, temporal_window=None) == (16, 4, 4)
    assert resolve_windows(None, None, None, temporal_window=2) == (2, 0, 32)
    assert resolve_windows(None, None, None, temporal_window=6) == (6, 1, 11)
    # what the user sets wins, each setting on its own
    assert resolve_windows(8, None, None, temporal_window=4) == (8, 2, 8)
    assert resolve_windows(None, 0, 3, temporal_window=4) == (4, 0, 3)
    with pytest.raises(InputError, match="window_overlap"):
        resolve_windows(None, 4, None, temporal_window=4)
    with pytest.raises(InputError, match="window_size >= 1"):
        resolve_windows(0, None, None, temporal_window=4)  # 0 is a setting, not "unset"
