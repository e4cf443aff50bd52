"""xlrm_lib.train: the Bradley-Terry loss by hand, learning a toy task on a tiny BERT, the content-addressed
cache, the model card, bad input, and LoRA."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import time
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from conftest import make_pairs, save_model, tiny_bert, word_tokenizer
from xlrm_lib import train as train_mod
from xlrm_lib.evaluate import score_pairs
from xlrm_lib.formatting import FORMAT_FILE, TextFormat
from xlrm_lib.models import load_reward_model
from xlrm_lib.train import RewardConfig, bt_loss, read_card, train_reward_model

FAST = dict(epochs=1, batch_size=4, bf16=False, progress=False, max_length=32)


def _ls(x):  # -log sigmoid(x), by hand
    return math.log1p(math.exp(-x))


# ----------------------------------------------------------------------------- the loss
def test_bt_loss_hand_computed():
    rc, rr = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])
    expected = (_ls(1) + _ls(0) + _ls(-1)) / 3  # (0.3132617 + 0.6931472 + 1.3132617) / 3
    assert float(bt_loss(rc, rr)) == pytest.approx(expected, abs=1e-6)
    assert float(bt_loss(rc, rr)) == pytest.approx(0.7732236, abs=1e-6)


def test_bt_loss_margin_and_centering():
    rc, rr = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    # margin 0.5: -log sigmoid(1 - 0.5), -log sigmoid(0 - 0.5)
    assert float(bt_loss(rc, rr, margin=0.5)) == pytest.approx((_ls(0.5) + _ls(-0.5)) / 2, abs=1e-6)
    # centring adds coef * mean((rc + rr)^2) = 0.1 * (1 + 0) / 2
    base = (_ls(1) + _ls(0)) / 2
    assert float(bt_loss(rc, rr, center_coef=0.1)) == pytest.approx(base + 0.05, abs=1e-6)
    both = float(bt_loss(torch.tensor([2.0]), torch.tensor([1.0]), margin=1.0, center_coef=0.5))
    assert both == pytest.approx(_ls(0.0) + 0.5 * 9.0, abs=1e-6)


def test_bt_loss_gradient():
    rc, rr = torch.tensor([1.0], requires_grad=True), torch.tensor([0.0], requires_grad=True)
    bt_loss(rc, rr).backward()
    # d/d rc of -log sigmoid(rc - rr) = -(1 - sigmoid(1))
    assert float(rc.grad) == pytest.approx(-(1 - 1 / (1 + math.exp(-1))), abs=1e-6)
    assert float(rr.grad) == pytest.approx(1 - 1 / (1 + math.exp(-1)), abs=1e-6)


# ----------------------------------------------------------------------------- learning a toy task
TRAIN_WORDS, HELD_WORDS = [f"w{i}" for i in range(24)], [f"w{i}" for i in range(24, 48)]


def toy_pairs(n, words, seed, swap=False):
    """chosen ends in "good great", rejected in "bad awful", after random filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        good = " ".join(rng.sample(words, 3)) + " good great"
        bad = " ".join(rng.sample(words, 3)) + " bad awful"
        if swap:
            good, bad = bad, good
        rows.append({"prompt": " ".join(rng.sample(words, 2)) + " ?", "chosen": good, "rejected": bad})
    return make_pairs(rows)


def test_training_learns_the_toy_task(tiny_bert_dir):
    held = toy_pairs(16, HELD_WORDS, seed=1)  # unseen filler words
    kw = dict(lr=1e-3, epochs=10, batch_size=8, warmup_ratio=0.0, bf16=False, progress=False)
    # train both directions: an untrained head may already favour one side by chance, but not both
    accs = {}
    for swap in (False, True):
        path = train_reward_model(str(tiny_bert_dir), toy_pairs(16, TRAIN_WORDS, seed=0, swap=swap), **kw)
        model, tok = load_reward_model(path)
        accs[swap] = score_pairs(model, tok, held)["correct"].mean()
        card = read_card(path)
        assert card["train_metrics"]["train_loss"] < math.log(2)  # below chance loss
    assert accs[False] >= 0.8, accs
    assert 1 - accs[True] >= 0.8, accs  # the swapped model prefers the other side


# ----------------------------------------------------------------------------- cache and card
@pytest.fixture(scope="module")
def small_pairs():
    return toy_pairs(4, TRAIN_WORDS, seed=5)


def test_margin_and_centering_reach_the_trainers_loss(tiny_bert_dir, small_pairs, tmp_path):
    """The first logged loss is bt_loss(margin, center_coef) of the untrained RM's rewards, by hand: the knobs go
    RewardConfig -> trainer -> compute_loss (a knob dropped on the way kept its key and card, and trained plainly)."""
    from xlrm_lib.evaluate import score_texts
    from xlrm_lib.formatting import fit_positions
    from xlrm_lib.train import tokenize_pairs

    n = len(small_pairs)  # one batch of every pair, one step at the peak lr: the loss logged is the start's
    card = read_card(train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=tmp_path / "rm", logging_steps=1,
                                        **{**FAST, "batch_size": n}, warmup_ratio=0.0, margin=0.5, center_coef=0.1))
    model, tok = load_reward_model(str(tiny_bert_dir), seed=42)  # the score head the training started from
    features = tokenize_pairs(tok, small_pairs, fit_positions(TextFormat("auto", FAST["max_length"]).resolved(tok), model))
    r = torch.tensor(score_texts(model.eval(), tok, [f["input_ids_chosen"] for f in features]
                                 + [f["input_ids_rejected"] for f in features]), dtype=torch.float32)
    rc, rr = r[:n], r[n:]
    logged = card["log_history"][0]["loss"]
    assert logged == pytest.approx(float(bt_loss(rc, rr, margin=0.5, center_coef=0.1)), abs=2e-4)
    assert abs(logged - float(bt_loss(rc, rr))) > 0.05  # the knobs changed it: the check above is not vacuous


