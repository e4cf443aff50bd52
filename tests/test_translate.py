"""Tests for xlrm_lib.translate: cache, text protection, meta, errors, a tiny in-process hf model, real apertium."""

from __future__ import annotations

import json
import shutil
import subprocess

import datasets
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

from xlrm_lib import translate as T
from xlrm_lib.data import FEATURES, load_pairs

needs_apertium = pytest.mark.skipif(shutil.which("apertium") is None,
                                    reason="apertium not installed (bash tools/install_apertium.sh)")


def _pairs(rows=None) -> datasets.Dataset:
    rows = rows or [
        {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Is the sky blue?"}],
         "chosen": "Yes.\n\nIt scatters blue light.", "rejected": "No.", "meta": json.dumps({"split": "train"})},
        {"prompt": [{"role": "user", "content": "Show code."}],
         "chosen": "Here:\n```python\nreturn x\n```\nDone.", "rejected": "  No.  ", "meta": ""},
    ]
    base = {"lang": "en", "category": "chat", "subset": "t", "meta": "{}"}
    return datasets.Dataset.from_list([{**base, "id": f"r{i}", **r} for i, r in enumerate(rows)], features=FEATURES)


class Spy:
    """A backend that tags texts and records what it was sent."""

    name, batch_size, calls = "spy", 2, []

    def __init__(self, src, tgt, model=None):
        self.model, self.direction = model or "spy-model", f"{src}-{tgt}"

    @classmethod
    def supports(cls, src, tgt):
        return True

    def translate(self, texts):
        Spy.calls.append(list(texts))
        return [f"<{t}>" for t in texts]


@pytest.fixture
def spy(monkeypatch):
    monkeypatch.setitem(T.BACKENDS, "spy", Spy)
    Spy.calls = []
    return Spy


def test_cache_sends_only_missing_texts(spy, tmp_path):
    ds = _pairs()
    first = T.translate_pairs(ds, "es", backend="spy", cache_dir=tmp_path, progress=False)
    sent = [t for call in spy.calls for t in call]
    assert len(sent) == len(set(sent))  # each distinct text once
    assert all(len(call) <= Spy.batch_size for call in spy.calls)
    spy.calls = []
    again = T.translate_pairs(ds, "es", backend="spy", cache_dir=tmp_path, progress=False)
    assert spy.calls == [] and again.to_list() == first.to_list()
    more = datasets.concatenate_datasets([ds, _pairs([{"prompt": [{"role": "user", "content": "Is the sky blue?"}],
                                                       "chosen": "New answer.", "rejected": "No."}])])
    T.translate_pairs(more, "es", backend="spy", cache_dir=tmp_path, progress=False)
    assert spy.calls == [["New answer."]]
    T.translate_pairs(ds, "fr", backend="spy", cache_dir=tmp_path, progress=False)  # other direction: own file
    assert len(list(tmp_path.glob("spy__*.sqlite"))) == 2


def test_rows_code_and_whitespace_are_kept(spy, tmp_path):
    out = T.translate_pairs(_pairs(), "es", backend="spy", cache_dir=tmp_path, progress=False)
    r0, r1 = out[0], out[1]
    assert r0["prompt"] == [{"role": "system", "content": "<Be brief.>"},
                            {"role": "user", "content": "<Is the sky blue?>"}]
    assert r0["chosen"] == "<Yes.\n\nIt scatters blue light.>" and r0["rejected"] == "<No.>"
    assert r1["chosen"] == "<Here:>\n```python\nreturn x\n```\n<Done.>"  # the code block is never sent
    assert r1["rejected"] == "  <No.>  "
    assert not any("```" in t or t != t.strip() for call in spy.calls for t in call)
    assert out["id"] == ["r0", "r1"] and set(out["lang"]) == {"es"}


def test_meta_records_translation(spy, tmp_path):
    out = T.translate_pairs(_pairs(), "fra_Latn", backend="spy", model="m1", cache_dir=tmp_path, progress=False)
    meta = json.loads(out[0]["meta"])
    assert meta == {"split": "train", "translated_from": "en", "mt_backend": "spy", "mt_model": "m1",
                    "mt_direction": "en-fr"}
    assert json.loads(out[1]["meta"])["mt_backend"] == "spy"  # an empty meta becomes a dict


def test_errors_name_the_bad_value(spy, tmp_path):
    with pytest.raises(ValueError, match=r"unknown translation backend 'deepl'.*'apertium'.*'hf'"):
        T.translate_pairs(_pairs(), "es", backend="deepl")
    with pytest.raises(ValueError, match="both 'en'"):
        T.translate_pairs(_pairs(), "en", backend="spy")
    with pytest.raises(ValueError, match=r"\['en'\] given with source_lang='es'"):
        T.translate_pairs(_pairs(), "fr", backend="spy", source_lang="es")
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        T.translate_pairs(_pairs(), "xx", backend="spy")
    with pytest.raises(ValueError, match="needs model="):
        T.translate_pairs(_pairs(), "es", backend="hf")


