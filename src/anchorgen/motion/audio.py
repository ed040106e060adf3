"""Speech features aligned to video frames (log-mel in torch; optional local wav2vec2).

Video frame ``t`` at ``fps`` covers audio samples ``[t * sr / fps, (t + 1) * sr / fps)``.
Every per-frame feature pools exactly the analysis windows whose centres fall in that span,
and EMO (section 3.2, "Audio Layers") gives each frame the features of its neighbours too:
``A_gen^(f) = concat(A^(f-m), ..., A^(f), ..., A^(f+m))`` with ``m = 2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from anchorgen.errors import InputError

SAMPLE_RATE = 16_000
N_FFT = 400
"""25 ms analysis window at 16 kHz."""
HOP = 160
"""10 ms hop: about 4 analysis windows per 25 fps video frame."""
N_MELS = 80
LOG_FLOOR = 1e-6
"""Mel power floor before the log; digital silence maps to ``log(LOG_FLOOR)``."""


def iter_speech_chunks(path: str | Path, chunk_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Decode the first audio stream of any file PyAV reads; yield 16 kHz mono float32 chunks.

    Streams: memory stays bounded by ``chunk_seconds`` however long the file is.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file not found: {path}")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(
            f"cannot open {path} as audio/video (corrupt or unsupported file): {exc}"
        ) from exc
    with container:
        if not container.streams.audio:
            raise InputError(f"{path} has no audio stream; give a file with speech audio")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        chunk_len = int(chunk_seconds * SAMPLE_RATE)
        pending: list[np.ndarray] = []
        pending_len = 0
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    pending_len += pending[-1].size
                if pending_len >= chunk_len:
                    yield np.concatenate(pending).astype(np.float32)
                    pending, pending_len = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot decode the audio of {path} (corrupt stream?): {exc}") from exc
        if pending:
            yield np.concatenate(pending).astype(np.float32)


def load_speech(path: str | Path) -> np.ndarray:
    """Any audio or video file -> (N,) float32 waveform, 16 kHz mono, in [-1, 1]."""
    chunks = list(iter_speech_chunks(path))
    waveform = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if waveform.size == 0:
        raise InputError(f"{path}: the audio stream decoded to no samples")
    if not np.isfinite(waveform).all():
        raise InputError(f"{path}: the audio contains NaN or infinite samples")
    return waveform


def num_video_frames(num_samples: int, fps: float) -> int:
    """Frames needed to cover ``num_samples`` at ``fps`` (the last one may be partial)."""
    return math.ceil(num_samples * fps / SAMPLE_RATE - 1e-9)


def frame_sample_bounds(num_frames: int, fps: float) -> np.ndarray:
    """(T + 1,) int64 sample indices: frame t covers samples ``[b[t], b[t + 1])``."""
    return np.floor(np.arange(num_frames + 1) * SAMPLE_RATE / fps + 1e-9).astype(np.int64)


def mel_filterbank(
    n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE
) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale, 0 Hz .. Nyquist."""

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(
        np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sample_rate / 2)), n_mels + 2)
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (M, 1)
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)  # (M, F)
    weights *= 2.0 / (upper - lower)  # slaney-style area normalisation
    return torch.from_numpy(weights.T.astype(np.float32))


