"""Identity similarity (CSIM / F-SIM) with dlib's face-recognition ResNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anchorgen.errors import InputError
from anchorgen.evaluation import metrics

pytestmark = pytest.mark.skipif(not metrics.dlib_available(), reason=metrics.DLIB_INSTALL_HINT)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage.data import astronaut

    return astronaut()


def test_same_face_scores_higher_than_distorted_face_and_blank_frames_are_counted(astronaut):
    import cv2

    shifted = np.roll(astronaut, (9, -14), (0, 1))
    squeezed = np.pad(
        cv2.resize(astronaut, (330, 512)), ((0, 0), (91, 91), (0, 0))
    )  # face 0.64x wide
    blank = np.zeros_like(astronaut)
    result = metrics.identity_similarity(np.stack([shifted, squeezed, blank]), astronaut)
    assert result.n_frames == 3 and result.n_no_face == 1
    same, distorted, none = result.per_frame_cosine
    assert same > 0.99
    assert distorted < same - 0.01
    assert np.isnan(none)
    assert result.cosine == pytest.approx((same + distorted) / 2)
    assert 0.0 <= result.distance < 0.6  # dlib: the same person


def test_reference_without_face_is_an_input_error(astronaut):
    with pytest.raises(InputError, match="reference"):
        metrics.identity_similarity(astronaut, np.zeros_like(astronaut))


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
def test_other_people_are_far_from_the_astronaut(astronaut):
    import cv2

    frames = []
    for path in sorted((DATA / "portraits").glob("lp_*.jpg")):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        frames.append(cv2.resize(image, (512, 512)))
    result = metrics.identity_similarity(np.stack(frames), astronaut)
    shifted = metrics.identity_similarity(np.roll(astronaut, 7, 1), astronaut)
    assert result.n_frames - result.n_no_face >= 3
    assert result.distance > 0.6 > shifted.distance
    assert result.cosine < shifted.cosine - 0.05
