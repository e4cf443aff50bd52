"""Translate-train: machine-translate English preference pairs into a target language, with a disk cache.

The paper's target-language reward models are trained on English preference data machine-translated into the
target. :func:`translate_pairs` takes canonical pairs (see :mod:`xlrm_lib.data`), translates every prompt turn,
``chosen`` and ``rejected``, and returns canonical pairs in the target language (``id`` kept, ``meta`` records
``translated_from``, ``mt_backend``, ``mt_model``, ``mt_direction``). Two backends:

- ``"apertium"``  rule-based Debian MT, offline (``bash tools/install_apertium.sh``). Installed directions are
  discovered with ``apertium -l``; a missing direct pair is bridged through installed ones (en->fr and en->pt
  go through es). Quality is literal: label such data as machine-translated.
- ``"hf"``  any transformers seq2seq translation model (NLLB with FLORES codes, or a one-direction Marian
  ``opus-mt-*``) on a machine with the hub; ``model=`` names it.

Fenced code blocks are never translated (a rule-based MT turns ``return`` into ``regreso``). Translations are
cached in one sqlite file per (backend, model, direction) under ``xlrm_lib.store.cache_dir("translations")``;
only texts missing from the cache reach the backend, so a rerun or a resumed run is free.

>>> from xlrm_lib.data import load_pairs
>>> es = translate_pairs(load_pairs("embedded", langs=["en"], split="train"), "es")   # doctest: +SKIP
>>> can_translate("en", "ko")                                                          # doctest: +SKIP
False
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import subprocess
from collections import deque
from pathlib import Path

import datasets

from .data import FEATURES
from .langs import flores, normalize_lang
from .store import cache_dir as _cache_root, fingerprint

log = logging.getLogger(__name__)

# apertium names languages by ISO 639-3 (newer pairs) or 639-1 (older pairs: es-pt, fr-es)
ISO3 = {"en": "eng", "es": "spa", "ca": "cat", "pt": "por", "fr": "fra", "gl": "glg", "it": "ita", "de": "deu"}
# Debian package holding each pair, for "install this" messages and the meta record
APT_PACKAGES = {frozenset({"en", "es"}): "apertium-eng-spa", frozenset({"en", "ca"}): "apertium-eng-cat",
                frozenset({"es", "pt"}): "apertium-es-pt", frozenset({"es", "fr"}): "apertium-fr-es"}
INSTALL_HINT = ("install it with `bash tools/install_apertium.sh` (or `apt-get install apertium apertium-eng-spa "
                "apertium-eng-cat apertium-es-pt apertium-fr-es`); without it the grid skips translate-train RMs")
_SEP = "XLRMSEPARATOR."  # an unknown word and a full stop on their own line: apertium passes them through
_CODE = re.compile(r"(```.*?```)", re.DOTALL)
_GAP = re.compile(r"(?<=\S) {2,}(?=\S)")
# a placeholder ends in Q, which no index letter (A-J) is: capitals glued to the span ("`Option`A") stay text
_INLINE, _SLOT = re.compile(r"`[^`\n]+`"), re.compile(r"XLRMCODE([A-J]+)Q")


def _slot(spans: list[str], span: str) -> str:
    """Remember ``span``; its placeholder spells the index in letters (apertium splits words at digits)."""
    spans.append(span)
    return "XLRMCODE" + "".join(chr(65 + int(d)) for d in str(len(spans) - 1)) + "Q"  # 12 -> XLRMCODEBCQ


def _unslot(spans: list[str], letters: str) -> str:
    i = int("".join(str(ord(c) - 65) for c in letters))
    if i >= len(spans):
        raise ValueError(f"apertium returned the code placeholder XLRMCODE{letters}Q, but the text had "
                         f"{len(spans)} inline code span(s): {spans!r}")
    return spans[i]


class TranslationUnavailable(RuntimeError):
    """The backend or the direction is not available here; the message says what to install."""


# ----------------------------------------------------------------------------------- backends
class ApertiumBackend:
    """``apertium -u <mode>`` through a pipe; many texts per call, separated by a sentinel line."""

    name = "apertium"
    batch_size = 1000  # texts per subprocess call: each call starts ~10 processes (~0.3 s)
    revision = "code-slots-2"  # part of the cache key: placeholders end in Q (capitals glued to code were eaten)

    def __init__(self, src: str, tgt: str, model: str | None = None):
        path = self.route(src, tgt)
        if isinstance(path, str):
            raise TranslationUnavailable(path)
        hops = [(m["from"], m["to"]) for m in path]
        self.modes = [m["mode"] for m in path]
        self.direction = "+".join(self.modes)
        self.model = model or "+".join(APT_PACKAGES.get(frozenset(h), "apertium") for h in hops)

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
    def supports(cls, src: str, tgt: str) -> bool:
        return not isinstance(cls.route(src, tgt), str)

    def translate(self, texts: list[str]) -> list[str]:
        """One translation per text; texts may hold newlines and `inline code` (kept verbatim)."""
        # `inline code` becomes an unknown word (XLRMCODEB) that apertium carries along, then goes back in
        spans: list[list[str]] = [[] for _ in texts]
        out = [_INLINE.sub(lambda m, s=s: _slot(s, m.group(0)), t) for t, s in zip(texts, spans)]
        for mode in self.modes:  # a pivot is two passes; the sentinel lines survive both
            out = self._run(mode, out)
        out = [_SLOT.sub(lambda m, s=s: _unslot(s, m.group(1)), t) for t, s in zip(out, spans)]
        # words apertium drops (subject pronouns, articles) leave their blanks behind: "porque  refleja",
        # and a dropped first word ("It returns" -> "regresa") leaves the sentence without its capital
        out = [_GAP.sub(" ", t).strip() for t in out]
        return [t[:1].upper() + t[1:] if s[:1].isupper() else t for s, t in zip(texts, out)]

    def _run(self, mode: str, texts: list[str]) -> list[str]:
        # Apertium keeps lines but its rules reorder words across them ("The big\ndog" -> "El perro\ngrande");
        # a sentinel line before every text stops that, so one text maps to one text, and gives every text the
        # same left context (a sentence end), so its translation does not depend on the batch it lands in.
        joined = "".join(f"{_SEP}\n{t}\n" for t in texts)
        res = subprocess.run(["apertium", "-u", mode], input=joined, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise RuntimeError(f"`apertium -u {mode}` failed ({res.returncode}): {res.stderr.strip()[:500]}")
        parts = ("\n" + res.stdout).split(f"\n{_SEP}\n")[1:]
        if len(parts) == len(texts):
            return [p[:-1] if p.endswith("\n") else p for p in parts]
        if len(texts) == 1:  # the sentinel itself was changed: nothing to split, take the whole output
            return [res.stdout.replace(_SEP, "").strip()]
        log.warning("apertium %s merged texts in a batch of %d; retrying one text per call", mode, len(texts))
        return [self._run(mode, [t])[0] for t in texts]


_SENTENCE_END = re.compile(r"((?<=[.!?;:])\s+|(?<=[。！？；]))")  # the gap after a sentence: spaces, or none (CJK)
UNSPACED = {"zh", "ja"}  # languages whose sentences follow each other without a space


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


class HFBackend:
    """A transformers seq2seq translation model (NLLB / M2M with FLORES codes, or a Marian opus-mt pair).

    Such models translate sentences: a long paragraph loses sentences or is cut at 512 tokens. So each line is
    translated in runs of whole sentences of at most ``max_segment_tokens`` tokens (:func:`segments`), and a run
    still over 512 tokens (one very long sentence) is counted in a warning.
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
        self._loaded = None  # loaded on the first cache miss: a fully cached run never touches the model

    @property
    def revision(self) -> str:
        """Part of the translation cache's key: how texts are cut before the model sees them ("segments-1"),
        plus whatever else changes the output: non-default lengths, and a local model directory's weights (a
        re-finetuned model at the same path is another translator). Default settings keep the keys of before."""
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
        return ":".join(parts)

    @classmethod
    def supports(cls, src: str, tgt: str) -> bool:
        # Which pairs a model knows is only known once it is loaded; say yes when transformers is there.
        return _hf_reason() is None and src != tgt

    def _load(self):
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(self.model)
        net = AutoModelForSeq2SeqLM.from_pretrained(self.model).eval()
        net.to("cuda" if torch.cuda.is_available() else "cpu")
        gen = {}
        tgt_id = tok.convert_tokens_to_ids(flores(self.tgt))
        if tgt_id is not None and tgt_id != tok.unk_token_id:  # multilingual (NLLB): say the languages
            tok.src_lang = flores(self.src)
            gen["forced_bos_token_id"] = tgt_id
        self._loaded = (tok, net, gen)

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
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, truncation=True,
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


