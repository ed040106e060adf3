"""Arbitrary-length anchor video generation with batch-overlapped temporal denoising.

Make-Your-Anchor+ Algorithm 1 (section IV-C2): at every denoising step each window of the
latent sequence is denoised by the temporal SGDM, overlapping noise predictions are
averaged, and the scheduler steps the whole sequence at once. ``denoise_overlapped`` is that
loop; the body pipeline here and the face pipeline (``anchorgen.pipelines.face``) both
call it.

Length is unbounded: the latent sequence (and the running noise sum) live in host memory,
one batch of windows at a time goes to the model's device, conditions are read lazily per
window, and decoded frames are yielded chunk by chunk instead of being collected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

from anchorgen.errors import InputError
from anchorgen.pipelines.accel import cache_frames
from anchorgen.pipelines.windows import (
    Window,
    add_window,
    normalize_windows,
    rank_batches,
    window_counts,
    window_schedule,
)

StepCallback = Callable[[int, int, torch.Tensor], None]
"""``callback(step_index, timestep, latents (N, C, h, w))`` after each scheduler step."""


class FrameSource(Protocol):
    """A lazily indexed frame sequence: ``len(src)`` frames, ``src[a:b]`` -> (b - a, 3, H, W) in [0, 1]."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: slice) -> torch.Tensor: ...


class ArrayFrames:
    """``FrameSource`` over frames held as a tensor, array or list, converted per slice.

    Accepts float (N, 3, H, W) in [0, 1] (torch or numpy) or uint8 (N, H, W, 3) numpy,
    including an ``np.memmap``: only the requested slice is read and converted, so a
    disk-backed array of a 10-minute motion never sits in memory as one tensor.
    """

    def __init__(self, frames: Any) -> None:
        if len(frames) == 0:
            raise InputError("the condition sequence is empty")
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: slice) -> torch.Tensor:
        chunk = self.frames[index]
        if isinstance(chunk, list):
            chunk = np.stack([np.asarray(frame) for frame in chunk])
        return image_to_unit_tensor(chunk)


def _writable(array: np.ndarray) -> np.ndarray:
    """A contiguous array torch may wrap: read-only ones (memmaps of spooled frames) are copied."""
    return np.ascontiguousarray(array) if array.flags.writeable else np.array(array)


def image_to_unit_tensor(image: Any) -> torch.Tensor:
    """uint8 (..., H, W, 3) or float (..., 3, H, W) in [0, 1] -> float32 (..., 3, H, W) in [0, 1]."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL image
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint8:
            if image.shape[-1] != 3:
                raise InputError(
                    f"uint8 images must be (..., H, W, 3) RGB, got shape {image.shape}"
                )
            return torch.from_numpy(_writable(image)).movedim(-1, -3).float() / 255.0
        image = torch.from_numpy(_writable(image))
    if not isinstance(image, torch.Tensor):
        raise InputError(f"unsupported image type {type(image).__name__}")
    if image.dtype == torch.uint8:
        return image.movedim(-1, -3).float() / 255.0
    if image.dim() < 3 or image.shape[-3] != 3:
        raise InputError(
            f"float images must be (..., 3, H, W) in [0, 1], got shape {tuple(image.shape)}"
        )
    return image.float()


def as_frame_source(conditions: Any) -> FrameSource:
    """Wrap tensors/arrays/lists in ``ArrayFrames``; pass other lazy sources through."""
    if isinstance(conditions, (torch.Tensor, np.ndarray, list, tuple)):
        return ArrayFrames(list(conditions) if isinstance(conditions, tuple) else conditions)
    if not (hasattr(conditions, "__len__") and hasattr(conditions, "__getitem__")):
        raise InputError(
            "conditions must be a tensor, an array or an object with __len__ and __getitem__"
        )
    if len(conditions) == 0:
        raise InputError("the condition sequence is empty")
    return conditions


def appearance_tokens(model: Any, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Appearance tokens of ``reference`` (1, 3, H, W) in [0, 1] and the null tokens for CFG.

    The null (unconditional) appearance, ``model.null_tokens(1)``, is what appearance dropout
    trained the model with.
    """
    with torch.no_grad():
        tokens = model.encode_appearance(reference.to(model.device) * 2 - 1)  # (1, N, D)
        null = model.null_tokens(1)  # (1, N, D)
    return tokens, null.to(tokens.device, tokens.dtype)


