"""One fixed square crop per clip, from head to hands, with padding where it leaves the frame.

Coordinates are continuous pixels: pixel (i, j) covers [j, j+1) x [i, i+1), so the
landmarks' ``x * W`` and the crop's affine agree. Image warps convert to OpenCV's
pixel-centre convention with :func:`pixel_center_affine`.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from anchorgen.errors import InputError
from anchorgen.geometry import compose_affines
from anchorgen.landmarks import LandmarkSequence

POSE_UPPER_BODY = tuple(range(25))
"""Pose indices from nose to hips: face points, shoulders, elbows, wrists, finger tips, hips."""
PAD_MODES = {
    "reflect": cv2.BORDER_REFLECT_101,
    "edge": cv2.BORDER_REPLICATE,
    "constant": cv2.BORDER_CONSTANT,
}


def pixel_center_affine(affine: np.ndarray) -> np.ndarray:
    """(2, 3) map between continuous coordinates -> the same map for OpenCV pixel indices.

    OpenCV puts pixel centres at integers, continuous coordinates at +0.5:
    M_idx(p) = M(p + 0.5) - 0.5.
    """
    affine = np.asarray(affine, np.float64)
    out = affine.copy()
    out[:, 2] = affine[:, 2] + affine[:, :2].sum(axis=1) * 0.5 - 0.5
    return out


@dataclasses.dataclass(frozen=True)
class CropBox:
    """Square ``[x0, x0 + side) x [y0, y0 + side)`` in source pixels; may leave the frame."""

    x0: int
    y0: int
    side: int

    def __post_init__(self) -> None:
        for name in ("x0", "y0", "side"):
            value = getattr(self, name)
            if int(value) != value:
                raise InputError(f"CropBox.{name} must be a whole number of pixels, got {value}")
            object.__setattr__(self, name, int(value))
        if self.side <= 0:
            raise InputError(f"CropBox.side must be positive, got {self.side}")

    def padding(self, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) pixels of the box outside an image of (width, height)."""
        width, height = image_size
        return (
            max(0, -self.x0),
            max(0, -self.y0),
            max(0, self.x0 + self.side - width),
            max(0, self.y0 + self.side - height),
        )

    def affine(self, out_size: int) -> np.ndarray:
        """(2, 3) source -> crop map for points (continuous coordinates)."""
        s = out_size / self.side
        return np.array([[s, 0.0, -s * self.x0], [0.0, s, -s * self.y0]])


def _part_extents(
    seq: LandmarkSequence, image_size: tuple[int, int], visibility_threshold: float
) -> np.ndarray:
    """(T, 4) per-frame (x_min, y_min, x_max, y_max) of present points; NaN rows if none.

    Only what the camera sees counts: pose points need ``visibility_threshold`` and to lie
    in the frame (MediaPipe extrapolates cut-off limbs, often with high visibility); hand
    and face points are clipped to the frame.
    """
    width, height = image_size
    chunks = []  # each (T, n, 2), NaN where absent
    pose = seq.pose[:, POSE_UPPER_BODY, :2].astype(np.float64)
    inside = (pose >= 0).all(axis=-1) & (pose[..., 0] <= width) & (pose[..., 1] <= height)
    visible = seq.pose_visibility[:, POSE_UPPER_BODY] >= visibility_threshold
    pose[~(visible & inside & seq.present["pose"][:, None])] = np.nan
    chunks.append(pose)
    for part in ("left_hand", "right_hand", "face"):
        pts = np.clip(getattr(seq, part)[..., :2].astype(np.float64), 0, (width, height))
        pts[~seq.present[part]] = np.nan
        chunks.append(pts)
    points = np.concatenate(chunks, axis=1)  # (T, n, 2)
    extents = np.full((len(seq), 4), np.nan)
    has_any = ~np.all(np.isnan(points[..., 0]), axis=1)
    extents[has_any, :2] = np.nanmin(points[has_any], axis=1)
    extents[has_any, 2:] = np.nanmax(points[has_any], axis=1)
    return extents


def _place(lo: float, hi: float, side: float, length: int) -> float:
    """Start of a ``side`` window over [lo, hi]: centred on it, inside [0, length] when it
    fits there (else covering all of it), and never cutting [lo, hi]."""
    start = (lo + hi) / 2 - side / 2
    start = float(np.clip(start, min(0, length - side), max(0, length - side)))
    return max(min(start, lo), hi - side)


