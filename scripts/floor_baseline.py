"""Reproduce DESIGN.md's quality floor in this project's harness (research script, GPU).

DESIGN.md section 2 ("Evidence for the from-scratch preset"): a plain 63 M-parameter
pixel-space UNet at 128 x 128, conditioned by concatenating a drawn landmark image and a
reference frame, trained from scratch for 3,900 steps of batch 32 (bf16) on the first 16 s
of the kitchen clip, reconstructs the last 4 s at PSNR 24.6 dB / SSIM 0.873. Its framing,
noise schedule and sampler are not stated. This script trains that model on an anchorgen
dataset so that it can be scored exactly like anchorgen's own renders:

- input: noisy frame | condition | reference frame, concatenated (9 channels, 128 x 128);
- condition ``skeleton``: ``anchorgen.prepare.skeleton.draw_skeleton`` (a colour per limb and
  hand, face-mesh points); ``render``: the dataset's shaded mesh render, downsampled;
- ``diffusers.UNet2DModel`` widths 128-256-256-448, 2 layers per block, self-attention at
  32 x 32 and 16 x 16 (62.7 M parameters);
- the scratch-256 preset's diffusion (x0 prediction, shifted-cosine schedule, eq. 1 with
  w_t = 1), AdamW 2e-4 with 200 warm-up steps, EMA, bf16 autocast;
- held-out frames sampled with the preset's DDIM (20 steps, no guidance) and with one step
  (the model's estimate of E[x0 | condition, reference]), written as JPEG (quality 95).

    python3 scripts/floor_baseline.py --dataset DATA --out OUT --condition skeleton

OUT/NAME/steps20/00/000000.jpg ... and OUT/NAME/result.json (steps, seconds, peak memory).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from anchorgen.generate import reference_index, to_model_space
from anchorgen.io.dataset import PreparedDataset
from anchorgen.models.sgdm import make_scheduler
from anchorgen.prepare.skeleton import draw_skeleton
from anchorgen.presets import get_preset
from anchorgen.training.ema import EMA

SIZE = 128


def load(data: PreparedDataset, condition: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames and conditions of the whole dataset, (T, 3, SIZE, SIZE) uint8 each."""

    def resize(image: np.ndarray) -> np.ndarray:
        return cv2.resize(image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)

    def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()

    seq = to_model_space(data.landmarks, SIZE)
    skeleton = condition == "skeleton"
    frames, conditions = [], []
    for i in range(len(data)):
        frames.append(resize(data.frame(i)))
        conditions.append(draw_skeleton(seq.frame(i), SIZE) if skeleton else resize(data.render(i)))
    return to_tensor(frames), to_tensor(conditions)


def signed(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--condition", choices=("skeleton", "render"), default="skeleton")
    parser.add_argument("--name", default=None)
    parser.add_argument("--steps", type=int, default=3900)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--minutes", type=float, default=15.0, help="stop early at this time")
    parser.add_argument("--holdout-frames", type=int, default=None, help="render only the first N")
    args = parser.parse_args()
    from diffusers import UNet2DModel

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # CPU: rehearsals
    torch.manual_seed(0)
    data = PreparedDataset(args.dataset)
    train, holdout = data.split_range("train"), data.split_range("holdout")
    frames, conditions = (t.to(device) for t in load(data, args.condition))
    model_config = get_preset("scratch-256").model
    scheduler = make_scheduler(model_config, train=True)
    alphas = scheduler.alphas_cumprod.to(device)
    unet = UNet2DModel(
        sample_size=SIZE,
        in_channels=9,
        out_channels=3,
        block_out_channels=(128, 256, 256, 448),
        layers_per_block=2,
        attention_head_dim=64,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    ).to(device)
    params = dict(unet.named_parameters())
    optimizer = torch.optim.AdamW(params.values(), lr=2e-4, weight_decay=0.0)
    ema = EMA(params, 0.998)
    generator = torch.Generator(device=device).manual_seed(0)
    start, losses, step = time.perf_counter(), [], 0
    while step < args.steps and time.perf_counter() - start < args.minutes * 60:
        index = torch.randint(
            train.start, train.stop, (args.batch_size,), generator=generator, device=device
        )
        ref = torch.randint(
            train.start, train.stop, (args.batch_size,), generator=generator, device=device
        )
        x0 = signed(frames[index])  # (B, 3, S, S)
        noise = torch.randn(x0.shape, generator=generator, device=device)
        t = torch.randint(0, len(alphas), (args.batch_size,), generator=generator, device=device)
        a = alphas[t][:, None, None, None]
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        for group in optimizer.param_groups:
            group["lr"] = 2e-4 * min(1.0, (step + 1) / 200)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            inputs = torch.cat([noisy, signed(conditions[index]), signed(frames[ref])], 1)
            pred = unet(inputs, t).sample
        loss = F.mse_loss(pred.float(), x0)  # x0 prediction (the preset's prediction_type)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(params, step)
        step += 1
        losses.append(loss.item() if step % 50 == 0 else None)
        if step % 500 == 0:
            print(
                f"step {step} loss {losses[-1]:.4f} {step / (time.perf_counter() - start):.2f} it/s",
                flush=True,
            )
    seconds = time.perf_counter() - start
    name = args.name or args.condition
    out = Path(args.out) / name
    ema.copy_to(params)
    unet.eval()
    reference = signed(frames[reference_index(data)])[None]
    stop = holdout.stop if args.holdout_frames is None else holdout.start + args.holdout_frames
    cond = signed(conditions[holdout.start : stop])  # (N, 3, S, S)
    rendered = {}
    for sample_steps in (20, 1):
        sampler = make_scheduler(model_config, "ddim")
        sampler.set_timesteps(sample_steps)
        x = torch.randn(
            cond.shape, generator=torch.Generator(device=device).manual_seed(0), device=device
        )
        started = time.perf_counter()
        with (
            torch.no_grad(),
            torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"),
        ):
            for timestep in sampler.timesteps:
                inputs = torch.cat([x, cond, reference.expand_as(x)], 1)
                x0_pred = unet(inputs, timestep.to(device)).sample.float()
                x = sampler.step(x0_pred, timestep, x).prev_sample
        if device.type == "cuda":
            torch.cuda.synchronize()
        rendered[sample_steps] = time.perf_counter() - started
        folder = out / f"steps{sample_steps}" / "00"
        folder.mkdir(parents=True, exist_ok=True)
        images = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        for k, image in enumerate(images):
            cv2.imwrite(
                str(folder / f"{k:06d}.jpg"), image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
    result = {
        "condition": args.condition,
        "steps": step,
        "batch_size": args.batch_size,
        "train_seconds": round(seconds, 1),
        "steps_per_second": round(step / seconds, 2),
        "parameters_M": round(sum(p.numel() for p in params.values()) / 1e6, 2),
        "peak_gpu_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if device.type == "cuda"
        else None,
        "last_losses": [x for x in losses if x is not None][-5:],
        "render_seconds": rendered,
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
    }
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
