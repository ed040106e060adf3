"""Training recipe: pretrain on every clip with speech, then fine-tune on the identity.

``train_audio2motion(config) -> run dir`` holding ``model/`` (safetensors + config.json,
normalisation statistics included), ``config.yaml``, ``identity_landmarks.npz`` (the
identity's training landmarks that ``generate_motion`` places the motion with) and
``log.jsonl``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from anchorgen.config import BaseConfig, require
from anchorgen.errors import InputError
from anchorgen.io.atomic import atomic_directory
from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.audio import N_MELS, frame_features, load_speech
from anchorgen.motion.audio2motion.model import Audio2Motion
from anchorgen.motion.audio2motion.representation import LAYOUT, MOTION_DIM, encode, mouth_dims

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Audio2MotionConfig(BaseConfig):
    """Settings of the ``audio2motion`` preset."""

    data_dir: str = "../shared/data"
    """Folder whose ``anchors/*.mp4`` and ``drivers/*.mp4`` (all with speech) are pretrained on."""
    identity_clip: str = "anchors/kitchen_presenter_20s.mp4"
    """The identity's clip, relative to ``data_dir`` (or absolute)."""
    identity_seconds: float = 16.0
    """Only the first this-many seconds of the identity clip are used for training."""
    landmarks_dir: str = ".cache/landmarks"
    """Cache of tracked landmarks, ``<clip stem>.<key>.npz`` per clip (``landmark_cache_path``);
    missing ones are tracked."""
    output_dir: str = "runs/audio2motion"
    """The run directory to write (replaced only if ``overwrite``)."""
    overwrite: bool = False
    """Replace an existing ``output_dir``."""
    window: int = 48
    """Frames per denoised window."""
    context_frames: int = 8
    """Frames carried from the previous window (given as context, inpainted)."""
    audio_context: int = 2
    """m: each frame sees the speech features of frames t-m .. t+m (EMO uses 2)."""
    d_model: int = 256
    """Transformer width."""
    num_layers: int = 4
    """Transformer layers."""
    num_heads: int = 4
    """Attention heads."""
    dropout: float = 0.1
    """Dropout inside the transformer."""
    num_train_timesteps: int = 1000
    """Diffusion steps of the cosine schedule."""
    pretrain_steps: int = 4000
    """Optimizer steps on all clips."""
    finetune_steps: int = 600
    """Optimizer steps on the identity only, after pretraining."""
    batch_size: int = 64
    """Windows per step."""
    learning_rate: float = 3e-4
    """AdamW learning rate (pretraining; fine-tuning uses a third of it)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    mouth_loss_weight: float = 4.0
    """Extra weight of the lip and jaw dims in the loss: speech drives them tightly."""
    balance_parts: bool = True
    """Give each part (mouth, rest of the face, head, body, each hand) the same total loss
    weight (the mouth ``mouth_loss_weight`` times it) instead of the same weight per dim, so
    the 4 head dims are not drowned by 282 face dims."""
    prediction_type: str = "v"
    """"v": the network predicts the velocity v and x_0 = sqrt(abar) x_t - sqrt(1-abar) v
    (Salimans & Ho 2022); "x0": it predicts x_0 directly."""
    latent: bool = True
    """Diffuse on whitened per-part principal components of the motion (``LATENT_COMPONENTS``
    per part, fitted on the pretraining clips) instead of all 453 dims."""
    loss_weighting: str = "x0"
    """"x0": the x_0 error weighs the same at every noise level; "v": weighted by
    1 / (1 - abar_t), i.e. the v loss."""
    velocity_loss_weight: float = 4.0
    """Weight of the frame-to-frame velocity loss on x_0 (smooth, right-speed motion)."""
    cond_drop_prob: float = 0.1
    """Probability of dropping the speech during training (classifier-free guidance)."""
    context_prob: float = 0.7
    """Probability that a training window gets its first frames as carried context."""
    audio_noise: float = 0.3
    """Std of Gaussian noise added to the normalised speech features during training."""
    audio_frame_drop: float = 0.15
    """Fraction of frames whose speech is zeroed during training. With the noise, this keeps
    a small clip from being memorised frame by frame (gestures jumping between remembered
    poses); speech has to explain motion through its smooth, shared structure."""
    gesture_swap_prob: float = 0.5
    """Probability that a training window's head, body and hands come from another random
    window of the same clip (the face keeps its own speech). Head drift and gestures of a
    16 s clip are otherwise a function of its speech that the model memorises: on unseen
    speech it then gives nearly the same small motion for every seed. The parts are stored
    relative to the shoulders and the face relative to its own frame, so a swapped window is
    still a valid pose."""
    seed: int = 0
    """Seed of initialisation, window sampling and noise."""
    device: str = "auto"
    """"cpu", "cuda" or "auto" (cuda when available). The model is small: CPU works."""

    def __post_init__(self) -> None:
        require(self.window > self.context_frames >= 1, "need window > context_frames >= 1")
        require(self.audio_context >= 0, "audio_context must be >= 0")
        require(self.d_model % self.num_heads == 0, "d_model must be divisible by num_heads")
        require(self.num_layers >= 1, "num_layers must be >= 1")
        require(self.pretrain_steps >= 0 and self.finetune_steps >= 0, "steps must be >= 0")
        require(self.pretrain_steps + self.finetune_steps > 0, "train for at least one step")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.learning_rate > 0, "learning_rate must be positive")
        require(self.identity_seconds > 0, "identity_seconds must be positive")
        require(0.0 <= self.cond_drop_prob < 1.0, "cond_drop_prob must be in [0, 1)")
        require(0.0 <= self.context_prob <= 1.0, "context_prob must be in [0, 1]")
        require(self.audio_noise >= 0.0, "audio_noise must be >= 0")
        require(0.0 <= self.audio_frame_drop < 1.0, "audio_frame_drop must be in [0, 1)")
        require(0.0 <= self.gesture_swap_prob <= 1.0, "gesture_swap_prob must be in [0, 1]")
        require(self.mouth_loss_weight > 0, "mouth_loss_weight must be positive")
        require(self.prediction_type in ("x0", "v"), "prediction_type must be 'x0' or 'v'")
        require(self.loss_weighting in ("x0", "v"), "loss_weighting must be 'x0' or 'v'")
        require(self.num_train_timesteps >= 10, "num_train_timesteps must be >= 10")
        require(
            self.device in ("cpu", "cuda", "auto"),
            f"device must be cpu, cuda or auto, got {self.device!r}",
        )
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU")

    def torch_device(self) -> torch.device:
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.device(auto if self.device == "auto" else self.device)


PRESETS: dict[str, Audio2MotionConfig] = {
    "audio2motion": Audio2MotionConfig(),
    "audio2motion-tiny": Audio2MotionConfig(
        d_model=32,
        num_layers=1,
        num_heads=2,
        window=16,
        context_frames=4,
        pretrain_steps=4,
        finetune_steps=2,
        batch_size=4,
    ),
}


@dataclasses.dataclass
class TrainingClip:
    """Aligned motion and speech of one clip."""

    name: str
    values: np.ndarray
    """(T, D) motion vectors."""
    mask: np.ndarray
    """(T, D) bool validity."""
    audio: np.ndarray
    """(T, 2m+1, C) speech features."""


TRACK_CACHE_VERSION = 2
"""Bump when ``prepare.holistic.track_frames`` changes what it returns, so cached tracks are
tracked again (2: the face and hands in the body's depth frame, ``to_body_depth``; a version-1
track put the face behind the neck of decoded speech motion, docs/BENCHMARKS.md)."""


def landmark_cache_path(video: Path, cache_dir: Path) -> Path:
    """``cache_dir/<stem>.<key>.npz``: the key hashes the tracker's version and the video's
    absolute path, size and modification time, so an edited or replaced clip, a clip of the
    same name in another folder or a newer tracker never reads a stale track."""
    stat = video.stat()
    identity = f"{TRACK_CACHE_VERSION}|{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    key = hashlib.sha1(identity.encode()).hexdigest()[:12]
    return cache_dir / f"{video.stem}.{key}.npz"


def track_landmarks(video: Path, cache_dir: Path) -> LandmarkSequence:
    """Landmarks of ``video`` from its ``landmark_cache_path``, tracking (and caching) if missing."""
    cached = landmark_cache_path(video, cache_dir)
    if cached.is_file():
        return LandmarkSequence.load(cached)
    from anchorgen.io.video import iter_frames, probe_video
    from anchorgen.prepare.holistic import track_frames

    info = probe_video(video)
    total = round(info.duration * info.fps)
    seq = track_frames(iter_frames(video), info.fps, (info.width, info.height), total=total)
    cache_dir.mkdir(parents=True, exist_ok=True)
    seq.save(cached)
    return seq


def clip_from_landmarks(
    name: str, seq: LandmarkSequence, waveform: np.ndarray, audio_context: int
) -> TrainingClip:
    """Encode motion and compute features for exactly ``len(seq)`` frames."""
    motion = encode(seq)
    feats = frame_features(waveform, seq.fps, audio_context, num_frames=len(seq))
    return TrainingClip(name, motion.values, motion.mask, feats.numpy())


def training_videos(config: Audio2MotionConfig) -> tuple[list[Path], Path]:
    """(every clip trained on, sorted; the identity's clip): ``InputError`` when missing."""
    data = Path(config.data_dir)
    identity_path = Path(config.identity_clip)
    identity_path = identity_path if identity_path.is_absolute() else data / identity_path
    if not identity_path.is_file():
        raise InputError(f"identity clip not found: {identity_path}")
    videos = sorted({*data.glob("anchors/*.mp4"), *data.glob("drivers/*.mp4"), identity_path})
    return videos, identity_path


def check_inputs(config: Audio2MotionConfig) -> list[str]:
    """What a dry run reports: the clips found and which need tracking; raises on bad paths."""
    videos, identity_path = training_videos(config)
    if Path(config.output_dir).exists() and not config.overwrite:
        raise InputError(f"{config.output_dir} already exists (overwrite=true replaces it)")
    cache = Path(config.landmarks_dir)
    lines = [f"identity: {identity_path} (first {config.identity_seconds:g} s)"]
    for video in videos:
        cached = landmark_cache_path(video, cache).is_file()
        lines.append(f"clip: {video} ({'landmarks cached' if cached else 'to be tracked'})")
    return lines


def load_clips(
    config: Audio2MotionConfig,
) -> tuple[list[TrainingClip], TrainingClip, LandmarkSequence]:
    """All pretraining clips, the identity's training clip and its training landmarks."""
    videos, identity_path = training_videos(config)
    clips: list[TrainingClip] = []
    identity: tuple[TrainingClip, LandmarkSequence] | None = None
    for video in tqdm(videos, desc="clips", unit="clip"):
        seq = track_landmarks(video, Path(config.landmarks_dir))
        if video.resolve() == identity_path.resolve():  # errors here are fatal
            seq = seq.slice(0, round(config.identity_seconds * seq.fps))
            identity = (
                clip_from_landmarks(video.stem, seq, load_speech(video), config.audio_context),
                seq,
            )
            clips.append(identity[0])
            continue
        try:
            clips.append(
                clip_from_landmarks(video.stem, seq, load_speech(video), config.audio_context)
            )
        except InputError as exc:  # a clip without speech or face is left out of pretraining
            logger.warning("skipping %s: %s", video, exc)
    if identity is None:
        raise InputError(f"identity clip {identity_path} was not loaded")
    return clips, identity[0], identity[1]


def normalisation_stats(clips: list[TrainingClip]) -> tuple[np.ndarray, ...]:
    """Per-dim mean/std of the measured motion values and per-band mean/std of the speech."""
    values = np.concatenate([c.values for c in clips]).astype(np.float64)
    mask = np.concatenate([c.mask for c in clips])
    count = np.maximum(mask.sum(0), 1)
    mean = (values * mask).sum(0) / count
    std = np.sqrt((((values - mean) * mask) ** 2).sum(0) / count)
    std = np.maximum(std, 1e-3)
    audio = np.concatenate([c.audio[:, c.audio.shape[1] // 2] for c in clips]).astype(
        np.float64
    )  # (N, C)
    return mean, std, audio.mean(0), np.maximum(audio.std(0), 1e-3)


def sample_batch(
    clips: list[TrainingClip],
    window: int,
    batch_size: int,
    rng: np.random.Generator,
    gesture_swap_prob: float = 0.0,
) -> tuple[np.ndarray, ...]:
    """Random windows (clips weighted by length); short clips are padded with mask False.

    With probability ``gesture_swap_prob`` a window's head, body and hand dims (and their
    masks) are taken from a second random window of the same clip (see
    ``Audio2MotionConfig.gesture_swap_prob``).
    """
    lengths = np.array([len(c.values) for c in clips], np.float64)
    picks = rng.choice(len(clips), size=batch_size, p=lengths / lengths.sum())
    c0 = clips[0]
    values = np.zeros((batch_size, window, c0.values.shape[1]), np.float32)
    mask = np.zeros(values.shape, bool)
    audio = np.empty((batch_size, window, *c0.audio.shape[1:]), np.float32)
    gestures = slice(LAYOUT["head"].start, MOTION_DIM)  # head, body, hands: the layout's tail
    for i, k in enumerate(picks):
        clip = clips[k]
        start = int(rng.integers(0, max(len(clip.values) - window, 0) + 1))
        stop = min(start + window, len(clip.values))
        n = stop - start
        values[i, :n] = clip.values[start:stop]
        mask[i, :n] = clip.mask[start:stop]
        audio[i, :n] = clip.audio[start:stop]
        audio[i, n:] = clip.audio.min()
        if gesture_swap_prob > 0 and rng.random() < gesture_swap_prob:
            other = int(rng.integers(0, max(len(clip.values) - window, 0) + 1))
            values[i, :n, gestures] = clip.values[other : other + n, gestures]
            mask[i, :n, gestures] = clip.mask[other : other + n, gestures]
    return values, mask, audio


LATENT_COMPONENTS = {
    "mouth": 24,
    "face_rest": 16,
    "head": 4,
    "body": 12,
    "left_hand": 12,
    "right_hand": 12,
}
"""Principal components kept per part when ``latent``; each hand's presence value adds one
(82 in all, fewer than d_model)."""


def motion_parts() -> dict[str, np.ndarray]:
    """Part name -> its dims: mouth, rest of the face, head, body, left hand, right hand."""
    mouth = mouth_dims()
    face = np.arange(LAYOUT["face"].start, LAYOUT["face"].stop)
    parts = {"mouth": mouth, "face_rest": np.setdiff1d(face, mouth)}
    for name in ("head", "body", "left_hand", "right_hand"):
        parts[name] = np.arange(LAYOUT[name].start, LAYOUT[name].stop)
    return parts


def dim_loss_weights(mouth_weight: float, balance_parts: bool) -> np.ndarray:
    """(D,) loss weight per motion dim, mean 1.

    Balanced: every part (mouth, rest of face, head, body, left hand, right hand) gets the
    same total weight, the mouth ``mouth_weight`` times it. Unbalanced: 1 per dim, the mouth
    dims ``mouth_weight``.
    """
    weights = np.ones(MOTION_DIM)
    for name, dims in motion_parts().items():
        share = mouth_weight if name == "mouth" else 1.0
        weights[dims] = share / len(dims) if balance_parts else share
    return weights / weights.mean()


def latent_parts() -> dict[str, np.ndarray]:
    """``motion_parts`` with each hand's presence value split off as its own part.

    The presence value is measured on frames where the hand's points are not, so it gets its
    own component instead of being fitted with the points (where it is always +1).
    """
    parts = motion_parts()
    for hand in ("left_hand", "right_hand"):
        parts[hand], parts[f"{hand}_presence"] = parts[hand][:-1], parts[hand][-1:]
    return parts


def latent_basis(
    clips: list[TrainingClip], mean: np.ndarray, std: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-part PCA of the normalised motion: basis (D, K), scale (K,), mouth flags (K,).

    Each part's components come from the frames where that part was measured; the basis is
    block-diagonal (orthonormal columns) and ``scale`` is each component's std, so the
    latent coordinates are whitened.
    """
    values = np.concatenate([c.values for c in clips]).astype(np.float64)
    mask = np.concatenate([c.mask for c in clips])
    normalised = (values - mean) / std
    columns, scales, guided = [], [], []
    for name, dims in latent_parts().items():
        rows = normalised[mask[:, dims].all(axis=1)][:, dims]
        if len(rows) < 2:
            raise InputError(f"the training clips never show the {name}: cannot fit its basis")
        centred = rows - rows.mean(0)
        _, sing, vt = np.linalg.svd(centred, full_matrices=False)
        k = min(LATENT_COMPONENTS.get(name, 1), len(dims), len(sing))
        block = np.zeros((MOTION_DIM, k))
        block[dims] = vt[:k].T
        columns.append(block)
        scales.append(np.maximum(sing[:k] / np.sqrt(len(rows)), 1e-3))
        guided.append(np.full(k, name == "mouth"))
    return np.concatenate(columns, 1), np.concatenate(scales), np.concatenate(guided)


def diffusion_loss(
    model: Audio2Motion,
    values: torch.Tensor,
    mask: torch.Tensor,
    audio: torch.Tensor,
    config: Audio2MotionConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Masked denoising loss (DDPM forward process, Ho et al. 2020, eq. 4) + velocity term.

    The error of the x_0 estimate is weighted per dim by ``dim_loss_weights``; with
    ``loss_weighting="v"`` also by 1 / (1 - abar_t), which makes it the v loss
    (|v_hat - v|^2 = |x0_hat - x0|^2 / (1 - abar), Salimans & Ho 2022, sec. 4).
    values, mask: (B, L, D) raw motion; audio: (B, L, 2m+1, C) raw features.
    """
    b, length, _ = values.shape
    device = values.device
    x0 = torch.where(
        mask, (values - model.motion_mean) / model.motion_std, torch.zeros((), device=device)
    )
    dim_weights = dim_loss_weights(config.mouth_loss_weight, config.balance_parts)
    weights = mask.float() * torch.from_numpy(dim_weights).float().to(device)  # (B, L, D)
    # Random draws come from a CPU generator: the same seed gives the same run on any device.
    t = torch.randint(0, model.config.num_train_timesteps, (b,), generator=generator).to(device)
    ab = model.alphas_cumprod[t][:, None, None]
    z0 = model.to_latent(x0)  # (B, L, K) or x0 itself
    noise = torch.randn(z0.shape, generator=generator).to(device)
    noisy = ab.sqrt() * z0 + (1 - ab).sqrt() * noise
    has_context = (torch.rand(b, generator=generator) < config.context_prob).to(device)
    context_mask = torch.zeros_like(x0)
    context_mask[has_context, : config.context_frames] = 1.0
    # In latent space the carried frames are given whole (unmeasured dims at their mean).
    latent_context = context_mask[..., :1].expand_as(z0) if model.config.latent_dim else None
    context_mask *= mask.float()
    keep_audio = (torch.rand(b, generator=generator) >= config.cond_drop_prob).to(device)
    speech = model.normalise_audio(audio)  # (B, L, (2m+1) * C)
    speech = speech + config.audio_noise * torch.randn(speech.shape, generator=generator).to(device)
    speech = speech * (torch.rand(b, length, 1, generator=generator) >= config.audio_frame_drop).to(
        device
    )
    given = context_mask if latent_context is None else latent_context
    pred = model.from_latent(model(noisy, t, speech, z0 * given, given, keep_audio))  # (B, L, D)
    weights = weights * (1 - context_mask)  # carried frames are given, not learned
    vel_w = weights[:, 1:] * (weights[:, :-1] > 0)
    total, vel_total = weights.sum().clamp_min(1.0), vel_w.sum().clamp_min(1.0)
    if config.loss_weighting == "v":  # per-window factor: a weighted sum, not mean
        weights, vel_w = weights / (1 - ab), vel_w / (1 - ab)
    loss = (weights * (pred - x0) ** 2).sum() / total
    vel = ((pred[:, 1:] - pred[:, :-1]) - (x0[:, 1:] - x0[:, :-1])) ** 2
    return loss + config.velocity_loss_weight * (vel_w * vel).sum() / vel_total


def _run_stage(
    model: Audio2Motion,
    clips: list[TrainingClip],
    steps: int,
    lr: float,
    config: Audio2MotionConfig,
    rng: np.random.Generator,
    generator: torch.Generator,
    log: list[dict],
    stage: str,
) -> None:
    if steps == 0:
        return
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1.0))),
    )
    device = next(model.parameters()).device
    bar = tqdm(range(steps), desc=stage, unit="step", mininterval=5.0)
    for step in bar:
        batch = sample_batch(clips, config.window, config.batch_size, rng, config.gesture_swap_prob)
        values, mask, audio = (torch.from_numpy(a).to(device) for a in batch)
        loss = diffusion_loss(model, values, mask, audio, config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            value = loss.item()
            log.append({"stage": stage, "step": step, "loss": value})
            bar.set_postfix(loss=f"{value:.4f}")


def build_model(
    config: Audio2MotionConfig, fps: float, audio_dim: int = N_MELS, latent_dim: int = 0
) -> Audio2Motion:
    return Audio2Motion(
        motion_dim=MOTION_DIM,
        audio_dim=audio_dim,
        audio_context=config.audio_context,
        window=config.window,
        context_frames=config.context_frames,
        d_model=config.d_model,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        dropout=config.dropout,
        num_train_timesteps=config.num_train_timesteps,
        fps=fps,
        prediction_type=config.prediction_type,
        latent_dim=latent_dim,
    )


def train_on_clips(
    config: Audio2MotionConfig, pretrain: list[TrainingClip], identity: TrainingClip, fps: float
) -> tuple[Audio2Motion, list[dict]]:
    """Pretrain on ``pretrain`` then fine-tune on ``identity``; returns the model and its log."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    mean, std, amean, astd = normalisation_stats(pretrain)
    stats = {"motion_mean": mean, "motion_std": std, "audio_mean": amean, "audio_std": astd}
    if config.latent:
        basis, scale, guided = latent_basis(pretrain, mean, std)
        stats.update(latent_basis=basis, latent_scale=scale, latent_guided=guided)
    model = build_model(
        config, fps, identity.audio.shape[-1], stats["latent_scale"].size if config.latent else 0
    )
    for name, value in stats.items():
        buffer = getattr(model, name)
        buffer.copy_(torch.from_numpy(value).to(buffer.dtype))
    model.to(config.torch_device())
    log: list[dict] = []
    _run_stage(
        model,
        pretrain,
        config.pretrain_steps,
        config.learning_rate,
        config,
        rng,
        generator,
        log,
        "pretrain",
    )
    _run_stage(
        model,
        [identity],
        config.finetune_steps,
        config.learning_rate / 3,
        config,
        rng,
        generator,
        log,
        "finetune",
    )
    return model.cpu().eval(), log


def save_run(
    out: str | Path,
    model: Audio2Motion,
    config: Audio2MotionConfig,
    identity_seq: LandmarkSequence,
    log: list[dict],
) -> Path:
    """Write a run directory atomically: model/, config.yaml, identity_landmarks.npz, log.jsonl."""
    out = Path(out)
    with atomic_directory(out, overwrite=config.overwrite) as tmp:
        model.save_pretrained(tmp / "model", safe_serialization=True)
        config.save(tmp / "config.yaml")
        identity_seq.save(tmp / "identity_landmarks.npz")
        (tmp / "log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in log))
    return out


def train_audio2motion(config: Audio2MotionConfig) -> Path:
    """Train the speech-to-motion model and write its run directory; returns that path."""
    clips, identity, identity_seq = load_clips(config)
    model, log = train_on_clips(config, clips, identity, identity_seq.fps)
    return save_run(config.output_dir, model, config, identity_seq, log)


def save_clip_pack(
    out: str | Path,
    clips: list[TrainingClip],
    identity: TrainingClip,
    identity_seq: LandmarkSequence,
    overwrite: bool = False,
) -> Path:
    """Write the encoded training clips to a folder that trains without video decoding.

    ``clips.npz`` holds each clip's motion, mask and speech features; ``identity_landmarks.npz``
    the identity's training landmarks. ``train_on_pack`` trains from it (e.g. on a GPU
    machine without PyAV or MediaPipe).
    """
    arrays: dict[str, np.ndarray] = {"names": np.array([c.name for c in clips])}
    for i, clip in enumerate(clips):
        arrays[f"values_{i}"], arrays[f"mask_{i}"] = clip.values, clip.mask
        arrays[f"audio_{i}"] = clip.audio.astype(np.float32)
    arrays["identity_index"] = np.array(next(i for i, c in enumerate(clips) if c is identity))
    with atomic_directory(Path(out), overwrite=overwrite) as tmp:
        np.savez_compressed(tmp / "clips.npz", **arrays)
        identity_seq.save(tmp / "identity_landmarks.npz")
    return Path(out)


def load_clip_pack(
    pack: str | Path,
) -> tuple[list[TrainingClip], TrainingClip, LandmarkSequence]:
    """The clips, the identity's clip and its landmarks written by ``save_clip_pack``."""
    pack = Path(pack)
    if not (pack / "clips.npz").is_file():
        raise InputError(f"{pack} is not a clip pack (no clips.npz)")
    with np.load(pack / "clips.npz", allow_pickle=False) as data:
        clips = [
            TrainingClip(str(name), data[f"values_{i}"], data[f"mask_{i}"], data[f"audio_{i}"])
            for i, name in enumerate(data["names"])
        ]
        identity = clips[int(data["identity_index"])]
    return clips, identity, LandmarkSequence.load(pack / "identity_landmarks.npz")


def train_on_pack(config: Audio2MotionConfig, pack: str | Path) -> Path:
    """``train_audio2motion`` from a ``save_clip_pack`` folder; returns the run directory."""
    clips, identity, identity_seq = load_clip_pack(pack)
    model, log = train_on_clips(config, clips, identity, identity_seq.fps)
    return save_run(config.output_dir, model, config, identity_seq, log)


def load_run(run_dir: str | Path) -> tuple[Audio2Motion, LandmarkSequence]:
    """The model and the identity's training landmarks of a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "model" / "config.json").is_file():
        raise InputError(f"{run_dir} is not an audio2motion run (no model/config.json)")
    model = Audio2Motion.from_pretrained(str(run_dir / "model"), use_safetensors=True).eval()
    return model, LandmarkSequence.load(run_dir / "identity_landmarks.npz")
