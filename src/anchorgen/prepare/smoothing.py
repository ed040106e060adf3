"""Temporal clean-up of landmark tracks: gap filling, One-Euro smoothing, jitter measure.

All functions are pure numpy. Missing values are NaN; a filter restarts after a gap.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from anchorgen.errors import InputError
from anchorgen.landmarks import PARTS, LandmarkSequence

POSE_SHOULDERS = (11, 12)


def _smoothing_factor(cutoff: np.ndarray | float, fps: float) -> np.ndarray | float:
    """alpha = 1 / (1 + tau / T_e) with tau = 1 / (2 pi f_c) (Casiez et al. 2012, eq. 5)."""
    tau = 1.0 / (2.0 * np.pi * cutoff)
    return 1.0 / (1.0 + tau * fps)


def one_euro_filter(
    x: np.ndarray,
    fps: float,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
) -> np.ndarray:
    """Causal One-Euro filter along axis 0 of ``x`` (T, ...), each element independently.

    Casiez, Roussel, Vogel 2012: an exponential low-pass whose cutoff rises with speed,
    f_c = min_cutoff + beta * |dx/dt| (eq. 4), the speed itself low-passed at ``d_cutoff``.
    ``min_cutoff`` (Hz) sets jitter removal at rest, ``beta`` (1 / signal unit) cuts lag
    when moving. NaN entries stay NaN and the element's filter restarts at the next value.
    Returns float64 (T, ...).
    """
    x = np.asarray(x, np.float64)
    if x.ndim < 1 or x.shape[0] == 0:
        raise InputError(f"one_euro_filter needs a (T, ...) array with T > 0, got {x.shape}")
    if fps <= 0 or min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
        raise InputError(
            f"one_euro_filter needs fps, min_cutoff, d_cutoff > 0 and beta >= 0, got "
            f"fps={fps} min_cutoff={min_cutoff} d_cutoff={d_cutoff} beta={beta}"
        )
    out = np.full_like(x, np.nan)
    x_hat = np.full(x.shape[1:], np.nan)  # previous filtered value, NaN = no state
    dx_hat = np.zeros(x.shape[1:])
    alpha_d = _smoothing_factor(d_cutoff, fps)
    for t in range(x.shape[0]):
        value = x[t]
        valid = ~np.isnan(value)
        fresh = valid & np.isnan(x_hat)  # first value after a start or a gap
        running = valid & ~fresh
        dx = np.where(running, (value - np.where(running, x_hat, 0.0)) * fps, 0.0)
        dx_hat = np.where(running, dx_hat + alpha_d * (dx - dx_hat), 0.0)
        alpha = _smoothing_factor(min_cutoff + beta * np.abs(dx_hat), fps)
        filtered = np.where(running, x_hat + alpha * (value - np.where(running, x_hat, 0.0)), value)
        x_hat = np.where(valid, filtered, np.nan)
        out[t] = x_hat
    return out


def zero_phase_one_euro(
    x: np.ndarray, fps: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0
) -> np.ndarray:
    """One-Euro run forward, then backward over the result (offline, like ``filtfilt``).

    The backward pass undoes the forward pass's lag, so smoothed gestures stay on time;
    each pass restarts at NaN gaps. Returns float64 (T, ...).
    """
    forward = one_euro_filter(x, fps, min_cutoff, beta, d_cutoff)
    return one_euro_filter(forward[::-1], fps, min_cutoff, beta, d_cutoff)[::-1].copy()


def interpolate_gaps(
    x: np.ndarray, present: np.ndarray, max_gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Linearly fill runs of at most ``max_gap`` missing frames bounded on both sides.

    x: (T, ...) values (only frames with ``present`` True are read); present: (T,) bool.
    Returns (x_filled float32, present_filled): longer, leading or trailing gaps stay
    NaN / False.
    """
    present = np.asarray(present, bool)
    if present.shape != (x.shape[0],):
        raise InputError(f"present has shape {present.shape}, expected ({x.shape[0]},)")
    out = np.asarray(x, np.float64).copy()
    out[~present] = np.nan
    filled = present.copy()
    index = np.flatnonzero(present)
    for before, after in itertools.pairwise(index):
        gap = after - before - 1
        if 0 < gap <= max_gap:
            w = (np.arange(1, gap + 1) / (gap + 1)).reshape((gap,) + (1,) * (out.ndim - 1))
            out[before + 1 : after] = (1 - w) * out[before] + w * out[after]
            filled[before + 1 : after] = True
    return out.astype(np.float32), filled


