"""Score preference pairs with a reward model; RewardBench accuracy, transfer matrices, English-vs-target.

RewardBench's rule: a pair is correct iff r(chosen) > r(rejected) STRICTLY. Ties count as wrong and are also
reported apart (``ties``), so a degenerate RM that scores everything equal shows up as ties, not as 50%.
Category scores are example-weighted over the rows actually scored in each language (the mean over that
category's rows), with RewardBench's one exception: in Reasoning, math-prm counts as much as all the code
subsets (hep-*) together (its EXAMPLE_COUNTS: 984 = 6 x 164), where both are scored. The overall score is the mean
of RewardBench's four categories where any is present (other categories get rows of their own), else of the
categories there are. Intervals resample items (ids) within categories: an item's rows in several
languages or from several seeds move together; p-values flip the sign of each item's difference.

>>> scores = score_pairs(model, tok, load_pairs("embedded", langs=["ko"], split="test"), source="en")  # doctest: +SKIP
>>> accuracy_table(scores)                                                                           # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np
import pandas as pd
import torch

from .arch import is_decoder
from .checks import choice, positive_int
from .data import CATEGORIES
from .formatting import FORMAT_FILE, TextFormat, encode, fit_positions, forward_kwargs, pad_batch
from .langs import TRANSLATED_SUFFIX
from .models import loaded_from
from .packing import pack, packed_rewards, should_pack
from .reward_cache import RewardCache
from .stats import ci_from_draws, edge_interval, holm, signflip_p, stratified_boot, stratified_mean

log = logging.getLogger(__name__)

HEADLINE_TARGETS = {"native": "{lang}", "translated": "{lang}" + TRANSLATED_SUFFIX}  # label -> target RM name

SCORE_COLUMNS = ["id", "lang", "category", "subset", "reward_chosen", "reward_rejected", "margin", "correct", "tie",
                 "len_chosen", "len_rejected"]


def model_format(model, default: TextFormat | None = None) -> TextFormat:
    """The text format an RM was trained with (``xlrm_format.json`` beside its weights), else ``default``, else
    the built-in one (256 tokens: an RM not trained here, e.g. from the hub, is told so in a warning)."""
    path = loaded_from(model)
    fmt = (TextFormat.load(path) if path else None) or default
    if fmt is None:
        fmt = TextFormat()
        log.warning("%s has no %s (not trained here): texts are cut to the default %d tokens; pass "
                    "fmt=TextFormat(max_length=...) to read longer ones", path or type(model).__name__, FORMAT_FILE,
                    fmt.max_length)
    return fmt


def score_texts(model, tokenizer, seqs: list[list[int]], *, batch_size: int = 32, bf16: bool = False,
                cache: bool = False) -> np.ndarray:
    """Rewards ``(n,)`` of token-id sequences, batched by length (sorted), no gradients.

    ``bf16=True`` runs the forward under bfloat16 autocast: faster on a CPU with AMX (README.md, Performance), but
    rewards move by ~1e-2, so the exact (fp32) path is the default. With ``bf16=True`` a decoder RM on a CUDA GPU
    is scored padding-free (:mod:`xlrm_lib.packing`, the flash variable-length kernel).

    ``cache=True`` reuses and records rewards in the model's :class:`xlrm_lib.reward_cache.RewardCache` (an RM
    loaded unchanged from its xlrm directory; other models are scored as usual): a sequence this RM already
    scored, in any notebook, is not scored again. Pass it only for a model as loaded from disk.
    """
    _check_model(model)
    positive_int("batch_size", batch_size)
    store = RewardCache.for_model(model, bf16=bf16) if cache else None
    if store is None:
        return _score(model, tokenizer, seqs, batch_size=batch_size, bf16=bf16)
    out = store.get(seqs)
    todo = np.flatnonzero(np.isnan(out))
    log.info("reward cache %s: %d of %d sequences already scored", store.path.name, len(seqs) - len(todo), len(seqs))
    if len(todo):
        new = [seqs[i] for i in todo]
        out[todo] = _score(model, tokenizer, new, batch_size=batch_size, bf16=bf16)
        store.put(new, out[todo])
    return out


def _check_model(model) -> None:
    if isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model is the path {str(model)!r}; pass the loaded model and tokenizer: "
                        "model, tokenizer = xlrm_lib.models.load_reward_model(path)")


def _head_linear(model) -> torch.nn.Linear | None:
    """The score head's last projection: a decoder's ``score``, BERT's ``classifier``, RoBERTa's
    ``classifier.out_proj``; None for another head."""
    for name in ("score", "classifier"):
        mod = getattr(model, name, None)
        mod = mod if isinstance(mod, torch.nn.Linear) else getattr(mod, "out_proj", None)
        if isinstance(mod, torch.nn.Linear):
            return mod
    return None


@contextlib.contextmanager
def _float32_head(model, enabled: bool):
    """Under bf16 autocast, run the score head's last projection in float32: rounded to bf16 (3 significant
    digits) nearly equal rewards became ties and swapped pairs. The hidden state it reads stays bf16."""
    head = _head_linear(model) if enabled else None
    if head is None:
        yield
        return

    def fp32(module, inputs, _output):
        with torch.autocast(inputs[0].device.type, enabled=False):
            bias = None if module.bias is None else module.bias.float()
            return torch.nn.functional.linear(inputs[0].float(), module.weight.float(), bias)

    handle = head.register_forward_hook(fp32)
    try:
        yield
    finally:
        handle.remove()


@torch.inference_mode()
def _score(model, tokenizer, seqs: list[list[int]], *, batch_size: int, bf16: bool) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    packed = should_pack(model, half=bf16)  # fp32 stays padded and exact
    # an encoder's classifier reads the first position: pad on the right whatever the tokenizer says (a
    # decoder's head finds the last real token, and position ids count real tokens, so either side is right)
    side = tokenizer.padding_side if is_decoder(model) else "right"
    order = np.argsort([len(s) for s in seqs], kind="stable")
    out = np.full(len(seqs), np.nan)
    with _float32_head(model, bf16):
        for start in range(0, len(seqs), batch_size):
            idx = order[start : start + batch_size]
            batch_seqs = [seqs[i] for i in idx]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                if packed:
                    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in pack(batch_seqs).items()}
                    rewards = packed_rewards(model, batch)[:, None]
                else:
                    batch = {k: v.to(device) for k, v in pad_batch(batch_seqs, tokenizer.pad_token_id, side).items()}
                    rewards = model(**forward_kwargs(model, batch)).logits
            if rewards.shape[-1] != 1:
                raise ValueError(f"model has {rewards.shape[-1]} outputs; a reward model has one (num_labels=1)")
            out[idx] = rewards[:, 0].float().cpu().numpy()
    if np.isnan(out).any():  # a NaN reward would also be taken for "not scored yet" by the reward cache
        raise FloatingPointError(f"{int(np.isnan(out).sum())} of {len(out)} rewards are NaN; check the model's "
                                 "weights and dtype (float16 overflow is a common cause)")
    return out


def score_pairs(model, tokenizer, pairs, *, batch_size: int = 32, fmt: TextFormat | None = None,
                bf16: bool = False, cache: bool = False, **labels) -> pd.DataFrame:
    """Score every pair: a per-pair table with :data:`SCORE_COLUMNS` (+ constant ``labels`` columns).

    Chosen and rejected sequences of all pairs are sorted by length together, so padding is minimal and the
    result does not depend on ``batch_size`` or the padding side (position ids count real tokens only).
    ``cache``: see :func:`score_texts`.
    """
    _check_model(model)
    if isinstance(pairs, pd.DataFrame):  # e.g. load_pairs(...).to_pandas(), filtered
        import datasets

        pairs = datasets.Dataset.from_pandas(pairs, preserve_index=False)
    if len(pairs) == 0:
        raise ValueError("no pairs to score")
    missing = [c for c in ("prompt", "chosen", "rejected", "id", "lang", "category", "subset")
               if c not in pairs.column_names]
    if missing:  # before scoring: the table needs them at the end
        raise ValueError(f"pairs lack column(s) {missing}; load them with xlrm_lib.data.load_pairs, which fills "
                         "id, lang, category and subset")
    fmt = fit_positions((fmt or model_format(model)).resolved(tokenizer), model)
    chosen = encode(tokenizer, pairs["prompt"], pairs["chosen"], fmt)
    rejected = encode(tokenizer, pairs["prompt"], pairs["rejected"], fmt)
    rewards = score_texts(model, tokenizer, chosen + rejected, batch_size=batch_size, bf16=bf16, cache=cache)
    rc, rr = rewards[: len(chosen)], rewards[len(chosen) :]
    # identical token ids (e.g. answers that differ only before a left truncation) are an exact tie; two rows
    # of one padded batch can differ by ~1e-9 in float, which would otherwise decide such a pair at random
    same = np.fromiter((c == r for c, r in zip(chosen, rejected)), dtype=bool, count=len(chosen))
    rr = np.where(same, rc, rr)
    return score_table(pairs, rc, rr, [len(s) for s in chosen], [len(s) for s in rejected], **labels)


def score_table(pairs, reward_chosen, reward_rejected, len_chosen, len_rejected, **labels) -> pd.DataFrame:
    """The per-pair table of :func:`score_pairs` (:data:`SCORE_COLUMNS` + constant ``labels`` columns) from each
    pair's two rewards and token counts: ``correct`` iff chosen's reward is strictly higher (RewardBench), ``tie``
    iff they are equal. A generative judge's table is made here too (:mod:`xlrm_lib.judges`)."""
    rc, rr = np.asarray(reward_chosen), np.asarray(reward_rejected)
    df = pd.DataFrame({
        "id": pairs["id"], "lang": pairs["lang"], "category": pairs["category"], "subset": pairs["subset"],
        "reward_chosen": rc, "reward_rejected": rr, "margin": rc - rr, "correct": rc > rr, "tie": rc == rr,
        "len_chosen": list(len_chosen), "len_rejected": list(len_rejected),
    })[SCORE_COLUMNS]
    for k, v in labels.items():
        df[k] = v
    return df


