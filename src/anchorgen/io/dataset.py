"""The identity dataset: the versioned on-disk layout ``prepare`` writes, and its reader.

Layout (schema version 1; see docs/DATASET.md)::

    DIR/meta.json              source, fps, frame count, crop + padding, split, versions
    DIR/frames/000000.jpg      cropped frames, size x size, JPEG quality 95
    DIR/renders/000000.png     structure-condition renders (same crop and size)
    DIR/mattes/000000.png      foreground matte (8-bit)
    DIR/face/frames/*.jpg      aligned face crops, face_size x face_size
    DIR/face/renders/*.png     the same alignment applied to the render
    DIR/face/masks/*.png       feathered face inpainting mask (8-bit)
    DIR/face_affines.npy       (T, 2, 3) float64: crop pixels -> aligned face pixels
    DIR/landmarks.npz          smoothed LandmarkSequence in crop pixels
    DIR/landmarks_raw.npz      unsmoothed detections in crop pixels
    DIR/valid.png              255 where the crop shows source pixels, 0 on padding
    DIR/audio.wav              16 kHz mono speech (when the source has audio)
    DIR/report.json, DIR/contact_sheet.png
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import torch

from anchorgen.errors import InputError
from anchorgen.io.layout import JPEG_QUALITY as JPEG_QUALITY
from anchorgen.io.layout import SCHEMA_VERSION as SCHEMA_VERSION
from anchorgen.io.layout import DatasetMeta, frame_name, read_image
from anchorgen.io.layout import write_image as write_image
from anchorgen.landmarks import LandmarkSequence

MIN_PLATE_FIT_PSNR = 30.0
"""The least PSNR (dB) of a background plate against the frames it was made from for a body to
read it (``model.background_plate``). The kitchen clip's fixed camera gives 46.5; the same
frames shaken by 2 px (sd) give 27.9, panned 32 px over 16 s 28.9, with the light drifting by
10 % 28.7 (docs/BENCHMARKS.md, thirteenth session)."""


class PreparedDataset:
    """Read access to one prepared identity dataset (lazy, file per frame)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"dataset directory not found: {self.root}")
        self.meta = DatasetMeta.load(self.root)
        for sub in ("frames", "renders", "face/frames", "face/renders", "face/masks"):
            last = (
                self.root
                / sub
                / frame_name(
                    self.meta.num_frames - 1, ".png" if "render" in sub or "mask" in sub else ".jpg"
                )
            )
            if not last.is_file():
                raise InputError(
                    f"{self.root} is incomplete: {last.relative_to(self.root)} is missing"
                )

    def __len__(self) -> int:
        return self.meta.num_frames

    def split_range(self, split: str) -> range:
        if split == "all":
            return range(self.meta.num_frames)
        if split not in self.meta.split:
            raise InputError(
                f"unknown split {split!r}; this dataset has {sorted(self.meta.split)} or 'all'"
            )
        start, stop = self.meta.split[split]
        return range(start, stop)

    def frame(self, i: int) -> np.ndarray:
        return read_image(self.root / "frames" / frame_name(i, ".jpg"))

    def render(self, i: int) -> np.ndarray:
        return read_image(self.root / "renders" / frame_name(i, ".png"))

    def body_condition(self, i: int, style: str = "mesh") -> np.ndarray:
        """Frame i's body condition for a model of ``condition_style`` ``style``: the stored
        render (``mesh``), or drawn from the landmarks at the dataset's size."""
        if style == "mesh":
            return self.render(i)
        self.check_condition_style(style)
        from anchorgen.prepare.pipeline import body_condition

        return body_condition(self.landmarks.frame(i), self.meta.size, style)

    def check_condition_style(self, style: str) -> None:
        """``InputError`` unless this dataset can give body conditions in ``style``."""
        if style != "mesh" and self.meta.conditions != "landmarks":
            raise InputError(
                f"{self.root}: {style} conditions are drawn from landmarks, but this dataset's "
                f"conditions were given as {self.meta.conditions}; use a dataset prepared from "
                "landmarks, or a body model with model.condition_style=mesh"
            )

    def matte(self, i: int) -> np.ndarray:
        return read_image(self.root / "mattes" / frame_name(i, ".png"), grey=True)

    def face_frame(self, i: int) -> np.ndarray:
        return read_image(self.root / "face" / "frames" / frame_name(i, ".jpg"))

    def face_render(self, i: int) -> np.ndarray:
        return read_image(self.root / "face" / "renders" / frame_name(i, ".png"))

    def face_mask(self, i: int) -> np.ndarray:
        return read_image(self.root / "face" / "masks" / frame_name(i, ".png"), grey=True)

    @cached_property
    def valid(self) -> np.ndarray:
        """(size, size) bool: True where the crop shows source pixels (not padding)."""
        return read_image(self.root / "valid.png", grey=True) > 127

    def background_plate(
        self, split: str = "train", matted: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The static background of ``split``'s frames (``prepare.background.background_plate``):
        plate (size, size, 3) uint8 and known (size, size) bool. ``matted``: of the
        foreground-matted frames (stage 1), whose background is black.

        ``InputError`` when the background is not static: the plate fits the frames' free
        pixels at under ``MIN_PLATE_FIT_PSNR`` (a moving or shaking camera, changing light).
        """
        from anchorgen.prepare.background import background_plate, plate_fit_psnr

        indices = self.split_range(split)
        mattes = np.stack([self.matte(i) for i in indices])  # (T, S, S)
        frames = np.stack([self.frame(i) for i in indices])  # (T, S, S, 3)
        if matted:
            frames = (frames * (mattes[..., None] / 255.0)).round().astype(np.uint8)
        dilate_px = max(1, round(self.meta.size / 50))
        plate, known = background_plate(frames, mattes, dilate_px=dilate_px)
        fit = plate_fit_psnr(frames, mattes, plate, known, dilate_px=dilate_px)
        if fit < MIN_PLATE_FIT_PSNR:
            raise InputError(
                f"the background of {self.root} is not static: its median plate fits the "
                f"{split} frames at {fit:.1f} dB (a fixed camera gives over 40; the plate needs "
                f"{MIN_PLATE_FIT_PSNR:.0f}), so the camera moves or the light changes. Train "
                "without the plate: --set model.background_plate=false"
            )
        return plate, known

    @cached_property
    def landmarks(self) -> LandmarkSequence:
        return LandmarkSequence.load(self.root / "landmarks.npz")

    @cached_property
    def face_affines(self) -> np.ndarray:
        return np.load(self.root / "face_affines.npy", allow_pickle=False)

    @property
    def audio_path(self) -> Path | None:
        path = self.root / "audio.wav"
        return path if path.is_file() else None


def _to_signed(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div(127.5).sub(1.0)


def _to_unit(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) or (H, W) -> float (C, H, W) in [0, 1]."""
    if image.ndim == 2:
        image = image[..., None]
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)


