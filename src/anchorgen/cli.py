"""The ``anchorgen`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from anchorgen import __version__
from anchorgen.errors import AnchorgenError, ConfigError

app = typer.Typer(
    name="anchorgen",
    help="Personal avatar video with diffusion: prepare a clip, train an identity, render new motion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # help paragraphs reflow; examples stay one per line
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"anchorgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more detail."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


# --- verify: is this video marked as made by anchorgen? (io/watermark.py) -------------------


@app.command(
    "verify",
    epilog=(
        "Examples:\n\n"
        "  anchorgen verify out.mp4\n\n"
        "  anchorgen verify clip.mp4 --frames 96 && echo 'made by anchorgen'\n\n"
        "Exit code: 0 when the watermark is detected, 1 when it is not, 2 when the file "
        "cannot be read."
    ),
)
def verify(
    file: Annotated[
        Path, typer.Argument(help="Video file to check (any format PyAV/FFmpeg reads).")
    ],
    frames: Annotated[
        int, typer.Option("--frames", min=1, help="Frames to sample, evenly spread over the video.")
    ] = 48,
) -> None:
    """Check a video for anchorgen's invisible AI-generated watermark and its MP4 tags.

    The watermark survives H.264 re-encoding and resizing; the tags (comment, description) are shown when present but are easy to strip, so only the watermark decides.
    """
    from anchorgen.io.watermark import verify_video

    result = verify_video(file, max_frames=frames)
    stats = f"score {result.score:.3f}, z {result.z_score:.1f}, p {result.p_value:.1e}, {result.frames_used} frames"
    state = "detected" if result.detected else "not detected"
    typer.echo(f"AI-generated watermark: {state} ({stats})")
    if result.metadata:
        for key, value in result.metadata.items():
            typer.echo(f"metadata {key}: {value}")
    else:
        typer.echo("metadata: no comment/description tags")
    raise typer.Exit(0 if result.detected else 1)


# ---------------------------------------------------------------------------- train
# (models/training area: anchorgen.presets, anchorgen.training.recipe)

_TRAIN_HELP = """Train an identity model (SGDM body or face) or a stage-1 model; resumes by re-running.

Examples:

  anchorgen train --preset tiny --dry-run "datasets=[data/me]" output_dir=runs/tiny

  anchorgen train --preset scratch-256 stage=pretrain "datasets=[data/a,data/b]" output_dir=runs/body-s1

  anchorgen train --preset scratch-256 init_from=runs/body-s1 "datasets=[data/me]" output_dir=runs/me/body

  anchorgen train --preset face "datasets=[data/me]" output_dir=runs/me/face time_limit_minutes=15

  anchorgen train --config runs/me/body/config.yaml    (resume: the same command again)

  accelerate launch --num_processes 8 -m anchorgen train --config run.yaml    (8 GPUs)

  anchorgen train --preset audio2motion data_dir=clips identity_clip=anchors/me.mp4 output_dir=runs/me/audio2motion

