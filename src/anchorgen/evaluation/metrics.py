"""Frame, landmark, identity, flicker and face-motion metrics: pure functions over numpy arrays.

Frames are RGB uint8, (T, H, W, 3) or one (H, W, 3). A ``valid`` mask, (H, W) or (T, H, W)
bool, marks real image pixels; False marks padding the crop added, which every metric here
ignores. Landmark coordinates follow :class:`anchorgen.landmarks.LandmarkSequence` (pixels).

What the papers measured and what this module measures instead:

- LMD face / body / hand (Make-Your-Anchor+ V-A4, Table I): the paper detects landmarks with
  OpenPose; anchorgen uses MediaPipe Holistic on both generated and ground-truth frames, so
  numbers are comparable between anchorgen runs, not with the paper's table.
- CSIM (AniFaceDiff 4.3) / F-SIM (EMO 4.2): the papers use ArcFace-style embeddings; anchorgen
  uses dlib's face-recognition ResNet, which ships offline in ``face_recognition_models``.
- APD / AED (AniFaceDiff 4.3): the paper uses 3DMM pose and expression parameters; anchorgen
  uses a rigid fit of the MediaPipe face mesh (pose) and its pose-normalised residual at the
  mouth, eyes and brows (expression); E-FID (EMO 4.2) is the Frechet distance of those
  expression vectors instead of 3DMM expression parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import itertools
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from anchorgen.errors import InputError
from anchorgen.geometry import umeyama
from anchorgen.landmarks import LandmarkSequence

SSIM_SIGMA = 1.5
"""Gaussian window of Wang et al. 2004 (11 taps with skimage's truncate=3.5)."""
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)
"""Half-width of the SSIM window: pixels closer than this to padding are not averaged."""

BODY_POINTS = (0, 11, 12, 13, 14, 15, 16, 23, 24)
"""MediaPipe pose indices scored by LMD (body): nose, shoulders, elbows, wrists, hips.

Legs are left out: anchor videos show the upper body and MediaPipe guesses unseen legs."""
MIN_BODY_VISIBILITY = 0.5
"""Body points whose ground-truth MediaPipe visibility is below this are not scored."""
OUTLIER_MAD_K = 3.5
"""Frames whose distance exceeds median + k * 1.4826 * MAD are outliers (Iglewicz-Hoaglin)."""
OUTLIER_MIN_SPREAD = 0.01
"""The robust spread is at least this fraction of the median, so nearly identical distances
(float noise, MAD ~ 0) produce no outliers."""
NUM_FACE_MESH = 468
"""Face-mesh points without the 10 iris points (468..477)."""


# ----------------------------------------------------------------------------------------------
# input checks


