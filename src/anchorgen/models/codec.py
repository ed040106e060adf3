"""Codecs between images in [-1, 1] and the latents the diffusion model works on (eqs. 1, 4).

``PixelUnshuffleCodec`` is lossless space-to-depth (pixel-space diffusion with no reconstruction
ceiling and nothing to train); ``VaeCodec`` wraps a diffusers ``AutoencoderKL`` (latent
diffusion: E(.) and D(.) of the paper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL


class ImageCodec(torch.nn.Module):
    """encode: images (B, 3, H, W) in [-1, 1] -> latents (B, C, H/f, W/f); decode: the inverse."""

    factor: int
    latent_channels: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class PixelUnshuffleCodec(ImageCodec):
    """Lossless space-to-depth: (B, 3, H, W) -> (B, 3 f^2, H/f, W/f), times ``scale``."""

    def __init__(self, factor: int, scale: float = 1.0) -> None:
        super().__init__()
        self.factor = factor
        self.scale = scale
        self.latent_channels = 3 * factor * factor

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(images, self.factor) * self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(latents / self.scale, self.factor)


class VaeCodec(ImageCodec):
    """A frozen ``AutoencoderKL``: encode takes the posterior mean, times ``scale`` (SD: 0.18215)."""

    def __init__(self, vae: AutoencoderKL, scale: float) -> None:
        super().__init__()
        self.vae = vae.requires_grad_(False)
        self.scale = scale
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = vae.config.latent_channels

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.vae.dtype)
        return self.vae.encode(images).latent_dist.mean * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.to(self.vae.dtype) / self.scale).sample
