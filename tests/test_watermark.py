"""AI-generated marking: visible label, invisible watermark, MP4 tags, `anchorgen verify`."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data
from typer.testing import CliRunner

from anchorgen import __version__
from anchorgen.cli import app
from anchorgen.errors import InputError
from anchorgen.io.watermark import (
    DEFAULT_STRENGTH,
    LABEL_POSITIONS,
    Z_THRESHOLD,
    add_visible_label,
    detect_watermark,
    embed_watermark,
    mp4_metadata,
    verify_video,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
FRAMES = 24


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def _anchor_like_video(image: np.ndarray, size: int, frames: int = FRAMES) -> list[np.ndarray]:
    """A static camera on a slowly swaying textured subject, with sensor noise."""
    big = cv2.resize(_rgb(image), (int(size * 1.25),) * 2, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    video = []
    for t in range(frames):
        dx, dy = 3 * np.sin(t / 5), 2 * np.sin(t / 7)
        shift = np.float32([[1, 0, -dx - size * 0.1], [0, 1, -dy - size * 0.1]])
        frame = cv2.warpAffine(
            big, shift, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        noisy = frame.astype(np.float32) + rng.normal(0, 2, frame.shape)
        video.append(np.clip(noisy, 0, 255).round().astype(np.uint8))
    return video


def _write_mp4(
    path: Path, frames: list[np.ndarray], metadata: dict[str, str] | None = None
) -> Path:
    """H.264 CRF 28, yuv420p: what a user's re-encode would typically do."""
    with av.open(str(path), "w") as container:
        container.metadata.update(metadata or {})
        stream = container.add_stream(
            "libx264", rate=25, options={"crf": "28", "preset": "veryfast"}
        )
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _read_frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _half(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [
        cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA)
        for f in frames
    ]


@pytest.fixture(scope="module")
def astronaut_256() -> list[np.ndarray]:
    return _anchor_like_video(skimage.data.astronaut(), 256)


@pytest.fixture(scope="module")
def astronaut_512() -> list[np.ndarray]:
    return _anchor_like_video(skimage.data.astronaut(), 512)


@pytest.fixture(scope="module")
def marked_256_mp4(astronaut_256, tmp_path_factory) -> Path:
    marked = [embed_watermark(frame) for frame in astronaut_256]
    path = tmp_path_factory.mktemp("wm") / "marked_256.mp4"
    return _write_mp4(path, marked, mp4_metadata("runs/anchor-7"))


@pytest.fixture(scope="module")
def source_256_mp4(astronaut_256, tmp_path_factory) -> Path:
    return _write_mp4(tmp_path_factory.mktemp("wm") / "source_256.mp4", astronaut_256)


# ----------------------------------------------------------------------------- invisible mark


@pytest.mark.parametrize(
    "name,size,floor",
    [
        ("astronaut", 256, 34.0),
        ("astronaut", 512, 40.0),
        ("coffee", 400, 37.0),
        ("camera", 512, 40.0),
    ],
)
def test_watermark_psnr(name, size, floor):
    """At least 40 dB from 512 px; small frames get a stronger mark (default_strength)."""
    image = cv2.resize(
        _rgb(getattr(skimage.data, name)()), (size, size), interpolation=cv2.INTER_AREA
    )
    marked = embed_watermark(image)
    assert marked.shape == image.shape and marked.dtype == np.uint8
    assert floor <= _psnr(image, marked) < 60.0  # small but really there


def test_watermark_changes_luma_only():
    image = cv2.resize(skimage.data.coffee(), (320, 240), interpolation=cv2.INTER_AREA)
    delta = embed_watermark(image).astype(np.int16) - image
    margin = int(np.abs(delta).max()) + 1  # away from 0 and 255 no channel can clip
    unclipped = (image > margin).all(axis=2) & (image < 255 - margin).all(axis=2)
    assert np.abs(delta[unclipped][:, 0] - delta[unclipped][:, 2]).max() == 0  # equal on R, G, B


