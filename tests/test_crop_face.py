"""Clip crop and FFHQ-style face alignment: geometry round trips, masks, paste-back."""

from __future__ import annotations

import numpy as np
import pytest

from anchorgen.errors import InputError
from anchorgen.landmarks import LandmarkSequence
from anchorgen.prepare.crop import CropBox, apply_crop, compute_clip_crop, valid_mask
from anchorgen.prepare.face import (
    FACE_OVAL,
    alignment_points,
    apply_affine,
    face_align_affine,
    face_mask,
    invert_affine,
    paste_back,
    smooth_affines,
    warp_face,
)


def _blob_image(height: int, width: int, centre: tuple[float, float], sigma: float = 3.0):
    """(H, W, 3) uint8 with a Gaussian blob at continuous coordinates ``centre`` (x, y)."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5  # pixel centres, continuous coordinates
    blob = np.exp(-((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2) / (2 * sigma**2))
    return np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def _centroid(image: np.ndarray) -> np.ndarray:
    """Intensity centroid (x, y) in continuous coordinates of a blob image."""
    w = image[..., 0].astype(np.float64)
    w = np.where(w > 0.2 * w.max(), w, 0.0)
    ys, xs = np.mgrid[0 : w.shape[0], 0 : w.shape[1]] + 0.5
    return np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()


@pytest.mark.parametrize(
    ("box", "out_size"), [(CropBox(40, 30, 100), 400), (CropBox(-20, 10, 160), 64)]
)
def test_crop_image_matches_affine_and_inverse(box, out_size):
    point = (75.3, 61.8)
    frame = _blob_image(120, 160, point, sigma=4.0)
    crop = apply_crop(frame, box, out_size)
    affine = box.affine(out_size)
    expected = apply_affine(affine, np.array(point))
    found = _centroid(crop)
    px_in_source = box.side / out_size
    assert np.linalg.norm(found - expected) * px_in_source < 0.2  # pixel conventions agree
    back = apply_affine(invert_affine(affine), found)
    assert np.linalg.norm(back - point) < 1.0


def test_padding_and_valid_mask_when_box_leaves_frame():
    box = CropBox(-10, -20, 100)
    assert box.padding((80, 200)) == (10, 20, 10, 0)
    mask = valid_mask(box, (80, 200), 50)  # 2 source px per output px
    assert mask.shape == (50, 50)
    assert not mask[:10].any() and mask[10:, 5:45].all()
    assert not mask[:, :5].any() and not mask[:, 45:].any()
    assert CropBox(0, 0, 50).padding((80, 200)) == (0, 0, 0, 0)
    assert valid_mask(CropBox(0, 0, 50), (80, 200), 25).all()


@pytest.mark.parametrize("pad_mode", ["reflect", "edge"])
def test_apply_crop_padding_modes(pad_mode):
    frame = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    box = CropBox(-5, 2, 16)
    crop = apply_crop(frame, box, 16, pad_mode=pad_mode)  # 1:1, no resampling
    assert np.array_equal(crop[:, 5:], frame[2:18, 0:11])
    column = frame[2:18, 1] if pad_mode == "reflect" else frame[2:18, 0]
    assert np.array_equal(crop[:, 4], column)
    with pytest.raises(InputError):
        apply_crop(frame, box, 16, pad_mode="wrap")


def _sequence_with_points(points_per_frame: list[np.ndarray], size=(640, 480)) -> LandmarkSequence:
    seq = LandmarkSequence.empty(len(points_per_frame), 25.0, size)
    for t, pts in enumerate(points_per_frame):
        seq.face[t] = np.resize(pts, (478, 3))
        seq.present["face"][t] = seq.detected["face"][t] = True
    return seq


def test_compute_clip_crop_contains_union_and_stays_inside():
    rng = np.random.default_rng(0)
    frames = [
        np.column_stack([rng.uniform(200, 300, 50), rng.uniform(100, 260, 50), np.zeros(50)])
        for _ in range(200)
    ]
    frames[7][0] = (630, 470, 0)  # one misdetected frame in 8 s must not stretch the box
    box = compute_clip_crop(_sequence_with_points(frames), (640, 480))
    assert box.x0 <= 205 and box.y0 <= 105
    assert box.x0 + box.side >= 295 and box.y0 + box.side >= 255
    assert box.side < 220 and box.padding((640, 480)) == (0, 0, 0, 0)


def test_compute_clip_crop_extends_outside_when_needed():
    pts = [np.array([[10.0, 5.0, 0.0], [630.0, 300.0, 0.0]])] * 5  # wider than the frame is tall
    box = compute_clip_crop(_sequence_with_points(pts), (640, 480), margin=0.1)
    assert box.side == 640 and box.padding((640, 480)) == (0, 160, 0, 0)  # towards the union
    # points beyond the frame (MediaPipe extrapolates cut-off parts) do not grow the box
    pts = [np.array([[-50.0, 5.0, 0.0], [700.0, 300.0, 0.0]])] * 5
    box = compute_clip_crop(_sequence_with_points(pts), (640, 480), margin=0.1)
    assert box.side == 640 and box.padding((640, 480)) == (0, 160, 0, 0)
    # the union fits in the frame but its margin does not: the margin shrinks
    pts = [np.array([[100.0, 20.0, 0.0], [540.0, 460.0, 0.0]])] * 5
    box = compute_clip_crop(_sequence_with_points(pts), (640, 480))
    assert box.side == 480 and box.padding((640, 480)) == (0, 0, 0, 0)
    # taller than the frame is wide (portrait clip): padded sideways only
    pts = [np.array([[200.0, 30.0, 0.0], [300.0, 1000.0, 0.0]])] * 5
    box = compute_clip_crop(_sequence_with_points(pts, (540, 1080)), (540, 1080))
    left, top, right, bottom = box.padding((540, 1080))
    assert box.side == 1080 and top == bottom == 0 and left + right == 540
    with pytest.raises(InputError):
        compute_clip_crop(LandmarkSequence.empty(3, 25.0, (640, 480)), (640, 480))


def test_compute_clip_crop_ignores_unseen_pose_points():
    seq = _sequence_with_points([np.array([[200.0, 100.0, 0.0], [300.0, 200.0, 0.0]])] * 5)
    seq.pose[:] = 250.0
    seq.pose[:, 13] = (250.0, 470.0, 0.0)  # elbow in the frame but not visible
    seq.pose[:, 14] = (250.0, 900.0, 0.0)  # elbow below the frame, "visible"
    seq.pose[:, 11] = (180.0, 260.0, 0.0)  # shoulder: visible and in the frame
    seq.pose_visibility[:] = 0.9
    seq.pose_visibility[:, 13] = 0.1
    seq.present["pose"][:] = True
    box = compute_clip_crop(seq, (640, 480), margin=0.0)
    assert box.x0 <= 180 and box.y0 + box.side >= 260
    assert box.side == 160 and box.padding((640, 480)) == (0, 0, 0, 0)  # y 100..260


def _synthetic_face(eye_dist=60.0, mouth_dist=60.0, angle=0.2, centre=(300.0, 220.0)) -> np.ndarray:
    """(478, 3) mesh with only the alignment and oval points set, rotated by ``angle``."""
    canon = np.zeros((478, 2))
    canon[[33, 133]] = [(-eye_dist / 2 - 12, 0), (-eye_dist / 2 + 12, 0)]
    canon[[362, 263]] = [(eye_dist / 2 - 12, 0), (eye_dist / 2 + 12, 0)]
    canon[61], canon[291] = (-25, mouth_dist), (25, mouth_dist)
    theta = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    canon[list(FACE_OVAL)] = np.column_stack([60 * np.sin(theta), -70 * np.cos(theta) + 30])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    pts = canon @ rot.T + centre
    return np.column_stack([pts, np.zeros(478)])


def test_face_affine_template_positions_and_round_trip():
    out = 256
    for angle, scale, centre in [
        (0.0, 1.0, (300, 220)),
        (0.4, 2.0, (500, 300)),
        (-0.3, 0.6, (120, 90)),
    ]:
        face = _synthetic_face(60 * scale, 60 * scale, angle, centre)
        affine = face_align_affine(face, out)
        eyes = apply_affine(affine, alignment_points(face)[:2])
        # FFHQ recipe with |eye_to_mouth| == |eye_to_eye| (= d): x half-axis 2d, centre
        # 0.1 d below the eye midpoint -> eyes at (3/8, 1/2 - 0.05 / 2) of the crop
        assert np.allclose(
            eyes, [[0.375 * out, 0.475 * out], [0.625 * out, 0.475 * out]], atol=1e-6
        )
        back = apply_affine(invert_affine(affine), apply_affine(affine, face))
        assert np.abs(back - face[:, :2]).max() < 1e-6


def test_warp_face_image_matches_affine():
    face = _synthetic_face(eye_dist=160.0, mouth_dist=160.0, angle=0.3, centre=(300.0, 260.0))
    eye = alignment_points(face)[0]
    image = _blob_image(600, 640, tuple(eye), sigma=5.0)
    affine = face_align_affine(face, 128)  # 640 px quad -> 128: exercises the pre-shrink
    crop = warp_face(image, affine, 128)
    expected = apply_affine(affine, eye)
    assert np.linalg.norm(_centroid(crop) - expected) < 0.25  # pixel conventions agree
    back = apply_affine(invert_affine(affine), _centroid(crop))
    assert np.linalg.norm(back - eye) < 1.0


def test_face_mask_and_paste_back_leave_outside_pixels_unchanged():
    rng = np.random.default_rng(1)
    face = _synthetic_face()
    affine = face_align_affine(face, 128)
    mask = face_mask(face, affine, 128, feather_px=6)
    assert mask.dtype == np.float32 and 0.0 <= mask.min() and mask.max() == 1.0
    oval_centre = apply_affine(affine, face[list(FACE_OVAL)].mean(axis=0)).astype(int)
    assert mask[oval_centre[1], oval_centre[0]] == 1.0
    assert mask[0, 0] == 0.0 and mask[-1, -1] == 0.0
    assert 0 < ((mask > 0) & (mask < 1)).sum() < 0.2 * mask.size  # a thin feathered rim

    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    aligned = np.full((128, 128, 3), 255, np.uint8)
    out = paste_back(frame, aligned, affine, mask)
    changed = np.any(out != frame, axis=2)
    assert changed.any()
    # everything outside the (dilated, feathered) oval is bit-identical
    src_oval = face[list(FACE_OVAL), :2]
    dist = np.hypot(*(np.mgrid[0:480, 0:640][::-1] + 0.5 - src_oval.mean(0)[:, None, None]))
    far = dist > 1.5 * np.linalg.norm(src_oval - src_oval.mean(0), axis=1).max()
    assert np.array_equal(out[far], frame[far])
    centre = face[list(FACE_OVAL), :2].mean(axis=0).astype(int)
    assert (out[centre[1], centre[0]] == 255).all()
    assert np.array_equal(paste_back(frame, aligned, affine, np.zeros_like(mask)), frame)


def test_smooth_affines_removes_shake_and_keeps_nan():
    rng = np.random.default_rng(2)
    t = 60
    affines = []
    for i in range(t):
        face = _synthetic_face(
            angle=0.1 + rng.normal(0, 0.02), centre=(300 + rng.normal(0, 2), 220 + i)
        )
        affines.append(face_align_affine(face, 256))
    affines = np.stack(affines)
    affines[30] = np.nan
    smooth = smooth_affines(affines, fps=25.0, out_size=256)
    assert smooth.shape == (t, 2, 3) and np.isnan(smooth[30]).all()
    centre = np.array([128.0, 128.0])

    def centres(a):
        return np.stack([apply_affine(invert_affine(m), centre) for m in a if np.isfinite(m).all()])

    shake = lambda c: np.abs(np.diff(c, 2, axis=0)).mean()  # noqa: E731
    assert shake(centres(smooth)) < 0.3 * shake(centres(affines))
    assert np.abs(centres(smooth)[:, 1] - centres(affines)[:, 1]).mean() < 3.0  # follows drift
