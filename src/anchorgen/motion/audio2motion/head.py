"""Head pose drift drawn from the identity's own head track, seeded.

The speech-to-motion model moves the head 3-8x less than the identity on unseen speech
(docs/BENCHMARKS.md, "Speech to motion"). The identity's head motion is mostly slow drift
(roll std 0.120 rad, 0.108 of it left after a 6-frame Gaussian low-pass): 48-frame windows
do not see it, speech does not determine it, and the pretraining clips barely show it, so
the network cannot learn it from 16 s. ``sample_head_drift`` draws it from those 16 s
instead: a block bootstrap, segments of the identity's head track at random (seeded)
starts joined by crossfades where they match, so the drift has the identity's own
amplitude, speed and coupling between roll, yaw, pitch and placement, and differs with the
seed.
``apply_head_drift`` adds it to generated motion: placement and roll to the head dims, yaw
and pitch as a rigid rotation of the face points (the model keeps its own head motion).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from anchorgen.errors import InputError
from anchorgen.geometry import umeyama
from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.audio2motion.representation import (
    EYE_OUTER,
    FACE_POINTS,
    LAYOUT,
    _rotate,
    encode,
    face_local,
)

HEAD_TRACK_DIMS = 7
"""Head x, y, log size, roll (the ``head`` dims) and the face's rotation vector (3)."""
_EYES = (FACE_POINTS.index(EYE_OUTER[0]), FACE_POINTS.index(EYE_OUTER[1]))


def identity_head_track(identity: LandmarkSequence, smooth_frames: float = 2.0) -> np.ndarray:
    """(T, 7) the identity's head pose per frame, each column minus its mean.

    Columns: the ``head`` motion dims (face centre x, y in shoulder widths, log face size,
    roll) and the rotation vector of the face mesh relative to the clip's mean face (in the
    face-local frame, so mostly pitch and yaw). Frames without face or shoulders are
    interpolated from their neighbours; a temporal Gaussian of std ``smooth_frames`` takes
    off the tracker's frame-to-frame noise (the mesh's depth makes pitch and yaw noisy).
    """
    clip = encode(identity)
    ok = clip.mask[:, LAYOUT["head"]].all(axis=1)
    if ok.sum() < 2:
        raise InputError("the identity shows its face and shoulders in fewer than 2 frames")
    local = face_local(identity.face[ok].astype(np.float64))
    reference = np.broadcast_to(clip.mean_face, local.shape)  # (T, N, 3)
    _, rotations, _ = umeyama(reference, local)  # local ~ s R mean_face + t
    rotvec = Rotation.from_matrix(rotations).as_rotvec()
    valid = np.concatenate([clip.values[ok][:, LAYOUT["head"]], rotvec], axis=1)
    frames = np.arange(len(ok))
    track = np.stack(
        [np.interp(frames, frames[ok], valid[:, k]) for k in range(HEAD_TRACK_DIMS)], axis=1
    )
    if smooth_frames > 0:
        track = gaussian_filter1d(track, smooth_frames, axis=0, mode="nearest")
    return track - track.mean(axis=0)


def sample_head_drift(
    track: np.ndarray,
    num_frames: int,
    rng: np.random.Generator,
    segment_frames: int = 200,
    crossfade_frames: int = 25,
    candidates: int = 8,
) -> np.ndarray:
    """(T0, C) track -> (num_frames, C): segments of it at random starts, crossfaded.

    The first segment (``segment_frames``, at most half the track, so that the starts vary)
    starts at a uniformly random frame. Each next one begins ``crossfade_frames`` before the
    previous one ends and fades in with raised-cosine weights (summing to 1); of
    ``candidates`` random starts it takes the one closest to the motion it fades into (as
    motion matching does), so the joins add no jerk.
    """
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    total = len(track)
    if total < 2:
        raise ValueError("the head track needs at least 2 frames")
    seg = max(min(segment_frames, total // 2), 1)
    fade = min(crossfade_frames, seg // 2)
    weight = (1 - np.cos(np.linspace(0.0, np.pi, fade + 2)[1:-1, None])) / 2  # (fade, 1) in (0, 1)
    spread = np.maximum(track.std(axis=0), 1e-9)
    out = np.empty((num_frames + seg, track.shape[1]))
    start = int(rng.integers(0, total - seg + 1))
    out[:seg] = track[start : start + seg]
    filled = seg
    while filled < num_frames:
        at = filled - fade
        starts = rng.integers(0, total - seg + 1, size=candidates)
        windows = np.stack([track[s : s + fade] for s in starts])  # (candidates, fade, C)
        cost = (((windows - out[at:filled]) / spread) ** 2).sum(axis=(1, 2))
        piece = track[int(starts[np.argmin(cost)]) :][:seg]
        out[at:filled] = (1 - weight) * out[at:filled] + weight * piece[:fade]
        out[filled : at + seg] = piece[fade:]
        filled = at + seg
    return out[:num_frames]


def _eye_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, 94, 3) modelled face points -> centre (T, 3), scale (T,), roll (T,) of their eye line."""
    right, left = points[:, _EYES[0]], points[:, _EYES[1]]
    delta = left[:, :2] - right[:, :2]
    return (right + left) / 2, np.linalg.norm(delta, axis=1), np.arctan2(delta[:, 1], delta[:, 0])


def apply_head_drift(values: np.ndarray, drift: np.ndarray, mean_face: np.ndarray) -> np.ndarray:
    """(T, D) motion vectors + (T, 7) drift -> (T, D) motion vectors with the head moved.

    The head dims get the drift's placement and roll added; the face points (the clip's
    ``mean_face`` (478, 3) plus their deviation) are turned by its rotation about the eye
    centre and put back in the eye-line frame they had before (the face-local frame), so
    lips, jaw, eyes and nose turn together and a zero drift changes nothing.
    """
    out = np.array(values, dtype=np.float64)
    t = len(out)
    out[:, LAYOUT["head"]] += drift[:, :4]
    face = LAYOUT["face"]
    mean = mean_face[list(FACE_POINTS)]  # (94, 3)
    local = mean + out[:, face].reshape(t, len(FACE_POINTS), 3)
    turned = np.einsum("tij,tnj->tni", Rotation.from_rotvec(drift[:, 4:7]).as_matrix(), local)
    centre, scale, roll = _eye_frame(turned)
    rel = (turned - centre[:, None]) / scale[:, None, None]  # eye line of the turned face
    centre0, scale0, roll0 = _eye_frame(local)
    xy = _rotate(rel[..., :2], roll0 - roll) * scale0[:, None, None]
    back = np.concatenate([xy, rel[..., 2:] * scale0[:, None, None]], axis=-1) + centre0[:, None]
    out[:, face] = (back - mean).reshape(t, -1)
    return out.astype(values.dtype)
