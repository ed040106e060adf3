"""Baselines every generator must beat: nearest-pose retrieval and the reference repeated.

Retrieval shows each held-out frame's closest training frame by normalised landmarks: it
has perfect texture but only the poses seen in training. The repeated reference has the
right identity and no motion at all.
"""

from __future__ import annotations

import numpy as np

from anchorgen.errors import InputError
from anchorgen.landmarks import LandmarkSequence

SHOULDERS = (11, 12)
"""MediaPipe pose indices of the left and right shoulder."""
RETRIEVAL_BODY_POINTS = (0, 11, 12, 13, 14, 15, 16, 23, 24)
"""Nose, shoulders, elbows, wrists, hips."""
RETRIEVAL_FACE_POINTS = tuple(range(0, 468, 12))
"""Every 12th face-mesh point (39): enough for head pose and mouth opening."""
MISSING_PART_PENALTY = 1.0
"""Squared distance (in shoulder widths) charged when a part is present in only one frame."""
FALLBACK_SHOULDER_FRACTION = 1.0 / 3.0
"""Without shoulders a frame is centred on the image and scaled by this fraction of its width."""


def normalised_parts(seq: LandmarkSequence) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Part name -> (points (T, N*2) centred on the shoulders / shoulder width, present (T,)).

    Parts: body, left_hand, right_hand, face (subsampled). Frames without both shoulders are
    normalised by the image centre and a third of its width instead.
    """
    width, height = seq.image_size
    shoulders = seq.pose[:, list(SHOULDERS), :2].astype(np.float64)  # (T, 2, 2)
    has_shoulders = seq.present["pose"] & ~np.isnan(shoulders).any((1, 2))
    centre = np.where(
        has_shoulders[:, None], np.nan_to_num(shoulders.mean(1)), np.array([width / 2, height / 2])
    )  # (T, 2)
    scale = np.linalg.norm(np.nan_to_num(shoulders[:, 0] - shoulders[:, 1]), axis=-1)
    scale = np.where(has_shoulders & (scale > 0), scale, width * FALLBACK_SHOULDER_FRACTION)  # (T,)
    selections = {
        "body": (seq.pose, "pose", RETRIEVAL_BODY_POINTS),
        "left_hand": (seq.left_hand, "left_hand", None),
        "right_hand": (seq.right_hand, "right_hand", None),
        "face": (seq.face, "face", RETRIEVAL_FACE_POINTS),
    }
    parts = {}
    for name, (points, flag, index) in selections.items():
        xy = points[:, list(index), :2] if index is not None else points[..., :2]
        xy = (xy.astype(np.float64) - centre[:, None]) / scale[:, None, None]  # (T, N, 2)
        present = seq.present[flag] & ~np.isnan(xy).any((1, 2))
        parts[name] = (
            np.where(present[:, None], np.nan_to_num(xy.reshape(len(xy), -1)), 0.0),
            present,
        )
    return parts


def pose_distance_matrix(train: LandmarkSequence, query: LandmarkSequence) -> np.ndarray:
    """(T_query, T_train) mean over parts of the mean squared normalised point distance.

    Parts present in both frames count their distance, parts present in one count
    :data:`MISSING_PART_PENALTY`, parts absent from both are skipped. Rows of query frames
    without any part, and pairs where no part counts, are inf.
    """
    train_parts, query_parts = normalised_parts(train), normalised_parts(query)
    total = np.zeros((len(query), len(train)))
    counted = np.zeros((len(query), len(train)))
    query_any = np.zeros(len(query), bool)
    for name, (train_xy, train_ok) in train_parts.items():
        query_xy, query_ok = query_parts[name]
        n_points = train_xy.shape[1] // 2
        sq = (
            (query_xy**2).sum(1)[:, None] + (train_xy**2).sum(1)[None] - 2.0 * query_xy @ train_xy.T
        ) / n_points  # (T_query, T_train)
        both = query_ok[:, None] & train_ok[None]
        one = query_ok[:, None] ^ train_ok[None]
        total += np.where(both, np.maximum(sq, 0.0), 0.0) + np.where(one, MISSING_PART_PENALTY, 0.0)
        counted += both | one
        query_any |= query_ok
    usable = (counted > 0) & query_any[:, None]
    return np.where(usable, total / np.maximum(counted, 1), np.inf)


def nearest_pose_retrieval(
    train_landmarks: LandmarkSequence, query_landmarks: LandmarkSequence
) -> np.ndarray:
    """Index (T_query,) int64 of the training frame whose normalised landmarks are closest.

    A query frame with no landmarks at all repeats the previous choice (frame 0 at the start).
    """
    if len(train_landmarks) == 0 or len(query_landmarks) == 0:
        raise InputError("nearest-pose retrieval needs at least one training and one query frame")
    dist = pose_distance_matrix(train_landmarks, query_landmarks)
    indices = np.argmin(dist, axis=1).astype(np.int64)
    previous = 0
    for i in range(len(indices)):
        if np.isinf(dist[i]).all():
            indices[i] = previous
        previous = int(indices[i])
    return indices


def reference_repeat(reference_frame: np.ndarray, n: int) -> np.ndarray:
    """The reference frame (H, W, 3) uint8 repeated ``n`` times: (n, H, W, 3)."""
    reference_frame = np.asarray(reference_frame)
    if (
        reference_frame.ndim != 3
        or reference_frame.shape[2] != 3
        or reference_frame.dtype != np.uint8
    ):
        raise InputError(
            f"reference frame must be RGB uint8 (H, W, 3), got {reference_frame.dtype} {reference_frame.shape}"
        )
    if n < 1:
        raise InputError(f"number of frames must be >= 1, got {n}")
    return np.repeat(reference_frame[None], n, axis=0)
