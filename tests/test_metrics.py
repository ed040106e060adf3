"""PSNR / SSIM, landmark distances, warping error, head pose and expression distances."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, shift

from anchorgen.errors import InputError
from anchorgen.evaluation import metrics
from anchorgen.landmarks import LandmarkSequence


def _random_frames(t: int = 3, h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# PSNR / SSIM


def test_psnr_identical_frames_is_inf_without_warnings():
    frames = _random_frames()
    with np.errstate(all="raise"):
        result = metrics.psnr(frames, frames)
    assert np.isinf(result.mean) and np.all(np.isinf(result.per_frame))


def test_psnr_known_mse_gives_known_db():
    gt = np.full((2, 8, 8, 3), 100, np.uint8)
    gen = gt.copy()
    gen[0] += 10  # MSE 100 -> 10 log10(255^2 / 100)
    gen[1] += 1  # MSE 1 -> 20 log10(255)
    result = metrics.psnr(gen, gt)
    expected = np.array([10 * np.log10(255.0**2 / 100.0), 20 * np.log10(255.0)])
    np.testing.assert_allclose(result.per_frame, expected)
    assert result.mean == pytest.approx(expected.mean())


def test_psnr_single_frame_input():
    gt = np.full((8, 8, 3), 50, np.uint8)
    result = metrics.psnr(gt + 5, gt)
    assert result.per_frame.shape == (1,)
    assert result.mean == pytest.approx(10 * np.log10(255.0**2 / 25.0))


def _padded_pair(seed: int, garbage: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames with a 10 px left pad filled with ``garbage`` (gen) and 0 (gt)."""
    gt = _random_frames(2, 40, 60, seed)
    gen = np.clip(
        gt.astype(int) + np.random.default_rng(seed + 1).integers(-20, 21, gt.shape), 0, 255
    ).astype(np.uint8)
    valid = np.ones((40, 60), bool)
    valid[:, :10] = False
    gen[:, :, :10] = garbage
    gt[:, :, :10] = 0
    return gen, gt, valid


def test_valid_mask_makes_padding_irrelevant():
    gen_a, gt, valid = _padded_pair(3, garbage=255)
    gen_b, _, _ = _padded_pair(3, garbage=17)
    for fn in (metrics.psnr, metrics.ssim):
        a, b = fn(gen_a, gt, valid), fn(gen_b, gt, valid)
        np.testing.assert_array_equal(a.per_frame, b.per_frame)
        unmasked = fn(gen_a, gt)
        assert not np.allclose(unmasked.per_frame, a.per_frame), fn.__name__


def test_ssim_identical_is_one_and_noise_lowers_it():
    frames = _random_frames(2, 40, 40)
    assert metrics.ssim(frames, frames).mean == pytest.approx(1.0)
    smooth = _translating_texture(2, 40)
    noise = np.random.default_rng(9).integers(-30, 31, smooth.shape)
    noisy = np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)
    assert metrics.ssim(noisy, smooth).mean < 0.7


def test_per_frame_valid_masks_accepted():
    frames = _random_frames(2, 30, 30)
    valid = np.ones((2, 30, 30), bool)
    valid[1, :, :5] = False
    assert metrics.psnr(frames, frames, valid).per_frame.shape == (2,)
    with pytest.raises(InputError, match="valid mask"):
        metrics.psnr(frames, frames, np.ones((3, 30, 30), bool))


@pytest.mark.parametrize(
    ("gen_shape", "message"),
    [((4, 16, 16, 3), "frames"), ((3, 16, 20, 3), "resize"), ((3, 16, 16), "RGB uint8")],
)
def test_mismatched_inputs_raise_input_error(gen_shape, message):
    gt = np.zeros((3, 16, 16, 3), np.uint8)
    gen = np.zeros(gen_shape, np.uint8)
    for fn in (metrics.psnr, metrics.ssim, metrics.warping_error):
        with pytest.raises(InputError, match=message):
            fn(gen, gt)


def test_float_frames_rejected():
    gt = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(InputError, match="uint8"):
        metrics.psnr(gt.astype(np.float32), gt)


# ---------------------------------------------------------------------------------------------
# landmark distances


def test_landmark_distance_known_offset_scaled_to_512():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0, 256, (5, 21, 2))
    offset = np.array([3.0, 4.0])  # 5 px in a 256 px image -> 10 px at 512
    present = np.ones(5, bool)
    result = metrics.landmark_distance(gt + offset, gt, present, present, image_size=(256, 128))
    assert result.mean == pytest.approx(10.0)
    assert result.median == pytest.approx(10.0)
    assert (result.n_frames_used, result.n_missing_generated, result.n_missing_gt) == (5, 0, 0)


