"""Scoring throughput: xlrm's ``score_pairs`` against a reward-bench-style ``pipeline``, side by side.

Run (from the repository root)::

    python benchmarks/bench_score.py                          # me5-small + fresh head, embedded test split, 8 langs
    python benchmarks/bench_score.py --model DIR              # a trained RM directory
    python benchmarks/bench_score.py --limit 24 --repeats 2   # quicker, noisier
    python benchmarks/bench_score.py --tiny --repeats 1       # smoke: tiny in-process BERT (seconds)
    python benchmarks/bench_score.py --gpu-synthetic          # GPU: random Qwen2-0.5B-shaped RM, 256 long pairs, fp32
    python benchmarks/bench_score.py --gpu-synthetic --tiny --repeats 1   # that code path on CPU, tiny

OURS is :func:`xlrm_lib.evaluate.score_pairs`: chosen and rejected of all pairs tokenised once, sorted by
length together and scored in batches of ``--batch-size`` (32), so padding is minimal. The BASELINE is how
reward-bench scores a sequence-classifier RM: a transformers ``text-classification`` pipeline with
``batch_size=8`` over the texts in dataset order (chosen texts, then rejected texts), ``function_to_apply="none"``.
Both see the SAME rendered texts (:func:`xlrm_lib.formatting.render` with the RM's ``TextFormat``) and the
same token ids: the pipeline gets the same truncation (``truncation=True``, the format's ``max_length`` and
truncation side; no added special tokens for chat templates, which carry their own). The script checks that
(it prints how many sequences tokenise differently, normally 0) and that the scores agree (max |delta|;
<= 1e-4 expected in fp32). Both timings include rendering and tokenising. Timing is never asserted.

``--gpu-synthetic`` scores random-token pairs with log-normal lengths (median 300 tokens per sequence, clipped
32-1024; the same generator as ``bench_train.py --gpu-synthetic``) with a randomly initialised
Qwen2-0.5B-shaped RM in float32 (TF32 off), the regime of a real study on a GPU. The pipeline then pads on
the right, since it passes no position ids (left padding would shift a decoder's positions and its scores).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import asdict
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (after the path tweak above)


def baseline_texts(tok, pairs, fmt) -> list[str]:
    """Rendered chosen texts then rejected texts, in dataset order (what reward-bench feeds its pipeline)."""
    from xlrm_lib.formatting import render

    return ([render(tok, p, c, fmt) for p, c in zip(pairs["prompt"], pairs["chosen"])]
            + [render(tok, p, r, fmt) for p, r in zip(pairs["prompt"], pairs["rejected"])])


def pipeline_kwargs(fmt) -> dict:
    """Tokenizer arguments that make the pipeline cut exactly like :func:`xlrm_lib.formatting.encode`."""
    kw = {"truncation": True, "max_length": fmt.max_length}
    if fmt.template == "chat":
        kw["add_special_tokens"] = False  # the template already has its BOS
    return kw


def score_baseline(pipe, tok, pairs, fmt, *, batch_size: int = 8):
    """Rewards ``(2n,)`` (chosen then rejected) from the text-classification pipeline."""
    import numpy as np

    side, tok.truncation_side = tok.truncation_side, fmt.truncation_side
    try:
        out = pipe(baseline_texts(tok, pairs, fmt), batch_size=batch_size, function_to_apply="none",
                   **pipeline_kwargs(fmt))
    finally:
        tok.truncation_side = side
    return np.array([o[0]["score"] if isinstance(o, list) else o["score"] for o in out], dtype=np.float64)


def same_token_ids(tok, pairs, fmt) -> int:
    """How many sequences the pipeline would tokenise differently from ``encode`` (0 = identical inputs)."""
    from xlrm_lib.formatting import encode

    ours = encode(tok, pairs["prompt"], pairs["chosen"], fmt) + encode(tok, pairs["prompt"], pairs["rejected"], fmt)
    side, tok.truncation_side = tok.truncation_side, fmt.truncation_side
    try:
        theirs = tok(baseline_texts(tok, pairs, fmt), **pipeline_kwargs(fmt))["input_ids"]
    finally:
        tok.truncation_side = side
    return sum(a != b for a, b in zip(ours, theirs))


def padding_factors(tok, pairs, fmt, *, ours_batch: int, base_batch: int) -> dict:
    """Tokens each side pushes through the model per real token: the pipeline pads batches of ``base_batch`` in
    dataset order, ours pads length-sorted batches of ``ours_batch``. Their ratio bounds what exact (same-
    arithmetic) batching can gain over the pipeline; the rest of a speed-up must come from elsewhere."""
    from xlrm_lib.formatting import encode

    lengths = [len(s) for s in encode(tok, pairs["prompt"], pairs["chosen"], fmt)
               + encode(tok, pairs["prompt"], pairs["rejected"], fmt)]

    def padded(ls, b):
        return sum(max(ls[i:i + b]) * len(ls[i:i + b]) for i in range(0, len(ls), b))

    real = sum(lengths)
    return {"baseline": padded(lengths, base_batch) / real, "ours": padded(sorted(lengths), ours_batch) / real}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="me5-small", help="RM directory or packaged backbone (fresh head; default me5-small)")
    p.add_argument("--langs", nargs="+", default=None, help="test-split languages (default all 8)")
    p.add_argument("--limit", type=int, default=None, help="at most this many pairs per language")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each, interleaved (default 3)")
    p.add_argument("--batch-size", type=int, default=32, help="our batch size (default 32; the baseline uses 8)")
    p.add_argument("--baseline-batch-size", type=int, default=8, help="the pipeline's batch size (reward-bench: 8)")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                   help="model weights (the |delta| <= 1e-4 check applies to float32)")
    p.add_argument("--max-length", type=int, default=256, help="format max_length for a model without xlrm_format.json")
    p.add_argument("--bf16-variant", action="store_true",
                   help="also time our opt-in bf16-autocast scoring (scores move by ~1e-2; reported apart)")
    p.add_argument("--tiny", action="store_true", help="tiny in-process model (smoke runs; numbers mean nothing)")
    p.add_argument("--gpu-synthetic", action="store_true", help="random Qwen2-0.5B-shaped RM, long random pairs")
    p.add_argument("--pairs", type=int, default=256, help="--gpu-synthetic: number of pairs (default 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="results file (default benchmarks/results/bench_score-<time>.json)")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats must be >= 1, got {a.repeats}")
    harness.quiet()

    import numpy as np
    from transformers import pipeline

    from xlrm_lib.data import load_pairs
    from xlrm_lib.evaluate import model_format, score_pairs
    from xlrm_lib.formatting import TextFormat
    from xlrm_lib.arch import is_decoder
    from xlrm_lib.models import load_reward_model

    mach = harness.machine()
    tmp = Path(tempfile.mkdtemp(prefix="bench_score-"))
    model_src = a.model
    if a.gpu_synthetic:
        import torch

        import bench_train

        if not torch.cuda.is_available() and not a.tiny:
            raise SystemExit("--gpu-synthetic needs a CUDA GPU (a 0.5B model); add --tiny to run the code path on CPU")
        torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32, so the |delta| check means something
        backbone, _ = bench_train.synthetic_backbone(tmp / "qwen2-syn", tiny=a.tiny, seed=a.seed)
        pairs, a.max_length = bench_train.synthetic_pairs(a.pairs, tiny=a.tiny, vocab=2048 if a.tiny else 151936,
                                                          seed=a.seed)
        model_src = str(backbone)
        with bench_train.word_tokenizer_loading(backbone):
            model, tok = load_reward_model(model_src, dtype=a.dtype)
    else:
        pairs = load_pairs("embedded", langs=a.langs, split="test", limit=a.limit)
        if a.tiny:
            model_src = str(harness.tiny_bert_backbone(tmp / "tiny-bert", harness.pair_texts(load_pairs("embedded"))))
        model, tok = load_reward_model(model_src, dtype=a.dtype)
    fmt = model_format(model, TextFormat("auto", a.max_length)).resolved(tok)
    if is_decoder(model):  # the pipeline passes no position ids, so left padding would move its scores;
        tok.padding_side = "right"  # ours is padding-side invariant
    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=model.device)
    n_diff_ids = same_token_ids(tok, pairs, fmt)

    def ours():
        (df, s) = harness.timed(lambda: score_pairs(model, tok, pairs, fmt=fmt, batch_size=a.batch_size))
        return {"seconds": s, "pairs_per_s": len(pairs) / s,
                "_scores": df["reward_chosen"].tolist() + df["reward_rejected"].tolist()}

    def base():
        (r, s) = harness.timed(lambda: score_baseline(pipe, tok, pairs, fmt, batch_size=a.baseline_batch_size))
        return {"seconds": s, "pairs_per_s": len(pairs) / s, "_scores": r.tolist()}

    def ours_bf16():
        (df, s) = harness.timed(lambda: score_pairs(model, tok, pairs, fmt=fmt, batch_size=a.batch_size, bf16=True))
        return {"seconds": s, "pairs_per_s": len(pairs) / s,
                "_scores": df["reward_chosen"].tolist() + df["reward_rejected"].tolist()}

    warm = pairs.select(range(min(16, len(pairs))))  # warm-up: kernels, allocator, pipeline set-up
    score_pairs(model, tok, warm, fmt=fmt, batch_size=a.batch_size)
    score_baseline(pipe, tok, warm, fmt, batch_size=a.baseline_batch_size)
    if a.bf16_variant:  # autocast set-up and, on a GPU, the packed varlen path: not in the first timed round
        score_pairs(model, tok, warm, fmt=fmt, batch_size=a.batch_size, bf16=True)
    variants = {"ours": ours, "pipeline": base}
    if a.bf16_variant:
        variants["ours-bf16"] = ours_bf16
    runs = harness.interleaved(variants, a.repeats, keep_going=True)
    pad = padding_factors(tok, pairs, fmt, ours_batch=a.batch_size, base_batch=a.baseline_batch_size)

    delta = float(np.max(np.abs(np.array(runs["ours"][-1]["_scores"]) - np.array(runs["pipeline"][-1]["_scores"]))))
    ratio = harness.paired_ratio(runs["ours"], runs["pipeline"], "pairs_per_s")
    rows = [{"method": n, "batch": a.batch_size if n.startswith("ours") else a.baseline_batch_size,
             "pairs/s": harness.median(r["pairs_per_s"] for r in rs),
             "seconds": harness.median(r["seconds"] for r in rs), "runs": len(rs)} for n, rs in runs.items()]
    print(harness.table(rows, list(rows[0])))
    ok = delta <= 1e-4 if a.dtype == "float32" else None
    print(f"{len(pairs)} pairs ({2 * len(pairs)} sequences), format {fmt}; token ids differ for {n_diff_ids} sequences")
    print(f"max |score delta| = {delta:.3g}" + ("" if ok is None else f" ({'OK' if ok else 'FAILS'} <= 1e-4)"))
    sp = ratio["median_of_ratios"]
    print(f"ours/pipeline: pairs/s x{sp:.2f}  [goal >= 3x: {'met' if sp >= 3 else 'NOT met'}]")
    print(f"tokens computed / real tokens: pipeline {pad['baseline']:.3f}, ours {pad['ours']:.3f} -> an exact-"
          f"arithmetic speed-up from padding alone is bounded near x{pad['baseline'] / pad['ours']:.2f}")
    if runs.get("ours-bf16"):
        rb = harness.paired_ratio(runs["ours-bf16"], runs["pipeline"], "pairs_per_s")["median_of_ratios"]
        sb = np.array(runs["ours-bf16"][-1]["_scores"])
        sp32 = np.array(runs["pipeline"][-1]["_scores"])
        n = len(sb) // 2
        agree = float(np.mean((sb[:n] > sb[n:]) == (sp32[:n] > sp32[n:])))
        print(f"ours-bf16/pipeline(fp32): pairs/s x{rb:.2f}; max |delta| {np.max(np.abs(sb - sp32)):.3g}; "
              f"same pairwise verdict on {agree:.1%} of pairs (bf16 is opt-in: score_pairs(..., bf16=True))")
        ratio["bf16_median_of_ratios"] = rb
        ratio["bf16_verdict_agreement"] = agree
    for rs in runs.values():
        for r in rs:
            r.pop("_scores")
    shutil.rmtree(tmp, ignore_errors=True)
    record = {"benchmark": "bench_score", "machine": mach, "settings": vars(a), "model": model_src,
              "format": asdict(fmt), "n_pairs": len(pairs),
              "token_ids_differ": n_diff_ids, "padding_factors": pad, "max_abs_delta": delta, "delta_ok": ok, "runs": runs, "table": rows,
              "ratio_pairs_per_s": ratio}
    print(f"results: {harness.write_results('bench_score', record, a.json)}")
    return record


if __name__ == "__main__":
    main()
