"""Retargeting: the driver's motion on the target's proportions, framing and face shape."""

from __future__ import annotations

import numpy as np
import pytest

from anchorgen.errors import InputError
from anchorgen.geometry import umeyama
from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.retarget import (
    BONES,
    FACE_RIGID,
    MAX_PROPORTION_DEVIATION,
    ROOT,
    BodyProportions,
    neutral_face,
    retarget,
)

BODY_KINDS = ("shoulder_width", "upper_arm", "forearm", "torso", "neck", "hand", "thigh", "shin")
UPPER_LIP, LOWER_LIP = 13, 14
LOWER_LIP_POINTS = (14, 17, 84, 87, 178, 314, 317, 402, 405)
EYE_OUTER = (33, 263)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (
        np.cos(yaw),
        np.sin(yaw),
        np.cos(pitch),
        np.sin(pitch),
        np.cos(roll),
        np.sin(roll),
    )
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def _face_shape(rng: np.random.Generator, eye_distance: float) -> np.ndarray:
    """(478, 3) a face-like point cloud with eye corners ``eye_distance`` px apart.

    Faces share one layout (a fixed seed) plus an identity-specific deviation.
    """
    common = np.random.default_rng(123).normal(size=(478, 3)) * np.array([0.45, 0.6, 0.2])
    shape = common + rng.normal(size=(478, 3)) * 0.05
    shape[EYE_OUTER[0]] = (-0.5, -0.2, 0.0)
    shape[EYE_OUTER[1]] = (0.5, -0.2, 0.0)
    shape[UPPER_LIP] = (0.0, 0.5, -0.1)
    shape[LOWER_LIP] = (0.0, 0.7, -0.1)
    shape[1] = (0.0, 0.1, -0.35)  # nose tip, nearest the camera
    return shape * eye_distance


def _body(
    rng: np.random.Generator,
    num_frames: int,
    scale: float,
    root_xy: tuple[float, float],
    eye_distance: float,
    mouth_amplitude: float,
    image_size: tuple[int, int],
) -> tuple[LandmarkSequence, np.ndarray]:
    """A synthetic person: every bone length is ``scale`` times a base length.

    Returns the sequence and the per-frame mouth opening added by the expression.
    """
    t = np.arange(num_frames)
    base = {"shoulder_width": 50.0, "upper_arm": 70.0, "forearm": 60.0, "hand": 15.0}
    base |= {"torso": 120.0, "thigh": 100.0, "shin": 90.0, "foot": 20.0, "neck": 60.0, "head": 12.0}
    direction0 = {}
    for _, child, _ in BONES:
        direction0[child] = rng.normal(size=3) * np.array([1.0, 1.0, 0.3])
    direction0[11], direction0[12] = np.array([1.0, 0, 0]), np.array([-1.0, 0, 0])
    direction0[0] = np.array([0, -1.0, -0.1])
    phase = rng.uniform(0, 2 * np.pi, size=33)
    pose = np.zeros((num_frames, 33, 3))
    root = np.stack(
        [
            root_xy[0] + 8 * np.sin(0.2 * t),
            root_xy[1] + 4 * np.cos(0.15 * t),
            10 + 3 * np.sin(0.1 * t),
        ],
        -1,
    )
    for parent, child, kind in BONES:
        angle = 0.4 * np.sin(0.3 * t + phase[child])  # (T,)
        rot = np.stack([_rotation(0.3 * a, 0.2 * a, a) for a in angle])  # (T, 3, 3)
        direction = rot @ (direction0[child] / np.linalg.norm(direction0[child]))
        length = base[kind] * scale * (0.5 if kind == "shoulder_width" else 1.0)
        start = root if parent == ROOT else pose[:, parent]
        pose[:, child] = start + length * direction
    seq = LandmarkSequence.empty(num_frames, 25.0, image_size)
    seq.pose[:] = pose
    seq.pose_visibility[:] = 1.0
    seq.pose_world[:] = pose / 500.0
    for part, wrist in (("left_hand", 15), ("right_hand", 16)):
        hand_shape = rng.normal(size=(21, 3)) * 8 * scale
        hand_shape[0] = 0.0
        hand_shape[9] = (0.0, 20.0 * scale, 0.0)  # palm length 20 * scale
        rot = np.stack([_rotation(0.2 * np.sin(0.2 * i), 0.1, 0.3 * np.cos(0.1 * i)) for i in t])
        getattr(seq, part)[:] = (
            pose[:, wrist, None] + 3 * scale + hand_shape @ np.swapaxes(rot, 1, 2)
        )
    shape = _face_shape(rng, eye_distance)
    mouth = mouth_amplitude * (0.5 + 0.5 * np.sin(0.7 * t))  # (T,) px
    for i in t:
        face = shape.copy()
        face[list(LOWER_LIP_POINTS), 1] += mouth[i]
        rot = _rotation(0.3 * np.sin(0.11 * i), 0.2 * np.cos(0.07 * i), 0.1 * np.sin(0.05 * i))
        face = face @ rot.T
        seq.face[i] = face - face[1] + pose[i, 0] + np.array([0.0, 2.0, -5.0])
    for part in seq.present:
        seq.present[part][:] = True
        seq.detected[part][:] = True
    return seq, mouth