def _as_video(frames: np.ndarray, name: str) -> np.ndarray:
    """(H, W, 3) or (T, H, W, 3) uint8 -> (T, H, W, 3)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(
            f"{name}: expected RGB uint8 frames (T, H, W, 3) or (H, W, 3), "
            f"got {frames.dtype} {frames.shape}"
        )
    if frames.shape[0] == 0:
        raise InputError(f"{name}: no frames")
    return frames


def _check_pair(gen: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gen, gt = _as_video(gen, "generated"), _as_video(gt, "ground truth")
    if gen.shape[0] != gt.shape[0]:
        raise InputError(
            f"generated has {gen.shape[0]} frames, ground truth has {gt.shape[0]}: "
            "evaluate the same frames of both"
        )
    if gen.shape != gt.shape:
        raise InputError(
            f"generated frames are {gen.shape[2]}x{gen.shape[1]}, ground truth "
            f"{gt.shape[2]}x{gt.shape[1]}: resize or crop them to one size first"
        )
    return gen, gt


def _valid_mask(valid: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    """``valid`` (H, W) or (T, H, W) bool or None -> (T, H, W) bool for frames of ``shape``."""
    t, h, w = shape[:3]
    if valid is None:
        return np.ones((t, h, w), bool)
    valid = np.asarray(valid)
    if valid.shape == (h, w):
        valid = np.broadcast_to(valid, (t, h, w))
    if valid.shape != (t, h, w):
        raise InputError(
            f"valid mask has shape {valid.shape}, expected ({h}, {w}) or ({t}, {h}, {w})"
        )
    return valid.astype(bool)


# ----------------------------------------------------------------------------------------------
# PSNR / SSIM


@dataclasses.dataclass(frozen=True)
class FrameMetric:
    """A per-frame score and its mean over frames."""

    mean: float
    per_frame: np.ndarray
    """(T,) float64."""


def psnr(gen: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> FrameMetric:
    """Peak signal-to-noise ratio in dB (peak 255) per frame over valid pixels.

    Identical frames give +inf (and so does the mean when any frame is +inf).
    """
    gen, gt = _check_pair(gen, gt)
    mask = _valid_mask(valid, gen.shape)
    scores = np.empty(gen.shape[0])
    for i in range(gen.shape[0]):
        if not mask[i].any():
            raise InputError(f"frame {i}: the valid mask has no pixels")
        diff = gen[i][mask[i]].astype(np.float64) - gt[i][mask[i]].astype(np.float64)  # (P, 3)
        mse = float(np.mean(diff**2))
        scores[i] = np.inf if mse == 0.0 else 10.0 * np.log10(255.0**2 / mse)
    return FrameMetric(float(np.mean(scores)), scores)


def ssim(gen: np.ndarray, gt: np.ndarray, valid: np.ndarray | None = None) -> FrameMetric:
    """Structural similarity (Wang et al. 2004: Gaussian window, sigma 1.5) per frame.

    The SSIM map (skimage, ``full=True``) is averaged over valid pixels whose whole window
    lies inside the valid region, so padding content has no influence at all.
    """
    from scipy.ndimage import binary_erosion
    from skimage.metrics import structural_similarity

    gen, gt = _check_pair(gen, gt)
    mask = _valid_mask(valid, gen.shape)
    window = np.ones((2 * SSIM_RADIUS + 1,) * 2, bool)
    scores = np.empty(gen.shape[0])
    for i in range(gen.shape[0]):
        inner = binary_erosion(mask[i], window, border_value=1)
        if not inner.any():
            raise InputError(
                f"frame {i}: no valid pixel lies {SSIM_RADIUS} px away from the padding"
            )
        _, ssim_map = structural_similarity(
            gen[i],
            gt[i],
            channel_axis=2,
            data_range=255,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            use_sample_covariance=False,
            full=True,
        )  # (H, W, 3)
        scores[i] = float(ssim_map[inner].mean())
    return FrameMetric(float(np.mean(scores)), scores)


FLOOR_SIZE = 128
"""Side at which DESIGN.md measured its quality floor (a plain pixel UNet at 128 x 128)."""


def area_downsampled(
    frames: np.ndarray, valid: np.ndarray, size: int = FLOOR_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) and their valid mask (H, W) at ``size`` x ``size``, as the 128 px
    scores see them: frames area-averaged (``cv2.INTER_AREA``), the mask nearest-sampled."""
    import cv2

    if frames.shape[1] < size or frames.shape[2] < size:
        raise InputError(f"frames of {frames.shape[2]}x{frames.shape[1]} px are under {size} px")
    small = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    mask = cv2.resize(valid.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)
    return small, mask > 0