def test_detected_after_crf28_reencode_at_256(marked_256_mp4):
    result = verify_video(marked_256_mp4)
    assert result.detected and result.z_score > Z_THRESHOLD + 1.5
    assert result.frames_used == FRAMES


def test_detected_after_crf28_half_resize_and_reencode_at_512(astronaut_512, tmp_path):
    first = _write_mp4(tmp_path / "first.mp4", [embed_watermark(f) for f in astronaut_512])
    second = _write_mp4(tmp_path / "second.mp4", _half(_read_frames(first)))
    assert _read_frames(second)[0].shape == (256, 256, 3)
    result = verify_video(second)
    assert result.detected and result.z_score > Z_THRESHOLD + 1.5
    assert result.p_value < 1e-7


def test_detected_after_crf28_half_resize_and_reencode_at_256(marked_256_mp4, tmp_path):
    """A scratch-256 output halved to 128 px and re-encoded still carries the mark."""
    second = _write_mp4(tmp_path / "second.mp4", _half(_read_frames(marked_256_mp4)))
    assert _read_frames(second)[0].shape == (128, 128, 3)
    result = verify_video(second)
    assert result.detected and result.z_score > Z_THRESHOLD + 1.0


def test_not_detected_on_unmarked_source(source_256_mp4, astronaut_512):
    result = verify_video(source_256_mp4)
    assert not result.detected and abs(result.z_score) < 3
    assert not detect_watermark(astronaut_512).detected


