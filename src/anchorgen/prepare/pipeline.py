"""``anchorgen prepare``: one talking-to-camera clip -> one identity dataset.

Two passes over the video keep memory flat however long the clip is:
pass 1 decodes and tracks (MediaPipe Holistic) to get every frame's landmarks, from which
one fixed crop for the whole clip is chosen; pass 2 decodes again and writes the cropped
frames, condition renders, face crops, masks and mattes. Both passes work on consecutive
segments of the clip in one shared pool of worker processes. Everything is written into a
temporary directory that is renamed to ``--out`` only when all of it succeeded.

Importing this module loads neither torch nor MediaPipe (seconds each on a 2-core
machine): the workers load MediaPipe for pass 1 and torch (renderer) for pass 2, the
latter in the background as soon as their pass-1 segment is done (while the other worker
still tracks, or the main process smooths the landmarks). The main process never loads
either: it writes the dataset's files with :mod:`anchorgen.io.layout`.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from anchorgen import __version__
from anchorgen.config import BaseConfig, require
from anchorgen.errors import InputError
from anchorgen.io import video as video_io
from anchorgen.io.atomic import atomic_directory
from anchorgen.io.layout import SCHEMA_VERSION, DatasetMeta, frame_name, write_image
from anchorgen.landmarks import PARTS, LandmarkSequence, transform_points
from anchorgen.parallel import run_segments, segment_pool, split_frames

log = logging.getLogger(__name__)

MIN_SECONDS = 3.0
"""Shorter clips are refused: too few poses to learn an identity from."""
MATTE_MAX_SIDE = 640
"""Mattes are kept at this resolution between the passes (memory stays small)."""


@dataclasses.dataclass
class PrepareConfig(BaseConfig):
    """Settings of ``anchorgen prepare``."""

    size: int = 512
    """Side of the square crop in pixels (512 for sd15; 256 for the from-scratch preset)."""
    face_size: int = 256
    """Side of the aligned face crop (256 or 512)."""
    fps: float | None = None
    """Output frame rate; None keeps the source's (variable rate is resampled to constant)."""
    start: float = 0.0
    """Start time in seconds."""
    end: float | None = None
    """End time in seconds; None reads to the end."""
    holdout_seconds: float = 0.0
    """The last N seconds are reserved for evaluation (split 'holdout')."""
    crop_margin: float = 0.12
    """Extra margin around head-to-hands, as a fraction of the crop side."""
    pad_mode: str = "edge"
    """How the crop is filled where it leaves the frame: 'edge' (default: repeats the border,
    simple for the model to learn) or 'reflect' (mirrors the scene, including the person)."""
    max_gap_seconds: float = 0.3
    """Detection gaps up to this long are interpolated; longer ones stay missing (flagged)."""
    face_feather_px: float = 12.0
    """Feather width of the face inpainting mask, in face-crop pixels."""
    person_check_frames: int = 6
    """Frames sampled to check that exactly one person is in view."""
    workers: int = 0
    """Processes working on consecutive segments of the clip (0: one per CPU core)."""

    def __post_init__(self) -> None:
        require(
            self.size >= 64 and self.size % 8 == 0,
            f"size must be a multiple of 8 and >= 64, got {self.size}",
        )
        require(
            self.face_size in (128, 256, 512),
            f"face_size must be 128, 256 or 512, got {self.face_size}",
        )
        require(self.fps is None or self.fps > 0, f"fps must be positive, got {self.fps}")
        require(self.start >= 0, f"start must be >= 0, got {self.start}")
        require(
            self.end is None or self.end > self.start,
            f"end ({self.end}) must be after start ({self.start})",
        )
        require(
            self.holdout_seconds >= 0, f"holdout_seconds must be >= 0, got {self.holdout_seconds}"
        )
        require(0 <= self.crop_margin < 1, f"crop_margin must be in [0, 1), got {self.crop_margin}")
        require(
            self.pad_mode in ("reflect", "edge"),
            f"pad_mode must be 'reflect' or 'edge', got {self.pad_mode!r}",
        )


