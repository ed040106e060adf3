"""`anchorgen prepare`: dataset contents, reproducible renders, bad input, the real clip."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from anchorgen.errors import InputError
from anchorgen.io.dataset import IdentityDataset, PreparedDataset
from anchorgen.io.video import write_video
from anchorgen.prepare.pipeline import PrepareConfig, prepare
from anchorgen.prepare.render import render_frame
from anchorgen.prepare.sample import sample_frame, write_sample_clip
from tests.conftest import REPO, shared_data

FAST = PrepareConfig(size=128, face_size=128, fps=8, holdout_seconds=1.0, workers=1)


@pytest.fixture(scope="module")
def sample_video(tmp_path_factory):
    return write_sample_clip(
        tmp_path_factory.mktemp("clip") / "sample.mp4", seconds=4.0, fps=8, size=256
    )


@pytest.fixture(scope="module")
def sample_dataset(sample_video, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "sample"
    return prepare(sample_video, out, FAST.replace(workers=2), progress=False)


def test_dataset_layout_and_meta(sample_dataset):
    data = PreparedDataset(sample_dataset)
    meta = data.meta
    assert meta.num_frames == 32 and meta.fps == 8 and meta.size == 128
    assert meta.split == {"train": [0, 24], "holdout": [24, 32]}
    assert meta.has_audio and (sample_dataset / "audio.wav").is_file()
    assert data.frame(0).shape == (128, 128, 3) and data.face_frame(31).shape == (128, 128, 3)
    assert data.face_affines.shape == (32, 2, 3)
    report = json.loads((sample_dataset / "report.json").read_text())
    assert report["parts"]["face"]["detected_rate"] > 0.9
    assert report["parts"]["pose"]["jitter_after_px"] <= report["parts"]["pose"]["jitter_before_px"]
    assert (sample_dataset / "contact_sheet.png").stat().st_size > 10_000
    assert not list(sample_dataset.parent.glob(".*partial*")), "temporary directory left behind"


def test_report_jitter_is_in_the_dataset_pixels(sample_dataset):
    """report.json's jitter is that of the saved landmarks: in the dataset's pixels."""
    from anchorgen.landmarks import LandmarkSequence
    from anchorgen.prepare.smoothing import jitter

    report = json.loads((sample_dataset / "report.json").read_text())
    raw = LandmarkSequence.load(sample_dataset / "landmarks_raw.npz")
    smoothed = LandmarkSequence.load(sample_dataset / "landmarks.npz")
    for part in ("pose", "face"):
        stats = report["parts"][part]
        expected = jitter(getattr(raw, part), raw.detected[part])
        assert stats["jitter_before_px"] == pytest.approx(expected, rel=1e-4)
        expected = jitter(getattr(smoothed, part), smoothed.present[part])
        assert stats["jitter_after_px"] == pytest.approx(expected, rel=1e-4)


def test_report_jitter_scales_with_the_crop_not_the_frame_width():
    """A portrait 1080x1920 source cropped by a 1920 px box to 512: a pose that shakes by
    1.5 source pixels a frame reports its jitter times 512/1920 (not 512/1080)."""
    from anchorgen.landmarks import LandmarkSequence
    from anchorgen.prepare.crop import CropBox
    from anchorgen.prepare.pipeline import _report

    raw = LandmarkSequence.empty(12, 25.0, (1080, 1920))
    raw.pose[:] = np.random.default_rng(0).uniform(200, 800, (1, 33, 3))
    raw.pose[1::2, :, 0] += 1.5  # x alternates by 1.5 px: second differences of 3 px
    raw.present["pose"][:] = raw.detected["pose"][:] = True
    crop = raw.transformed(CropBox(-420, 0, 1920).affine(512), (512, 512))
    report = _report(crop, crop, np.ones((512, 512), bool), 25.0, {})
    assert report["parts"]["pose"]["jitter_before_px"] == pytest.approx(3.0 * 512 / 1920, rel=1e-4)
    assert report["parts"]["pose"]["jitter_after_px"] == pytest.approx(3.0 * 512 / 1920, rel=1e-4)


def test_renders_are_reproducible_from_saved_landmarks(sample_dataset):
    data = PreparedDataset(sample_dataset)
    for i in (0, 17, 31):
        assert np.array_equal(render_frame(data.landmarks.frame(i), 128), data.render(i))


def test_identity_dataset_items(sample_dataset):
    body = IdentityDataset(sample_dataset, clip_length=4, min_reference_gap=4)
    assert len(body) == 24 - 4 + 1
    item = body[3]
    assert item["frames"].shape == (4, 3, 128, 128) and item["conditions"].shape == (4, 3, 128, 128)
    assert item["reference"].shape == (3, 128, 128) and item["valid"].shape == (4, 1, 128, 128)
    assert -1.0 <= float(item["frames"].min()) and float(item["frames"].max()) <= 1.0
    assert 0.0 <= float(item["conditions"].min()) and float(item["conditions"].max()) <= 1.0
    clip = item["frames"]
    assert all(not np.allclose(item["reference"], clip[k]) for k in range(4))
    face = IdentityDataset(sample_dataset, split="holdout", part="face", image_size=64)
    item = face[0]
    assert item["frames"].shape == (1, 3, 64, 64) and item["masks"].shape == (1, 1, 64, 64)
    assert 0.05 < float(item["masks"].mean()) < 0.95
    matted = IdentityDataset(sample_dataset, use_matte=True)[0]["frames"]
    assert float(matted.mean()) < float(body[0]["frames"][0].mean())
    jittered = IdentityDataset(sample_dataset, landmark_jitter_px=3.0)[5]["conditions"]
    assert not np.allclose(jittered, IdentityDataset(sample_dataset)[5]["conditions"])


def test_skeleton_conditions_are_drawn_from_the_landmarks(sample_dataset, tmp_path):
    import shutil

    from anchorgen.prepare.skeleton import draw_skeleton

    data = PreparedDataset(sample_dataset)
    drawn = IdentityDataset(sample_dataset, condition_style="skeleton")[5]["conditions"][0]
    expected = draw_skeleton(data.landmarks.frame(5), 128).transpose(2, 0, 1) / 255.0
    assert np.allclose(drawn.numpy(), expected, atol=1e-6)
    face = IdentityDataset(sample_dataset, part="face", condition_style="skeleton")[5]
    assert np.allclose(
        face["conditions"][0].numpy(), data.face_render(5).transpose(2, 0, 1) / 255.0
    )
    given = tmp_path / "given"
    shutil.copytree(sample_dataset, given)
    meta = json.loads((given / "meta.json").read_text())
    (given / "meta.json").write_text(json.dumps({**meta, "conditions": "images"}))
    with pytest.raises(InputError, match=r"model\.condition_style=mesh"):
        IdentityDataset(given, condition_style="skeleton")


def _run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "anchorgen", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_cli_refuses_existing_output_and_bad_files(sample_video, tmp_path):
    existing = tmp_path / "exists"
    existing.mkdir()
    result = _run_cli("prepare", str(sample_video), "--out", str(existing))
    assert (
        result.returncode == 2
        and "already exists" in result.stderr
        and "--overwrite" in result.stderr
    )
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    result = _run_cli("prepare", str(text), "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and "not a readable video" in result.stderr
    assert not (tmp_path / "x").exists()
    assert result.stderr.count("\n") == 1, "a bad input gives one line, not a traceback"


def test_bad_inputs(sample_video, tmp_path):
    good = sample_video.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good[:2000])
    with pytest.raises(InputError):
        prepare(truncated, tmp_path / "t", FAST, progress=False)
    short = tmp_path / "short.mp4"
    write_video(short, (sample_frame(i / 8, 128) for i in range(16)), fps=8)
    with pytest.raises(InputError, match="at least 3 s"):
        prepare(short, tmp_path / "s", FAST, progress=False)
    empty = tmp_path / "empty.mp4"
    rng = np.random.default_rng(0)
    write_video(empty, (rng.integers(0, 255, (128, 128, 3), np.uint8) for _ in range(32)), fps=8)
    with pytest.raises(InputError, match="no person"):
        prepare(empty, tmp_path / "e", FAST, progress=False)
    crowd = tmp_path / "crowd.mp4"
    write_video(crowd, (np.hstack([sample_frame(i / 8, 192)] * 2) for i in range(32)), fps=8)
    with pytest.raises(InputError, match="faces in view"):
        prepare(crowd, tmp_path / "c", FAST, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crowd.mp4",
        "empty.mp4",
        "short.mp4",
        "truncated.mp4",
    ]


def test_holdout_must_leave_training_frames(sample_video, tmp_path):
    with pytest.raises(InputError, match="holdout"):
        prepare(sample_video, tmp_path / "h", FAST.replace(holdout_seconds=3.9), progress=False)


def test_reader_refuses_other_schema(sample_dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(sample_dataset, copy)
    meta = json.loads((copy / "meta.json").read_text())
    meta["schema_version"] = 99
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="schema version 99"):
        PreparedDataset(copy)
    with pytest.raises(InputError, match="not an anchorgen dataset"):
        PreparedDataset(tmp_path)


@pytest.mark.realdata
def test_real_hevc_clip(tmp_path):
    video = shared_data("anchors/kitchen_presenter_20s.mp4")
    out = prepare(
        video,
        tmp_path / "kitchen",
        PrepareConfig(size=128, face_size=128, fps=10, start=6, end=10),
        progress=False,
    )
    data = PreparedDataset(out)
    assert data.meta.num_frames == 40 and data.meta.source["codec"] == "hevc"
    report = json.loads((out / "report.json").read_text())
    assert (
        report["parts"]["pose"]["detected_rate"] > 0.95
        and report["parts"]["face"]["detected_rate"] > 0.95
    )
    assert (
        max(
            report["parts"]["left_hand"]["detected_rate"],
            report["parts"]["right_hand"]["detected_rate"],
        )
        > 0.5
    )
    # the portrait 1080x1920 frame is padded left and right to a square, and the padding is recorded
    left, _top, right, _bottom = data.meta.crop["padding"]
    assert left > 0 and right > 0 and not data.valid[:, 0].any() and data.valid[:, 64].all()


def test_parallel_segments_write_the_same_frames(sample_video, sample_dataset, tmp_path):
    """Two processes on two halves of the clip put every frame in its own slot; only the
    tracker's restart at the seam may move landmarks (and so face alignment) a little."""
    single = prepare(sample_video, tmp_path / "single", FAST, progress=False)
    for i in (0, 15, 16, 31):
        name = f"{i:06d}.jpg"
        assert (single / "frames" / name).read_bytes() == (
            sample_dataset / "frames" / name
        ).read_bytes(), i
    moved = np.abs(
        PreparedDataset(single).face_affines - PreparedDataset(sample_dataset).face_affines
    )
    assert moved[:, :, 2].max() < 2.0 and moved[:, :, :2].max() < 0.02