@pytest.fixture(scope="module")
def trained(tiny_bert_dir, small_pairs):
    return train_reward_model(str(tiny_bert_dir), small_pairs, name="toy", **FAST)


def test_the_default_recipe_keeps_the_word_embeddings_and_trains_the_rest(tiny_bert_dir, small_pairs):
    from safetensors.torch import load_file

    def trained_weights(**kw):
        path = train_reward_model(str(tiny_bert_dir), small_pairs, name="toy", lr=1e-2, warmup_ratio=0.0,
                                  **{**FAST, "epochs": 2}, **kw)
        return load_file(str(Path(path) / "model.safetensors"))

    base = {("bert." + k if not k.startswith(("bert.", "classifier.")) else k): v
            for k, v in load_file(str(tiny_bert_dir / "model.safetensors")).items()}
    emb, layer = "bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight"
    frozen = trained_weights()  # freeze_embeddings=True, the default
    assert torch.equal(frozen[emb], base[emb]) and not torch.equal(frozen[layer], base[layer])
    assert not torch.equal(trained_weights(freeze_embeddings=False)[emb], base[emb])


def test_cpu_training_runs_eager_attention_and_saves_the_models_own_choice(tiny_bert_dir, small_pairs, tmp_path,
                                                                           monkeypatch):
    from transformers.models.bert import modeling_bert

    calls = []
    real = modeling_bert.eager_attention_forward

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(modeling_bert, "eager_attention_forward", spy)
    path = train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=tmp_path / "rm", **FAST)
    assert len(calls) > 0  # the training forwards went through eager attention
    model = tiny_bert()
    with train_mod._attention_backend(model):
        inside = model.config._attn_implementation
    assert inside == "eager" and model.config._attn_implementation == "sdpa"  # restored afterwards
    assert load_reward_model(path)[0].config._attn_implementation == "sdpa"  # scoring keeps SDPA (faster in fp32)


def test_cpu_training_falls_back_to_sdpa_math_where_eager_is_refused(monkeypatch):
    model = tiny_bert()

    def refuse(self, impl, **kw):
        raise ValueError(f"{impl} is not supported")

    monkeypatch.setattr(type(model), "set_attn_implementation", refuse)
    with train_mod._attention_backend(model):
        assert model.config._attn_implementation == "sdpa"
        assert torch.backends.cuda.math_sdp_enabled() and not torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()  # the kernel choice is restored too


def test_cache_hit_returns_same_path_without_training(tiny_bert_dir, small_pairs, trained, monkeypatch):
    mtime = (trained / "model.safetensors").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("retrained on a cache hit")

    monkeypatch.setattr(train_mod, "load_reward_model", boom)
    again = train_reward_model(str(tiny_bert_dir), small_pairs, name="toy", **FAST)
    assert again == trained
    assert (trained / "model.safetensors").stat().st_mtime_ns == mtime
    # progress only changes the display; it is not part of the key
    assert train_reward_model(str(tiny_bert_dir), small_pairs, name="toy", **{**FAST, "progress": True}) == trained


def test_a_second_process_asking_for_an_rm_being_trained_waits_and_takes_it(tiny_bert_dir, small_pairs, tmp_path,
                                                                           monkeypatch, caplog):
    # two runs sharing an RM (same backbone, pairs, parameters) at once: one trains, the other waits and reuses it.
    # Threads stand in for the processes: flock locks of two open() calls conflict within one process too
    import threading

    real, trainings, first_waits = train_mod._train, [], threading.Event()

    def counted(*a, **k):
        trainings.append(threading.current_thread().name)
        assert first_waits.wait(60), "the second caller never waited for the first"
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "_train", counted)
    out, results = tmp_path / "rm", {}

    def ask(who):
        results[who] = train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=out, **FAST)

    first = threading.Thread(target=ask, args=("first",), name="first")
    first.start()
    while not trainings:
        time.sleep(0.01)
    second = threading.Thread(target=ask, args=("second",), name="second")
    with caplog.at_level("WARNING", logger="xlrm_lib.train"):
        second.start()
        deadline = time.monotonic() + 60
        while "waiting for it" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        first_waits.set()
        first.join(300)
        second.join(300)
    assert trainings == ["first"]  # the second took the finished RM from the cache
    assert results == {"first": out, "second": out}
    assert f"process {os.getpid()} on this host is training {out}" in caplog.text
    assert read_card(out)["n_pairs"] == len(small_pairs)


def test_a_waiting_training_says_again_whom_it_waits_for(tmp_path, monkeypatch, caplog):
    # hours at 3B: a hung or stopped trainer held the waiting run for ever behind one line said at the start
    import fcntl
    import threading

    from xlrm_lib import store

    monkeypatch.setattr(store, "REMIND_S", 0.1)
    lock = tmp_path / ".rm.lock"
    lock.write_text("4242 node3")
    other = open(lock, "r+")
    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    release = threading.Timer(0.5, lambda: fcntl.flock(other, fcntl.LOCK_UN))
    release.start()
    try:
        with caplog.at_level("WARNING", logger="xlrm_lib.train"), train_mod._one_trainer(tmp_path / "rm"):
            pass
    finally:
        release.join()
        other.close()
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == (f"process 4242 on node3 is training {tmp_path / 'rm'} (the same RM: backbone, pairs and "
                       "parameters); waiting for it, then using its model")
    assert len(said) >= 2 and all(m.startswith("still waiting (0 min) for process 4242 on node3 to finish training "
                                               f"{tmp_path / 'rm'}; if it is hung or stopped, end it") for m in said[1:])


