"""Inference speed levers for the SGDM pipelines (issue 6), each optional and result-preserving.

- ``optimize_model``: cast to the inference dtype (bf16 on a GPU), channels-last memory
  format for the convolution-heavy UNet/structure branch/VAE, scaled-dot-product attention
  (PyTorch SDPA: flash / memory-efficient kernels) instead of diffusers' classic processor,
  fused query/key/value projections (one matmul instead of three per attention layer), a
  chosen SDPA backend, and an optional ``torch.compile`` of the UNet and the structure branch.
- ``DeviceFrames`` / ``cache_frames``: the condition renders of the whole motion kept on the
  model's device as uint8 (a 300-frame 512 px motion is 236 MB) when they fit a budget, so
  no window step copies them from the host again; otherwise they stream from the host.
- ``latents_home``: the whole latent sequence, its noise sums and (face pass) inpainting
  inputs kept on the model's device within a budget, so the per-window gathers and the
  scheduler steps run there instead of on the host.
- ``NaiveModel``: the opposite, a model wrapper that evaluates the two halves of a
  classifier-free-guidance batch as two forward passes; with one window per batch it is the
  reference path of ``anchorgen bench``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from anchorgen.errors import ConfigError

COMPILE_MODES = ("off", "default", "reduce-overhead")
ATTENTION_BACKENDS = ("auto", "flash", "efficient", "cudnn", "math")
"""SDPA backends ``optimize_model`` can pin; 'auto' leaves PyTorch's own choice."""
DEFAULT_CUDA_CACHE_BYTES = 1 << 30
"""Condition frames up to this size are kept on a CUDA device by default (1 GiB)."""
DEFAULT_CUDA_LATENT_BYTES = 8 << 30
"""A sequence's denoising state up to this size lives on a CUDA device by default (8 GiB:
a 90 s face pass of the scratch-256 identity at 25 fps)."""


def ensure_sdpa(module: torch.nn.Module) -> int:
    """Replace diffusers' classic attention processor (explicit softmax(QK^T)V) by SDPA.

    Returns how many attention layers of ``module`` now run ``AttnProcessor2_0``.
    """
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    count = 0
    for layer in module.modules():
        if isinstance(layer, Attention):
            if type(layer.processor) is AttnProcessor:
                layer.set_processor(AttnProcessor2_0())
            count += isinstance(layer.processor, AttnProcessor2_0)
    return count


def fuse_qkv_projections(module: torch.nn.Module) -> int:
    """Fuse each attention layer's query/key/value projections into one linear layer.

    Self-attention gets one (D, 3D) matmul instead of three, cross-attention one (D_ctx, 2D)
    matmul for key and value; the outputs are the same up to rounding. For inference only:
    the fused weights are copies, so training the model afterwards would leave them stale.
    Returns how many layers now run ``FusedAttnProcessor2_0``.
    """
    from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

    count = 0
    for layer in module.modules():
        if isinstance(layer, Attention) and not layer.fused_projections:
            layer.fuse_projections()
            layer.set_processor(FusedAttnProcessor2_0())
            count += 1
    return count


def sdpa_backends(name: str) -> tuple | None:
    """The ``torch.nn.attention.SDPBackend`` list that ``name`` pins (None for 'auto')."""
    if name not in ATTENTION_BACKENDS:
        raise ConfigError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {name!r}")
    if name == "auto":
        return None
    from torch.nn.attention import SDPBackend

    return (
        {
            "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "math": SDPBackend.MATH,
        }[name],
    )


def optimize_model(
    model: Any,
    *,
    dtype: torch.dtype | None = None,
    channels_last: bool = True,
    compile_mode: str = "off",
    fuse_qkv: bool = False,
    attention_backend: str = "auto",
) -> dict[str, Any]:
    """Apply the levers to a ``StructureGuidedDiffusion`` in place; returns what was applied.

    ``compile_mode``: ``off``, ``default`` or ``reduce-overhead`` (CUDA graphs); the UNet and
    the structure branch are compiled in place (``nn.Module.compile``, so their classes and
    the model's ``is_temporal`` are unchanged) with static shapes, and the pipelines pad each
    step's last, smaller batch of windows to the full size (``static_batch_shapes``), so the
    first forward pays the only compilation; callers warm up before timing. Keep a batch's
    clips (2 x windows with CFG) within the attention limit: a batch split into chunks adds
    a shape. ``fuse_qkv``: ``fuse_qkv_projections`` on the UNet and the structure branch.
    ``attention_backend``: every forward of the model runs SDPA with only that backend
    (``sdpa_backends``); a shape it cannot serve is an error, not a silent fallback.
    """
    if compile_mode not in COMPILE_MODES:
        raise ConfigError(f"compile must be one of {COMPILE_MODES}, got {compile_mode!r}")
    if dtype is not None:
        torch.nn.Module.to(model, dtype=dtype)
    if channels_last:
        for part in (model.unet, model.controlnet, model.codec):
            torch.nn.Module.to(part, memory_format=torch.channels_last)
    sdpa_layers = ensure_sdpa(model.unet) + ensure_sdpa(model.controlnet)
    sdpa_layers += ensure_sdpa(model.codec)
    fused_layers = (
        fuse_qkv_projections(model.unet) + fuse_qkv_projections(model.controlnet) if fuse_qkv else 0
    )
    model.attention_backends = sdpa_backends(attention_backend)
    if compile_mode != "off":
        for part in (model.unet, model.controlnet):
            part.compile(mode=compile_mode, dynamic=False)
        model.static_batch_shapes = True  # one graph per network: the last batch is padded
        model.cuda_graph_steps = compile_mode == "reduce-overhead"
    return {
        "dtype": str(model.dtype).removeprefix("torch."),
        "channels_last": channels_last,
        "sdpa_attention_layers": sdpa_layers,
        "fused_qkv_layers": fused_layers,
        "attention_backend": attention_backend,
        "compile": compile_mode,
    }


