"""MediaPipe Holistic tracking: body, hands, face mesh and person matte per frame.

MediaPipe returns normalized coordinates; everything here converts them to the pixel
convention of :class:`anchorgen.landmarks.LandmarkSequence`: ``x * W``, ``y * H`` and
``z * W`` (MediaPipe gives z in roughly the same scale as x), with smaller z closer to the
camera. Hands and face come from separate models whose z is relative to their own root
(wrist, face centre); :func:`to_body_depth` moves them into the body's depth frame so a
renderer can depth-order all parts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable

os.environ.setdefault("GLOG_minloglevel", "2")  # before mediapipe loads glog

import numpy as np
from tqdm import tqdm

from anchorgen.errors import InputError
from anchorgen.landmarks import PARTS, LandmarkSequence

POSE_NOSE = 0
POSE_LEFT_WRIST = 15
POSE_RIGHT_WRIST = 16
FACE_NOSE_TIP = 1
"""Face-mesh index of the nose tip, matched to the pose nose when aligning depth."""


def _mediapipe():
    """Import ``mediapipe`` with absl logging quieted (its import costs about a second)."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)
    import mediapipe as mp

    return mp


@dataclasses.dataclass
class FrameResult:
    """Holistic output for one frame, in pixels (see module docstring). None = not detected."""

    pose: np.ndarray | None
    """(33, 3) float32 pixels."""
    pose_visibility: np.ndarray | None
    """(33,) float32 in [0, 1]."""
    pose_world: np.ndarray | None
    """(33, 3) float32 metres, hip-centred."""
    left_hand: np.ndarray | None
    """(21, 3) float32 pixels; the person's left hand."""
    right_hand: np.ndarray | None
    """(21, 3) float32 pixels; the person's right hand."""
    face: np.ndarray | None
    """(478, 3) float32 pixels; face mesh with irises."""
    matte: np.ndarray
    """(H, W) float32 in [0, 1]: person segmentation (zeros when none)."""


def _to_array(landmark_list, width: int, height: int) -> np.ndarray | None:
    """MediaPipe NormalizedLandmarkList -> (N, 3) float32 pixels (x*W, y*H, z*W)."""
    if landmark_list is None:
        return None
    pts = np.array([(p.x, p.y, p.z) for p in landmark_list.landmark], np.float64)
    pts *= (width, height, width)
    return pts.astype(np.float32)


