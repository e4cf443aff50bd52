"""xlrm_lib.packing: padding-free rows give the padded classifier's rewards; packed training is padded training.

The CUDA kernel path (``varlen_attn``) is compared with the padded model by ``benchmarks/bench_train.py
--gpu-synthetic`` on a GPU; here the reference path (per-sequence SDPA) is checked against the classifier.
"""

from __future__ import annotations

import pytest
import torch

from conftest import make_pairs, save_model, tiny_bert, tiny_llama, word_tokenizer
from xlrm_lib.formatting import pad_batch
from xlrm_lib.packing import pack, packed_rewards, supports_packing
from xlrm_lib.train import read_card, resolve_packing, train_reward_model


def test_pack_by_hand():
    b = pack([[5, 6, 7], [8, 9], [4]])
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9, 4]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0]]
    assert b["cu_seq_lens"].tolist() == [0, 3, 5, 6] and b["cu_seq_lens"].dtype == torch.int32
    assert b["max_length"] == 3
    with pytest.raises(ValueError, match=r"got empty sequence\(s\) at \[1\]"):
        pack([[1], []])


def _qwen2(sliding_window=None, seed=0):
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    torch.manual_seed(seed)
    cfg = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=64, vocab_size=64, num_labels=1, pad_token_id=0, initializer_range=0.2,
                      use_sliding_window=sliding_window is not None, sliding_window=sliding_window,
                      max_window_layers=0)
    return Qwen2ForSequenceClassification(cfg).eval()


def _gemma3(sliding_window=4, seed=0):
    """Gemma 3 text: sliding-window and full-attention layers mixed, GQA, its own head_dim."""
    from transformers import AutoModelForSequenceClassification, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                           head_dim=8, intermediate_size=64, vocab_size=64, sliding_window=sliding_window,
                           layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                           num_labels=1, pad_token_id=0, initializer_range=0.2)
    return AutoModelForSequenceClassification.from_config(cfg).eval()


SEQS = [[3, 9, 4, 12, 7], [5, 6, 7, 8, 9, 10, 11, 12, 13], [2, 3, 4], list(range(1, 13))]


@pytest.mark.parametrize("make", [lambda: tiny_llama(pad_token_id=0), _qwen2, lambda: _qwen2(sliding_window=4),
                                  _gemma3], ids=["llama", "qwen2-gqa", "qwen2-sliding-window", "gemma3"])
def test_packed_rewards_equal_the_padded_classifier(make):
    model = make()
    with torch.no_grad():
        padded = model(**pad_batch(SEQS, 0, "right")).logits[:, 0]
        packed = packed_rewards(model, pack(SEQS))
        after = model(**pad_batch(SEQS, 0, "right")).logits[:, 0]
    assert packed.shape == (4,)
    assert torch.allclose(packed, padded, atol=1e-5), (packed, padded)
    assert model.config._attn_implementation == "sdpa"  # restored: padded calls attend as before
    assert torch.equal(after, padded)


def test_a_sequence_ending_in_the_pad_id_is_read_where_the_padded_classifier_reads_it():
    # pad == EOS and a template that ends with EOS: the padded classifier reads the token before the EOS (the last
    # one that is not the pad id); the packed row must read the same token, or packed training and padded scoring
    # disagree
    model = tiny_llama(pad_token_id=3)
    seqs = [[2, 9, 4, 12, 3], [5, 6, 7, 8], [2, 3, 3], [2, 5, 3, 6]]
    with torch.no_grad():
        padded = model(**pad_batch(seqs, 3, "right")).logits[:, 0]
        packed = packed_rewards(model, pack(seqs))
    assert torch.allclose(packed, padded, atol=1e-5), (packed, padded)
    from xlrm_lib.packing import last_tokens

    b = pack(seqs)
    assert last_tokens(b["input_ids"][0], b["cu_seq_lens"], 3).tolist() == [3, 8, 9, 15]
    assert last_tokens(b["input_ids"][0], b["cu_seq_lens"], None).tolist() == [4, 8, 11, 15]


