"""Algorithm 1 split across processes: two gloo ranks give the latents of one process."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from anchorgen.models import tiny_test_model
from anchorgen.pipelines.anchor import denoise_overlapped, initial_latents
from anchorgen.pipelines.windows import window_schedule
from tests.multiprocess import free_ports

LENGTH, SIZE = 21, 32


def _denoise() -> torch.Tensor:
    torch.manual_seed(0)
    model = tiny_test_model(temporal=True)
    scheduler = model.make_scheduler("ddim")
    generator = torch.Generator().manual_seed(3)
    latents = initial_latents(model, scheduler, LENGTH, SIZE, SIZE, generator, None)
    conditions = torch.rand(LENGTH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    reference = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        tokens = model.encode_appearance(reference)
        return denoise_overlapped(
            model,
            scheduler,
            latents,
            conditions,
            tokens,
            model.null_tokens(1),
            windows=window_schedule(LENGTH, 8, 2),
            num_inference_steps=3,
            guidance_scale=2.0,
            conditioning_scale=1.0,
            progress=False,
        )


def _rank_main(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.save(_denoise(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process(tmp_path):
    (port,) = free_ports(1)
    single = _denoise()
    mp.spawn(_rank_main, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        split = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(split, single, rtol=1e-5, atol=1e-5)
    assert not torch.equal(single, initial_latents_like(single)), "denoising changed nothing"


def initial_latents_like(reference: torch.Tensor) -> torch.Tensor:
    model = tiny_test_model(temporal=True)
    scheduler = model.make_scheduler("ddim")
    return initial_latents(
        model, scheduler, LENGTH, SIZE, SIZE, torch.Generator().manual_seed(3), None
    )


pytestmark = pytest.mark.skipif(
    not dist.is_available(), reason="torch.distributed is not available"
)