def test_rerender_restores_renders(sample_dataset, tmp_path):
    import shutil

    from anchorgen.prepare.pipeline import rerender

    copy = tmp_path / "copy"
    shutil.copytree(sample_dataset, copy)
    shutil.rmtree(copy / "renders")
    shutil.rmtree(copy / "face" / "renders")
    rerender(copy, progress=False, workers=2)
    data, original = PreparedDataset(copy), PreparedDataset(sample_dataset)
    for i in (0, 20, 31):
        assert np.array_equal(data.render(i), original.render(i))
        assert np.array_equal(data.face_render(i), original.face_render(i))


def test_condition_images_are_used_as_is(sample_video, tmp_path):
    from anchorgen.io.dataset import write_image

    folder = tmp_path / "conditions"
    folder.mkdir()
    for i in range(32):
        image = np.zeros((128, 128, 3), np.uint8)
        image[20 + i : 60 + i, 40:90] = 200  # a box moving down, one pixel a frame
        write_image(folder / f"{i + 1}.png", image)
    out = prepare(sample_video, tmp_path / "ds", FAST, conditions_dir=folder, progress=False)
    data = PreparedDataset(out)
    assert data.meta.conditions == "images"
    assert np.array_equal(data.render(10)[30:70, 40:90], np.full((40, 50, 3), 200, np.uint8))
    assert data.render(10)[29, 60].max() == 0