def prepare(
    video: str | Path,
    out: str | Path,
    config: PrepareConfig | None = None,
    *,
    overwrite: bool = False,
    conditions_dir: str | Path | None = None,
    smplx_params: str | Path | None = None,
    smplx_model: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Prepare ``video`` into the dataset directory ``out``; returns ``out``.

    ``conditions_dir`` uses pre-rendered condition images as-is (one per output frame);
    ``smplx_params`` + ``smplx_model`` mesh SMPL-X parameters and render them instead of
    the landmark renders. Raises ``InputError`` on unusable input, leaving nothing behind.
    """
    config = config or PrepareConfig()
    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"output directory already exists: {out} (pass --overwrite to replace it)")
    if (smplx_params is None) != (smplx_model is None):
        raise InputError("SMPL-X input needs both --smplx-params and --smplx-model")
    timings: dict[str, float] = {}
    info = video_io.probe_video(video)
    fps = float(config.fps or info.fps)
    end = info.duration if config.end is None else min(config.end, info.duration)
    if end - config.start < MIN_SECONDS:
        raise InputError(
            f"{video}: clip is {end - config.start:.1f} s long; at least {MIN_SECONDS:.0f} s are needed"
        )

    workers = config.workers or os.cpu_count() or 1
    with segment_pool(workers) as pool:  # both passes share the worker processes
        tick = time.perf_counter()
        raw, mattes = _track(video, fps, config, info, pool, progress)
        timings["track_s"] = time.perf_counter() - tick
        num_frames = len(raw)
        _check_person(raw, video)

        from anchorgen.prepare.crop import compute_clip_crop, valid_mask
        from anchorgen.prepare.smoothing import smooth_sequence

        smoothed = smooth_sequence(raw, max_gap_seconds=config.max_gap_seconds)
        box = compute_clip_crop(smoothed, (info.width, info.height), margin=config.crop_margin)
        to_crop = box.affine(config.size)
        crop_landmarks = smoothed.transformed(to_crop, (config.size, config.size))
        crop_raw = raw.transformed(to_crop, (config.size, config.size))
        holdout = round(config.holdout_seconds * fps)
        if holdout >= num_frames - fps:
            raise InputError(
                f"--holdout-seconds {config.holdout_seconds} leaves less than one second of {num_frames / fps:.1f} s for training"
            )

        condition_images = _condition_source(
            conditions_dir, smplx_params, smplx_model, num_frames, fps, config.size
        )

        with atomic_directory(out, overwrite=overwrite) as tmp:
            for sub in ("frames", "renders", "mattes", "face/frames", "face/renders", "face/masks"):
                (tmp / sub).mkdir(parents=True)
            # written while the workers are still loading the renderer
            crop_landmarks.save(tmp / "landmarks.npz")
            crop_raw.save(tmp / "landmarks_raw.npz")
            valid = valid_mask(box, (info.width, info.height), config.size)
            write_image(tmp / "valid.png", valid.astype(np.uint8) * 255)
            audio = video_io.read_audio(video, config.start, end) if info.has_audio else None
            if audio is not None and len(audio):
                video_io.write_wav(tmp / "audio.wav", audio)
            tick = time.perf_counter()
            face_affines = _write_frames(
                tmp,
                video,
                fps,
                config,
                box,
                info,
                crop_landmarks,
                mattes,
                condition_images,
                pool,
                progress,
            )
            timings["write_s"] = time.perf_counter() - tick
            np.save(tmp / "face_affines.npy", face_affines)
            meta = DatasetMeta(
                schema_version=SCHEMA_VERSION,
                anchorgen_version=__version__,
                source={
                    "path": str(Path(video).resolve()),
                    "width": info.width,
                    "height": info.height,
                    "fps": info.fps,
                    "duration": info.duration,
                    "codec": info.codec,
                    "rotation": info.rotation,
                    "start": config.start,
                    "end": end,
                },
                fps=fps,
                num_frames=num_frames,
                size=config.size,
                face_size=config.face_size,
                crop={
                    "x0": box.x0,
                    "y0": box.y0,
                    "side": box.side,
                    "padding": [
                        p * config.size / box.side for p in box.padding((info.width, info.height))
                    ],
                },
                split={
                    "train": [0, num_frames - holdout],
                    "holdout": [num_frames - holdout, num_frames],
                },
                has_audio=audio is not None and len(audio) > 0,
                conditions="images" if conditions_dir else "smplx" if smplx_params else "landmarks",
            )
            meta.save(tmp)
            report = _report(crop_raw, crop_landmarks, valid, fps, timings)
            (tmp / "report.json").write_text(json.dumps(report, indent=2))
            _contact_sheet(tmp, crop_landmarks, num_frames)
        return out


def _load_renderer() -> None:
    """Import what pass 2 needs (torch), in a worker that would otherwise wait."""
    importlib.import_module("anchorgen.prepare.render")


def _segment_times(config: PrepareConfig, fps: float, stop: float, a: int, b: int, last: bool):
    """Start and end seconds that make ``iter_frames`` yield exactly output frames a..b-1."""
    return config.start + a / fps, stop if last else config.start + (b - 0.5) / fps


def _track(video, fps, config, info, pool, progress):
    """Pass 1: landmarks of every frame (source pixels) and down-scaled mattes.

    Consecutive segments of the clip are tracked in parallel processes; each restarts
    MediaPipe's tracker at its first frame, which the smoothing pass evens out, and counts
    the faces on its share of the sampled frames (so the main process need not load
    MediaPipe).
    """
    stop = info.duration if config.end is None else min(config.end, info.duration)
    count = int(np.floor((stop - config.start) * fps - 1e-9)) + 1
    check_at = np.linspace(0, count - 1, config.person_check_frames).round().astype(int)
    segments = split_frames(count, config.workers or os.cpu_count() or 1)
    jobs = [
        (
            video,
            fps,
            (info.width, info.height),
            *_segment_times(config, fps, stop, a, b, k == len(segments) - 1),
            [int(i - a) for i in check_at if a <= i < b],
            pool is not None,
        )
        for k, (a, b) in enumerate(segments)
    ]
    results = run_segments(_track_segment, jobs, count, "landmarks", progress, pool)
    raw = LandmarkSequence.concatenate([r[0] for r in results])
    mattes = [m for r in results for m in r[1]]
    face_counts = [n for r in results for n in r[2]]
    if face_counts and np.median(face_counts) > 1:
        raise InputError(
            f"{video}: {int(np.median(face_counts))} faces in view on sampled frames; anchorgen needs a clip of one person"
        )
    return raw, mattes


def _track_segment(job, report):
    """Track one segment: (raw landmarks, uint8 mattes, face counts on the sampled frames)."""
    from anchorgen.prepare.holistic import count_faces_in_frames, track_frames

    video, fps, image_size, t0, t1, check_at, in_worker = job
    mattes: list[np.ndarray] = []
    sampled: list[np.ndarray] = []
    wanted = set(check_at)

    def frames():
        for i, frame in enumerate(video_io.iter_frames(video, fps, t0, t1)):
            if i in wanted:
                sampled.append(frame)
            yield frame
            report(1)

    def keep_matte(_index: int, matte: np.ndarray) -> None:
        mattes.append((matte * 255).astype(np.uint8))

    raw = track_frames(
        frames(),
        fps,
        image_size,
        on_matte=keep_matte,
        progress=False,
        matte_max_side=MATTE_MAX_SIDE,
    )
    counts = count_faces_in_frames(sampled)
    if in_worker:  # the worker waits for pass 2 next: load the renderer meanwhile
        threading.Thread(target=_load_renderer, daemon=True).start()
    return raw, mattes, counts


def _check_person(raw: LandmarkSequence, video) -> None:
    rate = float(np.mean(raw.detected["pose"])) if len(raw) else 0.0
    face_rate = float(np.mean(raw.detected["face"])) if len(raw) else 0.0
    if rate < 0.5 or face_rate < 0.5:
        raise InputError(
            f"{video}: no person found (body detected in {rate:.0%}, face in {face_rate:.0%} of frames); "
            "anchorgen needs one person talking to camera"
        )


def _condition_source(conditions_dir, smplx_params, smplx_model, num_frames, fps, size):
    """Condition images not drawn from landmarks: a folder used as-is, or SMPL-X meshes."""
    if conditions_dir is not None:
        from anchorgen.motion.sources import ImageFolderFrames

        frames = ImageFolderFrames(conditions_dir, size=size)
        if len(frames) < num_frames:
            raise InputError(
                f"{conditions_dir} has {len(frames)} images for {num_frames} video frames"
            )
        return frames
    if smplx_params is not None:
        from anchorgen.motion.smplx_motion import smplx_to_mesh_sequence

        meshes = smplx_to_mesh_sequence(smplx_params, smplx_model, size, fps=fps)
        if len(meshes) < num_frames:
            raise InputError(
                f"{smplx_params} has {len(meshes)} frames for {num_frames} video frames"
            )
        return meshes
    return None


def _condition_image(conditions, i: int, size: int) -> np.ndarray:
    """Frame i of a folder of condition images or of a mesh sequence, (size, size, 3) uint8."""
    from anchorgen.motion.smplx_motion import MeshSequence

    if isinstance(conditions, MeshSequence):
        from anchorgen.prepare.render import render_mesh_frame

        return render_mesh_frame(conditions.vertices[i], conditions.faces, size)
    return np.asarray(conditions[i : i + 1][0])


def _write_frames(
    tmp, video, fps, config, box, info, crop_landmarks, mattes, conditions, pool, progress
):
    """Pass 2, in parallel segments: cropped frames, renders, mattes, face crops and masks.

    Returns the (T, 2, 3) crop -> face affines.
    """

    num_frames = len(crop_landmarks)
    affines = clip_face_affines(crop_landmarks, config.face_size)
    stop = info.duration if config.end is None else min(config.end, info.duration)
    segments = split_frames(num_frames, config.workers or os.cpu_count() or 1)
    jobs = [
        (
            tmp,
            video,
            fps,
            config,
            box,
            (info.width, info.height),
            crop_landmarks,
            affines,
            mattes[a:b],
            conditions,
            a,
            b,
            *_segment_times(config, fps, stop, a, b, k == len(segments) - 1),
        )
        for k, (a, b) in enumerate(segments)
    ]
    run_segments(_write_segment, jobs, num_frames, "renders", progress, pool)
    return affines


def _write_segment(job, report) -> None:
    """Pass 2 for output frames a..b-1."""
    from anchorgen.geometry import compose_affines
    from anchorgen.prepare.crop import apply_crop, crop_matte
    from anchorgen.prepare.face import face_mask, warp_face

    tmp, video, fps, config, box, size, landmarks, affines, mattes, conditions, a, b, t0, t1 = job
    to_crop = box.affine(config.size)
    for i, frame in zip(range(a, b), video_io.iter_frames(video, fps, t0, t1), strict=False):
        crop = apply_crop(frame, box, config.size, pad_mode=config.pad_mode)
        if conditions is None:
            render, face_render = landmark_renders(
                landmarks, i, affines[i], config.size, config.face_size
            )
        else:
            render = _condition_image(conditions, i, config.size)
            face_render = warp_face(render, affines[i], config.face_size)
        matte = crop_matte(mattes[i - a], box, size, config.size)
        # the face crop comes from the full-resolution source frame, not the resized crop
        face = warp_face(frame, compose_affines(affines[i], to_crop), config.face_size)
        mask = face_mask(
            _held_face(landmarks, i), affines[i], config.face_size, config.face_feather_px
        )
        name_jpg, name_png = frame_name(i, ".jpg"), frame_name(i, ".png")
        write_image(tmp / "frames" / name_jpg, crop)
        write_image(tmp / "renders" / name_png, render)
        write_image(tmp / "mattes" / name_png, matte)
        write_image(tmp / "face" / "frames" / name_jpg, face)
        write_image(tmp / "face" / "renders" / name_png, face_render)
        write_image(
            tmp / "face" / "masks" / name_png, (np.clip(mask, 0, 1) * 255).round().astype(np.uint8)
        )
        report(1)


def body_condition(
    frame: dict[str, np.ndarray | None], size: int, style: str = "mesh"
) -> np.ndarray:
    """One frame's body condition image (size, size, 3) uint8 from its landmarks (part ->
    (N, 3) pixel points or None) in the model's ``condition_style``: ``mesh``
    (``render.render_frame``) or ``skeleton`` (``skeleton.draw_skeleton``)."""
    if style == "mesh":
        from anchorgen.prepare.render import render_frame

        return render_frame(frame, size)
    if style == "skeleton":
        from anchorgen.prepare.skeleton import draw_skeleton

        return draw_skeleton(frame, size)
    raise InputError(f"unknown condition style {style!r}; valid: mesh, skeleton")


def landmark_renders(
    landmarks: LandmarkSequence,
    i: int,
    face_affine: np.ndarray,
    size: int,
    face_size: int,
    style: str = "mesh",
) -> tuple[np.ndarray, np.ndarray]:
    """Frame i's body condition (size, in ``style``) and its face render (face_size, mesh).

    The face condition is rendered in face space, as sharp as the aligned face crop, rather
    than cut out of the body render and enlarged.
    """
    from anchorgen.prepare.render import render_frame

    frame = landmarks.frame(i)
    face_space = {
        part: None if pts is None else transform_points(pts, face_affine)
        for part, pts in frame.items()
    }
    return body_condition(frame, size, style), render_frame(face_space, face_size)


def rerender(root: str | Path, progress: bool = True, workers: int | None = None) -> None:
    """Re-render a landmark dataset's conditions from ``landmarks.npz`` and the face affines.

    Renders are a pure function of the saved landmarks; this restores them after a copy that
    left them out (e.g. a transfer to a training machine) or after a renderer update.
    Segments of frames are rendered in ``workers`` processes (default: one per CPU).
    """
    root = Path(root)
    meta = DatasetMeta.load(root)
    if meta.conditions != "landmarks":
        raise InputError(
            f"{root}: conditions were given as {meta.conditions}, not rendered from landmarks"
        )
    for sub in ("renders", "face/renders"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    segments = split_frames(meta.num_frames, workers or os.cpu_count() or 1)
    run_segments(
        _rerender_segment, [(root, a, b) for a, b in segments], meta.num_frames, "renders", progress
    )


def _rerender_segment(job: tuple[Path, int, int], report) -> None:
    root, a, b = job
    meta = DatasetMeta.load(root)
    landmarks = LandmarkSequence.load(root / "landmarks.npz")
    affines = np.load(root / "face_affines.npy", allow_pickle=False)
    for i in range(a, b):
        render, face_render = landmark_renders(landmarks, i, affines[i], meta.size, meta.face_size)
        write_image(root / "renders" / frame_name(i, ".png"), render)
        write_image(root / "face" / "renders" / frame_name(i, ".png"), face_render)
        report(1)


def _held_face(seq: LandmarkSequence, i: int) -> np.ndarray:
    """The face points of frame i, or of the nearest frame that has a face."""
    present = np.flatnonzero(seq.present["face"])
    nearest = present[np.argmin(np.abs(present - i))]
    return seq.face[nearest]


def clip_face_affines(seq: LandmarkSequence, face_size: int) -> np.ndarray:
    """(T, 2, 3) crop -> aligned face affines, held across missing faces and smoothed in time."""
    from anchorgen.prepare.face import face_align_affine, smooth_affines

    affines = np.stack([face_align_affine(_held_face(seq, i), face_size) for i in range(len(seq))])
    return smooth_affines(affines, seq.fps, out_size=face_size)


def _report(crop_raw, crop_smoothed, valid, fps, timings) -> dict:
    """Detection rates, jitter before/after smoothing and warnings, for report.json.

    ``crop_raw`` and ``crop_smoothed`` are the tracked and smoothed landmarks in crop
    pixels, so the jitter is in the pixels of the dataset's frames.
    """
    from anchorgen.prepare.smoothing import jitter

    warnings = []
    parts = {}
    for part in PARTS:
        detected = crop_raw.detected[part]
        present = crop_smoothed.present[part]
        longest = _longest_run(~present)
        parts[part] = {
            "detected_rate": float(detected.mean()),
            "present_rate_after_interpolation": float(present.mean()),
            "longest_missing_span_s": longest / fps,
            "jitter_before_px": float(jitter(getattr(crop_raw, part), detected)),
            "jitter_after_px": float(jitter(getattr(crop_smoothed, part), present)),
        }
        if part in ("left_hand", "right_hand") and longest / fps > 1.0:
            warnings.append(
                f"{part.replace('_', ' ')} missing for {longest / fps:.1f} s at a stretch (left missing)"
            )
        if detected.mean() < 0.8 and part in ("pose", "face"):
            warnings.append(f"{part} detected in only {detected.mean():.0%} of frames")
    padded = 1.0 - float(valid.mean())
    if padded > 0.1:
        warnings.append(
            f"{padded:.0%} of the crop is padding: the person is close to the frame edge"
        )
    return {
        "num_frames": len(crop_raw),
        "fps": fps,
        "parts": parts,
        "padding_fraction": padded,
        "timings_s": timings,
        "warnings": warnings,
    }


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for value in mask:
        run = run + 1 if value else 0
        best = max(best, run)
    return best


def _contact_sheet(
    root: Path, landmarks: LandmarkSequence, num_frames: int, columns: int = 6
) -> None:
    """Frames with landmarks overlaid, condition renders and face crops for a glance check."""
    picks = np.linspace(0, num_frames - 1, columns).round().astype(int)
    tile = 192
    rows = []
    for i in picks:
        frame = cv2.imread(str(root / "frames" / frame_name(i, ".jpg")))[..., ::-1].copy()
        scale = tile / frame.shape[0]
        frame = cv2.resize(frame, (tile, tile), interpolation=cv2.INTER_AREA)
        for part, color in (
            ("pose", (0, 255, 0)),
            ("left_hand", (255, 0, 0)),
            ("right_hand", (0, 0, 255)),
            ("face", (255, 255, 0)),
        ):
            pts = landmarks.frame(int(i))[part]
            if pts is not None:
                step = 6 if part == "face" else 1
                for x, y in pts[::step, :2] * scale:
                    if np.isfinite(x) and np.isfinite(y):
                        cv2.circle(frame, (int(x), int(y)), 1, color, -1)
        render = cv2.resize(
            cv2.imread(str(root / "renders" / frame_name(i, ".png")))[..., ::-1], (tile, tile)
        )
        face = cv2.resize(
            cv2.imread(str(root / "face" / "frames" / frame_name(i, ".jpg")))[..., ::-1],
            (tile, tile),
        )
        mask = cv2.resize(
            cv2.imread(str(root / "face" / "masks" / frame_name(i, ".png")), cv2.IMREAD_GRAYSCALE),
            (tile, tile),
        )
        face_render = cv2.resize(
            cv2.imread(str(root / "face" / "renders" / frame_name(i, ".png")))[..., ::-1],
            (tile, tile),
        )
        face_render = (face_render * 0.6 + np.dstack([mask * 0.4, mask * 0.0, mask * 0.0])).astype(
            np.uint8
        )
        rows.append(np.vstack([frame, render, face, face_render]))
    sheet = np.hstack(rows)
    write_image(root / "contact_sheet.png", sheet)
