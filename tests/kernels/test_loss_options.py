"""The loss options of issue 12 against TRL's formulas in float64 (tests/kernels/test_loss.py:trl_loss_from_logp64).

CISPO capped at eps_high itself; the off-policy importance-sampling correction (behavior_logp, is_level token |
sequence x is_mode truncate | mask, is_cap); the top-entropy token mask (top_entropy_quantile); GRPOStats.kl
None without a reference. grpo_loss_from_logp on fp32 and bf16 log-probs (values and gradients, tolerances
from the error model in `from_logp_tols`), then grpo_loss and fused_linear_grpo_loss passing the options through.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from kernels import IS_CAP, IS_LEVELS, IS_MODES, LOSS_TYPES, OptionError, ShapeError, fused_linear_grpo_loss, grpo_loss
from kernels import grpo_loss_from_logp, use_backend

from oracle import BF16_CAST, U, entropy_tol
from test_fused_linear import FUSED_GRAD_TOL, fused_logits_error, problem
from test_loss import GRAD_TOL, LOSS_TOL, batch, eps_for, trl_loss64, trl_loss_from_logp64

CAP = 1.5  # is_cap in these tests: the behaviour spread below puts weights on both sides of it
Q = 0.6  # top_entropy_quantile: keeps about 60% of the valid tokens


@pytest.fixture(autouse=True)
def torch_backend():
    with use_backend("torch"):
        yield


def logp_batch(b: int, t: int, seed: int, dtype: torch.dtype):
    """logp, old, ref, behavior (B, T) in `dtype` (negative log-probs, ratios on both sides of every clip),
    entropy (B, T) fp32, advantages (B,), mask with padded tails (row 1 fully masked when B > 2)."""
    gen = torch.Generator().manual_seed(seed)
    logp = -(torch.rand(b, t, generator=gen) * 6 + 0.05)
    old = logp + 0.3 * torch.randn(b, t, generator=gen)
    ref = logp + 0.3 * torch.randn(b, t, generator=gen)
    behavior = old + 0.4 * torch.randn(b, t, generator=gen)
    entropy = torch.rand(b, t, generator=gen) * 4
    adv = torch.randn(b, generator=gen)
    mask = (torch.arange(t)[None, :] < torch.randint(1, t + 1, (b,), generator=gen)[:, None]).float()
    if b > 2:
        mask[1] = 0.0
    cast = [x.to(dtype) for x in (logp, old, ref, behavior)]
    return (*cast, entropy, adv, mask)


def is_weight64(old, behavior, mask, is_level: str, is_mode: str, cap: float):
    """float64 TRL importance-sampling weight before truncation/masking, (B, T) or (B, 1)."""
    d = (old.double() - behavior.double()) * mask.double()
    return torch.exp(d.sum(-1, keepdim=True) if is_level == "sequence" else d)


def from_logp_tols(logp, old, ref, behavior, adv, mask, *, loss_type, eps_high, beta, is_level, ratio_level, cap):
    """(loss tolerance, (B, T) gradient tolerance) of grpo_loss_from_logp vs float64 on the same inputs.

    Error model (fp32 math on exact fp32 inputs): log_ratio = logp - old is one rounding (U |lr|); at sequence
    level its masked mean of <= T terms adds gamma_T (T U max |lr|); exp adds 1 ulp (2U): coef is off by
    (T + 2) U Lr + 2U relative. The IS weight: (old - behavior) * mask, summed over T at sequence level
    (gamma_T of a sum of T terms: T * T U Ld), exp: (T + 2) T U Ld + 2U relative. The products with A, the
    weight, the clip and (cispo) logp add <= 4 roundings: per-token policy terms are off by
    rho = U (8 + (T + 2) Lr + (T + 2) T Ld) relative, and are at most W C |A| (|logp| for cispo), with W the
    weight after the cap and C = max(coef, 1 + eps_high) (cispo: min(coef, eps_high)). The k3 KL
    exp(x) - x - 1 at x = ref - logp (rounded: U |x|) is off by U (|x| (E + 3) + 4E + 2), E = exp(x). The
    reductions over K <= B T terms add gamma_K of the sum of |terms|, the normaliser division one rounding.
    The gradient per token is at most W C |A| per unit row weight (plus beta (E + 1)), off by rho + (T + 4) U
    relative (the backward of the sequence mean sums T terms) and the KL gradient 1 - E by U (E (|x| + 2) + 1).
    """
    b, t = logp.shape
    lp, m, a = logp.double(), mask.double(), adv.double().abs()[:, None]
    lr = (lp - old.double()).abs() * m
    coef = torch.exp((lp - old.double()) * m)  # (B, T), token level
    if ratio_level == "sequence":
        coef = torch.exp((lp - old.double()).mul(m).sum(-1, keepdim=True) / m.sum(-1, keepdim=True).clamp(min=1)).expand(b, t)
    ld = ((old.double() - behavior.double()).abs() * m) if behavior is not None else torch.zeros_like(lp)
    rho = U * (8 + (t + 2) * lr.max().item() + (t + 2) * t * ld.max().item())
    w = torch.ones_like(lp) if behavior is None else torch.clamp(is_weight64(old, behavior, mask, is_level, "truncate", cap), max=cap).expand(b, t)
    c = torch.clamp(coef, max=eps_high) if loss_type == "cispo" else torch.maximum(coef, torch.full_like(coef, 1 + eps_high))
    pol = w * c * a * (lp.abs() if loss_type == "cispo" else 1.0)  # (B, T) bound on |policy term|
    pol_grad = w * c * a
    x = ref.double() - lp
    e = torch.exp(x)
    kl_err = U * (x.abs() * (e + 3) + 4 * e + 2)
    kl_abs = (e - x - 1).abs()
    if loss_type == "grpo":
        row = 1.0 / (m.sum(-1, keepdim=True).clamp(min=1) * b)
    elif loss_type == "dr_grpo":
        row = torch.full((b, 1), 1.0 / (b * t), dtype=torch.float64)
    else:
        row = torch.full((b, 1), 1.0 / max(m.sum().item(), 1.0), dtype=torch.float64)
    k = b * t
    terms = (pol + beta * kl_abs) * m * row
    loss_tol = ((rho * pol + beta * kl_err) * m * row).sum() + (k + 4) * U * terms.sum()
    grad_tol = ((rho + (t + 4) * U) * pol_grad + beta * (U * (e * (x.abs() + 2) + 1) + (k + 4) * U * (e + 1))) * m * row
    return loss_tol.item(), grad_tol


OPTION_CASES = list(itertools.product(LOSS_TYPES, ("token", "sequence"), IS_LEVELS, IS_MODES))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("loss_type", "ratio_level", "is_level", "is_mode"), OPTION_CASES)
def test_from_logp_options_match_trl_float64(loss_type, ratio_level, is_level, is_mode, dtype) -> None:
    eps_high = eps_for(loss_type).get("eps_high", 0.2)
    kw = dict(loss_type=loss_type, eps_high=eps_high, beta=0.04, ratio_level=ratio_level, delta=None if loss_type == "cispo" else 1.6)
    opts = dict(is_level=is_level, is_mode=is_mode, is_cap=CAP, top_entropy_quantile=Q)
    for seed in range(100):  # the first data (float64 decides: machine-independent) where the cap binds on some
        # weights, not all, and none sits within 1e-4 of it (where fp32 and float64 could decide differently)
        logp, old, ref, behavior, entropy, adv, mask = logp_batch(5, 7, seed=seed, dtype=dtype)
        w64 = is_weight64(old, behavior, mask, is_level, is_mode, CAP)
        valid = mask.bool() if is_level == "token" else mask.bool().any(-1, keepdim=True)
        w_valid = w64[valid]
        if (w_valid > CAP).any() and (w_valid < CAP).any() and ((w_valid - CAP).abs() / CAP).min() > 1e-4:
            break
    else:
        raise AssertionError("no seed puts the IS weights on both sides of the cap")

    x = logp.clone().requires_grad_(True)
    loss, stats = grpo_loss_from_logp(x, old, ref, adv, mask, entropy=entropy, behavior_logp=behavior, **kw, **opts)
    loss.backward()
    x64 = logp.double().requires_grad_(True)
    loss64 = trl_loss_from_logp64(x64, old, ref, adv, mask, entropy=entropy, behavior=behavior, **kw, **opts)
    loss64.backward()

    loss_tol, grad_tol = from_logp_tols(logp, old, ref, behavior, adv, mask, is_level=is_level, cap=CAP, **{k: kw[k] for k in ("loss_type", "eps_high", "beta", "ratio_level")})
    assert loss.dtype == torch.float32 and abs(loss.item() - loss64.item()) <= loss_tol
    assert x.grad.dtype == dtype
    if dtype == torch.bfloat16:
        grad_tol = grad_tol + BF16_CAST * x64.grad.abs()  # the gradient rounded to the bf16 leaf
    err = (x.grad.double() - x64.grad).abs()
    assert bool((err <= grad_tol).all()), f"gradient error {(err - grad_tol).max():.3e} over its bound"

    # stats: the IS weight after truncation / masking, the kept tokens, the cispo clip flag
    want_w = torch.clamp(w64, max=CAP) if is_mode == "truncate" else w64.masked_fill(w64 > CAP, 0.0)
    assert stats.is_weight.shape == logp.shape and not stats.is_weight.requires_grad
    rel = U * (8 + 9 * 7 * ((old.double() - behavior.double()).abs() * mask).max().item())  # the weight's part of rho
    assert bool(((stats.is_weight.double() - want_w.expand_as(logp)).abs() <= rel * want_w.expand_as(logp)).all())
    gathered = entropy[mask.bool()].double()
    keep = (entropy.double() * mask >= torch.quantile(gathered, 1 - Q)) & mask.bool()
    assert torch.equal(stats.entropy_mask, keep) and keep.any() and (mask.bool() & ~keep).any()
    if loss_type == "cispo":
        assert not stats.clipped_low.any()
        assert torch.equal(stats.clipped_high, (stats.ratio > eps_high) & (adv[:, None] > 0))


def test_cispo_caps_at_eps_high_itself() -> None:
    """The CISPO weight is min(ratio, eps_high), detached: the gradient w.r.t. logp is -min(ratio, eps_high) A."""
    logp = torch.tensor([[-1.0, -2.0, -0.5]])
    old = logp - torch.tensor([[0.5, -0.5, 0.0]])  # ratios e^0.5 = 1.65 (capped), e^-0.5 = 0.61, 1
    x = logp.clone().requires_grad_(True)
    loss, stats = grpo_loss_from_logp(x, old, None, torch.tensor([2.0]), torch.ones(1, 3), loss_type="cispo", eps_high=1.2)
    loss.backward()
    want = -torch.clamp(torch.exp(logp - old), max=1.2) * 2.0 / 3
    torch.testing.assert_close(x.grad, want, rtol=8 * U, atol=0)
    assert stats.clipped_high.tolist() == [[True, False, False]]
    with pytest.raises(OptionError, match=r"eps_high itself.*eps_high=5"):
        grpo_loss_from_logp(x, old, None, torch.tensor([2.0]), torch.ones(1, 3), loss_type="cispo")


def test_kl_is_none_without_reference_and_options_are_checked() -> None:
    logp, old, ref, behavior, entropy, adv, mask = logp_batch(3, 4, seed=1, dtype=torch.float32)
    _, stats = grpo_loss_from_logp(logp, old, None, adv, mask)
    assert stats.kl is None and stats.is_weight is None and stats.entropy_mask is None
    _, stats = grpo_loss_from_logp(logp, old, ref, adv, mask)  # beta 0 with a reference: KL still reported
    assert stats.kl is not None and stats.kl.shape == (3, 4)
    assert IS_CAP == 3.0  # TRL's vllm_importance_sampling_clip_max default
    bad = [
        (dict(top_entropy_quantile=0.5), "entropy"),
        (dict(top_entropy_quantile=1.5, entropy=entropy), "top_entropy_quantile"),
        (dict(behavior_logp=behavior, is_level="batch"), "is_level"),
        (dict(behavior_logp=behavior, is_mode="clip"), "is_mode"),
        (dict(behavior_logp=behavior, is_cap=0.0), "is_cap"),
    ]
    for kw, what in bad:
        with pytest.raises(OptionError, match=what):
            grpo_loss_from_logp(logp, old, ref, adv, mask, **kw)
    with pytest.raises(ShapeError, match="behavior_logp"):
        grpo_loss_from_logp(logp, old, ref, adv, mask, behavior_logp=behavior[:, :2])


def test_all_tokens_masked_keeps_nothing_and_q1_keeps_all() -> None:
    logp, old, ref, behavior, entropy, adv, mask = logp_batch(3, 4, seed=2, dtype=torch.float32)
    loss, stats = grpo_loss_from_logp(logp, old, ref, adv, torch.zeros(3, 4), entropy=entropy, top_entropy_quantile=0.3)
    assert loss.item() == 0.0 and not stats.entropy_mask.any()
    a, _ = grpo_loss_from_logp(logp, old, ref, adv, mask, entropy=entropy, top_entropy_quantile=1.0, beta=0.1)
    b, _ = grpo_loss_from_logp(logp, old, ref, adv, mask, beta=0.1)
    assert a.item() == b.item()


def entropy_margin(entropy64, mask, q: float) -> float:
    """Smallest |H - threshold| over valid tokens (float64): a kernel entropy off by less than half of it
    (the threshold moves by at most the largest entropy error) keeps the same tokens. A token whose entropy is
    the threshold (the quantile falls on a data point) is left out: the kernel's threshold is then exactly its
    own entropy of that token, which it keeps, as float64 does."""
    h = entropy64[mask.bool()]
    gap = (h - torch.quantile(h, 1 - q)).abs()
    return gap[gap > 0].min().item()


@pytest.mark.parametrize(("loss_type", "is_level", "is_mode"), [("grpo", "token", "truncate"), ("dapo", "sequence", "mask"), ("cispo", "token", "mask")])
def test_grpo_loss_passes_the_options_through(loss_type, is_level, is_mode) -> None:
    check_grpo_loss_options("torch", torch.device("cpu"), loss_type, is_level, is_mode)


def check_grpo_loss_options(backend: str, device: torch.device, loss_type: str, is_level: str, is_mode: str) -> None:
    """grpo_loss with off-policy weights and the top-entropy mask on `backend` against TRL in float64
    (also run on the Triton backend by tests/kernels/test_token_loss.py)."""
    logits, ids, old, ref, adv, mask = batch(4, 6, 1000, seed=21)
    gen = torch.Generator().manual_seed(5)
    behavior = old + 0.4 * torch.randn(old.shape, generator=gen)
    kw = dict(loss_type=loss_type, beta=0.04, temperature=0.9, is_level=is_level, is_mode=is_mode,
              is_cap=CAP, top_entropy_quantile=Q, **eps_for(loss_type))  # fmt: skip
    x = logits.clone().to(device).requires_grad_(True)
    on = [t.to(device) for t in (ids, old, ref, adv, mask, behavior)]
    with use_backend(backend):
        loss, stats = grpo_loss(x, *on[:5], behavior_logp=on[5], **kw)
        loss.backward()
    x64 = logits.double().requires_grad_(True)
    loss64 = trl_loss64(x64, ids, old, ref, adv, mask, behavior=behavior, **kw)
    loss64.backward()
    h64 = torch.special.entr(torch.softmax(logits.double() / 0.9, -1)).sum(-1)
    assert entropy_margin(h64, mask, Q) > 2 * entropy_tol(h64).max().item()  # same kept tokens in fp32
    # LOSS_TOL's model with each per-token term scaled by an IS weight <= CAP
    assert abs(loss.item() - loss64.item()) <= CAP * LOSS_TOL
    assert ((x.grad.double().cpu() - x64.grad).abs().max() / x64.grad.abs().max()).item() <= GRAD_TOL
    assert stats.entropy_mask is not None and stats.is_weight is not None
    gathered = h64[mask.bool()]
    keep = (h64 * mask >= torch.quantile(gathered, 1 - Q)) & mask.bool()
    assert torch.equal(stats.entropy_mask.cpu(), keep) and keep.any() and (mask.bool() & ~keep).any()


def test_fused_linear_passes_the_options_through() -> None:
    hidden, weight, _, ids, old, ref, adv, mask = problem(3, 5, 16, 1000, seed=13)
    gen = torch.Generator().manual_seed(6)
    behavior = old + 0.4 * torch.randn(old.shape, generator=gen)
    kw = dict(loss_type="bnpo", beta=0.04, temperature=1.1, is_level="sequence", is_mode="truncate", is_cap=CAP, top_entropy_quantile=Q)
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    loss, stats = fused_linear_grpo_loss(h, w, ids, old, None, adv, mask, chunk_tokens=4, behavior_logp=behavior, **{**kw, "beta": 0.0})
    assert stats.kl is None
    loss, stats = fused_linear_grpo_loss(h, w, ids, old, ref, adv, mask, chunk_tokens=4, behavior_logp=behavior, **kw)
    loss.backward()
    h64, w64 = hidden.double().requires_grad_(True), weight.double().requires_grad_(True)
    logits64 = h64 @ w64.T
    loss64 = trl_loss64(logits64, ids, old, ref, adv, mask, behavior=behavior, **kw)
    loss64.backward()
    h_ent = torch.special.entr(torch.softmax(logits64.detach() / 1.1, -1)).sum(-1)
    moved = 2 * fused_logits_error(hidden, weight).max().item() / 1.1  # the fp32 GEMM moves the entropy too
    assert entropy_margin(h_ent, mask, Q) > 2 * (entropy_tol(h_ent).max().item() + moved)
    assert abs(loss.item() - loss64.item()) <= CAP * LOSS_TOL
    for got, want in ((h.grad, h64.grad), (w.grad, w64.grad)):
        assert ((got.double() - want).abs().max() / want.abs().max()).item() <= FUSED_GRAD_TOL
    assert stats.entropy_mask.any() and stats.is_weight.shape == (3, 5)