Overrides are dotted key=value pairs parsed as YAML (model.temporal=false, batch_size=4).
Presets: tiny, demo, demo-face, scratch-256, face, sd15; audio2motion and audio2motion-tiny
train the speech-to-motion model (pretrained on data_dir's anchors/ and drivers/ clips,
fine-tuned on the identity's clip).
"""


@app.command("train", help=_TRAIN_HELP, no_args_is_help=True)
def train(
    overrides: Annotated[
        list[str] | None,
        typer.Argument(
            help="key=value config overrides, e.g. steps=2000 model.conditioning_scale=1.5"
        ),
    ] = None,
    config: str = typer.Option(None, "--config", "-c", help="A TrainConfig YAML/TOML/JSON file."),
    preset: str = typer.Option(
        None, "--preset", "-p", help="Start from a named preset instead of a file."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate config, data and paths; do not train."
    ),
) -> None:
    from anchorgen.presets import TrainConfig, get_preset

    if (config is None) == (preset is None):
        raise ConfigError(
            "pass exactly one of --config FILE or --preset NAME (tiny, scratch-256, face, sd15)"
        )
    from anchorgen.motion.audio2motion.train import PRESETS as MOTION_PRESETS

    if preset in MOTION_PRESETS:
        _train_motion(MOTION_PRESETS[preset].with_overrides(overrides), dry_run)
        return
    base = TrainConfig.load(config) if config is not None else get_preset(preset)
    resolved = base.with_overrides(overrides)
    from anchorgen.training.recipe import dry_run as check
    from anchorgen.training.recipe import run_training

    if dry_run:
        for line in check(resolved):
            typer.echo(line)
        typer.echo("dry run ok")
        return
    run_dir = run_training(resolved)
    if int(os.environ.get("RANK", "0")) == 0:  # accelerate/torchrun: the main process reports
        typer.echo(f"trained model: {run_dir}")


def _train_motion(config, dry_run: bool) -> None:
    """``anchorgen train --preset audio2motion``: the speech-to-motion model."""
    from anchorgen.motion.audio2motion.train import check_inputs, train_audio2motion

    lines = check_inputs(config)
    if dry_run:
        for line in lines:
            typer.echo(line)
        typer.echo("dry run ok")
        return
    typer.echo(f"trained speech-to-motion model: {train_audio2motion(config)}")


# --- speech-to-motion (anchorgen.motion.audio2motion) ---------------------------------------
@app.command("motion")
def motion(
    audio: Annotated[
        Path, typer.Option("--audio", help="Speech: any audio or video file with audio.")
    ],
    model: Annotated[Path, typer.Option("--model", help="An audio2motion run directory.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for landmarks.npz.")],
    seed: int = typer.Option(0, "--seed", help="Seed: different seeds give different gestures."),
    steps: int = typer.Option(25, "--steps", help="DDIM sampling steps per window."),
    guidance: float = typer.Option(
        2.0, "--guidance", help="Classifier-free guidance scale on the speech."
    ),
    fps: float = typer.Option(0.0, "--fps", help="Frame rate of the motion (0: the identity's)."),
    smooth: float = typer.Option(
        2.0, "--smooth", help="Temporal smoothing (Gaussian std, frames)."
    ),
    head_drift: float | None = typer.Option(
        None,
        "--head-drift",
        help="Scale of the head drift drawn (by --seed) from the identity's own head track "
        "(default 1: the identity's head motion; 0: the model's own, nearly still head; "
        "see docs/BENCHMARKS.md).",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output directory."
    ),
    render: bool = typer.Option(
        True,
        "--render/--no-render",
        help="Also write out/conditions.mp4 (the motion's renders + speech).",
    ),
    style: str = typer.Option(
        "auto",
        "--style",
        help="How conditions.mp4 draws the motion: mesh, skeleton, or auto (the condition_style "
        "of the identity whose audio2motion folder --model is, else mesh).",
    ),
) -> None:
    """Speech -> landmark motion of the trained identity (out/landmarks.npz), to inspect or edit
    before rendering; out/conditions.mp4 shows it as the identity's body conditions with the
    speech.

    Examples:

      anchorgen motion --audio speech.wav --model runs/me/audio2motion --out motion/

      anchorgen generate --model runs/me --motion motion/landmarks.npz --audio speech.wav --out out.mp4
    """
    import json

    from anchorgen.io.atomic import atomic_directory
    from anchorgen.motion.audio2motion import generate_motion, load_run
    from anchorgen.motion.audio2motion.sample import HEAD_DRIFT_DEFAULT

    if head_drift is None:
        head_drift = HEAD_DRIFT_DEFAULT
    style = _preview_style(style, model)

    net, identity = load_run(model)
    seq = generate_motion(
        net,
        audio,
        identity,
        fps=fps or None,
        seed=seed,
        num_inference_steps=steps,
        guidance_scale=guidance,
        smooth_frames=smooth,
        head_drift=head_drift,
    )
    with atomic_directory(out, overwrite=overwrite) as tmp:
        seq.save(tmp / "landmarks.npz")
        meta = {
            "audio": str(audio),
            "model": str(model),
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "smooth": smooth,
            "head_drift": head_drift,
        }
        (tmp / "motion.json").write_text(
            json.dumps({**meta, "frames": len(seq), "fps": seq.fps}, indent=1)
        )
        if render:
            _write_condition_video(seq, audio, tmp / "conditions.mp4", style)
    typer.echo(f"wrote {len(seq)} frames of motion to {out / 'landmarks.npz'}")
    if render:
        typer.echo(f"and its condition renders with the speech to {out / 'conditions.mp4'}")


def _preview_style(style: str, audio2motion_run: Path) -> str:
    """The body-condition style ``anchorgen motion`` previews in: ``style`` itself, or for
    ``auto`` the ``condition_style`` of the identity holding the run (``IDENTITY/audio2motion``
    next to ``IDENTITY/body``), mesh when the run stands alone."""
    from anchorgen.models.sgdm import read_model_config
    from anchorgen.presets import CONDITION_STYLES

    if style in CONDITION_STYLES:
        return style
    if style != "auto":
        raise ConfigError(f"--style must be auto or one of {CONDITION_STYLES}, got {style!r}")
    body = Path(audio2motion_run).parent / "body"
    return read_model_config(body).condition_style if body.is_dir() else "mesh"


def _write_condition_video(seq, audio: Path, path: Path, style: str) -> None:
    """The motion as the body conditions the identity model sees (``style``), speech muxed."""
    import tempfile

    from anchorgen.generate import render_landmark_motion
    from anchorgen.io.video import read_audio, write_video
    from anchorgen.io.watermark import mark_frame, mp4_metadata

    side = seq.image_size[0]
    with tempfile.TemporaryDirectory(prefix="anchorgen-motion-") as scratch:
        body, _face, _affines = render_landmark_motion(seq, side, 128, Path(scratch), style=style)
        frames = (mark_frame(np.asarray(frame)) for frame in body)
        write_video(path, frames, seq.fps, audio=read_audio(audio), metadata=mp4_metadata(None))


# --- end speech-to-motion --------------------------------------------------------------------


def _settings(config_class, config_file: Path | None, options: dict, overrides: list[str]):
    """A command's config: the file (or defaults), then its options that were given, then --set."""
    base = config_class.load(config_file) if config_file else config_class()
    given = [f"{key}={value}" for key, value in options.items() if value is not None]
    return base.with_overrides(given + list(overrides))


def main() -> None:
    """Console entry point: user-facing errors become one line on stderr and exit code 2."""
    try:
        code = app(standalone_mode=False)
    except AnchorgenError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except OSError as exc:  # disk full, permissions: outputs are atomic, nothing half-written
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors (typer bundles its own click)
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code or 0)


