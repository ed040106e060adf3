"""Small geometry shared by preparation, retargeting and evaluation."""

from __future__ import annotations

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ≈ s R src + t`` without reflection (Umeyama 1991), batched.

    src, dst: (..., N, D) with D = 2 or 3. Returns s (...,), R (..., D, D), t (..., D).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(axis=-2), dst.mean(axis=-2)  # (..., D)
    xs, xd = src - mu_s[..., None, :], dst - mu_d[..., None, :]
    cov = np.swapaxes(xd, -1, -2) @ xs / src.shape[-2]  # (..., D, D)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(sig.shape)
    d[..., -1] = np.sign(np.linalg.det(u) * np.linalg.det(vt))  # a rotation, never a reflection
    rot = u @ (d[..., :, None] * vt)
    var_s = (xs**2).sum(axis=(-1, -2)) / src.shape[-2]
    scale = (sig * d).sum(axis=-1) / np.maximum(var_s, 1e-12)
    trans = mu_d - scale[..., None] * (rot @ mu_s[..., None])[..., 0]
    return scale, rot, trans


def compose_affines(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The (2, 3) affine that applies ``first`` and then ``second``."""
    second = np.asarray(second, np.float64)
    first = np.asarray(first, np.float64)
    return np.concatenate(
        [second[:, :2] @ first[:, :2], (second[:, :2] @ first[:, 2] + second[:, 2])[:, None]],
        axis=1,
    )
