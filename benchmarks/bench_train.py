"""Training throughput: xlrm's recipe against TRL's ``RewardTrainer``, side by side in one process.

Run (from the repository root)::

    python benchmarks/bench_train.py                              # me5-small, embedded en train split, 20 steps x 3
    python benchmarks/bench_train.py --steps 6 --repeats 2        # quicker, noisier
    python benchmarks/bench_train.py --gpu-synthetic --steps 60 --warmup-steps 10   # GPU: random Qwen2-0.5B shape
    python benchmarks/bench_train.py --tiny --steps 2 --repeats 1 # smoke: tiny in-process BERT (seconds)
    python benchmarks/bench_train.py --gpu-synthetic --tiny --steps 2   # the synthetic code path, tiny, on CPU

OURS is :func:`xlrm_lib.train.train_reward_model` with its default recipe (length-grouped batches, or packed
padding-free rows and compiled decoder layers for a decoder on a CUDA GPU; chosen and rejected in one forward,
frozen word embeddings, dropout off, bf16 autocast where the CPU/GPU has fast bf16). The BASELINE
is ``trl.RewardTrainer`` with TRL's defaults (gradient checkpointing on, dropout off, linear schedule, EOS
appended, pairs longer than ``max_length`` filtered), given the same model (same seed, so the same fresh
head), tokenizer, pairs, ``max_length``, batch size, number of steps, learning rate and precision flag. TRL
gets the pairs as implicit-prompt text (``chosen`` = the full rendered conversation, exactly the text we
render), or with ``--trl-input ids`` the very token ids we train on.

Throughput is the Trainer's own ``train_runtime`` for both (the training loop; not model loading, tokenising
or saving): pairs/s = steps x batch size / runtime, real tokens/s = non-padding tokens / runtime. Accuracy is
measured the same way for both, with :func:`xlrm_lib.evaluate.score_pairs` on the training pairs and on the
embedded test split (all 8 languages by default). Ratios are medians of per-repeat ours/TRL ratios, the
runs interleaved (see ``harness.py``). Timing is never asserted anywhere: it is a report, not a test.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import gc
import math
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402  (after the path tweak above)

H100_BF16_PEAK = 989e12  # dense bf16 FLOP/s of one H100 SXM, the MFU denominator


# ----------------------------------------------------------------------------------- the two trainers
def run_ours(backbone, pairs, *, steps: int, batch_size: int, lr: float, max_length: int, bf16: bool,
             seed: int, workdir: Path, device=None, **config) -> dict:
    """One training run of OURS for ``steps`` optimizer steps; measurements + the saved model directory.

    ``config``: further :class:`xlrm_lib.train.RewardConfig` fields (e.g. ``packing=False`` for an ablation).
    """
    from xlrm_lib.train import read_card, train_reward_model

    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    _reset_peak()
    skipped_before = _cudagraph_skips()  # the counter is the process's: other variants' and earlier repeats' too
    # the Trainer runs ceil(epochs x steps_per_epoch) steps: half a step below the target, so float rounding of
    # steps / steps_per_epoch cannot add one (7 / 25 * 25 came to 8 steps where TRL ran 7)
    path = train_reward_model(backbone, pairs, output_dir=workdir / "ours", force=True, progress=False,
                              batch_size=batch_size, epochs=(steps - 0.5) / steps_per_epoch, lr=lr,
                              max_length=max_length, bf16=bf16, seed=seed, device=device, **config)
    card = read_card(path)
    m = card["train_metrics"]
    skips = _cudagraph_skips() - skipped_before  # this run's (inductor counts at compile: a cached graph adds 0)
    done = round(m["train_steps_per_second"] * m["train_runtime"])
    if done != steps:
        raise RuntimeError(f"ours trained {done} steps, not {steps}: the comparison would not be like for like")
    logged = [h["accuracy"] for h in card["log_history"] if "accuracy" in h]
    return _measure(steps * batch_size, m["real_tokens"], m["train_runtime"], logged[-1] if logged else None,
                    model_dir=str(path), peak=_peak()) | {"loss": m.get("train_loss"), "packed": card.get("packed"),
                                                          "compiled_blocks": card.get("compiled_blocks"),
                                                          "steps_done": done,
                                                          **({"cudagraph_skips": skips} if skips else {})}


def _cudagraph_skips() -> int:
    """How many compiled graphs inductor left out of CUDA graphs so far in this process (0 without
    ``torch_compile="graphs"``); why is in the log with ``TORCH_LOGS=cudagraphs`` (benchmarks/gpu.sh sets it)."""
    import sys

    if "torch._dynamo" not in sys.modules:  # nothing compiled
        return 0
    from torch._dynamo.utils import counters

    return int(counters["inductor"]["cudagraph_skips"])


def run_trl(backbone, pairs, *, steps: int, batch_size: int, lr: float, max_length: int, bf16: bool,
            seed: int, workdir: Path, trl_input: str = "text", gradient_checkpointing: bool = True,
            device=None, keep_model: bool = False) -> dict:
    """One training run of TRL's ``RewardTrainer`` (its defaults, our shared settings); measurements."""
    import datasets
    import torch
    from trl import RewardConfig, RewardTrainer

    from xlrm_lib.formatting import TextFormat, render
    from xlrm_lib.models import load_reward_model
    from xlrm_lib.train import tokenize_pairs

    _reset_peak()
    model, tok = load_reward_model(backbone, seed=seed, device=device)  # the same fresh head as ours (same seed)
    fmt = TextFormat("auto", max_length).resolved(tok)
    if trl_input == "ids":  # TRL's "processed" form: exactly our token ids
        feats = tokenize_pairs(tok, pairs, fmt)
        ds = datasets.Dataset.from_dict({"chosen_ids": [f["input_ids_chosen"] for f in feats],
                                         "rejected_ids": [f["input_ids_rejected"] for f in feats]})
    elif fmt.template == "chat":  # conversational preference format; TRL applies the chat template itself
        ds = datasets.Dataset.from_dict({
            "chosen": [list(p) + [{"role": "assistant", "content": c}] for p, c in zip(pairs["prompt"], pairs["chosen"])],
            "rejected": [list(p) + [{"role": "assistant", "content": r}] for p, r in zip(pairs["prompt"], pairs["rejected"])]})
    else:  # implicit-prompt text: the same rendered conversation we train on
        ds = datasets.Dataset.from_dict({
            "chosen": [render(tok, p, c, fmt) for p, c in zip(pairs["prompt"], pairs["chosen"])],
            "rejected": [render(tok, p, r, fmt) for p, r in zip(pairs["prompt"], pairs["rejected"])]})
    args = RewardConfig(
        output_dir=str(workdir / "trl"), per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=lr,
        bf16=bf16, max_length=max_length, seed=seed, gradient_checkpointing=gradient_checkpointing,
        logging_steps=5,  # our default, so the logged "final accuracy" windows match; reporting only
        save_strategy="no", report_to=[], disable_tqdm=True, dataloader_num_workers=0,
        use_cpu=(str(device) == "cpu") or not torch.cuda.is_available())
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)
    result = trainer.train()
    logged = [h["accuracy"] for h in trainer.state.log_history if "accuracy" in h and "loss" in h]
    out = _measure(steps * batch_size, trainer._total_train_tokens, result.metrics["train_runtime"],
                   logged[-1] if logged else None, peak=_peak()) | {
        "loss": result.metrics.get("train_loss"), "pairs_after_filter": len(trainer.train_dataset),
        "steps_done": trainer.state.global_step}
    if keep_model:  # scored as it trained: TRL appends EOS to implicit-prompt text (not to ids or chat)
        out["_model"], out["_tok"], out["_fmt"] = trainer.model, tok, fmt
        out["_eos"] = trl_input == "text" and fmt.template != "chat"
    del trainer
    _free()
    return out


