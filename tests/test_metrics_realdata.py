"""End to end on a real clip: MediaPipe landmarks, LMD, identity and flicker of a shifted copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anchorgen.evaluation import metrics

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
CLIP = DATA / "anchors" / "news_anchor_20s.mp4"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not CLIP.is_file(), reason=f"{CLIP} is absent (../shared/data)"),
]

SHIFT = 4  # px, in a 512 px frame -> 4 px at the 512 px LMD scale


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    import av

    with av.open(str(CLIP)) as container:
        out = []
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == 8:
                break
    return np.stack(out)


def test_shifted_clip_has_lmd_equal_to_the_shift(frames):
    shifted = np.roll(frames, SHIFT, axis=2)
    gt = metrics.detect_landmarks(frames, fps=25.0, progress=False)
    gen = metrics.detect_landmarks(shifted, fps=25.0, progress=False)
    lmd = metrics.landmark_distances(gen, gt)
    assert lmd["face"].n_frames_used == len(frames)
    assert lmd["face"].mean == pytest.approx(SHIFT, abs=1.0)
    body = lmd["body"]  # head-and-shoulders clip: the first frames may lack a pose
    assert (
        body.n_frames_used + body.n_outliers + body.n_missing_generated + body.n_missing_gt
        == len(frames)
    )
    assert body.n_frames_used >= len(frames) // 2
    assert body.median == pytest.approx(SHIFT, abs=2.0)
    present = gt.detected["face"]
    pose = metrics.pose_distance(gen.face, gt.face, gen.detected["face"], present)
    assert pose.mean < 2.0  # degrees: a translation does not turn the head


def test_identity_and_flicker_of_ground_truth(frames):
    if not metrics.dlib_available():
        pytest.skip(metrics.DLIB_INSTALL_HINT)
    identity = metrics.identity_similarity(frames, frames[0])
    assert identity.n_no_face == 0 and identity.distance < 0.3
    warp = metrics.warping_error(frames, frames)
    assert warp.generated == warp.ground_truth < 0.01
