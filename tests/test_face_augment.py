"""Face-pass surroundings augmentation (IV-D, eq. 5 z_M): blur and misalign only the image the
masked surroundings are cut from; target, condition and mask stay bit-identical."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorgen.errors import ConfigError
from anchorgen.io.dataset import (
    ContextAugment,
    IdentityDataset,
    degrade_context,
    misalign_context,
)
from anchorgen.presets import get_preset
from anchorgen.training.recipe import TrainingRecipe, default_dataset_factory, validate_item
from synthetic_identity import write_prepared_dataset

torch.set_num_threads(1)

SIZE = 64


def _textured(seed: int) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 with detail at every scale (so blur and shifts show)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def face_dataset(tmp_path_factory):
    """A minimal prepared dataset (schema v1) with 4 frames of 64 px crops and face crops."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    n = range(4)
    return write_prepared_dataset(
        tmp_path_factory.mktemp("faceaug") / "ds",
        frames=[_textured(i) for i in n],
        renders=[_textured(100 + i) for i in n],
        mattes=[mask for _ in n],
        face_frames=[_textured(200 + i) for i in n],
        face_renders=[_textured(300 + i) for i in n],
        face_masks=[mask for _ in n],
    )


def _dot(size: int = SIZE, at: tuple[int, int] | None = None) -> np.ndarray:
    image = np.zeros((size, size, 3), np.uint8)
    y, x = at or (size // 2, size // 2)
    image[y - 1 : y + 2, x - 1 : x + 2] = 255
    return image


def _centroid(image: np.ndarray) -> np.ndarray:
    """Intensity-weighted (x, y) of a grey or RGB image."""
    grey = image.astype(np.float64).sum(-1) if image.ndim == 3 else image.astype(np.float64)
    ys, xs = np.indices(grey.shape)
    return np.array([(xs * grey).sum(), (ys * grey).sum()]) / grey.sum()


def test_augmentation_changes_only_the_surroundings_image(face_dataset):
    plain = IdentityDataset(face_dataset, part="face")
    augmented = IdentityDataset(face_dataset, part="face", context=ContextAugment(prob=1.0))
    for index in range(len(plain)):
        a, b = plain[index], augmented[index]
        assert set(b) == set(a) | {"context"} and "context" not in a
        for key in a:
            assert torch.equal(a[key], b[key]), f"{key} changed by the context augmentation"
        assert b["context"].shape == b["frames"].shape
        assert float((b["context"] - b["frames"]).abs().mean()) > 0.05
        assert -1.0 <= float(b["context"].min()) and float(b["context"].max()) <= 1.0
        # deterministic under the dataset's seed; another seed draws another augmentation
        assert torch.equal(augmented[index]["context"], b["context"])
    other = IdentityDataset(face_dataset, part="face", seed=1, context=ContextAugment(prob=1.0))
    assert not torch.equal(other[0]["context"], augmented[0]["context"])


def test_probability_zero_and_body_part_leave_items_unchanged(face_dataset):
    for part in ("face", "body"):
        plain = IdentityDataset(face_dataset, part=part)
        off = IdentityDataset(face_dataset, part=part, context=ContextAugment(prob=0.0))
        a, b = plain[1], off[1]
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    body = IdentityDataset(face_dataset, part="body", context=ContextAugment(prob=1.0))[1]
    assert "context" not in body


def test_shift_is_bounded_by_the_configured_fraction():
    size, shift = 256, 0.05
    augment = ContextAugment(prob=1.0, min_scale=1.0, shift=shift, scale_jitter=0.05)
    start = _centroid(_dot(size))
    moves = np.array(
        [_centroid(augment(_dot(size), np.random.default_rng(seed))) - start for seed in range(200)]
    )
    # a dot at the centre is not moved by the scale jitter: |move| <= shift * size per axis
    assert np.abs(moves).max() <= shift * size + 0.5
    assert np.abs(moves).max() > 0.8 * shift * size, "the shift never reaches its range"
    still = ContextAugment(prob=1.0, min_scale=1.0, shift=0.0, scale_jitter=0.0)
    assert np.array_equal(still(_dot(size), np.random.default_rng(0)), _dot(size))


def test_misalign_and_degrade_primitives():
    moved = misalign_context(_dot(), (3.0, -2.0), 1.0)
    assert np.allclose(_centroid(moved) - _centroid(_dot()), [3.0, -2.0], atol=1e-6)
    # scale about the centre: a dot 20 px right of the centre moves 20 * 0.05 = 1 px
    off_centre = _dot(at=(32, 52))
    scaled = misalign_context(off_centre, (0.0, 0.0), 1.05)
    assert np.allclose(_centroid(scaled) - _centroid(off_centre), [1.0, 0.0], atol=0.05)
    image = _textured(7)
    assert np.array_equal(degrade_context(image, 1.0), image)
    blurred = degrade_context(image, 0.35)
    assert blurred.shape == image.shape
    detail = lambda x: float(np.abs(np.diff(x.astype(np.float64), axis=1)).mean())  # noqa: E731
    assert detail(blurred) < 0.5 * detail(image)
    # blurring keeps a blob where it was
    assert np.allclose(_centroid(degrade_context(_dot(), 0.35)), _centroid(_dot()), atol=0.6)


@pytest.mark.parametrize(
    "override, message",
    [
        ("face_context_degrade=1.5", "face_context_degrade must be a probability"),
        ("face_context_degrade=-0.1", "face_context_degrade must be a probability"),
        ("face_context_min_scale=0", "face_context_min_scale must be in"),
        ("face_context_min_scale=1.2", "face_context_min_scale must be in"),
        ("face_context_shift=0.5", "face_context_shift must be in"),
        ("face_context_scale_jitter=-0.01", "face_context_scale_jitter must be in"),
    ],
)
def test_config_refuses_bad_values(override, message):
    with pytest.raises(ConfigError, match=message):
        get_preset("face").with_overrides([override])


def test_presets_and_factory(face_dataset):
    face = get_preset("face")
    assert face.face_context_degrade == 0.5 and face.face_context_min_scale == 0.35
    assert face.face_context_shift == 0.05 and face.face_context_scale_jitter == 0.05
    assert get_preset("scratch-256").face_context_degrade == 0.0
    config = face.with_overrides(["model.image_size=64", "face_context_degrade=1"])
    dataset = default_dataset_factory(face_dataset, config)
    item = dataset[0]
    assert "context" in item
    validate_item(item, config, "test")
    off = default_dataset_factory(face_dataset, config.replace(face_context_degrade=0.0))
    assert "context" not in off[0]


def test_training_step_cuts_the_surroundings_from_the_context(face_dataset, tmp_path):
    config = get_preset("tiny").with_overrides(
        [
            f"datasets=[{face_dataset}]",
            f"output_dir={tmp_path / 'run'}",
            "face_context_degrade=1.0",
            "sample_every=0",
            "model.part=face",
            f"model.image_size={SIZE}",
        ]
    )
    recipe = TrainingRecipe(config, default_dataset_factory)
    recipe.setup()
    seen = []
    inpaint_inputs = recipe.model.inpaint_inputs

    def spy(frames, masks):
        seen.append(frames)
        return inpaint_inputs(frames, masks)

    recipe.model.inpaint_inputs = spy
    encoded = []
    encode = recipe.model.encode_frames

    def encode_spy(frames):
        encoded.append(frames)
        return encode(frames)

    recipe.model.encode_frames = encode_spy
    batch = torch.utils.data.default_collate([recipe.dataset[0], recipe.dataset[1]])
    recipe._train_step(batch)
    recipe.cleanup()
    assert torch.equal(seen[0], batch["context"]) and not torch.equal(seen[0], batch["frames"])
    assert torch.equal(encoded[0], batch["frames"]), "the target must come from the clean frames"
