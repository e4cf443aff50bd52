"""Translate-train: machine-translate English preference pairs into a target language, with a disk cache.

The paper's target-language reward models are trained on English preference data machine-translated into the
target. :func:`translate_pairs` takes canonical pairs (see :mod:`xlrm_lib.data`), translates every prompt turn,
``chosen`` and ``rejected``, and returns canonical pairs in the target language (``id`` kept, ``meta`` records
``translated_from``, ``mt_backend``, ``mt_model``, ``mt_direction``). Two backends:

- ``"apertium"``  rule-based Debian MT, offline (``bash tools/install_apertium.sh``). Installed directions are
  discovered with ``apertium -l``; a missing direct pair is bridged through installed ones (en->fr and en->pt
  go through es). Quality is literal: label such data as machine-translated.
  ``meta`` records the installed Debian package versions (``mt_version``); they are part of the cache key.
- ``"hf"``  a transformers seq2seq translation model on a machine with the hub; ``model=`` names it. It must
  be able to write the target, else :class:`TranslationUnavailable` is raised before anything is translated:
  NLLB (FLORES language tokens), M2M100 (``__xx__`` tokens), a multilingual Marian (``>>xx<<`` target tokens),
  or a one-direction Marian whose tokenizer config or name says the pair (``Helsinki-NLP/opus-mt-en-es``).

Fenced code blocks (````` or ``~~~``; an unclosed fence runs to the end of the text) are never translated (a
rule-based MT turns ``return`` into ``regreso``); indented code blocks are translated (see ``_CODE``). Pairs
whose chosen and rejected answers come out the same (or empty) are dropped with a warning. Translations are
cached in one sqlite file per (backend, model, direction) under ``xlrm_lib.store.cache_dir("translations")``;
only texts missing from the cache reach the backend, so a rerun or a resumed run is free.

>>> from xlrm_lib.data import load_pairs
>>> es = translate_pairs(load_pairs("embedded", langs=["en"], split="train"), "es")   # doctest: +SKIP
>>> can_translate("en", "ko")                                                          # doctest: +SKIP
False
"""

from __future__ import annotations

import functools
import json
import logging
import re
import shutil
import sqlite3
import subprocess
import time
from collections import deque
from pathlib import Path

import datasets

from .data import FEATURES, check_rows
from .langs import ISO3_CODES, LANGUAGES, NLLB_TOKEN, flores, normalize_lang
from .store import cache_dir as _cache_root, fingerprint

log = logging.getLogger(__name__)

# apertium names languages by ISO 639-3 (newer pairs) or 639-1 (older pairs: es-pt, fr-es)
ISO3 = {"en": "eng", "es": "spa", "ca": "cat", "pt": "por", "fr": "fra", "gl": "glg", "it": "ita", "de": "deu"}
# Debian package holding each pair, for "install this" messages and the meta record
APT_PACKAGES = {frozenset({"en", "es"}): "apertium-eng-spa", frozenset({"en", "ca"}): "apertium-eng-cat",
                frozenset({"es", "pt"}): "apertium-es-pt", frozenset({"es", "fr"}): "apertium-fr-es"}
INSTALL_HINT = ("install it with `bash tools/install_apertium.sh` (or `apt-get install apertium apertium-eng-spa "
                "apertium-eng-cat apertium-es-pt apertium-fr-es`); without it the grid skips translate-train RMs")
# Sentinels are unknown words that apertium passes through. A text that holds one already gets a longer one
# (XLRMCODEZ..., XLRMSEPARATORZ.), see _fresh: its own words are never taken for ours.
_SEP_WORD, _CODE_WORD = "XLRMSEPARATOR", "XLRMCODE"
_SEP = _SEP_WORD + "."  # an unknown word and a full stop on their own line: apertium passes them through
# Fenced code: a closed ``` span anywhere (as before), an unclosed ``` fence opening a line (a truncated answer:
# code to the end), a ~~~ fence opening a line up to its closing ~~~ line or the end. Indented (4-space) code
# blocks are not protected: in chat answers the same indentation marks nested list items and continued
# paragraphs, which must be translated, and telling them apart needs a Markdown parser.
_CODE = re.compile(r"(```.*?```|^[ ]{0,3}```.*|^[ ]{0,3}~~~.*?(?:\n[ ]{0,3}~~~+[ \t]*(?=\n|\Z)|\Z))",
                   re.DOTALL | re.MULTILINE)
_GAP = re.compile(r"(?<=\S) {2,}(?=\S)")
_INLINE = re.compile(r"`[^`\n]+`")


