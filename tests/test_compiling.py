"""xlrm_lib.compiling: regional compilation changes no result, compiles once per block class, and the packed
kernel path traces as one graph per block (so a GPU run compiles once, not once per batch).

The CUDA kernel cannot run here, so the kernel path is exercised with a stand-in custom op of the same
signature as ``varlen_attn`` that computes the reference attention: what is tested is our glue under
``torch.compile`` (no graph break, a symbolic ``max_length``, no recompile per batch), not the kernel.
"""

from __future__ import annotations

import functools
import subprocess
import sys

import pytest
import torch

from conftest import make_pairs, save_model, tiny_bert, tiny_llama, word_tokenizer
from test_packing import SEQS, _qwen2
from xlrm_lib import compiling, packing
from xlrm_lib.packing import pack, packed_rewards
from xlrm_lib.train import read_card, train_reward_model


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_block_classes_are_the_repeated_layers():
    assert compiling.block_classes(_qwen2()) == {"Qwen2DecoderLayer"}
    assert compiling.block_classes(tiny_bert()) == {"BertLayer"}  # BertEmbeddings is not a block
    model = _qwen2()
    assert compiling.compile_blocks(model, backend="aot_eager") == 2  # its two decoder layers
    assert compiling.compile_blocks(torch.nn.Linear(2, 2)) == 0
    # compiling keeps the reference attention's per-sequence loop out of the traced graph
    assert packing._reference is not packing._reference_attention
    assert packing._reference.__wrapped__ is packing._reference_attention


def test_importing_the_library_leaves_the_compiler_unloaded():
    """Every notebook imports these; torch's compiler stack (~0.9 s) loads only when something compiles."""
    code = ("import sys; import xlrm_lib.evaluate, xlrm_lib.study, xlrm_lib.train, xlrm_lib.packing; "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_resolve_compile():
    assert compiling.resolve_compile("auto", packed=True, device_type="cuda") is True
    assert compiling.resolve_compile("auto", packed=False, device_type="cuda") is False
    assert compiling.resolve_compile("auto", packed=True, device_type="cpu") is False
    assert compiling.resolve_compile(True, packed=False, device_type="cpu") is True
    assert compiling.resolve_compile(False, packed=True, device_type="cuda") is False


def _stand_in_kernel():
    """A custom op shaped like ``varlen_attn`` (window_size API) that runs the reference attention."""

    @torch.library.custom_op("xlrm_test::varlen", mutates_args=())
    def varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_q: torch.Tensor, cu_k: torch.Tensor,
               max_q: int, max_k: int, causal: bool) -> torch.Tensor:
        assert int(cu_q[-1]) == q.shape[0] and max_q >= 1
        return packing._reference_attention(q, k, v, cu_q, causal=causal, scale=None, sliding_window=None)

    @varlen.register_fake
    def _(q, k, v, cu_q, cu_k, max_q, max_k, causal):
        return torch.empty_like(q)

    @torch.library.custom_op("xlrm_test::varlen_backward", mutates_args=())
    def varlen_backward(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor,
                        causal: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        bounds = cu.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):  # softmax attention's backward, by hand, per sequence
            qi, ki, vi, gi = (t[a:b].transpose(0, 1) for t in (q, k, v, grad))  # (H, L, D)
            scale = q.shape[-1] ** -0.5
            s = qi @ ki.transpose(1, 2) * scale
            if causal:
                s = s.masked_fill(torch.ones_like(s[0], dtype=torch.bool).triu(1), float("-inf"))
            p = s.softmax(-1)
            dp = gi @ vi.transpose(1, 2)
            ds = p * (dp - (dp * p).sum(-1, keepdim=True))
            dq[a:b] = (ds @ ki * scale).transpose(0, 1)
            dk[a:b] = (ds.transpose(1, 2) @ qi * scale).transpose(0, 1)
            dv[a:b] = (p.transpose(1, 2) @ gi).transpose(0, 1)
        return dq, dk, dv

    @varlen_backward.register_fake
    def _(grad, q, k, v, cu, causal):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def setup(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:4])
        ctx.causal = inputs[7]

    def backward(ctx, grad):
        q, k, v, cu = ctx.saved_tensors
        return *varlen_backward(grad, q, k, v, cu, ctx.causal), None, None, None, None, None

    varlen.register_autograd(backward, setup_context=setup)

    def varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, *, scale=None, window_size=(-1, -1), enable_gqa=False):
        if enable_gqa:
            groups = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
        return varlen(q, k, v, cu_q, cu_k, max_q, max_k, tuple(window_size) == (-1, 0))

    return varlen_attn


