"""Compact per-frame motion vectors from a ``LandmarkSequence``, and the way back.

Layout of one frame's vector (D = ``MOTION_DIM`` = 453 numbers, see ``LAYOUT``):

- ``face``: 94 face-mesh points (lips, jaw, eyes, brows, irises, nose tip) in a face-local
  frame (origin between the outer eye corners, unit = their distance, eye line horizontal),
  minus the clip's mean face in that frame: expression, speech and the projection of yaw
  and pitch, with the person's face shape removed.
- ``head``: face placement relative to the shoulders (centre x, y in shoulder widths, log
  face-size / shoulder-width, roll in radians), minus the clip's mean.
- ``body``: shoulder centre sway (x, y relative to the clip's mean, in shoulder widths), log
  shoulder-width ratio, and pose points 11-22 (shoulders, elbows, wrists, finger tips)
  centred on the shoulders and scaled by shoulder width.
- ``left_hand`` / ``right_hand``: 21 points each in the same shoulder frame, plus one
  presence value (+1 visible, -1 not).

A per-frame, per-dim validity mask marks what was measured (face-only clips have no
shoulders, hands leave the frame). ``to_landmarks`` places generated vectors in the
identity's image space using the identity's own mean face, framing and unmodelled points.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from anchorgen.errors import InputError
from anchorgen.landmarks import PARTS, LandmarkSequence
from anchorgen.prepare.holistic import FACE_NOSE_TIP, POSE_NOSE

LIPS = (
    0,
    13,
    14,
    17,
    37,
    39,
    40,
    61,
    78,
    80,
    81,
    82,
    84,
    87,
    88,
    91,
    95,
    146,
    178,
    181,
    185,
    191,
    267,
    269,
    270,
    291,
    308,
    310,
    311,
    312,
    314,
    317,
    318,
    321,
    324,
    375,
    402,
    405,
    409,
    415,
)
JAW = (58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288)
EYES = (33, 133, 159, 145, 160, 144, 158, 153, 263, 362, 386, 374, 387, 373, 385, 380)
BROWS = (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300, 334, 336)
IRISES_AND_NOSE = (468, 473, 1)
FACE_POINTS = LIPS + JAW + EYES + BROWS + IRISES_AND_NOSE
"""94 modelled face-mesh indices; the rest follow them (see ``_follow_weights``)."""
MOUTH_POINTS = LIPS + JAW
EYE_OUTER = (33, 263)
"""Right and left outer eye corners: the face-local frame's origin, unit and x axis."""
INNER_LIP = (13, 14)
BODY_POINTS = tuple(range(11, 23))
SHOULDERS = (11, 12)

_sizes = {
    "face": len(FACE_POINTS) * 3,
    "head": 4,
    "body": 3 + len(BODY_POINTS) * 3,
    "left_hand": 21 * 3 + 1,
    "right_hand": 21 * 3 + 1,
}
LAYOUT: dict[str, slice] = {}
_start = 0
for _name, _size in _sizes.items():
    LAYOUT[_name] = slice(_start, _start + _size)
    _start += _size
MOTION_DIM = _start


def mouth_dims() -> np.ndarray:
    """Indices of the lip and jaw dims (audio-driven; weighted up in the loss)."""
    face = LAYOUT["face"].start
    return np.array([face + 3 * i + k for i in range(len(MOUTH_POINTS)) for k in range(3)])


def _face_frame(face: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, 478, 3) -> centre (T, 3), scale (T,), roll (T,) of the face-local frame."""
    right, left = face[:, EYE_OUTER[0]], face[:, EYE_OUTER[1]]
    centre = (right + left) / 2
    delta = left[:, :2] - right[:, :2]
    return centre, np.linalg.norm(delta, axis=1), np.arctan2(delta[:, 1], delta[:, 0])


def _rotate(xy: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotate (T, N, 2) points by (T,) angles (image axes)."""
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([c * xy[..., 0] - s * xy[..., 1], s * xy[..., 0] + c * xy[..., 1]], axis=-1)


