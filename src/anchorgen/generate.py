"""``anchorgen generate``: a trained identity + new motion -> a marked MP4 with audio.

motion (prepared dataset | driver video | landmark file | condition images | mesh video |
SMPL-X) -> condition renders in the identity's crop -> body frames (Algorithm 1) -> face
enhancement (Algorithm 2) -> padding removed -> visible label + invisible watermark ->
H.264 with the motion's audio. Conditions and generated frames are spooled to disk-backed
arrays, so memory stays flat whatever the length.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from anchorgen.config import BaseConfig, require
from anchorgen.errors import InputError
from anchorgen.io import video as video_io
from anchorgen.io.dataset import PreparedDataset
from anchorgen.landmarks import LandmarkSequence
from anchorgen.pipelines.accel import COMPILE_MODES

log = logging.getLogger(__name__)


MOTION_KINDS = ("auto", "dataset", "video", "landmarks", "image_folder", "mesh_video", "smplx")


@dataclasses.dataclass
class GenerateConfig(BaseConfig):
    """Settings of ``anchorgen generate`` (diffusers argument names where they exist)."""

    num_inference_steps: int = 20
    """Denoising steps (paper: 20)."""
    guidance_scale: float = 3.5
    """Classifier-free guidance on the appearance reference (paper: 3.5)."""
    controlnet_conditioning_scale: float | None = None
    """W_c of eq. 2; None uses the scale the model was trained with (paper: 2.0 for sd15)."""
    window_size: int | None = None
    """Frames per temporal window (Algorithm 1, ws). None: the clip length the body's temporal
    layers were trained on (4 for ``scratch-256``), else the paper's 16."""
    window_overlap: int | None = None
    """Frames shared by neighbouring windows (Algorithm 1, os). None: a quarter of the window,
    the paper's ratio (16 / 4)."""
    windows_per_batch: int | None = None
    """Windows denoised in one forward pass (speed on a GPU; same result). None: 64 frames
    per forward."""
    scheduler: str = "ddim"
    """'ddim' or 'dpm++' (DPM-Solver++)."""
    temporal: bool = True
    """Batch-overlapped temporal denoising; False denoises frame by frame (ablation)."""
    face_enhance: bool = True
    """Run the face model over the generated frames (Algorithm 2) when the identity has one."""
    seed: int = 0
    """Seed of the initial noise: the same seed gives the same video."""
    retarget: bool = True
    """Scale driver landmarks to the identity's body proportions and face shape."""
    motion_kind: str = "auto"
    """What --motion is: 'auto' (detected), 'dataset', 'video' (a person, tracked and
    retargeted), 'landmarks', 'image_folder', 'mesh_video' (renders used as-is) or 'smplx'.
    Mesh-render detection is a heuristic: name the kind when it guesses wrong."""
    motion_seconds: float | None = None
    """Extend (or cut) a landmark or video motion to this length, playing it forwards and
    backwards so there is no jump; None keeps the motion's own length."""
    visible_label: bool = True
    """Draw the 'AI-generated' label (the invisible watermark and metadata are always added)."""
    label_position: str = "bottom-right"
    """Corner of the visible label."""
    keep_padding: bool = False
    """Keep the crop's padded margins instead of cutting the video to the source region."""
    crf: int = 18
    """H.264 constant rate factor of the output."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu' or 'cuda[:N]'."""
    dtype: str = "auto"
    """Weights and activations: 'auto' (bfloat16 on CUDA, float32 on the CPU), 'float32',
    'bfloat16' or 'float16'."""
    channels_last: bool = False
    """Channels-last memory format for the convolutional networks (as ``anchorgen bench``'s
    fast path on a GPU)."""
    compile: str = "off"
    """torch.compile of the UNets and structure branches: 'off', 'default' or
    'reduce-overhead' (CUDA graphs). Paid once per process in the first window batch (sd15:
    about 2.5 minutes for a 1.45x faster render in ``anchorgen bench``, docs/BENCHMARKS.md),
    so it is worth it for long videos."""

    def __post_init__(self) -> None:
        require(self.num_inference_steps >= 1, "num_inference_steps must be >= 1")
        require(self.window_size is None or self.window_size >= 1, "window_size must be >= 1")
        require(
            self.window_overlap is None or self.window_overlap >= 0, "window_overlap must be >= 0"
        )
        require(
            self.window_size is None
            or self.window_overlap is None
            or self.window_overlap < self.window_size,
            "window_overlap must be in [0, window_size)",
        )
        require(
            self.windows_per_batch is None or self.windows_per_batch >= 1,
            "windows_per_batch must be >= 1",
        )
        require(
            self.scheduler in ("ddim", "dpm++"),
            f"scheduler must be 'ddim' or 'dpm++', got {self.scheduler!r}",
        )
        require(
            self.label_position in ("bottom-right", "bottom-left", "top-right", "top-left"),
            "bad label_position",
        )
        require(0 <= self.crf <= 51, "crf must be in [0, 51]")
        require(
            self.dtype in ("auto", "float32", "bfloat16", "float16"),
            f"dtype must be 'auto', 'float32', 'bfloat16' or 'float16', got {self.dtype!r}",
        )
        require(
            self.motion_seconds is None or self.motion_seconds > 0,
            "motion_seconds must be positive",
        )
        require(self.compile in COMPILE_MODES, f"compile must be one of {COMPILE_MODES}")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``GenerateConfig.dtype`` -> torch dtype; 'auto' is bfloat16 on CUDA, float32 elsewhere."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {name!r} requested but CUDA is not available")
    return device


