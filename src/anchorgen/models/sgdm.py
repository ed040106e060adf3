"""Structure-Guided Diffusion Model (SGDM, Make-Your-Anchor+ IV-A..IV-D).

A denoising UNet (``UNet2DConditionModel``, or ``UNetMotionModel`` with AnimateDiff motion
modules, IV-C1), a structure branch copied from the UNet encoder with zero convolutions
(``ControlNetModel.from_unet``) whose residuals are added to the decoder with weight W_c (eq. 2),
an appearance encoder whose tokens replace the text prompt in the cross-attention of both, and a
codec between images and latents (eqs. 3-4). The face SGDM (eq. 5) is the same class with an
inpainting UNet input [z_t, M, z_M]; a body with ``background_plate`` reads its static
background in that layout.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    MotionAdapter,
    UNet2DConditionModel,
    UNetMotionModel,
)
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionConfig, CLIPVisionModel

from anchorgen.errors import ConfigError, InputError
from anchorgen.models.appearance import (
    AppearanceEncoder,
    ClipAppearanceEncoder,
    ConvAppearanceEncoder,
)
from anchorgen.models.codec import ImageCodec, PixelUnshuffleCodec, VaeCodec
from anchorgen.models.quantize import dequantize_state_dict, quantize_state_dict
from anchorgen.presets import ModelConfig

MODEL_FILE = "anchorgen_model.json"
FORMAT_VERSION = 1
TEMPORAL_KEY = "motion_modules"
LORA_FILE = "identity.safetensors"
BACKGROUND_FILE = "background.safetensors"
"""A ``background_plate`` body's plate, beside its weights: uint8 ``image`` (3, S, S), ``hole`` (1, S, S)."""
PRETRAINED_MOTION_CLIP = 16
"""Frames per training clip of a pretrained AnimateDiff motion adapter (AnimateDiff trains on
16-frame clips): the window its temporal layers know before any run of ours trains them."""
INT8_FILE = "int8_weights.safetensors"
"""A component's weights in ``export_dtype: int8`` storage (``models.quantize``), beside its config.json."""
ATTENTION_BATCH_LIMIT = 65535
"""Largest attention batch the fused SDPA kernels (flash, memory-efficient, cuDNN) accept:
a CUDA grid dimension. Measured on the H100: 16 clips x 64 x 64 latent positions failed."""
# Spatial attention projections of the UNet and structure branch (not the motion modules).
LORA_TARGETS = r"^(?!.*motion_modules).*attn[12]\.(to_q|to_k|to_v|to_out\.0)$"
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# Architecture of the SD1.5 VAE and CLIP ViT-L/14 image tower, for random-weight builds.
_SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
)
_CLIP_L14 = dict(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
    projection_dim=768,
)