def grid_contrast(frames: np.ndarray, period: int, valid: np.ndarray | None = None) -> float:
    """How strongly frames show a grid of ``period`` pixels (a pixel-unshuffle or VAE codec's
    cells, origin at the top-left pixel): 0 for none.

    Per axis, the mean absolute step between neighbouring pixels that straddle a cell border
    (x % period == period - 1 to the next) over the mean step between neighbours inside a cell;
    the result is the mean over both axes of |ratio - 1|. Real frames of the kitchen clip score
    0.02-0.04; the plain grid in one body's padding (docs/BENCHMARKS.md, tenth session) 0.86.
    Pairs touching a padding pixel (``valid`` False) are left out.
    """
    frames = _as_video(frames, "frames").astype(np.float32)
    mask = _valid_mask(valid, frames.shape)
    if period < 2 or min(frames.shape[1:3]) <= period:
        raise InputError(f"grid period {period} needs frames larger than it and >= 2")
    deviations = []
    for axis in (1, 2):  # y, x of (T, H, W, 3)
        n = frames.shape[axis] - 1
        steps = np.abs(np.diff(frames, axis=axis)).mean(-1)  # (T, H-1, W) or (T, H, W-1)
        both = np.take(mask, range(n), axis=axis) & np.take(mask, range(1, n + 1), axis=axis)
        border = (np.arange(n) % period == period - 1).reshape((-1, 1) if axis == 1 else (1, -1))
        at_border, inside = both & border, both & ~border
        if not at_border.any() or not inside.any():
            raise InputError("the valid mask leaves no neighbouring pixels to compare")
        ratio = steps[at_border].mean() / max(float(steps[inside].mean()), 1e-12)
        deviations.append(abs(ratio - 1.0))
    return float(np.mean(deviations))


# ----------------------------------------------------------------------------------------------
# per-frame distances with missing detections counted


@dataclasses.dataclass(frozen=True)
class DistanceResult:
    """A distance averaged over the frames where both generated and ground truth are usable."""

    mean: float
    """NaN when no frame could be scored."""
    median: float
    n_frames_used: int
    n_missing_generated: int
    """Frames usable in the ground truth where the generated frame lacks the part."""
    n_missing_gt: int
    """Frames where the ground truth lacks the part (cannot be scored)."""
    n_outliers: int
    """Frames scored but excluded as outliers."""
    per_frame: np.ndarray
    """(T,) float64, NaN where the frame was not used."""

    def as_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "per_frame"}


def _summarise(
    per_frame: np.ndarray, scorable: np.ndarray, gt_ok: np.ndarray, outlier_k: float | None
) -> DistanceResult:
    """Build a DistanceResult; ``per_frame`` is NaN outside ``scorable``."""
    per_frame = per_frame.astype(np.float64).copy()
    per_frame[~scorable] = np.nan
    n_outliers = 0
    if outlier_k is not None and scorable.any():
        scores = per_frame[scorable]
        median = np.median(scores)
        spread = max(1.4826 * np.median(np.abs(scores - median)), OUTLIER_MIN_SPREAD * median)
        outlier = scorable & (per_frame > median + outlier_k * spread)
        n_outliers = int(outlier.sum())
        per_frame[outlier] = np.nan
    used = ~np.isnan(per_frame)
    n_used = int(used.sum())
    return DistanceResult(
        mean=float(per_frame[used].mean()) if n_used else float("nan"),
        median=float(np.median(per_frame[used])) if n_used else float("nan"),
        n_frames_used=n_used,
        n_missing_generated=int((gt_ok & ~scorable).sum()),
        n_missing_gt=int((~gt_ok).sum()),
        n_outliers=n_outliers,
        per_frame=per_frame,
    )


def _flags(present: np.ndarray, t: int, name: str) -> np.ndarray:
    present = np.asarray(present, bool)
    if present.shape != (t,):
        raise InputError(f"{name} has shape {present.shape}, expected ({t},)")
    return present