def test_a_cache_hit_takes_no_lock_so_a_read_only_cache_still_serves(tiny_bert_dir, small_pairs, trained, tmp_path):
    import shutil

    copy = tmp_path / "shared" / "rm"  # e.g. a team's cache mounted read-only: opening a lock file there would fail
    shutil.copytree(trained, copy)
    assert train_reward_model(str(tiny_bert_dir), small_pairs, name="toy", output_dir=copy, **FAST) == copy
    assert sorted(p.name for p in copy.parent.iterdir()) == ["rm"]


def test_an_rm_trained_by_several_processes_takes_no_lock(monkeypatch, tmp_path):
    # under torchrun every rank trains the RM together: one waiting on a lock would stall the others' collectives
    monkeypatch.setenv("WORLD_SIZE", "2")
    with train_mod._one_trainer(tmp_path / "rm"):
        pass
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv("WORLD_SIZE", "1")
    with train_mod._one_trainer(tmp_path / "rm"):
        assert (tmp_path / ".rm.lock").read_text().split()[0] == str(os.getpid())


def test_a_damaged_cached_rm_is_named_when_loaded_and_trained_again_on_a_hit(tiny_bert_dir, small_pairs, tmp_path,
                                                                             caplog):
    # a truncated model.safetensors (a full disk, a killed copy) was a cache hit forever, and its load failed with
    # safetensors' "incomplete metadata" naming no file
    out = train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=tmp_path / "rm", **FAST)
    weights = out / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(OSError, match=r"model\.safetensors is damaged .* `xlrm run <params> --force --only train`"):
        load_reward_model(out)
    with caplog.at_level("WARNING", logger="xlrm_lib.train"):
        again = train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=tmp_path / "rm", **FAST)
    assert again == out and "is damaged" in caplog.text
    assert caplog.text.count("training it again") == 1  # checked again under the training lock: said once
    assert weights.read_bytes() == good  # the same seed and data: the same model again
    load_reward_model(out)


def test_the_key_holds_the_precision_bf16_auto_resolves_to(tiny_bert_dir, small_pairs, trained, monkeypatch):
    """bf16=None trains in bf16 where that is fast: a cache shared with such a machine must not hand it this
    fp32-trained RM, and bf16=None resolving to fp32 here is the same RM as bf16=False."""
    def boom(*a, **k):
        raise AssertionError("trained")

    monkeypatch.setattr(train_mod, "load_reward_model", boom)
    monkeypatch.setattr(train_mod, "fast_bf16", lambda: False)
    assert train_reward_model(str(tiny_bert_dir), small_pairs, name="toy", **{**FAST, "bf16": None}) == trained
    monkeypatch.setattr(train_mod, "fast_bf16", lambda: True)
    with pytest.raises(AssertionError, match="trained"):
        train_reward_model(str(tiny_bert_dir), small_pairs, name="toy", **{**FAST, "bf16": None})


def test_different_param_or_data_gives_a_different_path(tiny_bert_dir, small_pairs, trained):
    other = train_reward_model(str(tiny_bert_dir), small_pairs, name="toy", **{**FAST, "lr": 1e-4})
    assert other != trained and other.parent == trained.parent
    assert read_card(other)["key"] != read_card(trained)["key"]
    data2 = toy_pairs(4, TRAIN_WORDS, seed=6)
    assert (train_mod.data_fingerprint(data2) != train_mod.data_fingerprint(small_pairs))


def test_card_fields(trained, small_pairs, tmp_path):
    card = read_card(trained)
    for field in ("key", "backbone", "data_fingerprint", "languages", "n_pairs", "config", "format", "versions",
                  "train_metrics", "log_history"):
        assert field in card, field
    assert trained.name == f"toy-{card['key']}"
    assert card["data_fingerprint"] == train_mod.data_fingerprint(small_pairs)
    assert card["n_pairs"] == 4 and card["languages"] == ["en"]
    assert card["config"]["lr"] == RewardConfig().lr and card["config"]["epochs"] == 1
    assert set(card["versions"]) >= {"xlrm", "torch", "transformers", "datasets"}
    assert "train_loss" in card["train_metrics"] and card["train_metrics"]["real_tokens"] > 0
    assert card["format"] == {"template": "plain", "max_length": 32, "truncation_side": "left"}
    assert TextFormat.load(trained) == TextFormat("plain", 32, "left")
    assert json.loads((trained / FORMAT_FILE).read_text())["template"] == "plain"
    assert not (trained / "_trainer").exists()
    assert {k: card["trained_by"][k] for k in ("host", "pid")} == {"host": socket.gethostname(), "pid": os.getpid()}
    from xlrm_lib import study

    said = study.train_metrics(trained, rm_name="en", backbone="toy", seed=0, train_lang="en")
    assert said["trained_here"] is True and said["trained_by"] == card["trained_by"]
    # the recipe as trained, defaults included (the report's header shows it; the params file names only some)
    assert said["recipe"]["lr"] == RewardConfig().lr and "seed" not in said["recipe"]
    assert (said["format"], said["runtime"]) == (card["format"], card["runtime"])
    # a language as a user may write it in the notebook is recorded as the grid names it
    import shutil

    ko_rm = tmp_path / "ko-rm"  # an RM whose pairs were Korean (translated from English)
    shutil.copytree(trained, ko_rm)
    ko_card = json.loads((ko_rm / "xlrm_card.json").read_text())
    (ko_rm / "xlrm_card.json").write_text(json.dumps({**ko_card, "languages": ["ko"]}))
    named = study.train_metrics(ko_rm, rm_name="ko", backbone="toy", seed=0, train_lang="Korean", translate_from="eng")
    assert (named["train_lang"], named["translated_from"]) == ("ko", "en")
    # English pairs recorded as a Korean RM (the notebook's pairs cell not re-run after train_lang changed): refused
    with pytest.raises(ValueError, match="trained on en pairs, not train_lang = 'ko'"):
        study.train_metrics(trained, rm_name="ko", backbone="toy", seed=0, train_lang="ko")
    other = json.loads((trained / "xlrm_card.json").read_text())  # as another process (a run this one waited for)
    other["trained_by"]["process"] = "another process"  # with the same host and pid (a container's pid 1, say)
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(trained, copy)
    (copy / "xlrm_card.json").write_text(json.dumps(other))
    assert study.train_metrics(copy, rm_name="en", backbone="toy", seed=0, train_lang="en")["trained_here"] is False
    model, tok = load_reward_model(trained)  # an ordinary HF model directory
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id


