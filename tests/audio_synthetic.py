"""Synthetic talking-person landmarks and speech for the audio-to-motion tests."""

from __future__ import annotations

import numpy as np

from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.audio import SAMPLE_RATE
from anchorgen.motion.audio2motion.representation import EYE_OUTER, INNER_LIP, LIPS

LOWER_LIP = (14, 17, 84, 87, 88, 91, 95, 146, 178, 181, 314, 317, 318, 321, 324, 375, 402, 405)


def synthetic_speech(
    seconds: float, seed: int = 0, fps: float = 25.0
) -> tuple[np.ndarray, np.ndarray]:
    """Noise syllables (~4 per second) with pauses: waveform (N,) and per-frame loudness (T,)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)), 0, None) ** 2
    pauses = (np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6)) > -0.3).astype(float)
    gain = syllables * pauses
    wave = (0.3 * gain * rng.standard_normal(n)).astype(np.float32)
    frames = int(np.ceil(seconds * fps))
    loud = np.array(
        [
            gain[int(i * SAMPLE_RATE / fps) : int((i + 1) * SAMPLE_RATE / fps)].mean()
            for i in range(frames)
        ]
    )
    return wave, loud


def synthetic_person(opening: np.ndarray, fps: float = 25.0, seed: int = 0) -> LandmarkSequence:
    """A person whose lower lip drops by ``opening`` (T,) and whose hands and head sway."""
    rng = np.random.default_rng(seed)
    t = len(opening)
    seq = LandmarkSequence.empty(t, fps, (512, 768))
    face = rng.uniform(-0.6, 0.6, (478, 3)) * [1, 1.3, 0.2]
    face[EYE_OUTER[0]] = [-0.5, 0, 0]
    face[EYE_OUTER[1]] = [0.5, 0, 0]
    face[list(LIPS)] = rng.uniform(-0.3, 0.3, (len(LIPS), 3)) * [1, 0.2, 0.2] + [0, 0.8, 0]
    face[INNER_LIP[0]] = [0, 0.78, 0]
    face[INNER_LIP[1]] = [0, 0.82, 0]
    time = np.arange(t) / fps
    sway = 6 * np.sin(2 * np.pi * 0.4 * time)
    frames = np.repeat(face[None], t, axis=0)
    frames[:, list(LOWER_LIP), 1] += 0.3 * opening[:, None]
    seq.face[:] = (
        frames * 60 + np.stack([256 + sway, np.full(t, 200), np.zeros(t)], axis=1)[:, None]
    )
    pose = rng.uniform(-1, 1, (33, 3)) * [150, 200, 50] + [256, 450, 0]
    pose[11], pose[12] = [356, 400, 0], [156, 400, 0]
    pose[0, 2] = 60 * face[1, 2]  # the pose nose at the face's nose-tip depth, as tracked
    seq.pose[:] = pose + np.stack([sway, np.zeros(t), np.zeros(t)], axis=1)[:, None]
    seq.pose_world[:] = 0.0
    seq.pose_visibility[:] = 1.0
    hand = rng.uniform(-20, 20, (21, 3))
    wave = 40 * np.sin(2 * np.pi * 0.7 * time)
    seq.left_hand[:] = hand + np.stack([380 + wave, 600 - wave, np.zeros(t)], axis=1)[:, None]
    seq.right_hand[:] = hand + np.stack([130 - wave, 600 + wave, np.zeros(t)], axis=1)[:, None]
    seq.pose[:, 15] = seq.left_hand[:, 0]
    seq.pose[:, 16] = seq.right_hand[:, 0]
    for part in seq.present:
        seq.present[part][:] = True
        seq.detected[part][:] = True
    return seq
