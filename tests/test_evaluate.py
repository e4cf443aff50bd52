"""xlrm_lib.evaluate: the strict tie rule, category weighting, transfer matrices, English-vs-target, and
batch-size invariance of scoring on tiny real models."""

from __future__ import annotations

import itertools

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import CHAT_TEMPLATE, make_pairs, save_model, tiny_llama, word_tokenizer
from xlrm_lib.evaluate import (SCORE_COLUMNS, accuracy_table, category_table, english_vs_target, model_format,
                               paired_difference, score_pairs, subset_weights, transfer_matrix)
from xlrm_lib.formatting import TextFormat
from xlrm_lib.models import load_reward_model


def table(rows, **const):
    """A score table from (id, lang, category, correct[, tie]) tuples."""
    df = pd.DataFrame([{"id": r[0], "lang": r[1], "category": r[2], "correct": bool(r[3]),
                        "tie": bool(r[4]) if len(r) > 4 else False} for r in rows])
    for k, v in const.items():
        df[k] = v
    return df


# ----------------------------------------------------------------------------- ties
def test_equal_rewards_are_a_tie_and_wrong(tiny_bert_dir):
    model, tok = load_reward_model(tiny_bert_dir)
    # "zzz" and "qqq" are both <unk>: identical token ids, so identical rewards
    pairs = make_pairs([{"chosen": "zzz", "rejected": "qqq"}, {"chosen": "good w1", "rejected": "good w1"},
                        {"chosen": "great w2 w3", "rejected": "awful"}])
    s = score_pairs(model, tok, pairs, source="en")
    assert list(s.columns) == SCORE_COLUMNS + ["source"]
    assert (s["reward_chosen"].iloc[:2] == s["reward_rejected"].iloc[:2]).all()
    assert s["correct"].tolist()[:2] == [False, False]
    assert s["tie"].tolist() == [True, True, False]
    assert s["correct"].iloc[2] == (s["reward_chosen"].iloc[2] > s["reward_rejected"].iloc[2])
    acc = accuracy_table(s, n_boot=50)
    assert acc.loc[acc["category"] == "overall", "ties"].item() == 2


def test_pairs_equal_after_truncation_are_ties(tiny_bert_dir):
    # the answers differ only at the start; keeping the END of 8 tokens makes their ids identical
    model, tok = load_reward_model(tiny_bert_dir)
    tail = " ".join(f"w{i}" for i in range(1, 12))
    pairs = make_pairs([{"chosen": "good " + tail, "rejected": "bad " + tail},
                        {"chosen": "great " + tail, "rejected": "awful " + tail}] * 3)
    s = score_pairs(model, tok, pairs, fmt=TextFormat("plain", 8), batch_size=5)
    assert s["tie"].all() and not s["correct"].any()
    assert (s["margin"] == 0).all()


def test_tie_rule_in_accuracy_table():
    # two ties and one strict win: accuracy 1/3, not 2/3 (ties are wrong) and ties reported apart
    s = table([("a", "ko", "chat", 0, 1), ("b", "ko", "chat", 0, 1), ("c", "ko", "chat", 1)], source="en")
    acc = accuracy_table(s, n_boot=50).set_index("category")
    assert acc.loc["chat", "accuracy"] == pytest.approx(1 / 3)
    assert acc.loc["chat", "ties"] == 2 and acc.loc["overall", "ties"] == 2


# ----------------------------------------------------------------------------- category weighting
def test_accuracy_table_category_weighting():
    rows = ([("k%d" % i, "ko", "chat", c) for i, c in enumerate([1, 1, 1, 0])]          # 3/4
            + [("k1%d" % i, "ko", "safety", c) for i, c in enumerate([1, 0])]           # 1/2
            + [("k20", "ko", "reasoning", 0, 1)]                                         # 0/1, a tie
            + [("e%d" % i, "es", "chat", c) for i, c in enumerate([1, 1])]               # 2/2
            + [("e1%d" % i, "es", "safety", c) for i, c in enumerate([1, 1, 1, 0, 0, 0])]  # 3/6
            + [("e20", "es", "mystery", 1)])                                             # unknown category last
    acc = accuracy_table(table(rows, source="en"), n_boot=200)
    assert list(acc.columns) == ["source", "lang", "category", "n", "accuracy", "ci_low", "ci_high", "ties"]
    ko = acc[acc["lang"] == "ko"].set_index("category")
    assert list(ko.index) == ["chat", "safety", "reasoning", "overall"]  # RewardBench order
    assert ko["n"].tolist() == [4, 2, 1, 7]
    assert ko.loc["chat", "accuracy"] == pytest.approx(0.75)
    assert ko.loc["safety", "accuracy"] == pytest.approx(0.5)
    assert ko.loc["reasoning", "accuracy"] == pytest.approx(0.0)
    # overall = mean of the category accuracies (0.75 + 0.5 + 0) / 3, NOT the row mean 4/7
    assert ko.loc["overall", "accuracy"] == pytest.approx(1.25 / 3)
    assert ko.loc["overall", "ties"] == 1
    es = acc[acc["lang"] == "es"].set_index("category")
    assert list(es.index) == ["chat", "safety", "mystery", "overall"]
    # RewardBench's overall is the mean of its four categories: another one has its row but stays out of it
    assert es["n"].tolist() == [2, 6, 1, 8]
    assert es.loc["overall", "accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    own = accuracy_table(table([("a", "es", "helpful", 1), ("b", "es", "helpful", 1), ("c", "es", "honest", 0)]),
                         n_boot=20).set_index("category")  # only a dataset's own categories: their mean
    assert own.loc["overall", "accuracy"] == pytest.approx(0.5) and own.loc["overall", "n"] == 3
    assert (acc["ci_low"] <= acc["accuracy"] + 1e-12).all() and (acc["accuracy"] <= acc["ci_high"] + 1e-12).all()