def test_landmark_distance_counts_missing_frames():
    gt = np.zeros((6, 4, 3))
    gen = gt + np.array([1.0, 0.0, 50.0])  # z is ignored
    present_gt = np.array([1, 1, 1, 1, 0, 0], bool)
    present_gen = np.array([1, 0, 1, 0, 1, 0], bool)
    result = metrics.landmark_distance(gen, gt, present_gen, present_gt, image_size=(512, 512))
    assert result.mean == pytest.approx(1.0)
    assert result.n_frames_used == 2
    assert result.n_missing_generated == 2
    assert result.n_missing_gt == 2
    assert np.isnan(result.per_frame[[1, 3, 4, 5]]).all()


def test_landmark_distance_excludes_and_counts_outliers():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 512, (20, 5, 2))
    offsets = rng.uniform(1.0, 2.0, 20)
    offsets[7] = 80.0  # a wrong hand detection
    gen = gt + offsets[:, None, None] * np.array([1.0, 0.0])
    present = np.ones(20, bool)
    result = metrics.landmark_distance(gen, gt, present, present, image_size=(512, 512))
    assert result.n_outliers == 1 and np.isnan(result.per_frame[7])
    assert result.mean == pytest.approx(np.delete(offsets, 7).mean())
    kept = metrics.landmark_distance(
        gen, gt, present, present, image_size=(512, 512), outlier_k=None
    )
    assert kept.n_outliers == 0 and kept.mean == pytest.approx(offsets.mean())


def test_landmark_distance_point_mask_and_bad_shapes():
    gt = np.zeros((2, 3, 2))
    gen = gt.copy()
    gen[:, 2] = 100.0  # only the masked point is wrong
    mask = np.array([[1, 1, 0], [0, 0, 0]], bool)
    present = np.ones(2, bool)
    result = metrics.landmark_distance(gen, gt, present, present, (512, 512), point_mask=mask)
    assert result.mean == 0.0 and result.n_frames_used == 1 and result.n_missing_gt == 1
    with pytest.raises(InputError):
        metrics.landmark_distance(gen[:1], gt, present, present, (512, 512))


def _sequence(t: int, rng: np.random.Generator) -> LandmarkSequence:
    seq = LandmarkSequence.empty(t, 25.0, (256, 256))
    for part in ("pose", "left_hand", "right_hand", "face"):
        arr = getattr(seq, part)
        arr[:] = rng.uniform(0, 256, arr.shape)
        seq.present[part][:] = seq.detected[part][:] = True
    seq.pose_visibility[:] = 1.0
    return seq


def test_landmark_distances_per_part_and_hand_instances():
    rng = np.random.default_rng(2)
    gt = _sequence(4, rng)
    gen = gt.transformed(np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]]), (256, 256))
    gen.detected = {k: v.copy() for k, v in gt.detected.items()}
    gen.detected["left_hand"][1] = False
    results = metrics.landmark_distances(gen, gt)
    for part in ("face", "body", "hand"):
        assert results[part].mean == pytest.approx(4.0), part  # 2 px at 256 -> 4 px at 512
    assert results["hand"].n_frames_used == 7 and results["hand"].n_missing_generated == 1
    gen.face[2] += 100.0  # a face far off in one frame: kept (outliers are dropped for hands only)
    gen.right_hand[2] += 100.0
    results = metrics.landmark_distances(gen, gt)
    assert results["face"].n_outliers == 0 and results["face"].n_frames_used == 4
    assert results["hand"].n_outliers == 1 and results["hand"].mean == pytest.approx(4.0)
    with pytest.raises(InputError, match="frames"):
        metrics.landmark_distances(gen.slice(0, 3), gt)


# ---------------------------------------------------------------------------------------------
# warping error


