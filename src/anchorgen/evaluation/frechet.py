"""Frechet distances between Gaussians fitted to features: FID (and FVD when available).

FID (Heusel et al. 2017) is the Frechet distance between Gaussians fitted to the pool3
features of the TensorFlow Inception-v3 graph; anchorgen runs that network
(:mod:`anchorgen.evaluation.inception`) with weights the user names: pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` converted once to safetensors. Nothing is
downloaded: without weights the result says "not computed" and why.

With a few hundred frames FID is biased upwards (the 2048x2048 covariance is estimated
from fewer samples than dimensions); compare values only between runs of the same length.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from scipy import linalg

from anchorgen.errors import InputError


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) for N(mu1, S1) and N(mu2, S2).

    When the product is singular and its square root not finite, ``eps`` is added to both
    diagonals (the fix of the TTUR reference code); tiny imaginary parts from numerical
    error are dropped, large ones raise.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise InputError(
            f"Frechet distance needs means (D,) and covariances (D, D) of one D, got "
            f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=1e-3):
            raise ValueError(f"matrix square root has imaginary part {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise InputError(f"need features (N >= 2, D), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance_of_features(feat1: np.ndarray, feat2: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*gaussian_stats(feat1), *gaussian_stats(feat2))


@dataclasses.dataclass(frozen=True)
class FrechetResult:
    """A Frechet-distance metric, or the reason it was not computed."""

    value: float | None
    note: str
    """Empty when computed; otherwise starts with "not computed: "."""

    @property
    def computed(self) -> bool:
        return self.value is not None

    def report_value(self) -> float | str:
        """The number, or the "not computed: ..." note (what a metrics table shows)."""
        return self.value if self.value is not None else self.note


def _not_computed(reason: str) -> FrechetResult:
    return FrechetResult(None, f"not computed: {reason}")


def load_fid_inception(weights: Path):
    """The FID Inception network with weights from a local safetensors file (strict keys)."""
    from safetensors.torch import load_file

    from anchorgen.evaluation.inception import FIDInceptionV3

    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise InputError(f"cannot read Inception weights {weights} as safetensors: {exc}") from exc
    model = FIDInceptionV3()
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise InputError(
            f"{weights} is not a pytorch-fid Inception state dict: "
            f"{len(missing)} missing keys (e.g. {sorted(missing)[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:3]})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{weights}: tensor shapes do not match the FID Inception network: {exc}") from exc
    return model.eval()


def inception_features(frames: np.ndarray, model, batch_size: int = 16, device: str = "cpu") -> np.ndarray:
    """Pool3 features (N, 2048) of RGB uint8 frames (N, H, W, 3)."""
    import torch
    from tqdm import tqdm

    model = model.to(device)
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(frames), batch_size), desc="inception", unit="batch", disable=len(frames) <= batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size]))
            batch = batch.to(device).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
            out.append(model(batch).double().cpu().numpy())
    return np.concatenate(out)


def _check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise InputError(f"{name}: expected >= 2 RGB uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    return frames


def fid(
    gen_frames: np.ndarray,
    gt_frames: np.ndarray,
    inception_weights: Path | str | None,
    batch_size: int = 16,
    device: str = "cpu",
) -> FrechetResult:
    """FID between generated and ground-truth frames (each (T, H, W, 3) uint8, T >= 2).

    ``inception_weights``: a local safetensors file of pytorch-fid's Inception state dict;
    ``None`` or a missing file gives a "not computed" result.
    """
    gen, gt = _check_frames(gen_frames, "generated"), _check_frames(gt_frames, "ground truth")
    if inception_weights is None:
        return _not_computed("no Inception-v3 weights given (pytorch-fid format, safetensors)")
    weights = Path(inception_weights)
    if not weights.is_file():
        return _not_computed(f"Inception-v3 weights not found at {weights}")
    model = load_fid_inception(weights)
    feats_gen = inception_features(gen, model, batch_size, device)
    feats_gt = inception_features(gt, model, batch_size, device)
    return FrechetResult(frechet_distance_of_features(feats_gen, feats_gt), "")
