"""One training recipe for every preset and both stages (Make-Your-Anchor+ IV-B, IV-C1, IV-D).

``TrainingRecipe(config).setup() / .train() / .cleanup()`` (torchtune style), driven by
``run_training``. The same command trains on one GPU, eight GPUs (``accelerate launch``) or
the CPU; **to resume, run the same command again**: the latest checkpoint in
``output_dir/checkpoints`` restores step, weights, optimizer, EMA and RNG states.

Run directory::

    config.yaml            resolved TrainConfig
    train_log.csv, loss.png
    samples/step-XXXXXX.png    condition | reference | generated | target
    checkpoints/step-XXXXXX/   trainable.safetensors, ema.safetensors, optimizer.*, rng-<rank>.*, state.json
    unet/ controlnet/ appearance/ [vae/] anchorgen_model.json   final export (EMA weights)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from anchorgen.errors import ConfigError, InputError
from anchorgen.io.atomic import atomic_path, atomic_write_text
from anchorgen.models.sgdm import (
    BackgroundPlate,
    StructureGuidedDiffusion,
    _check_local_paths,
    check_compatible,
    count_parameters,
    read_model_config,
    temporal_parameters,
)
from anchorgen.presets import TrainConfig
from anchorgen.training.ema import EMA

log = logging.getLogger(__name__)

DatasetFactory = Callable[[Path, TrainConfig], torch.utils.data.Dataset]
"""(dataset root, run config) -> a torch Dataset of item dicts (see ``validate_item``)."""

CHECKPOINTS = "checkpoints"
LOG_COLUMNS = ("step", "loss", "lr", "samples_per_s", "elapsed_s", "peak_gpu_mem_gb")


# --------------------------------------------------------------------- data
def default_dataset_factory(root: Path, config: TrainConfig) -> torch.utils.data.Dataset:
    """A prepared identity dataset (``anchorgen.io.dataset.IdentityDataset``), train split:
    matted frames in stage 1, full frames in stage 2, landmark jitter, clips of
    ``config.clip_length`` frames, ``model.part`` crops; face part: the ``face_context_*``
    augmentation of the masked surroundings; body: the background plate when
    ``model.background_plate``."""
    try:
        from anchorgen.io.dataset import ContextAugment, IdentityDataset
    except ImportError as exc:
        raise ConfigError(
            f"the dataset reader anchorgen.io.dataset is not available: {exc}"
        ) from exc
    return IdentityDataset(
        root,
        split="train",
        clip_length=config.clip_length,
        image_size=config.model.image_size,
        use_matte=config.use_matte,
        landmark_jitter_px=config.landmark_jitter_px,
        part=config.model.part,
        condition_style=config.model.condition_style,
        background_plate=config.model.background_plate,
        context=ContextAugment(
            prob=config.face_context_degrade,
            min_scale=config.face_context_min_scale,
            shift=config.face_context_shift,
            scale_jitter=config.face_context_scale_jitter,
        ),
    )


def validate_item(item: dict, config: TrainConfig, where: str) -> None:
    """Check one dataset item against the schema training relies on (``InputError`` if not).

    frames (F, 3, S, S) in [-1, 1]; conditions (F, 3, S, S) in [0, 1]; reference (3, S, S) in
    [-1, 1]; valid (F, 1, S, S); face: masks (F, 1, S, S) in [0, 1] and optionally
    context (F, 3, S, S) in [-1, 1], the image the masked surroundings are cut from (default:
    frames); body with ``model.background_plate``: both, the plate and its hole. F =
    clip_length, S = model.image_size.
    """
    f, s = config.clip_length, config.model.image_size
    shapes = {
        "frames": (f, 3, s, s),
        "conditions": (f, 3, s, s),
        "reference": (3, s, s),
        "valid": (f, 1, s, s),
    }
    if config.model.context_input:
        shapes["masks"] = (f, 1, s, s)
        if config.model.background_plate or (isinstance(item, dict) and "context" in item):
            shapes["context"] = (f, 3, s, s)
    if not isinstance(item, dict):
        raise InputError(
            f"dataset schema mismatch in {where}: items must be dicts, got {type(item).__name__}"
        )
    missing = sorted(set(shapes) - set(item))
    if missing:
        raise InputError(
            f"dataset schema mismatch in {where}: missing {', '.join(missing)} (has {', '.join(sorted(item))})"
        )
    for key, shape in shapes.items():
        value = item[key]
        if (
            not torch.is_tensor(value)
            or tuple(value.shape) != shape
            or not value.is_floating_point()
        ):
            got = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
            raise InputError(
                f"dataset schema mismatch in {where}: {key!r} should be a float tensor of shape {shape}, got {got}"
            )


def open_datasets(config: TrainConfig, factory: DatasetFactory) -> torch.utils.data.Dataset:
    """Open and validate every dataset of the run (first item checked); concatenate them."""
    if not config.datasets:
        raise ConfigError(
            "no datasets given: set datasets=[DIR, ...] (several for stage 1, the target for stage 2)"
        )
    parts = []
    for root in config.datasets:
        root = Path(root)
        if not root.exists():
            raise InputError(f"dataset not found: {root}")
        try:
            dataset = factory(root, config)
        except (InputError, ConfigError):
            raise
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot open dataset {root}: {exc}") from exc
        if len(dataset) == 0:
            raise InputError(f"dataset {root} has no training samples")
        validate_item(dataset[0], config, str(root))
        parts.append(dataset)
    return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)


def global_batch_indices(step: int, n: int, global_batch: int, seed: int) -> list[int]:
    """Dataset indices of the global batch of optimizer step ``step`` (0-based): consecutive
    slices of per-epoch random permutations, so the order is a pure function of the step
    (an interrupted and resumed run sees exactly the same batches)."""
    indices: list[int] = []
    position = step * global_batch
    while len(indices) < global_batch:
        epoch, offset = divmod(position, n)
        permutation = torch.randperm(
            n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        )
        take = min(global_batch - len(indices), n - offset)
        indices += permutation[offset : offset + take].tolist()
        position += take
    return indices


class StepBatchSampler(torch.utils.data.Sampler):
    """This process's share of each global batch, for steps ``start_step .. total_steps - 1``."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        num_processes: int,
        rank: int,
        seed: int,
        start_step: int,
        total_steps: int,
    ):
        self.n, self.batch_size, self.num_processes, self.rank = n, batch_size, num_processes, rank
        self.seed, self.start_step, self.total_steps = seed, start_step, total_steps

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.total_steps):
            batch = global_batch_indices(
                step, self.n, self.batch_size * self.num_processes, self.seed
            )
            yield batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]