def test_an_output_dir_made_beforehand_gets_the_trained_model(tiny_bert_dir, small_pairs, tmp_path):
    out = tmp_path / "made-by-hand"
    out.mkdir()
    (out / "notes.txt").write_text("a folder without a card")
    assert train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=out, **FAST) == out
    assert (out / "model.safetensors").exists() and read_card(out)["n_pairs"] == 4


def test_stale_card_in_output_dir_raises_unless_forced(tiny_bert_dir, small_pairs, tmp_path):
    out = tmp_path / "rm"
    first = train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=out, **FAST)
    assert first == out
    key1 = read_card(out)["key"]
    with pytest.raises(ValueError, match="force=True"):
        train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=out, **{**FAST, "lr": 1e-4})
    forced = train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=out, force=True, **{**FAST, "lr": 1e-4})
    assert forced == out and read_card(out)["key"] != key1
    assert read_card(out)["config"]["lr"] == 1e-4


def test_a_training_that_would_teach_nothing_says_so(tiny_bert_dir, small_pairs, tmp_path, caplog):
    # one optimizer step runs at the warm-up's first learning rate, 0: the RM was saved as it started, silently
    with caplog.at_level(logging.WARNING, logger="xlrm_lib.train"):
        train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=tmp_path / "a", **{**FAST, "lr": 3e-4})
    assert "1 optimizer step, at learning rate 0" in caplog.text and "4 pairs, batch_size 4" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xlrm_lib.train"):  # no warm-up: that step has the peak rate
        train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=tmp_path / "b",
                           **{**FAST, "lr": 3e-4, "warmup_ratio": 0.0})
    assert "optimizer step" not in caplog.text and "same text" not in caplog.text
    # answers that differ only before the 32 tokens kept (the end): the same tokens, log 2 and no gradient
    tail = " ".join(TRAIN_WORDS * 2)
    rows = [{"prompt": "q ?", "chosen": f"good great {tail}", "rejected": f"bad awful {tail}"},
            *small_pairs.select_columns(["prompt", "chosen", "rejected"]).to_list()]
    with caplog.at_level(logging.WARNING, logger="xlrm_lib.train"):
        train_reward_model(str(tiny_bert_dir), make_pairs(rows), output_dir=tmp_path / "c",
                           **{**FAST, "warmup_ratio": 0.0})
    assert "1 of 5 pairs are the same text once cut to max_length 32 tokens (keeping the end" in caplog.text


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("n", [0, 1])
def test_too_few_pairs(tiny_bert_dir, n):
    with pytest.raises(ValueError, match=f"at least 2 preference pairs.*got {n}"):
        train_reward_model(str(tiny_bert_dir), toy_pairs(n, TRAIN_WORDS, seed=0), **FAST)


def test_no_pairs_or_wrong_columns(tiny_bert_dir):
    with pytest.raises(ValueError, match="at least 2"):
        train_reward_model(str(tiny_bert_dir), None, **FAST)
    bare = datasets.Dataset.from_dict({"chosen": ["a", "b"], "rejected": ["c", "d"]})
    with pytest.raises(ValueError, match=r"lack column\(s\) \['prompt'\]"):
        train_reward_model(str(tiny_bert_dir), bare, **FAST)


def test_all_chosen_equal_rejected(tiny_bert_dir):
    pairs = make_pairs([{"chosen": "good", "rejected": "good"}, {"chosen": "w1 w2", "rejected": "w1 w2"}])
    with pytest.raises(ValueError, match="nothing to learn"):
        train_reward_model(str(tiny_bert_dir), pairs, **FAST)


def test_unknown_kwarg_lists_accepted(tiny_bert_dir, small_pairs):
    with pytest.raises(TypeError) as e:
        train_reward_model(str(tiny_bert_dir), small_pairs, learning_rate=1e-3)
    msg = str(e.value)
    assert "'learning_rate'" in msg
    for field in ("lr", "epochs", "batch_size", "lora", "margin", "center_coef"):
        assert f"'{field}'" in msg


@pytest.mark.parametrize("kw, bad", [({"lr": 0.0}, "lr = 0.0"), ({"lr": -1e-3}, "lr = -0.001"),
                                     ({"lr": float("nan")}, "lr = nan"), ({"lr": float("inf")}, "lr = inf"),
                                     ({"lr": "1e-4"}, "lr = '1e-4'.*1.0e-4"), ({"epochs": 0}, "epochs = 0"),
                                     ({"warmup_ratio": 1.0}, "warmup_ratio = 1.0"), ({"batch_size": 0}, "batch_size = 0"),
                                     ({"batch_size": 2.5}, "batch_size = 2.5"), ({"center_coef": -1.0}, "center_coef"),
                                     ({"bf16": "yes"}, "bf16 = 'yes'"), ({"lora": -1}, "lora = -1"),
                                     ({"lora": {"rank": 8}}, r"lora has unknown key\(s\) \['rank'\]")])