# --- prepare ---------------------------------------------------------------------------

PREPARE_HELP = """Turn one clip of a person talking to camera into an identity dataset.

Decodes any video FFmpeg reads (HEVC included), tracks body, hands and face (MediaPipe
Holistic), chooses one fixed crop, renders the structure conditions, aligns the face and
writes a versioned dataset with report.json and contact_sheet.png.

Examples:

  anchorgen prepare my_clip.mp4 --out data/me --holdout-seconds 4

  anchorgen prepare my_clip.mp4 --out data/me --size 256 --start 2 --end 62

  anchorgen prepare --out data/sample          # the embedded sample clip

  anchorgen prepare clip.mp4 --out data/x --conditions renders/   # pre-rendered conditions
"""


@app.command("prepare", help=PREPARE_HELP)
def prepare_command(
    video: Path | None = typer.Argument(
        None, help="Input video; omit to use the embedded sample clip."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Dataset directory to create."),
    size: int = typer.Option(512, help="Crop side in pixels (256 for the scratch-256 preset)."),
    face_size: int = typer.Option(256, help="Aligned face crop side (256 or 512)."),
    fps: float | None = typer.Option(None, help="Output frame rate (default: the source's)."),
    start: float = typer.Option(0.0, help="Start time in seconds."),
    end: float | None = typer.Option(None, help="End time in seconds."),
    holdout_seconds: float = typer.Option(0.0, help="Reserve the last N seconds for evaluation."),
    conditions: Path | None = typer.Option(
        None, help="Folder of pre-rendered condition images, used as-is."
    ),
    smplx_params: Path | None = typer.Option(
        None, help="SMPL-X parameters (.npz) to mesh and render."
    ),
    smplx_model: Path | None = typer.Option(
        None, help="Your SMPL-X model file (e.g. SMPLX_NEUTRAL.npz)."
    ),
    config: Path | None = typer.Option(None, help="YAML/TOML file with prepare settings."),
    overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
    set_: list[str] = typer.Option([], "--set", help="Override any setting: --set crop_margin=0.2"),
) -> None:
    from anchorgen.prepare.pipeline import PrepareConfig, prepare

    cfg = _settings(
        PrepareConfig,
        config,
        dict(
            size=size,
            face_size=face_size,
            start=start,
            end=end,
            fps=fps,
            holdout_seconds=holdout_seconds,
        ),
        set_,
    )
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="anchorgen-sample-") as scratch:
        if video is None:
            from anchorgen.prepare.sample import write_sample_clip

            typer.echo(
                "no video given: using the embedded sample clip (scikit-image's astronaut, animated)"
            )
            video = write_sample_clip(Path(scratch) / "sample.mp4")
        prepare(
            video,
            out,
            cfg,
            overwrite=overwrite,
            conditions_dir=conditions,
            smplx_params=smplx_params,
            smplx_model=smplx_model,
        )
    _print_prepare_summary(out, time.perf_counter() - tick)


