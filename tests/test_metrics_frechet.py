"""Frechet distance on Gaussians with known distance; FID plumbing without real weights."""

from __future__ import annotations

import numpy as np
import pytest

from anchorgen.errors import InputError
from anchorgen.evaluation import frechet


def test_one_dimensional_closed_form():
    # N(0, 1) vs N(3, 4): 9 + 1 + 4 - 2 * sqrt(4) = 10
    assert frechet.frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]) == pytest.approx(10.0)


def test_diagonal_covariances_closed_form_and_rotation_invariance():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    got = frechet.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert got == pytest.approx(expected, rel=1e-9)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))  # a common rotation keeps the distance
    rotated = frechet.frechet_distance(
        q @ mu1, q @ np.diag(var1) @ q.T, q @ mu2, q @ np.diag(var2) @ q.T
    )
    assert rotated == pytest.approx(expected, rel=1e-6)


def test_identical_gaussians_have_zero_distance():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    sigma = a @ a.T
    assert frechet.frechet_distance(np.ones(5), sigma, np.ones(5), sigma) == pytest.approx(
        0.0, abs=1e-8
    )


def test_singular_covariances_stay_finite_and_close():
    var1 = np.array([1.0, 4.0, 0.0, 0.0])
    var2 = np.array([4.0, 1.0, 0.0, 0.0])
    got = frechet.frechet_distance(np.zeros(4), np.diag(var1), np.zeros(4), np.diag(var2))
    assert got == pytest.approx(2.0, abs=1e-4)  # (1 - 2)^2 + (2 - 1)^2


def test_sample_statistics_approach_the_closed_form():
    rng = np.random.default_rng(2)
    a = rng.normal(0.0, 1.0, (20000, 3))
    b = rng.normal(1.0, 2.0, (20000, 3))
    expected = 3 * 1.0 + 3 * (2.0 - 1.0) ** 2
    assert frechet.frechet_distance_of_features(a, b) == pytest.approx(expected, rel=0.05)


def test_trace_sqrt_product_matches_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    s1, s2 = a @ a.T, b @ b.T
    expected = np.trace(sqrtm(s1 @ s2)).real
    assert frechet.trace_sqrt_product(s1, s2) == pytest.approx(expected, rel=1e-8)


def test_sample_space_route_matches_covariance_route():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(12, 40))  # fewer samples than dimensions: sample-space route
    b = rng.normal(size=(15, 40)) * 1.5 + 0.3
    expected = frechet.frechet_distance(*frechet.gaussian_stats(a), *frechet.gaussian_stats(b))
    assert frechet.frechet_distance_of_features(a, b) == pytest.approx(expected, rel=1e-6)


def test_short_clip_statistics_in_2048_dimensions():
    rng = np.random.default_rng(5)
    feats = rng.normal(size=(50, 2048))  # fewer samples than dimensions, as in a short clip
    assert frechet.frechet_distance_of_features(feats, feats) == pytest.approx(0.0, abs=1e-8)
    assert frechet.frechet_distance_of_features(feats, feats + 1.0) == pytest.approx(
        2048.0, rel=1e-9
    )


def test_bad_shapes_raise_input_error():
    with pytest.raises(InputError, match="Frechet"):
        frechet.frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))
    with pytest.raises(InputError, match="N >= 2"):
        frechet.gaussian_stats(np.zeros((1, 4)))


def _frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def test_fid_without_weights_is_reported_not_computed(tmp_path):
    result = frechet.fid(_frames(2, 0), _frames(2, 1), None)
    assert not result.computed and result.note.startswith("not computed: ")
    missing = frechet.fid(_frames(2, 0), _frames(2, 1), tmp_path / "inception.safetensors")
    assert missing.report_value() == missing.note and "inception.safetensors" in missing.note
    with pytest.raises(InputError, match=">= 2"):
        frechet.fid(_frames(1, 0), _frames(2, 1), None)


@pytest.fixture(scope="module")
def random_inception(tmp_path_factory):
    """A randomly initialised FID Inception saved as safetensors (stands in for real weights)."""
    import torch
    from safetensors.torch import save_file

    from anchorgen.evaluation.inception import FIDInceptionV3

    torch.manual_seed(0)
    model = FIDInceptionV3()
    path = tmp_path_factory.mktemp("fid") / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.mark.slow
def test_fid_with_weights_runs_the_network(random_inception):
    frames = _frames(2, 0)
    result = frechet.fid(frames, np.zeros_like(frames), random_inception)
    assert result.computed and result.note == "" and result.value > 0
    assert np.isfinite(result.value)


def test_wrong_weights_file_is_an_input_error(tmp_path):
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(1)}, str(path))
    with pytest.raises(InputError, match="missing keys"):
        frechet.fid(_frames(2, 0), _frames(2, 1), path)
    with pytest.raises(InputError, match="I3D"):
        frechet.fvd(_frames(32, 0), _frames(32, 1), path)
    not_safetensors = tmp_path / "weights.safetensors"
    not_safetensors.write_bytes(b"\x80\x04pickled")
    with pytest.raises(InputError, match="safetensors"):
        frechet.fid(_frames(2, 0), _frames(2, 1), not_safetensors)


def test_fvd_without_weights_is_reported_not_computed(tmp_path):
    video = _frames(32, 0)
    assert frechet.fvd(video, video, None).note.startswith("not computed: no I3D weights")
    missing = frechet.fvd(video, video, tmp_path / "i3d.safetensors")
    assert not missing.computed and "i3d.safetensors" in missing.note
    with pytest.raises(InputError, match="at least 32 frames"):
        frechet.fvd(_frames(31, 0), video, None)


@pytest.mark.slow
def test_fvd_with_weights_runs_the_network(tmp_path):
    import torch
    from safetensors.torch import save_file

    from anchorgen.evaluation.i3d import InceptionI3d

    torch.manual_seed(0)
    path = tmp_path / "i3d.safetensors"
    save_file({k: v.contiguous() for k, v in InceptionI3d().state_dict().items()}, str(path))
    video = _frames(32, 0)
    result = frechet.fvd(video, np.zeros_like(video), path)
    assert result.computed and np.isfinite(result.value) and result.value > 0
