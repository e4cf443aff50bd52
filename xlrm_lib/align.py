"""Best-of-n alignment with reward models, graded by a judge that is neither RM (Wu et al. 2024; Hong et al. 2025).

The flow, one function per step::

    prompts ──> candidates ──> rewards ──> picks ──> win rates
    load_parallel_prompts   generate_candidates | candidate_pool   score_candidates   best_of_n   win_rate

- **Prompts** are parallel across languages (:func:`load_parallel_prompts`, e.g.
  ``../shared/data/x_alpacaeval_parallel_13lang.jsonl``), so every language answers the same questions.
- **Candidates**, ``n`` per (prompt, language): sampled from a policy LM (:func:`generate_candidates`; every sample
  has its own seed and is cached on disk), or, for the fast CPU default, a pool built from the embedded benchmark
  (:func:`candidate_pool`) whose candidates carry gold quality labels.
- **Picks**: :func:`score_candidates` adds an RM's reward, :func:`best_of_n` keeps the argmax per (prompt, language).
- **Judging**: :func:`win_rate` grades RM-A's pick against RM-B's pick with gold labels (``"gold"``), a held-out
  judge RM's rewards (a scored candidate table) or a :class:`xlrm_lib.judges.PairwiseLMJudge`. A judge that is one
  of the compared RMs is refused (:func:`check_judge`). :func:`headline_win_rates` gives the paper's
  "English-RM-aligned vs target-RM-aligned" win rate per language.

Candidate tables have the columns :data:`CAND_COLUMNS` (``prompt`` is a string or chat messages); pools add
``category, gold, origin, origin_id``.

>>> pairs = load_pairs("embedded", split="test")                                    # doctest: +SKIP
>>> cands = candidate_pool(pairs, n=4, seed=0)                                      # doctest: +SKIP
>>> picks = {name: best_of_n(score_candidates(rm, tok, cands), rm=name)             # doctest: +SKIP
...          for name, (rm, tok) in reward_models.items()}
>>> headline_win_rates(picks, "gold")                                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pandas as pd

from .checks import positive_int
from .data import prompt_text, read_records
from .evaluate import model_format, score_texts
from .formatting import TextFormat, as_messages, encode, fit_positions
from .generate import CAND_COLUMNS, KEY, require_columns
from .generate import generate_candidates, load_policy, policy_prompt  # noqa: F401  (re-exported: the flow's first step)
from .langs import code_of, normalize_langs
from .stats import bootstrap_ci, ci_from_draws, holm, signflip_p

log = logging.getLogger(__name__)


GOLD = {"chosen": 2, "rejected": 1, "distractor": 0}  # quality labels of pool candidates


# ----------------------------------------------------------------------------------- prompts
def load_parallel_prompts(path, *, langs=None, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Prompts parallel across languages: a long table ``prompt_id, lang, prompt``.

    ``path`` holds one record per prompt with an ``id`` and one column per language code (``en``, ``ko`` or
    FLORES ``kor_Hang``); other columns are ignored. ``limit`` keeps that many prompt ids, drawn with ``seed``,
    the same ids in every language. A requested language missing from the file, or a prompt missing or empty
    in a requested language, raises ``ValueError``.
    """
    path = Path(path).expanduser()
    records = read_records(path)
    if not records:
        raise ValueError(f"{path}: no prompts")
    columns = {}
    for key in dict.fromkeys(k for r in records for k in r):
        if key == "id":  # also ISO 639-1 for Indonesian, but here it is the prompt id
            continue
        lang = code_of(key)  # a code, not a name or a region tag: a 'source' or 'pt-BR' column is not read as one
        if lang in columns:
            raise ValueError(f"{path.name}: columns {columns[lang]!r} and {key!r} are both language {lang!r}; "
                             "keep one (prompts must be one per language)")
        if lang:
            columns[lang] = key
    if not columns:
        raise ValueError(f"{path.name}: no language columns; expected an 'id' and one column per language code "
                         f"(e.g. 'en', 'ko'), found {list(records[0])}")
    want = normalize_langs(langs) if langs else list(columns)
    missing = [lang for lang in want if lang not in columns]
    if missing:
        unread = [k for k in records[0] if k != "id" and k not in columns.values()]
        raise ValueError(f"language(s) {missing} not in {path.name}; it has {sorted(columns)}"
                         + (f" (columns {unread} are not read as languages: name a language column by its code, "
                            "'pt' or 'por_Latn', not 'Portuguese' or 'pt-BR')" if unread else ""))
    ids = [str(r.get("id", i)) for i, r in enumerate(records)]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{path.name}: duplicate prompt ids {dup[:5]}; give every prompt (row) an id of its own "
                         "(its translations are columns of the same row)")
    keep = list(range(len(records)))
    if limit is not None:
        limit = positive_int("limit", limit, why="None keeps all")
        random.Random(seed).shuffle(keep)
        keep = sorted(keep[: limit])
    bad = {}
    for lang in want:
        empty = [ids[i] for i in keep if not isinstance(records[i].get(columns[lang]), str)
                 or not records[i][columns[lang]].strip()]
        if empty:
            bad[lang] = empty
    if bad:
        detail = "; ".join(f"{lang}: {len(v)} (ids {v[:5]})" for lang, v in bad.items())
        raise ValueError(f"{path.name}: prompt(s) missing or empty in a requested language: {detail}. Prompts "
                         "must be parallel: drop those ids from the file or leave those languages out")
    rows = [(ids[i], lang, records[i][columns[lang]]) for lang in want for i in keep]
    return pd.DataFrame(rows, columns=["prompt_id", "lang", "prompt"])


