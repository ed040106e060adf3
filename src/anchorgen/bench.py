"""``anchorgen bench``: the paper's rendering setting timed stage by stage (issue 6).

Make-Your-Anchor+ Table IV / S3: 300 frames at 512 px, 20 DDIM steps, CFG 3.5, W_c 2,
ws 16 / os 4 (Algorithm 1), face enhancement at 256 px (Algorithm 2). The models are built
from their preset's config with random weights (no checkpoint needed): the architecture,
not the weights, decides the cost. The motion is the embedded sample's landmarks, rendered
and looped forwards and backwards to the requested length.

Two paths run on the same models, seed and initial noise:

- fast: the pipelines with every lever on (``anchorgen.pipelines.accel``): bf16 on CUDA,
  channels-last, SDPA attention, ``windows_per_batch`` windows per forward with CFG folded
  into the batch, conditions and latents kept on the device, the face pass batched across
  frames, optional ``torch.compile``;
- reference: the naive loop on the first ``reference_frames`` frames: one window per
  forward, the two CFG halves as two forwards, eager, float32, latents and conditions on the
  host. The fast path also runs on that prefix; the speed-up is the ratio of their seconds
  per frame and the PSNR between their outputs checks that the fast path computes the same
  video.

Under ``torchrun --nproc_per_node N -m anchorgen bench`` (``torchrun_process_group``) every
rank renders with the fast path on its own device: each denoising step's windows are split
across ranks and the noise sums all-reduced (Algorithm 1, ``denoise_overlapped``), the body
decode is split by frame batches and all-gathered; the face pass's denoise is split the same
way while its crops, decode and paste-back run on every rank (rank 0's are timed); rank 0
encodes and reports. The naive reference runs single-process only.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import gc
import itertools
import os
import platform
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anchorgen.config import BaseConfig, require
from anchorgen.pipelines.accel import ATTENTION_BACKENDS, COMPILE_MODES

BENCH_PRESETS = ("auto", "sd15", "scratch-256", "tiny")
STAGES = ("body_denoise", "decode", "face", "encode")
SCHEMA_VERSION = 2
STAGE_SPLIT = {
    "body_denoise": "windows of each step split across ranks, noise sums all-reduced",
    "decode": "frame batches split across ranks, all-gathered",
    "face": "crops and their encoding, denoise windows and decode split across ranks; "
    "paste-back on rank 0",
    "encode": "rank 0",
}
"""How each stage uses several processes (recorded in the JSON under ``distributed``)."""
_RUN_IDS = itertools.count()


@dataclasses.dataclass
class BenchConfig(BaseConfig):
    """Settings of ``anchorgen bench`` (the paper's generation setting by default)."""

    preset: str = "auto"
    """'sd15' (the paper's SD1.5 architecture), 'scratch-256' (the from-scratch body and face
    models) or 'tiny'; 'auto': sd15 on CUDA. Without CUDA the tiny preset runs."""
    frames: int = 300
    """Length of the benchmarked motion (paper: 300 frames)."""
    reference_frames: int = 40
    """Frames the naive reference (and the fast path, for the comparison) render; 0 skips it."""
    profile_frames: int = 0
    """After the timed run, one body denoising step over this many frames runs under
    ``torch.profiler``; the JSON's ``profile`` gives device time (CPU time without CUDA) by
    operator kind and the costliest operators. 0 skips it."""
    num_inference_steps: int = 20
    """Denoising steps (paper: 20)."""
    scheduler: str = "ddim"
    """Sampler of body and face: 'ddim' (paper) or 'dpm++' (DPM-Solver++, for fewer steps)."""
    guidance_scale: float = 3.5
    """Classifier-free guidance on the appearance (paper: 3.5)."""
    controlnet_conditioning_scale: float = 2.0
    """W_c of eq. 2 (paper: 2.0)."""
    window_size: int = 16
    """Algorithm 1 ws (paper: 16)."""
    window_overlap: int = 4
    """Algorithm 1 os (paper: 4)."""
    windows_per_batch: int = 2
    """Fast path: body windows per forward pass (doubled by CFG). 2 keeps the sd15 run under
    16 GB at 3 % more time than 4 (docs/BENCHMARKS.md, fourth GPU session)."""
    face_windows_per_batch: int = 4
    """Fast path: face batches of ``window_size`` frames per forward (the face model is frame-wise)."""
    decode_batch_size: int = 8
    """Fast path: frames per codec decode/encode call (sd15 at 16: a 14.0 GiB decode peak; 8: 10.4)."""
    dtype: str = "auto"
    """Fast path weights: 'auto' (bfloat16 on CUDA, float32 on a CPU), 'float32', 'bfloat16', 'float16'."""
    channels_last: bool = True
    """Fast path: channels-last memory format for the convolutional networks."""
    compile: str = "off"
    """Fast path: torch.compile of UNet and structure branch: 'off', 'default' or
    'reduce-overhead'; the compilation is paid in the warm-up and reported."""
    fuse_qkv: bool = False
    """Fast path: one fused query/key/value projection per attention layer (``accel.fuse_qkv_projections``)."""
    attention_backend: str = "auto"
    """Fast path: the only SDPA backend attention may use: 'auto' (PyTorch's choice), 'flash',
    'efficient', 'cudnn' or 'math'."""
    condition_cache_mib: int = 1024
    """Fast path: condition frames up to this size stay on the device as uint8 (else streamed)."""
    encode_workers: int = 0
    """Threads that watermark frames while one thread encodes H.264 (0: up to 8, one per CPU core)."""
    warmup: bool | None = None
    """Run one denoising step of each path's batch shapes before timing (None: on CUDA or when compiling)."""
    source_frames: int = 24
    """Distinct frames of the embedded sample's stored landmarks (2-24), looped to ``frames``."""
    fps: float = 25.0
    """Frame rate of the encoded video."""
    matmul_size: int = 0
    """Side of the square matmul that measures the device's rate; 0: 8192 (bf16) on CUDA, 4096 (fp32) on a CPU."""
    min_psnr: float = 35.0
    """Fast vs reference PSNR (dB) at or above which the check passes."""
    seed: int = 0
    """Seed of the random weights and the initial noise."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda[:N]'."""

    def __post_init__(self) -> None:
        require(self.preset in BENCH_PRESETS, f"preset must be one of {BENCH_PRESETS}")
        require(self.frames >= 1, "frames must be >= 1")
        require(
            0 <= self.reference_frames <= self.frames, "reference_frames must be in [0, frames]"
        )
        require(0 <= self.profile_frames <= self.frames, "profile_frames must be in [0, frames]")
        require(self.num_inference_steps >= 1, "num_inference_steps must be >= 1")
        require(
            self.scheduler in ("ddim", "dpm++"),
            f"scheduler must be 'ddim' or 'dpm++', got {self.scheduler!r}",
        )
        require(self.window_size >= 1, "window_size must be >= 1")
        require(
            0 <= self.window_overlap < self.window_size,
            "window_overlap must be in [0, window_size)",
        )
        require(
            self.windows_per_batch >= 1 and self.face_windows_per_batch >= 1,
            "windows_per_batch and face_windows_per_batch must be >= 1",
        )
        require(self.decode_batch_size >= 1, "decode_batch_size must be >= 1")
        require(
            self.dtype in ("auto", "float32", "bfloat16", "float16"),
            f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {self.dtype!r}",
        )
        require(self.compile in COMPILE_MODES, f"compile must be one of {COMPILE_MODES}")
        require(
            self.attention_backend in ATTENTION_BACKENDS,
            f"attention_backend must be one of {ATTENTION_BACKENDS}",
        )
        require(self.condition_cache_mib >= 0, "condition_cache_mib must be >= 0")
        require(self.encode_workers >= 0, "encode_workers must be >= 0")
        require(self.fps > 0, "fps must be positive")
        require(self.matmul_size >= 0, "matmul_size must be >= 0")


# ----------------------------------------------------------------------------- models


def bench_model_configs(preset: str) -> tuple[Any, Any]:
    """(body, face) ``ModelConfig`` of a benchmark preset, random weights (``pretrained=False``).

    sd15: the paper's body SGDM and a face SGDM of the same SD1.5 architecture with the
    inpainting input (2C + 1 = 9 channels) at 256 px, frame-wise; scratch-256: the
    ``scratch-256`` body and the ``face`` preset; tiny: the tiny preset with temporal layers at
    64 px (the watermark's smallest frame) and its inpainting twin at 32 px.
    """
    from anchorgen.presets import get_preset

    if preset == "sd15":
        body = get_preset("sd15").model.replace(pretrained=False)
        return body, body.replace(part="face", image_size=256, temporal=False)
    if preset == "scratch-256":
        return get_preset("scratch-256").model, get_preset("face").model
    tiny = get_preset("tiny").model
    return tiny.replace(temporal=True, image_size=64), tiny.replace(part="face")


def build_models(preset: str, device: torch.device, seed: int) -> tuple[Any, Any]:
    """Body and face ``StructureGuidedDiffusion`` in float32, initialised directly on ``device``.
    A body that reads a background plate (``scratch-256``) gets a grey one with the middle
    third unseen: its values do not change the cost."""
    from anchorgen.models.sgdm import BackgroundPlate, StructureGuidedDiffusion

    body_config, face_config = bench_model_configs(preset)
    torch.manual_seed(seed)
    with torch.device(device):
        body = StructureGuidedDiffusion.build(body_config).eval()
        face = StructureGuidedDiffusion.build(face_config).eval()
    if body_config.background_plate:
        size = body_config.image_size
        hole = torch.zeros(1, size, size)  # (1, S, S), 1 where unseen
        hole[:, :, size // 3 : 2 * size // 3] = 1.0
        body.background = BackgroundPlate(torch.zeros(3, size, size), hole)
    return body.requires_grad_(False), face.requires_grad_(False)


# ----------------------------------------------------------------------------- motion


@dataclasses.dataclass
class BenchMotion:
    """The benchmark's motion in the models' spaces; frame arrays are disk-backed."""

    conditions: np.ndarray
    """(N, S, S, 3) uint8 condition renders at the body model's size."""
    face_conditions: np.ndarray
    """(N, Sf, Sf, 3) uint8 face-space renders at the face model's size."""
    face_points: np.ndarray
    """(N, 478, 3) face mesh per frame in body-model pixels."""
    affines: np.ndarray
    """(N, 2, 3) body frame -> aligned face crop."""
    reference: np.ndarray
    """(S, S, 3) uint8 appearance reference."""
    face_reference: np.ndarray
    """(Sf, Sf, 3) uint8 aligned face reference."""


def ping_pong_order(unique: int, length: int) -> np.ndarray:
    """(length,) indices playing ``unique`` frames forwards, backwards, forwards... without jumps."""
    cycle = np.concatenate([np.arange(unique), np.arange(unique - 2, 0, -1)])
    return cycle[np.arange(length) % len(cycle)]


SAMPLE_LANDMARKS = Path(__file__).parent / "prepare" / "sample_landmarks.npz"
"""MediaPipe Holistic landmarks of the embedded sample's first 24 frames at 12.5 fps, 512 px
(``track_sample(24)``), stored so the benchmark needs neither MediaPipe nor its models."""
SAMPLE_FPS = 12.5


def track_sample(count: int) -> Any:
    """Track the embedded sample's first ``count`` frames (512 px, ``SAMPLE_FPS``) with Holistic."""
    from anchorgen.prepare.holistic import track_frames
    from anchorgen.prepare.sample import sample_frame

    frames = [sample_frame(i / SAMPLE_FPS, 512) for i in range(count)]
    return track_frames(frames, SAMPLE_FPS, (512, 512), progress=False)


def sample_motion(
    length: int,
    size: int,
    face_size: int,
    source_frames: int,
    workdir: Path,
    style: str = "mesh",
) -> BenchMotion:
    """The embedded sample's landmarks rendered once per distinct frame, looped to ``length``.

    The stored landmarks (``SAMPLE_LANDMARKS``) are smoothed, cropped like a driver video and
    scaled to the body model's ``size``; each of the first ``source_frames`` frames is
    rendered once (body conditions in ``style``, face space as mesh) and the ping-pong order
    spools ``length`` frames to disk-backed arrays.
    """
    from anchorgen.errors import InputError
    from anchorgen.landmarks import LandmarkSequence
    from anchorgen.pipelines.anchor import spool_frames
    from anchorgen.prepare.crop import compute_clip_crop
    from anchorgen.prepare.face import warp_face
    from anchorgen.prepare.pipeline import clip_face_affines, landmark_renders
    from anchorgen.prepare.sample import sample_frame
    from anchorgen.prepare.smoothing import smooth_sequence

    stored = LandmarkSequence.load(SAMPLE_LANDMARKS)
    if not 2 <= source_frames <= len(stored):
        raise InputError(f"source_frames must be in [2, {len(stored)}], got {source_frames}")
    smoothed = smooth_sequence(stored.slice(0, source_frames))
    box = compute_clip_crop(smoothed, (512, 512))
    landmarks = smoothed.transformed(box.affine(size), (size, size))
    affines = clip_face_affines(landmarks, face_size)  # (K, 2, 3)
    renders = [
        landmark_renders(landmarks, k, affines[k], size, face_size, style)
        for k in range(source_frames)
    ]
    order = ping_pong_order(source_frames, length)
    conditions = spool_frames((renders[k][0] for k in order), workdir / "conditions.npy", length)
    face_conditions = spool_frames(
        (renders[k][1] for k in order), workdir / "face_conditions.npy", length
    )
    reference = _warp_image(sample_frame(0.0, 512), box.affine(size), size)
    return BenchMotion(
        conditions=conditions,
        face_conditions=face_conditions,
        face_points=landmarks.face[order],
        affines=affines[order],
        reference=reference,
        face_reference=warp_face(reference, affines[0], face_size),
    )


def _warp_image(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.warpAffine(image, affine, (size, size), flags=cv2.INTER_AREA)


# ----------------------------------------------------------------------------- measurement


class StageTimer:
    """Wall-clock seconds per named stage; on CUDA the device is synchronised at both ends and
    the stage's peak of allocated GPU memory is kept too (``peak_gib``).

    ``barrier``: also wait for every rank of the process group at both ends, so a stage's
    seconds are those of its slowest rank.
    """

    def __init__(self, device: torch.device, barrier: bool = False) -> None:
        self.device = device
        self.barrier = barrier
        self.seconds: dict[str, float] = {}
        self.peak_gib: dict[str, float] = {}
        self._peak_between_stages = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self.barrier:
            import torch.distributed as dist

            dist.barrier()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._sync()
        cuda = self.device.type == "cuda"
        if cuda:  # the process-wide peak is kept by ``peak_gpu_gib`` across these resets
            self._peak_between_stages = max(
                self._peak_between_stages, _max_allocated_gib(self.device)
            )
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        yield
        self._sync()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        if cuda:
            peak = _max_allocated_gib(self.device)
            self.peak_gib[name] = max(self.peak_gib.get(name, 0.0), peak)

    def peak_gpu_gib(self) -> float | None:
        """Peak allocated GPU memory (GiB) since the timer was made (None off CUDA)."""
        if self.device.type != "cuda":
            return None
        return max(
            self._peak_between_stages,
            _max_allocated_gib(self.device),
            *self.peak_gib.values(),
        )

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def host_resident_kib() -> dict[str, int]:
    """This process's resident host memory in KiB: ``anonymous`` (its own allocations) and
    ``file_backed`` (mapped files, e.g. the disk-backed frame spools), from
    ``/proc/self/status``; empty where that file does not exist (not Linux)."""
    fields = {"RssAnon:": "anonymous", "RssFile:": "file_backed"}
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    rows = (line.split() for line in lines)
    return {fields[row[0]]: int(row[1]) for row in rows if row and row[0] in fields}


class HostMemorySampler:
    """Peak resident host memory (GiB) by kind while active, sampled every ``interval`` seconds
    in a thread.

    File-backed pages are mapped spool files that the kernel writes back and drops under
    pressure; the anonymous peak is the memory a run holds, so "host memory stays flat" is a
    statement about it. ``peak_gib`` is None where ``host_resident_kib`` reads nothing.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._peak_kib: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for kind, kib in host_resident_kib().items():
            self._peak_kib[kind] = max(self._peak_kib.get(kind, 0), kib)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> HostMemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak_gib(self) -> dict[str, float] | None:
        return {k: v / 2**20 for k, v in self._peak_kib.items()} or None


def _max_allocated_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """Achieved TFLOP/s of a square ``size``^3 matmul (2 size^3 FLOPs each) after one warm-up."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    timer = StageTimer(device)
    a @ b
    with timer.stage("matmul"):
        for _ in range(repeats):
            a @ b
    return 2 * size**3 * repeats / timer.total / 1e12


def forward_flops(model: Any, frames: int, tokens: torch.Tensor, batch: int = 2) -> float:
    """FLOPs of one forward over a window of ``frames`` frames, ``batch`` copies (2: CFG folded).

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` on the model's device and dtype.
    """
    from torch.utils.flop_counter import FlopCounterMode

    c, size = model.config.latent_channels, model.config.latent_size
    image = model.config.image_size
    kw = dict(device=model.device, dtype=model.dtype)
    noisy = torch.randn(batch, frames, c, size, size, **kw)
    conditions = torch.rand(batch, frames, 3, image, image, **kw)
    inpaint = None
    if model.config.context_input:
        inpaint = (
            torch.ones(batch, frames, 1, size, size, **kw),
            torch.randn(batch, frames, c, size, size, **kw),
        )
    timesteps = torch.full((batch,), 500, device=model.device, dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.predict(
            noisy, timesteps, conditions, tokens.expand(batch, -1, -1).to(**kw), 1.0, inpaint
        )
    return float(counter.get_total_flops())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 videos of the same shape (capped by an MSE floor of 1e-10)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10.0 * float(np.log10(255.0**2 / max(mse, 1e-10)))


# ----------------------------------------------------------------------------- one rendering


@dataclasses.dataclass
class PathSettings:
    """How one path runs the pipelines."""

    windows_per_batch: int
    face_windows_per_batch: int
    decode_batch_size: int
    latents_device: torch.device
    condition_cache_bytes: int


def render_video(
    body: Any,
    face: Any,
    motion: BenchMotion,
    config: BenchConfig,
    settings: PathSettings,
    length: int,
    noise: torch.Tensor,
    face_noise: torch.Tensor,
    timer: StageTimer,
    workdir: Path,
    *,
    steps: int | None = None,
    video: Path | None = None,
    progress: bool = True,
    checks: dict | None = None,
) -> np.ndarray:
    """Body denoise -> decode -> face enhancement (-> marked H.264 at ``video``), each timed.

    Renders the first ``length`` frames; ``noise`` (>= length, C, h, w) and ``face_noise``
    (>= faces, C, hf, wf) are the initial noise. Returns the final frames (length, H, W, 3)
    uint8 as a disk-backed array (before the watermark). ``checks``, when given, receives
    ``finite_latents``: whether every denoised body latent is finite (outside the timing).

    With a process group of several ranks every rank calls this (see ``STAGE_SPLIT``); rank 0
    returns the frames, the other ranks None.
    """
    from anchorgen.pipelines.anchor import (
        decode_across_ranks,
        decode_latents,
        rank_and_world,
        spool_frames,
        to_uint8_frames,
    )
    from anchorgen.pipelines.face import FacePipeline

    rank, world = rank_and_world()
    steps = config.num_inference_steps if steps is None else steps
    common = denoise_settings(config, settings, steps, progress)
    conditions = motion.conditions[:length]
    tag = f"{next(_RUN_IDS)}_{length}_{steps}"
    with timer.stage("body_denoise"):
        latents = denoise_body(body, motion, config, settings, length, noise, steps, progress)
    with timer.stage("decode"):
        if world > 1:
            body_frames = decode_across_ranks(
                body, latents, settings.decode_batch_size, workdir / f"body_{tag}.npy", progress
            )
        else:
            decoded = (
                frame
                for images in decode_latents(body, latents, settings.decode_batch_size, progress)
                for frame in to_uint8_frames(images)
            )
            body_frames = spool_frames(decoded, workdir / f"body_{tag}.npy", length)
    if checks is not None:
        checks["finite_latents"] = bool(torch.isfinite(latents).all())
    del latents
    face_points, affines = motion.face_points[:length], motion.affines[:length]
    faces = int(_has_face(face_points, affines).sum())
    with timer.stage("face"):
        enhanced = FacePipeline(face, face.make_scheduler(config.scheduler)).enhance_frames(
            body_frames,
            motion.face_reference,
            conditions,
            face_points,
            affines,
            face_conditions=motion.face_conditions[:length],
            crop_size=int(face.config.image_size),
            windows_per_batch=settings.face_windows_per_batch,
            temporal=face.is_temporal,
            latents=face_noise[:faces],
            decode_batch_size=settings.decode_batch_size,
            **common,
        )
        if rank == 0:
            final = spool_frames(enhanced, workdir / f"final_{tag}.npy", length)
        else:  # every collective of the face pass ends before its first frame is yielded
            next(enhanced, None)
            enhanced.close()
            final = None
    if video is not None:
        with timer.stage("encode"):
            if final is not None:
                workers = config.encode_workers or min(8, os.cpu_count() or 1)
                encode_video(final, video, config.fps, workers)
    return final


def denoise_body(
    body: Any,
    motion: BenchMotion,
    config: BenchConfig,
    settings: PathSettings,
    length: int,
    noise: torch.Tensor,
    steps: int,
    progress: bool,
) -> torch.Tensor:
    """Algorithm 1 over the first ``length`` frames of the motion -> latents (length, C, h, w)."""
    from anchorgen.pipelines.anchor import AnchorPipeline

    return AnchorPipeline(body, body.make_scheduler(config.scheduler)).denoise(
        motion.reference,
        motion.conditions[:length],
        temporal=body.is_temporal,
        latents=noise[:length],
        windows_per_batch=settings.windows_per_batch,
        **denoise_settings(config, settings, steps, progress),
    )


def denoise_settings(
    config: BenchConfig, settings: PathSettings, steps: int, progress: bool
) -> dict[str, Any]:
    """The denoising arguments shared by the body and face passes of one path."""
    return dict(
        num_inference_steps=steps,
        guidance_scale=config.guidance_scale,
        controlnet_conditioning_scale=config.controlnet_conditioning_scale,
        window_size=config.window_size,
        window_overlap=config.window_overlap,
        latents_device=settings.latents_device,
        condition_cache_bytes=settings.condition_cache_bytes,
        progress=progress,
    )


OPERATOR_KINDS = (
    ("attention", ("attention", "flash", "fmha", "sdpa", "softmax")),
    ("convolution", ("conv", "fprop", "dgrad", "wgrad")),
    ("matmul", ("gemm", "nvjet", "mm", "matmul", "linear")),
    ("normalisation", ("norm", "moments")),
)
"""Operator kinds by name fragment, first match wins (cuDNN's attention kernels are named
``..._sdpa_..._fprop_...``, implicit-GEMM convolution kernels ``..._fprop_implicit_gemm_...``;
cuBLAS's Hopper matmuls ``nvjet_...``; GroupNorm's statistics ``RowwiseMoments...``)."""


def operator_kind(name: str) -> str:
    """The kind of a profiler event (aten operator or CUDA kernel name): one of
    ``OPERATOR_KINDS``' names, or 'other' (element-wise, copies, fused Triton kernels)."""
    lowered = name.lower()
    for kind, fragments in OPERATOR_KINDS:
        if any(fragment in lowered for fragment in fragments):
            return kind
    return "other"


def operator_profile(events: Any, device_kernels: bool, top: int = 12) -> dict:
    """Seconds by operator kind and the ``top`` costliest operators of ``key_averages()``.

    ``device_kernels``: count the CUDA kernels' own device time (each kernel once; the aten
    operators that launched them carry no device time of their own); else the operators'
    own CPU time.
    """
    from torch.autograd import DeviceType

    timed = []
    for event in events:
        if device_kernels:
            if event.device_type != DeviceType.CUDA:
                continue
            microseconds = event.self_device_time_total
        else:
            microseconds = event.self_cpu_time_total
        if microseconds > 0:
            timed.append((event.key, microseconds / 1e6, event.count))
    by_kind: dict[str, float] = {}
    for name, seconds, _ in timed:
        kind = operator_kind(name)
        by_kind[kind] = by_kind.get(kind, 0.0) + seconds
    timed.sort(key=lambda item: -item[1])
    return {
        "clock": "device" if device_kernels else "cpu",
        "total_seconds": sum(by_kind.values()),
        "seconds_by_kind": dict(sorted(by_kind.items(), key=lambda item: -item[1])),
        "top_operators": [
            {"name": name[:120], "seconds": seconds, "calls": calls}
            for name, seconds, calls in timed[:top]
        ],
    }


def profile_body_denoise(
    body: Any,
    motion: BenchMotion,
    config: BenchConfig,
    settings: PathSettings,
    noise: torch.Tensor,
    device: torch.device,
) -> dict:
    """One body denoising step over the first ``config.profile_frames`` frames of the fast
    path under ``torch.profiler`` -> ``operator_profile`` plus the frames and the step."""
    from torch.profiler import ProfilerActivity, profile

    length = config.profile_frames
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        denoise_body(body, motion, config, settings, length, noise, steps=1, progress=False)
        if cuda:
            torch.cuda.synchronize(device)
    return {
        "frames": length,
        "steps": 1,
        **operator_profile(profiler.key_averages(), device_kernels=cuda),
    }


def encode_video(frames: np.ndarray, path: Path, fps: float, workers: int) -> None:
    """Watermark (``workers`` threads) and encode uint8 (N, H, W, 3) frames to ``path``."""
    from anchorgen.io.watermark import mark_frame

    with open_encoder(path, fps) as writer, ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(frames), 4 * workers):  # bounded: 4 frames per worker in flight
            chunk = (np.ascontiguousarray(f) for f in frames[start : start + 4 * workers])
            for frame in pool.map(mark_frame, chunk):
                writer.write(frame)


def encoder_name() -> str:
    """The encoder ``open_encoder`` uses here: H.264 through PyAV, else OpenCV's MPEG-4 Part 2."""
    try:
        import av  # noqa: F401
    except ImportError:
        return "mpeg4 (OpenCV: PyAV is not installed)"
    return "h264 (PyAV)"


def open_encoder(path: Path, fps: float) -> Any:
    """A context-managed writer with ``write(frame (H, W, 3) uint8 RGB)``.

    ``io.video.VideoWriter`` (H.264) when PyAV is installed; otherwise OpenCV's MPEG-4 Part 2
    writer, so the encode stage still runs (and is reported as such) on a machine without PyAV.
    """
    from anchorgen.io.video import VideoWriter

    if encoder_name().startswith("h264"):
        return VideoWriter(path, fps)
    return _OpenCvWriter(path, fps)


class _OpenCvWriter:
    """``cv2.VideoWriter`` (fourcc mp4v) with ``VideoWriter``'s interface; opened on the first frame."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps, self.writer, self.frames_written = Path(path), fps, None, 0

    def __enter__(self) -> _OpenCvWriter:
        return self

    def write(self, frame: np.ndarray) -> None:
        import cv2

        from anchorgen.errors import InputError

        if self.writer is None:
            height, width = frame.shape[:2]
            fourcc = cv2.VideoWriter_fourcc(*"mp4v")
            self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
            if not self.writer.isOpened():
                raise InputError(f"OpenCV cannot write {self.path}")
        self.writer.write(np.ascontiguousarray(frame[..., ::-1]))  # RGB -> BGR
        self.frames_written += 1

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.release()


def _has_face(face_points: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """(N,) bool: frames the face pass enhances (as ``FacePipeline.enhance_frames`` selects them)."""
    return np.isfinite(affines).all(axis=(1, 2)) & np.isfinite(face_points[..., :2]).all(
        axis=(1, 2)
    )


# ----------------------------------------------------------------------------- several processes


def rank_device(device: str) -> torch.device:
    """This process's device under torchrun: ``cuda:LOCAL_RANK`` where ``device`` resolves to CUDA."""
    from anchorgen.generate import resolve_device

    resolved = resolve_device(device)
    if resolved.type != "cuda":
        return resolved
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def torchrun_process_group(device: str = "auto") -> Iterator[None]:
    """The default process group for the block, when torchrun launched several processes.

    Rank, world size and rendezvous come from torchrun's environment (``WORLD_SIZE``,
    ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL with one GPU per process
    (``rank_device``) on CUDA, gloo on the CPU; destroyed when the block ends. A single
    process, or a group that already exists, is left as it is.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    target = rank_device(device)
    if target.type == "cuda":
        torch.cuda.set_device(target)
        dist.init_process_group("nccl", device_id=target)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast_weights(module: torch.nn.Module) -> None:
    """Overwrite every parameter and buffer of ``module`` with rank 0's, in place.

    Tensors travel through ``collective_device``.
    """
    import torch.distributed as dist

    from anchorgen.pipelines.anchor import collective_device

    link = collective_device()
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.device == link and tensor.is_contiguous():
                dist.broadcast(tensor, src=0)
            else:
                moved = tensor.to(link).contiguous()
                dist.broadcast(moved, src=0)
                tensor.copy_(moved)


def frames_per_rank(
    model: Any, length: int, windows_per_batch: int, config: BenchConfig, world: int
) -> list[int]:
    """Frames each rank denoises per step (``rank_batches``, as ``denoise_overlapped`` splits
    them): the slowest rank bounds the denoise speed-up."""
    from anchorgen.pipelines.anchor import plan_windows
    from anchorgen.pipelines.windows import rank_batches

    if length == 0:
        return [0] * world
    windows, per_batch = plan_windows(
        model,
        length,
        config.window_size,
        config.window_overlap,
        model.is_temporal,
        windows_per_batch,
    )
    return [
        sum(b - a for batch in rank_batches(windows, per_batch, r, world) for a, b in batch)
        for r in range(world)
    ]


# ----------------------------------------------------------------------------- the benchmark


def run_bench(
    config: BenchConfig | None = None,
    video: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    checkpoint: Callable[[dict], None] | None = None,
) -> dict | None:
    """Run the benchmark; returns the result dictionary (``write_result`` stores it as JSON).

    ``video``: keep the fast path's marked H.264 output there (default: a temporary file).
    ``checkpoint(result)`` is called with the fast path's result (``complete`` False,
    ``reference`` None) before the reference runs, so a run cut short still leaves numbers.

    In a process group of several ranks (``torchrun_process_group``) every rank must call
    this; each renders on ``rank_device``, rank 0 returns the result (recording every rank's
    stage seconds) and the other ranks return None. The naive reference is skipped there.
    """
    import torch.distributed as dist

    from anchorgen.generate import resolve_device, resolve_dtype
    from anchorgen.pipelines.accel import NaiveModel, optimize_model
    from anchorgen.pipelines.anchor import (
        appearance_tokens,
        image_to_unit_tensor,
        rank_and_world,
    )
    from anchorgen.pipelines.windows import window_schedule

    config = config or BenchConfig()
    rank, world = rank_and_world()
    device = rank_device(config.device) if world > 1 else resolve_device(config.device)
    if rank != 0:  # rank 0 speaks for all
        echo, progress, checkpoint = (lambda _: None), False, None
    notes = []
    preset = config.preset
    if device.type != "cuda":
        if preset not in ("auto", "tiny"):
            notes.append(f"no CUDA device: the tiny preset runs instead of {preset}")
        else:
            notes.append("no CUDA device: the tiny preset runs on the CPU")
        preset = "tiny"
    elif preset == "auto":
        preset = "sd15"
    reference_frames = config.reference_frames
    if world > 1 and reference_frames:
        notes.append(f"naive reference skipped: it runs single-process only ({world} processes)")
        reference_frames = 0
    for note in notes:
        echo(note)
    fast_dtype = resolve_dtype(config.dtype, device)
    warmup = (
        config.warmup
        if config.warmup is not None
        else (device.type == "cuda" or config.compile != "off")
    )
    setup = StageTimer(device, barrier=world > 1)

    with tempfile.TemporaryDirectory(prefix="anchorgen-bench-") as scratch:
        work = Path(scratch)
        echo(f"building the {preset} body and face models (random weights) on {device}")
        with setup.stage("build_models"):
            body32, face32 = build_models(preset, device, config.seed)
            if world > 1:  # every rank must hold rank 0's random weights
                broadcast_weights(body32)
                broadcast_weights(face32)
        body_size, face_size = int(body32.config.image_size), int(face32.config.image_size)
        echo(f"motion: the embedded sample, {config.frames} frames at {body_size} px")
        with setup.stage("prepare_motion"):
            motion = sample_motion(
                config.frames,
                body_size,
                face_size,
                config.source_frames,
                work,
                body32.config.condition_style,
            )
        generator = torch.Generator("cpu").manual_seed(config.seed)
        c, h = body32.config.latent_channels, body32.config.latent_size
        noise = torch.randn(config.frames, c, h, h, generator=generator)
        fc, fh = face32.config.latent_channels, face32.config.latent_size
        face_noise = torch.randn(config.frames, fc, fh, fh, generator=generator)

        with setup.stage("count_flops"):
            body_tokens, _ = appearance_tokens(body32, image_to_unit_tensor(motion.reference)[None])
            face_tokens, _ = appearance_tokens(
                face32, image_to_unit_tensor(motion.face_reference)[None]
            )
            window = min(config.window_size, config.frames) if body32.is_temporal else 1
            halves = 2 if config.guidance_scale > 1.0 else 1
            body_flops_per_frame = forward_flops(body32, window, body_tokens, halves) / window
            face_window = config.window_size if face32.is_temporal else 1
            face_flops_per_frame = (
                forward_flops(face32, face_window, face_tokens, halves) / face_window
            )
        matmul_size = config.matmul_size or (8192 if device.type == "cuda" else 4096)
        matmul_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        with setup.stage("matmul"):
            matmul_rate = matmul_tflops(
                device, matmul_dtype, matmul_size, 20 if device.type == "cuda" else 3
            )

        echo(f"fast path: {str(fast_dtype).removeprefix('torch.')} copies of the models")
        with setup.stage("optimize_models"):
            body_fast, face_fast = copy.deepcopy(body32), copy.deepcopy(face32)
            lever_settings = dict(
                dtype=fast_dtype,
                channels_last=config.channels_last,
                compile_mode=config.compile,
                fuse_qkv=config.fuse_qkv,
                attention_backend=config.attention_backend,
            )
            levers = optimize_model(body_fast, **lever_settings)
            optimize_model(face_fast, **lever_settings)
            if device.type == "cuda":  # the fp32 masters wait on the host during the fast runs
                body32.to("cpu")
                face32.to("cpu")
                torch.cuda.empty_cache()
                notes.append(
                    "host peak RSS includes the float32 reference models kept on the host "
                    "during the fast runs"
                )
        fast = PathSettings(
            windows_per_batch=config.windows_per_batch,
            face_windows_per_batch=config.face_windows_per_batch,
            decode_batch_size=config.decode_batch_size,
            latents_device=device,
            condition_cache_bytes=config.condition_cache_mib * 2**20,
        )

        def fast_run(length: int, timer: StageTimer, **kwargs: Any) -> np.ndarray:
            return render_video(
                body_fast,
                face_fast,
                motion,
                config,
                fast,
                length,
                noise,
                face_noise,
                timer,
                work,
                progress=progress,
                **kwargs,
            )

        warmup_timer = StageTimer(device, barrier=world > 1)
        if warmup:
            echo("warm-up: one denoising step of the fast path's batch shapes")
            stride = config.window_size - config.window_overlap
            # a full batch of windows for every rank
            one_batch = config.window_size + (config.windows_per_batch * world - 1) * stride
            # a compiled model pads every batch to this size (static_batch_shapes): one
            # graph per network, so the same short warm-up covers it
            length = min(
                config.frames,
                max(one_batch, config.window_size * config.face_windows_per_batch * world),
            )
            fast_run(length, warmup_timer, steps=1)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        echo(f"fast path: {config.frames} frames" + (f" on {world} processes" if world > 1 else ""))
        timer = StageTimer(device, barrier=world > 1)
        video_path = Path(video) if video is not None else work / "bench.mp4"
        fast_checks: dict = {}
        with HostMemorySampler() as host_memory:
            fast_run(config.frames, timer, video=video_path, checks=fast_checks)
        peak_gpu = timer.peak_gpu_gib()
        if world > 1:
            per_rank: list[Any] = [None] * world
            own = {
                "stages_seconds": dict(timer.seconds),
                "peak_gpu_gib": peak_gpu,
                "host_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            }
            dist.all_gather_object(per_rank, own)
            if rank != 0:
                return None

        profile = None
        if config.profile_frames and world > 1:
            notes.append("profile skipped: it runs single-process only")
        elif config.profile_frames:
            echo(f"profile: one body denoising step over {config.profile_frames} frames")
            profile = profile_body_denoise(body_fast, motion, config, fast, noise, device)
        body_windows = (
            window_schedule(config.frames, config.window_size, config.window_overlap)
            if body32.is_temporal
            else window_schedule(config.frames, 1, 0)
        )
        body_frame_evaluations = sum(b - a for a, b in body_windows) * config.num_inference_steps
        faces = int(_has_face(motion.face_points, motion.affines).sum())
        face_frame_evaluations = faces * config.num_inference_steps
        denoise_flops = body_flops_per_frame * body_frame_evaluations
        denoise_seconds = timer.seconds["body_denoise"]
        achieved = denoise_flops / denoise_seconds / 1e12  # all ranks together
        face_flops = face_flops_per_frame * face_frame_evaluations
        distributed = None
        if world > 1:
            distributed = {
                "backend": dist.get_backend(),
                "stage_split": STAGE_SPLIT,
                "denoise_frames_per_rank": {
                    "body": frames_per_rank(
                        body32, config.frames, config.windows_per_batch, config, world
                    ),
                    "face": frames_per_rank(
                        face32, faces, config.face_windows_per_batch, config, world
                    ),
                },
                "per_rank": per_rank,
            }
        result = {
            "schema_version": SCHEMA_VERSION,
            "preset": preset,
            "notes": notes,
            "world_size": world,
            "distributed": distributed,
            "settings": {
                **config.to_dict(),
                "preset": preset,
                "body_size": body_size,
                "face_size": face_size,
                "warmup": warmup,
            },
            "fast_path": {**levers, "windows_per_batch": config.windows_per_batch},
            "encoder": encoder_name(),
            "finite_latents": fast_checks["finite_latents"],
            "frames": config.frames,
            "total_seconds": timer.total,
            "stages_seconds": {stage: timer.seconds.get(stage, 0.0) for stage in STAGES},
            "seconds_per_frame": timer.total / config.frames,
            "frames_per_second": config.frames / timer.total,
            "setup_seconds": {**setup.seconds, "warmup": warmup_timer.total},
            "peak_gpu_gib": peak_gpu,
            "stages_peak_gpu_gib": dict(timer.peak_gib) or None,
            "host_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "host_fast_path_peak_gib": host_memory.peak_gib,
            "flops": {
                "body_guided_forward_per_frame_gflop": body_flops_per_frame / 1e9,
                "face_guided_forward_per_frame_gflop": face_flops_per_frame / 1e9,
                "body_denoise_tflop": denoise_flops / 1e12,
                "face_denoise_tflop": face_flops / 1e12,
                "body_denoise_tflops_per_s": achieved,
                "matmul_size": matmul_size,
                "matmul_dtype": str(matmul_dtype).removeprefix("torch."),
                "matmul_tflops_per_s": matmul_rate,
                # against the matmul rate of every device together
                "body_denoise_fraction_of_matmul": achieved / (matmul_rate * world),
                "face_stage_tflops_per_s": face_flops / timer.seconds["face"] / 1e12,
            },
            "profile": profile,
            "reference": None,
            "complete": False,
            "environment": environment(device),
        }
        if checkpoint is not None:
            checkpoint(result)

        reference_result = None
        if reference_frames:
            k = reference_frames
            echo(f"fast path on the first {k} frames, for the comparison")
            fast_prefix_timer = StageTimer(device)
            prefix_checks: dict = {}
            fast_prefix = np.array(fast_run(k, fast_prefix_timer, checks=prefix_checks))
            del body_fast, face_fast
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
                body32.to(device)
                face32.to(device)
            echo(
                f"naive reference (float32, one window per forward, CFG as two forwards): {k} frames"
            )
            naive = PathSettings(
                windows_per_batch=1,
                face_windows_per_batch=1,
                decode_batch_size=1,
                latents_device=torch.device("cpu"),
                condition_cache_bytes=0,
            )
            reference_timer = StageTimer(device)
            reference_checks: dict = {}
            parts = 2 if config.guidance_scale > 1.0 else 1  # CFG halves as two forwards
            reference = render_video(
                NaiveModel(body32, parts),
                NaiveModel(face32, parts),
                motion,
                config,
                naive,
                k,
                noise,
                face_noise,
                reference_timer,
                work,
                progress=progress,
                checks=reference_checks,
            )
            agreement = psnr(fast_prefix, np.asarray(reference))
            finite = prefix_checks["finite_latents"] and reference_checks["finite_latents"]
            fast_spf = fast_prefix_timer.total / k
            reference_spf = reference_timer.total / k
            reference_result = {
                "frames": k,
                "dtype": "float32",
                "seconds": reference_timer.total,
                "stages_seconds": reference_timer.seconds,
                "seconds_per_frame": reference_spf,
                "fast_seconds": fast_prefix_timer.total,
                "fast_stages_seconds": fast_prefix_timer.seconds,
                "fast_seconds_per_frame": fast_spf,
                "speedup": reference_spf / fast_spf,
                "psnr_db": agreement,
                "min_psnr_db": config.min_psnr,
                "fast_output_std": float(fast_prefix.std()),
                "finite_latents": finite,
                # a NaN or constant video in both paths would match trivially
                "psnr_pass": bool(
                    agreement >= config.min_psnr and finite and fast_prefix.std() > 0
                ),
            }
    result["reference"] = reference_result
    result["complete"] = True
    result["host_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    return result


def environment(device: torch.device) -> dict:
    """Device name, library versions and the date of the run."""
    import diffusers

    from anchorgen import __version__

    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    return {
        "device": str(device),
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "anchorgen": __version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def markdown_table(result: dict) -> str:
    """The result as a markdown table (what ``anchorgen bench`` prints)."""
    env, flops = result["environment"], result["flops"]
    rows = [
        ("device", f"{env['device_name']} ({env['device']})"),
        (
            "preset",
            f"{result['preset']}, {result['settings']['body_size']} px body, "
            f"{result['settings']['face_size']} px face",
        ),
        ("frames", str(result["frames"])),
        *_distributed_rows(result),
        ("total", f"{result['total_seconds']:.2f} s"),
        *(
            (f"  {stage}", f"{seconds:.2f} s")
            for stage, seconds in result["stages_seconds"].items()
        ),
        ("seconds per frame", f"{result['seconds_per_frame']:.4f}"),
        ("frames per second", f"{result['frames_per_second']:.2f}"),
        (
            "peak GPU memory",
            "n/a" if result["peak_gpu_gib"] is None else f"{result['peak_gpu_gib']:.2f} GiB",
        ),
        *(
            (f"  {stage} peak", f"{gib:.2f} GiB")
            for stage, gib in (result.get("stages_peak_gpu_gib") or {}).items()
        ),
        ("host peak RSS", f"{result['host_peak_rss_gib']:.2f} GiB"),
        *(
            (f"  fast path peak, {kind.replace('_', '-')}", f"{gib:.2f} GiB")
            for kind, gib in (result.get("host_fast_path_peak_gib") or {}).items()
        ),
        (
            "body denoise rate",
            f"{flops['body_denoise_tflops_per_s']:.3g} TFLOP/s "
            f"({flops['body_denoise_tflop']:.3g} TFLOP)",
        ),
        (
            f"{flops['matmul_dtype']} {flops['matmul_size']}^3 matmul",
            f"{flops['matmul_tflops_per_s']:.3g} TFLOP/s per device "
            f"(denoise at {100 * flops['body_denoise_fraction_of_matmul']:.1f}%)",
        ),
    ]
    profile = result.get("profile")
    if profile is not None:
        shares = ", ".join(
            f"{kind} {100 * seconds / profile['total_seconds']:.0f}%"
            for kind, seconds in profile["seconds_by_kind"].items()
        )
        rows.append(
            (
                f"profile ({profile['clock']} time, 1 body step, {profile['frames']} frames)",
                f"{profile['total_seconds']:.3f} s: {shares}",
            )
        )
    reference = result["reference"]
    if reference is not None:
        rows += [
            (
                f"naive reference ({reference['frames']} frames)",
                f"{reference['seconds_per_frame']:.4f} s/frame vs fast "
                f"{reference['fast_seconds_per_frame']:.4f} s/frame",
            ),
            ("speed-up", f"{reference['speedup']:.2f}x"),
            (
                "fast vs reference PSNR",
                f"{reference['psnr_db']:.1f} dB "
                f"({'pass' if reference['psnr_pass'] else 'FAIL'}, >= {reference['min_psnr_db']:g})",
            ),
        ]
    rows.append(("encoder", result["encoder"]))
    setup = ", ".join(f"{k} {v:.1f} s" for k, v in result["setup_seconds"].items())
    rows.append(("untimed setup", setup))
    rows += [("note", note) for note in result["notes"]]
    lines = ["| measure | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _distributed_rows(result: dict) -> list[tuple[str, str]]:
    """Table rows on the processes of a multi-process run (none for a single process)."""
    distributed = result["distributed"]
    if distributed is None:
        return []
    shares = distributed["denoise_frames_per_rank"]
    return [
        ("processes", f"{result['world_size']} ({distributed['backend']})"),
        *((f"  {stage} split", split) for stage, split in distributed["stage_split"].items()),
        (
            "denoise frames per rank and step",
            f"body {shares['body']}, face {shares['face']}",
        ),
    ]


def write_result(result: dict, path: str | Path) -> None:
    """Write the result as JSON, atomically."""
    import json

    from anchorgen.io.atomic import atomic_write_text

    atomic_write_text(Path(path), json.dumps(result, indent=2) + "\n")
