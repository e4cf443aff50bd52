"""Tests for xlrm_lib.judges: position-bias cancellation, prompt format, a tiny real LM judge, the score table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from conftest import make_pairs
from xlrm_lib.evaluate import SCORE_COLUMNS, accuracy_table
from xlrm_lib.judges import PairwiseLMJudge, judge_body, question_text

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "A", "B", "User", "Assistant", ":", "[", "]", "(", ")", "?", ".",
         "Question", "Answer", "Better", "answer", "or"] + [f"w{i}" for i in range(24)]
TEMPLATE = "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}<s> assistant :"


def _tokenizer(words=WORDS, chat_template=None):
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    if chat_template:
        tok.chat_template = chat_template
    return tok


@pytest.fixture(scope="module")
def tiny_lm():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, max_position_embeddings=256, pad_token_id=0,
                      initializer_range=0.2)
    return LlamaForCausalLM(cfg).eval()


PAIRS = [  # chosen is longer in pairs 0 and 2, shorter in 1
    {"id": "p0", "prompt": "w1 w2 ?", "chosen": "w3 w4 w5 w6", "rejected": "w7"},
    {"id": "p1", "prompt": "w8 ?", "chosen": "w9", "rejected": "w10 w11 w12"},
    {"id": "p2", "prompt": "w13 w14 ?", "chosen": "w15 w16", "rejected": "w17", "lang": "ko"},
]


class FakeJudge(PairwiseLMJudge):
    """Hand-built scorer: log-odds for position A = ``bias`` + ``content`` x (len(first) - len(second))."""

    def __init__(self, bias: float, content: float = 0.0):
        super().__init__(None, _tokenizer(), name="fake")
        self.bias, self.content = bias, content

    def position_logodds(self, questions, first, second):
        return np.array([self.bias + self.content * (len(a.split()) - len(b.split())) for a, b in zip(first, second)])


def test_judge_that_always_prefers_position_a_ties_after_averaging():
    judge = FakeJudge(bias=3.0)
    raw = judge.position_logodds(["q"], ["w1"], ["w2"])
    assert raw[0] == 3.0  # the bias is there before averaging
    scores = judge.score_pairs(make_pairs(PAIRS))
    assert scores["tie"].all() and not scores["correct"].any()
    assert (scores["reward_chosen"] == scores["reward_rejected"]).all()
    np.testing.assert_array_equal(judge.compare(["q", "r"], ["w1", "w2 w3"], ["w4 w5", "w6"]), [0.0, 0.0])


def test_a_verdict_that_flips_with_the_positions_is_a_tie():
    """Log-odds 3.0 for (x, y) and 2.9 for (y, x): position A wins both times. Averaging gave x a full win (0.05);
    MT-Bench's conservative rule calls it a tie."""
    judge = FakeJudge(bias=2.95, content=0.05)  # x has one word more: lo(x, y) = 3.0, lo(y, x) = 2.9
    np.testing.assert_array_equal(judge.compare(["q"], ["w1 w2"], ["w3"]), [0.0])
    from xlrm_lib import align

    picks = [pd.DataFrame({"prompt_id": [0], "lang": ["en"], "cand_id": [i], "text": [t], "prompt": ["q"]})
             for i, t in ((0, "w1 w2"), (1, "w3"))]
    assert align.judge_outcomes(*picks, judge)["outcome"].tolist() == [0.5]


def test_non_finite_log_odds_are_refused_not_made_ties():
    # NaN's signs never agree, so a NaN verdict passed for a position-bias tie (0.0)
    judge = FakeJudge(bias=0.0)
    judge.position_logodds = lambda q, a, b: np.array([np.nan, 2.0, np.nan, -1.0])
    with pytest.raises(FloatingPointError, match=r"non-finite log-odds for 1 comparison\(s\), e\.g\. question 0: 'q1'"):
        judge.compare(["q1", "q2"], ["x1", "x2"], ["y1", "y2"])


def test_position_bias_cancels_and_content_preference_survives():
    judge = FakeJudge(bias=-0.5, content=1.0)  # prefers B by 0.5 nats, and longer answers by 1 nat per word
    d = judge.compare(["q"] * 3, ["w1 w2 w3 w4", "w1", "w1 w2"], ["w1", "w1 w2 w3", "w3 w4"])
    np.testing.assert_allclose(d, [3.0, -2.0, 0.0])
    scores = judge.score_pairs(make_pairs(PAIRS), source="fake")
    assert scores["correct"].tolist() == [True, False, True]
    np.testing.assert_allclose(scores["reward_rejected"], -scores["reward_chosen"])
    np.testing.assert_allclose(scores["margin"], [6.0, -4.0, 2.0])  # twice the averaged log-odds
    assert list(scores.columns) == SCORE_COLUMNS + ["source"]


