"""How a prompt becomes the model's input ids: chat template, system prompt, left truncation.

`PromptFormat.chat_template`: "auto" uses the tokenizer's own chat template when it has one (the prompt
becomes the user message, after an optional system message, with the generation prompt appended, as the
agent serves the model), else the raw text; "none" always the raw text (with the tokenizer's special
tokens); a path is a Jinja chat template file installed on the tokenizer. `max_prompt_tokens` keeps the
LAST that many ids (left truncation, TRL's max_prompt_length): the end of a prompt is the part the
completion answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.errors import SettingsError


@dataclass(frozen=True)
class PromptFormat:
    chat_template: str = "auto"  # auto | none | path to a Jinja template
    system_prompt: str | None = None
    max_prompt_tokens: int | None = None


def install_template(tokenizer: Any, fmt: PromptFormat) -> None:
    """Put a template file on the tokenizer (it is saved with it); check that a file was asked for sensibly."""
    if fmt.chat_template in ("auto", "none"):
        return
    path = Path(fmt.chat_template)
    try:
        tokenizer.chat_template = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"--chat-template {path}: cannot read it ({exc.strerror}); pass auto, none or a Jinja file") from exc


def uses_chat(tokenizer: Any, fmt: PromptFormat) -> bool:
    return fmt.chat_template != "none" and bool(getattr(tokenizer, "chat_template", None))


def prompt_ids(tokenizer: Any, prompt: str, fmt: PromptFormat) -> list[int]:
    """The ids of `prompt` as the model sees it under `fmt`."""
    if uses_chat(tokenizer, fmt):
        messages = ([{"role": "system", "content": fmt.system_prompt}] if fmt.system_prompt else [])
        messages.append({"role": "user", "content": prompt})
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids = list(out["input_ids"] if hasattr(out, "keys") else out)
    else:
        text = prompt if not fmt.system_prompt else f"{fmt.system_prompt}\n\n{prompt}"
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if fmt.max_prompt_tokens and len(ids) > fmt.max_prompt_tokens:
        ids = ids[-fmt.max_prompt_tokens :]
    return ids
