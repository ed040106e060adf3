"""Averages of the weights along a training run.

``EMA`` is the running average the trainer keeps and exports. ``averaging_weights`` is the
same kind of average taken afterwards, over the raw weights that a run's checkpoints hold
(post-hoc EMA, Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models", sec. 3): a power-function EMA with exponent gamma weighs the raw weights
of step t by t**gamma (their eq. 3), so any gamma can be chosen after training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch


class EMA:
    """Exponential moving average of the trainable weights (fp32 shadow), with the usual warm-up
    decay min(decay, (1 + step) / (10 + step)).

    Until the cap binds (step 8,990 for decay 0.999) the warm-up is a power-function EMA with
    gamma of about 8: 1 - decay = 9 / (10 + step), close to (gamma + 1) / step.
    """

    def __init__(self, params: dict[str, torch.nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.shadow = {n: p.detach().float().clone() for n, p in params.items()}

    @torch.no_grad()
    def update(self, params: dict[str, torch.nn.Parameter], step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        names = list(self.shadow)
        torch._foreach_lerp_(
            [self.shadow[n] for n in names],
            [params[n].detach().float() for n in names],
            1.0 - decay,
        )

    @torch.no_grad()
    def copy_to(self, params: dict[str, torch.nn.Parameter]) -> None:
        for n, value in self.shadow.items():
            params[n].copy_(value)

    @contextlib.contextmanager
    def swapped_in(self, params: dict[str, torch.nn.Parameter]) -> Iterator[None]:
        """Temporarily load the EMA weights into ``params``."""
        backup = {n: p.detach().clone() for n, p in params.items()}
        self.copy_to(params)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(backup[n])


def averaging_weights(snapshot_steps: Sequence[int], gamma: float, start: int = 0) -> np.ndarray:
    """Weights (summing to 1) of raw-weight snapshots for the average with density t**gamma
    over the steps (start, last snapshot].

    The snapshot of step s_k stands for the raw weights of the steps (s_{k-1}, s_k] (s_0 = 0),
    so its weight is the integral of t**gamma over the part of that interval after ``start``.
    gamma 0 with a ``start`` is a uniform average over the last steps (stochastic weight
    averaging); start 0 with gamma > 0 is a power-function EMA read at the last snapshot
    (EDM2 eq. 3; relative width sigma_rel = sqrt((gamma + 1) / ((gamma + 2)**2 (gamma + 3))),
    gamma 8 about 0.09, gamma 3 0.16, gamma 1 0.24).
    """
    steps = np.asarray(snapshot_steps, dtype=np.float64)
    if steps.size == 0 or np.any(np.diff(steps) <= 0) or steps[0] <= 0:
        raise ValueError(
            f"snapshot steps must be positive and increasing, got {list(snapshot_steps)}"
        )
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if not 0 <= start < steps[-1]:
        raise ValueError(f"start must be in [0, {int(steps[-1])}), got {start}")
    lower = np.maximum(np.concatenate([[0.0], steps[:-1]]), start)
    upper = np.maximum(steps, start)
    scale = steps[-1]  # integrate in units of the last step: no overflow for large gamma
    mass = ((upper / scale) ** (gamma + 1) - (lower / scale) ** (gamma + 1)) / (gamma + 1)
    return mass / mass.sum()
