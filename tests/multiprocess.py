"""Helpers for the tests that start several processes (gloo process groups on the CPU)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

import torch.multiprocessing as mp


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports on the loopback interface."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def run_ranks(target: Callable, args: Sequence, world: int, timeout: float) -> list[int | None]:
    """Run ``target(rank, *args)`` in ``world`` spawned processes; their exit codes
    (None for one killed at ``timeout`` seconds)."""
    context = mp.get_context("spawn")
    workers = [context.Process(target=target, args=(rank, *args)) for rank in range(world)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=timeout)
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join()
    return [None if w.exitcode is not None and w.exitcode < 0 else w.exitcode for w in workers]


def set_torchrun_environment(rank: int, world: int, port: int | None = None) -> None:
    """The variables torchrun gives each process (one thread each: the cores are shared)."""
    import os

    import torch

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        OMP_NUM_THREADS="1",
    )
    if port is not None:
        os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