def _slot_pattern(word: str = _CODE_WORD) -> re.Pattern:
    # a placeholder ends in Q, which no index letter (A-J) is: capitals glued to the span ("`Option`A") stay text
    return re.compile(re.escape(word) + r"([A-J]+)Q")


_SLOT = _slot_pattern()


def _fresh(word: str, texts: list[str]) -> str:
    """``word``, or ``word`` + Z, ZZ, ...: the first that no text holds (case-insensitively), so a text that
    already contains a sentinel (``XLRMCODEAQ`` written literally) keeps it as text."""
    while any(word.lower() in t.lower() for t in texts):
        word += "Z"
    return word


def _slot(spans: list[str], span: str, word: str = _CODE_WORD) -> str:
    """Remember ``span``; its placeholder spells the index in letters (apertium splits words at digits)."""
    spans.append(span)
    return word + "".join(chr(65 + int(d)) for d in str(len(spans) - 1)) + "Q"  # 12 -> XLRMCODEBCQ


def _unslot(spans: list[str], letters: str, word: str = _CODE_WORD) -> str:
    i = int("".join(str(ord(c) - 65) for c in letters))
    if i >= len(spans):
        raise ValueError(f"apertium returned the code placeholder {word}{letters}Q, but the text had "
                         f"{len(spans)} inline code span(s): {spans!r}")
    return spans[i]


def _package_versions(packages: list[str]) -> str:
    """``"apertium=3.8.3-1,apertium-eng-spa=0.8.1-2"``: the installed Debian versions, ``unknown`` for a package
    dpkg does not have (or everywhere, without ``dpkg-query``: apertium built from source)."""
    found = {}
    if shutil.which("dpkg-query") is not None:
        res = subprocess.run(["dpkg-query", "-W", "-f=${Package}=${Version}\n", *packages], capture_output=True,
                             text=True, check=False)  # exit status 1 when some package is unknown: keep the rest
        found = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    return ",".join(f"{p}={found.get(p) or 'unknown'}" for p in packages)


class TranslationUnavailable(RuntimeError):
    """The backend or the direction is not available here; the message says what to install."""


