"""Padding-free ("packed") forward passes for decoder reward models.

A batch of ``n`` token sequences becomes ONE row of ``sum(len)`` tokens, with position ids restarting at 0 for
every sequence and cumulative boundaries ``cu_seq_lens = [0, l0, l0+l1, ...]``. Attention runs per sequence:
on a CUDA GPU through ``torch.nn.attention.varlen.varlen_attn`` (FlashAttention's variable-length kernel,
in PyTorch itself: no flash-attn build needed); elsewhere through a per-sequence loop over
``scaled_dot_product_attention`` (the reference path, used by the tests on CPU). The reward of sequence ``i`` is
the score head applied to the hidden state of its last token, exactly what
``AutoModelForSequenceClassification`` reads on a padded batch.

Why: preference data has long, varied sequences (log-normal lengths); a padded batch of chosen+rejected pays
for the longest one ``2 n`` times. Packing removes that waste entirely and lets attention use the flash kernel
(which a padding mask rules out in SDPA).

>>> batch = pack([[5, 6, 7], [8, 9]])
>>> batch["position_ids"].tolist(), batch["cu_seq_lens"].tolist(), batch["max_length"]
([[0, 1, 2, 0, 1]], [0, 3, 5], 3)

The attention function is registered with transformers' ``AttentionInterface`` under :data:`ATTN_NAME`;
:func:`packed_rewards` switches the model to it for its one forward and back, so every other call of the model
(padded scoring, evaluation) keeps its own implementation and masks.
"""

from __future__ import annotations

import contextlib
import inspect

import torch
import torch.nn.functional as F

from .arch import is_decoder, unwrap

ATTN_NAME = "xlrm_packed"

_UNLOADED = object()
_varlen_attn, _VARLEN_PARAMS = _UNLOADED, set()  # imported on first use: it pulls in torch._dynamo (~0.9 s)


def _load_kernel():
    """``torch.nn.attention.varlen.varlen_attn`` (PyTorch >= 2.9), or None; imported once, when first needed."""
    global _varlen_attn, _VARLEN_PARAMS
    if _varlen_attn is _UNLOADED:
        try:
            from torch.nn.attention.varlen import varlen_attn
        except ImportError:  # pragma: no cover - older torch: the reference path only
            _varlen_attn, _VARLEN_PARAMS = None, set()
        else:
            _varlen_attn, _VARLEN_PARAMS = varlen_attn, set(inspect.signature(varlen_attn).parameters)
    return _varlen_attn


def kernel_available() -> bool:
    """Whether this PyTorch has the variable-length flash kernel and a CUDA device to run it (Ampere or newer:
    the flash kernel does not run on a T4 / V100)."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8 and _load_kernel() is not None


def pack(seqs: list[list[int]], *, row_multiple: int | None = None, max_length: int | None = None) -> dict:
    """Token-id lists -> ``input_ids``/``position_ids`` ``(1, total)``, ``cu_seq_lens`` (int32), ``max_length``
    and ``sequences`` (how many of the row's sequences are ``seqs``: :func:`packed_rewards` returns theirs only).

    For shapes that repeat from batch to batch (what CUDA graphs need), ``row_multiple`` rounds the row up to a
    multiple of that many tokens with a filler sequence of its own (1 to ``row_multiple`` tokens of id 0 at position 0,
    attended to by nothing else), and ``max_length`` fixes the length bound handed to the attention kernel (at least the
    longest sequence, filler included).

    >>> b = pack([[5, 6, 7], [8, 9]], row_multiple=4, max_length=4)
    >>> b["input_ids"].tolist(), b["cu_seq_lens"].tolist(), b["max_length"], b["sequences"]
    ([[5, 6, 7, 8, 9, 0, 0, 0]], [0, 3, 5, 8], 4, 2)
    """
    if not seqs:
        raise ValueError("pack() got no sequences; expected at least one token-id list")
    empty = [i for i, s in enumerate(seqs) if len(s) == 0]
    if empty:
        raise ValueError(f"pack() got empty sequence(s) at {empty[:5]}; every sequence needs a token (a text "
                         "encoded to nothing: drop it before packing)")
    n = len(seqs)
    if row_multiple:
        if not isinstance(row_multiple, int) or row_multiple < 1:
            raise ValueError(f"row_multiple = {row_multiple!r}; expected a positive number of tokens")
        total = sum(map(len, seqs))
        seqs = [*seqs, [0] * (row_multiple - total % row_multiple)]  # 1..row_multiple tokens: always a filler
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.int32)
    longest = int(lengths.max())
    if max_length is not None and max_length < longest:
        raise ValueError(f"max_length = {max_length} but a packed sequence has {longest} tokens; expected a bound "
                         "at least the longest sequence's length (and row_multiple's, with a filler)")
    cu = torch.zeros(len(seqs) + 1, dtype=torch.int32)
    cu[1:] = lengths.cumsum(0)
    ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long).unsqueeze(0)
    pos = torch.cat([torch.arange(k, dtype=torch.long) for k in lengths.tolist()]).unsqueeze(0)
    # the filler at position 0 throughout: its outputs are dropped, and a learned position table (GPT-2 style) may
    # be shorter than row_multiple
    pos[0, int(cu[n]):] = 0
    return {"input_ids": ids, "position_ids": pos, "cu_seq_lens": cu,
            "max_length": longest if max_length is None else max_length, "sequences": n}


# ----------------------------------------------------------------------------------- attention
def _reference_attention(q, k, v, cu, *, causal: bool, scale, sliding_window):
    """(T, H, D) per-sequence SDPA: exact, any device and dtype; the kernel's specification in the tests."""
    out = torch.empty_like(q)
    groups = q.shape[1] // k.shape[1]
    bounds = cu.tolist()
    for a, b in zip(bounds[:-1], bounds[1:]):
        qi, ki, vi = (t[a:b].transpose(0, 1) for t in (q, k, v))  # (H, L, D)
        if groups > 1:
            ki, vi = ki.repeat_interleave(groups, 0), vi.repeat_interleave(groups, 0)
        mask = None
        n = b - a
        if causal and sliding_window and n > sliding_window:
            i = torch.arange(n, device=q.device)
            mask = (i[None, :] <= i[:, None]) & (i[None, :] > i[:, None] - sliding_window)
        oi = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=mask, is_causal=causal and mask is None, scale=scale)
        out[a:b] = oi.transpose(0, 1)
    return out