def _measure(pairs: int, tokens: int, seconds: float, acc, **extra) -> dict:
    return {"seconds": seconds, "pairs": pairs, "real_tokens": int(tokens), "pairs_per_s": pairs / seconds,
            "tokens_per_s": tokens / seconds, "train_acc_logged": acc, **extra}


def _reset_peak():
    import torch

    _free()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak():
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None


def _free():
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------------- accuracy
def accuracies(model, tok, fmt, sets: dict, *, append_eos: bool = False) -> dict:
    """score_pairs accuracy (strict r_c > r_r) on each named pair set, plus per-language accuracy on ``test``.

    ``append_eos``: score each sequence with an EOS token after it, as TRL's RewardTrainer trained on it (it
    appends one to implicit-prompt text), so its reward is read where it learnt to put it.
    """
    import pandas as pd

    from xlrm_lib.evaluate import score_pairs, score_texts
    from xlrm_lib.formatting import encode

    out = {}
    for name, pairs in sets.items():
        if append_eos:
            seqs = {side: [s + [tok.eos_token_id] for s in encode(tok, pairs["prompt"], pairs[side], fmt)]
                    for side in ("chosen", "rejected")}
            rewards = score_texts(model, tok, seqs["chosen"] + seqs["rejected"])
            n = len(seqs["chosen"])
            df = pd.DataFrame({"lang": pairs["lang"], "correct": rewards[:n] > rewards[n:]})
        else:
            df = score_pairs(model, tok, pairs, fmt=fmt)
        out[f"{name}_acc"] = float(df["correct"].mean())
        if name == "test":
            out["test_acc_by_lang"] = {k: round(float(v), 4) for k, v in df.groupby("lang")["correct"].mean().items()}
    return out