# --------------------------------------------------------------------- loss (eq. 1)
class DiffusionLoss(torch.nn.Module):
    """The training objective of eq. 1 (w_t = 1), with appearance dropout and the face SGDM's
    inpainting inputs; wrapping the SGDM so data-parallel training sees one ``forward``."""

    def __init__(self, model: StructureGuidedDiffusion) -> None:
        super().__init__()
        self.model = model
        self.scheduler = model.make_scheduler(train=True)

    def forward(
        self,
        latents: torch.Tensor,  # (B, F, C, h, w) clean z_0
        noise: torch.Tensor,  # (B, F, C, h, w)
        timesteps: torch.Tensor,  # (B,) long
        conditions: torch.Tensor,  # (B, F, 3, H, W) in [0, 1]
        reference: torch.Tensor,  # (B, 3, H, W) in [-1, 1]
        drop_appearance: torch.Tensor,  # (B,) bool
        weight: torch.Tensor,  # (B, F, 1, h, w) loss weight (0 on crop padding)
        inpaint_mask: torch.Tensor | None = None,  # (B, F, 1, h, w)
        masked_latents: torch.Tensor | None = None,  # (B, F, C, h, w)
    ) -> torch.Tensor:
        model = self.model
        tokens = model.encode_appearance(reference)  # (B, N, D)
        null = model.null_tokens(tokens.shape[0]).to(tokens.dtype)
        tokens = torch.where(drop_appearance[:, None, None], null, tokens)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if model.config.prediction_type == "epsilon":
            target = noise
        elif model.config.prediction_type == "sample":
            target = latents
        else:
            target = self.scheduler.get_velocity(latents, noise, timesteps)
        inpaint = (inpaint_mask, masked_latents) if inpaint_mask is not None else None
        pred = model.predict(
            noisy, timesteps, conditions, tokens, model.config.conditioning_scale, inpaint
        )
        squared = (pred.float() - target.float()) ** 2 * weight
        return squared.sum() / (weight.sum() * latents.shape[2]).clamp_min(1.0)


