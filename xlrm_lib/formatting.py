"""How a (prompt, answer) pair becomes tokens, identically for training, scoring and probing.

The study's pitfall: an RM trained with one chat template / EOS / truncation rule and evaluated with another
silently loses accuracy. So both sides call :func:`encode`, and a trained RM records its :class:`TextFormat`
in its model directory (``xlrm_format.json``); scoring reads it back.

Rules
-----
- ``template="chat"`` uses the tokenizer's own chat template (the answer as the assistant turn);
  ``"plain"`` renders ``User: ...\\n\\nAssistant: ...`` (turns separated by blank lines) and is the
  documented format for tokenizers without a template (BERT-style encoders, base LMs).
  ``"auto"`` picks ``chat`` when the tokenizer has a template.
- Chat templates render with :data:`TEMPLATE_VARS`: Llama 3.x's would otherwise write today's date into a
  system block of every text, so a text scored on another day than it was trained on (or cached) would differ.
- Truncation keeps the END of the sequence (``truncation_side="left"``): the answer's conclusion and, for
  decoders, the position whose hidden state is scored. Special tokens (CLS/BOS) are always kept.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .arch import position_limit, positions_from_ids

FORMAT_FILE = "xlrm_format.json"
# Variables chat templates may read while rendering, pinned so that a text renders the same every day. Llama
# 3.x's template writes "Today Date: {date_string}" into its system block and, when the caller gives none, asks
# the clock (``strftime_now``); this is the template's own fallback date. Templates that do not read a
# variable ignore it.
TEMPLATE_VARS = {"date_string": "26 Jul 2024"}


@dataclass(frozen=True)
class TextFormat:
    """How texts were rendered and cut; saved with every trained RM."""

    template: str = "auto"  # "auto" | "chat" | "plain"
    max_length: int = 256
    truncation_side: str = "left"

    def __post_init__(self):
        if self.template not in ("auto", "chat", "plain"):
            raise ValueError(f"unknown template {self.template!r}; expected 'auto', 'chat' or 'plain'")
        if self.truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {self.truncation_side!r}")
        if int(self.max_length) < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {self.max_length}")

    def resolved(self, tokenizer) -> "TextFormat":
        if self.template != "auto":
            return self
        has_template = bool(getattr(tokenizer, "chat_template", None))
        return TextFormat("chat" if has_template else "plain", self.max_length, self.truncation_side)

    def save(self, directory: str | Path) -> None:
        Path(directory, FORMAT_FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, directory: str | Path) -> "TextFormat | None":
        path = Path(directory, FORMAT_FILE)
        return cls(**json.loads(path.read_text())) if path.exists() else None


def as_messages(prompt) -> list[dict]:
    """A prompt given as a string or as chat messages -> a list of ``{"role", "content"}`` dicts."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in prompt]


def chat_text(tokenizer, messages: list[dict], *, generation_prompt: bool = False) -> str:
    """``messages`` through the tokenizer's chat template, with :data:`TEMPLATE_VARS` (the one place that renders
    a template: RM texts, policy prompts and judge prompts alike)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                         **TEMPLATE_VARS)


def render(tokenizer, prompt, answer: str, fmt: TextFormat) -> str:
    """The text an RM sees for one answer.

    >>> render(None, "Hi?", "Hello.", TextFormat("plain"))
    'User: Hi?\\n\\nAssistant: Hello.'
    """
    messages = as_messages(prompt) + [{"role": "assistant", "content": answer}]
    if fmt.template == "chat":
        return chat_text(tokenizer, messages)
    if fmt.template != "plain":
        raise ValueError("resolve the format first: fmt.resolved(tokenizer)")
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def encode(tokenizer, prompts, answers, fmt: TextFormat) -> list[list[int]]:
    """Token ids (unpadded) for each (prompt, answer), cut to ``fmt.max_length`` by ``fmt``'s rule.

    Plain texts get the tokenizer's special tokens (BERT's CLS/SEP, a decoder's BOS); chat templates carry
    their own. A leading special token is never cut off, whatever the truncation side.
    """
    fmt = fmt.resolved(tokenizer)
    texts = [render(tokenizer, p, a, fmt) for p, a in zip(prompts, answers)]
    if fmt.template == "plain":
        # the tokenizer cuts the text before adding its special tokens (CLS/SEP, BOS), so they survive
        side, tokenizer.truncation_side = tokenizer.truncation_side, fmt.truncation_side
        try:
            return tokenizer(texts, truncation=True, max_length=fmt.max_length)["input_ids"]
        finally:
            tokenizer.truncation_side = side
    bos = tokenizer.bos_token_id
    out = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:  # templates carry their own BOS
        keep = 1 if bos is not None and ids[:1] == [bos] else 0
        out.append(_cut(ids, fmt.max_length, fmt.truncation_side, keep_first=keep))
    return out


def _cut(ids: list[int], budget: int, side: str, keep_first: int) -> list[int]:
    if len(ids) <= budget:
        return ids
    if side == "left":
        return ids[:keep_first] + ids[len(ids) - (budget - keep_first):]
    return ids[:budget]


def pad_batch(seqs: list[list[int]], pad_token_id: int, padding_side: str = "right") -> dict:
    """Pad token-id lists into ``input_ids``, ``attention_mask`` and ``position_ids`` tensors ``(batch, width)``.

    Position ids count real tokens only, so a left-padded sequence sees the same positions as an unpadded one
    (without them a decoder's score changes with the padding side).
    """
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        sl = slice(width - len(s), width) if padding_side == "left" else slice(0, len(s))
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return {"input_ids": ids, "attention_mask": mask, "position_ids": position_ids(mask)}


def position_ids(attention_mask):
    """Positions that count real tokens only ``(batch, width)``: left padding leaves them unchanged."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def forward_kwargs(model, batch: dict) -> dict:
    """Drop ``position_ids`` for models whose forward does not take them (e.g. DistilBERT), and for the
    RoBERTa family (XLM-R, multilingual-e5-base/large, bge-m3, CamemBERT...): their positions start at
    ``padding_idx + 1`` and they derive them from ``input_ids`` themselves, on either padding side; 0-based ids
    would shift every token onto another position row (the padding row, for the second token)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    takes = "position_ids" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
    if takes and not positions_from_ids(model):
        return batch
    return {k: v for k, v in batch.items() if k != "position_ids"}


def fit_length(max_length: int, model) -> int:
    """``max_length`` capped at what ``model``'s position table holds (a longer text would index past it), with a
    warning naming both numbers."""
    limit = position_limit(model)
    if limit is None or max_length <= limit:
        return max_length
    import logging

    logging.getLogger(__name__).warning(
        "max_length %d is more than %s takes (%d positions): texts are cut at %d tokens; set max_length <= %d "
        "to silence this", max_length, type(model).__name__, limit, limit, limit)
    return limit


def fit_positions(fmt: "TextFormat", model) -> "TextFormat":
    """``fmt`` with its ``max_length`` fitted to ``model`` (:func:`fit_length`)."""
    length = fit_length(fmt.max_length, model)
    return fmt if length == fmt.max_length else TextFormat(fmt.template, length, fmt.truncation_side)
