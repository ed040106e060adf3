"""Nearest-pose retrieval, the repeated reference, and the markdown report."""

from __future__ import annotations

import numpy as np
import pytest

from anchorgen.errors import InputError
from anchorgen.evaluation import baselines, report
from anchorgen.landmarks import LandmarkSequence


def _random_sequence(t: int, seed: int, size: tuple[int, int] = (256, 320)) -> LandmarkSequence:
    rng = np.random.default_rng(seed)
    seq = LandmarkSequence.empty(t, 25.0, size)
    for part in ("pose", "left_hand", "right_hand", "face"):
        arr = getattr(seq, part)
        arr[:] = rng.uniform(40, 220, arr.shape)
        seq.present[part][:] = seq.detected[part][:] = True
    return seq


def test_query_equal_to_training_frames_retrieves_them():
    train = _random_sequence(30, 0)
    order = np.array([7, 3, 29, 0, 12])
    query = train.slice(0, 0)
    query = LandmarkSequence(
        pose=train.pose[order],
        pose_visibility=train.pose_visibility[order],
        pose_world=train.pose_world[order],
        left_hand=train.left_hand[order],
        right_hand=train.right_hand[order],
        face=train.face[order],
        present={k: v[order] for k, v in train.present.items()},
        detected={k: v[order] for k, v in train.detected.items()},
        fps=train.fps,
        image_size=train.image_size,
    )
    np.testing.assert_array_equal(baselines.nearest_pose_retrieval(train, query), order)


def test_retrieval_is_invariant_to_position_and_scale():
    train = _random_sequence(20, 1)
    moved = train.transformed(np.array([[0.6, 0.0, 30.0], [0.0, 0.6, -12.0]]), (256, 320))
    np.testing.assert_array_equal(baselines.nearest_pose_retrieval(train, moved), np.arange(20))


def test_retrieval_prefers_frames_with_the_same_parts_and_holds_through_empty_frames():
    train = _random_sequence(3, 2)
    train.present = {k: v.copy() for k, v in train.present.items()}
    train.present["left_hand"][0] = False
    query = train.slice(0, 3)
    query.present = {k: v.copy() for k, v in train.present.items()}
    query.left_hand = train.left_hand.copy()
    query.left_hand[1] = train.left_hand[0]  # unusable data behind a False flag in train
    for part in query.present:
        query.present[part][2] = False  # nothing detected in query frame 2
    indices = baselines.nearest_pose_retrieval(train, query)
    assert indices[0] == 0 and indices[1] == 1
    assert indices[2] == indices[1]  # held
    dist = baselines.pose_distance_matrix(train, query)
    assert np.isinf(dist[2]).all()


def test_reference_repeat():
    frame = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    video = baselines.reference_repeat(frame, 4)
    assert video.shape == (4, 6, 5, 3) and video.dtype == np.uint8
    assert all(np.array_equal(f, frame) for f in video)
    with pytest.raises(InputError):
        baselines.reference_repeat(frame.astype(np.float32), 4)
    with pytest.raises(InputError):
        baselines.reference_repeat(frame, 0)


def test_metrics_table_marks_missing_and_not_computed_values():
    table = report.metrics_table(
        {
            "anchorgen": {"PSNR": 24.123456, "FID": "not computed: no weights", "LMD face": 1.5},
            "retrieval": {"PSNR": float("inf"), "SSIM": 0.81234, "FID": "not computed: no weights"},
            "reference | repeat": {"PSNR": float("nan"), "frames": 100},
        }
    )
    lines = table.splitlines()
    assert lines[0] == "| method | PSNR | FID | LMD face | SSIM | frames |"
    assert lines[1] == "|---|---|---|---|---|---|"
    assert lines[2] == "| anchorgen | 24.12 | n/a | 1.5 | n/a | n/a |"
    assert lines[3] == "| retrieval | inf | n/a | n/a | 0.8123 | n/a |"
    assert lines[4] == "| reference \\| repeat | n/a | n/a | n/a | n/a | 100 |"
    assert lines[6:] == ["- FID: not computed: no weights"]