def test_invalid_parameters(tiny_bert_dir, small_pairs, kw, bad):
    with pytest.raises(ValueError, match=f"invalid training parameter.*{bad}"):
        train_reward_model(str(tiny_bert_dir), small_pairs, **kw)


def test_invalid_template(tiny_bert_dir, small_pairs):
    with pytest.raises(ValueError, match="unknown template"):
        train_reward_model(str(tiny_bert_dir), small_pairs, template="jinja")


def test_tokenizer_model_vocab_mismatch(tmp_path, small_pairs):
    tok = word_tokenizer("bert")
    path = save_model(tmp_path / "mismatch", tiny_bert(vocab_size=len(tok) - 10), tok)
    with pytest.raises(ValueError, match="do not match"):
        train_reward_model(str(path), small_pairs, **FAST)


def test_unknown_backbone_fails_fast(small_pairs):
    with pytest.raises(ValueError, match="me5-small"):
        train_reward_model("no-such-backbone", small_pairs, **FAST)


# ----------------------------------------------------------------------------- LoRA
def test_lora_saves_a_merged_model_dir(tiny_bert_dir, small_pairs):
    path = train_reward_model(str(tiny_bert_dir), small_pairs, lora={"r": 4, "alpha": 8, "dropout": 0.0},
                              **{**FAST, "lr": 1e-2, "epochs": 2})
    assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    assert not (path / "adapter_config.json").exists()  # merged, not an adapter
    assert read_card(path)["config"]["lora"] == {"r": 4, "alpha": 8, "dropout": 0.0}
    model, tok = load_reward_model(path)
    base, _ = load_reward_model(tiny_bert_dir)
    assert not any("lora" in k for k in model.state_dict())
    # the LoRA update was merged into an attention weight; the frozen word embeddings did not move
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(model.state_dict()[name], base.state_dict()[name])
    emb = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(model.state_dict()[emb], base.state_dict()[emb])
    scores = score_pairs(model, tok, small_pairs)
    assert np.isfinite(scores["margin"]).all()


# ----------------------------------------------------------------------------- a decoder RM
def test_decoder_rm_records_and_reuses_its_chat_format(tmp_path, small_pairs):
    from conftest import CHAT_TEMPLATE, tiny_llama
    from xlrm_lib.evaluate import model_format
    from xlrm_lib.formatting import encode

    base = save_model(tmp_path / "llama", tiny_llama(pad_token_id=None),
                      word_tokenizer("llama", pad=False, chat_template=CHAT_TEMPLATE))
    path = train_reward_model(str(base), small_pairs, **{**FAST, "lr": 1e-3})
    card = read_card(path)
    assert card["format"]["template"] == "chat"
    model, tok = load_reward_model(path)
    assert model.config.pad_token_id == tok.pad_token_id == 1  # <unk> stands in for the missing pad
    assert json.loads((path / "config.json").read_text())["pad_token_id"] == 1  # saved, not only set on load
    assert model_format(model) == TextFormat("chat", 32, "left")
    scores = score_pairs(model, tok, small_pairs)
    chat_ids = encode(tok, small_pairs["prompt"], small_pairs["chosen"], TextFormat("chat", 32))
    assert scores["len_chosen"].tolist() == [len(ids) for ids in chat_ids]
    assert all(ids[0] == tok.bos_token_id for ids in chat_ids)  # the template's BOS, kept by truncation


def test_a_decoder_rm_keeps_the_pad_token_it_was_given(tmp_path, small_pairs):
    # Llama 3 style: only BOS and EOS, the chat template ends each turn with EOS. The new pad token and its
    # embedding row are saved with the RM, so the RM reloads as it was trained and scored
    from conftest import CHAT_TEMPLATE, eos_only_tokenizer, tiny_llama
    from xlrm_lib.models import ADDED_PAD

    base = save_model(tmp_path / "llama", tiny_llama(pad_token_id=None), eos_only_tokenizer(chat_template=CHAT_TEMPLATE))
    path = train_reward_model(str(base), small_pairs, **{**FAST, "lr": 1e-3})
    config = json.loads((path / "config.json").read_text())
    model, tok = load_reward_model(path)
    assert tok.pad_token == ADDED_PAD and tok.pad_token_id == config["pad_token_id"] == config["vocab_size"] - 1
    assert model.get_input_embeddings().num_embeddings == config["vocab_size"]
    scores = score_pairs(model, tok, small_pairs, batch_size=3)
    alone = score_pairs(model, tok, small_pairs.select([0]), batch_size=1)
    assert abs(scores["reward_chosen"].iloc[0] - alone["reward_chosen"].iloc[0]) <= 1e-4


def test_a_local_backbone_is_identified_by_its_tokenizer_and_config_too(tmp_path):
    # the same weights under the same directory name, with an edited chat template: another backbone, so it must
    # not hit the RM cache of the first (the tokenizer's files used to be left out of the key)
    from conftest import CHAT_TEMPLATE, tiny_llama

    a = save_model(tmp_path / "a" / "llama", tiny_llama(), word_tokenizer("llama", chat_template=CHAT_TEMPLATE))
    b = save_model(tmp_path / "b" / "llama", tiny_llama(), word_tokenizer("llama", chat_template=CHAT_TEMPLATE))
    c = save_model(tmp_path / "c" / "llama", tiny_llama(), word_tokenizer("llama", chat_template=CHAT_TEMPLATE + " "))
    fp = train_mod.backbone_fingerprint
    assert fp(str(a)) == fp(str(b))  # content, not location
    assert fp(str(a)) != fp(str(c))


