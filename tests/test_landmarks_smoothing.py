"""Smoothing (pure numpy) and MediaPipe Holistic tracking on a real photo."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from anchorgen.geometry import compose_affines, umeyama
from anchorgen.landmarks import LandmarkSequence
from anchorgen.prepare.smoothing import (
    interpolate_gaps,
    jitter,
    one_euro_filter,
    smooth_face,
    smooth_sequence,
    zero_phase_one_euro,
)

FPS = 25.0


def _lag_frames(signal: np.ndarray, reference: np.ndarray) -> float:
    """Delay (frames, 0.1 resolution) that best aligns ``signal`` to ``reference``."""
    t = np.arange(len(reference))
    shifts = np.arange(-5, 5.01, 0.1)
    errors = [np.mean((signal - np.interp(t - d, t, reference))[30:-30] ** 2) for d in shifts]
    return float(shifts[int(np.argmin(errors))])


def _noisy_sine(seed: int = 0):
    t = np.arange(250) / FPS
    clean = 100.0 * np.sin(2 * np.pi * 0.5 * t)  # a slow 0.5 Hz gesture, 100 px amplitude
    noisy = clean + np.random.default_rng(seed).normal(0.0, 2.0, t.shape)  # 2 px detector noise
    return clean, noisy


def _as_points(a: np.ndarray) -> np.ndarray:
    """(T,) -> (T, 1, 3) with the signal in x."""
    return a[:, None, None] * np.array([1.0, 0.0, 0.0])


def test_one_euro_reduces_jitter_with_small_lag():
    clean, noisy = _noisy_sine()
    present = np.ones(len(clean), bool)
    noise = noisy - clean
    # jitter of the noise alone (a still point) drops strongly
    still = one_euro_filter(noise, FPS, min_cutoff=1.0, beta=0.01)
    assert jitter(_as_points(still), present) < 0.3 * jitter(_as_points(noise), present)
    # on the moving signal, the causal filter lags by about a frame, not more
    moving = one_euro_filter(noisy, FPS, min_cutoff=1.0, beta=0.01)
    assert 0.3 <= _lag_frames(moving, clean) <= 1.5


def test_one_euro_static_signal_and_beta_cuts_lag():
    assert np.allclose(one_euro_filter(np.full((20, 2), 7.0), FPS), 7.0)
    t = np.arange(100) / FPS
    ramp = 200.0 * t  # constant fast motion
    slow = one_euro_filter(ramp, FPS, min_cutoff=1.0, beta=0.0)
    fast = one_euro_filter(ramp, FPS, min_cutoff=1.0, beta=0.05)
    assert abs(fast[-1] - ramp[-1]) < 0.3 * abs(slow[-1] - ramp[-1])


def test_zero_phase_has_no_lag():
    clean, noisy = _noisy_sine(1)
    present = np.ones(len(clean), bool)
    filtered = zero_phase_one_euro(noisy, FPS, min_cutoff=1.0, beta=0.01)
    assert abs(_lag_frames(filtered, clean)) <= 0.2
    noise = noisy - clean
    still = zero_phase_one_euro(noise, FPS, min_cutoff=1.0, beta=0.01)
    assert jitter(_as_points(still), present) < 0.1 * jitter(_as_points(noise), present)


def test_one_euro_restarts_after_nan_gap():
    x = np.concatenate([np.zeros(10), np.full(3, np.nan), np.full(10, 50.0)])
    y = one_euro_filter(x, FPS, min_cutoff=0.5)
    assert np.isnan(y[10:13]).all()
    assert y[13] == 50.0  # no memory of the zeros before the gap
    assert np.allclose(y[:10], 0.0)


def test_interpolate_gaps_fills_short_and_keeps_long():
    t = 30
    x = np.arange(t, dtype=np.float64)[:, None, None] * np.ones((1, 2, 3))
    present = np.ones(t, bool)
    present[5:8] = False  # short gap (3): filled
    present[12:20] = False  # long gap (8): kept
    present[:2] = False  # leading: kept
    present[-1] = False  # trailing: kept
    x[~present] = np.nan
    filled, now = interpolate_gaps(x, present, max_gap=4)
    assert now[5:8].all() and np.allclose(filled[5:8, :, 0], np.arange(5, 8)[:, None])
    assert not now[12:20].any() and np.isnan(filled[12:20]).all()
    assert not now[:2].any() and not now[-1]
    assert np.array_equal(filled[present], x[present].astype(np.float32))


def test_jitter_value_and_validity():
    x = np.zeros((5, 1, 3))
    x[2, 0, 0] = 1.0  # second difference: 1, -2, 1 at t = 1, 2, 3
    present = np.ones(5, bool)
    assert jitter(x, present) == pytest.approx(4.0 / 3.0)
    present[2] = False
    assert np.isnan(jitter(x, present))
    x[:, 0, 2] = np.arange(5) ** 2  # z is ignored by default
    assert jitter(x, np.ones(5, bool)) == pytest.approx(4.0 / 3.0)


def _noisy_sequence(t: int = 100) -> tuple[LandmarkSequence, LandmarkSequence]:
    """A still person with 1.5 px noise on every part; returns (clean, noisy)."""
    rng = np.random.default_rng(3)
    clean = LandmarkSequence.empty(t, FPS, (640, 480))
    noisy = LandmarkSequence.empty(t, FPS, (640, 480))
    for part in ("pose", "left_hand", "right_hand", "face"):
        base = rng.uniform(100, 400, (getattr(clean, part).shape[1], 3))
        getattr(clean, part)[:] = base
        getattr(noisy, part)[:] = base + rng.normal(0, 1.5, (t, *base.shape))
        clean.present[part][:] = noisy.present[part][:] = True
    clean.pose[:, 11, :2], clean.pose[:, 12, :2] = (200, 200), (300, 200)  # 100 px shoulders
    noisy.pose[:, 11:13] = clean.pose[:, 11:13]
    noisy.pose_world[:] = clean.pose_world[:] = rng.normal(0, 0.3, (33, 3))
    noisy.pose_visibility[:] = 1.0
    return clean, noisy


def test_smooth_sequence_reduces_jitter_and_fills_flags():
    _, noisy = _noisy_sequence()
    noisy.present["left_hand"][40:44] = noisy.detected["left_hand"][40:44] = False
    noisy.left_hand[40:44] = np.nan
    noisy.present["face"][60:90] = noisy.detected["face"][60:90] = False  # 1.2 s: too long
    noisy.face[60:90] = np.nan
    out = smooth_sequence(noisy)
    assert out.present["left_hand"].all()
    assert not out.detected["left_hand"][40:44].any()
    assert not out.present["face"][60:90].any() and np.isnan(out.face[60:90]).all()
    for part, at_most in (("pose", 0.25), ("right_hand", 0.25), ("face", 0.5)):
        before = jitter(getattr(noisy, part), noisy.present[part])
        after = jitter(getattr(out, part), out.present[part])
        assert after < at_most * before, part  # the face keeps fast expression detail
    assert out.face.dtype == np.float32 and out.pose_world.shape == (100, 33, 3)


def test_fit_similarity_recovers_transform():
    rng = np.random.default_rng(4)
    src = rng.normal(0, 50, (30, 2))
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scale, rotation, shift = umeyama(src, 1.3 * src @ rot.T + (10.0, -4.0))
    assert scale == pytest.approx(1.3) and np.allclose(rotation, rot)
    assert np.allclose(shift, (10.0, -4.0))


def test_smooth_face_steadies_head_and_keeps_lips():
    """Head shake (2 px, 0.01 rad per frame) is removed; 4 Hz lip motion survives."""
    rng = np.random.default_rng(5)
    t = np.arange(150) / FPS
    shape = rng.normal(0, 40, (478, 2))
    opening = 6.0 * np.sin(2 * np.pi * 4.0 * t)  # mouth opens and closes at syllable rate
    faces = np.zeros((len(t), 478, 3))
    for i in range(len(t)):
        local = shape.copy()
        local[13, 1] -= opening[i] / 2
        local[14, 1] += opening[i] / 2
        angle = 0.05 * np.sin(2 * np.pi * 0.3 * t[i]) + rng.normal(0, 0.01)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = np.array([300 + 40 * t[i], 200.0]) + rng.normal(0, 2.0, 2)
        faces[i, :, :2] = local @ rot.T + centre
    present = np.ones(len(t), bool)

    def mouth(f):
        return f[:, 14, 1] - f[:, 13, 1]

    out = smooth_face(faces, present, FPS)
    head_jitter = lambda f: np.abs(np.diff(f[:, :, :2].mean(axis=1), 2, axis=0)).mean()  # noqa: E731
    assert head_jitter(out) < 0.2 * head_jitter(faces)
    kept = np.std(mouth(out)[10:-10]) / np.std(mouth(faces)[10:-10])
    assert kept > 0.85 and np.corrcoef(mouth(out), mouth(faces))[0, 1] > 0.95
    # filtering every point at the head's rate instead would flatten the lips
    plain = zero_phase_one_euro(faces / 40.0, FPS, 1.5, 1.0) * 40.0
    assert np.std(mouth(plain)[10:-10]) / np.std(mouth(faces)[10:-10]) < 0.7 * kept
    still = np.repeat(faces[:1], 20, axis=0)
    still[..., 2] = rng.normal(0, 5, 478)  # depth too
    assert np.allclose(smooth_face(still, np.ones(20, bool), FPS), still, atol=1e-6)
    gap = present.copy()
    gap[50:60] = False
    assert np.isnan(smooth_face(faces, gap, FPS)[50:60]).all()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8 photo of one person, head and torso


def test_holistic_tracks_a_real_photo(astronaut):
    from anchorgen.prepare.holistic import track_frames

    mattes = {}
    seq = track_frames(
        [astronaut] * 3, 25.0, (512, 512), on_matte=mattes.__setitem__, progress=False
    )
    assert len(seq) == 3 and seq.image_size == (512, 512)
    assert seq.detected["pose"].all() and seq.detected["face"].all()
    assert all(np.array_equal(seq.present[p], seq.detected[p]) for p in seq.present)
    face, pose = seq.face[-1], seq.pose[-1]
    assert face.shape == (478, 3) and np.isfinite(face).all()
    # pixels: the face mesh nose tip sits on the pose nose, inside the image
    assert np.linalg.norm(face[1, :2] - pose[0, :2]) < 10
    assert (0 <= face[:, :2]).all() and (face[:, :2] < 512).all()
    # one depth frame, larger z = farther: the nose is closer than the ears
    assert pose[0, 2] < pose[7, 2] and pose[0, 2] < pose[8, 2]
    assert face[1, 2] == pytest.approx(pose[0, 2], abs=1e-3)
    assert face[1, 2] < face[234, 2] and face[1, 2] < face[454, 2]  # nose tip vs face sides
    assert sorted(mattes) == [0, 1, 2]
    matte = mattes[2]
    assert matte.shape == (512, 512) and matte.dtype == np.float32
    assert 0 <= matte.min() and matte.max() <= 1
    assert matte[int(pose[0, 1]), int(pose[0, 0])] > 0.5  # the person is in the matte
    assert matte[5:40, 480:].mean() < 0.5  # top-right background is not


def test_face_counting_and_person_check(astronaut):
    from anchorgen.prepare.holistic import count_faces, count_faces_in_frames, has_person

    assert count_faces(astronaut) == 1
    assert count_faces(np.hstack([astronaut, astronaut])) == 2
    blank = np.full((256, 256, 3), 128, np.uint8)
    assert count_faces_in_frames([blank, astronaut]) == [0, 1]
    assert has_person(astronaut) and not has_person(blank)


DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.mark.realdata
@pytest.mark.skipif(not (DATA / "anchors").is_dir(), reason="../shared/data not present")
def test_real_clip_tracks_and_smooths():
    """First second of the news anchor clip: one face, tracked every frame, smoothed steadier."""
    import av

    from anchorgen.prepare.crop import compute_clip_crop, valid_mask
    from anchorgen.prepare.holistic import count_faces, track_frames

    with av.open(str(DATA / "anchors" / "news_anchor_20s.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in islice(container.decode(video=0), 25)]
    height, width = frames[0].shape[:2]
    assert count_faces(frames[0]) == 1
    seq = track_frames(frames, 25.0, (width, height), progress=False)
    assert seq.detected["face"].all() and seq.detected["pose"].all()
    smooth = smooth_sequence(seq)
    assert jitter(smooth.pose, smooth.present["pose"]) < 0.5 * jitter(seq.pose, seq.present["pose"])
    assert jitter(smooth.face, smooth.present["face"]) < jitter(seq.face, seq.present["face"])
    box = compute_clip_crop(smooth, (width, height))
    face_xy = smooth.face[..., :2]
    assert (face_xy.min(axis=(0, 1)) >= (box.x0, box.y0)).all()
    assert (face_xy.max(axis=(0, 1)) <= (box.x0 + box.side, box.y0 + box.side)).all()
    assert valid_mask(box, (width, height), 64).mean() > 0.5


def test_compose_affines_applies_first_then_second():
    rng = np.random.default_rng(3)
    first, second = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    points = rng.normal(size=(5, 2))

    def apply(affine, pts):
        return pts @ affine[:, :2].T + affine[:, 2]

    np.testing.assert_allclose(
        apply(compose_affines(second, first), points), apply(second, apply(first, points))
    )
