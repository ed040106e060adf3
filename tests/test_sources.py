"""Motion-kind detection and lazily read condition-image folders."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from anchorgen.errors import InputError
from anchorgen.landmarks import LandmarkSequence
from anchorgen.motion.sources import (
    ConditionFrames,
    ImageFolderFrames,
    detect_motion_kind,
    looks_like_mesh_render,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "18"})
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def _shaded_sphere(shift: int, size: int = 128) -> np.ndarray:
    """A Lambert-shaded light-blue sphere on black: the look of a mesh render."""
    y, x = np.mgrid[:size, :size].astype(np.float32)
    cx, cy, r = size / 2 + shift, size / 2, size / 3
    nx, ny = (x - cx) / r, (y - cy) / r
    inside = nx**2 + ny**2 < 1
    nz = np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1))
    shade = np.clip(0.3 * nx - 0.3 * ny + 0.9 * nz, 0, 1) * inside
    return (shade[..., None] * np.array([170, 210, 220])).astype(np.uint8)


def _camera_footage(shift: int) -> np.ndarray:
    return np.roll(skimage.data.astronaut()[::4, ::4], shift, axis=1).copy()


def test_image_folder_sorted_numerically_and_letterboxed(tmp_path):
    for index in (10, 2, 1):
        image = np.full((40, 80, 3), index * 20, np.uint8)  # BGR on disk, wide
        cv2.imwrite(str(tmp_path / f"{index}.png"), image)
    frames = ImageFolderFrames(tmp_path, size=64, fps=30)
    assert isinstance(frames, ConditionFrames) and len(frames) == 3 and frames.fps == 30
    batch = frames[0:3]
    assert batch.shape == (3, 64, 64, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[:, 32, 32, 0], [20, 40, 200])  # 1, 2, 10
    # 80x40 fitted to 64x32 and centred: black bars above and below.
    assert (batch[:, :16] == 0).all() and (batch[:, 48:] == 0).all() and (batch[:, 16:48] > 0).all()
    np.testing.assert_array_equal(frames[2], batch[2])
    assert frames[1:].shape == (2, 64, 64, 3)


def test_image_folder_handles_gray_alpha_and_16_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "0.png"), np.full((32, 32), 100, np.uint8))
    bgra = np.zeros((32, 32, 4), np.uint8)
    bgra[..., :3] = (10, 20, 250)  # red in BGR
    bgra[:, 16:, 3] = 255  # left half transparent
    cv2.imwrite(str(tmp_path / "1.png"), bgra)
    cv2.imwrite(str(tmp_path / "2.png"), np.full((32, 32, 3), 257 * 200, np.uint16))
    frames = ImageFolderFrames(tmp_path, size=32)[0:3]
    assert (frames[0] == 100).all()
    assert (frames[1][:, :16] == 0).all()
    np.testing.assert_array_equal(frames[1][0, 20], [250, 20, 10])
    assert (frames[2] == 200).all()


def test_image_folder_errors(tmp_path):
    with pytest.raises(InputError, match="no images"):
        ImageFolderFrames(tmp_path)
    (tmp_path / "0.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read image"):
        ImageFolderFrames(tmp_path)[0:1]


def test_detect_folders_and_parameter_files(tmp_path):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "meta.json").write_text("{}")
    assert detect_motion_kind(dataset) == "dataset"
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "000001.png"), np.zeros((8, 8, 3), np.uint8))
    assert detect_motion_kind(images) == "image_folder"
    np.savez(tmp_path / "motion.npz", body_pose=np.zeros((4, 63)))
    assert detect_motion_kind(tmp_path / "motion.npz") == "smplx"
    (tmp_path / "show.pkl").write_bytes(b"")
    assert detect_motion_kind(tmp_path / "show.pkl") == "smplx"
    LandmarkSequence.empty(3, 25.0, (64, 64)).save(tmp_path / "landmarks.npz")
    with pytest.raises(InputError, match="not SMPL-X parameters"):
        detect_motion_kind(tmp_path / "landmarks.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="motion folder"):
        detect_motion_kind(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown motion type"):
        detect_motion_kind(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="not found"):
        detect_motion_kind(tmp_path / "missing.mp4")


def test_detect_mesh_video_from_camera_video(tmp_path):
    mesh = _write_video(tmp_path / "mesh.mp4", [_shaded_sphere(s) for s in range(0, 30, 2)])
    footage = _write_video(tmp_path / "person.mp4", [_camera_footage(s) for s in range(0, 30, 2)])
    assert detect_motion_kind(mesh) == "mesh_video"
    assert detect_motion_kind(footage) == "video"
    grey = np.repeat(_shaded_sphere(0)[..., 1:2], 3, axis=2)  # anchorgen's grey renders
    assert looks_like_mesh_render(grey)
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="video"):
        detect_motion_kind(tmp_path / "broken.mp4")


@pytest.mark.realdata
def test_real_motion_sources():
    if not DATA.is_dir():
        pytest.skip("../shared/data is absent (real test data is not part of the repository)")
    seth = DATA / "smplx" / "seth1"
    assert detect_motion_kind(seth) == "image_folder"
    frames = ImageFolderFrames(seth, size=512)
    assert len(frames) == 119
    first = cv2.imread(str(seth / "000001.png"))[..., ::-1]
    np.testing.assert_array_equal(frames[0:2][0], first)  # used as-is
    assert detect_motion_kind(DATA / "smplx" / "talkshow_mesh_seth_10s.mp4") == "mesh_video"
    assert detect_motion_kind(DATA / "drivers" / "talkshow_host_7s.mp4") == "video"
    assert detect_motion_kind(DATA / "drivers" / "face_d11.mp4") == "video"
