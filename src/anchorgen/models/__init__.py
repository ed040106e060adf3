"""Structure-guided diffusion models (SGDM), appearance encoders, codecs, face SGDM."""

from __future__ import annotations

import torch

from anchorgen.models.appearance import (
    AppearanceEncoder,
    ClipAppearanceEncoder,
    ConvAppearanceEncoder,
)
from anchorgen.models.codec import ImageCodec, PixelUnshuffleCodec, VaeCodec
from anchorgen.models.sgdm import (
    StructureGuidedDiffusion,
    check_compatible,
    count_parameters,
    make_scheduler,
    read_model_config,
    spatial_parameters,
    temporal_parameters,
)
from anchorgen.presets import ModelConfig

__all__ = [
    "AppearanceEncoder",
    "ClipAppearanceEncoder",
    "ConvAppearanceEncoder",
    "ImageCodec",
    "ModelConfig",
    "PixelUnshuffleCodec",
    "StructureGuidedDiffusion",
    "VaeCodec",
    "check_compatible",
    "count_parameters",
    "make_scheduler",
    "read_model_config",
    "spatial_parameters",
    "temporal_parameters",
    "tiny_model_config",
    "tiny_test_model",
]


def tiny_model_config(temporal: bool = False, inpainting: bool = False) -> ModelConfig:
    """The ``tiny`` preset's architecture: channels (16, 32), 32x32 images, pixel-unshuffle 2."""
    return ModelConfig(preset="tiny", part="face" if inpainting else "body", temporal=temporal)


def tiny_test_model(
    temporal: bool, inpainting: bool = False, seed: int = 0
) -> StructureGuidedDiffusion:
    """A random tiny SGDM for tests (CPU, milliseconds per call; use clips of 2 frames)."""
    torch.manual_seed(seed)
    return StructureGuidedDiffusion.build(tiny_model_config(temporal, inpainting)).eval()
