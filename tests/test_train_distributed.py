"""``anchorgen train`` data-parallel: 2 gloo processes launched like torchrun / accelerate.

Each process gets the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and runs the recipe; accelerate forms the gloo group. The manual equivalent:
``accelerate launch --multi_gpu --num_processes 2 -m anchorgen train --preset tiny ...``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from synthetic_identity import synthetic_factory
from tests.multiprocess import free_ports, run_ranks, set_torchrun_environment

WORLD = 2


def _config(run_dir: Path, data: Path, steps: int):
    from anchorgen.presets import TrainConfig, get_preset

    values = {
        **get_preset("tiny").to_dict(),
        "datasets": [str(data)],
        "output_dir": str(run_dir),
        "steps": steps,
        "checkpoint_every": 2,
        "sample_every": 0,
        "log_every": 1,
    }
    return TrainConfig.from_dict(values)


def _rank_main(rank: int, ports: list[int], root: str) -> None:
    from anchorgen.training import recipe

    set_torchrun_environment(rank, WORLD)
    root = Path(root)
    logged = []  # (step, samples_per_s, elapsed) as the main process computes them
    original = recipe.TrainingRecipe._log_row

    def log_row(self, loss, samples_per_s, elapsed):
        logged.append((self.step, samples_per_s, elapsed, self.accelerator.is_main_process))
        original(self, loss, samples_per_s, elapsed)

    recipe.TrainingRecipe._log_row = log_row
    data = root / "identity"
    runs = (("full", 4), ("resumed", 2), ("resumed", 4))  # stops after step 2, then resumes
    for port, (name, steps) in zip(ports, runs, strict=True):
        os.environ["MASTER_PORT"] = str(port)  # each run opens and ends its own group
        recipe.run_training(_config(root / name, data, steps), synthetic_factory)
    (root / f"logged{rank}.json").write_text(json.dumps(logged))


def test_two_processes_train_resume_and_count_the_global_batch(tmp_path):
    (tmp_path / "identity").mkdir()
    ports = free_ports(3)
    assert run_ranks(_rank_main, (ports, str(tmp_path)), world=WORLD, timeout=180) == [0, 0]

    batch = _config(tmp_path, tmp_path, 1).batch_size
    for run in ("full", "resumed"):
        run_dir = tmp_path / run
        rows = list(csv.DictReader((run_dir / "train_log.csv").open()))
        assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]  # one writer, resume truncates
        state = json.loads((run_dir / "checkpoints" / "step-000004" / "state.json").read_text())
        assert state["num_processes"] == WORLD
        names = {p.name for p in (run_dir / "checkpoints" / "step-000004").iterdir()}
        assert {f"rng-{rank}.safetensors" for rank in range(WORLD)} <= names
        assert (run_dir / "unet").is_dir() and (run_dir / "loss.png").is_file()

    # the resumed run matches the uninterrupted one: weights, EMA and both ranks' RNG
    full, resumed = (tmp_path / run / "checkpoints" / "step-000004" for run in ("full", "resumed"))
    for name in ("trainable.safetensors", "ema.safetensors", "rng-1.safetensors"):
        a, b = load_file(full / name), load_file(resumed / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name

    # throughput counts the samples of every process: the global batch
    for rank in range(WORLD):
        logged = json.loads((tmp_path / f"logged{rank}.json").read_text())
        first_run = logged[:4]
        assert [entry[0] for entry in first_run] == [1, 2, 3, 4]
        assert all(main == (rank == 0) for *_, main in logged)
        for step, samples_per_s, elapsed, _ in first_run:
            assert samples_per_s * elapsed == pytest.approx(step * batch * WORLD)


pytestmark = pytest.mark.skipif(
    not dist.is_available(), reason="torch.distributed is not available"
)
