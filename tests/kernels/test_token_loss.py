"""The fused token-level loss launchers (kernels/triton_token_loss.py, kernels/torch_token_loss.py) against
a float64 oracle, option by option, and grpo_loss's options through the Triton backend.

Launcher level: every output of the forward (logp, lse, entropy, ratio, the weighted clipped surrogate pg,
the k3 KL, the row's loss share, the clip flags) and the backward's dlogits, for the clipped loss with and
without delta, CISPO, with and without old / ref / off-policy weight / top-entropy keep mask, temperature
0.8, fp32 and bf16 logits, an odd V through the unmasked main loop plus the masked tail (BLOCK_V 64) and a
V shorter than one block, a masked row (NaN logits) and an ignored row (id -100, -inf logits), out of place
and in place. Tolerances from the error model in `token_tols`. The Triton kernels run in the interpreter on
cpu (compiled on cuda, skipped without a GPU); the Torch launchers are held to the same oracle.

The ratios are put on purpose at fixed distances from every clip boundary (`RATIOS`): a ratio within its
own rounding error of a boundary may take either branch in fp32, which no tolerance covers.
"""

from __future__ import annotations

import math

import pytest
import torch

from kernels import grpo_loss, torch_token_loss, triton_logprobs, triton_token_loss
from kernels.dispatch import use_backend
from kernels.layout import aligned_rows
from kernels.token_loss import LossRows, TokenLossSpec

from oracle import U, assert_within, dlogits_tol, entropy_tol, reference, triton_logp_tol
from test_loss_options import check_grpo_loss_options
from test_triton_logprobs import device, launched, triton_calls  # noqa: F401  (fixtures)

# (target ratio exp(logp - old), advantage sign) per row: ratios under 1 - eps_low (0.45, 0.6, 0.7), inside
# [0.8, 1.2] (0.93, 1.0, 1.12), between 1 + eps_high and delta = 1.5 (1.3) and above delta (1.7, 2.6), with
# both signs where the branch of the min depends on it (clipped low / high, the delta clamp of A < 0); each
# ratio at least 5% from a boundary (eps 0.2, delta 1.5, cispo cap 1.2). Rows MASKED and IGNORED are skipped.
RATIOS = ((0.45, -1), (0.7, 1), (1.0, 1), (0.93, -1), (1.3, 1), (1.0, 1), (1.7, -1), (2.6, 1), (1.3, -1), (0.6, -1),
          (1.12, 1), (1.7, 1), (0.45, 1))  # fmt: skip
SPECS = {
    "clip": TokenLossSpec.of("grpo", 0.2, 0.2, None, 0.04, 0.8),
    "clip-delta": TokenLossSpec.of("dapo", 0.2, 0.2, 1.5, 0.04, 0.8),
    "cispo": TokenLossSpec.of("cispo", 0.2, 1.2, None, 0.04, 0.8),
}
SIDES = ("all", "none", "ref-keep")  # which optional inputs a case passes (see `problem`)
MASKED, IGNORED = 2, 5  # rows with scale 0 (NaN logits) and with id -100 (-inf logits)


def problem(n: int, vocab: int, dtype: torch.dtype, device: torch.device, spec: TokenLossSpec, sides: str, seed: int = 0):
    """(logits (n, V) in a 16-aligned buffer, ids, LossRows) with the ratios of RATIOS and both advantage signs."""
    gen = torch.Generator().manual_seed(seed)
    logits = aligned_rows(n, vocab, dtype, device)
    logits.copy_((torch.randn(n, vocab, generator=gen) * 3).to(dtype))
    ids = torch.randint(0, vocab, (n,), generator=gen)
    ids[0] = vocab - 1  # the tail's last entry
    logp64 = reference(logits.cpu(), ids, spec.temperature)[0]
    ratio = torch.tensor([RATIOS[i % len(RATIOS)][0] for i in range(n)], dtype=torch.float64)
    old = (logp64 - ratio.log()).float()
    ref = (logp64 + 0.5 * torch.randn(n, generator=gen, dtype=torch.float64)).float()
    adv = torch.tensor([float(RATIOS[i % len(RATIOS)][1]) for i in range(n)]) * (0.5 + torch.rand(n, generator=gen))
    scale = 0.1 + torch.rand(n, generator=gen)
    scale[MASKED] = 0.0
    ids[IGNORED] = -100
    logits[MASKED] = float("nan")  # never read
    logits[IGNORED] = float("-inf")
    weight = torch.rand(n, generator=gen) * 3
    keep = torch.ones(n)
    keep[[1, 10]] = 0.0  # two unclipped rows dropped by the top-entropy mask (the clipped ones keep their branch visible)
    on = lambda t, used: t.to(device) if used else None  # noqa: E731
    rows = LossRows(
        scale=scale.to(device), adv=adv.to(device), old=on(old, sides == "all"), ref=on(ref, sides != "none"),
        weight=on(weight, sides == "all"), keep=on(keep, sides != "none"),
    )  # fmt: skip
    if sides == "none":
        spec = TokenLossSpec(spec.cispo, spec.eps_low, spec.cap, spec.delta, 0.0, spec.temperature)  # no ref: beta 0
    return logits, ids.to(device), rows, spec