def test_a_sharded_local_backbone_is_identified_by_every_shard(tmp_path, monkeypatch):
    # only the first shard was hashed (the others by size, which an edit keeps): a backbone changed in its last
    # layers reused the RM trained on the old one
    from conftest import tiny_llama

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    model = tiny_llama()
    d = tmp_path / "sharded"
    model.save_pretrained(d, max_shard_size="20KB")
    word_tokenizer("llama").save_pretrained(d)
    shards = sorted(d.glob("*.safetensors"))
    before = train_mod.backbone_fingerprint(str(d))
    assert len(shards) >= 3 and len(before["weights"]) == len(shards)
    with torch.no_grad():
        model.score.weight.add_(1.0)  # the head is in the last shard: same shapes, same file sizes
    model.save_pretrained(d, max_shard_size="20KB")
    for f in shards:  # saved later than before (a real edit is; this test is faster than the clock's tick)
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert sorted(d.glob("*.safetensors")) == shards and train_mod.backbone_fingerprint(str(d)) != before


def test_file_digest_memo_reads_a_file_again_only_when_it_changed(tmp_path, monkeypatch):
    from xlrm_lib import store

    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "w.bin"
    f.write_bytes(b"one")
    first = store.file_digest_memo(f)
    assert first == store.file_digest(f)
    monkeypatch.setattr(store, "file_digest", lambda *a: "not read again")
    assert store.file_digest_memo(f) == first  # same path, size and mtime: remembered
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert store.file_digest_memo(f) == "not read again"
    # a same-size edit with its modification time put back (cp -p, rsync -a): the change time still moves
    monkeypatch.undo()
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "cache"))
    st = f.stat()
    before = store.file_digest_memo(f)
    time.sleep(0.01)
    f.write_bytes(b"two")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert f.stat().st_mtime_ns == st.st_mtime_ns and store.file_digest_memo(f) != before


DDP_SCRIPT = """
import os, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import make_pairs
from xlrm_lib.train import train_reward_model
pairs = make_pairs([{{"prompt": f"w{{i}} w{{i + 1}} ?", "chosen": f"w{{i}} good great " + "w3 " * (i % 5),
                     "rejected": f"bad awful w{{i + 2}}"}} for i in range(16)])
out = train_reward_model(sys.argv[1], pairs, output_dir=sys.argv[2], epochs=2, batch_size=4, lr=1e-3, bf16=False,
                         progress=False, max_length=32, logging_steps=1, device="cpu")
Path(sys.argv[3], "rank" + os.environ["RANK"]).write_text(str(out))  # each its own file: stdout interleaves
"""


@pytest.mark.slow
def test_two_processes_train_one_model_and_write_it_once(tiny_bert_dir, tmp_path):
    # torchrun / accelerate launch: every process runs train_reward_model. They split the pairs (the card counts
    # the tokens of all of them), and only the main process writes the directory; the others return its path
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent)))
    out = tmp_path / "rm"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    said = tmp_path / "said"
    said.mkdir()
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(tiny_bert_dir), str(out), str(said)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert {p.name: p.read_text() for p in said.iterdir()} == {"rank0": str(out), "rank1": str(out)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp.py", "rm", "said"]  # no temporary directory left
    card = read_card(out)
    assert card["runtime"]["processes"] == 2
    steps = [h["learning_rate"] for h in card["log_history"]]
    assert len(steps) == 4 and steps[0] == 0.0 and steps[1] == pytest.approx(1e-3)  # 16 pairs / (4 x 2), 2 epochs
    one = train_reward_model(str(tiny_bert_dir), make_pairs([
        {"prompt": f"w{i} w{i + 1} ?", "chosen": f"w{i} good great " + "w3 " * (i % 5), "rejected": f"bad awful w{i + 2}"}
        for i in range(16)]), output_dir=tmp_path / "one", epochs=2, batch_size=4, lr=1e-3, bf16=False,
        progress=False, max_length=32, logging_steps=1)
    assert card["train_metrics"]["real_tokens"] == read_card(one)["train_metrics"]["real_tokens"]
    model, tok = load_reward_model(out)
    assert np.isfinite(score_pairs(model, tok, make_pairs([{"prompt": "w1", "chosen": "good", "rejected": "bad"}]))[
        "margin"]).all()


# ----------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("disable", [True, False])
def test_dropout_disabled_like_trl_unless_asked(disable):
    model = train_mod._prepare_model(tiny_bert().train(), RewardConfig(disable_dropout=disable))
    ps = {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)}
    assert ps == ({0.0} if disable else {0.1})  # BertConfig's default hidden/attention dropout is 0.1


def test_pairs_of_the_wrong_type_or_with_empty_answers_are_refused(tiny_bert_dir, small_pairs):
    with pytest.raises(TypeError, match=r"pairs is a list; expected a datasets\.Dataset"):
        train_reward_model(str(tiny_bert_dir), small_pairs.to_list(), **FAST)
    rows = small_pairs.to_list()
    rows[1]["chosen"] = "  "
    with pytest.raises(ValueError, match=r"1 pair\(s\) have an empty or non-text chosen/rejected answer \(rows \[1\]\)"):
        train_reward_model(str(tiny_bert_dir), datasets.Dataset.from_list(rows), **FAST)


def test_a_bad_device_is_named_before_the_model_loads(tiny_bert_dir, small_pairs, monkeypatch):
    from xlrm_lib import train

    monkeypatch.setattr(train, "load_reward_model", lambda *a, **k: pytest.fail("loaded the model first"))
    with pytest.raises(ValueError, match=r"device = 'gpu'; expected a torch device such as 'cpu', 'cuda'"):
        train_reward_model(str(tiny_bert_dir), small_pairs, device="gpu", **FAST)


