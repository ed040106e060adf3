"""Frechet distances between Gaussians fitted to network features: FID and FVD.

FID (Heusel et al. 2017) is the Frechet distance between Gaussians fitted to the pool3
features of the TensorFlow Inception-v3 graph; anchorgen runs that network
(:mod:`anchorgen.evaluation.inception`) with weights the user names: pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` converted once to safetensors. Nothing is
downloaded: without weights the result says "not computed" and why. FVD (Unterthiner et
al. 2018) does the same with the Kinetics-400 I3D logits of 16-frame clips
(:mod:`anchorgen.evaluation.i3d`).

With a few hundred frames FID is biased upwards (the 2048x2048 covariance is estimated
from fewer samples than dimensions); compare values only between runs of the same length.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from anchorgen.errors import InputError


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) for symmetric PSD S1, S2 (D, D).

    S1 S2 is similar to the PSD matrix S1^(1/2) S2 S1^(1/2), so the trace is the sum of the
    square roots of that matrix's eigenvalues. Two symmetric eigendecompositions replace
    ``scipy.linalg.sqrtm`` (and its eps fix for singular products): sqrtm took minutes on
    the rank-deficient 2048x2048 products of a few hundred frames; this takes seconds and
    is exact up to rounding (negative rounding residue is clipped to 0). For feature sets
    smaller than their dimension, :func:`frechet_distance_of_features` is faster still.
    """
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2.0)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T  # S1^(1/2)
    inner = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(eig, 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) for N(mu1, S1) and N(mu2, S2).

    The Frechet (2-Wasserstein) distance of Gaussians, squared, as FID reports it
    (Heusel et al. 2017, eq. 6; Dowson and Landau 1982).
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise InputError(
            f"Frechet distance needs means (D,) and covariances (D, D) of one D, got "
            f"{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean_trace = trace_sqrt_product(sigma1, sigma2)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * covmean_trace)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise InputError(f"need features (N >= 2, D), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance_of_features(feat1: np.ndarray, feat2: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N1, D) and (N2, D).

    With few samples (N1 * N2 <= D^2, e.g. 100 frames of 2048-d Inception features) the
    trace term is computed in sample space: with A_i the centred features / sqrt(N_i - 1),
    S_i = A_i^T A_i and tr((S1 S2)^(1/2)) is the nuclear norm of A1 A2^T (N1, N2), since
    S1 S2 and (A1 A2^T)(A1 A2^T)^T share their non-zero eigenvalues. Exact, and seconds
    faster than any (D, D) decomposition.
    """
    mu1, sigma1 = gaussian_stats(feat1)
    mu2, sigma2 = gaussian_stats(feat2)
    n1, n2, d = len(feat1), len(feat2), len(mu1)
    if np.asarray(feat2).shape[1:] != (d,):
        raise InputError(f"feature sets have dimensions {d} and {np.asarray(feat2).shape[1:]}")
    if n1 * n2 > d * d:
        return frechet_distance(mu1, sigma1, mu2, sigma2)
    a1 = (np.asarray(feat1, np.float64) - mu1) / np.sqrt(n1 - 1)  # (N1, D)
    a2 = (np.asarray(feat2, np.float64) - mu2) / np.sqrt(n2 - 1)  # (N2, D)
    nuclear = float(np.linalg.svd(a1 @ a2.T, compute_uv=False).sum())
    diff = mu1 - mu2
    return float(diff @ diff + (a1**2).sum() + (a2**2).sum() - 2.0 * nuclear)


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


def _load_network(weights: Path, model, what: str):
    """``model`` with a state dict from a local safetensors file, keys checked strictly."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for bad files
        raise InputError(f"cannot read {what} weights {weights} as safetensors: {exc}") from exc
    expected = set(model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise InputError(
            f"{weights} is not a {what} state dict: "
            f"{len(missing)} missing keys (e.g. {sorted(missing)[:3]}), "
            f"{len(unexpected)} unexpected (e.g. {sorted(unexpected)[:3]})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"{weights}: tensor shapes do not match the {what} network: {exc}"
        ) from exc
    return model.eval()


def load_fid_inception(weights: Path):
    """The FID Inception network with pytorch-fid weights from a local safetensors file."""
    from anchorgen.evaluation.inception import FIDInceptionV3

    return _load_network(Path(weights), FIDInceptionV3(), "pytorch-fid Inception-v3")


def load_i3d(weights: Path):
    """The Kinetics-400 I3D network with weights from a local safetensors file."""
    from anchorgen.evaluation.i3d import InceptionI3d

    return _load_network(Path(weights), InceptionI3d(), "Kinetics-400 I3D (InceptionI3d)")


def inception_features(
    frames: np.ndarray, model, batch_size: int = 16, device: str = "cpu"
) -> np.ndarray:
    """Pool3 features (N, 2048) of RGB uint8 frames (N, H, W, 3)."""
    import torch
    from tqdm import tqdm

    model = model.to(device)
    out = []
    with torch.no_grad():
        for start in tqdm(
            range(0, len(frames), batch_size),
            desc="inception",
            unit="batch",
            disable=len(frames) <= batch_size,
        ):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + batch_size]))
            batch = batch.to(device).permute(0, 3, 1, 2).float() / 255.0  # (B, 3, H, W)
            out.append(model(batch).double().cpu().numpy())
    return np.concatenate(out)


