"""Model and training configs for the structure-guided diffusion model, and the named presets.

``ModelConfig`` says what a model *is* (architecture, codec, noise schedule); it is saved next
to the weights as ``anchorgen_model.json``. ``TrainConfig`` says how one run trains it (stage,
data, optimisation); it is saved as ``config.yaml`` in every run directory. ``PRESETS`` maps a
name to a ready ``TrainConfig``: ``tiny`` (tests), ``scratch-256`` (body, from scratch),
``face`` (face SGDM, from scratch) and ``sd15`` (the paper's Stable Diffusion 1.5 setup).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anchorgen.config import BaseConfig, require
from anchorgen.errors import ConfigError

PARTS = ("body", "face")
CODECS = ("pixel_unshuffle", "vae")
APPEARANCE_ENCODERS = ("cnn", "clip")
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
NOISE_SCHEDULES = ("scaled_linear", "linear", "shifted_cosine")
STAGES = ("pretrain", "finetune")
PRECISIONS = ("auto", "bf16", "fp16", "no")
DTYPES = ("float32", "bfloat16", "float16")
EXPORT_DTYPES = (*DTYPES, "int8")
CONDITION_STYLES = ("mesh", "skeleton")
LR_SCHEDULES = ("constant", "cosine")


def _plain(value: Any) -> Any:
    """YAML/JSON-safe copy: paths become strings, tuples lists."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


REMOVED_OPTIONS = {"reference_concat": False, "condition_concat": False}
"""Model options that were measured, found no better and removed (docs/BENCHMARKS.md), with
the value under which a saved model's architecture is the same without them."""


