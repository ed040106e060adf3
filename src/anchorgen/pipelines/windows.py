"""Window schedule and overlap averaging for batch-overlapped temporal denoising.

Make-Your-Anchor+ Algorithm 1: a sequence of N latents is cut into windows of ``ws`` frames
that overlap by ``os`` frames; each window's noise prediction is added into a per-frame
``Noise`` sum, each frame's ``count`` records how many windows covered it (lines 1-11), and
the sum is divided by the count (line 13) before the scheduler steps the whole sequence.

Pure functions, no model: a distributed sampler can compute its share of ``window_sums``
on each device, all-reduce ``sum`` and ``count``, and call ``normalize_windows``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from anchorgen.errors import InputError

Window = tuple[int, int]
"""(start, stop) frame indices of one window, stop exclusive."""


def window_schedule(length: int, window_size: int = 16, overlap: int = 4) -> list[Window]:
    """Windows covering frames ``[0, length)`` (Algorithm 1 lines 3-5, last window fixed).

    Windows start every ``window_size - overlap`` frames. The last window is shifted back so
    it ends exactly at ``length``: every window has ``window_size`` frames (the published
    code instead emits a short, degenerate tail window). ``window_size >= length`` gives
    the single window ``(0, length)``.
    """
    if length < 1:
        raise InputError(f"cannot schedule windows over {length} frames: the motion is empty")
    if window_size < 1:
        raise ValueError(f"window_size must be >= 1, got {window_size}")
    if not 0 <= overlap < window_size:
        raise ValueError(f"window overlap must be in [0, window_size={window_size}), got {overlap}")
    if window_size >= length:
        return [(0, length)]
    stride = window_size - overlap
    starts = [*range(0, length - window_size, stride), length - window_size]
    return [(start, start + window_size) for start in starts]


PAPER_WINDOW = 16
"""Frames per window of Make-Your-Anchor+'s inference (ws = 16, os = 4)."""
FRAMES_PER_FORWARD = 64
"""Default frames in one forward (the earlier default: 4 windows of the paper's 16 frames)."""


def resolve_windows(
    window_size: int | None,
    window_overlap: int | None,
    windows_per_batch: int | None,
    temporal_window: int | None,
) -> tuple[int, int, int]:
    """(window size, overlap, windows per forward), each ``None`` filled with its default.

    The window defaults to ``temporal_window``, the clip length the model's temporal layers
    were trained on (longer windows give their attention positions it has never seen; on the
    kitchen clip ws 4 beats ws 16 for every seed of a model trained on 4-frame clips,
    docs/BENCHMARKS.md), else to the paper's 16. The overlap defaults to the paper's ratio,
    a quarter of the window (16 / 4); the batch to ``FRAMES_PER_FORWARD`` frames.
    """
    size = window_size if window_size is not None else temporal_window or PAPER_WINDOW
    overlap = size // 4 if window_overlap is None else window_overlap
    if size < 1 or not 0 <= overlap < size:
        raise InputError(
            f"windows need window_size >= 1 and window_overlap in [0, window_size), "
            f"got {size} and {overlap}"
        )
    per_batch = (
        windows_per_batch if windows_per_batch is not None else -(-FRAMES_PER_FORWARD // size)
    )
    return size, overlap, per_batch


def batch_windows(windows: Sequence[Window], windows_per_batch: int) -> list[list[Window]]:
    """Group consecutive windows into batches of at most ``windows_per_batch`` for one forward."""
    if windows_per_batch < 1:
        raise ValueError(f"windows_per_batch must be >= 1, got {windows_per_batch}")
    return [
        list(windows[i : i + windows_per_batch]) for i in range(0, len(windows), windows_per_batch)
    ]


def rank_batches(
    windows: Sequence[Window], windows_per_batch: int, rank: int, world: int
) -> list[list[Window]]:
    """Rank ``rank``'s share of a step's windows (Algorithm 1 split over ``world`` processes),
    batched: the windows are dealt round-robin, so the shares differ by at most one window
    (the slowest rank bounds the step), then grouped by ``batch_windows``."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    return batch_windows(list(windows)[rank::world], windows_per_batch)


def window_counts(windows: Iterable[Window], length: int) -> torch.Tensor:
    """(length,) float32: how many windows cover each frame (Algorithm 1 line 10)."""
    count = torch.zeros(length, dtype=torch.float32)
    for start, stop in windows:
        count[start:stop] += 1
    return count


def add_window(total: torch.Tensor, start: int, stop: int, prediction: torch.Tensor) -> None:
    """In place: ``total[:, start:stop] += prediction`` (Algorithm 1 line 9).

    ``total`` is (B, length, ...), ``prediction`` is (B, stop - start, ...); the prediction is
    moved to ``total``'s device and dtype, so the sum may live in host memory.
    """
    if prediction.shape[1] != stop - start:
        raise ValueError(
            f"window ({start}, {stop}) got a prediction of {prediction.shape[1]} frames"
        )
    total[:, start:stop] += prediction.to(device=total.device, dtype=total.dtype)


def window_sums(
    predictions: Iterable[tuple[int, int, torch.Tensor]], length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of per-window predictions and per-frame counts: ``(sum (B, length, ...), count (length,))``.

    ``predictions`` yields ``(start, stop, tensor (B, stop - start, ...))``.
    """
    total: torch.Tensor | None = None
    windows: list[Window] = []
    for start, stop, prediction in predictions:
        if total is None:
            total = prediction.new_zeros((prediction.shape[0], length, *prediction.shape[2:]))
        add_window(total, start, stop, prediction)
        windows.append((start, stop))
    if total is None:
        raise ValueError("no window predictions to accumulate")
    return total, window_counts(windows, length)


def normalize_windows(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``total / count`` per frame (Algorithm 1 line 13); every frame must be covered."""
    if bool((count <= 0).any()):
        missing = torch.nonzero(count <= 0).flatten()[:5].tolist()
        raise ValueError(f"frames not covered by any window, e.g. {missing}")
    shape = (1, count.shape[0]) + (1,) * (total.dim() - 2)
    return total / count.to(device=total.device, dtype=total.dtype).reshape(shape)


def accumulate_windows(
    predictions: Iterable[tuple[int, int, torch.Tensor]], length: int
) -> torch.Tensor:
    """Average overlapping per-window predictions into one (B, length, ...) tensor."""
    return normalize_windows(*window_sums(predictions, length))