def landmark_distance(
    gen_pts: np.ndarray,
    gt_pts: np.ndarray,
    present_gen: np.ndarray,
    present_gt: np.ndarray,
    image_size: tuple[int, int],
    scale_to: float = 512.0,
    point_mask: np.ndarray | None = None,
    outlier_k: float | None = OUTLIER_MAD_K,
) -> DistanceResult:
    """Landmark mean distance (LMD, Make-Your-Anchor+ V-A4): mean 2D Euclidean point distance.

    ``gen_pts``, ``gt_pts``: (T, N, 2 or 3) pixels in an image of ``image_size`` (W, H);
    only x, y are used, rescaled so the longer image side is ``scale_to`` px (the paper's
    512 px crops). ``present_*``: (T,) bool per frame; pass ``detected`` flags, not
    gap-interpolated ones. ``point_mask`` (T, N) bool limits the points scored per frame.

    The paper excludes outliers without saying how; here frames whose distance exceeds
    median + ``outlier_k`` * max(1.4826 * MAD, 1% of the median) are excluded and counted
    (``None`` keeps all).
    """
    gen_pts, gt_pts = np.asarray(gen_pts, np.float64), np.asarray(gt_pts, np.float64)
    if gen_pts.ndim != 3 or gen_pts.shape[-1] not in (2, 3) or gen_pts.shape != gt_pts.shape:
        raise InputError(
            f"landmarks must be two (T, N, 2|3) arrays of one shape, got {gen_pts.shape} "
            f"and {gt_pts.shape}"
        )
    t, n = gen_pts.shape[:2]
    gt_ok = _flags(present_gt, t, "present_gt")
    gen_ok = _flags(present_gen, t, "present_gen")
    if point_mask is None:
        point_mask = np.ones((t, n), bool)
    point_mask = np.asarray(point_mask, bool)
    if point_mask.shape != (t, n):
        raise InputError(f"point_mask has shape {point_mask.shape}, expected ({t}, {n})")
    point_mask = point_mask & ~np.isnan(gt_pts[..., :2]).any(-1)
    gt_ok = gt_ok & point_mask.any(1)
    scale = float(scale_to) / float(max(image_size))
    dist = np.linalg.norm(gen_pts[..., :2] - gt_pts[..., :2], axis=-1) * scale  # (T, N)
    dist = np.where(point_mask, dist, np.nan)
    gen_ok = gen_ok & ~np.isnan(np.where(point_mask, dist, 0.0)).any(1)
    scorable = gt_ok & gen_ok
    with np.errstate(invalid="ignore"):
        per_frame = np.where(
            scorable, np.nanmean(np.where(scorable[:, None], dist, 0.0), 1), np.nan
        )
    return _summarise(per_frame, scorable, gt_ok, outlier_k)


def _check_sequences(gen: LandmarkSequence, gt: LandmarkSequence) -> None:
    if len(gen) != len(gt):
        raise InputError(f"generated landmarks have {len(gen)} frames, ground truth {len(gt)}")
    if tuple(gen.image_size) != tuple(gt.image_size):
        raise InputError(
            f"generated landmarks are in a {gen.image_size} image, ground truth in {gt.image_size}"
        )


def landmark_distances(
    gen: LandmarkSequence,
    gt: LandmarkSequence,
    scale_to: float = 512.0,
    outlier_parts: tuple[str, ...] = ("hand",),
) -> dict[str, DistanceResult]:
    """LMD face / body / hand between two sequences detected on generated and GT frames.

    Face: all 478 mesh points. Body: :data:`BODY_POINTS` with GT visibility >= 0.5. Hand: the
    left and right hands are scored as separate instances (2T rows), so a missing hand counts
    once per frame and side. Outlier frames are excluded only for ``outlier_parts``: the
    paper excludes them "to mitigate inaccuracies in hand landmark predictions".
    """
    _check_sequences(gen, gt)
    size = gt.image_size
    body_idx = list(BODY_POINTS)

    def k(part: str) -> float | None:
        return OUTLIER_MAD_K if part in outlier_parts else None

    results = {
        "face": landmark_distance(
            gen.face,
            gt.face,
            gen.detected["face"],
            gt.detected["face"],
            size,
            scale_to,
            outlier_k=k("face"),
        ),
        "body": landmark_distance(
            gen.pose[:, body_idx],
            gt.pose[:, body_idx],
            gen.detected["pose"],
            gt.detected["pose"],
            size,
            scale_to,
            point_mask=gt.pose_visibility[:, body_idx] >= MIN_BODY_VISIBILITY,
            outlier_k=k("body"),
        ),
        "hand": landmark_distance(
            np.concatenate([gen.left_hand, gen.right_hand]),
            np.concatenate([gt.left_hand, gt.right_hand]),
            np.concatenate([gen.detected["left_hand"], gen.detected["right_hand"]]),
            np.concatenate([gt.detected["left_hand"], gt.detected["right_hand"]]),
            size,
            scale_to,
            outlier_k=k("hand"),
        ),
    }
    return results