def _check_frames(frames: np.ndarray, name: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) < 2:
        raise InputError(
            f"{name}: expected >= 2 RGB uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
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


def i3d_features(
    frames: np.ndarray, model, clip_length: int = 16, batch_size: int = 2, device: str = "cpu"
) -> np.ndarray:
    """I3D logits (N_clips, 400) of consecutive non-overlapping clips of a video (T, H, W, 3).

    Frames are resized to 224x224 (bilinear, no crop) and scaled to [-1, 1], as in the
    reference FVD code of Unterthiner et al.; ports differ here (VideoGPT crops and uses
    [-0.5, 0.5]), which moves FVD by about 10%: compare numbers from one implementation only.
    """
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from anchorgen.evaluation.i3d import I3D_INPUT_SIZE

    n_clips = len(frames) // clip_length
    model = model.to(device)
    out = []
    with torch.no_grad():
        for start in tqdm(
            range(0, n_clips, batch_size), desc="i3d", unit="batch", disable=n_clips <= batch_size
        ):
            stop = min(start + batch_size, n_clips)
            clips = np.ascontiguousarray(frames[start * clip_length : stop * clip_length])
            x = torch.from_numpy(clips).to(device).permute(0, 3, 1, 2).float()  # (B*L, 3, H, W)
            x = F.interpolate(
                x, size=(I3D_INPUT_SIZE, I3D_INPUT_SIZE), mode="bilinear", align_corners=False
            )
            x = x.view(stop - start, clip_length, 3, I3D_INPUT_SIZE, I3D_INPUT_SIZE).transpose(1, 2)
            out.append(model(2.0 * x / 255.0 - 1.0).double().cpu().numpy())  # (B, 400)
    return np.concatenate(out)


def fvd(
    gen_frames: np.ndarray,
    gt_frames: np.ndarray,
    i3d_weights: Path | str | None,
    clip_length: int = 16,
    batch_size: int = 2,
    device: str = "cpu",
) -> FrechetResult:
    """FVD between generated and ground-truth videos (T, H, W, 3) uint8, cut into clips.

    Each video is cut into consecutive ``clip_length``-frame clips (at least two each, so
    T >= 2 * clip_length); the Frechet distance is taken between the clips' I3D logits.
    ``i3d_weights``: a local safetensors file of the Kinetics-400 ``InceptionI3d`` state
    dict; ``None`` or a missing file gives a "not computed" result. With a handful of
    clips FVD is dominated by estimation noise: compare runs of equal length only.
    """
    gen, gt = _check_frames(gen_frames, "generated"), _check_frames(gt_frames, "ground truth")
    for frames, name in ((gen, "generated"), (gt, "ground truth")):
        if len(frames) < 2 * clip_length:
            raise InputError(
                f"{name}: FVD needs at least {2 * clip_length} frames (two {clip_length}-frame clips), "
                f"got {len(frames)}"
            )
    if i3d_weights is None:
        return _not_computed("no I3D weights given (Kinetics-400 InceptionI3d, safetensors)")
    weights = Path(i3d_weights)
    if not weights.is_file():
        return _not_computed(f"I3D weights not found at {weights}")
    model = load_i3d(weights)
    feats_gen = i3d_features(gen, model, clip_length, batch_size, device)
    feats_gt = i3d_features(gt, model, clip_length, batch_size, device)
    return FrechetResult(frechet_distance_of_features(feats_gen, feats_gt), "")