# ----------------------------------------------------------------------------------- backends
class ApertiumBackend:
    """``apertium -u <mode>`` through a pipe; many texts per call, separated by a sentinel line."""

    name = "apertium"
    batch_size = 1000  # texts per subprocess call: each call starts ~10 processes (~0.3 s)
    # Part of the cache key, with the installed package versions. 2: placeholders end in Q (capitals glued to code
    # were eaten); 3: spaces inside inline code kept, texts holding a sentinel word kept, package versions.
    REVISION = "code-slots-3"
    ENGINE = ["apertium", "lttoolbox", "apertium-lex-tools", "cg3"]  # Debian packages every pair runs through

    def __init__(self, src: str, tgt: str, model: str | None = None):
        path = self.route(src, tgt)
        if isinstance(path, str):
            raise TranslationUnavailable(path)
        hops = [(m["from"], m["to"]) for m in path]
        self.modes = [m["mode"] for m in path]
        self.direction = "+".join(self.modes)
        packages = [APT_PACKAGES.get(frozenset(h), "apertium") for h in hops]
        self.model = "+".join(packages)  # what translates is the installed pairs, whatever model= says
        if model:
            log.warning("backend 'apertium' ignores model=%r; the translations are %s's", model, self.model)
        self.version = _package_versions(list(dict.fromkeys(self.ENGINE + packages)))
        self.revision = f"{self.REVISION}:{self.version}"

    @staticmethod
    def installed_modes() -> dict[str, tuple[str, str]]:
        """Installed plain modes (variants like ``es-pt_BR`` left out) -> (source, target) short codes."""
        if shutil.which("apertium") is None:
            return {}
        out = subprocess.run(["apertium", "-l"], capture_output=True, text=True, check=False).stdout
        codes = {**{c: c for c in ISO3}, **{v: k for k, v in ISO3.items()}}
        modes = {}
        for mode in out.split():
            parts = mode.split("-")
            if len(parts) == 2 and all(p in codes for p in parts):
                modes[mode] = (codes[parts[0]], codes[parts[1]])
        return modes

    @classmethod
    def route(cls, src: str, tgt: str) -> list[dict] | str:
        """Shortest chain of installed modes from ``src`` to ``tgt``, or the reason there is none."""
        if shutil.which("apertium") is None:
            return f"the `apertium` command is not installed; {INSTALL_HINT}"
        modes = cls.installed_modes()
        seen, queue = {src: []}, deque([src])  # breadth first: a direct pair beats a pivot
        while queue:
            lang = queue.popleft()
            for mode, (a, b) in sorted(modes.items()):
                if a == lang and b not in seen:
                    seen[b] = seen[lang] + [{"mode": mode, "from": a, "to": b}]
                    queue.append(b)
        if tgt in seen and seen[tgt]:
            return seen[tgt]
        pkg = APT_PACKAGES.get(frozenset({src, tgt}), f"an apertium pair for {src}-{tgt} (apt-cache search apertium)")
        return (f"apertium cannot translate {src!r} -> {tgt!r}: installed directions are {sorted(modes)}; "
                f"install {pkg}")

    @classmethod
    def unavailable(cls, src: str, tgt: str, model: str | None = None) -> str | None:
        """Why ``src`` -> ``tgt`` cannot be translated here, or None (``model`` is ignored)."""
        path = cls.route(src, tgt)
        return path if isinstance(path, str) else None

    def translate(self, texts: list[str]) -> list[str]:
        """One translation per text; texts may hold newlines and `inline code` (kept verbatim)."""
        # `inline code` becomes an unknown word (XLRMCODEB) that apertium carries along, then goes back in
        words = [_fresh(_CODE_WORD, [t]) for t in texts]
        spans: list[list[str]] = [[] for _ in texts]
        out = [_INLINE.sub(lambda m, s=s, w=w: _slot(s, m.group(0), w), t) for t, s, w in zip(texts, spans, words)]
        for mode in self.modes:  # a pivot is two passes; the sentinel lines survive both
            out = self._run(mode, out)
        # words apertium drops (subject pronouns, articles) leave their blanks behind: "porque  refleja", and a
        # dropped first word ("It returns" -> "regresa") leaves the sentence without its capital. Blanks are
        # closed up before the code goes back in: the spaces inside `f(a,  b)` are the code's own.
        out = [_GAP.sub(" ", t).strip() for t in out]
        out = [_slot_pattern(w).sub(lambda m, s=s, w=w: _unslot(s, m.group(1), w), t)
               for t, s, w in zip(out, spans, words)]
        return [t[:1].upper() + t[1:] if s[:1].isupper() else t for s, t in zip(texts, out)]

    def _run(self, mode: str, texts: list[str]) -> list[str]:
        # Apertium keeps lines but its rules reorder words across them ("The big\ndog" -> "El perro\ngrande");
        # a sentinel line before every text stops that, so one text maps to one text, and gives every text the
        # same left context (a sentence end), so its translation does not depend on the batch it lands in.
        sep = _fresh(_SEP_WORD, texts) + "."  # a text holding the sentinel line gets a longer one
        joined = "".join(f"{sep}\n{t}\n" for t in texts)
        res = subprocess.run(["apertium", "-u", mode], input=joined, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"`apertium -u {mode}` failed ({res.returncode}): {res.stderr.strip()[:500]}")
        parts = ("\n" + res.stdout).split(f"\n{sep}\n")[1:]
        if len(parts) == len(texts):
            return [p[:-1] if p.endswith("\n") else p for p in parts]
        if len(texts) == 1:  # the sentinel itself was changed: nothing to split, take the whole output
            return [res.stdout.replace(sep, "").strip()]
        log.warning("apertium %s merged texts in a batch of %d; retrying one text per call", mode, len(texts))
        return [self._run(mode, [t])[0] for t in texts]


_SENTENCE_END = re.compile(r"((?<=[.!?;:])\s+|(?<=[。！？；]))")  # the gap after a sentence: spaces, or none (CJK)
UNSPACED = {"zh", "zh-tw", "yue", "ja"}  # languages whose sentences follow each other without a space


def segments(line: str, n_tokens, max_tokens: int) -> list[str]:
    """``line`` cut at sentence ends into runs of whole sentences of at most ``max_tokens`` tokens each (as
    ``n_tokens`` counts them); a sentence longer than that is a run of its own. Within a run the sentences keep
    the gaps they had; joined with the gaps at the cuts, the runs give the line back.

    >>> segments("One two. Three four. Five.", lambda s: len(s.split()), 4)
    ['One two. Three four.', 'Five.']
    """
    if n_tokens(line) <= max_tokens:
        return [line]
    pieces = _SENTENCE_END.split(line)  # sentence, gap, sentence, gap, ..., sentence
    out: list[str] = []
    gap = ""
    for sentence, after in zip(pieces[0::2], pieces[1::2] + [""]):
        if not sentence:
            continue
        if out and n_tokens(out[-1] + gap + sentence) <= max_tokens:
            out[-1] += gap + sentence
        else:
            out.append(sentence)
        gap = after
    return out