@pytest.fixture(scope="module")
def people():
    rng = np.random.default_rng(0)
    target, _ = _body(rng, 60, 1.0, (256.0, 190.0), 60.0, 2.0, (512, 512))
    driver, mouth = _body(rng, 50, 1.3, (640.0, 300.0), 78.0, 15.0, (1280, 720))
    return target, driver, mouth


def _iod(faces: np.ndarray) -> np.ndarray:
    return np.linalg.norm(faces[..., EYE_OUTER[0], :] - faces[..., EYE_OUTER[1], :], axis=-1)


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(40, 3))
    rot = _rotation(0.4, -0.3, 1.2)
    dst = 2.5 * src @ rot.T + np.array([3.0, -1.0, 7.0])
    scale, r, t = umeyama(src, dst)
    assert scale == pytest.approx(2.5)
    np.testing.assert_allclose(r, rot, atol=1e-9)
    np.testing.assert_allclose(t, [3.0, -1.0, 7.0], atol=1e-9)


def test_proportions_are_measured_in_pixels(people):
    target, driver, _ = people
    props = BodyProportions.measure(target)
    # 2D lengths: turned shoulders look narrower than the 50 px 3D width.
    assert props.shoulder_width == pytest.approx(50.0, rel=0.05)
    driver_props = BodyProportions.measure(driver)
    # The problem retargeting solves: the driver is 1.3x the target everywhere.
    for kind in BODY_KINDS:
        assert driver_props.lengths[kind] / props.lengths[kind] == pytest.approx(1.3, rel=0.05), (
            kind
        )
    assert driver_props.lengths["palm"] == pytest.approx(26.0, rel=0.01)
    np.testing.assert_allclose(props.root_mean[:2], [256.0, 190.0], atol=2.0)
    assert props.face_neutral.shape == (478, 3)
    assert _iod(props.face_neutral) == pytest.approx(60.0, rel=0.01)


def test_retargeting_gives_target_bone_lengths_and_framing(people):
    target, driver, _ = people
    props_t = BodyProportions.measure(target)
    out = retarget(driver, target, props_t)
    assert len(out) == len(driver) and out.image_size == target.image_size and out.fps == driver.fps
    measured = BodyProportions.measure(out)
    for kind in (*BODY_KINDS, "palm"):
        # The neck keeps the target's typical offset (below), so its median length only nearly.
        tolerance = 0.03 if kind == "neck" else 0.01
        assert measured.lengths[kind] == pytest.approx(props_t.lengths[kind], rel=tolerance), kind
    np.testing.assert_allclose(measured.root_mean, props_t.root_mean, atol=0.5)
    np.testing.assert_allclose(measured.neck_offset, props_t.neck_offset, atol=1e-3)
    # Root motion: the driver's, scaled by the shoulder-width ratio.
    width_ratio = props_t.shoulder_width / BodyProportions.measure(driver).shoulder_width
    root_out = 0.5 * (out.pose[:, 11] + out.pose[:, 12])
    root_d = 0.5 * (driver.pose[:, 11] + driver.pose[:, 12])
    np.testing.assert_allclose(
        root_out - root_out.mean(0), (root_d - root_d.mean(0)) * width_ratio, atol=1e-3
    )


def test_foreshortened_driver_bones_do_not_stretch_the_target(people):
    target, driver, _ = people
    driver = driver.slice(0, len(driver))
    driver.pose = driver.pose.copy()
    for elbow, wrist in ((13, 15), (14, 16)):  # forearms pointing at the camera all clip
        driver.pose[:, wrist, :2] = driver.pose[:, elbow, :2] + 0.4 * (
            driver.pose[:, wrist, :2] - driver.pose[:, elbow, :2]
        )
    props_t, props_d = BodyProportions.measure(target), BodyProportions.measure(driver)
    body = props_t.shoulder_width / props_d.shoulder_width
    out = BodyProportions.measure(retarget(driver, target, props_t))
    assert out.lengths["forearm"] == pytest.approx(
        props_d.lengths["forearm"] * body * MAX_PROPORTION_DEVIATION, rel=1e-3
    )
    assert out.lengths["forearm"] < 0.8 * props_t.lengths["forearm"]
    assert out.lengths["upper_arm"] == pytest.approx(props_t.lengths["upper_arm"], rel=0.01)


