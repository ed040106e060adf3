"""Retarget another person's landmark motion onto the target identity's body and face.

Without retargeting a tall driver renders a tall target: the structure condition carries
the driver's bone lengths, framing and face shape, and the model paints the target's
appearance onto the wrong silhouette. Here (issue 4, "Motion sources" 2):

* body: walk the kinematic tree from the shoulder centre, keep the driver's bone
  directions per frame and give every bone the target's length; the root follows the
  driver's motion around its own mean, scaled to the target's shoulder width, and sits at
  the target's typical framing; the head (the neck bone) likewise moves about the target's
  typical place on the shoulders, so the face never sits where the identity's never did;
* hands: carried rigidly to the new wrists, scaled by the hand-size ratio;
* face: AniFaceDiff's facial alignment (``../shared/seeds/003_*.txt``, Sec. 3.3, eq. 2)
  with the face mesh standing in for FLAME: shape from the target, pose and expression
  from the driver, scale aligned to the target.

Everything is pure numpy over ``LandmarkSequence`` (pixels, z larger = farther).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from anchorgen.errors import InputError
from anchorgen.geometry import umeyama
from anchorgen.landmarks import LandmarkSequence

# MediaPipe Pose indices.
NOSE = 0
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12
LEFT_WRIST, RIGHT_WRIST = 15, 16
LEFT_EAR, RIGHT_EAR = 7, 8

ROOT = -1
"""Virtual joint: the shoulder centre, root of the kinematic tree."""

BONES: tuple[tuple[int, int, str], ...] = (
    (ROOT, LEFT_SHOULDER, "shoulder_width"),
    (ROOT, RIGHT_SHOULDER, "shoulder_width"),
    (LEFT_SHOULDER, 13, "upper_arm"),
    (RIGHT_SHOULDER, 14, "upper_arm"),
    (13, LEFT_WRIST, "forearm"),
    (14, RIGHT_WRIST, "forearm"),
    *((LEFT_WRIST, k, "hand") for k in (17, 19, 21)),
    *((RIGHT_WRIST, k, "hand") for k in (18, 20, 22)),
    (ROOT, 23, "torso"),
    (ROOT, 24, "torso"),
    (23, 25, "thigh"),
    (24, 26, "thigh"),
    (25, 27, "shin"),
    (26, 28, "shin"),
    *((27, k, "foot") for k in (29, 31)),
    *((28, k, "foot") for k in (30, 32)),
    (ROOT, NOSE, "neck"),
    *((NOSE, k, "head") for k in range(1, 11)),
)
"""(parent, child, length kind), parents before children. Every pose point is a child once."""

# Hand landmarks: wrist and middle-finger MCP span the palm (hand size).
HAND_WRIST, HAND_MIDDLE_MCP = 0, 9

# Face-mesh points that move little with expression (nose bridge and tip, forehead, eye
# corners, cheekbones, temples): the head's rigid pose is fitted on these only, so that an
# open mouth is not mistaken for a head nod or a zoom.
_NOSE_AND_FOREHEAD = (1, 4, 5, 6, 8, 9, 10, 151, 168, 195, 197)
_EYE_CORNERS_AND_CHEEKS = (33, 133, 263, 362, 226, 446, 127, 356, 234, 454, 93, 323, 116, 345)
FACE_RIGID = np.array([*_NOSE_AND_FOREHEAD, *_EYE_CORNERS_AND_CHEEKS, 50, 280], np.int64)
FACE_NOSE_TIP = 1

MAX_PROPORTION_DEVIATION = 1.25
"""Largest factor by which a bone's target/driver ratio may differ from the shoulder ratio."""


