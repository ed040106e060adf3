"""Pixel or latent space for the from-scratch presets: the latent model's reconstruction ceiling.

A latent diffusion model (eq. 1 on z = E(x)) can render no better than its autoencoder
reconstructs: PSNR(D(E(x)), x) bounds what any denoiser on those latents reaches. With no
pretrained VAE, ``scratch-256`` would have to train that autoencoder inside its own budget.
This study trains an SD-layout ``AutoencoderKL`` (factor 8, 4 latent channels) from scratch on
prepared datasets for a fixed time and records the held-out reconstruction PSNR/SSIM as it
goes; the pixel codec (``PixelUnshuffleCodec``) is lossless, so its ceiling is infinite. The
choice in docs/BENCHMARKS.md compares this curve with the end-to-end score of the pixel model.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from .config import BaseConfig, require
from .evaluation.metrics import psnr, ssim
from .io.dataset import PreparedDataset


@dataclasses.dataclass
class CodecStudyConfig(BaseConfig):
    """An autoencoder trained from scratch to measure the latent space's ceiling."""

    block_out_channels: tuple[int, ...] = (64, 128, 256, 256)
    """Encoder/decoder widths; n levels downsample by 2^(n-1) (4 levels: factor 8, as SD)."""
    latent_channels: int = 4
    """Channels of the latent (SD: 4)."""
    layers_per_block: int = 2
    """Resnet layers per level (SD: 2)."""
    batch_size: int = 16
    """Frames per step."""
    learning_rate: float = 2e-4
    """AdamW learning rate."""
    kl_weight: float = 1e-6
    """Weight of the KL term against the L1 reconstruction loss (LDM's autoencoders: 1e-6)."""
    minutes: float = 8.0
    """Training time; the held-out score is taken at every ``eval_every_minutes`` and at the end."""
    eval_every_minutes: float = 1.0
    """Interval between held-out evaluations."""
    seed: int = 0
    """Seed of the initial weights and the batch order."""

    def __post_init__(self) -> None:
        require(len(self.block_out_channels) >= 2, "block_out_channels needs at least 2 levels")
        for name in ("latent_channels", "layers_per_block", "batch_size"):
            require(getattr(self, name) >= 1, f"{name} must be at least 1")
        require(self.learning_rate > 0, "learning_rate must be positive")
        require(self.kl_weight >= 0, "kl_weight must be non-negative")
        require(self.minutes > 0, "minutes must be positive")
        require(self.eval_every_minutes > 0, "eval_every_minutes must be positive")


def build_autoencoder(config: CodecStudyConfig) -> AutoencoderKL:
    levels = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=min(32, min(config.block_out_channels)),
    )


def load_frames(dataset: PreparedDataset, indices: Sequence[int]) -> torch.Tensor:
    """Frames as uint8 (N, 3, S, S)."""
    frames = np.stack([dataset.frame(i) for i in indices])  # (N, S, S, 3)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


def reconstruct(
    autoencoder: AutoencoderKL, frames: torch.Tensor, device: torch.device, batch: int
) -> np.ndarray:
    """D(E(x)) with the posterior mean, uint8 (N, S, S, 3)."""
    out = []
    with torch.no_grad(), _autocast(device):
        for chunk in frames.split(batch):
            x = chunk.to(device).float() / 127.5 - 1.0  # (b, 3, S, S)
            y = autoencoder.decode(autoencoder.encode(x).latent_dist.mean).sample
            out.append(((y.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1))
    return torch.cat(out).cpu().numpy()


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def run_codec_study(
    train_datasets: Sequence[str | Path],
    holdout_dataset: str | Path,
    config: CodecStudyConfig,
    device: torch.device,
    progress: bool = True,
) -> dict:
    """Train the autoencoder on every training frame (all of ``train_datasets``; of
    ``holdout_dataset`` its train split only) and score reconstructions of its holdout split."""
    torch.manual_seed(config.seed)
    target = PreparedDataset(holdout_dataset)
    parts = [load_frames(target, target.split_range("train"))]
    for root in train_datasets:
        if Path(root).resolve() != target.root.resolve():
            dataset = PreparedDataset(root)
            parts.append(load_frames(dataset, dataset.split_range("all")))
    train_frames = torch.cat(parts)  # (N, 3, S, S) uint8, on the host
    held_out = load_frames(target, target.split_range("holdout"))
    truth = held_out.permute(0, 2, 3, 1).numpy()  # (T, S, S, 3)

    autoencoder = build_autoencoder(config).to(device)
    optimizer = torch.optim.AdamW(autoencoder.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    curve: list[dict] = []

    def evaluate(step: int, seconds: float) -> None:
        autoencoder.eval()
        recon = reconstruct(autoencoder, held_out, device, config.batch_size)
        autoencoder.train()
        curve.append(
            {
                "step": step,
                "minutes": round(seconds / 60.0, 3),
                "psnr": psnr(recon, truth, target.valid).mean,
                "ssim": ssim(recon, truth, target.valid).mean,
            }
        )

    limit = config.minutes * 60.0
    next_eval = config.eval_every_minutes * 60.0
    step, train_seconds = 0, 0.0
    bar = tqdm(total=math.ceil(limit), unit="s", desc="autoencoder", disable=not progress)
    while train_seconds < limit:
        started = time.perf_counter()
        index = torch.randint(len(train_frames), (config.batch_size,), generator=generator)
        x = train_frames[index].to(device).float() / 127.5 - 1.0  # (B, 3, S, S)
        with _autocast(device):
            posterior = autoencoder.encode(x).latent_dist
            y = autoencoder.decode(posterior.sample()).sample
        loss = F.l1_loss(y.float(), x) + config.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - started
        train_seconds += elapsed
        bar.update(min(elapsed, limit - bar.n))
        bar.set_postfix(step=step, loss=f"{loss.item():.4f}")
        if train_seconds >= next_eval:
            evaluate(step, train_seconds)
            next_eval += config.eval_every_minutes * 60.0
    bar.close()
    if not curve or curve[-1]["step"] != step:
        evaluate(step, train_seconds)
    factor = 2 ** (len(config.block_out_channels) - 1)
    return {
        "config": dataclasses.asdict(config),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "parameters": sum(p.numel() for p in autoencoder.parameters()),
        "train_frames": len(train_frames),
        "holdout_frames": len(held_out),
        "image_size": int(train_frames.shape[-1]),
        "latent_shape": [config.latent_channels] + [int(train_frames.shape[-1]) // factor] * 2,
        "steps": step,
        "frames_per_second": step * config.batch_size / max(train_seconds, 1e-9),
        "peak_gpu_gib": (
            torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        ),
        "curve": curve,
    }