def to_body_depth(
    pose: np.ndarray | None,
    left_hand: np.ndarray | None,
    right_hand: np.ndarray | None,
    face: np.ndarray | None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Shift hand and face z into the pose's depth frame (pixels, larger z = farther).

    Hand z is relative to its wrist, so the pose wrist z is added; face z is relative to
    the face centre, so the face is shifted until its nose tip has the pose nose's z.
    Without a pose, the parts keep their own relative depth. Returns new arrays.
    """
    if pose is None:
        return left_hand, right_hand, face

    def shifted(points: np.ndarray | None, offset: float) -> np.ndarray | None:
        if points is None:
            return None
        out = points.copy()
        out[:, 2] += offset
        return out

    left = shifted(left_hand, float(pose[POSE_LEFT_WRIST, 2]))
    right = shifted(right_hand, float(pose[POSE_RIGHT_WRIST, 2]))
    face_out = None
    if face is not None:
        face_out = shifted(face, float(pose[POSE_NOSE, 2] - face[FACE_NOSE_TIP, 2]))
    return left, right, face_out


def _check_frame(frame_rgb: np.ndarray) -> None:
    if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
        raise InputError(
            f"expected an RGB uint8 frame of shape (H, W, 3), got {frame_rgb.dtype} {frame_rgb.shape}"
        )


class HolisticTracker:
    """MediaPipe Holistic in video mode (tracks across frames; feed frames in order).

    Use as a context manager::

        with HolisticTracker() as tracker:
            result = tracker.process(frame_rgb)
    """

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        mp = _mediapipe()
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=False,
            model_complexity=1,
            refine_face_landmarks=True,
            enable_segmentation=True,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def __enter__(self) -> HolisticTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._holistic.close()

    def process(self, frame_rgb: np.ndarray) -> FrameResult:
        """Track one RGB uint8 frame (H, W, 3)."""
        _check_frame(frame_rgb)
        height, width = frame_rgb.shape[:2]
        res = self._holistic.process(np.ascontiguousarray(frame_rgb))
        pose = _to_array(res.pose_landmarks, width, height)
        visibility = None
        if res.pose_landmarks is not None:
            visibility = np.array([p.visibility for p in res.pose_landmarks.landmark], np.float32)
        pose_world = None
        if res.pose_world_landmarks is not None:
            pose_world = np.array(
                [(p.x, p.y, p.z) for p in res.pose_world_landmarks.landmark], np.float32
            )
        left, right, face = to_body_depth(
            pose,
            _to_array(res.left_hand_landmarks, width, height),
            _to_array(res.right_hand_landmarks, width, height),
            _to_array(res.face_landmarks, width, height),
        )
        if res.segmentation_mask is None:
            matte = np.zeros((height, width), np.float32)
        else:
            matte = np.clip(np.asarray(res.segmentation_mask, np.float32), 0.0, 1.0)
        return FrameResult(pose, visibility, pose_world, left, right, face, matte)


def track_frames(
    frames: Iterable[np.ndarray],
    fps: float,
    image_size: tuple[int, int],
    on_matte: Callable[[int, np.ndarray], None] | None = None,
    progress: bool = True,
    total: int | None = None,
) -> LandmarkSequence:
    """Run Holistic over ``frames`` (RGB uint8, each (H, W, 3) with (W, H) == image_size).

    Returns the raw sequence: ``present == detected`` per part, missing parts NaN.
    ``on_matte(i, matte)`` receives each frame's (H, W) float32 matte so the caller can
    stream mattes to disk instead of holding them in memory. ``total`` sizes the progress bar.
    """
    width, height = int(image_size[0]), int(image_size[1])
    keys = ("pose", "pose_visibility", "pose_world", "left_hand", "right_hand", "face")
    rows: list[dict[str, np.ndarray | None]] = []  # per frame, without the matte
    with HolisticTracker() as tracker:
        for i, frame in enumerate(
            tqdm(frames, total=total, desc="landmarks", unit="frame", disable=not progress)
        ):
            if frame.shape[:2] != (height, width):
                raise InputError(
                    f"frame {i} has size {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}"
                )
            result = tracker.process(frame)
            if on_matte is not None:
                on_matte(i, result.matte)
            rows.append({k: getattr(result, k) for k in keys})
    if not rows:
        raise InputError("no frames to track")

    seq = LandmarkSequence.empty(len(rows), fps, (width, height))
    for i, row in enumerate(rows):
        for part in PARTS:
            if row[part] is not None:
                getattr(seq, part)[i] = row[part]
                seq.present[part][i] = seq.detected[part][i] = True
        if row["pose"] is not None:
            seq.pose_visibility[i] = row["pose_visibility"]
        if row["pose_world"] is not None:
            seq.pose_world[i] = row["pose_world"]
    return seq


def count_faces_in_frames(frames: Iterable[np.ndarray], min_confidence: float = 0.5) -> list[int]:
    """Number of faces in each frame (full-range BlazeFace, for sampled frames of a clip)."""
    mp = _mediapipe()
    counts = []
    with mp.solutions.face_detection.FaceDetection(
        model_selection=1, min_detection_confidence=min_confidence
    ) as detector:
        for frame in frames:
            _check_frame(frame)
            detections = detector.process(np.ascontiguousarray(frame)).detections
            counts.append(len(detections or []))
    return counts


def count_faces(frame_rgb: np.ndarray, min_confidence: float = 0.5) -> int:
    """Number of faces in one RGB uint8 frame (detects "more than one person in view")."""
    return count_faces_in_frames([frame_rgb], min_confidence)[0]


def has_person(frame_rgb: np.ndarray, min_confidence: float = 0.5) -> bool:
    """Whether MediaPipe Pose finds a body in one RGB uint8 frame (single-image mode)."""
    _check_frame(frame_rgb)
    mp = _mediapipe()
    with mp.solutions.pose.Pose(
        static_image_mode=True, model_complexity=1, min_detection_confidence=min_confidence
    ) as pose:
        return pose.process(np.ascontiguousarray(frame_rgb)).pose_landmarks is not None