_reference = _reference_attention  # what packed_attention calls; keep_reference_eager() wraps it for torch.compile


def keep_reference_eager() -> None:
    """Run the reference loop eagerly under ``torch.compile`` (traced, it would be unrolled for every batch).

    :func:`xlrm_lib.compiling.compile_blocks` calls this; it is not done at import because the decorator pulls in
    torch's compiler stack, ~0.9 s in every notebook that never compiles.
    """
    global _reference
    if _reference is _reference_attention:
        _reference = torch.compiler.disable(_reference_attention)


def _kernel_ok(q, *, causal: bool, sliding_window, max_length: int) -> bool:
    if not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16) or _load_kernel() is None:
        return False
    if sliding_window and max_length > sliding_window and "window_size" not in _VARLEN_PARAMS:
        return False
    return causal or "window_size" in _VARLEN_PARAMS or "is_causal" in _VARLEN_PARAMS


def _kernel_attention(q, k, v, cu, max_length, *, causal: bool, scale, sliding_window):
    kw = {"scale": scale}
    if k.shape[1] != q.shape[1]:
        if "enable_gqa" in _VARLEN_PARAMS:
            kw["enable_gqa"] = True
        else:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
    if "window_size" in _VARLEN_PARAMS:  # torch >= 2.12: (left, right); (-1, 0) = causal
        left = sliding_window - 1 if sliding_window and max_length > sliding_window else -1
        kw["window_size"] = (left, 0) if causal else (-1, -1)
    else:  # torch 2.9-2.11
        kw["is_causal"] = causal
    return _varlen_attn(q, k, v, cu, cu, max_length, max_length, **kw)


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, sliding_window=None,
                     softcap=None, cu_seq_lens_q=None, max_length_q=None, **kwargs):
    """transformers attention function: per-sequence attention over a packed row ``(1, H, T, D)``."""
    if cu_seq_lens_q is None:
        raise ValueError(f"attention {ATTN_NAME!r} needs a packed batch (cu_seq_lens_q); call packed_rewards()")
    if query.shape[0] != 1:
        raise ValueError(f"a packed batch is one row, got batch size {query.shape[0]}")
    if softcap:
        raise NotImplementedError("packed attention does not implement logit soft-capping; train with packing=False")
    if dropout:
        raise NotImplementedError("packed attention has no attention dropout; set attention_dropout=0")
    causal = bool(getattr(module, "is_causal", True))
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, H, D)
    # under autocast, RoPE leaves q/k in float32 while v is bf16; the kernel wants one half-precision dtype
    if torch.is_autocast_enabled(q.device.type):
        dt = torch.get_autocast_dtype(q.device.type)
        q, k, v = q.to(dt), k.to(dt), v.to(dt)
    cu = cu_seq_lens_q.to(device=q.device, dtype=torch.int32)
    # under torch.compile the length is a SymInt: int() would pin the graph to one length (a recompile per batch)
    max_length = max_length_q if isinstance(max_length_q, (int, torch.SymInt)) else int(max_length_q)
    if _kernel_ok(q, causal=causal, sliding_window=sliding_window, max_length=max_length):
        q, k = q.contiguous(), k.contiguous()  # RoPE output, transposed back: (T, H, D) with the heads outermost
        out = _kernel_attention(q, k, v, cu, max_length, causal=causal, scale=scaling, sliding_window=sliding_window)
    else:
        v = v.to(q.dtype)
        k = k.to(q.dtype)
        out = _reference(q, k, v, cu, causal=causal, scale=scaling, sliding_window=sliding_window)
    return out.unsqueeze(0), None  # (1, T, H, D), like the other attention functions


