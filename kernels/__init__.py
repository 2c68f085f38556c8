"""Fused GRPO kernels: Triton on CUDA, a chunked Torch implementation everywhere else.

`import kernels` never imports triton; the backend is chosen on first use (`kernels.dispatch`).
At token level `grpo_loss` is one pass over the vocabulary each way (`kernels.token_loss`: logp, LSE, entropy,
ratio, clipped surrogate, k3 KL, the row's loss and the clip flags in the forward kernel, dlogits with the
per-token coefficient inline in the backward kernel); sequence-level ratios (GSPO) run `token_logprobs`
then the (B, T) math of `grpo_loss_from_logp`. Masked rows and ids < 0 are skipped (no logits read, zero
gradient; their stats are logp = entropy = KL = 0, ratio 1, no clip flags).

    token_logprobs(logits (..., V), ids (...), temperature=1.0, *, with_entropy, inplace_backward) -> logp fp32 (...)
    grpo_loss(logits (B, T, V), ids, old_logp, ref_logp, advantages (B,), mask (B, T), **options) -> (loss, GRPOStats)
    fused_linear_grpo_loss(hidden (B, T, H), weight (V, H), ids, ..., bias=None, chunk_tokens=None) -> (loss, GRPOStats)
    grpo_loss_from_logp(logp (B, T), old_logp, ref_logp, advantages, mask, **options) -> (loss, GRPOStats)
    options of the three losses: loss_type (LOSS_TYPES; cispo caps its weight at eps_high itself, >= 1),
    ratio_level (RATIO_LEVELS), eps_low, eps_high, delta, beta, normalizer; off-policy correction
    behavior_logp (B, T), is_level (IS_LEVELS), is_mode (IS_MODES), is_cap (IS_CAP = 3.0, TRL's);
    top_entropy_quantile (TRL's, 1.0 keeps all); GRPOStats.kl is None without ref_logp
    backend() -> "triton" | "torch";  use_backend(name) forces one inside a block
"""

from .dispatch import backend, use_backend
from .errors import BackendError, KernelError, OptionError, ShapeError
from .fused_linear import fused_linear_grpo_loss
from .logprobs import TokenLogprobsFunction, token_logprobs
from .loss import IS_CAP, IS_LEVELS, IS_MODES, LOSS_TYPES, RATIO_LEVELS, GRPOStats, grpo_loss, grpo_loss_from_logp

__all__ = [
    "IS_CAP",
    "IS_LEVELS",
    "IS_MODES",
    "LOSS_TYPES",
    "RATIO_LEVELS",
    "BackendError",
    "GRPOStats",
    "KernelError",
    "OptionError",
    "ShapeError",
    "TokenLogprobsFunction",
    "backend",
    "fused_linear_grpo_loss",
    "grpo_loss",
    "grpo_loss_from_logp",
    "token_logprobs",
    "use_backend",
]
