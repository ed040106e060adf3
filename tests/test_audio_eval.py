"""Audio-to-motion measurements: lagged correlation, lip-sync proxy, diversity, gestures."""

from __future__ import annotations

import numpy as np

from anchorgen.motion.audio2motion import (
    gesture_distance,
    lip_sync_score,
    motion_diversity,
    mouth_curve_correlation,
)
from anchorgen.motion.audio2motion.evaluate import lagged_correlation
from audio_synthetic import synthetic_person, synthetic_speech


def test_lagged_correlation_finds_the_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(200)
    b = np.roll(a, 2)  # b[t] = a[t - 2]: b lags a by 2 frames
    r, lag = lagged_correlation(a, b, max_lag=3)
    assert lag == 2 and r > 0.99
    r1, _ = lagged_correlation(a, b, max_lag=1)
    assert r1 < 0.3


def test_lip_sync_proxy_high_for_synced_low_for_shuffled() -> None:
    wave, loud = synthetic_speech(8.0, seed=0)
    synced = synthetic_person(np.clip(loud * 3, 0, 1))
    shuffled = synthetic_person(np.random.default_rng(1).permutation(np.clip(loud * 3, 0, 1)))
    assert lip_sync_score(synced, wave)["lip_envelope_corr"] > 0.8
    assert lip_sync_score(shuffled, wave)["lip_envelope_corr"] < 0.3
    assert mouth_curve_correlation(synced, synced) > 0.999


def test_diversity_and_gesture_distance() -> None:
    loud = synthetic_speech(4.0, seed=0)[1]
    a = synthetic_person(loud, seed=0)
    b = synthetic_person(loud, seed=0)
    assert motion_diversity([a, b]) == 0.0
    b.left_hand += 30.0
    assert motion_diversity([a, b]) > 0.0
    same = gesture_distance(a, a)
    assert same["wrist_speed_w1"] == 0.0
    assert same["head_roll_std_gen"] == same["head_roll_std_real"]