def test_missing_apertium_says_how_to_install(monkeypatch):
    monkeypatch.setattr(T.shutil, "which", lambda name: None)
    assert not T.can_translate("en", "es")
    assert "install_apertium.sh" in T.available_backends()["apertium"]
    with pytest.raises(T.TranslationUnavailable, match="install_apertium.sh.*skips"):
        T.translate_pairs(_pairs(), "es")


def test_unsupported_direction_lists_installed(monkeypatch):
    monkeypatch.setattr(T.shutil, "which", lambda name: "/usr/bin/apertium")
    monkeypatch.setattr(T.ApertiumBackend, "installed_modes",
                        staticmethod(lambda: {"eng-spa": ("en", "es"), "es-fr": ("es", "fr")}))
    assert [m["mode"] for m in T.ApertiumBackend.route("en", "fr")] == ["eng-spa", "es-fr"]  # pivot via es
    assert T.can_translate("en", "fr") and not T.can_translate("en", "pt") and not T.can_translate("fr", "en")
    with pytest.raises(T.TranslationUnavailable, match=r"'en' -> 'pt'.*\['eng-spa', 'es-fr'\].*apertium"):
        T.translate_pairs(_pairs(), "pt")


def test_apertium_plumbing_with_a_fake_command(monkeypatch):
    """Sentinel splitting, the one-text-per-call fallback and `inline code` slots, without apertium."""
    sent = []

    def fake_run(cmd, input, **kw):  # echoes its input, but loses the sentinels when given several texts
        sent.append(input)
        out = input.replace(f"\n{T._SEP}\n", " ") if input.count(T._SEP) > 2 else input
        return subprocess.CompletedProcess(cmd, 0, stdout=out, stderr="")

    monkeypatch.setattr(T.subprocess, "run", fake_run)
    tr = object.__new__(T.ApertiumBackend)
    tr.modes = ["eng-spa"]
    code = " ".join(f"`c{i}`" for i in range(12))  # 12 slots: XLRMCODEAQ ... XLRMCODEBBQ
    assert tr.translate(["a", "b\nc"]) == ["a", "b\nc"]  # two sentinels: split in one call
    assert len(sent) == 1 and sent[0] == f"{T._SEP}\na\n{T._SEP}\nb\nc\n"
    texts = ["x", "y", f"z {code}"]
    assert tr.translate(texts) == texts and len(sent) == 1 + 1 + 3  # merged: retried one text per call
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        T.translate_texts(["x"], tr, batch_size=0)
    glued = ["The type is `Option`A here.", "Use `x`Then go.", "`a``b`C"]  # capitals right after a code span
    assert tr.translate(glued) == glued
    with pytest.raises(ValueError, match="placeholder XLRMCODEBQ, but the text had 1 inline code span"):
        T._SLOT.sub(lambda m: T._unslot(["`x`"], m.group(1)), "XLRMCODEBQ")


# ----------------------------------------------------------------------------------- hf, tiny and offline
WORDS = ["<pad>", "</s>", "<unk>", "eng_Latn", "spa_Latn"] + [f"w{i}" for i in range(30)]


@pytest.fixture(scope="module")
def tiny_mt(tmp_path_factory):
    """A randomly initialised 1-layer Marian with a word-level tokenizer that knows FLORES codes (NLLB-style)."""
    path = tmp_path_factory.mktemp("tiny-mt")
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    cfg = MarianConfig(vocab_size=len(WORDS), d_model=16, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                       decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                       decoder_start_token_id=0, forced_eos_token_id=None)
    MarianMTModel(cfg).save_pretrained(path)
    return str(path)


def test_hf_backend_plumbing_and_cache(tiny_mt, tmp_path, monkeypatch):
    rows = [{"prompt": [{"role": "user", "content": "w1 w2 w3"}], "chosen": "w4 w5\n\nw6", "rejected": "w7"},
            {"prompt": [{"role": "user", "content": "w8"}], "chosen": "w9 w10", "rejected": "w11 w12 w13"}]
    out = T.translate_pairs(_pairs(rows), "es", backend="hf", model=tiny_mt, cache_dir=tmp_path, progress=False)
    assert len(out) == 2 and out["id"] == ["r0", "r1"]
    texts = [out[0]["prompt"][0]["content"], out[0]["chosen"], out[0]["rejected"], out[1]["chosen"]]
    # NLLB-style plumbing: the target's FLORES token is forced first; each line is translated on its own
    assert all(line.startswith("spa_Latn") for t in texts for line in t.split("\n") if line)
    assert out[0]["chosen"].split("\n")[1] == "" and out[0]["chosen"].count("\n") == 2
    assert json.loads(out[0]["meta"])["mt_direction"] == "eng_Latn-spa_Latn"

    def no_model(self):
        raise AssertionError("the model was loaded although every text is cached")

    monkeypatch.setattr(T.HFBackend, "_load", no_model)
    again = T.translate_pairs(_pairs(rows), "es", backend="hf", model=tiny_mt, cache_dir=tmp_path, progress=False)
    assert again.to_list() == out.to_list()


