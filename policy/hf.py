"""`hf`: a transformers causal LM as the policy, trained through the fused-linear GRPO loss.

Loads AutoModelForCausalLM + AutoTokenizer from a local directory (or a hub id, through the HF cache).
A tokenizer without a pad token pads with its eos token (or gets a new <pad> token and resized
embeddings when it has neither). Trained weights stay fp32 (on CUDA the forward runs under bf16
autocast); a frozen LoRA base is loaded in bf16 on CUDA.
Gradient checkpointing on request. With `lora_r > 0` LoRA adapters are added through peft (the `lora`
extra) and only they train; the reference is then the base with adapters disabled. Dropout is switched
off in every module at load (TRL's disable_dropout): old, reference and current log-probs of the same
tokens then agree, so the KL to an unchanged policy is exactly 0 and the ratio exactly 1.
`freeze_reference()` keeps a frozen copy of the weights as loaded (full fine-tunes; online training
needs reference log-probs of new completions every step).

A group encodes to input_ids (G, P + T): the prompt's P tokens (the tokenizer's special tokens
included), then each candidate's completion (at most `max_completion_tokens`, ending with eos),
right-padded. Per-token log-probs of the completion come from `kernels.fused_linear_grpo_loss` on the
decoder's last hidden states (G, T, H) at positions P-1 .. P+T-2 and the LM head weight (V, H):
full (G, T, V) logits are never built.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from kernels import GRPOStats, fused_linear_grpo_loss
from policy.backends import Encoded, LossOptions
from policy.errors import CheckpointError, PolicyError
from policy.prompting import PromptFormat, install_template, prompt_ids

log = logging.getLogger("policy")
ADAPTER_DIR = "adapter"
IGNORE_INDEX = -100  # Hugging Face's label ignore index: the kernels skip rows whose id is negative


class HFPolicy:
    kind = "hf"

    def __init__(
        self, net: Any, tokenizer: Any, *, device: torch.device, base: str = "", lora_r: int = 0,
        lora_alpha: float = 16.0, max_completion_tokens: int = 512,
    ) -> None:  # fmt: skip
        """Wrap a loaded causal LM (already LoRA-wrapped when lora_r > 0) and its tokenizer."""
        self.net, self.tokenizer, self.device, self.base = net.to(device), tokenizer, device, base
        self.lora_r, self.lora_alpha, self.max_tokens = int(lora_r), float(lora_alpha), int(max_completion_tokens)
        self.ref_net: Any = None  # frozen copy of the loaded weights, from freeze_reference()
        self.prompt_format = PromptFormat()  # set_format() changes it
        self.mask_truncated = False  # offline: logged completions cut at max_completion_tokens leave the loss
        self.share_prompt = True  # one prompt forward per group (see _hidden)
        disable_dropout(self.net)
        self.net.train()

    @classmethod
    def load(
        cls, model: str, *, device: torch.device, lora_r: int = 0, lora_alpha: float = 16.0,
        gradient_checkpointing: bool = False, max_completion_tokens: int = 512,
    ) -> HFPolicy:  # fmt: skip
        """Load model + tokenizer from a local dir (or hub id), fix the pad token, add LoRA when asked."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        local = Path(model).expanduser()
        base = str(local.resolve()) if local.exists() else str(model)  # a local dir, or a hub id
        try:
            tokenizer = AutoTokenizer.from_pretrained(base)
            frozen_bf16 = device.type == "cuda" and lora_r > 0  # a frozen LoRA base needs no fp32 master copy
            net = AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16 if frozen_bf16 else torch.float32)
        except (OSError, ValueError) as exc:
            raise PolicyError(f"cannot load model {base!r} ({exc}); pass a local HF checkpoint dir, 'tiny' or 'bow'") from exc
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is not None:
                tokenizer.pad_token = tokenizer.eos_token
            else:
                tokenizer.add_special_tokens({"pad_token": "<pad>"})
                net.resize_token_embeddings(len(tokenizer))
        if gradient_checkpointing:
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if lora_r > 0:
            net = add_lora(net, lora_r, lora_alpha)
        return cls(net, tokenizer, device=device, base=base, lora_r=lora_r, lora_alpha=lora_alpha, max_completion_tokens=max_completion_tokens)

    # -- model pieces -----------------------------------------------------------------------------

    def _causal_lm(self) -> Any:
        return self.net.get_base_model() if self.lora_r > 0 else self.net

    def _adapters_off(self) -> contextlib.AbstractContextManager[Any]:
        return self.net.disable_adapter() if self.lora_r > 0 else contextlib.nullcontext()

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _hidden(self, enc: Encoded, lm: Any = None) -> Tensor:
        """Last hidden states at the positions that predict the completion tokens: (G, T, H).

        The G candidates share their prompt: it runs through the decoder once, batch 1, and its KV cache
        (in the autograd graph: the gradient reaches the prompt's activations) is repeated for the G
        completions, which then run with it (`share_prompt`; off under gradient checkpointing, which
        recomputes without a cache, and for a group of one)."""
        x = enc.inputs
        lm = self._causal_lm() if lm is None else lm
        p, t, g = x["prompt_len"], enc.ids.shape[1], enc.ids.shape[0]
        decoder = lm.get_decoder()
        with self._autocast():
            if not (self.share_prompt and g > 1 and not _checkpointing(lm)):
                out = decoder(input_ids=x["input_ids"], attention_mask=x["attention_mask"], use_cache=False)
                return out.last_hidden_state[:, p - 1 : p - 1 + t]  # (G, T, H)
            head = decoder(input_ids=x["input_ids"][:1, :p], attention_mask=x["attention_mask"][:1, :p], use_cache=True)
            cache = head.cache if hasattr(head, "cache") else head.past_key_values  # transformers 5 | 4
            cache.batch_repeat_interleave(g)
            name = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
            positions = torch.arange(p, p + t, device=self.device).expand(g, t)  # (G, T)
            tail = decoder(input_ids=x["input_ids"][:, p:], attention_mask=x["attention_mask"], position_ids=positions,
                           use_cache=True, **{name: cache})  # fmt: skip
        last = head.last_hidden_state[:, p - 1 :].expand(g, 1, -1)  # (G, 1, H): predicts completion token 0
        return torch.cat([last, tail.last_hidden_state[:, : t - 1]], dim=1)  # (G, T, H)

    def _head(self, dtype: torch.dtype, lm: Any = None) -> tuple[Tensor, Tensor | None]:
        head = (self._causal_lm() if lm is None else lm).get_output_embeddings()
        if head.weight.dtype in (torch.bfloat16, torch.float16):
            dtype = head.weight.dtype  # a bf16 model's head products keep bf16 operands (callers cast hidden)
        weight = head.weight if head.weight.dtype == dtype else head.weight.to(dtype)  # (V, H)
        bias = getattr(head, "bias", None)
        return weight, None if bias is None else bias.to(dtype)

    # -- the Policy interface ---------------------------------------------------------------------

    def set_format(self, fmt: PromptFormat, *, mask_truncated: bool = False) -> None:
        """How prompts are turned into ids (policy.prompting) and whether cut logged completions are masked."""
        install_template(self.tokenizer, fmt)
        self.prompt_format, self.mask_truncated = fmt, mask_truncated

    def prompt_ids(self, prompt: str) -> list[int]:
        """The prompt's token ids as the model sees it (chat template, system prompt, left truncation)."""
        return prompt_ids(self.tokenizer, prompt, self.prompt_format)

    def completion_ids(self, text: str) -> list[int]:
        """A logged completion's ids ending with eos; one longer than max_completion_tokens is cut to that
        many ids with no eos added (a cut completion did not end there)."""
        tok = self.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"]
        eos = [] if tok.eos_token_id is None else [tok.eos_token_id]
        return ids + eos if len(ids) + len(eos) <= self.max_tokens else ids[: self.max_tokens]

    def encode(self, prompt: str, texts: list[str]) -> Encoded:
        comps = [self.completion_ids(t) for t in texts]
        enc = self.encode_ids(self.prompt_ids(prompt), comps)
        if self.mask_truncated:
            eos = self.tokenizer.eos_token_id
            for i, c in enumerate(comps):
                if eos is not None and c and c[-1] != eos:
                    enc.mask[i] = 0.0
        return enc

    def split(self, enc: Encoded, size: int | None) -> list[tuple[slice, Encoded]]:
        """The group's rows in micro-batches of `size` candidates (all at once when None)."""
        g = enc.ids.shape[0]
        if not size or size >= g:
            return [(slice(0, g), enc)]
        out = []
        for lo in range(0, g, size):
            rows = slice(lo, min(lo + size, g))
            x = enc.inputs
            inputs = {"input_ids": x["input_ids"][rows], "attention_mask": x["attention_mask"][rows], "prompt_len": x["prompt_len"]}
            out.append((rows, Encoded(ids=enc.ids[rows], mask=enc.mask[rows], inputs=inputs)))
        return out

    def encode_ids(self, prompt_ids: list[int], completions: list[list[int]]) -> Encoded:
        """One group from token ids: input_ids (G, P + T) = prompt + completion, right-padded; the mask
        covers each completion's own tokens (no eos is added here: a truncated sample stays truncated)."""
        pad = self.tokenizer.pad_token_id
        comps = [c or [pad] for c in completions]
        g, p, t = len(comps), len(prompt_ids), max(len(c) for c in comps)
        input_ids = torch.full((g, p + t), pad, dtype=torch.int64)  # (G, P + T)
        attention = torch.zeros(g, p + t, dtype=torch.int64)  # (G, P + T)
        mask = torch.zeros(g, t)  # (G, T)
        input_ids[:, :p] = torch.tensor(prompt_ids)
        attention[:, :p] = 1
        for i, c in enumerate(comps):
            input_ids[i, p : p + len(c)] = torch.tensor(c)
            attention[i, p : p + len(c)] = 1
            mask[i, : len(c)] = 1.0 if completions[i] else 0.0
        inputs = {"input_ids": input_ids, "attention_mask": attention, "prompt_len": p}
        return Encoded(ids=input_ids[:, p:], mask=mask, inputs=inputs)  # on the CPU: _on_device moves a copy per use

    def _on_device(self, enc: Encoded) -> Encoded:
        """`enc` with its tensors on the model's device (cached encodings stay on the CPU)."""
        if enc.ids.device == self.device:
            return enc
        x = enc.inputs
        inputs = {"input_ids": x["input_ids"].to(self.device, non_blocking=True),
                  "attention_mask": x["attention_mask"].to(self.device, non_blocking=True), "prompt_len": x["prompt_len"]}
        return Encoded(ids=enc.ids.to(self.device, non_blocking=True), mask=enc.mask.to(self.device, non_blocking=True), inputs=inputs)

    @staticmethod
    def _targets(enc: Encoded) -> Tensor:
        """(G, T) target ids with IGNORE_INDEX at masked positions (padding, cut completions): the kernels
        skip those rows (log-prob 0, no gradient, no logits read), so padded tokens cost nothing."""
        return enc.ids.masked_fill(enc.mask == 0, IGNORE_INDEX)

    def loss(
        self, enc: Encoded, old_logp: Tensor | None, ref_logp: Tensor | None, advantages: Tensor, *,
        beta: float, normalizer: float, opts: LossOptions, behavior_logp: Tensor | None = None,
    ) -> tuple[Tensor, GRPOStats]:  # fmt: skip
        enc = self._on_device(enc)
        hidden = self._hidden(enc)  # (G, T, H)
        weight, bias = self._head(hidden.dtype)
        hidden = hidden.to(weight.dtype)
        return fused_linear_grpo_loss(
            hidden, weight, self._targets(enc), old_logp, ref_logp, advantages.to(self.device), enc.mask,
            bias=bias, loss_type=opts.loss_type, eps_low=opts.eps_low, eps_high=opts.eps_high, delta=opts.delta,
            beta=beta, temperature=opts.temperature, ratio_level=opts.ratio_level, normalizer=normalizer,
            behavior_logp=None if behavior_logp is None else behavior_logp.to(self.device), is_level=opts.is_level,
            is_mode=opts.is_mode, is_cap=opts.is_cap, top_entropy_quantile=opts.top_entropy_quantile,
        )  # fmt: skip

    def logprobs(self, enc: Encoded, temperature: float = 1.0, lm: Any = None) -> Tensor:
        enc = self._on_device(enc)
        g = enc.ids.shape[0]
        with torch.no_grad():
            hidden = self._hidden(enc, lm)  # (G, T, H)
            weight, bias = self._head(hidden.dtype, lm)
            hidden = hidden.to(weight.dtype)
            _, stats = fused_linear_grpo_loss(
                hidden, weight, self._targets(enc), None, None, torch.zeros(g, device=self.device), enc.mask,
                bias=bias, temperature=temperature,
            )  # fmt: skip
        return stats.logp  # (G, T)

    def freeze_reference(self) -> None:
        """Keep the weights as they are now as the reference (a frozen copy; LoRA needs none: adapters off)."""
        if self.lora_r == 0 and self.ref_net is None:
            import copy

            self.ref_net = copy.deepcopy(self.net).eval().requires_grad_(False)

    def reference_logprobs(self, enc: Encoded, temperature: float = 1.0) -> Tensor:
        if self.ref_net is not None:
            return self.logprobs(enc, temperature, lm=self.ref_net)
        with self._adapters_off():
            return self.logprobs(enc, temperature)

    def sequence_logprobs(self, enc: Encoded) -> Tensor:
        """(G,) log pi(completion | prompt): the sum of the completion's token log-probs."""
        enc = self._on_device(enc)
        return (self.logprobs(enc) * enc.mask).sum(-1)

    def scores(self, enc: Encoded) -> Tensor:
        enc = self._on_device(enc)
        logp = self.logprobs(enc)  # (G, T)
        return (logp * enc.mask).sum(-1) / enc.mask.sum(-1).clamp(min=1.0)  # (G,) mean token log-prob

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in self.net.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> None:
        self.net.train(mode)

    def save(self, directory: Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """Weights (or the LoRA adapter) and tokenizer into `directory`; `state_dict`: these weights instead
        of the module's own (the full weights an FSDP2-sharded policy gathered, policy.sharding)."""
        directory = Path(directory)
        if self.lora_r > 0:
            self.net.save_pretrained(directory / ADAPTER_DIR, state_dict=state_dict)
        else:
            self.net.save_pretrained(directory, state_dict=state_dict)
            self.tokenizer.save_pretrained(directory)

    def load_weights(self, directory: Path) -> None:
        from safetensors.torch import load_file

        directory = Path(directory)
        if self.lora_r > 0:
            from peft import set_peft_model_state_dict

            path = directory / ADAPTER_DIR / "adapter_model.safetensors"
            if not path.exists():
                raise CheckpointError(f"{directory}: no LoRA adapter in this checkpoint; resume with the same --lora-r it was saved with")
            result = set_peft_model_state_dict(self.net, load_file(str(path), device=str(self.device)))
            if getattr(result, "unexpected_keys", None):
                raise CheckpointError(f"{directory}: adapter keys do not fit this model ({result.unexpected_keys[:3]})")
            return
        files = sorted(directory.glob("model*.safetensors"))  # one file, or shards
        if not files:
            raise CheckpointError(f"{directory}: no model*.safetensors (an adapter checkpoint? pass --lora-r)")
        state: dict[str, Tensor] = {}
        for path in files:
            state.update(load_file(str(path), device=str(self.device)))
        missing, unexpected = self.net.load_state_dict(state, strict=False)
        tied = {k for k in missing if k.endswith("lm_head.weight")} if getattr(self.net.config, "tie_word_embeddings", False) else set()
        if unexpected or set(missing) - tied:
            raise CheckpointError(f"{directory}: weights do not fit {self.base} (missing {sorted(set(missing) - tied)[:3]}, unexpected {unexpected[:3]})")

    def describe(self) -> dict[str, Any]:
        fmt = self.prompt_format
        return {"kind": "hf", "base": self.base, "lora_r": self.lora_r, "lora_alpha": self.lora_alpha,
                "chat_template": fmt.chat_template, "system_prompt": fmt.system_prompt, "max_prompt_tokens": fmt.max_prompt_tokens}


def _checkpointing(lm: Any) -> bool:
    """Whether activation (gradient) checkpointing is on, under the name this transformers version uses."""
    name = "is_activation_checkpointing" if hasattr(type(lm), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return bool(getattr(lm, name, False))


def disable_dropout(net: Any) -> None:
    """Dropout off everywhere: nn.Dropout modules get p = 0, and attention modules that read a float
    `attention_dropout` / `dropout` attribute at call time (Llama, Qwen2 under SDPA) get 0.0."""
    for module in net.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for name in ("attention_dropout", "dropout"):
            if isinstance(getattr(module, name, None), float):
                setattr(module, name, 0.0)


def add_lora(net: Any, r: int, alpha: float) -> Any:
    """`net` wrapped by peft with LoRA adapters of rank r (only they require grad)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise PolicyError("--lora-r needs peft: `pip install 'grpo-tui[lora]'` (or `pip install peft`)") from exc
    return get_peft_model(net, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, task_type="CAUSAL_LM"))
