"""Shared fixtures: the real-data location and small synthetic media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO / ".." / "shared" / "data"


def shared_data(relative: str) -> Path:
    """Path of a real-data file; skips the calling test when ../shared/data is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} (the repo's ../shared/data is absent)")
    return path


def pytest_configure(config):
    """Tiny models run fastest on one thread; this also keeps the 2-core CI machine responsive."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def astronaut_holistic() -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe Holistic's pose (33, 3) and face (478, 3) on scikit-image's astronaut photo
    (512 px), in pixels, each part with MediaPipe's own depth (the face's about 0 at its
    centre, not yet ``prepare.holistic.to_body_depth``)."""
    import mediapipe as mp
    import skimage.data

    photo = skimage.data.astronaut()  # (512, 512, 3)
    with mp.solutions.holistic.Holistic(
        static_image_mode=True, refine_face_landmarks=True
    ) as model:
        result = model.process(photo)
    if result.pose_landmarks is None or result.face_landmarks is None:
        pytest.skip("MediaPipe found no person in the astronaut photo")

    def pixels(landmarks) -> np.ndarray:
        return np.array([(p.x, p.y, p.z) for p in landmarks.landmark], np.float32) * 512

    return pixels(result.pose_landmarks), pixels(result.face_landmarks)