def _check_scores(scores: pd.DataFrame, needed) -> None:
    missing = [c for c in needed if c not in scores.columns]
    if missing:
        raise ValueError(f"score table lacks column(s) {missing}; it has {list(scores.columns)} "
                         "(build it with score_pairs(..., source=...))")


def _check_finite(scores: pd.DataFrame) -> None:
    """A NaN reward is neither above nor equal to the other: ``correct`` and ``tie`` are both False, and the
    pair would count as wrong without a word (score_pairs raises on them; a table built elsewhere may not)."""
    cols = [c for c in ("reward_chosen", "reward_rejected") if c in scores.columns]
    if not cols:
        return
    bad = ~np.isfinite(scores[cols].to_numpy(float)).all(axis=1)
    if bad.any():
        where = scores.loc[bad, [c for c in ("id", "source", "lang") if c in scores.columns]].head(3)
        raise ValueError(f"{int(bad.sum())} row(s) of the score table have a non-finite reward, e.g. "
                         f"{where.to_dict('records') or scores.index[bad][:3].tolist()}; they would count as wrong. "
                         "Rescore them (score_pairs raises on a model that outputs NaN) or drop them first")


ACCURACY_COLUMNS = ("accuracy", "ci_low", "ci_high", "n", "ties")  # the values of an accuracy table