@dataclasses.dataclass
class BodyProportions:
    """One identity's 2D proportions in its own crop space (pixels), measured robustly."""

    lengths: dict[str, float]
    """Bone kind -> median 2D length in px: shoulder_width, upper_arm, forearm, torso,
    thigh, shin, foot, neck (shoulder centre to nose), head (pose nose to eye/ear/mouth
    points), hand (pose wrist to pinky/index/thumb), palm (hand-mesh wrist to middle MCP;
    NaN when no hand was seen), face (RMS radius of the rigid face-mesh points; NaN when
    no face was seen)."""
    root_mean: np.ndarray
    """(3,) mean shoulder centre (x, y, z) over present frames: the typical framing."""
    neck_offset: np.ndarray
    """(3,) median offset of the pose nose from the shoulder centre (x, y, z) over the
    frames that see both: where the head typically sits on the shoulders."""
    face_neutral: np.ndarray | None
    """(478, 3) mean face mesh after removing head pose, centred on its rigid points
    (the identity's face shape with its mean expression); None when no face was seen."""
    image_size: tuple[int, int]
    """(width, height) of the crop space the numbers refer to."""

    @property
    def shoulder_width(self) -> float:
        return self.lengths["shoulder_width"]

    @classmethod
    def measure(cls, target: LandmarkSequence) -> BodyProportions:
        """Medians over frames where the part is present (and both bone ends visible)."""
        pose_ok = np.asarray(target.present["pose"], bool)
        if not pose_ok.any():
            raise InputError("cannot measure body proportions: no frame has body landmarks")
        pose = target.pose.astype(np.float64)  # (T, 33, 3)
        root = _shoulder_centre(pose)  # (T, 3)
        lengths: dict[str, float] = {}
        for kind in dict.fromkeys(kind for _, _, kind in BONES):
            samples = []
            for parent, child, bone_kind in BONES:
                if bone_kind != kind:
                    continue
                start = root if parent == ROOT else pose[:, parent]
                length = np.linalg.norm(pose[:, child, :2] - start[:, :2], axis=-1)
                samples.append(length[_visible_frames(target, parent, child)])
            lengths[kind] = float(np.median(np.concatenate(samples)))
        # Both shoulders hang off the root: the bone is half the width.
        lengths["shoulder_width"] *= 2.0
        lengths["palm"] = _palm_length(target)
        face_neutral = None
        lengths["face"] = float("nan")
        if np.asarray(target.present["face"], bool).any():
            face_neutral = neutral_face(target.face[target.present["face"]])
            lengths["face"] = _rms_radius(face_neutral[FACE_RIGID])
        neck_frames = _visible_frames(target, ROOT, NOSE)
        return cls(
            lengths=lengths,
            root_mean=root[pose_ok].mean(axis=0),
            neck_offset=np.median(pose[neck_frames, NOSE] - root[neck_frames], axis=0),
            face_neutral=face_neutral,
            image_size=tuple(target.image_size),  # type: ignore[arg-type]
        )


def retarget(
    driver: LandmarkSequence,
    target: LandmarkSequence,
    target_props: BodyProportions | None = None,
) -> LandmarkSequence:
    """The driver's motion on the target's body and face, in the target's image space.

    ``target_props`` (from ``BodyProportions.measure(target)``) can be passed to avoid
    measuring again. The result has the driver's length, fps, ``present`` and ``detected``
    flags and pose visibilities.
    """
    if len(driver) == 0:
        raise InputError("the driving motion is empty")
    props_t = target_props if target_props is not None else BodyProportions.measure(target)
    try:
        props_d = BodyProportions.measure(driver)
    except InputError as exc:
        raise InputError(f"cannot retarget the driver: {exc}") from exc
    ratio = _length_ratios(props_t, props_d)

    pose_d = driver.pose.astype(np.float64)  # (T, 33, 3)
    root_d = _shoulder_centre(pose_d)  # (T, 3)
    # Root: the driver's motion about its own mean, scaled, at the target's framing.
    root_out = props_t.root_mean + (root_d - props_d.root_mean) * ratio["shoulder_width"]
    # Head: the driver's motion about its own typical place, at the target's typical place.
    head = {NOSE: (props_d.neck_offset, props_t.neck_offset)}
    pose_out = _walk_tree(pose_d, root_d, root_out, ratio, head)

    world_d = driver.pose_world.astype(np.float64)
    world_root = _shoulder_centre(world_d)
    world_out = _walk_tree(world_d, world_root, world_root, ratio)

    def body_map(points: np.ndarray) -> np.ndarray:
        """Fallback for frames without a body: the root's similarity applied to points."""
        return props_t.root_mean + (points - props_d.root_mean) * ratio["shoulder_width"]

    pose_ok = np.asarray(driver.present["pose"], bool)
    hands = {}
    for part, wrist in (("left_hand", LEFT_WRIST), ("right_hand", RIGHT_WRIST)):
        hand = getattr(driver, part).astype(np.float64)  # (T, 21, 3)
        # Rigid carry: the hand keeps its offset from the pose wrist, scaled to the target.
        offset = (hand - pose_d[:, wrist, None]) * ratio["palm"]
        carried = pose_out[:, wrist, None] + offset
        hands[part] = np.where(pose_ok[:, None, None], carried, body_map(hand))

    face_out = _retarget_face(driver, props_d, props_t, ratio["face"], pose_out, body_map)

    return dataclasses.replace(
        driver,
        pose=pose_out.astype(np.float32),
        pose_world=world_out.astype(np.float32),
        left_hand=hands["left_hand"].astype(np.float32),
        right_hand=hands["right_hand"].astype(np.float32),
        face=face_out.astype(np.float32),
        present={k: np.asarray(v, bool).copy() for k, v in driver.present.items()},
        detected={k: np.asarray(v, bool).copy() for k, v in driver.detected.items()},
        image_size=tuple(props_t.image_size),
    )