def item_prompts(pairs, *, limit: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The prompts of a parallel benchmark's items, a long table ``prompt_id, lang, prompt`` as
    :func:`load_parallel_prompts` gives: for a policy to answer (:func:`generate_candidates`). The items are those
    every language has; ``limit`` keeps that many, drawn with ``seed`` as :func:`candidate_pool` draws them (the
    same seed: the same items)."""
    df = pairs.to_pandas() if hasattr(pairs, "to_pandas") else pd.DataFrame(pairs)
    require_columns(df, ["id", "lang", "prompt"], "item_prompts' pairs")
    df = df.drop_duplicates(["id", "lang"])  # a benchmark item per (id, lang), whatever pairs it holds
    common = set.intersection(*(set(g["id"]) for _, g in df.groupby("lang")))
    if not common:
        raise ValueError("pairs are not parallel: no item id is in every language; a policy's best-of-n answers "
                         "the same prompts in every language")
    items = sorted(common)
    if limit is not None:
        limit = positive_int("limit", limit, why="None keeps all")
        items = sorted(random.Random(seed).sample(items, min(limit, len(items))))
    by_key = {(r["id"], r["lang"]): r["prompt"] for r in df.to_dict("records")}
    rows = [(i, lang, by_key[(i, lang)]) for lang in dict.fromkeys(df["lang"]) for i in items]
    return pd.DataFrame(rows, columns=["prompt_id", "lang", "prompt"])


# ----------------------------------------------------------------------------------- candidates: pool
def candidate_pool(pairs, *, n: int = 4, seed: int = 0, limit: int | None = None) -> pd.DataFrame:
    """``n`` candidates per (item, language) from a parallel preference benchmark, with gold quality labels.

    Each item's pool is its own chosen (gold 2) and rejected (gold 1) answer plus ``n - 2`` distractors
    (gold 0): chosen/rejected answers of OTHER items of the same category, fluent but off-topic. Distractors
    and the candidate order (``cand_id``) are drawn once per item from ``seed``, and every language takes its
    own text of the same candidates, so languages are comparable. The order is shuffled so that "lowest
    cand_id wins ties" does not favour the chosen answer.

    ``pairs`` is a canonical-schema Dataset/DataFrame whose languages share the same ids (e.g.
    ``load_pairs("embedded", split="test")``); ``limit`` keeps that many items, drawn with ``seed``.
    Returns :data:`CAND_COLUMNS` + ``category, gold, origin, origin_id``.
    """
    if int(n) < 4:
        raise ValueError(f"candidate_pool needs n >= 4 (chosen, rejected and at least 2 distractors), got n={n}")
    df = pairs.to_pandas() if hasattr(pairs, "to_pandas") else pd.DataFrame(pairs)
    require_columns(df, ["id", "lang", "category", "prompt", "chosen", "rejected"], "candidate_pool's pairs")
    if df.duplicated(["id", "lang"]).any():
        raise ValueError(f"pairs repeat (id, lang): {df.loc[df.duplicated(['id', 'lang']), 'id'].tolist()[:5]}")
    langs = list(dict.fromkeys(df["lang"]))
    id_sets = {lang: set(g["id"]) for lang, g in df.groupby("lang")}
    common = set.intersection(*id_sets.values())
    if any(s != common for s in id_sets.values()):
        sizes = {lang: len(s) for lang, s in id_sets.items()}
        if len(common) < 2:
            raise ValueError(f"pairs are not parallel: languages share {len(common)} item id(s) ({sizes} ids "
                             "per language); best-of-n pools need the same items in every language")
        # e.g. English from RewardBench's filtered split (2,985 items) beside M-RewardBench's 2,869 per language
        log.warning("languages have different item ids (%s); the pools use the %d items all of them share",
                    sizes, len(common))
        df = df[df["id"].isin(common)]
    by_key = {(r["id"], r["lang"]): r for r in df.to_dict("records")}
    category = {i: by_key[(i, langs[0])]["category"] for i in common}
    by_cat: dict[str, list[str]] = {}
    for i in sorted(common):
        by_cat.setdefault(category[i], []).append(i)
    items = sorted(common)
    if limit is not None:
        limit = positive_int("limit", limit, why="None keeps all")
        items = sorted(random.Random(seed).sample(items, min(limit, len(items))))
    texts = {(i, side): tuple(by_key[(i, lang)][side] for lang in langs) for i in common for side in ("chosen", "rejected")}
    answers = {c: _distinct_answers(ids, texts) for c, ids in by_cat.items()}
    rows = []
    for item in items:
        rng = random.Random(f"{seed}:{item}")  # one draw per item, shared by its languages
        own = (texts[(item, "chosen")], texts[(item, "rejected")])
        others = [a for a in answers[category[item]] if a[0] != item]
        picked = rng.sample(others, n - 2) if n - 2 <= len(others) else []
        if len(picked) < n - 2 or any(_same_text(texts[a], t) for a in picked for t in own):
            # a distractor with the text of the item's own answer (a templated refusal) would be a second gold
            # answer scored 0: such answers are left out, and the draw is made again without them
            others = [a for a in others if not any(_same_text(texts[a], t) for t in own)]
            if n - 2 > len(others):
                raise ValueError(f"best-of-n with n={n} needs {n - 2} distractors per item, but category "
                                 f"{category[item]!r} has only {len(others)} other answer(s) with texts of their own "
                                 f"for item {item!r} ({len(by_cat[category[item]])} item(s) in the category): "
                                 + (f"use n <= {len(others) + 2}, or " if len(others) >= 2 else "")
                                 + f"use a source with more items of {category[item]!r} (each category needs at "
                                 f"least {(n - 1) // 2 + 1}), or leave its items out")
            picked = rng.sample(others, n - 2)
        slots = [("chosen", item, "chosen"), ("rejected", item, "rejected")]
        slots += [("distractor", o, side) for o, side in picked]
        rng.shuffle(slots)
        for lang in langs:
            prompt = [dict(m) for m in by_key[(item, lang)]["prompt"]]
            for cand_id, (origin, oid, side) in enumerate(slots):
                rows.append({"prompt_id": item, "lang": lang, "cand_id": cand_id, "text": by_key[(oid, lang)][side],
                             "prompt": prompt, "category": category[item], "gold": GOLD[origin], "origin": origin,
                             "origin_id": oid})
    return pd.DataFrame(rows)


def _same_text(a: tuple, b: tuple) -> bool:
    """Two candidates (their texts in every language) that read the same in some language."""
    return any(x == y for x, y in zip(a, b))


def _distinct_answers(ids: list, texts: dict) -> list[tuple]:
    """The (id, side) answers of a category, in order, less those that repeat an earlier one's text in some
    language: two equal candidates would tie, and the tie would go to the lower cand_id, not to quality."""
    seen: list[set] = [set() for _ in next(iter(texts.values()))] if texts else []
    out = []
    for a in ((i, side) for i in ids for side in ("chosen", "rejected")):
        if not any(t in s for t, s in zip(texts[a], seen)):
            out.append(a)
            for t, s in zip(texts[a], seen):
                s.add(t)
    return out


# ----------------------------------------------------------------------------------- rewards and picks
def _check_candidates(cands: pd.DataFrame, what: str = "candidates") -> None:
    require_columns(cands, CAND_COLUMNS, what)
    if cands.empty:
        raise ValueError(f"{what}: no rows")
    if cands.duplicated(KEY + ["cand_id"]).any():
        raise ValueError(f"{what} repeat (prompt_id, lang, cand_id); build them with one candidate_pool / "
                         "generate_candidates call")
    empty = cands["text"].isna() | (cands["text"].astype(str).str.strip() == "")
    if empty.any():
        raise ValueError(f"{what}: {int(empty.sum())} empty candidate text(s), e.g. "
                         f"{cands.loc[empty, KEY].head(3).values.tolist()}; drop them first")
    sizes = cands.groupby(KEY).size()
    if (sizes < 2).any():
        raise ValueError(f"{what}: best-of-n needs n >= 2 candidates per (prompt_id, lang); "
                         f"{int((sizes < 2).sum())} have fewer, e.g. {list(sizes[sizes < 2].index[:3])}")


def score_candidates(model, tokenizer, cands: pd.DataFrame, *, batch_size: int = 32, fmt: TextFormat | None = None,
                     column: str = "reward", cache: bool = False, bf16: bool = False) -> pd.DataFrame:
    """``cands`` plus a ``reward`` column: the RM's score of each (prompt, text), in the RM's saved format.

    ``cache=True``: candidates this RM already scored (e.g. a pool's chosen and rejected answers, scored by the
    evaluate notebook with the same ``bf16``) come from its reward cache (:func:`xlrm_lib.evaluate.score_texts`).
    ``bf16``: bfloat16 autocast scoring (see there).
    """
    _check_candidates(cands)
    fmt = fit_positions((fmt or model_format(model)).resolved(tokenizer), model)
    seqs = encode(tokenizer, list(cands["prompt"]), list(cands["text"]), fmt)
    # score each distinct token sequence once: identical candidates (repeated samples, answers cut to the same
    # tokens) get exactly equal rewards, so best_of_n's tie rule decides them, not ~1e-9 of batch noise
    unique = {tuple(s): None for s in seqs}
    index = {s: i for i, s in enumerate(unique)}
    rewards = score_texts(model, tokenizer, [list(s) for s in unique], batch_size=batch_size, cache=cache, bf16=bf16)
    out = cands.copy()
    out[column] = rewards[[index[tuple(s)] for s in seqs]]
    return out


def best_of_n(scored: pd.DataFrame, *, reward: str = "reward", rm: str | None = None) -> pd.DataFrame:
    """The highest-reward candidate per (prompt_id, lang), with ``n`` (pool size) and, if given, ``rm``.

    Ties in reward go to the LOWEST ``cand_id`` (deterministic; pools are shuffled, so this favours no
    particular kind of candidate).
    """
    _check_candidates(scored, "scored candidates")
    require_columns(scored, [reward], "scored candidates")
    if scored[reward].isna().any():
        raise ValueError(f"{int(scored[reward].isna().sum())} NaN value(s) in {reward!r}")
    ranked = scored.sort_values(KEY + [reward, "cand_id"], ascending=[True, True, False, True], kind="mergesort")
    picks = ranked.drop_duplicates(KEY, keep="first").copy()
    picks["n"] = picks.set_index(KEY).index.map(scored.groupby(KEY).size()).to_numpy()
    if rm is not None:
        picks["rm"] = rm
    return picks.sort_values(["lang", "prompt_id"], kind="mergesort").reset_index(drop=True)


ORIGINS = ("chosen", "rejected", "distractor")


def pick_origins(picks: pd.DataFrame) -> pd.DataFrame:
    """What each RM picked from a :func:`candidate_pool`: per ``rm``, the share of its picks that were the item's
    chosen answer, its rejected one, or an off-topic distractor (another item's answer), over every prompt and
    language, beside a uniformly random pick's expectation (``rm="random (expected)"``: 1/n, 1/n, (n-2)/n).

    A gold-judged win rate credits a pick over a distractor; an RM that picks distractors about as often as
    chance does not read the prompt, whatever its pairwise accuracy. Picks from generated candidates (no
    ``origin``) give an empty table.
    """
    if "origin" not in picks.columns or picks.empty:
        return pd.DataFrame(columns=["rm", "picks", *ORIGINS])
    require_columns(picks, ["rm", "n"], "picks")
    rms = list(pd.unique(picks["rm"]))  # in the order the RMs picked
    shares = pd.crosstab(picks["rm"], picks["origin"], normalize="index").reindex(index=rms, columns=list(ORIGINS),
                                                                                   fill_value=0.0)
    out = shares.assign(picks=picks.groupby("rm").size()).rename_axis(index="rm", columns=None).reset_index()
    first = picks[picks["rm"] == rms[0]]["n"].to_numpy(float)  # the pools' sizes (every RM picks from the same)
    expected = {"rm": "random (expected)", "picks": len(first), "chosen": float(np.mean(1 / first)),
                "rejected": float(np.mean(1 / first)), "distractor": float(np.mean((first - 2) / first))}
    return pd.concat([out[["rm", "picks", *ORIGINS]], pd.DataFrame([expected])], ignore_index=True)


def example_picks(picks: pd.DataFrame, k: int = 3, width: int = 200) -> pd.DataFrame:
    """A few prompts (the first ``k`` ids, in every language) with each RM's pick beside them, texts cut at
    ``width`` characters: what the win rates are about, to read (e.g. a policy's samples). A multi-turn prompt
    shows every turn (its last ones where it is cut)."""
    require_columns(picks, ["rm", "prompt_id", "lang", "text", "prompt"], "picks")
    k = positive_int("k", k)
    clash = sorted({"prompt_id", "lang", "prompt"} & set(map(str, picks["rm"])))
    if clash:
        raise ValueError(f"RM name(s) {clash} are example_picks' own columns; rename those RMs")
    order = lambda i: (0, int(i), "") if str(i).isdigit() else (1, 0, str(i))  # noqa: E731  ("2" before "10")
    ids = sorted(pd.unique(picks["prompt_id"]).tolist(), key=order)[:k]
    rows = picks[picks["prompt_id"].isin(ids)]
    wide = rows.pivot_table(index=["prompt_id", "lang"], columns="rm", values="text", aggfunc="first", sort=False)
    # an RM without a pick for a prompt (its pool dropped there) shows a dash, not "nan"
    wide = wide[list(pd.unique(rows["rm"]))].map(lambda t: "—" if pd.isna(t) else _cut(str(t), width))
    asked = rows.drop_duplicates(["prompt_id", "lang"]).set_index(["prompt_id", "lang"])["prompt"]
    wide.insert(0, "prompt", [_conversation(as_messages(asked[i]), width) for i in wide.index])
    return (wide.reset_index().rename_axis(columns=None)
            .sort_values(["prompt_id", "lang"], key=lambda c: c.map(order) if c.name == "prompt_id" else c.astype(str),
                         kind="mergesort").reset_index(drop=True))


def _conversation(messages: list[dict], width: int) -> str:
    """A prompt as a reader of the picks needs it: its one user turn (cut at ``width`` characters), or, for a
    multi-turn prompt, every turn as ``Role: text``, cut from the front (the last turn is what was answered)."""
    if len(messages) == 1:
        return _cut(prompt_text(messages), width)
    return _cut("\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages), width, keep_end=True)


def _cut(text: str, width: int, keep_end: bool = False) -> str:
    """``text`` in at most ``width`` characters, an ellipsis where it was cut (its start kept, or its end)."""
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1):] if keep_end else text[: width - 1] + "…"


def random_picks(cands: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One uniformly random candidate per (prompt_id, lang), ``rm="random"``; the draw depends on
    (seed, prompt_id) only, so a parallel pool gets the same candidate in every language."""
    _check_candidates(cands)
    rows = []
    for (pid, _), g in cands.sort_values("cand_id").groupby(KEY, sort=True):
        # its own namespace: candidate_pool seeds "{seed}:{item}" to place the chosen answer, and the same
        # stream here picked distractors 51.6% of the time instead of 50% (150 seeds x 96 items)
        rows.append(g.iloc[random.Random(f"random-pick:{seed}:{pid}").randrange(len(g))])
    out = pd.DataFrame(rows).reset_index(drop=True)
    out["rm"] = "random"
    return out.sort_values(["lang", "prompt_id"], kind="mergesort").reset_index(drop=True)


# ----------------------------------------------------------------------------------- judging
def check_judge(judge_name, rm_names) -> None:
    """Refuse a judge that is one of the compared RMs: it would grade its own picks."""
    names = [str(r) for r in rm_names if r is not None]
    if judge_name is not None and str(judge_name) in names:
        raise ValueError(f"judge {judge_name!r} is one of the compared RMs {names}: it would grade itself. "
                         "Judge with gold labels ('gold'), a held-out judge RM's scores, or a PairwiseLMJudge")


def _judge_name(judge, given):
    if given is not None:
        return given
    if isinstance(judge, str):
        return judge
    if isinstance(judge, pd.DataFrame):
        if "rm" in judge.columns and judge["rm"].nunique() == 1:
            return str(judge["rm"].iloc[0])
        return judge.attrs.get("name")
    return getattr(judge, "name", None)


def _rm_name(picks: pd.DataFrame):
    return str(picks["rm"].iloc[0]) if "rm" in picks.columns and picks["rm"].nunique() == 1 else None


def judge_outcomes(picks_a: pd.DataFrame, picks_b: pd.DataFrame, judge) -> pd.DataFrame:
    """Per (prompt_id, lang): ``outcome`` = 1 if the judge prefers A's pick, 0 if B's, 0.5 for a tie
    (the same pick, or an equal judge score).

    ``judge``: ``"gold"`` (the pool's gold labels), a DataFrame of judge rewards per candidate
    (``prompt_id, lang, cand_id, reward``), or an object with ``compare(questions, answers_x, answers_y)``
    returning log-odds that x is better, 0 for a tie (:class:`~xlrm_lib.judges.PairwiseLMJudge`: averaged over both
    orders where they agree).
    """
    for p, what in ((picks_a, "picks A"), (picks_b, "picks B")):
        require_columns(p, ["prompt_id", "lang", "cand_id", "text"], what)
        if p.duplicated(KEY).any():
            raise ValueError(f"{what} has several picks for one (prompt_id, lang); use best_of_n's output")
    m = picks_a.rename(columns={c: f"{c}_a" for c in picks_a.columns if c not in KEY}).merge(
        picks_b.rename(columns={c: f"{c}_b" for c in picks_b.columns if c not in KEY}), on=KEY, how="outer",
        indicator=True)
    if (m["_merge"] != "both").any():
        only = m["_merge"].value_counts()
        raise ValueError(f"picks cover different (prompt_id, lang): {only['left_only']} only in A, "
                         f"{only['right_only']} only in B; pick both from the same candidates")
    same = (m["text_a"] == m["text_b"]).to_numpy()  # the same answer (a cand_id is only an index into a table)
    if isinstance(judge, str):
        if judge != "gold":
            raise ValueError(f"unknown judge {judge!r}; expected 'gold', a DataFrame of judge rewards or a "
                             "pairwise judge")
        if "gold_a" not in m.columns:
            raise ValueError("judge 'gold' needs a 'gold' column in the picks (candidate_pool candidates have one); "
                             "for generated candidates use a judge RM's scores or a PairwiseLMJudge")
        sa, sb = m["gold_a"].to_numpy(float), m["gold_b"].to_numpy(float)
    elif isinstance(judge, pd.DataFrame):
        require_columns(judge, ["prompt_id", "lang", "cand_id", "reward"], "judge scores")
        # joined on (prompt_id, lang, cand_id) AND the text: picks from another candidate table (another
        # policy or sampling seed) must not take the score of whatever text has their cand_id here
        on = ["cand_id"] + (["text"] if "text" in judge.columns else [])
        j = judge[KEY + on + ["reward"]].rename(columns={"reward": "judge"})
        sa, sb = (m.merge(j.rename(columns={c: f"{c}_{side}" for c in on}), on=KEY + [f"{c}_{side}" for c in on],
                          how="left")["judge"] for side in ("a", "b"))
        if sa.isna().any() or sb.isna().any():
            raise ValueError(f"judge scores miss {int(sa.isna().sum() + sb.isna().sum())} picked candidate(s) "
                             "(matched by prompt_id, lang, cand_id and text); score the candidate table the "
                             "picks come from with the judge RM")
        sa, sb = sa.to_numpy(float), sb.to_numpy(float)
        for side in ("a", "b"):  # the judge's scores ARE one RM's rewards: the same model under another name
            own = m.get(f"reward_{side}")
            if own is not None and len(m) > 1 and np.allclose(own.to_numpy(float), sa if side == "a" else sb,
                                                              rtol=1e-6, atol=1e-6):
                rm = _rm_name(picks_a if side == "a" else picks_b)
                raise ValueError(f"the judge's scores equal the rewards of RM {rm or side.upper()!r} on every "
                                 "pick: the judge is that RM and would grade itself; use a held-out judge RM")
    elif hasattr(judge, "compare"):
        sa = np.zeros(len(m))
        todo = np.flatnonzero(~same)
        if todo.size:
            if "prompt_a" not in m.columns:
                raise ValueError("a pairwise judge needs the question: the picks lack a 'prompt' column")
            sa[todo] = judge.compare([m["prompt_a"].iloc[i] for i in todo], m["text_a"].iloc[todo].tolist(),
                                     m["text_b"].iloc[todo].tolist())
        sb = np.zeros(len(m))
    else:
        raise ValueError(f"unsupported judge of type {type(judge).__name__}; expected 'gold', a DataFrame of "
                         "judge rewards or a pairwise judge with .compare()")
    outcome = np.where(same, 0.5, np.where(sa > sb, 1.0, np.where(sa < sb, 0.0, 0.5)))
    return pd.DataFrame({"prompt_id": m["prompt_id"], "lang": m["lang"], "outcome": outcome})


def _average_draws(outcomes: pd.DataFrame, *, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap draws ``(n_boot,)`` of the mean over languages of per-language win rates.

    Parallel prompts make languages' outcomes correlated (the same question is easy or hard everywhere), so
    prompt ids are resampled jointly across languages (a cluster bootstrap); a stratified bootstrap that
    treats the languages as independent samples would give too narrow an interval.
    """
    mat = outcomes.pivot(index="prompt_id", columns="lang", values="outcome").to_numpy(float)  # (prompts, langs)
    present = ~np.isnan(mat)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, mat.shape[0], size=(n_boot, mat.shape[0]))
    weights = np.zeros((n_boot, mat.shape[0]))
    np.add.at(weights, (np.arange(n_boot)[:, None], idx), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_lang = (weights @ np.nan_to_num(mat)) / (weights @ present)  # (n_boot, langs)
    # a draw without any prompt of some language is NaN (averaging the others would be another statistic):
    # ci_from_draws sets it aside
    return per_lang.mean(axis=1)


def _no_preference_p(outcomes: pd.DataFrame, *, n_perm: int, seed: int) -> float:
    """Two-sided p-value of "the judge prefers neither RM's picks" (win rate 0.5): swapping A's and B's picks of
    a prompt flips its outcome around 0.5, in every language at once (parallel prompts), so the sign-flip test of
    the accuracy headline (:func:`xlrm_lib.stats.signflip_p`) tests the mean over languages of the win rates."""
    d = outcomes["outcome"].to_numpy(float) - 0.5
    return signflip_p(d, np.zeros(d.size, dtype=int), outcomes["prompt_id"].astype(str).to_numpy(),
                      groups=outcomes["lang"].astype(str).to_numpy(), n_perm=n_perm, seed=seed)


def _summarise(outcomes: pd.DataFrame, *, a, b, judge, n_boot: int, seed: int) -> pd.DataFrame:
    rows = []
    for lang in dict.fromkeys(outcomes["lang"]):
        one = outcomes[outcomes["lang"] == lang]
        x = one["outcome"].to_numpy(float)
        lo, hi = bootstrap_ci(x, n_boot=n_boot, seed=seed)
        rows.append({"lang": lang, "a": a, "b": b, "judge": judge, "n": x.size, "wins": int((x == 1).sum()),
                     "ties": int((x == 0.5).sum()), "losses": int((x == 0).sum()), "win_rate": float(x.mean()),
                     "ci_low": lo, "ci_high": hi, "p_value": _no_preference_p(one, n_perm=n_boot, seed=seed)})
    for row, p_holm in zip(rows, holm([r["p_value"] for r in rows])):  # one family: the languages' tests
        row["p_holm"] = float(p_holm)
    if len(rows) > 1:
        lo, hi = ci_from_draws(_average_draws(outcomes, n_boot=n_boot, seed=seed))
        rows.append({"lang": "average", "a": a, "b": b, "judge": judge, "n": sum(r["n"] for r in rows),
                     **{k: sum(r[k] for r in rows) for k in ("wins", "ties", "losses")},
                     "win_rate": float(np.mean([r["win_rate"] for r in rows])), "ci_low": lo, "ci_high": hi,
                     "p_value": _no_preference_p(outcomes, n_perm=n_boot, seed=seed), "p_holm": float("nan")})
    return pd.DataFrame(rows)


def win_rate(picks_a: pd.DataFrame, picks_b: pd.DataFrame, judge, *, n_boot: int = 2000, seed: int = 0,
             names: tuple[str, str] | None = None, judge_name: str | None = None) -> pd.DataFrame:
    """Win rate of A's picks over B's per language (ties count 1/2) with 95% bootstrap CIs, plus an
    ``average`` row (mean over languages) when there are several.

    Columns: ``lang, a, b, judge, n, wins, ties, losses, win_rate, ci_low, ci_high, p_value, p_holm``:
    ``p_value`` tests "no preference" (a win rate of 0.5) by sign flips, as the accuracy headline does;
    ``p_holm`` adjusts the languages' for their number (Holm; empty for the average). RM names come from
    ``names`` or the picks' ``rm`` column, the judge's from ``judge_name``, ``"gold"``, ``judge.name`` or the
    judge table's ``rm`` column; a judge named like a compared RM is refused. See :func:`judge_outcomes`.
    """
    a, b = names or (_rm_name(picks_a), _rm_name(picks_b))
    jname = _judge_name(judge, judge_name)
    check_judge(jname, [a, b])
    out = judge_outcomes(picks_a, picks_b, judge)
    return _summarise(out, a=a or "A", b=b or "B", judge=jname, n_boot=n_boot, seed=seed)


def win_rate_table(picks_by_rm: dict, baseline: pd.DataFrame, judge, *, n_boot: int = 2000, seed: int = 0,
                   judge_name: str | None = None) -> pd.DataFrame:
    """Each RM's picks against the same ``baseline`` picks (e.g. :func:`random_picks`): one long table."""
    bname = _rm_name(baseline) or "baseline"
    check_judge(_judge_name(judge, judge_name), list(picks_by_rm) + [bname])
    return pd.concat([win_rate(p, baseline, judge, n_boot=n_boot, seed=seed, names=(rm, bname),
                               judge_name=judge_name) for rm, p in picks_by_rm.items()], ignore_index=True)


def headline_win_rates(picks_by_rm: dict, judge, english: str = "en", target_fmt: str = "{lang}", *,
                       n_boot: int = 2000, seed: int = 0, judge_name: str | None = None) -> pd.DataFrame:
    """The paper's headline: per target language t, the win rate of the English RM's pick over t's own RM's
    pick on t's prompts (``target_fmt`` names t's RM, e.g. ``"{lang}"`` or ``"{lang}-mt"``), and the
    ``average`` over targets with a bootstrap CI. Same columns as :func:`win_rate`; the average's p-value flips
    a prompt's outcome in every language at once, so its null is that the English RM and each target's own RM are
    exchangeable on every prompt (as the accuracy headline's), a little stronger than a win rate of 0.5.
    """
    if english not in picks_by_rm:
        raise ValueError(f"no picks of the English RM {english!r}; have {sorted(picks_by_rm)}")
    jname = _judge_name(judge, judge_name)
    check_judge(jname, picks_by_rm)
    en = picks_by_rm[english]
    outs, targets = [], {}
    for lang in dict.fromkeys(en["lang"]):
        target = target_fmt.format(lang=lang)
        if target == english or target not in picks_by_rm:
            continue
        tp = picks_by_rm[target]
        outs.append(judge_outcomes(en[en["lang"] == lang], tp[tp["lang"] == lang], judge))
        targets[lang] = target
    if not outs:
        raise ValueError(f"no target-language RMs named like {target_fmt!r} for the languages "
                         f"{sorted(set(en['lang']))} among {sorted(picks_by_rm)}")
    table = _summarise(pd.concat(outs, ignore_index=True), a=english, b=target_fmt, judge=jname, n_boot=n_boot,
                       seed=seed)
    table["b"] = table["lang"].map(targets).fillna(target_fmt)
    return table
