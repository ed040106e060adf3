"""MediaPipe tracking: body, hands and face mesh (Holistic) and a person matte (selfie
segmentation) per frame.

MediaPipe returns normalized coordinates; everything here converts them to the pixel
convention of :class:`anchorgen.landmarks.LandmarkSequence`: ``x * W``, ``y * H`` and
``z * W`` (MediaPipe gives z in roughly the same scale as x), with smaller z closer to the
camera. Hands and face come from separate models whose z is relative to their own root
(wrist, face centre); :func:`to_body_depth` moves them into the body's depth frame so a
renderer can depth-order all parts.
"""

from __future__ import annotations

import contextlib
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

    Holistic's own segmentation output is off: it is smoothed and warped back at the full
    frame size inside the graph, a fifth of Holistic's CPU time on a 1080x1920 frame, and
    turning it off does not change the landmarks; :class:`SelfieSegmenter` makes the mattes.

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
            enable_segmentation=False,
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
        return FrameResult(pose, visibility, pose_world, left, right, face)


def matte_size(image_size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """(width, height) of the matte of an image of ``image_size``: the image scaled so that
    its longer side is at most ``max_side`` (None: the image's own size)."""
    width, height = image_size
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class SelfieSegmenter:
    """Person matte from MediaPipe selfie segmentation (general model, 256x256 input).

    The model sees the frame at 256 px, so it is given the frame already down-scaled to
    the matte size (``max_side``); its mask comes back at that size, which is all that
    the dataset keeps.
    """

    def __init__(self, max_side: int | None = None):
        mp = _mediapipe()
        self.max_side = max_side
        self._model = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __enter__(self) -> SelfieSegmenter:
        return self

    def __exit__(self, *exc) -> None:
        self._model.close()

    def process(self, frame_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) RGB uint8 -> (h, w) float32 matte in [0, 1], (w, h) = :func:`matte_size`."""
        import cv2

        _check_frame(frame_rgb)
        height, width = frame_rgb.shape[:2]
        size = matte_size((width, height), self.max_side)
        if size != (width, height):
            frame_rgb = cv2.resize(frame_rgb, size, interpolation=cv2.INTER_LINEAR)
        mask = self._model.process(np.ascontiguousarray(frame_rgb)).segmentation_mask
        if mask is None:
            return np.zeros(size[::-1], np.float32)
        return np.clip(np.asarray(mask, np.float32), 0.0, 1.0)


def track_frames(
    frames: Iterable[np.ndarray],
    fps: float,
    image_size: tuple[int, int],
    on_matte: Callable[[int, np.ndarray], None] | None = None,
    progress: bool = True,
    total: int | None = None,
    matte_max_side: int | None = None,
) -> LandmarkSequence:
    """Run Holistic over ``frames`` (RGB uint8, each (H, W, 3) with (W, H) == image_size).

    Returns the raw sequence: ``present == detected`` per part, missing parts NaN.
    ``on_matte(i, matte)`` receives each frame's float32 matte in [0, 1] so the caller can
    stream mattes to disk instead of holding them in memory; mattes are (H, W), or the
    frame scaled to a longer side of ``matte_max_side`` (see :func:`matte_size`). Without
    ``on_matte`` no segmentation runs. ``total`` sizes the progress bar.
    """
    width, height = int(image_size[0]), int(image_size[1])
    keys = ("pose", "pose_visibility", "pose_world", "left_hand", "right_hand", "face")
    rows: list[dict[str, np.ndarray | None]] = []  # per frame, without the matte
    segmenter = SelfieSegmenter(matte_max_side) if on_matte is not None else None
    with HolisticTracker() as tracker, segmenter or contextlib.nullcontext():
        for i, frame in enumerate(
            tqdm(frames, total=total, desc="landmarks", unit="frame", disable=not progress)
        ):
            if frame.shape[:2] != (height, width):
                raise InputError(
                    f"frame {i} has size {frame.shape[1]}x{frame.shape[0]}, expected {width}x{height}"
                )
            result = tracker.process(frame)
            if segmenter is not None:
                on_matte(i, segmenter.process(frame))
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
