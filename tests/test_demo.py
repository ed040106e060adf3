"""End-to-end smoke test through the real CLI: the demo, reduced to seconds of training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO


def test_demo_runs_end_to_end_through_the_cli(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [
        "demo",
        "--out",
        str(out),
        "--body-minutes",
        "0.02",
        "--face-minutes",
        "0.02",
        "--steps",
        "2",
        "--seconds",
        "4",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "anchorgen", *args], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demo finished" in result.stdout and "retrieval floor" in result.stdout
    for name in ("out.mp4", "side_by_side.mp4", "evaluation/metrics.json", "evaluation/metrics.md"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert set(metrics["results"]) == {
        "anchorgen",
        "retrieval (nearest pose)",
        "reference repeated",
    }
    assert isinstance(metrics["results"]["anchorgen"]["psnr"], float)
    verify = subprocess.run(
        [sys.executable, "-m", "anchorgen", "verify", str(out / "out.mp4")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert verify.returncode == 0 and "detected" in verify.stdout