def can_translate(src: str, tgt: str, backend: str = "apertium") -> bool:
    """Whether ``backend`` can translate ``src`` -> ``tgt`` here (the grid skips translated RMs otherwise)."""
    return _backend_class(backend).supports(normalize_lang(src), normalize_lang(tgt))


# ----------------------------------------------------------------------------------- cache
class TranslationCache:
    """sqlite file of sha256(backend, model, direction, text) -> translation; safe for concurrent processes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=120)
        self.db.execute("PRAGMA journal_mode=WAL")  # readers do not block the one writer
        self.db.execute("CREATE TABLE IF NOT EXISTS mt (key TEXT PRIMARY KEY, source TEXT, target TEXT)")

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
    pieces = [_CODE.split(t) for t in texts]  # odd positions are ```code``` blocks
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
                    raise RuntimeError(f"backend {translator.name!r} returned {len(out)} texts for {len(chunk)}")
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
    model : for ``"hf"``, a hub id or local directory (``facebook/nllb-200-distilled-600M``); ignored by apertium.
    cache_dir : directory of the sqlite translation caches; default ``store.cache_dir("translations")``.
    batch_size : texts per backend call (default: the backend's own, 1000 for apertium, 16 for hf).
    progress : show a tqdm bar while translating cache misses.

    Returns
    -------
    datasets.Dataset
        The same rows in the same order with prompt turns, ``chosen`` and ``rejected`` translated, ``lang`` set
        to the target and ``meta`` extended by ``translated_from``, ``mt_backend``, ``mt_model``,
        ``mt_direction``.

    Raises
    ------
    TranslationUnavailable
        The backend cannot translate this direction here; the message lists what is installed and what to install.
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
    out = []
    for r in rows:
        meta = json.loads(r["meta"]) if r.get("meta") else {}
        out.append(dict(r, lang=tgt, chosen=mapping[r["chosen"]], rejected=mapping[r["rejected"]],
                        prompt=[{"role": m["role"], "content": mapping[m["content"]]} for m in r["prompt"]],
                        meta=json.dumps({**meta, **info}, ensure_ascii=False)))
    return datasets.Dataset.from_list(out, features=FEATURES)