def detect_landmarks(
    frames: Iterable[np.ndarray] | np.ndarray, fps: float = 25.0, progress: bool = True
) -> LandmarkSequence:
    """MediaPipe Holistic over RGB uint8 frames, as ``prepare`` tracks them.

    ``present`` equals ``detected`` (no gap filling, no smoothing): evaluation must see
    every missed detection.
    """
    from anchorgen.prepare.holistic import track_frames

    iterator = iter(frames)
    try:
        first = next(iterator)
    except StopIteration:
        raise InputError("no frames to detect landmarks in") from None
    first = _as_video(first, "frame 0")[0]
    height, width = first.shape[:2]
    return track_frames(itertools.chain([first], iterator), fps, (width, height), progress=progress)


# ----------------------------------------------------------------------------------------------
# head pose and expression from the face mesh (APD / AED analogues, AniFaceDiff 4.3)


@functools.lru_cache(maxsize=1)
def _face_index_sets() -> tuple[np.ndarray, np.ndarray]:
    """(expression indices: lips, eyes, brows; rigid indices: the other non-iris points)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    from mediapipe.python.solutions import face_mesh_connections as fmc

    groups = (
        fmc.FACEMESH_LIPS,
        fmc.FACEMESH_LEFT_EYE,
        fmc.FACEMESH_RIGHT_EYE,
        fmc.FACEMESH_LEFT_EYEBROW,
        fmc.FACEMESH_RIGHT_EYEBROW,
    )
    expression = sorted({i for g in groups for edge in g for i in edge})
    rigid = sorted(set(range(NUM_FACE_MESH)) - set(expression))
    return np.array(expression), np.array(rigid)


def _faces(face_pts: np.ndarray) -> np.ndarray:
    faces = np.asarray(face_pts, np.float64)
    if faces.ndim == 2:
        faces = faces[None]
    if faces.ndim != 3 or faces.shape[1] < NUM_FACE_MESH or faces.shape[2] != 3:
        raise InputError(f"expected face meshes (T, 478, 3), got {faces.shape}")
    return faces


def canonical_face(face_pts: np.ndarray, iterations: int = 5) -> np.ndarray:
    """Generalised-Procrustes mean (478, 3) of face meshes (T, 478, 3) without NaN frames."""
    faces = _faces(face_pts)
    faces = faces[~np.isnan(faces).any((1, 2))]
    if len(faces) == 0:
        raise InputError("no complete face mesh to build a canonical face from")
    _, rigid = _face_index_sets()
    mean = faces[0]
    for _ in range(iterations):
        aligned = []
        for face in faces:
            s, r, t = umeyama(face[rigid], mean[rigid])
            aligned.append(s * face @ r.T + t)
        new_mean = np.mean(aligned, 0)
        s, r, t = umeyama(new_mean[rigid], faces[0][rigid])  # keep frame 0's pose and size
        mean = s * new_mean @ r.T + t
    return mean


def rotation_to_euler(rot: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of ``rot = Rz(roll) @ Ry(yaw) @ Rx(pitch)``.

    Axes of the pixel frame: x right, y down, z away from the camera.
    """
    yaw = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
    pitch = np.arctan2(rot[2, 1], rot[2, 2])
    roll = np.arctan2(rot[1, 0], rot[0, 0])
    return np.degrees([yaw, pitch, roll])