def test_paired_difference_compares_overall_accuracy_rows():
    # the paired comparison's rows are overall accuracy's: a fifth category does not move it
    rows = [("a", "ko", "chat", 1), ("b", "ko", "safety", 0), ("x", "ko", "mystery", 1)]
    s = pd.concat([table(rows, source="en"), table([(i, l, c, 0) for i, l, c, _ in rows], source="ko")])
    d = paired_difference(s, "en", "ko", "ko", n_boot=50)
    assert d["diff"] == pytest.approx(0.5) and d["n"] == 2  # (1 + 0) / 2 - 0; the mystery win is left out


def test_accuracy_table_without_group_columns_and_missing_columns():
    s = table([("a", "ko", "chat", 1), ("b", "ko", "safety", 0)])  # no "source" column
    acc = accuracy_table(s, by=("source",), n_boot=20)
    assert acc.set_index("category").loc["overall", "accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="lacks column"):
        accuracy_table(s.drop(columns=["tie"]))


# ----------------------------------------------------------------------------- transfer matrix
def test_transfer_matrix_shape_and_values():
    rows = []
    for src, accs in {"en": {"en": [1, 1], "ko": [1, 0], "zh": [0, 0]},
                      "ko": {"en": [1, 0], "ko": [1, 1], "zh": [1, 0]}}.items():
        for lang, cs in accs.items():
            rows += [(f"{lang}{i}", lang, "chat", c, 0, src) for i, c in enumerate(cs)]
            rows += [(f"{lang}s", lang, "safety", 1, 0, src)]
    s = pd.DataFrame(rows, columns=["id", "lang", "category", "correct", "tie", "source"]).astype(
        {"correct": bool, "tie": bool})
    m = transfer_matrix(s)
    assert m.shape == (2, 3)
    assert m.index.name == "source" and m.columns.name == "target"
    assert list(m.index) == ["en", "ko"] and list(m.columns) == ["en", "ko", "zh"]
    # overall = (chat + safety) / 2 with safety always 1
    expected = {("en", "en"): 1.0, ("en", "ko"): 0.75, ("en", "zh"): 0.5,
                ("ko", "en"): 0.75, ("ko", "ko"): 1.0, ("ko", "zh"): 0.75}
    for (src, tgt), v in expected.items():
        assert m.loc[src, tgt] == pytest.approx(v)
    chat = transfer_matrix(s, category="chat")
    assert chat.loc["en", "zh"] == pytest.approx(0.0)
    assert transfer_matrix(s, value="n").loc["en", "ko"] == 3
    with pytest.raises(ValueError, match="expected one of"):
        transfer_matrix(s, category="reasoning")


# ----------------------------------------------------------------------------- English vs target
def _evt_table():
    rows = []
    ko_cats = ["chat", "chat", "safety", "safety"]
    for i, (cat, a, b) in enumerate(zip(ko_cats, [1, 1, 1, 0], [0, 1, 0, 0])):
        rows += [(f"k{i}", "ko", cat, a, 0, "en"), (f"k{i}", "ko", cat, b, 0, "ko")]
    zh_cats = ["chat", "reasoning", "reasoning"]
    for i, (cat, a, b) in enumerate(zip(zh_cats, [0, 1, 1], [1, 1, 0])):
        rows += [(f"z{i}", "zh", cat, a, 0, "en"), (f"z{i}", "zh", cat, b, 0, "zh")]
    rows += [("e0", "en", "chat", 1, 0, "en"), ("e0", "en", "chat", 0, 0, "ko")]  # English rows are not targets
    return pd.DataFrame(rows, columns=["id", "lang", "category", "correct", "tie", "source"]).astype(
        {"correct": bool, "tie": bool})


def test_english_vs_target_hand_computed():
    out = english_vs_target(_evt_table(), n_boot=4000).set_index("lang")
    assert list(out.index) == ["ko", "zh", "average"]
    # ko: per-item diff [1, 0 | 1, 0] -> chat 0.5, safety 0.5 -> 0.5
    assert out.loc["ko", "diff"] == pytest.approx(0.5)
    assert (out.loc["ko", "only_a"], out.loc["ko", "only_b"], out.loc["ko", "n"]) == (2, 0, 4)
    # sign flips of the two nonzero items (k0, k2): T = (s0 + s2) / 4 reaches |0.5| in 2 of 4 patterns
    assert out.loc["ko", "p_value"] == pytest.approx(0.5, abs=0.03)
    # zh: chat -1, reasoning (0 + 1) / 2 -> (-1 + 0.5) / 2 = -0.25; every flip gives |T| >= 0.25
    assert out.loc["zh", "diff"] == pytest.approx(-0.25)
    assert (out.loc["zh", "only_a"], out.loc["zh", "only_b"]) == (1, 1)
    assert out.loc["zh", "p_value"] == pytest.approx(1.0)
    # average: mean of the per-language differences; the test flips the 4 nonzero items of both languages
    avg = out.loc["average"]
    assert avg["diff"] == pytest.approx((0.5 - 0.25) / 2)
    assert (avg["n"], avg["only_a"], avg["only_b"]) == (7, 3, 1)
    extreme = [abs(((k0 + k2) / 4 + (-z0 + z2 / 2) / 2) / 2) >= 0.125 - 1e-12
               for k0, k2, z0, z2 in itertools.product([-1, 1], repeat=4)]
    assert avg["p_value"] == pytest.approx(np.mean(extreme), abs=0.03)
    assert avg["b"] == "{lang}"
    # Holm over the 2 languages: ko's 0.5 x 2 = 1.0, zh's 1.0 x 1 = 1.0; the average is one test, not adjusted
    assert out.loc["ko", "p_holm"] == pytest.approx(min(1.0, 2 * out.loc["ko", "p_value"]))
    assert out.loc["zh", "p_holm"] == pytest.approx(1.0) and np.isnan(avg["p_holm"])
    for lang in out.index:
        assert out.loc[lang, "ci_low"] <= out.loc[lang, "diff"] + 1e-12 <= out.loc[lang, "ci_high"] + 2e-12


def test_english_vs_target_named_targets_and_errors():
    s = _evt_table()
    s.loc[s["source"] == "ko", "source"] = "ko-mt"
    out = english_vs_target(s, target_source="{lang}-mt", n_boot=100)
    assert out["lang"].tolist() == ["ko", "average"]
    assert out["diff"].tolist() == pytest.approx([0.5, 0.5])
    with pytest.raises(ValueError, match="no RM with source='fr'"):
        english_vs_target(s, english="fr")
    with pytest.raises(ValueError, match="no target-language RMs"):
        english_vs_target(s, target_source="{lang}-native")
    with pytest.raises(ValueError, match="sources present"):
        paired_difference(s, "en", "xx", "ko")


# ----------------------------------------------------------------------------- scoring
PAIRS = [
    {"prompt": "w1 w2", "chosen": "good w3", "rejected": "bad"},
    {"prompt": " ".join(f"w{i}" for i in range(40)), "chosen": "great", "rejected": "awful w4 w5"},
    {"prompt": "w6 ?", "chosen": "w7 w8 w9 w10 w11 w12", "rejected": "w13"},
    {"prompt": "w14", "chosen": "w15 w16 .", "rejected": "w17 , w18 w19 w20 w21 w22 w23 w24"},
    {"prompt": "w25 w26 w27 w28", "chosen": "good", "rejected": "bad"},
    {"prompt": "w29", "chosen": "w30 w31 w32 w33 w34 w35 w36 w37 w38 w39 w40", "rejected": "w41 !"},
    {"prompt": "w42 w43", "chosen": "w44", "rejected": "w45 w46"},
    {"prompt": "User : w47", "chosen": "great great", "rejected": "awful"},
    {"prompt": "w0", "chosen": "w1", "rejected": "w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15"},
]


@pytest.mark.parametrize("which", ["bert", "llama"])
def test_score_pairs_batch_size_invariance(which, tiny_bert_dir, tiny_llama_dir):
    model, tok = load_reward_model(tiny_bert_dir if which == "bert" else tiny_llama_dir)
    pairs = make_pairs(PAIRS)
    a = score_pairs(model, tok, pairs, batch_size=1)
    b = score_pairs(model, tok, pairs, batch_size=7)
    for col in ("reward_chosen", "reward_rejected", "margin"):
        assert np.abs(a[col].to_numpy() - b[col].to_numpy()).max() <= 1e-4
    assert a["id"].tolist() == [f"p{i}" for i in range(len(PAIRS))]  # input order, not length order
    assert (a["len_chosen"] == b["len_chosen"]).all()
    assert a["margin"].to_numpy() == pytest.approx((a["reward_chosen"] - a["reward_rejected"]).to_numpy())
    assert a["reward_chosen"].std() > 1e-3  # the rewards are not all the same value
    frame = pairs.to_pandas().iloc[::-1]  # a pandas table (load_pairs(...).to_pandas(), filtered) is scored too
    c = score_pairs(model, tok, frame, batch_size=7).set_index("id").loc[a["id"]]
    assert np.abs(c["margin"].to_numpy() - a["margin"].to_numpy()).max() <= 1e-4


def test_an_encoder_is_scored_right_padded_whatever_its_tokenizer_says(tiny_bert_dir):
    # BERT's classifier reads position 0: under a left-padding tokenizer a short row's reward was the padding's
    model, tok = load_reward_model(tiny_bert_dir)
    pairs = make_pairs(PAIRS)
    right = score_pairs(model, tok, pairs, batch_size=7)
    tok.padding_side = "left"
    left = score_pairs(model, tok, pairs, batch_size=7)
    assert np.abs(left["reward_chosen"].to_numpy() - right["reward_chosen"].to_numpy()).max() <= 1e-5


@pytest.mark.parametrize("which", ["bert", "llama"])
def test_bf16_scoring_keeps_float32_rewards(which, tiny_bert_dir, tiny_llama_dir):
    # the score head's last projection runs in float32: rewards rounded to bf16 (3 significant digits) tied and
    # swapped nearly equal pairs
    import torch

    model, tok = load_reward_model(tiny_bert_dir if which == "bert" else tiny_llama_dir)
    pairs = make_pairs(PAIRS)
    exact = score_pairs(model, tok, pairs)["reward_chosen"].to_numpy()
    half = score_pairs(model, tok, pairs, bf16=True)["reward_chosen"].to_numpy()
    as_bf16 = torch.tensor(half).to(torch.bfloat16).double().numpy()
    assert (as_bf16 != half).any()  # not bf16 values
    assert np.abs(half - exact).max() < 0.1  # a bf16 body: close, not equal


def test_score_pairs_uses_the_recorded_format(tmp_path, tiny_llama_dir):
    # a decoder whose tokenizer has a chat template, but whose RM recorded "plain": scoring must use plain
    path = save_model(tmp_path / "rm", tiny_llama(), word_tokenizer("llama", chat_template=CHAT_TEMPLATE))
    model, tok = load_reward_model(path)
    pairs = make_pairs([{"prompt": "w1 w2", "chosen": "good", "rejected": "bad w3"}])
    chat = score_pairs(model, tok, pairs)
    assert model_format(model).template == "auto"
    assert chat["len_chosen"].item() == 10  # <s> user : w1 w2 </s> assistant : good </s>
    TextFormat("plain", 64).save(path)
    assert model_format(model) == TextFormat("plain", 64)
    plain = score_pairs(model, tok, pairs)
    assert plain["len_chosen"].item() == 8  # <s> User : w1 w2 Assistant : good
    assert plain["reward_chosen"].item() != pytest.approx(chat["reward_chosen"].item(), abs=1e-6)
    shutil.rmtree(path)


def test_score_pairs_rejects_empty(tiny_bert_dir):
    model, tok = load_reward_model(tiny_bert_dir)
    with pytest.raises(ValueError, match="no pairs"):
        score_pairs(model, tok, make_pairs([]))


def test_score_pairs_names_missing_columns_before_scoring(tiny_bert_dir, monkeypatch):
    import datasets

    from xlrm_lib import evaluate

    model, tok = load_reward_model(tiny_bert_dir)
    monkeypatch.setattr(evaluate, "score_texts", lambda *a, **k: pytest.fail("scored before the check"))
    bare = datasets.Dataset.from_list([{"prompt": "w1", "chosen": "good", "rejected": "bad"}])
    with pytest.raises(ValueError, match=r"lack column\(s\) \['id', 'lang', 'category', 'subset'\]; .*load_pairs"):
        score_pairs(model, tok, bare)


def test_an_rm_not_trained_here_is_told_its_texts_are_cut(tiny_bert_dir, caplog):
    model, tok = load_reward_model(tiny_bert_dir)  # saved by the tests, without a text-format file
    with caplog.at_level("WARNING", logger="xlrm_lib.evaluate"):
        assert model_format(model) == TextFormat()
    assert "texts are cut to the default 256 tokens" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="xlrm_lib.evaluate"):
        assert model_format(model, default=TextFormat(max_length=64)).max_length == 64
    assert caplog.text == ""


