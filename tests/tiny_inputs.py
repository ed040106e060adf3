"""Random inputs for the tiny preset's networks: 32 px images, 12 x 16 x 16 latents."""

from __future__ import annotations

import torch

B, F, C, LAT, IMG = 2, 2, 12, 16, 32  # clips, frames, latent channels, latent side, image side


def random_inputs(model, seed: int = 0):
    """(noisy (B, F, C, LAT, LAT), timesteps (B,), conditions (B, F, 3, IMG, IMG), reference
    (B, 3, IMG, IMG), inpaint): ``inpaint`` is eq. 5's (M, z_M) from random images and masks
    when the model reads a context input (face SGDM, background-plate body), else None."""
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randn(B, F, C, LAT, LAT, generator=g)
    timesteps = torch.tensor([3, 700])
    conditions = torch.rand(B, F, 3, IMG, IMG, generator=g)
    reference = torch.rand(B, 3, IMG, IMG, generator=g) * 2 - 1
    inpaint = None
    if model.config.context_input:
        frames = torch.rand(B, F, 3, IMG, IMG, generator=g) * 2 - 1
        masks = (torch.rand(B, F, 1, IMG, IMG, generator=g) > 0.5).float()
        with torch.no_grad():
            inpaint = model.inpaint_inputs(frames, masks)
    return noisy, timesteps, conditions, reference, inpaint
