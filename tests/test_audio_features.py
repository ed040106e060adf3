"""Speech features: frame alignment, decoding of awkward files, clear errors."""

from __future__ import annotations

import fractions
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from anchorgen.errors import InputError
from anchorgen.motion.audio import (
    SAMPLE_RATE,
    Wav2Vec2Features,
    frame_features,
    frame_sample_bounds,
    load_speech,
    mel_filterbank,
    speech_envelope,
)


def _write_audio(
    path: Path, samples: np.ndarray, rate: int, layout: str, codec: str = "pcm_s16le"
) -> None:
    """samples: (channels, N) float in [-1, 1]."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        data = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            data.T.reshape(1, -1).copy(), format="s16", layout=layout
        )
        frame.sample_rate = rate
        frame.time_base = fractions.Fraction(1, rate)
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@pytest.mark.parametrize("fps", [25.0, 30.0, 29.97])
def test_burst_lands_in_its_frame(fps: float) -> None:
    """Noise filling exactly frame k's samples is loudest at k and absent two frames away."""
    k, t = 7, 16
    bounds = frame_sample_bounds(t, fps)
    wave = np.zeros(bounds[-1], np.float32)
    wave[bounds[k] : bounds[k + 1]] = (
        np.random.default_rng(0).standard_normal(bounds[k + 1] - bounds[k]) * 0.3
    )
    feats = frame_features(wave, fps, context=0, num_frames=t)[:, 0]  # (T, C)
    energy = feats.exp().sum(1)
    assert int(energy.argmax()) == k
    assert energy[k] > 3 * max(energy[k - 1], energy[k + 1])
    assert energy[k] > 1e4 * max(energy[k - 2], energy[k + 2])
    env = speech_envelope(wave, fps, t, smooth=1)
    assert int(env.argmax()) == k and env[k - 1] == 0 and env[k + 1] == 0


def test_frame_bounds_cover_audio_exactly() -> None:
    bounds = frame_sample_bounds(50, 25.0)
    assert bounds[0] == 0 and bounds[1] == SAMPLE_RATE // 25 and bounds[-1] == 2 * SAMPLE_RATE
    frames = frame_features(np.zeros(2 * SAMPLE_RATE, np.float32), 25.0, context=2)
    assert frames.shape == (50, 5, 80)


def test_context_window_is_neighbour_frames() -> None:
    """Slot m+j of frame t holds frame t+j's own features (EMO's A_gen)."""
    rng = np.random.default_rng(1)
    wave = (rng.standard_normal(SAMPLE_RATE) * np.repeat(rng.uniform(0, 1, 25), 640)).astype(
        np.float32
    )
    plain = frame_features(wave, 25.0, context=0)[:, 0]
    ctx = frame_features(wave, 25.0, context=2)
    assert torch.allclose(ctx[10, 2], plain[10])
    assert torch.allclose(ctx[10, 0], plain[8]) and torch.allclose(ctx[10, 4], plain[12])
    assert torch.all(ctx[0, 0] == ctx[0, 0].min())  # padded with the silence floor


def test_mel_filterbank_shape_and_coverage() -> None:
    fb = mel_filterbank()
    assert fb.shape == (201, 80)
    assert torch.all(fb >= 0) and torch.all(fb.sum(0) > 0)  # every band sees some frequency


def test_silence_gives_constant_floor_features() -> None:
    feats = frame_features(np.zeros(SAMPLE_RATE, np.float32), 25.0)
    assert torch.allclose(feats, torch.full_like(feats, float(feats.min())))


def test_stereo_48k_file_is_resampled_to_16k_mono(tmp_path: Path) -> None:
    t = np.arange(48_000 * 2) / 48_000
    left, right = np.sin(2 * np.pi * 440 * t) * 0.5, np.zeros_like(t)
    path = tmp_path / "stereo.wav"
    _write_audio(path, np.stack([left, right]), 48_000, "stereo")
    wave = load_speech(path)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - 2 * SAMPLE_RATE) < 200
    spectrum = np.abs(np.fft.rfft(wave[2000:18000]))
    assert abs(np.argmax(spectrum) * SAMPLE_RATE / 16000 - 440) < 2  # pitch kept at 16 kHz
    assert 0.1 < np.abs(wave).max() < 0.5  # the two channels are mixed down


def test_long_file_streams_in_chunks(tmp_path: Path) -> None:
    from anchorgen.motion.audio import iter_speech_chunks

    path = tmp_path / "long.wav"
    _write_audio(path, np.random.default_rng(0).uniform(-0.1, 0.1, (1, 16_000 * 5)), 16_000, "mono")
    chunks = list(iter_speech_chunks(path, chunk_seconds=1.0))
    assert len(chunks) >= 4 and max(c.size for c in chunks) < 2 * SAMPLE_RATE
    assert sum(c.size for c in chunks) == load_speech(path).size


def test_corrupt_file_is_a_clear_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF\x00\x00garbage" * 50)
    with pytest.raises(InputError, match=r"broken\.wav"):
        load_speech(path)


def test_missing_file_is_a_clear_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_speech(tmp_path / "nope.wav")


def test_video_without_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "silent_video.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(
                np.full((32, 32, 3), i * 40, np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(InputError, match="no audio stream"):
        load_speech(path)


def test_wav2vec2_loads_only_from_a_local_directory(tmp_path: Path) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8, 8),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
    )
    Wav2Vec2Model(config).save_pretrained(tmp_path / "w2v")
    extractor = Wav2Vec2Features(tmp_path / "w2v", num_layers=2)
    feats = frame_features(
        np.random.default_rng(0).uniform(-0.1, 0.1, SAMPLE_RATE).astype(np.float32),
        25.0,
        context=1,
        wav2vec2=extractor,
    )
    assert feats.shape == (25, 3, 16) and torch.isfinite(feats).all()
    with pytest.raises(InputError, match="never downloaded"):
        Wav2Vec2Features(tmp_path / "facebook-wav2vec2-base")