def test_bad_arguments_are_named_before_scoring(tiny_bert_dir):
    model, tok = load_reward_model(tiny_bert_dir)
    pairs = make_pairs(PAIRS)
    with pytest.raises(TypeError, match=r"model is the path .*; pass the loaded model and tokenizer"):
        score_pairs(str(tiny_bert_dir), tok, pairs)
    for bad in (0, -1, 2.5):  # range(0, n, -1) is empty: unscored rewards used to come back as garbage
        with pytest.raises(ValueError, match=rf"batch_size = {bad}; expected an integer >= 1"):
            score_pairs(model, tok, pairs, batch_size=bad)
    s = table([("a", "ko", "chat", 1), ("b", "ko", "safety", 0)], source="en")
    with pytest.raises(ValueError, match=r"by names column\(s\) \['lnag'\]"):
        accuracy_table(s, by=("lnag",))
    assert accuracy_table(s, by="lang", n_boot=20)["lang"].tolist() == ["ko"] * 3  # a string is one column
    with pytest.raises(ValueError, match="n_boot = 0; expected an integer >= 1"):
        accuracy_table(s, n_boot=0)
    with pytest.raises(ValueError, match=r"value = 'acc'; expected one of \['accuracy'"):
        transfer_matrix(s, value="acc")
    with pytest.raises(ValueError, match=r"target_source = '\{language\}'; expected a name pattern with '\{lang\}'"):
        english_vs_target(s, target_source="{language}")