def score_variant(run: dict, sets: dict) -> dict:
    """Accuracy of one variant's trained model (ours: reloaded from its directory; TRL: kept in memory)."""
    from xlrm_lib.evaluate import model_format
    from xlrm_lib.models import load_reward_model

    eos = False
    if "_model" in run:
        model, tok, fmt, eos = run.pop("_model"), run.pop("_tok"), run.pop("_fmt"), run.pop("_eos", False)
    else:
        model, tok = load_reward_model(run["model_dir"])
        fmt = model_format(model)
    acc = accuracies(model, tok, fmt, sets, append_eos=eos)
    del model
    _free()
    return acc


# ----------------------------------------------------------------------------------- modes
def bench_embedded(a) -> dict:
    """Ours vs TRL on the embedded benchmark (default backbone me5-small, or --backbone, or --tiny)."""
    from xlrm_lib.data import EMBEDDED_LANGS, load_pairs
    from xlrm_lib.train import fast_bf16

    work = Path(tempfile.mkdtemp(prefix="bench_train-"))
    train = load_pairs("embedded", langs=a.langs, split="train", limit=a.limit)
    test_langs = EMBEDDED_LANGS if a.test_langs == ["all"] else a.test_langs
    test = load_pairs("embedded", langs=test_langs, split="test", limit=a.test_limit)
    backbone = a.backbone
    if a.tiny:
        backbone = str(harness.tiny_bert_backbone(work / "tiny-bert", harness.pair_texts(load_pairs("embedded"))))
    ours_bf16 = fast_bf16() if a.precision == "auto" else a.precision == "bf16"
    precisions = [ours_bf16] + ([False] if ours_bf16 and a.precision == "auto" else [])
    shared = dict(batch_size=a.batch_size, lr=a.lr, max_length=a.max_length, seed=a.seed)
    variants = {}
    for bf16 in precisions:
        tag = "bf16" if bf16 else "fp32"
        variants[f"ours-{tag}"] = lambda bf16=bf16, tag=tag, **kw: run_ours(
            backbone, train, bf16=bf16, workdir=work / tag, **shared, **kw)
        variants[f"trl-{tag}"] = lambda bf16=bf16, tag=tag, **kw: run_trl(
            backbone, train, bf16=bf16, workdir=work / tag, trl_input=a.trl_input,
            gradient_checkpointing=not a.trl_no_gc, **shared, **kw)
    print(f"# warm-up: {a.warmup_steps} step(s) of each of {list(variants)}", flush=True)
    harness.warm_up({n: (lambda fn=fn: fn(steps=a.warmup_steps)) for n, fn in variants.items()})
    # the last repeat keeps TRL's model in memory (ours is on disk) for the accuracy check
    runs = harness.interleaved({n: (lambda fn=fn: fn(steps=a.steps)) for n, fn in variants.items()}, a.repeats - 1) \
        if a.repeats > 1 else {n: [] for n in variants}
    last = list(variants) if (a.repeats - 1) % 2 == 0 else list(variants)[::-1]  # the alternation goes on
    for n in last:
        runs[n].append(variants[n](steps=a.steps, **({"keep_model": True} if n.startswith("trl") else {})))
        print(f"# {n}: {runs[n][-1]['pairs_per_s']:.3g} pairs/s", flush=True)
    sets = {"train": train, "test": test}
    accs = {n: score_variant(rs[-1], sets) for n, rs in runs.items()}
    rows, ratios = [], {}
    for n, rs in runs.items():
        rows.append({"variant": n, "pairs/s": harness.median(r["pairs_per_s"] for r in rs),
                     "real tok/s": harness.median(r["tokens_per_s"] for r in rs),
                     "train acc": accs[n]["train_acc"], "train acc (logged)": rs[-1]["train_acc_logged"],
                     "test acc": accs[n]["test_acc"], "runs": len(rs)})
    for bf16 in precisions:
        tag = "bf16" if bf16 else "fp32"
        o, t = runs[f"ours-{tag}"], runs[f"trl-{tag}"]
        ratios[tag] = {"pairs_per_s": harness.paired_ratio(o, t, "pairs_per_s"),
                       "tokens_per_s": harness.paired_ratio(o, t, "tokens_per_s"),
                       "test_acc_diff_points": 100 * (accs[f"ours-{tag}"]["test_acc"] - accs[f"trl-{tag}"]["test_acc"])}
    print(harness.table(rows, list(rows[0])))
    for tag, r in ratios.items():
        sp = r["pairs_per_s"]["median_of_ratios"]
        print(f"ours/TRL ({tag} vs {tag}): pairs/s x{sp:.2f}, real tokens/s x{r['tokens_per_s']['median_of_ratios']:.2f}, "
              f"test acc {r['test_acc_diff_points']:+.1f} points  [goal: >= 1.5x, accuracy no more than 2 points "
              f"below TRL's: {'met' if sp >= 1.5 and r['test_acc_diff_points'] >= -2 else 'NOT met'}]")
    return {"mode": "embedded", "backbone": backbone, "n_train_pairs": len(train), "n_test_pairs": len(test),
            "test_langs": test_langs, "precisions": ["bf16" if p else "fp32" for p in precisions],
            "runs": {n: [{k: v for k, v in r.items() if not k.startswith("_")} for r in rs] for n, rs in runs.items()},
            "accuracy": accs, "table": rows, "ratios": ratios, "_workdir": work}