def _translating_texture(t: int = 6, size: int = 64, step: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(4)
    texture = gaussian_filter(rng.uniform(0, 255, (size + 40, size + 40)), 2.0)
    texture = (texture - texture.min()) / np.ptp(texture) * 255.0
    frames = []
    for i in range(t):
        moved = shift(texture, (0.0, step * i), order=1, mode="reflect")[20:-20, 20:-20]
        frames.append(np.repeat(moved[..., None], 3, -1))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def test_warping_error_small_for_consistent_motion_large_for_flicker():
    gt = _translating_texture()
    steady = metrics.warping_error(gt, gt)
    assert steady.generated == steady.ground_truth
    assert steady.ground_truth < 2e-4  # about 3.6 grey levels RMS after bilinear warping
    assert steady.n_pairs == 5 and steady.mask_fraction > 0.5
    brightness = np.array([0, 25, -25, 25, -25, 25])[:, None, None, None]
    flicker = np.clip(gt.astype(int) + brightness, 0, 255).astype(np.uint8)
    flickering = metrics.warping_error(flicker, gt)
    assert flickering.ground_truth == pytest.approx(steady.ground_truth)
    assert flickering.generated > 20 * steady.ground_truth


def test_warping_error_ignores_padding():
    gt = _translating_texture()
    valid = np.ones(gt.shape[:3], bool)
    valid[:, :, :12] = False
    gen = gt.copy()
    gen[:, :, :12] = np.random.default_rng(5).integers(0, 256, gen[:, :, :12].shape)
    masked = metrics.warping_error(gen, gt, valid)
    assert masked.generated == pytest.approx(masked.ground_truth, rel=0.2)
    assert metrics.warping_error(gen, gt).generated > 5 * masked.generated


def test_warping_error_needs_two_frames():
    with pytest.raises(InputError, match="two frames"):
        metrics.warping_error(_random_frames(1), _random_frames(1))


# ---------------------------------------------------------------------------------------------
# head pose and expression


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rz(roll) @ Ry(yaw) @ Rx(pitch), angles in degrees."""
    y, p, r = np.radians([yaw, pitch, roll])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rz @ ry @ rx


@pytest.fixture(scope="module")
def astronaut_face() -> np.ndarray:
    """(478, 3) MediaPipe face mesh of skimage's astronaut, in pixels."""
    from skimage.data import astronaut

    seq = metrics.detect_landmarks([astronaut()], progress=False)
    assert seq.detected["face"][0], "MediaPipe found no face in skimage's astronaut"
    assert seq.image_size == (512, 512)
    return seq.face[0].astype(np.float64)


def _rotate_about_centre(face: np.ndarray, rot: np.ndarray, scale: float = 1.0) -> np.ndarray:
    centre = face.mean(0)
    return scale * (face - centre) @ rot.T + centre + np.array([7.0, -3.0, 2.0])


def test_head_pose_recovers_known_rotation_of_real_mesh(astronaut_face):
    angles = (12.0, -8.0, 5.0)
    rotated = _rotate_about_centre(astronaut_face, _rotation(*angles), scale=1.3)
    pose = metrics.head_pose(np.stack([astronaut_face, rotated]), canonical=astronaut_face)
    np.testing.assert_allclose(pose[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(pose[1], angles, atol=1e-6)


def test_head_pose_random_cloud_and_nan_frames():
    rng = np.random.default_rng(6)
    cloud = rng.normal(size=(478, 3)) * 50
    angles = (-30.0, 20.0, -45.0)
    faces = np.stack(
        [cloud, _rotate_about_centre(cloud, _rotation(*angles)), np.full((478, 3), np.nan)]
    )
    pose = metrics.head_pose(faces, canonical=cloud)
    np.testing.assert_allclose(pose[1], angles, atol=1e-6)
    assert np.isnan(pose[2]).all()


def test_pose_and_expression_distances_separate_pose_from_expression(astronaut_face):
    expression_idx, _ = metrics._face_index_sets()
    open_mouth = astronaut_face.copy()
    open_mouth[expression_idx] += np.array([0.0, 4.0, 0.0])
    turned = _rotate_about_centre(astronaut_face, _rotation(10.0, 0.0, 0.0))
    gt = np.stack([astronaut_face] * 3)
    gen = np.stack([astronaut_face, open_mouth, turned])
    present = np.ones(3, bool)
    pose = metrics.pose_distance(gen, gt, present, present)
    expr = metrics.expression_distance(gen, gt, present, present)
    np.testing.assert_allclose(pose.per_frame, [0.0, 0.0, 10.0 / 3.0], atol=1e-6)
    np.testing.assert_allclose(expr.per_frame[[0, 2]], 0.0, atol=1e-6)
    assert expr.per_frame[1] > 0.05


def test_face_distances_count_missing_faces(astronaut_face):
    faces = np.stack([astronaut_face] * 4)
    present_gt = np.array([1, 1, 1, 0], bool)
    present_gen = np.array([1, 0, 1, 1], bool)
    result = metrics.pose_distance(faces, faces, present_gen, present_gt)
    assert (result.n_frames_used, result.n_missing_generated, result.n_missing_gt) == (2, 1, 1)
    with pytest.raises(InputError, match="no face"):
        metrics.expression_distance(faces, faces, present_gen, np.zeros(4, bool))


def test_expression_fid_zero_for_same_distribution_larger_for_other_expressions(astronaut_face):
    expression_idx, _ = metrics._face_index_sets()
    rng = np.random.default_rng(7)
    faces = np.stack([astronaut_face] * 6)
    faces[:, expression_idx] += rng.normal(0.0, 1.0, (6, len(expression_idx), 3))
    wide = faces.copy()
    wide[:, expression_idx] *= np.array([1.0, 1.15, 1.0])  # exaggerated vertical motion
    present = np.ones(6, bool)
    assert metrics.expression_fid(faces, faces, present, present) == pytest.approx(0.0, abs=1e-9)
    assert metrics.expression_fid(wide, faces, present, present) > 0.01
    with pytest.raises(InputError, match="two frames"):
        metrics.expression_fid(faces, faces, np.eye(6, dtype=bool)[0], present)


def test_scores_at_the_floors_128_px_average_away_detail_finer_than_two_pixels():
    rng = np.random.default_rng(0)
    truth = rng.integers(40, 200, (2, 256, 256, 3)).astype(np.uint8)
    checker = np.where((np.arange(256)[:, None] + np.arange(256)[None]) % 2, 20, -20)  # (256, 256)
    generated = (truth.astype(int) + checker[None, :, :, None]).astype(np.uint8)
    valid = np.zeros((256, 256), bool)
    valid[:, 40:216] = True  # a portrait inside padding, as the kitchen crop
    generated[:, :, :40] = 0  # padding content must not count
    assert metrics.psnr(generated, truth, valid).mean == pytest.approx(10 * np.log10(255**2 / 400))
    small, small_valid = metrics.area_downsampled(generated, valid)
    small_truth, _ = metrics.area_downsampled(truth, valid)
    assert small.shape == (2, 128, 128, 3) and small_valid.shape == (128, 128)
    assert small_valid[:, 20:108].all() and not small_valid[:, :20].any()
    assert np.abs(small[:, :, 20:].astype(int) - small_truth[:, :, 20:]).max() <= 1  # rounding
    assert metrics.psnr(small, small_truth, small_valid).mean > 50
    with pytest.raises(InputError, match="under 128"):
        metrics.area_downsampled(truth[:, :100, :100], valid[:100, :100])


def test_grid_contrast_finds_a_codec_grid_and_ignores_one_in_the_padding():
    rng = np.random.default_rng(0)
    smooth = gaussian_filter(rng.normal(0, 40, (2, 64, 64, 3)), (0, 2, 2, 0)) + 128  # (T, H, W, 3)
    # a pixel-unshuffle codec whose 4 x 4 sub-pixels got different biases: a fixed 4 x 4 tile
    tile = rng.normal(0, 6, (4, 4, 1))
    gridded = smooth + np.tile(tile, (16, 16, 1))[None]

    def as_uint8(a: np.ndarray) -> np.ndarray:
        return np.clip(a, 0, 255).astype(np.uint8)

    assert metrics.grid_contrast(as_uint8(smooth), 4) < 0.05
    assert metrics.grid_contrast(as_uint8(gridded), 4) > 0.3
    padded = smooth.copy()
    padded[:, :, :24] = gridded[:, :, :24]  # the grid only where the crop padded the frame
    valid = np.zeros((64, 64), bool)
    valid[:, 24:] = True
    assert metrics.grid_contrast(as_uint8(padded), 4, valid) < 0.05
    assert metrics.grid_contrast(as_uint8(padded), 4) > 0.1
    # the cells start at the top-left pixel: block-constant offsets jump only across their
    # borders, and score less once shifted off them
    blocks = smooth + np.kron(rng.normal(0, 12, (16, 16)), np.ones((4, 4)))[None, :, :, None]
    shifted = np.roll(blocks, 2, axis=(1, 2))
    assert metrics.grid_contrast(as_uint8(blocks), 4) > 2 * metrics.grid_contrast(
        as_uint8(shifted), 4
    )
    with pytest.raises(InputError, match="grid period"):
        metrics.grid_contrast(as_uint8(smooth), 1)
