"""A synthetic identity dataset with exactly the item schema of ``anchorgen.io.dataset``
(frames, conditions, reference, valid, masks), for training tests without real data."""

from __future__ import annotations

from pathlib import Path

import torch


class SyntheticIdentity(torch.utils.data.Dataset):
    """Deterministic items: a blob whose position follows a drawn "pose" dot.

    frames (F, 3, S, S) in [-1, 1]; conditions (F, 3, S, S) in [0, 1]; reference (3, S, S) in
    [-1, 1]; valid (F, 1, S, S); masks (F, 1, S, S) (face part).
    """

    def __init__(
        self,
        root: Path | None = None,
        length: int = 6,
        clip_length: int = 1,
        image_size: int = 32,
        part: str = "body",
    ):
        self.length, self.clip_length, self.size, self.part = length, clip_length, image_size, part

    def __len__(self) -> int:
        return self.length

    def _frame(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.size
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        margin = s // 4
        cx, cy = margin + (3 * t) % (s - 2 * margin), margin + (5 * t) % (s - 2 * margin)
        blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 20.0)
        frame = torch.stack([blob * 2 - 1, blob.flip(0) - 0.5, torch.full_like(blob, 0.2)])
        condition = torch.zeros(3, s, s)
        condition[:, max(cy - 2, 0) : cy + 2, max(cx - 2, 0) : cx + 2] = 1.0
        return frame, condition

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        f, s = self.clip_length, self.size
        pairs = [self._frame(index + k) for k in range(f)]
        item = {
            "frames": torch.stack([p[0] for p in pairs]),
            "conditions": torch.stack([p[1] for p in pairs]),
            "reference": self._frame(index + 3)[0],
            "valid": torch.ones(f, 1, s, s),
        }
        if self.part == "face":
            masks = torch.zeros(f, 1, s, s)
            masks[:, :, s // 4 : 3 * s // 4, s // 4 : 3 * s // 4] = 1.0
            item["masks"] = masks
        return item


def synthetic_factory(root: Path, config) -> SyntheticIdentity:
    """``DatasetFactory`` for the recipe: needs ``root`` to exist like a real dataset."""
    if not Path(root).is_dir():
        raise FileNotFoundError(root)
    return SyntheticIdentity(
        root,
        clip_length=config.clip_length,
        image_size=config.model.image_size,
        part=config.model.part,
    )


def write_prepared_dataset(
    root: Path,
    frames: list,
    renders: list,
    mattes: list,
    face_frames: list,
    face_renders: list,
    face_masks: list,
) -> Path:
    """Write a minimal prepared dataset (schema v1) of uint8 images at ``root``: the given
    frames, renders and mattes (S x S) and face crops, all valid, the last frame held out."""
    import numpy as np

    from anchorgen.io.dataset import SCHEMA_VERSION, DatasetMeta, write_image

    files = {
        "frames": (frames, ".jpg"),
        "renders": (renders, ".png"),
        "mattes": (mattes, ".png"),
        "face/frames": (face_frames, ".jpg"),
        "face/renders": (face_renders, ".png"),
        "face/masks": (face_masks, ".png"),
    }
    for sub, (images, suffix) in files.items():
        (root / sub).mkdir(parents=True)
        for i, image in enumerate(images):
            write_image(root / sub / f"{i:06d}{suffix}", image)
    n, size = len(frames), frames[0].shape[0]
    write_image(root / "valid.png", np.full((size, size), 255, np.uint8))
    DatasetMeta(
        schema_version=SCHEMA_VERSION,
        anchorgen_version="test",
        source={},
        fps=8.0,
        num_frames=n,
        size=size,
        face_size=face_frames[0].shape[0],
        crop={},
        split={"train": [0, n], "holdout": [n - 1, n]},
        has_audio=False,
        conditions="images",
    ).save(root)
    return root
