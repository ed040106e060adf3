"""The lip-sync proxy measured on a rendered video (face tracked in its frames, own audio)."""

from __future__ import annotations

import numpy as np

from anchorgen.motion.audio2motion.evaluate import video_lip_sync
from anchorgen.prepare.sample import write_sample_clip


def test_scores_every_frame_of_a_video_with_a_face_and_audio(tmp_path):
    clip = write_sample_clip(tmp_path / "clip.mp4", seconds=2.0, fps=10, size=128)
    score = video_lip_sync(clip, upscale=2, progress=False)
    assert score["frames"] == 20
    assert score["frames_with_face"] >= 15  # the astronaut's face is found
    assert np.isnan(score["lip_envelope_corr"]) or -1.0 <= score["lip_envelope_corr"] <= 1.0
    assert abs(score["lag_frames"]) <= 2