def subset_weights(categories, subsets=None) -> np.ndarray:
    """Row weights inside each category: 1, except RewardBench's Reasoning rule, where math-prm rows together
    weigh as much as the code rows (hep-*) together when both were scored (``EXAMPLE_COUNTS["math-prm"] = 984``,
    "upweighting to be equal to code"). Without a ``subset`` column every row weighs 1."""
    cats = np.asarray(categories).astype(str)
    w = np.ones(cats.size)
    if subsets is None:
        return w
    sub = pd.Series(np.asarray(subsets).astype(str))
    math = (cats == "reasoning") & (sub == "math-prm").to_numpy()
    code = (cats == "reasoning") & sub.str.startswith("hep-").to_numpy()
    if math.any() and code.any():
        w[math] = code.sum() / math.sum()
    return w


def _weights(g: pd.DataFrame) -> np.ndarray:
    return subset_weights(g["category"], g["subset"] if "subset" in g.columns else None)


def _ids(g: pd.DataFrame) -> np.ndarray:
    """Item ids as strings (1 and "1" are one item, as the bootstrap counts them); row numbers without ids."""
    return (g["id"] if "id" in g.columns else pd.Series(np.arange(len(g)))).astype(str).to_numpy()


def _in_overall(cats: np.ndarray) -> np.ndarray:
    """Which rows ``overall`` averages: RewardBench's is the mean of its four categories, so where any of them
    is present the others (``unknown``: a subset no category is known for, a dataset's own labels) get rows of
    their own but stay out of it; a table with none of the four averages the categories it has."""
    m = np.isin(cats, CATEGORIES)
    return m if m.any() else np.ones(len(cats), bool)


