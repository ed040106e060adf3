"""What a ``--motion`` path is, and pre-rendered condition frames read lazily from disk.

Motion kinds (issue 4, "Motion sources"):

* ``"dataset"``: a prepared identity dataset directory (``meta.json``), e.g. its held-out part;
* ``"video"``: a video of a person, to be landmarked and retargeted (``motion.retarget``);
* ``"mesh_video"``: a video of rendered meshes (e.g. a TalkSHOW render), used as conditions;
* ``"image_folder"``: a folder of pre-rendered condition images
  (``../shared/data/smplx/seth1/``), used as-is;
* ``"smplx"``: a SMPL-X parameter file (``motion.smplx_motion``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol, overload, runtime_checkable

import cv2
import numpy as np

from anchorgen.errors import InputError

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}
)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})
SMPLX_SUFFIXES = frozenset({".npz", ".npy", ".pkl"})
DATASET_MARKER = "meta.json"

# Mesh-render look (measured on the real data: SMPL-X renders on black or white, TalkSHOW's
# mesh video, against talking-head and presenter videos and portraits): at least this
# fraction of smooth pixels (|Laplacian| <= 4 at 256 px) ...
MESH_MIN_SMOOTH_FRACTION = 0.72
# ... and one material colour: chroma-weighted hue concentration (mean resultant length),
MESH_MIN_HUE_CONCENTRATION = 0.95
# ... or almost no coloured pixels at all (grey renders such as anchorgen's own).
MESH_MAX_COLOURED_FRACTION = 0.02


@runtime_checkable
class ConditionFrames(Protocol):
    """A lazy sequence of condition images: frames are read only when indexed."""

    @property
    def fps(self) -> float: ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice) -> np.ndarray:
        """(F, H, W, 3) uint8 RGB for a slice; (H, W, 3) for an int."""
        ...


def detect_motion_kind(path: str | Path) -> str:
    """``"dataset"``, ``"video"``, ``"image_folder"``, ``"mesh_video"`` or ``"smplx"``.

    Videos are told apart by looking at a few of their first frames: mostly smooth
    shading in a single material colour is a mesh render (see ``looks_like_mesh_render``).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"motion not found: {path}")
    if path.is_dir():
        if (path / DATASET_MARKER).is_file():
            return "dataset"
        if _image_files(path):
            return "image_folder"
        raise InputError(
            f"{path}: a motion folder must be a prepared dataset ({DATASET_MARKER}) or hold "
            f"condition images ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    suffix = path.suffix.lower()
    if suffix in SMPLX_SUFFIXES:
        _check_smplx_file(path)
        return "smplx"
    if suffix in VIDEO_SUFFIXES:
        frames = _sample_video_frames(path)
        votes = [looks_like_mesh_render(frame) for frame in frames]
        return "mesh_video" if sum(votes) * 2 > len(votes) else "video"
    raise InputError(
        f"{path}: unknown motion type; give a video ({', '.join(sorted(VIDEO_SUFFIXES))}), "
        "a folder of condition images, a prepared dataset, or SMPL-X parameters (.npz/.npy/.pkl)"
    )


def looks_like_mesh_render(frame: np.ndarray) -> bool:
    """Whether an RGB frame (H, W, 3) uint8 looks like a shaded mesh render.

    Renders are smooth (flat background, smooth shading) and have one material colour;
    camera footage has texture, noise and many hues. A 4% border is ignored (renders
    sometimes carry a frame line).
    """
    height, width = frame.shape[:2]
    inner = frame[int(0.04 * height) : int(0.96 * height), int(0.04 * width) : int(0.96 * width)]
    scale = 256.0 / max(inner.shape[:2])
    small = cv2.resize(
        np.ascontiguousarray(inner),
        (max(1, round(inner.shape[1] * scale)), max(1, round(inner.shape[0] * scale))),
        interpolation=cv2.INTER_AREA,
    )
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)
    smooth = float((np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=3)) <= 4.0).mean())
    if smooth < MESH_MIN_SMOOTH_FRACTION:
        return False
    rgb = small.astype(np.float32) / 255.0
    chroma = rgb.max(axis=-1) - rgb.min(axis=-1)
    coloured = chroma > 0.06
    if coloured.mean() < MESH_MAX_COLOURED_FRACTION:
        return True
    hue = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)[..., 0].astype(np.float32) * (np.pi / 90.0)
    weight = chroma * coloured
    concentration = np.abs((weight * np.exp(1j * hue)).sum()) / weight.sum()
    return bool(concentration >= MESH_MIN_HUE_CONCENTRATION)


