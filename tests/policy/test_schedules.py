"""policy.schedules: LR factors and the KL coefficient (warmup, adaptive controller, state)."""

from __future__ import annotations

import math

import pytest

from policy.schedules import KLController, lr_factor


def test_step_lr_and_warmup() -> None:
    assert [lr_factor(k, lr_step=2, lr_gamma=0.5) for k in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert [lr_factor(k, warmup_steps=4) for k in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_cosine_decays_to_zero_after_warmup() -> None:
    values = [lr_factor(k, warmup_steps=2, cosine=True, total_steps=12) for k in range(13)]
    assert values[:2] == [0.5, 1.0] and values[2] == 1.0
    assert math.isclose(values[7], 0.5, abs_tol=1e-9) and values[12] == 0.0
    assert all(a >= b for a, b in zip(values[2:], values[3:]))


def test_step_and_cosine_together_are_refused() -> None:
    with pytest.raises(ValueError, match="either"):
        lr_factor(0, lr_step=2, cosine=True)


def test_kl_warmup_anneals_from_zero_to_the_target() -> None:
    kl = KLController(beta=0.04, kl_warmup=4, kl_target=0.2)
    assert [round(kl.coef(k), 6) for k in range(6)] == [0.0, 0.05, 0.1, 0.15, 0.2, 0.2]
    assert KLController(beta=0.04).coef(0) == 0.04


def test_adaptive_controller_moves_towards_its_target_and_round_trips() -> None:
    kl = KLController(beta=0.1, adaptive=True, adaptive_target=0.1, horizon=10)
    kl.update(1.0)  # far above target: raise the coefficient (by at most 20% / horizon)
    assert math.isclose(kl.multiplier, 1.02)
    kl.update(0.0)
    assert kl.multiplier < 1.02
    kl.update(float("nan"))  # ignored
    other = KLController(beta=0.1, adaptive=True)
    other.load_state_dict(kl.state_dict())
    assert other.coef(3) == kl.coef(3)
    fixed = KLController(beta=0.1)
    fixed.update(5.0)
    assert fixed.multiplier == 1.0