def compute_clip_crop(
    seq: LandmarkSequence,
    image_size: tuple[int, int],
    margin: float = 0.12,
    percentile: float = 1.0,
    visibility_threshold: float = 0.5,
) -> CropBox:
    """One square for the whole clip holding face, hands and the visible upper body.

    Per frame, the extent of present face and hand points and of visible in-frame pose
    points from nose to hips is taken (see :func:`_part_extents`); across frames, the
    ``percentile`` / ``100 - percentile`` percentiles of those extents make the union box
    (robust to single-frame misdetections). ``margin`` is added on each side as a fraction
    of the union's longer side. The margin shrinks where it would only add padding: a
    union that fits inside the frame gets a square inside the frame (no padding); a union
    taller (wider) than the frame is wide (tall), as in a portrait clip of a standing
    person, gets a square as long as the frame's longer side, padded across the shorter
    one, centred on the union.
    """
    width, height = int(image_size[0]), int(image_size[1])
    extents = _part_extents(seq, (width, height), visibility_threshold)
    extents = extents[~np.isnan(extents[:, 0])]
    if len(extents) == 0:
        raise InputError("no person landmarks in any frame: cannot place the crop")
    x_lo, y_lo = np.percentile(extents[:, :2], percentile, axis=0)
    x_hi, y_hi = np.percentile(extents[:, 2:], 100 - percentile, axis=0)
    union_side = max(x_hi - x_lo, y_hi - y_lo, 1.0)
    side = union_side * (1 + 2 * margin)
    for frame_side in sorted((width, height)):
        if union_side <= frame_side:  # no margin beyond what the frame can show
            side = min(side, frame_side)
            break
    side_px = int(np.ceil(side - 1e-6))
    # whole pixels: rounding keeps integer frame bounds, and the union to within 0.5 px
    x0 = round(_place(x_lo, x_hi, side_px, width))
    y0 = round(_place(y_lo, y_hi, side_px, height))
    return CropBox(x0, y0, side_px)


def apply_crop(
    frame: np.ndarray, box: CropBox, out_size: int, pad_mode: str = "reflect"
) -> np.ndarray:
    """Cut ``box`` out of ``frame`` (H, W, C), pad outside the frame, resize to out_size.

    Equivalent to warping with ``box.affine(out_size)``; done as pad + ``cv2.resize`` so
    that downscaling is area-averaged (no aliasing). Returns (out_size, out_size, C).
    Edge padding to the left or right is resized without being built (see
    :func:`_area_crop_edge_columns`; same bytes).
    """
    if pad_mode not in PAD_MODES:
        raise InputError(f"pad_mode must be one of {sorted(PAD_MODES)}, got {pad_mode!r}")
    height, width = frame.shape[:2]
    left, top, right, bottom = box.padding((width, height))
    region = frame[
        max(0, box.y0) : min(height, box.y0 + box.side),
        max(0, box.x0) : min(width, box.x0 + box.side),
    ]
    if region.size == 0:
        raise InputError(f"crop {box} does not overlap the {width}x{height} frame")
    if pad_mode == "edge" and (left or right) and _column_blocks(box.side, out_size):
        out = _area_crop_edge_columns(frame, box, out_size)
        return out.reshape(out_size, out_size, *frame.shape[2:])
    if left or top or right or bottom:
        # pad from the whole frame so reflections use the frame's own border pixels
        padded = cv2.copyMakeBorder(frame, top, bottom, left, right, PAD_MODES[pad_mode], value=0)
        x0, y0 = box.x0 + left, box.y0 + top
        region = padded[y0 : y0 + box.side, x0 : x0 + box.side]
    interpolation = cv2.INTER_AREA if out_size < box.side else cv2.INTER_CUBIC
    out = cv2.resize(
        np.ascontiguousarray(region), (out_size, out_size), interpolation=interpolation
    )
    return out.reshape(out_size, out_size, *frame.shape[2:])


def _column_blocks(side: int, out_size: int) -> tuple[int, int] | None:
    """(p, q): every p source columns of a ``side`` -> ``out_size`` area resize make q output
    columns computed from those p alone, with the same weights for every block, or None.

    OpenCV's area resize weighs source column x for output column u by the overlap of
    [u s, (u + 1) s) with [x, x + 1), s = side / out_size as a double; with s = p / q exact
    in binary (q a power of two) and out_size < side, blocks of p columns starting at
    multiples of p are resized alike wherever they lie.
    """
    if out_size >= side:
        return None
    g = math.gcd(side, out_size)
    p, q = side // g, out_size // g
    if q & (q - 1) or 1.0 / (out_size / side) != side / out_size or g < 2:
        return None
    return p, q