def oracle64(logits, ids, rows: LossRows, spec: TokenLossSpec, grad: float):
    """float64 outputs of the token loss on the live rows, and d(grad * sum(scale (keep pg + beta kl))) / d logits."""
    cpu = lambda t: None if t is None else t.cpu().double()  # noqa: E731
    x64 = logits.cpu().double().requires_grad_(True)
    logp, lse, entropy = reference(x64, ids.cpu().clamp(min=0), spec.temperature)
    old = logp.detach() if rows.old is None else cpu(rows.old)
    adv = cpu(rows.adv)
    ratio = torch.exp(logp - old)
    if spec.cispo:
        pg = -torch.clamp(ratio, max=spec.cap).detach() * adv * logp
        flags = ((ratio > spec.cap) & (adv > 0)).long() * 2
    else:
        c1 = ratio if math.isinf(spec.delta) else torch.clamp(ratio, max=spec.delta)
        pg = -torch.minimum(c1 * adv, torch.clamp(ratio, 1 - spec.eps_low, spec.cap) * adv)
        flags = ((ratio < 1 - spec.eps_low) & (adv < 0)).long() + ((ratio > spec.cap) & (adv > 0)).long() * 2
    if rows.weight is not None:
        pg = pg * cpu(rows.weight)
    kl = torch.zeros_like(logp)
    if rows.ref is not None:
        d = cpu(rows.ref) - logp
        kl = torch.exp(d) - d - 1
    scale = cpu(rows.scale)
    live = (scale != 0) & (ids.cpu() >= 0)
    keep = 1.0 if rows.keep is None else cpu(rows.keep)
    total = (scale * (keep * pg + spec.beta * kl))[live].sum()
    logp.retain_grad()
    (grad * total).backward()
    det = lambda t: t.detach()  # noqa: E731
    return dict(logp=det(logp), lse=det(lse), entropy=det(entropy), ratio=det(ratio), pg=det(pg), kl=det(kl),
                loss=det(scale * (pg + spec.beta * kl)), flags=flags, coef=logp.grad, dlogits=x64.grad, live=live)  # fmt: skip


def token_tols(want: dict, logits, ids, rows: LossRows, spec: TokenLossSpec, grad: float) -> dict:
    """Per-row absolute tolerances of the fp32 outputs (float64 inputs want), from the error model:

    logp carries e = triton_logp_tol (the logprob kernels' model). r = exp(logp - old): the subtraction rounds
    (U |logp - old|) and exp adds 1 ulp: r (e + U |lr| + 3U). pg = -min(c A): |A| times r's error (times |logp|
    for cispo, plus min(r, cap) e), times the weight w, plus a few roundings (4U |pg|). kl = exp(x) - x - 1 at
    x = ref - logp: |1 - e^x| e + U (|x| (e^x + 3) + 4 e^x + 2). loss = scale (pg + beta kl) + 3U |loss|.
    The backward's coefficient g scale (keep w dpg + beta (1 - e^x)) carries |A| w r's error and beta e^x (e + 2U),
    + 5U |coef|; dlogits = coef / T (onehot - p) adds dlogits_tol of the coefficient on top of its own error.
    """
    cpu = lambda t: torch.ones_like(want["logp"]) if t is None else t.cpu().double()  # noqa: E731
    e = triton_logp_tol(want["logp"], logits.cpu(), ids.cpu().clamp(min=0), spec.temperature)
    lr = (want["logp"] - (want["logp"] if rows.old is None else cpu(rows.old))).abs()
    r = want["ratio"]
    r_err = r * (e + U * lr + 3 * U)
    a, w, keep, scale = cpu(rows.adv).abs(), cpu(rows.weight), cpu(rows.keep), cpu(rows.scale)
    if spec.cispo:
        pg_err = w * a * (r_err * want["logp"].abs() + torch.clamp(r, max=spec.cap) * e)
    else:
        pg_err = w * a * r_err
    pg_err = pg_err + 4 * U * want["pg"].abs()
    x = cpu(rows.ref) - want["logp"] if rows.ref is not None else torch.zeros_like(r)
    ex = torch.exp(x)
    kl_err = (1 - ex).abs() * e + U * (x.abs() * (ex + 3) + 4 * ex + 2)
    loss_err = scale * (pg_err + spec.beta * kl_err) + 3 * U * want["loss"].abs()
    coef_err = abs(grad) * scale * (keep * w * a * r_err + spec.beta * (ex * (e + 2 * U) + U)) + 5 * U * want["coef"].abs()
    d_err = dlogits_tol(want["lse"], want["coef"], spec.temperature, logits.dtype) + (coef_err / spec.temperature)[:, None]
    return dict(logp=e, ratio=r_err, pg=pg_err, kl=kl_err, loss=loss_err, entropy=entropy_tol(want["entropy"]), dlogits=d_err)