def test_plain_prompt_is_exact():
    judge = PairwiseLMJudge(None, _tokenizer(), instruction="Pick one.")
    text, add_special = judge.render("w1 ?", "w2", "w3")
    assert add_special
    assert text == ("User: Pick one.\n\n[Question]\nw1 ?\n\n[Answer A]\nw2\n\n[Answer B]\nw3\n\n"
                    "Better answer (A or B):\n\nAssistant:")


def test_chat_template_prompt_is_exact():
    judge = PairwiseLMJudge(None, _tokenizer(chat_template=TEMPLATE), instruction="Pick one.")
    text, add_special = judge.render("w1 ?", "w2", "w3")
    assert not add_special  # the template carries its own special tokens
    assert text == "<s> user : " + judge_body("w1 ?", "w2", "w3", "Pick one.") + " </s> <s> assistant :"


def test_question_text_keeps_earlier_turns():
    conv = [{"role": "user", "content": "w1"}, {"role": "assistant", "content": "w2"},
            {"role": "user", "content": "w3 ?"}]
    assert question_text(conv) == "User: w1\n\nAssistant: w2\n\nUser: w3 ?"
    assert question_text("w1 ?") == "w1 ?"


def test_tiny_lm_judge_matches_unbatched_forward_and_is_antisymmetric(tiny_lm):
    tok = _tokenizer()
    judge = PairwiseLMJudge(tiny_lm, tok, batch_size=3)
    qs, xs, ys = ["w1 w2 ?", "w3 ?", "w4 w5 w6 ?"], ["w7 w8 w9", "w10", "w11 w12"], ["w13", "w14 w15 w16 w17", "w18"]
    lo = judge.position_logodds(qs, xs, ys)
    for i in range(3):  # the same number from one unpadded forward pass (left padding must not change it)
        text, _ = judge.render(qs[i], xs[i], ys[i])
        with torch.no_grad():
            logp = tiny_lm(torch.tensor([tok(text)["input_ids"]])).logits[0, -1].log_softmax(-1)
        assert lo[i] == pytest.approx(float(logp[4] - logp[5]), abs=1e-4)  # ids of "A" and "B"
    d = judge.compare(qs, xs, ys)
    np.testing.assert_allclose(judge.compare(qs, ys, xs), -d, atol=1e-6)
    np.testing.assert_allclose(PairwiseLMJudge(tiny_lm, tok, batch_size=1).compare(qs, xs, ys), d, atol=1e-5)
    xy, yx = lo, -judge.position_logodds(qs, ys, xs)  # each order's log-odds that x is better
    np.testing.assert_allclose(d, np.where(np.sign(xy) == np.sign(yx), (xy + yx) / 2, 0.0), atol=1e-9)
    assert np.all(xy != 0) and np.all(yx != 0)  # a random LM: real numbers, not ties by construction


def test_tiny_lm_judge_feeds_the_accuracy_table(tiny_lm):
    judge = PairwiseLMJudge(tiny_lm, _tokenizer(chat_template=TEMPLATE), name="tiny-judge")
    scores = judge.score_pairs(make_pairs(PAIRS), source="tiny-judge")
    assert list(scores.columns) == SCORE_COLUMNS + ["source"]
    assert np.isfinite(scores["margin"]).all()
    table = accuracy_table(scores, n_boot=50)
    assert set(table["lang"]) == {"en", "ko"}


def test_judge_needs_single_tokens_for_the_labels():
    judge = PairwiseLMJudge(None, _tokenizer([w for w in WORDS if w != "B"]))
    with pytest.raises(ValueError, match="no single token for 'B'"):
        judge.label_ids()
    with pytest.raises(ValueError, match="no pairs"):
        FakeJudge(0.0).score_pairs(make_pairs(PAIRS).select([]))


def test_judge_runs_in_eval_mode_and_refuses_a_prompt_past_the_position_table(tiny_lm):
    from transformers import GPT2Config, GPT2LMHeadModel

    tiny_lm.train()
    PairwiseLMJudge(tiny_lm, _tokenizer())
    assert not tiny_lm.training  # dropout would move verdicts from call to call
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS), n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                      bos_token_id=1, eos_token_id=1))
    with pytest.raises(ValueError, match="takes 16 positions: lower max_answer_tokens"):  # was an IndexError
        PairwiseLMJudge(gpt2, _tokenizer()).compare(["w1 ?"], ["w2 w3"], ["w4"])