def test_a_deepspeed_or_data_parallel_wrapper_is_looked_through():
    from xlrm_lib.arch import unwrap

    model = _qwen2()

    class Engine(torch.nn.Module):  # what DeepSpeed's engine looks like: .module, and a dict as .config
        def __init__(self, module):
            super().__init__()
            self.module, self.config = module, {"zero_optimization": {"stage": 3}}

        def forward(self, *a, **k):
            return self.module(*a, **k)

    assert unwrap(Engine(model)) is model and unwrap(torch.nn.DataParallel(model)) is model
    # (on a CPU DataParallel has no devices and never splits: this checks only that the call goes through it)
    with torch.no_grad():
        alone = packed_rewards(model, pack(SEQS))
        assert torch.equal(packed_rewards(Engine(model), pack(SEQS)), alone)
        assert torch.equal(packed_rewards(torch.nn.DataParallel(model), pack(SEQS)), alone)


def test_a_pre_ampere_gpu_neither_packs_nor_autocasts_to_bf16(monkeypatch):
    # a T4 / V100 reports bf16 "supported" through emulation, and the flash varlen kernel needs sm80+
    from xlrm_lib import packing, train

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 5))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert not packing.kernel_available()
    assert not train.fast_bf16()
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert packing.kernel_available() == (packing._load_kernel() is not None)
    assert train.fast_bf16()


def test_gradients_flow_through_the_packed_row():
    model = _qwen2().train()
    packed_rewards(model, pack(SEQS)).sum().backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_encoders_are_not_packed():
    why = supports_packing(tiny_bert())
    assert why and "not a decoder" in why
    with pytest.raises(ValueError, match="packing=True is not possible.*not a decoder"):
        resolve_packing(True, tiny_bert())
    assert resolve_packing("auto", tiny_bert()) is False
    assert resolve_packing("auto", _qwen2()) is torch.cuda.is_available()  # packs on a GPU only


def test_packed_training_is_padded_training(tmp_path):
    """Same pairs, order and seed: the packed and the padded trainer log the same losses and save the same model;
    so does packed training with gradient checkpointing (its backward re-runs each layer's forward: with the
    model's own attention there, it attended across the packed row and torch's checkpoint raised)."""
    base = save_model(tmp_path / "llama", tiny_llama(pad_token_id=0), word_tokenizer("llama"))
    pairs = make_pairs([{"prompt": f"w{i} w{i + 1} ?", "chosen": f"w{i} good great " + "w3 " * (i % 5),
                         "rejected": f"bad awful w{i + 2}"} for i in range(12)])
    kw = dict(epochs=2, batch_size=4, lr=1e-3, bf16=False, progress=False, max_length=32, group_by_length=False,
              logging_steps=1)
    cards = {}
    for packing in (True, False, "gc"):
        path = train_reward_model(str(base), pairs, output_dir=tmp_path / f"rm-{packing}", packing=bool(packing),
                                  gradient_checkpointing=packing == "gc", **kw)
        cards[packing] = read_card(path)
    assert cards["gc"]["packed"] is True
    assert [h["loss"] for h in cards["gc"]["log_history"]] == pytest.approx(
        [h["loss"] for h in cards[True]["log_history"]], abs=1e-5)
    del cards["gc"]
    assert cards[True]["packed"] is True and cards[False]["packed"] is False
    assert cards[True]["train_metrics"]["real_tokens"] == cards[False]["train_metrics"]["real_tokens"]
    losses = {p: [h["loss"] for h in c["log_history"]] for p, c in cards.items()}
    assert len(losses[True]) == 6
    assert losses[True] == pytest.approx(losses[False], abs=1e-4)
    acc = {p: [h["accuracy"] for h in c["log_history"]] for p, c in cards.items()}
    assert acc[True] == acc[False]


def test_packed_scoring_branch_matches_padded_scoring(monkeypatch):
    """score_texts' packed branch (CUDA + bf16 in real use), forced on CPU: same rewards, in the input order."""
    from xlrm_lib import evaluate

    model = _qwen2()
    tok = word_tokenizer("llama")
    seqs = SEQS + [[7, 8], list(range(3, 20))]
    padded = evaluate.score_texts(model, tok, seqs, batch_size=3, bf16=True)
    monkeypatch.setattr(evaluate, "should_pack", lambda *a, **k: True)
    packed = evaluate.score_texts(model, tok, seqs, batch_size=3, bf16=True)
    assert packed.shape == (6,)
    exact = evaluate.score_texts(model, tok, seqs, batch_size=3)  # fp32, padded
    assert abs(padded - exact).max() > 0  # bf16 did change something, so the next bound is not vacuous
    assert abs(packed - exact).max() < 0.05 * abs(exact).max(), (packed, exact)  # bf16 rounding (~3%), not a mix-up
    assert (packed.argsort() == exact.argsort()).all()  # each reward landed at its own sequence