def normalise_loudness(waveform: np.ndarray) -> np.ndarray:
    """Scale so that loud frames sit at a fixed RMS; near-silent input is left untouched.

    Recording levels differ between clips; without this the model would learn loudness of
    a microphone rather than speech. Silence (95th-percentile RMS below 1e-3) stays silence.
    """
    frames = waveform[: waveform.size // HOP * HOP].reshape(-1, HOP)
    if frames.size == 0:
        return waveform
    loud = float(np.percentile(np.sqrt((frames.astype(np.float64) ** 2).mean(1)), 95))
    return waveform if loud < 1e-3 else (waveform * (0.1 / loud)).astype(np.float32)


def log_mel_frames(waveform: np.ndarray, fps: float, num_frames: int | None = None) -> torch.Tensor:
    """(T, n_mels) log-mel power per video frame, pooled over 10 ms windows centred in it."""
    wave = torch.from_numpy(np.ascontiguousarray(normalise_loudness(waveform), np.float32))
    t = num_video_frames(wave.numel(), fps) if num_frames is None else int(num_frames)
    if t <= 0:
        raise InputError("audio too short: it covers no video frame")
    bounds = frame_sample_bounds(t, fps)
    total = int(bounds[-1])
    # Pad so that window j is centred on sample j * HOP + HOP // 2 for all of [0, total).
    pad_left = N_FFT // 2 - HOP // 2
    padded = torch.zeros(pad_left + total + N_FFT, dtype=torch.float32)
    n = min(wave.numel(), total)
    padded[pad_left : pad_left + n] = wave[:n]
    spec = torch.stft(
        padded, N_FFT, HOP, N_FFT, torch.hann_window(N_FFT), center=False, return_complex=True
    )  # (F, J)
    mel = (spec.abs() ** 2).T @ mel_filterbank()  # (J, M)
    centres = np.arange(mel.shape[0]) * HOP + HOP // 2
    owner = np.searchsorted(bounds, centres, side="right") - 1  # frame that owns window j
    keep = (owner >= 0) & (owner < t)
    index = torch.from_numpy(owner[keep])
    summed = torch.zeros(t, mel.shape[1]).index_add_(0, index, mel[torch.from_numpy(keep)])
    counts = torch.zeros(t).index_add_(0, index, torch.ones(index.numel())).clamp_min(1.0)
    return torch.log(summed / counts[:, None] + LOG_FLOOR)


def stack_context(
    features: torch.Tensor, context: int, pad_value: torch.Tensor | float
) -> torch.Tensor:
    """(T, C) -> (T, 2m+1, C): frame t gets frames t-m .. t+m (EMO's A_gen); edges padded."""
    t, c = features.shape
    pad = torch.empty(context, c).copy_(torch.as_tensor(pad_value).expand(context, c))
    padded = torch.cat([pad, features, pad])  # (T + 2m, C)
    return torch.stack([padded[k : k + t] for k in range(2 * context + 1)], dim=1)


def frame_features(
    waveform: np.ndarray,
    fps: float,
    context: int = 2,
    num_frames: int | None = None,
    wav2vec2: Wav2Vec2Features | None = None,
) -> torch.Tensor:
    """(T, 2m+1, C) speech features per video frame with +-``context`` frames.

    C = 80 log-mel bands, or the wav2vec2 hidden size when ``wav2vec2`` is given. ``T``
    defaults to the frames the audio covers; pass ``num_frames`` to match a video.
    """
    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    if context < 0:
        raise InputError(f"context must be >= 0, got {context}")
    waveform = np.asarray(waveform, np.float32).reshape(-1)
    if wav2vec2 is not None:
        feats = wav2vec2(waveform, fps, num_frames)
        return stack_context(feats, context, 0.0)
    feats = log_mel_frames(waveform, fps, num_frames)
    return stack_context(feats, context, math.log(LOG_FLOOR))


def speech_envelope(
    waveform: np.ndarray, fps: float, num_frames: int | None = None, smooth: int = 3
) -> np.ndarray:
    """(T,) RMS energy of each frame's own samples, box-smoothed over ``smooth`` frames."""
    waveform = np.asarray(waveform, np.float64).reshape(-1)
    t = num_video_frames(waveform.size, fps) if num_frames is None else int(num_frames)
    bounds = frame_sample_bounds(t, fps)
    padded = np.zeros(max(int(bounds[-1]), waveform.size))
    padded[: waveform.size] = waveform
    sq = np.concatenate([[0.0], np.cumsum(padded**2)])
    energy = (sq[bounds[1:]] - sq[bounds[:-1]]) / np.maximum(bounds[1:] - bounds[:-1], 1)
    rms = np.sqrt(energy)
    if smooth > 1:
        rms = np.convolve(
            np.pad(rms, smooth // 2, mode="edge"), np.ones(smooth) / smooth, mode="valid"
        )[:t]
    return rms.astype(np.float32)


class Wav2Vec2Features:
    """Hidden states of a LOCAL wav2vec2 checkpoint, pooled to video frames.

    EMO concatenates features of several wav2vec blocks; this averages the last
    ``num_layers`` hidden states. The checkpoint is never downloaded.
    """

    def __init__(self, path: str | Path, num_layers: int = 4) -> None:
        from transformers import Wav2Vec2Model

        path = Path(path)
        if not path.is_dir():
            raise InputError(
                f"wav2vec2 checkpoint directory not found: {path} (it is never downloaded)"
            )
        try:
            self.model = Wav2Vec2Model.from_pretrained(str(path), local_files_only=True).eval()
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load a wav2vec2 model from {path}: {exc}") from exc
        self.num_layers = num_layers
        self.dim = int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(
        self, waveform: np.ndarray, fps: float, num_frames: int | None = None
    ) -> torch.Tensor:
        """(N,) 16 kHz waveform -> (T, hidden) features per video frame."""
        t = num_video_frames(waveform.size, fps) if num_frames is None else int(num_frames)
        wave = torch.from_numpy(waveform)
        wave = (wave - wave.mean()) / (wave.std() + 1e-7)
        out = self.model(wave[None], output_hidden_states=True)
        hidden = torch.stack(out.hidden_states[-self.num_layers :]).mean(0)[0]  # (J, H)
        # Feature j covers samples [j * step, (j + 1) * step): assign by its centre.
        step = waveform.size / max(hidden.shape[0], 1)
        centres = (np.arange(hidden.shape[0]) + 0.5) * step
        owner = np.minimum(np.floor(centres * fps / SAMPLE_RATE).astype(np.int64), t - 1)
        index = torch.from_numpy(owner)
        summed = torch.zeros(t, hidden.shape[1]).index_add_(0, index, hidden)
        counts = torch.zeros(t).index_add_(0, index, torch.ones(index.numel()))
        feats = summed / counts.clamp_min(1.0)[:, None]
        # Frames shorter than one wav2vec2 step take their nearest filled neighbour.
        filled = np.flatnonzero(counts.numpy() > 0)
        nearest = filled[np.abs(np.arange(t)[:, None] - filled[None]).argmin(1)]
        return feats[torch.from_numpy(nearest)]