def synthetic_backbone(dest: Path, *, tiny: bool, seed: int = 0) -> tuple[Path, int]:
    """A randomly initialised Qwen2-0.5B-shaped RM (``--tiny``: a toy of the same family) and a word tokenizer
    whose words ``t<i>`` are token ids ``i``, so random token ids round-trip through text exactly."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForSequenceClassification

    shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128, vocab_size=2048) if tiny else \
        dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
             intermediate_size=4864, vocab_size=151936)
    vocab = {"<pad>": 0, "<unk>": 1, **{f"t{i}": i for i in range(2, shape["vocab_size"])}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", eos_token="<pad>",
                                  model_max_length=4096)
    torch.manual_seed(seed)
    cfg = Qwen2Config(**shape, max_position_embeddings=4096, num_labels=1, pad_token_id=0, tie_word_embeddings=False)
    model = Qwen2ForSequenceClassification(cfg)
    n_emb = model.get_input_embeddings().weight.numel()
    n_nonemb = sum(p.numel() for p in model.parameters()) - n_emb
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    del model
    return dest, n_nonemb


@contextlib.contextmanager
def word_tokenizer_loading(backbone: Path):
    """While benchmarking, load ``backbone``'s word tokenizer as saved.

    transformers 5's ``AutoTokenizer`` swaps in the tokenizer class registered for the model type (Qwen2's BPE),
    which cannot read a word-level ``tokenizer.json``; this scoped patch of ``xlrm_lib.models._read_tokenizer``
    loads it with ``PreTrainedTokenizerFast`` for this one directory and leaves every other load untouched.
    """
    from transformers import PreTrainedTokenizerFast

    from xlrm_lib import models

    original = models._read_tokenizer

    def load(path, trust_remote_code, *args, **kwargs):
        if Path(path) == Path(backbone):
            return PreTrainedTokenizerFast.from_pretrained(path)
        return original(path, trust_remote_code, *args, **kwargs)

    models._read_tokenizer = load
    try:
        yield
    finally:
        models._read_tokenizer = original


def synthetic_pairs(n: int, *, tiny: bool, vocab: int, seed: int = 0):
    """``n`` pairs of random-token texts; sequence lengths log-normal (median 300, clipped 32-1024; tiny: 24, 8-64).

    The plain template adds two tokens (``User:`` and ``Assistant:`` become ``<unk>``), counted in the length.
    """
    import datasets
    import numpy as np

    from xlrm_lib.data import FEATURES

    med, lo, hi = (24, 8, 64) if tiny else (300, 32, 1024)
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(np.log(med), 0.6, size=(n, 2))), lo, hi).astype(int)
    words = lambda k: " ".join(f"t{i}" for i in rng.integers(2, vocab, size=k))  # noqa: E731
    rows = []
    for i, (lc, lr) in enumerate(lengths):
        p = max(1, min(lc, lr) // 4)  # a shared prompt; the answers fill the rest
        rows.append({"id": f"syn-{i}", "lang": "xx", "category": "chat", "subset": "synthetic",
                     "prompt": [{"role": "user", "content": words(p)}], "chosen": words(lc - p - 2),
                     "rejected": words(lr - p - 2), "meta": "{}"})
    return datasets.Dataset.from_list(rows, features=FEATURES), int(hi)


def bench_synthetic(a) -> dict:
    """GPU mode: ours vs TRL on a random Qwen2-0.5B-shaped RM, random tokens, bf16, batch 8 pairs."""
    import torch

    from xlrm_lib.train import fast_bf16

    if not torch.cuda.is_available() and not a.tiny:
        raise SystemExit("--gpu-synthetic needs a CUDA GPU (a 0.5B model); add --tiny to run the code path on CPU")
    work = Path(tempfile.mkdtemp(prefix="bench_train_syn-"))
    batch = a.batch_size or 8
    backbone, n_nonemb = synthetic_backbone(work / "qwen2-syn", tiny=a.tiny, seed=a.seed)
    vocab = 2048 if a.tiny else 151936
    pairs, max_len = synthetic_pairs(a.steps * batch, tiny=a.tiny, vocab=vocab, seed=a.seed)
    warm_pairs, _ = synthetic_pairs(a.warmup_steps * batch, tiny=a.tiny, vocab=vocab, seed=a.seed + 1)
    bf16 = fast_bf16() if a.precision == "auto" else a.precision == "bf16"
    shared = dict(batch_size=batch, lr=a.lr, max_length=max_len, seed=a.seed, bf16=bf16)
    # TRL gets our exact token ids (its processed form), so both train on identical tokens
    known = {"ours": lambda p, s, **kw: run_ours(str(backbone), p, steps=s, workdir=work, **shared, **kw),
             "trl": lambda p, s: run_trl(str(backbone), p, steps=s, workdir=work, trl_input="ids",
                                         gradient_checkpointing=not a.trl_no_gc, **shared),
             # ablations of our recipe: packed rows without torch.compile; padded, length-grouped batches
             "ours-eager": lambda p, s, **kw: run_ours(str(backbone), p, steps=s, workdir=work, torch_compile=False,
                                                       **shared, **kw),
             "ours-padded": lambda p, s: run_ours(str(backbone), p, steps=s, workdir=work, packing=False,
                                                  **shared),
             # experimental: the compiled blocks replayed as CUDA graphs over rows rounded to 1,024 tokens
             "ours-graphs": lambda p, s, **kw: run_ours(str(backbone), p, steps=s, workdir=work,
                                                        torch_compile="graphs", packing=True, **shared, **kw)}
    variants = {n: known[n] for n in a.variants}
    with word_tokenizer_loading(backbone):
        try:
            check = packed_check(backbone, pairs, bf16=bf16)
        except Exception as e:  # noqa: BLE001 - a kernel failure must not cost the rest of a GPU lease
            check = {"error": repr(e)}
            variants["ours"] = lambda p, s: run_ours(str(backbone), p, steps=s, workdir=work, packing=False, **shared)
            variants.pop("ours-eager", None), variants.pop("ours-graphs", None)
        print(f"# packed vs padded rewards: {check}", flush=True)
        print(f"# warm-up (load, {a.warmup_steps} steps, save; compiles happen here): then {a.repeats} x "
              f"{a.steps} steps", flush=True)
        warmup = harness.warm_up({n: (lambda fn=fn: fn(warm_pairs, a.warmup_steps)) for n, fn in variants.items()},
                                 keep_going=True)  # one failing variant must not cost the others a GPU lease
        variants = {n: fn for n, fn in variants.items() if "error" not in warmup[n]}
        if "trl" not in variants or len(variants) < 2:  # stop now: timing the rest would only spend the lease
            _give_up(a, f"no ratio: the warm-up of TRL or of all of ours failed (left: {sorted(variants)})",
                     packed_check=check, warmup=warmup)
        runs = harness.interleaved({n: (lambda fn=fn: fn(pairs, a.steps)) for n, fn in variants.items()}, a.repeats,
                                   keep_going=True, verbose=True)
        profiles = {n: profile_run(variants[n], pairs, a.profile_steps, batch)
                    for n in ("ours", "ours-eager", "ours-graphs") if a.profile_steps and n in variants and runs.get(n)}
    runs = {n: rs for n, rs in runs.items() if rs}  # a failed variant was reported and dropped
    if "trl" not in runs or len(runs) < 2:
        _give_up(a, f"no ratio: TRL or all of ours failed (finished: {sorted(runs)})", packed_check=check,
                 warmup=warmup, runs=runs, profiles=profiles)
    rows = []
    for n, rs in runs.items():
        for r in rs:
            r["mfu_h100"] = 6 * n_nonemb * r["real_tokens"] / r["seconds"] / H100_BF16_PEAK
        rows.append({"variant": n, "pairs/s": harness.median(r["pairs_per_s"] for r in rs),
                     "real tok/s": harness.median(r["tokens_per_s"] for r in rs),
                     "MFU (H100 bf16)": harness.median(r["mfu_h100"] for r in rs),
                     "peak GiB": max((r["peak"] or 0) for r in rs) or None, "runs": len(rs)})
    ratios = {n: {k: harness.paired_ratio(runs[n], runs["trl"], k) for k in ("pairs_per_s", "tokens_per_s")}
              for n in runs if n != "trl"}
    print(harness.table(rows, list(rows[0])))
    mfu = {row["variant"]: row["MFU (H100 bf16)"] for row in rows}
    for n, r in ratios.items():
        sp = r["pairs_per_s"]["median_of_ratios"]
        met = "met" if sp >= 5 and mfu[n] >= 0.15 else "NOT met"
        goal = f"  [goal >= 5x and MFU >= 15%: {met}]" if n == "ours" else ""
        print(f"{n}/TRL: pairs/s x{sp:.2f} (per repeat {r['pairs_per_s']['per_repeat']}), MFU {mfu[n]:.1%}{goal}")
    last = runs.get("ours", next(rs for n, rs in runs.items() if n != "trl"))[-1]
    print(f"({'bf16' if bf16 else 'fp32'}, batch {batch} pairs, {a.steps} steps, {n_nonemb / 1e6:.1f}M non-embedding "
          f"params, packed: {last.get('packed')}, compiled blocks: {last.get('compiled_blocks')})")
    return {"mode": "gpu-synthetic", "tiny": a.tiny, "non_embedding_params": n_nonemb, "bf16": bf16,
            "batch_pairs": batch, "max_length": max_len, "n_pairs": len(pairs),
            "mean_seq_tokens": last["real_tokens"] / (2 * len(pairs)), "packed_check": check, "warmup": warmup,
            "profiles": profiles,
            "runs": runs, "table": rows, "ratios": ratios, "mfu_peak_flops": H100_BF16_PEAK, "_workdir": work}


def _give_up(a, why: str, **partial) -> None:
    """Write what was measured so far (a GPU lease is not spent for nothing), then stop with ``why``."""
    record = {"benchmark": "bench_train", "machine": harness.machine(), "settings": vars(a), "error": why, **partial}
    print(f"results (partial): {harness.write_results('bench_train', record, a.json)}", flush=True)
    raise SystemExit(why)


def profile_run(fn, pairs, steps: int, batch: int, top: int = 12) -> dict:
    """Profile the training loop of one short run (``steps`` steps, after the timed runs: compiled code is warm).

    ``gpu_kernel_s / train_runtime_s`` is how busy the GPU was (a lower bound: the profiler slows the host);
    far below 1 means the step is bound by the host (Python, kernel launches), not by the GPU's arithmetic.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    try:
        from transformers import Trainer

        cuda = [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
        original, profiled, syncs = Trainer.train, [], collections.Counter()

        def train(self, *args, **kwargs):  # profile the training loop only, not loading and saving the model
            with profile(activities=[ProfilerActivity.CPU, *cuda]) as prof, \
                    warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if cuda:  # where does the host wait for the GPU? (a warning per synchronizing call)
                    torch.cuda.set_sync_debug_mode("warn")
                try:
                    result = original(self, *args, **kwargs)
                finally:
                    if cuda:
                        torch.cuda.set_sync_debug_mode(0)
            profiled.append(prof)
            syncs.update(f"{Path(w.filename).name}:{w.lineno}" for w in caught if "synchroniz" in str(w.message))
            return result

        Trainer.train = train
        try:
            run = fn(pairs.select(range(min(len(pairs), steps * batch))), steps)
        finally:
            Trainer.train = original
        prof = profiled[-1]
        averages = prof.key_averages()
        events = [e for e in averages if e.device_type == torch.autograd.DeviceType.CUDA  # kernels, copies; not the
                  and "#" not in e.key and not e.key.startswith("## ")]  # GPU-side annotations (Optimizer.step#...)
        kernel_s = sum(e.self_device_time_total for e in events) / 1e6
        ranked = sorted(events, key=lambda e: -e.self_device_time_total)[:top]
        host = sorted((e for e in averages if e.device_type == torch.autograd.DeviceType.CPU),
                      key=lambda e: -e.self_cpu_time_total)
        waits = [e for e in host if "Synchronize" in e.key or e.key in ("cudaMemcpy", "cudaMemcpyAsync", "aten::item",
                                                                         "aten::_local_scalar_dense")]
        out = {"steps": steps, "train_runtime_s": run["seconds"], "gpu_kernel_s": round(kernel_s, 4),
               "gpu_busy_fraction": round(kernel_s / run["seconds"], 3), "kernel_launches": sum(e.count for e in events),
               "top_kernels": [{"name": e.key[:90], "ms": round(e.self_device_time_total / 1e3, 2), "calls": e.count}
                               for e in ranked],
               "top_host_ops": [{"name": e.key[:90], "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2),
                                 "calls": e.count} for e in host[:2 * top]],
               "sync_sites": dict(syncs.most_common(20)),
               "host_waits": [{"name": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2), "calls": e.count}
                              for e in waits]}
        print(averages.table(sort_by="self_cpu_time_total", row_limit=30, max_name_column_width=60), flush=True)
        print(f"# profile: {out['gpu_busy_fraction']:.0%} GPU busy over {steps} steps, "
              f"{out['kernel_launches']} kernels; top: {[(k['name'][:40], k['ms']) for k in out['top_kernels'][:5]]}",
              flush=True)
        return out
    except Exception as e:  # noqa: BLE001 - a profiler failure must not cost the measured results
        return {"error": repr(e)}