def _register() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, packed_attention)


# ----------------------------------------------------------------------------------- model side
def supports_packing(model) -> str | None:
    """``None`` if ``model`` can run packed; else why not (a decoder ``...ForSequenceClassification`` is needed)."""
    m = unwrap(model)
    if not is_decoder(m):
        return f"{type(m).__name__} is not a decoder (bidirectional attention over padding-free rows is not wired)"
    if not hasattr(m, "score") or not hasattr(m, m.base_model_prefix):
        return f"{type(m).__name__} has no `score` head over `{m.base_model_prefix}`"
    if getattr(m.config, "attn_logit_softcapping", None) or getattr(m.config, "attention_dropout", 0.0):
        return f"{type(m).__name__} uses attention soft-capping or dropout"
    return None


def should_pack(model, *, half: bool) -> bool:
    """Whether packing pays and runs here: a decoder RM on CUDA, in half precision, with the varlen kernel."""
    device = next(model.parameters()).device
    return bool(half) and device.type == "cuda" and kernel_available() and supports_packing(model) is None


@contextlib.contextmanager
def _attention_implementation(config, name: str):
    """Set ``config``'s attention implementation (and its sub-configs') for the block; no mask is built for a
    registered function that has no mask function, which is what a packed row needs."""
    before = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = before


@contextlib.contextmanager
def packed_training(model):
    """Keep the packed attention on for a whole training loop, not only for :func:`packed_rewards`' forward:
    gradient checkpointing re-runs each layer's forward during backward, after that call has returned, and with
    the model's own attention the re-run would attend across the packed row (torch's non-reentrant checkpoint
    then fails; the reentrant one, transformers 4's default, silently computes wrong gradients)."""
    _register()
    with _attention_implementation(unwrap(model).config, ATTN_NAME):
        yield


def packed_rewards(model, batch: dict) -> torch.Tensor:
    """Rewards ``(n,)`` of a :func:`pack` batch (on the model's device), read at each sequence's last token.

    The call goes through ``model(...)`` itself, so whatever wraps its forward keeps working: accelerate's
    autocast (mixed precision lives there, not around ``compute_loss``), DDP's gradient hooks, PEFT. The score
    head's per-token output is taken with a forward hook; the classifier's own pooled logit (one per row) is
    ignored.
    """
    _register()
    if isinstance(model, torch.nn.DataParallel):  # it would split the one packed row's tensors along dim 0
        model = model.module
    m = unwrap(model)
    cu = batch["cu_seq_lens"]
    captured: list[torch.Tensor] = []
    handle = m.score.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    try:
        with _attention_implementation(m.config, ATTN_NAME):
            model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False,
                  cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=batch["max_length"],
                  max_length_k=batch["max_length"])
    finally:
        handle.remove()
    per_token = captured[-1]  # (1, T, 1)
    rewards = per_token[0, last_tokens(batch["input_ids"][0], cu, m.config.pad_token_id), 0]
    return rewards[:batch.get("sequences", rewards.numel())]  # not a row_multiple filler's


def last_tokens(ids: torch.Tensor, cu: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Where the padded classifier reads each packed sequence's score: its last token that is not the pad id
    (transformers' rule), else its last token. A sequence ends in the pad id where pad is EOS and the template
    ends with EOS: the padded batch then reads the token before, and so must the packed row. No host sync."""
    ends = cu[1:].long() - 1
    if pad_token_id is None:
        return ends
    idx = torch.arange(ids.numel(), device=ids.device)
    seq = torch.repeat_interleave(torch.arange(ends.numel(), device=ids.device), (cu[1:] - cu[:-1]).long(),
                                  output_size=ids.numel())
    last = torch.full_like(ends, -1).scatter_reduce(0, seq, torch.where(ids != pad_token_id, idx, -1), "amax")
    return torch.where(last >= 0, last, ends)
