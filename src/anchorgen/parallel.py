"""Work on consecutive segments of a frame range in parallel processes, with one progress bar."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
from tqdm.auto import tqdm


def split_frames(count: int, workers: int) -> list[tuple[int, int]]:
    """Split frames [0, count) into ``workers`` consecutive [a, b) ranges of near-equal size."""
    bounds = np.linspace(0, count, max(1, min(workers, count)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


@dataclasses.dataclass
class SegmentPool:
    """Worker processes and their progress queue, shared by several ``run_segments`` calls."""

    executor: Any
    updates: Any


@contextlib.contextmanager
def segment_pool(workers: int) -> Iterator[SegmentPool | None]:
    """``workers`` spawned processes for ``run_segments`` (None for one worker: run in-process).

    Passes that run one after the other reuse the processes, so each pass after the first
    skips their start-up and imports (seconds on a busy 2-core machine).
    """
    if workers <= 1:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # MediaPipe and torch threads do not fork well
    with context.Manager() as manager, ProcessPoolExecutor(workers, mp_context=context) as pool:
        yield SegmentPool(pool, manager.Queue())


def run_segments(
    function,
    jobs: list[tuple],
    total: int,
    description: str,
    progress: bool,
    pool: SegmentPool | None = None,
) -> list:
    """Run ``function(job, report)`` for each job, in processes when there are several
    (those of ``pool`` when given); ``report(n)`` advances one shared progress bar (with ETA)."""
    import queue as queue_module
    from concurrent.futures import wait

    if len(jobs) > 1 and pool is None:
        with segment_pool(len(jobs)) as own_pool:
            return run_segments(function, jobs, total, description, progress, own_pool)
    bar = tqdm(total=total, desc=description, unit="frame", disable=not progress)
    if len(jobs) == 1:
        result = [function(jobs[0], bar.update)]
        bar.close()
        return result
    futures = [pool.executor.submit(_with_queue, function, job, pool.updates) for job in jobs]
    pending = set(futures)
    while pending:
        _done, pending = wait(pending, timeout=0.25)
        try:
            while True:
                bar.update(pool.updates.get_nowait())
        except queue_module.Empty:
            pass
    bar.close()
    return [f.result() for f in futures]


def _with_queue(function, job, updates):
    import cv2

    cv2.setNumThreads(1)  # the worker processes already fill the cores
    return function(job, updates.put)