@dataclasses.dataclass
class Identity:
    """A trained person: body model, optional face model and the appearance references."""

    body: torch.nn.Module
    face: torch.nn.Module | None
    dataset: PreparedDataset
    reference: np.ndarray
    """(size, size, 3) uint8 appearance reference (a training frame by default)."""
    face_reference: np.ndarray | None
    """(face_size, face_size, 3) uint8 aligned face of the reference."""
    run_dir: Path

    @property
    def size(self) -> int:
        """Side of the body model's frames (the dataset may be prepared larger)."""
        return int(self.body.config.image_size)

    @property
    def condition_style(self) -> str:
        """How the body model's conditions are drawn from landmarks (``mesh`` or ``skeleton``)."""
        return self.body.config.condition_style

    @property
    def face_size(self) -> int:
        return (
            int(self.face.config.image_size)
            if self.face is not None
            else self.dataset.meta.face_size
        )

    @property
    def train_landmarks(self) -> LandmarkSequence:
        """The identity's training landmarks in model pixels (retargeting target)."""
        split = self.dataset.split_range("train")
        return to_model_space(self.dataset.landmarks.slice(split.start, split.stop), self.size)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        *,
        face_model_dir: str | Path | None = None,
        reference: str | Path | None = None,
        dataset: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Identity:
        """``model_dir`` is an identity directory holding ``body/`` (and ``face/``) runs, or a
        body run itself. The reference frame comes from the run's dataset unless given."""
        from anchorgen.models.sgdm import StructureGuidedDiffusion

        root = Path(model_dir)
        if not root.is_dir():
            raise InputError(f"model directory not found: {root}")
        body_dir = root / "body" if (root / "body").is_dir() else root
        if face_model_dir is None and (root / "face").is_dir():
            face_model_dir = root / "face"
        body = StructureGuidedDiffusion.from_pretrained(body_dir).to(device, dtype).eval()
        if body.inpainting:
            raise InputError(f"{body_dir} holds a face model; pass the body model as --model")
        face = None
        if face_model_dir is not None:
            face = StructureGuidedDiffusion.from_pretrained(face_model_dir).to(device, dtype).eval()
            if not face.inpainting:
                raise InputError(f"{face_model_dir} is not a face (inpainting) model")
        data = PreparedDataset(dataset or _run_dataset(body_dir))
        index = reference_index(data)
        if reference is not None:
            image = _read_reference(reference)
            ref = _square_resize(image, int(body.config.image_size))
            face_ref = _face_of(ref, face, data)
        else:
            ref = _square_resize(data.frame(index), int(body.config.image_size))
            face_ref = (
                None
                if face is None
                else resized(data.face_frame(index), int(face.config.image_size))
            )
        return cls(
            body=body,
            face=face,
            dataset=data,
            reference=ref,
            face_reference=face_ref,
            run_dir=body_dir,
        )

    def optimize(self, config: GenerateConfig) -> None:
        """Apply ``config``'s speed levers (``channels_last``, ``compile``) to the body and face
        models in place (``accel.optimize_model``: same classes, same outputs up to rounding)."""
        from anchorgen.pipelines.accel import optimize_model

        for model in (self.body, self.face):
            if model is not None:
                optimize_model(
                    model, channels_last=config.channels_last, compile_mode=config.compile
                )


