"""The embedded sample clip: scikit-image's ``astronaut`` photograph, gently animated.

The photograph (Eileen Collins, NASA, public domain) ships inside the scikit-image wheel,
so the demo and tests need no file from the user. A smooth synthetic motion is applied
with one backward warp per frame: body sway, a head nod/turn about the neck and a mouth
that opens and closes like speech. It is a sample for exercising the whole chain, not a
substitute for a real recording.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

# Landmarks of the photograph (512 x 512), measured once with MediaPipe Holistic.
_NECK_PIVOT = np.array([222.0, 200.0])
_FACE_CENTRE = np.array([225.0, 125.0])
_MOUTH_CENTRE = np.array([223.0, 147.0])
_HIP_PIVOT = np.array([200.0, 520.0])


def _rotation_field(xs, ys, centre, degrees):
    """Source coordinates of a rotation by ``degrees`` about ``centre`` (inverse map)."""
    theta = np.deg2rad(-degrees)
    dx, dy = xs - centre[0], ys - centre[1]
    return (
        centre[0] + np.cos(theta) * dx - np.sin(theta) * dy,
        centre[1] + np.sin(theta) * dx + np.cos(theta) * dy,
    )


@functools.cache
def _static_fields():
    """The photograph, pixel grids and the soft head/mouth weights (computed once)."""
    from skimage import data

    image = data.astronaut()  # (512, 512, 3)
    ys, xs = np.mgrid[0:512, 0:512].astype(np.float32)
    head_w = np.exp(-(((xs - _FACE_CENTRE[0]) / 75.0) ** 2 + ((ys - _FACE_CENTRE[1]) / 85.0) ** 2))
    head_w /= 1.0 + np.exp((ys - 205.0) / 8.0)  # fade out below the neck
    mouth_w = np.exp(
        -(((xs - _MOUTH_CENTRE[0]) / 22.0) ** 2 + ((ys - _MOUTH_CENTRE[1] - 10.0) / 16.0) ** 2)
    )
    mouth_w *= ys > _MOUTH_CENTRE[1]
    return image, xs, ys, head_w.astype(np.float32), mouth_w.astype(np.float32)


def sample_frame(t: float, size: int = 384) -> np.ndarray:
    """The sample's frame at time ``t`` seconds, RGB uint8 (size, size, 3)."""
    image, xs, ys, head_w, mouth_w = _static_fields()

    # Whole body: slow sway (translation + small rotation about the hips).
    body_deg = 1.5 * np.sin(2 * np.pi * 0.21 * t)
    sx, sy = _rotation_field(xs, ys, _HIP_PIVOT, body_deg)
    sx -= 6.0 * np.sin(2 * np.pi * 0.17 * t)
    sy -= 3.0 * np.sin(2 * np.pi * 0.27 * t + 0.5)

    # Head: nod/turn about the neck, weighted by a soft mask around the face.
    head_deg = 4.0 * np.sin(2 * np.pi * 0.35 * t) + 2.0 * np.sin(2 * np.pi * 0.9 * t + 1.0)
    hx, hy = _rotation_field(sx, sy, _NECK_PIVOT, head_deg)
    sx = sx + head_w * (hx - sx)
    sy = sy + head_w * (hy - sy)

    # Mouth: the lower lip and jaw move down and back like syllables (about 4 Hz).
    opening = 4.0 * np.abs(np.sin(2 * np.pi * 2.1 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    sy = sy - opening * mouth_w

    frame = cv2.remap(
        image,
        sx.astype(np.float32),
        sy.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA) if size != 512 else frame


def write_sample_clip(
    path: str | Path, seconds: float = 6.0, fps: float = 25.0, size: int = 384
) -> Path:
    """Render the sample to an MP4 (H.264, with a quiet synthetic voice-like tone track)."""
    from anchorgen.io.video import AUDIO_RATE, write_video

    count = round(seconds * fps)
    t = np.arange(round(seconds * AUDIO_RATE)) / AUDIO_RATE
    envelope = np.abs(np.sin(2 * np.pi * 2.1 * t))  # syllable rhythm, as the mouth above
    audio = (0.1 * envelope * np.sin(2 * np.pi * 180.0 * t)).astype(np.float32)
    write_video(path, (sample_frame(i / fps, size) for i in range(count)), fps, audio=audio, crf=16)
    return Path(path)