def test_a_nan_reward_is_an_error_not_a_cache_miss(tiny_bert_dir):
    import torch

    model, tok = load_reward_model(tiny_bert_dir)
    with torch.no_grad():
        model.classifier.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match=r"rewards are NaN"):
        score_pairs(model, tok, make_pairs(PAIRS))


# ----------------------------------------------------------------------------- weighting and resampling units
def test_reasoning_counts_math_prm_as_much_as_all_code_like_rewardbench():
    # RewardBench's EXAMPLE_COUNTS: math-prm 984 ("upweighting to be equal to code") = 6 code subsets x 164
    cats = ["reasoning"] * 5 + ["chat"]
    subsets = ["math-prm", "math-prm", "hep-python", "hep-go", "hep-rust", "math-prm"]  # a chat row named so: 1
    assert subset_weights(cats, subsets).tolist() == [1.5, 1.5, 1, 1, 1, 1]
    assert subset_weights(cats[:2], subsets[:2]).tolist() == [1, 1]  # no code scored: plain rows
    assert subset_weights(cats).tolist() == [1] * 6  # no subset column
    s = pd.DataFrame({"id": list("abcde"), "lang": "en", "source": "en", "category": "reasoning", "tie": False,
                      "subset": ["math-prm", "math-prm", "hep-python", "hep-go", "hep-rust"],
                      "correct": [True, True, False, False, False]})
    # math 2/2 and code 0/3 count half each: 0.5, where the row mean would be 0.4
    row = accuracy_table(s, n_boot=50).set_index("category").loc["reasoning"]
    assert row["accuracy"] == pytest.approx(0.5) and row["n"] == 5


def test_math_prm_weights_reach_the_intervals_and_the_p_value_not_only_the_point_estimates():
    from xlrm_lib.stats import ci_from_draws, signflip_p, stratified_boot

    # reasoning: 10 math-prm items right, 2 code items wrong (math-prm rows weigh 2/10 each); chat: 2 of 4 right
    cats = np.array(["reasoning"] * 12 + ["chat"] * 4)
    subsets = ["math-prm"] * 10 + ["hep-python", "hep-go"] + ["chat"] * 4
    ids = np.array([f"i{k:02d}" for k in range(16)])
    x = np.r_[np.ones(10), np.zeros(2), 1, 1, 0, 0]
    w = np.r_[np.full(10, 0.2), np.ones(6)]  # by hand: code rows / math-prm rows = 2 / 10
    s = pd.DataFrame({"id": ids, "lang": "en", "source": "en", "category": cats, "subset": subsets, "tie": False,
                      "correct": x.astype(bool)})
    overall = accuracy_table(s, n_boot=400, seed=3).set_index("category").loc["overall"]
    weighted = ci_from_draws(stratified_boot(x, cats, ids, weights=w, n_boot=400, seed=3))
    unweighted = ci_from_draws(stratified_boot(x, cats, ids, n_boot=400, seed=3))
    assert overall["accuracy"] == pytest.approx(0.5)  # (0.5 + 0.5) / 2
    assert (overall["ci_low"], overall["ci_high"]) == pytest.approx(weighted) and weighted != pytest.approx(unweighted)
    # RM b: math-prm wrong, code right, chat 2 of 4 (one item each way): weighted, a - b is 0 in both categories (p = 1), where
    # the row mean would favour a (8 of 12 reasoning items)
    b = np.r_[np.zeros(10), np.ones(2), 0, 1, 1, 0]
    pair = pd.concat([s, s.assign(source="ko", correct=b.astype(bool))], ignore_index=True)
    out = paired_difference(pair, "en", "ko", "en", n_boot=400, seed=3)
    d = x - b
    assert out["diff"] == pytest.approx(0.0)
    assert (out["ci_low"], out["ci_high"]) == pytest.approx(ci_from_draws(stratified_boot(d, cats, ids, weights=w,
                                                                                          n_boot=400, seed=3)))
    assert out["p_value"] == 1.0 > signflip_p(d, cats, ids, n_perm=400, seed=3)


