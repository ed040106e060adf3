"""The ``anchorgen`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from anchorgen import __version__
from anchorgen.errors import AnchorgenError

app = typer.Typer(
    name="anchorgen",
    help="Personal avatar video with diffusion: prepare a clip, train an identity, render new motion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"anchorgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more detail."),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


# --- speech-to-motion (anchorgen.motion.audio2motion) ---------------------------------------
@app.command("motion")
def motion(
    audio: Annotated[Path, typer.Option("--audio", help="Speech: any audio or video file with audio.")],
    model: Annotated[Path, typer.Option("--model", help="An audio2motion run directory.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory for landmarks.npz.")],
    seed: int = typer.Option(0, "--seed", help="Seed: different seeds give different gestures."),
    steps: int = typer.Option(25, "--steps", help="DDIM sampling steps per window."),
    guidance: float = typer.Option(
        2.0, "--guidance", help="Classifier-free guidance scale on the speech."
    ),
    fps: float = typer.Option(0.0, "--fps", help="Frame rate of the motion (0: the identity's)."),
    smooth: float = typer.Option(2.0, "--smooth", help="Temporal smoothing (Gaussian std, frames)."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output directory."
    ),
) -> None:
    """Speech -> landmark motion of the trained identity (out/landmarks.npz)."""
    import json

    from anchorgen.io.atomic import atomic_directory
    from anchorgen.motion.audio2motion import generate_motion, load_run

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
        }
        (tmp / "motion.json").write_text(
            json.dumps({**meta, "frames": len(seq), "fps": seq.fps}, indent=1)
        )
    typer.echo(f"wrote {len(seq)} frames of motion to {out / 'landmarks.npz'}")


# --- end speech-to-motion --------------------------------------------------------------------

def main() -> None:
    """Console entry point: user-facing errors become one line on stderr and exit code 2."""
    try:
        app(standalone_mode=False)
    except AnchorgenError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