def _print_prepare_summary(out: Path, seconds: float) -> None:
    import json

    report = json.loads((out / "report.json").read_text())
    meta = json.loads((out / "meta.json").read_text())
    typer.echo(
        f"prepared {meta['num_frames']} frames at {meta['fps']:g} fps into {out} in {seconds:.1f} s"
    )
    for part, stats in report["parts"].items():
        jitter = (
            f"jitter {stats['jitter_before_px']:.2f} -> {stats['jitter_after_px']:.2f} px"
            if stats["detected_rate"] > 0
            else "not detected"
        )
        typer.echo(f"  {part:<10} detected {stats['detected_rate']:6.1%}  {jitter}")
    for warning in report["warnings"]:
        typer.echo(f"  warning: {warning}")
    typer.echo(f"  look at {out / 'contact_sheet.png'} to check the clip is usable")


# --- generate --------------------------------------------------------------------------

GENERATE_HELP = """Render a trained identity driven by new motion, as a marked MP4 with audio.

--motion takes: a prepared dataset (its held-out part, or --split all), another person's
video (tracked and retargeted to the identity), a landmark file (landmarks.npz, e.g. from
`anchorgen motion`), a folder of condition images, a mesh-render video, or SMPL-X
parameters (with --smplx-model). With --audio and no --motion, the identity's
speech-to-motion model (MODEL/audio2motion) turns the speech into motion. Every output carries a visible AI-generated label, an
invisible watermark (`anchorgen verify`) and MP4 metadata.

Examples:

  anchorgen generate --model runs/me --motion data/me --out heldout.mp4

  anchorgen generate --model runs/me --motion driver.mp4 --out driven.mp4 --seed 3

  anchorgen generate --model runs/me --motion driver.mp4 --set motion_seconds=60 --out long.mp4

  anchorgen generate --model runs/me --motion renders/ --audio speech.wav --out out.mp4

  anchorgen generate --model runs/me --motion data/me --out ablation.mp4 --no-temporal --no-face-enhance

  anchorgen generate --model runs/me --audio speech.wav --out speech.mp4   # speech -> motion -> video

  anchorgen generate --model runs/me --motion driver.mp4 --out fast.mp4 --steps 10 --set scheduler=dpm++
"""