def test_a_category_of_a_handful_of_items_is_said_to_have_an_interval_that_says_little(caplog):
    one = pd.DataFrame({"id": [f"i{k}" for k in range(13)], "lang": "sw", "source": "en", "tie": False,
                        "category": ["chat"] * 12 + ["safety"], "correct": [True, False] * 6 + [True]})
    with caplog.at_level("WARNING", logger="xlrm_lib.evaluate"):
        t = accuracy_table(one, n_boot=100).set_index("category")
    assert (t.loc["safety", "ci_low"], t.loc["safety", "ci_high"]) == (0.025, 1.0)  # 1 of 1: Clopper-Pearson
    assert "1 group(s) x category have fewer than 10 items (e.g. ('en', 'sw', 'safety'): 1)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="xlrm_lib.evaluate"):
        accuracy_table(one[one.category == "chat"], n_boot=100)
    assert "fewer than" not in caplog.text


def test_an_accuracy_of_0_or_1_gets_clopper_pearsons_interval_where_the_bootstrap_has_no_width():
    # 24 of 24 right: every resample is all right, so the percentile interval was [1, 1] (drawn as no error bar)
    cats = ["chat"] * 24 + ["safety"] * 24
    t = accuracy_table(pd.DataFrame({"id": [f"i{k}" for k in range(48)], "lang": "ko", "source": "en", "tie": False,
                                     "category": cats, "correct": [True] * 24 + [False] * 24}),
                       n_boot=200).set_index("category")
    assert t.loc["chat", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.025 ** (1 / 24), 1.0])  # 0.858
    assert t.loc["safety", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.0, 1 - 0.025 ** (1 / 24)])
    assert t.loc["overall", ["ci_low", "ci_high"]].tolist() == pytest.approx(  # the mean of the two
        [0.025 ** (1 / 24) / 2, 1 - 0.025 ** (1 / 24) / 2])
    near = accuracy_table(pd.DataFrame({"id": [f"i{k}" for k in range(24)], "lang": "ko", "source": "en",
                                        "tie": False, "category": "chat", "correct": [True] * 23 + [False]}),
                          n_boot=200).set_index("category")
    assert near.loc["chat", "ci_high"] == 1.0 and near.loc["chat", "ci_low"] < 23 / 24  # 23/24: the bootstrap's


def test_accuracy_table_counts_items_and_resamples_them_across_pooled_seeds():
    rng = np.random.default_rng(0)
    one = pd.DataFrame({"id": [f"i{k}" for k in range(40)], "lang": "ko", "source": "en", "tie": False,
                        "category": np.repeat(["chat", "safety"], 20), "correct": rng.random(40) < 0.6})
    seeds = pd.concat([one.assign(seed=s) for s in (1, 2, 3)], ignore_index=True)  # three seeds that agree
    a, b = accuracy_table(one, n_boot=300), accuracy_table(seeds, n_boot=300)
    assert b["n"].tolist() == a["n"].tolist() == [20, 20, 40]  # items, not rows
    pd.testing.assert_frame_equal(a.drop(columns="ties"), b.drop(columns="ties"))  # the same evidence, same CIs
    assert (b["ties"] == 3 * a["ties"]).all()
    shuffled = accuracy_table(seeds.sample(frac=1, random_state=4), n_boot=300)
    pd.testing.assert_frame_equal(shuffled, b)  # the row order does not move an interval


def test_english_vs_target_average_does_not_depend_on_row_order_and_pairs_one_run():
    rng = np.random.default_rng(3)
    rows = []
    for lang in ("ko", "zh", "de"):
        for i in range(30):
            cat = "chat" if i < 18 else "safety"
            rows += [(f"q{i}", lang, cat, rng.random() < 0.7, False, "en"),
                     (f"q{i}", lang, cat, rng.random() < 0.6, False, lang)]
    s = pd.DataFrame(rows, columns=["id", "lang", "category", "correct", "tie", "source"])
    s = s[~((s["lang"] == "zh") & s["id"].isin(["q0", "q20"]))]  # uneven languages, as in M-RewardBench
    a = english_vs_target(s, n_boot=400)
    b = english_vs_target(s.sample(frac=1, random_state=1), n_boot=400)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="more than once .* compare one run at a time"):
        paired_difference(pd.concat([s.assign(seed=1), s.assign(seed=2)]), "en", "ko", "ko")


def test_notebook_entry_points_name_an_empty_required_parameter(tmp_path, monkeypatch):
    from xlrm_lib import study

    with pytest.raises(ValueError, match="model_dir is empty: set it in the notebook's parameters cell"):
        study.evaluate_rm("", rm_name="en", eval_source="embedded", eval_langs=["en"])
    with pytest.raises(FileNotFoundError, match="model_dir 'no/such/dir' is not a directory"):
        study.evaluate_rm("no/such/dir", rm_name="en", eval_source="embedded", eval_langs=["en"])
    with pytest.raises(ValueError, match="rm_dirs is empty: set it in the notebook's parameters cell"):
        study.representation_shift("me5-small", {}, {"en": ["a"]})
    # JupyterLab starts a kernel in notebooks/: the notebooks work from the repository root, like `xlrm run`
    import datasets
    import plotly.io as pio
    import transformers

    root = Path(study.__file__).resolve().parents[1]
    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)
    verbosity = transformers.utils.logging.get_verbosity()
    try:
        monkeypatch.setattr(study, "_STARTED_IN", {})
        monkeypatch.chdir(root / "notebooks")
        study.setup_notebook()
        assert Path.cwd() == root
        assert study.notebook_dir(tmp_path / "out") == root / "notebooks"  # where its links are read from
        monkeypatch.chdir(tmp_path)  # anywhere else: left alone
        monkeypatch.setattr(study, "_STARTED_IN", {})
        study.setup_notebook()
        assert Path.cwd() == tmp_path and study.notebook_dir("out") == tmp_path / "out"  # rendered in output_dir
        assert transformers.utils.logging.get_verbosity() == transformers.logging.ERROR
    finally:  # the rest of this process keeps its warnings and progress bars
        transformers.utils.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()
        datasets.enable_progress_bars()