def neutral_face(faces: np.ndarray, iterations: int = 3) -> np.ndarray:
    """Generalised Procrustes mean of face meshes (N, 478, 3) -> (478, 3).

    Frames are aligned on the rigid points; the mean is centred on its rigid points and
    has the frames' median rigid RMS radius (so its size is the identity's typical size).
    """
    faces = np.asarray(faces, np.float64)
    reference = faces[0] - faces[0][FACE_RIGID].mean(axis=0)
    for _ in range(iterations):
        s, r, t = umeyama(faces[:, FACE_RIGID], reference[FACE_RIGID])
        aligned = s[:, None, None] * faces @ np.swapaxes(r, -1, -2) + t[:, None, :]
        reference = aligned.mean(axis=0)
        reference -= reference[FACE_RIGID].mean(axis=0)
    size = np.median([_rms_radius(f[FACE_RIGID]) for f in faces])
    return reference * (size / _rms_radius(reference[FACE_RIGID]))


def _retarget_face(
    driver: LandmarkSequence,
    props_d: BodyProportions,
    props_t: BodyProportions,
    face_ratio: float,
    pose_out: np.ndarray,
    body_map,
) -> np.ndarray:
    """AniFaceDiff facial alignment (eq. 2) on face meshes -> (T, 478, 3).

    Driver frame f_t = s_t R_t (n_d + e_t) + t_t with n_d the driver's neutral mesh;
    output = s_t R_t (A n_T + k e_t), placed at the retargeted nose, where n_T is the
    target's neutral mesh, A rotates it into n_d's canonical frame and k is the face-size
    ratio (scale alignment).
    """
    face_ok = np.asarray(driver.present["face"], bool)
    out = np.full(driver.face.shape, np.nan)
    if not face_ok.any():
        return out
    neutral_d = props_d.face_neutral
    assert neutral_d is not None  # measured whenever a face is present
    if props_t.face_neutral is None:
        warnings.warn(
            "the target has no face landmarks: the driver's face shape is used, scaled to the body",
            stacklevel=3,
        )
        neutral_t = neutral_d * face_ratio
    else:
        _, align, _ = umeyama(props_t.face_neutral[FACE_RIGID], neutral_d[FACE_RIGID])
        neutral_t = props_t.face_neutral @ align.T  # target shape in the driver's canonical frame

    frames = driver.face[face_ok].astype(np.float64)  # (N, 478, 3)
    s, r, t = umeyama(neutral_d[FACE_RIGID], frames[:, FACE_RIGID])  # neutral -> frame
    canonical = np.swapaxes(r, -1, -2) @ np.swapaxes(frames - t[:, None], -1, -2)
    canonical = np.swapaxes(canonical, -1, -2) / s[:, None, None]  # (N, 478, 3) de-posed
    expression = canonical - neutral_d  # residual in the canonical frame
    shaped = neutral_t + face_ratio * expression
    posed = s[:, None, None] * shaped @ np.swapaxes(r, -1, -2)  # (N, 478, 3), nose not placed

    pose_ok = np.asarray(driver.present["pose"], bool)[face_ok]
    drv_nose_mesh = frames[:, FACE_NOSE_TIP]
    drv_nose_pose = driver.pose[face_ok, NOSE].astype(np.float64)
    anchor = np.where(
        pose_ok[:, None],
        pose_out[face_ok, NOSE] + face_ratio * (drv_nose_mesh - drv_nose_pose),
        body_map(drv_nose_mesh),
    )
    out[face_ok] = posed - posed[:, FACE_NOSE_TIP, None] + anchor[:, None]
    return out