def degrade_context(image: np.ndarray, factor: float) -> np.ndarray:
    """Blur an (S, S, 3) uint8 image like a low-resolution body-model output: area-downscale
    by ``factor`` in (0, 1], then bilinear upscale back to S (IV-D face pass, eq. 5 input z_M)."""
    size = image.shape[0]
    small = max(1, round(size * factor))
    if small >= size:
        return image
    down = cv2.resize(image, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(down, (size, size), interpolation=cv2.INTER_LINEAR)


def misalign_context(image: np.ndarray, shift: tuple[float, float], scale: float) -> np.ndarray:
    """Similarity warp of an (S, S, 3) uint8 image about its centre: scale by ``scale``, then
    move by ``shift`` = (dx, dy) pixels; borders replicate. A point at distance r from the
    centre moves by at most |shift| + |scale - 1| * r per axis."""
    size = image.shape[1], image.shape[0]
    cx, cy = (size[0] - 1) / 2.0, (size[1] - 1) / 2.0
    affine = np.array(
        [
            [scale, 0.0, cx - scale * cx + shift[0]],
            [0.0, scale, cy - scale * cy + shift[1]],
        ]
    )
    return cv2.warpAffine(
        image, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


@dataclasses.dataclass(frozen=True)
class ContextAugment:
    """Face-pass surroundings augmentation (training only). At inference the masked-face
    latent z_M (eq. 5) comes from the soft, 256 px body-model output with the face misplaced
    by a few pixels; in training it comes from sharp, exactly aligned crops. Each of two
    steps happens independently with probability ``prob``: degrade (downscale by a factor in
    [min_scale, 1], upscale back) and misalign (shift up to ``shift`` x crop size per axis,
    scale by 1 +- ``scale_jitter``). The ranges are validated where the values are set, the
    ``face_context_*`` fields of ``TrainConfig``."""

    prob: float = 0.0
    min_scale: float = 0.35
    shift: float = 0.05
    scale_jitter: float = 0.05

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(S, S, 3) uint8 -> the same size, degraded and/or misaligned. Always draws the
        same number of values from ``rng``, so later draws do not depend on the outcome."""
        size = image.shape[0]
        degrade, factor, misalign = rng.random(), rng.uniform(self.min_scale, 1.0), rng.random()
        shift = rng.uniform(-self.shift, self.shift, 2) * size
        scale = 1.0 + rng.uniform(-self.scale_jitter, self.scale_jitter)
        if degrade < self.prob:
            image = degrade_context(image, factor)
        if misalign < self.prob:
            image = misalign_context(image, (float(shift[0]), float(shift[1])), scale)
        return image


class IdentityDataset(torch.utils.data.Dataset):
    """Training samples from a prepared dataset (a torch ``Dataset``).

    Each item is a clip of ``clip_length`` consecutive frames and a reference frame drawn
    from another time of the same clip (Make-Your-Anchor+ IV-B). Keys, for ``part="body"``:
    ``frames`` (F, 3, H, W) in [-1, 1], ``conditions`` (F, 3, H, W) in [0, 1], ``reference``
    (3, H, W) in [-1, 1], ``valid`` (F, 1, H, W) in {0, 1}. For ``part="face"`` the same on
    aligned face crops plus ``masks`` (F, 1, H, W) in [0, 1], the inpainting region.

    ``use_matte`` multiplies frames and reference by the foreground matte (stage-1
    pretraining across identities). ``landmark_jitter_px`` re-renders the condition from
    landmarks jittered by that many pixels (V-C6 augmentation; body part, landmark renders).
    ``condition_style`` other than ``mesh`` draws the body conditions from the landmarks in
    that style (``prepare.pipeline.body_condition``) instead of reading the stored renders.
    ``context`` (face part, when its ``prob`` > 0) adds ``context`` (F, 3, H, W) in [-1, 1]:
    the face crop degraded and misaligned (``ContextAugment``), from which training forms the
    masked surroundings z_M instead of ``frames``; ``frames`` (the target), ``conditions`` and
    ``masks`` stay as without it. ``background_plate`` (body part) adds the split's static
    background (``PreparedDataset.background_plate``) in the same layout: ``context``
    (F, 3, H, W) the plate, ``masks`` (F, 1, H, W) 1 on its hole.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        clip_length: int = 1,
        image_size: int | None = None,
        use_matte: bool = False,
        landmark_jitter_px: float = 0.0,
        part: str = "body",
        min_reference_gap: int = 0,
        seed: int = 0,
        context: ContextAugment | None = None,
        condition_style: str = "mesh",
        background_plate: bool = False,
    ) -> None:
        if part not in ("body", "face"):
            raise ValueError(f"part must be 'body' or 'face', got {part!r}")
        self.data = PreparedDataset(root)
        if part == "body":
            self.data.check_condition_style(condition_style)
        self.indices = self.data.split_range(split)
        if len(self.indices) < clip_length:
            raise InputError(
                f"{root}: split {split!r} has {len(self.indices)} frames, fewer than clip_length={clip_length}"
            )
        self.clip_length = clip_length
        self.image_size = image_size
        self.use_matte = use_matte
        self.landmark_jitter_px = landmark_jitter_px
        self.condition_style = condition_style
        self.part = part
        self.min_reference_gap = min_reference_gap
        self.seed = seed
        self.context = (
            context if part == "face" and context is not None and context.prob > 0 else None
        )
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self.background: tuple[torch.Tensor, torch.Tensor] | None = None
        if part == "body" and background_plate:
            plate, known = self.data.background_plate(split, matted=use_matte)
            hole = self._resize((~known).astype(np.uint8) * 255, cv2.INTER_NEAREST)
            # (3, S, S) in [-1, 1], (1, S, S) in {0, 1}
            self.background = (_to_signed(self._resize(plate)), _to_unit(hole))

    def __len__(self) -> int:
        return len(self.indices) - self.clip_length + 1

    def _resize(self, image: np.ndarray, interpolation=cv2.INTER_AREA) -> np.ndarray:
        if self.image_size is None or image.shape[0] == self.image_size:
            return image
        return cv2.resize(image, (self.image_size, self.image_size), interpolation=interpolation)

    def _load(self, kind: str, i: int) -> np.ndarray:
        key = (kind, i)
        if key not in self._cache:
            reader = {
                "frame": self.data.frame if self.part == "body" else self.data.face_frame,
                "condition": (
                    (lambda j: self.data.body_condition(j, self.condition_style))
                    if self.part == "body"
                    else self.data.face_render
                ),
                "matte": self.data.matte,
                "mask": self.data.face_mask,
            }[kind]
            self._cache[key] = self._resize(reader(i))
        return self._cache[key]

    def _frame(self, i: int) -> np.ndarray:
        frame = self._load("frame", i)
        if self.use_matte and self.part == "body":
            matte = self._load("matte", i)[..., None].astype(np.float32) / 255.0
            frame = (frame.astype(np.float32) * matte).round().astype(np.uint8)
        return frame

    def _condition(self, i: int, rng: np.random.Generator) -> np.ndarray:
        if (
            self.part == "body"
            and self.landmark_jitter_px > 0
            and self.data.meta.conditions == "landmarks"
        ):
            from anchorgen.prepare.pipeline import body_condition

            jittered = {
                part: None
                if pts is None
                else pts + rng.normal(0, self.landmark_jitter_px, pts.shape).astype(np.float32)
                for part, pts in self.data.landmarks.frame(i).items()
            }
            return self._resize(body_condition(jittered, self.data.meta.size, self.condition_style))
        return self._load("condition", i)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((self.seed, index, torch.initial_seed() % (2**32)))
        clip = [self.indices[index + k] for k in range(self.clip_length)]
        candidates = [
            j for j in self.indices if min(abs(j - c) for c in clip) >= self.min_reference_gap
        ]
        ref = int(rng.choice(candidates or list(self.indices)))
        item = {
            "frames": torch.stack([_to_signed(self._frame(i)) for i in clip]),
            "conditions": torch.stack([_to_unit(self._condition(i, rng)) for i in clip]),
            "reference": _to_signed(self._frame(ref)),
        }
        if self.part == "body":
            valid = _to_unit(
                self._resize(self.data.valid.astype(np.uint8) * 255, cv2.INTER_NEAREST)
            )
            item["valid"] = valid.expand(self.clip_length, -1, -1, -1).clone()
            if self.background is not None:
                plate, hole = self.background
                item["context"] = plate.expand(self.clip_length, -1, -1, -1)
                item["masks"] = hole.expand(self.clip_length, -1, -1, -1)
        else:
            masks = torch.stack([_to_unit(self._load("mask", i)) for i in clip])
            item["masks"] = masks
            item["valid"] = torch.ones_like(masks)
            if self.context is not None:
                item["context"] = torch.stack(
                    [_to_signed(self.context(self._frame(i), rng)) for i in clip]
                )
        return item
