"""``anchorgen bench`` under torchrun: 2 gloo processes render the frames of one process.

Each process gets torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and runs the CLI, which opens and closes the process group itself
(``torchrun_process_group``). The fast path's final frames are kept by wrapping
``render_video``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

from tests.multiprocess import free_ports, run_ranks, set_torchrun_environment

SETTINGS = (
    "num_inference_steps=2",
    "window_size=4",
    "window_overlap=1",
    "windows_per_batch=1",  # 4 body windows: 2 per rank
    "face_windows_per_batch=1",  # frame-wise face model: batches of 4 faces, 2 + 1 per rank
    "decode_batch_size=4",  # 3 decode batches: the second round has one for rank 0 only
    "matmul_size=64",
    "source_frames=3",
)
FRAMES = 12


def _bench_args(out: Path, reference_frames: int) -> list[str]:
    args = ["bench", "--frames", str(FRAMES), "--reference-frames", str(reference_frames)]
    args += ["--out", str(out)]
    for setting in SETTINGS:
        args += ["--set", setting]
    return args


def _keep_final_frames(module, path: Path) -> None:
    """Save what the timed full-length fast run returns (warm-ups and the reference pass no video)."""
    original = module.render_video

    def keeping(*args, **kwargs):
        final = original(*args, **kwargs)
        if kwargs.get("video") is not None and final is not None:
            np.save(path, np.asarray(final))
        return final

    module.render_video = keeping


def _rank_main(rank: int, world: int, port: int, out_dir: str) -> None:
    from typer.testing import CliRunner

    import anchorgen.bench as bench
    from anchorgen.cli import app

    set_torchrun_environment(rank, world, port)
    out = Path(out_dir)
    _keep_final_frames(bench, out / f"frames_rank{rank}.npy")
    result = CliRunner().invoke(app, _bench_args(out / "bench.json", reference_frames=4))
    error = "" if result.exception is None else repr(result.exception)
    (out / f"rank{rank}.txt").write_text(f"{result.exit_code}\n{error}\n{result.output}")
    assert not dist.is_initialized(), "the CLI left the process group open"


def test_two_gloo_processes_render_the_frames_of_one_process(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import anchorgen.bench as bench
    from anchorgen.cli import app

    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    single_dir = tmp_path / "single"
    single_dir.mkdir()
    monkeypatch.setattr(bench, "render_video", bench.render_video)  # restored after the test
    _keep_final_frames(bench, single_dir / "frames.npy")
    result = CliRunner().invoke(app, _bench_args(single_dir / "bench.json", reference_frames=0))
    assert result.exit_code == 0, result.output
    single = np.load(single_dir / "frames.npy")
    single_data = json.loads((single_dir / "bench.json").read_text())
    assert single_data["world_size"] == 1 and single_data["distributed"] is None

    split_dir = tmp_path / "split"
    split_dir.mkdir()
    (port,) = free_ports(1)
    exit_codes = run_ranks(_rank_main, (2, port, str(split_dir)), world=2, timeout=240)
    outputs = [(split_dir / f"rank{rank}.txt").read_text() for rank in range(2)]
    assert exit_codes == [0, 0], outputs
    assert all(text.startswith("0\n\n") for text in outputs), outputs

    # rank 0 alone reports; rank 1 renders no frames of its own
    assert "| total |" in outputs[0] and "| processes | 2 (gloo) |" in outputs[0]
    assert "| total |" not in outputs[1] and "wrote" not in outputs[1]
    assert not (split_dir / "frames_rank1.npy").exists()
    split = np.load(split_dir / "frames_rank0.npy")
    assert split.shape == single.shape == (FRAMES, 64, 64, 3) and single.std() > 0
    difference = np.abs(split.astype(int) - single.astype(int))
    assert difference.max() <= 2 and difference.mean() < 0.05  # float sums in another order

    data = json.loads((split_dir / "bench.json").read_text())
    assert data["complete"] and data["world_size"] == 2 and data["frames"] == FRAMES
    assert data["reference"] is None
    assert any("naive reference skipped" in note for note in data["notes"])
    distributed = data["distributed"]
    assert distributed["backend"] == "gloo" and len(distributed["per_rank"]) == 2
    assert set(distributed["stage_split"]) == set(data["stages_seconds"])
    # 4 body windows of 4 frames, one per batch; 12 faces in frame-wise batches of 4
    assert distributed["denoise_frames_per_rank"] == {"body": [8, 8], "face": [6, 6]}
    for entry in distributed["per_rank"]:
        assert entry["stages_seconds"]["body_denoise"] > 0 and entry["host_peak_rss_gib"] > 0
    assert data["stages_seconds"] == distributed["per_rank"][0]["stages_seconds"]
    assert data["flops"]["body_denoise_fraction_of_matmul"] == pytest.approx(
        data["flops"]["body_denoise_tflops_per_s"] / (2 * data["flops"]["matmul_tflops_per_s"])
    )


pytestmark = pytest.mark.skipif(
    not dist.is_available(), reason="torch.distributed is not available"
)
