"""Tests for xlrm_lib.probe (CKA, singular-value ratio, pooling, UMAP) and its figures, on tiny in-process models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertModel, LlamaConfig, LlamaForSequenceClassification, LlamaModel
from transformers import PreTrainedTokenizerFast

from xlrm_lib import probe
from xlrm_lib.plots import probe as plots
from xlrm_lib.probe import (MinibatchCKA, cross_lingual_cka, hidden_norms, hidden_states, layerwise_cka,
                            linear_cka, shift_summary, sv_ratio, sv_ratios, umap_embed)

WORDS = ["[PAD]", "[UNK]", "[CLS]"] + [f"w{i}" for i in range(40)]
TEXTS = ["w1 w2 w3 w4 w5", "w6", "w7 w8 w9", "w10 w11"]


def _tokenizer(padding_side: str) -> PreTrainedTokenizerFast:
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]")
    tok.padding_side = padding_side
    return tok


def _llama(seed: int = 0, cls=LlamaModel):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, pad_token_id=0)
    return cls(cfg).eval()


def _bert(seed: int = 0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg).eval()


# ----------------------------------------------------------------------------- CKA

@pytest.mark.parametrize("debiased", [False, True])
def test_cka_of_itself_is_one(debiased):
    X = np.random.default_rng(0).normal(size=(100, 20))
    assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_invariant_to_rotation_scaling_and_shift(debiased):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 16))
    Y = X @ rng.normal(size=(16, 8)) + rng.normal(size=(200, 8))
    Q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    ref = linear_cka(X, Y, debiased=debiased)
    assert 0.2 < ref < 0.99
    assert linear_cka(X @ Q, Y, debiased=debiased) == pytest.approx(ref, abs=1e-10)
    assert linear_cka(3.7 * X, Y, debiased=debiased) == pytest.approx(ref, abs=1e-10)
    assert linear_cka(X + 5.0, Y, debiased=debiased) == pytest.approx(ref, abs=1e-10)


def test_debiased_cka_near_zero_on_independent_data_where_biased_is_not():
    rng = np.random.default_rng(2)
    X, Y = rng.normal(size=(500, 64)), rng.normal(size=(500, 64))
    assert abs(linear_cka(X, Y, debiased=True)) < 0.05
    assert linear_cka(X, Y, debiased=False) > 0.1


def test_unbiased_hsic_matches_direct_formula():
    # hand-written HSIC_u of Song et al. (2012) on Gram matrices with zeroed diagonals
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(9, 3)), rng.normal(size=(9, 2))
    K, L = X @ X.T, Y @ Y.T
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    n, one = 9, np.ones(9)
    hsic = (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))
    assert probe._hsic_u(K[None], L[None])[0, 0] == pytest.approx(hsic, rel=1e-10)


def test_minibatch_cka_agrees_with_full_estimator():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1024, 32))
    Y = X @ rng.normal(size=(32, 16)) + 4.0 * rng.normal(size=(1024, 16))
    full = linear_cka(X, Y, debiased=True)
    minibatch = layerwise_cka(X[:, None], Y[:, None], batch_size=64, seed=0)
    assert minibatch.shape == (1,)
    assert minibatch[0] == pytest.approx(full, abs=1e-2)


def _hsic_song(X, Y):
    # Song et al. (2012)'s unbiased HSIC with linear kernels, written out from the paper
    n = len(X)
    K, L = X @ X.T, Y @ Y.T
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))


def test_minibatch_cka_sums_every_batchs_hsic():
    # Nguyen et al.'s minibatch CKA: the sums over ALL batches of the three HSICs, then the ratio
    rng = np.random.default_rng(6)
    batches = [rng.normal(size=(16, 5)) for _ in range(4)]
    pairs = [(x, x @ rng.normal(size=(5, 3)) + rng.normal(size=(16, 3))) for x in batches]
    cka = MinibatchCKA()
    for x, y in pairs:
        cka.update(x[:, None], y[:, None])
    xy, xx, yy = (sum(_hsic_song(a, b) for a, b in ((p[i], p[j]) for p in pairs)) for i, j in ((0, 1), (0, 0), (1, 1)))
    assert cka.compute()[0, 0] == pytest.approx(xy / np.sqrt(xx * yy), rel=1e-10)
    last = MinibatchCKA()
    last.update(pairs[-1][0][:, None], pairs[-1][1][:, None])
    assert last.compute()[0, 0] != pytest.approx(cka.compute()[0, 0], rel=1e-3)


def test_minibatch_cka_layer_pairs():
    rng = np.random.default_rng(5)
    cka = MinibatchCKA()
    for _ in range(3):
        x = rng.normal(size=(32, 2, 6))
        cka.update(x, np.stack([x[:, 0], x[:, 1], -2 * x[:, 0]], 1))
    out = cka.compute()
    assert out.shape == (2, 3)
    assert out[0, 0] == pytest.approx(1.0) and out[1, 1] == pytest.approx(1.0) and out[0, 2] == pytest.approx(1.0)
    assert abs(out[0, 1]) < 0.2
    with pytest.raises(ValueError, match="batch size >= 4"):
        cka.update(rng.normal(size=(3, 2, 6)), rng.normal(size=(3, 3, 6)))
    with pytest.raises(ValueError, match="layer counts changed"):
        cka.update(rng.normal(size=(8, 1, 6)), rng.normal(size=(8, 3, 6)))
    with pytest.raises(ValueError, match="before any update"):
        MinibatchCKA().compute()


def test_cka_errors_name_shapes():
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError, match=r"\(10, 3\) and \(9, 3\)"):
        linear_cka(rng.normal(size=(10, 3)), rng.normal(size=(9, 3)))
    with pytest.raises(ValueError, match="n >= 4; got n=3"):
        linear_cka(rng.normal(size=(3, 2)), rng.normal(size=(3, 2)), debiased=True)
    with pytest.raises(ValueError, match="zero variance"):
        linear_cka(np.ones((10, 3)), rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match=r"\(10, 3, 4\) and \(10, 2, 4\)"):
        layerwise_cka(rng.normal(size=(10, 3, 4)), rng.normal(size=(10, 2, 4)))
    with pytest.raises(ValueError, match="3 items; the debiased CKA needs at least 4"):  # was "compute() called
        layerwise_cka(rng.normal(size=(3, 1, 4)), rng.normal(size=(3, 1, 4)), batch_size=4)  # before any update()"
    nan = rng.normal(size=(10, 3, 4))
    nan[2, 1, 0] = np.nan  # would make the CKA NaN (or the SVD fail): named instead
    with pytest.raises(ValueError, match=r"rm_states has 1 non-finite values"):
        layerwise_cka(rng.normal(size=(10, 3, 4)), nan)
    with pytest.raises(ValueError, match=r"Y has 1 non-finite values"):
        linear_cka(rng.normal(size=(10, 4)), nan[:, 1])
    with pytest.raises(ValueError, match=r"states\['ko'\] at layer 1 has 1 non-finite values"):
        probe.sv_ratios({"en": rng.normal(size=(10, 3, 4)), "ko": nan}, layer=1)
    with pytest.raises(ValueError, match=r"needs the states of at least one language"):
        probe.hidden_norms({})
    # norms are per item: languages need not have the same items
    assert len(probe.hidden_norms({"en": rng.normal(size=(10, 3, 4)), "ko": rng.normal(size=(8, 3, 4))})) == 18


def test_layerwise_and_cross_lingual_cka():
    rng = np.random.default_rng(7)
    base = rng.normal(size=(50, 3, 8))
    rm = base.copy()
    rm[:, 2] = rng.normal(size=(50, 8))  # only the last layer changes
    out = layerwise_cka(base, rm)
    assert out[:2] == pytest.approx([1.0, 1.0]) and abs(out[2]) < 0.2
    table = cross_lingual_cka({"en": base, "de": 2 * base, "ko": rm}, layer=-1)
    assert list(table.index) == ["en", "de", "ko"] and list(table.columns) == ["en", "de", "ko"]
    assert np.allclose(np.diag(table), 1.0) and np.allclose(table, table.T)
    assert table.loc["en", "de"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"'en': 50, 'de': 49"):
        cross_lingual_cka({"en": base, "de": base[:49]})


@pytest.mark.parametrize("batch_size", [None, 16])
def test_a_layer_that_does_not_vary_has_no_cka(batch_size):
    # last-token pooling at the embeddings of texts that all end in "." gives one row repeated: CKA is undefined
    # there, which must not stop the probe's other layers
    rng = np.random.default_rng(3)
    base = rng.normal(size=(64, 3, 8))
    base[:, 0] = 1.5
    out = layerwise_cka(base, base + 0.01 * rng.normal(size=base.shape), batch_size=batch_size)
    assert np.isnan(out[0]) and out[1:] == pytest.approx([1.0, 1.0], abs=0.01)
    with pytest.raises(ValueError, match="zero variance"):
        linear_cka(base[:, 0], base[:, 1])  # called directly, it still says why


def test_layerwise_cka_takes_minibatches_at_large_n(monkeypatch):
    rng = np.random.default_rng(4)
    base = rng.normal(size=(600, 2, 8))
    rm = base + rng.normal(size=base.shape)
    exact = layerwise_cka(base, rm)
    updates = []
    monkeypatch.setattr(probe, "FULL_CKA_MAX_N", 500)
    monkeypatch.setattr(probe, "CKA_BATCH", 128)
    monkeypatch.setattr(MinibatchCKA, "update", lambda self, xs, ys, _f=MinibatchCKA.update: (
        updates.append(len(xs)), _f(self, xs, ys))[1])
    approx = layerwise_cka(base, rm)
    assert updates == [128, 128, 128, 128, 88]
    assert approx == pytest.approx(exact, abs=0.05)


def test_hidden_states_truncated_on_the_left_keep_the_end(tmp_path):
    # a long text is cut to max_length; "left" keeps its end (where an RM reads), "right" its beginning
    model, tok = _llama(), _tokenizer("right")
    texts = ["w1 w2 w3 w4 w5 w6", "w9 w9 w9 w4 w5 w6"]  # the same last three tokens
    left = hidden_states(model, tok, texts, max_length=3, truncation_side="left", cache_dir=tmp_path)
    right = hidden_states(model, tok, texts, max_length=3, truncation_side="right", cache_dir=tmp_path)
    np.testing.assert_allclose(left[0], left[1], atol=1e-6)
    assert not np.allclose(right[0], right[1])
    assert tok.truncation_side == "right"  # the tokenizer is left as it was
    assert len(list(tmp_path.glob("hidden-*.npy"))) == 2  # the side is part of the cache key
    with pytest.raises(ValueError, match="truncation_side = 'middle'"):
        hidden_states(model, tok, texts, truncation_side="middle")


def test_representation_shift_labels_the_layers_it_probed(tmp_path, monkeypatch):
    from conftest import save_model, tiny_bert, word_tokenizer
    from xlrm_lib import study

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "umap_embed", lambda H, random_state=0: H[:, :2])  # not under test: numba compiles
    base = save_model(tmp_path / "base", tiny_bert(seed=0), word_tokenizer("bert"))
    rms = {name: str(save_model(tmp_path / name, tiny_bert(seed=i), word_tokenizer("bert")))
           for i, name in enumerate(["en", "ko"], 1)}
    texts = {lang: [f"w{i} w{i + 1} w{(i * 7) % 30} good" for i in range(k, k + 8)] for lang, k in [("en", 0), ("ko", 3)]}
    shift = study.representation_shift(str(base), rms, texts, layers=[1, -1])
    assert sorted(set(shift["cka"]["layer"])) == [1, 2]  # hidden states 1 and 2 of 3, not 0 and 1
    assert study._layer_labels(np.array([2, 0]), ["org/hub-model"]).tolist() == [2, 0]  # no config needed
    with pytest.raises(ValueError, match="counts from the end, but no config.json"):
        study._layer_labels([-1], ["org/hub-model"])
    full = study.representation_shift(str(base), rms, texts)
    assert sorted(set(full["cka"]["layer"])) == [0, 1, 2]
    for layer in (1, 2):
        pick = lambda t: t[t["layer"] == layer].sort_values("model")["cka"].to_numpy()  # noqa: E731
        np.testing.assert_allclose(pick(shift["cka"]), pick(full["cka"]), atol=1e-6)
    assert list(shift["summary"]["model"]) == ["base", "en", "ko"]
    np.testing.assert_allclose(shift["summary"]["sv_ratio_mean"], full["summary"]["sv_ratio_mean"], atol=1e-6)
    # the layer the summary looks at is an index into the probed ones: [1, -1][0] is hidden state 1 of all three
    first = study.representation_shift(str(base), rms, texts, layers=[1, -1], focus_layer=0)
    at1 = study.representation_shift(str(base), rms, texts, focus_layer=1)
    np.testing.assert_allclose(first["summary"]["sv_ratio_mean"], at1["summary"]["sv_ratio_mean"], atol=1e-6)
    assert not np.allclose(first["summary"]["sv_ratio_mean"], shift["summary"]["sv_ratio_mean"], atol=1e-4)
    with pytest.raises(ValueError, match=r"focus_layer = 2; expected an index into the probed layers \[1, -1\] "
                                         r"\(-2 to 1\)"):
        study.representation_shift(str(base), rms, texts, layers=[1, -1], focus_layer=2)
    np.testing.assert_allclose(  # a numpy integer is an index too
        study.representation_shift(str(base), rms, texts, focus_layer=np.int64(1))["summary"]["sv_ratio_mean"],
        at1["summary"]["sv_ratio_mean"], atol=1e-6)
    with pytest.raises(ValueError, match=r"focus_layer = 3; expected an index into the probed layers 'all' \(-3 to 2\)"):
        study.representation_shift(str(base), rms, texts, focus_layer=3)  # the base's config: 3 hidden states
    # cached per model (xlrm cache --prune drops an RM's states with it): 2 languages x 2 layer choices each
    states = tmp_path / "cache" / "hidden_states"
    assert {d.name: len(list(d.glob("hidden-*.npy"))) for d in states.iterdir()} == {"base": 4, "en": 4, "ko": 4}


def test_the_probe_pools_as_asked_and_records_it(tmp_path, monkeypatch):
    # an encoder RM's head reads [CLS]; the probe's default for an encoder is the token mean
    from conftest import save_model, tiny_bert, word_tokenizer
    from xlrm_lib import study

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "umap_embed", lambda H, random_state=0: H[:, :2])
    base = save_model(tmp_path / "base", tiny_bert(seed=0), word_tokenizer("bert"))
    rms = {"en": str(save_model(tmp_path / "en", tiny_bert(seed=1), word_tokenizer("bert")))}
    texts = {lang: [f"w{i} w{i + 1} w{(i * 7) % 30} good" for i in range(k, k + 6)]
             for lang, k in [("en", 0), ("ko", 3)]}
    auto, cls = (study.representation_shift(str(base), rms, texts, pooling=p) for p in ("auto", "cls"))
    assert (auto["text_format"]["pooling"].item(), cls["text_format"]["pooling"].item()) == ("auto", "cls")
    cls_states = study.model_states(str(base), {"en": texts["en"][:2]}, layers=[-1], pooling="cls")["en"][:, 0]
    mean_states = study.model_states(str(base), {"en": texts["en"][:2]}, layers=[-1], pooling="mean")["en"][:, 0]
    body = BertModel.from_pretrained(str(base)).eval()
    tok = PreTrainedTokenizerFast.from_pretrained(str(base))
    with torch.no_grad():
        h = body(**tok(texts["en"][:2], return_tensors="pt", padding=True)).last_hidden_state
    np.testing.assert_allclose(cls_states, h[:, 0].numpy(), atol=1e-5)  # position 0, [CLS]
    assert not np.allclose(cls_states, mean_states, atol=1e-3)
    assert not np.allclose(auto["summary"]["sv_ratio_mean"], cls["summary"]["sv_ratio_mean"])
    assert study.probe_metrics(cls)["text_format"]["pooling"] == "cls"
    with pytest.raises(ValueError, match=r"pooling = 'max'; expected one of \['auto', 'mean', 'cls', 'last'\]"):
        study.representation_shift(str(base), rms, texts, pooling="max")


# ----------------------------------------------------------------------------- singular values, norms

def test_sv_ratio_hand_computed():
    v = np.array([1.0, -2.0, 0.5, 3.0])
    assert sv_ratio(np.outer([1.0, 2.0, -3.0], v)) == pytest.approx(1.0)  # rank 1
    assert sv_ratio(2.0 * np.eye(3, 5)) == pytest.approx(1 / 3)  # 3 orthogonal rows, equal norms
    assert sv_ratio(np.array([[3.0, 0.0], [0.0, 1.0]])) == pytest.approx(3 / 4)
    with pytest.raises(ValueError, match="all-zero"):
        sv_ratio(np.zeros((2, 3)))


def test_sv_ratios_and_norms_per_item():
    en = np.array([[[3.0, 4.0]], [[1.0, 0.0]]])  # (n=2, L=1, d=2)
    states = {"en": en, "de": 2 * en, "ko": np.array([[[6.0, 8.0]], [[0.0, 1.0]]])}
    assert sv_ratios(states) == pytest.approx([1.0, np.sqrt(5) / (np.sqrt(5) + 1)])
    norms = hidden_norms(states)
    assert list(norms.columns) == ["lang", "item", "norm"]
    assert norms.loc[(norms.lang == "de") & (norms.item == 0), "norm"].item() == pytest.approx(10.0)
    with pytest.raises(ValueError, match="at least 2 languages"):
        sv_ratios({"en": en})
    with pytest.raises(ValueError, match=r"layer 1 out of range .* expected -1..0"):
        sv_ratios(states, layer=1)


def test_shift_summary():
    rng = np.random.default_rng(8)
    shared = rng.normal(size=(30, 2, 16))
    base = {lang: shared + 0.3 * rng.normal(size=shared.shape) for lang in ("en", "es", "ko")}
    rms = {"same": base, "scrambled": {lang: rng.normal(size=shared.shape) for lang in base}}
    out = shift_summary(base, rms, n_boot=200, seed=0)
    assert list(out.model) == ["base", "same", "scrambled"]
    assert list(out.columns) == ["model", "sv_ratio_mean", "sv_ratio_ci_low", "sv_ratio_ci_high",
                                 "sv_closest_share", "cka_last_layer_vs_base", "mean_norm"]
    # "same" equals the base on every resample: the nearest in all of them
    assert np.isnan(out.sv_closest_share.iloc[0]) and list(out.sv_closest_share.iloc[1:]) == [1.0, 0.0]
    assert (out.sv_ratio_ci_low <= out.sv_ratio_mean).all() and (out.sv_ratio_mean <= out.sv_ratio_ci_high).all()
    assert out.cka_last_layer_vs_base.iloc[1] == pytest.approx(1.0)
    assert abs(out.cka_last_layer_vs_base.iloc[2]) < 0.1
    assert out.sv_ratio_mean.iloc[0] > out.sv_ratio_mean.iloc[2]  # shared content aligns languages
    # by hand: the percentile interval over the same item resamples, and the mean L2 norm of the stacked items
    ratios = probe.sv_ratios(base)
    boot = ratios[np.random.default_rng(0).integers(0, 30, size=(200, 30))].mean(1)
    assert (out.sv_ratio_ci_low[0], out.sv_ratio_ci_high[0]) == pytest.approx(tuple(np.quantile(boot, [0.025, 0.975])))
    assert out.sv_ratio_ci_high[0] - out.sv_ratio_ci_low[0] > 0.01
    norms = [np.sqrt((rms["scrambled"][lang][i, -1] ** 2).sum()) for lang in base for i in range(30)]
    assert out.mean_norm[2] == pytest.approx(np.mean(norms))
    pd.testing.assert_frame_equal(out, shift_summary(base, rms, n_boot=200, seed=0))
    with pytest.raises(ValueError, match="RM 'x' has languages"):
        shift_summary(base, {"x": {"en": base["en"]}})


# ----------------------------------------------------------------------------- hidden states

@pytest.mark.parametrize("side", ["left", "right"])
def test_last_token_pooling_ignores_padding(side):
    model, tok = _llama(), _tokenizer(side)
    batched = hidden_states(model, tok, TEXTS, batch_size=4)
    assert batched.shape == (4, 3, 32) and batched.dtype == np.float32
    singles = np.concatenate([hidden_states(model, tok, [t], batch_size=1) for t in TEXTS])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    # "auto" means "last" for a decoder; check against the unpadded last position directly
    ids = torch.tensor([tok(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        direct = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
    np.testing.assert_allclose(batched[0, -1], direct.numpy(), atol=1e-5)


def test_wrapper_gives_the_bodys_hidden_states():
    rm = _llama(cls=LlamaForSequenceClassification)
    tok = _tokenizer("left")
    np.testing.assert_allclose(hidden_states(rm, tok, TEXTS, layers=[-1]),
                               hidden_states(rm.model, tok, TEXTS, layers=[2]), atol=1e-6)


def test_mean_pooling_excludes_padding():
    model, tok = _bert(), _tokenizer("right")
    batched = hidden_states(model, tok, TEXTS, layers=[0, -1], batch_size=4)  # "auto" is "mean" for BERT
    assert batched.shape == (4, 2, 32)
    ids = torch.tensor([tok(TEXTS[1])["input_ids"]])
    with torch.no_grad():
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
    np.testing.assert_allclose(batched[1, 1], hs[2][0].mean(0).numpy(), atol=1e-5)
    singles = np.concatenate([hidden_states(model, tok, [t], layers=[0, -1]) for t in TEXTS])
    np.testing.assert_allclose(batched, singles, atol=1e-5)
    # batches are formed by length (here [w6, w10 w11] then [w7 w8 w9, w1..w5]); rows come back in text order
    np.testing.assert_allclose(hidden_states(model, tok, TEXTS, layers=[0, -1], batch_size=2), singles, atol=1e-5)
    cls = hidden_states(model, tok, TEXTS, layers=[-1], pooling="cls")
    np.testing.assert_allclose(cls[1, 0], hs[2][0, 0].numpy(), atol=1e-5)


def test_hidden_states_errors():
    model, tok = _bert(), _tokenizer("right")
    with pytest.raises(ValueError, match=r"layer 5 out of range.*expected -3..2"):
        hidden_states(model, tok, TEXTS, layers=[5])
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        hidden_states(model, tok, TEXTS, pooling="max")
    with pytest.raises(ValueError, match="non-empty list"):
        hidden_states(model, tok, "w1 w2")
    with pytest.raises(ValueError, match=r"texts\[1\] is None; expected every text to be a string"):
        hidden_states(model, tok, ["w1", None])
    with pytest.raises(ValueError, match=r"layers = \[1\.5\]; expected 'all' or a non-empty list of integer"):
        hidden_states(model, tok, TEXTS, layers=[1.5])
    with pytest.raises(ValueError, match="padding_side = 'right'"):
        hidden_states(model, _tokenizer("left"), TEXTS, pooling="cls")
    with torch.no_grad():
        model.encoder.layer[1].output.dense.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite activations at layer 2"):
        hidden_states(model, tok, TEXTS)
    assert not model.training  # eval/train state is restored


def test_hidden_states_disk_cache(tmp_path):
    model, tok = _llama(), _tokenizer("left")
    first = hidden_states(model, tok, TEXTS, cache_dir=tmp_path)
    files = list(tmp_path.glob("hidden-*.npy"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    np.testing.assert_array_equal(np.load(files[0]), first)
    np.testing.assert_array_equal(hidden_states(model, tok, TEXTS, cache_dir=tmp_path), first)
    # a file cut short (a full disk, an interrupted copy) is computed again, not a probe that fails every time
    for cut in (200, 0):  # numpy raises ValueError on a cut header, EOFError on an empty file
        files[0].write_bytes(files[0].read_bytes()[:cut])
        np.testing.assert_array_equal(hidden_states(model, tok, TEXTS, cache_dir=tmp_path), first)
        np.testing.assert_array_equal(np.load(files[0]), first)
    hidden_states(_llama(seed=1), tok, TEXTS, cache_dir=tmp_path)  # other weights: a new entry
    hidden_states(model, tok, TEXTS[:2], cache_dir=tmp_path)  # other texts: a new entry
    assert len(list(tmp_path.glob("hidden-*.npy"))) == 3
    # a precomputed model key is the same key: a hit, no new entry
    key = probe.model_digest(model)
    np.testing.assert_array_equal(hidden_states(model, tok, TEXTS, cache_dir=tmp_path, model_key=key), first)
    assert len(list(tmp_path.glob("hidden-*.npy"))) == 3
    # a change inside the body (a LoRA merge, a retrain with frozen embeddings and norms) is another model
    with torch.no_grad():
        model.layers[0].self_attn.q_proj.weight[2, 1] += 0.25
    changed = hidden_states(model, tok, TEXTS, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("hidden-*.npy"))) == 4 and not np.array_equal(changed, first)


def test_hidden_states_cache_keys_on_the_tokenizer_files_not_their_directory(tmp_path):
    """A probe that shares one tokenizer among RMs (read from the first RM's directory) and a later probe of one
    of those RMs alone (its own directory's tokenizer, same files) hit the same cache entry."""
    from conftest import save_model, tiny_bert, word_tokenizer

    from xlrm_lib.models import load_backbone

    a = save_model(tmp_path / "a", tiny_bert(seed=0), word_tokenizer("bert"))
    b = save_model(tmp_path / "b", tiny_bert(seed=1), word_tokenizer("bert"))
    shared: dict = {}
    load_backbone(a, shared_tokenizers=shared)
    model_b, tok_from_a = load_backbone(b, shared_tokenizers=shared)
    assert tok_from_a.name_or_path == str(a)
    first = hidden_states(model_b, tok_from_a, TEXTS, cache_dir=tmp_path / "hs")
    _, tok_from_b = load_backbone(b)
    np.testing.assert_array_equal(hidden_states(model_b, tok_from_b, TEXTS, cache_dir=tmp_path / "hs"), first)
    assert len(list((tmp_path / "hs").glob("hidden-*.npy"))) == 1
    other = save_model(tmp_path / "c", tiny_bert(seed=1), word_tokenizer("bert", chat_template="{{ 1 }}"))
    hidden_states(model_b, load_backbone(other)[1], TEXTS, cache_dir=tmp_path / "hs")  # other files: new entry
    assert len(list((tmp_path / "hs").glob("hidden-*.npy"))) == 2


# ----------------------------------------------------------------------------- UMAP and figures

def test_umap_embed():
    H = np.random.default_rng(9).normal(size=(40, 8))
    first = umap_embed(H, random_state=0, n_neighbors=10)
    assert first.shape == (40, 2)
    np.testing.assert_array_equal(first, umap_embed(H, random_state=0, n_neighbors=10))
    assert umap_embed(H[:6], random_state=0).shape == (6, 2)  # n_neighbors lowered to n - 1
    with pytest.raises(ValueError, match="at least 5 points; got n=4"):
        umap_embed(H[:4])


def test_figures():
    rng = np.random.default_rng(10)
    fig = plots.cka_by_layer({"rm-en": [1.0, 0.9, 0.8], "rm-ko": [1.0, 0.7, 0.4]})
    assert [t.name for t in fig.data] == ["rm-en", "rm-ko"] and list(fig.data[0].x) == [0, 1, 2]
    assert len(plots.sv_ratio_box({"base": rng.random(10), "rm-en": rng.random(10)}).data) == 1
    states = {lang: rng.normal(size=(6, 2, 4)) for lang in ("en", "xx")}
    norms = {"base": hidden_norms(states), "rm-en": hidden_norms(states)}
    fig = plots.norm_violin(norms)
    assert {t.marker.color for t in fig.data if t.name == "en"} == {plots.LANG_COLORS["en"]}
    coords = pd.DataFrame({"x": rng.normal(size=8), "y": rng.normal(size=8), "lang": ["en", "ko"] * 4,
                           "model": ["base"] * 4 + ["rm"] * 4})
    fig = plots.umap_scatter(coords)
    assert {t.marker.color for t in fig.data if t.name == "ko"} == {plots.LANG_COLORS["ko"]}
    with pytest.raises(ValueError, match=r"missing \['model'\]"):
        plots.umap_scatter(coords.drop(columns="model"))


def test_closest_to_base_ranks_defined_values_and_keeps_order_on_ties():
    from xlrm_lib.study import closest_to_base

    summary = pd.DataFrame({"model": ["base", "ko", "en", "zh"], "sv_ratio_mean": [0.5, 0.875, 0.25, 0.75],
                            "cka_last_layer_vs_base": [1.0, np.nan, 0.5, 0.5]})
    got = closest_to_base(summary)
    # CKA: en and zh tie at 0.5 (summary order), ko's undefined CKA ranks last; sv: |0.25 - 0.5| = |0.75 - 0.5|
    assert got == {"closest_by_cka": "en", "closest_by_sv_ratio": "en", "sv_ratio_closest_share": None,
                   "rank_by_cka": ["en", "zh", "ko"], "rank_by_sv_ratio": ["en", "zh", "ko"]}
    shares = closest_to_base(summary.assign(sv_closest_share=[np.nan, 0.1, 0.3, 0.6]))
    assert shares["closest_by_sv_ratio"] == "en" and shares["sv_ratio_closest_share"] == 0.3  # a weak winner
    undefined = closest_to_base(summary.assign(cka_last_layer_vs_base=np.nan))
    assert undefined["closest_by_cka"] is None and undefined["closest_by_sv_ratio"] == "en"


def test_the_probe_reads_items_in_the_rms_format(tmp_path, monkeypatch):
    """(prompt, answer) items go through formatting.encode in the RMs' saved format, every turn kept, as the RMs
    were trained and scored (the probe fed 'last user turn + blank line + answer' with no template)."""
    from conftest import save_model, tiny_bert, word_tokenizer
    from xlrm_lib import study
    from xlrm_lib.formatting import TextFormat, encode

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    tok = word_tokenizer("bert")
    save_model(tmp_path / "base", tiny_bert(seed=0), tok)
    rm = save_model(tmp_path / "en", tiny_bert(seed=1), tok)
    TextFormat("plain", 32, "left").save(rm)
    turns = [{"role": "user", "content": "w1 w2 ?"}, {"role": "assistant", "content": "w3"},
             {"role": "user", "content": "w4 ?"}]
    items = [(turns, "good w5"), ("w6 ?", "bad w7")]
    got = study.model_states(str(rm), {"en": items}, layers=[-1], max_length=32, fmt=study.probe_format({"en": rm}))
    model, _ = study.models.load_backbone(str(rm))
    ids = encode(tok, [p for p, _ in items], [a for _, a in items], TextFormat("plain", 32, "left"))
    assert "User : w1 w2 ? Assistant : w3 User : w4 ? Assistant : good w5" in tok.decode(ids[0])  # every turn
    np.testing.assert_allclose(got["en"], hidden_states(model, tok, ids, layers=[-1]), atol=1e-6)
    other = save_model(tmp_path / "ko", tiny_bert(seed=2), tok)
    TextFormat("plain", 32, "right").save(other)
    with pytest.raises(ValueError, match="different text formats"):
        study.probe_format({"en": rm, "ko": other})
    assert study.probe_format({"hub": "org/rm"}) == TextFormat()


def test_a_hub_base_model_is_probed_at_the_commit_its_rms_were_trained_from(tmp_path):
    from xlrm_lib import study

    cards = {}
    for name, rev in (("en", "a" * 40), ("ko", "a" * 40), ("zh", None)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "xlrm_card.json").write_text(json.dumps({"key": name, "backbone_revision": rev}))
        cards[name] = str(tmp_path / name)
    assert study._trained_from(cards) == "a" * 40
    assert study._trained_from({"hub": "org/rm"}) is None  # no card: nothing to pin
    (tmp_path / "zh" / "xlrm_card.json").write_text(json.dumps({"key": "zh", "backbone_revision": "b" * 40}))
    with pytest.raises(ValueError, match="different commits of their backbone"):
        study._trained_from(cards)


def test_a_checkpoint_without_a_pooler_loads_the_same_weights_every_time(tmp_path):
    # me5-small has no pooler: transformers drew a new random one at every load, so the base model's digest, and
    # its hidden-state cache key, changed on every probe (no hit, and two more files in the cache each time)
    from conftest import save_model, word_tokenizer
    from xlrm_lib import models as xmodels

    cfg = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=64, pad_token_id=0)
    base = save_model(tmp_path / "base", BertModel(cfg, add_pooling_layer=False), word_tokenizer("bert"))
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    digests = {probe.model_digest(xmodels.load_backbone(str(base))[0]) for _ in range(2)}
    assert len(digests) == 1
    assert torch.equal(torch.rand(3), expected)  # the caller's random state is left as it was


def test_cls_pooling_on_a_decoder_is_refused():
    # position 0 of a causal model sees only itself: every text got the same vector (CKA NaN, s1/sum(s) 1.0)
    model, tok = _llama(), _tokenizer("right")
    with pytest.raises(ValueError, match=r"pooling='cls' on a decoder \(LlamaModel\): its first token sees only itself"):
        hidden_states(model, tok, TEXTS, pooling="cls")


def test_the_probe_reads_texts_no_longer_than_the_rms_were_trained_on(tmp_path, monkeypatch, caplog):
    # RMs trained at 32 tokens were probed at the probe's own 256: context no RM ever read
    from conftest import save_model, tiny_bert, word_tokenizer
    from xlrm_lib import study
    from xlrm_lib.formatting import TextFormat

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(probe, "umap_embed", lambda H, random_state=0: H[:, :2])
    tok = word_tokenizer("bert")
    base = save_model(tmp_path / "base", tiny_bert(seed=0), tok)
    rm = save_model(tmp_path / "en", tiny_bert(seed=1), tok)
    TextFormat("plain", 16, "left").save(rm)
    long = " ".join(f"w{i % 30}" for i in range(40))
    texts = {lang: [(f"w{k} ?", f"{long} w{k + i}") for i in range(5)] for lang, k in [("en", 0), ("ko", 3)]}
    with caplog.at_level("WARNING", logger="xlrm_lib.study"):
        shift = study.representation_shift(str(base), {"en": str(rm)}, texts, max_length=64)
    assert shift["text_format"]["max_length"].item() == 16 and "cut at 16 tokens" in caplog.text


# ----------------------------------------------------------------------------- added by mutation testing
def test_layerwise_cka_passes_its_options_to_the_estimator(monkeypatch):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(20, 2, 6))
    b = a @ rng.normal(size=(6, 5)) + rng.normal(size=(20, 2, 5))
    # debiased=False, exact: Kornblith's biased CKA layer by layer (not the debiased one)
    biased = [linear_cka(a[:, i], b[:, i], debiased=False) for i in range(2)]
    assert layerwise_cka(a, b, debiased=False, batch_size=None) == pytest.approx(biased, abs=1e-12)
    assert biased != pytest.approx([linear_cka(a[:, i], b[:, i], debiased=True) for i in range(2)], abs=1e-3)
    # minibatches: rows in the order of default_rng(seed).permutation, batches of 16 and the last of exactly 4
    # (a batch of 4 rows is enough for the debiased estimator: it counts)
    for seed in (0, 1):
        order = np.random.default_rng(seed).permutation(20)
        ref = MinibatchCKA()
        for rows in (order[:16], order[16:]):
            ref.update(a[rows], b[rows])
        assert layerwise_cka(a, b, batch_size=16, seed=seed) == pytest.approx(np.diag(ref.compute()), abs=1e-12)
    assert layerwise_cka(a, b, batch_size=16, seed=0) != pytest.approx(layerwise_cka(a, b, batch_size=16, seed=1))
    # "auto": the exact estimator UP TO FULL_CKA_MAX_N rows, this many included
    monkeypatch.setattr(probe, "FULL_CKA_MAX_N", 20)
    monkeypatch.setattr(probe, "CKA_BATCH", 8)
    exact = [linear_cka(a[:, i], b[:, i], debiased=True) for i in range(2)]
    assert layerwise_cka(a, b) == pytest.approx(exact, abs=1e-12)