def face_local(face: np.ndarray) -> np.ndarray:
    """(T, 478, 3) pixels -> (T, 478, 3) face-local coordinates (unit = eye-corner distance)."""
    centre, scale, roll = _face_frame(face)
    rel = (face - centre[:, None]) / scale[:, None, None]
    return np.concatenate([_rotate(rel[..., :2], -roll), rel[..., 2:]], axis=-1)


def _shoulder_frame(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 33, 3) -> shoulder centre (T, 3) and shoulder width in pixels (T,)."""
    a, b = pose[:, SHOULDERS[0]], pose[:, SHOULDERS[1]]
    return (a + b) / 2, np.linalg.norm((a - b)[:, :2], axis=1)


def mouth_opening(seq: LandmarkSequence) -> np.ndarray:
    """(T,) inner-lip gap divided by the eye-corner distance (NaN where no face)."""
    face = seq.face
    gap = np.linalg.norm(face[:, INNER_LIP[0], :2] - face[:, INNER_LIP[1], :2], axis=1)
    return gap / _face_frame(face)[1]


@dataclasses.dataclass
class MotionClip:
    """Motion vectors of one clip and what is needed to place them back."""

    values: np.ndarray
    """(T, D) float32 motion vectors (zeros where not measured)."""
    mask: np.ndarray
    """(T, D) bool: True where measured."""
    mean_face: np.ndarray
    """(478, 3) the clip's mean face in face-local coordinates."""
    mean_head: np.ndarray
    """(4,) mean head placement (x, y, log size ratio, roll); NaN without shoulders."""
    mean_shoulder_centre: np.ndarray
    """(3,) mean shoulder centre in pixels (NaN without shoulders)."""
    mean_shoulder_width: float
    """Mean shoulder width in pixels (NaN without shoulders)."""


def _nanmean(x: np.ndarray, axis: int = 0) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nanmean(x, axis=axis) if np.isfinite(x).any() else np.full(x.shape[1:], np.nan)


def encode(seq: LandmarkSequence) -> MotionClip:
    """LandmarkSequence -> per-frame motion vectors, validity mask and clip means."""
    t = len(seq)
    values = np.zeros((t, MOTION_DIM), np.float64)
    mask = np.zeros((t, MOTION_DIM), bool)
    face_ok = seq.present["face"] & np.isfinite(seq.face).all(axis=(1, 2))
    pose_ok = seq.present["pose"] & np.isfinite(seq.pose[:, BODY_POINTS]).all(axis=(1, 2))
    if not face_ok.any():
        raise InputError("no frame of this clip has a face: audio-to-motion needs the face")

    face = seq.face.astype(np.float64)
    local = face_local(np.where(face_ok[:, None, None], face, face[face_ok][:1]))
    mean_face = local[face_ok].mean(0)
    values[:, LAYOUT["face"]] = (local[:, FACE_POINTS] - mean_face[list(FACE_POINTS)]).reshape(
        t, -1
    )
    mask[face_ok, LAYOUT["face"]] = True

    pose = seq.pose.astype(np.float64)
    centre, width = _shoulder_frame(pose)
    pose_ok &= (width > 1e-3) & (seq.pose_visibility[:, list(SHOULDERS)].min(axis=1) > 0.5)
    mean_centre = _nanmean(np.where(pose_ok[:, None], centre, np.nan))
    mean_width = float(_nanmean(np.where(pose_ok, width, np.nan)[:, None])[0])
    fc, fs, froll = _face_frame(face)
    head = np.stack(
        [
            (fc[:, 0] - centre[:, 0]) / width,
            (fc[:, 1] - centre[:, 1]) / width,
            np.log(fs / width),
            froll,
        ],
        axis=1,
    )
    head_ok = face_ok & pose_ok
    mean_head = _nanmean(np.where(head_ok[:, None], head, np.nan))
    values[:, LAYOUT["head"]] = np.where(head_ok[:, None], head - mean_head, 0.0)
    mask[head_ok, LAYOUT["head"]] = True

    sway = np.concatenate(
        [(centre[:, :2] - mean_centre[:2]) / mean_width, np.log(width / mean_width)[:, None]],
        axis=1,
    )
    body = ((pose[:, BODY_POINTS] - centre[:, None]) / width[:, None, None]).reshape(t, -1)
    values[:, LAYOUT["body"]] = np.where(
        pose_ok[:, None], np.concatenate([sway, body], axis=1), 0.0
    )
    mask[pose_ok, LAYOUT["body"]] = True

    for part in ("left_hand", "right_hand"):
        pts = getattr(seq, part).astype(np.float64)
        ok = seq.present[part] & np.isfinite(pts).all(axis=(1, 2)) & pose_ok
        rel = ((pts - centre[:, None]) / width[:, None, None]).reshape(t, -1)
        sl = LAYOUT[part]
        values[:, sl.start : sl.stop - 1] = np.where(ok[:, None], rel, 0.0)
        values[:, sl.stop - 1] = np.where(ok, 1.0, -1.0)
        mask[ok, sl.start : sl.stop - 1] = True
        mask[pose_ok, sl.stop - 1] = True  # absence is measured only when the body is seen

    values = np.where(mask & np.isfinite(values), values, 0.0)
    return MotionClip(
        values.astype(np.float32), mask, mean_face, mean_head, mean_centre, mean_width
    )


