"""Weight averages along a run: the trainer's EMA and the post-hoc weights of snapshots."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorgen.training.ema import EMA, averaging_weights


def test_the_warm_up_ema_is_a_power_average_with_gamma_8():
    """Until its cap binds, the trainer's EMA weighs the raw weights of step t by about t**8, so
    the post-hoc weights of gamma 8 over every step reproduce it."""
    steps = 2000
    values = np.random.default_rng(0).normal(size=steps)
    param = torch.nn.Parameter(torch.zeros(()))
    ema = EMA({"w": param}, decay=0.999)
    for step, value in enumerate(values, start=1):
        param.data.fill_(float(value))
        ema.update({"w": param}, step)
    post_hoc = float(averaging_weights(range(1, steps + 1), gamma=8) @ values)
    assert float(ema.shadow["w"]) == pytest.approx(post_hoc, abs=2e-3)
    assert float(ema.shadow["w"]) != pytest.approx(
        float(averaging_weights(range(1, steps + 1), gamma=3) @ values), abs=2e-3
    )


def test_each_snapshot_stands_for_the_steps_since_the_one_before():
    weights = averaging_weights([100, 200, 300, 400], gamma=0.0)
    np.testing.assert_allclose(weights, [0.25] * 4)
    # t**1 over (0, 100], (100, 200], ...: masses 1, 3, 5, 7 (in units of 100**2 / 2)
    np.testing.assert_allclose(
        averaging_weights([100, 200, 300, 400], gamma=1.0), np.array([1, 3, 5, 7]) / 16
    )
    # uneven spacing: a snapshot after a long gap carries more of the average
    np.testing.assert_allclose(averaging_weights([100, 400], gamma=0.0), [0.25, 0.75])


def test_a_start_keeps_only_the_later_steps():
    weights = averaging_weights([250, 500, 750, 1000], gamma=0.0, start=500)
    np.testing.assert_allclose(weights, [0, 0, 0.5, 0.5])
    weights = averaging_weights([250, 500, 750, 1000], gamma=0.0, start=600)
    np.testing.assert_allclose(weights, [0, 0, 150 / 400, 250 / 400])


def test_a_larger_gamma_leans_on_the_last_snapshots():
    steps = list(range(200, 4001, 200))
    last_share = [averaging_weights(steps, gamma)[-1] for gamma in (0, 1, 3, 8, 50)]
    assert last_share == sorted(last_share)
    assert np.isfinite(averaging_weights(steps, 500.0)).all()


@pytest.mark.parametrize(
    ("steps", "gamma", "start"),
    [([], 1, 0), ([200, 100], 1, 0), ([0, 100], 1, 0), ([100], -1, 0), ([100, 200], 0, 200)],
)
def test_bad_snapshots_or_settings_are_refused(steps, gamma, start):
    with pytest.raises(ValueError):
        averaging_weights(steps, gamma, start)