def test_the_evaluate_notebooks_judge_path_scores_like_the_judge_itself(tiny_lm, tmp_path):
    """``study.evaluate_rm(model_kind="judge")`` (a pretrained judge of a grid) loads the LM from its directory and
    gives the judge's own table, labelled; its metrics say it was evaluated as it is."""
    import json

    from xlrm_lib import study
    from xlrm_lib.store import CARD_FILE

    tok = _tokenizer(chat_template=TEMPLATE)
    judge_dir = tmp_path / "judge"
    tiny_lm.save_pretrained(judge_dir)
    tok.save_pretrained(judge_dir)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"lang": "en", **p}) + "\n" for p in PAIRS))
    scores = study.evaluate_rm(str(judge_dir), rm_name="tiny-judge", eval_source=str(data), eval_langs=["en", "ko"],
                               model_kind="judge", batch_size=2, backbone="tiny", seed=0)
    direct = PairwiseLMJudge(tiny_lm, tok).compare([p["prompt"] for p in PAIRS], [p["chosen"] for p in PAIRS],
                                                   [p["rejected"] for p in PAIRS])
    scores = scores.set_index("id").loc[[p["id"] for p in PAIRS]]
    np.testing.assert_allclose(scores["reward_chosen"], direct, atol=1e-5)
    np.testing.assert_allclose(scores["reward_rejected"], -direct, atol=1e-5)
    assert (scores["source"] == "tiny-judge").all() and (scores["backbone"] == "tiny").all()
    acc = accuracy_table(scores.reset_index(), n_boot=20)
    metrics = study.eval_metrics(acc, rm_name="tiny-judge", model_dir=str(judge_dir), model_kind="judge")
    assert metrics["pretrained"] is True and metrics["model_kind"] == "judge"
    (judge_dir / CARD_FILE).write_text("{}")  # what an RM trained by xlrm has
    assert study.eval_metrics(acc, model_dir=str(judge_dir))["pretrained"] is False
    with pytest.raises(ValueError, match=r"model_kind = 'lm'; expected one of \['rm', 'judge'\]"):
        study.evaluate_rm(str(judge_dir), rm_name="x", eval_source=str(data), eval_langs=["en"], model_kind="lm")


def test_a_reward_models_checkpoint_is_refused_as_a_judge(tmp_path):
    # loaded as a causal LM, a reward model's checkpoint has no LM head: a fresh random one would give the verdicts
    from transformers import LlamaForSequenceClassification

    from xlrm_lib.generate import load_policy

    cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=2, intermediate_size=64, num_labels=1, pad_token_id=0)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    _tokenizer().save_pretrained(tmp_path / "rm")
    with pytest.raises(ValueError, match=r"is not a complete causal LM: 1 weight\(s\) would be freshly initialised "
                                         r"\(\['lm_head.weight'\]\); give a decoder with its LM head"):
        load_policy(str(tmp_path / "rm"))
    # with tied embeddings nothing is missing (the LM head is the embedding matrix): the config says what it is
    cfg.tie_word_embeddings = True
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "tied")
    _tokenizer().save_pretrained(tmp_path / "tied")
    with pytest.raises(ValueError, match=r"is a reward model \(LlamaForSequenceClassification\), not a causal LM"):
        load_policy(str(tmp_path / "tied"))