def test_cell_notebooks_of_a_run_share_its_plotly_js(tmp_path, monkeypatch):
    # embedded once per notebook, plotly.js (4.9 MB) made the default run's rendered notebooks 225 MB
    import plotly.graph_objects as go
    import plotly.io as pio

    from xlrm_lib import plots, study

    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)
    cell = tmp_path / "run" / "evaluate" / "me5-small-s42-en"
    cell.mkdir(parents=True)
    shown = []
    monkeypatch.setattr(plots, "_show_html", shown.append)
    study.setup_notebook(cell)  # no shared file yet: plotly.js once, in setup_notebook's output; figures use it
    assert pio.renderers.default == "xlrm_html+plotly_mimetype"
    assert len(shown) == 1 and len(shown[0]) > 1_000_000 and 'src="http' not in shown[0]
    fig = go.Figure(go.Bar(y=[1])).to_dict()
    html = pio.renderers["xlrm_html"].to_mimebundle(fig)["text/html"]
    assert len(html) < 20_000 and "Plotly.newPlot" in html
    assert 'src="http' not in html  # plotly's notebook renderer loaded MathJax from a CDN per figure
    (tmp_path / "run" / "figures").mkdir()
    (tmp_path / "run" / "figures" / "plotly.min.js").write_text("//")
    study.setup_notebook(cell)
    html = pio.renderers["xlrm_html"].to_mimebundle(fig)["text/html"]
    assert 'src="../../figures/plotly.min.js"' in html and len(html) < 20_000 and len(shown) == 1
    study.setup_notebook(cell, shared_plotly=False)  # the report: its HTML travels alone, plotly.js embedded
    assert len(shown) == 2 and len(shown[1]) > 1_000_000


def test_rms_that_share_no_item_are_named():
    s = pd.DataFrame({"id": ["a", "b"], "lang": "ko", "category": "chat", "correct": [True, False], "tie": False,
                      "source": ["en", "ko"]})
    with pytest.raises(ValueError, match="'en' and 'ko' share no item id on 'ko'"):
        paired_difference(s, "en", "ko", "ko")


def test_rms_scored_on_different_items_are_compared_on_the_shared_ones_and_said_so(caplog):
    s = pd.DataFrame({"id": ["a", "b", "c", "a", "b"], "lang": "ko", "category": "chat", "tie": False,
                      "correct": [True, False, True, False, False], "source": ["en"] * 3 + ["ko"] * 2})
    with caplog.at_level("WARNING", logger="xlrm_lib.evaluate"):
        r = paired_difference(s, "en", "ko", "ko", n_boot=50)
    assert r["n"] == 2 and r["diff"] == pytest.approx(0.5)  # items a, b: (1 - 0 + 0 - 0) / 2
    assert ("'en' and 'ko' were scored on different items of 'ko': comparing the 2 they share (1 scored only by "
            "'en', 0 only by 'ko')") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="xlrm_lib.evaluate"):
        paired_difference(s[s["id"] != "c"], "en", "ko", "ko", n_boot=50)
    assert "different items" not in caplog.text


def test_relative_position_encoders_have_no_length_cap():
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    from xlrm_lib.arch import position_limit

    cfg = DebertaV2Config(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, max_position_embeddings=16, position_biased_input=False,
                          relative_attention=True, num_labels=1)
    assert position_limit(DebertaV2ForSequenceClassification(cfg)) is None  # mDeBERTa: runs past 16 tokens


def test_evaluate_rm_refuses_a_base_model_and_reads_a_hub_rm_at_max_length(tmp_path):
    """A hub id or directory without a trained head was scored by a random head (~50%, no warning), and an RM
    without a saved xlrm format was cut to 256 tokens whatever the notebook wanted."""
    from transformers import LlamaModel

    from xlrm_lib import study

    base = save_model(tmp_path / "base", LlamaModel(tiny_llama().config), word_tokenizer("llama"))
    with pytest.raises(ValueError, match="has no trained reward head"):
        study.evaluate_rm(base, rm_name="en", eval_source="embedded", eval_langs=["en"])
    hub_rm = save_model(tmp_path / "hub-rm", tiny_llama(), word_tokenizer("llama"))  # a head, no xlrm format
    langs = ["en"]
    short = study.evaluate_rm(hub_rm, rm_name="x", eval_source="embedded", eval_langs=langs, max_length=16)
    full = study.evaluate_rm(hub_rm, rm_name="x", eval_source="embedded", eval_langs=langs, max_length=2048)
    assert short["len_chosen"].max() == 16 and full["len_chosen"].max() > 16
    half = study.evaluate_rm(hub_rm, rm_name="x", eval_source="embedded", eval_langs=langs, max_length=2048, bf16=True)
    diff = (half["reward_chosen"] - full["reward_chosen"]).abs()
    assert 0 < diff.max() < 0.05  # bfloat16 autocast: other numbers (not the float32 ones from the reward cache)
    with pytest.raises(ValueError, match=r"bf16 = 'yes'; expected one of \[True, False\]"):
        study.evaluate_rm(hub_rm, rm_name="x", eval_source="embedded", eval_langs=langs, bf16="yes")


def test_a_decoder_with_a_learned_position_table_is_capped():
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from xlrm_lib.arch import position_limit

    cfg = GPT2Config(n_positions=32, n_embd=16, n_layer=1, n_head=2, vocab_size=50, bos_token_id=0,
                     eos_token_id=0, num_labels=1)
    assert position_limit(GPT2ForSequenceClassification(cfg)) == 32  # indexed past it: IndexError


