"""Sampling: DDIM over windows with carried context, so any length of speech stitches.

Window k starts at ``k * (L - n)``: its first ``n`` frames are the previous window's last
``n`` generated frames, given to the model as context and imposed on its x_0 estimate at
every step (inpainting), so the new frames continue the old ones (EMO, "motion frames").
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from anchorgen.errors import InputError
from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.audio import (
    frame_features,
    load_speech,
    normalise_loudness,
    num_video_frames,
    speech_envelope,
)
from anchorgen.motion.audio2motion.head import (
    apply_head_drift,
    identity_head_track,
    sample_head_drift,
)
from anchorgen.motion.audio2motion.model import Audio2Motion
from anchorgen.motion.audio2motion.representation import (
    LAYOUT,
    decode,
    identity_frame,
    mouth_dims,
    mouth_opening,
)

HEAD_DRIFT_DEFAULT = 1.0
"""The identity's own head motion, added to the model's (1.0: roll and turn within 1.2x of the
identity's, measured on the landmarks). Rendered on an H200 with the depth fix of
``representation.face_in_body_depth``, the rendered mouth follows the motion's as closely as
without the drift (r 0.60 / 0.76 on the two unseen speeches, against 0.61 / 0.58 without);
docs/BENCHMARKS.md, "Speech to motion". ``head_drift=0`` (``--head-drift 0``) keeps the
model's own, nearly still head."""


def window_starts(num_frames: int, window: int, context_frames: int) -> list[int]:
    """Start frames of the windows that cover ``num_frames`` with ``context_frames`` carried."""
    if window <= context_frames:
        raise ValueError(f"window ({window}) must exceed context_frames ({context_frames})")
    stride = window - context_frames
    starts = [0]
    while starts[-1] + window < num_frames:
        starts.append(starts[-1] + stride)
    return starts


def ddim_timesteps(num_train_timesteps: int, num_steps: int) -> list[int]:
    """Descending, evenly spaced training timesteps for ``num_steps`` DDIM steps."""
    return sorted(
        {round(float(v)) for v in np.linspace(num_train_timesteps - 1, 0, num_steps)}, reverse=True
    )


@torch.no_grad()
def sample_window(
    model: Audio2Motion,
    audio: torch.Tensor,
    context: torch.Tensor,
    context_mask: torch.Tensor,
    generator: torch.Generator,
    num_inference_steps: int = 25,
    guidance_scale: float = 2.0,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0; Song et al. 2021, eq. 12) on the model's x_0 estimate.

    Classifier-free guidance acts on the lip and jaw dims (the mouth components in latent
    space) only: speech tightens the mouth; the other parts take the speech-conditioned
    estimate as it is (scale 1). Their variety across seeds comes from training (see
    ``Audio2MotionConfig.gesture_swap_prob``): the sampler's eta, step count and guidance
    barely change it (docs/BENCHMARKS.md, "Speech to motion").
    audio: (B, L, (2m+1) * C) normalised; context, context_mask: (B, L, W) in the diffusion
    space (W = ``model.diffusion_dim``). Returns (B, L, W).
    """
    ab = model.alphas_cumprod
    device = ab.device
    # Noise from a CPU generator: the same seed gives the same motion on any device.
    x = torch.randn(context.shape, generator=generator).to(device)
    steps = ddim_timesteps(len(ab), num_inference_steps)
    b = x.shape[0]
    keep_all = torch.ones(b, dtype=torch.bool, device=device)
    scale = torch.ones(context.shape[-1], device=device)
    if model.config.latent_dim:
        scale[model.latent_guided] = guidance_scale
    else:
        mouth = mouth_dims()
        scale[torch.from_numpy(mouth[mouth < len(scale)]).to(device)] = guidance_scale
    for i, t in enumerate(steps):
        tt = torch.full((b,), t, dtype=torch.long, device=device)
        x0 = model(x, tt, audio, context, context_mask, keep_all)
        if guidance_scale != 1.0:
            x0_free = model(x, tt, audio, context, context_mask, ~keep_all)
            x0 = x0_free + scale * (x0 - x0_free)
        x0 = torch.where(context_mask > 0, context, x0)  # inpaint the carried frames
        eps = (x - ab[t].sqrt() * x0) / (1 - ab[t]).sqrt()
        ab_prev = ab[steps[i + 1]] if i + 1 < len(steps) else torch.ones((), device=device)
        x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
    return x


@torch.no_grad()
def generate_normalised(
    model: Audio2Motion,
    features: torch.Tensor,
    num_frames: int,
    seed: int = 0,
    num_inference_steps: int = 25,
    guidance_scale: float = 2.0,
    progress: bool = True,
) -> torch.Tensor:
    """(T', 2m+1, C) raw speech features -> (num_frames, D) normalised motion.

    ``T'`` must be ``window_starts(num_frames, L, n)[-1] + L``: the last window runs past the end
    of the speech and sees the (silent) padding the feature extractor adds.
    """
    cfg = model.config
    model.eval()
    length, n = cfg.window, cfg.context_frames
    starts = window_starts(num_frames, length, n)
    padded_len = starts[-1] + length
    if features.shape[0] != padded_len:
        raise ValueError(f"features cover {features.shape[0]} frames, expected {padded_len}")
    device = model.alphas_cumprod.device
    audio = model.normalise_audio(features.to(device))  # (T', (2m+1) * C)
    out = torch.zeros(padded_len, cfg.motion_dim, device=device)
    generator = torch.Generator().manual_seed(int(seed))
    for k, start in enumerate(
        tqdm(starts, desc="audio2motion", unit="window", disable=not progress)
    ):
        context = torch.zeros(1, length, model.diffusion_dim, device=device)
        mask = torch.zeros_like(context)
        if k > 0:
            context[0, :n] = model.to_latent(out[start : start + n])
            mask[0, :n] = 1.0
        window = sample_window(
            model,
            audio[None, start : start + length],
            context,
            mask,
            generator,
            num_inference_steps,
            guidance_scale,
        )
        out[start : start + length] = model.from_latent(window[0])
    return out[:num_frames].cpu()


def _closed_mouth(ident_values: np.ndarray, openings: np.ndarray) -> np.ndarray:
    """Mean mouth dims over the identity's 10 % most closed frames."""
    ok = np.isfinite(openings)
    threshold = np.percentile(openings[ok], 10)
    closed = ok & (openings <= threshold)
    return ident_values[closed][:, mouth_dims()].mean(0)


def voice_activity(waveform: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """(T,) in [0, 1]: 0 for silence (below -55 dBFS after loudness scaling), 1 for speech."""
    rms = speech_envelope(normalise_loudness(waveform), fps, num_frames, smooth=1)
    db = 20 * np.log10(np.maximum(rms, 1e-8))
    gate = np.clip((db + 55.0) / 15.0, 0.0, 1.0)
    # Open slightly before and close slightly after speech: max over +-2 frames, then smooth.
    padded = np.pad(gate, 2, mode="edge")
    gate = np.max(np.stack([padded[k : k + num_frames] for k in range(5)]), axis=0)
    return np.convolve(np.pad(gate, 1, mode="edge"), np.ones(3) / 3, mode="valid")


def motion_from_features(
    model: Audio2Motion,
    features: torch.Tensor,
    num_frames: int,
    identity: LandmarkSequence,
    fps: float,
    gate: np.ndarray | None,
    seed: int = 0,
    num_inference_steps: int = 25,
    guidance_scale: float = 2.0,
    progress: bool = True,
    smooth_frames: float = 2.0,
    head_drift: float = HEAD_DRIFT_DEFAULT,
) -> LandmarkSequence:
    """Padded (T', 2m+1, C) features -> LandmarkSequence of ``num_frames`` frames.

    ``gate`` (T,) in [0, 1] blends the mouth dims to the identity's closed mouth where it
    is 0 (silence); None leaves the model's mouth untouched. ``smooth_frames``: std of a
    temporal Gaussian on head, body and hands (half of it on the face), as landmark
    trackers smooth; 0 turns it off. ``head_drift``: scale of the head pose drift drawn
    (with ``seed``) from the identity's own head track and added to the model's head
    (``anchorgen.motion.audio2motion.head``); the default is ``HEAD_DRIFT_DEFAULT`` (1), 0
    leaves the model's head alone.
    """
    if head_drift < 0:
        raise InputError(f"head_drift must be >= 0, got {head_drift}")
    normalised = generate_normalised(
        model, features, num_frames, seed, num_inference_steps, guidance_scale, progress
    )
    values = (
        (normalised * model.motion_std.cpu() + model.motion_mean.cpu()).numpy().astype(np.float64)
    )
    if smooth_frames > 0:
        from scipy.ndimage import gaussian_filter1d

        face = LAYOUT["face"]
        values[:, face] = gaussian_filter1d(
            values[:, face], smooth_frames / 2, axis=0, mode="nearest"
        )
        values[:, face.stop :] = gaussian_filter1d(
            values[:, face.stop :], smooth_frames, axis=0, mode="nearest"
        )
    ident = identity_frame(identity)
    if gate is not None:
        dims = mouth_dims()
        closed = _closed_mouth(ident.clip.values, mouth_opening(identity))
        values[:, dims] = gate[:, None] * values[:, dims] + (1 - gate[:, None]) * closed
    if head_drift > 0:  # after the gate, so a closed mouth turns with the face
        track = identity_head_track(identity, smooth_frames)  # smoothed as the model's head
        drift = sample_head_drift(track, num_frames, np.random.default_rng(seed))
        values = apply_head_drift(values, head_drift * drift, ident.clip.mean_face)
    seq = decode(values, ident)
    seq.fps = fps
    return seq


def speech_inputs(
    model: Audio2Motion, waveform: np.ndarray, fps: float
) -> tuple[torch.Tensor, int, np.ndarray]:
    """Waveform -> (padded features, number of frames, voice-activity gate)."""
    num_frames = num_video_frames(waveform.size, fps)
    starts = window_starts(num_frames, model.config.window, model.config.context_frames)
    features = frame_features(
        waveform, fps, model.config.audio_context, starts[-1] + model.config.window
    )
    if features.shape[-1] != model.config.audio_dim:
        raise InputError(
            f"the model expects {model.config.audio_dim}-dim speech features, got {features.shape[-1]}"
        )
    return features, num_frames, voice_activity(waveform, fps, num_frames)


def generate_motion(
    model: Audio2Motion,
    waveform_or_path: np.ndarray | str | Path,
    identity: LandmarkSequence,
    fps: float | None = None,
    seed: int = 0,
    num_inference_steps: int = 25,
    guidance_scale: float = 2.0,
    progress: bool = True,
    smooth_frames: float = 2.0,
    head_drift: float = HEAD_DRIFT_DEFAULT,
) -> LandmarkSequence:
    """Speech -> landmark motion of the identity, in the identity's image space.

    ``identity``: the identity's training landmarks (face shape, framing, unmodelled
    points). ``fps`` defaults to the identity's. Silent frames get the identity's closed
    mouth: the mouth dims are blended to it by a voice-activity gate. Different ``seed``
    values give different head and hand motion for the same speech. ``head_drift`` scales
    the head pose drift drawn from the identity's own head track (0: the model's head only;
    see ``motion_from_features``).
    """
    if isinstance(waveform_or_path, (str, Path)):
        waveform = load_speech(waveform_or_path)
    else:
        waveform = np.asarray(waveform_or_path, np.float32).reshape(-1)
        if waveform.size == 0:
            raise InputError("empty waveform")
    fps = float(identity.fps if fps is None else fps)
    features, num_frames, gate = speech_inputs(model, waveform, fps)
    return motion_from_features(
        model,
        features,
        num_frames,
        identity,
        fps,
        gate,
        seed,
        num_inference_steps,
        guidance_scale,
        progress,
        smooth_frames,
        head_drift,
    )