class ImageFolderFrames:
    """Condition images from a folder, sorted numerically, as square RGB frames of ``size``.

    Images are scaled to fit the square and centre-padded with black (the background of
    condition renders); grayscale is replicated to RGB, alpha composited over black,
    16-bit scaled to 8-bit. Images already of the right size are returned untouched.
    """

    def __init__(self, folder: str | Path, size: int = 512, fps: float = 25.0) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputError(f"condition image folder not found: {self.folder}")
        if size <= 0 or fps <= 0:
            raise InputError(f"size and fps must be positive (got {size}, {fps})")
        self.files = _image_files(self.folder)
        if not self.files:
            raise InputError(f"{self.folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        self.size = int(size)
        self._fps = float(fps)

    @property
    def fps(self) -> float:
        return self._fps

    def __len__(self) -> int:
        return len(self.files)

    @overload
    def __getitem__(self, index: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> np.ndarray: ...

    def __getitem__(self, index: int | slice) -> np.ndarray:
        if isinstance(index, slice):
            files = self.files[index]
            frames = np.zeros((len(files), self.size, self.size, 3), np.uint8)
            for i, file in enumerate(files):
                frames[i] = self._read(file)
            return frames
        return self._read(self.files[index])

    def _read(self, file: Path) -> np.ndarray:
        return letterbox(read_rgb(file), self.size)


def read_rgb(file: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB (gray, alpha and 16-bit handled)."""
    image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise InputError(f"cannot read image {file}")
    if image.dtype == np.uint16:
        image = (image.astype(np.float32) / 257.0).round()
    elif image.dtype.kind == "f":
        image = np.clip(image, 0.0, 1.0) * 255.0
    image = image.astype(np.float32)
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[2]
    if channels == 1:
        rgb = np.repeat(image, 3, axis=2)
    elif channels == 2:  # gray + alpha
        rgb = np.repeat(image[..., :1] * (image[..., 1:] / 255.0), 3, axis=2)
    elif channels == 3:
        rgb = image[..., ::-1]
    else:  # BGRA: composite over black
        rgb = image[..., 2::-1] * (image[..., 3:4] / 255.0)
    return np.clip(rgb.round(), 0, 255).astype(np.uint8)


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """Fit (H, W, 3) into a black ``size`` x ``size`` square, centred."""
    height, width = image.shape[:2]
    if (height, width) == (size, size):
        return image
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    out[top : top + new_h, left : left + new_w] = resized
    return out


def _natural_key(path: Path) -> list:
    """``frame2`` before ``frame10``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _image_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted((p for p in files if not p.name.startswith(".")), key=_natural_key)


def _check_smplx_file(path: Path) -> None:
    """Refuse ``.npz`` files that are not SMPL-X parameters (e.g. a landmark sequence)."""
    if path.suffix.lower() != ".npz":
        return
    from anchorgen.motion.smplx_motion import PARAM_ALIASES

    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    known = {key for aliases in PARAM_ALIASES.values() for key in aliases} | {"poses"}
    if not keys & known:
        raise InputError(
            f"{path}: not SMPL-X parameters (keys: {', '.join(sorted(keys))}); expected some of "
            f"{', '.join(a[0] for a in PARAM_ALIASES.values())} or poses"
        )


def _sample_video_frames(path: Path, count: int = 5, stride: int = 6) -> list[np.ndarray]:
    """A few RGB frames from the start of a video (every ``stride``-th)."""
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            for i, frame in enumerate(container.decode(video=0)):
                if i % stride == 0:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) >= count:
                    break
    except av.FFmpegError as exc:
        raise InputError(f"{path}: not a readable video ({exc})") from exc
    if not frames:
        raise InputError(f"{path}: the video has no decodable frames")
    return frames