def learning_rate_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to ``learning_rate`` over ``lr_warmup_steps``, then constant, or with
    ``lr_schedule='cosine'`` lr * (1 + cos(pi * p)) / 2, p the fraction of the remaining
    ``steps`` done (SGDR, Loshchilov & Hutter 2017, without restarts)."""
    warmup = config.lr_warmup_steps
    if warmup and step < warmup:
        return config.learning_rate * (step + 1) / warmup
    if config.lr_schedule == "cosine":
        done = min(1.0, (step - warmup) / max(1, config.steps - warmup))
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * done))
    return config.learning_rate


def resolve_mixed_precision(requested: str) -> str:
    """``auto`` -> bf16 on a CUDA GPU with bf16 support, else ``no``; refuse half precision on CPU."""
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if requested != "no" and not cuda:
        raise ConfigError(
            f"mixed_precision={requested} needs a CUDA GPU; use mixed_precision=no (or auto) on the CPU"
        )
    if requested == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("this GPU does not support bf16; use mixed_precision=fp16")
    return requested


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete ``checkpoints/step-XXXXXX`` directory, or None."""
    folder = Path(run_dir) / CHECKPOINTS
    if not folder.is_dir():
        return None
    done = [
        p
        for p in folder.glob("step-*")
        if p.is_dir() and (p / "state.json").is_file() and not p.name.endswith(".partial")
    ]
    return max(done, key=lambda p: int(p.name.split("-")[1])) if done else None