def test_non_finite_weights_are_not_saved(tiny_bert_dir, small_pairs, tmp_path):
    # the last update blows the weights up after the last loss was logged: the loss check cannot see it, the
    # check before saving does
    out = tmp_path / "rm"
    with pytest.raises(FloatingPointError, match=r"non-finite weights in .*nothing was saved\. Lower lr \(it was 1e\+39\)"):
        # two steps: the first is the warm-up's (lr 0), the second's update overflows float32
        train_reward_model(str(tiny_bert_dir), small_pairs, output_dir=out, **{**FAST, "epochs": 2, "lr": 1e39})
    assert not out.exists()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", [0, 9, 10, 24])  # first entry, last of a slice, first of the next, last entry
def test_the_weight_check_looks_at_every_slice(bad, where):
    t = torch.zeros(5, 5)
    assert train_mod._all_finite(t, chunk=10)
    t.view(-1)[where] = bad
    assert not train_mod._all_finite(t, chunk=10)
    assert not train_mod._all_finite(t)


def test_a_numpy_lora_rank_is_a_rank(tiny_bert_dir):
    import numpy as np

    from xlrm_lib.train import RewardConfig, _prepare_model

    model, _ = load_reward_model(tiny_bert_dir)
    peft_model = _prepare_model(model, RewardConfig(lora=np.int64(4)).validate())
    assert peft_model.peft_config["default"].r == 4 and peft_model.peft_config["default"].lora_alpha == 8


def test_lora_settings_are_what_was_asked(tiny_bert_dir):
    # {} is LoRA with the defaults (it was full fine-tuning: {} is falsy); a fractional alpha is kept (int(0.5)
    # scaled the adapters by zero); disable_dropout also turns off LoRA's own dropout (it ran at 0.05)
    import torch

    from xlrm_lib.train import RewardConfig, _prepare_model

    assert RewardConfig(lora={}).validate().lora_settings() == {"r": 16, "alpha": 32.0, "dropout": 0.05,
                                                                "target_modules": "all-linear"}
    assert RewardConfig(lora={"r": 4}).lora_settings()["alpha"] == 8.0  # 2 x r, as for a bare rank
    assert RewardConfig(lora=0).lora_settings() is None and RewardConfig().lora_settings() is None
    model, _ = load_reward_model(tiny_bert_dir)
    peft_model = _prepare_model(model, RewardConfig(lora={"r": 8, "alpha": 0.5}).validate())
    lin = next(m for m in peft_model.modules() if isinstance(getattr(m, "scaling", None), dict))
    assert lin.scaling["default"] == pytest.approx(0.5 / 8)
    assert [m.p for m in peft_model.modules() if isinstance(m, torch.nn.Dropout) and m.p > 0] == []
    model, _ = load_reward_model(tiny_bert_dir)
    kept = _prepare_model(model, RewardConfig(lora={"dropout": 0.1}, disable_dropout=False).validate())
    assert {m.p for m in kept.modules() if isinstance(m, torch.nn.Dropout)} >= {0.1}


def test_bt_loss_refuses_rewards_that_would_broadcast():
    import torch

    from xlrm_lib.train import bt_loss

    with pytest.raises(ValueError, match=r"got \(4, 1\) and \(4,\)"):
        bt_loss(torch.zeros(4, 1), torch.zeros(4))
    assert float(bt_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))) == pytest.approx(
        (0.31326169 + 0.69314718) / 2)


def test_max_length_past_an_encoders_position_table_is_capped_with_a_warning(tiny_bert_dir, tmp_path, caplog):
    # paper.yaml's 2048 with a 512-position encoder failed inside the embedding layer ("index 128 is out of
    # bounds"), naming neither max_length nor the limit
    from xlrm_lib.evaluate import model_format, score_pairs
    from xlrm_lib.arch import position_limit
    from xlrm_lib.models import load_reward_model

    long = " ".join(f"w{i % 48}" for i in range(300))
    pairs = make_pairs([{"prompt": long, "chosen": "w1 good", "rejected": "w2 bad"}] * 4)
    with caplog.at_level("WARNING", logger="xlrm_lib.formatting"):
        out = train_reward_model(str(tiny_bert_dir), pairs, output_dir=tmp_path / "rm", max_length=256, epochs=1,
                                 batch_size=2, bf16=False, progress=False)
    assert "max_length 256 is more than BertForSequenceClassification takes (128 positions)" in caplog.text
    model, tok = load_reward_model(out)
    assert position_limit(model) == 128 and model_format(model).max_length == 128  # saved as used
    assert len(score_pairs(model, tok, pairs)) == 4
    from conftest import tiny_llama

    assert position_limit(tiny_llama()) is None  # rotary positions: no hard end


def test_training_loads_the_hub_commit_its_key_holds(tmp_path, monkeypatch, small_pairs):
    from huggingface_hub import constants

    from xlrm_lib import hub

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("XLRM_CACHE", str(tmp_path / "xlrm"))
    hub.commit.cache_clear()
    ref = tmp_path / "models--org--rm-base" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("e" * 40)
    seen = {}

    def fake_load(backbone, **kw):
        seen.update(kw)
        raise RuntimeError("stop here")

    monkeypatch.setattr(train_mod, "load_reward_model", fake_load)
    with pytest.raises(RuntimeError, match="stop here"):
        train_mod.train_reward_model("org/rm-base", small_pairs, epochs=1, batch_size=4, bf16=False)
    assert seen["revision"] == "e" * 40
    with pytest.raises(ValueError, match="a revision pins a hub id"):
        load_reward_model(str(tmp_path), revision="main")
    hub.commit.cache_clear()