@pytest.mark.parametrize(
    "name", ["coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "grass"]
)
def test_not_detected_on_other_natural_images(name):
    frame = _rgb(getattr(skimage.data, name)())
    result = detect_watermark([frame, cv2.resize(frame, None, fx=0.5, fy=0.5)])
    assert not result.detected and abs(result.z_score) < 3.5


def test_null_statistic_is_calibrated():
    """Against keys it was not marked with, z of a natural image is ~N(0, 1)."""
    frames = _anchor_like_video(skimage.data.coffee(), 256, frames=4)
    z = np.array([detect_watermark(frames, key=f"other-{i}").z_score for i in range(200)])
    assert abs(z.mean()) < 0.25 and 0.8 < z.std() < 1.2 and z.max() < Z_THRESHOLD


def test_detection_is_scale_and_aspect_invariant():
    image = cv2.resize(skimage.data.chelsea(), (480, 320), interpolation=cv2.INTER_AREA)
    marked = embed_watermark(image)
    for size in [(240, 160), (720, 480), (400, 400)]:
        resized = cv2.resize(marked, size, interpolation=cv2.INTER_AREA)
        assert detect_watermark([resized]).detected, size
    assert not detect_watermark([marked], key="someone-else").detected


def test_strength_trades_visibility_for_robustness():
    image = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    weak, strong = (
        embed_watermark(image, strength=0.8),
        embed_watermark(image, strength=DEFAULT_STRENGTH),
    )
    assert _psnr(image, weak) > _psnr(image, strong)
    assert detect_watermark([strong]).z_score > detect_watermark([weak]).z_score


def test_bad_frames_are_rejected():
    with pytest.raises(InputError, match="uint8"):
        embed_watermark(np.zeros((128, 128, 3), np.float32))
    with pytest.raises(InputError, match="too small"):
        embed_watermark(np.zeros((32, 128, 3), np.uint8))
    with pytest.raises(InputError, match="strength"):
        embed_watermark(np.zeros((128, 128, 3), np.uint8), strength=0)
    with pytest.raises(InputError, match="no frames"):
        detect_watermark([])


# ----------------------------------------------------------------------------- visible label


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero((before != after).any(axis=2))
    return ys.min(), ys.max(), xs.min(), xs.max()


@pytest.mark.parametrize("position", LABEL_POSITIONS)
def test_label_changes_only_its_corner(position):
    frame = cv2.resize(skimage.data.coffee(), (256, 256), interpolation=cv2.INTER_AREA)
    labelled = add_visible_label(frame, position=position)
    y0, y1, x0, x1 = _changed_box(frame, labelled)
    assert (y1 - y0 + 1) * (x1 - x0 + 1) < 0.15 * frame.shape[0] * frame.shape[1]
    assert (y1 < 128) == position.startswith("top") and (y0 >= 128) == position.startswith("bottom")
    if position.endswith("left"):
        assert x0 < 16 and x1 < 192
    else:
        assert x1 >= 240 and x0 >= 64
    outside = np.ones(frame.shape[:2], bool)
    outside[y0 : y1 + 1, x0 : x1 + 1] = False
    assert np.array_equal(frame[outside], labelled[outside])


def test_label_is_readable_at_256_and_scales_with_frame():
    heights = {}
    for size in (256, 1024):
        frame = np.full((size, size, 3), 128, np.uint8)
        labelled = add_visible_label(frame)
        text = (labelled > 160).all(axis=2)  # light glyph pixels on the dark box
        ys, xs = np.nonzero(text)
        heights[size] = ys.max() - ys.min() + 1
        assert (labelled[ys.min() - 2, xs.min() - 2] < 128).all()  # box darker than the frame
    assert heights[256] >= 9  # legible: glyphs about 9-10 px tall
    assert heights[1024] > 2.5 * heights[256]


def test_label_rejects_bad_position_and_text():
    frame = np.zeros((256, 256, 3), np.uint8)
    with pytest.raises(InputError, match="position"):
        add_visible_label(frame, position="middle")
    with pytest.raises(InputError, match="ASCII"):
        add_visible_label(frame, text="KI-generiert ✓")


def test_label_then_watermark_is_still_detected():
    frame = cv2.resize(skimage.data.astronaut(), (512, 512), interpolation=cv2.INTER_AREA)
    assert detect_watermark([embed_watermark(add_visible_label(frame))]).detected


# ----------------------------------------------------------------------------- metadata + CLI


def test_mp4_metadata_round_trip(marked_256_mp4, source_256_mp4):
    tags = mp4_metadata("runs/anchor-7")
    assert f"anchorgen {__version__}" in tags["comment"] and "runs/anchor-7" in tags["comment"]
    result = verify_video(marked_256_mp4)
    assert result.metadata == tags
    assert result.metadata_mentions_anchorgen
    assert not verify_video(source_256_mp4).metadata_mentions_anchorgen
    assert "model run: none" in mp4_metadata(None)["comment"]


def test_verify_video_rejects_missing_and_non_video_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        verify_video(tmp_path / "missing.mp4")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="cannot read"):
        verify_video(text)


def test_cli_verify_exit_codes_and_output(marked_256_mp4, source_256_mp4):
    runner = CliRunner()
    marked = runner.invoke(app, ["verify", str(marked_256_mp4)])
    assert marked.exit_code == 0, marked.output
    assert "AI-generated watermark: detected (score" in marked.output
    assert "runs/anchor-7" in marked.output
    source = runner.invoke(app, ["verify", str(source_256_mp4), "--frames", "8"])
    assert source.exit_code == 1
    assert "AI-generated watermark: not detected" in source.output and "8 frames" in source.output


# ----------------------------------------------------------------------------- real footage


@pytest.mark.realdata
def test_real_anchor_clip_not_detected_then_detected_after_marking(tmp_path):
    clip = DATA / "anchors" / "news_anchor_20s.mp4"
    if not clip.is_file():
        pytest.skip(f"real test data not found: {clip}")
    assert not verify_video(clip).detected
    with av.open(str(clip)) as container:
        decoded = itertools.islice(container.decode(video=0), FRAMES)
        frames = [frame.to_ndarray(format="rgb24") for frame in decoded]
    first = _write_mp4(tmp_path / "first.mp4", [embed_watermark(f) for f in frames])
    assert verify_video(first).detected
    second = _write_mp4(tmp_path / "second.mp4", _half(_read_frames(first)))
    assert verify_video(second).detected