@dataclasses.dataclass
class IdentityFrame:
    """What ``decode`` takes from the identity: shape, framing and unmodelled points."""

    clip: MotionClip
    face_z_offset: float
    """Mean face-centre depth in pixels (face z is stored relative to the face centre)."""
    pose_rest: np.ndarray
    """(33, 3) mean pose in the shoulder frame (unmodelled points: face, hips, legs)."""
    pose_face_local: np.ndarray
    """(11, 3) mean pose points 0-10 (nose, eyes, ears, mouth) in face-local coordinates."""
    pose_world: np.ndarray
    """(33, 3) mean metric pose."""
    follow: np.ndarray
    """(478, 94) weights: each face point follows the modelled points near it."""
    fps: float
    image_size: tuple[int, int]


def _follow_weights(mean_face: np.ndarray, sigma: float = 0.15, k: int = 4) -> np.ndarray:
    """(478, 94) Gaussian weights over the k nearest modelled points (identity for modelled)."""
    dist = np.linalg.norm(mean_face[:, None, :2] - mean_face[None, list(FACE_POINTS), :2], axis=-1)
    weights = np.exp(-((dist / sigma) ** 2))
    far = np.argsort(dist, axis=1)[:, k:]
    np.put_along_axis(weights, far, 0.0, axis=1)
    weights /= np.maximum(weights.sum(1, keepdims=True), 1e-12)
    weights[list(FACE_POINTS)] = np.eye(len(FACE_POINTS))
    return weights


def face_in_body_depth(seq: LandmarkSequence) -> np.ndarray:
    """(T, 478, 3) float64 face mesh moved in z until its nose tip has the pose nose's depth.

    That is the depth ``prepare``'s tracker gives the face (``prepare.holistic.to_body_depth``).
    A track that kept MediaPipe's own face depth (about 0 at the face centre) has the face
    about 2.6 shoulder widths behind the pose's nose, behind the shoulders, and the
    condition renderer then draws the neck over the mouth. Frames without a pose take the
    mean shift of the others; a track without pose keeps its depth. An already aligned
    track is returned unchanged.
    """
    face = seq.face.astype(np.float64)
    shift = seq.pose[:, POSE_NOSE, 2].astype(np.float64) - face[:, FACE_NOSE_TIP, 2]  # (T,)
    known = seq.present["pose"] & seq.present["face"] & np.isfinite(shift)
    if not known.any():
        return face
    face[..., 2] += np.where(known, shift, shift[known].mean())[:, None]
    return face