def _same_rewards_and_grads(eager, compiled, seqs, *, atol):
    """Packed rewards and the gradients of both layers' attention and MLP weights agree to ``atol``."""
    eager.zero_grad(), compiled.zero_grad()
    r0, r1 = packed_rewards(eager, pack(seqs)), packed_rewards(compiled, pack(seqs))
    r0.sum().backward(), r1.sum().backward()
    assert torch.allclose(r0, r1, atol=atol), (r0, r1)
    for layer in (0, 1):
        for get in (lambda m: m.model.layers[layer].self_attn.q_proj, lambda m: m.model.layers[layer].mlp.up_proj):
            assert torch.allclose(get(eager).weight.grad, get(compiled).weight.grad, atol=atol)


def test_compiled_kernel_path_is_one_graph_per_block_and_compiles_once(monkeypatch):
    from torch._dynamo.utils import counters

    monkeypatch.setattr(packing, "_varlen_attn", _stand_in_kernel())
    monkeypatch.setattr(packing, "_VARLEN_PARAMS", {"scale", "window_size", "enable_gqa"})
    monkeypatch.setattr(packing, "_kernel_ok", lambda q, **kw: True)
    eager, compiled = _qwen2().train(), _qwen2().train()
    compiling.compile_blocks(compiled, backend="aot_eager")
    counters.clear()
    batches = [SEQS, SEQS[:3], SEQS + [[4, 5, 6, 7]], SEQS[1:], [s[:3] for s in SEQS]]
    graphs = []
    for seqs in batches:
        _same_rewards_and_grads(eager, compiled, seqs, atol=1e-5)
        graphs.append(counters["stats"]["unique_graphs"])
    assert not counters["graph_break"], dict(counters["graph_break"])  # kernel path: no break inside a block
    # first batch: one graph; a second length (and max_length): one dynamic recompile; then none, whatever the
    # length, the number of sequences or max_length
    assert graphs[-1] == graphs[1] and graphs[1] <= 2 * graphs[0], graphs
    fresh = _qwen2().train()  # a new model of the same shape reuses the compiled code
    compiling.compile_blocks(fresh, backend="aot_eager")
    packed_rewards(fresh, pack(SEQS)).sum().backward()
    assert counters["stats"]["unique_graphs"] == graphs[-1]


def test_compiled_training_is_eager_training(tmp_path, monkeypatch):
    """compile=True (padded CPU path here; dynamo tracing, the 'aot_eager' backend): same losses, card says so."""
    from xlrm_lib import train

    monkeypatch.setattr(train, "compile_blocks", functools.partial(compiling.compile_blocks, backend="aot_eager"))
    base = save_model(tmp_path / "llama", tiny_llama(pad_token_id=0), word_tokenizer("llama"))
    pairs = make_pairs([{"prompt": f"w{i} w{i + 1} ?", "chosen": f"w{i} good great " + "w3 " * (i % 5),
                         "rejected": f"bad awful w{i + 2}"} for i in range(12)])
    kw = dict(epochs=2, batch_size=4, lr=1e-3, bf16=False, progress=False, max_length=32, logging_steps=1)
    cards = {c: read_card(train_reward_model(str(base), pairs, output_dir=tmp_path / f"rm-{c}", torch_compile=c, **kw))
             for c in (True, False)}
    assert cards[True]["compiled_blocks"] == 2 and cards[False]["compiled_blocks"] == 0
    losses = {c: [h["loss"] for h in card["log_history"]] for c, card in cards.items()}
    assert len(losses[True]) == 6 and losses[True] == pytest.approx(losses[False], abs=1e-4)
    # the saved state dict has the model's own names (Module.compile works in place, no _orig_mod prefix)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "rm-True" / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "_orig_mod" in k]


def test_bad_compile_value_is_named():
    from xlrm_lib.train import RewardConfig

    with pytest.raises(ValueError, match=r"torch_compile = 'yes'; expected one of \[True, False, 'auto', 'graphs'\]"):
        RewardConfig(torch_compile="yes").validate()