def test_best_of_n_takes_a_generative_judge(tiny_lm, tmp_path):
    """``best_of_n_study(judge_kind="judge")``: a causal LM compares each RM's pick with the other's, as the
    library's PairwiseLMJudge does (AlpacaEval's way); the same LM taken for a judge RM is refused (no score head)."""
    import json

    from transformers import LlamaForSequenceClassification

    from xlrm_lib import align, study
    from xlrm_lib.data import load_pairs

    tok = _tokenizer(chat_template=TEMPLATE)
    judge_dir, rm_dir = tmp_path / "judge", tmp_path / "rm"
    tiny_lm.save_pretrained(judge_dir)
    tok.save_pretrained(judge_dir)
    torch.manual_seed(1)
    rm_cfg = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=64, num_labels=1, pad_token_id=0, initializer_range=0.2)
    LlamaForSequenceClassification(rm_cfg).save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    rows = [{"id": f"i{i}", "lang": "en", "category": "chat", "prompt": f"w{i} w{i + 1} ?", "chosen": f"w{i + 2} w{i + 3}",
             "rejected": f"w{i + 4}"} for i in range(6)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match="is a LlamaForCausalLM, not a reward model: it has no trained score head"):
        study.best_of_n_study({"en": str(rm_dir)}, langs=["en"], source=str(data), judge=str(judge_dir))
    tables = study.best_of_n_study({"en": str(rm_dir)}, langs=["en"], source=str(data), judge=str(judge_dir),
                                   judge_kind="judge", seed=0)
    judge = PairwiseLMJudge(tiny_lm, tok)
    cands = align.candidate_pool(load_pairs(str(data), langs=["en"], split="test"), n=4, seed=0)
    expected = align.win_rate(tables["picks"], align.random_picks(cands, seed=0), judge, seed=0, names=("en", "random"))
    got = tables["vs_random"]
    assert got["judge"].unique().tolist() == [str(judge_dir)]
    np.testing.assert_allclose(got["win_rate"], expected["win_rate"], atol=1e-9)
    half = study.best_of_n_study({"en": str(rm_dir)}, langs=["en"], source=str(data), judge=str(judge_dir),
                                 judge_kind="judge", seed=0, bf16=True)  # RMs under autocast, the judge LM in bf16
    assert half["vs_random"]["win_rate"].between(0, 1).all()
    diff = (half["picks"]["reward"] - tables["picks"]["reward"]).abs()  # per prompt: other rewards
    assert 0 < diff.max() < 0.05
    with pytest.raises(ValueError, match=r"judge_kind = 'lm'; expected one of \['rm', 'judge'\]"):
        study.best_of_n_study({"en": str(rm_dir)}, langs=["en"], source=str(data), judge=str(judge_dir), judge_kind="lm")


def test_a_judge_that_ties_most_pairs_is_said_to(tmp_path, monkeypatch, caplog):
    # every verdict followed the positions: 0.0 in every category, read as wrong verdicts, without a word
    import json

    from xlrm_lib import judges, study

    monkeypatch.setattr(judges, "load_judge", lambda *a, **k: FakeJudge(bias=3.0))
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"lang": "en", **p}) + "\n" for p in PAIRS))
    with caplog.at_level("WARNING", logger="xlrm_lib.study"):
        scores = study.evaluate_rm(str(tmp_path), rm_name="biased", eval_source=str(data), eval_langs=["en"],
                                   model_kind="judge")
    assert scores["tie"].all() and "judge biased tied 100% of the pairs" in caplog.text


# ----------------------------------------------------------------------------------- gaps a mutation review found
def test_prompts_of_different_lengths_batch_like_one_at_a_time(tiny_lm):
    # prompts of unequal length: left padding keeps each row's last real token in the last column
    tok = _tokenizer()
    qs, xs, ys = ["w1 ?", "w2 w3 w4 w5 ?", "w6 ?"], ["w7", "w8 w9 w10", "w11"], ["w12", "w13", "w14 w15 w16 w17 w18"]
    assert len({len(tok(PairwiseLMJudge(None, tok).render(*t)[0])["input_ids"]) for t in zip(qs, xs, ys)}) == 3
    one = PairwiseLMJudge(tiny_lm, tok, batch_size=1).position_logodds(qs, xs, ys)
    np.testing.assert_allclose(PairwiseLMJudge(tiny_lm, tok, batch_size=3).position_logodds(qs, xs, ys), one,
                               atol=1e-4)


def test_answers_are_cut_only_past_max_answer_tokens():
    judge = PairwiseLMJudge(None, _tokenizer(), max_answer_tokens=2, instruction="Pick.")
    text, _ = judge.render("w1 ?", "w2 w3 w4", "w5 w6")  # A: 3 tokens, cut to 2; B: exactly 2, kept whole
    assert "[Answer A]\nw2 w3 ...\n\n[Answer B]\nw5 w6\n\n" in text


def test_both_spellings_of_a_label_are_pooled():
    class SpaceTokenizer:  # as SentencePiece/BPE vocabularies: "A" and " A" are two tokens
        ids, text = {"A": [4], " A": [5], "B": [6], " B": [7]}, {4: "A", 5: " A", 6: "B", 7: " B"}

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": self.ids[text]}

        def decode(self, ids):
            return "".join(self.text[i] for i in ids)

    assert PairwiseLMJudge(None, SpaceTokenizer()).label_ids() == ([4, 5], [6, 7])
