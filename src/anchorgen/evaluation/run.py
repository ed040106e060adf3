"""``anchorgen evaluate``: render the held-out part of an identity and score it.

anchorgen and two floors (nearest-pose retrieval from the training frames, the reference
frame repeated) are scored with the same metrics on the same frames: PSNR/SSIM (padding
ignored), LMD face/body/hand (MediaPipe; the paper used OpenPose), flicker (warping error
under the ground truth's flow), head-pose/expression distances, identity similarity (dlib,
when installed) and FID/FVD (when local weights are named). Writes ``metrics.json``,
``metrics.md`` and ``side_by_side.mp4`` (ground truth | condition | anchorgen | retrieval).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from anchorgen.errors import InputError
from anchorgen.evaluation import metrics as M
from anchorgen.evaluation.baselines import nearest_pose_retrieval, reference_repeat
from anchorgen.evaluation.frechet import fid, fvd
from anchorgen.evaluation.report import metrics_table
from anchorgen.generate import (
    GenerateConfig,
    Identity,
    generate_frames,
    load_motion,
    resolve_device,
    resolve_dtype,
    to_model_space,
    with_windows,
)

log = logging.getLogger(__name__)


def score(
    generated: np.ndarray,
    truth: np.ndarray,
    valid: np.ndarray,
    truth_landmarks,
    face_affines: np.ndarray,
    face_size: int,
    reference_face: np.ndarray | None,
    fps: float,
    *,
    inception: Path | None = None,
    i3d: Path | None = None,
    grid_period: int = 0,
    progress: bool = False,
) -> dict[str, float | int | str]:
    """Every metric of one method's frames (T, H, W, 3) against the ground truth; frames
    larger than DESIGN.md's floor also get PSNR / SSIM at its 128 px (``psnr_128``), and with
    a ``grid_period`` (the body codec's factor) the frames' ``grid_contrast``."""
    from anchorgen.prepare.face import warp_face

    row: dict[str, float | int | str] = {}
    row["psnr"] = M.psnr(generated, truth, valid).mean
    row["ssim"] = M.ssim(generated, truth, valid).mean
    if generated.shape[1] > M.FLOOR_SIZE:
        small, small_valid = M.area_downsampled(generated, valid)
        small_truth, _ = M.area_downsampled(truth, valid)
        row["psnr_128"] = M.psnr(small, small_truth, small_valid).mean
        row["ssim_128"] = M.ssim(small, small_truth, small_valid).mean
    if grid_period >= 2:
        row["grid_contrast"] = M.grid_contrast(generated, grid_period, valid)
    found = detect_for_scoring(generated, fps, progress)
    for part, result in M.landmark_distances(found, truth_landmarks).items():
        row[f"lmd_{part}"] = result.mean
        row[f"lmd_{part}_missing"] = result.n_missing_generated
    faces = (
        found.face,
        truth_landmarks.face,
        found.detected["face"],
        truth_landmarks.detected["face"],
    )
    for name, metric in (("apd_deg", M.pose_distance), ("aed", M.expression_distance)):
        try:
            row[name] = metric(*faces).mean
        except InputError as exc:  # e.g. no face detected in any frame: reported, not fatal
            row[name] = f"not computed: {exc}"
    warp = M.warping_error(generated, truth, valid)
    row["warp_error"] = warp.generated
    row["warp_error_gt"] = warp.ground_truth
    if reference_face is not None and M.dlib_available():
        faces = np.stack(
            [warp_face(f, a, face_size) for f, a in zip(generated, face_affines, strict=True)]
        )
        try:
            identity = M.identity_similarity(faces, reference_face)
            row["csim"] = identity.cosine
            row["csim_no_face"] = identity.n_no_face
        except InputError as exc:
            row["csim"] = f"not computed: {exc}"
    else:
        row["csim"] = "not computed: dlib not installed (pip install anchorgen[eval])"
    for name, metric, weights in (("fid", fid, inception), ("fvd", fvd, i3d)):
        try:
            row[name] = metric(generated, truth, weights).report_value()
        except InputError as exc:  # too few frames for the network, unreadable weights
            row[name] = f"not computed: {exc}"
    return row


DETECTION_SIZE = 512
"""Frames are enlarged to this side before MediaPipe runs on them (LMD is reported at this
scale): the detectors have minimum face and hand sizes that small model outputs miss."""


def detect_for_scoring(frames: np.ndarray, fps: float, progress: bool = False):
    """MediaPipe landmarks of square frames, detected at ``DETECTION_SIZE``."""
    size = frames.shape[1]
    if size < DETECTION_SIZE:
        frames = np.stack(
            [cv2.resize(f, (DETECTION_SIZE,) * 2, interpolation=cv2.INTER_CUBIC) for f in frames]
        )
    return M.detect_landmarks(frames, fps, progress=progress)


def _render(identity, motion, config, work, progress) -> tuple[np.ndarray, float]:
    """All frames of ``motion`` rendered by ``identity`` (T, H, W, 3), and the seconds it took."""
    tick = time.perf_counter()
    with torch.inference_mode():
        frames = np.stack(list(generate_frames(identity, motion, config, work, progress)))
    if identity.body.device.type == "cuda":
        torch.cuda.synchronize()
    return frames, time.perf_counter() - tick


MAIN = "anchorgen"
SETTING_1 = "w/o two-stage training (Setting I)"


def ablation_configs(config: GenerateConfig) -> dict[str, GenerateConfig]:
    """The ablations of ``--ablations`` (Table II windows, no temporal, no face pass) of a
    ``config`` whose windows are set (``with_windows``); the window ablations keep its frames
    per forward."""
    frames_per_forward = config.window_size * config.windows_per_batch

    def windows(size: int, overlap: int) -> GenerateConfig:
        per_batch = max(1, frames_per_forward // size)
        return dataclasses.replace(
            config, window_size=size, window_overlap=overlap, windows_per_batch=per_batch
        )

    return {
        "w/o temporal denoising": dataclasses.replace(config, temporal=False),
        "w/o face enhancement": dataclasses.replace(config, face_enhance=False),
        "ws 8 / os 2": windows(8, 2),
        "ws 16 / os 4": windows(16, 4),
        "ws 32 / os 8": windows(32, 8),
    }


def _rendered_variants(
    identity, motion, config, work, *, ablations, setting1_model, dataset, device, progress
) -> Iterator[tuple[str, np.ndarray, float]]:
    """(name, frames (T, H, W, 3), seconds) of anchorgen and each ablation, rendered one at a
    time; an ablation equal to the main configuration reuses the main run."""
    main, seconds = _render(identity, motion, config, work, progress)
    yield MAIN, main, seconds
    if not ablations:
        return
    for name, variant in ablation_configs(config).items():
        if variant == config:
            yield name, main, seconds
        else:
            yield (name, *_render(identity, motion, variant, work, progress))
    if setting1_model is not None:
        other = Identity.load(
            setting1_model, dataset=dataset, device=device, dtype=identity.body.dtype
        )
        other.optimize(config)
        other_motion = load_motion(dataset, other, config, work, split="holdout", progress=progress)
        yield (SETTING_1, *_render(other, other_motion, config, work, progress))


RENDER_INDEX = "renders.json"
"""Index of a ``--render-only`` directory: generate config and, per variant, folder and seconds."""


def _stored_variants(
    renders: Path, size: int, length: int
) -> Iterator[tuple[str, np.ndarray, float]]:
    """The variants a ``--render-only`` run wrote to ``renders``, checked against the held-out part."""
    from anchorgen.io.dataset import read_image

    index_path = renders / RENDER_INDEX
    if not index_path.is_file():
        raise InputError(f"{renders} has no {RENDER_INDEX}: write it with evaluate --render-only")
    for name, entry in json.loads(index_path.read_text())["variants"].items():
        files = sorted((renders / entry["folder"]).glob("*.*"))
        if len(files) != length:
            raise InputError(
                f"{renders / entry['folder']}: {len(files)} frames, the held-out part has {length}"
            )
        frames = np.stack([read_image(f) for f in files])
        if frames.shape[1:3] != (size, size):
            raise InputError(
                f"{renders / entry['folder']}: frames are {frames.shape[2]}x{frames.shape[1]}, "
                f"the model renders {size}x{size}"
            )
        yield name, frames, float(entry["seconds"])


def evaluate(
    model: str | Path,
    dataset: str | Path,
    out: str | Path,
    config: GenerateConfig | None = None,
    *,
    ablations: bool = False,
    setting1_model: str | Path | None = None,
    inception: str | Path | None = None,
    i3d: str | Path | None = None,
    overwrite: bool = False,
    progress: bool = True,
    render_only: bool = False,
    renders: str | Path | None = None,
    frame_format: str = "png",
) -> dict:
    """Score anchorgen and the baselines on ``dataset``'s held-out split; returns the results.

    The work splits in two when the GPU machine cannot score (no MediaPipe there):
    ``render_only`` writes every variant's frames (``frame_format`` "png", or "jpg" to
    transfer less) and ``renders.json`` to ``out`` without scoring; ``renders`` then scores
    such a directory instead of generating.
    """
    from anchorgen.io.atomic import atomic_directory, atomic_write_text
    from anchorgen.io.dataset import write_image

    if frame_format not in ("png", "jpg"):
        raise InputError(f"frame_format must be 'png' or 'jpg', got {frame_format!r}")
    if render_only and renders is not None:
        raise InputError("--render-only writes renders; --renders reads them: give one of them")
    if renders is not None and (ablations or setting1_model is not None):
        raise InputError(
            "with --renders the variants are those the --render-only run wrote: "
            "drop --ablations and --setting1-model"
        )
    config = config or GenerateConfig()
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device)
    identity = Identity.load(model, dataset=dataset, device=device, dtype=dtype)
    config = with_windows(config, identity.body)  # the windows it renders, in the summary
    identity.optimize(config)
    data = identity.dataset
    holdout = data.split_range("holdout")
    if len(holdout) == 0:
        raise InputError(f"{data.root} has no held-out frames: prepare it with --holdout-seconds")
    size = identity.size
    out = Path(out)
    with (
        tempfile.TemporaryDirectory(prefix="anchorgen-evaluate-") as scratch,
        atomic_directory(out, overwrite=overwrite) as tmp,
    ):
        work = Path(scratch)
        # the held-out conditions are loaded once and shared by every variant
        motion = load_motion(data.root, identity, config, work, split="holdout", progress=progress)
        variants = (
            _stored_variants(Path(renders), size, len(holdout))
            if renders is not None
            else _rendered_variants(
                identity,
                motion,
                config,
                work,
                ablations=ablations,
                setting1_model=setting1_model,
                dataset=data.root,
                device=device,
                progress=progress,
            )
        )
        if render_only:
            index = {}
            for k, (name, frames, seconds) in enumerate(variants):
                folder = f"{k:02d}"
                (tmp / folder).mkdir()
                for i, frame in enumerate(frames):
                    write_image(tmp / folder / f"{i:06d}.{frame_format}", frame)
                index[name] = {"folder": folder, "seconds": seconds, "frames": len(frames)}
            summary = {
                "model": str(Path(model)),
                "dataset": str(data.root),
                "device": str(device),
                "generate_config": config.to_dict(),
                "variants": index,
            }
            atomic_write_text(tmp / RENDER_INDEX, json.dumps(summary, indent=2))
            return summary
        summary = _score_variants(
            variants,
            identity,
            motion,
            holdout,
            tmp,
            inception=Path(inception) if inception else None,
            i3d=Path(i3d) if i3d else None,
            progress=progress,
        )
        summary.update(
            model=str(Path(model)),
            dataset=str(data.root),
            device=str(device),
            generate_config=config.to_dict(),
        )
        atomic_write_text(tmp / "metrics.json", json.dumps(summary, indent=2))
        table = metrics_table(summary["results"])
        atomic_write_text(
            tmp / "metrics.md", f"# anchorgen evaluation: {data.root.name}\n\n{table}\n"
        )
    return summary


def _score_variants(variants, identity, motion, holdout, out, *, inception, i3d, progress) -> dict:
    """Score every variant and both baselines; write ``side_by_side.mp4`` to ``out``."""
    from anchorgen.generate import rescale_face_affines, resized
    from anchorgen.io.video import write_video
    from anchorgen.io.watermark import mark_frame, mp4_metadata

    data = identity.dataset
    size, face_size = identity.size, identity.face_size
    truth = np.stack([resized(data.frame(i), size) for i in holdout])
    valid = (
        cv2.resize(data.valid.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    )
    fps = data.meta.fps
    truth_landmarks = detect_for_scoring(truth, fps, progress)
    crop_scale, face_scale = size / data.meta.size, face_size / data.meta.face_size
    affines = rescale_face_affines(
        data.face_affines[holdout.start : holdout.stop], crop_scale, face_scale
    )

    def measure(frames: np.ndarray) -> dict:
        return score(
            frames,
            truth,
            valid,
            truth_landmarks,
            affines,
            face_size,
            identity.face_reference,
            fps,
            inception=inception,
            i3d=i3d,
            grid_period=int(identity.body.config.codec_factor),
        )

    results: dict[str, dict] = {}
    main = None
    for name, frames, seconds in variants:
        results[name] = measure(frames)
        results[name]["seconds"] = seconds
        results[name]["seconds_per_frame"] = seconds / len(holdout)
        main = frames if name == MAIN else main
    if main is None:
        raise InputError(f"no {MAIN!r} frames among the renders")
    train = data.split_range("train")
    train_landmarks = to_model_space(data.landmarks.slice(train.start, train.stop), size)
    query = to_model_space(data.landmarks.slice(holdout.start, holdout.stop), size)
    picks = nearest_pose_retrieval(train_landmarks, query)
    retrieval = np.stack([resized(data.frame(train.start + int(i)), size) for i in picks])
    floors = {
        "retrieval (nearest pose)": measure(retrieval),
        "reference repeated": measure(reference_repeat(identity.reference, len(holdout))),
    }
    if len(results) > 1 and SETTING_1 not in results:  # ablations without a Setting I run
        results[SETTING_1] = {"psnr": "not computed: pass --setting1-model RUN"}
    results = {MAIN: results.pop(MAIN), **floors, **results}
    zoom = max(1, math.ceil(256 / size))  # small models: enlarge the panels to look at

    def panel(k: int) -> np.ndarray:
        row = np.hstack([truth[k], motion.conditions[k], main[k], retrieval[k]])
        return mark_frame(np.repeat(np.repeat(row, zoom, axis=0), zoom, axis=1))

    write_video(
        out / "side_by_side.mp4",
        (panel(k) for k in range(len(holdout))),
        fps,
        metadata=mp4_metadata(str(identity.run_dir)),
    )
    clean = {name: {k: _json_value(v) for k, v in row.items()} for name, row in results.items()}
    return {"frames": len(holdout), "fps": fps, "image_size": size, "results": clean}


def _json_value(value):
    """JSON-safe metric values (PSNR of identical frames is inf; NaN where nothing was measured)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (np.floating, np.integer)):
        return _json_value(value.item())
    return value