_OPUS_TAG = re.compile(r">>(.+)<<")  # a multilingual Marian's target token, e.g. >>spa<< or >>cmn_Hans<<
_PAIR_NAME = re.compile(r"([A-Za-z]+(?:_[A-Za-z]+)?)-([A-Za-z]+(?:_[A-Za-z]+)?)$")  # opus-mt-en-es -> en, es


@functools.lru_cache(maxsize=None)
def _spellings(lang: str) -> frozenset[str]:
    """How translation models spell a language: short code, FLORES code and its ISO 639-3 part (opus ``spa``);
    for Chinese its script instead (``zho``/``zh`` alone does not say which), with opus' ``cmn_Hans``."""
    fl = flores(lang)
    iso3, script = fl.split("_")
    names = {lang, fl} | ({f"cmn_{script}"} if lang.startswith("zh") else {iso3})
    if not lang.startswith("zh"):  # and its macrolanguage's code (opus-mt writes >>lav<<, >>ara<<, >>swa<<)
        names |= {code for code, short in ISO3_CODES.items() if short == lang}
        names |= {f"{code}_{script}" for code in set(names) if len(code) == 3}
    return frozenset(n.lower() for n in names)


def _as_lang(code: str) -> str | None:
    """Our short code of a model's language code (``es``, ``spa``, ``spa_Latn``), or None (a group: ``mul``)."""
    return next((lang for lang in LANGUAGES if code.lower() in _spellings(lang)), None)


def _flores_token(tok, lang: str) -> str:
    """A language's FLORES token in ``tok``: its FLORES-200 code, or NLLB's own spelling (Santali: sat_Beng)."""
    fl = flores(lang)
    alias = NLLB_TOKEN.get(fl)
    return alias if alias and not _known_token(tok, fl) and _known_token(tok, alias) else fl


def _known_token(tok, token: str) -> bool:
    i = tok.convert_tokens_to_ids(token)
    return i is not None and i != tok.unk_token_id


def _hf_target(tok, model: str, src: str, tgt: str) -> dict | str:
    """How to make ``model`` translate ``src`` -> ``tgt``: ``{"src_lang", "forced_bos_token_id", "prefix"}`` (each
    optional), or why it cannot. A model that is not told the target writes whatever it was trained to write, which
    would be stored as ``tgt``."""
    use = (f"use a model that writes {tgt!r}: a multilingual one such as 'facebook/nllb-200-distilled-600M', or "
           f"a one-direction Marian such as 'Helsinki-NLP/opus-mt-{src}-{tgt}'")
    # NLLB: FLORES codes are tokens; the tokenizer puts the source's first, generation is forced to the target's
    fl_src, fl_tgt = (_flores_token(tok, lang) for lang in (src, tgt))
    if _known_token(tok, fl_tgt):
        if not _known_token(tok, fl_src):
            return (f"hf model {model!r} has the target token {fl_tgt!r} but not the source's "
                    f"{fl_src!r}: it cannot be told the text is in {src!r}; {use}")
        return {"src_lang": fl_src, "forced_bos_token_id": tok.convert_tokens_to_ids(fl_tgt)}
    if _known_token(tok, fl_src):
        return f"hf model {model!r} has FLORES language tokens ({fl_src!r}) but none for {fl_tgt!r}; {use}"
    # M2M100: __xx__ tokens, set the same way through its tokenizer's src_lang
    if hasattr(tok, "get_lang_id") or _known_token(tok, f"__{tgt}__"):
        missing = [f"__{c}__" for c in (src, tgt) if not _known_token(tok, f"__{c}__")]
        if missing:
            return f"hf model {model!r} (M2M100-style language tokens) has no token {missing[0]!r}; {use}"
        if not isinstance(getattr(type(tok), "src_lang", None), property):
            return (f"hf model {model!r} has M2M100-style language tokens, but its tokenizer "
                    f"({type(tok).__name__}) cannot be told the source language (no src_lang); {use}")
        return {"src_lang": src, "forced_bos_token_id": tok.convert_tokens_to_ids(f"__{tgt}__")}
    # a Marian tokenizer config says its pair (MarianTokenizer keeps it as attributes, others in init_kwargs)
    declared = [getattr(tok, k, None) or getattr(tok, "init_kwargs", {}).get(k) for k in ("source_lang", "target_lang")]
    if all(declared):
        pair, where = tuple(map(str, declared)), "tokenizer config (source_lang, target_lang)"
    else:
        m = _PAIR_NAME.search(Path(model.rstrip("/")).name)
        # a name says a pair only if it ends in a language ('my-translator': 'my' is Burmese, 'translator' none)
        pair, where = (m.groups() if m and _as_lang(m.group(2)) else None), "name"
    if pair and _as_lang(pair[0]) not in (None, src):  # None: a group of source languages (mul, ROMANCE)
        return (f"hf model {model!r} translates from {pair[0]!r} (by its {where}), not from {src!r}; {use}")
    # a multilingual Marian: the target is a >>xx<< token in front of the source text
    tags = {m.group(1).lower(): t for t in tok.get_vocab() if (m := _OPUS_TAG.fullmatch(t))}
    if tags:
        tag = next((tags[n] for n in sorted(_spellings(tgt)) if n in tags), None)
        if tag is None:
            return (f"hf model {model!r} writes the languages of its target tokens {sorted(tags.values())[:20]}, "
                    f"none of which is {tgt!r}; {use}")
        return {"prefix": tag + " "}
    # a one-direction model: its tokenizer config or its name must say it writes the target
    if pair is None or _as_lang(pair[1]) is None:
        return (f"cannot tell which language hf model {model!r} writes: it has no language tokens, and neither "
                "its tokenizer config (source_lang, target_lang) nor its name (ending in -<src>-<tgt>, like "
                f"opus-mt-{src}-{tgt}) says; {use}")
    if _as_lang(pair[1]) != tgt:
        return (f"hf model {model!r} translates {pair[0]} -> {pair[1]} (by its {where}), not {src} -> {tgt}: its "
                f"output would be stored as {tgt!r}; {use}")
    return {}


