"""Work on consecutive segments of a frame range in parallel processes, with one progress bar."""

from __future__ import annotations

import itertools

import numpy as np
from tqdm.auto import tqdm


def split_frames(count: int, workers: int) -> list[tuple[int, int]]:
    """Split frames [0, count) into ``workers`` consecutive [a, b) ranges of near-equal size."""
    bounds = np.linspace(0, count, max(1, min(workers, count)) + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds) if b > a]


def run_segments(function, jobs: list[tuple], total: int, description: str, progress: bool) -> list:
    """Run ``function(job, report)`` for each job, in processes when there are several;
    ``report(n)`` advances one shared progress bar (with ETA)."""
    import multiprocessing
    import queue as queue_module
    from concurrent.futures import ProcessPoolExecutor, wait

    bar = tqdm(total=total, desc=description, unit="frame", disable=not progress)
    if len(jobs) == 1:
        result = [function(jobs[0], bar.update)]
        bar.close()
        return result
    context = multiprocessing.get_context("spawn")  # MediaPipe and torch threads do not fork well
    with context.Manager() as manager, ProcessPoolExecutor(len(jobs), mp_context=context) as pool:
        updates = manager.Queue()
        futures = [pool.submit(_with_queue, function, job, updates) for job in jobs]
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=0.25)
            try:
                while True:
                    bar.update(updates.get_nowait())
            except queue_module.Empty:
                pass
        bar.close()
        return [f.result() for f in futures]


def _with_queue(function, job, updates):
    return function(job, updates.put)
