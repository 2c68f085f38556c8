"""Learning-rate and KL-coefficient schedules, as pure functions of the 0-based update index k.

LR factor = warmup (linear (k+1)/warmup_steps for k < warmup_steps) times either StepLR
(gamma ** (k // lr_step)) or cosine decay to 0 over the steps after warmup up to `total_steps`
(or 1). Being pure functions of k, they need no state beyond the step to resume exactly.

KL coefficient at k: base * min(1, k / kl_warmup) (base = kl_target when given, else beta; no warmup:
base) times the adaptive controller's multiplier. The controller (optional) nudges the multiplier each
step towards a measured KL of `adaptive_target`: m *= 1 + clip(kl / target - 1, -0.2, 0.2) / horizon
(the PPO adaptive-KL rule); its state is that multiplier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def lr_factor(k: int, *, warmup_steps: int = 0, lr_step: int | None = None, lr_gamma: float = 0.5, cosine: bool = False, total_steps: int = 1) -> float:
    """Multiplier of the base learning rate for update k (0-based)."""
    if lr_step is not None and cosine:
        raise ValueError("choose either a step schedule (lr_step) or cosine, not both")
    factor = (k + 1) / warmup_steps if k < warmup_steps else 1.0
    if lr_step is not None:
        factor *= lr_gamma ** (k // lr_step)
    elif cosine and k >= warmup_steps:
        span = max(1, total_steps - warmup_steps)
        factor *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, (k - warmup_steps) / span)))
    return factor


@dataclass
class KLController:
    beta: float = 0.04
    kl_warmup: int = 0
    kl_target: float | None = None
    adaptive: bool = False
    adaptive_target: float = 0.1
    horizon: int = 100
    multiplier: float = 1.0

    def coef(self, k: int) -> float:
        """The KL coefficient for update k (0-based)."""
        base = self.kl_target if self.kl_target is not None else self.beta
        warm = min(1.0, k / self.kl_warmup) if self.kl_warmup > 0 else 1.0
        return base * warm * self.multiplier

    def update(self, kl: float | None) -> None:
        """Adapt the multiplier to the KL measured at the last step (no-op unless adaptive)."""
        if not self.adaptive or kl is None or not math.isfinite(kl):
            return
        error = min(0.2, max(-0.2, kl / self.adaptive_target - 1.0))
        self.multiplier *= 1.0 + error / self.horizon

    def state_dict(self) -> dict[str, float]:
        return {"multiplier": self.multiplier}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.multiplier = float(state["multiplier"])