def test_hf_backend_translates_a_long_line_in_runs_of_sentences(tiny_mt, tmp_path):
    # a sentence-level model loses sentences of a long paragraph (and cuts it at 512 tokens): each run of whole
    # sentences within max_segment_tokens is translated on its own, and the runs are joined with spaces
    tr = T.HFBackend("en", "es", model=tiny_mt, max_segment_tokens=2)
    out = T.translate_texts(["w1 w2. w3 w4. w5\n\nw6 w7"], tr, cache_dir=tmp_path, progress=False)[0]
    first, blank, last = out.split("\n")
    assert first.count("spa_Latn") == 3 and blank == "" and last.count("spa_Latn") == 1
    assert T.segments("a b. c d! e", lambda t: len(t.split()), 2) == ["a b.", "c d!", "e"]
    assert T.segments("a b. c", lambda t: len(t.split()), 3) == ["a b. c"]  # short enough: one run
    assert T.segments("一二。三四。", len, 3) == ["一二。", "三四。"]  # no space after a CJK full stop
    assert T.segments("一二。三四。五。", len, 6) == ["一二。三四。", "五。"]  # a run keeps its sentences' gaps
    assert T.segments("a b.  c d! e", lambda t: len(t.split()), 4) == ["a b.  c d!", "e"]


def test_hf_runs_translated_into_chinese_are_joined_without_spaces(tiny_mt, tmp_path):
    line = "w1 w2. w3 w4. w5"
    runs = T.segments(line, lambda t: len(t.split()), 2)
    assert runs == ["w1 w2.", "w3 w4.", "w5"]
    for tgt, joiner in (("zh", ""), ("es", " ")):
        tr = T.HFBackend("en", tgt, model=tiny_mt, max_segment_tokens=2)
        out = T.translate_texts([line], tr, cache_dir=tmp_path, progress=False)[0]
        assert out == joiner.join(tr.translate(runs))  # the same runs in the same batch


# ----------------------------------------------------------------------------------- real apertium
@needs_apertium
def test_apertium_en_es(tmp_path):
    tr = T.ApertiumBackend("en", "es")
    assert tr.direction == "eng-spa" and tr.model == "apertium-eng-spa"
    assert tr.translate(["The house is red."]) == ["La casa es roja."]
    # texts in one call do not bleed into each other; newlines and `inline code` survive
    assert tr.translate(["The big", "dog eats"]) == ["El grande", "El perro come"]  # not "El perro", "grande come"
    assert tr.translate(["dog eats"]) == ["El perro come"]  # the same alone as in a batch
    assert tr.translate(["Use `sort(xs)` here.\nThe house is red."]) == ["Uso `sort(xs)` aquí.\nLa casa es roja."]
    ds = load_pairs("embedded", langs=["en"], split="test").select(range(6))
    out = T.translate_pairs(ds, "es", cache_dir=tmp_path, progress=False)
    assert out["id"] == ds["id"] and set(out["lang"]) == {"es"}
    for a, b in zip(ds, out):
        assert b["chosen"] != a["chosen"] and b["rejected"] != a["rejected"] and "  " not in b["chosen"]
    assert any(w in " ".join(out["chosen"]).split() for w in ("el", "la", "los", "las"))


@needs_apertium
def test_apertium_pivot_en_fr(tmp_path):
    if not T.can_translate("en", "fr"):
        pytest.skip("apertium-fr-es not installed")
    rows = [{"prompt": [{"role": "user", "content": "The house is red."}], "chosen": "Yes.", "rejected": "No."}]
    out = T.translate_pairs(_pairs(rows), "fr", cache_dir=tmp_path, progress=False)
    assert out[0]["prompt"][0]["content"] == "La maison est rouge."
    assert json.loads(out[0]["meta"])["mt_direction"] == "eng-spa+es-fr"


def test_hf_translation_cache_key_covers_what_changes_the_output(tmp_path, monkeypatch):
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    hub = T.HFBackend("en", "es", model="facebook/nllb-200-distilled-600M")
    assert hub.revision == "segments-1"  # default settings: the keys of the caches already built
    assert T.HFBackend("en", "es", model="org/mt", max_new_tokens=3).revision == "segments-1:new-tokens=3"
    assert T.HFBackend("en", "es", model="org/mt", max_segment_tokens=64).revision == "segments-1:segment-tokens=64"
    local = tmp_path / "mt"
    local.mkdir()
    (local / "model.safetensors").write_bytes(b"one")
    first = T.HFBackend("en", "es", model=str(local)).revision
    (local / "model.safetensors").write_bytes(b"three")  # re-finetuned at the same path: another translator
    assert first.startswith("segments-1:weights=") and T.HFBackend("en", "es", model=str(local)).revision != first