@dataclass
class ModelConfig(BaseConfig):
    """Architecture of one SGDM (eqs. 1-5): denoiser, structure branch, appearance encoder, codec."""

    preset: str = "tiny"
    """Name of the preset this architecture belongs to; a run directory of another preset is refused."""
    part: str = "body"
    """Which model: ``body`` (SGDM, eqs. 1-4) or ``face`` (Face SGDM, eq. 5: inpainting input)."""
    image_size: int = 32
    """Side of the square training/generation images in pixels."""
    codec: str = "pixel_unshuffle"
    """Image <-> latent map: ``pixel_unshuffle`` (lossless space-to-depth, pixel-space diffusion)
    or ``vae`` (a diffusers ``AutoencoderKL``, latent diffusion as in the paper)."""
    codec_factor: int = 2
    """Spatial down-sampling of the codec (pixel-unshuffle factor, or 8 for the SD VAE)."""
    codec_scale: float = 1.0
    """Latents are multiplied by this after encoding (pixel space: 1.0; SD VAE: 0.18215)."""
    vae_channels: int = 4
    """Latent channels of the VAE codec (ignored for pixel-unshuffle: 3 * factor**2)."""
    block_out_channels: tuple[int, ...] = (16, 32)
    """UNet channels per resolution level (the structure branch copies the encoder)."""
    layers_per_block: int = 1
    """ResNet layers per UNet level."""
    attention_levels: tuple[bool, ...] = (False, True)
    """Per level: whether it has (self + cross) attention. Keep attention at low resolution only."""
    attention_heads: int = 2
    """Attention heads per transformer block (diffusers' ``attention_head_dim`` argument)."""
    cross_attention_dim: int = 16
    """Width of the appearance tokens read by cross-attention in the UNet and the structure branch."""
    norm_num_groups: int = 8
    """GroupNorm groups in the UNet (must divide every entry of ``block_out_channels``)."""
    conditioning_channels: tuple[int, ...] = (8, 16)
    """Channels of the structure branch's condition-image stem; ``2**(len-1)`` must equal
    ``codec_factor`` so the stem brings the render to latent resolution."""
    condition_style: str = "mesh"
    """Body condition images drawn from landmarks: ``mesh`` (the shaded surface of
    ``prepare.render``, as Make-Your-Anchor's SMPL-X renders; pre-rendered mesh videos and
    SMPL-X motion can drive it) or ``skeleton`` (part-coloured lines and face points of
    ``prepare.skeleton``: limbs stay distinct in front of the torso; landmark, video and
    speech motion only). The face model always reads face-space mesh renders."""
    background_plate: bool = False
    """Body only: the UNet and structure branch also read the identity's static background
    (``prepare.background.background_plate``: the training frames' median where the person
    is absent) in eq. 5's input layout [z_t, M, z_M], M marking the plate's holes. Meant for
    a fixed camera (on in ``scratch-256``; a dataset whose background moves is refused,
    ``io.dataset.MIN_PLATE_FIT_PSNR``); the plate is saved with the model and drawn under any
    motion. The networks predict x0 minus the plate (``prediction_type`` must be ``sample``)."""
    conditioning_scale: float = 1.0
    """W_c of eq. 2: weight of the structure branch's residuals, used in training and as the
    default at inference."""
    temporal: bool = False
    """Insert AnimateDiff-style motion modules (IV-C1): ``UNetMotionModel`` over clips of frames."""
    motion_heads: int = 2
    """Attention heads of each temporal transformer."""
    motion_max_seq_length: int = 32
    """Longest clip (frames) the temporal position encoding supports."""
    appearance_encoder: str = "cnn"
    """``cnn``: a small trainable encoder producing a token grid; ``clip``: CLIP image features
    before pooling (``CLIPVisionModel.last_hidden_state``), frozen, linearly projected."""
    appearance_size: int = 32
    """Side the reference image is resized to before the appearance encoder."""
    appearance_channels: tuple[int, ...] = (16, 16)
    """CNN appearance encoder: channels of its stride-2 stages."""
    appearance_grid: int = 4
    """CNN appearance encoder: tokens form a ``grid x grid`` map (N = grid**2 tokens)."""
    prediction_type: str = "v_prediction"
    """What the network predicts: ``epsilon`` (eq. 1), ``v_prediction`` or ``sample`` (the clean
    frame, x0: a short run still yields clean, if soft, frames instead of residual noise)."""
    noise_schedule: str = "shifted_cosine"
    """``scaled_linear``/``linear`` (SD1.5 betas) or ``shifted_cosine`` (cosine log-SNR shifted by
    ``2 * log(noise_shift)``, for pixel-space diffusion at high resolution)."""
    noise_shift: float = 1.0
    """Shifted-cosine only: base resolution / effective resolution (e.g. 64/256 = 0.25)."""
    num_train_timesteps: int = 1000
    """Discrete diffusion timesteps T."""
    pretrained: bool = False
    """sd15: load UNet/VAE/CLIP/motion adapter from the local paths below; False builds the same
    architecture with random weights."""
    sd15_path: Path | None = None
    """Local diffusers Stable Diffusion 1.5 directory (with ``unet/`` and ``vae/``)."""
    clip_path: Path | None = None
    """Local ``CLIPVisionModel`` directory (e.g. clip-vit-large-patch14)."""
    motion_adapter_path: Path | None = None
    """Local diffusers ``MotionAdapter`` directory (AnimateDiff)."""
    export_dtype: str = "bfloat16"
    """dtype of the final exported weights: ``bfloat16`` halves the size of an identity,
    ``int8`` (weight-only, per output channel, ``models.quantize``) halves it again."""

    def __post_init__(self) -> None:
        require(self.part in PARTS, f"part must be one of {PARTS}, got {self.part!r}")
        require(self.codec in CODECS, f"codec must be one of {CODECS}, got {self.codec!r}")
        require(
            self.appearance_encoder in APPEARANCE_ENCODERS,
            f"appearance_encoder must be one of {APPEARANCE_ENCODERS}, got {self.appearance_encoder!r}",
        )
        require(
            self.prediction_type in PREDICTION_TYPES,
            f"prediction_type must be one of {PREDICTION_TYPES}",
        )
        require(
            self.noise_schedule in NOISE_SCHEDULES,
            f"noise_schedule must be one of {NOISE_SCHEDULES}",
        )
        require(self.export_dtype in EXPORT_DTYPES, f"export_dtype must be one of {EXPORT_DTYPES}")
        require(
            self.condition_style in CONDITION_STYLES,
            f"condition_style must be one of {CONDITION_STYLES}, got {self.condition_style!r}",
        )
        require(
            self.codec_factor >= 1 and self.codec_factor & (self.codec_factor - 1) == 0,
            "codec_factor must be a power of two",
        )
        require(
            2 ** (len(self.conditioning_channels) - 1) == self.codec_factor,
            f"conditioning_channels has {len(self.conditioning_channels)} entries: 2**(len-1) must equal "
            f"codec_factor={self.codec_factor}",
        )
        levels = len(self.block_out_channels)
        require(levels >= 1, "block_out_channels must not be empty")
        require(
            len(self.attention_levels) == levels,
            "attention_levels needs one entry per block_out_channels level",
        )
        require(
            all(c % self.norm_num_groups == 0 for c in self.block_out_channels),
            "norm_num_groups must divide every block_out_channels entry",
        )
        require(
            self.image_size % (self.codec_factor * 2 ** (levels - 1)) == 0,
            f"image_size must be divisible by codec_factor * 2**{levels - 1}",
        )
        require(self.layers_per_block >= 1, "layers_per_block must be >= 1")
        require(0 < self.noise_shift, "noise_shift must be positive")
        require(
            self.appearance_size % 2 ** len(self.appearance_channels) == 0,
            "appearance_size must be divisible by 2**len(appearance_channels)",
        )
        require(self.appearance_grid >= 1, "appearance_grid must be >= 1")
        require(self.conditioning_scale >= 0, "conditioning_scale must be >= 0")
        require(
            not (self.background_plate and self.part == "face"),
            "background_plate is a body option (the face model reads its own surroundings)",
        )
        require(
            not self.background_plate or self.prediction_type == "sample",
            "background_plate needs prediction_type=sample (x0 is predicted as plate + residual)",
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "") -> ModelConfig:
        """As ``BaseConfig.from_dict``; an option of ``REMOVED_OPTIONS`` (saved models, run
        configs, config files written before its removal) is dropped when it was off and
        refused when it was on, since such weights expect the removed inputs."""
        if isinstance(data, dict):
            data = dict(data)
            for option, off in REMOVED_OPTIONS.items():
                value = data.pop(option, off)
                if value != off:
                    raise ConfigError(
                        f"{where or cls.__name__}: {option}={value} is an option this version of "
                        "anchorgen removed; retrain, or use the version that made this model"
                    )
        return super().from_dict(data, where=where)

    def to_dict(self) -> dict[str, Any]:
        return _plain(super().to_dict())

    @property
    def latent_channels(self) -> int:
        """C: channels of one latent frame."""
        return 3 * self.codec_factor**2 if self.codec == "pixel_unshuffle" else self.vae_channels

    @property
    def latent_size(self) -> int:
        """h = w: side of a latent frame."""
        return self.image_size // self.codec_factor

    @property
    def inpainting(self) -> bool:
        """Face SGDM (eq. 5): the UNet reads [noisy latent, mask, masked latent] (2C + 1 channels)."""
        return self.part == "face"

    @property
    def context_input(self) -> bool:
        """Whether the UNet reads eq. 5's [z_t, M, z_M]: the face SGDM's masked surroundings,
        or a body's background plate (``background_plate``)."""
        return self.inpainting or self.background_plate

    @property
    def unet_in_channels(self) -> int:
        """Input channels of the UNet: C, plus C + 1 for a context input (eq. 5)."""
        c = self.latent_channels
        return c + (c + 1 if self.context_input else 0)

    def architecture(self) -> dict:
        """The fields that decide the weights' shapes and meaning (paths and export dtype excluded)."""
        data = self.to_dict()
        for key in (
            "sd15_path",
            "clip_path",
            "motion_adapter_path",
            "pretrained",
            "export_dtype",
            "conditioning_scale",
        ):
            data.pop(key)
        return data


