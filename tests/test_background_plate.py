"""Background plate of a fixed-camera body (``model.background_plate``): the median plate,
its dataset items, the widened networks, x0 = plate + residual, saving and the pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorgen.errors import ConfigError, InputError
from anchorgen.io.dataset import (
    MIN_PLATE_FIT_PSNR,
    IdentityDataset,
    PreparedDataset,
)
from anchorgen.models import StructureGuidedDiffusion, tiny_model_config
from anchorgen.models.sgdm import BACKGROUND_FILE, BackgroundPlate
from anchorgen.pipelines.anchor import AnchorPipeline, background_inpainting
from anchorgen.prepare.background import background_plate, plate_fit_psnr
from anchorgen.presets import ModelConfig, get_preset
from anchorgen.training.recipe import run_training
from synthetic_identity import write_prepared_dataset
from tiny_inputs import IMG, LAT, B, C, F, random_inputs

torch.set_num_threads(1)  # tiny models: threads only add overhead on a shared CPU

T, H, W = 8, 40, 40  # 40 rows: more than one of background.py's row chunks


# ----------------------------------------------------------------- synthetic fixed-camera clip
def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(background (H, W, 3), frames (T, H, W, 3), mattes (T, H, W)), all uint8.

    The "person" (random colours, 255 in the matte) is a 10 px square moving right 4 px a
    frame over rows 20:30, a block at rows 0:6, cols 0:6 in every frame, and a block at rows
    0:6, cols 30:36 in all but the last two frames.
    """
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    mattes = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        mattes[t, 20:30, 4 * t : 4 * t + 10] = 255
        mattes[t, 0:6, 0:6] = 255
        if t < T - 2:
            mattes[t, 0:6, 30:36] = 255
    person = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
    frames = np.where(mattes[..., None] > 0, person, background[None])
    return background, frames, mattes


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of (H, W) bool by a (2r + 1)^2 square, by shifts (independent of OpenCV)."""
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy : dy + mask.shape[0], dx : dx + mask.shape[1]]
    return out


def test_plate_is_the_background_where_known_and_zero_elsewhere():
    background, frames, mattes = _scene()
    plate, known = background_plate(frames, mattes, dilate_px=0)
    assert plate.shape == (H, W, 3) and plate.dtype == np.uint8
    assert known.shape == (H, W) and known.dtype == bool
    assert np.array_equal(known, (mattes == 0).sum(axis=0) >= 3)
    assert np.array_equal(plate[known], background[known])
    assert not known[0:6, 0:6].any(), "a region covered in every frame cannot be known"
    assert np.all(plate[~known] == 0)
    assert known[20:30].all(), "the moving square uncovers every pixel of its path"


def test_min_count_and_threshold_decide_what_is_known():
    background, frames, mattes = _scene()
    rarely_seen = (slice(0, 6), slice(30, 36))  # free of the person in 2 of 8 frames
    _, known = background_plate(frames, mattes, dilate_px=0, min_count=3)
    assert not known[rarely_seen].any()
    plate, known_twice = background_plate(frames, mattes, dilate_px=0, min_count=2)
    assert known_twice[rarely_seen].all()
    # only the 2 free frames enter the median, not the 6 with the person's colours
    assert np.array_equal(plate[rarely_seen], background[rarely_seen])
    # a faint matte everywhere, at the threshold: only a matte above it counts as person
    faint = np.where(mattes > 0, mattes, 13).astype(np.uint8)
    assert np.array_equal(background_plate(frames, faint, dilate_px=0)[1], known)
    assert not background_plate(frames, faint, dilate_px=0, matte_threshold=12)[1].any()


def test_dilation_grows_the_unknown_area():
    background, frames, mattes = _scene()
    _, plain = background_plate(frames, mattes, dilate_px=0)
    plate, grown = background_plate(frames, mattes, dilate_px=2)
    person = np.stack([_dilate(m > 13, 2) for m in mattes])
    assert np.array_equal(grown, (~person).sum(axis=0) >= 3)
    assert grown.sum() < plain.sum() and not (grown & ~plain).any()
    assert not grown[0:8, 0:8].any(), "the always-covered block grows by 2 px"
    assert np.array_equal(plate[grown], background[grown])


def test_bad_plate_inputs_raise_value_error():
    _, frames, mattes = _scene()
    with pytest.raises(ValueError, match="frames"):
        background_plate(frames[0], mattes)
    with pytest.raises(ValueError, match="frames"):
        background_plate(frames.astype(np.float32), mattes)
    with pytest.raises(ValueError, match="frames"):
        background_plate(np.concatenate([frames, frames[..., :1]], axis=-1), mattes)
    with pytest.raises(ValueError, match="mattes"):
        background_plate(frames, mattes[:, :-1])
    with pytest.raises(ValueError, match="min_count"):
        background_plate(frames, mattes, min_count=0)


# ----------------------------------------------------------------- config
def test_plate_fit_is_high_for_a_fixed_camera_and_low_for_a_moving_one():
    _, frames, mattes = _scene()
    noisy = np.clip(
        frames.astype(int) + np.random.default_rng(1).integers(-2, 3, frames.shape), 0, 255
    )
    noisy = noisy.astype(np.uint8)  # JPEG-like noise of a fixed camera: +-2 levels
    plate, known = background_plate(noisy, mattes, dilate_px=0)
    assert plate_fit_psnr(noisy, mattes, plate, known, dilate_px=0) > 40
    # the person's pixels never count: a fixed background with any person fits exactly
    plate, known = background_plate(frames, mattes, dilate_px=0)
    assert plate_fit_psnr(frames, mattes, plate, known, dilate_px=0) == float("inf")
    # the camera pans 1 px a frame
    panned = np.stack([np.roll(frame, t, axis=1) for t, frame in enumerate(frames)])
    plate, known = background_plate(panned, mattes, dilate_px=0)
    assert plate_fit_psnr(panned, mattes, plate, known, dilate_px=0) < MIN_PLATE_FIT_PSNR


def test_a_dataset_whose_background_moves_has_no_plate(tmp_path):
    """A body that reads a plate is refused a clip whose camera moves, with the way out."""
    _, frames, mattes = _scene()
    panned = [np.roll(frame, 2 * t, axis=1) for t, frame in enumerate(frames)]
    root = write_prepared_dataset(
        tmp_path / "panned",
        frames=panned,
        renders=panned,
        mattes=list(mattes),
        face_frames=panned,
        face_renders=panned,
        face_masks=list(mattes),
    )
    with pytest.raises(InputError, match=r"not static.*model\.background_plate=false"):
        IdentityDataset(root, clip_length=2, background_plate=True)
    assert len(IdentityDataset(root, clip_length=2)) > 0  # without the plate it trains


def test_background_plate_config_is_body_only_and_predicts_x0():
    body = tiny_model_config().to_dict()
    with pytest.raises(ConfigError, match="body option"):
        ModelConfig.from_dict(
            {**body, "part": "face", "prediction_type": "sample", "background_plate": True}
        )
    with pytest.raises(ConfigError, match="prediction_type=sample"):
        ModelConfig.from_dict({**body, "background_plate": True})
    with pytest.raises(ConfigError, match="prediction_type=sample"):
        get_preset("tiny").with_overrides(["model.background_plate=true"])
    config = ModelConfig.from_dict({**body, "prediction_type": "sample", "background_plate": True})
    assert config.context_input and not config.inpainting
    assert config.unet_in_channels == 2 * C + 1


# ----------------------------------------------------------------- models
def _configs(temporal: bool = False) -> tuple[ModelConfig, ModelConfig]:
    """(plain body, background-plate body) of the tiny preset, both predicting x0."""
    plain = tiny_model_config(temporal).replace(prediction_type="sample")
    return plain, plain.replace(background_plate=True)


def _build(config: ModelConfig, seed: int = 0) -> StructureGuidedDiffusion:
    torch.manual_seed(seed)
    return StructureGuidedDiffusion.build(config).eval()


def _random_plate(size: int = IMG, seed: int = 0) -> BackgroundPlate:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, size, size, generator=g) * 2 - 1
    hole = torch.zeros(1, size, size)
    hole[:, size // 4 : size // 2, size // 3 : 2 * size // 3] = 1.0
    return BackgroundPlate(image, hole)


def _plate_inputs(model: StructureGuidedDiffusion):
    """``random_inputs`` with the reference encoded: (noisy, timesteps, conditions, tokens,
    (M, z_M) of a random plate and hole)."""
    noisy, timesteps, conditions, reference, inpaint = random_inputs(model)
    with torch.no_grad():
        return noisy, timesteps, conditions, model.encode_appearance(reference), inpaint


@pytest.mark.parametrize("temporal", [False, True])
def test_plate_model_pairs_with_the_plain_model_under_one_seed(temporal):
    plain_config, plate_config = _configs(temporal)
    plain = _build(plain_config)
    after_plain = torch.get_rng_state()
    plate = _build(plate_config)
    assert torch.equal(torch.get_rng_state(), after_plain), "widening drew random numbers"
    a, b = plain.state_dict(), plate.state_dict()
    assert a.keys() == b.keys()
    widened = {k for k in a if a[k].shape != b[k].shape}
    assert widened == {"unet.conv_in.weight", "controlnet.conv_in.weight"}
    assert all(torch.equal(a[k], b[k]) for k in a if k not in widened)
    for name in widened:
        assert b[name].shape == (a[name].shape[0], 2 * C + 1, *a[name].shape[2:])
        assert torch.equal(b[name][:, :C], a[name])
        assert not b[name][:, C:].any(), f"{name}: the plate's channels must start at zero"
    assert plate.unet.config.in_channels == plate.controlnet.config.in_channels == 2 * C + 1


def test_plate_model_predicts_the_plain_output_plus_the_masked_latents():
    plain_config, plate_config = _configs()
    plain, plate = _build(plain_config), _build(plate_config)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a non-trivial structure branch, the same in both models
        for (name, p), q in zip(
            plain.controlnet.named_parameters(), plate.controlnet.parameters(), strict=True
        ):
            if name != "conv_in.weight":
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
                q.copy_(p)
    noisy, t, cond, tokens, (mask, masked) = _plate_inputs(plate)
    assert masked.abs().sum() > 0
    with torch.no_grad():
        residual = plain.predict(noisy, t, cond, tokens)
        x0 = plate.predict(noisy, t, cond, tokens, inpaint=(mask, masked))
        x0_no_plate = plate.predict(
            noisy, t, cond, tokens, inpaint=(mask, torch.zeros_like(masked))
        )
    assert x0.shape == (B, F, C, LAT, LAT)
    assert torch.allclose(x0, residual + masked, atol=1e-5)
    assert torch.allclose(x0 - x0_no_plate, masked, atol=1e-5)


def test_plate_model_reads_its_context_channels_once_trained():
    plate = _build(_configs()[1])
    with torch.no_grad():
        plate.unet.conv_in.weight[:, C:].normal_(0, 0.1, generator=torch.Generator().manual_seed(2))
    noisy, t, cond, tokens, (mask, masked) = _plate_inputs(plate)
    with torch.no_grad():
        seen = plate.predict(noisy, t, cond, tokens, inpaint=(mask, masked))
        blank = plate.predict(noisy, t, cond, tokens, inpaint=(mask, torch.zeros_like(masked)))
    assert not torch.allclose(seen - blank, masked, atol=1e-3)


def test_plate_model_needs_its_inpaint_input():
    plate = _build(_configs()[1])
    noisy, t, cond, tokens, _ = _plate_inputs(plate)
    with pytest.raises(InputError, match="inpaint"):
        plate.predict(noisy, t, cond, tokens)


def test_save_and_load_keep_the_plate(tmp_path):
    plate = _build(_configs()[1])
    plate.background = _random_plate()
    plate.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / BACKGROUND_FILE).is_file()
    loaded = StructureGuidedDiffusion.from_pretrained(tmp_path / "m", expected=plate.config)
    assert loaded.background is not None
    assert loaded.background.image.shape == (3, IMG, IMG)
    error = (loaded.background.image - plate.background.image).abs().max()
    assert error <= 1 / 127.5 + 1e-6, "more than uint8 quantisation lost"
    assert torch.equal(loaded.background.hole, plate.background.hole)
    noisy, t, cond, tokens, inpaint = _plate_inputs(plate)
    with torch.no_grad():
        expected = plate.predict(noisy, t, cond, tokens, inpaint=inpaint)
        assert torch.equal(loaded.predict(noisy, t, cond, tokens, inpaint=inpaint), expected)


def test_saving_a_plate_model_without_its_plate_is_refused(tmp_path):
    plate_model = _build(_configs()[1])
    with pytest.raises(ConfigError, match="no plate"):
        plate_model.save_pretrained(tmp_path / "m")
    plain = _build(_configs()[0])
    plain.save_pretrained(tmp_path / "plain")
    assert not (tmp_path / "plain" / BACKGROUND_FILE).exists()
    assert StructureGuidedDiffusion.from_pretrained(tmp_path / "plain").background is None


# ----------------------------------------------------------------- pipeline
def test_background_inpainting_expands_one_plate_to_every_frame():
    model = _build(_configs()[1])
    model.background = _random_plate()
    inpainting = background_inpainting(model, 5, IMG, IMG)
    assert inpainting.mask.shape == (5, 1, LAT, LAT)
    assert inpainting.masked_latents.shape == (5, C, LAT, LAT)
    assert inpainting.mask.stride(0) == inpainting.masked_latents.stride(0) == 0, "copied"
    image, hole = model.background.image, model.background.hole
    with torch.no_grad():
        mask, masked = model.inpaint_inputs(image[None, None], hole[None, None])
    assert torch.equal(inpainting.mask[3], mask[0, 0])
    assert torch.allclose(inpainting.masked_latents[3], masked[0, 0])
    assert inpainting.mask.sum() > 0 and (inpainting.mask[0] == 0).any()


def test_background_inpainting_resizes_a_plate_of_another_size():
    model = _build(_configs()[1])
    model.background = _random_plate(size=2 * IMG)
    inpainting = background_inpainting(model, 3, IMG, IMG)
    assert inpainting.mask.shape == (3, 1, LAT, LAT)
    assert inpainting.masked_latents.shape == (3, C, LAT, LAT)
    small = _random_plate(size=IMG)  # the same hole, drawn at the frames' size
    with torch.no_grad():
        mask, _ = model.inpaint_inputs(small.image[None, None], small.hole[None, None])
    assert torch.equal(inpainting.mask[0], mask[0, 0])


def test_background_inpainting_needs_a_plate():
    model = _build(_configs()[1])
    with pytest.raises(InputError, match="background"):
        background_inpainting(model, 3, IMG, IMG)
    pipe = AnchorPipeline(model)
    with pytest.raises(InputError, match="background"):
        pipe.denoise(torch.rand(3, IMG, IMG), torch.rand(2, 3, IMG, IMG), 1, progress=False)


def test_pipeline_gives_the_plate_to_every_forward(monkeypatch):
    model = _build(_configs()[1])
    model.background = _random_plate()
    expected = background_inpainting(model, 1, IMG, IMG).masked_latents[0]
    seen = []
    predict = model.predict

    def recording_predict(*args, inpaint=None, **kwargs):
        seen.append(inpaint)
        return predict(*args, inpaint=inpaint, **kwargs)

    monkeypatch.setattr(model, "predict", recording_predict)
    pipe = AnchorPipeline(model)
    latents = pipe.denoise(
        torch.rand(3, IMG, IMG),
        torch.rand(3, 3, IMG, IMG),
        num_inference_steps=2,
        temporal=False,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert latents.shape == (3, C, LAT, LAT) and torch.isfinite(latents).all()
    assert seen and all(inpaint is not None for inpaint in seen)
    for _, masked in seen:
        assert torch.allclose(masked.flatten(0, 1), expected.expand_as(masked.flatten(0, 1)))


# ----------------------------------------------------------------- dataset and training
@pytest.fixture(scope="module")
def fixed_camera_dataset(tmp_path_factory):
    """A prepared body dataset (schema v1) of 8 frames, 32 px: a smooth static background
    and a moving square "person"; the top-left 6 x 6 px are covered in every frame."""
    n, size = 8, IMG
    ys, xs = np.mgrid[0:size, 0:size]
    background = np.stack([ys * 6, xs * 6, np.full_like(ys, 128)], axis=-1).astype(np.uint8)
    rng = np.random.default_rng(0)
    frames, renders, mattes = [], [], []
    for i in range(n):
        matte = np.zeros((size, size), np.uint8)
        matte[14:22, 3 * i : 3 * i + 8] = 255
        matte[0:6, 0:6] = 255
        person = rng.integers(0, 256, (size, size, 3))
        frames.append(np.where(matte[..., None] > 0, person, background).astype(np.uint8))
        renders.append(rng.integers(0, 256, (size, size, 3), np.uint8))
        mattes.append(matte)
    return write_prepared_dataset(
        tmp_path_factory.mktemp("plate") / "ds",
        frames=frames,
        renders=renders,
        mattes=mattes,
        face_frames=frames,
        face_renders=frames,
        face_masks=mattes,
    )


def test_body_items_carry_the_plate_and_its_hole(fixed_camera_dataset):
    plate, known = PreparedDataset(fixed_camera_dataset).background_plate()
    assert not known[0:6, 0:6].any() and known[24:, :].all()
    plain = IdentityDataset(fixed_camera_dataset, clip_length=2)
    items = IdentityDataset(fixed_camera_dataset, clip_length=2, background_plate=True)
    item = items[3]
    assert "context" not in plain[3] and "masks" not in plain[3]
    assert item["context"].shape == (2, 3, IMG, IMG) and item["masks"].shape == (2, 1, IMG, IMG)
    assert all(torch.equal(item[k], plain[3][k]) for k in plain[3])
    hole = torch.from_numpy(~known).float()
    assert torch.equal(item["masks"], hole.expand(2, 1, IMG, IMG))
    expected = torch.from_numpy(plate).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(item["context"], expected.expand(2, -1, -1, -1), atol=1e-6)
    assert float(item["context"].min()) >= -1.0 and float(item["context"].max()) <= 1.0
    matted = IdentityDataset(fixed_camera_dataset, use_matte=True, background_plate=True)[0]
    assert torch.all(matted["context"] == -1.0), "matted frames have a black background"


def test_training_exports_the_first_datasets_plate(fixed_camera_dataset, tmp_path):
    config = get_preset("tiny").with_overrides(
        [
            f"datasets=[{fixed_camera_dataset}]",
            f"output_dir={tmp_path / 'run'}",
            "steps=1",
            "sample_every=0",
            "checkpoint_every=1",
            "model.background_plate=true",
            "model.prediction_type=sample",
        ]
    )
    run_dir = run_training(config)
    assert (run_dir / BACKGROUND_FILE).is_file()
    model = StructureGuidedDiffusion.from_pretrained(run_dir, expected=config.model)
    item = IdentityDataset(fixed_camera_dataset, background_plate=True)[0]
    assert torch.equal(model.background.hole, item["masks"][0])
    assert (model.background.image - item["context"][0]).abs().max() <= 1 / 127.5 + 1e-6