def test_zero3_without_16bit_gathering_is_refused_before_training():
    # accelerate raised at the save, after the whole training; "auto" (accelerate's default) means false
    from types import SimpleNamespace

    from xlrm_lib.train import check_zero3_saving

    def acc(zero):
        return SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(
            zero_stage=3, deepspeed_config={"zero_optimization": {"stage": 3, **zero}})))

    for zero in ({}, {"stage3_gather_16bit_weights_on_model_save": "auto"},
                 {"stage3_gather_16bit_weights_on_model_save": False}):
        with pytest.raises(ValueError, match="set `stage3_gather_16bit_weights_on_model_save: true` under "
                                             "zero_optimization"):
            check_zero3_saving(acc(zero))
    check_zero3_saving(acc({"stage3_gather_16bit_weights_on_model_save": True}))
    with pytest.raises(ValueError, match="LoRA under DeepSpeed ZeRO-3: the adapters cannot be merged"):
        check_zero3_saving(acc({"stage3_gather_16bit_weights_on_model_save": True}), lora=True)


def test_the_key_holds_how_many_processes_trained_and_deepspeed(tiny_bert_dir, small_pairs, monkeypatch):
    # torchrun x2 (a global batch twice batch_size) and one process are different trainings: the cache handed one
    # for the other; DeepSpeed saves 16-bit weights
    from xlrm_lib.train import launch_settings

    for k in ("WORLD_SIZE", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(k, raising=False)
    assert launch_settings() == {}  # one plain process: keys as before
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    assert launch_settings() == {"processes": 2, "deepspeed": {"zero_stage": "2", "config": None}}


def test_a_number_written_as_an_int_or_a_float_is_the_same_rm():
    # epochs: 1 and epochs: 1.0 were two cache keys: every RM trained again, every cell reran
    import numpy as np

    from xlrm_lib.data import load_pairs
    from xlrm_lib.store import fingerprint
    from xlrm_lib.train import training_key

    a = RewardConfig(epochs=1, lr=1e-4, batch_size=np.int64(8)).validate()
    b = RewardConfig(epochs=1.0, lr=1e-4, batch_size=8).validate()
    assert a == b and type(a.epochs) is float and type(a.batch_size) is int
    pairs = load_pairs("embedded", langs=["en"], split="train", limit=4)
    assert fingerprint(training_key("me5-small", pairs, a)) == fingerprint(training_key("me5-small", pairs, b))


# ----------------------------------------------------------------------------- added by mutation testing
def test_the_key_holds_the_data_the_trainer_version_and_the_launch(monkeypatch):
    # each of these is another trained RM: a key without it hands the cached RM of the old one back
    from xlrm_lib.store import fingerprint
    from xlrm_lib.train import training_key

    for k in ("WORLD_SIZE", "ACCELERATE_USE_DEEPSPEED", "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(k, raising=False)
    cfg = RewardConfig(bf16=False).validate()
    rows = [{"prompt": "w1 ?", "chosen": "good", "rejected": "bad"},
            {"prompt": "w2 ?", "chosen": "great", "rejected": "awful"}]
    pairs = make_pairs(rows)
    key = fingerprint(training_key("me5-small", pairs, cfg))
    other_prompt = make_pairs([{**rows[0], "prompt": "w3 ?"}, rows[1]])
    other_rejected = make_pairs([rows[0], {**rows[1], "rejected": "bad"}])
    assert fingerprint(training_key("me5-small", other_prompt, cfg)) != key
    assert fingerprint(training_key("me5-small", other_rejected, cfg)) != key
    version = train_mod.TRAINER_VERSION
    monkeypatch.setattr(train_mod, "TRAINER_VERSION", version + 1)
    assert fingerprint(training_key("me5-small", pairs, cfg)) != key
    monkeypatch.setattr(train_mod, "TRAINER_VERSION", version)
    assert fingerprint(training_key("me5-small", pairs, cfg)) == key
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun x2: a global batch twice batch_size
    assert training_key("me5-small", pairs, cfg)["launch"] == {"processes": 2}
    assert fingerprint(training_key("me5-small", pairs, cfg)) != key


def test_the_logged_training_accuracy_counts_a_tie_as_wrong():
    # RewardBench's rule (evaluate.py), for the card's final_accuracy too: rewards chosen [1, 0, 4] vs rejected
    # [0, 0, 3] are two wins and a tie -> 2/3, not 3/3; margin mean (1 + 0 + 1) / 3; chosen mean 5/3, rejected 1
    from types import SimpleNamespace

    rewards = torch.tensor([1.0, 0.0, 4.0, 0.0, 0.0, 3.0])  # chosen then rejected, as PairCollator stacks them

    class Head(torch.nn.Module):
        def forward(self, input_ids, attention_mask=None):
            return SimpleNamespace(logits=rewards[:, None])

    trainer = SimpleNamespace(margin=0.0, center_coef=0.0, cuda_graphs=False, _stats=[], real_tokens=0)
    model = Head().train()
    inputs = {"input_ids": torch.ones(6, 2, dtype=torch.long), "attention_mask": torch.ones(6, 2, dtype=torch.long)}
    loss = train_mod._make_trainer_class().compute_loss(trainer, model, inputs)
    assert float(loss) == pytest.approx((_ls(1) + _ls(0) + _ls(1)) / 3, abs=1e-6)
    stats = dict(zip(("loss",) + train_mod.STAT_NAMES, trainer._stats[0].tolist()))
    assert stats["accuracy"] == pytest.approx(2 / 3) and stats["margin"] == pytest.approx(2 / 3)
    assert (stats["rewards/chosen"], stats["rewards/rejected"]) == pytest.approx((5 / 3, 1.0))
    assert (stats["rewards/min"], stats["rewards/max"]) == pytest.approx((0.0, 4.0))
    assert trainer.real_tokens == 12
