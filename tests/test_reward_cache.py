"""xlrm_lib.reward_cache: a trained RM scores each token sequence once, across notebooks; nothing else changes.

The tiny RMs are saved with a hand-written ``xlrm_card.json`` (only its ``key`` matters to the cache) and loaded
the real way, so ``model.name_or_path`` points at their directory as it does in the notebooks.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import save_model, tiny_bert, word_tokenizer
from xlrm_lib import evaluate, study
from xlrm_lib.formatting import TextFormat
from xlrm_lib.models import load_reward_model
from xlrm_lib.reward_cache import RewardCache, sequence_digest

SEQS = [[2, 10, 11, 3], [2, 12, 3], [2, 13, 14, 15, 16, 3], [2, 10, 11, 3]]  # the last repeats the first


@pytest.fixture()
def rm_dir(tmp_path):
    path = save_model(tmp_path / "rm", tiny_bert(seed=1), word_tokenizer("bert"))
    TextFormat().save(path)  # as a trained RM's directory holds it (its card asks for it)
    (path / "xlrm_card.json").write_text(json.dumps({"key": f"k-{tmp_path.name}"}))  # one cache per test
    return path


@pytest.fixture()
def counted(monkeypatch):
    """Record every sequence the model really scores (the cache's misses)."""
    seen = []
    real = evaluate._score

    def spy(model, tok, seqs, **kw):
        seen.extend(tuple(s) for s in seqs)
        return real(model, tok, seqs, **kw)

    monkeypatch.setattr(evaluate, "_score", spy)
    return seen


def test_a_model_without_a_card_is_not_cached(tiny_bert_dir, counted):
    model, tok = load_reward_model(tiny_bert_dir)
    assert RewardCache.for_model(model) is None
    evaluate.score_texts(model, tok, SEQS, cache=True)
    evaluate.score_texts(model, tok, SEQS, cache=True)
    assert len(counted) == 2 * len(SEQS)  # scored both times


def test_cached_rewards_are_the_computed_ones_and_only_misses_are_scored(rm_dir, counted):
    model, tok = load_reward_model(rm_dir)
    plain = evaluate.score_texts(model, tok, SEQS[:2])
    first = evaluate.score_texts(model, tok, SEQS[:2], cache=True)
    np.testing.assert_array_equal(first, plain)
    counted.clear()
    both = evaluate.score_texts(model, tok, SEQS, cache=True)
    assert counted == [tuple(SEQS[2])]  # 0, 1 and 3 (= 0) are known; only 2 is new
    np.testing.assert_array_equal(both[:2], first)  # bit-identical: read back, not recomputed
    assert both[3] == both[0]
    np.testing.assert_allclose(both, evaluate.score_texts(model, tok, SEQS), atol=1e-6)
    counted.clear()
    evaluate.score_texts(model, tok, SEQS, cache=True)
    assert counted == []


def test_a_reloaded_model_and_another_process_see_the_same_entries(rm_dir, counted):
    model, tok = load_reward_model(rm_dir)
    evaluate.score_texts(model, tok, SEQS[:1], cache=True)
    other = RewardCache.for_model(load_reward_model(rm_dir)[0])  # what a later notebook opens
    other.put([SEQS[1]], [0.25])  # a second writer adds an entry: the first one's stays
    got = RewardCache.for_model(model).get(SEQS[:2])
    assert np.isfinite(got[0]) and got[1] == 0.25


def test_the_key_separates_models_precision_and_device(rm_dir, tmp_path):
    model, _ = load_reward_model(rm_dir)
    fp32, bf16 = RewardCache.for_model(model), RewardCache.for_model(model, bf16=True)
    assert fp32.path != bf16.path and fp32.path.name.startswith(f"k-{tmp_path.name}-")
    retrained = shutil.copytree(rm_dir, tmp_path / "retrained")
    (retrained / "xlrm_card.json").write_text(json.dumps({"key": "k1"}))
    assert RewardCache.for_model(load_reward_model(retrained)[0]).path != fp32.path
    # a forced retrain under the same key writes a new card (other metrics): its rewards are not the old ones
    (retrained / "xlrm_card.json").write_text(json.dumps({"key": f"k-{tmp_path.name}", "train_runtime": 1.5}))
    assert RewardCache.for_model(load_reward_model(retrained)[0]).path not in (fp32.path, bf16.path)


def test_a_damaged_cache_file_is_recomputed_not_trusted(rm_dir, counted, caplog):
    model, tok = load_reward_model(rm_dir)
    cache = RewardCache.for_model(model)
    cache.path.write_bytes(b"not an npz")
    rewards = evaluate.score_texts(model, tok, SEQS[:2], cache=True)
    assert len(counted) == 2 and "unreadable" in caplog.text
    np.testing.assert_array_equal(cache.get(SEQS[:2]), rewards)  # rewritten whole
    # cut short (a full disk, a killed copy): numpy raises EOFError on an empty file, zipfile BadZipFile on a
    # truncated one; both failed every evaluation of the model until the file was found and deleted
    whole = cache.path.read_bytes()
    for cut in (0, 10, len(whole) // 2):
        cache.path.write_bytes(whole[:cut])
        assert cache._read() == {}


def test_digests_ending_in_zero_bytes_survive_the_file(rm_dir):
    """numpy's fixed-width bytes type strips trailing NULs; the cache stores raw digest bytes instead."""
    seq = next([7, i] for i in range(100_000) if sequence_digest([7, i]).endswith(b"\x00"))
    cache = RewardCache.for_model(load_reward_model(rm_dir)[0])
    cache.put([seq, SEQS[0]], [0.5, -0.5])
    assert cache.get([seq, SEQS[0]]).tolist() == [0.5, -0.5]


def test_a_model_changed_in_memory_or_wrapped_by_peft_does_not_read_its_directorys_rewards(rm_dir):
    from peft import LoraConfig, TaskType, get_peft_model

    model, _ = load_reward_model(rm_dir)
    path = RewardCache.for_model(model).path
    with torch.no_grad():
        model.classifier.weight.add_(0.1)  # e.g. trained further in the notebook
    assert RewardCache.for_model(model).path != path
    body, _ = load_reward_model(rm_dir)
    with torch.no_grad():  # the body changed, the head not (an ablation, a further step with the head frozen)
        body.bert.encoder.layer[0].attention.self.query.weight[3, 5] += 0.5
    assert RewardCache.for_model(body).path != path
    lora = get_peft_model(load_reward_model(rm_dir)[0], LoraConfig(task_type=TaskType.SEQ_CLS, r=2,
                                                                   target_modules=["query", "value"]))
    assert RewardCache.for_model(lora) is None


def test_non_finite_rewards_are_not_stored(rm_dir):
    cache = RewardCache.for_model(load_reward_model(rm_dir)[0])
    cache.put(SEQS[:2], [np.nan, 1.5])
    assert np.isnan(cache.get(SEQS[:1])[0]) and cache.get(SEQS[1:2])[0] == 1.5
    assert sequence_digest([1, 2]) != sequence_digest([2, 1]) and len(sequence_digest([1])) == 16


def test_best_of_n_after_evaluate_scores_only_the_distractors(rm_dir, counted):
    """The grid's order: the evaluate notebook scores every test pair, then best-of-n reuses them."""
    langs = ["en", "ko"]
    scores = study.evaluate_rm(rm_dir, rm_name="en", eval_source="embedded", eval_langs=langs, split="test")
    evaluated = set(counted)
    counted.clear()
    tables = study.best_of_n_study({"en": str(rm_dir)}, langs=langs, n=4, limit=6, seed=0)
    model, tok = load_reward_model(rm_dir)
    from xlrm_lib import align
    from xlrm_lib.data import load_pairs
    from xlrm_lib.formatting import encode

    pool = align.candidate_pool(load_pairs("embedded", langs=langs, split="test"), n=4, seed=0, limit=6)
    seqs = [tuple(s) for s in encode(tok, list(pool["prompt"]), list(pool["text"]), evaluate.model_format(model)
                                     .resolved(tok))]
    distractors = {s for s, o in zip(seqs, pool["origin"]) if o == "distractor"}
    assert set(counted) == distractors - evaluated  # chosen and rejected answers came from the cache
    assert len(counted) == len(set(counted)) > 0
    # the picks' rewards of chosen answers are the evaluate notebook's rewards, bit for bit
    picks = tables["picks"].merge(pool[["prompt_id", "lang", "cand_id", "origin", "origin_id"]])
    chosen = picks[picks["origin"] == "chosen"].merge(scores, left_on=["prompt_id", "lang"], right_on=["id", "lang"])
    assert len(chosen) > 0 and (chosen["reward"] == chosen["reward_chosen"]).all()
    # language codes in another spelling still find the target RMs (the headline table was silently missing)
    named = study.best_of_n_study({"en": str(rm_dir), "ko": str(rm_dir)}, langs=["EN", "kor_Hang"], n=4, limit=6)
    assert "headline_native" in named and named["headline_native"]["lang"].tolist() == ["ko"]  # one target: no average


def test_a_change_of_the_scorer_version_opens_another_cache(rm_dir, monkeypatch):
    # SCORER_VERSION is bumped when a change to scoring changes the rewards: rewards of the old scorer must not be
    # read back under the new one (the key without it reused them)
    from xlrm_lib import reward_cache

    model, _ = load_reward_model(rm_dir)
    before = RewardCache.for_model(model).path
    monkeypatch.setattr(reward_cache, "SCORER_VERSION", reward_cache.SCORER_VERSION + 1)
    assert RewardCache.for_model(model).path != before


def test_an_entry_put_again_holds_the_newer_reward(rm_dir):
    # a write merges into what the file holds: the reward just computed wins over an older one of that sequence
    cache = RewardCache.for_model(load_reward_model(rm_dir)[0])
    cache.put(SEQS[:2], [1.0, 2.0])
    cache.put(SEQS[:1], [3.0])
    assert cache.get(SEQS[:2]).tolist() == [3.0, 2.0]


def test_an_infinite_reward_is_not_stored_so_it_is_computed_again(rm_dir):
    # only NaN reads as "not scored yet": a stored inf would be served from the cache for ever
    cache = RewardCache.for_model(load_reward_model(rm_dir)[0])
    cache.put(SEQS[:3], [np.inf, -np.inf, 0.5])
    got = cache.get(SEQS[:3])
    assert np.isnan(got[:2]).all() and got[2] == 0.5