class HFBackend:
    """A transformers seq2seq translation model (NLLB with FLORES codes, M2M100, or a Marian opus-mt model).

    Such models translate sentences: a long paragraph loses sentences or is cut at 512 tokens. So each line is
    translated in runs of whole sentences of at most ``max_segment_tokens`` tokens (:func:`segments`), and a run
    still over 512 tokens (one very long sentence) is counted in a warning. :meth:`check` (called before any
    text is translated) refuses a model that cannot be made to write the target language.
    """

    name = "hf"
    batch_size = 16  # lines per generate() call
    max_input_tokens = 512

    def __init__(self, src: str, tgt: str, model: str | None = None, max_new_tokens: int | None = None,
                 max_segment_tokens: int = 128):
        if not model:
            raise ValueError("backend 'hf' needs model=..., e.g. 'facebook/nllb-200-distilled-600M' or "
                             f"'Helsinki-NLP/opus-mt-{src}-{tgt}' (or a local directory)")
        self.src, self.tgt, self.model, self.max_new_tokens = src, tgt, str(model), max_new_tokens
        self.max_segment_tokens = int(max_segment_tokens)
        self.direction = f"{flores(src)}-{flores(tgt)}"
        self._tok, self._target = None, None  # set by check(): the tokenizer, and how the target is chosen
        self._loaded = None  # loaded on the first cache miss: a fully cached run never touches the weights

    @property
    def revision(self) -> str:
        """Part of the translation cache's key: how texts are cut before the model sees them ("segments-1"),
        plus whatever else changes the output: non-default lengths, a hub model's commit, and a local model
        directory's weights (a re-finetuned model at the same path is another translator)."""
        parts = ["segments-1"]
        if self.max_segment_tokens != 128:
            parts.append(f"segment-tokens={self.max_segment_tokens}")
        if self.max_new_tokens is not None:
            parts.append(f"new-tokens={int(self.max_new_tokens)}")
        local = Path(self.model).expanduser()
        if local.is_dir():
            from .store import file_digest_memo

            files = sorted(local.glob("*.safetensors")) or sorted(local.glob("*.bin"))
            parts.append("weights=" + ",".join(file_digest_memo(f) for f in files))
        else:  # a hub model: the commit it is loaded from (see _pin)
            from . import hub

            parts.append(f"commit={hub.commit(self.model)}")
        if self._target and self._target.get("prefix"):  # a >>xx<< prefix (known after check()) changes the output
            parts.append("prefix=" + self._target["prefix"].strip())
        return ":".join(parts)

    @classmethod
    def unavailable(cls, src: str, tgt: str, model: str | None = None) -> str | None:
        """Why ``model`` cannot translate ``src`` -> ``tgt`` here, or None; loads its tokenizer (not its weights)."""
        if why := _hf_reason():
            return why
        if src == tgt:
            return f"source and target language are both {src!r}"
        if not model:
            return "backend 'hf' needs model=..., e.g. 'facebook/nllb-200-distilled-600M'"
        try:
            cls(src, tgt, model=model).check()
        except TranslationUnavailable as e:
            return str(e)
        return None

    def check(self) -> None:
        """Load the tokenizer and raise :class:`TranslationUnavailable` unless the model can be made to write the
        target language (see :func:`_hf_target`); remembers how (a forced first token or a >>xx<< prefix)."""
        if self._target is not None:
            return
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(self.model, **self._pin())
        except (OSError, ValueError) as e:
            raise TranslationUnavailable(f"cannot load the tokenizer of hf model {self.model!r}: {e}") from e
        how = _hf_target(tok, self.model, self.src, self.tgt)
        if isinstance(how, str):
            raise TranslationUnavailable(how)
        if how.get("src_lang"):
            tok.src_lang = how["src_lang"]  # NLLB / M2M100 tokenizers put the source's language token first
        self._tok, self._target = tok, how

    def _pin(self) -> dict:
        """``revision=`` the commit a hub model's main branch points at (:mod:`xlrm_lib.hub`): tokenizer and weights
        come from one commit, which keys the cache, and a cached commit loads offline without minutes of
        retries. Refuses at once a hub model that is neither reachable nor cached."""
        from . import hub

        if Path(self.model).expanduser().is_dir():
            return {}
        commit = hub.commit(self.model)
        if commit is None:
            raise TranslationUnavailable(f"hf model {self.model!r} is neither reachable on the hub nor in the local "
                                         "hub cache; download it on a machine with internet, or give a local "
                                         "directory")
        return {"revision": commit}

    def _load(self):
        import torch
        from transformers import AutoModelForSeq2SeqLM

        self.check()
        net = AutoModelForSeq2SeqLM.from_pretrained(self.model, **self._pin()).eval()
        net.to("cuda" if torch.cuda.is_available() else "cpu")
        gen = {k: v for k, v in self._target.items() if k == "forced_bos_token_id"}
        self._loaded = (self._tok, net, gen)

    def translate(self, texts: list[str]) -> list[str]:
        """One translation per text, generated line by line in batches of ``batch_size`` lines."""
        import torch

        if self._loaded is None:
            self._load()
        tok, net, gen = self._loaded
        # sentence-level models translate line by line, a long line in runs of sentences; blank lines stay blank
        n_tokens = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
        cut = {ln: segments(ln, n_tokens, self.max_segment_tokens)
               for t in texts for ln in t.split("\n") if ln.strip()}
        todo = sorted({seg for segs in cut.values() for seg in segs}, key=len)  # similar lengths pad less
        too_long = sum(n_tokens(seg) > self.max_input_tokens - 2 for seg in todo if len(seg) > self.max_input_tokens)
        if too_long:
            log.warning("%d sentence(s) over %d tokens: the model sees only their first %d tokens", too_long,
                        self.max_input_tokens - 2, self.max_input_tokens)
        done = {}
        prefix = self._target.get("prefix", "")  # a multilingual Marian's >>xx<< target token
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            enc = tok([prefix + seg for seg in chunk], return_tensors="pt", padding=True, truncation=True,
                      max_length=self.max_input_tokens).to(net.device)
            with torch.no_grad():
                # a translation is about as long as its source: bound generation by it (a default cap of
                # a few hundred tokens lets a degenerate model loop for minutes)
                limit = self.max_new_tokens or 2 * enc["input_ids"].shape[1] + 16
                ids = net.generate(**enc, **gen, max_new_tokens=limit)
            done.update(zip(chunk, tok.batch_decode(ids, skip_special_tokens=True)))
        joiner = "" if normalize_lang(self.tgt) in UNSPACED else " "  # between the translated runs of a line
        return ["\n".join(joiner.join(done[seg] for seg in cut[ln]) if ln in cut else ln for ln in t.split("\n"))
                for t in texts]


