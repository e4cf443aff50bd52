"""Tests for xlrm_lib.align (prompts, candidates, best-of-n, win rates) and its figure, on tiny in-process models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, PreTrainedTokenizerFast

from conftest import SHARED_DATA
from xlrm_lib import align
from xlrm_lib.data import load_pairs
from xlrm_lib.evaluate import score_texts
from xlrm_lib.formatting import TextFormat, encode
from xlrm_lib.models import load_reward_model
from xlrm_lib.plots.align import win_rate_bars

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "User", "Assistant", ":", "?", "."] + [f"w{i}" for i in range(40)]
EOS = 3


def _tokenizer(chat_template=None):
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = chat_template
    return tok


def _config(**kw):
    return LlamaConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512, pad_token_id=0,
                       bos_token_id=None, eos_token_id=None, **kw)


@pytest.fixture(scope="module")
def policy():
    """A tiny causal LM with no EOS: every sample runs to max_new_tokens."""
    torch.manual_seed(0)
    return LlamaForCausalLM(_config()).eval(), _tokenizer()


@pytest.fixture(scope="module")
def rms(tmp_path_factory):
    """Three tiny RMs saved and loaded the real way: "en" and "ko" are compared, "judge" is held out."""
    out = {}
    for seed, name in enumerate(["en", "ko", "judge"]):
        torch.manual_seed(seed)
        path = tmp_path_factory.mktemp(f"rm_{name}")
        LlamaForSequenceClassification(_config(num_labels=1, initializer_range=0.2)).save_pretrained(path)
        _tokenizer().save_pretrained(path)
        out[name] = load_reward_model(path)
    return out


PROMPTS = pd.DataFrame({"prompt_id": ["1", "2", "1", "2"], "lang": ["en", "en", "ko", "ko"],
                        "prompt": ["w1 w2 ?", "w3 ?", "w4 w5 w6 ?", "w7 ?"]})


def _gen(policy, tmp_path, **kw):
    model, tok = policy
    args = dict(n=3, max_new_tokens=4, temperature=1.0, top_p=0.9, seed=0, batch_size=4, cache_dir=tmp_path)
    return align.generate_candidates(model, tok, PROMPTS, **{**args, **kw})


# ----------------------------------------------------------------------------- prompts
def _write_prompts(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    return path


def test_load_parallel_prompts_long_table_and_limit(tmp_path):
    rows = [{"id": i, "dataset": "toy", "en": f"q{i}?", "ko": f"질문{i}?", "id_note": "x"} for i in range(6)]
    f = _write_prompts(tmp_path / "p.jsonl", rows)
    df = align.load_parallel_prompts(f, langs=["ko", "en"])
    assert list(df.columns) == ["prompt_id", "lang", "prompt"]
    assert len(df) == 12 and df["lang"].tolist()[:6] == ["ko"] * 6  # 'dataset' is not a language
    assert df.loc[(df.lang == "en") & (df.prompt_id == "3"), "prompt"].item() == "q3?"
    some = align.load_parallel_prompts(f, limit=3, seed=1)
    assert set(some["lang"]) == {"en", "ko"} and len(some) == 6
    assert set(some[some.lang == "en"].prompt_id) == set(some[some.lang == "ko"].prompt_id)
    assert some.equals(align.load_parallel_prompts(f, limit=3, seed=1))


def test_load_parallel_prompts_errors_name_the_problem(tmp_path):
    rows = [{"id": 1, "en": "q1?", "ko": "질문?"}, {"id": 2, "en": "q2?", "ko": "  "}, {"id": 3, "en": "q3?"}]
    f = _write_prompts(tmp_path / "p.jsonl", rows)
    with pytest.raises(ValueError, match=r"\['fr'\] not in p.jsonl; it has \['en', 'ko'\]"):
        align.load_parallel_prompts(f, langs=["en", "fr"])
    with pytest.raises(ValueError, match=r"ko: 2 \(ids \['2', '3'\]\)"):
        align.load_parallel_prompts(f, langs=["en", "ko"])
    assert len(align.load_parallel_prompts(f, langs=["en"])) == 3
    # a column is a language only when named by its code: 'source' or 'pt-BR' stay other columns; two columns of
    # one language are refused
    rows = [{"id": 1, "en": "q?", "kor_Hang": "질문?", "source": "web", "pt-BR": "p?"}]
    assert set(align.load_parallel_prompts(_write_prompts(tmp_path / "q.jsonl", rows))["lang"]) == {"en", "ko"}
    with pytest.raises(ValueError, match=r"\['pt'\] not in q.jsonl; it has \['en', 'ko'\] \(columns \['source', "
                                         r"'pt-BR'\] are not read as languages: name a language column by its code"):
        align.load_parallel_prompts(tmp_path / "q.jsonl", langs=["en", "pt"])
    with pytest.raises(ValueError, match=r"columns 'kor_Hang' and 'ko' are both language 'ko'; keep one"):
        align.load_parallel_prompts(_write_prompts(tmp_path / "r.jsonl", [{**rows[0], "ko": "질문?"}]))
    with pytest.raises(ValueError, match=r"s.jsonl: duplicate prompt ids \['1'\]; give every prompt \(row\) an id"):
        align.load_parallel_prompts(_write_prompts(tmp_path / "s.jsonl", [{"id": 1, "en": "a?"}, {"id": 1, "en": "b?"}]))


@pytest.mark.skipif(not (SHARED_DATA / "x_alpacaeval_parallel_13lang.jsonl").exists(), reason="no ../shared/data")
def test_load_parallel_prompts_on_x_alpacaeval():
    df = align.load_parallel_prompts(SHARED_DATA / "x_alpacaeval_parallel_13lang.jsonl",
                                     langs=["en", "ko", "zho_Hans", "es"], limit=5, seed=0)
    assert len(df) == 20 and list(dict.fromkeys(df["lang"])) == ["en", "ko", "zh", "es"]
    assert df.groupby("lang")["prompt_id"].apply(frozenset).nunique() == 1


# ----------------------------------------------------------------------------- candidates: pool
@pytest.fixture(scope="module")
def pairs():
    return load_pairs("embedded", split="test")


def test_candidate_pool_structure(pairs):
    pool = align.candidate_pool(pairs, n=5, seed=0)
    df = pairs.to_pandas()
    assert set(pool["lang"]) == set(df["lang"]) and pool["prompt_id"].nunique() == df["id"].nunique()
    sizes = pool.groupby(["prompt_id", "lang"]).size()
    assert (sizes == 5).all() and len(sizes) == len(df)
    gold = pool.groupby(["prompt_id", "lang"])["gold"].apply(sorted)
    assert all(g == [0, 0, 0, 1, 2] for g in gold)  # distractors 0, rejected 1, chosen 2
    # the same candidates, in the same order, in every language
    shape = pool.groupby(["prompt_id", "lang"])[["origin", "origin_id", "gold"]].apply(
        lambda g: tuple(map(tuple, g.to_numpy())))
    assert shape.groupby(level="prompt_id").nunique().eq(1).all()
    # distractors come from other items of the same category; texts are that language's
    d = pool[pool.origin == "distractor"]
    assert (d["origin_id"] != d["prompt_id"]).all()
    category = dict(zip(df["id"], df["category"]))
    assert (d["origin_id"].map(category) == d["prompt_id"].map(category)).all()
    ko = pool[(pool.lang == "ko") & (pool.origin == "chosen")].iloc[0]
    src = df[(df.id == ko.prompt_id) & (df.lang == "ko")].iloc[0]
    assert ko.text == src.chosen and ko.prompt[0]["content"] == src.prompt[0]["content"]
    # cand_id is shuffled: the chosen answer is not always first
    assert pool.loc[pool.origin == "chosen", "cand_id"].nunique() > 1


def test_candidate_pool_seed_limit_and_errors(pairs, caplog):
    a = align.candidate_pool(pairs, n=4, seed=0, limit=5)
    assert a["prompt_id"].nunique() == 5 and a.equals(align.candidate_pool(pairs, n=4, seed=0, limit=5))
    b = align.candidate_pool(pairs, n=4, seed=1)
    full = align.candidate_pool(pairs, n=4, seed=0)
    assert not full[["origin_id", "cand_id"]].equals(b[["origin_id", "cand_id"]])
    with pytest.raises(ValueError, match="n >= 4"):
        align.candidate_pool(pairs, n=3)
    with pytest.raises(ValueError, match="use n <= 48"):
        align.candidate_pool(pairs, n=49)
    # a language missing an item (English from RewardBench beside M-RewardBench): pools of the shared items
    partial = pairs.filter(lambda r: not (r["lang"] == "ko" and r["id"] == "chat-002"))
    with caplog.at_level("WARNING", logger="xlrm_lib.align"):
        shared = align.candidate_pool(partial, n=4, seed=0)
    assert "use the 95 items all of them share" in caplog.text
    assert "chat-002" not in set(shared["prompt_id"]) and shared.groupby("lang")["prompt_id"].nunique().eq(95).all()
    with pytest.raises(ValueError, match="not parallel: languages share 1 item id"):
        align.candidate_pool(pairs.filter(lambda r: r["lang"] != "ko" or r["id"] == "chat-002"), n=4)


def _pool_pairs(rows):
    return pd.DataFrame([{"id": i, "lang": lang, "category": cat, "prompt": [{"role": "user", "content": f"q {i}"}],
                          "chosen": c, "rejected": r} for i, cat, c, r in rows for lang in ("en", "sw")])


def test_a_distractor_never_repeats_a_candidates_text():
    # safety data repeat templated refusals: a distractor reading like the item's chosen answer would be a second
    # gold answer scored 0 (equal rewards, the tie to the lower cand_id), and two equal distractors tie
    refusal = "I can't help with that."
    rows = [("s1", "safety", refusal, "Here is how."), ("s2", "safety", refusal, "Sure: step one."),
            ("s3", "safety", "No.", "Fine, do this."), ("s4", "safety", "Please don't.", "Sure: step one."),
            ("s5", "safety", "That is unsafe.", "Okay, first."), ("s6", "safety", "Never.", "Alright.")]
    pairs = _pool_pairs(rows)
    # and a repeat in one language only (sw's translator wrote one refusal for two different English ones)
    sw_only = pairs.copy()
    sw_only.loc[(sw_only.lang == "en") & (sw_only.id == "s2"), "chosen"] = "I won't do that."
    for data in (pairs, sw_only):
        for n in (4, 6):
            for seed in range(6):
                pool = align.candidate_pool(data, n=n, seed=seed)
                for (item, lang), g in pool.groupby(["prompt_id", "lang"]):
                    assert g["text"].is_unique, (n, seed, item, lang, g["text"].tolist())


def test_a_category_too_small_for_the_pool_says_what_it_needs():
    rows = [("c1", "chat", "a", "b"), ("c2", "chat", "c", "d"), ("s1", "safety", "e", "f")]
    with pytest.raises(ValueError, match=r"best-of-n with n=4 needs 2 distractors per item, but category 'safety' "
                                         r"has only 0 other answer\(s\) .*\(1 item\(s\) in the category\): use a "
                                         r"source with more items of 'safety' \(each category needs at least 2\)"):
        align.candidate_pool(_pool_pairs(rows), n=4, seed=0)


# ----------------------------------------------------------------------------- candidates: policy
def test_generate_candidates_n_per_prompt_and_determinism(policy, tmp_path):
    c = _gen(policy, tmp_path / "a")
    assert list(c.columns) == align.CAND_COLUMNS
    assert (c.groupby(["prompt_id", "lang"])["cand_id"].apply(list) == [[0, 1, 2]] * 4).all()
    assert c["text"].str.split().str.len().between(1, 4).all()  # no EOS: 4 tokens each (<pad> decodes to "")
    assert c.equals(_gen(policy, tmp_path / "b"))  # same seed, fresh cache: same samples
    assert not c["text"].equals(_gen(policy, tmp_path / "c", seed=1)["text"])
    assert c.groupby(["prompt_id", "lang"])["text"].nunique().gt(1).all()  # distinct samples per prompt


def test_generate_candidates_do_not_depend_on_batching_or_n(policy, tmp_path):
    c = _gen(policy, tmp_path / "a", batch_size=5)
    assert c.equals(_gen(policy, tmp_path / "b", batch_size=1))
    more = _gen(policy, tmp_path / "c", n=5, batch_size=3)
    assert more[more.cand_id < 3].reset_index(drop=True).equals(c)


def test_generate_candidates_cache_hit_does_not_generate(policy, tmp_path, monkeypatch):
    model, _ = policy
    first = _gen(policy, tmp_path)
    assert len(list(tmp_path.rglob("*.json"))) == 4  # one file per (prompt, language)

    def boom(*a, **k):
        raise AssertionError("generate called on a cache hit")

    monkeypatch.setattr(model, "generate", boom)
    assert _gen(policy, tmp_path).equals(first)
    with pytest.raises(AssertionError, match="cache hit"):  # another seed is another key
        _gen(policy, tmp_path, seed=7)


def test_generate_candidates_bad_input(policy, tmp_path):
    model, tok = policy
    with pytest.raises(ValueError, match="n >= 2"):
        _gen(policy, tmp_path, n=1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        _gen(policy, tmp_path, temperature=0)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['prompt'\]"):
        align.generate_candidates(model, tok, PROMPTS.drop(columns="prompt"), n=2, cache_dir=tmp_path)


def test_empty_generations_raise_or_drop(tmp_path):
    torch.manual_seed(0)
    model = LlamaForCausalLM(_config()).eval()
    model.generation_config.eos_token_id = EOS
    # force EOS as the first token: every sample is empty
    model.lm_head.register_forward_hook(lambda mod, inp, out: out.index_fill(-1, torch.tensor([EOS]), 1e4))
    with pytest.raises(ValueError, match=r"8 empty generation\(s\) of 8"):
        align.generate_candidates(model, _tokenizer(), PROMPTS.iloc[:2], n=4, cache_dir=tmp_path, max_new_tokens=3)
    with pytest.raises(ValueError, match=r"no prompt kept 2 non-empty samples of the policy .*raise max_new_tokens"):
        align.generate_candidates(model, _tokenizer(), PROMPTS.iloc[:2], n=4, cache_dir=tmp_path, max_new_tokens=3,
                                  on_empty="drop")  # dropped, nothing is left to pick among


def test_policy_prompt_uses_the_chat_template_when_there_is_one():
    assert align.policy_prompt(_tokenizer(), "w1 ?") == ("User: w1 ?\n\nAssistant:", True)
    tok = _tokenizer("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }} {% endfor %}"
                     "{% if add_generation_prompt %}assistant :{% endif %}")
    assert align.policy_prompt(tok, "w1 ?") == ("user : w1 ? assistant :", False)


# ----------------------------------------------------------------------------- scoring and best-of-n
def test_score_candidates_uses_the_rm_format_and_batch_size_does_not_matter(rms, pairs):
    model, tok = rms["en"]
    pool = align.candidate_pool(pairs.filter(lambda r: r["lang"] in ("en", "ko")), n=4, seed=0, limit=3)
    scored = align.score_candidates(model, tok, pool, batch_size=5)
    seqs = encode(tok, list(pool["prompt"]), list(pool["text"]), TextFormat().resolved(tok))
    np.testing.assert_allclose(scored["reward"], score_texts(model, tok, seqs, batch_size=64), atol=1e-5)
    np.testing.assert_allclose(align.score_candidates(model, tok, pool, batch_size=1)["reward"], scored["reward"],
                               atol=1e-5)
    assert scored.drop(columns="reward").equals(pool)


def _cands(rewards, **extra):
    """One prompt in one language with the given rewards per cand_id."""
    return pd.DataFrame({"prompt_id": "p", "lang": "en", "cand_id": range(len(rewards)),
                         "text": [f"t{i}" for i in range(len(rewards))], "prompt": "q?", "reward": rewards, **extra})


def test_best_of_n_argmax_and_lowest_cand_id_wins_ties():
    scored = pd.concat([_cands([1.0, 3.0, 3.0, 2.0]),
                        _cands([0.5, -1.0]).assign(prompt_id="q"),
                        _cands([2.0, 2.0, 2.0]).assign(lang="ko")], ignore_index=True)
    picks = align.best_of_n(scored.sample(frac=1, random_state=0), rm="en")
    got = {(r.prompt_id, r.lang): (r.cand_id, r.n) for r in picks.itertuples()}
    assert got == {("p", "en"): (1, 4), ("q", "en"): (0, 2), ("p", "ko"): (0, 3)}
    assert (picks["rm"] == "en").all()


def test_best_of_n_bad_input():
    with pytest.raises(ValueError, match="n >= 2"):
        align.best_of_n(_cands([1.0]))
    with pytest.raises(ValueError, match="NaN"):
        align.best_of_n(_cands([1.0, np.nan]))
    with pytest.raises(ValueError, match="empty candidate text"):
        align.best_of_n(_cands([1.0, 2.0]).assign(text=["a", " "]))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['reward'\]"):
        align.best_of_n(_cands([1.0, 2.0]).drop(columns="reward"))


def test_random_picks_are_seeded_and_parallel(pairs):
    pool = align.candidate_pool(pairs, n=4, seed=0, limit=10)
    r = align.random_picks(pool, seed=3)
    assert len(r) == 80 and (r["rm"] == "random").all() and r.equals(align.random_picks(pool, seed=3))
    assert r.groupby("prompt_id")["cand_id"].nunique().eq(1).all()  # same candidate in every language
    assert not r["cand_id"].equals(align.random_picks(pool, seed=4)["cand_id"])


# ----------------------------------------------------------------------------- judging
def _picks(rows, rm):
    """rows: (prompt_id, lang, cand_id, gold)."""
    df = pd.DataFrame(rows, columns=["prompt_id", "lang", "cand_id", "gold"])
    return df.assign(text=[f"{p}-{lang}-{c}" for p, lang, c, _ in rows], prompt="q?", rm=rm)


A = _picks([("p1", "en", 0, 2), ("p2", "en", 1, 1), ("p3", "en", 2, 0), ("p4", "en", 3, 2), ("p5", "en", 0, 1),
            ("p1", "ko", 0, 2), ("p2", "ko", 2, 0)], "en")
B = _picks([("p1", "en", 1, 1), ("p2", "en", 1, 1), ("p3", "en", 0, 2), ("p4", "en", 0, 2), ("p5", "en", 2, 0),
            ("p1", "ko", 0, 2), ("p2", "ko", 1, 1)], "ko")


def test_win_rate_with_gold_labels_hand_computed():
    t = align.win_rate(A, B, "gold", n_boot=200).set_index("lang")
    # en: win, same pick, loss, equal gold, win -> (1 + .5 + 0 + .5 + 1) / 5; ko: same pick, loss -> .25
    assert t.loc["en", ["n", "wins", "ties", "losses"]].tolist() == [5, 2, 2, 1]
    assert t.loc["en", "win_rate"] == pytest.approx(0.6)
    assert t.loc["ko", "win_rate"] == pytest.approx(0.25)
    assert t.loc["average", "win_rate"] == pytest.approx((0.6 + 0.25) / 2)
    assert t.loc["en", "ci_low"] <= 0.6 <= t.loc["en", "ci_high"]
    assert (t["a"] == "en").all() and (t["b"] == "ko").all() and (t["judge"] == "gold").all()
    flipped = align.win_rate(B, A, "gold", n_boot=200).set_index("lang")
    np.testing.assert_allclose(flipped["win_rate"], 1 - t["win_rate"])
    np.testing.assert_allclose(flipped["p_value"], t["p_value"])  # a two-sided test: the same either way round
    # p-values of "no preference": ko's outcomes - 0.5 are (0, -.5), every sign flip keeps |mean| 0.25 -> p = 1;
    # en's are (.5, 0, -.5, 0, .5): an odd count of +-0.5 never sums to 0, so every flip reaches |mean| 0.1 -> 1
    assert t.loc["ko", "p_value"] == 1.0 and t.loc["en", "p_value"] == 1.0 and t.loc["en", "p_holm"] == 1.0
    assert np.isnan(t.loc["average", "p_holm"]) and 0 < t.loc["average", "p_value"] <= 1
    # 6 wins of 6: only the 2 sign patterns of 64 with one sign reach |mean| 0.5 -> p ~ 1/32, x2 for 2 languages
    wins = _picks([(f"p{i}", lang, 0, 2) for lang in ("en", "ko") for i in range(6)], "en")
    losses = _picks([(f"p{i}", lang, 1, 0) for lang in ("en", "ko") for i in range(6)], "ko")
    w = align.win_rate(wins, losses, "gold", n_boot=4000).set_index("lang")
    assert w.loc["en", "p_value"] == pytest.approx(1 / 32, abs=0.01) and w.loc["en", "win_rate"] == 1.0
    assert w.loc["ko", "p_holm"] == pytest.approx(2 * w.loc["ko", "p_value"])
    # the average flips a prompt in both languages at once (parallel prompts): still 2 of 64 patterns
    assert w.loc["average", "p_value"] == pytest.approx(1 / 32, abs=0.01)


def test_win_rate_with_a_held_out_judge_rms_scores():
    judge = pd.DataFrame({"prompt_id": ["p1"] * 3, "lang": "en", "cand_id": [0, 1, 2], "reward": [0.1, 0.9, 0.9]})
    a = _picks([("p1", "en", 0, 0)], "en").assign(prompt_id="p1")
    for b_cand, expected in [(1, 0.0), (0, 0.5)]:
        b = _picks([("p1", "en", b_cand, 0)], "ko")
        assert align.win_rate(a, b, judge.assign(rm="big-rm"), n_boot=50)["win_rate"].item() == expected
    b = _picks([("p1", "en", 2, 0)], "ko")
    a1 = _picks([("p1", "en", 1, 0)], "en")
    assert align.win_rate(a1, b, judge, n_boot=50)["win_rate"].item() == 0.5  # equal judge score: a tie
    with pytest.raises(ValueError, match="miss 1 picked"):
        align.win_rate(a, _picks([("p1", "en", 7, 0)], "ko"), judge, n_boot=50)


def test_win_rate_with_a_pairwise_judge_skips_identical_picks():
    class LongerIsBetter:
        name, calls = "longer", 0

        def compare(self, questions, x, y):
            self.calls += len(x)
            return np.array([len(a) - len(b) for a, b in zip(x, y)], dtype=float)

    judge = LongerIsBetter()
    a = A.assign(text=["long answer", "same", "s", "x", "tie", "same", "y"])
    b = B.assign(text=["short", "same", "longer one", "y", "tie", "same", "x"])
    t = align.win_rate(a, b, judge, n_boot=50).set_index("lang")
    assert t.loc["en", ["wins", "ties", "losses"]].tolist() == [1, 3, 1] and t.loc["ko", "ties"] == 2
    assert judge.calls == 4  # identical picks are ties without asking the judge


def test_a_mistyped_judge_is_refused_before_any_rm_is_loaded(tmp_path):
    from xlrm_lib import study

    never = {"en": str(tmp_path)}  # an empty folder: loading it would fail, the judge check must come first
    with pytest.raises(ValueError, match=r"judge = 'goldd'; expected 'gold'"):
        study.best_of_n_study(never, langs=["en"], judge="goldd")
    with pytest.raises(ValueError, match=r"n = 2; expected an integer >= 4"):
        study.best_of_n_study(never, langs=["en"], n=2)


def test_a_judge_that_is_a_compared_rm_is_refused():
    with pytest.raises(ValueError, match="would grade itself"):
        align.check_judge("en", ["en", "ko"])
    align.check_judge("judge", ["en", "ko"])
    scores = pd.DataFrame({"prompt_id": A.prompt_id, "lang": A.lang, "cand_id": A.cand_id, "reward": 1.0, "rm": "ko"})
    with pytest.raises(ValueError, match="'ko' is one of the compared RMs"):
        align.win_rate(A, B, scores, n_boot=10)
    with pytest.raises(ValueError, match="would grade itself"):
        align.headline_win_rates({"en": A, "ko": B}, "gold", judge_name="en")
    # unnamed, but its scores are RM-A's own rewards: the same model
    a = A.assign(reward=np.arange(len(A), dtype=float))
    own = a[["prompt_id", "lang", "cand_id", "reward"]]
    with pytest.raises(ValueError, match="equal the rewards of RM 'en' on every pick"):
        align.win_rate(a, B, pd.concat([own, own.assign(cand_id=B.cand_id, reward=-1.0)]).drop_duplicates(
            ["prompt_id", "lang", "cand_id"]), n_boot=10)


def test_win_rate_bad_input():
    with pytest.raises(ValueError, match="needs a 'gold' column"):
        align.win_rate(A.drop(columns="gold"), B.drop(columns="gold"), "gold")
    with pytest.raises(ValueError, match="1 only in A, 0 only in B"):
        align.win_rate(A, B.iloc[1:], "gold")
    with pytest.raises(ValueError, match="unknown judge 'gpt'"):
        align.win_rate(A, B, "gpt")


def test_headline_and_vs_random_tables():
    de = A.assign(lang=A.lang.replace({"ko": "de"}), rm="de")
    picks = {"en": pd.concat([A, de[de.lang == "de"]]), "ko": B, "de": de}
    h = align.headline_win_rates(picks, "gold", n_boot=200)
    assert h["lang"].tolist() == ["ko", "de", "average"] and h["b"].tolist() == ["ko", "de", "{lang}"]
    assert h.set_index("lang")["win_rate"].tolist() == pytest.approx([0.25, 0.5, 0.375])
    with pytest.raises(ValueError, match="no target-language RMs named like '{lang}-mt'"):
        align.headline_win_rates(picks, "gold", target_fmt="{lang}-mt")
    rnd = B.assign(rm="random")
    table = align.win_rate_table({"en": A, "ko": B}, rnd, "gold", n_boot=50)
    assert set(table["a"]) == {"en", "ko"} and (table["b"] == "random").all()
    assert table[(table.a == "ko")]["win_rate"].eq(0.5).all()  # the same picks: all ties


def test_average_ci_resamples_prompts_jointly_across_languages():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, size=(200, 2))
    rows_a = [(f"p{i}", lang, 0, gold[i, 0]) for lang in ("en", "ko", "zh") for i in range(200)]
    rows_b = [(f"p{i}", lang, 1, gold[i, 1]) for lang in ("en", "ko", "zh") for i in range(200)]
    t = align.win_rate(_picks(rows_a, "x"), _picks(rows_b, "y"), "gold", n_boot=1000).set_index("lang")
    # identical outcomes in every language: the average is no more certain than one language
    width = t["ci_high"] - t["ci_low"]
    assert width["average"] == pytest.approx(width["en"], rel=0.15)


def test_an_average_draw_without_a_languages_prompts_is_set_aside():
    # ko: 30 prompts, all won; zh: 1 prompt, lost. The average is 0.5; draws without zh's prompt averaged ko
    # alone (1.0): 37% of them, so the interval was (0.5, 1.0) around outcomes that never vary
    outcomes = pd.DataFrame({"prompt_id": [f"k{i}" for i in range(30)] + ["z0"], "lang": ["ko"] * 30 + ["zh"],
                             "outcome": [1.0] * 30 + [0.0]})
    draws = align._average_draws(outcomes, n_boot=2000, seed=0)
    assert np.allclose(draws[np.isfinite(draws)], 0.5) and 0.2 < np.isnan(draws).mean() < 0.6
    from xlrm_lib.stats import ci_from_draws

    assert ci_from_draws(draws) == pytest.approx((0.5, 0.5))


def test_end_to_end_on_the_pool_with_tiny_rms(rms, pairs):
    pool = align.candidate_pool(pairs.filter(lambda r: r["lang"] in ("en", "ko")), n=4, seed=0, limit=6)
    picks = {name: align.best_of_n(align.score_candidates(*rms[name], pool), rm=name) for name in ("en", "ko")}
    judge_scores = align.score_candidates(*rms["judge"], pool).assign(rm="judge")
    for judge in ("gold", judge_scores):
        h = align.headline_win_rates(picks, judge, n_boot=100)
        assert h["lang"].tolist() == ["ko"] and h["n"].item() == 6
        assert 0 <= h["ci_low"].item() <= h["win_rate"].item() <= h["ci_high"].item() <= 1
    with pytest.raises(ValueError, match="would grade itself"):
        align.headline_win_rates(picks, align.score_candidates(*rms["ko"], pool).assign(rm="ko"))
    vs = align.win_rate_table(picks, align.random_picks(pool, seed=0), "gold", n_boot=50)
    assert len(vs) == 2 * 3  # 2 RMs x (en, ko, average)


def test_win_rate_bars():
    t = align.win_rate_table({"en": A, "ko": B}, B.assign(rm="random"), "gold", n_boot=50)
    fig = win_rate_bars(t)
    assert isinstance(fig, go.Figure) and [tr.name for tr in fig.data] == ["en", "ko"]
    assert list(fig.data[0].x) == ["en", "ko", "average"]
    assert any(s.y0 == 0.5 and s.y1 == 0.5 for s in fig.layout.shapes)
    with pytest.raises(ValueError, match="missing"):
        win_rate_bars(t.drop(columns="ci_low"))


@pytest.mark.slow
def test_packaged_gemma_policy_and_judge(monkeypatch, tmp_path):
    """The offline default policy end to end: a few samples and a pairwise judgement (real 270M weights)."""
    monkeypatch.delenv("XLRM_CACHE", raising=False)  # reuse the converted backbone in the default cache
    from xlrm_lib.judges import PairwiseLMJudge

    model, tok = align.load_policy("gemma3-270m")
    c = align.generate_candidates(model, tok, PROMPTS.iloc[:2], n=2, max_new_tokens=6, cache_dir=tmp_path,
                                  on_empty="drop")
    assert set(c["cand_id"]) <= {0, 1}
    scores = PairwiseLMJudge(model, tok, name="gemma").score_pairs(load_pairs("embedded", langs=["ko"], limit=2))
    assert np.isfinite(scores["margin"]).all()


def test_random_baseline_is_uniform_over_the_pool():
    # candidate_pool places the chosen answer with an RNG seeded "{seed}:{item}"; random_picks once reused that very
    # stream and picked distractors 51.6% of the time over these 14,400 draws (expected 50%, sd 0.42 points)
    from xlrm_lib import data

    pairs = data.load_pairs("embedded", langs=["en"], split="test")
    picks = [align.random_picks(align.candidate_pool(pairs, n=4, seed=s), seed=s) for s in range(150)]
    origin = pd.concat(picks)["origin"]
    assert len(origin) == 14400
    assert abs((origin == "distractor").mean() - 0.5) < 0.0105  # 2.5 sd
    assert abs((origin == "chosen").mean() - 0.25) < 0.009


def test_picks_from_different_candidate_tables_are_told_apart_by_text():
    # two policies' tables: cand_id 0 is a different answer in each
    a = _picks([("p1", "en", 0, 2)], "en").assign(text="answer of policy A")
    b = _picks([("p1", "en", 0, 0)], "ko").assign(text="answer of policy B")
    assert align.judge_outcomes(a, b, "gold")["outcome"].tolist() == [1.0]  # not a tie: gold 2 vs 0
    judge = pd.DataFrame({"prompt_id": "p1", "lang": "en", "cand_id": [0], "text": ["answer of policy A"],
                          "reward": [1.0]})
    with pytest.raises(ValueError, match="miss 1 picked candidate.*matched by prompt_id, lang, cand_id and text"):
        align.judge_outcomes(a, b, judge)  # B's pick is not in the judge's table, whatever its cand_id
    same = align.judge_outcomes(a, b.assign(text="answer of policy A", cand_id=3), "gold")
    assert same["outcome"].tolist() == [0.5]  # the same answer: a tie


def test_generation_cache_key_covers_the_stop_tokens(policy, tmp_path):
    model, tok = policy
    _gen(policy, tmp_path)
    before = model.generation_config.eos_token_id
    try:
        model.generation_config.eos_token_id = 5  # samples are cut at other tokens: other samples
        _gen(policy, tmp_path)
    finally:
        model.generation_config.eos_token_id = before
    assert len(list(tmp_path.rglob("*.json"))) == 8  # 4 prompts x 2 keys


def test_best_of_n_study_refuses_what_cannot_judge_or_compare(tmp_path):
    from xlrm_lib import study

    with pytest.raises(ValueError, match="rm_dirs is empty"):
        study.best_of_n_study({}, langs=["en", "ko"])
    # one directory given as a string (papermill -p rm_dirs <dir>): said before the candidate pools are built
    with pytest.raises(ValueError, match=r"rm_dirs = '.*' is a str; expected a mapping of RM names to model dir"):
        study.best_of_n_study(str(tmp_path), langs=["en"])
    with pytest.raises(FileNotFoundError, match=r"rm_dirs\['ko'\] = '.*nope' is not a directory"):
        study.best_of_n_study({"en": str(tmp_path), "ko": str(tmp_path / "nope")}, langs=["en"])
    with pytest.raises(ValueError, match=r"rm_dirs = \['.*'\] is a list"):
        study.representation_shift("me5-small", [str(tmp_path)], {"en": ["a"]})
    with pytest.raises(ValueError, match="'me5-small' is a packaged base model, without a trained score head"):
        study.best_of_n_study({"en": str(tmp_path)}, langs=["en"], judge="me5-small")
    base = tmp_path / "base"  # a base causal LM (no score head) given as a judge
    LlamaForCausalLM(_config()).save_pretrained(base)
    _tokenizer().save_pretrained(base)
    with pytest.raises(ValueError, match="has no trained reward head .*score.weight"):
        load_reward_model(base, require_head=True)
    load_reward_model(base)  # a backbone to train: a fresh head is what it needs


def test_a_bf16_checkpoint_loads_as_a_float32_policy(policy, tmp_path):
    """transformers 5 keeps a hub checkpoint's bf16; in bf16 a prompt's logits move with its batch-mates and the
    seeded sampler picks other tokens, so samples depended on batch_size (5 of 9 the same at 1 vs 9)."""
    import copy

    model, tok = policy
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(tmp_path / "p")  # the fixture stays float32
    tok.save_pretrained(tmp_path / "p")
    loaded, _ = align.load_policy(str(tmp_path / "p"))
    assert next(loaded.parameters()).dtype == torch.float32
    assert next(align.load_policy(str(tmp_path / "p"), dtype="bfloat16")[0].parameters()).dtype == torch.bfloat16


def test_the_best_of_n_notebooks_first_table_is_never_empty():
    # with one language there is no "average" row: the notebook's table of averages showed nothing
    from xlrm_lib import study

    one = pd.DataFrame({"lang": ["ko"], "a": ["en"], "win_rate": [0.6]})
    two = pd.DataFrame({"lang": ["ko", "zh", "average"], "a": "en", "win_rate": [0.6, 0.4, 0.5]})
    assert study.average_rows(one).equals(one)
    assert study.average_rows(two)["lang"].tolist() == ["average"]


def test_pick_origins_count_what_each_rm_picked_beside_a_random_picks_expectation():
    picks = pd.DataFrame({"prompt_id": ["p1", "p2", "p3", "p4"] * 2, "lang": "ko", "n": [4, 4, 4, 6] * 2,
                          "rm": ["en"] * 4 + ["ko"] * 4,
                          "origin": ["chosen", "chosen", "distractor", "rejected",
                                     "distractor", "distractor", "distractor", "chosen"]})
    t = align.pick_origins(picks).set_index("rm")
    assert list(t.index) == ["en", "ko", "random (expected)"]  # the RMs' order, not sorted
    assert t.loc["en", ["picks", "chosen", "rejected", "distractor"]].tolist() == [4, 0.5, 0.25, 0.25]
    assert t.loc["ko", ["chosen", "rejected", "distractor"]].tolist() == [0.25, 0.0, 0.75]  # none rejected: 0
    # pools of 4, 4, 4 and 6: chosen (1/4 x 3 + 1/6) / 4; distractor (2/4 x 3 + 4/6) / 4
    assert t.loc["random (expected)", "chosen"] == pytest.approx((0.75 + 1 / 6) / 4)
    assert t.loc["random (expected)", "distractor"] == pytest.approx((1.5 + 4 / 6) / 4)
    assert align.pick_origins(picks.drop(columns="origin")).empty  # generated candidates: no origins


# ----------------------------------------------------------------------------- added by mutation testing
def test_win_rate_intervals_use_the_seed_given():
    from xlrm_lib.stats import bootstrap_ci, ci_from_draws

    # en's outcomes of A over B: win, same pick, loss, equal gold, win (see test_win_rate_with_gold_labels_...)
    en = np.array([1.0, 0.5, 0.0, 0.5, 1.0])
    for seed in (0, 5):
        t = align.win_rate(A, B, "gold", n_boot=300, seed=seed).set_index("lang")
        assert (t.loc["en", "ci_low"], t.loc["en", "ci_high"]) == pytest.approx(bootstrap_ci(en, n_boot=300, seed=seed))
        draws = align._average_draws(align.judge_outcomes(A, B, "gold"), n_boot=300, seed=seed)
        assert (t.loc["average", "ci_low"], t.loc["average", "ci_high"]) == pytest.approx(ci_from_draws(draws))
    assert bootstrap_ci(en, n_boot=300, seed=5) != bootstrap_ci(en, n_boot=300, seed=0)  # seeds are told apart
    assert ci_from_draws(align._average_draws(align.judge_outcomes(A, B, "gold"), n_boot=300, seed=5)) != \
        ci_from_draws(align._average_draws(align.judge_outcomes(A, B, "gold"), n_boot=300, seed=0))


def test_pick_origins_random_row_counts_one_rms_picks():
    # two RMs pick from the same 4 pools: a random pick's expectation is over those 4 picks, not the 8 of both
    picks = pd.DataFrame({"prompt_id": ["p1", "p2", "p3", "p4"] * 2, "lang": "ko", "n": [4, 4, 4, 6] * 2,
                          "rm": ["en"] * 4 + ["ko"] * 4, "origin": ["chosen"] * 8})
    assert align.pick_origins(picks).set_index("rm").loc["random (expected)", "picks"] == 4


def _parallel_pairs(path, ids=("a", "b", "c"), langs=("en", "ko")):
    rows = [{"id": i, "lang": lang, "category": "chat", "prompt": f"w{k} w{k + 1} ?" if lang == "en" else f"w{k + 9} ?",
             "chosen": f"w{k + 2} w{k + 3}", "rejected": f"w{k + 4}"} for k, i in enumerate(ids) for lang in langs]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_item_prompts_are_the_items_candidate_pool_draws_in_every_language(tmp_path):
    pairs = load_pairs(str(_parallel_pairs(tmp_path / "p.jsonl", ids=tuple("abcdefgh"))), split="test")
    got = align.item_prompts(pairs, limit=3, seed=5)
    pool = align.candidate_pool(pairs, n=4, seed=5, limit=3)
    assert list(got.columns) == ["prompt_id", "lang", "prompt"]
    assert sorted(set(got["prompt_id"])) == sorted(set(pool["prompt_id"]))  # the same seed: the same items
    assert got.groupby("lang")["prompt_id"].apply(list).to_dict() == {"en": sorted(set(pool["prompt_id"]))} | {
        "ko": sorted(set(pool["prompt_id"]))}
    first = got.iloc[0]  # each language's own text of the item's prompt
    k = "abcdefgh".index(first["prompt_id"])
    assert first["lang"] == "en" and first["prompt"] == [{"role": "user", "content": f"w{k} w{k + 1} ?"}]
    assert len(align.item_prompts(pairs)) == 16
    with pytest.raises(ValueError, match=r"limit = 0; expected an integer >= 1 \(None keeps all\)"):
        align.item_prompts(pairs, limit=0)


@pytest.fixture(scope="module")
def bon(policy, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bon")
    model, tok = policy
    model.save_pretrained(tmp_path / "policy")
    tok.save_pretrained(tmp_path / "policy")
    dirs = {}
    for seed, name in enumerate(["en", "ko", "judge"]):
        torch.manual_seed(seed)
        LlamaForSequenceClassification(_config(num_labels=1, initializer_range=0.2)).save_pretrained(tmp_path / name)
        _tokenizer().save_pretrained(tmp_path / name)
        dirs[name] = str(tmp_path / name)
    args = dict(langs=["en", "ko"], source=str(_parallel_pairs(tmp_path / "pairs.jsonl")), n=2,
                policy=str(tmp_path / "policy"), judge=dirs["judge"], max_new_tokens=4, temperature=1.0, top_p=0.9,
                seed=0, batch_size=8)
    return tmp_path, {k: dirs[k] for k in ("en", "ko")}, args


def test_best_of_n_study_samples_its_candidates_from_a_policy(bon):
    # the paper's set-up: a policy samples n answers per prompt, each RM picks one, a held-out judge grades the
    # picks; it existed only as library functions no notebook or params file could reach
    from xlrm_lib import study

    tmp_path, rms, args = bon
    args, dirs, data = {**args, "n": 3}, {**rms, "judge": args["judge"]}, args["source"]
    tables = study.best_of_n_study(rms, **args)
    # what the library's own steps give: the benchmark's prompts, the policy's samples, each RM's argmax
    prompts = align.item_prompts(load_pairs(data, langs=["en", "ko"], split="test"), seed=0)
    cands = align.generate_candidates(str(tmp_path / "policy"), None, prompts, n=3, max_new_tokens=4,
                                      temperature=1.0, top_p=0.9, seed=0, batch_size=8)
    assert len(cands) == 3 * 3 * 2 and not set(cands["text"]) & {"w2 w3", "w4"}  # samples, not benchmark answers
    picks = tables["picks"]
    for name in ("en", "ko"):
        rm, rm_tok = load_reward_model(dirs[name])
        expected = align.best_of_n(align.score_candidates(rm, rm_tok, cands), rm=name)
        got = picks[picks["rm"] == name].reset_index(drop=True)
        assert got[["prompt_id", "lang", "text"]].equals(expected[["prompt_id", "lang", "text"]])
    assert {"vs_random", "headline_native"} <= set(tables) and "pick_origins" not in tables  # no pool origins
    assert set(tables["vs_random"]["judge"]) == {dirs["judge"]}
    # a prompt file instead of the benchmark's items; n = 2 is enough for samples
    f = _write_prompts(tmp_path / "q.jsonl", [{"id": "x", "en": "w1 ?", "ko": "w2 ?"}, {"id": "y", "en": "w3 ?", "ko": "w4 ?"}])
    two = study.best_of_n_study(rms, **{**args, "source": "nowhere-unread", "prompts": str(f), "n": 2})
    assert sorted(set(two["picks"]["prompt_id"])) == ["x", "y"]
    with pytest.raises(ValueError, match=r"judge = 'gold' grades pool candidates by their benchmark labels; a policy's "
                                         r"samples \(policy = '.*policy'\) have none: give a held-out judge RM"):
        study.best_of_n_study(rms, **{**args, "judge": "gold"})
    with pytest.raises(ValueError, match=r"n = 1; expected an integer >= 2"):
        study.best_of_n_study(rms, **{**args, "n": 1})
    with pytest.raises(ValueError, match=r"is one of the compared RMs: it would grade itself; use a held-out judge RM "
                                         r"\(e.g. one trained in another run"):  # the same directory, written otherwise
        study.best_of_n_study(rms, **{**args, "judge": rms["en"] + "/"})
    with pytest.raises(ValueError, match=r"policy = 'me5-small' is a packaged encoder, not a causal LM"):
        study.best_of_n_study(rms, **{**args, "policy": "me5-small"})
    with pytest.raises(ValueError, match=r"top_p = 1.5; expected a number in \(0, 1\]"):
        study.best_of_n_study(rms, **{**args, "top_p": 1.5})
    with pytest.raises(ValueError, match=r"prompts = '.*nope.jsonl' is not a file"):
        study.best_of_n_study(rms, **{**args, "prompts": str(tmp_path / "nope.jsonl")})


def test_a_large_policy_may_sample_in_bf16_and_its_samples_are_cached_apart(bon, monkeypatch):
    # a 7B policy was always loaded in float32 (~30 GB) for the paper's best-of-n
    from xlrm_lib import generate, study

    tmp_path, rms, args = bon
    real, dtypes = generate.load_policy, []
    monkeypatch.setattr(generate, "load_policy",
                        lambda p, dtype="float32", **k: dtypes.append(dtype) or real(p, dtype=dtype, **k))
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "bf16-cache"))
    half = study.best_of_n_study(rms, **args, policy_bf16=True)
    full = study.best_of_n_study(rms, **args)
    assert dtypes == ["bfloat16", "float32"]
    roots = list((tmp_path / "bf16-cache" / "generations").iterdir())
    assert len(roots) == 2  # one cache folder per model fingerprint: a bf16 sample is never served as float32's
    assert set(half) == set(full)
    assert study.candidate_labels(policy="p", prompts="", source="s", split="test", max_new_tokens=4, temperature=1.0,
                                  top_p=0.9, policy_bf16=True)["candidates"] == "samples of p (bfloat16)"
    with pytest.raises(ValueError, match=r"policy_bf16 = 'yes'; expected one of \[True, False\]"):
        study.best_of_n_study(rms, **args, policy_bf16="yes")
    with pytest.raises(ValueError, match=r"policy_bf16 = True sets how a policy loads, but no policy is given"):
        study.best_of_n_study(rms, **{**args, "policy": "", "judge": "gold", "n": 4}, policy_bf16=True)


def test_a_plain_format_policy_sample_ends_where_it_starts_the_next_user_turn(policy, tmp_path, monkeypatch):
    # gemma3-270m (no chat template) answered "Water it.\n\nUser: And then?\n\nAssistant: ..." and the RMs scored
    # the invented turns as the answer; with a chat template its EOS ends the turn and nothing is cut
    from xlrm_lib import generate

    said = "Water it daily.\n\nUser: And in winter?\n\nAssistant: Less."
    monkeypatch.setattr(generate, "_sample", lambda model, tok, texts, specials, **kw: [[said, "Fine."] for _ in texts])
    model, tok = policy
    plain = align.generate_candidates(model, tok, PROMPTS.head(1), n=2, cache_dir=tmp_path / "a")
    assert plain["text"].tolist() == ["Water it daily.", "Fine."]
    chat = _tokenizer(chat_template="{% for m in messages %}{{ m['content'] }} {% endfor %}")
    templated = align.generate_candidates(model, chat, PROMPTS.head(1), n=2, cache_dir=tmp_path / "b")
    assert templated["text"].tolist() == [said, "Fine."]


# ----------------------------------------------------------------------------------- gaps a mutation review found
def test_the_sampler_divides_the_logits_by_the_temperature():
    from xlrm_lib.generate import _SeededSampler

    class Draw:  # a generator that always draws u = 0.2
        def random(self):
            return 0.2

    scores = torch.tensor([[0.0, float(np.log(3.0))]])  # p = (1/4, 3/4) at temperature 1
    pick = lambda t: int(_SeededSampler([Draw()], t, 1.0)(None, scores).argmax())  # noqa: E731
    assert pick(1.0) == 0  # cdf (0.25, 1): u = 0.2 falls on token 0
    assert pick(0.5) == 1  # logits x 2: p = (0.1, 0.9), cdf (0.1, 1): token 1 (x 0.5 would give (0.37, 0.63): 0)


def test_generate_candidates_takes_top_p_1_and_refuses_no_new_tokens_or_an_unknown_on_empty():
    empty = pd.DataFrame(columns=["prompt_id", "lang"])
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['prompt'\]"):  # past the sampling checks
        align.generate_candidates(object(), None, empty, top_p=1.0)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1, got 0"):
        align.generate_candidates(object(), None, empty, max_new_tokens=0)
    with pytest.raises(ValueError, match="on_empty must be 'raise' or 'drop', got 'skip'"):
        align.generate_candidates(object(), None, empty, on_empty="skip")


def test_generation_cache_key_covers_the_temperature(policy, tmp_path):
    _gen(policy, tmp_path, temperature=1.0)
    _gen(policy, tmp_path, temperature=0.5)  # other samples, not the cached ones of temperature 1
    assert len(list(tmp_path.rglob("*.json"))) == 8


def test_samples_stop_at_the_tokenizers_eos_when_the_model_names_none():
    from types import SimpleNamespace

    from xlrm_lib.generate import _stop_ids

    policy = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=None))
    assert _stop_ids(policy, SimpleNamespace(eos_token_id=3, pad_token_id=None)) == ({3}, 3)
    assert _stop_ids(policy, SimpleNamespace(eos_token_id=3, pad_token_id=0)) == ({3}, 0)


def test_a_judge_given_as_a_compared_rms_directory_is_refused(tmp_path):
    from xlrm_lib import study

    (tmp_path / "en").mkdir()
    (tmp_path / "ko").mkdir()
    with pytest.raises(ValueError, match="is one of the compared RMs: it would grade itself"):
        study.best_of_n_study({"en": str(tmp_path / "en"), "ko": str(tmp_path / "ko")}, langs=["en", "ko"],
                              judge=str(tmp_path / "en"))


def test_a_prompt_left_with_one_sample_is_dropped_not_the_whole_best_of_n(bon, monkeypatch, caplog):
    # study passes on_empty="drop", yet a (prompt, lang) left with < 2 samples (a plain-format sample cut to ""
    # at its own "User:" turn) made align refuse every candidate; the samples are cached, so each rerun fails too
    from xlrm_lib import generate, study

    tmp_path, rms, args = bon
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache1"))
    monkeypatch.setattr(generate, "_sample", lambda model, tok, texts, specials, **kw: [
        ["w5", "\n\nUser: w9 ?"] if i == 0 else ["w5", "w6 w7"] for i, _ in enumerate(texts)])
    tables = study.best_of_n_study(rms, **args)
    picks = tables["picks"]
    assert ("a", "en") not in set(zip(picks["prompt_id"], picks["lang"]))
    assert len(set(zip(picks["prompt_id"], picks["lang"]))) == 5


def test_a_policy_whose_samples_are_all_empty_is_an_error_naming_it(bon, monkeypatch):
    from xlrm_lib import generate, study

    tmp_path, rms, args = bon
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache2"))
    monkeypatch.setattr(generate, "_sample", lambda model, tok, texts, specials, **kw: [["", " "] for _ in texts])
    with pytest.raises(ValueError, match=r"policy.*max_new_tokens"):  # was: "candidates: no rows"
        study.best_of_n_study(rms, **args)


def test_example_picks_puts_each_rms_pick_beside_its_prompt():
    picks = pd.DataFrame({
        "rm": ["en", "en", "en", "ko", "ko", "ko"], "prompt_id": ["b", "a", "c", "b", "a", "c"],
        "lang": ["ko"] * 6, "cand_id": [0, 1, 0, 1, 1, 0],
        "text": ["x" * 10, "short", "s", "y", "also short", "t"],
        "prompt": [[{"role": "user", "content": "Q b?"}], "Q a?", "Q c?", [{"role": "user", "content": "Q b?"}],
                   "Q a?", "Q c?"]})
    got = align.example_picks(picks, k=2, width=6)
    assert got.to_dict("records") == [  # the first 2 ids; texts cut at 6 characters
        {"prompt_id": "a", "lang": "ko", "prompt": "Q a?", "en": "short", "ko": "also …"},
        {"prompt_id": "b", "lang": "ko", "prompt": "Q b?", "en": "xxxxx…", "ko": "y"}]
    without = align.example_picks(picks.drop(index=4), k=2, width=6)  # ko picked nothing for "a"
    assert without.loc[0, ["prompt", "en", "ko"]].tolist() == ["Q a?", "short", "—"]
    # a multi-turn prompt showed only its last user turn: "And then?" without what it follows
    chat = [{"role": "user", "content": "Plant it?"}, {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "And then?"}]
    turns = align.example_picks(picks.assign(prompt=[chat] * 6), k=1, width=60)
    assert turns.loc[0, "prompt"] == "User: Plant it?\nAssistant: Yes.\nUser: And then?"
    assert align.example_picks(picks.assign(prompt=[chat] * 6), k=1, width=12).loc[0, "prompt"] == "…: And then?"


def test_example_picks_takes_the_first_numbered_ids_in_numeric_order():
    # a prompt file without an 'id' column numbers its rows "0", "1", ..., "11": sorted as text the "first 3"
    # were 0, 1 and 10
    ids = [str(i) for i in range(12)]
    picks = pd.DataFrame({"rm": "en", "prompt_id": ids, "lang": "en", "cand_id": 0, "text": "t", "prompt": "Q?"})
    assert align.example_picks(picks, k=3)["prompt_id"].tolist() == ["0", "1", "2"]
    assert align.example_picks(picks.assign(prompt_id=range(12)), k=3)["prompt_id"].tolist() == [0, 1, 2]
