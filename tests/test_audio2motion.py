"""Speech-to-motion: representation, window stitching, seeds, silence, training run, CLI."""

from __future__ import annotations

import fractions
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from anchorgen.errors import ConfigError, InputError
from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.audio import SAMPLE_RATE
from anchorgen.motion.audio2motion import (
    PRESETS,
    Audio2Motion,
    Audio2MotionConfig,
    decode,
    encode,
    evaluate_run,
    generate_motion,
    identity_frame,
    load_run,
    mouth_opening,
    train_audio2motion,
    window_starts,
)
from anchorgen.motion.audio2motion.representation import BODY_POINTS, FACE_POINTS
from anchorgen.motion.audio2motion.sample import generate_normalised, speech_inputs
from anchorgen.motion.audio2motion.train import (
    clip_from_landmarks,
    landmark_cache_path,
    train_on_clips,
)
from anchorgen.prepare.sample import write_sample_clip
from audio_synthetic import synthetic_person, synthetic_speech

FPS = 25.0
DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return synthetic_speech(8.0, seed=0)[0]


@pytest.fixture(scope="module")
def person(speech: np.ndarray) -> LandmarkSequence:
    loud = synthetic_speech(8.0, seed=0)[1]
    return synthetic_person(np.clip(loud * 3, 0, 1), FPS)


@pytest.fixture(scope="module")
def model(person: LandmarkSequence, speech: np.ndarray):
    """A tiny model trained on smooth synthetic motion (CPU, seconds; long enough for the v
    parametrisation to stop leaking sampling noise)."""
    torch.set_num_threads(1)
    clip = clip_from_landmarks("synthetic", person, speech, 2)
    config = PRESETS["audio2motion-tiny"].replace(
        pretrain_steps=300, finetune_steps=0, batch_size=16, device="cpu"
    )
    net, _ = train_on_clips(config, [clip], clip, FPS)
    return net


def test_encode_decode_round_trip(person: LandmarkSequence) -> None:
    """Modelled points come back exactly in the identity's image space."""
    clip = encode(person)
    back = decode(clip.values, identity_frame(person))
    assert back.image_size == person.image_size and len(back) == len(person)
    np.testing.assert_allclose(
        back.face[:, list(FACE_POINTS)], person.face[:, list(FACE_POINTS)], atol=1e-2
    )
    np.testing.assert_allclose(
        back.pose[:, list(BODY_POINTS)], person.pose[:, list(BODY_POINTS)], atol=1e-2
    )
    np.testing.assert_allclose(back.left_hand, person.left_hand, atol=1e-2)
    np.testing.assert_allclose(mouth_opening(back), mouth_opening(person), atol=1e-4)


def test_missing_hands_are_masked_and_decode_absent(person: LandmarkSequence) -> None:
    seq = person.slice(0, 10)
    seq.present = {k: v.copy() for k, v in seq.present.items()}
    seq.present["right_hand"][3:6] = False
    clip = encode(seq)
    back = decode(clip.values, identity_frame(person))
    assert not back.present["right_hand"][3:6].any() and back.present["right_hand"][:3].all()
    assert np.isnan(back.right_hand[4]).all()


def test_window_starts_cover_with_carried_context() -> None:
    starts = window_starts(100, 16, 4)
    assert starts[0] == 0 and np.all(np.diff(starts) == 12)
    assert starts[-1] + 16 >= 100 and starts[-2] + 16 < 100
    assert window_starts(10, 16, 4) == [0]
    with pytest.raises(ValueError):
        window_starts(10, 4, 4)


def test_windows_stitch_without_seams(model, speech: np.ndarray) -> None:
    """Frame-to-frame change across window boundaries is like the change inside windows."""
    features, n, _ = speech_inputs(model, speech, FPS)
    motion = generate_normalised(
        model, features, n, seed=0, num_inference_steps=8, progress=False
    ).numpy()
    steps = np.linalg.norm(np.diff(motion, axis=0), axis=1)  # steps[t] = |x[t+1] - x[t]|
    cfg = model.config
    seams = [
        s + cfg.context_frames - 1 for s in window_starts(n, cfg.window, cfg.context_frames)[1:]
    ]
    assert len(seams) >= 3
    inside = np.delete(steps, seams)
    assert steps[seams].mean() < 2.0 * inside.mean()
    # Without the carried context every window starts afresh: the seams jump.
    fresh = np.concatenate([motion[: seams[0] + 1], motion[seams[0] + 1 :][::-1]])
    jumps = np.linalg.norm(np.diff(fresh, axis=0), axis=1)
    assert jumps[seams[0]] > steps[seams[0]]


class _ContinuingModel(Audio2Motion):
    """Stub denoiser: continues the carried context's last frame, else ramps 0 -> 1."""

    def forward(self, noisy, timesteps, audio, context, context_mask, audio_keep=None):
        known = context_mask[0, :, 0] > 0  # (L,)
        if known.any():
            return context[:, known][:, -1:].expand_as(noisy).clone()
        ramp = torch.linspace(0.0, 1.0, noisy.shape[1])[None, :, None]
        return ramp.expand_as(noisy).clone()


