"""Appearance encoders: a reference frame -> the token sequence that replaces the text prompt in
the cross-attention of the UNet and of the structure branch (IV-A2, c_{s_r} in eq. 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from transformers import CLIPVisionConfig, CLIPVisionModel

# CLIP's image normalisation (OpenAI ViT checkpoints).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class AppearanceEncoder(ModelMixin, ConfigMixin):
    """Base: ``forward(reference (B, 3, Hr, Wr) in [-1, 1]) -> tokens (B, N, D)``.

    ``null_tokens(batch)`` are the "no appearance" tokens used for appearance dropout in
    training and for the unconditional branch of classifier-free guidance: all zeros.
    """

    num_tokens: int
    token_dim: int

    def null_tokens(
        self, batch_size: int, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        return torch.zeros(batch_size, self.num_tokens, self.token_dim, device=device, dtype=dtype)


class ConvAppearanceEncoder(AppearanceEncoder):
    """Small trainable CNN: stride-2 conv stages, pooled to a ``grid x grid`` map, one token per
    cell (plus a learned position embedding): (B, 3, S, S) -> (B, grid**2, D)."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 128,
        channels: tuple[int, ...] = (32, 64, 128, 256),
        grid: int = 8,
        token_dim: int = 256,
        norm_num_groups: int = 8,
    ) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        in_ch = 3
        for out_ch in channels:
            layers += [
                torch.nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1),
                torch.nn.GroupNorm(min(norm_num_groups, out_ch), out_ch),
                torch.nn.SiLU(),
                torch.nn.Conv2d(out_ch, out_ch, 3, padding=1),
                torch.nn.GroupNorm(min(norm_num_groups, out_ch), out_ch),
                torch.nn.SiLU(),
            ]
            in_ch = out_ch
        self.body = torch.nn.Sequential(*layers)
        self.proj = torch.nn.Linear(in_ch, token_dim)
        self.position = torch.nn.Parameter(torch.randn(grid * grid, token_dim) * 0.02)
        self.norm = torch.nn.LayerNorm(token_dim)
        self.num_tokens = grid * grid
        self.token_dim = token_dim

    def forward(self, reference: torch.Tensor) -> torch.Tensor:
        size = self.config.image_size
        if reference.shape[-2:] != (size, size):
            reference = F.interpolate(
                reference, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        features = self.body(reference.to(self.dtype))  # (B, c, s, s)
        features = F.adaptive_avg_pool2d(features, self.config.grid)  # (B, c, grid, grid)
        tokens = self.proj(features.flatten(2).transpose(1, 2))  # (B, grid**2, D)
        return self.norm(tokens + self.position)


class ClipAppearanceEncoder(AppearanceEncoder):
    """CLIP image features before pooling (``last_hidden_state``, B x (1 + patches) x width),
    frozen, then a trainable linear projection to the UNet's cross-attention width."""

    @register_to_config
    def __init__(self, vision_config: dict | None = None, token_dim: int = 768) -> None:
        super().__init__()
        self.vision = CLIPVisionModel(CLIPVisionConfig(**(vision_config or {}))).requires_grad_(
            False
        )
        width = self.vision.config.hidden_size
        self.proj = torch.nn.Linear(width, token_dim)
        size = self.vision.config.image_size
        self.num_tokens = (size // self.vision.config.patch_size) ** 2 + 1
        self.token_dim = token_dim
        self.register_buffer("mean", torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_clip(cls, vision: CLIPVisionModel, token_dim: int) -> ClipAppearanceEncoder:
        """Wrap pretrained CLIP vision weights (the projection starts random)."""
        encoder = cls(vision_config=vision.config.to_dict(), token_dim=token_dim)
        encoder.vision.load_state_dict(vision.state_dict())
        return encoder

    def forward(self, reference: torch.Tensor) -> torch.Tensor:
        size = self.vision.config.image_size
        images = F.interpolate(
            reference.float(),
            size=(size, size),
            mode="bicubic",
            antialias=True,
            align_corners=False,
        )
        images = ((images + 1) / 2 - self.mean) / self.std
        hidden = self.vision(
            pixel_values=images.to(self.vision.dtype)
        ).last_hidden_state  # (B, N, width)
        return self.proj(hidden.to(self.proj.weight.dtype))