def head_pose(face_pts: np.ndarray, canonical: np.ndarray | None = None) -> np.ndarray:
    """Head rotation (T, 3) = (yaw, pitch, roll) degrees of each face relative to ``canonical``.

    A similarity fit (Umeyama) on the rigid mesh points (not mouth, eyes, brows) maps the
    canonical face onto each face; ``canonical`` defaults to :func:`canonical_face` of the
    input. Frames containing NaN give NaN.
    """
    faces = _faces(face_pts)
    if canonical is None:
        canonical = canonical_face(faces)
    _, rigid = _face_index_sets()
    angles = np.full((len(faces), 3), np.nan)
    for i, face in enumerate(faces):
        if not np.isnan(face).any():
            _, rot, _ = umeyama(canonical[rigid], face[rigid])
            angles[i] = rotation_to_euler(rot)
    return angles


def expression_vector(face_pts: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """Pose-normalised expression (T, K*3): mouth, eye and brow points minus the canonical's.

    Each face is aligned onto ``canonical`` by a similarity fit of its rigid points; the
    residual is divided by the canonical's RMS radius, so it does not depend on face size.
    """
    faces = _faces(face_pts)
    expression, rigid = _face_index_sets()
    radius = float(np.sqrt(((canonical[rigid] - canonical[rigid].mean(0)) ** 2).sum(1).mean()))
    out = np.full((len(faces), len(expression) * 3), np.nan)
    for i, face in enumerate(faces):
        if not np.isnan(face).any():
            s, r, t = umeyama(face[rigid], canonical[rigid])
            aligned = s * face[expression] @ r.T + t  # (K, 3)
            out[i] = ((aligned - canonical[expression]) / radius).ravel()
    return out


def _face_pair(
    gen_faces: np.ndarray, gt_faces: np.ndarray, present_gen: np.ndarray, present_gt: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    gen, gt = _faces(gen_faces), _faces(gt_faces)
    if gen.shape != gt.shape:
        raise InputError(f"generated faces {gen.shape} and ground-truth faces {gt.shape} differ")
    gt_ok = _flags(present_gt, len(gt), "present_gt") & ~np.isnan(gt).any((1, 2))
    gen_ok = _flags(present_gen, len(gen), "present_gen") & ~np.isnan(gen).any((1, 2))
    if not gt_ok.any():
        raise InputError("the ground truth has no face in any frame")
    canonical = canonical_face(gt[gt_ok])
    return gen, gt, gt_ok, gt_ok & gen_ok, canonical


def pose_distance(
    gen_faces: np.ndarray, gt_faces: np.ndarray, present_gen: np.ndarray, present_gt: np.ndarray
) -> DistanceResult:
    """APD analogue: mean absolute (yaw, pitch, roll) difference in degrees per frame.

    Both sequences are measured against the ground truth's canonical face.
    """
    gen, gt, gt_ok, both, canonical = _face_pair(gen_faces, gt_faces, present_gen, present_gt)
    diff = head_pose(gen, canonical) - head_pose(gt, canonical)  # (T, 3)
    diff = (diff + 180.0) % 360.0 - 180.0
    return _summarise(np.abs(diff).mean(1), both, gt_ok, None)


def expression_distance(
    gen_faces: np.ndarray, gt_faces: np.ndarray, present_gen: np.ndarray, present_gt: np.ndarray
) -> DistanceResult:
    """AED analogue: L2 distance of :func:`expression_vector` per frame (units of face radius)."""
    gen, gt, gt_ok, both, canonical = _face_pair(gen_faces, gt_faces, present_gen, present_gt)
    diff = expression_vector(gen, canonical) - expression_vector(gt, canonical)
    return _summarise(np.linalg.norm(diff, axis=1), both, gt_ok, None)


def expression_fid(
    gen_faces: np.ndarray, gt_faces: np.ndarray, present_gen: np.ndarray, present_gt: np.ndarray
) -> float:
    """E-FID analogue (EMO 4.2): Frechet distance of expression-vector distributions.

    EMO fits Gaussians to 3DMM expression parameters; here to :func:`expression_vector` of
    every frame with a face (generated and GT separately, both against the GT canonical).
    Unlike AED it does not pair frames, so it rewards a matching range of expressions.
    """
    from anchorgen.evaluation.frechet import frechet_distance_of_features

    gen, gt, gt_ok, _, canonical = _face_pair(gen_faces, gt_faces, present_gen, present_gt)
    gen_ok = np.asarray(present_gen, bool) & ~np.isnan(gen).any((1, 2))
    if gen_ok.sum() < 2 or gt_ok.sum() < 2:
        raise InputError(
            f"E-FID needs at least two frames with a face on each side, got {int(gen_ok.sum())} "
            f"generated and {int(gt_ok.sum())} ground truth"
        )
    return frechet_distance_of_features(
        expression_vector(gen[gen_ok], canonical), expression_vector(gt[gt_ok], canonical)
    )


# ----------------------------------------------------------------------------------------------
# temporal flicker: warping error (Lai et al. 2018) under ground-truth optical flow


@dataclasses.dataclass(frozen=True)
class WarpingResult:
    """Warping error of generated frames and of the ground truth under the same GT flow."""

    generated: float
    ground_truth: float
    n_pairs: int
    mask_fraction: float
    """Mean fraction of pixels scored (valid and flow-consistent)."""
    per_pair_generated: np.ndarray
    """(T-1,) float64."""
    per_pair_ground_truth: np.ndarray

    def as_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in dataclasses.asdict(self).items() if not k.startswith("per_pair")}


def _farneback(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) with dst(x) ~ src(x + flow(x)); grey uint8 inputs."""
    import cv2

    return cv2.calcOpticalFlowFarneback(dst, src, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def warping_error(
    gen_frames: np.ndarray, gt_frames: np.ndarray, valid: np.ndarray | None = None
) -> WarpingResult:
    """Mean squared error (colour values in [0, 1]) between frame t+1 and frame t warped to t+1.

    The flow comes from the ground truth (OpenCV Farneback, t+1 -> t); pixels that fail the
    forward-backward consistency check (occlusions, Sundaram et al. 2010), leave the image,
    or fall on padding are not scored. The same warp applied to the ground truth gives its
    own error, the floor a generator can reach.
    """
    import cv2

    gen, gt = _check_pair(gen_frames, gt_frames)
    if gen.shape[0] < 2:
        raise InputError("warping error needs at least two frames")
    mask = _valid_mask(valid, gen.shape)
    t, h, w = gen.shape[:3]
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in gt]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    errors_gen, errors_gt, fractions = np.empty(t - 1), np.empty(t - 1), np.empty(t - 1)
    for i in tqdm(range(t - 1), desc="warping error", unit="pair", disable=t < 50):
        backward = _farneback(grey[i], grey[i + 1])  # frame i+1 pixel x -> x + backward in frame i
        forward = _farneback(grey[i + 1], grey[i])  # frame i pixel -> frame i+1
        map_x, map_y = grid_x + backward[..., 0], grid_y + backward[..., 1]
        forward_at = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR)
        loop = ((backward + forward_at) ** 2).sum(-1)
        bound = 0.01 * ((backward**2).sum(-1) + (forward_at**2).sum(-1)) + 0.5
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        # every pixel the bilinear warp reads must be valid
        valid_prev = cv2.remap(mask[i].astype(np.float32), map_x, map_y, cv2.INTER_LINEAR) > 0.999
        scored = (loop <= bound) & inside & valid_prev & mask[i + 1]
        if not scored.any():
            raise InputError(f"frames {i}->{i + 1}: no pixel is valid and flow-consistent")
        fractions[i] = scored.mean()
        for frames, errors in ((gen, errors_gen), (gt, errors_gt)):
            warped = cv2.remap(frames[i].astype(np.float32), map_x, map_y, cv2.INTER_LINEAR)
            diff = (warped - frames[i + 1].astype(np.float32)) / 255.0  # (H, W, 3)
            errors[i] = float((diff[scored] ** 2).mean())
    return WarpingResult(
        generated=float(errors_gen.mean()),
        ground_truth=float(errors_gt.mean()),
        n_pairs=t - 1,
        mask_fraction=float(fractions.mean()),
        per_pair_generated=errors_gen,
        per_pair_ground_truth=errors_gt,
    )


# ----------------------------------------------------------------------------------------------
# identity similarity (CSIM / F-SIM) with dlib's face-recognition ResNet

DLIB_INSTALL_HINT = (
    "identity similarity needs dlib and its models: pip install 'anchorgen[eval]' "
    "(that is: pip install dlib-bin face_recognition_models)"
)


@functools.lru_cache(maxsize=1)
def _dlib_models():
    """(detector, 5-point shape predictor, face-recognition ResNet), loaded once.

    The model files are located without importing ``face_recognition_models``: its
    ``__init__`` imports ``pkg_resources``, which current setuptools no longer ships.
    """
    try:
        import dlib
    except ImportError as exc:
        raise InputError(DLIB_INSTALL_HINT) from exc
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise InputError(DLIB_INSTALL_HINT)
    models = Path(spec.origin).parent / "models"
    predictor = models / "shape_predictor_5_face_landmarks.dat"
    recogniser = models / "dlib_face_recognition_resnet_model_v1.dat"
    for path in (predictor, recogniser):
        if not path.is_file():
            raise InputError(f"missing {path}; {DLIB_INSTALL_HINT}")
    return (
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(str(predictor)),
        dlib.face_recognition_model_v1(str(recogniser)),
    )


def dlib_available() -> bool:
    """Whether :func:`identity_similarity` can run (dlib and its models are installed)."""
    try:
        _dlib_models()
    except InputError:
        return False
    return True


def face_descriptor(image: np.ndarray, upsample: int = 1) -> np.ndarray | None:
    """128-d dlib descriptor (float64) of the largest face in an RGB uint8 image, or None."""
    detector, predictor, recogniser = _dlib_models()
    image = np.ascontiguousarray(_as_video(image, "image")[0])
    boxes = detector(image, upsample)
    if len(boxes) == 0:
        return None
    box = max(boxes, key=lambda b: b.area())
    shape = predictor(image, box)
    return np.asarray(recogniser.compute_face_descriptor(image, shape), np.float64)


@dataclasses.dataclass(frozen=True)
class IdentityResult:
    """Identity similarity of frames to a reference face."""

    cosine: float
    """Mean cosine similarity of descriptors (higher = same person); NaN if no face found."""
    distance: float
    """Mean Euclidean descriptor distance (dlib: < 0.6 means the same person)."""
    n_frames: int
    n_no_face: int
    """Frames where no face was detected (not scored)."""
    per_frame_cosine: np.ndarray
    """(T,) float64, NaN where no face was detected."""

    def as_dict(self) -> dict[str, float | int]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "per_frame_cosine"}


def identity_similarity(
    frames: np.ndarray, reference: np.ndarray, upsample: int = 1
) -> IdentityResult:
    """CSIM (AniFaceDiff 4.3) / F-SIM (EMO 4.2): each frame's face against the reference face.

    Report it for the ground truth too: EMO reads F-SIM as closeness to the GT's value.
    ``upsample`` lets dlib's HOG detector find faces smaller than about 80 px (1: 40 px).
    """
    frames = _as_video(frames, "frames")
    ref = face_descriptor(reference, upsample)
    if ref is None:
        raise InputError("no face detected in the reference image")
    cosines, distances = np.full(len(frames), np.nan), np.full(len(frames), np.nan)
    for i, frame in enumerate(
        tqdm(frames, desc="identity", unit="frame", disable=len(frames) < 50)
    ):
        desc = face_descriptor(frame, upsample)
        if desc is not None:
            cosines[i] = float(desc @ ref / (np.linalg.norm(desc) * np.linalg.norm(ref)))
            distances[i] = float(np.linalg.norm(desc - ref))
    found = ~np.isnan(cosines)
    return IdentityResult(
        cosine=float(cosines[found].mean()) if found.any() else float("nan"),
        distance=float(distances[found].mean()) if found.any() else float("nan"),
        n_frames=len(frames),
        n_no_face=int((~found).sum()),
        per_frame_cosine=cosines,
    )