def to_model_space(landmarks: LandmarkSequence, size: int) -> LandmarkSequence:
    """Scale landmarks of a square image to a ``size`` x ``size`` one."""
    k = size / landmarks.image_size[0]
    return (
        landmarks
        if k == 1
        else landmarks.transformed(np.array([[k, 0, 0], [0, k, 0]]), (size, size))
    )


def rescale_face_affines(affines: np.ndarray, crop_scale: float, face_scale: float) -> np.ndarray:
    """Crop -> face affines for a crop and face crop resized by the given factors."""
    out = np.array(affines, np.float64)
    out[:, :, :2] *= face_scale / crop_scale
    out[:, :, 2] *= face_scale
    return out


def resized(image: np.ndarray, size: int) -> np.ndarray:
    """A square image (S, S, C) at ``size`` x ``size``, area-averaged (unchanged if already so)."""
    import cv2

    return (
        image
        if image.shape[0] == size
        else cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    )


def _read_reference(path: str | Path) -> np.ndarray:
    from anchorgen.io.dataset import read_image

    path = Path(path)
    if not path.is_file():
        raise InputError(f"reference image not found: {path}")
    return read_image(path)


def _run_dataset(run_dir: Path) -> Path:
    """The identity dataset a run was trained on (first entry of its config's datasets)."""
    import yaml

    config = run_dir / "config.yaml"
    if not config.is_file():
        raise InputError(
            f"{run_dir} has no config.yaml; pass --dataset with the identity's prepared dataset"
        )
    datasets = (yaml.safe_load(config.read_text()) or {}).get("datasets") or []
    if not datasets:
        raise InputError(f"{config} names no dataset; pass --dataset")
    return Path(datasets[0])


def reference_index(data: PreparedDataset) -> int:
    """First training frame with a detected face (a plain, typical frame)."""
    split = data.split_range("train")
    detected = np.flatnonzero(data.landmarks.detected["face"][split.start : split.stop])
    return split.start + int(detected[0]) if detected.size else split.start


def _square_resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (size, size):
        return image
    from anchorgen.motion.sources import letterbox

    return (
        letterbox(image, size)
        if image.shape[0] != image.shape[1]
        else cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    )


def _face_of(reference: np.ndarray, face_model, data: PreparedDataset) -> np.ndarray | None:
    """Aligned face crop of a user-given reference; None (face pass skipped) without a face."""
    if face_model is None:
        return None
    from anchorgen.evaluation.metrics import detect_landmarks
    from anchorgen.prepare.face import face_align_affine, warp_face

    found = detect_landmarks([reference], progress=False)
    if not found.detected["face"][0]:
        log.warning("no face found in the reference image: face enhancement is skipped")
        return None
    size = int(face_model.config.image_size)
    return warp_face(reference, face_align_affine(found.face[0], size), size)


# ------------------------------------------------------------------------------ motion


@dataclasses.dataclass
class Motion:
    """What drives a generation, in the identity's crop space."""

    conditions: np.ndarray
    """(N, size, size, 3) uint8 condition renders (usually a disk-backed memmap)."""
    fps: float
    face_points: np.ndarray | None = None
    """(N, 478, 3) face mesh per frame in crop pixels; None: re-detected on generated frames."""
    face_affines: np.ndarray | None = None
    """(N, 2, 3) crop -> face alignment (smoothed); None: computed from face_points."""
    face_conditions: np.ndarray | None = None
    """(N, S, S, 3) uint8 face-space renders; None: cut out of ``conditions``."""
    audio: np.ndarray | None = None
    """16 kHz mono audio that belongs to the motion."""
    ground_truth: tuple[int, int] | None = None
    """For a held-out dataset motion: its [start, stop) frame range."""

    def __len__(self) -> int:
        return len(self.conditions)