@dataclasses.dataclass
class BackgroundPlate:
    """A body's static background (``ModelConfig.background_plate``): ``image`` (3, S, S) in
    [-1, 1] and ``hole`` (1, S, S), 1 where the background was never seen."""

    image: torch.Tensor
    hole: torch.Tensor

    def save(self, path: Path) -> None:
        image = ((self.image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        hole = (self.hole > 0.5).to(torch.uint8)
        save_file({"image": image.contiguous(), "hole": hole.contiguous()}, path)

    @classmethod
    def load(cls, path: Path) -> BackgroundPlate:
        tensors = load_file(path)
        return cls(tensors["image"].float() / 127.5 - 1.0, tensors["hole"].float())


class StructureGuidedDiffusion(torch.nn.Module):
    """SGDM (eqs. 1-4): denoiser + ControlNet-style structure branch + appearance encoder + codec."""

    def __init__(
        self,
        config: ModelConfig,
        codec: ImageCodec,
        unet: UNet2DConditionModel | UNetMotionModel,
        controlnet: ControlNetModel,
        appearance: AppearanceEncoder,
    ) -> None:
        super().__init__()
        self.config = config
        self.codec = codec
        self.unet = unet
        self.controlnet = controlnet
        self.appearance = appearance
        # ``config.background_plate``: the plate every forward reads (set by training, saved)
        self.background: BackgroundPlate | None = None
        # frames per clip of the longest clips the temporal layers were trained on (set by
        # training, saved): generation's default window, since the motion modules' attention
        # has never seen positions past it (docs/BENCHMARKS.md, twelfth session)
        self.temporal_window: int | None = None
        self.lora_rank = 0
        # pipelines pad every window batch to one size, so a compiled network sees one shape,
        # and CUDA graphs need a new generation per forward (``accel.optimize_model`` sets both)
        self.static_batch_shapes = False
        self.cuda_graph_steps = False
        # the SDPA backends every forward is pinned to (None: PyTorch's choice)
        self.attention_backends: tuple | None = None

    # ----------------------------------------------------------------- properties
    @property
    def is_temporal(self) -> bool:
        return isinstance(self.unet, UNetMotionModel)

    @property
    def inpainting(self) -> bool:
        return self.config.inpainting

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    # ----------------------------------------------------------------- building
    @classmethod
    def build(cls, config: ModelConfig) -> StructureGuidedDiffusion:
        """Random-initialised model, or (``config.pretrained``) SD1.5 components from local paths."""
        if config.pretrained:
            _check_local_paths(config)
        codec = _build_codec(config)
        unet2d = _build_unet(config)
        controlnet = ControlNetModel.from_unet(
            unet2d, conditioning_embedding_out_channels=config.conditioning_channels
        )
        unet = (
            UNetMotionModel.from_unet2d(unet2d, _build_motion_adapter(config))
            if config.temporal
            else unet2d
        )
        appearance = _build_appearance(config)
        if config.background_plate:
            # plate channels added last, at zero weight: the same random draws as without
            # them, so a seed starts from the same network (paired comparisons)
            for module in (unet, controlnet):
                _widen_conv_in(module, config.unet_in_channels)
        model = cls(config, codec, unet, controlnet, appearance)
        if config.temporal and config.pretrained:
            model.temporal_window = PRETRAINED_MOTION_CLIP
        return model

    def enable_gradient_checkpointing(self) -> None:
        self.unet.enable_gradient_checkpointing()
        self.controlnet.enable_gradient_checkpointing()

    # ----------------------------------------------------------------- codec helpers
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) in [-1, 1] -> latents (B, F, C, h, w)."""
        b, f = frames.shape[:2]
        return self.codec.encode(frames.flatten(0, 1)).unflatten(0, (b, f))

    def decode_frames(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, F, C, h, w) -> images (B, F, 3, H, W) in about [-1, 1]."""
        b, f = latents.shape[:2]
        return self.codec.decode(latents.flatten(0, 1)).unflatten(0, (b, f))

    def inpaint_inputs(
        self, frames: torch.Tensor, masks: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context inputs (eq. 5): frames (B, F, 3, H, W), masks (B, F, 1, H, W) with 1 = region
        to generate -> (mask M at latent size (B, F, 1, h, w), masked latent z_M (B, F, C, h, w)).
        Face SGDM: the face crop and its face mask; body: the background plate and its hole."""
        masked = self.encode_frames(frames * (1.0 - masks))
        small = F.adaptive_max_pool2d(masks.flatten(0, 1), masked.shape[-2:]).unflatten(
            0, masks.shape[:2]
        )
        return small.to(masked.dtype), masked

    # ----------------------------------------------------------------- eqs. 2-3
    def encode_appearance(self, reference: torch.Tensor) -> torch.Tensor:
        """Reference frames (B, 3, Hr, Wr) in [-1, 1] -> appearance tokens c_{s_r} (B, N, D)."""
        return self.appearance(reference)

    def null_tokens(self, batch_size: int) -> torch.Tensor:
        """The "no appearance" tokens (B, N, D) for appearance dropout and classifier-free guidance."""
        return self.appearance.null_tokens(batch_size, self.device, self.appearance.dtype)

    def predict(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        conditions: torch.Tensor,
        tokens: torch.Tensor,
        conditioning_scale: float = 1.0,
        inpaint: tuple[torch.Tensor, torch.Tensor] | None = None,
        extra_tokens: dict[str, torch.Tensor] | None = None,
        max_batch: int | None = None,
    ) -> torch.Tensor:
        """One network evaluation X_theta (eqs. 2-3, 5).

        noisy (B, F, C, h, w); timesteps (B,) long; conditions (B, F, 3, H, W) in [0, 1] (the
        rendered structure p_i); tokens (B, N, D) appearance tokens; inpaint (face SGDM):
        (mask (B, F, 1, h, w), masked latents (B, F, C, h, w)); extra_tokens: further token
        streams (B, M_k, D) (e.g. expression or audio adapters) appended to the appearance
        tokens along the sequence axis. ``max_batch``: at most this many clips per forward
        (the naive reference of ``anchorgen bench``); temporal batches are also split where
        the motion modules' attention batch would pass ``ATTENTION_BATCH_LIMIT``. Returns the
        prediction (B, F, C, h, w) (epsilon, v or x0). A ``background_plate`` body predicts x0
        as the plate's masked latent plus the networks' output, a residual that is zero on
        the seen background.
        """
        b = noisy.shape[0]
        chunk = min(self._temporal_chunk(noisy.shape[-2:]), max_batch or sys.maxsize)
        if b > chunk:
            parts = [
                self.predict(
                    noisy[i : i + chunk],
                    timesteps[i : i + chunk],
                    conditions[i : i + chunk],
                    tokens[i : i + chunk],
                    conditioning_scale,
                    None if inpaint is None else tuple(x[i : i + chunk] for x in inpaint),
                    None
                    if not extra_tokens
                    else {k: v[i : i + chunk] for k, v in extra_tokens.items()},
                )
                for i in range(0, b, chunk)
            ]
            return torch.cat(parts)
        if (inpaint is not None) != self.config.context_input:
            raise InputError(
                "the face SGDM and a background-plate body need inpaint=(mask, masked_latents); "
                "other bodies take none"
            )
        x = (
            torch.cat([noisy, *inpaint], dim=2) if inpaint is not None else noisy
        )  # (B, F, Cin, h, w)
        if extra_tokens:
            tokens = torch.cat([tokens, *extra_tokens.values()], dim=1)
        if self.cuda_graph_steps:  # CUDA graphs replay into one memory pool per network:
            torch.compiler.cudagraph_mark_step_begin()  # each forward is a new generation
        with self._attention_backends():
            out = self._networks(x, timesteps, conditions, tokens, conditioning_scale)
        if self.config.background_plate:  # x0 = plate + residual: the background comes free
            out = out + inpaint[1].to(out.dtype)
        return out

    def _attention_backends(self) -> contextlib.AbstractContextManager:
        """SDPA pinned to ``attention_backends`` (``accel.optimize_model``), else no change."""
        if self.attention_backends is None:
            return contextlib.nullcontext()
        from torch.nn.attention import sdpa_kernel

        return sdpa_kernel(list(self.attention_backends))

    def _networks(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        conditions: torch.Tensor,
        tokens: torch.Tensor,
        conditioning_scale: float,
    ) -> torch.Tensor:
        """Structure branch, then the UNet with its residuals added (eq. 2): ``predict``'s
        forward of one batch. x (B, F, Cin, h, w); timesteps (B,); conditions (B, F, 3, H, W);
        tokens (B, N, D) with any extra streams appended. Returns (B, F, C, h, w)."""
        b, f = x.shape[:2]
        dtype = self.dtype
        x_bf = x.flatten(0, 1).to(dtype)  # (B*F, Cin, h, w)
        t_bf = timesteps.repeat_interleave(f)  # (B*F,)
        tokens_bf = tokens.to(dtype).repeat_interleave(f, dim=0)  # (B*F, N, D)
        down_res, mid_res = self.controlnet(
            x_bf,
            t_bf,
            encoder_hidden_states=tokens_bf,
            controlnet_cond=conditions.flatten(0, 1).to(dtype),
            conditioning_scale=conditioning_scale,
            return_dict=False,
        )
        if self.is_temporal:
            out = self.unet(
                x.to(dtype).transpose(1, 2),  # (B, Cin, F, h, w)
                timesteps,
                encoder_hidden_states=tokens_bf,
                down_block_additional_residuals=down_res,
                mid_block_additional_residual=mid_res,
            ).sample  # (B, C, F, h, w)
            return self._own(out).transpose(1, 2)
        out = self.unet(
            x_bf,
            t_bf,
            encoder_hidden_states=tokens_bf,
            down_block_additional_residuals=down_res,
            mid_block_additional_residual=mid_res,
        ).sample  # (B*F, C, h, w)
        return self._own(out).unflatten(0, (b, f))

    def _own(self, out: torch.Tensor) -> torch.Tensor:
        """``out`` itself, or a copy of it when it lives in a CUDA graph's pool, which the next
        forward overwrites (``torch.compile(mode="reduce-overhead")``)."""
        return out.clone() if self.cuda_graph_steps else out

    def _temporal_chunk(self, latent_size: tuple[int, int]) -> int:
        """Most clips per forward: the motion modules attend over frames at each latent
        position, an attention batch of clips x h x w, which the fused CUDA kernels cap at
        ``ATTENTION_BATCH_LIMIT`` (they fail, not fall back, above it)."""
        if not self.is_temporal:
            return sys.maxsize
        return max(1, ATTENTION_BATCH_LIMIT // (latent_size[0] * latent_size[1]))

    # ----------------------------------------------------------------- schedulers
    def make_scheduler(self, kind: str = "ddim", train: bool = False):
        """Noise scheduler for training (``DDPMScheduler``, ``train=True``) or sampling
        (``ddim``, ``dpm++``, ``ddpm``) with this model's betas and prediction type."""
        return make_scheduler(self.config, kind, train)

    @torch.no_grad()
    def sample(
        self,
        conditions: torch.Tensor,
        reference: torch.Tensor,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.0,
        conditioning_scale: float | None = None,
        generator: torch.Generator | None = None,
        inpaint_frames: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Plain DDIM sampling of one clip per item (used for training previews).

        conditions (B, F, 3, H, W) in [0, 1]; reference (B, 3, H, W) in [-1, 1]; face SGDM:
        inpaint_frames = (frames (B, F, 3, H, W) in [-1, 1], masks (B, F, 1, H, W)). Returns
        images (B, F, 3, H, W) in [-1, 1].
        """
        scale = self.config.conditioning_scale if conditioning_scale is None else conditioning_scale
        b, f = conditions.shape[:2]
        size = self.config.latent_size
        scheduler = self.make_scheduler("ddim")
        scheduler.set_timesteps(num_inference_steps, device=self.device)
        shape = (b, f, self.config.latent_channels, size, size)
        latents = torch.randn(
            shape, generator=generator, device=generator.device if generator else "cpu"
        ).to(self.device)
        tokens = self.encode_appearance(reference.to(self.device))
        inpaint = (
            self.inpaint_inputs(*[t.to(self.device) for t in inpaint_frames])
            if inpaint_frames
            else None
        )
        conditions = conditions.to(self.device)
        for t in scheduler.timesteps:
            steps = torch.full((b,), int(t), device=self.device, dtype=torch.long)
            pred = self.predict(latents, steps, conditions, tokens, scale, inpaint).float()
            if guidance_scale != 1.0:
                uncond = self.predict(
                    latents, steps, conditions, self.null_tokens(b), scale, inpaint
                ).float()
                pred = uncond + guidance_scale * (pred - uncond)
            latents = scheduler.step(
                pred.flatten(0, 1), t, latents.flatten(0, 1)
            ).prev_sample.unflatten(0, (b, f))
        return self.decode_frames(latents.to(self.dtype)).float().clamp(-1, 1)

    # ----------------------------------------------------------------- low-rank adapters
    def add_lora(self, rank: int) -> None:
        """Add trainable low-rank adapters (peft) to the spatial attention projections of the
        UNet and the structure branch (motion modules untouched): identity fine-tuning whose
        export is tens of MB even for SD1.5."""
        from peft import LoraConfig

        for module in (self.unet, self.controlnet):
            module.add_adapter(
                LoraConfig(
                    r=rank,
                    lora_alpha=rank,
                    init_lora_weights="gaussian",
                    target_modules=LORA_TARGETS,
                )
            )
        self.lora_rank = rank

    def identity_state_dict(self) -> dict[str, torch.Tensor]:
        """What a LoRA identity stores: the adapters and the appearance encoder's trainable part."""
        return {
            n: p.detach()
            for n, p in self.named_parameters()
            if ".lora_" in n
            or (n.startswith("appearance.") and not n.startswith("appearance.vision."))
        }

    def save_lora(
        self, directory: str | Path, base: str, dtype: torch.dtype | str | None = None
    ) -> None:
        """Write a LoRA identity: ``identity.safetensors`` + ``anchorgen_model.json`` naming the
        ``base`` it applies to (a model directory, or ``"build"`` = ``build(config)``)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        dtype = _DTYPES[dtype] if isinstance(dtype, str) else dtype
        tensors = {
            n: (v.to(dtype) if dtype else v).contiguous().cpu()
            for n, v in self.identity_state_dict().items()
        }
        save_file(tensors, directory / LORA_FILE)
        meta = {
            "format_version": FORMAT_VERSION,
            "lora_rank": self.lora_rank,
            "base": base,
            "model_config": self.config.to_dict(),
            "temporal_window": self.temporal_window,
        }
        self._save_background(directory)
        (directory / MODEL_FILE).write_text(json.dumps(meta, indent=2))

    def _save_background(self, directory: Path) -> None:
        """The plate of a ``background_plate`` model -> ``directory/BACKGROUND_FILE``."""
        if not self.config.background_plate:
            return
        if self.background is None:
            raise ConfigError("a background_plate model has no plate to save (model.background)")
        self.background.save(directory / BACKGROUND_FILE)

    # ----------------------------------------------------------------- persistence
    def save_pretrained(
        self, directory: str | Path, dtype: torch.dtype | str | None = None
    ) -> None:
        """Write every component in diffusers layout (safetensors) plus ``anchorgen_model.json``.

        ``dtype`` casts copies of the weights (e.g. ``torch.bfloat16`` for a compact identity);
        ``"int8"`` stores each component's config.json and its weights quantized
        (``models.quantize``, half the size of bfloat16). The model itself is left untouched.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        int8 = dtype == "int8"
        dtype = None if int8 else _DTYPES[dtype] if isinstance(dtype, str) else dtype
        parts: dict[str, torch.nn.Module] = {
            "unet": self.unet,
            "controlnet": self.controlnet,
            "appearance": self.appearance,
        }
        if isinstance(self.codec, VaeCodec):
            parts["vae"] = self.codec.vae
        self._save_background(directory)
        for name, module in parts.items():
            if int8:
                module.save_config(directory / name)
                save_file(quantize_state_dict(module.state_dict()), directory / name / INT8_FILE)
                continue
            if dtype is not None and dtype != module.dtype:
                # nn.Module.to, not ModelMixin.to (which warns about fp32-only modules we lack)
                module = torch.nn.Module.to(copy.deepcopy(module), dtype)
            module.save_pretrained(directory / name, safe_serialization=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "unet_class": type(self.unet).__name__,
            "appearance_class": type(self.appearance).__name__,
            "model_config": json.loads(json.dumps(self.config.to_dict(), default=str)),
            "weights": "int8" if int8 else "diffusers",
            "temporal_window": self.temporal_window,
        }
        (directory / MODEL_FILE).write_text(json.dumps(meta, indent=2))

    @classmethod
    def from_pretrained(
        cls,
        directory: str | Path,
        expected: ModelConfig | None = None,
        torch_dtype: torch.dtype | None = None,
    ) -> StructureGuidedDiffusion:
        """Load a directory written by ``save_pretrained`` (a finished run directory).

        ``expected``: refuse (``ConfigError``) a directory whose architecture differs from it,
        e.g. a face model where a body model is wanted or a run of another preset.
        """
        directory = Path(directory)
        config = read_model_config(directory)
        if expected is not None:
            check_compatible(config, expected, directory)
        meta = json.loads((directory / MODEL_FILE).read_text())
        if meta.get("lora_rank"):
            return cls._from_lora(directory, config, meta, torch_dtype)
        unet_cls = (
            UNetMotionModel if meta["unet_class"] == "UNetMotionModel" else UNet2DConditionModel
        )
        appearance_cls = (
            ClipAppearanceEncoder
            if meta["appearance_class"] == "ClipAppearanceEncoder"
            else ConvAppearanceEncoder
        )
        int8 = meta.get("weights") == "int8"
        try:
            unet = _load_part(unet_cls, directory / "unet", int8, torch_dtype)
            controlnet = _load_part(ControlNetModel, directory / "controlnet", int8, torch_dtype)
            appearance = _load_part(appearance_cls, directory / "appearance", int8, torch_dtype)
            if config.codec == "vae":
                vae = _load_part(AutoencoderKL, directory / "vae", int8, torch_dtype)
                codec: ImageCodec = VaeCodec(vae, config.codec_scale)
            else:
                codec = PixelUnshuffleCodec(config.codec_factor, config.codec_scale)
            background = (
                BackgroundPlate.load(directory / BACKGROUND_FILE)
                if config.background_plate
                else None
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(f"cannot load the model in {directory}: {exc}") from exc
        model = cls(config, codec, unet, controlnet, appearance)
        model.background = background
        model.temporal_window = meta.get("temporal_window")  # None: saved before it was recorded
        return model

    @classmethod
    def _from_lora(
        cls, directory: Path, config: ModelConfig, meta: dict, torch_dtype: torch.dtype | None
    ) -> StructureGuidedDiffusion:
        """A LoRA identity: load its base, add adapters of the saved rank, load the adapters."""
        base = meta["base"]
        model = cls.build(config) if base == "build" else cls.from_pretrained(base, expected=config)
        model.add_lora(int(meta["lora_rank"]))
        tensors = load_file(directory / LORA_FILE)
        own = model.identity_state_dict()
        if set(tensors) != set(own):
            raise InputError(
                f"{directory / LORA_FILE} does not match its base {base} (adapter names differ)"
            )
        with torch.no_grad():
            for n, value in tensors.items():
                own[n].copy_(value)
        if config.background_plate:
            model.background = BackgroundPlate.load(directory / BACKGROUND_FILE)
        model.temporal_window = meta.get("temporal_window", model.temporal_window)
        model = model.to(torch_dtype) if torch_dtype is not None else model
        return model.eval()


def _load_part(
    module_cls: type, path: Path, int8: bool, torch_dtype: torch.dtype | None
) -> torch.nn.Module:
    """One component of a saved model: diffusers' ``from_pretrained``, or for int8 storage
    its config.json built and its dequantized weights loaded (strict)."""
    if not int8:
        kwargs = {"torch_dtype": torch_dtype} if torch_dtype is not None else {}
        return module_cls.from_pretrained(path, local_files_only=True, **kwargs)
    module = module_cls.from_config(module_cls.load_config(path))
    module.load_state_dict(dequantize_state_dict(load_file(path / INT8_FILE)))
    return torch.nn.Module.to(module, torch_dtype) if torch_dtype is not None else module


# --------------------------------------------------------------------- model directory checks
def read_model_config(directory: str | Path) -> ModelConfig:
    """The ``ModelConfig`` saved in a model/run directory (``InputError`` if there is none)."""
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise InputError(
            f"{directory} is not an anchorgen model directory (no {MODEL_FILE}); pass a finished run directory"
        )
    try:
        meta = json.loads(path.read_text())
        return ModelConfig.from_dict(meta["model_config"], where=str(path))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"corrupt {path}: {exc}") from exc


def check_compatible(found: ModelConfig, expected: ModelConfig, directory: str | Path) -> None:
    """Raise ``ConfigError`` when a saved model is not the architecture the caller expects."""
    if found.architecture() == expected.architecture():
        return
    a, b = found.architecture(), expected.architecture()
    differing = sorted(k for k in a if a[k] != b.get(k))
    raise ConfigError(
        f"{directory} holds a {found.part} model of preset {found.preset!r}, but a {expected.part} model of preset "
        f"{expected.preset!r} is expected (differs in: {', '.join(differing)})"
    )


# --------------------------------------------------------------------- parameter groups
def temporal_parameters(model: StructureGuidedDiffusion) -> dict[str, torch.nn.Parameter]:
    """The AnimateDiff motion-module weights (IV-C1), by name."""
    return {n: p for n, p in model.named_parameters() if TEMPORAL_KEY in n}


def spatial_parameters(model: StructureGuidedDiffusion) -> dict[str, torch.nn.Parameter]:
    """Trainable spatial weights: UNet and structure branch minus motion modules, plus the
    appearance encoder (its frozen CLIP tower excluded); never the codec."""
    names = {
        n: p
        for n, p in model.named_parameters()
        if TEMPORAL_KEY not in n and not n.startswith("codec.")
    }
    return {n: p for n, p in names.items() if not n.startswith("appearance.vision.")}


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Parameter counts per component of a (random-weight) build, on the meta device (instant)."""
    with torch.device("meta"):
        model = StructureGuidedDiffusion.build(config.replace(pretrained=False))
    counts = {
        "unet_spatial": sum(
            p.numel() for n, p in model.unet.named_parameters() if TEMPORAL_KEY not in n
        ),
        "temporal": sum(p.numel() for p in temporal_parameters(model).values()),
        "controlnet": sum(p.numel() for p in model.controlnet.parameters()),
        "appearance": sum(p.numel() for p in model.appearance.parameters()),
        "codec": sum(p.numel() for p in model.codec.parameters()),
    }
    counts["total"] = sum(counts.values())
    return counts


# --------------------------------------------------------------------- noise schedules
def shifted_cosine_betas(num_timesteps: int, shift: float) -> np.ndarray:
    """Betas of the cosine schedule with log-SNR shifted by 2 log(shift) (simple diffusion):
    log SNR(t) = -2 log tan(pi t / 2) + 2 log(shift); alpha_bar = sigmoid(log SNR)."""
    t = np.arange(1, num_timesteps + 1, dtype=np.float64) / num_timesteps
    log_snr = -2.0 * np.log(np.tan(np.minimum(t, 1 - 1e-7) * math.pi / 2)) + 2.0 * math.log(shift)
    alpha_bar = 1.0 / (1.0 + np.exp(-log_snr))
    prev = np.concatenate([[1.0], alpha_bar[:-1]])
    return np.clip(1.0 - alpha_bar / prev, 0.0, 0.999)


def make_scheduler(config: ModelConfig, kind: str = "ddim", train: bool = False):
    """A diffusers scheduler matching ``config`` (betas, prediction type, T)."""
    common: dict = dict(
        num_train_timesteps=config.num_train_timesteps, prediction_type=config.prediction_type
    )
    if config.noise_schedule == "shifted_cosine":
        common["trained_betas"] = shifted_cosine_betas(
            config.num_train_timesteps, config.noise_shift
        ).tolist()
    elif config.noise_schedule == "scaled_linear":
        common.update(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    else:
        common.update(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    if train or kind == "ddpm":
        return DDPMScheduler(**common, clip_sample=False)
    if kind == "ddim":
        return DDIMScheduler(
            **common, clip_sample=False, set_alpha_to_one=False, timestep_spacing="trailing"
        )
    if kind == "dpm++":
        return DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", timestep_spacing="trailing"
        )
    raise ConfigError(f"unknown scheduler kind {kind!r}; valid: ddim, dpm++, ddpm")


# --------------------------------------------------------------------- component builders
def _check_local_paths(config: ModelConfig) -> None:
    """sd15 with pretrained weights: every local directory must exist; list what is missing."""
    needed = {
        "model.sd15_path (diffusers SD1.5 dir with unet/ and vae/)": config.sd15_path
        and Path(config.sd15_path) / "unet" / "config.json",
        "model.sd15_path vae/": config.sd15_path and Path(config.sd15_path) / "vae" / "config.json",
    }
    if config.appearance_encoder == "clip":
        needed["model.clip_path (CLIPVisionModel dir, e.g. clip-vit-large-patch14)"] = (
            config.clip_path and Path(config.clip_path) / "config.json"
        )
    if config.temporal:
        needed["model.motion_adapter_path (diffusers MotionAdapter dir)"] = (
            config.motion_adapter_path and Path(config.motion_adapter_path) / "config.json"
        )
    missing = [
        f"{what}: {path.parent if path else 'not set'}"
        for what, path in needed.items()
        if not (path and path.is_file())
    ]
    if missing:
        raise ConfigError(
            "pretrained weights are loaded only from local directories (never downloaded); missing: "
            + "; ".join(missing)
            + " (or set model.pretrained=false for random weights)"
        )


def _build_codec(config: ModelConfig) -> ImageCodec:
    if config.codec == "pixel_unshuffle":
        return PixelUnshuffleCodec(config.codec_factor, config.codec_scale)
    if config.pretrained:
        vae = AutoencoderKL.from_pretrained(Path(config.sd15_path) / "vae", local_files_only=True)
    else:
        vae = AutoencoderKL(
            **{
                **_SD15_VAE,
                "latent_channels": config.vae_channels,
                "sample_size": config.image_size,
            }
        )
    codec = VaeCodec(vae, config.codec_scale)
    if codec.factor != config.codec_factor or codec.latent_channels != config.latent_channels:
        raise ConfigError(
            f"the VAE has factor {codec.factor} and {codec.latent_channels} channels; config says {config.codec_factor} and {config.latent_channels}"
        )
    return codec


def _build_unet(config: ModelConfig) -> UNet2DConditionModel:
    """The spatial UNet with C inputs (face SGDM: 2C + 1, eq. 5)."""
    c = config.latent_channels
    in_channels = c + (c + 1 if config.inpainting else 0)  # a plate's channels come in build()
    if config.pretrained:
        unet = UNet2DConditionModel.from_pretrained(
            Path(config.sd15_path) / "unet", local_files_only=True
        )
        if (
            tuple(unet.config.block_out_channels) != tuple(config.block_out_channels)
            or unet.config.cross_attention_dim != config.cross_attention_dim
        ):
            raise ConfigError(
                f"{config.sd15_path}/unet does not match model.block_out_channels / model.cross_attention_dim"
            )
        if unet.config.in_channels != in_channels:
            unet = _widen_conv_in(unet, in_channels)
        return unet
    down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in config.attention_levels)
    up = tuple(
        "CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(config.attention_levels)
    )
    return UNet2DConditionModel(
        sample_size=config.latent_size,
        in_channels=in_channels,
        out_channels=c,
        down_block_types=down,
        up_block_types=up,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=config.attention_heads,
        norm_num_groups=config.norm_num_groups,
    )


def _widen_conv_in(unet: torch.nn.Module, in_channels: int) -> torch.nn.Module:
    """Widen a C-channel UNet's (or structure branch's) input for a context input: the new
    channels start at zero weight, so the widened network first computes what the original
    did. Draws no random numbers."""
    old = unet.conv_in
    new = torch.nn.utils.skip_init(
        torch.nn.Conv2d,
        in_channels,
        old.out_channels,
        old.kernel_size,
        padding=old.padding,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : old.in_channels] = old.weight
        new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def _build_motion_adapter(config: ModelConfig) -> MotionAdapter:
    if config.pretrained:
        return MotionAdapter.from_pretrained(config.motion_adapter_path, local_files_only=True)
    adapter = MotionAdapter(
        block_out_channels=config.block_out_channels,
        motion_layers_per_block=config.layers_per_block,
        motion_num_attention_heads=config.motion_heads,
        motion_norm_num_groups=config.norm_num_groups,
        motion_max_seq_length=config.motion_max_seq_length,
        use_motion_mid_block=True,
    )
    # Zero output projections: fresh motion modules start as the identity (as in AnimateDiff).
    for name, param in adapter.named_parameters():
        if ".proj_out." in f".{name}" and param.device.type != "meta":
            torch.nn.init.zeros_(param)
    return adapter


def _build_appearance(config: ModelConfig) -> AppearanceEncoder:
    if config.appearance_encoder == "cnn":
        return ConvAppearanceEncoder(
            image_size=config.appearance_size,
            channels=config.appearance_channels,
            grid=config.appearance_grid,
            token_dim=config.cross_attention_dim,
            norm_num_groups=min(8, config.appearance_channels[0]),
        )
    if config.pretrained:
        vision = CLIPVisionModel.from_pretrained(config.clip_path, local_files_only=True)
        return ClipAppearanceEncoder.from_clip(vision, config.cross_attention_dim)
    vision_config = {**_CLIP_L14, "image_size": config.appearance_size}
    return ClipAppearanceEncoder(
        vision_config=CLIPVisionConfig(**vision_config).to_dict(),
        token_dim=config.cross_attention_dim,
    )