# --------------------------------------------------------------------- the recipe
class TrainingRecipe:
    """setup -> train -> cleanup. ``dataset_factory`` builds one dataset per directory in
    ``config.datasets`` (default: ``anchorgen.io.dataset.IdentityDataset``)."""

    def __init__(self, config: TrainConfig, dataset_factory: DatasetFactory | None = None) -> None:
        if config.output_dir is None:
            raise ConfigError("output_dir is not set: pass output_dir=RUN_DIR")
        self.config = config
        self.run_dir = Path(config.output_dir)
        self.dataset_factory = dataset_factory or default_dataset_factory
        self.step = 0
        self.stopped_early = False

    # ------------------------------------------------------------- setup
    def setup(self) -> None:
        from accelerate import Accelerator

        config = self.config
        # cpu=True without CUDA: several processes launched on a CPU-only machine (torchrun,
        # ``accelerate launch --multi_gpu``) then form one gloo group instead of each training
        # alone as its own main process
        self.accelerator = Accelerator(
            mixed_precision=resolve_mixed_precision(config.mixed_precision),
            cpu=not torch.cuda.is_available(),
        )
        acc = self.accelerator
        self.device = acc.device
        check_run_dir(self.run_dir, config)
        self.dataset = open_datasets(config, self.dataset_factory)
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            config.save(self.run_dir / "config.yaml")
        acc.wait_for_everyone()

        self.model = self._initial_model()
        if config.grad_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.model.requires_grad_(False)
        if config.lora_rank:
            self.model.add_lora(config.lora_rank)
            adapters = self.model.identity_state_dict()
            self.trainable = {n: p for n, p in self.model.named_parameters() if n in adapters}
        else:
            frozen = set(temporal_parameters(self.model)) if config.temporal_frozen else set()
            self.trainable = {
                n: p for n, p in _trainable_candidates(self.model).items() if n not in frozen
            }
        for p in self.trainable.values():
            p.requires_grad_(True)
        if self.trainable.keys() & temporal_parameters(self.model).keys():
            # the motion modules learn clips of clip_length frames: generation's default window
            self.model.temporal_window = max(self.model.temporal_window or 0, config.clip_length)
        optimizer = torch.optim.AdamW(
            self.trainable.values(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        self.loss_module, self.optimizer = acc.prepare(DiffusionLoss(self.model), optimizer)
        self.model.codec.to(self.device)
        self.ema = EMA(self.trainable, config.ema_decay) if config.ema_decay > 0 else None
        self.noise_generator = torch.Generator(device=self.device).manual_seed(
            config.seed * 7919 + acc.process_index
        )

        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)
        self.preview = [self.dataset[i] for i in sorted({0, len(self.dataset) // 2})]
        if config.model.background_plate:  # exported with the weights: the first dataset's
            first = self.preview[0]
            self.model.background = BackgroundPlate(first["context"][0], first["masks"][0])

    def _initial_model(self) -> StructureGuidedDiffusion:
        config = self.config
        if config.init_from is not None:
            model = StructureGuidedDiffusion.from_pretrained(
                config.init_from, expected=config.model
            )
        else:
            torch.manual_seed(config.seed)
            model = StructureGuidedDiffusion.build(config.model)
        return model.float().train()

    # ------------------------------------------------------------- train
    def train(self) -> None:
        from tqdm.auto import tqdm

        config, acc = self.config, self.accelerator
        sampler = StepBatchSampler(
            len(self.dataset),
            config.batch_size,
            acc.num_processes,
            acc.process_index,
            config.seed,
            self.step,
            config.steps,
        )
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_sampler=sampler,
            num_workers=config.num_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=config.num_workers > 0,
            generator=torch.Generator().manual_seed(config.seed + self.step),
        )
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            desc=f"train {config.model.part}",
            disable=not acc.is_main_process,
            dynamic_ncols=True,
            # a time-limited run ends on the clock: show the limit, not an ETA to ``steps``
            bar_format=None
            if config.time_limit_minutes is None
            else f"{{desc}}: {{n_fmt}} steps [{{elapsed}} of {config.time_limit_minutes:g} min, {{rate_fmt}}{{postfix}}]",
        )
        started, samples_seen, running = time.perf_counter(), 0, []
        for batch in loader:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate_at(self.step, config)
            try:
                loss = self._train_step(batch)
            except torch.cuda.OutOfMemoryError as exc:
                raise ConfigError(
                    f"out of GPU memory at batch_size={config.batch_size}, clip_length={config.clip_length}, "
                    f"image_size={config.model.image_size}: lower batch_size or clip_length, or set grad_checkpointing=true"
                ) from exc
            self.step += 1
            samples_seen += config.batch_size * acc.num_processes
            running.append(loss.detach())
            bar.update(1)
            if self.step % config.log_every == 0 or self.step == config.steps:
                mean_loss = acc.reduce(torch.stack(running).mean(), reduction="mean").item()
                running = []
                elapsed = time.perf_counter() - started
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                self._log_row(mean_loss, samples_seen / max(elapsed, 1e-9), elapsed)
                if self._out_of_time(elapsed):
                    self.stopped_early = True
                    self.save_checkpoint()
                    self.save_samples()
                    break
            if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self.save_checkpoint()
            if config.sample_every and (
                self.step % config.sample_every == 0 or self.step == config.steps
            ):
                self.save_samples()
        bar.close()

    def _out_of_time(self, elapsed: float) -> bool:
        """True on every rank once any rank has passed ``time_limit_minutes`` (checked at log rows)."""
        limit = self.config.time_limit_minutes
        if limit is None:
            return False
        late = torch.tensor(float(elapsed > limit * 60.0), device=self.device)
        return bool(self.accelerator.reduce(late, reduction="sum").item() > 0)

    def _train_step(self, batch: dict) -> torch.Tensor:
        config, model = self.config, self.model
        frames = batch["frames"].to(self.device, non_blocking=True)  # (B, F, 3, H, W)
        b = frames.shape[0]
        with torch.no_grad():
            latents = model.encode_frames(frames).float()  # (B, F, C, h, w)
            valid = batch["valid"].to(self.device).flatten(0, 1)  # (B*F, 1, H, W)
            weight = -F.adaptive_max_pool2d(-valid, latents.shape[-2:]).unflatten(
                0, latents.shape[:2]
            )
            inpaint_mask = masked = None
            if model.config.context_input:
                # z_M from the (augmented) surroundings image when the dataset gives one;
                # the target latents above always come from the clean frames
                context = batch["context"].to(self.device) if "context" in batch else frames
                inpaint_mask, masked = model.inpaint_inputs(context, batch["masks"].to(self.device))
        g = self.noise_generator
        noise = torch.randn(latents.shape, generator=g, device=self.device)
        timesteps = torch.randint(
            0, model.config.num_train_timesteps, (b,), generator=g, device=self.device
        )
        drop = torch.rand(b, generator=g, device=self.device) < config.appearance_dropout
        loss = self.loss_module(
            latents,
            noise,
            timesteps,
            batch["conditions"].to(self.device),
            batch["reference"].to(self.device),
            drop,
            weight,
            inpaint_mask,
            masked,
        )
        self.accelerator.backward(loss)
        if config.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(list(self.trainable.values()), config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.trainable, self.step)
        return loss

    # ------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """checkpoints/step-XXXXXX: trainable weights, EMA, optimizer, per-rank RNG; keeps the
        last ``keep_checkpoints``. The directory appears complete or not at all."""
        acc = self.accelerator
        folder = self.run_dir / CHECKPOINTS
        final = folder / f"step-{self.step:06d}"
        tmp = folder / f".step-{self.step:06d}.partial"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        _save_rng(tmp, acc.process_index, self.noise_generator)
        if acc.is_main_process:
            save_file(
                {n: p.detach().float().contiguous().cpu() for n, p in self.trainable.items()},
                tmp / "trainable.safetensors",
            )
            if self.ema is not None:
                save_file(
                    {n: v.contiguous().cpu() for n, v in self.ema.shadow.items()},
                    tmp / "ema.safetensors",
                )
            _save_optimizer(self.optimizer.state_dict(), tmp)
            state = {
                "step": self.step,
                "num_processes": acc.num_processes,
                "model": self.config.model.architecture(),
            }
            (tmp / "state.json").write_text(json.dumps(state, indent=2, default=str))
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            done = sorted(
                (p for p in folder.glob("step-*") if p.is_dir()),
                key=lambda p: int(p.name.split("-")[1]),
            )
            for old in done[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            self._plot_loss()
        acc.wait_for_everyone()
        return final

    def _load_checkpoint(self, checkpoint: Path) -> None:
        state = json.loads((checkpoint / "state.json").read_text())
        trainable = load_file(checkpoint / "trainable.safetensors")
        if set(trainable) != set(self.trainable):
            raise ConfigError(
                f"{checkpoint} was written with other trainable weights (freeze_temporal changed?); use a new output_dir"
            )
        with torch.no_grad():
            for n, p in self.trainable.items():
                p.copy_(trainable[n])
        if self.ema is not None and (checkpoint / "ema.safetensors").is_file():
            self.ema.shadow = {
                n: v.to(self.device) for n, v in load_file(checkpoint / "ema.safetensors").items()
            }
        self.optimizer.load_state_dict(_load_optimizer(checkpoint, self.device))
        _load_rng(checkpoint, self.accelerator.process_index, self.noise_generator)
        self.step = int(state["step"])
        if self.accelerator.is_main_process:
            _truncate_log(self.run_dir / "train_log.csv", self.step)
        log.info("resumed from %s at step %d", checkpoint, self.step)

    # ------------------------------------------------------------- logs and samples
    def _log_row(self, loss: float, samples_per_s: float, elapsed: float) -> None:
        if not self.accelerator.is_main_process:
            return
        path = self.run_dir / "train_log.csv"
        peak = torch.cuda.max_memory_allocated() / 2**30 if self.device.type == "cuda" else 0.0
        lr = self.optimizer.param_groups[0]["lr"]
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(LOG_COLUMNS)
            writer.writerow(
                [
                    self.step,
                    f"{loss:.6f}",
                    f"{lr:.3e}",
                    f"{samples_per_s:.2f}",
                    f"{elapsed:.1f}",
                    f"{peak:.2f}",
                ]
            )

    def _plot_loss(self) -> None:
        path = self.run_dir / "train_log.csv"
        if not path.is_file():
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = list(csv.DictReader(path.open()))
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows])
        ax.set(
            xlabel="step",
            ylabel="loss",
            yscale="log",
            title=f"{self.config.model.preset} {self.config.model.part} {self.config.stage}",
        )
        fig.tight_layout()
        with atomic_path(self.run_dir / "loss.png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)

    def save_samples(self) -> Path | None:
        """samples/step-XXXXXX.png: one row per preview item, first frame:
        condition | reference | generated (EMA weights, few DDIM steps) | target."""
        if not self.accelerator.is_main_process:
            return None
        model = self.model
        batch = torch.utils.data.default_collate(self.preview)
        inpaint = (
            (batch.get("context", batch["frames"]), batch["masks"])
            if model.config.context_input
            else None
        )
        model.eval()
        swap = (
            self.ema.swapped_in(self.trainable)
            if self.ema is not None
            else contextlib.nullcontext()
        )
        with swap, self.accelerator.autocast():
            generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
            generated = model.sample(
                batch["conditions"],
                batch["reference"],
                self.config.sample_steps,
                generator=generator,
                inpaint_frames=inpaint,
            )
        model.train()
        rows = []
        for i in range(generated.shape[0]):
            tiles = [
                batch["conditions"][i, 0] * 2 - 1,
                batch["reference"][i],
                generated[i, 0].cpu(),
                batch["frames"][i, 0],
            ]
            rows.append(torch.cat([t.float().clamp(-1, 1) for t in tiles], dim=2))
        grid = ((torch.cat(rows, dim=1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        (self.run_dir / "samples").mkdir(exist_ok=True)
        out = self.run_dir / "samples" / f"step-{self.step:06d}.png"
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(grid).save(buffer, format="PNG")
        with atomic_path(out) as tmp:
            tmp.write_bytes(buffer.getvalue())
        return out

    # ------------------------------------------------------------- cleanup
    def cleanup(self) -> None:
        """Export the final model (EMA weights, ``model.export_dtype``) into the run directory
        in diffusers layout, plot the loss, release the accelerator."""
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process and (self.step >= self.config.steps or self.stopped_early):
            swap = (
                self.ema.swapped_in(self.trainable)
                if self.ema is not None
                else contextlib.nullcontext()
            )
            tmp = self.run_dir / ".export.partial"
            shutil.rmtree(tmp, ignore_errors=True)
            with swap:
                if self.config.lora_rank:
                    base = (
                        str(Path(self.config.init_from).resolve())
                        if self.config.init_from
                        else "build"
                    )
                    self.model.save_lora(tmp, base, dtype=self.config.model.export_dtype)
                else:
                    self.model.save_pretrained(tmp, dtype=self.config.model.export_dtype)
            for item in sorted(tmp.iterdir(), key=lambda p: p.name == "anchorgen_model.json"):
                target = self.run_dir / item.name
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(item, target)
            tmp.rmdir()
            self._plot_loss()
        acc.wait_for_everyone()
        acc.end_training()
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(True)
        GradientState._reset_state()


def _trainable_candidates(model: StructureGuidedDiffusion) -> dict[str, torch.nn.Parameter]:
    """Everything training may update: all but the codec and a frozen CLIP tower."""
    return {
        n: p
        for n, p in model.named_parameters()
        if not n.startswith(("codec.", "appearance.vision."))
    }


def check_run_dir(run_dir: Path, config: TrainConfig) -> None:
    """A run directory may be resumed only by the same model and stage."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        return
    previous = TrainConfig.load(saved)
    if (
        previous.model.architecture() != config.model.architecture()
        or previous.stage != config.stage
    ):
        raise ConfigError(
            f"{run_dir} holds a {previous.stage} run of a {previous.model.part} model (preset {previous.model.preset!r}) "
            "with another architecture or stage; choose a new output_dir"
        )


def _save_optimizer(state: dict, folder: Path) -> None:
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{index}.{key}"] = value
    save_file(tensors, folder / "optimizer.safetensors")
    (folder / "optimizer.json").write_text(
        json.dumps({"param_groups": state["param_groups"], "scalars": scalars})
    )


def _load_optimizer(folder: Path, device: torch.device) -> dict:
    meta = json.loads((folder / "optimizer.json").read_text())
    state: dict[int, dict] = {}
    for name, value in load_file(folder / "optimizer.safetensors").items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value if key == "step" else value.to(device)
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _save_rng(folder: Path, rank: int, generator: torch.Generator) -> None:
    tensors = {"noise": generator.get_state(), "torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["torch_cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, folder / f"rng-{rank}.safetensors")
    py_state = random.getstate()
    np_state = np.random.get_state()  # noqa: NPY002 (the global state a dataset may use)
    meta = {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    (folder / f"rng-{rank}.json").write_text(json.dumps(meta))


def _load_rng(folder: Path, rank: int, generator: torch.Generator) -> None:
    path = folder / f"rng-{rank}.safetensors"
    if not path.is_file():
        log.warning(
            "no RNG state for process %d in %s (different number of processes?); noise continues from the seed",
            rank,
            folder,
        )
        return
    tensors = load_file(path)
    generator.set_state(tensors["noise"])
    torch.set_rng_state(tensors["torch_cpu"])
    if "torch_cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["torch_cuda"])
    meta = json.loads((folder / f"rng-{rank}.json").read_text())
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from."""
    if not path.is_file():
        return
    rows = list(csv.reader(path.open()))
    kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= step]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(kept)
    atomic_write_text(path, buffer.getvalue())


# --------------------------------------------------------------------- entry points
def dry_run(config: TrainConfig, dataset_factory: DatasetFactory | None = None) -> list[str]:
    """Validate config, data and paths without training; returns what was checked."""
    factory = dataset_factory or default_dataset_factory
    if config.output_dir is None:
        raise ConfigError("output_dir is not set: pass output_dir=RUN_DIR")
    lines = [
        f"config: preset {config.model.preset}, {config.model.part} model, stage {config.stage}, {config.steps} steps"
    ]
    dataset = open_datasets(config, factory)
    lines.append(f"data: {len(config.datasets)} dataset(s), {len(dataset)} samples, schema ok")
    if config.init_from is not None:
        check_compatible(read_model_config(config.init_from), config.model, config.init_from)
        lines.append(f"init_from: {config.init_from} matches the model")
    if config.model.pretrained:
        _check_local_paths(config.model)
        lines.append("pretrained weights: local directories found")
    run_dir = Path(config.output_dir)
    check_run_dir(run_dir, config)
    checkpoint = latest_checkpoint(run_dir)
    lines.append(
        f"output_dir: {run_dir} ({'resumes from ' + checkpoint.name if checkpoint else 'new run'})"
    )
    precision = resolve_mixed_precision(config.mixed_precision)
    counts = count_parameters(config.model)
    lines.append(
        f"model: {counts['total'] / 1e6:.1f} M parameters ({counts['total'] * 2 / 1e6:.0f} MB in bf16), mixed precision {precision}"
    )
    return lines


def run_training(config: TrainConfig, dataset_factory: DatasetFactory | None = None) -> Path:
    """Train (or resume) the run in ``config.output_dir``; returns the run directory."""
    recipe = TrainingRecipe(config, dataset_factory)
    recipe.setup()
    try:
        if recipe.step < config.steps:
            recipe.train()
    finally:
        recipe.cleanup()
    return recipe.run_dir