class DeviceFrames:
    """``FrameSource`` of uint8 frames held on a device: ``src[a:b]`` -> float (b - a, 3, H, W) in [0, 1].

    Built from uint8 (N, H, W, 3) frames (an array or ``np.memmap``), copied ``chunk`` frames
    at a time; the values equal ``ArrayFrames`` (the same ``u / 255`` in float32).
    """

    def __init__(self, frames: np.ndarray, device: torch.device | str, chunk: int = 64) -> None:
        self.frames = torch.empty(
            (len(frames), frames.shape[3], frames.shape[1], frames.shape[2]),
            dtype=torch.uint8,
            device=device,
        )  # (N, 3, H, W)
        for start in range(0, len(frames), chunk):
            part = torch.from_numpy(np.array(frames[start : start + chunk]))  # a writable copy
            self.frames[start : start + chunk] = part.to(device).permute(0, 3, 1, 2)

    def __len__(self) -> int:
        return self.frames.shape[0]

    def __getitem__(self, index: slice) -> torch.Tensor:
        return self.frames[index].float() / 255.0


def latents_home(
    device: torch.device,
    frames: int,
    latent_shape: tuple[int, ...],
    copies: int,
    budget_bytes: int | None = None,
) -> torch.device:
    """Where a sequence's denoising state lives: ``device`` when it is a CUDA device and
    ``copies`` float32 tensors of (frames, *latent_shape) fit in ``budget_bytes`` (None:
    ``DEFAULT_CUDA_LATENT_BYTES``), else the host.

    On the host every window's gather, the noise sums and each scheduler step are memory-bound
    CPU work on the whole sequence (about 2.5 s per face batch-step on the GPU machine's host,
    docs/BENCHMARKS.md); the host stays the home of sequences too long for the budget, so
    device memory does not grow with the video's length past it.
    """
    if device.type != "cuda":
        return torch.device("cpu")
    budget = DEFAULT_CUDA_LATENT_BYTES if budget_bytes is None else budget_bytes
    need = copies * frames * math.prod(latent_shape) * 4
    return device if need <= budget else torch.device("cpu")


def cache_frames(conditions: Any, device: torch.device, budget_bytes: int | None = None) -> Any:
    """``DeviceFrames`` of ``conditions`` when they are uint8 (N, H, W, 3) frames within the budget.

    ``budget_bytes`` None: ``DEFAULT_CUDA_CACHE_BYTES`` on a CUDA device, nothing elsewhere
    (host frames are already where a CPU model reads them). Anything else is returned as is
    and streamed per window.
    """
    if budget_bytes is None:
        budget_bytes = DEFAULT_CUDA_CACHE_BYTES if device.type == "cuda" else 0
    if (
        isinstance(conditions, np.ndarray)
        and conditions.dtype == np.uint8
        and conditions.ndim == 4
        and conditions.shape[-1] == 3
        and len(conditions) > 0
        and conditions.nbytes <= budget_bytes
    ):
        return DeviceFrames(conditions, device)
    return conditions


class NaiveModel:
    """A model wrapper whose ``predict`` splits each batch into ``parts`` separate forward passes.

    With ``windows_per_batch=1`` and ``parts=2`` this turns Algorithm 1 into the naive loop:
    one window at a time, the unconditional and conditional halves of classifier-free
    guidance as two forwards (for a frame-wise model a "window" is ``window_size`` one-frame
    windows, as ``plan_windows`` batches them). Every other attribute is the wrapped model's.
    """

    def __init__(self, model: Any, parts: int = 2) -> None:
        self.model = model
        self.parts = parts

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict(self, noisy: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """``StructureGuidedDiffusion.predict`` in ``parts`` forwards (its ``max_batch``)."""
        return self.model.predict(
            noisy, *args, max_batch=math.ceil(noisy.shape[0] / self.parts), **kwargs
        )