def test_stitching_carries_the_previous_windows_last_frames() -> None:
    """With a denoiser that continues its context, a correct stitch has no jump at all."""
    stub = _ContinuingModel(
        motion_dim=3,
        audio_dim=2,
        audio_context=0,
        window=10,
        context_frames=3,
        d_model=8,
        num_layers=1,
        num_heads=2,
    )
    n = 40
    starts = window_starts(n, 10, 3)
    motion = generate_normalised(
        stub, torch.zeros(starts[-1] + 10, 1, 2), n, num_inference_steps=3, progress=False
    )
    assert motion.shape == (40, 3)
    np.testing.assert_allclose(motion[:10, 0].numpy(), np.linspace(0, 1, 10), atol=1e-5)
    np.testing.assert_allclose(motion[9:].numpy(), 1.0, atol=1e-5)  # continued, never restarted


def test_same_seed_same_motion_other_seed_differs(model, person, speech: np.ndarray) -> None:
    a = generate_motion(
        model, speech[: 3 * SAMPLE_RATE], person, seed=3, num_inference_steps=4, progress=False
    )
    b = generate_motion(
        model, speech[: 3 * SAMPLE_RATE], person, seed=3, num_inference_steps=4, progress=False
    )
    c = generate_motion(
        model, speech[: 3 * SAMPLE_RATE], person, seed=4, num_inference_steps=4, progress=False
    )
    np.testing.assert_array_equal(a.pose, b.pose)
    np.testing.assert_array_equal(a.face, b.face)
    assert np.abs(a.pose - c.pose).max() > 1e-3
    assert len(a) == 75 and a.fps == FPS


def test_silence_gives_closed_calm_mouth(model, person) -> None:
    seq = generate_motion(
        model,
        np.zeros(4 * SAMPLE_RATE, np.float32),
        person,
        seed=0,
        num_inference_steps=4,
        progress=False,
    )
    real = mouth_opening(person)
    closed, spread = np.percentile(real, 10), real.max() - real.min()
    opening = mouth_opening(seq)
    assert len(seq) == 100
    assert abs(opening.mean() - closed) < 0.1 * spread
    assert opening.std() < 0.05 * spread


def test_speech_opens_the_mouth_more_than_silence(model, person, speech: np.ndarray) -> None:
    talk = generate_motion(model, speech, person, seed=0, num_inference_steps=4, progress=False)
    quiet = generate_motion(
        model, np.zeros_like(speech), person, seed=0, num_inference_steps=4, progress=False
    )
    assert mouth_opening(talk).std() > 2 * mouth_opening(quiet).std()


def test_empty_waveform_is_an_input_error(model, person) -> None:
    with pytest.raises(InputError):
        generate_motion(model, np.zeros(0, np.float32), person)


def test_config_validation_and_presets() -> None:
    for preset in PRESETS.values():
        assert Audio2MotionConfig.from_dict(preset.to_dict()) == preset
    with pytest.raises(ConfigError, match="context_frames"):
        Audio2MotionConfig.from_dict({"window": 8, "context_frames": 8})
    with pytest.raises(ConfigError, match="valid keys"):
        Audio2MotionConfig.from_dict({"windows": 8})
    docs = Audio2MotionConfig.field_docs()
    assert all(docs.get(name) for name in Audio2MotionConfig().to_dict())