def packed_check(backbone: Path, pairs, *, bf16: bool, n: int = 16) -> dict:
    """Rewards of ``n`` sequences packed (the varlen kernel on CUDA) vs the padded classifier (SDPA), same model."""
    import torch

    from xlrm_lib.formatting import TextFormat, pad_batch
    from xlrm_lib.models import load_reward_model
    from xlrm_lib.packing import pack, packed_rewards, supports_packing
    from xlrm_lib.train import tokenize_pairs

    model, tok = load_reward_model(str(backbone), seed=0)
    if supports_packing(model):
        return {"skipped": supports_packing(model)}
    feats = tokenize_pairs(tok, pairs.select(range(min(n // 2, len(pairs)))), TextFormat("auto", 4096).resolved(tok))
    seqs = [f["input_ids_chosen"] for f in feats] + [f["input_ids_rejected"] for f in feats]
    dev = next(model.parameters()).device
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        padded = model(**{k: v.to(dev) for k, v in pad_batch(seqs, tok.pad_token_id, "right").items()}).logits[:, 0]
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):  # with gradients: the backward must run too
        b = pack(seqs)
        packed = packed_rewards(model, {k: v.to(dev) if torch.is_tensor(v) else v for k, v in b.items()})
    packed.sum().backward()
    grad = model.get_input_embeddings().weight.grad
    packed, padded = packed.detach(), padded.detach()
    d = (packed.float() - padded.float()).abs()
    finite = {}
    for side in ("left", "right"):  # does a padded backward stay finite with this padding side?
        model.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            r = model(**{k: v.to(dev) for k, v in pad_batch(seqs, tok.pad_token_id, side).items()}).logits
        r.float().sum().backward()
        finite[f"padded_{side}_grads_finite"] = all(bool(torch.isfinite(p.grad).all())
                                                    for p in model.parameters() if p.grad is not None)
    out = {"n": len(seqs), "max_abs_delta": float(d.max()), "reward_std": float(padded.float().std()), **finite,
           "same_pair_verdicts": float(((packed[: len(feats)] > packed[len(feats):]) ==
                                        (padded[: len(feats)] > padded[len(feats):])).float().mean()),
           "grad_finite": bool(grad is not None and torch.isfinite(grad).all()), "kernel": dev.type == "cuda"}
    del model
    _free()
    return out


# ----------------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per timed run (default 20 = our 2 epochs)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each variant, interleaved (default 3)")
    p.add_argument("--warmup-steps", type=int, default=2, help="steps of the untimed warm-up run of each variant")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (default 16; --gpu-synthetic: 8)")
    p.add_argument("--lr", type=float, default=3e-5, help="learning rate of both (default: ours, 3e-5)")
    p.add_argument("--max-length", type=int, default=256, help="tokens per sequence, both (default 256)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="auto: our default (bf16 autocast where fast) vs TRL bf16=True, plus fp32 vs fp32")
    p.add_argument("--backbone", default="me5-small", help="packaged name or model directory (default me5-small)")
    p.add_argument("--langs", nargs="+", default=["en"], help="training languages (default en)")
    p.add_argument("--test-langs", nargs="+", default=["all"], help="test split languages (default all 8)")
    p.add_argument("--limit", type=int, default=None, help="at most this many training pairs per language")
    p.add_argument("--test-limit", type=int, default=None, help="at most this many test pairs per language")
    p.add_argument("--trl-input", choices=["text", "ids"], default="text",
                   help="TRL gets implicit-prompt text (default) or our exact token ids")
    p.add_argument("--trl-no-gc", action="store_true", help="ablation: TRL without its default gradient checkpointing")
    p.add_argument("--tiny", action="store_true", help="tiny in-process model (smoke runs; numbers mean nothing)")
    p.add_argument("--gpu-synthetic", action="store_true", help="random Qwen2-0.5B-shaped RM on random tokens (GPU)")
    p.add_argument("--variants", nargs="+", default=["ours", "trl", "ours-eager", "ours-padded"],
                   choices=["ours", "trl", "ours-eager", "ours-padded", "ours-graphs"],
                   help="--gpu-synthetic: which to run (default all; ours and trl are always kept)")
    p.add_argument("--profile-steps", type=int, default=0,
                   help="--gpu-synthetic: after timing, profile this many steps of ours, ours-eager, ours-graphs")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", default=None, help="results file (default benchmarks/results/bench_train-<time>.json)")
    a = p.parse_args(argv)
    for name in ("steps", "repeats"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    a.variants = list(dict.fromkeys(["ours", "trl", *a.variants]))
    if a.warmup_steps < 1:
        p.error(f"--warmup-steps must be >= 1, got {a.warmup_steps}")
    return a


def main(argv=None) -> dict:
    harness.quiet()
    a = parse_args(argv)
    mach = harness.machine()
    if a.gpu_synthetic:
        result = bench_synthetic(a)
    else:
        a.batch_size = a.batch_size or 16
        result = bench_embedded(a)
    shutil.rmtree(result.pop("_workdir"), ignore_errors=True)  # trained models: GBs we do not keep
    record = {"benchmark": "bench_train", "machine": mach, "settings": vars(a), **result}
    print(f"results: {harness.write_results('bench_train', record, a.json)}")
    return record


if __name__ == "__main__":
    main()