def test_a_nan_reward_in_a_score_table_is_refused():
    # NaN > x and NaN == x are both False: the pair counted as wrong, not as a tie, without a word
    t = pd.DataFrame({"id": ["a", "b"], "source": "en", "lang": "ko", "category": "chat",
                      "reward_chosen": [np.nan, 1.0], "reward_rejected": [0.0, 0.0]})
    t["correct"], t["tie"] = t.reward_chosen > t.reward_rejected, t.reward_chosen == t.reward_rejected
    with pytest.raises(ValueError, match=r"1 row\(s\) .* non-finite reward, e\.g\. \[\{'id': 'a', 'source': 'en', "
                                         r"'lang': 'ko'\}\]"):
        accuracy_table(t)
    assert accuracy_table(t.iloc[1:]).query("category == 'overall'")["accuracy"].item() == 1.0


def test_a_language_without_a_category_is_said_to_average_fewer(caplog):
    # de lacks chat_hard: its overall is a 3-category mean beside ko's 4-category one, in one matrix column
    rows = [("c", "chat", 1.0), ("h", "chat_hard", 0.0), ("s", "safety", 1.0), ("r", "reasoning", 1.0)]
    t = pd.DataFrame([{"id": i, "source": "en", "lang": lang, "category": c, "reward_chosen": r, "reward_rejected": 0.5}
                      for lang in ("ko", "de") for i, c, r in rows if not (lang == "de" and c == "chat_hard")])
    t["correct"], t["tie"] = t.reward_chosen > t.reward_rejected, t.reward_chosen == t.reward_rejected
    with caplog.at_level("WARNING"):
        overall = accuracy_table(t, n_boot=10).query("category == 'overall'").set_index("lang")["accuracy"]
    assert overall.to_dict() == {"de": 1.0, "ko": 0.75}
    assert "1 group(s) lack some that others have (e.g. ('en', 'de'): no chat_hard)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        accuracy_table(t[t.category != "chat_hard"], n_boot=10)
    assert "lack some" not in caplog.text


def test_a_rendered_notebook_re_executed_in_a_copied_run_does_not_write_into_the_original(tmp_path, monkeypatch):
    # JupyterLab and nbconvert execute a notebook where it lies: in a shared copy of a run, its injected output_dir
    # still named the original run, whose results it overwrote (or whose folder it recreated)
    from xlrm_lib import study

    original, copy = tmp_path / "outputs" / "default", tmp_path / "shared" / "default"
    for run in (original, copy):
        (run / "evaluate" / "me5-small-s42-en").mkdir(parents=True)
        (run / "_plan.json").write_text("{}")
        (run / "params.yaml").write_text("run: default\n")
    monkeypatch.chdir(copy / "evaluate" / "me5-small-s42-en")
    with pytest.raises(RuntimeError, match=r"writes to output_dir = '.*outputs/default/evaluate/me5-small-s42-en', "
                                           r"outside it .* xlrm run .*shared/default/params.yaml --outputs .*shared$"):
        study._check_not_a_copy(str(original / "evaluate" / "me5-small-s42-en"))
    study._check_not_a_copy(str(copy / "evaluate" / "me5-small-s42-en"))  # its own folder: fine
    monkeypatch.chdir(copy / "evaluate")  # papermill by hand from inside the run: its own run's folders are fine
    study._check_not_a_copy(str(copy / "report"))
    with pytest.raises(RuntimeError, match="outside it"):
        study._check_not_a_copy(str(original / "report"))
    monkeypatch.chdir(tmp_path)  # outside any run (the templates in notebooks/, a script): any output_dir
    study._check_not_a_copy(str(original / "evaluate" / "me5-small-s42-en"))
    study._check_not_a_copy("outputs/scratch/evaluate")
    # a copy under another name: the resume command would write into outputs/default, the original's name
    renamed = tmp_path / "shared" / "default-copy"
    copy.rename(renamed)
    monkeypatch.chdir(renamed / "evaluate" / "me5-small-s42-en")
    with pytest.raises(RuntimeError, match=r"first set `run: default-copy` in .*default-copy/params.yaml \(it says "
                                           r"'default': the command would write to .*shared/default\), then xlrm run"):
        study._check_not_a_copy(str(original / "evaluate" / "me5-small-s42-en"))
    # the usual copies' names ("default copy", "default - Copy") are no run names: rename first, quoted for a shell
    spaced = tmp_path / "shared" / "default copy"
    renamed.rename(spaced)
    monkeypatch.chdir(spaced / "evaluate" / "me5-small-s42-en")
    with pytest.raises(RuntimeError, match=r"first rename the folder .*`mv '.*/shared/default copy' .*/shared/default_copy`, "
                                           r"then `run: default_copy` in its params.yaml\), then xlrm run "
                                           r".*/shared/default_copy/params.yaml --outputs"):
        study._check_not_a_copy(str(original / "evaluate" / "me5-small-s42-en"))


def test_category_table_reads_across_in_rewardbenchs_order_with_overall_last():
    t = pd.DataFrame({"lang": ["ko"] * 5, "category": ["overall", "chat_hard", "unknown", "chat", "reasoning"],
                      "accuracy": [0.6, 0.4, 0.9, 0.8, 0.5]})
    wide = category_table(t)
    assert list(wide.columns) == ["chat", "chat_hard", "reasoning", "unknown", "overall"]  # was sorted by name
    assert wide.loc["ko"].tolist() == [0.8, 0.4, 0.5, 0.9, 0.6]