def _walk_tree(
    pose: np.ndarray,
    root: np.ndarray,
    root_out: np.ndarray,
    ratio: dict[str, float],
    anchored: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Rebuild (T, 33, 3) points bone by bone from ``root_out``.

    Each bone keeps the driver's per-frame 3D vector (direction and foreshortening) scaled
    by target/driver median length, so its typical length becomes the target's. Forcing
    every frame to one constant 2D length instead would stretch limbs that point at the
    camera. A bone whose child is in ``anchored`` (child -> (driver's typical bone vector,
    target's typical bone vector), each (3,)) is instead the target's typical vector plus
    the driver's deviation from its own, scaled: its typical placement becomes the target's
    in direction as well as length, whatever the bone-length clamp.
    """
    anchored = anchored or {}
    out = np.full(pose.shape, np.nan)
    for parent, child, kind in BONES:
        start_d = root if parent == ROOT else pose[:, parent]
        start_o = root_out if parent == ROOT else out[:, parent]
        bone = pose[:, child] - start_d  # (T, 3)
        if child in anchored:
            typical_d, typical_t = anchored[child]
            out[:, child] = start_o + typical_t + (bone - typical_d) * ratio[kind]
        else:
            out[:, child] = start_o + bone * ratio[kind]
    return out


def _length_ratios(target: BodyProportions, driver: BodyProportions) -> dict[str, float]:
    """Target/driver length per bone kind, with fallbacks for parts one side never showed.

    The shoulder width, seen nearly parallel to the image in talking-to-camera footage,
    sets the body scale. Other ratios may differ from it by at most
    ``MAX_PROPORTION_DEVIATION``: a larger difference is foreshortening, not anatomy (a
    driver at a desk whose forearms point at the camera all clip long has a median 2D
    forearm of about half its upper arm; taken at face value it would give the target
    arms twice too long whenever the driver stretches them).
    """
    body = _safe_ratio(target.shoulder_width, driver.shoulder_width, "shoulder_width")
    ratio = {}
    for kind in dict.fromkeys(kind for _, _, kind in BONES):
        ratio[kind] = _safe_ratio(target.lengths[kind], driver.lengths[kind], kind)
    face = target.lengths["face"] / driver.lengths["face"]
    ratio["face"] = float(face) if np.isfinite(face) and face > 0 else ratio["head"]
    ratio["head"] = ratio["face"]  # the pose's eye/ear/mouth points follow the face mesh
    palm = target.lengths["palm"] / driver.lengths["palm"]
    ratio["palm"] = float(palm) if np.isfinite(palm) and palm > 0 else ratio["hand"]
    low, high = body / MAX_PROPORTION_DEVIATION, body * MAX_PROPORTION_DEVIATION
    return {kind: float(np.clip(value, low, high)) for kind, value in ratio.items()}


def _safe_ratio(target: float, driver: float, kind: str) -> float:
    if not (np.isfinite(target) and np.isfinite(driver)) or driver <= 1e-6 or target <= 1e-6:
        raise InputError(f"cannot retarget: the {kind.replace('_', ' ')} length is degenerate")
    return float(target / driver)


def _shoulder_centre(pose: np.ndarray) -> np.ndarray:
    return 0.5 * (pose[..., LEFT_SHOULDER, :] + pose[..., RIGHT_SHOULDER, :])


def _visible_frames(seq: LandmarkSequence, parent: int, child: int) -> np.ndarray:
    """(T,) frames with a body whose bone ends are visible (all body frames if none are)."""
    present = np.asarray(seq.present["pose"], bool)
    ends = [child] + ([LEFT_SHOULDER, RIGHT_SHOULDER] if parent == ROOT else [parent])
    visible = present & (seq.pose_visibility[:, ends] >= 0.5).all(axis=1)
    return visible if visible.any() else present


def _palm_length(seq: LandmarkSequence) -> float:
    lengths = []
    for part in ("left_hand", "right_hand"):
        ok = np.asarray(seq.present[part], bool)
        hand = getattr(seq, part)[ok].astype(np.float64)
        lengths.append(
            np.linalg.norm(hand[:, HAND_MIDDLE_MCP, :2] - hand[:, HAND_WRIST, :2], axis=-1)
        )
    all_lengths = np.concatenate(lengths)
    return float(np.median(all_lengths)) if all_lengths.size else float("nan")


def _rms_radius(points: np.ndarray) -> float:
    centred = points - points.mean(axis=0)
    return float(np.sqrt((centred**2).sum(axis=-1).mean()))