@app.command("generate", help=GENERATE_HELP, no_args_is_help=True)
def generate_command(
    model: Path = typer.Option(
        ..., "--model", "-m", help="Identity directory (body/ and face/ runs) or a body run."
    ),
    motion: Path | None = typer.Option(
        None, "--motion", help="Motion source (see above); omit to drive by --audio."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output MP4."),
    reference: Path | None = typer.Option(
        None, help="Appearance reference image (default: a training frame)."
    ),
    audio: Path | None = typer.Option(None, help="Audio to mux (default: the motion's own)."),
    face_model: Path | None = typer.Option(
        None, help="Face run (default: MODEL/face when present)."
    ),
    speech_model: Path | None = typer.Option(
        None,
        help="Speech-to-motion run for --audio without --motion (default: MODEL/audio2motion).",
    ),
    dataset: Path | None = typer.Option(
        None, help="The identity's prepared dataset (default: from the run)."
    ),
    split: str = typer.Option("holdout", help="Split of a dataset motion: holdout, train or all."),
    smplx_model: Path | None = typer.Option(None, help="SMPL-X model file for SMPL-X motion."),
    frames_dir: Path | None = typer.Option(None, help="Also write the frames as PNGs here."),
    steps: int = typer.Option(20, help="Denoising steps."),
    guidance_scale: float = typer.Option(3.5, help="Classifier-free guidance scale."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same video."),
    temporal: bool = typer.Option(
        True, help="Batch-overlapped temporal denoising (--no-temporal: frame-wise)."
    ),
    face_enhance: bool = typer.Option(
        True, help="Face enhancement pass (--no-face-enhance to skip)."
    ),
    visible_label: bool = typer.Option(
        True, help="Visible AI-generated label (watermark and metadata stay)."
    ),
    config: Path | None = typer.Option(None, help="YAML/TOML file with generate settings."),
    set_: list[str] = typer.Option([], "--set", help="Override any setting: --set window_size=24"),
) -> None:
    from anchorgen.generate import GenerateConfig, generate

    options = dict(
        num_inference_steps=steps,
        guidance_scale=guidance_scale,
        seed=seed,
        temporal=temporal,
        face_enhance=face_enhance,
        visible_label=visible_label,
    )
    cfg = _settings(GenerateConfig, config, options, set_)
    summary = generate(
        model,
        motion,
        out,
        cfg,
        face_model=face_model,
        speech_model=speech_model,
        reference=reference,
        audio=audio,
        frames_dir=frames_dir,
        dataset=dataset,
        split=split,
        smplx_model=smplx_model,
    )
    typer.echo(
        f"wrote {summary['frames']} frames ({summary['frames'] / summary['fps']:.1f} s) to {out} in "
        f"{summary['seconds']:.1f} s ({summary['seconds_per_frame'] * 1000:.0f} ms/frame)"
        + (
            f", peak GPU memory {summary['peak_gpu_gib']:.2f} GiB"
            if summary["peak_gpu_gib"] is not None
            else ""
        )
    )


# --- evaluate --------------------------------------------------------------------------

EVALUATE_HELP = """Render an identity's held-out part and score it against the ground truth.

anchorgen is compared with two floors any generator must clear: nearest-pose retrieval
from the training frames and the reference frame repeated. Metrics: PSNR/SSIM (crop
padding ignored; also at 128 px for larger frames), the codec's grid contrast, LMD
face/body/hand (MediaPipe landmarks; the paper used OpenPose), flicker (warping error
under the ground truth's optical flow, next to the ground truth's own), head-pose and
expression distances, identity similarity (dlib, with the `eval` extra) and FID/FVD when you name local InceptionV3/I3D weights (else "not computed").
Writes OUT/metrics.json, OUT/metrics.md and OUT/side_by_side.mp4.

Examples:

  anchorgen evaluate --model runs/me --dataset data/me --out eval/me

  anchorgen evaluate --model runs/me --dataset data/me --out eval/me --ablations

  anchorgen evaluate --model runs/me --dataset data/me --out eval/me --inception pt_inception.safetensors

Render on a GPU machine, score elsewhere (scoring needs MediaPipe):

  anchorgen evaluate --model runs/me --dataset data/me --out renders/me --ablations --render-only

  anchorgen evaluate --model runs/me --dataset data/me --out eval/me --renders renders/me
"""


@app.command("evaluate", help=EVALUATE_HELP, no_args_is_help=True)
def evaluate_command(
    model: Path = typer.Option(
        ..., "--model", "-m", help="Identity directory (body/ and face/ runs)."
    ),
    dataset: Path = typer.Option(
        ..., "--dataset", "-d", help="The identity's prepared dataset (with a holdout split)."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Directory for metrics.json, metrics.md, side_by_side.mp4."
    ),
    ablations: bool = typer.Option(
        False, help="Also: frame-wise, no face pass, window sizes 8/16/32."
    ),
    setting1_model: Path | None = typer.Option(
        None, help="A fine-tune-only identity for the two-stage ablation."
    ),
    inception: Path | None = typer.Option(
        None, help="InceptionV3 (pytorch-fid) weights, safetensors, for FID."
    ),
    i3d: Path | None = typer.Option(None, help="I3D weights, safetensors, for FVD."),
    steps: int = typer.Option(20, help="Denoising steps."),
    seed: int = typer.Option(0, help="Seed of the generation."),
    overwrite: bool = typer.Option(False, help="Replace an existing output directory."),
    render_only: bool = typer.Option(
        False,
        help="Only render every variant's frames and renders.json into --out (e.g. on a GPU "
        "machine without MediaPipe); score them later with --renders.",
    ),
    renders: Path | None = typer.Option(
        None, help="Score the frames a --render-only run wrote instead of generating."
    ),
    frame_format: str = typer.Option(
        "png", help="Frame files of --render-only: png (lossless) or jpg (smaller)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a generate setting: --set guidance_scale=2"
    ),
) -> None:
    from anchorgen.evaluation.report import metrics_table
    from anchorgen.evaluation.run import evaluate
    from anchorgen.generate import GenerateConfig

    cfg = _settings(GenerateConfig, None, dict(num_inference_steps=steps, seed=seed), set_)
    summary = evaluate(
        model,
        dataset,
        out,
        cfg,
        ablations=ablations,
        setting1_model=setting1_model,
        inception=inception,
        i3d=i3d,
        overwrite=overwrite,
        render_only=render_only,
        renders=renders,
        frame_format=frame_format,
    )
    if render_only:
        for name, entry in summary["variants"].items():
            typer.echo(f"{name}: {entry['frames']} frames in {entry['seconds']:.1f} s")
        typer.echo(f"wrote {out}; score it with: anchorgen evaluate ... --renders {out}")
        return
    typer.echo(metrics_table(summary["results"]))
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'metrics.md'} and {out / 'side_by_side.mp4'}")


# --- demo ------------------------------------------------------------------------------

DEMO_HELP = """Run the whole chain on the embedded sample clip, on the CPU (about 7 minutes on 2 cores).

prepare -> train (a small body and face model, a few minutes) -> generate a new motion ->
evaluate the held-out part. Needs no file from you: the sample is scikit-image's astronaut
photograph with a synthetic head-and-shoulder motion.

Examples:

  anchorgen demo

  anchorgen demo --out /tmp/demo --body-minutes 5
"""


@app.command("demo", help=DEMO_HELP)
def demo_command(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output directory (replaced)."),
    body_minutes: float = typer.Option(2.5, help="CPU minutes of body-model training."),
    face_minutes: float = typer.Option(1.0, help="CPU minutes of face-model training."),
    steps: int = typer.Option(10, help="Denoising steps at generation (paper: 20)."),
    seconds: float = typer.Option(8.0, help="Length of the sample clip (at least 4 s)."),
) -> None:
    from anchorgen.demo import DEMO_EPILOGUE, DemoPlan, run_demo, verdict
    from anchorgen.evaluation.report import metrics_table

    if seconds < 4.0:
        raise ConfigError(f"--seconds must be at least 4 (2 s are held out), got {seconds}")
    plan = DemoPlan(
        body_minutes=body_minutes, face_minutes=face_minutes, steps=steps, seconds=seconds
    )
    summary = run_demo(out, plan, echo=typer.echo)
    typer.echo(metrics_table({k: v for k, v in summary["results"].items()}))
    typer.echo(f"demo finished in {summary['demo_seconds'] / 60:.1f} min")
    typer.echo(DEMO_EPILOGUE.format(out=out, verdict=verdict(summary)))


# --- codec-study: pixel or latent space for the from-scratch presets (anchorgen.codec_study) -

CODEC_STUDY_HELP = """Measure the latent space's reconstruction ceiling for from-scratch training.

Trains an SD-layout AutoencoderKL (factor 8, 4 channels) from random weights for --minutes
on every frame of the --dataset folders (of the --holdout dataset its train split only),
and scores D(E(x)) on the holdout split (PSNR/SSIM, padding ignored) every minute. A latent
diffusion model renders no better than this; the pixel codec is lossless. Writes JSON.

Examples:

  anchorgen codec-study --holdout data/me --dataset data/a --minutes 8 --out codec.json

  anchorgen codec-study --holdout data/me --minutes 0.2 --set batch_size=2 --device cpu
"""


@app.command("codec-study", help=CODEC_STUDY_HELP)
def codec_study_command(
    holdout: Path = typer.Option(..., help="Prepared dataset whose holdout split is scored."),
    dataset: list[Path] = typer.Option([], "--dataset", help="More prepared datasets to train on."),
    minutes: float = typer.Option(None, help="Training time (default 8)."),
    out: Path = typer.Option(Path("codec_study.json"), "--out", "-o", help="JSON result file."),
    device: str = typer.Option("auto", help="auto, cpu or cuda[:N]."),
    config: Path | None = typer.Option(None, help="YAML/TOML file with study settings."),
    set_: list[str] = typer.Option([], "--set", help="Override any setting: --set batch_size=8"),
) -> None:
    import json

    from anchorgen.codec_study import CodecStudyConfig, run_codec_study
    from anchorgen.generate import resolve_device
    from anchorgen.io.atomic import atomic_write_text

    cfg = _settings(CodecStudyConfig, config, dict(minutes=minutes), set_)
    result = run_codec_study(dataset, holdout, cfg, resolve_device(device))
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    for point in result["curve"]:
        typer.echo(
            f"{point['minutes']:6.2f} min  step {point['step']:6d}  "
            f"PSNR {point['psnr']:.2f} dB  SSIM {point['ssim']:.3f}"
        )
    typer.echo(f"wrote {out}")


# --- bench: time the complete pipeline at the paper's setting (anchorgen.bench) ----------

BENCH_HELP = """Time the complete rendering pipeline at the paper's setting, with random weights.

300 frames of the embedded sample's motion, 20 DDIM steps, CFG 3.5, W_c 2, ws 16 / os 4:
body denoise, decode, face enhancement, watermark + H.264 encode (OpenCV's MPEG-4 where PyAV
is missing), each timed (CUDA synchronised).
Reports seconds per stage and per frame, peak GPU memory, host peak RSS and the denoise
stage's TFLOP/s against a matmul measured in the same run, plus a naive reference (float32,
one window per forward, CFG as two forwards) on the first --reference-frames frames: its
speed-up and the PSNR between the two outputs. No checkpoint is needed (pretrained=false).
Without CUDA the tiny preset runs on the CPU, and the output says so.
Several GPUs: launch it with torchrun (one process per GPU; rank 0 writes the outputs, the
naive reference is skipped).

Examples:

  anchorgen bench --out bench_sd15.json

  anchorgen bench --preset scratch-256 --frames 300 --out bench_scratch.json

  anchorgen bench --preset sd15 --set compile=default --set windows_per_batch=6

  anchorgen bench --preset sd15 --set scheduler=dpm++ --set num_inference_steps=10

  anchorgen bench --preset sd15 --reference-frames 0 --set profile_frames=32   # time by operator kind

  anchorgen bench --preset sd15 --set attention_backend=flash   # pin one SDPA backend

  anchorgen bench --preset tiny --frames 24 --reference-frames 8 --set num_inference_steps=2

  torchrun --nproc_per_node 2 -m anchorgen bench --preset sd15 --reference-frames 0
"""


@app.command("bench", help=BENCH_HELP)
def bench_command(
    preset: str = typer.Option(
        None, "--preset", "-p", help="sd15, scratch-256 or tiny (default: sd15 on CUDA)."
    ),
    frames: int = typer.Option(None, "--frames", min=1, help="Frames to render (default 300)."),
    reference_frames: int = typer.Option(
        None,
        "--reference-frames",
        min=0,
        help="Frames of the naive reference run (default 40; 0 skips it).",
    ),
    out: Path = typer.Option(Path("bench.json"), "--out", "-o", help="JSON result file."),
    video: Path | None = typer.Option(None, help="Also keep the fast path's MP4 here."),
    device: str = typer.Option(None, help="auto, cpu or cuda[:N] (default auto)."),
    config: Path | None = typer.Option(None, help="YAML/TOML file with bench settings."),
    set_: list[str] = typer.Option([], "--set", help="Override any setting: --set compile=default"),
) -> None:
    from anchorgen.bench import (
        BenchConfig,
        markdown_table,
        run_bench,
        torchrun_process_group,
        write_result,
    )

    options = dict(preset=preset, frames=frames, reference_frames=reference_frames, device=device)
    cfg = _settings(BenchConfig, config, options, set_)
    with torchrun_process_group(cfg.device):
        result = run_bench(
            cfg, video=video, echo=typer.echo, checkpoint=lambda partial: write_result(partial, out)
        )
    if result is None:  # a rank other than 0 of a torchrun launch
        return
    write_result(result, out)
    typer.echo(markdown_table(result))
    typer.echo(f"wrote {out}")
