"""`anchorgen codec-study`: a from-scratch autoencoder's held-out reconstruction ceiling."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from anchorgen.codec_study import CodecStudyConfig, build_autoencoder, run_codec_study
from anchorgen.errors import ConfigError
from anchorgen.io.dataset import PreparedDataset
from anchorgen.prepare.pipeline import PrepareConfig, prepare
from anchorgen.prepare.sample import write_sample_clip

TINY = CodecStudyConfig(
    block_out_channels=(8, 16, 16),
    layers_per_block=1,
    batch_size=4,
    learning_rate=2e-3,
    minutes=0.1,
    eval_every_minutes=0.02,
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("codec")
    clip = write_sample_clip(root / "clip.mp4", seconds=3.0, fps=8, size=128)
    config = PrepareConfig(size=128, face_size=128, fps=8, holdout_seconds=1.0, workers=1)
    return prepare(clip, root / "dataset", config, progress=False)


def test_study_trains_on_the_train_split_and_scores_the_holdout(dataset):
    result = run_codec_study([dataset], dataset, TINY, torch.device("cpu"), progress=False)
    prepared = PreparedDataset(dataset)
    assert result["train_frames"] == len(prepared.split_range("train"))
    assert result["holdout_frames"] == len(prepared.split_range("holdout"))
    assert result["latent_shape"] == [4, 32, 32]  # 3 levels: factor 4 at 128 px
    curve = result["curve"]
    assert len(curve) >= 2 and curve[-1]["step"] == result["steps"]
    assert all(np.isfinite(p["psnr"]) and 0 < p["ssim"] <= 1 for p in curve)
    # training reconstructs better than the first evaluation (a few hundred ms in)
    assert curve[-1]["psnr"] > curve[0]["psnr"] + 1.0
    json.dumps(result)  # the CLI writes it as JSON


def test_autoencoder_layout_follows_the_config():
    autoencoder = build_autoencoder(CodecStudyConfig(block_out_channels=(8, 16), latent_channels=3))
    latents = autoencoder.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
    assert latents.shape == (1, 3, 16, 16)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="minutes"):
        CodecStudyConfig(minutes=0)
    with pytest.raises(ConfigError, match="block_out_channels"):
        CodecStudyConfig().with_overrides(["block_out_channels=[8]"])
    with pytest.raises(ConfigError, match="batch_size"):
        CodecStudyConfig().with_overrides(["batch_sise=8"])