BACKENDS = {"apertium": ApertiumBackend, "hf": HFBackend}


def _hf_reason() -> str | None:
    try:
        import transformers  # noqa: F401
    except ImportError as e:
        return f"transformers is not importable ({e})"
    return None


def _backend_class(backend: str):
    if backend not in BACKENDS:
        raise ValueError(f"unknown translation backend {backend!r}; expected one of {sorted(BACKENDS)}")
    return BACKENDS[backend]


def available_backends() -> dict[str, str]:
    """Backend name -> ``"ok"`` or why it cannot run here."""
    if shutil.which("apertium") is None:
        apertium = f"the `apertium` command is not installed; {INSTALL_HINT}"
    else:
        apertium = "ok" if ApertiumBackend.installed_modes() else f"apertium has no language pairs; {INSTALL_HINT}"
    return {"apertium": apertium, "hf": _hf_reason() or "ok"}


def why_unavailable(src: str, tgt: str, backend: str = "apertium", model: str | None = None) -> str | None:
    """Why ``backend`` (with ``model``, for ``"hf"``) cannot translate ``src`` -> ``tgt`` here, or None if it can:
    the same answer :func:`translate_pairs` gives (an hf model's tokenizer is loaded to tell)."""
    return _backend_class(backend).unavailable(normalize_lang(src), normalize_lang(tgt), model)