def test_bone_directions_follow_the_driver(people):
    target, driver, _ = people
    out = retarget(driver, target)
    for parent, child, _ in BONES:
        if parent == ROOT:
            continue
        d = driver.pose[:, child] - driver.pose[:, parent]
        o = out.pose[:, child] - out.pose[:, parent]
        cosine = (d * o).sum(-1) / np.linalg.norm(d, axis=-1) / np.linalg.norm(o, axis=-1)
        assert cosine.min() > 0.9999, (parent, child)


def test_hands_are_carried_rigidly_and_rescaled(people):
    target, driver, _ = people
    out = retarget(driver, target)
    ratio = (
        BodyProportions.measure(target).lengths["palm"]
        / BodyProportions.measure(driver).lengths["palm"]
    )
    assert ratio == pytest.approx(1 / 1.3, rel=0.01)
    for part, wrist in (("left_hand", 15), ("right_hand", 16)):
        offset_d = getattr(driver, part) - driver.pose[:, wrist, None]
        offset_o = getattr(out, part) - out.pose[:, wrist, None]
        np.testing.assert_allclose(offset_o, offset_d * ratio, atol=1e-3)


def test_face_takes_target_shape_and_driver_pose_and_expression(people):
    target, driver, mouth = people
    props_t = BodyProportions.measure(target)
    props_d = BodyProportions.measure(driver)
    out = retarget(driver, target, props_t)
    # Shape and scale from the target: inter-ocular distance is the target's, not 1.3x.
    assert _iod(driver.face).mean() == pytest.approx(78.0, rel=0.01)
    np.testing.assert_allclose(_iod(out.face), _iod(props_t.face_neutral), rtol=0.01)
    # Expression from the driver, scaled by the face-size ratio.
    gap = np.linalg.norm(out.face[:, LOWER_LIP] - out.face[:, UPPER_LIP], axis=-1)
    assert np.corrcoef(gap, mouth)[0, 1] > 0.99
    slope = np.polyfit(mouth, gap, 1)[0]
    assert slope == pytest.approx(props_t.lengths["face"] / props_d.lengths["face"], rel=0.03)
    # Pose from the driver: per-frame head rotation relative to each one's own neutral face.
    _, rot_d, _ = umeyama(neutral_face(driver.face)[FACE_RIGID], driver.face[:, FACE_RIGID])
    _, rot_o, _ = umeyama(neutral_face(out.face)[FACE_RIGID], out.face[:, FACE_RIGID])
    relative = np.swapaxes(rot_d, 1, 2) @ rot_o
    angle = np.degrees(np.arccos(np.clip((np.trace(relative, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angle.max() < 1.0
    # Placed on the retargeted head: the mesh nose sits by the retargeted pose nose.
    assert np.linalg.norm(out.face[:, 1] - out.pose[:, 0], axis=-1).max() < 10.0


def test_present_flags_are_kept_and_absent_parts_stay_missing(people):
    target, driver, _ = people
    driver = driver.slice(0, len(driver))
    driver.present = {k: v.copy() for k, v in driver.present.items()}
    driver.present["face"][[3, 4]] = False
    driver.face[[3, 4]] = np.nan
    driver.present["left_hand"][10:20] = False
    driver.left_hand[10:20] = np.nan
    driver.present["pose"][7] = False
    driver.pose[7] = np.nan
    out = retarget(driver, target)
    for part in driver.present:
        np.testing.assert_array_equal(out.present[part], driver.present[part])
    assert np.isnan(out.face[[3, 4]]).all() and np.isnan(out.left_hand[10:20]).all()
    assert np.isnan(out.pose[7]).all()
    # A face without a body in that frame is still placed, by the root's similarity.
    assert np.isfinite(out.face[7]).all() and np.isfinite(out.right_hand[7]).all()
    assert np.isfinite(out.face[~np.isin(np.arange(len(out)), [3, 4])]).all()


def test_target_without_body_is_refused(people):
    target, driver, _ = people
    empty = LandmarkSequence.empty(5, 25.0, (512, 512))
    with pytest.raises(InputError, match="body landmarks"):
        retarget(driver, empty)
    with pytest.raises(InputError, match="driver"):
        retarget(empty, target)
