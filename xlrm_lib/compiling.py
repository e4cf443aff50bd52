"""Regional ``torch.compile``: compile the model's repeated block (a decoder layer) once, reuse it in every layer.

Why regional: a reward model is an embedding, N identical blocks and a score head. Compiling one block class
(PyTorch's "regional compilation" recipe) fuses its many small element-wise kernels (RMSNorm, RoPE, SwiGLU,
residual adds) and cuts the Python and launch overhead that dominates an eager GPU step at a few thousand
tokens, while costing one block's compile time instead of the whole model's. Everything around the blocks
(the embedding, the score head, :func:`xlrm_lib.packing.packed_rewards`'s forward hook, accelerate's autocast,
DDP, PEFT) stays eager and unchanged; ``Module.compile`` works in place, so the state dict keeps its names and
``save_pretrained`` writes an ordinary model.

The blocks are the classes a transformers model lists in ``_no_split_modules`` (the units accelerate will not
split across devices), minus embeddings: ``Qwen2DecoderLayer``, ``LlamaDecoderLayer``, ``XLMRobertaLayer``...

>>> import torch
>>> compile_blocks(torch.nn.Linear(2, 2))  # no transformers blocks: nothing to compile
0
"""

from __future__ import annotations


def block_classes(model) -> set[str]:
    """Names of the repeated block classes of ``model`` (transformers' ``_no_split_modules``, no embeddings)."""
    names = set()
    for module in model.modules():
        names.update(n for n in (getattr(module, "_no_split_modules", None) or []) if "Embed" not in n)
    return names


def compile_blocks(model, *, backend: str = "inductor", dynamic: bool | None = None, mode: str | None = None) -> int:
    """Compile every repeated block of ``model`` in place; return how many were compiled (0: none found).

    ``dynamic=None`` is PyTorch's automatic dynamic shapes: the first call compiles for its sequence length,
    the first call with another length recompiles once with a symbolic length, and every later length reuses
    that. All blocks share the compiled code (parameters are graph inputs), so the model pays for one block.
    ``mode``: torch.compile's (``"reduce-overhead"``: CUDA graphs, recorded once per block and row length).
    """
    from .packing import keep_reference_eager

    names = block_classes(model)
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if blocks:
        keep_reference_eager()
    for block in blocks:
        block.compile(backend=backend, dynamic=dynamic, mode=mode)
    return len(blocks)


GRAPHS = "graphs"  # the torch_compile setting for CUDA graphs
GRAPH_ROW_MULTIPLE = 1024  # packed rows are rounded up to a multiple of this many tokens under GRAPHS


def resolve_compile(setting, *, packed: bool, device_type: str) -> bool:
    """``"auto"``: compile where it pays, i.e. packed training on a CUDA GPU (one compile, thousands of steps).

    On a CPU the per-notebook compile time (a fresh process per training) outweighs what it saves on short
    runs, so ``"auto"`` leaves CPU training eager; ``True`` compiles anywhere inductor runs.

    ``"graphs"`` (experimental) compiles the blocks with ``mode="reduce-overhead"``: each block's forward and
    backward replay as CUDA graphs, which removes the per-kernel launch and Python wrapper cost that bounds a packed
    GPU step (see benchmarks/README.md). A graph is recorded per row length, so the packed rows are rounded up to
    multiples of :data:`GRAPH_ROW_MULTIPLE` tokens; it needs packed training (on a CPU the graphs are skipped and
    it is ``True`` with the rounding).

    >>> [resolve_compile(s, packed=True, device_type="cpu") for s in ("auto", "graphs")]
    [False, True]
    """
    if setting == GRAPHS and not packed:
        raise ValueError(f"torch_compile = {GRAPHS!r} (CUDA graphs) needs packed training (packing: true, or 'auto' "
                         "with a decoder RM in bf16 on a CUDA GPU); expected True, False or 'auto' here")
    if setting == "auto":
        return bool(packed) and device_type == "cuda"
    return bool(setting)


def compile_mode(setting) -> str | None:
    """torch.compile's ``mode`` for a ``torch_compile`` setting: ``"reduce-overhead"`` for :data:`GRAPHS`."""
    return "reduce-overhead" if setting == GRAPHS else None
