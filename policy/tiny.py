"""`tiny`: build a small random-initialised causal LM and a byte-level tokenizer as an HF checkpoint dir.

The model is a LlamaConfig(hidden 64, 2 layers, 4 heads, intermediate 128) LM seeded by `seed`; the
tokenizer is a byte-level BPE with no merges (one token per byte: 256 byte tokens + <pad> <s> </s>,
<s> prepended to encoded text) wrapped in PreTrainedTokenizerFast. Both are written with
save_pretrained into `<path>.tmp` and renamed, so the directory is complete or absent; the HF backend
loads it with from_pretrained like any local checkpoint. Nothing is downloaded. `build_tiny_scorer`
builds the same model with a one-score head (LlamaForSequenceClassification, num_labels=1) in memory,
the starting point of `grpo train-judge --model tiny`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

SPECIALS = ("<pad>", "<s>", "</s>")


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """A byte-level tokenizer: ids 0-255 are bytes (GPT-2 byte alphabet), then <pad>=256 <s>=257 </s>=258."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda ch: _byte_of(ch))
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for token in SPECIALS:
        vocab[token] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


def _byte_of(ch: str) -> int:
    """The byte a GPT-2 byte-level alphabet character stands for."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(map(chr, cs), bs))[ch]


def tiny_config(tokenizer, *, hidden: int = 64, layers: int = 2, heads: int = 4, num_labels: int | None = None):  # -> LlamaConfig
    """The tiny LlamaConfig for `tokenizer` (with `num_labels` for a sequence-classification head)."""
    from transformers import LlamaConfig

    extra = {} if num_labels is None else {"num_labels": num_labels}
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=2048, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        **extra,
    )  # fmt: skip


def _seeded(make, seed: int):  # noqa: ANN001, ANN202
    """`make()` under torch.manual_seed(seed), leaving the caller's RNG stream as it was.

    The weights are drawn in float64 and rounded to float32: torch's fp32 normal sampler is vectorised
    per CPU (AVX2, AVX-512, none), which moves fp32 draws by an ulp from one machine to another, while
    the float64 draws rounded to fp32 are the same everywhere, so a seed names the same model on any CPU.
    """
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        before = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            model = make()
        finally:
            torch.set_default_dtype(before)
        return model.float()


def build_tiny_scorer(*, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4):  # -> (model, tokenizer)
    """An in-memory tiny LlamaForSequenceClassification(num_labels=1) + the byte tokenizer (a judge to train)."""
    from transformers import LlamaForSequenceClassification

    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, hidden=hidden, layers=layers, heads=heads, num_labels=1)
    return _seeded(lambda: LlamaForSequenceClassification(config), seed), tokenizer


def build_tiny(path: Path, *, seed: int = 0, hidden: int = 64, layers: int = 2, heads: int = 4) -> Path:
    """Write a tiny random LM + byte tokenizer to `path` (atomically); returns `path`."""
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(path)
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, hidden=hidden, layers=layers, heads=heads)
    model = _seeded(lambda: LlamaForCausalLM(config), seed)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path