def _area_crop_edge_columns(frame: np.ndarray, box: CropBox, out_size: int) -> np.ndarray:
    """:func:`apply_crop` with edge padding (``cv2.INTER_AREA``), without padding the frame.

    Blocks of p box columns (:func:`_column_blocks`) that lie wholly in the left (right)
    padding are copies of the frame's first (last) column, so they all resize to the same
    q output columns: one is resized and tiled. The blocks over the frame are resized from
    a view of it, the ones across its borders from small padded strips. Same bytes as
    padding the whole frame and resizing it, in about three quarters of the time for a
    1080x1920 frame in a 1920 px crop. Returns (out_size, out_size[, C]).
    """
    height, width = frame.shape[:2]
    left, top, right, bottom = box.padding((width, height))
    p, q = _column_blocks(box.side, out_size)  # type: ignore[misc]
    rows = frame[max(0, box.y0) : min(height, box.y0 + box.side)]

    def resized(c0: int, c1: int) -> np.ndarray:
        """Box columns [c0, c1) (whole blocks), padded by repeating the frame's edges."""
        x0, x1 = box.x0 + c0, box.x0 + c1
        lo = min(max(x0, 0), width - 1)
        hi = max(min(x1, width), lo + 1)
        strip = rows[:, lo:hi]
        pad_left = max(0, min(lo - x0, (c1 - c0) - (hi - lo)))
        pad_right = (c1 - c0) - (hi - lo) - pad_left
        if top or bottom or pad_left or pad_right:
            strip = cv2.copyMakeBorder(strip, top, bottom, pad_left, pad_right, PAD_MODES["edge"])
        return cv2.resize(strip, ((c1 - c0) // p * q, out_size), interpolation=cv2.INTER_AREA)

    def tiled(block: np.ndarray, count: int) -> np.ndarray:
        return np.tile(block, (1, count) + (1,) * (block.ndim - 2))

    n_left, n_right = left // p, right // p  # blocks of padding only
    c0, c1 = n_left * p, box.side - n_right * p  # the blocks over the frame
    pieces = [tiled(resized(0, p), n_left)] if n_left else []
    ends = []
    if box.x0 + c0 < 0:  # a block across the left border
        pieces.append(resized(c0, c0 + p))
        c0 += p
    if box.x0 + c1 > width and c1 > c0:  # a block across the right border
        ends.append(resized(c1 - p, c1))
        c1 -= p
    if c1 > c0:
        pieces.append(resized(c0, c1))
    if n_right:
        ends.append(tiled(resized(box.side - p, box.side), n_right))
    return np.hstack(pieces + ends)


def crop_matte(
    small: np.ndarray, box: CropBox, image_size: tuple[int, int], out_size: int
) -> np.ndarray:
    """The ``box`` crop of a down-scaled (h, w) matte of an image of (width, height).

    One bilinear warp from the small matte straight to (out_size, out_size), the edge
    repeated outside the frame; mattes are smooth, so this matches cropping the matte at
    full resolution to within interpolation error, without building the full-size matte.
    """
    width, height = image_size
    to_source = np.array([[width / small.shape[1], 0.0, 0.0], [0.0, height / small.shape[0], 0.0]])
    crop = box.affine(out_size)
    small_to_crop = compose_affines(crop, to_source)  # (2, 3)
    return cv2.warpAffine(
        small,
        pixel_center_affine(small_to_crop),
        (out_size, out_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def valid_mask(box: CropBox, image_size: tuple[int, int], out_size: int) -> np.ndarray:
    """(out_size, out_size) bool: True where the output pixel's whole footprint is source.

    Output pixel u covers source [x0 + u / s, x0 + (u + 1) / s) with s = out_size / side.
    """
    width, height = image_size
    u = np.arange(out_size)
    step = box.side / out_size

    def inside(start: int, length: int) -> np.ndarray:
        return (start + u * step >= 0) & (start + (u + 1) * step <= length + 1e-9)

    return inside(box.y0, height)[:, None] & inside(box.x0, width)[None, :]
