"""Int8 weight storage for compact identities (weight-only, dequantized when loaded).

Every floating tensor of two or more dimensions (convolution and linear weights) is stored as
int8 with one float32 scale per output channel, symmetric: ``w ~= q * s`` with
``s_o = max_i |w_o,i| / 127`` and ``q = round(w / s)`` (so each element is off by at most
``s_o / 2``). Biases, norms and other 1-D tensors stay in bfloat16. On the kitchen identity's
body the rendered frames are 55 dB from those of its bfloat16 weights (docs/BENCHMARKS.md),
at half the size.
"""

from __future__ import annotations

import torch

SCALE_SUFFIX = ".int8_scale"
"""Key suffix of a quantized tensor's per-output-channel scales in the safetensors file."""


def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(O, ...) float -> (int8 (O, ...), float32 scales (O,)); an all-zero channel gets scale 1."""
    flat = weight.detach().float().reshape(weight.shape[0], -1)  # (O, I)
    scale = flat.abs().amax(dim=1) / 127.0
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    quantized = (flat / scale[:, None]).round().clamp(-127, 127).to(torch.int8)
    return quantized.reshape(weight.shape), scale


def dequantize_int8(
    quantized: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The inverse of ``quantize_int8``: int8 (O, ...) and scales (O,) -> ``dtype`` (O, ...)."""
    shape = (-1,) + (1,) * (quantized.dim() - 1)
    return (quantized.float() * scale.float().reshape(shape)).to(dtype)


def quantize_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict for int8 storage: weights of >= 2 dims as int8 plus ``SCALE_SUFFIX``
    scales, other floating tensors in bfloat16, anything else as it is."""
    stored: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if tensor.is_floating_point() and tensor.dim() >= 2:
            stored[name], stored[name + SCALE_SUFFIX] = quantize_int8(tensor)
        elif tensor.is_floating_point():
            stored[name] = tensor.detach().to(torch.bfloat16)
        else:
            stored[name] = tensor.detach()
    return {name: tensor.contiguous().cpu() for name, tensor in stored.items()}


def dequantize_state_dict(
    stored: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The inverse of ``quantize_state_dict``: every floating tensor back in ``dtype``."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in stored.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = stored.get(name + SCALE_SUFFIX)
        if scale is not None:
            state[name] = dequantize_int8(tensor, scale, dtype)
        elif tensor.is_floating_point():
            state[name] = tensor.to(dtype)
        else:
            state[name] = tensor
    return state