def can_translate(src: str, tgt: str, backend: str = "apertium", model: str | None = None) -> bool:
    """Whether ``backend`` can translate ``src`` -> ``tgt`` here (the grid skips translated RMs otherwise)."""
    return why_unavailable(src, tgt, backend, model) is None


# ----------------------------------------------------------------------------------- cache
class TranslationCache:
    """sqlite file of sha256(backend, model, direction, text) -> translation; safe for concurrent processes."""

    def __init__(self, path: Path, timeout: float = 120.0):
        self.path, self.timeout = Path(path), float(timeout)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=self.timeout)
        self._retry("PRAGMA journal_mode=WAL")  # readers do not block the one writer
        self._retry("CREATE TABLE IF NOT EXISTS mt (key TEXT PRIMARY KEY, source TEXT, target TEXT)")

    def _retry(self, sql: str) -> None:
        """Run ``sql``, retried while another process holds the file. Two processes switching a new file to WAL
        at once: sqlite answers one 'database is locked' at once, without waiting out its busy timeout."""
        deadline, pause = time.monotonic() + self.timeout, 0.01
        while True:
            try:
                self.db.execute(sql)
                return
            except sqlite3.OperationalError as e:
                busy = "locked" in str(e) or "busy" in str(e)
                if not busy or time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, 0.5)

    def get(self, keys: list[str]) -> dict[str, str]:
        found = {}
        for i in range(0, len(keys), 500):  # sqlite caps the number of bound parameters
            chunk = keys[i:i + 500]
            q = f"SELECT key, target FROM mt WHERE key IN ({','.join('?' * len(chunk))})"
            found.update(self.db.execute(q, chunk).fetchall())
        return found

    def put(self, rows: list[tuple[str, str, str]]) -> None:
        with self.db:  # one transaction per batch: an interrupted run keeps every finished batch
            self.db.executemany("INSERT OR REPLACE INTO mt VALUES (?, ?, ?)", rows)

    def close(self) -> None:
        self.db.close()


def _cache_path(root: Path, backend: str, model: str, direction: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model)[-60:]
    return Path(root) / f"{backend}__{slug}-{fingerprint(model, 8)}__{direction}.sqlite"


def translate_texts(texts: list[str], translator, *, cache_dir=None, batch_size: int | None = None,
                    progress: bool = True) -> list[str]:
    """Translate ``texts`` with a backend instance, through the disk cache; one output per input.

    Leading/trailing whitespace and fenced code blocks are kept as they are; only distinct prose texts missing
    from the cache are sent, ``batch_size`` per ``translator.translate`` call, and cached after each call.

    Parameters
    ----------
    texts : the texts, in any language the translator reads.
    translator : a backend instance (``ApertiumBackend(src, tgt)``, ``HFBackend(src, tgt, model)``, ...).
    cache_dir, batch_size, progress : as in :func:`translate_pairs`.
    """
    step = int(translator.batch_size if batch_size is None else batch_size)
    if step < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if hasattr(translator, "check"):  # before the cache: a cached wrong-language translation is refused too
        translator.check()
    pieces = [_CODE.split(t) for t in texts]  # odd positions are fenced code blocks
    prose = {p.strip() for ps in pieces for p in ps[::2] if p.strip()}
    revision = [translator.revision] if getattr(translator, "revision", None) else []  # none: keys as before
    key = {t: fingerprint([translator.name, translator.model, translator.direction, *revision, t], n=64)
           for t in prose}
    cache = TranslationCache(_cache_path(Path(cache_dir or _cache_root("translations")), translator.name,
                                         translator.model, translator.direction))
    try:
        hit = cache.get(list(key.values()))
        done = {t: hit[k] for t, k in key.items() if k in hit}
        missing = sorted(prose - set(done))
        if missing:
            from tqdm.auto import tqdm

            log.info("%s %s: %d cached, %d to translate", translator.name, translator.direction, len(done),
                     len(missing))
            bar = tqdm(total=len(missing), desc=f"translate {translator.direction}", disable=not progress)
            for i in range(0, len(missing), step):
                chunk = missing[i:i + step]
                out = translator.translate(chunk)
                if len(out) != len(chunk):
                    raise RuntimeError(f"backend {translator.name!r} returned {len(out)} texts for {len(chunk)} "
                                       f"({translator.direction}): a broken installation or model; nothing of this "
                                       "chunk was cached, so a rerun after fixing the backend starts here")
                cache.put([(key[s], s, t) for s, t in zip(chunk, out)])
                done.update(zip(chunk, out))
                bar.update(len(chunk))
            bar.close()
    finally:
        cache.close()

    def rebuild(p: str) -> str:
        core = p.strip()
        if not core:
            return p
        lead, trail = p[:len(p) - len(p.lstrip())], p[len(p.rstrip()):]
        return lead + done[core] + trail

    return ["".join(rebuild(p) if i % 2 == 0 else p for i, p in enumerate(ps)) for ps in pieces]


