"""grpo_loss (Torch backend) against a direct float64 re-implementation of TRL's GRPO loss.

Every loss type at token and sequence level, beta 0 and > 0, delta on and off, masked tokens,
temperature != 1, bf16 logits; property tests (hypothesis): old = ref = current gives KL 0 and ratio 1,
zero advantages give zero policy gradient, micro-batch sums equal the whole batch, in-place backward.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import LOSS_TYPES, GRPOStats, OptionError, ShapeError, grpo_loss, grpo_loss_from_logp, token_logprobs, use_backend

from oracle import assert_within, logp_tol  # same folder, rootdir-relative

# dlogits of grpo_loss relative to the largest float64 one: the launcher's dlogits model (oracle.dlogits_tol:
# (half_ulp(lse) + 2U|lse| + 8U) per unit of |g| / T, at most ~70U with |lse| < 30 here) plus about ten fp32
# operations on the per-token coefficient (ratio, clip, KL, normaliser: ~10U): 80U = 4.8e-6; 1e-5 is twice that.
GRAD_TOL = 1e-5
# The loss: per-token terms carry the log-prob error (oracle.logp_tol, <= 2.1e-6 absolute, so ratios and KL
# <= 2.1e-6 relative) times |A| and beta terms of order 1, averaged; plus the fp32 rounding of the sums.
# 1e-5 bounds |A| <= 4 at that error.
LOSS_TOL = 1e-5
FEW = settings(max_examples=12, deadline=None)
# CISPO caps its weight at eps_high itself (TRL, Liger; eps_high < 1 is refused). 1.2 rather than TRL's 5 so
# that the ratios of `batch` (log-ratio spread 0.3) reach the cap.
CISPO_EPS_HIGH = 1.2


def eps_for(loss_type: str) -> dict:
    """The eps_high a loss type is tested with (the default 0.2 except for cispo)."""
    return {"eps_high": CISPO_EPS_HIGH} if loss_type == "cispo" else {}


@pytest.fixture(autouse=True)
def torch_backend():
    with use_backend("torch"):
        yield


def trl_loss64(logits, ids, old, ref, adv, mask, *, temperature=1.0, entropy=None, **kw):
    """TRL's GRPOTrainer._compute_loss in float64 from logits: log_softmax + gather, then trl_loss_from_logp64.
    The top-entropy mask uses `entropy` when given, else the float64 entropy of these logits."""
    logsm = torch.log_softmax(logits.double() / temperature, dim=-1)
    per_token_logps = logsm.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    if entropy is None:
        entropy = torch.special.entr(logsm.exp()).sum(-1)
    return trl_loss_from_logp64(per_token_logps, old, ref, adv, mask, entropy=entropy.detach(), **kw)


def trl_loss_from_logp64(per_token_logps, old, ref, adv, mask, *, loss_type="grpo", eps_low=0.2, eps_high=0.2, delta=None,
                         beta=0.0, ratio_level="token", normalizer=None, entropy=None, behavior=None, is_level="token",
                         is_mode="truncate", is_cap=3.0, top_entropy_quantile=1.0):  # fmt: skip
    """TRL's GRPOTrainer._compute_loss written out in float64 on per-token log-probs (B, T): CISPO capped at
    epsilon_high itself, the vLLM importance-sampling correction (behavior = sampling_per_token_logps,
    mode f"{is_level}_{is_mode}", clip_max = is_cap, no clip_min) and get_high_entropy_mask, in TRL's order."""
    per_token_logps, mask, adv = per_token_logps.double(), mask.double(), adv.double()
    old = per_token_logps.detach() if old is None else old.double()
    is_ratio = None
    if behavior is not None:  # _generate_and_score_completions
        per_token_logps_diff = (old - behavior.double()) * mask
        logps_diff = per_token_logps_diff.sum(dim=-1, keepdim=True) if is_level == "sequence" else per_token_logps_diff
        is_ratio = torch.exp(logps_diff)
        if is_mode == "truncate":
            is_ratio = torch.clamp(is_ratio, min=None, max=is_cap)
        else:
            is_ratio = is_ratio.masked_fill(is_ratio > is_cap, value=0.0)  # clip_min None: no lower bound
    entropy_mask = None
    if top_entropy_quantile < 1.0:  # get_high_entropy_mask (one process)
        gathered = entropy[mask.bool()].double()
        if gathered.numel() == 0:
            entropy_mask = torch.zeros_like(mask, dtype=torch.bool)
        else:
            entropy_threshold = torch.quantile(gathered, 1 - top_entropy_quantile)
            entropy_mask = ((entropy.double() * mask) >= entropy_threshold) & mask.bool()
    log_ratio = per_token_logps - old
    if ratio_level == "token":
        log_importance_weights = log_ratio
    else:
        log_importance_weights = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    coef_1 = torch.exp(log_importance_weights)
    if beta != 0.0:
        ref = ref.double()
        per_token_kl = torch.exp(ref - per_token_logps) - (ref - per_token_logps) - 1
    if loss_type == "cispo":
        clamped_ratios = torch.clamp(coef_1, max=eps_high).detach()
        per_token_loss = -clamped_ratios * adv.unsqueeze(1) * per_token_logps
    else:
        coef_2 = torch.clamp(coef_1, 1 - eps_low, 1 + eps_high)
        if delta is not None:
            coef_1 = torch.clamp(coef_1, max=delta)
        per_token_loss = -torch.min(coef_1 * adv.unsqueeze(1), coef_2 * adv.unsqueeze(1))
    if entropy_mask is not None:
        per_token_loss = per_token_loss * entropy_mask
    if is_ratio is not None:
        per_token_loss = per_token_loss * is_ratio
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl
    if loss_type == "grpo":
        per_seq = (per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        return per_seq.mean() if normalizer is None else per_seq.sum() / normalizer
    if loss_type == "bnpo":
        return (per_token_loss * mask).sum() / (mask.sum().clamp(min=1.0) if normalizer is None else normalizer)
    if loss_type == "dr_grpo":
        return (per_token_loss * mask).sum() / (mask.numel() if normalizer is None else normalizer)
    return (per_token_loss * mask).sum() / (mask.sum().clamp(min=1.0) if normalizer is None else normalizer)


def batch(b: int, t: int, vocab: int, seed: int = 0, spread: float = 0.3):
    """Logits (B, T, V) fp32, ids, old/ref log-probs near the current ones (ratios on both sides of the
    clip range), advantages of both signs and a mask with padded tails (one row fully masked when B > 2)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, vocab, generator=gen) * 2.0
    ids = torch.randint(0, vocab, (b, t), generator=gen)
    with torch.no_grad():
        logp = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    old = logp + spread * torch.randn(b, t, generator=gen)
    ref = logp + spread * torch.randn(b, t, generator=gen)
    adv = torch.randn(b, generator=gen)
    lengths = torch.randint(1, t + 1, (b,), generator=gen)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    if b > 2:
        mask[1] = 0.0
    return logits, ids, old, ref, adv, mask


def compare(logits, ids, old, ref, adv, mask, **kw):
    """(|loss - loss64|, max |dlogits - dlogits64| / max |dlogits64|, stats) for grpo_loss vs trl_loss64."""
    x = logits.clone().requires_grad_(True)
    loss, stats = grpo_loss(x, ids, old, ref, adv, mask, **kw)
    loss.backward()
    x64 = logits.double().requires_grad_(True)
    loss64 = trl_loss64(x64, ids, old, ref, adv, mask, **kw)
    loss64.backward()
    assert loss.dtype == torch.float32 and loss.dim() == 0
    scale = x64.grad.abs().max().clamp(min=1e-30)
    return abs(loss.item() - loss64.item()), ((x.grad.double() - x64.grad).abs().max() / scale).item(), stats


CASES = list(itertools.product(LOSS_TYPES, ("token", "sequence"), (0.0, 0.04), (None, 1.3)))


@pytest.mark.parametrize(("loss_type", "ratio_level", "beta", "delta"), CASES)
def test_every_loss_type_matches_trl_in_float64(loss_type: str, ratio_level: str, beta: float, delta: float | None) -> None:
    logits, ids, old, ref, adv, mask = batch(4, 6, 1000, seed=len(loss_type) + int(beta * 100))
    loss_err, grad_err, stats = compare(
        logits, ids, old, ref, adv, mask, loss_type=loss_type, ratio_level=ratio_level, beta=beta, delta=delta, temperature=0.9,
        **eps_for(loss_type),
    )
    assert loss_err <= LOSS_TOL and grad_err <= GRAD_TOL
    assert isinstance(stats, GRPOStats)
    for name in ("logp", "kl", "ratio", "clipped_low", "clipped_high", "entropy"):
        value = getattr(stats, name)
        assert value.shape == (4, 6) and not value.requires_grad, name
    assert stats.clipped_low.dtype == torch.bool


@pytest.mark.parametrize(("loss_type", "ratio_level"), [("grpo", "token"), ("dapo", "sequence"), ("cispo", "token")])
def test_odd_vocab_50257_on_a_few_rows(loss_type: str, ratio_level: str) -> None:
    logits, ids, old, ref, adv, mask = batch(2, 3, 50257, seed=7)
    loss_err, grad_err, stats = compare(
        logits, ids, old, ref, adv, mask, loss_type=loss_type, ratio_level=ratio_level, beta=0.1, delta=1.5, **eps_for(loss_type)
    )
    assert loss_err <= LOSS_TOL and grad_err <= GRAD_TOL
    logp64 = torch.log_softmax(logits.double(), -1).gather(-1, ids[..., None]).squeeze(-1)
    live = live_rows(stats, mask, ratio_level)
    assert_within(stats.logp[live], logp64[live], logp_tol(logp64[live]), "logp")


def live_rows(stats: GRPOStats, mask: torch.Tensor, ratio_level: str = "token") -> torch.Tensor:
    """The (B, T) bool mask of the tokens the loss reads; asserts that at token level (the fused vocabulary
    pass) the masked ones were skipped: logp, entropy and KL 0, ratio 1, no clip flags."""
    live = mask.bool()
    if ratio_level == "token":
        for name, skipped in (("logp", 0.0), ("entropy", 0.0), ("kl", 0.0), ("ratio", 1.0), ("clipped_low", False), ("clipped_high", False)):
            value = getattr(stats, name)
            assert value is None or bool((value[~live] == skipped).all()), name
    return live


def test_clip_flags_and_kl_follow_the_definitions() -> None:
    logits, ids, old, ref, _, mask = batch(4, 6, 200, seed=4, spread=0.5)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    _, stats = grpo_loss(logits, ids, old, ref, adv, mask, eps_low=0.2, eps_high=0.28)
    live = live_rows(stats, mask)
    ratio = torch.exp(stats.logp - old)
    torch.testing.assert_close(stats.ratio[live], ratio[live])
    a = adv[:, None].expand(4, 6)
    assert torch.equal(stats.clipped_low[live], ((ratio < 0.8) & (a < 0))[live])
    assert torch.equal(stats.clipped_high[live], ((ratio > 1.28) & (a > 0))[live])
    assert stats.clipped_low.any() and stats.clipped_high.any()  # the data reaches both sides
    diff = ref - stats.logp
    torch.testing.assert_close(stats.kl[live], (torch.exp(diff) - diff - 1)[live])


def test_bf16_logits_give_fp32_close_to_float64() -> None:
    logits, ids, old, ref, adv, mask = batch(3, 5, 1000, seed=11)
    logits = logits.bfloat16()
    x = logits.clone().requires_grad_(True)
    loss, stats = grpo_loss(x, ids, old, ref, adv, mask, loss_type="dapo", beta=0.04, temperature=0.7)
    loss.backward()
    x64 = logits.double().requires_grad_(True)
    loss64 = trl_loss64(x64, ids, old, ref, adv, mask, loss_type="dapo", beta=0.04, temperature=0.7)
    loss64.backward()
    assert loss.dtype == stats.logp.dtype == stats.kl.dtype == torch.float32
    assert abs(loss.item() - loss64.item()) <= LOSS_TOL
    logp64 = torch.log_softmax(logits.double() / 0.7, -1).gather(-1, ids[..., None]).squeeze(-1)
    live = live_rows(stats, mask)
    assert_within(stats.logp[live], logp64[live], logp_tol(logp64[live]), "logp")  # float64 of the same bf16 values
    assert x.grad.dtype == torch.bfloat16
    bound = GRAD_TOL + 2.0**-8  # the fp32 dlogits model plus one bf16 rounding (half an ulp at 2^-7 relative)
    assert ((x.grad.double() - x64.grad).abs().max() / x64.grad.abs().max()).item() <= bound


def test_old_logp_none_is_the_on_policy_ratio_and_beta_needs_ref() -> None:
    logits, ids, _, ref, adv, mask = batch(3, 4, 100, seed=5)
    loss_err, grad_err, stats = compare(logits, ids, None, ref, adv, mask, beta=0.1)
    assert loss_err <= LOSS_TOL and grad_err <= GRAD_TOL
    assert torch.equal(stats.ratio, torch.ones(3, 4))
    with pytest.raises(OptionError, match="ref_logp"):
        grpo_loss(logits, ids, None, None, adv, mask, beta=0.1)
    _, stats = grpo_loss(logits, ids, None, None, adv, mask)
    assert stats.kl is None  # no reference: no KL estimate (not zeros)


def test_bad_options_and_shapes_raise_typed_errors() -> None:
    logits, ids, old, ref, adv, mask = batch(2, 3, 50)
    with pytest.raises(OptionError, match="loss_type"):
        grpo_loss(logits, ids, old, ref, adv, mask, loss_type="ppo")
    with pytest.raises(OptionError, match="ratio_level"):
        grpo_loss(logits, ids, old, ref, adv, mask, ratio_level="batch")
    with pytest.raises(ShapeError, match="advantages"):
        grpo_loss(logits, ids, old, ref, adv[:1], mask)
    with pytest.raises(ShapeError, match="mask"):
        grpo_loss(logits, ids, old, ref, adv, mask[:, :2])
    with pytest.raises(ShapeError, match="logits"):
        grpo_loss(logits[0], ids[0], old, ref, adv, mask)


shapes = st.tuples(st.integers(1, 4), st.integers(1, 5), st.integers(2, 40), st.integers(0, 2**16))


@FEW
@given(shape=shapes, loss_type=st.sampled_from(LOSS_TYPES), ratio_level=st.sampled_from(("token", "sequence")))
def test_old_and_ref_equal_to_current_give_zero_kl_and_unit_ratio(shape, loss_type, ratio_level) -> None:
    b, t, vocab, seed = shape
    logits, ids, _, _, adv, mask = batch(b, t, vocab, seed=seed)
    with use_backend("torch"):
        current = token_logprobs(logits, ids).detach()
        x = logits.clone().requires_grad_(True)
        kw = dict(loss_type=loss_type, ratio_level=ratio_level, **eps_for(loss_type))
        loss, stats = grpo_loss(x, ids, current, current, adv, mask, beta=0.5, **kw)
        loss.backward()
        x_pg = logits.clone().requires_grad_(True)
        loss_pg, _ = grpo_loss(x_pg, ids, current, current, adv, mask, **kw)
        loss_pg.backward()
    assert torch.equal(stats.kl, torch.zeros(b, t))
    assert torch.equal(stats.ratio, torch.ones(b, t))
    assert not stats.clipped_low.any() and not stats.clipped_high.any()
    torch.testing.assert_close(x.grad, x_pg.grad, rtol=1e-5, atol=1e-7)  # the KL term has zero gradient there


@FEW
@given(shape=shapes, loss_type=st.sampled_from(LOSS_TYPES), ratio_level=st.sampled_from(("token", "sequence")))
def test_zero_advantages_give_zero_policy_gradient(shape, loss_type, ratio_level) -> None:
    b, t, vocab, seed = shape
    logits, ids, old, ref, _, mask = batch(b, t, vocab, seed=seed)
    x = logits.clone().requires_grad_(True)
    with use_backend("torch"):
        kw = dict(loss_type=loss_type, ratio_level=ratio_level, delta=1.5, **eps_for(loss_type))
        loss, _ = grpo_loss(x, ids, old, ref, torch.zeros(b), mask, **kw)
        loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(x.grad) == 0


def whole_batch_normalizer(loss_type: str, mask: torch.Tensor) -> float:
    b, t = mask.shape
    return {"grpo": float(b), "dr_grpo": float(b * t)}.get(loss_type, max(mask.sum().item(), 1.0))


@FEW
@given(
    shape=st.tuples(st.integers(2, 5), st.integers(1, 5), st.integers(2, 40), st.integers(0, 2**16)),
    loss_type=st.sampled_from(LOSS_TYPES),
    ratio_level=st.sampled_from(("token", "sequence")),
    beta=st.sampled_from((0.0, 0.1)),
    split=st.integers(1, 4),
)
def test_micro_batch_sums_equal_the_whole_batch(shape, loss_type, ratio_level, beta, split) -> None:
    b, t, vocab, seed = shape
    logits, ids, old, ref, adv, mask = batch(b, t, vocab, seed=seed)
    kw = dict(loss_type=loss_type, ratio_level=ratio_level, beta=beta, delta=1.4, **eps_for(loss_type))
    with use_backend("torch"):
        x = logits.clone().requires_grad_(True)
        whole, _ = grpo_loss(x, ids, old, ref, adv, mask, **kw)
        whole.backward()
        norm = whole_batch_normalizer(loss_type, mask)
        y = logits.clone().requires_grad_(True)
        parts = []
        cut = min(split, b - 1)
        for sl in (slice(0, cut), slice(cut, b)):
            part, _ = grpo_loss(y[sl], ids[sl], old[sl], ref[sl], adv[sl], mask[sl], normalizer=norm, **kw)
            part.backward()
            parts.append(part.item())
    assert sum(parts) == pytest.approx(whole.item(), rel=1e-5, abs=1e-7)
    torch.testing.assert_close(y.grad, x.grad, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_inplace_backward_gives_the_same_gradients(loss_type: str) -> None:
    logits, ids, old, ref, adv, mask = batch(3, 4, 300, seed=9)
    grads = []
    for inplace in (False, True):
        leaf = logits.clone().requires_grad_(True)
        loss, _ = grpo_loss(leaf * 1.0, ids, old, ref, adv, mask, loss_type=loss_type, beta=0.04, inplace_backward=inplace, **eps_for(loss_type))
        loss.backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)


def test_loss_from_logp_matches_grpo_loss() -> None:
    logits, ids, old, ref, adv, mask = batch(3, 4, 64, seed=2)
    loss, stats = grpo_loss(logits, ids, old, ref, adv, mask, loss_type="bnpo", beta=0.04)
    logp = torch.log_softmax(logits, -1).gather(-1, ids[..., None]).squeeze(-1)
    loss2, stats2 = grpo_loss_from_logp(logp, old, ref, adv, mask, loss_type="bnpo", beta=0.04)
    torch.testing.assert_close(loss2, loss)
    assert stats2.entropy is None
