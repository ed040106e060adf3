"""The ``anchorgen`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import logging
import sys

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


# ---------------------------------------------------------------------------- train
# (models/training area: anchorgen.presets, anchorgen.training.recipe)
from typing import Annotated  # noqa: E402

_TRAIN_HELP = """Train an identity model (SGDM body or face) or a stage-1 model; resumes by re-running.

\b
Examples:
  anchorgen train --preset tiny --dry-run datasets=\\[data/me] output_dir=runs/tiny
  anchorgen train --preset scratch-256 stage=pretrain datasets=\\[data/a,data/b] output_dir=runs/body-s1
  anchorgen train --preset scratch-256 init_from=runs/body-s1 datasets=\\[data/me] output_dir=runs/me-body
  anchorgen train --preset face datasets=\\[data/me] output_dir=runs/me-face steps=2000
  anchorgen train --config runs/me-body/config.yaml          # resume (same command again)
  accelerate launch --num_processes 8 -m anchorgen train --config run.yaml   # 8 GPUs

Overrides are dotted key=value pairs parsed as YAML (model.temporal=false, batch_size=4);
presets: tiny, scratch-256, face, sd15.
"""


@app.command("train", help=_TRAIN_HELP, no_args_is_help=True)
def train(
    overrides: Annotated[
        list[str] | None, typer.Argument(help="key=value config overrides, e.g. steps=2000 model.conditioning_scale=1.5")
    ] = None,
    config: str = typer.Option(None, "--config", "-c", help="A TrainConfig YAML/TOML/JSON file."),
    preset: str = typer.Option(None, "--preset", "-p", help="Start from a named preset instead of a file."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate config, data and paths; do not train."),
) -> None:
    from anchorgen.errors import ConfigError
    from anchorgen.presets import TrainConfig, get_preset

    if (config is None) == (preset is None):
        raise ConfigError("pass exactly one of --config FILE or --preset NAME (tiny, scratch-256, face, sd15)")
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
    typer.echo(f"trained model: {run_dir}")


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