@dataclasses.dataclass
class Inpainting:
    """Inpainting inputs for every frame of the sequence, kept on the host.

    ``mask`` (N, 1, h, w): 1 where the model regenerates; ``masked_latents`` (N, C, h, w): the
    latents of the image with that region blanked.
    """

    mask: torch.Tensor
    masked_latents: torch.Tensor


def denoise_overlapped(
    model: Any,
    scheduler: Any,
    latents: torch.Tensor,
    conditions: FrameSource,
    tokens: torch.Tensor,
    null_tokens: torch.Tensor,
    *,
    windows: Sequence[Window],
    num_inference_steps: int,
    guidance_scale: float,
    conditioning_scale: float,
    windows_per_batch: int = 1,
    inpaint: Inpainting | None = None,
    callback: StepCallback | None = None,
    progress: bool = True,
    description: str = "denoise",
    step_chunk: int = 64,
) -> torch.Tensor:
    """Batch-overlapped temporal denoising (Algorithm 1) of a whole latent sequence.

    ``latents`` (N, C, h, w) is the initial noise, already scaled by the scheduler's
    ``init_noise_sigma``; it stays on its device (the host for long videos) together with the
    noise sum. At each step, windows go to the model's device ``windows_per_batch`` at a time
    (doubled for classifier-free guidance: unconditional and conditional halves in one
    batch), their predictions are summed per frame, divided by the per-frame counts, and the
    scheduler steps all N frames. Returns the denoised latents (N, C, h, w).

    Host memory: ``latents`` and the noise sum, plus a scheduler step's temporaries; a DDIM
    step is per frame without history, so it runs ``step_chunk`` frames at a time and
    updates ``latents`` in place (other schedulers step the whole sequence at once).

    A model with ``static_batch_shapes`` (compiled) gets every batch padded to
    ``windows_per_batch`` windows with copies of the batch's last window, whose predictions
    are dropped: one input shape, the same result.

    Several processes (``torch.distributed`` initialised, e.g. under ``torchrun``): each
    rank denoises every world-size-th window (``rank_batches``), the per-frame noise sums are
    all-reduced (Algorithm 1's sum over windows is exactly an all-reduce), and every rank
    steps the scheduler identically, so all ranks hold the same latents as one process.
    """
    length = latents.shape[0]
    if len(conditions) != length:
        raise InputError(f"{len(conditions)} condition frames for {length} latent frames")
    device, dtype = model.device, model.dtype
    use_cfg = guidance_scale > 1.0
    count = window_counts(windows, length).to(latents.device)  # (N,)
    rank, world = rank_and_world()
    batches = rank_batches(windows, windows_per_batch, rank, world)
    scheduler.set_timesteps(num_inference_steps, device=latents.device)
    timesteps = scheduler.timesteps
    bar = tqdm(
        total=len(timesteps) * len(batches),
        desc=description,
        unit="batch",
        disable=not progress,
        dynamic_ncols=True,
    )
    noise_sum = torch.zeros_like(latents)[None]  # (1, N, C, h, w)
    pad_to = windows_per_batch if getattr(model, "static_batch_shapes", False) else None
    for step_index, t in enumerate(timesteps):
        noise_sum.zero_()
        for batch in batches:
            padded = batch + [batch[-1]] * (pad_to - len(batch)) if pad_to else batch
            prediction = _predict_windows(
                model,
                scheduler,
                latents,
                conditions,
                tokens,
                null_tokens,
                padded,
                t,
                guidance_scale if use_cfg else None,
                conditioning_scale,
                inpaint,
                device,
                dtype,
            )[: len(batch)]  # (len(batch), ws, C, h, w): padding dropped
            for (start, stop), window_prediction in zip(batch, prediction, strict=True):
                add_window(noise_sum, start, stop, window_prediction[None])
            bar.set_postfix(step=f"{step_index + 1}/{len(timesteps)}")
            bar.update(1)
        if world > 1:
            _all_reduce_sum(noise_sum)
        latents = step_sequence(scheduler, noise_sum[0], count, t, latents, step_chunk)
        if callback is not None:
            callback(step_index, int(t), latents)
    bar.close()
    return latents


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collective_device() -> torch.device:
    """Where the default process group's collectives take tensors: this rank's GPU under
    NCCL, the host under gloo."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce_sum(tensor: torch.Tensor) -> None:
    """In-place sum over ranks, through ``collective_device``."""
    import torch.distributed as dist

    link = collective_device()
    if tensor.device == link:
        dist.all_reduce(tensor)
    else:
        on_link = tensor.to(link)
        dist.all_reduce(on_link)
        tensor.copy_(on_link)


def step_sequence(
    scheduler: Any,
    noise_sum: torch.Tensor,
    count: torch.Tensor,
    t: torch.Tensor,
    latents: torch.Tensor,
    chunk: int,
) -> torch.Tensor:
    """Average the summed predictions (Algorithm 1 line 13) and step the sequence (line 14).

    ``noise_sum`` and ``latents`` are (N, C, h, w), ``count`` (N,). DDIM's update is per
    frame and keeps no history, so it is applied ``chunk`` frames at a time, in place.
    """
    if not isinstance(scheduler, DDIMScheduler):
        return scheduler.step(normalize_windows(noise_sum[None], count)[0], t, latents).prev_sample
    for start in range(0, latents.shape[0], chunk):
        part = slice(start, start + chunk)
        noise = normalize_windows(noise_sum[None, part], count[part])[0]
        latents[part] = scheduler.step(noise, t, latents[part]).prev_sample
    return latents


def _predict_windows(
    model: Any,
    scheduler: Any,
    latents: torch.Tensor,
    conditions: FrameSource,
    tokens: torch.Tensor,
    null_tokens: torch.Tensor,
    batch: list[Window],
    t: torch.Tensor,
    guidance_scale: float | None,
    conditioning_scale: float,
    inpaint: Inpainting | None,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Guided noise prediction for one batch of equal-size windows -> (B, F, C, h, w) float32."""
    size = len(batch)

    def gather(sequence: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (B, F, ...)
        return torch.stack([sequence[a:b] for a, b in batch]).to(device, dtype)

    noisy = scheduler.scale_model_input(gather(latents), t)  # (B, F, C, h, w)
    frames = torch.stack([conditions[a:b] for a, b in batch]).to(device, dtype)  # (B, F, 3, H, W)
    window_tokens = tokens.expand(size, *tokens.shape[1:])  # (B, N_tok, D)
    inpaint_pair = (
        None if inpaint is None else (gather(inpaint.mask), gather(inpaint.masked_latents))
    )
    if guidance_scale is not None:
        noisy, frames = torch.cat([noisy, noisy]), torch.cat([frames, frames])
        window_tokens = torch.cat([null_tokens.expand_as(window_tokens), window_tokens])
        if inpaint_pair is not None:
            inpaint_pair = (torch.cat([inpaint_pair[0]] * 2), torch.cat([inpaint_pair[1]] * 2))
    timestep = t.to(device).expand(noisy.shape[0])
    with torch.no_grad():
        prediction = model.predict(
            noisy,
            timestep,
            frames,
            window_tokens,
            conditioning_scale=conditioning_scale,
            inpaint=inpaint_pair,
        ).float()
    if guidance_scale is not None:
        unconditional, conditional = prediction.chunk(2)
        prediction = unconditional + guidance_scale * (conditional - unconditional)
    return prediction


def latent_shape(model: Any, height: int, width: int) -> tuple[int, int, int]:
    """(C, h, w) of the codec's latent for an (H, W) image."""
    factor = model.codec.factor
    if height % factor or width % factor:
        raise InputError(
            f"frames of {width}x{height} px are not divisible by the codec factor {factor}"
        )
    return model.codec.latent_channels, height // factor, width // factor


def decode_latents(
    model: Any, latents: torch.Tensor, batch_size: int, progress: bool = True
) -> Iterator[torch.Tensor]:
    """Decode (N, C, h, w) latents ``batch_size`` frames at a time -> (F, 3, H, W) in [0, 1] on the host."""
    for start in tqdm(
        range(0, latents.shape[0], batch_size), desc="decode", unit="chunk", disable=not progress
    ):
        with torch.no_grad():
            images = model.codec.decode(
                latents[start : start + batch_size].to(model.device, model.dtype)
            )
        yield ((images.float() + 1) / 2).clamp(0, 1).cpu()


def batches_across_ranks(
    compute: Callable[[int, int], torch.Tensor],
    length: int,
    batch_size: int,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    progress: bool = True,
    description: str = "batches",
) -> Iterator[tuple[int, torch.Tensor]]:
    """A per-frame computation over ``length`` frames split across the process group's ranks.

    The single-process batches (``batch_size`` frames) are dealt to the ranks in rounds of one
    batch per rank; each rank runs ``compute(start, stop)`` -> (stop - start, *shape) on its
    own batch, and the round's results are all-gathered (through ``collective_device``; the
    last round's missing frames are padding). Yields, on every rank, (first frame of the round,
    its (<= world x batch_size, *shape) results) in frame order.
    """
    import torch.distributed as dist

    rank, world = rank_and_world()
    link = collective_device()
    rounds = range(0, length, batch_size * world)
    for first in tqdm(rounds, desc=description, unit="round", disable=not progress):
        chunk = torch.zeros(batch_size, *shape, dtype=dtype, device=link)
        mine = first + rank * batch_size
        if mine < length:
            part = compute(mine, min(length, mine + batch_size))
            chunk[: len(part)] = part.to(link, dtype)
        gathered = [torch.empty_like(chunk) for _ in range(world)]
        dist.all_gather(gathered, chunk)
        yield first, torch.cat(gathered)[: min(length, first + batch_size * world) - first]


def decode_across_ranks(
    model: Any, latents: torch.Tensor, batch_size: int, path: Path, progress: bool = True
) -> np.memmap:
    """Decode (N, C, h, w) latents split across ranks -> the whole video, (N, H, W, 3) uint8, on every rank.

    The frame batches of ``decode_latents`` are dealt to the ranks (``batches_across_ranks``)
    and each round is spooled to a ``.npy`` memmap at ``path``, so memory stays at one round
    of frames.
    """
    length = latents.shape[0]
    height, width = (side * model.codec.factor for side in latents.shape[-2:])
    spool = np.lib.format.open_memmap(
        path, mode="w+", dtype=np.uint8, shape=(length, height, width, 3)
    )

    def decode(start: int, stop: int) -> torch.Tensor:  # (F, H, W, 3) uint8
        (images,) = decode_latents(model, latents[start:stop], batch_size, False)
        return torch.from_numpy(to_uint8_frames(images))

    rounds = batches_across_ranks(
        decode, length, batch_size, (height, width, 3), torch.uint8, progress, "decode"
    )
    for first, frames in rounds:
        spool[first : first + len(frames)] = frames.cpu().numpy()
    spool.flush()
    return spool


def to_uint8_frames(images: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [0, 1] -> uint8 (F, H, W, 3)."""
    return (images.movedim(1, -1) * 255).round().to(torch.uint8).numpy()


@dataclasses.dataclass
class AnchorPipelineOutput:
    """``frames``: float32 numpy (N, H, W, 3) or torch (N, 3, H, W), values in [0, 1]."""

    frames: np.ndarray | torch.Tensor


class AnchorPipeline:
    """Inference-only anchor video pipeline: appearance reference + condition sequence -> video.

    ``model`` is a ``StructureGuidedDiffusion`` (codec, ``encode_appearance``, ``predict``);
    ``scheduler`` a diffusers scheduler, e.g. ``model.make_scheduler("ddim")`` (the default
    when None) or ``model.make_scheduler("dpm++")``.
    """

    def __init__(self, model: Any, scheduler: Any = None) -> None:
        self.model = model
        self.scheduler = scheduler if scheduler is not None else model.make_scheduler("ddim")

    def __call__(
        self,
        reference_image: Any,
        conditions: Any,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.5,
        controlnet_conditioning_scale: float = 2.0,
        window_size: int = 16,
        window_overlap: int = 4,
        generator: torch.Generator | None = None,
        temporal: bool = True,
        output_type: str = "np",
        callback: StepCallback | None = None,
        progress: bool = True,
        latents: torch.Tensor | None = None,
        windows_per_batch: int = 1,
        decode_batch_size: int = 16,
        latents_device: str | torch.device = "cpu",
    ) -> AnchorPipelineOutput:
        """Generate the whole video in memory (short clips); see ``generate_frames`` to stream.

        ``reference_image``: appearance reference, uint8 (H, W, 3), PIL image or float
        (3, H, W) in [0, 1]. ``conditions``: N condition frames, a tensor/array or a lazy
        ``FrameSource``; their size sets the output size. ``guidance_scale``: classifier-free
        guidance on the appearance (<= 1 disables the unconditional pass).
        ``controlnet_conditioning_scale``: W_c of eq. 2. ``window_size`` / ``window_overlap``:
        ws / os of Algorithm 1. ``generator``: CPU generator for the initial noise.
        ``temporal=False``: frame-wise ablation. ``callback(step, t, latents)`` after each
        step. ``latents``: initial noise (N, C, h, w) instead of drawing it.
        ``windows_per_batch``: windows per forward pass. ``latents_device``: where the whole
        latent sequence lives (the host by default, so length is bounded by RAM only).
        ``output_type="np"``: float32 (N, H, W, 3); ``"pt"``: float32 tensor (N, 3, H, W); both in [0, 1].
        """
        if output_type not in ("np", "pt"):
            raise InputError(f"output_type must be 'np' or 'pt', got {output_type!r}")
        final = self.denoise(
            reference_image,
            conditions,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            controlnet_conditioning_scale=controlnet_conditioning_scale,
            window_size=window_size,
            window_overlap=window_overlap,
            generator=generator,
            temporal=temporal,
            callback=callback,
            progress=progress,
            latents=latents,
            windows_per_batch=windows_per_batch,
            latents_device=latents_device,
        )
        video = torch.cat(list(decode_latents(self.model, final, decode_batch_size, progress)))
        return AnchorPipelineOutput(video.movedim(1, -1).numpy() if output_type == "np" else video)

    def generate_frames(
        self,
        reference_image: Any,
        conditions: Any,
        *,
        decode_batch_size: int = 16,
        progress: bool = True,
        **kwargs: Any,
    ) -> Iterator[np.ndarray]:
        """Yield the video as uint8 (H, W, 3) frames in order, decoding ``decode_batch_size`` at a time.

        All frames are final only after the last denoising step, so denoising runs first and
        decoding streams chunk by chunk afterwards; no more than one decoded chunk is held.
        Keyword arguments are those of ``__call__``.
        """
        final = self.denoise(reference_image, conditions, progress=progress, **kwargs)
        for images in decode_latents(self.model, final, decode_batch_size, progress):
            yield from to_uint8_frames(images)

    def denoise(
        self,
        reference_image: Any,
        conditions: Any,
        num_inference_steps: int = 20,
        guidance_scale: float = 3.5,
        controlnet_conditioning_scale: float = 2.0,
        window_size: int = 16,
        window_overlap: int = 4,
        generator: torch.Generator | None = None,
        temporal: bool = True,
        callback: StepCallback | None = None,
        progress: bool = True,
        latents: torch.Tensor | None = None,
        windows_per_batch: int = 1,
        latents_device: str | torch.device = "cpu",
        condition_cache_bytes: int | None = None,
    ) -> torch.Tensor:
        """Run Algorithm 1 over the whole sequence -> denoised latents (N, C, h, w) on ``latents_device``.

        ``temporal=False`` is the frame-wise ablation: windows of one frame without overlap,
        ``window_size * windows_per_batch`` frames folded into one forward's batch.
        ``condition_cache_bytes``: uint8 condition frames up to this size are kept on the
        model's device for all steps (``accel.cache_frames``; None: 1 GiB on CUDA, 0 elsewhere).
        """
        conditions = as_frame_source(
            cache_frames(conditions, self.model.device, condition_cache_bytes)
        )
        length = len(conditions)
        reference = image_to_unit_tensor(reference_image)
        if reference.dim() == 3:
            reference = reference[None]
        _, _, height, width = conditions[0:1].shape
        windows, windows_per_batch = plan_windows(
            self.model, length, window_size, window_overlap, temporal, windows_per_batch
        )
        latents = initial_latents(
            self.model, self.scheduler, length, height, width, generator, latents, latents_device
        )
        tokens, null_tokens = appearance_tokens(self.model, reference)
        inpaint = (
            background_inpainting(self.model, length, height, width, latents.device)
            if self.model.config.background_plate
            else None
        )
        return denoise_overlapped(
            self.model,
            self.scheduler,
            latents,
            conditions,
            tokens,
            null_tokens,
            windows=windows,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            conditioning_scale=controlnet_conditioning_scale,
            windows_per_batch=windows_per_batch,
            inpaint=inpaint,
            callback=callback,
            progress=progress,
            description="body" if temporal else "body (frame-wise)",
        )


def background_inpainting(
    model: Any, length: int, height: int, width: int, device: str | torch.device = "cpu"
) -> Inpainting:
    """The body's background plate (``model.background``) as the context input of every one
    of ``length`` frames: one (1, h, w) mask and one (C, h, w) masked latent, expanded to N
    frames without copies. A plate of another size than the frames is resized to them."""
    plate = model.background
    if plate is None:
        raise InputError(
            "this body model reads a background plate (model.background_plate) but has none; "
            "load it from its run directory"
        )
    image, hole = plate.image[None].float(), plate.hole[None].float()  # (1, 3, S, S), (1, 1, S, S)
    if image.shape[-2:] != (height, width):
        image = torch.nn.functional.interpolate(image, (height, width), mode="area")
        hole = torch.nn.functional.interpolate(hole, (height, width), mode="nearest")
    with torch.no_grad():
        mask, masked = model.inpaint_inputs(
            image[None].to(model.device, model.dtype), hole[None].to(model.device, model.dtype)
        )  # (1, 1, 1, h, w), (1, 1, C, h, w)
    mask, masked = mask[0].float().to(device), masked[0].float().to(device)
    return Inpainting(
        mask.expand(length, *mask.shape[1:]), masked.expand(length, *masked.shape[1:])
    )


def plan_windows(
    model: Any,
    length: int,
    window_size: int,
    window_overlap: int,
    temporal: bool,
    windows_per_batch: int,
) -> tuple[list[Window], int]:
    """Window schedule and windows per forward for a sequence of ``length`` frames.

    ``temporal=False`` (the frame-wise ablation) uses one-frame windows without overlap and
    folds ``window_size * windows_per_batch`` frames into one forward's batch.
    """
    if not temporal:
        return window_schedule(length, 1, 0), window_size * windows_per_batch
    longest = getattr(model.config, "motion_max_seq_length", None) if model.is_temporal else None
    if longest is not None and min(window_size, length) > longest:
        raise InputError(
            f"window_size {window_size} exceeds the {longest} frames the model's temporal layers support"
        )
    return window_schedule(length, window_size, window_overlap), windows_per_batch


def initial_latents(
    model: Any,
    scheduler: Any,
    length: int,
    height: int,
    width: int,
    generator: torch.Generator | None,
    latents: torch.Tensor | None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Initial noise (N, C, h, w) float32 on ``device``, scaled by ``init_noise_sigma``.

    Noise is drawn on the generator's device; a CPU generator (recommended) gives the same
    video on any device, and frame i's noise does not depend on the sequence length.
    """
    shape = (length, *latent_shape(model, height, width))
    if latents is None:
        noise_device = generator.device if generator is not None else "cpu"
        latents = torch.randn(shape, generator=generator, device=noise_device, dtype=torch.float32)
    else:
        latents = latents.reshape(-1, *latents.shape[-3:]) if latents.dim() == 5 else latents
        if tuple(latents.shape) != shape:
            raise InputError(f"latents have shape {tuple(latents.shape)}, expected {shape}")
    return latents.to(device, torch.float32) * scheduler.init_noise_sigma


def spool_frames(frames: Iterator[np.ndarray], path: str | Path, count: int) -> np.memmap:
    """Write ``count`` streamed uint8 (H, W, 3) frames to a ``.npy`` memmap at ``path`` and return it.

    Lets a second pass (face enhancement) read generated frames by index without holding them
    all in RAM.
    """
    memmap: np.memmap | None = None
    written = 0
    for frame in frames:
        if memmap is None:
            memmap = np.lib.format.open_memmap(
                path, mode="w+", dtype=np.uint8, shape=(count, *frame.shape)
            )
        if written >= count:
            raise InputError(f"more than {count} frames to spool")
        memmap[written] = frame
        written += 1
    if memmap is None or written != count:
        raise InputError(f"expected {count} frames to spool, got {written}")
    memmap.flush()
    return memmap