LAUNCHERS = {"triton": triton_token_loss, "torch": torch_token_loss}


@pytest.mark.parametrize("launcher", ["triton", "torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize(
    ("vocab", "block_v", "sides"),
    [*((1003, 64, sides) for sides in SIDES), (50, 64, "all")],
    ids=[*(f"main+tail-{sides}" for sides in SIDES), "tail-only-all"],
)  # every input set on the main loop + tail; the tail-only vocabulary with all of them
def test_launchers_match_float64(device, monkeypatch, launcher, dtype, kind, vocab, block_v, sides):
    monkeypatch.setattr(triton_token_loss, "_config", lambda v: (block_v, 4))
    ops = LAUNCHERS[launcher]
    n, grad = len(RATIOS), 1.7
    logits, ids, rows, spec = problem(n, vocab, dtype, device, SPECS[kind], sides, seed=vocab + len(kind))
    out = ops.token_loss_forward(logits, ids, rows, spec)
    want = oracle64(logits, ids, rows, spec, grad)
    tols = token_tols(want, logits, ids, rows, spec, grad)
    live = want["live"]
    for name in ("logp", "entropy", "ratio", "pg", "kl", "loss"):
        got = getattr(out, name).cpu()
        assert got.dtype == torch.float32 and got.shape == (n,)
        assert_within(got[live], want[name][live], tols[name][live], name)
        assert torch.all(got[~live] == (1.0 if name == "ratio" else 0.0)), f"{name} of a skipped row"
    assert torch.equal(out.flags.cpu().long()[live], want["flags"][live]) and torch.all(out.flags[~live.to(device)] == 0)
    if rows.old is not None:  # the data reaches every flag (without old_logp every ratio is 1)
        assert set(want["flags"][live].tolist()) >= ({0, 2} if spec.cispo else {0, 1, 2})

    g = torch.tensor(grad, device=device)
    dlogits = ops.token_loss_backward(logits, ids, out.lse, out.logp, rows, spec, g)
    assert dlogits.dtype == dtype and dlogits.shape == logits.shape
    assert_within(dlogits.float().cpu()[live], want["dlogits"][live], tols["dlogits"][live], "dlogits")
    assert torch.all(dlogits[~live.to(device)] == 0)  # skipped rows: zeros, never NaN from their logits
    in_place = ops.token_loss_backward(logits, ids, out.lse, out.logp, rows, spec, g, out=logits)
    assert in_place.data_ptr() == logits.data_ptr()
    torch.testing.assert_close(logits, dlogits, atol=0, rtol=0, equal_nan=False)


def test_launcher_checks_per_row_inputs(device):
    logits, ids, rows, spec = problem(len(RATIOS), 100, torch.float32, device, SPECS["clip"], "all")
    bad = LossRows(**{**rows.__dict__, "ref": rows.ref[:3]})
    with pytest.raises(Exception, match=r"\(N,\) = \(13,\)"):
        triton_token_loss.token_loss_forward(logits, ids, bad, spec)


@pytest.mark.parametrize(("loss_type", "is_level", "is_mode"), [("grpo", "token", "truncate"), ("dapo", "sequence", "mask"), ("cispo", "token", "mask")])
def test_grpo_loss_options_on_triton(device, triton_calls, loss_type, is_level, is_mode):  # noqa: F811
    """Off-policy weights and the top-entropy mask through grpo_loss on the fused Triton loss, against TRL in float64."""
    check_grpo_loss_options("triton", device, loss_type, is_level, is_mode)
    assert triton_calls == launched()


def test_sequence_level_keeps_the_two_stage_path(device, triton_calls):  # noqa: F811
    """GSPO's ratio sums over a sequence first: grpo_loss runs the logprob launchers, then kernels.loss."""
    logits = torch.randn(2, 3, 100).to(device).requires_grad_(True)
    ids = torch.randint(0, 100, (2, 3)).to(device)
    with use_backend("triton"):
        loss, _ = grpo_loss(logits, ids, None, None, torch.tensor([1.0, -1.0], device=device), torch.ones(2, 3, device=device), ratio_level="sequence")
        loss.backward()
    assert triton_calls == launched("sequence")
    assert triton_logprobs.JIT_FUNCTIONS  # the row helpers the token loss shares
