"""Speech-to-motion head: the identity's own head drift, bootstrapped and added at sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from anchorgen.errors import InputError
from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.audio2motion import PRESETS, generate_motion, identity_frame
from anchorgen.motion.audio2motion.evaluate import gesture_statistics
from anchorgen.motion.audio2motion.head import (
    HEAD_TRACK_DIMS,
    apply_head_drift,
    identity_head_track,
    sample_head_drift,
)
from anchorgen.motion.audio2motion.representation import (
    EYE_OUTER,
    LAYOUT,
    _face_frame,
    decode,
    mouth_opening,
)
from anchorgen.motion.audio2motion.train import clip_from_landmarks, train_on_clips
from audio_synthetic import synthetic_person, synthetic_speech

FPS = 25.0
NOSE_TIP = 1


def turning_person(seconds: float, seed: int = 0) -> tuple[LandmarkSequence, np.ndarray]:
    """The synthetic speaker with a slow head drift (roll and yaw) that speech does not set.

    Returns the landmarks and their speech. The face is turned about its eye centre, in
    pixels, with the nose tip half an eye distance in front of the eyes (as in a face mesh).
    """
    wave, loud = synthetic_speech(seconds, seed=seed)
    seq = synthetic_person(np.clip(loud * 3, 0, 1), FPS)
    time = np.arange(len(seq)) / FPS
    roll = 0.10 * np.sin(2 * np.pi * 0.17 * time + 1.0) + 0.05 * np.sin(2 * np.pi * 0.41 * time)
    yaw = 0.15 * np.sin(2 * np.pi * 0.23 * time + 2.0)
    face = seq.face.astype(np.float64)
    eye_distance = np.linalg.norm(face[0, EYE_OUTER[0]] - face[0, EYE_OUTER[1]])
    face[:, NOSE_TIP, 2] = face[:, EYE_OUTER[0], 2] - 0.5 * eye_distance
    centre = (face[:, EYE_OUTER[0]] + face[:, EYE_OUTER[1]]) / 2
    turn = Rotation.from_euler("zy", np.stack([roll, yaw], axis=1)).as_matrix()  # (T, 3, 3)
    seq.face[:] = np.einsum("tij,tnj->tni", turn, face - centre[:, None]) + centre[:, None]
    return seq, wave


@pytest.fixture(scope="module")
def turning() -> tuple[LandmarkSequence, np.ndarray]:
    return turning_person(8.0)


def test_head_track_of_a_turning_face_gives_back_its_roll_and_yaw(turning) -> None:
    """Extracted (placement, roll, face rotation) and put back on a still face: same head."""
    seq, _ = turning
    track = identity_head_track(seq, smooth_frames=0)
    assert track.shape == (len(seq), HEAD_TRACK_DIMS)
    np.testing.assert_allclose(track.mean(0), 0, atol=1e-9)
    ident = identity_frame(seq)
    still = ident.clip.values.copy()
    still[:, : LAYOUT["head"].stop] = 0.0  # the mean face at the mean head placement
    moved = decode(apply_head_drift(still, track, ident.clip.mean_face), ident)
    real, got = gesture_statistics(seq), gesture_statistics(moved)
    for key in ("head_roll_std", "head_yaw_proxy_std"):
        assert got[key] == pytest.approx(real[key], rel=0.1), key
    real_yaw = (
        seq.face[:, NOSE_TIP, 0] - seq.face[:, list(EYE_OUTER), 0].mean(1)
    ) / np.linalg.norm(seq.face[:, EYE_OUTER[0], :2] - seq.face[:, EYE_OUTER[1], :2], axis=1)
    got_yaw = (moved.face[:, NOSE_TIP, 0] - moved.face[:, list(EYE_OUTER), 0].mean(1)) / (
        np.linalg.norm(moved.face[:, EYE_OUTER[0], :2] - moved.face[:, EYE_OUTER[1], :2], axis=1)
    )
    assert np.corrcoef(real_yaw, got_yaw)[0, 1] > 0.95


def test_zero_drift_changes_nothing_and_the_mouth_keeps_its_opening(turning) -> None:
    seq, _ = turning
    ident = identity_frame(seq)
    values = ident.clip.values
    np.testing.assert_array_equal(
        apply_head_drift(values, np.zeros((len(values), HEAD_TRACK_DIMS)), ident.clip.mean_face),
        values,
    )
    drift = np.zeros((len(values), HEAD_TRACK_DIMS))
    drift[:, 3] = 0.2  # roll
    drift[:, 4] = 0.1  # pitch
    moved = decode(apply_head_drift(values, drift, ident.clip.mean_face), ident)
    before = mouth_opening(decode(values, ident))
    assert np.corrcoef(before, mouth_opening(moved))[0, 1] > 0.99
    np.testing.assert_allclose(mouth_opening(moved), before, rtol=0.05, atol=1e-3)


def test_drift_is_seeded_of_any_length_seamless_and_keeps_the_track_spread() -> None:
    rng = np.random.default_rng(0)
    frames = np.arange(400)
    track = np.stack(
        [np.sin(2 * np.pi * frames / p + rng.uniform(0, 6)) for p in (90, 150, 230)], axis=1
    )
    drifts = [sample_head_drift(track, 1000, np.random.default_rng(s)) for s in range(8)]
    assert all(d.shape == (1000, 3) for d in drifts)
    np.testing.assert_array_equal(
        drifts[0], sample_head_drift(track, 1000, np.random.default_rng(0))
    )
    assert np.abs(drifts[0] - drifts[1]).mean() > 0.3  # seeds differ
    spread = np.mean([d.std(0) for d in drifts], axis=0)
    np.testing.assert_allclose(spread, track.std(0), rtol=0.2)
    speed = np.mean([np.abs(np.diff(d, axis=0)).mean(0) for d in drifts], axis=0)
    assert (speed < 1.2 * np.abs(np.diff(track, axis=0)).mean(0)).all()  # the track's pace
    step = max(np.abs(np.diff(d, axis=0)).max() for d in drifts)
    assert step < 2 * np.abs(np.diff(track, axis=0)).max()  # no jumps at the joins
    short = sample_head_drift(track[:30], 100, np.random.default_rng(0))
    assert short.shape == (100, 3) and np.isfinite(short).all()
    with pytest.raises(ValueError, match="2 frames"):
        sample_head_drift(track[:1], 10, np.random.default_rng(0))


def test_generated_head_moves_like_the_identity_and_differs_across_seeds(turning) -> None:
    """``head_drift=1`` gives the identity's head spread at its pace, per seed.

    The model alone (``head_drift=0``) keeps the head nearly still on new speech: the drift
    is not a function of the speech, and windows of 16 frames do not see it (the full-size
    model: roll 0.015-0.035 rad against the identity's 0.120).
    """
    torch.set_num_threads(1)
    seq, wave = turning
    clip = clip_from_landmarks("turning", seq, wave, 2)
    config = PRESETS["audio2motion-tiny"].replace(
        pretrain_steps=300, finetune_steps=0, batch_size=16, device="cpu"
    )
    model, _ = train_on_clips(config, [clip], clip, FPS)
    speech = synthetic_speech(6.0, seed=3)[0]
    real = gesture_statistics(seq)
    rolls = []
    for seed in (0, 1):
        generated = generate_motion(model, speech, seq, seed=seed, progress=False, head_drift=1.0)
        rolls.append(_face_frame(generated.face.astype(np.float64))[2])
        moved = gesture_statistics(generated)
        still = gesture_statistics(
            generate_motion(model, speech, seq, seed=seed, progress=False, head_drift=0.0)
        )
        for key in ("head_roll_std", "head_yaw_proxy_std"):
            assert real[key] / 1.5 < moved[key] < 1.5 * real[key], (key, moved[key], real[key])
            assert still[key] < real[key] / 1.5, (key, still[key], real[key])
        added = moved["head_roll_speed"] - still["head_roll_speed"]
        assert added < 1.5 * real["head_roll_speed"], added  # at the identity's pace
    assert np.abs(rolls[0] - rolls[1]).mean() > 0.05  # seeds give different head motion
    with pytest.raises(InputError, match="head_drift"):
        generate_motion(model, speech, seq, progress=False, head_drift=-1.0)
