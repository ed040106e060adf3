"""Skeleton condition images (``prepare.skeleton``) and the ``condition_style`` that selects them."""

from __future__ import annotations

import numpy as np
import pytest

from anchorgen.errors import InputError
from anchorgen.prepare.pipeline import body_condition
from anchorgen.prepare.skeleton import BODY_LINES, FACE_COLOUR, HAND_COLOURS, draw_skeleton
from anchorgen.presets import ModelConfig, get_preset


def _frame(size: int = 128) -> dict[str, np.ndarray | None]:
    """A person facing the camera in ``size`` pixels: shoulders, hips, arms hanging apart."""
    pose = np.full((33, 3), np.nan, np.float32)
    k = size / 128
    points = {
        11: (80, 40),
        12: (48, 40),  # the person's left shoulder is on the image's right
        13: (96, 64),
        14: (32, 64),  # elbows
        15: (104, 88),
        16: (24, 88),  # wrists
        23: (76, 96),
        24: (52, 96),  # hips
    }
    for index, (x, y) in points.items():
        pose[index] = (x * k, y * k, 0.0)
    hand = np.stack([np.linspace(20, 28, 21) * k, np.linspace(92, 110, 21) * k, np.zeros(21)], 1)
    face = np.zeros((478, 3), np.float32)
    face[:, :2] = (64 * k, 20 * k)
    return {"pose": pose, "left_hand": None, "right_hand": hand.astype(np.float32), "face": face}


def _colour_at(image: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    middle = np.round((a[:2] + b[:2]) / 2 - 0.5).astype(int)  # the pixel whose centre is there
    return tuple(int(v) for v in image[middle[1], middle[0]])


def test_each_limb_has_its_own_colour():
    frame = _frame()
    image = draw_skeleton(frame, 128)
    for (a, b), colour in BODY_LINES.items():
        assert _colour_at(image, frame["pose"][a], frame["pose"][b]) == colour, (a, b)
    right = {tuple(c) for c in image.reshape(-1, 3)} & {HAND_COLOURS["right_hand"]}
    left = {tuple(c) for c in image.reshape(-1, 3)} & {HAND_COLOURS["left_hand"]}
    assert right and not left  # the absent left hand draws nothing
    assert tuple(image[20, 64]) == FACE_COLOUR


def test_absent_and_unusable_points_draw_nothing():
    assert not draw_skeleton(
        {"pose": None, "left_hand": None, "right_hand": None, "face": None}, 64
    ).any()
    frame = _frame()
    frame["pose"][13] = np.nan  # the left elbow is lost: both of its bones go, the rest stays
    image = draw_skeleton(frame, 128)
    assert _colour_at(image, frame["pose"][12], frame["pose"][14]) == BODY_LINES[(12, 14)]
    assert (image == BODY_LINES[(11, 13)]).all(-1).sum() == 0
    frame["face"][:, :2] = (500, -3)  # off the image
    assert not (draw_skeleton(frame, 128) == FACE_COLOUR).all(-1).any()


def test_lines_widen_with_the_image_and_drawing_is_deterministic():
    def thickness(size: int) -> int:  # lit pixels of the shoulder line in its middle column
        image = draw_skeleton(_frame(size), size)
        rows = slice(size // 4, size // 2)  # around the shoulders (y = 40 of 128), above the hips
        return int(image[rows, size // 2].any(-1).sum())

    assert (
        thickness(128) >= 2 and thickness(256) >= thickness(128) + 2
    )  # 2 px wider, AA fringe aside
    assert np.array_equal(draw_skeleton(_frame(), 128), draw_skeleton(_frame(), 128))


def test_body_condition_dispatches_on_the_style():
    frame = _frame()
    assert np.array_equal(body_condition(frame, 128, "skeleton"), draw_skeleton(frame, 128))
    mesh = body_condition(frame, 128, "mesh")
    assert mesh.shape == (128, 128, 3) and not np.array_equal(mesh, draw_skeleton(frame, 128))
    with pytest.raises(InputError, match="condition style"):
        body_condition(frame, 128, "wireframe")


def test_condition_style_is_validated_and_the_scratch_preset_draws_skeletons():
    with pytest.raises(ValueError, match="condition_style"):
        ModelConfig(condition_style="wireframe")
    assert ModelConfig().condition_style == "mesh"  # models saved before the option read as mesh
    assert get_preset("scratch-256").model.condition_style == "skeleton"
    assert get_preset("face").model.condition_style == "mesh"


def test_motion_preview_draws_in_the_style_of_the_identity_holding_the_speech_model(tmp_path):
    from anchorgen.cli import _preview_style
    from anchorgen.errors import ConfigError
    from anchorgen.models import StructureGuidedDiffusion, tiny_model_config

    config = tiny_model_config(temporal=False).replace(condition_style="skeleton")
    StructureGuidedDiffusion.build(config).save_pretrained(tmp_path / "me" / "body")
    assert _preview_style("auto", tmp_path / "me" / "audio2motion") == "skeleton"
    assert _preview_style("auto", tmp_path / "lone_run") == "mesh"  # no identity around it
    assert _preview_style("mesh", tmp_path / "me" / "audio2motion") == "mesh"  # asked for
    with pytest.raises(ConfigError, match="--style"):
        _preview_style("wireframe", tmp_path / "me" / "audio2motion")
