"""Smoke test of benchmarks/: the scripts run end to end in their tiny mode and write a sane results file.

Timing is never asserted (these are reports, and CI machines are shared); only that the runs finish, the
JSON has its fields, both sides trained the same number of steps, and the scoring baseline sees the same
token ids and gives the same scores as ours.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_scripts_run_tiny(tmp_path):
    score = _script("bench_score").main(["--tiny", "--repeats", "1", "--limit", "3", "--langs", "en", "ko",
                                         "--json", str(tmp_path / "score.json")])
    assert json.loads((tmp_path / "score.json").read_text())["benchmark"] == "bench_score"
    assert score["n_pairs"] == 6 and score["token_ids_differ"] == 0
    assert score["max_abs_delta"] <= 1e-4  # same texts, same token ids, fp32: the same rewards
    assert math.isfinite(score["ratio_pairs_per_s"]["median_of_ratios"])

    train = _script("bench_train").main(["--tiny", "--precision", "fp32", "--steps", "2", "--repeats", "1",
                                         "--warmup-steps", "1", "--batch-size", "4", "--limit", "8",
                                         "--test-langs", "en", "--test-limit", "4",
                                         "--json", str(tmp_path / "train.json")])
    rec = json.loads((tmp_path / "train.json").read_text())
    assert rec["machine"]["versions"]["trl"] and rec["precisions"] == ["fp32"]
    assert set(rec["runs"]) == {"ours-fp32", "trl-fp32"}
    trl_run, ours_run = rec["runs"]["trl-fp32"][-1], rec["runs"]["ours-fp32"][-1]
    assert trl_run["steps_done"] == ours_run["steps_done"] == 2 and trl_run["pairs_after_filter"] == 8
    assert "git_dirty" in rec["machine"] and "triton" in rec["machine"]["versions"]
    # 2 steps x 4 pairs = all 8 pairs once on both sides; TRL appends one EOS to each of the 16 sequences
    assert ours_run["real_tokens"] > 0 and trl_run["real_tokens"] == ours_run["real_tokens"] + 16
    for variant in ("ours-fp32", "trl-fp32"):
        assert 0.0 <= train["accuracy"][variant]["test_acc"] <= 1.0
    assert math.isfinite(train["ratios"]["fp32"]["pairs_per_s"]["median_of_ratios"])


def test_gpu_synthetic_paths_run_tiny_on_cpu(tmp_path):
    """The --gpu-synthetic code paths (random Qwen2-family RM, word tokenizer, packed check, padding factors)."""
    train = _script("bench_train").main(["--gpu-synthetic", "--tiny", "--steps", "2", "--repeats", "1",
                                         "--warmup-steps", "1", "--json", str(tmp_path / "t.json")])
    assert set(train["runs"]) == {"ours", "trl", "ours-eager", "ours-padded"}
    assert all(w["seconds"] > 0 for w in train["warmup"].values())
    check = train["packed_check"]  # reference attention on CPU: packed rewards = padded rewards up to bf16
    assert check["same_pair_verdicts"] == 1.0 and check["grad_finite"] and not check["kernel"]
    assert check["padded_left_grads_finite"] and check["padded_right_grads_finite"]
    ours, trl_run = train["runs"]["ours"][-1], train["runs"]["trl"][-1]
    assert ours["real_tokens"] == trl_run["real_tokens"]  # TRL gets our token ids: the same tokens on both sides
    assert ours["steps_done"] == trl_run["steps_done"] == 2
    score = _script("bench_score").main(["--gpu-synthetic", "--tiny", "--repeats", "1", "--pairs", "12",
                                         "--json", str(tmp_path / "s.json")])
    assert score["token_ids_differ"] == 0 and score["max_abs_delta"] <= 1e-4
    pad = score["padding_factors"]
    assert pad["baseline"] >= 1.0 and pad["ours"] >= 1.0  # computed tokens per real token


def test_our_side_trains_exactly_the_steps_asked_for(tmp_path):
    # epochs = steps / steps_per_epoch rounded up to one step more for some sizes (7 steps of 25 per epoch -> 8)
    from conftest import make_pairs, save_model, tiny_bert, word_tokenizer

    bench_train = _script("bench_train")
    backbone = save_model(tmp_path / "bert", tiny_bert(), word_tokenizer("bert"))
    pairs = make_pairs([{"prompt": f"w{i} ?", "chosen": f"w{i} good", "rejected": "w2 bad"} for i in range(50)])
    run = bench_train.run_ours(str(backbone), pairs, steps=7, batch_size=2, lr=1e-3, max_length=16, bf16=False,
                               seed=0, workdir=tmp_path / "w", device="cpu")
    assert run["steps_done"] == 7


def test_rounds_alternate_their_order_across_calls():
    from itertools import chain

    harness = _script("harness")
    order = []
    variants = {n: (lambda n=n: order.append(n) or {}) for n in "AB"}
    harness.interleaved(variants, 1)
    harness.interleaved(variants, 1, start=1)  # the round after: reversed
    assert order == list(chain("AB", "BA"))
