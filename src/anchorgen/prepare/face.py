"""FFHQ-style face alignment from the MediaPipe face mesh, face masks and paste-back.

The aligned crop follows the FFHQ recipe (Karras et al. 2019, ``ffhq-dataset``
``recreate_aligned_images``): the eye-to-eye and eye-to-mouth vectors define an oriented
square around the face, which maps onto the output square. That map is a similarity, so
the whole alignment is one (2, 3) affine from source pixels to crop pixels (continuous
coordinates, see :mod:`anchorgen.prepare.crop`).
"""

from __future__ import annotations

import cv2
import numpy as np

from anchorgen.errors import InputError
from anchorgen.prepare.crop import PAD_MODES, pixel_center_affine
from anchorgen.prepare.smoothing import zero_phase_one_euro

# Face-mesh indices. "Image-left" = smaller x in a frontal, unmirrored view (the person's right).
EYE_IMAGE_LEFT_CORNERS = (33, 133)
EYE_IMAGE_RIGHT_CORNERS = (362, 263)
MOUTH_IMAGE_LEFT = 61
MOUTH_IMAGE_RIGHT = 291
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
"""``mediapipe.solutions.face_mesh.FACEMESH_FACE_OVAL`` walked as one closed polygon."""


def alignment_points(face_pts: np.ndarray) -> np.ndarray:
    """(4, 2) eye centres (image-left, image-right) and mouth corners (left, right).

    Eye centres are means of the two eye corners rather than iris centres, so the
    alignment does not move with gaze or blinks.
    """
    face_pts = np.asarray(face_pts, np.float64)
    if face_pts.shape[0] != 478 or face_pts.ndim != 2 or np.isnan(face_pts[:, :2]).any():
        raise InputError(f"expected a complete (478, 2|3) face mesh, got shape {face_pts.shape}")
    xy = face_pts[:, :2]
    return np.stack(
        [
            xy[list(EYE_IMAGE_LEFT_CORNERS)].mean(axis=0),
            xy[list(EYE_IMAGE_RIGHT_CORNERS)].mean(axis=0),
            xy[MOUTH_IMAGE_LEFT],
            xy[MOUTH_IMAGE_RIGHT],
        ]
    )


