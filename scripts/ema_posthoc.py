"""Post-hoc weight averages of a finished training run (research script).

A run trained with frequent checkpoints (``checkpoint_every=250 keep_checkpoints=100``) holds
its raw weights every 250 steps. This script writes a model whose trainable weights are one
average of those snapshots (``anchorgen.training.ema.averaging_weights``), in the run's own
export format, so that ``anchorgen evaluate`` / ``generate`` can render it:

- ``power:G``: the power-function EMA with exponent G read at the last snapshot (EDM2 eq. 3;
  the trainer's warm-up EMA is close to G = 8);
- ``uniform:S``: the plain mean of the raw weights after step S (stochastic weight averaging);
- ``ema``: the EMA the trainer kept, as stored in the last snapshot's checkpoint.

    python3 scripts/ema_posthoc.py RUN/body OUT/body --average power:3 [--until 3500]

RUN/body is a training run directory (its export and ``checkpoints/``); OUT/body gets the same
components with the averaged weights (``model.export_dtype``), and OUT/average.json the
snapshots and weights used.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from anchorgen.models.sgdm import StructureGuidedDiffusion
from anchorgen.presets import TrainConfig
from anchorgen.training.ema import averaging_weights
from anchorgen.training.recipe import CHECKPOINTS


def snapshots(run: Path, until: int | None) -> dict[int, Path]:
    """step -> complete checkpoint directory, up to ``until``."""
    found = {
        int(p.name.split("-")[1]): p
        for p in (run / CHECKPOINTS).glob("step-*")
        if (p / "state.json").is_file()
    }
    chosen = {s: p for s, p in sorted(found.items()) if until is None or s <= until}
    if not chosen:
        raise SystemExit(f"no checkpoints up to step {until} in {run / CHECKPOINTS}")
    return chosen


def averaged_state(chosen: dict[int, Path], average: str) -> tuple[dict, dict[int, float]]:
    """The averaged trainable weights (fp32) and each snapshot's weight."""
    kind, _, value = average.partition(":")
    last = max(chosen)
    if kind == "ema":
        return load_file(chosen[last] / "ema.safetensors"), {last: 1.0}
    if kind == "power":
        weights = averaging_weights(list(chosen), float(value))
    elif kind == "uniform":
        weights = averaging_weights(list(chosen), 0.0, start=int(value))
    else:
        raise SystemExit(f"--average must be power:G, uniform:S or ema, got {average!r}")
    total: dict[str, torch.Tensor] = {}
    used = {}
    for (step, path), weight in zip(chosen.items(), weights, strict=True):
        if weight == 0:
            continue
        used[step] = float(weight)
        for name, tensor in load_file(path / "trainable.safetensors").items():
            total[name] = total.get(name, 0) + weight * tensor.double()
    return {n: t.float() for n, t in total.items()}, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="training run directory (export + checkpoints)")
    parser.add_argument("out", type=Path, help="where the averaged model is written")
    parser.add_argument("--average", required=True, help="power:G, uniform:S or ema")
    parser.add_argument("--until", type=int, help="use the snapshots up to this step")
    args = parser.parse_args()

    chosen = snapshots(args.run, args.until)
    state, used = averaged_state(chosen, args.average)
    model = StructureGuidedDiffusion.from_pretrained(args.run).float()
    params = dict(model.named_parameters())
    missing = sorted(set(state) - set(params))
    if missing:
        raise SystemExit(f"checkpoint names not in the model: {missing[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
    export_dtype = TrainConfig.load(args.run / "config.yaml").model.export_dtype
    partial = args.out.with_name(args.out.name + ".partial")  # the model appears whole or not
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial, dtype=export_dtype)
    shutil.rmtree(args.out, ignore_errors=True)
    partial.rename(args.out)
    record = {"run": str(args.run), "average": args.average, "weights": used}
    (args.out.parent / "average.json").write_text(json.dumps(record, indent=2))
    print(f"{args.out}: {args.average} over {len(used)} snapshots, last step {max(chosen)}")


if __name__ == "__main__":
    main()
