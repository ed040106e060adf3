"""The landmark sequence: the motion representation every stage reads and writes.

One ``LandmarkSequence`` holds MediaPipe Holistic output for T frames in pixel units of
one image space (``image_size``). All three coordinates are pixels in a common camera
frame: x right, y down, z away from the camera (larger z is farther), so the renderer can
depth-order body, hands and face. Missing parts are NaN and flagged False in ``present``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from anchorgen.errors import InputError

PARTS = ("pose", "left_hand", "right_hand", "face")
POINTS_PER_PART = {"pose": 33, "left_hand": 21, "right_hand": 21, "face": 478}
SCHEMA_VERSION = 1


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map (..., 3) pixel points by a 2x3 similarity: x, y by the affine, z by its scale."""
    affine = np.asarray(affine, np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
    out = points.astype(np.float64).copy()
    out[..., :2] = points[..., :2] @ affine[:, :2].T + affine[:, 2]
    out[..., 2] = points[..., 2] * scale
    return out.astype(np.float32)


@dataclasses.dataclass
class LandmarkSequence:
    """Per-frame landmarks of one person. Shapes use T = number of frames."""

    pose: np.ndarray
    """(T, 33, 3) float32 body points in pixels (x, y, z)."""
    pose_visibility: np.ndarray
    """(T, 33) float32 MediaPipe visibility in [0, 1]."""
    pose_world: np.ndarray
    """(T, 33, 3) float32 metric body points (metres, hip-centred) from MediaPipe."""
    left_hand: np.ndarray
    """(T, 21, 3) float32 pixels; the person's left hand."""
    right_hand: np.ndarray
    """(T, 21, 3) float32 pixels; the person's right hand."""
    face: np.ndarray
    """(T, 478, 3) float32 pixels; face mesh with irises."""
    present: dict[str, np.ndarray]
    """Part name -> (T,) bool: usable after gap interpolation."""
    detected: dict[str, np.ndarray]
    """Part name -> (T,) bool: detected by MediaPipe in that very frame."""
    fps: float
    """Frames per second of the sequence."""
    image_size: tuple[int, int]
    """(width, height) of the image space the pixel coordinates refer to."""

    def __post_init__(self) -> None:
        t = self.pose.shape[0]
        for part in PARTS:
            arr = getattr(self, part)
            if arr.shape != (t, POINTS_PER_PART[part], 3):
                raise ValueError(
                    f"{part} has shape {arr.shape}, expected ({t}, {POINTS_PER_PART[part]}, 3)"
                )
            for flags in (self.present, self.detected):
                if flags[part].shape != (t,):
                    raise ValueError(
                        f"flags for {part} have shape {flags[part].shape}, expected ({t},)"
                    )

    def __len__(self) -> int:
        return int(self.pose.shape[0])

    @classmethod
    def empty(cls, num_frames: int, fps: float, image_size: tuple[int, int]) -> LandmarkSequence:
        """All parts missing (NaN, flags False)."""

        def nan(n: int) -> np.ndarray:
            return np.full((num_frames, n, 3), np.nan, np.float32)

        return cls(
            pose=nan(33),
            pose_visibility=np.zeros((num_frames, 33), np.float32),
            pose_world=nan(33),
            left_hand=nan(21),
            right_hand=nan(21),
            face=nan(478),
            present={p: np.zeros(num_frames, bool) for p in PARTS},
            detected={p: np.zeros(num_frames, bool) for p in PARTS},
            fps=float(fps),
            image_size=(int(image_size[0]), int(image_size[1])),
        )

    def frame(self, index: int) -> dict[str, np.ndarray | None]:
        """One frame's points: part name -> (N, 3) array, or None when the part is absent."""
        return {p: (getattr(self, p)[index] if self.present[p][index] else None) for p in PARTS}

    def slice(self, start: int, stop: int) -> LandmarkSequence:
        return dataclasses.replace(
            self,
            pose=self.pose[start:stop],
            pose_visibility=self.pose_visibility[start:stop],
            pose_world=self.pose_world[start:stop],
            left_hand=self.left_hand[start:stop],
            right_hand=self.right_hand[start:stop],
            face=self.face[start:stop],
            present={k: v[start:stop] for k, v in self.present.items()},
            detected={k: v[start:stop] for k, v in self.detected.items()},
        )

    def transformed(self, affine: np.ndarray, image_size: tuple[int, int]) -> LandmarkSequence:
        """Apply a 2x3 similarity ``affine`` to x, y (z scaled by the same factor)."""
        return dataclasses.replace(
            self,
            pose=transform_points(self.pose, affine),
            left_hand=transform_points(self.left_hand, affine),
            right_hand=transform_points(self.right_hand, affine),
            face=transform_points(self.face, affine),
            image_size=(int(image_size[0]), int(image_size[1])),
        )

    def ping_pong(self, length: int) -> LandmarkSequence:
        """``length`` frames of this motion played forwards, backwards, forwards... (no jumps)."""
        n = len(self)
        cycle = (
            np.concatenate([np.arange(n), np.arange(n - 2, 0, -1)]) if n > 1 else np.zeros(1, int)
        )
        order = cycle[np.arange(length) % len(cycle)]
        return self.take(order)

    def take(self, order: np.ndarray) -> LandmarkSequence:
        """The frames at indices ``order`` (any length, repeats allowed)."""
        arrays = {
            name: getattr(self, name)[order]
            for name in ("pose", "pose_visibility", "pose_world", *PARTS[1:])
        }
        return dataclasses.replace(
            self,
            **arrays,
            present={k: v[order] for k, v in self.present.items()},
            detected={k: v[order] for k, v in self.detected.items()},
        )

    @classmethod
    def concatenate(cls, parts: list[LandmarkSequence]) -> LandmarkSequence:
        """Join sequences of one image space in time (e.g. segments tracked in parallel)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        if any(p.image_size != first.image_size or p.fps != first.fps for p in parts):
            raise ValueError("sequences differ in image size or fps")
        arrays = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in ("pose", "pose_visibility", "pose_world", *PARTS[1:])
        }
        return dataclasses.replace(
            first,
            **arrays,
            present={k: np.concatenate([p.present[k] for p in parts]) for k in PARTS},
            detected={k: np.concatenate([p.detected[k] for p in parts]) for k in PARTS},
        )

    def save(self, path: str | Path) -> None:
        """Write an ``.npz`` (written whole to a temporary name, then renamed)."""
        from anchorgen.io.atomic import atomic_path

        arrays = {p: getattr(self, p) for p in (*PARTS, "pose_visibility", "pose_world")}
        for p in PARTS:
            arrays[f"present_{p}"] = self.present[p]
            arrays[f"detected_{p}"] = self.detected[p]
        arrays["fps"] = np.float64(self.fps)
        arrays["image_size"] = np.asarray(self.image_size, np.int64)
        arrays["schema_version"] = np.int64(SCHEMA_VERSION)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> LandmarkSequence:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["schema_version"])
                if version != SCHEMA_VERSION:
                    raise InputError(
                        f"{path}: landmark schema version {version}, this anchorgen reads {SCHEMA_VERSION}"
                    )
                return cls(
                    pose=data["pose"],
                    pose_visibility=data["pose_visibility"],
                    pose_world=data["pose_world"],
                    left_hand=data["left_hand"],
                    right_hand=data["right_hand"],
                    face=data["face"],
                    present={p: data[f"present_{p}"] for p in PARTS},
                    detected={p: data[f"detected_{p}"] for p in PARTS},
                    fps=float(data["fps"]),
                    image_size=tuple(int(v) for v in data["image_size"]),  # type: ignore[arg-type]
                )
        except (OSError, KeyError, ValueError) as exc:
            raise InputError(f"cannot read landmarks from {path}: {exc}") from exc