def identity_frame(seq: LandmarkSequence) -> IdentityFrame:
    """Everything ``decode`` needs from the identity's own training landmarks.

    The face's depth is taken in the body's frame (``face_in_body_depth``), so decoded
    motion puts the face in front of the neck whatever depth the identity's track stored.
    """
    clip = encode(seq)
    if not np.isfinite(clip.mean_shoulder_centre).all():
        raise InputError(
            "the identity's landmarks show no shoulders; audio-to-motion places the body by them"
        )
    pose = seq.pose.astype(np.float64)
    centre, width = _shoulder_frame(pose)
    ok = (
        seq.present["pose"]
        & (width > 1e-3)
        & (seq.pose_visibility[:, list(SHOULDERS)].min(axis=1) > 0.5)
    )
    rest = _nanmean(
        np.where(ok[:, None, None], (pose - centre[:, None]) / width[:, None, None], np.nan)
    )
    face = face_in_body_depth(seq)
    fok = seq.present["face"] & np.isfinite(face).all(axis=(1, 2))
    fc, fs, froll = _face_frame(face)
    head_pts = pose[:, :11] - fc[:, None]
    head_local = np.concatenate(
        [
            _rotate(head_pts[..., :2], -froll) / fs[:, None, None],
            head_pts[..., 2:] / fs[:, None, None],
        ],
        axis=-1,
    )
    both = ok & fok
    return IdentityFrame(
        clip=clip,
        face_z_offset=float(np.mean(fc[fok, 2])),
        pose_rest=np.nan_to_num(rest),
        pose_face_local=np.nan_to_num(_nanmean(np.where(both[:, None, None], head_local, np.nan))),
        pose_world=np.nan_to_num(_nanmean(seq.pose_world.astype(np.float64))),
        follow=_follow_weights(clip.mean_face),
        fps=seq.fps,
        image_size=seq.image_size,
    )


def decode(values: np.ndarray, ident: IdentityFrame) -> LandmarkSequence:
    """(T, D) motion vectors -> LandmarkSequence in the identity's image space."""
    values = np.asarray(values, np.float64)
    t = values.shape[0]
    clip = ident.clip
    out = LandmarkSequence.empty(t, ident.fps, ident.image_size)

    sway = values[:, LAYOUT["body"]][:, :3]
    centre = np.empty((t, 3))
    width = clip.mean_shoulder_width * np.exp(sway[:, 2])
    centre[:, :2] = clip.mean_shoulder_centre[:2] + sway[:, :2] * clip.mean_shoulder_width
    centre[:, 2] = clip.mean_shoulder_centre[2]

    def from_shoulders(rel: np.ndarray) -> np.ndarray:  # (T, N, 3) shoulder frame -> pixels
        return centre[:, None] + rel * width[:, None, None]

    pose_rel = np.repeat(ident.pose_rest[None], t, axis=0)
    pose_rel[:, BODY_POINTS] = values[:, LAYOUT["body"]][:, 3:].reshape(t, -1, 3)

    head = values[:, LAYOUT["head"]] + clip.mean_head
    face_centre = np.stack(
        [
            centre[:, 0] + head[:, 0] * width,
            centre[:, 1] + head[:, 1] * width,
            np.full(t, ident.face_z_offset),
        ],
        axis=1,
    )
    face_scale = width * np.exp(head[:, 2])
    roll = head[:, 3]
    deviation = values[:, LAYOUT["face"]].reshape(t, len(FACE_POINTS), 3)
    local = clip.mean_face[None] + np.einsum("pm,tmc->tpc", ident.follow, deviation)  # (T, 478, 3)

    def from_face(q: np.ndarray) -> np.ndarray:  # (T, N, 3) face-local -> pixels
        xy = _rotate(q[..., :2], roll) * face_scale[:, None, None]
        return (
            np.concatenate([xy, q[..., 2:] * face_scale[:, None, None]], axis=-1)
            + face_centre[:, None]
        )

    pose = from_shoulders(pose_rel)
    pose[:, :11] = from_face(np.repeat(ident.pose_face_local[None], t, axis=0))
    out.pose[:] = pose
    out.pose_visibility[:] = 1.0
    out.pose_world[:] = ident.pose_world
    out.face[:] = from_face(local)
    for part in ("left_hand", "right_hand"):
        sl = LAYOUT[part]
        visible = values[:, sl.stop - 1] > 0
        pts = from_shoulders(values[:, sl.start : sl.stop - 1].reshape(t, 21, 3))
        getattr(out, part)[visible] = pts[visible]
        out.present[part][:] = visible
    for part in ("pose", "face"):
        out.present[part][:] = True
    for part in PARTS:
        out.detected[part][:] = False  # generated, not detected
    for part in ("pose", "left_hand", "right_hand", "face"):
        setattr(out, part, getattr(out, part).astype(np.float32))
    out.pose_world = out.pose_world.astype(np.float32)
    return out