def test_cross_lingual_cka_is_the_estimator_asked_for():
    rng = np.random.default_rng(12)
    en = rng.normal(size=(30, 1, 8))
    ko = en @ rng.normal(size=(8, 8)) + rng.normal(size=(30, 1, 8))
    debiased = linear_cka(en[:, 0], ko[:, 0], debiased=True)
    biased = linear_cka(en[:, 0], ko[:, 0], debiased=False)
    assert debiased != pytest.approx(biased, abs=1e-3)
    assert cross_lingual_cka({"en": en, "ko": ko}).loc["en", "ko"] == pytest.approx(debiased, abs=1e-12)  # default
    assert cross_lingual_cka({"en": en, "ko": ko}, debiased=False).loc["en", "ko"] == pytest.approx(biased, abs=1e-12)


def test_shift_summary_sv_ratio_mean_is_the_mean_over_items():
    # items 0 and 2 are parallel across languages (ratio 1); item 1: [1, 0], [2, 0], [0, 1] has singular values
    # sqrt(5) and 1 -> sqrt(5) / (sqrt(5) + 1). The mean of the three, not their median (1)
    en = np.array([[[3.0, 4.0]], [[1.0, 0.0]], [[0.0, 1.0]]])
    base = {"en": en, "de": 2 * en, "ko": np.array([[[6.0, 8.0]], [[0.0, 1.0]], [[0.0, 2.0]]])}
    r = np.sqrt(5) / (np.sqrt(5) + 1)
    out = shift_summary(base, {}, n_boot=50)
    assert out.loc[0, "sv_ratio_mean"] == pytest.approx((1 + r + 1) / 3)


def test_closest_to_base_by_cka_is_the_highest_cka():
    from xlrm_lib.study import closest_to_base

    summary = pd.DataFrame({"model": ["base", "en", "ko"], "sv_ratio_mean": [0.5, 0.9, 0.6],
                            "cka_last_layer_vs_base": [1.0, 0.5, 0.9]})
    got = closest_to_base(summary)
    assert got["closest_by_cka"] == "ko" and got["rank_by_cka"] == ["ko", "en"]  # 0.9 before 0.5
    assert got["closest_by_sv_ratio"] == "ko" and got["rank_by_sv_ratio"] == ["ko", "en"]  # |0.1| before |0.4|
