"""The embedded parallel benchmark (xlrm_lib/benchmark/items): size, balance, parallelism, split, surface cues."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from conftest import REPO
from xlrm_lib.data import BENCHMARK_DIR, CATEGORIES, EMBEDDED_LANGS, load_pairs


@pytest.fixture(scope="module")
def test_df():
    return load_pairs("embedded", split="test").to_pandas()


@pytest.fixture(scope="module")
def all_df():
    return load_pairs("embedded", split="all").to_pandas()


def test_eight_languages_and_enough_test_pairs(test_df):
    assert sorted(test_df["lang"].unique()) == sorted(EMBEDDED_LANGS) and len(EMBEDDED_LANGS) == 8
    per_lang = test_df.groupby("lang").size()
    assert (per_lang >= 80).all(), per_lang.to_dict()
    per_cat = test_df.groupby(["lang", "category"]).size().unstack()
    assert sorted(per_cat.columns) == sorted(CATEGORIES)
    assert (per_cat >= 20).all().all(), per_cat.to_dict()


def test_same_ids_in_every_language(all_df):
    ids = {lang: sorted(g["id"]) for lang, g in all_df.groupby("lang")}
    first = ids["en"]
    assert len(first) == len(set(first))  # unique within a language
    assert all(v == first for v in ids.values())
    # category and subset of an id are the same in every language
    assert (all_df.groupby("id")[["category", "subset"]].nunique() == 1).all().all()


def test_split_disjoint_and_identical_across_languages(all_df):
    test_ids = {lang: set(g["id"]) for lang, g in load_pairs("embedded", split="test").to_pandas().groupby("lang")}
    train_ids = {lang: set(g["id"]) for lang, g in load_pairs("embedded", split="train").to_pandas().groupby("lang")}
    for lang in EMBEDDED_LANGS:
        assert not test_ids[lang] & train_ids[lang]
        assert test_ids[lang] | train_ids[lang] == set(all_df.loc[all_df["lang"] == lang, "id"])
        assert test_ids[lang] == test_ids["en"] and train_ids[lang] == train_ids["en"]
    assert all(json.loads(m)["split"] in ("train", "test") for m in all_df["meta"])


def test_category_sizes_overall(all_df):
    counts = all_df[all_df["lang"] == "en"].groupby("category").size()
    assert sorted(counts.index) == sorted(CATEGORIES)
    assert (counts >= 60).all(), counts.to_dict()


def test_no_identical_pairs_and_no_empty_text(all_df):
    assert (all_df["chosen"].str.strip() != all_df["rejected"].str.strip()).all()
    for col in ("chosen", "rejected"):
        assert (all_df[col].str.strip().str.len() > 0).all()
    assert all(p and p[0]["content"].strip() for p in all_df["prompt"])


def test_length_is_not_a_cue(all_df):
    df = all_df.assign(lc=all_df["chosen"].str.len(), lr=all_df["rejected"].str.len())
    means = df.groupby(["category", "lang"])[["lc", "lr"]].mean()
    ratio = means["lr"] / means["lc"]
    bad = ratio[(ratio < 0.8) | (ratio > 1.2)]
    assert bad.empty, f"mean length rejected/chosen outside [0.8, 1.2]: {bad.to_dict()}"


SCRIPTS = {"Hangul": (0xAC00, 0xD7A3), "Han": (0x4E00, 0x9FFF), "Arabic": (0x0600, 0x06FF),
           "Cyrillic": (0x0400, 0x04FF)}


def _script_share(texts, lo, hi) -> float:
    chars = [ch for t in texts for ch in t if ch.isalpha()]
    return sum(lo <= ord(ch) <= hi for ch in chars) / max(len(chars), 1)


def test_non_latin_scripts(all_df):
    found = {}
    for lang, script in {"ko": "Hangul", "zh": "Han", "ar": "Arabic", "ru": "Cyrillic"}.items():
        texts = all_df.loc[all_df["lang"] == lang, "chosen"].tolist()
        found[script] = _script_share(texts, *SCRIPTS[script])
    assert all(share > 0.9 for share in found.values()), found  # each is written in its own script (all >= 0.978)
    # and English is written in Latin letters, not in one of those scripts
    en = all_df.loc[all_df["lang"] == "en", "chosen"].tolist()
    assert all(_script_share(en, *rng) < 0.01 for rng in SCRIPTS.values())


def test_benchmark_is_small():
    files = list(BENCHMARK_DIR.parent.rglob("*"))
    size = sum(f.stat().st_size for f in files if f.is_file())
    assert size < 5 * 1024 * 1024, f"{size / 1e6:.1f} MB"
    assert Counter(f.suffix for f in BENCHMARK_DIR.iterdir())[".jsonl"] >= 4


def test_reasoning_file_is_reproducible(tmp_path):
    out = tmp_path / "reasoning.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "build_reasoning.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == (BENCHMARK_DIR / "reasoning.jsonl").read_bytes()