def _write_clip(path: Path, seconds: float, speech: np.ndarray) -> None:
    """A tiny mp4 with a video stream and an AAC speech track."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 32, 32, "yuv420p"
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        for i in range(int(seconds * 25)):
            frame = av.VideoFrame.from_ndarray(
                np.full((32, 32, 3), i % 255, np.uint8), format="rgb24"
            )
            for packet in video.encode(frame):
                container.mux(packet)
        samples = speech[: int(seconds * SAMPLE_RATE)].astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate, frame.time_base, frame.pts = (
            SAMPLE_RATE,
            fractions.Fraction(1, SAMPLE_RATE),
            0,
        )
        for stream, item in ((audio, frame), (audio, None), (video, None)):
            for packet in stream.encode(item):
                container.mux(packet)


def test_train_run_and_cli_end_to_end(tmp_path: Path, person, speech: np.ndarray) -> None:
    """Preset -> run dir (safetensors) -> `anchorgen motion` -> landmarks.npz."""
    from typer.testing import CliRunner

    from anchorgen.cli import app

    (tmp_path / "data" / "anchors").mkdir(parents=True)
    (tmp_path / "landmarks").mkdir()
    _write_clip(tmp_path / "data" / "anchors" / "me.mp4", 4.0, speech)
    person.slice(0, 100).save(
        landmark_cache_path(tmp_path / "data" / "anchors" / "me.mp4", tmp_path / "landmarks")
    )
    config = PRESETS["audio2motion-tiny"].replace(
        data_dir=str(tmp_path / "data"),
        identity_clip="anchors/me.mp4",
        identity_seconds=3.0,
        landmarks_dir=str(tmp_path / "landmarks"),
        output_dir=str(tmp_path / "run"),
        device="cpu",
    )
    (tmp_path / "data" / "drivers").mkdir()  # an uncached clip: tracked with MediaPipe
    write_sample_clip(tmp_path / "data" / "drivers" / "sample.mp4", seconds=2.0, fps=10, size=128)
    overrides = [
        "--preset",
        "audio2motion-tiny",
        f"data_dir={tmp_path / 'data'}",
        "identity_clip=anchors/me.mp4",
        "identity_seconds=3.0",
        f"landmarks_dir={tmp_path / 'landmarks'}",
        f"output_dir={tmp_path / 'run'}",
        "device=cpu",
    ]
    result = CliRunner().invoke(app, ["train", *overrides, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "me.mp4 (landmarks cached)" in result.output
    assert "sample.mp4 (to be tracked)" in result.output
    result = CliRunner().invoke(app, ["train", *overrides])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert (run / "model" / "diffusion_pytorch_model.safetensors").is_file()
    sample = tmp_path / "data" / "drivers" / "sample.mp4"
    assert landmark_cache_path(sample, tmp_path / "landmarks").is_file()  # tracked and cached
    net, identity = load_run(run)
    assert len(identity) == 75 and float(net.motion_std.min()) > 0
    with pytest.raises(InputError, match="already exists"):
        train_audio2motion(config)
    result = CliRunner().invoke(app, ["train", *overrides, "--dry-run"])
    assert result.exit_code != 0 and "already exists" in str(result.exception or result.output)

    wav = tmp_path / "speech.mp4"
    _write_clip(wav, 2.0, speech)
    result = CliRunner().invoke(
        app,
        [
            "motion",
            "--audio",
            str(wav),
            "--model",
            str(run),
            "--out",
            str(tmp_path / "m"),
            "--steps",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    seq = LandmarkSequence.load(tmp_path / "m" / "landmarks.npz")
    assert 50 <= len(seq) <= 53 and seq.image_size == person.image_size  # AAC adds priming samples
    assert json.loads((tmp_path / "m" / "motion.json").read_text())["head_drift"] == 1.0
    from anchorgen.io.video import probe_video

    rendered = probe_video(tmp_path / "m" / "conditions.mp4")
    assert rendered.has_audio and round(rendered.duration * rendered.fps) == len(seq)

    metrics = evaluate_run(
        run,
        tmp_path / "data" / "anchors" / "me.mp4",
        landmark_cache_path(tmp_path / "data" / "anchors" / "me.mp4", tmp_path / "landmarks"),
        [wav],
        train_seconds=3.0,
        seeds=(0, 1),
        num_inference_steps=1,
    )
    assert {"real_clip", "real_heldout", "speech", "heldout_mouth_corr"} <= set(metrics)
    assert metrics["speech"]["diversity"] > 0


@pytest.mark.realdata
def test_real_clip_audio_decodes_and_aligns() -> None:
    if not DATA.is_dir():
        pytest.skip("../shared/data is absent")
    from anchorgen.motion.audio import frame_features, load_speech

    wave = load_speech(DATA / "anchors" / "kitchen_presenter_20s.mp4")  # HEVC video + AAC
    assert abs(wave.size / SAMPLE_RATE - 20.0) < 0.3
    assert frame_features(wave, 25.0, num_frames=502).shape == (502, 5, 80)


def test_landmark_cache_key_follows_the_clip_and_the_tracker_version(tmp_path, monkeypatch):
    """A replaced or edited clip, a same-named clip elsewhere or a new tracker version gets a
    new cache file; the same clip keeps its own (the stale raw-depth track of issue 7)."""
    import os

    from anchorgen.motion.audio2motion import train

    cache = tmp_path / "cache"
    clip = tmp_path / "anchors" / "talk.mp4"
    twin = tmp_path / "drivers" / "talk.mp4"
    for path in (clip, twin):
        path.parent.mkdir()
        path.write_bytes(b"video")
    first = train.landmark_cache_path(clip, cache)
    assert first == train.landmark_cache_path(clip, cache) and first.parent == cache
    assert first.name.startswith("talk.") and first.suffix == ".npz"
    assert train.landmark_cache_path(twin, cache) != first
    os.utime(clip, ns=(1, 1))
    touched = train.landmark_cache_path(clip, cache)
    assert touched != first
    monkeypatch.setattr(train, "TRACK_CACHE_VERSION", train.TRACK_CACHE_VERSION + 1)
    assert train.landmark_cache_path(clip, cache) != touched
