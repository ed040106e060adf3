"""The identity dataset's files, without torch: ``meta.json`` (:class:`DatasetMeta`),
frame file names and the image codecs.

``prepare``'s main process and workers write a dataset with these alone, so they need not
import torch (seconds of CPU on a 2-core machine); :mod:`anchorgen.io.dataset` (the reader
and the training dataset) imports them from here. Layout: see :mod:`anchorgen.io.dataset`
and docs/DATASET.md.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from anchorgen.errors import InputError

SCHEMA_VERSION = 1
JPEG_QUALITY = 95


def frame_name(index: int, suffix: str) -> str:
    return f"{index:06d}{suffix}"


def write_image(path: Path, image: np.ndarray) -> None:
    """Write RGB (H, W, 3) or grey (H, W) uint8 as JPEG (.jpg) or PNG (.png)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        if path.suffix == ".jpg"
        # lossless either way: without per-row filter search and at zlib level 1, PNG encodes
        # 3x faster (renders and masks grow about 30%)
        else [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    )
    ok, data = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise OSError(f"cannot encode {path}")
    path.write_bytes(data.tobytes())


def read_image(path: Path, grey: bool = False) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3), or (H, W) when ``grey``."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {path}")
    return image if grey else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclasses.dataclass
class DatasetMeta:
    """The contents of ``meta.json``."""

    schema_version: int
    anchorgen_version: str
    source: dict[str, Any]
    fps: float
    num_frames: int
    size: int
    face_size: int
    crop: dict[str, Any]
    """x0, y0, side in source pixels and padding (left, top, right, bottom) in crop pixels."""
    split: dict[str, list[int]]
    """'train' and 'holdout': [start, stop) frame ranges."""
    has_audio: bool
    conditions: str
    """How renders were made: 'landmarks', 'images' (given as-is) or 'smplx'."""

    @classmethod
    def load(cls, root: Path) -> DatasetMeta:
        path = root / "meta.json"
        if not path.is_file():
            raise InputError(
                f"{root} is not an anchorgen dataset (no meta.json); create one with `anchorgen prepare`"
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} is corrupt: {exc}") from exc
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(
                f"{root}: dataset schema version {version}, this anchorgen reads version {SCHEMA_VERSION}; "
                "re-run `anchorgen prepare` on the source video"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - set(data)
        if missing:
            raise InputError(f"{path} lacks {sorted(missing)}")
        return cls(**{k: data[k] for k in names})

    def save(self, root: Path) -> None:
        (root / "meta.json").write_text(json.dumps(dataclasses.asdict(self), indent=2))