# ----------------------------------------------------------------------------------- pairs
def translate_pairs(pairs: datasets.Dataset, target_lang: str, *, backend: str = "apertium",
                    model: str | None = None, source_lang: str = "en", cache_dir=None,
                    batch_size: int | None = None, progress: bool = True) -> datasets.Dataset:
    """Machine-translate canonical preference pairs from ``source_lang`` into ``target_lang``.

    Parameters
    ----------
    pairs : canonical pairs (:mod:`xlrm_lib.data` schema), all in ``source_lang``.
    target_lang, source_lang : language codes (ISO 639-1 or FLORES-200).
    backend : ``"apertium"`` (offline, rule-based) or ``"hf"`` (a transformers model, see ``model``).
    model : for ``"hf"``, a hub id or local directory (``facebook/nllb-200-distilled-600M``); apertium ignores it
        (with a warning) and records its own packages and their versions.
    cache_dir : directory of the sqlite translation caches; default ``store.cache_dir("translations")``.
    batch_size : texts per backend call (default: the backend's own, 1000 for apertium, 16 for hf).
    progress : show a tqdm bar while translating cache misses.

    Returns
    -------
    datasets.Dataset
        The same rows in the same order with prompt turns, ``chosen`` and ``rejected`` translated, ``lang`` set
        to the target and ``meta`` extended by ``translated_from``, ``mt_backend``, ``mt_model``,
        ``mt_direction`` (and ``mt_version`` for apertium). Pairs that are no longer a preference once
        translated (chosen == rejected, or an empty text: :func:`xlrm_lib.data.check_rows`) are left out, with a
        warning that counts them and names the language.

    Raises
    ------
    TranslationUnavailable
        The backend cannot translate this direction here (an hf model that cannot write ``target_lang``
        included); the message lists what is installed and what to install.
    ValueError
        Every pair was left out after translation.
    """
    src, tgt = normalize_lang(source_lang), normalize_lang(target_lang)
    if src == tgt:
        raise ValueError(f"source and target language are both {src!r}; nothing to translate")
    wrong = sorted({lang for lang in pairs["lang"] if lang != src})
    if wrong:
        raise ValueError(f"pairs in language(s) {wrong} given with source_lang={src!r}; select the {src!r} rows")
    translator = _backend_class(backend)(src, tgt, model=model)
    rows = list(pairs)
    texts = [m["content"] for r in rows for m in r["prompt"]] + [r[k] for r in rows for k in ("chosen", "rejected")]
    mapping = dict(zip(texts, translate_texts(texts, translator, cache_dir=cache_dir, batch_size=batch_size,
                                              progress=progress)))
    info = {"translated_from": src, "mt_backend": translator.name, "mt_model": translator.model,
            "mt_direction": translator.direction}
    if getattr(translator, "version", None):
        info["mt_version"] = translator.version
    out = []
    for r in rows:
        meta = json.loads(r["meta"]) if r.get("meta") else {}
        out.append(dict(r, lang=tgt, chosen=mapping[r["chosen"]], rejected=mapping[r["rejected"]],
                        prompt=[{"role": m["role"], "content": mapping[m["content"]]} for m in r["prompt"]],
                        meta=json.dumps({**meta, **info}, ensure_ascii=False)))
    # "It's red." and "It is red." can translate alike: such a pair teaches nothing (check_rows logs the count)
    kept = check_rows(out, drop_bad=True, source=f"translation into {tgt!r} ({src}->{tgt}, {translator.name})")
    if out and not kept:
        raise ValueError(f"all {len(out)} pairs translated into {tgt!r} have chosen == rejected or an empty text; "
                         "check the source pairs and the translation backend")
    return datasets.Dataset.from_list(kept, features=FEATURES)
