"""Tests for xlrm_lib.translate: cache, text protection, meta, errors, a tiny in-process hf model, real apertium."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
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
WORDS = ["<pad>", "</s>", "<unk>", "eng_Latn", "spa_Latn", "zho_Hans"] + [f"w{i}" for i in range(30)]


def _tiny_marian(path, words) -> str:
    """A randomly initialised 1-layer Marian at ``path`` with a word-level tokenizer of ``words``."""
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>",
                            unk_token="<unk>").save_pretrained(path)
    torch.manual_seed(0)
    cfg = MarianConfig(vocab_size=len(words), d_model=16, encoder_layers=1, decoder_layers=1,
                       encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                       decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
                       decoder_start_token_id=0, forced_eos_token_id=None)
    MarianMTModel(cfg).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def tiny_mt(tmp_path_factory):
    """A tiny Marian whose tokenizer knows some FLORES codes (NLLB-style)."""
    return _tiny_marian(tmp_path_factory.mktemp("tiny-mt"), WORDS)


def test_hf_backend_plumbing_and_cache(tiny_mt, tmp_path, monkeypatch):
    rows = [{"prompt": [{"role": "user", "content": "w1 w2 w3"}], "chosen": "w4 w5\n\nw6", "rejected": "w7"},
            # a random model writes much the same for any line: two lines against one keep the pair a pair
            {"prompt": [{"role": "user", "content": "w8"}], "chosen": "w9 w10\nw14", "rejected": "w11 w12 w13"}]
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
    from huggingface_hub import constants

    from xlrm_lib import hub as hub_mod

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    hub_mod.commit.cache_clear()
    ref = tmp_path / "hf" / "models--facebook--nllb-200-distilled-600M" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("a" * 40)
    hub = T.HFBackend("en", "es", model="facebook/nllb-200-distilled-600M")
    assert hub.revision == f"segments-1:commit={'a' * 40}"  # the commit the model is loaded from
    assert hub._pin() == {"revision": "a" * 40}
    assert T.HFBackend("en", "es", model="org/mt", max_new_tokens=3).revision == "segments-1:new-tokens=3:commit=None"
    assert T.HFBackend("en", "es", model="org/mt", max_segment_tokens=64).revision.startswith(
        "segments-1:segment-tokens=64")
    with pytest.raises(T.TranslationUnavailable, match="neither reachable on the hub nor in the local hub cache"):
        T.HFBackend("en", "es", model="org/mt")._pin()  # offline and never downloaded: refused at once
    hub_mod.commit.cache_clear()
    local = tmp_path / "mt"
    local.mkdir()
    (local / "model.safetensors").write_bytes(b"one")
    first = T.HFBackend("en", "es", model=str(local)).revision
    (local / "model.safetensors").write_bytes(b"three")  # re-finetuned at the same path: another translator
    assert first.startswith("segments-1:weights=") and T.HFBackend("en", "es", model=str(local)).revision != first


# ----------------------------------------------------------------------------------- hf: it must write the target
PLAIN = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(30)]  # a tokenizer without language tokens


def _no_weights(self):
    raise AssertionError("the model was loaded for a direction it cannot translate")


def test_hf_one_direction_model_is_refused_for_another_target(tiny_mt, tmp_path, monkeypatch):
    # an opus-mt-en-es asked for German wrote Spanish stored as 'de'; it is refused before anything is translated
    en_es = _tiny_marian(tmp_path / "opus-mt-en-es", PLAIN)
    assert T.can_translate("en", "es", "hf", model=en_es)
    assert not T.can_translate("en", "de", "hf", model=en_es) and not T.can_translate("en", "ko", "hf", model=en_es)
    assert not T.can_translate("en", "es", "hf")  # no model: nothing can be said to translate
    monkeypatch.setattr(T.HFBackend, "_load", _no_weights)
    with pytest.raises(T.TranslationUnavailable,
                       match=r"translates en -> es \(by its name\), not en -> de.*'Helsinki-NLP/opus-mt-en-de'"):
        T.translate_pairs(_pairs(), "de", backend="hf", model=en_es, cache_dir=tmp_path / "c", progress=False)
    assert not list((tmp_path / "c").glob("*.sqlite"))  # refused before the cache was opened
    de_es = _tiny_marian(tmp_path / "opus-mt-de-es", PLAIN)
    assert "translates from 'de' (by its name), not from 'en'" in T.why_unavailable("en", "es", "hf", model=de_es)
    unnamed = _tiny_marian(tmp_path / "my-translator", PLAIN)
    assert "cannot tell which language" in T.why_unavailable("en", "es", "hf", model=unnamed)
    # the tokenizer config's pair (a Marian tokenizer's source_lang / target_lang) is read before the name
    PreTrainedTokenizerFast.from_pretrained(unnamed, source_lang="eng", target_lang="spa").save_pretrained(unnamed)
    assert T.can_translate("en", "es", "hf", model=unnamed)
    assert "eng -> spa (by its tokenizer config" in T.why_unavailable("en", "de", "hf", model=unnamed)
    # NLLB-style: the target's FLORES token must be there (tiny_mt has eng_Latn, spa_Latn, zho_Hans)
    assert T.can_translate("en", "zh", "hf", model=tiny_mt)
    assert "FLORES language tokens ('eng_Latn') but none for 'kor_Hang'" in T.why_unavailable("en", "ko", "hf",
                                                                                               model=tiny_mt)


def test_a_multilingual_marians_macrolanguage_tokens_are_found(tmp_path):
    path = _tiny_marian(tmp_path / "opus-mt-en-mul", PLAIN + [">>lav<<", ">>ara<<", ">>uzb_Latn<<"])
    for lang, tag in (("lv", ">>lav<<"), ("ar", ">>ara<<"), ("uz", ">>uzb_Latn<<")):
        tr = T.HFBackend("en", lang, model=path)
        tr.check()
        assert tr._target == {"prefix": tag + " "}


def test_hf_multilingual_marian_gets_its_target_token(tmp_path):
    path = _tiny_marian(tmp_path / "opus-mt-en-mul", PLAIN + [">>spa<<", ">>deu<<", ">>cmn_Hans<<"])
    tr = T.HFBackend("en", "es", model=path)
    tr.check()
    assert tr._target == {"prefix": ">>spa<< "} and tr.revision.endswith(":prefix=>>spa<<")  # in the cache key
    tr._load()
    tok, net, gen = tr._loaded
    seen, generate = [], net.generate
    net.generate = lambda **kw: seen.append(kw["input_ids"][:, 0].tolist()) or generate(**kw)
    assert len(tr.translate(["w1 w2", "w3"])) == 2
    assert seen == [[tok.convert_tokens_to_ids(">>spa<<")] * 2] and gen == {}  # every line starts with >>spa<<
    zh = T.HFBackend("en", "zh", model=path)
    zh.check()
    assert zh._target == {"prefix": ">>cmn_Hans<< "}
    assert "none of which is 'ko'" in T.why_unavailable("en", "ko", "hf", model=path)
    assert not T.can_translate("en", "zh-tw", "hf", model=path)  # >>cmn_Hans<< is simplified Chinese


def _tiny_m2m(path) -> str:
    """A tiny M2M100 with a real M2M100Tokenizer (a word-level sentencepiece model trained in-process)."""
    spm = pytest.importorskip("sentencepiece")
    from transformers import M2M100Config, M2M100ForConditionalGeneration, M2M100Tokenizer

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["w1 w2 w3 w4 w5 w6"] * 5), model_writer=buf,
                                   vocab_size=8, model_type="word", minloglevel=2, bos_id=-1, eos_id=-1,
                                   unk_id=0, hard_vocab_limit=False)
    path.mkdir()
    (path / "sentencepiece.bpe.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    (path / "vocab.json").write_text(json.dumps(vocab))
    tok = M2M100Tokenizer(str(path / "vocab.json"), str(path / "sentencepiece.bpe.model"))
    tok.save_pretrained(path)
    torch.manual_seed(0)
    cfg = M2M100Config(vocab_size=max(tok.lang_token_to_id.values()) + 16, d_model=16, encoder_layers=1,
                       decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                       decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=1, eos_token_id=2,
                       bos_token_id=0, decoder_start_token_id=2)
    M2M100ForConditionalGeneration(cfg).save_pretrained(path)
    return str(path)


def test_hf_m2m100_is_told_both_languages(tmp_path):
    path = _tiny_m2m(tmp_path / "tiny-m2m")
    tr = T.HFBackend("en", "es", model=path)
    tr.check()
    tok = tr._tok
    assert tr._target == {"src_lang": "en", "forced_bos_token_id": tok.get_lang_id("es")}
    assert tok("w1 w2")["input_ids"][0] == tok.get_lang_id("en")  # the source's __en__ comes first
    tr._load()
    assert tr._loaded[2] == {"forced_bos_token_id": tok.get_lang_id("es")}  # generation starts with __es__
    assert len(tr.translate(["w1 w2"])) == 1
    assert "no token '__zh-tw__'" in T.why_unavailable("en", "zh-tw", "hf", model=path)
    # __xx__ tokens in a tokenizer that cannot put the source's first: refused
    fake = _tiny_marian(tmp_path / "fake-mm", PLAIN + ["__en__", "__es__"])
    assert "cannot be told the source language" in T.why_unavailable("en", "es", "hf", model=fake)


def test_hf_without_a_model_is_refused_when_the_grid_is_planned(tmp_path):
    from xlrm_lib import grid, notebook_checks, runner

    spec = {"run": "x", "langs": ["en"], "translated": [{"from": "en", "to": "ko", "backend": "hf"}], "train": {}}
    with pytest.raises(runner.ParamError, match="backend 'hf' needs a model, e.g. model: facebook/nllb"):
        grid.unavailable_translations(spec)
    with pytest.raises(runner.ParamError, match="backend 'hf' needs a model"):
        runner.plan(spec)
    with pytest.raises(ValueError, match="mt_backend = 'hf' needs mt_model"):
        notebook_checks._train({"translate_from": "en", "train_lang": "ko", "mt_backend": "hf", "mt_model": ""}, ".")
    notebook_checks._train({"translate_from": "en", "train_lang": "ko", "mt_backend": "hf", "mt_model": "org/mt"}, ".")
    en_es = _tiny_marian(tmp_path / "opus-mt-en-es", PLAIN)  # a model that cannot write ko: skipped, with why
    spec["translated"] = [{"from": "en", "to": t, "backend": "hf", "model": en_es} for t in ("ko", "es")]
    [(entry, why)] = grid.unavailable_translations(spec)
    assert entry["to"] == "ko" and "not en -> ko" in why


# ----------------------------------------------------------------------------------- pairs, code, sentinels, cache
class Table:
    """A backend that looks each text up (two English texts may share a translation)."""

    name, batch_size, model, direction = "table", 100, "table", "en-es"
    TABLE = {"Q?": "¿P?", "It's red.": "Es rojo.", "It is red.": "Es rojo.", "Yes.": "Sí.", "Sure.": "Seguro.",
             "Gone.": ""}

    def __init__(self, src, tgt, model=None):
        pass

    @classmethod
    def supports(cls, src, tgt):
        return True

    def translate(self, texts):
        return [self.TABLE[t] for t in texts]


def test_pairs_that_translate_alike_are_dropped_with_a_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setitem(T.BACKENDS, "table", Table)
    rows = [{"prompt": [{"role": "user", "content": "Q?"}], "chosen": c, "rejected": r}
            for c, r in [("It's red.", "It is red."), ("Yes.", "Sure."), ("Yes.", "Gone.")]]
    with caplog.at_level("WARNING"):
        out = T.translate_pairs(_pairs(rows), "es", backend="table", cache_dir=tmp_path, progress=False)
    assert out["id"] == ["r1"] and out[0]["chosen"] == "Sí." and out[0]["rejected"] == "Seguro."
    assert ("translation into 'es' (en->es, table): dropped 1 x chosen == rejected (e.g. ids ['r0'] in es); "
            "1 x empty chosen/rejected (e.g. ids ['r2'] in es)") in caplog.text
    with pytest.raises(ValueError, match="all 1 pairs translated into 'es' have chosen == rejected"):
        T.translate_pairs(_pairs(rows[:1]), "es", backend="table", cache_dir=tmp_path, progress=False)


def test_unclosed_and_tilde_fences_are_never_translated(spy, tmp_path):
    texts = ["Here:\n```python\nreturn x",                       # unclosed (a truncated answer): code to the end
             "Here:\n~~~\nreturn x\n~~~\nDone.",                  # a tilde fence
             "Then:\n  ~~~~sh\nls  -l\n  ~~~~\nOk.",               # indented up to 3, longer fence
             "Say ```x``` twice."]                                  # a closed ``` span, as before
    out = T.translate_texts(texts, Spy("en", "es"), cache_dir=tmp_path, progress=False)
    assert out == ["<Here:>\n```python\nreturn x", "<Here:>\n~~~\nreturn x\n~~~\n<Done.>",
                   "<Then:>\n  ~~~~sh\nls  -l\n  ~~~~\n<Ok.>", "<Say> ```x``` <twice.>"]
    assert not any("return" in t or "~~~" in t for call in spy.calls for t in call)


def _echo(cmd, input, **kw):  # apertium as the identity: what comes back is what the plumbing did to the text
    return subprocess.CompletedProcess(cmd, 0, stdout=input, stderr="")


def test_apertium_keeps_code_spaces_and_text_that_looks_like_a_sentinel(monkeypatch):
    monkeypatch.setattr(T.subprocess, "run", _echo)
    tr = object.__new__(T.ApertiumBackend)
    tr.modes = ["eng-spa"]
    texts = ["Call `f(a,  b)` now.",                                 # spaces inside inline code are the code's
             "The token XLRMCODEAQ is literal and `x` is code.",     # our placeholder, written as text
             "Line one.\nXLRMSEPARATOR.\nLine two.",                 # our separator line, written as text
             "Plain  gap."]                                          # a blank left by a dropped word: closed up
    assert tr.translate(texts) == texts[:3] + ["Plain gap."]
    assert T._fresh("XLRMCODE", ["a xlrmcodeZ b"]) == "XLRMCODEZZ" and T._fresh("XLRMCODE", ["ab"]) == "XLRMCODE"


def test_apertium_ignores_model_and_keys_its_cache_by_package_versions(monkeypatch, tmp_path, caplog):
    versions, sent = {"apertium": "3.8.3-1", "apertium-eng-spa": "0.8.1-2"}, []

    def fake_run(cmd, input=None, **kw):
        if cmd[0] == "dpkg-query":  # like dpkg-query: the packages it knows, exit status 1 if one is unknown
            known = [p for p in cmd[3:] if p in versions]
            return subprocess.CompletedProcess(cmd, int(len(known) < len(cmd[3:])), stderr="",
                                               stdout="".join(f"{p}={versions[p]}\n" for p in known))
        sent.append(input)
        return _echo(cmd, input)

    monkeypatch.setattr(T.subprocess, "run", fake_run)
    monkeypatch.setattr(T.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(T.ApertiumBackend, "installed_modes", staticmethod(lambda: {"eng-spa": ("en", "es")}))
    rows = [{"prompt": [{"role": "user", "content": "Is it red?"}], "chosen": "Yes.", "rejected": "No."}]
    with caplog.at_level("WARNING"):
        out = T.translate_pairs(_pairs(rows), "es", model="facebook/nllb-200-distilled-600M", cache_dir=tmp_path,
                                progress=False)
    assert "backend 'apertium' ignores model='facebook/nllb-200-distilled-600M'" in caplog.text
    meta = json.loads(out[0]["meta"])
    assert meta["mt_model"] == "apertium-eng-spa" and meta["mt_version"] == (
        "apertium=3.8.3-1,lttoolbox=unknown,apertium-lex-tools=unknown,cg3=unknown,apertium-eng-spa=0.8.1-2")
    assert [p.name for p in tmp_path.glob("*.sqlite")] == [
        T._cache_path(tmp_path, "apertium", "apertium-eng-spa", "eng-spa").name]  # no file named for the model
    n = len(sent)
    T.translate_pairs(_pairs(rows), "es", cache_dir=tmp_path, progress=False)
    assert len(sent) == n  # the same packages: every text cached
    versions["apertium-eng-spa"] = "0.8.2-1"  # an upgraded pair is another translator
    T.translate_pairs(_pairs(rows), "es", cache_dir=tmp_path, progress=False)
    assert len(sent) == n + 1
    monkeypatch.setattr(T.shutil, "which", lambda name: None if name == "dpkg-query" else f"/usr/bin/{name}")
    tr = T.ApertiumBackend("en", "es")  # no dpkg (apertium built from source): versions unknown, still a key
    assert tr.version == "apertium=unknown,lttoolbox=unknown,apertium-lex-tools=unknown,cg3=unknown," \
                         "apertium-eng-spa=unknown" and tr.revision == f"code-slots-3:{tr.version}"


def _flaky_connect(failures: int, message: str):
    """sqlite3.connect whose first ``failures`` journal-mode switches fail with ``message`` (as when two processes
    create the same cache file at once: sqlite answers one of them 'database is locked' without waiting)."""
    connect = sqlite3.connect

    class Flaky:
        def __init__(self, *args, **kw):
            self.db, self.left, self.tries = connect(*args, **kw), failures, 0

        def execute(self, sql, *args):
            if sql.startswith("PRAGMA journal_mode"):
                self.tries += 1
                if self.left:
                    self.left -= 1
                    raise sqlite3.OperationalError(message)
            return self.db.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.db, name)

        def __enter__(self):
            return self.db.__enter__()

        def __exit__(self, *exc):
            return self.db.__exit__(*exc)

    return Flaky


def test_cache_creation_waits_out_a_locked_database(tmp_path, monkeypatch):
    monkeypatch.setattr(T.sqlite3, "connect", _flaky_connect(2, "database is locked"))
    cache = T.TranslationCache(tmp_path / "a.sqlite", timeout=5)
    cache.put([("k", "s", "t")])
    assert cache.get(["k"]) == {"k": "t"} and cache.db.tries == 3
    cache.close()
    monkeypatch.setattr(T.sqlite3, "connect", _flaky_connect(10 ** 6, "database is locked"))
    with pytest.raises(sqlite3.OperationalError, match="locked"):  # a lock held past the timeout still fails
        T.TranslationCache(tmp_path / "b.sqlite", timeout=0.05)
    monkeypatch.setattr(T.sqlite3, "connect", _flaky_connect(1, "disk I/O error"))
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):  # other errors are not retried
        T.TranslationCache(tmp_path / "c.sqlite", timeout=5)


@needs_apertium
def test_apertium_real_sentinels_code_spaces_and_collapsed_pairs(tmp_path, caplog):
    tr = T.ApertiumBackend("en", "es")
    assert tr.revision.startswith("code-slots-3:apertium=") and "apertium-eng-spa=" in tr.version
    texts = ["Call `f(a,  b)` now.", "The token XLRMCODEAQ is literal and `x` is code.",
             "Line one.\nXLRMSEPARATOR.\nLine two."]
    out = tr.translate(texts)
    assert "`f(a,  b)`" in out[0] and "XLRMCODEAQ" in out[1] and "`x`" in out[1]
    assert out[2].split("\n")[1] == "XLRMSEPARATOR." and len(out[2].split("\n")) == 3
    pairs = [("It's red.", "It is red."), ("Use a list.", "Use the list.")]  # the first two read alike in Spanish
    rows = [{"prompt": [{"role": "user", "content": "Q?"}], "chosen": c, "rejected": r} for c, r in pairs]
    with caplog.at_level("WARNING"):
        es = T.translate_pairs(_pairs(rows), "es", cache_dir=tmp_path, progress=False)
    assert es["id"] == ["r1"] and "translation into 'es'" in caplog.text and "1 x chosen == rejected" in caplog.text


def test_a_translate_train_rm_trains_on_the_source_languages_rows_translated(monkeypatch):
    # training_pairs with translate_from: English rows, machine-translated (a fake apertium that upper-cases),
    # labelled with the target language; not the target's native rows
    from xlrm_lib import data, study

    def upper(cmd, input=None, **kw):
        if cmd[0] == "dpkg-query":
            return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="")
        return _echo(cmd, input.upper())

    monkeypatch.setattr(T.subprocess, "run", upper)
    monkeypatch.setattr(T.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(T.ApertiumBackend, "installed_modes", staticmethod(lambda: {"eng-spa": ("en", "es")}))
    english = data.load_pairs("embedded", langs=["en"], split="train", limit=6, seed=3)
    native = data.load_pairs("embedded", langs=["es"], split="train", limit=6, seed=3)
    out = study.training_pairs("embedded", "es", translate_from="en", limit=6, seed=3)
    assert out["id"] == english["id"] and set(out["lang"]) == {"es"}
    assert out["chosen"] == [t.upper() for t in english["chosen"]] != native["chosen"]
    assert out["rejected"] == [t.upper() for t in english["rejected"]]
    assert {json.loads(m)["translated_from"] for m in out["meta"]} == {"en"}
    assert study.training_pairs("embedded", "es", limit=6, seed=3)["chosen"] == native["chosen"]  # native: as is