def jitter(x: np.ndarray, present: np.ndarray, dims: int = 2) -> float:
    """Mean |x[t+1] - 2 x[t] + x[t-1]| over points and valid triples (units / frame^2).

    x: (T, N, 3); the norm uses the first ``dims`` coordinates (x, y in the image plane by
    default, where MediaPipe's noisier z would otherwise dominate). NaN when no frame
    triple is fully present.
    """
    present = np.asarray(present, bool)
    if x.shape[0] < 3:
        return float("nan")
    valid = present[:-2] & present[1:-1] & present[2:]
    if not valid.any():
        return float("nan")
    pts = np.asarray(x, np.float64)[..., :dims]
    second = pts[2:] - 2 * pts[1:-1] + pts[:-2]  # (T-2, N, dims)
    return float(np.nanmean(np.linalg.norm(second[valid], axis=-1)))


def body_scale(points: np.ndarray, present: np.ndarray) -> float:
    """Median shoulder width of a (T, 33, 3) pose track (its own units); NaN without pose."""
    present = np.asarray(present, bool)
    if not present.any():
        return float("nan")
    a, b = POSE_SHOULDERS
    width = np.linalg.norm(points[present, a, :2] - points[present, b, :2], axis=-1)
    return float(np.nanmedian(width))


def smooth_sequence(
    seq: LandmarkSequence,
    max_gap_seconds: float = 0.3,
    min_cutoff: float = 1.5,
    beta: float = 1.0,
    d_cutoff: float = 1.0,
    zero_phase: bool = True,
) -> LandmarkSequence:
    """Fill short gaps, then One-Euro smooth every part of ``seq``.

    Gaps up to ``max_gap_seconds`` bounded on both sides are interpolated linearly (a blink
    of the detector, not a real disappearance) and become ``present``; ``detected`` is kept.
    The filter runs on coordinates divided by the clip's median shoulder width, so
    ``beta`` is in (shoulder widths / s)^-1 and the same values work at any resolution or
    zoom. Defaults: ``min_cutoff`` 1.5 Hz removes detector jitter on still poses
    (the 5-15 Hz band) while keeping slow sway; ``beta`` 1.0 raises the cutoff to
    about 3 Hz at half a shoulder width per second, so gestures and lips are barely
    attenuated; ``zero_phase`` (forward then backward pass, possible because prepare is
    offline) removes the remaining lag. ``pose_visibility`` is gap-filled, not smoothed.
    """
    max_gap = round(max_gap_seconds * seq.fps)
    pixel_scale = body_scale(seq.pose, seq.present["pose"])
    if not np.isfinite(pixel_scale) or pixel_scale <= 0:
        pixel_scale = max(seq.image_size) / 4.0  # no body: a person about a quarter frame wide
    world_scale = body_scale(seq.pose_world, seq.present["pose"])
    if not np.isfinite(world_scale) or world_scale <= 0:
        world_scale = 0.35  # typical adult shoulder width in metres

    def smooth(
        points: np.ndarray, present: np.ndarray, scale: float
    ) -> tuple[np.ndarray, np.ndarray]:
        filled, now_present = interpolate_gaps(points, present, max_gap)
        filt = zero_phase_one_euro if zero_phase else one_euro_filter
        out = filt(filled / scale, seq.fps, min_cutoff, beta, d_cutoff) * scale
        return out.astype(np.float32), now_present

    arrays: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for part in PARTS:
        arrays[part], present[part] = smooth(getattr(seq, part), seq.present[part], pixel_scale)
    arrays["pose_world"], _ = smooth(seq.pose_world, seq.present["pose"], world_scale)
    visibility, _ = interpolate_gaps(seq.pose_visibility, seq.present["pose"], max_gap)
    arrays["pose_visibility"] = np.nan_to_num(visibility, nan=0.0)
    return dataclasses.replace(
        seq, **arrays, present=present, detected={k: v.copy() for k, v in seq.detected.items()}
    )