def accuracy_table(scores: pd.DataFrame, *, by=("source", "lang"), n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Accuracy per group x category (+ ``overall``), with 95% bootstrap CIs, item counts and ties.

    Returns a long table: ``*by, category, n, accuracy, ci_low, ci_high, ties``. ``n`` counts items (ids); rows
    of one item (several seeds pooled in a group) are averaged and resampled together; ``ties`` counts rows.
    ``overall`` is the mean of the categories, RewardBench's four only where any of them is present.

    A category at an accuracy of exactly 0 or 1 gets Clopper-Pearson's exact interval over its items
    (:func:`xlrm_lib.stats.edge_interval`): every resample of it is alike, so the bootstrap's would have no width;
    ``overall`` over categories that are all so takes the mean of their bounds.
    """
    by = [by] if isinstance(by, str) else list(by)
    unknown = [c for c in by if c not in scores.columns and c not in ("source", "lang")]  # the defaults may be absent
    if unknown:
        raise ValueError(f"by names column(s) {unknown} that the score table lacks; it has {list(scores.columns)}")
    by = [c for c in by if c in scores.columns]
    positive_int("n_boot", n_boot)
    _check_scores(scores, ["correct", "tie", "category"])
    _check_finite(scores)
    if (out := ~_in_overall(scores["category"].to_numpy())).any():
        log.warning("overall accuracy averages RewardBench's categories; %d row(s) of %s have rows of their own "
                    "but are left out of it", int(out.sum()), sorted(set(scores["category"][out])))
    _warn_uneven_categories(scores, by)
    _warn_few_items(scores, by)
    rows = []
    for key, g in scores.groupby(by, sort=True) if by else [((), scores)]:
        key = key if isinstance(key, tuple) else (key,)
        x, cats, ids, w = g["correct"].to_numpy(float), g["category"].to_numpy(), _ids(g), _weights(g)
        ties = g["tie"].to_numpy()
        edges = {}  # category -> its interval, where its accuracy is 0 or 1
        for cat in [c for c in CATEGORIES if c in set(g["category"])] + sorted(set(g["category"]) - set(CATEGORIES)):
            m = cats == cat
            acc, n = float(np.average(x[m], weights=w[m])), len(set(ids[m].tolist()))
            if acc in (0.0, 1.0):  # every resample alike: the bootstrap's interval would have no width
                lo, hi = edges[cat] = edge_interval(acc, n)
            else:
                lo, hi = ci_from_draws(stratified_boot(x[m], cats[m], ids[m], weights=w[m], n_boot=n_boot, seed=seed))
            rows.append((*key, cat, n, acc, lo, hi, int(ties[m].sum())))
        m = _in_overall(cats)
        x, cats, ids, w = x[m], cats[m], ids[m], w[m]
        if set(cats.tolist()) <= set(edges):  # every category at 0 or 1: every draw alike here too
            lo, hi = (float(np.mean(b)) for b in zip(*(edges[c] for c in set(cats.tolist()))))
        else:
            lo, hi = ci_from_draws(stratified_boot(x, cats, ids, weights=w, n_boot=n_boot, seed=seed))
        rows.append((*key, "overall", len(set(ids.tolist())), stratified_mean(x, cats, ids, weights=w), lo, hi,
                     int(ties[m].sum())))
    return pd.DataFrame(rows, columns=[*by, "category", "n", "accuracy", "ci_low", "ci_high", "ties"])


FEW_ITEMS = 10  # a category with fewer items has a bootstrap interval that says little


def _warn_few_items(scores: pd.DataFrame, by: list) -> None:
    """A percentile bootstrap over a handful of items understates the uncertainty (it can only move in steps of
    one item): say which categories are that small, once per table."""
    counts = scores.assign(_id=_ids(scores)).groupby([*by, "category"])["_id"].nunique()
    few = counts[counts < FEW_ITEMS]
    if len(few):
        log.warning("%d group(s) x category have fewer than %d items (e.g. %s: %d): their intervals understate "
                    "the uncertainty (a bootstrap over a handful of items)", len(few), FEW_ITEMS,
                    few.index[0], int(few.iloc[0]))


def _warn_uneven_categories(scores: pd.DataFrame, by: list) -> None:
    """``overall`` is the mean of the RewardBench categories a group has: a group without one of them (a
    filtered or custom set) averages fewer, and its cell sits beside the others' as if it were comparable."""
    if not by:
        return
    present = scores[scores["category"].isin(CATEGORIES)].groupby(by)["category"].agg(frozenset)
    everywhere = frozenset().union(*present) if len(present) else frozenset()
    short = {k: sorted(everywhere - v, key=CATEGORIES.index) for k, v in present.items() if v != everywhere}
    if short:
        k, miss = next(iter(short.items()))
        log.warning("overall is the mean of the categories each group has, and %d group(s) lack some that others "
                    "have (e.g. %s: no %s), so their overall is not comparable with the others'; compare "
                    "categories, or score the same categories everywhere", len(short), k, ", ".join(miss))


def transfer_matrix(scores: pd.DataFrame, *, category: str = "overall", source_col: str = "source",
                    value: str = "accuracy", table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Source (RM's training language) x target (evaluation language) matrix of ``value`` for ``category``.

    ``table``: the :func:`accuracy_table` of ``scores`` by (source, lang), when the caller has it already.
    """
    choice("value", value, ACCURACY_COLUMNS)
    _check_scores(scores, [source_col, "lang"])
    table = accuracy_table(scores, by=(source_col, "lang")) if table is None else table
    sub = table[table["category"] == category]
    if sub.empty:
        raise ValueError(f"no rows for category {category!r}; expected one of {sorted(set(table['category']))}")
    m = sub.pivot(index=source_col, columns="lang", values=value)
    m.index.name, m.columns.name = "source", "target"
    return m


def category_table(table: pd.DataFrame, *, index: str = "lang", value: str = "accuracy") -> pd.DataFrame:
    """An :func:`accuracy_table` read across: one row per ``index`` value, one column per category in
    RewardBench's order (then any others), ``overall`` last."""
    choice("value", value, ACCURACY_COLUMNS)
    wide = table.pivot_table(index=index, columns="category", values=value)
    present = list(wide.columns)
    order = [c for c in CATEGORIES if c in present] + sorted(set(present) - set(CATEGORIES) - {"overall"})
    wide = wide[order + ["overall"] if "overall" in present else order]
    wide.columns.name = None
    return wide


def _paired(scores: pd.DataFrame, rm_a: str, rm_b: str, lang: str, source_col: str) -> pd.DataFrame:
    """One row per item RMs ``a`` and ``b`` both scored on ``lang``: ``id, category, subset?, a, b``."""
    sides = []
    for rm in (rm_a, rm_b):
        s = scores[(scores[source_col] == rm) & (scores["lang"] == lang)]
        if s.empty:
            raise ValueError(f"no scores of {rm!r} on {lang!r}; sources present: {sorted(set(scores[source_col]))}")
        if s["id"].duplicated().any():
            raise ValueError(f"{rm!r} scored item {s['id'][s['id'].duplicated()].iloc[0]!r} of {lang!r} more than "
                             "once (several seeds or backbones in one table?); compare one run at a time, e.g. "
                             "scores[scores.seed == 42]")
        sides.append(s.set_index("id"))
    common = sides[0].index.intersection(sides[1].index)
    if common.empty:
        raise ValueError(f"{rm_a!r} and {rm_b!r} share no item id on {lang!r}; compare RMs scored on the same "
                         "pairs (the same eval_source and split)")
    only = [len(side.index.difference(common)) for side in sides]
    if any(only):  # an RM whose evaluation read a subset (a limit, a filter): the difference is on the shared items
        log.warning("%r and %r were scored on different items of %r: comparing the %d they share (%d scored only by "
                    "%r, %d only by %r)", rm_a, rm_b, lang, len(common), only[0], rm_a, only[1], rm_b)
    cols = ["category"] + (["subset"] if "subset" in sides[0].columns else [])
    out = sides[0].loc[common, cols].reset_index()
    out["a"] = sides[0].loc[common, "correct"].to_numpy(bool)
    out["b"] = sides[1].loc[common, "correct"].to_numpy(bool)
    return out.assign(lang=lang, w=_weights(out))


def _compare(p: pd.DataFrame, *, groups, n_boot: int, seed: int) -> dict:
    p = p[_in_overall(p["category"].to_numpy())]  # overall accuracy's rows
    d = p["a"].to_numpy(float) - p["b"].to_numpy(float)
    cats, ids, w = p["category"].to_numpy(), p["id"].to_numpy(), p["w"].to_numpy()
    g = p["lang"].to_numpy() if groups else None
    lo, hi = ci_from_draws(stratified_boot(d, cats, ids, groups=g, weights=w, n_boot=n_boot, seed=seed))
    only_a, only_b = int((p["a"] & ~p["b"]).sum()), int((~p["a"] & p["b"]).sum())
    return {"n": len(p), "diff": stratified_mean(d, cats, ids, groups=g, weights=w), "ci_low": lo, "ci_high": hi,
            "only_a": only_a, "only_b": only_b,
            "p_value": signflip_p(d, cats, ids, groups=g, weights=w, n_perm=n_boot, seed=seed)}


def paired_difference(scores: pd.DataFrame, rm_a: str, rm_b: str, lang: str, *, source_col: str = "source",
                      n_boot: int = 2000, seed: int = 0) -> dict:
    """Overall accuracy of RM ``a`` minus RM ``b`` on the same items of ``lang``, with a bootstrap CI and the
    p-value of a paired sign-flip test of that same (category-weighted) difference. ``only_a`` / ``only_b``
    count the items only one RM gets right."""
    return {"lang": lang, "a": rm_a, "b": rm_b,
            **_compare(_paired(scores, rm_a, rm_b, lang, source_col), groups=False, n_boot=n_boot, seed=seed)}


def english_vs_target(scores: pd.DataFrame, *, english: str = "en", source_col: str = "source",
                      target_source: str = "{lang}", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The paper's headline: per target language t, acc(English RM on t) - acc(t's own RM on t), with CIs.

    ``target_source`` names the target RM from the language, e.g. ``"{lang}"`` (native) or ``"{lang}-mt"``
    (translate-train). The last row, ``lang="average"``, is the mean over targets; its interval and p-value
    resample (flip) each item in every language at once: an item's translations are not independent evidence.
    ``p_holm``: the languages' p-values adjusted for their number (:func:`xlrm_lib.stats.holm`); empty for the
    average, whose test is one, the headline (its ``p_value``).
    """
    if "{lang}" not in target_source or target_source.replace("{lang}", "").count("{"):
        raise ValueError(f"target_source = {target_source!r}; expected a name pattern with '{{lang}}' and no "
                         "other field, e.g. '{lang}' (native RMs) or '{lang}-mt' (translate-train RMs)")
    _check_scores(scores, [source_col, "lang", "id", "category", "correct"])
    sources = set(scores[source_col])
    if english not in sources:
        raise ValueError(f"no RM with {source_col}={english!r}; present: {sorted(sources)}")
    rows, pairs = [], []
    for lang in sorted(set(scores["lang"]) - {english}):
        target = target_source.format(lang=lang)
        if target not in sources:
            continue
        pairs.append(_paired(scores, english, target, lang, source_col))
        rows.append({"lang": lang, "a": english, "b": target,
                     **_compare(pairs[-1], groups=False, n_boot=n_boot, seed=seed)})
    if not rows:
        raise ValueError(f"no target-language RMs named like {target_source!r} among {sorted(sources)}")
    for row, p_holm in zip(rows, holm([r["p_value"] for r in rows])):  # one family: the languages' tests
        row["p_holm"] = float(p_holm)
    average = _compare(pd.concat(pairs, ignore_index=True), groups=True, n_boot=n_boot, seed=seed)
    rows.append({"lang": "average", "a": english, "b": target_source, **average, "p_holm": float("nan")})
    return pd.DataFrame(rows)