def test_cuda_graph_training_is_packed_training(tmp_path, monkeypatch):
    """torch_compile='graphs': the blocks compiled in mode 'reduce-overhead' (CUDA graphs; skipped on a CPU, dynamo
    tracing with 'aot_eager' here), packed rows rounded up to multiples of GRAPH_ROW_MULTIPLE tokens, and the same
    losses as packed training without it; without packing it is refused before training."""
    from xlrm_lib import packing, train

    modes, rows = [], []

    def compile_blocks(model, mode=None):
        modes.append(mode)
        return compiling.compile_blocks(model, backend="aot_eager", mode=mode)

    def pack(seqs, **kw):
        batch = packing.pack(seqs, **kw)
        rows.append(batch["input_ids"].shape[1])
        return batch

    monkeypatch.setattr(train, "compile_blocks", compile_blocks)
    monkeypatch.setattr(train, "pack", pack)
    base = save_model(tmp_path / "llama", tiny_llama(pad_token_id=0), word_tokenizer("llama"))
    pairs = make_pairs([{"prompt": f"w{i} w{i + 1} ?", "chosen": f"w{i} good great " + "w3 " * (i % 5),
                         "rejected": f"bad awful w{i + 2}"} for i in range(12)])
    kw = dict(epochs=2, batch_size=4, lr=1e-3, bf16=False, progress=False, max_length=32, logging_steps=1, packing=True)
    cards = {c: read_card(train_reward_model(str(base), pairs, output_dir=tmp_path / f"rm-{c}", torch_compile=c, **kw))
             for c in ("graphs", False)}
    assert modes == ["reduce-overhead"] and cards["graphs"]["compiled_blocks"] == 2
    assert len(rows) == 12 and {r % compiling.GRAPH_ROW_MULTIPLE for r in rows[:6]} == {0} and max(rows[6:]) < 100
    losses = {c: [h["loss"] for h in card["log_history"]] for c, card in cards.items()}
    assert len(losses["graphs"]) == 6 and losses["graphs"] == pytest.approx(losses[False], abs=1e-5)
    assert cards["graphs"]["train_metrics"]["real_tokens"] == cards[False]["train_metrics"]["real_tokens"]
    with pytest.raises(ValueError, match="torch_compile = 'graphs' .CUDA graphs. needs packed training"):
        train_reward_model(str(base), pairs, output_dir=tmp_path / "rm-padded", **{**kw, "packing": False},
                           torch_compile="graphs")  # refused by the configuration's check
    assert not (tmp_path / "rm-padded").exists()
    with pytest.raises(ValueError, match="torch_compile = 'graphs' .CUDA graphs. needs packed training .packing: "):
        compiling.resolve_compile("graphs", packed=False, device_type="cuda")  # packing 'auto' that did not pack


@pytest.mark.slow
def test_inductor_compiled_packed_rewards_match_eager():
    """The real backend (inductor, C++ codegen on CPU): same rewards and gradients as eager."""
    eager, compiled = _qwen2().train(), _qwen2().train()
    compiling.compile_blocks(compiled)
    for seqs in (SEQS, SEQS[1:]):
        _same_rewards_and_grads(eager, compiled, seqs, atol=1e-4)


def test_a_failing_compile_names_the_fix(tmp_path, monkeypatch):
    """A backend that cannot compile the blocks: the error says compile=False, and nothing is left behind."""
    from xlrm_lib import train

    def broken(gm, example_inputs):
        raise NotImplementedError("this backend compiles nothing")

    monkeypatch.setattr(train, "compile_blocks", functools.partial(compiling.compile_blocks, backend=broken))
    base = save_model(tmp_path / "llama", tiny_llama(pad_token_id=0), word_tokenizer("llama"))
    pairs = make_pairs([{"chosen": f"w{i} good", "rejected": f"bad w{i}"} for i in range(4)])
    with pytest.raises(RuntimeError, match="torch.compile of 2 .* blocks failed.*torch_compile=False"):
        train_reward_model(str(base), pairs, output_dir=tmp_path / "rm", torch_compile=True, epochs=1, batch_size=2,
                           bf16=False, progress=False, max_length=16)
    assert not (tmp_path / "rm").exists()