def ffhq_quad(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FFHQ's oriented square from (4, 2) eye centres + mouth corners: centre c, half-axes x, y.

    Same lines as FFHQ's ``recreate_aligned_images``: x is the eye-to-eye direction
    corrected by the eye-to-mouth direction, its length max(2 |e2e|, 1.8 |e2m|); y is x
    turned 90 degrees; c sits 10 % of the way from the eye midpoint to the mouth.
    """
    eye_left, eye_right, mouth_left, mouth_right = np.asarray(points, np.float64)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (mouth_left + mouth_right) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return c, x, y


def face_align_affine(face_pts: np.ndarray, out_size: int = 256) -> np.ndarray:
    """(2, 3) similarity mapping source pixels to the ``out_size`` aligned face crop.

    The FFHQ quad (c +- x +- y) maps onto the output square: c to the centre, x to
    +out_size/2 along u, y to +out_size/2 along v.
    """
    c, x, y = ffhq_quad(alignment_points(face_pts))
    half = out_size / 2.0
    linear = np.stack([x, y]) * (half / np.dot(x, x))  # rows: u and v per source pixel
    return np.concatenate([linear, (half - linear @ c)[:, None]], axis=1)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (..., 2+) points by a (2, 3) affine; returns (..., 2) float64."""
    points = np.asarray(points, np.float64)[..., :2]
    affine = np.asarray(affine, np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine."""
    affine = np.asarray(affine, np.float64)
    linear_inv = np.linalg.inv(affine[:, :2])
    return np.concatenate([linear_inv, (-linear_inv @ affine[:, 2])[:, None]], axis=1)


def warp_face(
    image: np.ndarray, affine: np.ndarray, out_size: int, pad_mode: str = "reflect"
) -> np.ndarray:
    """Aligned face crop (out_size, out_size, C) of ``image`` (H, W, C).

    As in FFHQ, a face much larger than the output is first shrunk by an integer factor
    with area averaging, so the final bilinear warp does not alias.
    """
    if pad_mode not in PAD_MODES:
        raise InputError(f"pad_mode must be one of {sorted(PAD_MODES)}, got {pad_mode!r}")
    affine = np.asarray(affine, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    shrink = int(np.floor(0.5 / scale)) if scale > 0 else 1
    if shrink > 1:
        height, width = image.shape[:2]
        size = (max(1, round(width / shrink)), max(1, round(height / shrink)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        factor = np.array([width / size[0], height / size[1]])  # source pixels per small pixel
        affine = np.concatenate([affine[:, :2] * factor, affine[:, 2:]], axis=1)
    out = cv2.warpAffine(
        np.ascontiguousarray(image),
        pixel_center_affine(affine),
        (out_size, out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=PAD_MODES[pad_mode],
    )
    return out.reshape(out_size, out_size, *image.shape[2:])


def face_mask(
    face_pts: np.ndarray,
    affine: np.ndarray,
    out_size: int,
    feather_px: float = 8.0,
    dilate_px: float | None = None,
) -> np.ndarray:
    """(out_size, out_size) float32 inpainting mask in [0, 1] from the face oval.

    The oval polygon is mapped into the crop, filled, grown by ``dilate_px`` (default 3 %
    of out_size, to take in the forehead and chin edge) and feathered outward: 1 on the
    grown oval, falling smoothly to exactly 0 at ``feather_px`` outside it.
    """
    if dilate_px is None:
        dilate_px = 0.03 * out_size
    oval = apply_affine(affine, np.asarray(face_pts, np.float64)[list(FACE_OVAL)])
    shift = 4  # fixed-point bits for sub-pixel polygon vertices
    # continuous -> pixel-centre coordinates, then fixed point
    vertices = np.round((oval - 0.5) * (1 << shift)).astype(np.int32)
    filled = np.zeros((out_size, out_size), np.uint8)
    cv2.fillPoly(filled, [vertices], 1, lineType=cv2.LINE_8, shift=shift)
    # distance (px) of each pixel to the filled oval; 0 inside
    distance = cv2.distanceTransform(1 - filled, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ramp = np.clip(1.0 - (distance - dilate_px) / max(feather_px, 1e-6), 0.0, 1.0)
    return (ramp * ramp * (3.0 - 2.0 * ramp)).astype(np.float32)  # smoothstep


def paste_back(
    frame: np.ndarray, face_img: np.ndarray, affine: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Blend an aligned ``face_img`` (S, S, C) into ``frame`` (H, W, C) through the inverse
    of ``affine``, weighted by ``mask`` (S, S) in [0, 1]. Frame pixels where the warped mask
    is 0 are returned bit-identical. Returns a new array of frame's dtype."""
    size = mask.shape[0]
    if face_img.shape[:2] != mask.shape or mask.shape != (size, size):
        raise InputError(
            f"face image {face_img.shape[:2]} and mask {mask.shape} must be the same square size"
        )
    height, width = frame.shape[:2]
    out = frame.copy()
    rows, cols = np.nonzero(mask > 0)
    if rows.size == 0:
        return out
    # frame region touched by the mask: inverse-map the corners of its bounding box
    corners = np.array(
        [[cols.min(), rows.min()], [cols.max() + 1, rows.min()],
         [cols.min(), rows.max() + 1], [cols.max() + 1, rows.max() + 1]], np.float64
    )  # fmt: skip
    src = apply_affine(invert_affine(affine), corners)
    x0, y0 = np.maximum(np.floor(src.min(axis=0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(src[:, 0].max())) + 1, width)
    y1 = min(int(np.ceil(src[:, 1].max())) + 1, height)
    if x0 >= x1 or y0 >= y1:
        return out
    # crop -> region map, as OpenCV's inverse map (region pixel -> crop pixel)
    to_crop = np.asarray(affine, np.float64).copy()
    to_crop[:, 2] += to_crop[:, :2] @ np.array([x0, y0], np.float64)
    m_idx = pixel_center_affine(to_crop)
    region_size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    weight = cv2.warpAffine(
        mask.astype(np.float32), m_idx, region_size, flags=flags,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    face = cv2.warpAffine(
        np.ascontiguousarray(face_img), m_idx, region_size, flags=flags,
        borderMode=cv2.BORDER_REPLICATE,
    ).reshape(y1 - y0, x1 - x0, *face_img.shape[2:])  # fmt: skip
    region = out[y0:y1, x0:x1]
    w = weight.reshape(weight.shape + (1,) * (region.ndim - 2))
    blended = region.astype(np.float32) * (1 - w) + face.astype(np.float32) * w
    if np.issubdtype(frame.dtype, np.integer):
        info = np.iinfo(frame.dtype)
        blended = np.clip(np.round(blended), info.min, info.max)
    out[y0:y1, x0:x1] = np.where(w > 0, blended.astype(frame.dtype), region)
    return out


def affine_to_params(affines: np.ndarray, out_size: int) -> np.ndarray:
    """(T, 2, 3) similarities -> (T, 4) (log scale, angle, source x, source y of crop centre).

    Angle is unwrapped over time so smoothing never crosses the -pi/pi seam.
    """
    affines = np.asarray(affines, np.float64)
    scale = np.hypot(affines[:, 0, 0], affines[:, 1, 0])
    angle = np.arctan2(affines[:, 1, 0], affines[:, 0, 0])
    valid = np.isfinite(angle)
    angle[valid] = np.unwrap(angle[valid])
    centre = np.full((len(affines), 2), np.nan)
    half = np.full(2, out_size / 2.0)
    for t in np.flatnonzero(valid):
        centre[t] = apply_affine(invert_affine(affines[t]), half)
    return np.column_stack([np.log(scale), angle, centre])


def params_to_affine(params: np.ndarray, out_size: int) -> np.ndarray:
    """Inverse of :func:`affine_to_params`: (T, 4) -> (T, 2, 3)."""
    log_scale, angle, cx, cy = np.asarray(params, np.float64).T
    scale = np.exp(log_scale)
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    linear = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], axis=1)  # (T, 2, 2)
    centre = np.stack([cx, cy], -1)[..., None]  # (T, 2, 1)
    translation = out_size / 2.0 - linear @ centre
    return np.concatenate([linear, translation], axis=2)


def smooth_affines(
    affines: np.ndarray,
    fps: float,
    out_size: int = 256,
    min_cutoff: float = 1.0,
    beta: float = 1.0,
) -> np.ndarray:
    """Temporally smooth (T, 2, 3) per-frame face similarities so aligned crops do not shake.

    Each affine is split into log scale, rotation angle and the source point at the crop
    centre (translation measured in crop widths, so ``beta`` does not depend on
    resolution); those are One-Euro filtered forward and backward (zero phase, no lag)
    and recombined. Frames with NaN affines stay NaN.
    """
    affines = np.asarray(affines, np.float64)
    if affines.ndim != 3 or affines.shape[1:] != (2, 3):
        raise InputError(f"expected (T, 2, 3) affines, got {affines.shape}")
    params = affine_to_params(affines, out_size)
    crop_width = out_size * np.exp(-np.nanmedian(params[:, 0]))  # in source pixels
    params[:, 2:] /= crop_width
    smoothed = zero_phase_one_euro(params, fps, min_cutoff, beta)
    smoothed[:, 2:] *= crop_width
    return params_to_affine(smoothed, out_size)