@dataclass
class TrainConfig(BaseConfig):
    """One training run (IV-B two-stage strategy): ``anchorgen train --config FILE [key=value ...]``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model to train (``model.part`` says body or face)."""
    stage: str = "finetune"
    """``pretrain`` (stage 1: several identities, foreground-matted frames) or ``finetune``
    (stage 2: the target identity, full frames with background)."""
    datasets: list[Path] = field(default_factory=list)
    """Prepared identity dataset directories (several for pretrain, the target for finetune)."""
    init_from: Path | None = None
    """A finished run directory (usually stage 1) whose weights initialise this run."""
    output_dir: Path | None = None
    """Run directory. Re-running the same command resumes from its latest checkpoint."""
    steps: int = 100
    """Optimiser steps in total (counting steps of earlier, resumed attempts)."""
    batch_size: int = 2
    """Clips per GPU per step (the global batch is this times the number of processes)."""
    learning_rate: float = 1e-4
    """Peak AdamW learning rate (after warm-up)."""
    lr_warmup_steps: int = 0
    """Linear warm-up steps, then ``lr_schedule``."""
    lr_schedule: str = "constant"
    """After warm-up: ``constant``, or ``cosine`` (half a cosine from ``learning_rate`` down
    to 0 at ``steps``; a run stopped earlier by ``time_limit_minutes`` ends part way down)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables)."""
    clip_length: int = 1
    """Frames per training sample: 1 for frame-wise models, 4-16 when ``model.temporal``."""
    appearance_dropout: float = 0.1
    """Probability of replacing a sample's appearance tokens by the null tokens, so
    classifier-free guidance works at inference."""
    landmark_jitter_px: float = 0.0
    """Std of landmark position jitter (pixels) before the condition is rendered (V-C6)."""
    face_context_degrade: float = 0.0
    """Face part only (IV-D, eq. 5): probability of each of two independent augmentations of
    the masked surroundings z_M (never the target, condition or mask): blur them like a
    low-resolution body-model output, and misalign them by a random shift and scale, as the
    body model's face placement is off by a few pixels at inference. 0 disables both."""
    face_context_min_scale: float = 0.35
    """Blur strength: the surroundings are downscaled by a factor drawn from [this, 1] and
    upscaled back (0.35: a 1080 px source's 256 px face crop seen through a 256 px body frame)."""
    face_context_shift: float = 0.05
    """Misalignment: largest shift of the surroundings per axis, as a fraction of the face crop
    size (0.05: +-12.8 px at 256 px)."""
    face_context_scale_jitter: float = 0.05
    """Misalignment: the surroundings are scaled about the crop centre by 1 +- up to this."""
    freeze_temporal: bool | None = None
    """Keep the motion modules fixed (IV-C1). ``None``: frozen in a fine-tune that starts from
    trained motion modules (``init_from``, or sd15's AnimateDiff adapter), trained otherwise
    (stage 1, or a fine-tune from random weights, where there is nothing to keep)."""
    lora_rank: int = 0
    """0: full fine-tuning. >0: train low-rank adapters (peft) of this rank on the spatial
    attention of the UNet and structure branch (plus the appearance encoder's trainable part)
    on top of ``init_from`` or the pretrained weights; the export is then only the adapters."""
    mixed_precision: str = "auto"
    """``bf16``, ``fp16``, ``no``; ``auto`` = bf16 on a GPU that supports it, otherwise no."""
    ema_decay: float = 0.999
    """Decay of the exponential moving average of the weights (0 disables EMA)."""
    grad_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 30% slower."""
    checkpoint_every: int = 500
    """Save a resumable checkpoint every this many steps (a killed run loses at most this)."""
    keep_checkpoints: int = 2
    """How many of the latest checkpoints to keep."""
    sample_every: int = 500
    """Write samples/step-XXXXXX.png (condition | reference | generated | target) this often (0: never)."""
    sample_steps: int = 10
    """DDIM steps used for those samples."""
    num_workers: int = 2
    """Data-loader worker processes."""
    seed: int = 0
    """Seed for initialisation, data order, noise and dropout."""
    log_every: int = 10
    """Append a row to train_log.csv this often."""
    time_limit_minutes: float | None = None
    """Stop (checkpoint, export) once this much training time has passed, even before
    ``steps``; re-running the same command continues toward ``steps``."""

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model, where="model")
        require(self.stage in STAGES, f"stage must be one of {STAGES}, got {self.stage!r}")
        require(self.mixed_precision in PRECISIONS, f"mixed_precision must be one of {PRECISIONS}")
        require(self.steps >= 1, "steps must be >= 1")
        require(self.batch_size >= 1, "batch_size must be >= 1")
        require(self.learning_rate > 0, "learning_rate must be positive")
        require(self.lr_warmup_steps >= 0, "lr_warmup_steps must be >= 0")
        require(
            self.lr_schedule in LR_SCHEDULES,
            f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}",
        )
        require(0.0 <= self.appearance_dropout < 1.0, "appearance_dropout must be in [0, 1)")
        require(self.landmark_jitter_px >= 0, "landmark_jitter_px must be >= 0")
        require(
            0.0 <= self.face_context_degrade <= 1.0,
            f"face_context_degrade must be a probability in [0, 1], got {self.face_context_degrade}",
        )
        require(
            0.0 < self.face_context_min_scale <= 1.0,
            f"face_context_min_scale must be in (0, 1], got {self.face_context_min_scale}",
        )
        require(
            0.0 <= self.face_context_shift < 0.5,
            f"face_context_shift must be in [0, 0.5), got {self.face_context_shift}",
        )
        require(
            0.0 <= self.face_context_scale_jitter < 1.0,
            f"face_context_scale_jitter must be in [0, 1), got {self.face_context_scale_jitter}",
        )
        require(0.0 <= self.ema_decay < 1.0, "ema_decay must be in [0, 1)")
        require(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        require(self.keep_checkpoints >= 1, "keep_checkpoints must be >= 1")
        require(
            self.sample_every >= 0 and self.sample_steps >= 1,
            "sample_every >= 0 and sample_steps >= 1",
        )
        require(
            self.num_workers >= 0 and self.log_every >= 1, "num_workers >= 0 and log_every >= 1"
        )
        require(
            self.time_limit_minutes is None or self.time_limit_minutes > 0,
            f"time_limit_minutes must be positive, got {self.time_limit_minutes}",
        )
        require(self.lora_rank >= 0, "lora_rank must be >= 0")
        require(
            self.lora_rank == 0 or self.model.export_dtype != "int8",
            "export_dtype int8 stores full weights: a LoRA identity (lora_rank > 0) exports in "
            "float32, bfloat16 or float16",
        )
        require(
            self.lora_rank == 0 or self.init_from is not None or self.model.pretrained,
            "lora_rank > 0 needs a base model: init_from=RUN_DIR or model.pretrained=true",
        )
        if self.model.temporal:
            require(
                2 <= self.clip_length <= self.model.motion_max_seq_length,
                f"clip_length must be in [2, {self.model.motion_max_seq_length}] for a temporal model (paper: 4-16)",
            )
        else:
            require(
                self.clip_length == 1,
                "clip_length must be 1 for a frame-wise model (model.temporal=false)",
            )

    def to_dict(self) -> dict[str, Any]:
        return _plain(super().to_dict())

    @property
    def temporal_frozen(self) -> bool:
        """Whether the motion modules stay fixed in this run (``freeze_temporal`` resolved)."""
        if self.freeze_temporal is None:
            starts_trained = self.init_from is not None or self.model.pretrained
            return self.stage == "finetune" and self.model.temporal and starts_trained
        return self.freeze_temporal

    @property
    def use_matte(self) -> bool:
        """Stage 1 trains on foreground-matted frames (IV-B); stage 2 on full frames."""
        return self.stage == "pretrain"


def _tiny() -> TrainConfig:
    return TrainConfig(
        model=ModelConfig(preset="tiny"),
        steps=20,
        batch_size=2,
        learning_rate=1e-3,
        ema_decay=0.9,
        checkpoint_every=10,
        sample_every=10,
        sample_steps=2,
        num_workers=0,
        log_every=1,
    )


def _scratch_256() -> TrainConfig:
    """Body SGDM from scratch at 256 px in pixel space (pixel-unshuffle 4: 256x256x3 -> 64x64x48).

    UNet levels 64/128/192 channels at 64/32/16 px, attention (self + cross, 64 tokens of 256-d
    appearance) only at 16x16 and in the mid block, motion modules at every level; the
    structure branch is the UNet encoder copy. Parameters (``count_parameters``): UNet 10.02 M,
    motion modules 4.62 M, structure branch 4.58 M, appearance encoder 0.63 M: 19.85 M = 39.7 MB
    in bf16 (with the ``face`` model's 8.80 M: 57.3 MB per identity). Compute
    (``torch.utils.flop_counter``): 22.6 GFLOPs per 256x256 frame forward, so one step of
    8 clips x 4 frames is about 2.2 TFLOPs with the backward pass.
    """
    model = ModelConfig(
        preset="scratch-256",
        part="body",
        image_size=256,
        codec="pixel_unshuffle",
        codec_factor=4,
        block_out_channels=(64, 128, 192),
        layers_per_block=1,
        attention_levels=(False, False, True),
        attention_heads=4,
        cross_attention_dim=256,
        norm_num_groups=32,
        conditioning_channels=(16, 32, 64),
        conditioning_scale=1.0,
        temporal=True,
        motion_heads=4,
        appearance_encoder="cnn",
        appearance_size=128,
        appearance_channels=(32, 64, 128, 128),
        appearance_grid=8,
        # x0 prediction: in a paired CPU run of the demo model (docs/BENCHMARKS.md) it gave
        # 13.4 dB where v-prediction gave 8.2 dB after the same minutes; the kitchen run with
        # v-prediction left residual noise. Not yet measured at this size on a GPU.
        prediction_type="sample",
        noise_schedule="shifted_cosine",
        noise_shift=0.25,
        # part-coloured skeletons: +1.7 dB and +0.033 SSIM (128 px) over the mesh renders on
        # the kitchen held-out 4 s, same body and minutes (docs/BENCHMARKS.md, eighth session)
        condition_style="skeleton",
        # x0 = the clip's static background + the networks' residual: four seeds on the kitchen
        # held-out 4 s, 25.02 / 0.876 against 24.92 / 0.870 without, every seed's SSIM higher
        # (docs/BENCHMARKS.md, thirteenth session). Needs a fixed camera.
        background_plate=True,
    )
    return TrainConfig(
        model=model,
        stage="finetune",
        steps=4000,
        batch_size=8,
        learning_rate=2e-4,
        lr_warmup_steps=200,
        clip_length=4,
        appearance_dropout=0.1,
        # jitter of 1.5 / 3 px cost 0.5 / 1.2 dB with skeletons (BENCHMARKS.md, ninth session)
        landmark_jitter_px=0.0,
        mixed_precision="auto",
        ema_decay=0.999,
        checkpoint_every=500,
        sample_every=1000,
        sample_steps=20,
        num_workers=6,
    )


def _face() -> TrainConfig:
    """Face SGDM (IV-D, eq. 5) from scratch: aligned 256 px face crops, inpainting input
    (noisy 48 + mask 1 + masked 48 = 97 channels), frame-wise (no temporal layers, as in the
    paper). UNet 48/96/144 channels: 8.80 M parameters with its structure branch and appearance
    encoder (17.6 MB bf16), so body + face stay under 60 MB; 10.5 GFLOPs per frame forward.
    """
    base = _scratch_256()
    model = base.model.replace(
        preset="face",
        part="face",
        block_out_channels=(48, 96, 144),
        norm_num_groups=16,
        temporal=False,
        appearance_channels=(32, 64, 96, 128),
        cross_attention_dim=192,
        condition_style="mesh",  # face-space mesh renders (eq. 5); the body's style is its own
        background_plate=False,  # the face model reads its own surroundings (eq. 5's context)
    )
    return base.replace(
        model=model,
        clip_length=1,
        steps=3000,
        landmark_jitter_px=1.0,
        # the body model's output is soft and places the face 9-14 crop px off: train the
        # face pass on surroundings like that (face_context_* fields)
        face_context_degrade=0.5,
    )


def _sd15() -> TrainConfig:
    """The paper's setup: SD1.5 UNet + VAE, structure branch initialised from the UNet, CLIP
    ViT-L/14 image tokens, AnimateDiff motion adapter; 512 px, W_c = 2.0 (eq. 2)."""
    model = ModelConfig(
        preset="sd15",
        part="body",
        image_size=512,
        codec="vae",
        codec_factor=8,
        codec_scale=0.18215,
        vae_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        attention_levels=(True, True, True, False),
        attention_heads=8,
        cross_attention_dim=768,
        norm_num_groups=32,
        conditioning_channels=(16, 32, 96, 256),
        conditioning_scale=2.0,
        temporal=True,
        motion_heads=8,
        appearance_encoder="clip",
        appearance_size=224,
        prediction_type="epsilon",
        noise_schedule="scaled_linear",
        pretrained=True,
        export_dtype="float16",
    )
    return TrainConfig(
        model=model,
        stage="finetune",
        steps=50000,
        batch_size=1,
        learning_rate=1e-5,
        clip_length=4,
        grad_checkpointing=True,
        mixed_precision="auto",
        ema_decay=0.0,
        checkpoint_every=1000,
        sample_every=5000,
        sample_steps=25,
    )


def _demo() -> TrainConfig:
    """The CPU demo's body model (``anchorgen demo``): 128 px in pixel space (unshuffled to
    32x32x48), temporal layers on, sized to learn the embedded sample in a few CPU minutes.
    Plain cosine noise (shift 1.0) and x0 prediction: a short run yields soft frames rather
    than residual noise (docs/BENCHMARKS.md, "prediction type")."""
    model = ModelConfig(
        preset="demo",
        part="body",
        image_size=128,
        codec="pixel_unshuffle",
        codec_factor=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        attention_levels=(False, True),
        attention_heads=2,
        cross_attention_dim=64,
        norm_num_groups=16,
        conditioning_channels=(16, 32, 64),
        temporal=True,
        motion_heads=2,
        appearance_size=64,
        appearance_channels=(16, 32, 64),
        appearance_grid=4,
        prediction_type="sample",
        noise_shift=1.0,
    )
    return TrainConfig(
        model=model,
        steps=400,
        batch_size=4,
        learning_rate=1e-3,
        lr_warmup_steps=20,
        clip_length=2,
        # the motion modules stay at their initial weights: in one paired CPU run of the demo,
        # training them too gave 15.24 / 0.403 on its held-out 2 s against 17.56 / 0.499
        # (fewer steps in the same minutes; docs/BENCHMARKS.md, "Demo on the CPU")
        freeze_temporal=True,
        ema_decay=0.98,
        checkpoint_every=100,
        sample_every=0,
        sample_steps=10,
        num_workers=0,
        log_every=10,
    )


def _demo_face() -> TrainConfig:
    """The CPU demo's face model: the demo body design on 128 px face crops, inpainting input."""
    base = _demo()
    return base.replace(
        model=base.model.replace(preset="demo-face", part="face", temporal=False),
        clip_length=1,
        freeze_temporal=None,  # frame-wise: no motion modules
    )


PRESETS = {
    "tiny": _tiny,
    "demo": _demo,
    "demo-face": _demo_face,
    "scratch-256": _scratch_256,
    "face": _face,
    "sd15": _sd15,
}
"""Preset name -> factory of its ``TrainConfig``."""


def get_preset(name: str) -> TrainConfig:
    """A fresh ``TrainConfig`` for a named preset; unknown names list the valid ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]()
