"""A small transformer that denoises windows of motion vectors, conditioned on speech.

Per frame the input token sums: the noisy motion x_t (normalised), the carried-context
motion with its mask (the previous window's last frames, inpainting-style as EMO's
"motion frames"), the speech features of frames t-m..t+m, a learned frame position and the
diffusion timestep. The network output is read as the velocity v (``prediction_type="v"``,
Salimans & Ho 2022, sec. 4: x_0 = sqrt(abar) x_t - sqrt(1 - abar) v), so the clean motion
passes through the skip term at low noise and the network only has to model what noise hides;
``"x0"`` reads it as x_0 directly (the first runs). With ``latent_dim`` K > 0 the diffusion
runs on K whitened per-part principal components of the normalised motion instead of its D
dims (``to_latent``/``from_latent``): with K < d_model the network can carry every noisy
coordinate, which it cannot for D = 453 > d_model. Classifier-free
guidance: speech is dropped during training with probability ``cond_drop_prob`` and
sampling mixes ``x0_uncond + s * (x0_cond - x0_uncond)``.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer timesteps -> (B, dim) sinusoidal embedding (DDPM, Ho et al. 2020)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def cosine_alphas_cumprod(num_steps: int) -> torch.Tensor:
    """(num_steps,) alpha-bar of the cosine schedule (Nichol & Dhariwal 2021, eq. 17)."""
    s = 0.008
    x = torch.linspace(0, num_steps, num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    alphas = (f[1:] / f[:-1]).clamp(0.001, 0.9999)
    return torch.cumprod(alphas, 0).float()


class Audio2Motion(ModelMixin, ConfigMixin):
    """Denoiser over (B, L, D) motion windows; ``forward`` returns the x_0 estimate.

    Buffers ``motion_mean``/``motion_std`` (D,) and ``audio_mean``/``audio_std`` (C,) hold the
    normalisation statistics; they are saved with the weights.
    """

    @register_to_config
    def __init__(
        self,
        motion_dim: int = 453,
        audio_dim: int = 80,
        audio_context: int = 2,
        window: int = 48,
        context_frames: int = 8,
        d_model: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        dropout: float = 0.1,
        num_train_timesteps: int = 1000,
        fps: float = 25.0,
        audio_features: str = "logmel",
        prediction_type: str = "x0",
        latent_dim: int = 0,
    ) -> None:
        super().__init__()
        if prediction_type not in ("x0", "v"):
            raise ValueError(f"prediction_type must be 'x0' or 'v', got {prediction_type!r}")
        width = latent_dim or motion_dim  # the space diffusion runs in
        self.motion_in = nn.Linear(width, d_model)
        self.context_in = nn.Linear(2 * width, d_model)
        self.audio_in = nn.Sequential(
            nn.Linear((2 * audio_context + 1) * audio_dim, d_model),
            nn.GELU(),
            nn.Linear(d_model, d_model),
        )
        self.null_audio = nn.Parameter(torch.zeros(d_model))
        self.position = nn.Parameter(torch.randn(window, d_model) * 0.02)
        self.time_mlp = nn.Sequential(
            nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model)
        )
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            4 * d_model,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, width)
        self.register_buffer("motion_mean", torch.zeros(motion_dim))
        self.register_buffer("motion_std", torch.ones(motion_dim))
        self.register_buffer("audio_mean", torch.zeros(audio_dim))
        self.register_buffer("audio_std", torch.ones(audio_dim))
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(num_train_timesteps))
        if latent_dim:
            self.register_buffer("latent_basis", torch.zeros(motion_dim, latent_dim))
            self.register_buffer("latent_scale", torch.ones(latent_dim))
            self.register_buffer("latent_guided", torch.zeros(latent_dim, dtype=torch.bool))

    @property
    def diffusion_dim(self) -> int:
        """Width of the space diffusion runs in: K latent components, or the D motion dims."""
        return self.config.latent_dim or self.config.motion_dim

    def to_latent(self, motion: torch.Tensor) -> torch.Tensor:
        """(..., D) normalised motion -> (..., K) whitened components (identity without latent)."""
        if not self.config.latent_dim:
            return motion
        return motion @ self.latent_basis / self.latent_scale

    def from_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """(..., K) whitened components -> (..., D) normalised motion (identity without latent)."""
        if not self.config.latent_dim:
            return latent
        return (latent * self.latent_scale) @ self.latent_basis.T

    def normalise_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """(..., 2m+1, C) raw features -> (..., (2m+1) * C) normalised."""
        return ((audio - self.audio_mean) / self.audio_std).flatten(-2)

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        audio: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        audio_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict clean motion (through the v parametrisation when ``prediction_type="v"``).

        noisy: (B, L, D) x_t; timesteps: (B,); audio: (B, L, (2m+1) * C) normalised;
        context: (B, L, D) known frames (zeros elsewhere); context_mask: (B, L, D) float;
        audio_keep: (B,) bool, False drops the speech (classifier-free guidance).
        Returns (B, L, D) x_0 estimate.
        """
        length = noisy.shape[1]
        h_audio = self.audio_in(audio)  # (B, L, d)
        if audio_keep is not None:
            h_audio = torch.where(
                audio_keep[:, None, None], h_audio, self.null_audio.expand_as(h_audio)
            )
        h = (
            self.motion_in(noisy)
            + self.context_in(torch.cat([context * context_mask, context_mask], dim=-1))
            + h_audio
            + self.position[:length]
            + self.time_mlp(timestep_embedding(timesteps, self.position.shape[1]))[:, None]
        )  # (B, L, d)
        out = self.out(self.norm(self.encoder(h)))  # (B, L, D)
        if self.config.prediction_type == "x0":
            return out
        ab = self.alphas_cumprod[timesteps][:, None, None]
        return ab.sqrt() * noisy - (1 - ab).sqrt() * out  # Salimans & Ho 2022, eq. 9