# ----------------------------------------------------------------------------- added by mutation testing
def test_reward_chosen_is_the_reward_of_the_chosen_text(tiny_bert_dir):
    # the two halves of the one scoring call are chosen then rejected: reading them swapped turned every
    # accuracy A into 1 - A - ties while the table stayed self-consistent (correct == chosen > rejected)
    from xlrm_lib.evaluate import score_texts
    from xlrm_lib.formatting import encode

    model, tok = load_reward_model(tiny_bert_dir)
    fmt = TextFormat("plain", 32)
    pairs = make_pairs([{"chosen": "good great w1", "rejected": "bad"}, {"chosen": "w2", "rejected": "awful w3 w4"}])
    s = score_pairs(model, tok, pairs, fmt=fmt)
    alone = {side: score_texts(model, tok, encode(tok, pairs["prompt"], pairs[side], fmt), batch_size=1)
             for side in ("chosen", "rejected")}
    assert np.abs(alone["chosen"] - alone["rejected"]).min() > 1e-3  # the two sides are told apart
    np.testing.assert_allclose(s["reward_chosen"], alone["chosen"], atol=1e-5)
    np.testing.assert_allclose(s["reward_rejected"], alone["rejected"], atol=1e-5)


def test_overall_ties_count_only_the_rows_overall_averages():
    # a tie in a category outside RewardBench's four has its own row, and stays out of overall's count as its
    # accuracy does
    t = accuracy_table(table([("a", "es", "chat", 1), ("b", "es", "chat", 0, 1), ("c", "es", "mystery", 0, 1)]),
                       n_boot=20).set_index("category")
    assert t.loc["chat", "ties"] == 1 and t.loc["mystery", "ties"] == 1
    assert t.loc["overall", "ties"] == 1 and t.loc["overall", "n"] == 2


def _math_prm_table():
    # reasoning: 10 math-prm items right, 2 code items wrong (math-prm rows weigh 2/10 each); chat: 2 of 4 right
    cats = np.array(["reasoning"] * 12 + ["chat"] * 4)
    ids = np.array([f"i{k:02d}" for k in range(16)])
    x = np.r_[np.ones(10), np.zeros(2), 1, 1, 0, 0]
    w = np.r_[np.full(10, 0.2), np.ones(6)]
    s = pd.DataFrame({"id": ids, "lang": "en", "source": "en", "category": cats, "tie": False,
                      "subset": ["math-prm"] * 10 + ["hep-python", "hep-go"] + ["chat"] * 4,
                      "correct": x.astype(bool)})
    return s, x, cats, ids, w


def test_a_categorys_interval_resamples_with_its_weights_and_the_seed_given():
    from xlrm_lib.stats import ci_from_draws, stratified_boot

    s, x, cats, ids, w = _math_prm_table()
    m = cats == "reasoning"
    row = accuracy_table(s, n_boot=100, seed=3).set_index("category").loc["reasoning"]
    expected = ci_from_draws(stratified_boot(x[m], cats[m], ids[m], weights=w[m], n_boot=100, seed=3))
    assert row["accuracy"] == pytest.approx(0.5)  # (10 x 0.2) / (10 x 0.2 + 2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(expected)
    # the same draws unweighted, or weighted under another seed, give another interval: the check can fail
    assert expected != pytest.approx(ci_from_draws(stratified_boot(x[m], cats[m], ids[m], n_boot=100, seed=3)))
    assert expected != pytest.approx(ci_from_draws(stratified_boot(x[m], cats[m], ids[m], weights=w[m], n_boot=100,
                                                                   seed=0)))


def test_paired_p_value_uses_the_seed_and_number_of_flips_given():
    from xlrm_lib.stats import signflip_p

    # ko: per-item differences [1, 0 | 1, 0] (chat | safety); the test is signflip_p with the caller's n_boot, seed
    d, cats, ids = np.array([1.0, 0, 1, 0]), np.array(["chat", "chat", "safety", "safety"]), ["k0", "k1", "k2", "k3"]
    expected = signflip_p(d, cats, ids, n_perm=300, seed=3)
    assert paired_difference(_evt_table(), "en", "ko", "ko", n_boot=300, seed=3)["p_value"] == expected
    assert expected != signflip_p(d, cats, ids, n_perm=300, seed=0)
    assert expected != signflip_p(d, cats, ids, n_perm=2000, seed=3)


def test_an_item_id_written_as_a_number_or_a_string_is_one_item():
    # two seeds' tables, one read with numeric ids and one with string ids: the same two items, not four
    one = table([(1, "ko", "chat", 1), (2, "ko", "chat", 0)], source="en")
    pooled = pd.concat([one, one.assign(id=one["id"].astype(str))], ignore_index=True)
    assert pooled["id"].tolist() == [1, 2, "1", "2"]
    t = accuracy_table(pooled, n_boot=20).set_index("category")
    assert t.loc["chat", "n"] == 2 and t.loc["overall", "n"] == 2


def test_a_rendered_notebook_re_executed_in_its_run_folder_reads_relative_paths_from_the_root(tmp_path, monkeypatch):
    # JupyterLab starts the kernel of outputs/<run>/<stage>/<cell>/x.ipynb in that folder; `xlrm run` ran it in the
    # repository root, so a params file's relative data path must mean the same when it is re-executed there
    import datasets
    import plotly.io as pio
    import transformers

    from xlrm_lib import store, study

    root = Path(study.__file__).resolve().parents[1]
    cell = tmp_path / "run" / "evaluate" / "me5-small-s42-en"
    cell.mkdir(parents=True)
    (tmp_path / "run" / store.PLAN_FILE).write_text("{}")
    monkeypatch.setattr(study, "_STARTED_IN", {})
    monkeypatch.setattr(pio.renderers, "default", pio.renderers.default)
    verbosity = transformers.utils.logging.get_verbosity()
    monkeypatch.chdir(cell)
    try:
        study.setup_notebook(".")  # a relative output_dir: a notebook of the user's own, it stays (and writes) here
        assert Path.cwd() == cell.resolve()
        study.setup_notebook(str(cell))  # the runner's absolute output_dir in this run: a rendered notebook
        assert Path.cwd() == root and study.notebook_dir(str(cell)) == cell.resolve()
    finally:
        transformers.utils.logging.set_verbosity(verbosity)
        transformers.utils.logging.enable_progress_bar()
        datasets.enable_progress_bars()
