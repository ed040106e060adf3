"""The static background of a fixed-camera clip: a plate the body model reads (``model.background_plate``).

Where the person is absent, a fixed camera sees the same background in every frame; the
per-pixel median over those frames removes JPEG noise and passing shadows. Pixels the
person covers in (nearly) every frame stay unknown: the plate's hole, which the model
fills itself. Numpy and OpenCV only, like the rest of ``prepare``.
"""

from __future__ import annotations

import cv2
import numpy as np

ROWS_PER_CHUNK = 32
"""Rows of the median computed at once: keeps the float copy of the frames at T x 32 x W x 3."""


def background_plate(
    frames: np.ndarray,
    mattes: np.ndarray,
    dilate_px: int = 5,
    matte_threshold: int = 13,
    min_count: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Median background of ``frames`` (T, H, W, 3) uint8 where ``mattes`` (T, H, W) uint8 say
    the person is absent.

    A pixel counts as person where its matte exceeds ``matte_threshold`` (of 255), grown by
    ``dilate_px`` pixels to take in soft edges and hair. Returns ``plate`` (H, W, 3) uint8,
    0 where unknown, and ``known`` (H, W) bool: seen free of the person in at least
    ``min_count`` frames.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if mattes.shape != frames.shape[:3]:
        raise ValueError(f"mattes {mattes.shape} do not match frames {frames.shape[:3]}")
    if min_count < 1:
        raise ValueError("min_count must be >= 1")
    person = person_masks(mattes, dilate_px, matte_threshold)  # (T, H, W)
    known = (~person).sum(axis=0) >= min_count  # (H, W)
    plate = np.zeros(frames.shape[1:], np.uint8)
    for top in range(0, frames.shape[1], ROWS_PER_CHUNK):
        rows = slice(top, top + ROWS_PER_CHUNK)
        chunk = frames[:, rows].astype(np.float32)  # (T, r, W, 3)
        chunk[person[:, rows]] = np.nan
        seen = known[rows]
        plate[rows][seen] = np.round(np.nanmedian(chunk[:, seen], axis=0)).astype(np.uint8)
    return plate, known


def person_masks(mattes: np.ndarray, dilate_px: int, matte_threshold: int) -> np.ndarray:
    """(T, H, W) bool: where each frame's matte exceeds ``matte_threshold``, grown by
    ``dilate_px`` pixels."""
    kernel = np.ones((2 * dilate_px + 1,) * 2, np.uint8) if dilate_px > 0 else None
    return np.stack(
        [(cv2.dilate(m, kernel) if kernel is not None else m) > matte_threshold for m in mattes]
    )


def plate_fit_psnr(
    frames: np.ndarray,
    mattes: np.ndarray,
    plate: np.ndarray,
    known: np.ndarray,
    dilate_px: int = 5,
    matte_threshold: int = 13,
) -> float:
    """How well ``plate`` explains the background of the ``frames`` it was made from: PSNR (dB)
    over every frame's known pixels that the person (as in ``background_plate``) leaves free.

    A fixed camera gives over 40 dB (JPEG noise, shadows); a moving or shaking one, or changing
    light, much less: a plate then misleads the model. inf when no pixel qualifies.
    """
    free = ~person_masks(mattes, dilate_px, matte_threshold) & known  # (T, H, W)
    if not free.any():
        return float("inf")
    squared = 0.0
    for t in range(len(frames)):  # one frame at a time: no (T, H, W, 3) float copy
        diff = frames[t][free[t]].astype(np.float32) - plate[free[t]]
        squared += float(np.square(diff).sum())
    mse = squared / (3 * free.sum())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)