def _render_segment(job, report) -> None:
    """Render motion frames a..b-1 into the shared disk-backed arrays."""
    from anchorgen.prepare.pipeline import landmark_renders

    landmarks, affines, a, size, face_size, style, body_path, face_path = job
    body = np.load(body_path, mmap_mode="r+")
    face = np.load(face_path, mmap_mode="r+")
    for k in range(len(landmarks)):
        body[a + k], face[a + k] = landmark_renders(
            landmarks, k, affines[k], size, face_size, style
        )
        report(1)
    body.flush()
    face.flush()


def render_landmark_motion(
    landmarks: LandmarkSequence,
    size: int,
    face_size: int,
    workdir: Path,
    progress: bool = True,
    style: str = "mesh",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render a landmark motion into disk-backed arrays, segments in parallel processes; the
    body conditions in ``style`` (the identity's ``condition_style``).

    Returns (conditions (N, size, size, 3), face conditions (N, S, S, 3), affines (N, 2, 3)).
    """
    import os

    from anchorgen.parallel import run_segments, split_frames
    from anchorgen.prepare.pipeline import clip_face_affines

    n = len(landmarks)
    if n == 0:
        raise InputError("the motion is empty (zero frames)")
    if not landmarks.present["face"].any():
        raise InputError("the motion has no face in any frame")
    affines = clip_face_affines(landmarks, face_size)
    body_path, face_path = workdir / "conditions.npy", workdir / "face_conditions.npy"
    np.lib.format.open_memmap(body_path, "w+", np.uint8, (n, size, size, 3)).flush()
    np.lib.format.open_memmap(face_path, "w+", np.uint8, (n, face_size, face_size, 3)).flush()
    jobs = [
        (landmarks.slice(a, b), affines[a:b], a, size, face_size, style, body_path, face_path)
        for a, b in split_frames(n, os.cpu_count() or 1)
    ]
    run_segments(_render_segment, jobs, n, "renders", progress)
    return np.load(body_path, mmap_mode="r"), np.load(face_path, mmap_mode="r"), affines


def load_motion(
    motion: str | Path,
    identity: Identity,
    config: GenerateConfig,
    workdir: Path,
    *,
    split: str = "holdout",
    smplx_model: str | Path | None = None,
    progress: bool = True,
) -> Motion:
    """Turn any supported motion source into conditions in the identity's crop space."""
    from anchorgen.motion.sources import detect_motion_kind

    path = Path(motion)
    if not path.exists():
        raise InputError(f"motion not found: {path}")
    size, face_size = identity.size, identity.face_size
    if config.motion_kind != "auto":
        kind = config.motion_kind
    elif path.suffix == ".npz" and path.is_file() and _is_landmark_file(path):
        kind = "landmarks"
    else:
        kind = detect_motion_kind(path)
    if kind == "dataset":
        return _dataset_motion(
            PreparedDataset(path), split, size, face_size, config, identity, workdir, progress
        )
    if kind in ("video", "landmarks"):
        if kind == "video":
            driver = track_driver(path, size, progress)
            audio = video_io.read_audio(path)
        else:
            driver = LandmarkSequence.load(path)
            audio = None
        if config.motion_seconds is not None:
            driver = driver.ping_pong(max(1, round(config.motion_seconds * driver.fps)))
        if config.retarget:
            from anchorgen.motion.retarget import retarget

            driver = retarget(driver, identity.train_landmarks)
        elif driver.image_size != (size, size):
            raise InputError(
                f"{path}: landmarks are in a {driver.image_size} image, the identity is {size}px"
            )
        body, face, affines = render_landmark_motion(
            driver, size, face_size, workdir, progress, identity.condition_style
        )
        return Motion(body, driver.fps, driver.face, affines, face, audio)
    if kind in ("image_folder", "mesh_video", "smplx") and identity.condition_style != "mesh":
        raise InputError(
            f"{path} is a {kind.replace('_', ' ')} motion (mesh renders), but this identity reads "
            f"{identity.condition_style} conditions drawn from landmarks: drive it with a video, "
            "landmarks or speech, or train the identity with model.condition_style=mesh"
        )
    if kind in ("image_folder", "mesh_video"):
        if kind == "image_folder":
            from anchorgen.motion.sources import ImageFolderFrames

            folder = ImageFolderFrames(path, size=size)
            frames = (np.asarray(folder[i : i + 1][0]) for i in range(len(folder)))
            return Motion(_spool(frames, workdir / "conditions.npy", len(folder)), folder.fps)
        from anchorgen.motion.sources import letterbox

        info = video_io.probe_video(path)
        frames = (letterbox(frame, size) for frame in video_io.iter_frames(path))
        return Motion(
            _spool_stream(frames, workdir / "conditions.npy"),
            info.fps,
            audio=video_io.read_audio(path),
        )
    if kind == "smplx":
        if smplx_model is None:
            raise InputError("SMPL-X motion needs --smplx-model (your SMPLX_NEUTRAL.npz)")
        from anchorgen.motion.smplx_motion import smplx_to_mesh_sequence
        from anchorgen.prepare.render import render_mesh_frame

        meshes = smplx_to_mesh_sequence(path, smplx_model, size)
        frames = (
            render_mesh_frame(meshes.vertices[i], meshes.faces, size) for i in range(len(meshes))
        )
        return Motion(_spool(frames, workdir / "conditions.npy", len(meshes)), meshes.fps)
    raise InputError(f"unsupported motion {path} ({kind})")


def _is_landmark_file(path: Path) -> bool:
    with np.load(path, allow_pickle=False) as data:
        return "face" in data.files and "schema_version" in data.files


def track_driver(video: Path, size: int, progress: bool) -> LandmarkSequence:
    """Landmarks of a driver video in a fixed square crop of side ``size`` (as ``prepare``)."""
    from anchorgen.prepare.crop import compute_clip_crop
    from anchorgen.prepare.holistic import track_frames
    from anchorgen.prepare.smoothing import smooth_sequence

    info = video_io.probe_video(video)
    frames = tqdm(
        video_io.iter_frames(video), desc="driver landmarks", unit="frame", disable=not progress
    )
    raw = track_frames(frames, info.fps, (info.width, info.height), progress=False)
    if not raw.detected["pose"].any():
        raise InputError(f"{video}: no person found in the driver video")
    smoothed = smooth_sequence(raw)
    box = compute_clip_crop(smoothed, (info.width, info.height))
    return smoothed.transformed(box.affine(size), (size, size))


def _dataset_motion(data, split, size, face_size, config, identity, workdir, progress) -> Motion:
    frames = data.split_range(split)
    if len(frames) == 0:
        raise InputError(f"{data.root}: split {split!r} is empty (prepare with --holdout-seconds)")
    start, stop = frames.start, frames.stop
    style = identity.condition_style
    data.check_condition_style(style)
    body = _spool(  # as in training: at the dataset's size, then resized
        (resized(data.body_condition(i, style), size) for i in frames),
        workdir / "conditions.npy",
        len(frames),
    )
    face = _spool(
        (resized(data.face_render(i), face_size) for i in frames),
        workdir / "face_conditions.npy",
        len(frames),
    )
    crop_scale, face_scale = size / data.meta.size, face_size / data.meta.face_size
    audio = None
    if data.audio_path is not None:
        wav, rate = video_io.read_wav(data.audio_path)
        audio = wav[round(start / data.meta.fps * rate) : round(stop / data.meta.fps * rate)]
    return Motion(
        body,
        data.meta.fps,
        face_points=to_model_space(data.landmarks, size).face[start:stop],
        face_affines=rescale_face_affines(data.face_affines[start:stop], crop_scale, face_scale),
        face_conditions=face,
        audio=audio,
        ground_truth=(start, stop),
    )


def _spool(frames: Iterator[np.ndarray], path: Path, count: int) -> np.ndarray:
    from anchorgen.pipelines.anchor import spool_frames

    if count == 0:
        raise InputError("the motion is empty (zero frames)")
    return spool_frames(frames, path, count)


def _spool_stream(frames: Iterator[np.ndarray], path: Path) -> np.ndarray:
    """Spool frames of unknown count to disk one by one; returns them as a (N, H, W, 3) memmap."""
    count, shape = 0, None
    with open(path, "wb") as raw:
        for frame in frames:
            shape = frame.shape
            raw.write(np.ascontiguousarray(frame, np.uint8).tobytes())
            count += 1
    if count == 0:
        raise InputError("the motion is empty (zero frames)")
    return np.memmap(path, np.uint8, "r", shape=(count, *shape))


# -------------------------------------------------------------------------- generation


def with_windows(config: GenerateConfig, body: Any) -> GenerateConfig:
    """``config`` with its unset window settings filled in for the body model ``body``
    (``pipelines.windows.resolve_windows``: the window its temporal layers were trained on)."""
    from anchorgen.pipelines.windows import resolve_windows

    size, overlap, per_batch = resolve_windows(
        config.window_size, config.window_overlap, config.windows_per_batch, body.temporal_window
    )
    return dataclasses.replace(
        config, window_size=size, window_overlap=overlap, windows_per_batch=per_batch
    )


def generate_frames(
    identity: Identity, motion: Motion, config: GenerateConfig, workdir: Path, progress=True
):
    """Yield the generated video's frames (crop size, before padding removal and marking)."""
    from anchorgen.pipelines.accel import latents_home
    from anchorgen.pipelines.anchor import AnchorPipeline, latent_shape, spool_frames
    from anchorgen.pipelines.face import FacePipeline

    config = with_windows(config, identity.body)
    generator = torch.Generator("cpu").manual_seed(config.seed)
    scale = config.controlnet_conditioning_scale
    body_scale = identity.body.config.conditioning_scale if scale is None else scale
    common = dict(
        num_inference_steps=config.num_inference_steps,
        guidance_scale=config.guidance_scale,
        window_size=config.window_size,
        window_overlap=config.window_overlap,
        windows_per_batch=config.windows_per_batch,
        temporal=config.temporal and identity.body.is_temporal,
        progress=progress,
    )
    pipe = AnchorPipeline(identity.body, identity.body.make_scheduler(config.scheduler))
    frames = pipe.generate_frames(
        identity.reference,
        motion.conditions,
        generator=generator,
        controlnet_conditioning_scale=body_scale,
        # latents and noise sum, with room for a scheduler step's temporaries
        latents_device=latents_home(
            identity.body.device,
            len(motion),
            latent_shape(identity.body, identity.size, identity.size),
            copies=3,
        ),
        **common,
    )
    use_face = (
        config.face_enhance and identity.face is not None and identity.face_reference is not None
    )
    if not use_face:
        if config.face_enhance and identity.face is None:
            log.warning("the identity has no face model: face enhancement skipped")
        yield from frames
        return
    spooled = spool_frames(frames, workdir / "generated.npy", len(motion))
    face_points = motion.face_points
    affines = motion.face_affines
    face_conditions = motion.face_conditions
    if face_points is None:
        from anchorgen.evaluation.metrics import detect_landmarks

        found = detect_landmarks(
            (spooled[i] for i in range(len(spooled))), motion.fps, progress=progress
        )
        face_points = np.where(found.detected["face"][:, None, None], found.face, np.nan)
        affines = None
        face_conditions = None
    face_scale = identity.face.config.conditioning_scale if scale is None else scale
    face_pipe = FacePipeline(identity.face, identity.face.make_scheduler(config.scheduler))
    crop = identity.face_size
    yield from face_pipe.enhance_frames(
        spooled,
        identity.face_reference,
        motion.conditions,
        face_points,
        affines,
        face_conditions=face_conditions,
        crop_size=crop,
        # latents, noise sum and masked latents, with room for a scheduler step's temporaries
        latents_device=latents_home(
            identity.face.device, len(motion), latent_shape(identity.face, crop, crop), copies=4
        ),
        generator=torch.Generator("cpu").manual_seed(config.seed + 1),
        controlnet_conditioning_scale=face_scale,
        **{**common, "temporal": config.temporal and identity.face.is_temporal},
    )


def valid_region(identity: Identity) -> tuple[slice, slice]:
    """Rows and columns of the crop that show the source (padding cut), even-sized."""
    import cv2

    valid = (
        cv2.resize(
            identity.dataset.valid.astype(np.uint8),
            (identity.size,) * 2,
            interpolation=cv2.INTER_NEAREST,
        )
        > 0
    )
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    bottom -= (bottom - top) % 2
    right -= (right - left) % 2
    return slice(top, bottom), slice(left, right)


def speech_motion(
    identity: Identity,
    audio: str | Path,
    speech_model: str | Path | None,
    seed: int,
    progress: bool,
):
    """Speech -> landmark motion of the identity (``anchorgen.motion.audio2motion``), in its crop."""
    from anchorgen.motion.audio2motion import generate_motion, load_run

    run = Path(speech_model) if speech_model else identity.run_dir.parent / "audio2motion"
    if not run.is_dir():
        raise InputError(
            f"no speech-to-motion model at {run}: train one (anchorgen.motion.audio2motion, preset "
            "'audio2motion') into MODEL/audio2motion, or pass --speech-model RUN"
        )
    model, _ = load_run(run)
    return generate_motion(
        model,
        audio,
        identity.train_landmarks,
        fps=identity.dataset.meta.fps,
        seed=seed,
        progress=progress,
    )


def generate(
    model: str | Path,
    motion: str | Path | None,
    out: str | Path,
    config: GenerateConfig | None = None,
    *,
    speech_model: str | Path | None = None,
    face_model: str | Path | None = None,
    reference: str | Path | None = None,
    audio: str | Path | None = None,
    frames_dir: str | Path | None = None,
    dataset: str | Path | None = None,
    split: str = "holdout",
    smplx_model: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Render ``motion`` with the identity in ``model`` to ``out`` (MP4); returns a summary.

    Without ``motion``, ``audio`` drives the identity through its speech-to-motion model
    (``speech_model``, default MODEL/audio2motion): speech -> landmarks -> renders -> video.
    """
    import time

    from anchorgen import __version__
    from anchorgen.io.dataset import write_image
    from anchorgen.io.watermark import mark_frame, mp4_metadata

    config = config or GenerateConfig()
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"output directory does not exist: {out.parent}")
    device = resolve_device(config.device)
    identity = Identity.load(
        model,
        face_model_dir=face_model,
        reference=reference,
        dataset=dataset,
        device=device,
        dtype=resolve_dtype(config.dtype, device),
    )
    identity.optimize(config)
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="anchorgen-generate-") as scratch:
        work = Path(scratch)
        if motion is None:
            if audio is None:
                raise InputError("give --motion, or --audio to drive the identity by speech")
            motion = work / "speech_motion.npz"
            speech_motion(identity, audio, speech_model, config.seed, progress).save(motion)
            config = config.replace(retarget=False)  # already in the identity's own space
        motion_data = load_motion(
            motion, identity, config, work, split=split, smplx_model=smplx_model, progress=progress
        )
        sound = motion_data.audio
        if audio is not None:
            sound = video_io.read_audio(audio)
            if sound is None:
                raise InputError(f"{audio} has no audio stream")
        duration = len(motion_data) / motion_data.fps
        if (
            sound is not None
            and abs(len(sound) / video_io.AUDIO_RATE - duration) > 1.0 / motion_data.fps
        ):
            log.warning(
                "audio lasts %.2f s, the motion %.2f s: the audio is %s to match",
                len(sound) / video_io.AUDIO_RATE,
                duration,
                "trimmed" if len(sound) / video_io.AUDIO_RATE > duration else "padded with silence",
            )
        if abs(motion_data.fps - identity.dataset.meta.fps) > 0.01:
            log.warning(
                "motion runs at %.3g fps, the identity was recorded at %.3g fps; the output keeps the motion's rate",
                motion_data.fps,
                identity.dataset.meta.fps,
            )
        rows, cols = (slice(None), slice(None)) if config.keep_padding else valid_region(identity)
        frames_path = Path(frames_dir) if frames_dir else None
        if frames_path is not None:
            frames_path.mkdir(parents=True, exist_ok=True)
        metadata = mp4_metadata(str(identity.run_dir))
        metadata["title"] = f"anchorgen {__version__}"
        with (
            torch.inference_mode(),
            video_io.VideoWriter(
                out, motion_data.fps, audio=sound, metadata=metadata, crf=config.crf
            ) as writer,
        ):
            for i, frame in enumerate(
                generate_frames(identity, motion_data, config, work, progress)
            ):
                frame = mark_frame(
                    np.ascontiguousarray(frame[rows, cols]),
                    visible_label=config.visible_label,
                    position=config.label_position,
                )
                writer.write(frame)
                if frames_path is not None:
                    write_image(frames_path / f"{i:06d}.png", frame)
    seconds = time.perf_counter() - tick
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "frames": writer.frames_written,
        "fps": motion_data.fps,
        "seconds": seconds,
        "seconds_per_frame": seconds / max(writer.frames_written, 1),
        "peak_gpu_gib": peak,
        "face_enhanced": bool(config.face_enhance and identity.face is not None),
        "output": str(out),
    }