# ----------------------------------------------------------------------------- added by mutation testing
def _flash_semantics(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1)):
    """A stand-in for ``varlen_attn`` with FlashAttention's documented semantics, per sequence of ``cu_q``:
    query i attends keys j with i - left <= j <= i + right (-1: no limit), and query head h reads key/value head
    h // (H_q / H_kv)."""
    import torch.nn.functional as F

    out = torch.empty_like(q)
    left, right = window_size
    for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        i = torch.arange(b - a)
        allowed = torch.ones(b - a, b - a, dtype=torch.bool)
        if left >= 0:
            allowed &= i[None, :] >= i[:, None] - left
        if right >= 0:
            allowed &= i[None, :] <= i[:, None] + right
        qi, ki, vi = (t[a:b].transpose(0, 1) for t in (q, k, v))
        groups = qi.shape[0] // ki.shape[0]
        ki, vi = ki.repeat_interleave(groups, 0), vi.repeat_interleave(groups, 0)
        out[a:b] = F.scaled_dot_product_attention(qi, ki, vi, attn_mask=allowed, scale=scale).transpose(0, 1)
    return out


@pytest.mark.parametrize("window", [None, 3])
def test_the_kernels_arguments_ask_for_the_reference_attention(monkeypatch, window):
    # the CUDA path is not run on a CPU: check what _kernel_attention asks the kernel for (a sliding window of W
    # tokens, self included, is window_size=(W - 1, 0); grouped key/value heads shared by consecutive query heads)
    # against the reference path, with a kernel that has no enable_gqa (torch 2.12's signature less that flag)
    from xlrm_lib import packing

    monkeypatch.setattr(packing, "_varlen_attn", _flash_semantics)
    monkeypatch.setattr(packing, "_VARLEN_PARAMS", {"scale", "window_size"})
    torch.manual_seed(0)
    cu = pack(SEQS)["cu_seq_lens"]
    total, max_length = int(cu[-1]), pack(SEQS)["max_length"]
    q, k, v = torch.randn(total, 4, 8), torch.randn(total, 2, 8), torch.randn(total, 2, 8)
    got = packing._kernel_attention(q, k, v, cu, max_length, causal=True, scale=None, sliding_window=window)
    ref = packing._reference_attention(q, k, v, cu, causal=True, scale=None, sliding_window=window)
    assert torch.allclose(got, ref, atol=1e-6)


def test_pack_names_the_empty_sequence():
    with pytest.raises(ValueError, match=r"pack\(\) got no sequences"):
        pack([])
    with pytest.raises(ValueError, match=r"pack\(\) got empty sequence\(s\) at \[1, 3\]; every sequence needs a token"):
        pack([[1, 2], [], [3], []])


def test_a_row_rounded_up_for_cuda_graphs_keeps_the_rewards():
    """row_multiple (CUDA graphs' repeating shapes): a filler sequence of its own ends the row; the rewards are
    those of the row without it, and only the given sequences'."""
    b = pack(SEQS, row_multiple=16, max_length=16)  # 5 + 9 + 3 + 12 = 29 tokens: a 3-token filler
    assert b["cu_seq_lens"].tolist() == [0, 5, 14, 17, 29, 32] and b["input_ids"][0, 29:].tolist() == [0, 0, 0]
    assert b["position_ids"][0, 29:].tolist() == [0, 0, 0] and (b["max_length"], b["sequences"]) == (16, 4)
    assert pack([[1] * 8, [2] * 8], row_multiple=16)["cu_seq_lens"].tolist() == [0, 8, 16, 32]  # always a filler
    model = _qwen2()
    with torch.no_grad():
        plain, rounded = packed_rewards(model, pack(SEQS)), packed_rewards(model, b)
    assert rounded.shape == (4,) and torch.allclose(rounded, plain, atol=1e-6), (rounded, plain)
    with pytest.raises(ValueError, match="max_length = 8 but a packed sequence has 12 tokens"):
        pack(SEQS, max_length=8)
    with pytest.raises(ValueError, match="row_multiple = -4; expected a positive number of tokens"):
        pack(SEQS, row_multiple=-4)
