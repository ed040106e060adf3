"""Speech-driven motion keeps the face in front of the neck, whatever depth the identity's track
stored for it (issue 7: renders of ``anchorgen motion`` output lost lip sync because the
neck was drawn over the mouth of every face condition)."""

from __future__ import annotations

import numpy as np

from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.audio2motion import decode, encode, identity_frame
from anchorgen.motion.audio2motion.evaluate import condition_mouth_cover
from anchorgen.motion.audio2motion.representation import face_in_body_depth
from anchorgen.prepare.holistic import FACE_NOSE_TIP, POSE_NOSE, to_body_depth
from audio_synthetic import LOWER_LIP


def talking(pose: np.ndarray, face: np.ndarray, frames: int = 40) -> LandmarkSequence:
    """The photo's person over ``frames`` frames: the lower lip drops and the head sways."""
    t = np.arange(frames)
    seq = LandmarkSequence.empty(frames, 25.0, (512, 512))
    eyes = np.linalg.norm(face[263, :2] - face[33, :2])
    faces = np.repeat(face[None].astype(np.float64), frames, axis=0)
    faces[:, list(LOWER_LIP), 1] += (0.15 * eyes * (1 + np.sin(t / 3)))[:, None]
    sway = 4.0 * np.sin(t / 7)
    faces[..., 0] += sway[:, None]
    seq.face[:] = faces
    seq.pose[:] = pose
    seq.pose[:, :11, 0] += sway[:, None]
    seq.pose_visibility[:] = 1.0
    seq.pose_world[:] = 0.0
    for part in ("pose", "face"):
        seq.present[part][:] = seq.detected[part][:] = True
    return seq


def test_decoded_face_sits_at_the_pose_nose_depth_whatever_the_track_stored(astronaut_holistic):
    """An identity track with MediaPipe's own face depth decodes like the body-depth one."""
    pose, face = astronaut_holistic
    raw = talking(pose, face)
    aligned = talking(pose, to_body_depth(pose, None, None, face)[2])
    width = float(np.linalg.norm(pose[11, :2] - pose[12, :2]))
    behind = float(face[FACE_NOSE_TIP, 2] - pose[POSE_NOSE, 2]) / width
    assert behind > 1.0  # the photo's raw face lies far behind its pose nose
    np.testing.assert_allclose(face_in_body_depth(aligned), aligned.face, atol=1e-3)
    for identity in (raw, aligned):
        back = decode(encode(identity).values, identity_frame(identity))
        gap = (back.face[:, FACE_NOSE_TIP, 2] - back.pose[:, POSE_NOSE, 2]) / width
        assert np.abs(gap).max() < 0.02, f"face nose {gap.max():+.2f} shoulder widths behind"
        np.testing.assert_allclose(back.face, aligned.face, atol=0.05 * width)


def test_face_condition_of_decoded_motion_shows_the_mouth(astronaut_holistic):
    """The neck capsule never covers the lips of the decoded face's condition render."""
    pose, face = astronaut_holistic
    raw = talking(pose, face)
    back = decode(encode(raw).values, identity_frame(raw))
    frames = np.array([0, 10, 20])
    assert condition_mouth_cover(back.take(frames), progress=False).max() < 0.05
    # the check itself: the track as stored (face behind the neck) has its lips covered
    assert condition_mouth_cover(raw.take(frames), progress=False).min() > 0.5
